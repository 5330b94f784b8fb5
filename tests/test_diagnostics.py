"""mf.diagnostics: the Kozachenko–Leonenko entropy against exact entropies, and the Hessian
spectrum against a dense jax.hessian, at a constructed saddle and at a realizable optimum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
from scipy.special import polygamma

import measureflow as mf
from measureflow.diagnostics import entropy, hessian_spectrum, homogeneity_directions
from measureflow.features import Custom, ReLU, Sigmoid

# -- entropy --------------------------------------------------------------------------------

N_ENT = 20_000


def _sd(var_log_f, k, n=N_ENT):
    """The estimator's standard deviation, sqrt((Var log f(X) + ψ'(k)) / N) (see entropy)."""
    return np.sqrt((var_log_f + polygamma(1, k)) / n)


@pytest.mark.parametrize("d", [1, 2, 5])
@pytest.mark.parametrize("k", [1, 4])
def test_entropy_of_gaussians(d, k):
    X = np.random.default_rng(10 * d + k).standard_normal((N_ENT, d)) * 0.7
    exact = 0.5 * d * np.log(2 * np.pi * np.e * 0.49)
    # Var log f = Var(|x|²/(2σ²)) = d/2; d = 5 adds the documented O((k/N)^{2/d}) bias
    # (−0.02 at k = 1, −0.05 at k = 4 measured over 10 draws): one more sd per k
    tol = (5 + (k if d == 5 else 0)) * _sd(d / 2, k)
    assert abs(entropy(X, k=k) - exact) < tol


@pytest.mark.parametrize("d", [1, 2])
def test_entropy_of_uniforms_on_a_box(d):
    X = np.random.default_rng(d).uniform(-1.0, 2.0, (N_ENT, d))
    assert abs(entropy(X) - d * np.log(3.0)) < 5 * _sd(0.0, 1)


def test_entropy_of_the_uniform_in_dimension_5_torus_and_box():
    """On the torus (periodic distances) there is no boundary and the estimate is within the
    noise; on the cube the balls stick out of the support and it overshoots, by the
    documented O((k/N)^{1/d}) boundary bias (about +0.19 at N = 2·10⁴)."""
    rng = np.random.default_rng(5)
    X = rng.uniform(size=(N_ENT, 5))
    assert abs(entropy(X, boxsize=1.0)) < 5 * _sd(0.0, 1)
    box = entropy(X)
    assert 10 * _sd(0.0, 1) < box < 0.5


def test_entropy_is_invariant_under_translation_and_shifts_by_log_det_under_scaling():
    X = np.random.default_rng(0).standard_normal((2000, 3))
    H = entropy(X, k=3)
    assert abs(entropy(X + 5.0, k=3) - H) < 1e-12
    assert abs(entropy(X * 2.0, k=3) - (H + 3 * np.log(2.0))) < 1e-12


# -- Hessian spectrum -----------------------------------------------------------------------

RNG = np.random.default_rng(0)
X = RNG.standard_normal((50, 2))
Y = np.maximum(X @ [1.0, 0.5], 0) - np.maximum(X @ [-0.3, 1.0], 0)


def dense_reference(problem, particles):
    """Eigenvalues of W^{-1/2} ∇²F W^{-1/2} (dense jax.hessian) on the orthogonal complement
    of the flat directions (scipy null_space), and the Rayleigh quotients along them."""
    m, p = particles.positions.shape
    w = np.asarray(particles.weights)
    F = lambda q: problem.objective(mf.Particles.unchecked(q.reshape(m, p), particles.weights))  # noqa: E731
    H = np.asarray(jax.jit(jax.hessian(F))(jnp.asarray(particles.positions).ravel()))
    r = np.repeat(1 / np.sqrt(w), p)
    Hs = r[:, None] * H * r[None, :]
    D = homogeneity_directions(problem.feature, particles.positions)
    E = []
    for i in np.flatnonzero(np.linalg.norm(D, axis=1) > 0):
        e = np.zeros((m, p))
        e[i] = D[i] / np.linalg.norm(D[i])
        E.append(e.ravel())
    Q = scipy.linalg.null_space(np.array(E)) if E else np.eye(m * p)
    return np.linalg.eigvalsh(Q.T @ Hs @ Q), np.array([e @ Hs @ e for e in E])


def test_relu_spectrum_agrees_with_a_dense_hessian():
    prob = mf.Problem(ReLU(2), "square", mf.L2(0.01), mf.data.Dataset(X, Y))
    mu = mf.Particles(RNG.standard_normal((4, 3)), RNG.uniform(0.5, 1.5, 4) / 4)
    ev, rq = dense_reference(prob, mu)
    lan = hessian_spectrum(prob, mu, k=3, method="lanczos")
    assert lan.flat_count == 4 and lan.dimension == 12 and len(ev) == 8
    np.testing.assert_allclose(lan.lowest, ev[:3], atol=1e-10)
    np.testing.assert_allclose(lan.highest, ev[::-1][:3], atol=1e-10)
    np.testing.assert_allclose(lan.flat_rayleigh, rq, atol=1e-12)
    full = hessian_spectrum(prob, mu, k=8)
    assert full.method == "dense"
    np.testing.assert_allclose(full.lowest, ev, atol=1e-12)


def test_lanczos_without_flat_directions_on_120_coordinates():
    feat = Custom(lambda th, x: th[0] * jnp.tanh(th[1:] @ x), dim=3, input_dim=2)
    prob = mf.Problem(feat, "square", None, mf.data.Dataset(X, Y))
    mu = mf.Particles(RNG.standard_normal((40, 3)))
    ev, _ = dense_reference(prob, mu)
    s = hessian_spectrum(prob, mu, k=4, method="lanczos")
    assert s.flat_count == 0 and s.method == "lanczos"
    np.testing.assert_allclose(s.lowest, ev[:4], atol=1e-9)
    np.testing.assert_allclose(s.highest, ev[::-1][:4], atol=1e-9)


def test_partial_homogeneity_has_no_flat_position_direction():
    mu = mf.Particles(RNG.standard_normal((3, 3)))
    assert not homogeneity_directions(Sigmoid(2), mu.positions).any()
    D = homogeneity_directions(ReLU(2), mu.positions)  # (w, −a) per unit
    np.testing.assert_allclose(D, np.column_stack([mu.positions[:, :2], -mu.positions[:, 2]]))


def _teacher_problem():
    data = mf.data.TeacherStudent(2, 2, seed=1)  # exact population risk (arc-cosine kernel)
    return mf.Problem(ReLU(2), "square", None, data), data


def test_collapsed_student_is_a_saddle_with_a_negative_eigenvalue():
    """Both units of a 2-unit student on one ray: the best single-unit fit θ̂ (a critical
    point of the m = 1 problem, hence, by the mean-field invariance, of the 2-unit one)."""
    prob, _ = _teacher_problem()
    one = lambda th: prob.objective(mf.Particles.unchecked(th[None], jnp.ones(1)))  # noqa: E731
    value, grad = jax.jit(one), jax.jit(jax.grad(one))
    fit = scipy.optimize.minimize(lambda th: float(value(th)), np.array([0.2, 0.3, 1.0]),
                                  jac=lambda th: np.asarray(grad(th)), method="BFGS", options={"gtol": 1e-12})
    mu = mf.Particles(np.stack([fit.x, fit.x]))
    vel = np.asarray(jax.jit(jax.grad(lambda Q: prob.objective(mf.Particles.unchecked(Q, mu.weights))))(
        mu.positions)) / 0.5
    assert np.abs(vel).max() < 1e-8  # a critical point
    s = hessian_spectrum(prob, mu, k=2, method="dense")
    ev, rq = dense_reference(prob, mu)
    assert np.all(np.isfinite(ev))  # second derivatives of the kernel at parallel units
    np.testing.assert_allclose(s.lowest, ev[:2], atol=1e-10)
    print(f"collapsed student: lowest eigenvalues {s.lowest}, highest {s.highest[0]:.4g}")
    assert s.saddle() and s.lowest[0] < -0.1, s
    np.testing.assert_allclose(s.flat_rayleigh, 0.0, atol=1e-8)  # flat at a critical point


def test_realizable_optimum_has_no_negative_eigenvalue_beyond_the_flat_directions():
    prob, data = _teacher_problem()
    mu = data.teacher_particles()
    assert float(prob.objective(mu)) < 1e-14
    s = hessian_spectrum(prob, mu, k=4)
    assert s.flat_count == 2 and not s.saddle()
    # positive definite once the two rescalings are removed: they were the only zero modes
    assert s.lowest[0] > 1e-3, s
    np.testing.assert_allclose(s.flat_rayleigh, 0.0, atol=1e-12)
    ev, _ = dense_reference(prob, mu)
    np.testing.assert_allclose(s.lowest, ev, atol=1e-12)


def test_spectrum_of_split_particles_contains_the_unsplit_spectrum():
    """Mean-field scaling: the symmetric directions of a split measure carry the unsplit
    spectrum (the antisymmetric ones add the per-particle Hessians of F')."""
    feat = Custom(lambda th, x: th[0] * jnp.tanh(th[1:] @ x), dim=3, input_dim=2)
    prob = mf.Problem(feat, "square", mf.L2(0.1), mf.data.Dataset(X, Y))
    mu = mf.Particles(RNG.standard_normal((3, 3)))
    a = hessian_spectrum(prob, mu, k=9).lowest
    b = hessian_spectrum(prob, mu.split(), k=18).lowest
    assert all(np.min(np.abs(b - lam)) < 1e-10 for lam in a)


def test_arc_cosine_kernel_has_finite_second_derivatives_at_parallel_units():
    """The Hessian of the exact ReLU population risk at coincident units (the collapsed
    saddle): the kernel's second derivatives there are finite and match central differences
    of its (C¹) gradient, to the O(h) of the |α|³ term."""
    from measureflow.population import relu_kernel

    K = lambda ww: relu_kernel(ww[:1], ww[1:])[0, 0]  # noqa: E731
    hess, grad = jax.jit(jax.hessian(K)), jax.jit(jax.grad(K))
    rng, h = np.random.default_rng(1), 1e-6
    for _ in range(5):
        w = rng.standard_normal(3)
        W = np.stack([w, w])
        H = np.asarray(hess(W)).reshape(6, 6)
        fd = np.column_stack([(np.asarray(grad(W + h * E.reshape(2, 3))) - np.asarray(grad(W - h * E.reshape(2, 3))))
                              .ravel() / (2 * h) for E in np.eye(6)])
        assert np.all(np.isfinite(H))
        np.testing.assert_allclose(H, fd, atol=1e-5)


def test_smooth_only_is_the_hessian_of_the_risk():
    """For L1 (linear in the weight away from 0) the spectrum with smooth_only=True is that of
    the unregularized problem."""
    feat = Custom(lambda th, x: th[0] * jnp.tanh(th[1:] @ x), dim=3, input_dim=2, weight_index=0)
    mu = mf.Particles(RNG.standard_normal((3, 3)))
    l1 = hessian_spectrum(mf.Problem(feat, "square", mf.L1(0.3), mf.data.Dataset(X, Y)), mu, k=9, smooth_only=True)
    ev, _ = dense_reference(mf.Problem(feat, "square", None, mf.data.Dataset(X, Y)), mu)
    np.testing.assert_allclose(l1.lowest, ev, atol=1e-12)
