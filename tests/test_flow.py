"""mf.flow: the continuous-time gradient flow against independent computations (a matrix
exponential, SciPy's DOP853, gradient descent as η → 0), split invariance, statuses, and
one compilation per problem shape."""

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

import jax.numpy as jnp

import measureflow as mf
from measureflow.gradient_flow import _integrate_jit
from measureflow.features import Custom, ReLU

RNG = np.random.default_rng(0)
N, P, M = 30, 3, 5
X = RNG.standard_normal((N, P))
Y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * RNG.standard_normal(N)
LAM = 0.05
LINEAR = Custom(lambda th, x: th @ x, dim=P, input_dim=P)
PROB = mf.Problem(LINEAR, "square", mf.L2(LAM), mf.data.Dataset(X, Y))
MU = mf.Particles(RNG.standard_normal((M, P)), RNG.uniform(0.5, 1.5, M) / M)  # unequal masses


def _linear_system():
    """φ(θ, x) = θ·x, square loss, V = λ|θ|²: with θ̄ = Σ w_j θ_j, A = Σ s x xᵀ, b = Σ s y x,
    dθ_i/dt = −(A θ̄ − b) − 2λ θ_i, i.e. dΘ/dt = −K Θ + c for the stacked Θ (m p)."""
    w, s = np.asarray(MU.weights), np.full(N, 1.0 / N)
    A, b = (X * s[:, None]).T @ X, X.T @ (s * Y)
    K = np.kron(np.outer(np.ones(M), w), A) + 2 * LAM * np.eye(M * P)
    return K, np.tile(b, M)


def test_linear_feature_flow_is_the_matrix_exponential():
    K, c = _linear_system()
    ts = np.linspace(0.0, 3.0, 7)
    res = mf.flow(PROB, MU, 3.0, saveat=ts, rtol=1e-11, atol=1e-13)
    assert res.status == "converged" and res.accepted > 0
    # augmented linear system z = (Θ, 1): z(t) = expm(t [[−K, c], [0, 0]]) z(0)
    G = np.zeros((M * P + 1, M * P + 1))
    G[:-1, :-1], G[:-1, -1] = -K, c
    z0 = np.r_[np.asarray(MU.positions).ravel(), 1.0]
    for t, Pt in zip(ts, res.positions):
        np.testing.assert_allclose(Pt.ravel(), (scipy.linalg.expm(t * G) @ z0)[:-1], rtol=0, atol=1e-8)
    np.testing.assert_allclose(res.particles.positions, res.positions[-1], atol=1e-12)
    assert float(res.t_final) == 3.0
    np.testing.assert_allclose(res.history, [float(PROB.objective(mf.Particles(Pt, MU.weights))) for Pt in res.positions],
                               rtol=1e-12)
    assert np.all(np.diff(res.history) <= 1e-14)  # a gradient flow decreases F


def test_wfr_flow_agrees_with_scipy_dop853():
    """The WFR flow (masses and positions) against SciPy's DOP853 on a NumPy right-hand side:
    F'(μ)(θ) = r·(X θ) + λ|θ|² with the residual r = s (X θ̄ − y), θ̄ = Σ w θ."""
    alpha, beta = 1.5, 0.5
    s = np.full(N, 1.0 / N)

    def rhs(t, z):
        Th, w = z[: M * P].reshape(M, P), z[M * P:]
        r = s * (X @ (w @ Th) - Y)
        fv = X @ Th.T
        fv = r @ fv + LAM * np.sum(Th**2, 1)
        grad = (X.T @ r)[None, :] + 2 * LAM * Th
        return np.r_[(-beta * grad).ravel(), -alpha * w * fv]

    z0 = np.r_[np.asarray(MU.positions).ravel(), np.asarray(MU.weights)]
    ts = np.array([0.0, 0.5, 2.0])
    ref = scipy.integrate.solve_ivp(rhs, (0, 2.0), z0, method="DOP853", t_eval=ts, rtol=1e-12, atol=1e-14)
    res = mf.flow(PROB, MU, 2.0, saveat=ts, rtol=1e-10, atol=1e-12, wfr=(alpha, beta))
    assert res.status == "converged"
    np.testing.assert_allclose(res.positions.reshape(3, -1), ref.y[: M * P].T, atol=1e-8)
    np.testing.assert_allclose(res.weights, ref.y[M * P:].T, atol=1e-8)
    np.testing.assert_allclose(res.particles.weights, ref.y[M * P:, -1], atol=1e-8)
    assert not np.allclose(res.weights[-1], res.weights[0], atol=1e-3)  # the masses did move


def _tanh_problem():
    rng = np.random.default_rng(3)
    Xt = rng.standard_normal((40, 2))
    yt = np.tanh(Xt @ np.array([1.5, -1.0])) - 0.5 * np.tanh(Xt @ np.array([0.3, 1.2]))
    feat = Custom(lambda th, x: th[0] * jnp.tanh(th[1:] @ x), dim=3, input_dim=2)
    mu = mf.Particles(np.column_stack([rng.standard_normal(6), rng.standard_normal((6, 2))]))
    return mf.Problem(feat, "square", None, mf.data.Dataset(Xt, yt)), mu


def gd_flow_errors(t1=1.0, etas=(0.1, 0.05, 0.025)):
    """‖GD(η, t1/η steps) − flow(t1)‖_max for each η, on a tanh network (nonlinear)."""
    prob, mu = _tanh_problem()
    ref = mf.flow(prob, mu, t1, saveat=np.linspace(0, t1, 5), rtol=1e-11, atol=1e-13)  # 5 saves: shared compilation
    assert ref.status == "converged"
    errs = []
    for eta in etas:
        gd = mf.solve(prob, mu, "gd", step=eta, iterations=round(t1 / eta), snapshots=0)
        errs.append(float(np.max(np.abs(gd.particles.positions - ref.particles.positions))))
    return np.array(errs)


def test_gradient_descent_approaches_the_flow_at_first_order():
    errs = gd_flow_errors()
    ratios = errs[:-1] / errs[1:]
    print(f"GD − flow errors at η = 0.1, 0.05, 0.025: {errs}; ratios {ratios}")
    assert np.all(errs > 1e-6)  # a real discretization error, far above the flow's tolerance
    assert np.all((ratios > 1.8) & (ratios < 2.2)), ratios


@pytest.mark.parametrize("wfr", [None, (1.0, 1.0)], ids=["wasserstein", "wfr"])
def test_splitting_particles_leaves_the_flow_unchanged(wfr):
    prob, mu = _tanh_problem()
    ts = np.linspace(0, 2.0, 5)
    a = mf.flow(prob, mu, 2.0, saveat=ts, wfr=wfr)
    b = mf.flow(prob, mu.split(), 2.0, saveat=ts, wfr=wfr)
    m = mu.m
    assert a.status == b.status == "converged" and int(a.accepted) == int(b.accepted)
    for half in (slice(0, m), slice(m, 2 * m)):
        np.testing.assert_allclose(b.positions[:, half], a.positions, rtol=0, atol=1e-10)
        np.testing.assert_allclose(2 * b.weights[:, half], a.weights, rtol=0, atol=1e-10)
    np.testing.assert_allclose(b.history, a.history, rtol=0, atol=1e-10)
    if wfr is not None:
        assert not np.allclose(a.weights[-1], a.weights[0], atol=1e-3)


def test_exact_population_risk_flow_decreases_f_at_the_rate_of_the_velocity_norm():
    """On a ReLU teacher with the closed-form population risk: dF/dt = −Σ w_i |v_i|² at t = 0
    (a finite difference of the saved F against the velocities), and F decreases."""
    data = mf.data.TeacherStudent(3, 2, seed=1)
    prob = mf.Problem(ReLU(3), "square", None, data)
    mu = mf.init.admissible(ReLU(3), 8, key=2)
    h = 1e-4
    res = mf.flow(prob, mu, 1.0, saveat=[0.0, h, 0.5, 1.0], rtol=1e-10, atol=1e-12)
    F0 = float(prob.objective(mu))
    assert res.status == "converged" and abs(res.history[0] - F0) < 1e-14
    import jax

    g = np.asarray(jax.grad(lambda Q: prob.objective(mf.Particles.unchecked(Q, mu.weights)))(mu.positions))
    rate = -np.sum(g**2 / np.asarray(mu.weights)[:, None])  # −Σ w |v|², v = g / w
    np.testing.assert_allclose((res.history[1] - res.history[0]) / h, rate, rtol=1e-3)
    assert np.all(np.diff(res.history) < 0)


def test_one_compilation_for_new_times_and_tolerances():
    before = _integrate_jit._cache_size()
    mf.flow(PROB, MU, 1.0, saveat=np.linspace(0.0, 1.0, 7))
    after_first = _integrate_jit._cache_size()
    mf.flow(PROB, MU, 2.5, saveat=np.geomspace(0.1, 2.5, 7), rtol=1e-8, atol=1e-11)
    assert after_first - before <= 1 and _integrate_jit._cache_size() == after_first


def test_max_steps_and_divergence_are_reported():
    short = mf.flow(PROB, MU, 5.0, saveat=[0.0, 5.0], max_steps=3)
    assert short.status == "max_steps" and float(short.t_final) < 5.0
    assert np.all(np.isfinite(short.particles.positions)) and np.isinf(short.positions[-1]).all()
    assert np.isnan(short.objective)
    # V = −|θ|⁴ is unbounded below: dθ/dt = 4|θ|²θ blows up in finite time
    bad = mf.Problem(LINEAR, "square", lambda th: -jnp.sum(th**2) ** 2, mf.data.Dataset(X, Y))
    blow = mf.flow(bad, MU, 10.0)
    assert blow.status == "diverged" and float(blow.t_final) < 1.0


def test_torus_positions_are_wrapped_at_every_save_time():
    from measureflow.kernels import Dirichlet

    feat = mf.features.Spikes(Dirichlet(3))
    data = mf.data.FixedDesign.torus_grid(16, 1, lambda Z: np.cos(2 * np.pi * (Z[:, 0] - 0.02)))
    prob = mf.Problem(feat, "square", mf.L2(1e-3), data)
    mu = mf.Particles(np.array([[0.5, 0.99], [0.3, 0.5], [-0.2, 0.01]]))
    res = mf.flow(prob, mu, 2.0, saveat=[0.0, 1.0, 2.0])
    assert res.status == "converged"
    assert np.all((res.positions[..., 1] >= 0) & (res.positions[..., 1] < 1))
    assert res.positions[1, 0, 1] < 0.5  # the spike at 0.99 crossed 1 ≡ 0 towards the peak at 0.02
    np.testing.assert_allclose(res.particles.positions, res.positions[-1], atol=1e-12)
