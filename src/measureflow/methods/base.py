"""The update-rule protocol: what one step of a particle method does with the problem's
velocity field.

A rule is a frozen (hashable) object — a compile-time constant of the solver loop — with

    init(problem, particles) -> state                       (a pytree; () if stateless)
    update(problem, particles, field, state, *, step, key, iteration) -> (particles, state)
    tangent(problem, particles, field) -> (dθ/dt (m, p), dw/dt (m,))   (continuous time)
    stationarity(problem, particles, field, step) -> (m,)      (per-particle optimality)

and static flags telling the loop what to compute:

    needs_first_variation   the field carries F'(μ)(θ_i) (m,) (mass updates need it)
    smooth_only             the velocity is that of the smooth part; V enters by its prox
    deterministic           the same inputs give the same step (no noise of the rule's own)
    moves_masses            the rule changes the masses w_i
    step_control            the default step may be halved when F rises (descent rules)

The loop hands the rule a :class:`~measureflow.problem.Field` whose velocity is already in
the run's metric (``geometry=``): G(θ_i) ∇_θF'(μ)(θ_i), the mean-field velocity, so a rule
that acts on each particle's row alone keeps the particle-splitting invariance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..particles import Particles
from ..problem import Field, Problem


class Rule:
    """Base class of the update rules (see the module docstring for the protocol)."""

    needs_first_variation: bool = False
    smooth_only: bool = False
    deterministic: bool = True
    moves_masses: bool = False
    step_control: bool = True
    #: the step used when ``solve(step=None)``: "curvature" (1 / the curvature of the
    #: rule's field at μ0) or a number
    default_step: object = "curvature"

    def init(self, problem: Problem, particles: Particles):
        """The rule's state at the start of a run (a pytree)."""
        return ()

    def update(self, problem: Problem, particles: Particles, field: Field, state, *, step, key, iteration):
        """One step: the new particles (before the feature's ``wrap``) and rule state."""
        raise NotImplementedError

    def tangent(self, problem: Problem, particles: Particles, field: Field):
        """The continuous-time field (dθ/dt, dw/dt) of the rule's smooth part; its Jacobian
        at μ0 sets the default step (stability needs η < 2 / its largest |eigenvalue|)."""
        return -field.velocity, jnp.zeros_like(particles.weights)

    def stationarity(self, problem: Problem, particles: Particles, field: Field, step) -> jax.Array:
        """Per-particle squared norm of the rule's descent direction (m,); the run's
        optimality measure is Σ_i w_i of it (zero exactly at stationary points)."""
        return jnp.sum(field.velocity**2, axis=1)

    def fingerprint(self) -> str:
        """A text that identifies the rule across processes (checkpoints)."""
        return repr(self)

    def check(self, problem: Problem, particles: Particles) -> None:
        """Raise a ValidationError before any work if the rule cannot run on this input."""
