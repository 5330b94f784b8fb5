"""Periodic convolution kernels ψ on the torus T = [0, 1) for spike deconvolution.

A kernel is a frozen (hashable) dataclass: a compile-time constant of the solvers. It
gives the 1-D profile ψ(u) (d-dimensional kernels are tensor products, see
:class:`~measureflow.features.Spikes`), its Fourier coefficients ψ̂(k) (ψ(u) = Σ_k ψ̂(k)
e^{2iπku}) and the matrix ψ(x_j − t_i) in a fast form. Derivatives come from autodiff.

- :class:`Dirichlet`: ideal low-pass, ψ̂(k) = 1 for |k| ≤ f_c:  ψ(u) = sin((2f_c+1)πu) / sin(πu).
- :class:`Gaussian`: periodized Gaussian, ψ(u) = Σ_{j∈Z} exp(−(u − j)² / (2σ²)),
  ψ̂(k) = σ√(2π) exp(−2π²σ²k²).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from .errors import ValidationError
from .validation import check_int, check_real

#: Fourier coefficients below this fraction of ψ̂(0) count as zero (float64 round-off).
NEGLIGIBLE = 1e-17


class Kernel:
    """Base class of periodic kernels (even, with nonnegative Fourier coefficients)."""

    def __call__(self, u: jax.Array) -> jax.Array:
        """ψ(u), elementwise, for u of any shape (period 1)."""
        raise NotImplementedError

    def fourier(self, k) -> np.ndarray:
        """ψ̂(k) for integer frequencies k (array)."""
        raise NotImplementedError

    @property
    def bandwidth(self) -> int:
        """K with ψ̂(k) = 0 (or < NEGLIGIBLE·ψ̂(0)) for |k| > K."""
        raise NotImplementedError

    @property
    def resolution(self) -> float:
        """The kernel's length scale (1/f_c, σ): separations and plots are in its units."""
        raise NotImplementedError

    @property
    def quadrature_bandwidth(self) -> int:
        """K such that the uniform grid of N > 2K points integrates every product
        ψ(· − t) ψ(· − s) exactly (to round-off): then the grid square loss of a filtered
        measure is its L²(T) loss. Default: the bandwidth (exact for band-limited ψ)."""
        return self.bandwidth

    def cross(self, t: jax.Array, x: jax.Array) -> jax.Array:
        """ψ(x_j − t_i) for t (m,), x (n,); returns (m, n). Default: elementwise."""
        return self(x[None, :] - t[:, None])

    def spectrum(self) -> tuple[np.ndarray, np.ndarray]:
        """(k, ψ̂(k)) for |k| ≤ bandwidth."""
        k = np.arange(-self.bandwidth, self.bandwidth + 1)
        return k, self.fourier(k)

    def moments(self) -> tuple[float, float, float]:
        """(A0, A2, A4), A_j = Σ_k (2πk)^j ψ̂(k)²: ‖ψ‖², ‖ψ'‖², ‖ψ''‖² in L²(T)."""
        k, c = self.spectrum()
        w = 2 * np.pi * k
        return float(np.sum(c**2)), float(np.sum(w**2 * c**2)), float(np.sum(w**4 * c**2))


@dataclasses.dataclass(frozen=True)
class Dirichlet(Kernel):
    """Ideal low-pass filter with cut-off frequency f_c: ψ(u) = Σ_{|k|≤f_c} e^{2iπku}
    = 1 + 2 Σ_{k=1}^{f_c} cos(2πku); ψ(0) = 2f_c + 1."""

    cutoff: int

    def __post_init__(self):
        object.__setattr__(self, "cutoff", check_int("cutoff", self.cutoff, minimum=1))

    def _freqs(self, dtype):
        return 2 * jnp.pi * jnp.arange(1, self.cutoff + 1, dtype=dtype)

    def __call__(self, u):
        u = jnp.asarray(u)
        return 1.0 + 2.0 * jnp.sum(jnp.cos(u[..., None] * self._freqs(u.dtype)), axis=-1)

    def cross(self, t, x):
        # ψ(x − t) = 1 + 2 Σ_k [cos(2πkx)cos(2πkt) + sin(2πkx)sin(2πkt)]: two matmuls of
        # inner size f_c instead of m·n·f_c cosines.
        w = self._freqs(t.dtype)
        at, ax = t[:, None] * w, x[:, None] * w
        return 1.0 + 2.0 * (jnp.cos(at) @ jnp.cos(ax).T + jnp.sin(at) @ jnp.sin(ax).T)

    def fourier(self, k):
        return (np.abs(np.asarray(k)) <= self.cutoff).astype(float)

    @property
    def bandwidth(self):
        return self.cutoff

    @property
    def resolution(self):
        return 1.0 / self.cutoff


@dataclasses.dataclass(frozen=True)
class Gaussian(Kernel):
    """Periodized Gaussian of standard deviation ``width`` σ (0 < σ ≤ 0.25):
    ψ(u) = Σ_{j∈Z} exp(−(u − j)²/(2σ²)), ψ(0) ≈ 1."""

    width: float

    def __post_init__(self):
        w = check_real("width", self.width, positive=True)
        if w > 0.25:
            raise ValidationError(f"width={w} is invalid: a periodized Gaussian wider than 0.25 is "
                                  "almost constant on the torus; use width <= 0.25")
        object.__setattr__(self, "width", w)

    @property
    def _images(self) -> int:
        # after wrapping u into [−½, ½), image j contributes < NEGLIGIBLE once
        # (|j| − ½)² / (2σ²) > log(1 / NEGLIGIBLE)
        return int(math.ceil(0.5 + self.width * math.sqrt(2 * math.log(1 / NEGLIGIBLE))))

    def __call__(self, u):
        u = jnp.asarray(u)
        u = u - jnp.round(u)  # the wrap has zero derivative: autodiff sees ψ' of the nearest copy
        j = jnp.arange(-self._images, self._images + 1, dtype=u.dtype)
        return jnp.sum(jnp.exp(-((u[..., None] - j) ** 2) / (2 * self.width**2)), axis=-1)

    def fourier(self, k):
        k = np.asarray(k, dtype=float)
        return self.width * math.sqrt(2 * math.pi) * np.exp(-2 * math.pi**2 * self.width**2 * k**2)

    @property
    def bandwidth(self):
        # ψ̂(k)/ψ̂(0) = exp(−2π²σ²k²) < NEGLIGIBLE beyond this k
        return int(math.ceil(math.sqrt(math.log(1 / NEGLIGIBLE) / (2 * math.pi**2 * self.width**2))))

    @property
    def resolution(self):
        return self.width

    @property
    def quadrature_bandwidth(self):
        # the aliased terms of ψ(·−t)ψ(·−s) on N points are ≤ ψ̂(N/2)²/ψ̂(0)² = exp(−π²σ²N²)
        return int(math.ceil(math.sqrt(math.log(1 / NEGLIGIBLE)) / (2 * math.pi * self.width)))


def get(kernel=None, cutoff=None) -> Kernel:
    """A kernel from ``kernel`` (a :class:`Kernel`) or ``cutoff`` (→ Dirichlet)."""
    if kernel is not None and cutoff is not None:
        raise ValidationError("pass either kernel= or cutoff=, not both")
    if kernel is not None:
        if not isinstance(kernel, Kernel):
            from .errors import InputTypeError

            raise InputTypeError(f"kernel must be a mf.kernels.Dirichlet or Gaussian, got {kernel!r}")
        return kernel
    if cutoff is None:
        raise ValidationError("pass cutoff= (Dirichlet cut-off frequency) or kernel=")
    return Dirichlet(cutoff)


# -- sampling grids that represent a kernel ------------------------------------------


def min_grid(kernel: Kernel) -> int:
    """The smallest number of grid points per axis for which the grid square loss is the
    exact L² loss of filtered measures: 2K + 1, K = ``kernel.quadrature_bandwidth``."""
    return 2 * kernel.quadrature_bandwidth + 1


def check_grid(grid: int, kernel: Kernel) -> int:
    """Raise a ValidationError unless a ``grid``-point axis represents ``kernel``."""
    grid = check_int("grid", grid, minimum=1)
    need = min_grid(kernel)
    if grid < need:
        K = kernel.quadrature_bandwidth
        what = f"the cut-off f_c={K}" if kernel.bandwidth == K else f"{kernel!r} (bandwidth K={K})"
        raise ValidationError(
            f"grid={grid} cannot represent {what}: the square loss on an N-point grid equals the "
            f"exact L² loss of the filtered signal only for N > 2K = {2 * K}; use grid >= {need}")
    return grid
