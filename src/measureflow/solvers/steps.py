"""Default step sizes: η = 1 / L with L the curvature of the rule's field at μ0.

L is the largest |eigenvalue| of the Jacobian of the rule's continuous-time field
(``Rule.tangent``; for the gradient rules G W⁻¹∇²F_smooth) at the initial particles, by
power iteration on Jacobian-vector products; the metric's own bound over the whole run is
used when it is larger (``Geometry.curvature_bound``: at μ0 some curvature may be
invisible, e.g. along the positions of zero-weight particles).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .. import methods as _methods
from ..errors import ValidationError
from ..particles import Particles
from ..problem import Problem, check_pair
from ..validation import as_key, check_int
from . import geometry as _geometry


def power_iteration(problem, P, w, key, geometry, rule, iterations):
    """Largest |eigenvalue| of the Jacobian of the rule's field at (P, w) (traceable).

    Massless particles (solve_batch's padding, masses that WFR drove to 0) are left out:
    they do not act on the others. The start vector is drawn row by row (one key per
    particle), so a run's estimate does not depend on how much it is padded."""
    geom = geometry.resolve(problem)
    real = (w > 0)[:, None]
    masses = rule.moves_masses

    def field(Q, u):
        parts = Particles.unchecked(Q, u)
        f = problem.field(parts, smooth_only=rule.smooth_only, first_variation=rule.needs_first_variation)
        f = f._replace(velocity=geom.precondition(problem.feature, P, f.velocity))  # the metric at μ0
        dP, dw = rule.tangent(problem, parts, f)
        return -dP, -dw

    def apply(v):
        if masses:
            vP, vw = v[:, :-1], v[:, -1]
            dP, dw = jax.jvp(field, (P, w), (vP, vw))[1]
            return jnp.concatenate([dP, dw[:, None]], axis=1)
        return jax.jvp(lambda Q: field(Q, w)[0], (P,), (v,))[1]

    def body(_, carry):
        v, _lam = carry
        Mv = jnp.where(real, apply(v), 0)
        nrm = jnp.linalg.norm(Mv)
        return Mv / jnp.where(nrm > 0, nrm, 1.0), nrm

    width = P.shape[1] + (1 if masses else 0)
    rows = jnp.arange(P.shape[0])
    v0 = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (width,), P.dtype))(rows)
    v0 = jnp.where(real, v0, 0)
    v0 = v0 / jnp.linalg.norm(v0)
    return jax.lax.fori_loop(0, iterations, body, (v0, jnp.zeros((), P.dtype)))[1]


# Module level with the problem as an argument: one compilation per shape, not one per
# call (a sweep asks for the default step of every seed).
_power_iteration = jax.jit(power_iteration, static_argnames=("geometry", "rule", "iterations"))


def _power_iterations(problems, P, w, key, geometry, rule, iterations, shared_problem):
    one = lambda pr, P_, w_: power_iteration(pr, P_, w_, key, geometry, rule, iterations)  # noqa: E731
    return jax.vmap(one, in_axes=(None if shared_problem else 0, 0, 0))(problems, P, w)


power_iterations = jax.jit(_power_iterations, static_argnames=("geometry", "rule", "iterations", "shared_problem"))


def curvature(problem: Problem, particles: Particles, *, method="gd", geometry=None, iterations: int = 30,
              key=0) -> float:
    """Largest |eigenvalue| of the Jacobian of the rule's field at the particles (for the
    gradient rules G W⁻¹ ∇²F_smooth): the step must stay below 2 / curvature for stability."""
    check_pair(problem, particles)
    rule = _methods.get(method, problem.regularizer)
    geom = _geometry.get(geometry, problem.feature)
    return float(_power_iteration(problem, particles.positions, particles.weights, as_key(key), geom, rule,
                                  check_int("iterations", iterations, minimum=1)))


def step_from(L: float, problem, particles, rule, geometry) -> float:
    """1 / max(L, the metric's curvature bound) from the curvature L at the initial particles
    (the bound covers position rules only)."""
    if not rule.moves_masses:
        bound = geometry.curvature_bound(problem, particles, smooth_only=rule.smooth_only)
        if bound is not None and math.isfinite(L):
            L = max(L, bound)
    if not math.isfinite(L) or L <= 0:
        raise ValidationError(
            f"could not estimate a default step (curvature {L} at the initial particles); pass step=")
    return 1.0 / L


def default_step(problem: Problem, particles: Particles, *, method="gd", geometry=None) -> float:
    """The step ``solve(step=None)`` uses: 1 / L (half the stability limit 2/L) for the
    curvature-based rules, the rule's own default otherwise (optax: 1)."""
    check_pair(problem, particles)
    rule = _methods.get(method, problem.regularizer)
    if rule.default_step != "curvature":
        return float(rule.default_step)
    geom = _geometry.get(geometry, problem.feature)
    return step_from(curvature(problem, particles, method=rule, geometry=geom), problem, particles, rule, geom)
