"""Diagnostics of a particle measure: its differential entropy, and the Hessian spectrum of
F at the particles (minimum or saddle?).

- :func:`entropy`: the Kozachenko–Leonenko k-nearest-neighbour estimate of
  H(μ) = −∫ log(dμ/dθ) dμ from samples (the entropic term of mean-field Langevin).
- :func:`entropic_objective`: F(μ) − τĤ(μ) = F + τ∫log(dμ/dθ)dμ, the objective that
  mean-field Langevin at temperature τ minimizes.
- :func:`hessian_spectrum`: the extreme eigenvalues of the mean-field-scaled Hessian
  W^{−1/2} ∇²F W^{−1/2} by Lanczos on Hessian-vector products, with the flat directions
  that the feature's homogeneity creates projected out and reported separately.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse.linalg as spla
from scipy.spatial import cKDTree
from scipy.special import digamma, gammaln

from .errors import InputTypeError, MeasureflowError, ValidationError
from .particles import Particles
from .problem import Problem, check_pair
from .validation import check_array, check_choice, check_int, check_real

# -- entropy --------------------------------------------------------------------------------


def entropy(positions, k: int = 1, *, boxsize=None) -> float:
    """Kozachenko–Leonenko estimate of the differential entropy (nats) of the law of the
    N samples ``positions`` (N, d):

        Ĥ = ψ(N) − ψ(k) + log V_d + (d/N) Σ_i log ε_i,     V_d = π^{d/2} / Γ(d/2 + 1),

    ε_i the Euclidean distance from sample i to its k-th nearest neighbour (a k-d tree,
    ``scipy.spatial.cKDTree``). For an equal-weight particle measure this is the entropy of
    the law the particles are drawn from, not of the atomic measure (whose entropy is −∞).
    ``boxsize=L``: positions on the torus [0, L)^d (periodic distances, e.g. spikes on
    T^d, ``L = 1``), where a uniform law has no boundary and no boundary bias.

    Bias. Ĥ is consistent for any k fixed as N → ∞ (densities with a finite moment and
    log f integrable). At finite N it assumes the density constant on each neighbour ball:
    for a smooth density bounded away from zero the bias is O((k/N)^{2/d}); at the edge of
    a compact support (uniform laws) balls stick out and Ĥ is biased upwards, by
    O((k/N)^{1/d}); in high dimension both decay slowly (d ≥ 4: slower than the N^{−1/2}
    noise). Its standard deviation is about sqrt((Var log f(X) + ψ'(k)) / N) (ψ' the
    trigamma function, the variance of log of the Gamma(k) ball mass): a larger k lowers
    the variance and raises the bias. Duplicate samples (ε_i = 0) make it −∞ and are
    refused.
    """
    X = check_array("positions", positions)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValidationError(f"positions must have shape (N, d), got {X.shape}")
    N, d = X.shape
    k = check_int("k", k, minimum=1)
    if k >= N:
        raise ValidationError(f"k={k} neighbours need at least k + 1 = {k + 1} samples, got N={N}")
    if boxsize is not None:
        boxsize = check_real("boxsize", boxsize, positive=True)
        if np.any((X < 0) | (X >= boxsize)):
            raise ValidationError(f"positions must lie in [0, boxsize) = [0, {boxsize:g}) on the torus; wrap them first")
    dist, _ = cKDTree(X, boxsize=boxsize).query(X, k=k + 1)  # the first neighbour is the point itself
    eps = dist[:, -1]
    if np.any(eps <= 0):
        raise ValidationError(f"{int(np.sum(eps <= 0))} samples have k={k} or more exact duplicates (zero distance "
                              "to their k-th neighbour): the entropy estimate would be -inf; use a larger k or "
                              "de-duplicate the positions")
    log_vd = 0.5 * d * math.log(math.pi) - gammaln(0.5 * d + 1.0)
    return float(digamma(N) - digamma(k) + log_vd + d * np.mean(np.log(eps)))


@dataclasses.dataclass(frozen=True)
class EntropicObjective:
    """What :func:`entropic_objective` returns.

    objective     F(μ) at the particles
    entropy       Ĥ, the Kozachenko–Leonenko estimate of the differential entropy (nats)
    temperature   τ
    value         F − τĤ = F + τ ∫ log(dμ/dθ) dμ, the entropic (free-energy) objective
    """

    objective: float
    entropy: float
    temperature: float
    value: float


def entropic_objective(problem: Problem, particles, temperature=None, k: int = 1, *, boxsize=None) -> EntropicObjective:
    """The entropy-regularized objective of mean-field Langevin at the particles,

        F_τ(μ) = F(μ) + τ ∫ log(dμ/dθ) dμ ≈ F(μ) − τ Ĥ,

    F at the particle measure and Ĥ = :func:`entropy` (Kozachenko–Leonenko, ``k``
    neighbours, ``boxsize`` for a torus) of the law the m particles are samples of.
    ``particles`` is a :class:`~measureflow.Particles` (then ``temperature`` τ ≥ 0 is
    required) or the :class:`~measureflow.Result` of a Langevin run (τ defaults to the
    run's τ_t at its last iteration).

    Bias. The estimate of F_τ inherits −τ times the bias of Ĥ: O(τ (k/m)^{2/d}) for a
    smooth density (d = p, the dimension of a particle), upwards of Ĥ (so F_τ too low) by
    O(τ (k/m)^{1/d}) at the edge of a compact support, and its noise is τ times
    sqrt((Var log ρ + ψ'(k)) / m). F itself is that of the m-particle measure, which differs
    from F at the particles' law by the O(1/m) propagation-of-chaos error. Particles with
    unequal masses are refused (the estimator treats them as equally likely samples).
    """
    from .solvers.state import Result

    if isinstance(particles, Result):
        result, particles = particles, particles.particles
        if temperature is None:
            rule = result.method
            if not hasattr(rule, "temperature_at"):
                raise ValidationError(f"temperature= is needed: the run's rule {rule!r} is not Langevin")
            temperature = float(rule.temperature_at(max(result.iteration - 1, 0)))
    if not isinstance(problem, Problem):
        raise InputTypeError(f"problem must be a mf.Problem, got {type(problem).__name__}")
    if not isinstance(particles, Particles):
        raise InputTypeError(f"particles must be mf.Particles or a mf.Result, got {type(particles).__name__}")
    if temperature is None:
        raise ValidationError("temperature= is needed with Particles (τ >= 0 of the entropic term)")
    tau = check_real("temperature", temperature, nonnegative=True)
    w = np.asarray(particles.weights, float)
    if not np.allclose(w, w.mean(), rtol=1e-9, atol=0):
        raise ValidationError(f"the entropy estimate needs equal masses (samples of one law), but the masses range over "
                              f"[{w.min():.3g}, {w.max():.3g}]")
    F = float(problem.objective(particles))
    H = entropy(np.asarray(particles.positions), k=k, boxsize=boxsize)
    return EntropicObjective(objective=F, entropy=H, temperature=tau, value=F - tau * H)


# -- Hessian spectrum -----------------------------------------------------------------------

#: Up to this reduced dimension, ``method="auto"`` builds the matrix from HVPs (exact, cheap).
DENSE_MAX = 200


@dataclasses.dataclass(frozen=True)
class HessianSpectrum:
    """What :func:`hessian_spectrum` returns.

    lowest          the k smallest eigenvalues (ascending) of the Hessian with the flat
                    directions projected out
    highest         the k largest (descending)
    dimension       m·p, the number of coordinates
    flat_count      how many flat (homogeneity) directions were projected out
    flat_units      the particles that carry one (indices)
    flat_rayleigh   the Rayleigh quotient of the Hessian along each flat direction
                    (0 at a critical point when V shares the symmetry; with V = λ|θ|² it
                    is the weight decay's curvature along the rescaling)
    method          "lanczos" (SciPy's ARPACK ``eigsh`` on Hessian-vector products) or
                    "dense" (the reduced matrix from HVPs, ``numpy.linalg.eigh``)
    """

    lowest: np.ndarray
    highest: np.ndarray
    dimension: int
    flat_count: int
    flat_units: np.ndarray
    flat_rayleigh: np.ndarray
    method: str

    def saddle(self, rtol: float = 1e-6) -> bool:
        """Whether a direction of negative curvature beyond the flat ones exists: the
        lowest eigenvalue is below −rtol · (the largest |eigenvalue|). At a critical point
        (check the velocities first) True means a strict saddle; False means no descent
        direction at second order (a local minimum, or a degenerate critical point)."""
        scale = max(abs(float(self.highest[0])), abs(float(self.lowest[0])), np.finfo(float).tiny)
        return bool(self.lowest[0] < -rtol * scale)


def homogeneity_directions(feature, positions) -> np.ndarray:
    """The per-particle flat directions that the feature's homogeneity creates (m, p);
    rows of zeros where there is none.

    A fully q-homogeneous feature with a weight coordinate c that enters linearly
    (φ = θ_c · g(θ_{−c}), g (q−1)-homogeneous: the ReLU unit a·relu(w·x + b) with q = 2)
    is invariant under θ_{−c} → λθ_{−c}, θ_c → λ^{1−q}θ_c; the generator of this rescaling
    at θ_i, (θ_{i,−c}, −(q−1)θ_{i,c}), is a direction along which F is constant (when V is
    invariant too). A partially homogeneous feature (φ(λr, θ̃) = λ^q φ(r, θ̃): sigmoid and
    erf units, spikes) has no such direction in the positions at fixed masses: rescaling r
    changes φ, and is compensated only by a change of mass (a WFR direction, not a
    position one); features without homogeneity have none either.
    """
    P = np.asarray(positions, dtype=float)
    hom = feature.homogeneity
    D = np.zeros_like(P)
    c = feature.weight_index
    if hom.kind == "full" and c is not None:
        D[:] = P
        D[:, c] = -(hom.degree - 1.0) * P[:, c]
    return D


def _scaled_hessian(problem: Problem, smooth_only: bool, P, w, U):
    """W^{−1/2} ∇²F W^{−1/2} U (m, p): forward-over-reverse (jax.jvp of jax.grad)."""
    def F(Q):
        parts = Particles.unchecked(Q, w)
        return problem.risk(parts) if smooth_only else problem.objective(parts)

    r = jnp.sqrt(w)[:, None]
    return jax.jvp(jax.grad(F), (P,), (U / r,))[1] / r


def _reflect(V, Z):
    """The Householder reflection I − 2 v vᵀ / vᵀv of each row of Z (identity where v = 0)."""
    vv = jnp.sum(V * V, 1, keepdims=True)
    return Z - 2.0 * V * jnp.sum(V * Z, 1, keepdims=True) / jnp.where(vv > 0, vv, 1.0)


def _reduced_hvp(problem, P, w, V, idx, x, *, smooth_only):
    """The Hessian on the complement of the flat directions, in reduced coordinates x
    (the entries ``idx`` of the reflected (m, p) array)."""
    Z = jnp.zeros(P.size, P.dtype).at[idx].set(x).reshape(P.shape)
    return _reflect(V, _scaled_hessian(problem, smooth_only, P, w, _reflect(V, Z))).reshape(-1)[idx]


def _rayleigh(problem, P, w, Dhat, *, smooth_only, batch):
    """d̂_iᵀ H d̂_i for the unit direction d̂_i of each particle (rows of Dhat), (m,)."""
    def one(i):
        U = jnp.zeros_like(P).at[i].set(Dhat[i])
        return jnp.sum(U * _scaled_hessian(problem, smooth_only, P, w, U))

    return jax.lax.map(one, jnp.arange(P.shape[0]), batch_size=batch)


# module level with the problem as an argument: one compilation per problem shape
_reduced_hvp_jit = jax.jit(_reduced_hvp, static_argnames=("smooth_only",))
_rayleigh_jit = jax.jit(_rayleigh, static_argnames=("smooth_only", "batch"))


def hessian_spectrum(problem: Problem, particles: Particles, k: int = 6, *, method: str = "auto",
                     smooth_only: bool = False, tol: float = 0.0, maxiter: int | None = None,
                     seed: int = 0) -> HessianSpectrum:
    """The k lowest and k highest eigenvalues of the mean-field-scaled Hessian of F at the
    particles, the flat directions of homogeneity projected out and reported apart.

        H = W^{−1/2} ∇²F(θ_1..θ_m) W^{−1/2},      W = diag(w_i) ⊗ I_p      (m·p × m·p)

    H is similar to the Jacobian J = W^{−1}∇²F of the mean-field velocity field
    θ_i ↦ ∇_θF'(μ)(θ_i) (H = W^{1/2} J W^{−1/2}): the same eigenvalues, which are the rates
    of the linearized flow (a perturbation along an eigenvector decays like e^{−λt}, grows
    if λ < 0). H is used because it is symmetric: Lanczos applies and its eigenvectors are
    orthogonal. Its eigenvalues do not scale with m (coupling blocks scale as
    sqrt(w_i w_j), own blocks as 1); splitting every particle adds, in the antisymmetric
    directions, the eigenvalues of the per-particle Hessians ∇²_θF'(μ)(θ_i).

    The Hessian is that of F as ``problem.objective`` evaluates it (the exact population
    risk where the data has one) by forward-over-reverse autodiff: on a finite data set,
    ReLU kinks contribute nothing (the Hessian of the smooth piece the particles lie on).
    The flat directions (:func:`homogeneity_directions`: one per ReLU unit, none for
    partially homogeneous features) are removed by a Householder reflection per particle,
    and the spectrum is that of H restricted to their orthogonal complement (dimension
    m·p − flat_count); their Rayleigh quotients are returned in ``flat_rayleigh`` (one HVP
    per particle, batched: for large m as costly as a few Lanczos runs).

    k            eigenvalues at each end (k ≤ the reduced dimension)
    method       "lanczos" (``scipy.sparse.linalg.eigsh`` on a LinearOperator of HVPs; no
                 m·p × m·p matrix; needs k < the reduced dimension), "dense" (the reduced
                 matrix from HVPs and ``numpy.linalg.eigh``) or "auto" (dense up to 200)
    smooth_only  the Hessian of the risk R alone, leaving V out: for a non-smooth V (L1 on
                 the weight coordinate, linear away from 0) it equals the Hessian of F at
                 particles whose weight coordinates are nonzero
    tol, maxiter, seed   ARPACK's tolerance (0: machine precision), iteration limit and
                 the seed of its (deterministic) start vector
    """
    check_pair(problem, particles)
    if not isinstance(smooth_only, (bool, np.bool_)):
        raise InputTypeError(f"smooth_only must be True or False, got {smooth_only!r}")
    reg = problem.regularizer
    if not smooth_only and not reg.smooth:
        raise ValidationError(f"{type(reg).__name__} is non-smooth: F has no Hessian where it is not differentiable; "
                              "pass smooth_only=True for the Hessian of the risk alone (that of F where no weight "
                              "coordinate is 0, e.g. after forward–backward, method='fb')")
    method = check_choice("method", method, ("auto", "lanczos", "dense"))
    k = check_int("k", k, minimum=1)
    tol = check_real("tol", tol, nonnegative=True)
    if maxiter is not None:
        maxiter = check_int("maxiter", maxiter, minimum=1)
    P = np.asarray(particles.positions, dtype=float)
    w = np.asarray(particles.weights, dtype=float)
    m, p = P.shape
    D = homogeneity_directions(problem.feature, P)
    norms = np.linalg.norm(D, axis=1)
    flat = norms > 0
    Dhat = np.where(flat[:, None], D / np.where(flat, norms, 1.0)[:, None], 0.0)
    n_red = m * p - int(flat.sum())
    if k > n_red:
        raise ValidationError(f"k={k} is larger than the dimension of the Hessian: m·p = {m}·{p} = {m * p} "
                              f"coordinates, {m * p - n_red} flat directions projected out, {n_red} left")
    if method == "auto":
        method = "dense" if n_red <= DENSE_MAX else "lanczos"
    if method == "lanczos" and k >= n_red:
        raise ValidationError(f"method='lanczos' needs k < {n_red} (the reduced dimension; ARPACK's limit), "
                              f"got k={k}: use method='dense'")
    # Householder vectors v_i = d̂_i + sign(d̂_i0) e_0 map d̂_i to ∓e_0: the reduced
    # coordinates are all but coordinate 0 of each flat particle
    V = Dhat.copy()
    V[flat, 0] += np.where(Dhat[flat, 0] >= 0, 1.0, -1.0)
    keep = np.ones((m, p), bool)
    keep[flat, 0] = False
    idx = np.flatnonzero(keep.ravel())
    args = (problem, jnp.asarray(P), jnp.asarray(w), jnp.asarray(V), jnp.asarray(idx))

    def matvec(x):
        return np.asarray(_reduced_hvp_jit(*args, jnp.asarray(np.ravel(x), P.dtype), smooth_only=bool(smooth_only)))

    if method == "dense":
        Hm = np.column_stack([matvec(e) for e in np.eye(n_red)])
        eig = np.linalg.eigvalsh(0.5 * (Hm + Hm.T))
        lowest, highest = eig[:k], eig[::-1][:k]
    else:
        op = spla.LinearOperator((n_red, n_red), matvec=matvec, dtype=float)
        v0 = np.random.default_rng(seed).standard_normal(n_red)
        try:
            lowest = np.sort(spla.eigsh(op, k, which="SA", v0=v0, tol=tol, maxiter=maxiter,
                                        return_eigenvectors=False))
            highest = np.sort(spla.eigsh(op, k, which="LA", v0=v0, tol=tol, maxiter=maxiter,
                                         return_eigenvectors=False))[::-1]
        except spla.ArpackNoConvergence as exc:
            raise MeasureflowError(f"Lanczos (ARPACK eigsh) did not converge for k={k}: {exc}; raise maxiter=, "
                                   "loosen tol= or use method='dense'") from None
    units = np.flatnonzero(flat)
    rq = np.asarray(_rayleigh_jit(problem, jnp.asarray(P), jnp.asarray(w), jnp.asarray(Dhat),
                                  smooth_only=bool(smooth_only), batch=min(m, 64)))[units]
    return HessianSpectrum(lowest=lowest, highest=highest, dimension=m * p, flat_count=int(flat.sum()),
                           flat_units=units, flat_rayleigh=rq, method=method)
