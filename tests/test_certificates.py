"""Dual certificates and duality gaps of the BLASSO, checked against independent
computations (the first variation, brute-force grids, a convex solve on a fine grid)."""

import jax.numpy as jnp
import numpy as np
import pytest

import measureflow as mf
from measureflow.certificates import certificate, duality_gap
from measureflow.deconvolution import blasso


def random_particles(rng, m, dim, scale=1.0):
    return mf.Particles(np.column_stack([scale * rng.normal(size=m), rng.uniform(size=(m, dim))]))


@pytest.fixture(scope="module")
def noisy():
    # the small problem of test_deconvolution.py (runs share their compilations)
    sig = mf.data.SpikeSignal(spikes=2, cutoff=6, noise=0.1, seed=4)
    return sig, blasso(sig, 0.6)


def test_first_variation_is_lambda_times_abs_r_minus_r_eta(noisy):
    sig, prob = noisy
    rng = np.random.default_rng(0)
    mu = random_particles(rng, 7, 1)
    thetas = jnp.asarray(np.column_stack([rng.normal(size=11), rng.uniform(size=11)]))
    eta = mf.certificates.eta_function(prob, mu)(thetas[:, 1:])
    r = thetas[:, 0]
    np.testing.assert_allclose(prob.first_variation(mu, thetas), 0.6 * (jnp.abs(r) - r * eta), atol=1e-12)


def _brute_sup(eta, dim, n, zoom, top=4, levels=3):
    """sup |η| by brute force, without derivatives: a uniform n^d grid, then ``levels``
    rounds of uniform zoom^d grids over the cells around the best points so far."""
    def grid(lo, h, k):
        axes = np.meshgrid(*[lo[a] + h * np.arange(k) for a in range(dim)], indexing="ij")
        return np.stack([a.ravel() for a in axes], axis=1)

    G, h = grid(np.zeros(dim), 1.0 / n, n), 1.0 / n
    vals = np.abs(np.asarray(eta(G)))
    centers = G[np.argsort(vals)[-top:]]
    best = vals.max()
    for _ in range(levels):
        found = []
        for c in centers:
            fine = grid(c - h, 2 * h / (zoom - 1), zoom)
            v = np.abs(np.asarray(eta(fine)))
            found.append((v.max(), fine[np.argmax(v)]))
        best = max(best, max(f[0] for f in found))
        centers, h = [max(found, key=lambda f: f[0])[1]], 2 * h / (zoom - 1)
    return best


@pytest.mark.parametrize("dim,n,zoom", [(1, 2000, 201), (2, 100, 101)])
def test_sup_of_eta_matches_a_brute_force_fine_grid(dim, n, zoom, noisy):
    if dim == 1:
        prob = noisy[1]
    else:
        sig = mf.data.SpikeSignal(spikes=2, dim=dim, cutoff=4, min_separation=0.3, noise=0.2, seed=1)
        prob = blasso(sig, 0.1)
    mu = random_particles(np.random.default_rng(dim), 5, dim, scale=2.0)
    cert = certificate(prob, mu)
    best = _brute_sup(cert.eta, dim, n, zoom)
    # the brute grids approach the sup from below (error ~ h²|η''|/2 with h = 2/(n·zoom))
    assert best <= cert.sup * (1 + 1e-13)
    np.testing.assert_allclose(cert.sup, best, rtol=1e-9)
    np.testing.assert_allclose(abs(float(cert.eta(cert.argmax[None])[0])), cert.sup, rtol=1e-14)


def _dual_by_numpy(sig, lam, mu, fine=20_000):
    """D(p), p = c (y − f_μ), c = min(1, 1/sup|η|), from the Dirichlet closed form: f_μ and
    η = (1/λ) mean((y − f_μ) ψ(x − t)) in NumPy, sup|η| on a fine uniform grid (relative
    error ~ (π f_c / fine)², negligible here)."""
    x, y = np.asarray(sig.X[:, 0]), np.asarray(sig.y)
    fc = sig.kernel.cutoff

    def psi(u):
        u = np.asarray(u)
        near = np.abs(np.sin(np.pi * u)) < 1e-12
        return np.where(near, 2 * fc + 1.0, np.sin((2 * fc + 1) * np.pi * u) / np.where(near, 1.0, np.sin(np.pi * u)))

    P, w = np.asarray(mu.positions), np.asarray(mu.weights)
    f = (w * P[:, 0]) @ psi(x[None, :] - P[:, 1:2])
    t = np.arange(fine) / fine
    sup = np.abs(psi(x[None, :] - t[:, None]) @ (y - f) / len(x) / lam).max()
    c = min(1.0, 1.0 / sup) if sup > 0 else 1.0
    p = c * (y - f)
    return np.mean(y * p - 0.5 * p**2), sup


@pytest.fixture(scope="module")
def grid_lasso_value(noisy):
    """An upper bound on F* independent of the certificate code (FISTA on a fine grid)."""
    return _fista_lasso_on_grid(noisy[0], 0.6)


def test_duality_gap_is_nonnegative_and_consistent(noisy, grid_lasso_value):
    """For non-optimal μ: D(p) equals an independent NumPy computation, D(p) ≤ F* (checked
    against an upper bound on F* from a convex solve, not only against F(μ)), and
    relative = gap / D."""
    sig, prob = noisy
    rng = np.random.default_rng(3)
    for scale in [0.0, 0.5, 20.0]:
        mu = random_particles(rng, 6, 1, scale) if scale else mf.init.admissible(prob.feature, 6)
        g = duality_gap(prob, mu, grid=256)
        dual, sup = _dual_by_numpy(sig, 0.6, mu)
        np.testing.assert_allclose(g.sup_eta, sup, rtol=1e-6)
        np.testing.assert_allclose(g.dual, dual, rtol=1e-6, atol=1e-12)
        assert g.dual <= grid_lasso_value  # weak duality: D(p) ≤ F* ≤ the grid LASSO value
        assert g.objective > grid_lasso_value  # these μ are far from optimal: a real gap
        np.testing.assert_allclose(g.objective, float(prob.objective(mu)), rtol=1e-13)
        np.testing.assert_allclose(g.objective, g.risk + g.penalty, rtol=1e-13)
        assert g.gap == g.objective - g.dual and g.scale == min(1.0, 1.0 / g.sup_eta)
        if g.dual > 0:
            assert g.relative == pytest.approx(g.gap / dual, rel=1e-6)
            assert g.relative == g.gap / g.dual


def _fista_lasso_on_grid(sig, lam, n_grid=2048, iters=30_000):
    """min_a ½ Σ_j (Ba − y)_j²/N + λ|a|₁ with spikes frozen on a fine grid (an upper bound
    on the BLASSO value F*), by plain FISTA in NumPy."""
    t = np.arange(n_grid) / n_grid
    x = np.asarray(sig.X[:, 0])
    B = np.asarray(sig.kernel.cross(jnp.asarray(t), jnp.asarray(x))).T  # (N, n_grid)
    y, N = np.asarray(sig.y), len(x)
    L = np.linalg.norm(B, 2) ** 2 / N
    a = z = np.zeros(n_grid)
    s = 1.0
    for _ in range(iters):
        grad = B.T @ (B @ z - y) / N
        a_new = np.sign(z - grad / L) * np.maximum(np.abs(z - grad / L) - lam / L, 0)
        s_new = (1 + np.sqrt(1 + 4 * s * s)) / 2
        z, a, s = a_new + (s - 1) / s_new * (a_new - a), a_new, s_new
    return 0.5 * np.mean((B @ a - y) ** 2) + lam * np.abs(a).sum()


def test_gap_goes_to_zero_and_brackets_an_independent_convex_solve(noisy, grid_lasso_value):
    sig, prob = noisy
    mu = mf.init.admissible(prob.feature, 16, key=0)
    gaps = []
    for _ in range(5):
        res = mf.solve(prob, mu, "fb", iterations=1500, step=None if not gaps else step, snapshots=12)
        step, mu = float(res.step), res.particles
        gaps.append(duality_gap(prob, mu))
    rel = [g.relative for g in gaps]
    assert all(a > b for a, b in zip(rel, rel[1:])) and rel[-1] < 1e-8
    F_grid = grid_lasso_value
    final = gaps[-1]
    assert final.dual <= F_grid  # D(p) ≤ F* ≤ the fine-grid LASSO value
    assert final.objective <= F_grid + 1e-9  # the particles beat the gridded convex solve


def test_certificate_input_errors(noisy):
    sig, prob = noisy
    mu = mf.init.admissible(prob.feature, 4)
    with pytest.raises(mf.ValidationError, match="L1 regularizer"):
        certificate(mf.Problem(prob.feature, "square", mf.L2(0.1), sig), mu)
    with pytest.raises(mf.ValidationError, match="square loss"):
        duality_gap(mf.Problem(prob.feature, "logistic", mf.L1(0.1), sig), mu)
    feat = mf.features.Custom(lambda th, x: th[0] * jnp.sin(th[1] * x[0]), dim=2, input_dim=1,
                              homogeneity=mf.features.Homogeneity.partial(1, 0))
    with pytest.raises(mf.ValidationError, match="torus"):
        certificate(mf.Problem(feat, "square", mf.L1(0.1), sig), mu)
    with pytest.raises(mf.InputTypeError, match="particles"):
        certificate(prob, np.zeros((4, 2)))
