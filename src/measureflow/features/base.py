"""Features φ(θ, x): the functions a particle θ ∈ R^p contributes to the prediction.

A feature is a frozen (hashable) object: it is a compile-time constant of the solvers'
compiled loops. Gradients in θ come from autodiff; ``matrix`` vectorizes over particles
and samples and may be overridden by a faster closed form.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Literal

import jax
import jax.numpy as jnp

from ..errors import InputTypeError, ValidationError
from ..validation import check_int, check_real


@dataclasses.dataclass(frozen=True)
class Homogeneity:
    """How φ scales with θ; it decides which initializations are admissible.

    - ``full``: φ(λθ, x) = λ^degree φ(θ, x) for λ > 0 (ReLU unit: degree 2).
    - ``partial``: φ is degree-``degree`` homogeneous in the single coordinate
      ``coordinate`` (the weight r), the others being free (sigmoid unit, spike).
    - ``none``: no homogeneity.
    """

    kind: Literal["full", "partial", "none"] = "none"
    degree: float = 0.0
    coordinate: int | None = None

    def __post_init__(self):
        if self.kind not in ("full", "partial", "none"):
            raise ValidationError(f"homogeneity kind={self.kind!r} is not one of 'full', 'partial', 'none'")
        if self.kind != "none":
            check_real("homogeneity degree", self.degree, positive=True)
        if self.kind == "partial" and self.coordinate is None:
            raise ValidationError("partial homogeneity needs the index of its weight coordinate")

    @classmethod
    def full(cls, degree: float) -> "Homogeneity":
        return cls("full", degree)

    @classmethod
    def partial(cls, degree: float, coordinate: int) -> "Homogeneity":
        return cls("partial", degree, coordinate)


NO_HOMOGENEITY = Homogeneity()


@dataclasses.dataclass(frozen=True)
class UnitNorms:
    """L² norms of the unit-weight feature φ₁(θ̃, ·) = φ((1, θ̃), ·) of a partially
    1-homogeneous feature (φ = r φ₁), each a sup over θ̃, in the data's quadrature:

    value       ‖φ₁‖²
    cross       |⟨φ₁, ∇_θ̃ φ₁⟩|                         (0 for even translation kernels)
    grad        λ_max of the Gram matrix ⟨∂_a φ₁, ∂_b φ₁⟩  (energy per position direction)
    grad_trace  ‖∇_θ̃ φ₁‖² = trace of that Gram matrix
    hess        ‖∇²_θ̃ φ₁‖²_F
    """

    value: float
    cross: float
    grad: float
    grad_trace: float
    hess: float


class Feature:
    """Base class. Subclasses are frozen dataclasses that define ``__call__``.

    Attributes (class or instance):
      dim           p, the dimension of θ
      input_dim     d, the dimension of x (``None``: not checked)
      homogeneity   a :class:`Homogeneity`
      weight_index  index of the output-weight / amplitude coordinate (``None`` if none):
                    the coordinate ``L1`` acts on and the random-features baseline optimizes
      position_domain  ``"euclidean"`` or ``"torus"`` (coordinates other than the weight
                    live on [0, 1)^k and are wrapped after each step)
      default_geometry the metric the solvers use when given ``geometry=None``
                    (``"euclidean"``, ``"conic"``; ``None``: Euclidean)
      resolution    the length scale of the feature on its positions (e.g. 1/f_c of a
                    spike kernel; ``None`` if none): certificates and spike extraction
                    size their grids and merge radii by it

    Optional hooks, with their defaults here: ``unit_norms()``, ``sample_positions``,
    ``wrap``, ``check_data``.
    """

    dim: int
    input_dim: int | None = None
    homogeneity: Homogeneity = NO_HOMOGENEITY
    weight_index: int | None = None
    position_domain: str = "euclidean"
    default_geometry: str | None = None
    resolution: float | None = None

    def unit_norms(self) -> UnitNorms | None:
        """The L² norms of the unit-weight feature (partially 1-homogeneous features that
        know them, e.g. spikes); ``None``: unknown. The conic metric uses them."""
        return None

    def __call__(self, theta: jax.Array, x: jax.Array) -> jax.Array:
        """φ(θ, x) for one particle θ (p,) and one sample x (d,); returns a scalar."""
        raise NotImplementedError

    def matrix(self, thetas: jax.Array, X: jax.Array) -> jax.Array:
        """Φ_ij = φ(θ_i, x_j) for thetas (m, p) and X (n, d); returns (m, n)."""
        return jax.vmap(lambda th: jax.vmap(lambda x: self(th, x))(X))(thetas)

    def sample_positions(self, key: jax.Array, m: int) -> jax.Array:
        """m full-support draws of the non-weight coordinates (m, p − 1), used by the
        admissible init under partial homogeneity. Default: standard Gaussian."""
        return jax.random.normal(key, (m, self.dim - 1))

    def wrap(self, thetas: jax.Array) -> jax.Array:
        """Map positions back into the domain (identity on R^p)."""
        return thetas

    def check_data(self, data) -> None:
        """Raise a ValidationError if ``data`` cannot serve this feature (called by the
        solvers before any work, e.g. a sampling grid too coarse for a kernel). Default:
        nothing beyond the input dimension, which ``Problem`` checks."""

    @property
    def name(self) -> str:
        return type(self).__name__


@dataclasses.dataclass(frozen=True)
class Custom(Feature):
    """A user-defined feature: ``phi(theta, x) -> scalar``, differentiable in theta.

    Example: ``Custom(lambda th, x: th[0] * jnp.tanh(th[1:] @ x), dim=3,
    homogeneity=Homogeneity.partial(1, 0), weight_index=0)``.
    """

    phi: Callable
    dim: int
    homogeneity: Homogeneity | None = None
    input_dim: int | None = None
    weight_index: int | None = None

    def __post_init__(self):
        if not callable(self.phi):
            raise InputTypeError(f"phi must be callable, got {type(self.phi).__name__}")
        check_int("dim", self.dim, minimum=1)
        if self.input_dim is not None:
            check_int("input_dim", self.input_dim, minimum=1)
        hom = self.homogeneity if self.homogeneity is not None else NO_HOMOGENEITY
        if not isinstance(hom, Homogeneity):
            raise InputTypeError(f"homogeneity must be a Homogeneity or None, got {hom!r}")
        object.__setattr__(self, "homogeneity", hom)
        if hom.kind == "partial":
            if not -self.dim <= hom.coordinate < self.dim:
                raise ValidationError(f"homogeneity coordinate={hom.coordinate} is out of range for dim={self.dim}")
            if self.weight_index is None:
                object.__setattr__(self, "weight_index", hom.coordinate % self.dim)
        if self.weight_index is not None:
            check_int("weight_index", self.weight_index)
            if not -self.dim <= self.weight_index < self.dim:
                raise ValidationError(f"weight_index={self.weight_index} is out of range for dim={self.dim}")
            object.__setattr__(self, "weight_index", self.weight_index % self.dim)

    def __call__(self, theta, x):
        return jnp.asarray(self.phi(theta, x))
