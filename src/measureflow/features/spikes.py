"""Spikes on the torus T^d: φ(θ, x) = r·ψ(x − t) for θ = (r, t) ∈ R × T^d.

A measure of spikes μ = Σ_i w_i δ_{(r_i, t_i)} represents the signed measure
ν = Σ_i w_i r_i δ_{t_i}, and f_μ = ψ * ν is its low-pass filtered version (sparse spike
deconvolution, BLASSO; DESIGN §2). φ is 1-homogeneous in the amplitude r (coordinate 0),
so the admissible initialization is r = 0 with positions covering the torus.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import InputTypeError, ValidationError
from ..kernels import Kernel, check_grid
from ..validation import check_int
from .base import Feature, Homogeneity, UnitNorms

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclasses.dataclass(frozen=True, init=False)
class Spikes(Feature):
    """``Spikes(kernel, dim=1)``: φ((r, t), x) = r·ψ(x − t), x, t ∈ T^d = [0, 1)^d.

    kernel  a :class:`~measureflow.kernels.Kernel` (Dirichlet, Gaussian); in 2-D the
            tensor product ψ(u) = ψ(u_1) ψ(u_2)
    dim     d ∈ {1, 2}, the dimension of the torus (= ``input_dim``); θ has p = d + 1
            coordinates, so ``feature.dim`` is d + 1 as for every feature

    Solved by default in the conic geometry (``default_geometry``), whose constants and
    default step come from the kernel's norms (``unit_norms``).
    """

    kernel: Kernel
    input_dim: int

    homogeneity = Homogeneity.partial(1, 0)
    weight_index = 0
    position_domain = "torus"
    default_geometry = "conic"

    def __init__(self, kernel: Kernel, dim: int = 1):
        if not isinstance(kernel, Kernel):
            raise InputTypeError(f"kernel must be a mf.kernels.Dirichlet or Gaussian, got {kernel!r}")
        d = check_int("dim", dim, minimum=1)
        if d > 2:
            raise ValidationError(f"dim={d} is invalid: spikes live on the torus T^1 or T^2 (dim=1 or 2)")
        object.__setattr__(self, "kernel", kernel)
        object.__setattr__(self, "input_dim", d)

    @property
    def dim(self) -> int:
        return self.input_dim + 1

    @property
    def resolution(self) -> float:
        """Length scale of ψ along each position axis (1/f_c, σ)."""
        return self.kernel.resolution

    def __call__(self, theta, x):
        return theta[0] * jnp.prod(self.kernel(jnp.asarray(x) - theta[1:]))

    def matrix(self, thetas, X):
        out = thetas[:, 0:1]
        for a in range(self.input_dim):  # tensor product: one kernel matrix per axis
            out = out * self.kernel.cross(thetas[:, 1 + a], X[:, a])
        return out

    def sample_positions(self, key, m):
        """Uniform points covering T^d, shifted by a random offset from ``key``: m
        equispaced points in 1-D; in 2-D ≈ √m rows of ≈ √m equispaced points each (the
        g×g grid when m = g²), rows staggered by the golden ratio — within a few percent of
        the best ℓ∞ covering radius 1/(2√m) for every m."""
        d = self.input_dim
        shift = jax.random.uniform(key, (d,))
        if d == 1:
            return ((jnp.arange(m, dtype=shift.dtype) + shift[0]) / m)[:, None]
        rows = max(1, round(math.sqrt(m)))
        pts = []
        for j in range(rows):
            count = m // rows + (j < m % rows)
            stagger = 0.0 if count * rows == m and rows * rows == m else j * _GOLDEN
            pts += [((i + stagger) / count, j / rows) for i in range(count)]
        return jnp.mod(jnp.asarray(pts, shift.dtype) + shift / jnp.asarray([m // rows, rows], shift.dtype), 1.0)

    def wrap(self, thetas):
        return thetas.at[:, 1:].set(jnp.mod(thetas[:, 1:], 1.0))

    def check_data(self, data):
        """Samples on a uniform grid of N points along an axis must represent the kernel,
        N > 2K (:func:`~measureflow.kernels.check_grid`): on a coarser grid the cut-off
        aliases and the grid loss is not the L² loss. Other sample sets are not checked."""
        try:
            X = np.mod(np.asarray(data.X, dtype=float), 1.0)
        except Exception:  # noqa: BLE001 - a sampler or traced data: nothing to check here
            return
        for a in range(X.shape[1]):
            u = np.unique(X[:, a])
            N = len(u)
            gaps = np.diff(np.append(u, u[0] + 1.0))
            if N > 1 and np.allclose(gaps, 1.0 / N, rtol=1e-6, atol=0):
                try:
                    check_grid(N, self.kernel)
                except ValidationError as exc:
                    raise ValidationError(f"the data sample axis {a} of the torus on a uniform grid of "
                                          f"N={N} points: {exc}") from None

    def unit_norms(self) -> UnitNorms:
        """Norms of ψ(· − t) and its t-derivatives in L²(T^d) (from the Fourier
        coefficients; equal to the grid norms on a grid that resolves the kernel):
        ‖ψ‖² = A0^d, ‖∂_aψ‖² = A2 A0^{d−1}, ‖∇²ψ‖²_F = d A4 A0^{d−1} + d(d−1) A2² A0^{d−2},
        with A_j = Σ_k (2πk)^j ψ̂(k)²; ⟨ψ, ∂_aψ⟩ = ⟨∂_aψ, ∂_bψ⟩ = 0 (a ≠ b) by parity."""
        d = self.input_dim
        A0, A2, A4 = self.kernel.moments()
        grad = A2 * A0 ** (d - 1)
        hess = d * A4 * A0 ** (d - 1) + d * (d - 1) * A2**2 * A0 ** max(d - 2, 0)
        return UnitNorms(value=A0**d, cross=0.0, grad=grad, grad_trace=d * grad, hess=hess)
