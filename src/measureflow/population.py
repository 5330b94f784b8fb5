"""Closed-form Gaussian second moments of network units (DESIGN §6).

For x ~ N(0, I_d):

    E[relu(w·x) relu(v·x)] = |w||v| (sin α + (π − α) cos α) / (2π)        (arc-cosine, degree 1)
    E[erf(w·x) erf(v·x)]   = (2/π) arcsin(2 w·v / sqrt((1 + 2|w|²)(1 + 2|v|²)))  (arcsine)

with α the angle between w and v; and, for d = 1 with biases,
E[relu(w x + b) relu(v x + c)] = ∫_{lo}^{hi} (w x + b)(v x + c) dN(x) over the interval
where both are positive (Gaussian moments on an interval). With these kernels the
teacher–student square loss ½E[(f_μ − f* − ε)²] = ½(wᵀK_ss w − 2wᵀK_st c + cᵀK_tt c) + ½σ²
is a quadratic form in the masses w, c (:func:`quadratic_form`, evaluated in blocks). All
functions are differentiable everywhere they are used (including equal and parallel
arguments) and vectorized: (m, d), (k, d) → (m, k).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr


@jax.custom_jvp
def _arccos_profile(u):
    """J(u) = sqrt(1 − u²) + (π − arccos u) u, i.e. sin α + (π − α) cos α at u = cos α."""
    u = jnp.clip(u, -1.0, 1.0)
    return jnp.sqrt(1.0 - u * u) + (jnp.pi - jnp.arccos(u)) * u


@jax.custom_jvp
def _arccos_slope(u):
    """J'(u) = π − arccos u."""
    return jnp.pi - jnp.arccos(jnp.clip(u, -1.0, 1.0))


@_arccos_slope.defjvp
def _arccos_slope_jvp(primals, tangents):
    # J''(u) = 1/sin α is infinite at u = ±1, where a unit meets itself (the self pair of
    # a quadratic form). There u is computed as exactly ±1 and du is rounding noise, while
    # exactly du = O(sin α): the second-order term J''·du·du' = O(sin α) → 0. Below
    # sin²α = 1e3·eps (α ≈ 5e-7 in float64) it is set to its limit 0 — an error O(α) in
    # second derivatives of the population risk (curvature, Hessians), instead of NaN.
    (u,), (du,) = primals, tangents
    s = 1.0 - u * u
    near = s > 1e3 * jnp.finfo(jnp.result_type(u)).eps
    return _arccos_slope(u), jnp.where(near, du / jnp.sqrt(jnp.where(near, s, 1.0)), 0.0)


@_arccos_profile.defjvp
def _arccos_profile_jvp(primals, tangents):
    # J'(u) = π − arccos u is bounded on [−1, 1], although sqrt and arccos are not
    # differentiable at u = ±1 (parallel units): differentiate the sum, not its parts.
    (u,), (du,) = primals, tangents
    return _arccos_profile(u), _arccos_slope(u) * du


def _safe_norm(W):
    s = jnp.sum(W * W, axis=-1)
    pos = s > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, s, 1.0)), 0.0)


def relu_kernel(W: jax.Array, V: jax.Array) -> jax.Array:
    """E_{x~N(0,I)}[relu(w_i·x) relu(v_j·x)] for W (m, d), V (k, d); returns (m, k)."""
    nw, nv = _safe_norm(W), _safe_norm(V)
    denom = nw[:, None] * nv[None, :]
    ok = denom > 0
    u = jnp.where(ok, (W @ V.T) / jnp.where(ok, denom, 1.0), 0.0)
    return denom * _arccos_profile(u) / (2.0 * jnp.pi)


def erf_kernel(W: jax.Array, V: jax.Array) -> jax.Array:
    """E_{x~N(0,I)}[erf(w_i·x) erf(v_j·x)] for W (m, d), V (k, d); returns (m, k)."""
    sw = 1.0 + 2.0 * jnp.sum(W * W, axis=-1)
    sv = 1.0 + 2.0 * jnp.sum(V * V, axis=-1)
    # |argument| < 1 strictly (Cauchy–Schwarz and the +1's), so arcsin stays smooth
    return (2.0 / jnp.pi) * jnp.arcsin(2.0 * (W @ V.T) / jnp.sqrt(sw[:, None] * sv[None, :]))


_FAR = 40.0  # N(0,1) density and tails vanish in float64 (and float32) beyond ±40


def _positive_interval(w, b):
    """The interval {x: w x + b > 0} as (lo, hi) clipped to [−_FAR, _FAR]; empty as
    lo = _FAR, hi = −_FAR. Safe gradients at w = 0 (double where)."""
    nz = w != 0
    t = jnp.clip(-b / jnp.where(nz, w, 1.0), -_FAR, _FAR)
    lo = jnp.where(w > 0, t, -_FAR)
    hi = jnp.where(w < 0, t, _FAR)
    empty = ~nz & (b <= 0)
    return jnp.where(empty, _FAR, lo), jnp.where(empty, -_FAR, hi)


def relu_bias_kernel_1d(w, b, v, c) -> jax.Array:
    """E_{x~N(0,1)}[relu(w_i x + b_i) relu(v_j x + c_j)] for (m,) w, b and (k,) v, c.

    On the interval [lo, hi] where both are positive, with Gaussian moments
    M0 = Φ(hi) − Φ(lo), M1 = ϕ(lo) − ϕ(hi), M2 = M0 + lo ϕ(lo) − hi ϕ(hi):
    w v M2 + (w c + b v) M1 + b c M0. The kinks contribute nothing to the derivative (the
    integrand vanishes at both ends), so autodiff through this formula is exact.
    """
    lo1, hi1 = _positive_interval(w, b)
    lo2, hi2 = _positive_interval(v, c)
    lo = jnp.maximum(lo1[:, None], lo2[None, :])
    hi = jnp.maximum(jnp.minimum(hi1[:, None], hi2[None, :]), lo)  # empty: zero length

    def density(x):
        return jnp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)

    M0 = ndtr(hi) - ndtr(lo)
    M1 = density(lo) - density(hi)
    M2 = M0 + lo * density(lo) - hi * density(hi)
    W, B, V, C = w[:, None], b[:, None], v[None, :], c[None, :]
    return W * V * M2 + (W * C + B * V) * M1 + B * C * M0


#: Rows of the first argument per block in :func:`quadratic_form` target about this many
#: kernel entries (a few MiB), so no m × m matrix is held for large m.
BLOCK_ENTRIES = 1 << 20


def kernel_matvec(kernel, A: jax.Array, B: jax.Array, b: jax.Array) -> jax.Array:
    """K(A, B) b (m,) for A (m, p), B (k, p), b (k,) and a kernel (A, B) → (m, k), evaluated
    over blocks of rows of A when m·k is large (memory O(block · k), never the m × k matrix;
    each block is recomputed, not stored, under reverse-mode differentiation)."""
    m, k = A.shape[0], B.shape[0]
    rows = max(1, BLOCK_ENTRIES // max(k, 1))
    if m <= 2 * rows:
        return kernel(A, B) @ b
    nb = -(-m // rows)
    Ab = jnp.pad(A, ((0, nb * rows - m), (0, 0)), mode="edge").reshape(nb, rows, A.shape[1])
    return jax.lax.map(jax.checkpoint(lambda Ak: kernel(Ak, B) @ b), Ab).reshape(-1)[:m]


def quadratic_form(kernel, A: jax.Array, a: jax.Array, B: jax.Array, b: jax.Array) -> jax.Array:
    """aᵀ K(A, B) b = Σ_ij a_i b_j K(A_i, B_j) for A (m, p), B (k, p), a (m,), b (k,), in
    blocks of rows of A (:func:`kernel_matvec`: never the m × k matrix)."""
    return a @ kernel_matvec(kernel, A, B, b)
