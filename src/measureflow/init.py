"""Admissible initializations μ0 and checks of the support condition.

Global convergence of the many-particle flow needs μ0 diverse enough for the feature's
homogeneity (DESIGN §1):
- full homogeneity: supp μ0 separates 0 from ∞, e.g. uniform directions on a sphere;
- partial homogeneity in r: r = 0 and the other coordinates with full support.
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .errors import InputTypeError, SupportWarning, ValidationError
from .features.base import Feature
from .particles import Particles
from .validation import as_key, check_int, check_memory, check_real


def admissible(feature: Feature, m: int, key=0, *, radius: float = 1.0, scale: float = 1.0) -> Particles:
    """m particles with masses 1/m satisfying the support condition of ``feature``.

    full:    θ_i uniform on the sphere of radius ``radius`` in R^p
    partial: θ_i,r = 0, other coordinates ``scale`` · ``feature.sample_positions`` (full
             support for any scale > 0; e.g. scale ≈ 1/√d for network units on inputs of
             norm √d, so that w·x = O(1) and the units do not start saturated; scale ≠ 1
             is an error for torus positions and for the other kinds, which have radius)
    none:    θ_i ~ N(0, radius² I) (no theory applies; a reasonable default)
    """
    if not isinstance(feature, Feature):
        raise InputTypeError(f"feature must be a measureflow Feature, got {feature!r}")
    m = check_int("m", m, minimum=1)
    check_memory(f"m={m} particles in R^{feature.dim}", 3 * m * feature.dim * 8, "lower m")
    radius = check_real("radius", radius, positive=True)
    scale = check_real("scale", scale, positive=True)
    key = as_key(key)
    hom = feature.homogeneity
    if scale != 1.0 and (hom.kind != "partial" or feature.position_domain == "torus"):
        raise ValidationError(f"scale={scale!r} applies to the positions of a partially homogeneous feature on R^k; "
                              f"{feature.name} has {hom.kind!r} homogeneity and {feature.position_domain!r} positions "
                              "(use radius= for full homogeneity)")
    if hom.kind == "full":
        g = jax.random.normal(key, (m, feature.dim))
        P = radius * g / jnp.linalg.norm(g, axis=1, keepdims=True)
    elif hom.kind == "partial":
        c = hom.coordinate % feature.dim
        rest = np.asarray(feature.sample_positions(key, m))
        if scale != 1.0:  # a no-op at 1 keeps the default draws bit for bit
            rest = scale * rest
        P = np.insert(rest, c, 0.0, axis=1)  # NumPy: eager jnp.insert compiles for seconds
    else:
        P = radius * jax.random.normal(key, (m, feature.dim))
    return Particles(np.asarray(P))


@dataclasses.dataclass(frozen=True)
class SupportReport:
    """Outcome of :func:`check_support`: ``ok`` and the list of detected ``problems``."""

    ok: bool
    problems: tuple
    kind: str

    def __str__(self):
        return "support condition: ok" if self.ok else "support condition violated: " + "; ".join(self.problems)


def _half_space(directions: np.ndarray, probes: int, seed: int) -> np.ndarray | None:
    """A direction u with <u, d_i> < 0 for all i, if random probing (plus the negated mean
    and the coordinate axes) finds one: then every particle lies in an open half-space."""
    rng = np.random.default_rng(seed)
    k = directions.shape[1]
    # ±e_j catch a coordinate of one sign (e.g. all output weights positive), whose
    # separating cone is too thin for random probes when many particles lie near its edge
    U = np.vstack([np.eye(k), -np.eye(k), rng.standard_normal((probes, k))])
    mean = directions.mean(axis=0)
    if np.linalg.norm(mean) > 0:
        U = np.vstack([-mean, U])
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    worst = (directions @ U.T).max(axis=0)
    hit = np.flatnonzero(worst < 0)
    return U[hit[0]] if hit.size else None


def check_support(feature: Feature, particles: Particles, *, warn: bool = True,
                  probes: int = 2000, seed: int = 0) -> SupportReport:
    """Detect visible violations of the support condition (warns with
    :class:`~measureflow.errors.SupportWarning` unless ``warn=False``).

    full:    a particle at 0, or all directions θ_i/|θ_i| inside one open half-space
             (then μ0 cannot separate 0 from ∞; e.g. all output weights of one sign)
    partial: nonzero weights, or positions confined (a half-space of R^k, a proper
             affine subspace, or a gap in the torus wider than 2/m^(1/k) of the domain)
    """
    if not isinstance(feature, Feature):
        raise InputTypeError(f"feature must be a measureflow Feature, got {feature!r}")
    if not isinstance(particles, Particles):
        raise InputTypeError(f"particles must be mf.Particles, got {type(particles).__name__}")
    if particles.dim != feature.dim:
        raise ValidationError(f"particles have dimension p={particles.dim} but the feature {feature.name} "
                              f"has dim={feature.dim}")
    P = np.asarray(particles.positions, dtype=float)
    hom = feature.homogeneity
    problems = []
    if hom.kind == "full":
        norms = np.linalg.norm(P, axis=1)
        if np.any(norms == 0):
            problems.append(f"{int(np.sum(norms == 0))} particle(s) at θ = 0, where a homogeneous feature is stuck")
        D = P[norms > 0] / norms[norms > 0, None]
        u = _half_space(D, probes, seed) if len(D) else None
        if u is not None:
            problems.append(f"all particle directions lie in the open half-space <u, θ> < 0 for u = {np.round(u, 3)}")
    elif hom.kind == "partial":
        c = hom.coordinate % feature.dim
        r = P[:, c]
        if np.any(r != 0):
            problems.append(f"{int(np.sum(r != 0))} particle(s) have a nonzero weight coordinate (max |r| = {np.abs(r).max():.3g}); "
                            "the admissible init starts at r = 0")
        rest = np.delete(P, c, axis=1)
        if feature.position_domain == "torus":
            k = rest.shape[1]
            for j in range(k):
                s = np.sort(np.mod(rest[:, j], 1.0))
                gap = np.max(np.diff(np.concatenate([s, [s[0] + 1.0]])))
                limit = min(0.5, 2.0 / max(len(s), 1) ** (1.0 / k))
                if gap > limit:
                    problems.append(f"positions leave a gap of width {gap:.3g} on torus axis {j} (allowed {limit:.3g})")
        elif rest.shape[1] > 0 and len(rest) > 1:
            centered = rest - rest.mean(axis=0)
            rank = np.linalg.matrix_rank(centered, tol=1e-9 * max(1.0, np.abs(rest).max()))
            if rank < rest.shape[1]:
                problems.append(f"positions span an affine subspace of dimension {rank} < {rest.shape[1]}")
            if _half_space(rest, probes, seed) is not None:
                problems.append("all positions lie in one open half-space through 0")
    report = SupportReport(not problems, tuple(problems), hom.kind)
    if problems and warn:
        warnings.warn(str(report), SupportWarning, stacklevel=2)
    return report
