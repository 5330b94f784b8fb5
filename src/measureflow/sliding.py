"""The pieces of certified BLASSO solvers on the torus, as pure functions of a problem and a
finite signed measure ν = Σ_k a_k δ_{t_k} (amplitudes a (K,), positions t (K, d)).

    P(ν) = ½ Σ_j s_j ((Φ(t) a)_j − y_j)² + λ Σ_k |a_k|,   Φ(t)_jk = Π_a ψ(x_ja − t_ka)

- :func:`merge_prune`: spikes at one position become one (amplitudes summed: P unchanged
  when their signs agree, never larger), zero amplitudes are dropped (P unchanged);
- :func:`slide`: L-BFGS-B on the joint (amplitude, position) problem, amplitudes split
  a = a⁺ − a⁻ with a± ≥ 0 so that λ|a| becomes the smooth λ(a⁺ + a⁻) (signs may change);
- :func:`polish`: Newton's method on the support with the signs fixed (P smooth there),
  for the last digits a certificate at 1e-8 needs;
- :func:`certify`: the duality gap (:func:`~measureflow.certificates.duality_gap`: sup|η|
  by grid + Newton, also in 2-D) of ν.

Arrays are padded to power-of-two sizes with zero amplitudes (bounds a± = 0 in L-BFGS-B):
the compiled functions are reused as spikes come and go.

The SciPy/NumPy linear algebra here is on tiny arrays (tens of spikes): :func:`single_threaded_blas`
keeps BLAS/LAPACK on one thread, as multithreaded OpenBLAS spends milliseconds waking its
threads on every small call (measured: L-BFGS-B on 12 variables 0.5 s with 2 threads on a
loaded 2-core machine, 2 ms with one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.sparse
import scipy.sparse.csgraph

from .certificates import DualityGap, certificate, duality_gap
from .data.spikes import torus_distance
from .errors import InputTypeError, ValidationError
from .particles import Particles
from .problem import Problem
from .regularizers import L1


_THREADPOOLS = []  # the threadpoolctl controller, built on first use (it scans the loaded libraries)


@contextlib.contextmanager
def single_threaded_blas():
    """Limit BLAS/LAPACK (OpenBLAS, MKL, …) to one thread inside the block (threadpoolctl);
    nested uses are cheap."""
    if not _THREADPOOLS:
        from threadpoolctl import ThreadpoolController

        _THREADPOOLS.append(ThreadpoolController())
    with _THREADPOOLS[0].limit(limits=1, user_api="blas"):
        yield


def blas_single_threaded(fn):
    """Decorator: run ``fn`` inside :func:`single_threaded_blas`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with single_threaded_blas():
            return fn(*args, **kwargs)

    return wrapper


@dataclasses.dataclass(frozen=True)
class SignedMeasure:
    """ν = Σ_k a_k δ_{t_k}: ``amplitudes`` (K,), ``positions`` (K, d) in [0, 1)^d."""

    amplitudes: np.ndarray
    positions: np.ndarray

    def __len__(self):
        return len(self.amplitudes)


@dataclasses.dataclass(frozen=True)
class Data:
    """What the BLASSO needs of a problem: kernel, X (n, d), y (n,), weights s (n,), λ."""

    kernel: object
    X: jax.Array
    y: jax.Array
    s: jax.Array
    lam: float
    dim: int


def problem_data(problem: Problem) -> Data:
    """Check that ``problem`` is a BLASSO (Spikes feature, square loss, L1 on the amplitude)."""
    from .features.spikes import Spikes as SpikeFeature

    if not isinstance(problem, Problem):
        raise InputTypeError(f"problem must be a mf.Problem, got {type(problem).__name__}")
    if not isinstance(problem.feature, SpikeFeature):
        raise ValidationError(f"a BLASSO problem needs the Spikes feature, got {problem.feature.name}")
    if problem.loss.name != "square":
        raise ValidationError(f"a BLASSO problem needs the square loss, got {problem.loss.name!r}")
    reg = problem.regularizer
    if not isinstance(reg, L1) or reg.coordinate != 0 or not reg.lam > 0:
        raise ValidationError(f"a BLASSO problem needs L1(λ > 0) on the amplitude, got {reg!r}")
    ev = problem.data.evaluation_set()
    return Data(problem.feature.kernel, ev.X, ev.y, ev.sample_weights, float(reg.lam), problem.feature.input_dim)


def empty(d: int) -> SignedMeasure:
    return SignedMeasure(np.zeros(0), np.zeros((0, d)))


def bucket(K: int) -> int:
    """Padded size: the next power of two ≥ max(K, 8) (8: one compilation covers the
    supports of a few spikes, where the size changes most often)."""
    return 1 << max(3, int(math.ceil(math.log2(max(K, 1)))))


def _pad(nu: SignedMeasure, size: int) -> tuple[np.ndarray, np.ndarray]:
    K, d = len(nu), nu.positions.shape[1]
    a = np.zeros(size)
    t = np.zeros((size, d))
    a[:K], t[:K] = nu.amplitudes, nu.positions
    return a, t


def to_particles(nu: SignedMeasure, size: int | None = None) -> Particles:
    """ν as particles of unit mass (r = a), padded with zero amplitudes to ``size``."""
    a, t = _pad(nu, bucket(len(nu)) if size is None else size)
    # NumPy leaves: jitted functions take them directly (jnp.asarray/jnp.ones would each dispatch)
    return Particles.unchecked(np.column_stack([a, t]), np.ones(len(a)))


def from_particles(particles: Particles) -> SignedMeasure:
    """ν = Σ_i w_i r_i δ_{t_i} of particles (r the amplitude coordinate 0)."""
    P = np.asarray(particles.positions, dtype=float)
    return SignedMeasure(np.asarray(particles.weights, dtype=float) * P[:, 0], np.mod(P[:, 1:], 1.0))


def _matrix(kernel, t, X):
    """Φ(t)ᵀ: (K, n), the tensor product of the per-axis kernel matrices."""
    out = 1.0
    for ax in range(X.shape[1]):
        out = out * kernel.cross(t[:, ax], X[:, ax])
    return out


def _smooth(kernel, X, y, s, lam, a, t, lin):
    """½ Σ s (Φa − y)² + λ·lin, lin the (smooth) stand-in for Σ|a|."""
    r = a @ _matrix(kernel, t, X) - y
    return 0.5 * jnp.sum(s * r * r) + lam * lin


@functools.partial(jax.jit, static_argnums=0)
def _split_value_grad(kernel, X, y, s, lam, z, d):
    K = z.shape[0] // (2 + d.shape[0])

    def f(z):
        ap, am, t = z[:K], z[K:2 * K], z[2 * K:].reshape(K, -1)
        return _smooth(kernel, X, y, s, lam, ap - am, t, jnp.sum(ap + am))

    return jax.value_and_grad(f)(z)


def _axis_derivatives(kernel, t, x):
    """ψ(x_j − t_k) (K, n) and its first and second derivatives in t_k (forward mode:
    row k depends on t_k alone)."""
    one = jnp.ones_like(t)
    f = lambda u: kernel.cross(u, x)  # noqa: E731
    d1 = lambda u: jax.jvp(f, (u,), (one,))  # noqa: E731
    (C, D), (_, E) = jax.jvp(d1, (t,), (one,))
    return C, D, E


@functools.partial(jax.jit, static_argnums=0)
def _signed_newton_parts(kernel, X, y, s, lam, z, sign):
    """P, ∇P, ∇²P of the signed problem (λ Σ sign_k a_k for λ|a|) at z = (a, t.ravel()),
    in closed form from the per-axis kernel values and t-derivatives C, D, E (K, n):
    with Φ = Π_α C_α, Φ_α = ∂_{t_α}Φ, Φ_αβ = ∂²_{t_α t_β}Φ (per spike), r = Φᵀa − y,

        ∂_a P = Φ S r + λ sign,   ∂_{t_α} P = a ∘ (Φ_α S r),
        ∂²_{aa} = Φ S Φᵀ,   ∂²_{a_k t_lα} = δ_kl (Φ_α S r)_k + (Φ S Φ_αᵀ)_kl a_l,
        ∂²_{t_kα t_lβ} = δ_kl a_k (Φ_αβ S r)_k + a_k (Φ_α S Φ_βᵀ)_kl a_l

    (far fewer operations than autodiff's Hessian of P: one compiled call per Newton step)."""
    K = sign.shape[0]
    d = X.shape[1]
    a, t = z[:K], z[K:].reshape(K, d)
    parts = [_axis_derivatives(kernel, t[:, ax], X[:, ax]) for ax in range(d)]

    def prod(kinds):  # Π_α (C, D or E)_α, kinds[α] ∈ {0, 1, 2}
        out = 1.0
        for ax, k in enumerate(kinds):
            out = out * parts[ax][k]
        return out

    Phi = prod([0] * d)
    r = a @ Phi - y
    sr = s * r
    v = 0.5 * jnp.sum(sr * r) + lam * jnp.sum(sign * a)
    first = [prod([1 if b == ax else 0 for b in range(d)]) for ax in range(d)]   # Φ_α
    PhiS = Phi * s
    ga = Phi @ sr + lam * sign
    gt = jnp.stack([a * (F @ sr) for F in first], axis=1)                         # (K, d)
    Haa = PhiS @ Phi.T
    Hat = jnp.stack([jnp.diag(F @ sr) + (PhiS @ F.T) * a[None, :] for F in first], axis=2)  # (K, K, d)
    Htt = jnp.zeros((K, d, K, d), z.dtype)
    for al in range(d):
        for be in range(d):
            kinds = [0] * d
            if al == be:
                kinds[al] = 2
            else:
                kinds[al], kinds[be] = 1, 1
            block = jnp.diag(a * (prod(kinds) @ sr)) + a[:, None] * ((first[al] * s) @ first[be].T) * a[None, :]
            Htt = Htt.at[:, al, :, be].set(block)
    H = jnp.block([[Haa, Hat.reshape(K, K * d)],
                   [Hat.reshape(K, K * d).T, Htt.reshape(K * d, K * d)]])
    # the round-off of ∇P: ε × the sums of absolute terms (|Φ| S (|Φᵀ||a| + |y|), …)
    mag = s * (jnp.abs(a) @ jnp.abs(Phi) + jnp.abs(y))
    eps = jnp.finfo(z.dtype).eps
    floor = eps * jnp.concatenate([jnp.abs(Phi) @ mag + lam,
                                   jnp.stack([jnp.abs(a) * (jnp.abs(F) @ mag) for F in first], axis=1).ravel()])
    return v, jnp.concatenate([ga, gt.ravel()]), H, floor


@functools.partial(jax.jit, static_argnums=0)
def _signed_newton_parts_autodiff(kernel, X, y, s, lam, z, sign):
    """The same by autodiff of P (a check of the closed form)."""
    K = sign.shape[0]

    def f(z):
        a, t = z[:K], z[K:].reshape(K, -1)
        return _smooth(kernel, X, y, s, lam, a, t, jnp.sum(sign * a))

    v, g = jax.value_and_grad(f)(z)
    return v, g, jax.hessian(f)(z), jnp.zeros_like(z)


@functools.partial(jax.jit, static_argnums=0)
def _objective(kernel, X, y, s, lam, a, t):
    return _smooth(kernel, X, y, s, lam, a, t, jnp.sum(jnp.abs(a)))


def objective(data: Data, nu: SignedMeasure) -> float:
    """P(ν) (module docstring)."""
    a, t = _pad(nu, bucket(len(nu)))
    return float(_objective(data.kernel, data.X, data.y, data.s, data.lam, a, t))


def merge_prune(nu: SignedMeasure, radius: float, threshold: float = 0.0) -> SignedMeasure:
    """Merge spikes within ℓ∞ torus distance ``radius`` (connected components) into one:
    amplitude Σ a_k at the |a|-weighted mean position (unwrapped around the heaviest);
    then drop |a| ≤ threshold. Exactly P-preserving for spikes at one position with one
    sign and for zero amplitudes."""
    keep = np.abs(nu.amplitudes) > 0
    a, t = nu.amplitudes[keep], nu.positions[keep]
    if len(a) == 0:
        return empty(nu.positions.shape[1])
    close = torus_distance(t[:, None, :], t[None, :, :]) <= radius
    big = np.abs(a) > threshold
    if np.count_nonzero(close) == len(a):  # no two spikes close (the usual case): nothing to merge
        return SignedMeasure(a[big], t[big])
    n, labels = scipy.sparse.csgraph.connected_components(scipy.sparse.csr_matrix(close), directed=False)
    out_a, out_t = np.zeros(n), np.zeros((n, t.shape[1]))
    for lab in range(n):
        idx = np.flatnonzero(labels == lab)
        if len(idx) == 1:
            out_a[lab], out_t[lab] = a[idx[0]], t[idx[0]]
            continue
        ref = t[idx[np.argmax(np.abs(a[idx]))]]
        rel = (t[idx] - ref + 0.5) % 1.0 - 0.5
        w = np.abs(a[idx])
        out_a[lab], out_t[lab] = a[idx].sum(), np.mod(ref + w @ rel / w.sum(), 1.0)
    big = np.abs(out_a) > threshold
    return SignedMeasure(out_a[big], out_t[big])


@blas_single_threaded
def slide(data: Data, nu: SignedMeasure, *, move: bool = True, gtol: float = 1e-10, maxiter: int = 50) -> SignedMeasure:
    """Minimize P jointly over the amplitudes (split a = a⁺ − a⁻ ≥ 0) and, if ``move``,
    the positions, from ν, by L-BFGS-B; zero amplitudes are dropped."""
    K, d = len(nu), data.dim
    if K == 0:
        return nu
    size = bucket(K)
    a, t = _pad(nu, size)
    z0 = np.concatenate([np.maximum(a, 0), np.maximum(-a, 0), t.ravel()])
    bounds = [(0, None)] * K + [(0, 0)] * (size - K)
    bounds = bounds + bounds
    bounds += [(None, None) if (move and k < K) else (x, x) for k in range(size) for x in t[k]]
    dd = np.zeros(d)
    args = (data.kernel, data.X, data.y, data.s, data.lam)

    def fg(z):
        v, g = _split_value_grad(*args, z, dd)
        return float(v), np.asarray(g)

    res = scipy.optimize.minimize(fg, z0, jac=True, method="L-BFGS-B", bounds=bounds,
                                  options={"maxiter": maxiter, "gtol": gtol, "ftol": 1e-15, "maxcor": 10})
    z = res.x
    a = (z[:size] - z[size:2 * size])[:K]
    t = np.mod(z[2 * size:].reshape(size, d)[:K], 1.0)
    keep = a != 0
    return SignedMeasure(a[keep], t[keep])


@functools.partial(jax.jit, static_argnums=0)
def _gram(kernel, X, y, s, t):
    """(ΦᵀSΦ (K, K), ΦᵀSy (K,)) at positions t (K, d)."""
    M = _matrix(kernel, t, X)
    Ms = M * s
    return Ms @ M.T, Ms @ y


@blas_single_threaded
def fit_amplitudes(data: Data, nu: SignedMeasure, sign: np.ndarray) -> SignedMeasure:
    """Amplitudes on the fixed positions of ν for the sign pattern ``sign`` (K,): the
    minimizer of ½‖Φa − y‖²_s + λ sign·a, a = (ΦᵀSΦ)⁻¹(ΦᵀSy − λ sign), with the spikes whose
    amplitude comes out against their sign dropped and the rest solved again (an active-set
    pass). When every sign agrees this is the LASSO optimum on the support. ``nu``'s own
    amplitudes are ignored."""
    K = len(nu)
    if K == 0:
        return nu
    size = bucket(K)
    _, t = _pad(nu, size)
    G, b = (np.asarray(x)[:K] for x in _gram(data.kernel, data.X, data.y, data.s, t))
    G = G[:, :K]
    sign = np.sign(np.asarray(sign, dtype=float))
    idx = np.flatnonzero(sign != 0)
    a = np.zeros(0)
    while len(idx):
        try:
            a = np.linalg.solve(G[np.ix_(idx, idx)], b[idx] - data.lam * sign[idx])
        except np.linalg.LinAlgError:  # coincident positions: keep the first of each
            a = np.linalg.lstsq(G[np.ix_(idx, idx)], b[idx] - data.lam * sign[idx], rcond=None)[0]
        agree = np.sign(a) == sign[idx]
        if agree.all():
            break
        idx, a = idx[agree], np.zeros(0)
    return SignedMeasure(a, nu.positions[idx])


def _newton_parts(data: Data, nu: SignedMeasure):
    """(z = (a, t) padded, sign a, live mask, P, ∇P, ∇²P, round-off of ∇P) of the signed
    problem at ν."""
    K, d = len(nu), data.dim
    size = bucket(K)
    a, t = _pad(nu, size)
    sign = np.sign(a)
    live = np.concatenate([np.arange(size) < K, np.repeat(np.arange(size) < K, d)])
    z = np.concatenate([a, t.ravel()])
    v, g, H, floor = jax.device_get(_signed_newton_parts(data.kernel, data.X, data.y, data.s, data.lam, z, sign))
    return z, sign, live, float(v), g, H, floor


#: Newton stops once every |∂P| is within this many times its round-off (measured on the
#: issue-15 instances: the gradients Newton ends at are 0.7–7.4 times the estimate)
_GRAD_FLOOR = 16.0


#: P differences below this fraction of P are round-off (P is a sum of O(1) terms)
_FLAT = 1e-12


@blas_single_threaded
def polish(data: Data, nu: SignedMeasure, *, steps: int = 60, tol: float = 0.0) -> SignedMeasure:
    """Damped Newton (Levenberg–Marquardt) on (a, t) with the signs of a fixed (P smooth
    there): H + μ diag(H) solves (Marquardt's scaling), μ shrinking after an accepted step,
    growing otherwise. A step is accepted when it lowers P, or — P being flat to round-off
    near the minimizer — when P stays within round-off and the max-norm of the gradient
    scaled by diag(H)^½ drops (so the last digits of ∇P = 0,
    which the certificate sees as |η(t_k)| = 1 and η'(t_k) = 0, are reached). An amplitude
    the step takes across zero is set to zero and dropped (prune). Stops when max|∇P| ≤
    ``tol``, when the gradient stops dropping, or after ``steps`` accepted steps."""
    d = data.dim
    damping = 1e-8
    if len(nu) == 0:
        return nu
    z, sign, live, v, g, H, floor = _newton_parts(data, nu)
    for _ in range(steps):
        K = len(nu)
        size = len(sign)
        gl = g[live]
        if float(np.max(np.abs(gl))) <= tol or np.all(np.abs(gl) <= _GRAD_FLOOR * floor[live]):
            return nu
        Hl = H[np.ix_(live, live)]
        # Jacobi scaling: the curvature of a position is ∝ a², so tiny spikes next to big
        # ones make H ill-conditioned (measured: cond 1e12 on a split spike) in raw units
        D = np.sqrt(np.maximum(np.abs(np.diag(Hl)), 1e-300))
        Hs, gs = Hl / D[:, None] / D[None, :], gl / D
        gnorm = float(np.max(np.abs(gs)))
        flat_failures = 0
        for _ in range(30):
            try:
                step = -np.linalg.solve(Hs + damping * np.eye(len(gs)), gs) / D
            except np.linalg.LinAlgError:
                step = np.full_like(gl, np.nan)
            if np.all(np.isfinite(step)):
                zn = z.copy()
                zn[live] += step
                crossed = np.sign(zn[:K]) != sign[:K]
                zn[:K][crossed] = 0.0
                an, tn = zn[:size][:K], zn[size:].reshape(size, d)[:K]
                keep = an != 0
                new = SignedMeasure(an[keep], np.mod(tn[keep], 1.0))
                if len(new) == 0:
                    vn = objective(data, new)
                    if vn <= v:
                        return new
                else:
                    zn_, sign_, live_, vn, gn, Hn, fn = _newton_parts(data, new)
                    flat = abs(vn - v) <= _FLAT * abs(v)
                    if vn < v and not flat or len(new) < K and vn <= v:
                        break
                    if flat:
                        if len(new) == K and np.max(np.abs(gn[live_] / D)) < gnorm:
                            break
                        flat_failures += 1
                        if flat_failures >= 2:  # at the round-off floor
                            return nu
            damping *= 10.0
        else:
            return nu
        damping = max(damping / 10.0, 1e-12)
        nu, z, sign, live, v, g, H, floor = new, zn_, sign_, live_, vn, gn, Hn, fn
    return nu


def certify(problem: Problem, nu: SignedMeasure, **certificate_options) -> tuple[DualityGap, object]:
    """(duality gap, certificate) of ν: sup|η| over T^d by grid + Newton."""
    mu = to_particles(nu)
    cert = certificate(problem, mu, **certificate_options)
    return duality_gap(problem, mu, cert=cert), cert


def lambda_max(problem: Problem) -> float:
    """λ_max = sup_t |Σ_j s_j y_j ψ(x_j − t)|: the zero measure is optimal iff λ ≥ λ_max
    (its certificate is η = A*y/λ)."""
    data = problem_data(problem)
    cert = certificate(problem, to_particles(empty(data.dim)))
    return cert.sup * data.lam
