"""Particle state μ = Σ_i w_i δ_{θ_i}: positions (m, p) and masses (m,)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._pytree import build, pytree_dataclass
from .errors import ValidationError
from .validation import check_array


@pytree_dataclass
class Particles:
    """Positions θ (m, p) and masses w (m,), w_i ≥ 0 (default 1/m).

    The masses are the mean-field weights of the measure: constant under the gradient
    rules, moving under Wasserstein–Fisher–Rao (``mf.methods.WFR``); a feature's own weight
    coordinate (output weight a, amplitude r) is part of θ.
    """

    positions: jax.Array
    weights: jax.Array

    def __init__(self, positions, weights=None):
        P = check_array("positions", positions)
        if P.ndim == 1:
            P = P[:, None]
        if P.ndim != 2:
            raise ValidationError(f"positions must have shape (m, p), got {P.shape}")
        if P.shape[0] < 1:
            raise ValidationError("m=0: a measure needs at least one particle (m >= 1)")
        m = P.shape[0]
        if weights is None:
            w = np.full(m, 1.0 / m)
        else:
            w = check_array("weights", weights, shape=(m,))
            if np.any(w < 0):
                raise ValidationError(f"weights (masses) must be >= 0, got min {w.min()} at particle "
                                      f"{int(np.argmin(w))}: a measure has nonnegative mass")
        object.__setattr__(self, "positions", jnp.asarray(P))
        object.__setattr__(self, "weights", jnp.asarray(w))

    @classmethod
    def unchecked(cls, positions, weights) -> "Particles":
        """Build without validation (inside traced code)."""
        return build(cls, positions=positions, weights=weights)

    @property
    def m(self) -> int:
        return self.positions.shape[0]

    @property
    def dim(self) -> int:
        return self.positions.shape[1]

    def split(self) -> "Particles":
        """Every particle duplicated with half its mass: the same measure, 2m particles."""
        return Particles.unchecked(jnp.concatenate([self.positions, self.positions]),
                                   jnp.concatenate([self.weights, self.weights]) / 2)

    def astype(self, dtype) -> "Particles":
        return Particles.unchecked(self.positions.astype(dtype), self.weights.astype(dtype))
