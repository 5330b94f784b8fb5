"""What the solver layer leaves on disk and accepts as keys: a checkpoint write that fails
leaves the previous checkpoint and no temporary behind; solve_batch takes PRNG keys as well
as seeds, the same streams either way."""

import glob
import os

import jax
import numpy as np
import pytest

import measureflow as mf
from measureflow.solvers import checkpoint as ckpt


def test_a_failed_checkpoint_write_leaves_no_temporary_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = str(tmp_path / "run.ckpt")
    ckpt.save(path, {"iteration": 1}, {"a": np.arange(3.0)})
    before = open(path, "rb").read()

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):  # the original error, not a cleanup error
        ckpt.save(path, {"iteration": 2}, {"a": np.arange(3.0) + 1})
    assert glob.glob(os.path.join(tmp_path, ".checkpoint-*")) == []
    assert open(path, "rb").read() == before


def test_solve_batch_takes_keys_or_seeds_alike():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2))
    prob = mf.Problem(mf.features.ReLU(2, bias=True), "square", None, mf.data.Dataset(X, np.tanh(X[:, 0])))
    mus = [mf.init.admissible(prob.feature, 6, key=0)] * 2  # the same start: only the keys differ
    kw = dict(step=0.1, iterations=20, batch_size=8, snapshots=0)
    by_seed = mf.solve_batch(prob, mus, "sgd", keys=[3, 4], **kw)
    by_key = mf.solve_batch(prob, mus, "sgd", keys=[jax.random.PRNGKey(3), jax.random.PRNGKey(4)], **kw)
    for a, b in zip(by_seed, by_key):
        np.testing.assert_array_equal(np.asarray(a.particles.positions), np.asarray(b.particles.positions))
    assert not np.array_equal(np.asarray(by_seed[0].particles.positions),
                              np.asarray(by_seed[1].particles.positions))  # the keys do set the batches


def test_a_minibatch_run_on_a_closed_form_population_records_the_exact_risk():
    """SGD on a teacher–student sampler with a closed-form risk records F on the population
    itself (not on a drawn evaluation set): the last history value is the exact risk."""
    feat = mf.features.ReLU(3)
    prob = mf.Problem(feat, "square", None, mf.data.TeacherStudent(3, 2, seed=0))
    assert prob.has_exact_risk
    res = mf.solve(prob, mf.init.admissible(feat, 8, key=1), "sgd", step=0.5, iterations=50, batch_size=16,
                   snapshots=0)
    assert float(res.history[-1]) == pytest.approx(float(prob.objective(res.particles)), rel=1e-12)


def test_solve_batch_runs_a_single_iteration_like_solve():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((20, 2))
    prob = mf.Problem(mf.features.ReLU(2, bias=True), "square", None, mf.data.Dataset(X, np.tanh(X[:, 1])))
    mu = mf.init.admissible(prob.feature, 5, key=2)
    one = mf.solve(prob, mu, "gd", step=0.1, iterations=1, snapshots=0)
    (batched,) = mf.solve_batch(prob, [mu], "gd", step=0.1, iterations=1, snapshots=0)
    np.testing.assert_allclose(np.asarray(batched.particles.positions), np.asarray(one.particles.positions),
                               rtol=0, atol=1e-14)


def test_the_history_holds_every_record_of_a_call_near_a_power_of_two():
    """A call of T steps recording every k writes up to T//k + 1 grid records, its first and
    last iteration and the close of a divergence: the capacity covers them for every T
    (also just past 2048, where rounding to a power of two no longer hides a shortfall),
    and a run of 2050 steps recorded at every step keeps all 2051 values."""
    from measureflow.solvers.driver import history_capacity

    for every in (1, 3):
        for T in range(2000 * every, 2100 * every, every):
            cap = history_capacity(T, every)
            assert cap >= T // every + 4 and cap >= 2048 and cap & (cap - 1) == 0, (T, every, cap)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 2))
    prob = mf.Problem(mf.features.ReLU(2), "square", None, mf.data.Dataset(X, X[:, 0]))
    mu = mf.init.admissible(prob.feature, 3, key=0)
    res = mf.solve(prob, mu, "gd", step=0.05, iterations=2050, history_every=1, snapshots=0)
    np.testing.assert_array_equal(res.history_iterations, np.arange(2051))
    assert float(res.history[-1]) == pytest.approx(float(prob.objective(res.particles)), rel=1e-12)
