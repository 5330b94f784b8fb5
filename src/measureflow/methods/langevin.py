"""Mean-field Langevin dynamics: a base rule plus Gaussian noise.

    θ_i ← base(θ_i) + √(2 η τ_t) ξ_i,   ξ_i ~ N(0, I) independent across particles and steps

the discretized flow of F(μ) + τ ∫ log(dμ/dθ) dμ, globally convergent without a support
condition. τ_t is constant or τ0 · ``schedule(t)`` (a function of the iteration t, traced).
The noise of step t is drawn from fold_in(fold_in(key, t), 1), so it is fixed by the run's
key and independent of how a run is cut (continuation, checkpoints). The entropic
objective F − τĤ is estimated at the end of a run by
:func:`measureflow.diagnostics.entropic_objective`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import InputTypeError, ValidationError
from ..particles import Particles
from ..validation import check_real
from .base import Rule
from .gradient import GradientStep

#: the iterations where a schedule is checked to be positive and finite (0 to 10^7)
SCHEDULE_CHECK_POINTS = (0, 1, 2, 3, 5, 10, 30, 100, 300, 1000, 3000, 10**4, 10**5, 10**6, 10**7)


@dataclasses.dataclass(frozen=True)
class LogSchedule:
    """τ_t / τ0 = 1 / log(e + t) (the annealing of Chizat 2022: slow enough to escape any
    local well, τ_t → 0)."""

    def __call__(self, t):
        return 1.0 / jnp.log(math.e + jnp.asarray(t, jnp.result_type(float)))

    def __repr__(self):
        return "log_schedule"


@dataclasses.dataclass(frozen=True)
class GeometricSchedule:
    """τ_t / τ0 = rate^t, 0 < rate ≤ 1."""

    rate: float

    def __call__(self, t):
        return self.rate ** jnp.asarray(t, jnp.result_type(float))


#: τ_t / τ0 = 1 / log(e + t); a value (not a function) so that runs compare and
#: fingerprint equal across processes
log_schedule = LogSchedule()


def geometric_schedule(rate: float) -> GeometricSchedule:
    """τ_t / τ0 = rate^t, 0 < rate ≤ 1."""
    rate = check_real("rate", rate, positive=True)
    if rate > 1:
        raise ValidationError(f"rate={rate} is invalid: a geometric annealing needs 0 < rate <= 1")
    return GeometricSchedule(rate)


def check_schedule(schedule) -> None:
    """ValidationError unless ``schedule(t)`` is a finite scalar at
    :data:`SCHEDULE_CHECK_POINTS`, > 0 up to t = 1000 and ≥ 0 beyond (a schedule is traced
    in the loop: it cannot raise there)."""
    if not callable(schedule):
        raise InputTypeError(f"schedule must be a function of the iteration, got {schedule!r}")
    try:
        vals = np.asarray([np.asarray(schedule(t), dtype=float) for t in SCHEDULE_CHECK_POINTS])
    except Exception as exc:  # noqa: BLE001 - any failure of a user function is a bad input here
        raise ValidationError(f"schedule(t) failed on an integer iteration t: {type(exc).__name__}: {exc}") from None
    if vals.shape != (len(SCHEDULE_CHECK_POINTS),):
        raise ValidationError(f"schedule(t) must return a scalar, got shape {vals.shape[1:]}")
    # a decaying schedule may underflow to 0 late in a run (0.999^t, t ~ 10^6): harmless,
    # the rule is then its base; a zero or negative value early is a mistake
    bad = [(t, float(v)) for t, v in zip(SCHEDULE_CHECK_POINTS, vals)
           if not math.isfinite(v) or v < 0 or (v == 0 and t <= 1000)]
    if bad:
        t, v = bad[0]
        raise ValidationError(f"schedule must be positive and finite, but schedule({t}) = {v:g} "
                              f"(τ_t = temperature · schedule(t) must stay > 0)")


@dataclasses.dataclass(frozen=True)
class Langevin(Rule):
    """``Langevin(temperature, base=GradientStep(), schedule=None)``: τ_t = temperature ·
    schedule(t) (``None``: constant). ``temperature = 0`` is the base rule itself.

    Give ``schedule`` as :data:`log_schedule`, :func:`geometric_schedule` or a module-level
    function of t (a lambda works but its repr, hence the checkpoint fingerprint, changes
    between processes)."""

    temperature: float
    base: Rule = GradientStep()
    schedule: Callable | None = None

    deterministic = False
    step_control = False

    def __post_init__(self):
        if isinstance(self.temperature, (bool, np.bool_, str, bytes)):
            raise InputTypeError(f"temperature must be a real number, got {self.temperature!r}")
        try:
            tau = float(self.temperature)
        except (TypeError, ValueError):
            raise InputTypeError(f"temperature must be a real number, got {self.temperature!r}") from None
        if not (math.isfinite(tau) and tau >= 0):
            raise ValidationError(f"temperature={self.temperature!r} is invalid: it must be finite and >= 0")
        object.__setattr__(self, "temperature", tau)
        if not isinstance(self.base, Rule) or self.base.moves_masses:
            raise InputTypeError("Langevin's base must be a position rule (GradientStep, ForwardBackward, Optax)")
        if self.schedule is not None:
            check_schedule(self.schedule)

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
        scale = jnp.sqrt(2.0 * step * self.temperature_at(iteration)).astype(P.dtype)  # float32 runs stay float32
        P = P + scale * noise
        return Particles.unchecked(P, moved.weights), state

    def tangent(self, problem, particles, field):
        return self.base.tangent(problem, particles, field)

    def stationarity(self, problem, particles, field, step):
        return self.base.stationarity(problem, particles, field, step)
