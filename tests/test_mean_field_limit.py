"""The many-particle-limit experiment's batching: the groups of sizes padded into one
batch, the split initial draws, and the padded flows equal to the flows run alone."""

from __future__ import annotations

import numpy as np

import measureflow as mf
from measureflow.experiments import mean_field_limit as mfl


def test_size_groups_cover_every_size_and_bound_the_padding():
    for sizes in ([16, 32, 64, 128, 256], [4, 16], [512], [10, 300, 20, 40, 299], [8, 8, 8]):
        groups = mfl.size_groups(sizes)
        assert sorted(i for g in groups for i in g) == list(range(len(sizes)))
        for g in groups:
            own = sum(sizes[i] for i in g)
            assert max(sizes[i] for i in g) * len(g) <= 2.0 * own
    # doubling sizes: 256, 128 and 64 padded to 256 cost 768 ≤ 2 × 448; adding 32 would not fit
    assert mfl.size_groups([16, 32, 64, 128, 256]) == [[4, 3, 2], [1, 0]]


def test_initial_sets_are_admissible_and_distinct():
    relu = mf.features.ReLU(1, bias=True)
    keys = mfl._keys(0, 3)
    sets = mfl.initial_sets(relu, 8, 3, keys)
    assert [mu.m for mu in sets] == [8, 8, 8]
    P = np.stack([np.asarray(mu.positions) for mu in sets])
    assert np.allclose(np.linalg.norm(P, axis=2), 1.0)  # the unit sphere of the admissible law
    assert np.allclose([np.asarray(mu.weights).sum() for mu in sets], 1.0)
    assert len(np.unique(P.reshape(-1, 3), axis=0)) == 24  # three different draws
    problem, _, _ = mfl._deconvolution({"spikes": 2, "cutoff": 6, "lam": 1.0}, 0)
    grids = mfl.initial_sets(problem.feature, 5, 2, keys[:2])
    for mu in grids:  # spikes: r = 0 on a shifted uniform grid of m points
        r, t = np.asarray(mu.positions).T
        assert np.allclose(r, 0.0) and np.allclose(np.diff(np.sort(t)), 1 / 5)


def test_padded_batches_flow_like_the_runs_alone():
    problem, method, _ = mfl._network({"teacher_units": 2, "train_size": 40}, 0)
    inits = [mf.init.admissible(problem.feature, m, key=k) for k, m in enumerate([3, 7])]
    together = mfl.flow_snapshots(problem, inits, method, 0.5, 5, 2)
    assert [s.shape for s in together] == [(3, 3, 3), (3, 7, 3)]
    # the m = 3 run, padded to 7 with massless copies in the batch, flows as it does alone
    (alone,) = mfl.flow_snapshots(problem, inits[:1], method, 0.5, 5, 2)
    np.testing.assert_allclose(together[0], alone, rtol=1e-12, atol=1e-14)
    # and the flow moved: the comparison is not between two copies of μ0
    assert np.abs(alone[-1] - alone[0]).max() > 1e-3
