"""The problem F(μ) = R(f_μ) + ∫V dμ over measures μ = Σ_i w_i δ_{θ_i}.

    f_μ(x)  = Σ_i w_i φ(θ_i, x)
    R(f)    = Σ_j s_j ℓ(f(x_j), y_j)           (empirical, design, or held-out sample)
    F'(μ)(θ) = Σ_j s_j ∂₁ℓ(f_μ(x_j), y_j) φ(θ, x_j) + V(θ)

The particle velocity of the mean-field flow is ∇_θ F'(μ)(θ_i) = (1/w_i) ∇_{θ_i} F.

The loss is a sum over samples, so predictions, risks and velocities are accumulated
over blocks of samples (:data:`BLOCK_ENTRIES`): the m × n feature matrix is never held
whole, and each m × B block stays in cache between the matmul that makes it and the one
that uses it (several times faster than whole-matrix passes at m·n ≳ 10⁶).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import losses as _losses
from . import regularizers as _regs
from ._pytree import pytree_dataclass, static_field
from .data.base import Dataset, Sampler
from .errors import InputTypeError, MeasureflowError, ValidationError
from .features.base import Feature
from .particles import Particles

#: About this many (particle, sample) entries per block of samples (4–8 MiB per m × B array:
#: L2/L3-sized, and large enough for a multithreaded matmul; fastest of 2^18..2^21 on 2 and
#: 16 cores, see benchmarks/README.md).
BLOCK_ENTRIES = 1 << 20
_MIN_BLOCK = 16


def block_size(m: int, n: int) -> int | None:
    """Samples per block for m particles and n samples (a power of two ≥ 16), or ``None``
    for one block: when n is under four blocks (splitting would only repeat the per-particle
    work of ``feature.matrix``, e.g. a kernel's Fourier factors, for little memory saved)."""
    B = max(_MIN_BLOCK, BLOCK_ENTRIES // max(m, 1))
    B = 1 << (B.bit_length() - 1)
    return None if n < 4 * B else B


def _blocks(B: int, a, mode: str = "edge"):
    """An (n, ...) array padded to a multiple of B rows (repeating its last row, or with
    zeros) and reshaped (n/B, B, ...)."""
    n = a.shape[0]
    nb = -(-n // B)
    return jnp.pad(a, [(0, nb * B - n)] + [(0, 0)] * (a.ndim - 1), mode=mode).reshape((nb, B) + a.shape[1:])


def sum_over_samples(fn, m: int, X, y, s):
    """Σ_k fn(X_k, y_k, s_k) over blocks of samples (a pytree of sums). Padding samples
    repeat the last sample with weight s = 0, so fn must weight each sample's
    contribution by s (as every risk and its gradient do)."""
    B = block_size(m, X.shape[0])
    if B is None:
        return fn(X, y, s)
    Xb, yb, sb = _blocks(B, X), _blocks(B, y), _blocks(B, s, "constant")
    zero = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(fn, Xb[0], yb[0], sb[0]))
    add = lambda acc, blk: (jax.tree_util.tree_map(jnp.add, acc, fn(*blk)), None)  # noqa: E731
    return jax.lax.scan(add, zero, (Xb, yb, sb))[0]


class Field(NamedTuple):
    """What one pass over the data gives the update rules at μ = Σ_i w_i δ_{θ_i}.

    value            F(μ) on the batch (scalar)
    velocity         ∇_θF'(μ)(θ_i) (m, p), smooth part only when asked (then in the
                     solver's metric G once the loop has preconditioned it)
    first_variation  F'(μ)(θ_i) (m,) when asked (with V, also when smooth_only), else None
    """

    value: jax.Array
    velocity: jax.Array
    first_variation: jax.Array | None = None


@pytree_dataclass
class Problem:
    """``Problem(feature, loss="square", regularizer=None, data=...)``.

    All methods are pure and traceable; ``batch`` (a :class:`Dataset`) replaces the
    problem's own data for one evaluation (minibatches of SGD).
    """

    data: object
    feature: Feature = static_field()
    loss: _losses.Loss = static_field()
    regularizer: _regs.Regularizer = static_field()

    def __init__(self, feature, loss="square", regularizer=None, data=None):
        if not isinstance(feature, Feature):
            raise InputTypeError(f"feature must be a measureflow Feature (e.g. mf.features.Custom), got {feature!r}")
        if not isinstance(data, (Dataset, Sampler)):
            raise InputTypeError(f"data must be a mf.data.Dataset, FixedDesign or Sampler, got {type(data).__name__}")
        if feature.input_dim is not None and data.input_dim != feature.input_dim:
            raise ValidationError(
                f"data has input dimension {data.input_dim} but the feature {feature.name} expects "
                f"input_dim={feature.input_dim}")
        object.__setattr__(self, "feature", feature)
        object.__setattr__(self, "loss", _losses.get(loss))
        object.__setattr__(self, "regularizer", _regs.get(regularizer).for_feature(feature))
        object.__setattr__(self, "data", data)
        _check_callables(self)

    def check_labels(self) -> None:
        """Raise a ValidationError unless the targets are labels the loss accepts
        (logistic: y ∈ {−1, +1}; a sampler is checked on a small draw). The solvers call
        it before any work."""
        _check_labels(self.loss, self.data)

    def _check(self, particles, X=None, thetas=None):
        """Shape checks (static, so free under tracing): a clear error instead of one from
        deep inside a matrix product."""
        p, name = self.feature.dim, self.feature.name
        if not isinstance(particles, Particles):
            raise InputTypeError(f"particles must be mf.Particles, got {type(particles).__name__}")
        if particles.positions.ndim != 2 or particles.positions.shape[1] != p:
            raise ValidationError(f"particles have positions of shape {particles.positions.shape}, but the "
                                  f"feature {name} needs (m, {p})")
        if thetas is not None and (jnp.ndim(thetas) != 2 or jnp.shape(thetas)[1] != p):
            raise ValidationError(f"thetas has shape {jnp.shape(thetas)}, but the feature {name} needs (k, {p})")
        d = self.data.input_dim
        if X is not None and (jnp.ndim(X) != 2 or jnp.shape(X)[1] != d):
            raise ValidationError(f"X has shape {jnp.shape(X)}, but the data and the feature {name} have "
                                  f"inputs of dimension {d}: expected (n, {d})")

    # -- evaluation data ---------------------------------------------------------------
    def _batch(self, batch) -> Dataset:
        return self.data.evaluation_set() if batch is None else batch

    # -- values ------------------------------------------------------------------------
    def predict(self, particles: Particles, X: jax.Array | None = None) -> jax.Array:
        """f_μ(x_j) for X (n, d) (default: the evaluation data); returns (n,)."""
        X = self._batch(None).X if X is None else jnp.asarray(X)
        self._check(particles, X=X)
        P, w = particles.positions, particles.weights
        B = block_size(P.shape[0], X.shape[0])
        if B is None:
            return w @ self.feature.matrix(P, X)
        Xb = _blocks(B, X)
        return jax.lax.map(lambda Xk: w @ self.feature.matrix(P, Xk), Xb).reshape(-1)[: X.shape[0]]

    def risk(self, particles: Particles, batch: Dataset | None = None) -> jax.Array:
        """R(f_μ): exact population risk when the data source has one, else the sample
        average on ``batch`` / the evaluation data."""
        self._check(particles)
        if batch is None:
            exact = self.data.exact_risk(self.feature, self.loss, particles)
            if exact is not None:
                return exact
        b = self._batch(batch)
        return b.sample_weights @ self.loss(self.predict(particles, b.X), b.y)

    def penalty(self, particles: Particles) -> jax.Array:
        """∫V dμ = Σ_i w_i V(θ_i)."""
        self._check(particles)
        return particles.weights @ jax.vmap(self.regularizer.value)(particles.positions)

    def objective(self, particles: Particles, batch: Dataset | None = None) -> jax.Array:
        """F(μ) = R(f_μ) + ∫V dμ."""
        return self.risk(particles, batch) + self.penalty(particles)

    # -- first variation ---------------------------------------------------------------
    def residual(self, particles: Particles, batch: Dataset | None = None) -> jax.Array:
        """g_j = s_j ∂₁ℓ(f_μ(x_j), y_j) (n,), the vector F' integrates φ against."""
        b = self._batch(batch)
        return b.sample_weights * self.loss.derivative(self.predict(particles, b.X), b.y)

    def first_variation(self, particles: Particles, thetas: jax.Array,
                        batch: Dataset | None = None) -> jax.Array:
        """F'(μ)(θ) for thetas (k, p); returns (k,)."""
        self._check(particles, thetas=thetas)
        b = self._batch(batch)
        g = self.residual(particles, b)
        return self.feature.matrix(thetas, b.X) @ g + jax.vmap(self.regularizer.value)(thetas)

    def first_variation_grad(self, particles: Particles, thetas: jax.Array,
                             batch: Dataset | None = None, *, smooth_only: bool = False) -> jax.Array:
        """∇_θ F'(μ)(θ) for thetas (k, p); returns (k, p). ``smooth_only`` leaves out V
        (forward–backward handles it by its prox)."""
        self._check(particles, thetas=thetas)
        b = self._batch(batch)
        g = jax.lax.stop_gradient(self.residual(particles, b))
        return _velocity(self, thetas, b, g, not smooth_only)

    @property
    def has_exact_risk(self) -> bool:
        """Whether the data source gives R(f_μ) in closed form for this feature and loss (a
        trace-time decision of ``data.exact_risk``); then deterministic solvers
        differentiate the population risk itself."""
        found = []

        def probe(P, w):
            found.append(self.data.exact_risk(self.feature, self.loss, Particles.unchecked(P, w)) is not None)
            return jnp.zeros(())

        dt = jnp.result_type(float)
        jax.eval_shape(probe, jax.ShapeDtypeStruct((2, self.feature.dim), dt), jax.ShapeDtypeStruct((2,), dt))
        return found[0]

    def field(self, particles: Particles, batch: Dataset | None = None, *, smooth_only: bool = False,
              first_variation: bool = False) -> Field:
        """F, the velocities ∇_θF'(μ)(θ_i) and (if asked) F'(μ)(θ_i) from one pass: over
        ``batch``, or the exact population risk when the data has one and no batch is
        given, else the problem's evaluation data. The solvers' inner step."""
        self._check(particles)
        if batch is None and self.has_exact_risk:
            return self._exact_field(particles, smooth_only, first_variation)
        b = self._batch(batch)
        P, w = particles.positions, particles.weights

        def block(X, y, s):
            Phi, pullback = jax.vjp(lambda Q: self.feature.matrix(Q, X), P)
            risk, dldf = jax.value_and_grad(lambda f: s @ self.loss(f, y))(w @ Phi)
            out = (risk, pullback(jnp.broadcast_to(dldf, Phi.shape))[0])
            return out + (Phi @ dldf,) if first_variation else out

        sums = sum_over_samples(block, P.shape[0], b.X, b.y, b.sample_weights)
        risk, vel = sums[0], sums[1]
        V = jax.vmap(self.regularizer.value)(P)
        if not smooth_only:
            vel = vel + jax.vmap(jax.grad(self.regularizer.value))(P)
        return Field(risk + w @ V, vel, sums[2] + V if first_variation else None)

    def _exact_field(self, particles, smooth_only, first_variation) -> Field:
        # F'(μ)(θ) tested at thetas Q (k, p) held apart from μ: Σ_j F'(μ)(Q_j) has gradient
        # ∇_θF'(μ)(Q_j) in Q_j — exact for any masses (no division by w_i). The data's closed
        # form when it has one; else F'(μ)(Q_j) = d/dε_j F(μ + Σ_j ε_j δ_{Q_j}) at ε = 0, the
        # risk differentiated along probe masses (several kernel passes on 2m particles).
        P, w = particles.positions, particles.weights
        exact = lambda Pq, wq: self.data.exact_risk(self.feature, self.loss, Particles.unchecked(Pq, wq))  # noqa: E731
        zeros = jnp.zeros_like(w)

        def fv_at(Q):
            closed = self.data.exact_first_variation(self.feature, self.loss, particles, Q)
            if closed is not None:
                return closed
            return jax.grad(lambda e: exact(jnp.concatenate([P, Q]), jnp.concatenate([w, e])))(zeros)

        fv_smooth, pullback = jax.vjp(fv_at, P)
        risk, vel = exact(P, w), pullback(jnp.ones_like(w))[0]
        V = jax.vmap(self.regularizer.value)(P)
        if not smooth_only:
            vel = vel + jax.vmap(jax.grad(self.regularizer.value))(P)
        return Field(risk + w @ V, vel, fv_smooth + V if first_variation else None)

    def value_and_velocity(self, particles: Particles, batch: Dataset | None = None, *,
                           smooth_only: bool = False):
        """(F(μ), ∇_θ F'(μ)(θ_i) (m, p)): :meth:`field` without F'(θ_i)."""
        f = self.field(particles, batch, smooth_only=smooth_only)
        return f.value, f.velocity

    def with_data(self, data) -> "Problem":
        """The same problem on other data (no re-validation of the feature/loss)."""
        return Problem(self.feature, self.loss, self.regularizer, data)


def check_pair(problem, particles) -> None:
    """Raise unless ``problem`` is a Problem and ``particles`` Particles of its dimension p
    (the first check of every entry point that takes both)."""
    if not isinstance(problem, Problem):
        raise InputTypeError(f"problem must be a mf.Problem, got {type(problem).__name__}")
    if not isinstance(particles, Particles):
        raise InputTypeError(f"particles must be mf.Particles, got {type(particles).__name__}")
    if particles.dim != problem.feature.dim:
        raise ValidationError(f"particles have dimension p={particles.dim} but the feature "
                              f"{problem.feature.name} has dim={problem.feature.dim}")


def _check_callables(problem: Problem) -> None:
    """Trace (no compilation) the feature, loss and regularizer on abstract inputs: one
    of the wrong shape, or one that fails on this data's dimension, is named here instead
    of failing deep inside a compiled loop."""
    feat, loss, reg = problem.feature, problem.loss, problem.regularizer
    p, d, dt = feat.dim, problem.data.input_dim, jnp.result_type(float)

    def abstract(*shape):
        return jax.ShapeDtypeStruct(shape, dt)

    def attempt(what, fn, args, want):
        try:
            out = jax.eval_shape(fn, *args)
        except MeasureflowError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's function failed: say which
            first = (str(exc).strip().splitlines() or [""])[0]
            raise ValidationError(f"{what} fails on inputs of shapes {', '.join(str(a.shape) for a in args)}: "
                                  f"{type(exc).__name__}: {first}") from None
        shape = getattr(out, "shape", None)
        if shape != want:
            raise ValidationError(f"{what} returns shape {shape} for inputs of shapes "
                                  f"{', '.join(str(a.shape) for a in args)}; it must return {want}")

    attempt(f"the feature {feat.name} φ(θ, x) (θ in R^{p}, x in R^{d})", feat, (abstract(p), abstract(d)), ())
    attempt(f"{feat.name}.matrix(thetas, X)", feat.matrix, (abstract(2, p), abstract(3, d)), (2, 3))
    attempt(f"the loss {loss.name!r} ℓ(f, y) (one value per sample)", loss, (abstract(3), abstract(3)), (3,))
    attempt(f"the regularizer {type(reg).__name__} V(θ) (θ in R^{p}, a scalar)", reg.value, (abstract(p),), ())


def _check_labels(loss, data) -> None:
    """A loss with a label set (logistic: y ∈ {−1, +1}) refuses other targets; a sampler
    is checked on a small draw."""
    labels = getattr(loss, "labels", None)
    if labels is None:
        return
    try:
        y = _draw_targets(data, jax.random.PRNGKey(0)) if isinstance(data, Sampler) else data.y
        y = np.asarray(y)
    except jax.errors.TracerArrayConversionError:
        return  # traced data (inside jit): checked where it was built
    bad = np.flatnonzero(~np.isin(y, labels))
    if bad.size:
        shown = ", ".join(repr(float(v)) for v in np.unique(y[bad])[:3])
        raise ValidationError(
            f"the {loss.name} loss needs labels y in {{{', '.join(f'{v:g}' for v in labels)}}}, but y has "
            f"{bad.size} other value(s) ({shown}{', ...' if np.unique(y[bad]).size > 3 else ''}); map 0/1 labels "
            "with y = 2*y - 1, or use a classification task (TeacherStudent(task='classification'))")


_draw_targets = jax.jit(lambda data, key: data.sample(key, 64).y)  # one compilation, not many eager ops


def _velocity(problem: Problem, thetas, batch: Dataset, g, with_reg: bool):
    def fv(th):
        val = problem.feature.matrix(th[None], batch.X)[0] @ g
        return val + problem.regularizer.value(th) if with_reg else val

    return jax.vmap(jax.grad(fv))(thetas)
