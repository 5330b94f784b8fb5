"""Metrics on Θ for the particle gradient: a per-particle preconditioner applied to the
velocity ∇_θ F'(μ)(θ_i). Depending only on θ_i (and on the problem's data, never on the
other particles), any such metric keeps the mean-field (particle-splitting) invariance.

Two hooks let the solvers pick defaults without knowing the feature:

- ``resolve(problem)`` binds data-dependent constants inside the compiled loop (traced, so
  one compilation serves every data set of the same shapes);
- ``curvature_bound(problem, particles, smooth_only=...)`` bounds the curvature of the
  preconditioned flow over the whole run, or returns ``None`` when it cannot;
  ``solvers.default_step`` takes η = 1 / max(bound, curvature estimated at μ0).

Two hooks that every feature declares (:class:`~measureflow.features.base.Feature`) feed
them: ``default_geometry`` (the name of the metric ``solve`` uses when given
``geometry=None``; ``None``: Euclidean) and ``unit_norms()`` (a
:class:`~measureflow.features.base.UnitNorms` or ``None``: the L² norms the conic metric
scales itself by and bounds the curvature with).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import InputTypeError, ValidationError
from ..regularizers import NoRegularizer
from ..validation import check_choice, check_real


class Geometry:
    """Base class: ``precondition`` maps the Euclidean velocity to the descent direction."""

    def precondition(self, feature, positions: jax.Array, velocity: jax.Array) -> jax.Array:
        """The descent direction (m, p) from the Euclidean velocity (m, p)."""
        raise NotImplementedError

    def resolve(self, problem) -> "Geometry":
        """The metric with its data-dependent constants bound (traceable); default: self."""
        return self

    def curvature_bound(self, problem, particles, *, smooth_only: bool) -> float | None:
        """An upper bound L on the curvature (largest eigenvalue of G W⁻¹ ∇²F, F smooth
        part only if ``smooth_only``) along any descent run from ``particles``, or ``None``
        if this metric cannot give one for the problem."""
        return None


@dataclasses.dataclass(frozen=True)
class Euclidean(Geometry):
    """θ_i ← θ_i − η ∇_θ F'(θ_i)."""

    def precondition(self, feature, positions, velocity):
        return velocity


@dataclasses.dataclass(frozen=True)
class Conic(Geometry):
    """Conic metric for partially 1-homogeneous features θ = (r, θ̃), φ = r·φ₁(θ̃, ·):

        ds² = dr² + (r² + ε) / s · |dθ̃|²,   i.e.   r ← r − η ∂_r F',   θ̃ ← θ̃ − η s/(r² + ε) ∇_θ̃ F'.

    Why: the Gauss–Newton metric of one particle is ‖∂_r φ‖² dr² + r² ‖∂_θ̃ φ‖² |dθ̃|²
    = ‖φ₁‖² dr² + r² ‖∇φ₁‖² |dθ̃|², so its curvature along θ̃ grows like r² (like
    r²(2πf_c)² for a spike with cut-off f_c): one Euclidean step is then unstable on heavy
    particles or glacial on light ones. Dividing the position step by r² equalizes the two
    blocks when s = ‖φ₁‖² / ‖∂_a φ₁‖² (the squared length scale of the feature); ε > 0
    keeps the step finite at r = 0, where the position is not identifiable, and sets the
    amplitude below which a particle's position moves with a damped step.

    Defaults (``None``), from the feature's :class:`UnitNorms` (``feature.unit_norms()``):
        scale  s = ‖φ₁‖² / ‖∂_a φ₁‖²          (1 without unit norms)
        eps    ε = 2 R(0) / ‖φ₁‖² = ‖y‖² / ‖φ₁‖² for the square loss: the squared amplitude
               of a single particle explaining all of y (1e-2 without unit norms)
    With them the curvature is bounded for every r (``curvature_bound``), which gives a
    default step derived from the kernel and the data. The bound is a worst case (all the
    mass in one cluster, the residual aligned with ∇ψ): for 5 Dirichlet spikes (f_c = 12,
    m = 50) it is L = 64, while the curvature measured along runs peaks at μ0 (≈ 10; ≈ 19
    for a single spike) and settles near 3: the default step is safe (monotone descent)
    but 3–20× below the stability limit; pass ``step=`` to go faster at your own risk.
    """

    eps: float | None = None
    scale: float | None = None

    def __post_init__(self):
        if self.eps is not None:
            object.__setattr__(self, "eps", check_real("eps", self.eps, positive=True))
        if self.scale is not None:
            object.__setattr__(self, "scale", check_real("scale", self.scale, positive=True))

    @staticmethod
    def _coordinate(feature) -> int:
        c = feature.weight_index
        if c is None:
            raise ValidationError(f"the conic geometry needs a weight coordinate; {feature.name} declares none")
        return c

    def scale_for(self, feature) -> float:
        """s for ``feature`` (the given ``scale``, else ‖φ₁‖² / ‖∂_a φ₁‖², else 1)."""
        if self.scale is not None:
            return self.scale
        norms = feature.unit_norms()
        return norms.value / norms.grad if norms is not None else 1.0

    def constants(self, problem):
        """(s, ε) for ``problem`` (ε is a traced scalar when it comes from traced data)."""
        norms = problem.feature.unit_norms()
        s = self.scale_for(problem.feature)
        if self.eps is not None:
            eps = self.eps
        elif norms is None:
            eps = 1e-2
        else:
            data = problem.data.evaluation_set()
            risk0 = data.sample_weights @ problem.loss(jnp.zeros_like(data.y), data.y)
            # a zero signal would give ε = 0: fall back to the amplitude scale 1/‖φ₁‖
            eps = jnp.maximum(2.0 * risk0, jnp.finfo(data.y.dtype).tiny) / norms.value
        return s, eps

    def resolve(self, problem):
        s, eps = self.constants(problem)
        return _ConicMetric(s, eps)

    def precondition(self, feature, positions, velocity):
        if self.eps is None:
            raise ValidationError("Conic() takes its default eps from the data: call "
                                  "geometry.resolve(problem) first, or pass Conic(eps=...)")
        return _ConicMetric(self.scale_for(feature), self.eps).precondition(feature, positions, velocity)

    def curvature_bound(self, problem, particles, *, smooth_only):
        """For the square loss (ℓ'' = 1) and features with unit norms, V ≥ 0 and a
        monotone run (F(μ_k) ≤ F(μ0), so ‖f − y‖² ≤ 2F(μ0)):

            L ≤ Σ w_i · λ_max[[c0, √s·c01], [√s·c01, s·c1]]           (Gauss–Newton part)
              + √(2F(μ0)) · √((2 s·tr + s²·c2/4) / ε)                  (residual part)

        with (c0, c01, c1, tr, c2) the :class:`UnitNorms`; r enters only through
        s r²/(r² + ε) ≤ s and r·s/(r² + ε) ≤ s/(2√ε), so the bound holds for every r."""
        norms = problem.feature.unit_norms()
        if norms is None or not problem.loss.quadratic:
            return None
        if not smooth_only and not isinstance(problem.regularizer, NoRegularizer):
            return None  # a differentiated V adds curvature this bound does not cover
        s = self.scale_for(problem.feature)
        eps, F0 = (float(v) for v in _eps_and_objective(self, problem, particles))
        c0, c01, c1 = norms.value, norms.cross, norms.grad
        gauss_newton = c0 + s * c1 if c01 else max(c0, s * c1)
        residual = math.sqrt(2.0 * max(F0, 0.0)) * math.sqrt((2 * s * norms.grad_trace + s * s * norms.hess / 4) / eps)
        return float(np.sum(np.asarray(particles.weights))) * gauss_newton + residual


@functools.partial(jax.jit, static_argnums=0)
def _eps_and_objective(conic, problem, particles):
    # one compiled call instead of op-by-op evaluation (a sweep asks for every seed's step)
    return jnp.asarray(conic.constants(problem)[1]), problem.objective(particles)


class _ConicMetric(Geometry):
    """The conic metric with its constants bound (possibly traced); built by
    :meth:`Conic.resolve`."""

    def __init__(self, scale, eps):
        self.scale, self.eps = scale, eps

    def precondition(self, feature, positions, velocity):
        c = Conic._coordinate(feature)
        r = positions[:, c : c + 1]
        factor = self.scale / (r**2 + self.eps)
        return (velocity * factor).at[:, c].set(velocity[:, c])


def get(geometry, feature=None) -> Geometry:
    """Resolve ``None`` (the feature's ``default_geometry``, else Euclidean), a name or a
    :class:`Geometry`."""
    if geometry is None:
        default = None if feature is None else feature.default_geometry
        return Euclidean() if default is None else get(default)
    if isinstance(geometry, Geometry):
        return geometry
    if isinstance(geometry, str):
        return {"euclidean": Euclidean, "conic": Conic}[check_choice("geometry", geometry, ("euclidean", "conic"))]()
    raise InputTypeError(f"geometry must be 'euclidean', 'conic' or a Geometry, got {geometry!r}")
