"""Pointwise convex losses ℓ(f, y); R(f) = Σ_j s_j ℓ(f(x_j), y_j) with sample weights s.

A loss maps arrays ``f`` and ``y`` of the same shape to per-sample values; its derivative
∂₁ℓ comes from autodiff.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from .errors import InputTypeError
from .validation import check_choice


@dataclasses.dataclass(frozen=True)
class Loss:
    """A loss ``fn(f, y) -> per-sample values``, convex and smooth in f.

    labels     the values y must take (``None``: any real), checked against the data
    curvature  sup_f ∂₁²ℓ (``None``: unknown): 1 for the square loss, 1/4 for the logistic
    quadratic  ℓ = ½(f − y)²: R is then an exact quadratic in f (closed-form population
               risks, curvature bounds and duality certificates rely on it)
    """

    fn: Callable
    name: str = "custom"
    labels: tuple | None = None
    curvature: float | None = None
    quadratic: bool = False

    def __post_init__(self):
        if not callable(self.fn):
            raise InputTypeError(f"loss must be callable, got {type(self.fn).__name__}")

    def __call__(self, f: jax.Array, y: jax.Array) -> jax.Array:
        return self.fn(f, y)

    def derivative(self, f: jax.Array, y: jax.Array) -> jax.Array:
        """∂₁ℓ(f, y), elementwise."""
        return jax.grad(lambda g: jnp.sum(self.fn(g, y)))(f)


def _square(f, y):
    return 0.5 * (f - y) ** 2


def _logistic(f, y):
    # log(1 + exp(-y f)) without overflow: logaddexp is exact for margins of any size and
    # its derivative is the (stable) sigmoid.
    return jnp.logaddexp(0.0, -y * f)


square = Loss(_square, "square", curvature=1.0, quadratic=True)
"""ℓ(f, y) = ½ (f − y)²."""

logistic = Loss(_logistic, "logistic", labels=(-1.0, 1.0), curvature=0.25)
"""ℓ(f, y) = log(1 + exp(−y f)), labels y ∈ {−1, +1}."""

_BUILTIN = {"square": square, "logistic": logistic}


def get(loss) -> Loss:
    """Resolve ``"square"``, ``"logistic"``, a :class:`Loss` or a callable ``fn(f, y)``."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        return _BUILTIN[check_choice("loss", loss, _BUILTIN)]
    if callable(loss):
        return Loss(loss)
    raise InputTypeError(f"loss must be 'square', 'logistic', a Loss or a callable, got {loss!r}")
