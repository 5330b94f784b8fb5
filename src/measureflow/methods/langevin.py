"""Mean-field Langevin dynamics: a base rule plus Gaussian noise.

    θ_i ← base(θ_i) + √(2 η τ_t) ξ_i,   ξ_i ~ N(0, I) independent across particles and steps

the discretized flow of F(μ) + τ ∫ log(dμ/dθ) dμ, globally convergent without a support
condition. τ_t is constant or follows ``schedule`` (a function of the iteration t, traced).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

from ..errors import InputTypeError, ValidationError
from ..particles import Particles
from ..validation import check_real
from .base import Rule
from .gradient import GradientStep


def log_schedule(t):
    """τ_t / τ0 = 1 / log(e + t)."""
    return 1.0 / jnp.log(math.e + t)


def geometric_schedule(rate: float) -> Callable:
    """τ_t / τ0 = rate^t, 0 < rate ≤ 1."""
    rate = check_real("rate", rate, positive=True)
    if rate > 1:
        raise ValidationError(f"rate={rate} is invalid: a geometric annealing needs 0 < rate <= 1")
    return lambda t: rate ** jnp.asarray(t, jnp.result_type(float))


@dataclasses.dataclass(frozen=True)
class Langevin(Rule):
    """``Langevin(temperature, base=GradientStep(), schedule=None)``: τ_t = temperature ·
    schedule(t) (``None``: constant)."""

    temperature: float
    base: Rule = GradientStep()
    schedule: Callable | None = None

    deterministic = False
    step_control = False

    def __post_init__(self):
        tau = check_real("temperature", self.temperature)
        if not (math.isfinite(tau) and tau >= 0):
            raise ValidationError(f"temperature={self.temperature!r} is invalid: it must be finite and >= 0")
        object.__setattr__(self, "temperature", tau)
        if not isinstance(self.base, Rule) or self.base.moves_masses:
            raise InputTypeError("Langevin's base must be a position rule (GradientStep, ForwardBackward, Optax)")
        if self.schedule is not None:
            if not callable(self.schedule):
                raise InputTypeError(f"schedule must be a function of the iteration, got {self.schedule!r}")
            vals = [float(self.schedule(t)) for t in (0, 1, 10, 1000)]
            if not all(math.isfinite(v) and v > 0 for v in vals):
                raise ValidationError(f"schedule must be positive and finite (τ_t/τ0 at t = 0, 1, 10, 1000: {vals})")

    @property
    def smooth_only(self):
        return self.base.smooth_only

    @property
    def needs_first_variation(self):
        return self.base.needs_first_variation

    @property
    def default_step(self):
        return self.base.default_step

    def check(self, problem, particles):
        self.base.check(problem, particles)

    def temperature_at(self, iteration):
        return self.temperature if self.schedule is None else self.temperature * self.schedule(iteration)

    def init(self, problem, particles):
        return self.base.init(problem, particles)

    def update(self, problem, particles, field, state, *, step, key, iteration):
        moved, state = self.base.update(problem, particles, field, state, step=step, key=key, iteration=iteration)
        P = moved.positions
        noise = jax.random.normal(key, P.shape, P.dtype)
        P = P + jnp.sqrt(2.0 * step * self.temperature_at(iteration)) * noise
        return Particles.unchecked(P, moved.weights), state

    def tangent(self, problem, particles, field):
        return self.base.tangent(problem, particles, field)

    def stationarity(self, problem, particles, field, step):
        return self.base.stationarity(problem, particles, field, step)
