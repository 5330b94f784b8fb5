"""Gradient step and forward–backward: the mean-field particle gradient descent.

    GradientStep      θ_i ← θ_i − η G(θ_i) ∇_θF'(μ)(θ_i)                  (V differentiated)
    ForwardBackward   θ_i ← prox_{ηV}(θ_i − η G(θ_i) ∇_θR'(μ)(θ_i))       (V by its prox)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ..errors import ValidationError
from ..particles import Particles
from .base import Rule


@dataclasses.dataclass(frozen=True)
class GradientStep(Rule):
    """θ_i ← θ_i − η G(θ_i) ∇_θF'(μ)(θ_i) (explicit Euler on the Wasserstein gradient flow);
    the regularizer must be smooth."""

    def check(self, problem, particles):
        reg = problem.regularizer
        if not reg.smooth:
            raise ValidationError(
                f"{type(reg).__name__} is non-smooth: the gradient step would differentiate it; "
                "use method='fb' (mf.methods.ForwardBackward())")

    def update(self, problem, particles, field, state, *, step, key, iteration):
        return Particles.unchecked(particles.positions - step * field.velocity, particles.weights), state


@dataclasses.dataclass(frozen=True)
class ForwardBackward(Rule):
    """θ_i ← prox_{ηV}(θ_i − η G(θ_i) ∇_θR'(μ)(θ_i)): a gradient step on the smooth part,
    then the regularizer's prox on each particle (soft-thresholding of the weight for L1).
    Its optimality measure is the gradient mapping |θ_i − prox_{ηV}(θ_i − ηv_i)|² / η²."""

    smooth_only = True

    def check(self, problem, particles):
        reg = problem.regularizer
        if not reg.has_prox:
            raise ValidationError(
                f"forward–backward applies the prox of the regularizer, but {type(reg).__name__} has none; "
                "give it a prox or use method='gd'")

    def _forward_backward(self, problem, P, velocity, step):
        return jax.vmap(problem.regularizer.prox, (0, None))(P - step * velocity, step)

    def update(self, problem, particles, field, state, *, step, key, iteration):
        P = self._forward_backward(problem, particles.positions, field.velocity, step)
        return Particles.unchecked(P, particles.weights), state

    def stationarity(self, problem, particles, field, step):
        P = particles.positions
        G = (P - self._forward_backward(problem, P, field.velocity, step)) / step
        return jnp.sum(G**2, axis=1)
