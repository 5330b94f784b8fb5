"""Sparse spike signals on the torus: the data of the BLASSO (DESIGN §2, §6).

Ground truth μ* = Σ_{k≤m0} a_k δ_{t_k} on T^d (d = 1, 2), observed through a low-pass
filter ψ on the uniform grid x_j ∈ {0, 1/N, …, (N−1)/N}^d:

    y_j = (ψ * μ*)(x_j) + σ ε_j,   ε_j ~ N(0, 1),   sample weights 1/N^d.

The grid is required fine enough that its square loss is the exact L²(T^d) loss of filtered
measures: ½ Σ_j (ψ*ν − ψ*μ*)²(x_j)/N^d = ½ ‖ψ*(ν − μ*)‖²_{L²}. For the Dirichlet kernel
ψ*ν is a trigonometric polynomial of degree f_c, its square has degree 2f_c, and the
N-point rule is exact for degree < N: hence N > 2f_c per axis (N > 2K in general, K the
kernel's ``quadrature_bandwidth``).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from .._pytree import pytree_dataclass, static_field
from ..errors import ValidationError
from ..features.spikes import Spikes
from ..kernels import Kernel, check_grid, min_grid
from ..kernels import get as _get_kernel
from ..validation import check_array, check_choice, check_int, check_memory, check_real
from .base import FixedDesign

SIGNS = ("random", "positive")


def torus_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ℓ∞ wrap-around distance between points a (..., d) and b (..., d) of T^d."""
    diff = np.abs(np.asarray(a) - np.asarray(b)) % 1.0
    return np.max(np.minimum(diff, 1.0 - diff), axis=-1)


def separated_positions(rng: np.random.Generator, m0: int, dim: int, min_separation: float,
                        restarts: int = 200, tries: int = 2000) -> np.ndarray:
    """m0 random points of T^d with pairwise ℓ∞ torus distance > min_separation.

    1-D: exactly uniform among such configurations — the m0 gaps are min_separation plus
    a uniform (Dirichlet) split of the slack 1 − m0·min_separation, rotated at random.
    2-D: sequential rejection, restarted when a configuration gets stuck."""
    if m0 * min_separation**dim >= 1.0:
        raise ValidationError(
            f"cannot place spikes={m0} points with min_separation={min_separation} on T^{dim}: "
            f"fewer than {m0} fit; lower one of them")
    if dim == 1:
        gaps = min_separation + (1.0 - m0 * min_separation) * rng.dirichlet(np.ones(m0))
        return rng.permutation(np.mod(rng.uniform() + np.cumsum(gaps), 1.0))[:, None]
    for _ in range(restarts):
        pts = []
        for _ in range(tries):
            c = rng.uniform(size=dim)
            if all(torus_distance(c, p) > min_separation for p in pts):
                pts.append(c)
                if len(pts) == m0:
                    return np.array(pts)
    raise ValidationError(
        f"could not place spikes={m0} points with min_separation={min_separation} on T^{dim} "
        f"in {restarts} random attempts; lower min_separation or the number of spikes")


def grid_points(grid: int, dim: int) -> np.ndarray:
    """The uniform grid {0, 1/N, …}^d as (N^d, d), first axis slowest."""
    axis = np.arange(grid) / grid
    return np.array(list(itertools.product(axis, repeat=dim)), dtype=float).reshape(-1, dim)


def filtered(kernel: Kernel, positions: np.ndarray, amplitudes: np.ndarray, X: np.ndarray) -> np.ndarray:
    """(ψ * Σ_k a_k δ_{t_k})(x_j) = Σ_k a_k Π_a ψ(x_ja − t_ka) for X (n, d); returns (n,)."""
    return np.asarray(_filtered(kernel, jnp.asarray(positions, float), jnp.asarray(amplitudes, float),
                                jnp.asarray(X, float)))


@functools.partial(jax.jit, static_argnums=0)
def _filtered(kernel, P, amplitudes, X):
    out = amplitudes[:, None]
    for a in range(P.shape[1]):
        out = out * kernel.cross(P[:, a], X[:, a])
    return jnp.sum(out, axis=0)


@pytree_dataclass
@dataclasses.dataclass(frozen=True, init=False, eq=False)
class SpikeSignal(FixedDesign):
    """``SpikeSignal(spikes=5, dim=1, cutoff=12 | kernel=..., min_separation=None,
    signs="random", noise=0.0, grid=None, seed=0)``: a random sparse signal observed on
    a grid — a :class:`FixedDesign` (X the grid, y the noisy samples, weights 1/N^d).

    spikes          m0, number of spikes
    dim             d ∈ {1, 2}
    cutoff, kernel  Dirichlet cut-off f_c, or any kernel (e.g. ``mf.kernels.Gaussian(0.02)``)
    min_separation  pairwise ℓ∞ torus distance between spikes (default 2 × the kernel's
                    resolution: 2/f_c, 2σ)
    signs           "random" (±1 with probability ½) or "positive"; |a_k| ~ U[1, 2]
    noise           standard deviation σ of the Gaussian noise on each sample
    grid            N, points per axis (default 2·(2K + 1)); must exceed 2K (K = f_c)
    seed            seeds the positions, amplitudes and noise

    Arrays: ``positions`` (m0, d), ``amplitudes`` (m0,), ``clean`` (ψ*μ* on the grid),
    besides ``X``, ``y``, ``sample_weights``. ``feature`` is the matching
    :class:`~measureflow.features.Spikes`.
    """

    positions: object
    amplitudes: object
    clean: object
    noise: object  # a leaf, not static: runs at different noise levels share one compilation
    kernel: Kernel = static_field()
    grid: int = static_field()

    def __init__(self, spikes: int = 5, dim: int = 1, cutoff: int | None = None, kernel: Kernel | None = None,
                 min_separation: float | None = None, signs: str = "random", noise: float = 0.0,
                 grid: int | None = None, seed: int = 0):
        m0 = check_int("spikes", spikes, minimum=1)
        dim = check_int("dim", dim, minimum=1)
        if dim > 2:
            raise ValidationError(f"dim={dim} is invalid: spike signals live on T^1 or T^2 (dim=1 or 2)")
        kern = _get_kernel(kernel, cutoff)
        sep = 2 * kern.resolution if min_separation is None else check_real(
            "min_separation", min_separation, nonnegative=True)
        check_choice("signs", signs, SIGNS)
        seed = check_int("seed", seed, minimum=0)
        rng = np.random.default_rng(seed)
        positions = separated_positions(rng, m0, dim, sep)
        amplitudes = rng.uniform(1.0, 2.0, m0)
        if signs == "random":
            amplitudes = amplitudes * rng.choice([-1.0, 1.0], m0)
        self._fill(positions, amplitudes, kern, dim, noise, grid, rng)

    @classmethod
    def from_spikes(cls, positions, amplitudes, *, cutoff: int | None = None, kernel: Kernel | None = None,
                    noise: float = 0.0, grid: int | None = None, seed: int = 0) -> "SpikeSignal":
        """The observation of given spikes: positions (m0, d) in T^d, amplitudes (m0,)."""
        P = check_array("positions", positions)
        if P.ndim == 1:
            P = P[:, None]
        if P.ndim != 2 or P.shape[1] not in (1, 2):
            raise ValidationError(f"positions must have shape (m0, d) with d = 1 or 2, got {P.shape}")
        a = check_array("amplitudes", amplitudes, shape=(P.shape[0],))
        obj = object.__new__(cls)
        seed = check_int("seed", seed, minimum=0)
        obj._fill(np.mod(P, 1.0), a, _get_kernel(kernel, cutoff), P.shape[1], noise, grid,
                  np.random.default_rng(seed))
        return obj

    def _fill(self, positions, amplitudes, kern, dim, noise, grid, rng):
        noise = check_real("noise", noise, nonnegative=True)
        grid = check_grid(2 * min_grid(kern) if grid is None else grid, kern)
        check_memory(f"a sampling grid of {grid}^{dim} points", 4 * float(grid) ** dim * (dim + 2) * 8,
                     "lower the cut-off / grid")
        X = grid_points(grid, dim)
        clean = filtered(kern, positions, amplitudes, X)
        y = clean + noise * rng.standard_normal(clean.shape) if noise > 0 else clean
        FixedDesign.__init__(self, X, y)
        for name, value in dict(positions=jnp.asarray(positions), amplitudes=jnp.asarray(amplitudes),
                                clean=jnp.asarray(clean), kernel=kern, grid=grid, noise=jnp.asarray(noise)).items():
            object.__setattr__(self, name, value)

    @property
    def dim(self) -> int:
        return self.X.shape[1]

    @property
    def spikes(self) -> int:
        return self.positions.shape[0]

    @property
    def feature(self):
        """The matching feature ``Spikes(kernel, dim)``."""
        return Spikes(self.kernel, self.dim)

    @property
    def separation(self) -> float:
        """The smallest pairwise ℓ∞ torus distance between the true spikes (inf if one)."""
        P = np.asarray(self.positions)
        if len(P) < 2:
            return float("inf")
        D = torus_distance(P[:, None, :], P[None, :, :])
        return float(np.min(D[~np.eye(len(P), dtype=bool)]))
