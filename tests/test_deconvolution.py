"""Sparse spike deconvolution: kernels, the Spikes feature, spike signals, the conic
geometry and its default step, particle extraction, and a small recovery."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import measureflow as mf
from measureflow.data.spikes import grid_points
from measureflow.deconvolution import blasso, extract_spikes, recovery_errors
from measureflow.kernels import Dirichlet, Gaussian

# -- kernels ----------------------------------------------------------------------------


def test_dirichlet_matches_its_closed_form_and_fft():
    k = Dirichlet(5)
    u = np.random.default_rng(0).uniform(-1, 1, 200)
    np.testing.assert_allclose(k(u), np.sin(11 * np.pi * u) / np.sin(np.pi * u), rtol=1e-10, atol=1e-10)
    N = 64
    coef = np.fft.fft(np.asarray(k(np.arange(N) / N))).real / N  # ψ̂(k) = (1/N) Σ_j ψ(j/N) e^{−2iπkj/N}
    freqs = np.fft.fftfreq(N, 1 / N)
    np.testing.assert_allclose(coef, k.fourier(freqs), atol=1e-12)


def test_gaussian_is_the_periodized_gaussian_with_its_fourier_series():
    k = Gaussian(0.07)
    u = np.random.default_rng(1).uniform(0, 1, 50)
    direct = sum(np.exp(-((u - j) ** 2) / (2 * 0.07**2)) for j in range(-20, 21))
    np.testing.assert_allclose(k(u), direct, rtol=1e-13)
    N = 128
    coef = np.fft.fft(np.asarray(k(np.arange(N) / N))).real / N
    freqs = np.fft.fftfreq(N, 1 / N)
    np.testing.assert_allclose(coef, k.fourier(freqs), atol=1e-14)


@pytest.mark.parametrize("kernel", [Dirichlet(4), Gaussian(0.05)])
def test_kernel_cross_matrix_and_moments(kernel):
    rng = np.random.default_rng(2)
    t, x = jnp.asarray(rng.uniform(0, 1, 7)), jnp.asarray(rng.uniform(0, 1, 9))
    np.testing.assert_allclose(kernel.cross(t, x), kernel(x[None, :] - t[:, None]), atol=1e-12)
    # A_j = ‖ψ^(j/2)‖²_{L²}: quadrature of autodiff derivatives on a fine grid (exact rule
    # for these trigonometric / rapidly decaying spectra)
    u = jnp.arange(4096) / 4096
    d1 = jax.jit(jax.vmap(jax.grad(lambda v: kernel(v))))(u)
    d2 = jax.jit(jax.vmap(jax.grad(jax.grad(lambda v: kernel(v)))))(u)
    A0, A2, A4 = kernel.moments()
    np.testing.assert_allclose([np.mean(kernel(u) ** 2), np.mean(d1**2), np.mean(d2**2)], [A0, A2, A4], rtol=1e-10)


def test_kernel_errors():
    with pytest.raises(mf.ValidationError, match="cutoff"):
        Dirichlet(0)
    with pytest.raises(mf.ValidationError, match="width"):
        Gaussian(0.5)
    with pytest.raises(mf.InputTypeError, match="kernel"):
        mf.features.Spikes("dirichlet")
    with pytest.raises(mf.ValidationError, match="dim=3"):
        mf.features.Spikes(Dirichlet(3), dim=3)


# -- the Spikes feature -----------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2])
def test_spikes_matrix_call_and_gradients_vs_finite_differences(dim):
    feat = mf.features.Spikes(Dirichlet(3), dim=dim)
    assert feat.dim == dim + 1 and feat.input_dim == dim and feat.weight_index == 0
    rng = np.random.default_rng(3)
    thetas = jnp.asarray(np.column_stack([rng.normal(size=5), rng.uniform(size=(5, dim))]))
    X = jnp.asarray(rng.uniform(size=(6, dim)))
    direct = jax.jit(jax.vmap(lambda th: jax.vmap(lambda x: feat(th, x))(X)))(thetas)
    np.testing.assert_allclose(feat.matrix(thetas, X), direct, atol=1e-12)
    # φ = r·Π ψ(x_a − t_a): gradient in θ vs central differences
    th, x = thetas[0], X[0]
    grad = jax.jit(jax.grad(feat))(th, x)
    h = 1e-6
    E = np.eye(dim + 1) * h
    phi = jax.jit(jax.vmap(feat, (0, None)))
    fd = (phi(th + E, x) - phi(th - E, x)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-7)
    # 1-homogeneous in r
    np.testing.assert_allclose(feat(th.at[0].multiply(2.5), x), 2.5 * feat(th, x), rtol=1e-12)


@pytest.mark.parametrize("dim", [1, 2])
def test_unit_norms_equal_the_grid_norms_of_psi_and_its_derivatives(dim):
    feat = mf.features.Spikes(Dirichlet(3), dim=dim)
    X = jnp.asarray(grid_points(9, dim))  # 9 > 2·f_c + 1... products of degree ≤ 2f_c are exact
    t = jnp.asarray(np.random.default_rng(4).uniform(size=dim))
    phi1 = lambda tt, x: feat(jnp.concatenate([jnp.ones(1), tt]), x)  # noqa: E731
    val, grad, hess = jax.jit(jax.vmap(lambda x: (phi1(t, x), jax.grad(phi1)(t, x), jax.hessian(phi1)(t, x))))(X)
    n = feat.unit_norms()
    gram = grad.T @ grad / len(X)
    np.testing.assert_allclose(np.mean(val**2), n.value, rtol=1e-10)
    np.testing.assert_allclose(np.linalg.eigvalsh(gram).max(), n.grad, rtol=1e-10)
    np.testing.assert_allclose(np.trace(gram), n.grad_trace, rtol=1e-10)
    np.testing.assert_allclose(np.mean(np.sum(hess**2, axis=(1, 2))), n.hess, rtol=1e-10)
    np.testing.assert_allclose(np.abs(val @ grad / len(X)).max(), 0.0, atol=1e-9 * n.value)


@pytest.mark.parametrize("dim,m", [(1, 13), (2, 16), (2, 20)])
def test_admissible_init_is_zero_weights_on_a_grid_covering_the_torus(dim, m):
    feat = mf.features.Spikes(Dirichlet(3), dim=dim)
    mu0 = mf.init.admissible(feat, m, key=5)
    P = np.asarray(mu0.positions)
    assert np.all(P[:, 0] == 0) and np.all((P[:, 1:] >= 0) & (P[:, 1:] < 1))
    assert mf.init.check_support(feat, mu0, warn=False).ok
    assert len(np.unique(np.round(P[:, 1:], 12), axis=0)) == m
    wrapped = feat.wrap(jnp.asarray(P) + jnp.concatenate([jnp.zeros(1), jnp.full(dim, 1.25)]))
    np.testing.assert_allclose(np.mod(wrapped[:, 1:] - P[:, 1:], 1.0), 0.25, atol=1e-12)


# -- spike signals ----------------------------------------------------------------------


def _l2_loss_fourier(kernel, pos_a, amp_a, pos_b, amp_b):
    """½‖ψ*(ν_a − ν_b)‖²_{L²(T)} by Parseval (1-D)."""
    k, c = kernel.spectrum()
    spec = lambda P, A: (A[None, :] * np.exp(-2j * np.pi * np.outer(k, P))).sum(1)  # noqa: E731
    return 0.5 * np.sum(c**2 * np.abs(spec(pos_a, amp_a) - spec(pos_b, amp_b)) ** 2)


@pytest.mark.parametrize("kernel", [Dirichlet(6), Gaussian(0.04)])
def test_grid_square_loss_is_the_exact_l2_loss(kernel):
    sig = mf.data.SpikeSignal.from_spikes([0.1, 0.45, 0.8], [1.0, -1.5, 2.0], kernel=kernel,
                                          grid=mf.data.spikes.min_grid(kernel))
    rng = np.random.default_rng(6)
    pos, amp = rng.uniform(size=4), rng.normal(size=4)
    prob = mf.Problem(mf.features.Spikes(kernel), "square", None, sig)
    mu = mf.Particles(np.column_stack([amp * 4, pos]))  # masses 1/4: ν = Σ amp_i δ_{pos_i}
    exact = _l2_loss_fourier(kernel, pos, amp, np.asarray(sig.positions[:, 0]), np.asarray(sig.amplitudes))
    np.testing.assert_allclose(prob.risk(mu), exact, rtol=1e-12)
    if isinstance(kernel, Dirichlet):  # one point fewer: the rule misses frequency 2f_c
        coarse = mf.data.FixedDesign.torus_grid(2 * kernel.cutoff, 1, lambda X: mf.data.spikes.filtered(
            kernel, np.asarray(sig.positions), np.asarray(sig.amplitudes), X))
        assert abs(float(mf.Problem(prob.feature, "square", None, coarse).risk(mu)) - exact) > 1e-6 * exact


def test_spike_signal_draws_separated_spikes_reproducibly():
    sig = mf.data.SpikeSignal(spikes=4, dim=2, cutoff=3, min_separation=0.3, noise=0.1, seed=7)
    again = mf.data.SpikeSignal(spikes=4, dim=2, cutoff=3, min_separation=0.3, noise=0.1, seed=7)
    np.testing.assert_array_equal(sig.y, again.y)
    assert sig.X.shape == (14**2, 2) and sig.separation > 0.3
    assert np.all(np.abs(sig.amplitudes) >= 1) and sig.feature == mf.features.Spikes(Dirichlet(3), 2)
    np.testing.assert_allclose(np.std(np.asarray(sig.y - sig.clean)), 0.1, rtol=0.2)
    pos = mf.data.SpikeSignal(spikes=3, cutoff=8, signs="positive", seed=1)
    assert np.all(pos.amplitudes > 0)


def test_spike_signal_errors():
    with pytest.raises(mf.ValidationError, match=r"grid=24 cannot represent the cut-off f_c=12.*grid >= 25"):
        mf.data.SpikeSignal(spikes=3, cutoff=12, grid=24)
    with pytest.raises(mf.ValidationError, match="grid=.*cannot represent"):
        mf.data.SpikeSignal(spikes=3, kernel=Gaussian(0.02), grid=64)
    with pytest.raises(mf.ValidationError, match="fewer than 5 fit"):
        mf.data.SpikeSignal(spikes=5, cutoff=8, min_separation=0.25)
    with pytest.raises(mf.ValidationError, match="either kernel= or cutoff="):
        mf.data.SpikeSignal(spikes=2, cutoff=4, kernel=Dirichlet(4))
    with pytest.raises(mf.ValidationError, match="signs"):
        mf.data.SpikeSignal(spikes=2, cutoff=4, signs="negative")


# -- the conic geometry and its default step ----------------------------------------------


# One small noisy problem, one number of particles and one run length for the tests below
# (and test_certificates.py): runs then share their compilations.
SMALL = dict(spikes=2, cutoff=6, noise=0.1, seed=4)
LAM, M, RUN = 0.6, 16, dict(iterations=1500, snapshots=12)


def small_problem():
    sig = mf.data.SpikeSignal(**SMALL)
    return sig, blasso(sig, LAM)


def test_conic_metric_scales_the_position_step_by_s_over_r2_plus_eps():
    sig, prob = small_problem()
    geom = mf.geometry.get(None, prob.feature)
    assert isinstance(geom, mf.geometry.Conic)  # the feature's default geometry
    s, eps = geom.constants(prob)
    n = prob.feature.unit_norms()
    np.testing.assert_allclose(s, n.value / n.grad)
    np.testing.assert_allclose(eps, np.mean(np.asarray(sig.y) ** 2) / n.value)
    P = jnp.asarray([[0.0, 0.2], [3.0, 0.7]])
    v = jnp.asarray([[1.0, 2.0], [-1.0, 5.0]])
    out = geom.resolve(prob).precondition(prob.feature, P, v)
    np.testing.assert_allclose(out, [[1.0, 2 * s / eps], [-1.0, 5 * s / (9 + eps)]])
    with pytest.raises(mf.ValidationError, match="resolve"):
        geom.precondition(prob.feature, P, v)


def test_curvature_bound_holds_along_the_run_where_the_initial_estimate_is_blind():
    """At μ0 (zero weights) the position curvature r²|ψ''| is invisible to the power
    iteration; the geometry's bound must dominate the curvature all along the run."""
    sig, prob = small_problem()
    mu0 = mf.init.admissible(prob.feature, M, key=0)
    bound = mf.geometry.get(None, prob.feature).curvature_bound(prob, mu0, smooth_only=True)
    step = mf.default_step(prob, mu0, method="fb")
    np.testing.assert_allclose(step, 1 / bound)
    res = mf.solve(prob, mu0, "fb", **RUN)
    assert np.all(np.diff(res.history) <= 1e-12)  # monotone: the step is safe
    curv = [mf.solvers.curvature(prob, mf.Particles(P, mu0.weights), method="fb", iterations=80)
            for P in res.trajectory[::2]]
    assert max(curv) <= bound
    # a worst case, but not a loose one: within 5x of the curvature met (the docstring
    # of Conic says 3-20x; here ≈ 4.3x)
    assert bound <= 5 * max(curv)
    # the Euclidean metric sees curvature r²‖ψ'‖² at the end that the init estimate misses
    end = mf.solvers.curvature(prob, res.particles, method="fb", geometry="euclidean", iterations=80)
    start = mf.solvers.curvature(prob, mu0, method="fb", geometry="euclidean", iterations=80)
    assert end > 20 * start


def _dirichlet_unit_norms(x, fc, t=0.37):
    """‖ψ‖², ‖ψ'‖², ‖ψ''‖² of ψ(· − t) in the grid quadrature (mean over x), from the
    cosine series ψ(u) = 1 + 2 Σ_{k≤f_c} cos 2πku differentiated term by term (checked
    against the closed form sin((2f_c+1)πu)/sin(πu))."""
    k = np.arange(1, fc + 1)[:, None]
    u = x - t
    psi = 1 + 2 * np.cos(2 * np.pi * k * u).sum(0)
    np.testing.assert_allclose(psi, np.sin((2 * fc + 1) * np.pi * u) / np.sin(np.pi * u), atol=1e-10)
    d1 = (-2 * (2 * np.pi * k) * np.sin(2 * np.pi * k * u)).sum(0)
    d2 = (-2 * (2 * np.pi * k) ** 2 * np.cos(2 * np.pi * k * u)).sum(0)
    return np.mean(psi**2), np.mean(d1**2), np.mean(d2**2)


def test_curvature_bound_term_by_term_and_tight_where_the_residual_vanishes():
    """The conic bound Σw·max(c0, s·c1) + √(2F0)·√((2s·c1 + s²·c2/4)/ε) (Conic.curvature_bound)
    with every constant computed here from the kernel's cosine series (s = c0/c1, ε = 2F0/c0,
    F0 = ½‖y‖² at zero weights), and its Gauss–Newton term attained: at the exact solution
    of a noiseless one-spike signal the residual term vanishes and the curvature is c0."""
    sig, prob = small_problem()
    c0, c1, c2 = _dirichlet_unit_norms(np.asarray(sig.X)[:, 0], SMALL["cutoff"])
    s = c0 / c1
    F0 = 0.5 * np.mean(np.asarray(sig.y) ** 2)
    eps = 2 * F0 / c0
    mu0 = mf.init.admissible(prob.feature, M, key=0)
    assert float(prob.objective(mu0)) == pytest.approx(F0, rel=1e-12)
    gauss_newton = float(np.sum(mu0.weights)) * max(c0, s * c1)
    residual = np.sqrt(2 * F0) * np.sqrt((2 * s * c1 + s * s * c2 / 4) / eps)
    bound = mf.geometry.get(None, prob.feature).curvature_bound(prob, mu0, smooth_only=True)
    assert bound == pytest.approx(gauss_newton + residual, rel=1e-10)
    assert gauss_newton == pytest.approx(13.0) and residual > 10  # both terms matter here
    one = mf.data.SpikeSignal(spikes=1, cutoff=SMALL["cutoff"], noise=0.0, seed=3)
    exact = blasso(one, LAM)
    truth = mf.Particles(np.column_stack([np.asarray(one.amplitudes), np.asarray(one.positions)]), np.ones(1))
    assert float(exact.risk(truth)) < 1e-20  # f_μ = y: no residual curvature
    curv = mf.solvers.curvature(exact, truth, method="fb", iterations=80)
    assert curv == pytest.approx(c0, rel=1e-9)


def test_euclidean_flow_stays_available_but_is_stiff():
    """One step of each geometry is the formula; in the Euclidean metric the init-based
    default step is unstable once weights grow, and a stable uniform step is slow."""
    sig, prob = small_problem()
    mu0 = mf.init.admissible(prob.feature, M, key=0)
    rng = np.random.default_rng(0)
    mu1 = mf.Particles(np.column_stack([rng.normal(0, 3, M), np.asarray(mu0.positions[:, 1])]))
    P, step = np.asarray(mu1.positions), 1e-3
    grad = np.asarray(prob.first_variation_grad(mu1, mu1.positions, smooth_only=True))
    s, eps = mf.geometry.Conic().constants(prob)
    for geometry, metric in [("euclidean", np.ones_like(P)),
                             ("conic", np.column_stack([np.ones(len(P)), s / (P[:, 0] ** 2 + eps)]))]:
        Q = P - step * metric * grad
        Q[:, 0] = np.sign(Q[:, 0]) * np.maximum(np.abs(Q[:, 0]) - step * LAM, 0)  # prox of λ|r|
        Q[:, 1] = np.mod(Q[:, 1], 1.0)
        one = mf.solve(prob, mu1, "fb", step=step, iterations=1, geometry=geometry, snapshots=0)
        np.testing.assert_allclose(one.particles.positions, Q, atol=1e-12)
    init_step = mf.default_step(prob, mu0, method="fb", geometry="euclidean")
    euclid_default = mf.solve(prob, mu0, "fb", step=init_step, geometry="euclidean", **RUN)
    assert np.max(np.diff(euclid_default.history)) > 0  # not a descent: the step is too large
    conic = mf.solve(prob, mu0, "fb", **RUN)
    # a uniform step stable at the solution (1 / its Euclidean curvature) is glacial
    stable = 1 / mf.solvers.curvature(prob, conic.particles, method="fb", geometry="euclidean", iterations=80)
    euclid_small = mf.solve(prob, mu0, "fb", step=stable, geometry="euclidean", **RUN)
    assert np.all(np.diff(euclid_small.history) <= 1e-12)
    assert conic.history[-1] < 0.2 * euclid_small.history[-1]


def test_splitting_particles_leaves_the_conic_forward_backward_flow_unchanged():
    sig, prob = small_problem()
    mu0 = mf.init.admissible(prob.feature, M // 2, key=2)
    a = mf.solve(prob, mu0, "fb", **RUN)
    b = mf.solve(prob, mu0.split(), "fb", **RUN)
    assert float(a.step) == float(b.step)  # the default step is split-invariant too
    np.testing.assert_allclose(b.history, a.history, rtol=0, atol=1e-10)
    Pa, Pb = np.asarray(a.particles.positions), np.asarray(b.particles.positions)
    np.testing.assert_allclose(Pb[:M // 2], Pa, atol=1e-10)
    np.testing.assert_allclose(Pb[M // 2:], Pa, atol=1e-10)
    np.testing.assert_allclose(b.trajectory[:, :M // 2], a.trajectory, atol=1e-10)


# -- extraction and a small recovery ------------------------------------------------------


def test_extract_spikes_merges_across_the_wrap_and_drops_negligible_particles():
    P = np.array([[2.0, 0.3], [6.0, 0.3 + 1e-5], [1.0, 0.99995], [3.0, 0.00003],
                  [1e-9, 0.6], [-4.0, 0.7], [0.0, 0.1]])
    mu = mf.Particles(P, np.full(7, 0.5))
    est = extract_spikes(mu, radius=1e-3)
    np.testing.assert_allclose(est.amplitudes, [2.0, 4.0, -2.0])
    np.testing.assert_allclose(est.positions[:, 0], [(0.5 * -0.00005 + 1.5 * 0.00003) / 2, 0.3 + 0.75e-5, 0.7], atol=1e-12)
    np.testing.assert_array_equal(est.counts, [2, 2, 1])
    err = recovery_errors(est, [[0.3], [0.0], [0.7], [0.5]], [4.0, 2.0, -2.5, 1.0])
    assert err.missing == 1 and err.spurious == 0
    np.testing.assert_allclose([err.position, err.amplitude], [1e-5, 0.5], rtol=1e-6)


def test_small_noiseless_recovery_with_default_steps():
    sig = mf.data.SpikeSignal(**{**SMALL, "noise": 0.0, "seed": 1})
    prob = blasso(sig, LAM)
    mu = mf.init.admissible(prob.feature, M, key=0)
    step = None
    for _ in range(2):
        res = mf.solve(prob, mu, "fb", step=step, **RUN)
        step, mu = float(res.step), res.particles
    est = extract_spikes(mu, radius=1e-2)
    err = recovery_errors(est, sig.positions, sig.amplitudes)
    assert err.missing == 0 and err.spurious == 0
    assert err.position < 3e-4  # BLASSO's own bias is O(λ): ≈ 1e-4 here
    assert err.amplitude < 2 * LAM / prob.feature.unit_norms().value  # shrinkage ≈ λ/‖ψ‖² per spike
    cert = mf.certificates.certificate(prob, mu)
    np.testing.assert_allclose(np.abs(cert(est.positions)), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.sign(cert(est.positions)), np.sign(est.amplitudes))
    assert cert.sup <= 1 + 1e-5
    assert mf.certificates.duality_gap(prob, mu, cert=cert).relative < 1e-5
