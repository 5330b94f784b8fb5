"""Certificates of optimality for ℓ1-regularized problems over measures (BLASSO, DESIGN §6).

For F(μ) = Σ_j s_j ½(f_μ(x_j) − y_j)² + λ ∫|r| dμ with a partially 1-homogeneous feature
φ((r, θ̃), x) = r·φ₁(θ̃, x) (θ̃ on a torus), the particles represent the signed measure
ν = Σ_i w_i r_i δ_{θ̃_i} and F(μ) ≥ P(ν) = ½‖Aν − y‖²_s + λ|ν|. The dual certificate is

    η(θ̃) = (1/λ) Σ_j s_j (y_j − f_μ(x_j)) φ₁(θ̃, x_j),   i.e.   F'(μ)((r, θ̃)) = λ(|r| − r η(θ̃)),

and μ is optimal iff |η| ≤ 1 everywhere with η = sign(r_i) on the particles. For any μ,
p = c (y − f_μ) with c = min(1, 1/sup|η|) is feasible for the dual

    D(p) = Σ_j s_j (y_j p_j − ½ p_j²)   s.t.   sup_θ̃ |Σ_j s_j p_j φ₁(θ̃, x_j)| ≤ λ,

so F(μ) − D(p) ≥ F(μ) − F* (weak duality): a computable proof of near-optimality. sup|η| is
computed to full precision: |η| on a fine grid of the torus, then Newton's method from every
grid local maximum (and every particle).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .data.base import Sampler
from .errors import InputTypeError, ValidationError
from .particles import Particles
from .problem import Problem
from .regularizers import L1
from .validation import check_int

_CHUNK = 1 << 20  # grid points × samples evaluated per batch when scanning the torus


def _check(problem: Problem, particles: Particles):
    if not isinstance(problem, Problem):
        raise InputTypeError(f"problem must be a mf.Problem, got {type(problem).__name__}")
    if not isinstance(particles, Particles):
        raise InputTypeError(f"particles must be mf.Particles, got {type(particles).__name__}")
    feat, reg = problem.feature, problem.regularizer
    hom = feat.homogeneity
    if not (hom.kind == "partial" and hom.degree == 1):
        raise ValidationError(f"certificates need a partially 1-homogeneous feature (φ = r·φ₁(θ̃)); "
                              f"{feat.name} is {hom.kind}-homogeneous")
    if not isinstance(reg, L1) or reg.coordinate != hom.coordinate % feat.dim:
        raise ValidationError(f"certificates need the L1 regularizer on the weight coordinate, got {reg!r}")
    if reg.lam <= 0:
        raise ValidationError("certificates need λ > 0 (η = F'/λ)")
    if feat.position_domain != "torus":
        raise ValidationError(f"certificates maximize |η| over a compact torus; {feat.name} has positions "
                              f"in {feat.position_domain!r}")
    if isinstance(problem.data, Sampler):
        raise ValidationError("certificates need a fixed data set (Dataset/FixedDesign), not a Sampler")
    if particles.dim != feat.dim:
        raise ValidationError(f"particles have dimension p={particles.dim} but {feat.name} has dim={feat.dim}")


def _unit_lam(problem: Problem) -> Problem:
    """``problem`` with L1(1) in place of L1(λ). λ is static in the Problem pytree, so every
    new λ would compile the jitted functions below again (5 compilations, seconds, for a
    sweep over λ); they take the λ-free problem and λ as a traced argument instead."""
    import dataclasses as _dc

    from ._pytree import build

    reg = problem.regularizer
    if reg.lam == 1.0:
        return problem
    return build(Problem, data=problem.data, feature=problem.feature, loss=problem.loss,
                 regularizer=_dc.replace(reg, lam=1.0))


def _eta(problem: Problem, g: jax.Array, T: jax.Array, lam, noise: bool = False) -> jax.Array:
    """η(θ̃) = −(1/λ) Σ_j g_j φ₁(θ̃, x_j) for T (k, p − 1), g the residual s_j (f − y)_j;
    ``noise``: instead, max_j |φ₁(θ̃, x_j)| Σ_j |g_j| / λ, the scale of η's round-off (each
    term's error is ε × the kernel's scale, and the terms cancel to O(1) when λ is small)."""
    feat = problem.feature
    T = T.reshape(T.shape[0], -1).astype(g.dtype)
    thetas = jnp.insert(T, feat.weight_index, 1.0, axis=1)
    M = feat.matrix(thetas, problem.data.evaluation_set().X)
    if noise:
        return jnp.max(jnp.abs(M), axis=1) * jnp.sum(jnp.abs(g)) / lam
    return -(M @ g) / lam


_eta_jit = jax.jit(_eta)


def _array(T):
    """T for a jitted call: JAX arrays (and tracers) as they are, anything else as a NumPy
    array (a jitted function takes it directly; jnp.asarray would be one more dispatch)."""
    return T if isinstance(T, jax.Array) else np.asarray(T, dtype=float)

# one compiled call per problem shape; eager, the loss derivative's autodiff is traced
# op by op on every certificate (tens of ms)
_residual_jit = jax.jit(lambda problem, particles: problem.residual(particles))


@jax.jit
def _scan_jit(problem, particles, T, lam):
    g = problem.residual(particles)
    return g, _eta(problem, g, T, lam)


def eta_function(problem: Problem, particles: Particles) -> Callable[[jax.Array], jax.Array]:
    """θ̃ (k, p − 1) ↦ η(θ̃) (k,), the dual certificate of ``particles`` (module docstring)."""
    _check(problem, particles)
    pc, lam = _unit_lam(problem), problem.regularizer.lam
    g = _residual_jit(pc, particles)
    return lambda T: _eta_jit(pc, g, _array(T), lam)


def _default_grid(feature, k: int) -> int:
    res = feature.resolution
    if res is None:
        return 512 if k == 1 else 96
    # spacing res/16 in 1-D (res/8 in 2-D): grid maxima lie in the concave basin of the
    # true maxima, so Newton converges from them
    return int(math.ceil((16 if k == 1 else 8) / res))


def _pad(A: np.ndarray, size: int) -> np.ndarray:
    """A with its first row repeated up to ``size`` rows."""
    return np.concatenate([A, np.repeat(A[:1], size - len(A), axis=0)]) if size > len(A) else A


def _torus_grid(n: int, k: int) -> np.ndarray:
    axes = np.meshgrid(*([np.arange(n) / n] * k), indexing="ij")
    return np.stack([a.ravel() for a in axes], axis=1)


def _grid_local_maxima(vals: np.ndarray, n: int, k: int) -> np.ndarray:
    """Indices of the local maxima of |vals| on the periodic n^k grid (ties kept)."""
    a = np.abs(vals).reshape((n,) * k)
    is_max = np.ones_like(a, dtype=bool)
    shifts = [s for s in np.ndindex(*([3] * k)) if any(x != 1 for x in s)]
    for s in shifts:
        is_max &= a >= np.roll(a, tuple(x - 1 for x in s), axis=tuple(range(k)))
    return np.flatnonzero(is_max.ravel())


def _newton(H: jax.Array, gr: jax.Array):
    """(−H⁻¹ gr, whether H is negative definite); closed forms for k ≤ 2 (cheap to compile)."""
    k = gr.shape[0]
    if k == 1:
        return -gr / H[0, 0], H[0, 0] < 0
    if k == 2:
        det = H[0, 0] * H[1, 1] - H[0, 1] * H[1, 0]
        inv = jnp.array([[H[1, 1], -H[0, 1]], [-H[1, 0], H[0, 0]]]) / det
        return -inv @ gr, (H[0, 0] < 0) & (det > 0)
    return -jnp.linalg.solve(H, gr), jnp.all(jnp.isfinite(jnp.linalg.cholesky(-H)))


#: Newton stops once every start's proposed step is below this fraction of the grid
#: spacing h: the value then moves by ≲ ½|η''|(1e-8 h)², with |η''|h² = O(1) by the choice
#: of the grid — below float64 resolution. (A fixed absolute tolerance stalls: round-off
#: in η' keeps proposing steps of ~1e-12.)
_STEP_TOL = 1e-8
#: ... or once the first-order gain |∇η·step| of every start is below this multiple of the
#: round-off of η there (ε·max|φ₁|·Σ_j|g_j|/λ): the value can no longer change visibly
_GAIN_TOL = 8 * np.finfo(float).eps


@functools.partial(jax.jit, static_argnames=("steps",))
def _refine(problem: Problem, g: jax.Array, starts: jax.Array, spacing, lam, steps: int):
    """Maximize σ·η from each start (σ = sign η there) by safeguarded Newton: the Newton
    step when the Hessian is negative definite, else a gradient step; steps of length
    ≤ ``spacing`` (the trust radius); a step is kept only if it does not decrease σ·η,
    else the radius halves. At most ``steps`` steps, fewer once every start has converged
    (proposed step ≤ 1e-8·spacing, or its predicted gain below the round-off of η)."""

    def h(t, sigma):
        return sigma * _eta(problem, g, t[None], lam)[0]

    def step_one(t, val, radius, sigma, noise):
        gr, H = jax.grad(h)(t, sigma), jax.hessian(h)(t, sigma)
        newton, concave = _newton(H, gr)
        ok = concave & jnp.all(jnp.isfinite(newton))
        step = jnp.where(ok, newton, gr / jnp.maximum(jnp.max(jnp.abs(gr)), 1e-300) * radius)
        step = step * jnp.minimum(1.0, radius / jnp.maximum(jnp.max(jnp.abs(step)), 1e-300))
        cand = t + step
        cval = h(cand, sigma)
        better = cval >= val
        # done: the step is negligible, or the gain it predicts (first order) is below the
        # round-off of evaluating η — then no step can raise the value visibly (a rejected
        # round-off step would otherwise halve the radius ~30 times before the step test holds)
        gain = jnp.abs(gr @ step)
        active = (jnp.max(jnp.abs(step)) > _STEP_TOL * spacing) & (gain > _GAIN_TOL * noise)
        return (jnp.where(better, cand, t), jnp.where(better, cval, val),
                jnp.where(better, radius, radius / 2), active)

    vals0 = jax.vmap(lambda t: _eta(problem, g, t[None], lam)[0])(starts)
    noise = _eta(problem, g, starts, lam, noise=True)
    sigma = jnp.where(vals0 >= 0, 1.0, -1.0)
    radius0 = jnp.full(starts.shape[0], spacing, starts.dtype)

    def cond(state):
        i, *_, active = state
        return (i < steps) & active

    def body(state):
        i, t, val, radius, _ = state
        t, val, radius, active = jax.vmap(step_one)(t, val, radius, sigma, noise)
        return i + 1, t, val, radius, jnp.any(active)

    init = (0, starts, sigma * vals0, radius0, jnp.asarray(True))
    _, t, val, _, _ = jax.lax.while_loop(cond, body, init)
    return jnp.mod(t, 1.0), sigma * val


@dataclasses.dataclass(frozen=True)
class Certificate:
    """The dual certificate η of a particle measure and its sup over the torus.

    sup              sup |η| (full precision)
    argmax           a maximizer (k,)
    maxima           refined local maxima of |η| (K, k) and their values η (K,)
    grid, grid_eta   the scanning grid (n^k, k) and η on it
    eta              θ̃ (q, k) ↦ η(θ̃) (q,)
    """

    sup: float
    argmax: np.ndarray
    maxima: np.ndarray
    maxima_eta: np.ndarray
    grid: np.ndarray
    grid_eta: np.ndarray
    eta: Callable = dataclasses.field(repr=False)

    def __call__(self, positions) -> np.ndarray:
        P = np.asarray(positions, dtype=float)
        return np.asarray(self.eta(P.reshape(P.shape[0], -1) if P.ndim > 1 else P[:, None]))


@dataclasses.dataclass(frozen=True)
class GridScan:
    """The first stage of :func:`certificate`: η on the uniform grid of the torus.

    grid, values   the grid (n^k, k) and η on it;  n  points per axis
    maxima         indices of the grid local maxima of |η| (periodic, ties kept)
    eta            θ̃ (q, k) ↦ η(θ̃);  problem, lam, residual  what the Newton stage needs
    max(|values|) ≤ sup|η|: a grid value above 1 already proves the measure not optimal."""

    grid: np.ndarray
    values: np.ndarray
    n: int
    maxima: np.ndarray
    eta: Callable = dataclasses.field(repr=False)
    problem: Problem = dataclasses.field(repr=False)
    lam: float
    residual: jax.Array = dataclasses.field(repr=False)


def grid_scan(problem: Problem, particles: Particles, *, grid: int | None = None) -> GridScan:
    """η of ``particles`` on a uniform grid of ``grid`` points per axis (default: 16 per
    kernel resolution in 1-D, 8 in 2-D) and the grid's local maxima of |η|."""
    _check(problem, particles)
    pc, lam = _unit_lam(problem), problem.regularizer.lam
    feat = problem.feature
    k = feat.dim - 1
    n = _default_grid(feat, k) if grid is None else check_int("grid", grid, minimum=4)
    G = _torus_grid(n, k)
    per = max(1, _CHUNK // max(problem.data.evaluation_set().n, 1))
    if per >= len(G):  # one chunk: residual and grid values in one compiled call
        g, vals = _scan_jit(pc, particles, G, lam)
        vals = np.asarray(vals)
    else:
        g = _residual_jit(pc, particles)
        padded = _pad(G, -(-len(G) // per) * per)  # equal chunks: one compilation
        vals = np.concatenate([np.asarray(_eta_jit(pc, g, padded[i:i + per], lam))
                               for i in range(0, len(padded), per)])[:len(G)]
    eta = lambda T: _eta_jit(pc, g, _array(T), lam)  # noqa: E731
    return GridScan(G, vals, n, _grid_local_maxima(vals, n, k), eta, pc, lam, g)


def certificate(problem: Problem, particles: Particles, *, grid: int | None = None,
                newton_steps: int = 30) -> Certificate:
    """η of ``particles`` and sup|η| over the torus: |η| on a uniform grid of ``grid``
    points per axis (default: 16 per kernel resolution in 1-D, 8 in 2-D), then
    safeguarded Newton from every grid local maximum and every particle position."""
    scan = grid_scan(problem, particles, grid=grid)
    newton_steps = check_int("newton_steps", newton_steps, minimum=0)
    pc, lam, g, eta, G, vals, n = scan.problem, scan.lam, scan.residual, scan.eta, scan.grid, scan.values, scan.n
    feat = problem.feature
    k = feat.dim - 1
    starts = G[scan.maxima]
    P = np.asarray(particles.positions, dtype=float)
    starts = np.vstack([starts, np.mod(np.delete(P, feat.weight_index, axis=1), 1.0)])
    size = 1 << max(6, int(math.ceil(math.log2(len(starts)))))  # power-of-two batches ≥ 64: few compilations
    T, V = _refine(pc, g, _pad(starts, size), 1.0 / n, lam, newton_steps)
    T, V = np.asarray(T)[:len(starts)], np.asarray(V)[:len(starts)]
    best_grid = int(np.argmax(np.abs(vals)))
    if np.max(np.abs(V), initial=0.0) >= abs(vals[best_grid]):
        i = int(np.argmax(np.abs(V)))
        sup, arg = float(abs(V[i])), T[i]
    else:
        sup, arg = float(abs(vals[best_grid])), G[best_grid]
    keep = np.abs(V) > 0
    return Certificate(sup=sup, argmax=arg, maxima=T[keep], maxima_eta=V[keep], grid=G, grid_eta=vals, eta=eta)


@dataclasses.dataclass(frozen=True)
class DualityGap:
    """F(μ) − D(p) ≥ F(μ) − F*, with its parts.

    objective  F(μ) = risk + penalty          dual     D(p), p = scale·(y − f_μ)
    gap        objective − dual ≥ 0           relative gap / dual (≥ (F − F*)/F* when dual > 0)
    sup_eta    sup |η|                        scale    min(1, 1/sup_eta)
    """

    objective: float
    risk: float
    penalty: float
    dual: float
    gap: float
    relative: float
    sup_eta: float
    scale: float


@jax.jit
def _primal_dual(problem: Problem, particles: Particles, scale):
    """(R(f_μ), ∫V dμ, D(p)) with p = scale·(y − f_μ)."""
    data = problem.data.evaluation_set()
    p = scale * (data.y - problem.predict(particles, data.X))
    return problem.risk(particles), problem.penalty(particles), data.sample_weights @ (data.y * p - 0.5 * p**2)


def duality_gap(problem: Problem, particles: Particles, *, cert: Certificate | None = None,
                **certificate_options) -> DualityGap:
    """The duality gap of ``particles`` for the square loss (module docstring); ``cert``
    reuses a computed :func:`certificate`."""
    _check(problem, particles)
    if not problem.loss.quadratic:
        raise ValidationError(f"duality_gap is implemented for the square loss, not {problem.loss.name!r}")
    cert = certificate(problem, particles, **certificate_options) if cert is None else cert
    s = min(1.0, 1.0 / cert.sup) if cert.sup > 0 else 1.0
    risk, penalty, dual = (float(v) for v in _primal_dual(_unit_lam(problem), particles, s))
    penalty *= problem.regularizer.lam   # L1 is linear in λ
    objective = risk + penalty
    gap = objective - dual
    relative = gap / dual if dual > 0 else math.inf
    return DualityGap(objective, risk, penalty, dual, gap, relative, cert.sup, s)
