"""Metrics on Θ for the particle gradient: a per-particle preconditioner applied to the
velocity ∇_θ F'(μ)(θ_i). Depending only on θ_i, any such metric keeps the mean-field
(particle-splitting) invariance."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .errors import InputTypeError, ValidationError
from .validation import check_choice, check_real


class Geometry:
    def precondition(self, feature, positions: jax.Array, velocity: jax.Array) -> jax.Array:
        """The descent direction (m, p) from the Euclidean velocity (m, p)."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Euclidean(Geometry):
    """θ_i ← θ_i − η ∇_θ F'(θ_i)."""

    def precondition(self, feature, positions, velocity):
        return velocity


@dataclasses.dataclass(frozen=True)
class Conic(Geometry):
    """Conic metric for partially homogeneous features θ = (r, θ̃): the weight coordinate r
    moves with the Euclidean step, the others with step / (r² + eps).

    The curvature of F' along θ̃ grows like r², so this removes the stiffness that makes a
    single Euclidean step either unstable or glacial (e.g. spikes with a sharp kernel).
    """

    eps: float = 1e-2

    def __post_init__(self):
        object.__setattr__(self, "eps", check_real("eps", self.eps, positive=True))

    def precondition(self, feature, positions, velocity):
        c = feature.weight_index
        if c is None:
            raise ValidationError(f"the conic geometry needs a weight coordinate; {feature.name} declares none")
        r = positions[:, c : c + 1]
        scale = jnp.ones_like(velocity) / (r**2 + self.eps)
        return velocity * scale.at[:, c].set(1.0)


def get(geometry) -> Geometry:
    if geometry is None:
        return Euclidean()
    if isinstance(geometry, Geometry):
        return geometry
    if isinstance(geometry, str):
        return {"euclidean": Euclidean, "conic": Conic}[check_choice("geometry", geometry, ("euclidean", "conic"))]()
    raise InputTypeError(f"geometry must be 'euclidean', 'conic' or a Geometry, got {geometry!r}")
