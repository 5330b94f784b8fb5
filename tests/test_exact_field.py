"""The exact population field: the data's closed-form first variation against the risk
differentiated along probe masses (an independent path), and batched minibatch runs on a
sampler (held-out records, branches tested over the batch) against single runs."""

import jax
import numpy as np
import pytest

import measureflow as mf
from measureflow.particles import Particles


def _field(problem, mu):
    return jax.jit(lambda P, w: problem.field(Particles.unchecked(P, w), first_variation=True))(mu.positions, mu.weights)


@pytest.mark.parametrize("inputs", ["gaussian", "sphere"])
def test_closed_form_first_variation_equals_the_probe_derivative(inputs, monkeypatch):
    ts = mf.data.TeacherStudent(6, 3, "relu", seed=2, inputs=inputs)
    problem = mf.Problem(ts.teacher_feature, "square", mf.regularizers.L2(0.01), ts)
    assert ts.exact_first_variation(problem.feature, problem.loss, mf.init.admissible(problem.feature, 2),
                                    np.zeros((1, problem.feature.dim))) is not None
    mu = mf.init.admissible(problem.feature, 9, key=4)
    w = np.asarray(mu.weights).copy()
    w[:2] = 0.0  # zero masses: their velocity must still be ∇F'(θ_i)
    mu = Particles(np.asarray(mu.positions), w)
    closed = _field(problem, mu)
    # the same closed-form risk without its closed-form first variation: the probe path
    monkeypatch.setattr(mf.data.TeacherStudent, "exact_first_variation", lambda *args: None)
    probe = _field(problem, mu)
    assert abs(float(closed.value - probe.value)) < 1e-14
    np.testing.assert_allclose(closed.velocity, probe.velocity, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(closed.first_variation, probe.first_variation, rtol=1e-10, atol=1e-13)
    assert np.abs(np.asarray(closed.velocity[:2])).max() > 1e-3


def test_closed_form_first_variation_against_finite_differences():
    ts = mf.data.TeacherStudent(4, 2, "relu", seed=5)
    problem = mf.Problem(ts.teacher_feature, "square", None, ts)
    mu = mf.init.admissible(problem.feature, 5, key=1)
    f = problem.field(mu, first_variation=True)
    theta = np.asarray(mu.positions[3])
    for e in np.eye(theta.size)[:3]:  # F'(θ) by the closed form at θ ± h e, central differences
        h = 1e-6
        up = ts.exact_first_variation(problem.feature, problem.loss, mu, (theta + h * e)[None])[0]
        dn = ts.exact_first_variation(problem.feature, problem.loss, mu, (theta - h * e)[None])[0]
        assert abs(float((up - dn) / (2 * h)) - float(f.velocity[3] @ e)) < 1e-7
    # and F'(θ_i) = ∂F/∂w_i (f_μ is linear in the masses)
    grad_w = jax.grad(lambda w: problem.objective(Particles.unchecked(mu.positions, w)))(mu.weights)
    np.testing.assert_allclose(f.first_variation, grad_w, rtol=1e-10, atol=1e-14)


def test_batched_sgd_on_a_sampler_equals_single_runs():
    ts = [mf.data.TeacherStudent(5, 2, "sigmoid", bias=True, seed=s, eval_size=500) for s in range(2)]
    problems = [mf.Problem(t.teacher_feature, "square", None, t) for t in ts]
    inits = [mf.init.admissible(t.teacher_feature, 6, key=s) for s, t in enumerate(ts)]
    kw = dict(method="gd", step=1.0, batch_size=16, iterations=120, history_every=20, snapshots=5, tol=1e-12)
    batched = mf.solve_batch(problems, inits, keys=[0, 1], **kw)
    for b, (pr, mu) in enumerate(zip(problems, inits)):
        single = mf.solve(pr, mu, key=b, **kw)
        np.testing.assert_array_equal(batched[b].particles.positions, single.particles.positions)
        np.testing.assert_allclose(batched[b].history, single.history, rtol=1e-13, atol=1e-15)
        np.testing.assert_array_equal(batched[b].trajectory, single.trajectory)
        np.testing.assert_array_equal(batched[b].history_iterations, single.history_iterations)
    # a batched Result continues as a single run, as a single one does
    more = mf.solve(problems[0], batched[0], iterations=40)
    again = mf.solve(problems[0], mf.solve(problems[0], inits[0], key=0, **kw), iterations=40)
    np.testing.assert_array_equal(more.particles.positions, again.particles.positions)


def test_kernel_matvec_in_blocks_equals_the_dense_product(monkeypatch):
    from measureflow import population

    rng = np.random.default_rng(0)
    A, B, b = rng.normal(size=(37, 4)), rng.normal(size=(5, 4)), rng.normal(size=5)
    dense = population.relu_kernel(A, B) @ b
    monkeypatch.setattr(population, "BLOCK_ENTRIES", 15)  # 3 rows per block: 13 blocks, padded
    blocked = population.kernel_matvec(population.relu_kernel, A, B, b)
    np.testing.assert_allclose(blocked, dense, rtol=1e-13, atol=1e-14)
    g = lambda fn: jax.grad(lambda X: fn(X) @ np.arange(37.0))(A)  # noqa: E731
    np.testing.assert_allclose(g(lambda X: population.kernel_matvec(population.relu_kernel, X, B, b)),
                               g(lambda X: population.relu_kernel(X, B) @ b), rtol=1e-12, atol=1e-13)
