"""Wasserstein–Fisher–Rao (conic) particle descent (Chizat 2019): positions and masses move.

    θ_i ← θ_i − β η G(θ_i) ∇_θF'(μ)(θ_i)          (Wasserstein part: transport)
    w_i ← w_i · exp(−α η F'(μ)(θ_i))               (Fisher–Rao part: multiplicative)
    (normalize=True: then w ← w / Σ_j w_j, the flow on probability measures)

Both copies of a split particle see the same F', so the split invariance holds; w_i ≥ 0
stays, and a zero mass stays zero. With β = 0 it is exponentiated-gradient (mirror) descent
on the masses at frozen positions. Optimality: F' = 0 on the support (F' = const with
``normalize``) and ∇F' = 0 there; the measure is β|∇F'|² + α(F' − c)² per unit mass, the
squared norm of the WFR gradient.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from ..errors import ValidationError
from ..particles import Particles
from ..regularizers import L1
from ..validation import check_real
from .base import Rule


@dataclasses.dataclass(frozen=True)
class WFR(Rule):
    """``WFR(alpha=1.0, beta=1.0, normalize=False, freeze_weight=False)``.

    alpha          Fisher–Rao (mass) rate α > 0
    beta           Wasserstein (position) rate β ≥ 0 (0: masses only)
    normalize      renormalize the masses to a probability after each step
    freeze_weight  hold the feature's weight coordinate fixed (e.g. signed spikes θ = (±1, t):
                   the sign stays, the mass carries the amplitude, DESIGN §1b)
    """

    alpha: float = 1.0
    beta: float = 1.0
    normalize: bool = False
    freeze_weight: bool = False

    needs_first_variation = True
    moves_masses = True

    def __post_init__(self):
        a = check_real("alpha", self.alpha)
        b = check_real("beta", self.beta)
        if not (math.isfinite(a) and a > 0):
            raise ValidationError(f"alpha={self.alpha!r} is invalid: the Fisher–Rao rate must be finite and > 0")
        if not (math.isfinite(b) and b >= 0):
            raise ValidationError(f"beta={self.beta!r} is invalid: the Wasserstein rate must be finite and >= 0")
        object.__setattr__(self, "alpha", a)
        object.__setattr__(self, "beta", b)

    def check(self, problem, particles):
        reg, c = problem.regularizer, problem.feature.weight_index
        if self.freeze_weight and c is None:
            raise ValidationError(f"freeze_weight=True needs a weight coordinate; {problem.feature.name} declares none")
        # ℓ1 on a frozen weight coordinate is never differentiated where it is not smooth:
        # with signs fixed, λ|r| is a constant per particle and the masses carry the ℓ1 norm
        l1_on_frozen = self.freeze_weight and isinstance(reg, L1) and reg.coordinate == c
        if not reg.smooth and not l1_on_frozen:
            raise ValidationError(
                f"{type(reg).__name__} is non-smooth: WFR differentiates V in the position step; for ℓ1 on the "
                "weight coordinate use WFR(freeze_weight=True) (signs fixed, masses carry the amplitudes), or method='fb'")
        if self.normalize and float(jnp.sum(particles.weights)) <= 0:
            raise ValidationError("WFR(normalize=True) needs a positive total mass; all initial masses are 0")

    def _centre(self, particles, fv):
        if not self.normalize:
            return fv
        w = particles.weights
        return fv - (w @ fv) / jnp.sum(w)

    def _free(self, problem, velocity):
        """∇_θF' with the frozen weight coordinate's component removed."""
        if self.freeze_weight:
            velocity = velocity.at[:, problem.feature.weight_index].set(0.0)
        return velocity

    def tangent(self, problem, particles, field):
        v = self.beta * self._free(problem, field.velocity)
        return -v, -self.alpha * particles.weights * self._centre(particles, field.first_variation)

    def update(self, problem, particles, field, state, *, step, key, iteration):
        v = self.beta * self._free(problem, field.velocity)
        # exp of the centred F' with normalize: the same measure, no overflow of Σw
        w = particles.weights * jnp.exp(-self.alpha * step * self._centre(particles, field.first_variation))
        if self.normalize:
            w = w / jnp.sum(w)
        return Particles.unchecked(particles.positions - step * v, w), state

    def stationarity(self, problem, particles, field, step):
        grad = self._free(problem, field.velocity)
        return self.beta * jnp.sum(grad**2, axis=1) + self.alpha * self._centre(particles, field.first_variation) ** 2
