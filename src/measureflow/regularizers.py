"""Regularizers V(θ) (per particle), the ∫V dμ term of F, with their proximal maps.

``prox(theta, step)`` returns argmin_u V(u) + |u − θ|² / (2·step) for one particle (p,).
Smooth regularizers are differentiated by autodiff in "gd"; non-smooth ones (L1) are only
used through their prox ("fb", and "sgd" as stochastic forward–backward).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from .errors import InputTypeError, ValidationError
from .validation import check_int, check_real


class Regularizer:
    """Base class: ``value(theta)``, optional ``prox(theta, step)``, ``smooth`` flag."""

    smooth: bool = True
    has_prox: bool = False

    def value(self, theta: jax.Array) -> jax.Array:
        raise NotImplementedError

    def prox(self, theta: jax.Array, step) -> jax.Array:
        raise ValidationError(f"{type(self).__name__} has no proximal map; pass prox= or use method='gd'")

    def for_feature(self, feature) -> "Regularizer":
        """The regularizer bound to a feature (resolves coordinates); default: itself."""
        return self


@dataclasses.dataclass(frozen=True)
class NoRegularizer(Regularizer):
    """V = 0."""

    has_prox = True

    def value(self, theta):
        return jnp.zeros((), theta.dtype)

    def prox(self, theta, step):
        return theta


@dataclasses.dataclass(frozen=True)
class L2(Regularizer):
    """V(θ) = λ |θ|² (weight decay); prox: θ / (1 + 2 step λ)."""

    lam: float
    has_prox = True

    def __post_init__(self):
        object.__setattr__(self, "lam", check_real("lam", self.lam, nonnegative=True))

    def value(self, theta):
        return self.lam * jnp.sum(theta**2)

    def prox(self, theta, step):
        return theta / (1.0 + 2.0 * step * self.lam)


@dataclasses.dataclass(frozen=True)
class L1(Regularizer):
    """V(θ) = λ |θ_c| on the feature's weight coordinate c (the total variation of the
    signed measure it represents); prox: soft-thresholding of θ_c by step·λ."""

    lam: float
    coordinate: int | None = None
    smooth = False
    has_prox = True

    def __post_init__(self):
        object.__setattr__(self, "lam", check_real("lam", self.lam, nonnegative=True))
        if self.coordinate is not None:
            object.__setattr__(self, "coordinate", check_int("coordinate", self.coordinate))

    def for_feature(self, feature):
        if self.coordinate is not None:
            if not -feature.dim <= self.coordinate < feature.dim:
                raise ValidationError(f"L1 coordinate={self.coordinate} is out of range for the feature "
                                      f"{feature.name} with dim={feature.dim} (valid: 0 to {feature.dim - 1})")
            return dataclasses.replace(self, coordinate=self.coordinate % feature.dim)
        if feature.weight_index is None:
            raise ValidationError(
                f"L1 acts on the feature's weight coordinate, but {feature.name} declares none; "
                "pass L1(lam, coordinate=i)")
        return dataclasses.replace(self, coordinate=feature.weight_index)

    def _c(self):
        if self.coordinate is None:
            raise ValidationError("L1 is not bound to a feature: use it inside a Problem or pass coordinate=")
        return self.coordinate

    def value(self, theta):
        return self.lam * jnp.abs(theta[self._c()])

    def prox(self, theta, step):
        r = theta[self._c()]
        shrunk = jnp.sign(r) * jnp.maximum(jnp.abs(r) - step * self.lam, 0.0)
        return theta.at[self._c()].set(shrunk)


@dataclasses.dataclass(frozen=True)
class Custom(Regularizer):
    """A user-defined V: ``fn(theta) -> scalar``; smooth unless ``prox`` is given and
    ``smooth=False``."""

    fn: Callable
    prox_fn: Callable | None = None
    smooth: bool = True

    def __post_init__(self):
        if not callable(self.fn):
            raise InputTypeError(f"regularizer must be callable, got {type(self.fn).__name__}")
        if self.prox_fn is not None and not callable(self.prox_fn):
            raise InputTypeError("prox must be callable (theta, step) -> theta")
        if not self.smooth and self.prox_fn is None:
            raise ValidationError("a non-smooth regularizer needs prox=")

    @property
    def has_prox(self):
        return self.prox_fn is not None

    def value(self, theta):
        return jnp.asarray(self.fn(theta))

    def prox(self, theta, step):
        if self.prox_fn is None:
            return super().prox(theta, step)
        return self.prox_fn(theta, step)


def get(regularizer) -> Regularizer:
    """Resolve ``None``, a :class:`Regularizer` or a callable V(θ)."""
    if regularizer is None:
        return NoRegularizer()
    if isinstance(regularizer, Regularizer):
        return regularizer
    if callable(regularizer):
        return Custom(regularizer)
    raise InputTypeError(f"regularizer must be None, mf.L2(lam), mf.L1(lam) or a callable, got {regularizer!r}")
