"""Any optax transformation on the mean-field velocity field.

    u, s ← tx.update(G(θ) ∇_θF'(μ)(θ), s, θ);   θ ← θ + η u     (η = ``step``, default 1)

The transformation sees the mean-field velocity (not ∂F/∂θ_i = w_i ∇_θF'), so rules that
act elementwise or row by row (SGD with momentum, Adam, RMSProp...) keep the particle-
splitting invariance; transformations that mix particles (global-norm clipping, for
instance) do not. Put the learning rate in the transformation and leave ``step`` at 1.
"""

from __future__ import annotations

import dataclasses

import jax

from ..errors import InputTypeError, ValidationError
from ..particles import Particles
from .base import Rule


@dataclasses.dataclass(frozen=True)
class Optax(Rule):
    """``Optax(optax.adam(1e-2))``: the positions follow the transformation's updates; the
    masses stay. The regularizer is differentiated (it must be smooth)."""

    transformation: object
    name: str | None = None

    step_control = False
    default_step = 1.0

    def __post_init__(self):
        import optax  # the optional ecosystem dependency, imported where it is used

        if not isinstance(self.transformation, optax.GradientTransformation):
            raise InputTypeError(
                f"Optax needs an optax.GradientTransformation (e.g. optax.adam(1e-2)), got "
                f"{type(self.transformation).__name__}")

    def check(self, problem, particles):
        if not problem.regularizer.smooth:
            raise ValidationError(f"{type(problem.regularizer).__name__} is non-smooth: optax rules differentiate V; "
                                  "use method='fb'")

    def init(self, problem, particles):
        return self.transformation.init(particles.positions)

    def update(self, problem, particles, field, state, *, step, key, iteration):
        updates, state = self.transformation.update(field.velocity, state, particles.positions)
        return Particles.unchecked(particles.positions + step * updates, particles.weights), state

    def fingerprint(self):
        shapes = jax.tree_util.tree_structure(self.transformation.init(jax.numpy.zeros((1, 1))))
        return f"Optax({self.name or '?'}, state {shapes})"
