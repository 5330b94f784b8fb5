"""The convex random-features baseline: positions frozen at μ0, only the weight coordinate
optimized, to optimality.

For a feature linear in its weight coordinate a (φ(θ) = a·ψ(θ̃, x)), with masses w_i,

    min_a  Σ_j s_j ℓ((A a)_j, y_j) + Σ_i w_i V(θ̃_i, a_i),     A_ji = w_i ψ(θ̃_i, x_j),

a convex problem: solved in closed form (square loss, V = 0 or λ|θ|²), by FISTA with a
KKT stopping test (V = λ|a|), or by L-BFGS (logistic loss, smooth V).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from .errors import ValidationError
from .particles import Particles
from .problem import Problem, check_pair
from .regularizers import L1, L2, NoRegularizer
from .sliding import blas_single_threaded
from .validation import check_int, check_real


@dataclasses.dataclass(frozen=True)
class BaselineResult:
    """particles: μ0's positions with optimized weights; objective: F at them;
    optimality: the KKT residual (max-norm of the minimal-norm subgradient, scaled by
    1/w_i as the particle gradient is); solver: which method ran."""

    particles: Particles
    objective: float
    optimality: float
    iterations: int
    solver: str


def design_matrix(problem: Problem, particles: Particles) -> np.ndarray:
    """A (n, m) with A_ji = w_i ψ(θ̃_i, x_j), ψ the feature at unit weight coordinate."""
    feat = problem.feature
    c = feat.weight_index
    if c is None:
        raise ValidationError(f"the random-features baseline optimizes the weight coordinate, but {feat.name} declares none")
    X = problem.data.evaluation_set().X
    Phi1, Phi2 = _unit_matrices(feat, particles.positions, X, c)
    if not np.allclose(np.asarray(Phi2), 2 * np.asarray(Phi1), rtol=1e-9, atol=1e-12):
        raise ValidationError(f"{feat.name} is not linear in its weight coordinate {c}; the random-features baseline needs it")
    return np.asarray(Phi1).T * np.asarray(particles.weights)[None, :]


# Compiled once per shape: run eagerly, each operation would be compiled on its own (dozens
# of compilations for every new m in a sweep).
@functools.partial(jax.jit, static_argnums=(0, 3))
def _unit_matrices(feature, P, X, c):
    """φ at weight coordinate 1 and at 2 (the linearity check): two (m, n) matrices."""
    return feature.matrix(P.at[:, c].set(1.0), X), feature.matrix(P.at[:, c].set(2.0), X)


_objective = jax.jit(lambda problem, particles: problem.objective(particles))
_smooth_velocity = jax.jit(
    lambda problem, particles: problem.first_variation_grad(particles, particles.positions, smooth_only=True))


def _with_weights(particles: Particles, c: int, a) -> Particles:
    return Particles.unchecked(particles.positions.at[:, c].set(jnp.asarray(a)), particles.weights)


def _particle_grad(problem, particles):
    return np.asarray(_smooth_velocity(problem, particles))


def random_features(problem: Problem, particles: Particles, *, tol: float = 1e-10,
                    max_iterations: int = 100_000) -> BaselineResult:
    """Optimize the weight coordinate of ``particles`` with positions frozen (see module doc)."""
    check_pair(problem, particles)
    tol = check_real("tol", tol, positive=True)
    max_iterations = check_int("max_iterations", max_iterations, minimum=1)
    c = problem.feature.weight_index
    A = design_matrix(problem, particles)
    data = problem.data.evaluation_set()
    s, y = np.asarray(data.sample_weights), np.asarray(data.y)
    w = np.asarray(particles.weights)
    reg = problem.regularizer
    square = problem.loss.quadratic

    if square and isinstance(reg, (NoRegularizer, L2)):
        lam = reg.lam if isinstance(reg, L2) else 0.0
        G = A.T @ (s[:, None] * A) + np.diag(2 * lam * w)
        rhs = A.T @ (s * y)
        a, *_ = np.linalg.lstsq(G, rhs, rcond=None) if lam == 0 else (np.linalg.solve(G, rhs),)
        solver, its = "normal equations", 1
    elif isinstance(reg, L1):
        a, its = _fista(problem, particles, A, s, y, w, reg.lam, tol, max_iterations)
        solver = "FISTA"
    elif reg.smooth:
        a, its = _lbfgs(problem, particles, c, tol, max_iterations)
        solver = "L-BFGS"
    else:
        raise ValidationError(f"no random-features solver for the regularizer {type(reg).__name__}")
    out = _with_weights(particles, c, a)
    return BaselineResult(out, float(_objective(problem, out)), _kkt(problem, out, c), its, solver)


def _kkt(problem, particles, c) -> float:
    """max_i dist(0, ∂_{a_i} F'(μ)(θ_i)): the mean-field optimality residual in a."""
    g = _particle_grad(problem, particles)[:, c]
    reg = problem.regularizer
    a = np.asarray(particles.positions[:, c])
    if isinstance(reg, L1):
        sub = np.where(a != 0, g + reg.lam * np.sign(a), np.maximum(np.abs(g) - reg.lam, 0.0))
        return float(np.max(np.abs(sub)))
    if not reg.smooth:
        return float("nan")
    gv = np.asarray(jax.vmap(jax.grad(reg.value))(particles.positions))[:, c]
    return float(np.max(np.abs(g + gv)))


def _fista(problem, particles, A, s, y, w, lam, tol, max_iterations):
    """FISTA on the mean-field scaled variable: gradient (1/w_i) ∂/∂a_i, prox λ|a_i|."""
    c = problem.feature.weight_index
    smooth_curv = problem.loss.curvature
    if smooth_curv is None:
        raise ValidationError(f"random_features needs a bound on the loss's curvature; {problem.loss.name!r} has none "
                              "(give the Loss curvature=)")
    # curvature of a ↦ R(Aa) in the metric diag(w): λmax(W^{-1/2} Aᵀ S A W^{-1/2}) ℓ''max
    B = A * np.sqrt(s)[:, None] / np.sqrt(w)[None, :]
    L = smooth_curv * np.linalg.norm(B, 2) ** 2
    eta = 1.0 / max(L, 1e-300)

    if problem.loss.quadratic:   # plain NumPy: cheaper than a dispatch per step
        AtS, Aty = A.T * s[None, :], A.T @ (s * y)
        G = AtS @ A

        def grad(a):
            return (G @ a - Aty) / w
    else:
        jgrad = jax.jit(lambda a: problem.first_variation_grad(
            _with_weights(particles, c, a), particles.positions, smooth_only=True)[:, c])

        def grad(a):
            return np.asarray(jgrad(jnp.asarray(a)))

    def soft(v, t):
        return np.sign(v) * np.maximum(np.abs(v) - t, 0.0)

    a = np.asarray(particles.positions[:, c], dtype=float)
    z, t = a.copy(), 1.0
    for it in range(1, max_iterations + 1):
        a_new = soft(z - eta * grad(z), eta * lam)
        if (z - a_new) @ (a_new - a) > 0:   # adaptive restart (O'Donoghue & Candès)
            t = 1.0
        t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
        z = a_new + (t - 1) / t_new * (a_new - a)
        a, t = a_new, t_new
        if it % 20 == 0:
            g = grad(a)
            sub = np.where(a != 0, g + lam * np.sign(a), np.maximum(np.abs(g) - lam, 0.0))
            if np.max(np.abs(sub)) < tol:
                break
    return a, it


def _lbfgs(problem, particles, c, tol, max_iterations):
    w = np.asarray(particles.weights)

    @jax.jit
    def fun(a):
        return jax.value_and_grad(lambda b: problem.objective(_with_weights(particles, c, b)))(a)

    def f(a):
        v, g = fun(jnp.asarray(a))
        return float(v), np.asarray(g)

    a0 = np.asarray(particles.positions[:, c], dtype=float)
    # the stopping test is on the mean-field gradient (1/w_i)∂F/∂a_i: scale gtol by min w
    res = scipy.optimize.minimize(f, a0, jac=True, method="L-BFGS-B",
                                  options={"maxiter": max_iterations, "gtol": tol * w.min(), "ftol": 0.0})
    return res.x, int(res.nit)


# -- certified BLASSO baselines (issue 15) --------------------------------------------------


@blas_single_threaded
def sliding_frank_wolfe(problem: Problem, *, tol: float = 1e-8, max_iterations: int = 100, local: str = "newton",
                        **certificate_options):
    """Sliding Frank–Wolfe (Denoyelle, Duval, Peyré, Soubies 2019) for the BLASSO, stopped
    on the duality-gap certificate: from ν = 0, repeat — certificate (sup|η| by grid +
    Newton); stop when the relative gap ≤ ``tol``; insert one spike at arg max |η|; re-fit
    the amplitudes on fixed positions and slide amplitudes and positions jointly; drop zero
    amplitudes. The re-fit and slide (``local``):

    - "newton" (default, the faster one measured): the local solve of
      :func:`~measureflow.deconvolution.deconvolve` — amplitudes in closed form for the signs
      of η (the fixed-position LASSO when the signs are right), then Newton on the support;
      the L-BFGS-B slide after an iteration without progress;
    - "lbfgsb": the published steps — the fixed-position LASSO by L-BFGS-B on a = a⁺ − a⁻,
      the joint slide by L-BFGS-B, then Newton on the support.

    Returns a :class:`~measureflow.deconvolution.DeconvolutionResult`."""
    import time

    from . import sliding
    from .deconvolution import _insert, local_solve, result_from

    data = sliding.problem_data(problem)
    tol = check_real("tol", tol, positive=True)
    max_iterations = check_int("max_iterations", max_iterations, minimum=1)
    if local not in ("newton", "lbfgsb"):
        raise ValidationError(f"local={local!r} is not one of 'newton', 'lbfgsb'")
    resolution = problem.feature.resolution
    t0 = time.perf_counter()
    nu, history, best = sliding.empty(data.dim), [], None
    for it in range(1, max_iterations + 1):
        gap, cert = sliding.certify(problem, nu, **certificate_options)
        history.append((time.perf_counter() - t0, gap.objective, gap.relative))
        if cert.sup <= 1.0 or gap.relative <= tol:
            return result_from(problem, nu, gap, "converged", history, it, "sliding Frank-Wolfe")
        stalled = best is not None and gap.objective >= best[1].objective * (1 - 1e-12)
        if best is None or gap.objective < best[1].objective:
            best = (nu, gap)
        nu = _insert(nu, cert, every=False)
        if local == "newton":
            nu = local_solve(data, nu, cert, resolution, use_slide=stalled)
        else:
            nu = sliding.slide(data, nu, move=False)
            nu = sliding.polish(data, sliding.slide(data, nu))
    nu, gap = best
    return result_from(problem, nu, gap, "max_iterations", history, max_iterations, "sliding Frank-Wolfe")


def _grid_operator(data, grid: int):
    """(apply A, apply Aᵀ, points) of the LASSO restricted to the uniform grid of ``grid``
    points per axis: A maps amplitudes on the grid (grid^d,) to the samples (n,). On a
    sample set that is itself a product grid, A = A₁ ⊗ A₂ is applied axis by axis."""
    d = data.dim
    X = np.asarray(data.X)
    pts1 = np.arange(grid) / grid
    axes = [np.unique(X[:, a]) for a in range(d)]
    G = np.stack([g.ravel() for g in np.meshgrid(*([pts1] * d), indexing="ij")], axis=1)
    if d == 2 and len(axes[0]) * len(axes[1]) == len(X):
        M = [np.asarray(data.kernel.cross(jnp.asarray(pts1), jnp.asarray(ax))).T for ax in axes]  # (N_a, grid)
        order = np.lexsort((X[:, 1], X[:, 0]))  # samples as an N₀ × N₁ image, first axis slowest
        n0, n1 = len(axes[0]), len(axes[1])

        def A(u):
            out = np.empty(len(X))
            out[order] = (M[0] @ u.reshape(grid, grid) @ M[1].T).ravel()
            return out

        def At(r):
            return (M[0].T @ r[order].reshape(n0, n1) @ M[1]).ravel()

        return A, At, G
    B = np.ones((len(X), len(G)))
    for a in range(d):
        B = B * np.asarray(data.kernel.cross(jnp.asarray(G[:, a]), jnp.asarray(X[:, a]))).T
    return (lambda u: B @ u), (lambda r: B.T @ r), G


@blas_single_threaded
def grid_lasso(problem: Problem, *, grid: int | None = None, tol: float = 1e-8, max_iterations: int = 10_000,
               check_every: int = 50, **certificate_options):
    """The BLASSO restricted to a fine uniform grid (``grid`` points per axis, default
    4096 in 1-D, 128 in 2-D): a finite LASSO, solved by FISTA with adaptive restarts
    (O'Donoghue & Candès), step 1/L, L = ‖A‖²_s by power iteration. Every ``check_every``
    iterations the grid measure is certified on the whole torus (the same certificate as
    :func:`~measureflow.deconvolution.deconvolve`): "converged" when the relative gap ≤
    ``tol``; "grid_optimal" when the grid problem is solved (its own KKT residual below
    1e-12·λ) but the spikes are off the grid, so the torus gap stays above ``tol``."""
    import time

    from . import sliding
    from .deconvolution import result_from

    data = sliding.problem_data(problem)
    tol = check_real("tol", tol, positive=True)
    max_iterations = check_int("max_iterations", max_iterations, minimum=1)
    check_every = check_int("check_every", check_every, minimum=1)
    grid = (4096 if data.dim == 1 else 128) if grid is None else check_int("grid", grid, minimum=2)
    t0 = time.perf_counter()
    A, At, G = _grid_operator(data, grid)
    s, y, lam = np.asarray(data.s), np.asarray(data.y), data.lam
    v = np.random.default_rng(0).standard_normal(len(G))
    for _ in range(50):  # power iteration on AᵀSA
        v = At(s * A(v))
        L = np.linalg.norm(v)
        v /= L
    L *= 1.01
    grad = lambda u: At(s * (A(u) - y))  # noqa: E731
    soft = lambda u, k: np.sign(u) * np.maximum(np.abs(u) - k, 0.0)  # noqa: E731
    a = np.zeros(len(G))
    z, tk, history, status, gap = a.copy(), 1.0, [], "max_iterations", None
    it, next_check = 0, check_every
    for it in range(1, max_iterations + 1):
        a_new = soft(z - grad(z) / L, lam / L)
        if (z - a_new) @ (a_new - a) > 0:
            tk = 1.0
        t_new = (1 + np.sqrt(1 + 4 * tk * tk)) / 2
        z = a_new + (tk - 1) / t_new * (a_new - a)
        a, tk = a_new, t_new
        if it >= next_check or it == max_iterations:
            next_check = max(it + check_every, int(1.25 * it))  # geometric: certificates cost O(log T)
            nz = a != 0
            nu = sliding.SignedMeasure(a[nz], G[nz])
            gap, _ = sliding.certify(problem, nu, **certificate_options)
            history.append((time.perf_counter() - t0, gap.objective, gap.relative))
            if gap.relative <= tol:
                status = "converged"
                break
            g = grad(a)
            kkt = np.where(nz, g + lam * np.sign(a), np.maximum(np.abs(g) - lam, 0.0))
            if np.max(np.abs(kkt)) <= 1e-12 * lam:
                status = "grid_optimal"
                break
    return result_from(problem, nu, gap, status, history, it, f"grid LASSO (FISTA, {grid}^{data.dim} grid)")
