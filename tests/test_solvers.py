"""Solvers: closed-form minimizers, monotone descent, mean-field invariance, divergence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import measureflow as mf
from measureflow.features import Custom, Homogeneity


def linear_problem(reg=None, n=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = X @ np.array([1.0, -2.0, 0.5])[:d] + 0.1 * rng.standard_normal(n)
    feat = Custom(lambda th, x: th @ x, dim=d, input_dim=d)
    return mf.Problem(feat, "square", reg, mf.data.Dataset(X, y)), X, y


TANH_UNIT = Custom(lambda th, x: th[0] * jnp.tanh(th[1:3] @ x + th[3]), dim=4, input_dim=2,
                   homogeneity=Homogeneity.partial(1, 0))


def tanh_problem(reg=None, loss="square", n=50, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    y = np.tanh(X @ np.array([1.5, -1.0])) - 0.5 * np.tanh(X @ np.array([0.3, 1.2]) + 0.2)
    return mf.Problem(TANH_UNIT, loss, reg, mf.data.Dataset(X, y))


def test_gd_reaches_least_squares_minimum():
    prob, X, y = linear_problem()
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    Fstar = 0.5 * np.mean((X @ beta - y) ** 2)
    res = mf.solve(prob, mf.init.admissible(prob.feature, 5, key=1), "gd", iterations=3000)
    assert 0 <= res.objective - Fstar < 1e-8  # F* is a lower bound: two-sided
    mean = np.asarray(res.particles.weights) @ np.asarray(res.particles.positions)
    np.testing.assert_allclose(mean, beta, atol=1e-6)


def test_gd_reaches_ridge_minimum_particle_by_particle():
    """With V = λ|θ|², F is strictly convex in the particles: each reaches the ridge solution
    β = (XᵀX/n + 2λI)⁻¹ Xᵀy/n."""
    lam = 0.05
    prob, X, y = linear_problem(mf.L2(lam))
    n = X.shape[0]
    beta = np.linalg.solve(X.T @ X / n + 2 * lam * np.eye(3), X.T @ y / n)
    Fstar = 0.5 * np.mean((X @ beta - y) ** 2) + lam * beta @ beta
    res = mf.solve(prob, mf.init.admissible(prob.feature, 4, key=2), "gd", iterations=4000)
    assert abs(res.objective - Fstar) < 1e-8
    np.testing.assert_allclose(np.asarray(res.particles.positions), np.tile(beta, (4, 1)), atol=1e-6)


def test_fb_reaches_lasso_minimum():
    """1-D lasso: min_β ½ mean((βx − y)²) + λ|β| = soft-threshold(xᵀy/n, λ) / (xᵀx/n); in
    particle form with φ = θ x and V = λ|θ| the same optimum is reached."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(80)
    y = 0.7 * x + 0.3 * rng.standard_normal(80)
    lam = 0.2
    c, q = x @ y / 80, x @ x / 80
    beta = np.sign(c) * max(abs(c) - lam, 0) / q
    Fstar = 0.5 * np.mean((beta * x - y) ** 2) + lam * abs(beta)
    feat = Custom(lambda th, xx: th[0] * xx[0], dim=1, input_dim=1, homogeneity=Homogeneity.partial(1, 0))
    prob = mf.Problem(feat, "square", mf.L1(lam), mf.data.Dataset(x[:, None], y))
    mu0 = mf.Particles(rng.uniform(0.1, 1.0, (6, 1)))
    res = mf.solve(prob, mu0, "fb", iterations=2000)
    assert abs(res.objective - Fstar) < 1e-10


def test_gd_small_step_decreases_monotonically():
    prob = tanh_problem(mf.L2(1e-3))
    mu0 = mf.init.admissible(prob.feature, 20, key=0)
    step = 0.2 * mf.default_step(prob, mu0)
    res = mf.solve(prob, mu0, "gd", step=step, iterations=500, history_every=1)
    h = res.history
    assert np.all(np.diff(h) <= 1e-14 * np.abs(h[:-1]))
    assert h[-1] < 0.5 * h[0]


@pytest.mark.parametrize("method,reg,extra", [
    ("gd", mf.L2(1e-2), {}),
    ("fb", mf.L1(1e-2), {}),
    ("sgd", mf.L2(1e-2), {"batch_size": 16, "key": 7}),
    ("sgd", mf.L1(1e-2), {"batch_size": 16, "key": 7}),
])
def test_splitting_particles_leaves_the_flow_unchanged(method, reg, extra):
    prob = tanh_problem(reg)
    rng = np.random.default_rng(0)
    mu0 = mf.Particles(rng.standard_normal((9, 4)), rng.uniform(0.5, 1.5, 9) / 9)
    kw = dict(step=0.3, iterations=300, **extra)
    a = mf.solve(prob, mu0, method, **kw)
    b = mf.solve(prob, mu0.split(), method, **kw)
    np.testing.assert_allclose(b.history, a.history, rtol=0, atol=1e-10)
    Pa, Pb = np.asarray(a.particles.positions), np.asarray(b.particles.positions)
    np.testing.assert_allclose(Pb[:9], Pa, atol=1e-10)
    np.testing.assert_allclose(Pb[9:], Pa, atol=1e-10)
    np.testing.assert_allclose(b.trajectory[:, :9], a.trajectory, atol=1e-10)


def test_uneven_splitting_leaves_the_flow_unchanged():
    """Particle 0 split into masses w0/3 and 2w0/3 (the rest unchanged): an even split keeps
    m·w_i, so it cannot see a velocity scaled by m·w_i instead of 1 (∂F/∂θ_i·m for 1/w_i);
    an uneven one can: the two pieces must move together, as particle 0 alone."""
    prob = tanh_problem(mf.L2(1e-2))
    rng = np.random.default_rng(0)
    P, w = rng.standard_normal((9, 4)), rng.uniform(0.5, 1.5, 9) / 9
    mu0 = mf.Particles(P, w)
    uneven = mf.Particles(np.vstack([P[:1], P]), np.concatenate([[w[0] / 3, 2 * w[0] / 3], w[1:]]))
    a = mf.solve(prob, mu0, "gd", step=0.3, iterations=200, snapshots=0)
    b = mf.solve(prob, uneven, "gd", step=0.3, iterations=200, snapshots=0)
    np.testing.assert_allclose(b.history, a.history, rtol=0, atol=1e-10)
    Pa, Pb = np.asarray(a.particles.positions), np.asarray(b.particles.positions)
    np.testing.assert_allclose(Pb[[0, 1]], Pa[[0, 0]], atol=1e-10)
    np.testing.assert_allclose(Pb[2:], Pa[1:], atol=1e-10)


def test_splitting_invariance_with_conic_geometry():
    prob = tanh_problem(mf.L1(1e-2))
    mu0 = mf.init.admissible(prob.feature, 8, key=3)
    a = mf.solve(prob, mu0, "fb", step=0.2, iterations=200, geometry="conic")
    b = mf.solve(prob, mu0.split(), "fb", step=0.2, iterations=200, geometry="conic")
    np.testing.assert_allclose(b.history, a.history, atol=1e-10)


def test_sgd_on_a_sampler_uses_fresh_batches_and_converges():
    w1 = jnp.asarray([1.0, -1.0])

    def draw(key, n, params):
        X = jax.random.normal(key, (n, 2))
        return X, jnp.tanh(X @ params)

    data = mf.data.Sampler(draw, input_dim=2, params=w1, eval_size=4000)
    feat = Custom(lambda th, x: th[0] * jnp.tanh(th[1:] @ x), dim=3, input_dim=2,
                  homogeneity=Homogeneity.partial(1, 0))
    prob = mf.Problem(feat, "square", None, data)
    mu0 = mf.init.admissible(feat, 20, key=1)
    res = mf.solve(prob, mu0, "sgd", step=0.5, iterations=3000, batch_size=32, key=4)
    assert res.history[-1] < 0.02 * res.history[0]
    again = mf.solve(prob, mu0, "sgd", step=0.5, iterations=3000, batch_size=32, key=4)
    np.testing.assert_array_equal(again.history, res.history)   # same key → same run
    other = mf.solve(prob, mu0, "sgd", step=0.5, iterations=3000, batch_size=32, key=5)
    assert not np.array_equal(other.history, res.history)


def test_sgd_steps_are_gd_steps_on_the_documented_fresh_batches():
    """Step t of "sgd" on a sampler is a GD step on draw(fold_in(PRNGKey(key), t), batch_size)
    (the documented rule, SolverState.key): the first two steps are GD steps on two different
    batches, reproduced here from that rule, not on one batch reused."""
    w1 = jnp.asarray([1.0, -1.0])

    def draw(key, n, params):
        X = jax.random.normal(key, (n, 2))
        return X, jnp.tanh(X @ params)

    feat = Custom(lambda th, x: th[0] * jnp.tanh(th[1:] @ x), dim=3, input_dim=2,
                  homogeneity=Homogeneity.partial(1, 0))
    prob = mf.Problem(feat, "square", None, mf.data.Sampler(draw, input_dim=2, params=w1, eval_size=100))
    mu0 = mf.init.admissible(feat, 20, key=1)

    def gd_on_batch(mu, t):
        X, y = draw(jax.random.fold_in(jax.random.PRNGKey(4), t), 32, w1)
        batch = mf.Problem(feat, "square", None, mf.data.Dataset(np.asarray(X), np.asarray(y)))
        return mf.solve(batch, mu, "gd", step=0.5, iterations=1, snapshots=0).particles

    one = gd_on_batch(mu0, 0)
    two = gd_on_batch(one, 1)
    stale = gd_on_batch(one, 0)
    for t, expected in [(1, one), (2, two)]:
        sgd = mf.solve(prob, mu0, "sgd", step=0.5, iterations=t, batch_size=32, key=4, snapshots=0).particles
        np.testing.assert_allclose(sgd.positions, expected.positions, rtol=0, atol=1e-13)
        np.testing.assert_array_equal(sgd.weights, expected.weights)
    assert np.max(np.abs(np.asarray(two.positions) - np.asarray(stale.positions))) > 1e-2  # the check can see reuse


def test_result_records_history_and_log_spaced_trajectory():
    prob, _, _ = linear_problem()
    mu0 = mf.init.admissible(prob.feature, 3, key=0)
    res = mf.solve(prob, mu0, "gd", step=0.1, iterations=2000, history_every=10)
    assert res.history.shape == (201,) and res.history_iterations[-1] == 2000
    it = res.trajectory_iterations
    assert res.trajectory.shape == (len(it), 3, 3) and 90 <= len(it) <= 110
    assert it[0] == 0 and it[-1] == 2000 and np.all(np.diff(it) > 0)
    np.testing.assert_array_equal(res.trajectory[0], np.asarray(mu0.positions))
    np.testing.assert_array_equal(res.trajectory[-1], np.asarray(res.particles.positions))
    # the snapshot at iteration t equals a run of t iterations
    t = int(it[len(it) // 2])
    short = mf.solve(prob, mu0, "gd", step=0.1, iterations=t)
    np.testing.assert_allclose(res.trajectory[len(it) // 2], short.particles.positions, atol=1e-13)


def test_float32_on_request():
    prob = tanh_problem()
    mu0 = mf.init.admissible(prob.feature, 10, key=0)
    r32 = mf.solve(prob, mu0, "gd", step=0.5, iterations=200, dtype="float32")
    r64 = mf.solve(prob, mu0, "gd", step=0.5, iterations=200)
    assert r32.particles.positions.dtype == np.float32 and r64.particles.positions.dtype == np.float64
    np.testing.assert_allclose(r32.history, r64.history, rtol=1e-4)


def test_divergence_stops_and_names_the_iteration():
    prob, _, _ = linear_problem()
    mu0 = mf.init.admissible(prob.feature, 3, key=0)
    with pytest.raises(mf.DivergenceError, match=r"diverged at iteration \d+") as info:
        mf.solve(prob, mu0, "gd", step=50.0, iterations=10_000)
    err = info.value
    assert 0 < err.iteration < 1000 and np.isfinite(err.last_objective)
    assert np.all(np.isfinite(err.result.particles.positions))
    assert "smaller step" in str(err)


def test_default_step_is_stable_and_close_to_the_limit():
    """For the linear feature F is quadratic in the positions; in the mass-weighted metric
    its Hessian is (√w√wᵀ) ⊗ XᵀX/n, so L = Σw · λ_max(XᵀX/n) (computed here in NumPy) and
    the stability limit of GD is 2/L exactly: the default is 1/L and converges, 1.9/L
    converges, 2.1/L diverges without the halving guard."""
    prob, X, y = linear_problem()
    mu0 = mf.init.admissible(prob.feature, 4, key=0)
    L = float(np.sum(mu0.weights)) * np.linalg.eigvalsh(X.T @ X / len(y)).max()
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    Fstar = 0.5 * np.mean((X @ beta - y) ** 2)
    assert mf.default_step(prob, mu0) == pytest.approx(1 / L, rel=1e-8)
    default = mf.solve(prob, mu0, "gd", iterations=500, snapshots=0)
    assert default.step == pytest.approx(1 / L, rel=1e-8)  # never halved on a quadratic
    assert 0 <= default.objective - Fstar < 1e-12
    near = mf.solve(prob, mu0, "gd", step=1.9 / L, iterations=3000, halve_on_increase=False, snapshots=0)
    assert 0 <= near.objective - Fstar < 1e-12
    with pytest.raises(mf.DivergenceError, match="diverged at iteration") as err:
        mf.solve(prob, mu0, "gd", step=2.1 / L, iterations=5000, halve_on_increase=False, snapshots=0)
    # the error along the top eigenvector grows by |1 − 2.1| = 1.1 per step: F ≈ F0·1.21^t
    # overflows float64 (1.8e308) near t = ln(1.8e308 / F0) / ln 1.21
    t_overflow = np.log(np.finfo(float).max / float(prob.objective(mu0))) / np.log(1.21)
    assert abs(err.value.iteration - t_overflow) < 0.05 * t_overflow


def test_solve_batch_equals_one_by_one_with_padding():
    """Seeds batched by vmap, sizes padded with massless particles: same numbers as solve."""
    prob = tanh_problem(mf.L2(1e-3))
    inits = [mf.init.admissible(prob.feature, m, key=k) for k, m in [(0, 5), (1, 12), (2, 9)]]
    batch = mf.solve_batch(prob, inits, "gd", step=0.3, iterations=200, snapshots=10)
    for mu0, res in zip(inits, batch):
        one = mf.solve(prob, mu0, "gd", step=0.3, iterations=200, snapshots=10)
        np.testing.assert_allclose(res.history, one.history, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(res.particles.positions, one.particles.positions, atol=1e-12)
        assert res.trajectory.shape == one.trajectory.shape and res.diverged_at == -1
    # one of several runs diverging does not stop the others
    batch = mf.solve_batch(prob, inits[:2], "gd", step=[0.3, 1e4], iterations=100)
    assert batch[0].diverged_at == -1 and batch[1].diverged_at >= 0


def test_solve_batch_default_steps_equal_solve():
    """The batched default step (one vmapped power iteration over padded runs, padding
    masked out) gives each run the step mf.solve estimates for it alone."""
    shared = tanh_problem(mf.L2(1e-3))
    inits = [mf.init.admissible(shared.feature, m, key=k) for k, m in [(0, 5), (1, 12), (2, 9)]]
    for problems in (shared, [tanh_problem(mf.L2(1e-3), seed=s) for s in range(3)]):
        batch = mf.solve_batch(problems, inits, "gd", iterations=300)
        for b, (mu0, res) in enumerate(zip(inits, batch)):
            prob = problems if isinstance(problems, mf.Problem) else problems[b]
            one = mf.solve(prob, mu0, "gd", iterations=300, snapshots=0)
            first = mf.default_step(prob, mu0)
            assert res.step == pytest.approx(one.step, rel=1e-12)
            assert first >= one.step and one.step / first in (1.0, 0.5, 0.25, 0.125)  # halved or not
            np.testing.assert_allclose(res.history, one.history, rtol=1e-10, atol=1e-14)


def test_solve_batch_over_problems_with_sgd():
    probs = [tanh_problem(mf.L2(1e-3), seed=s) for s in range(3)]
    inits = [mf.init.admissible(p.feature, 6, key=s) for s, p in enumerate(probs)]
    batch = mf.solve_batch(probs, inits, "sgd", step=0.2, iterations=150, batch_size=8, keys=[3, 4, 5])
    for p, mu0, k, res in zip(probs, inits, [3, 4, 5], batch):
        one = mf.solve(p, mu0, "sgd", step=0.2, iterations=150, batch_size=8, key=k)
        np.testing.assert_allclose(res.history, one.history, rtol=1e-12)
