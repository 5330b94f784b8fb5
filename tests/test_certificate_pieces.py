"""The certificate's small pieces against their definitions: the local maxima of |η| on the
periodic grid (Newton's starts) against a brute-force neighbour scan, and the closed-form
Newton step of the refinement against a dense solve and an eigenvalue test."""

import itertools

import numpy as np
import pytest

from measureflow import certificates as cert


@pytest.mark.parametrize("n,k", [(40, 1), (9, 2)])
def test_grid_local_maxima_are_the_points_at_least_their_periodic_neighbours(n, k):
    rng = np.random.default_rng(n)
    vals = rng.standard_normal(n**k)
    a = np.abs(vals).reshape((n,) * k)
    brute = [i for i, idx in enumerate(np.ndindex(*a.shape))
             if all(a[idx] >= a[tuple((j + o) % n for j, o in zip(idx, off))]
                    for off in itertools.product((-1, 0, 1), repeat=k) if any(off))]
    np.testing.assert_array_equal(cert._grid_local_maxima(vals, n, k), brute)
    assert 0 < len(brute) < n**k / 2


@pytest.mark.parametrize("k", [1, 2, 3])
def test_newton_step_and_concavity_test_against_a_dense_solve(k):
    rng = np.random.default_rng(k)
    for trial in range(6):
        A = rng.standard_normal((k, k))
        H = (A + A.T) / 2 + (-3.0 if trial % 2 == 0 else 0.0) * np.eye(k)  # negative definite, or not
        H *= 0.3 if trial < 3 else 30.0  # curvatures below and above 1 in size
        gr = rng.standard_normal(k)
        step, concave = cert._newton(H, gr)
        np.testing.assert_allclose(np.asarray(step), -np.linalg.solve(H, gr), rtol=1e-10, atol=1e-12)
        assert bool(concave) == bool(np.all(np.linalg.eigvalsh(H) < 0))
