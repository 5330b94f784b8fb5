"""The problem F(μ) = R(f_μ) + ∫V dμ over measures μ = Σ_i w_i δ_{θ_i}.

    f_μ(x)  = Σ_i w_i φ(θ_i, x)
    R(f)    = Σ_j s_j ℓ(f(x_j), y_j)           (empirical, design, or held-out sample)
    F'(μ)(θ) = Σ_j s_j ∂₁ℓ(f_μ(x_j), y_j) φ(θ, x_j) + V(θ)

The particle velocity of the mean-field flow is ∇_θ F'(μ)(θ_i) = (1/w_i) ∇_{θ_i} F.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import losses as _losses
from . import regularizers as _regs
from ._pytree import pytree_dataclass, static_field
from .data.base import Dataset, Sampler
from .errors import InputTypeError, ValidationError
from .features.base import Feature
from .particles import Particles


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

    # -- evaluation data ---------------------------------------------------------------
    def _batch(self, batch) -> Dataset:
        return self.data.evaluation_set() if batch is None else batch

    # -- values ------------------------------------------------------------------------
    def predict(self, particles: Particles, X: jax.Array | None = None) -> jax.Array:
        """f_μ(x_j) for X (n, d) (default: the evaluation data); returns (n,)."""
        X = self._batch(None).X if X is None else jnp.asarray(X)
        return particles.weights @ self.feature.matrix(particles.positions, X)

    def risk(self, particles: Particles, batch: Dataset | None = None) -> jax.Array:
        """R(f_μ): exact population risk when the data source has one, else the sample
        average on ``batch`` / the evaluation data."""
        if batch is None:
            exact = self.data.exact_risk(self.feature, self.loss, particles)
            if exact is not None:
                return exact
        b = self._batch(batch)
        return b.sample_weights @ self.loss(self.predict(particles, b.X), b.y)

    def penalty(self, particles: Particles) -> jax.Array:
        """∫V dμ = Σ_i w_i V(θ_i)."""
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
        b = self._batch(batch)
        g = self.residual(particles, b)
        return self.feature.matrix(thetas, b.X) @ g + jax.vmap(self.regularizer.value)(thetas)

    def first_variation_grad(self, particles: Particles, thetas: jax.Array,
                             batch: Dataset | None = None, *, smooth_only: bool = False) -> jax.Array:
        """∇_θ F'(μ)(θ) for thetas (k, p); returns (k, p). ``smooth_only`` leaves out V
        (forward–backward handles it by its prox)."""
        b = self._batch(batch)
        g = jax.lax.stop_gradient(self.residual(particles, b))
        return _velocity(self, thetas, b, g, not smooth_only)

    def value_and_velocity(self, particles: Particles, batch: Dataset | None = None, *,
                           smooth_only: bool = False):
        """(F(μ) on the batch, ∇_θ F'(μ)(θ_i) for every particle (m, p)) from one forward
        pass; the solvers' inner step."""
        b = self._batch(batch)
        P, w = particles.positions, particles.weights
        Phi, pullback = jax.vjp(lambda Q: self.feature.matrix(Q, b.X), P)
        f = w @ Phi
        risk, dldf = jax.value_and_grad(lambda f: b.sample_weights @ self.loss(f, b.y))(f)
        (vel,) = pullback(jnp.broadcast_to(dldf, Phi.shape))
        V = jax.vmap(self.regularizer.value)(P)
        if not smooth_only:
            vel = vel + jax.vmap(jax.grad(self.regularizer.value))(P)
        return risk + w @ V, vel

    def with_data(self, data) -> "Problem":
        """The same problem on other data (no re-validation of the feature/loss)."""
        return Problem(self.feature, self.loss, self.regularizer, data)


def _velocity(problem: Problem, thetas, batch: Dataset, g, with_reg: bool):
    def fv(th):
        val = problem.feature.matrix(th[None], batch.X)[0] @ g
        return val + problem.regularizer.value(th) if with_reg else val

    return jax.vmap(jax.grad(fv))(thetas)
