"""Sparse spike deconvolution (BLASSO) by particle descent: building the problem and
reading the recovered spikes off the particles.

    F(μ) = ½ Σ_j (f_μ(x_j) − y_j)² / N + λ ∫|r| dμ,   f_μ = ψ * ν,   ν = Σ_i w_i r_i δ_{t_i}

is the BLASSO P(ν) = (1/2N)|Aν − y|² + λ|ν|(T^d) over signed measures (DESIGN §6) written
over the particles μ = Σ_i w_i δ_{(r_i, t_i)}. Forward–backward from zero weights on a
uniform grid (the admissible init) moves the particles onto the spikes; several particles
converge to each spike, and :func:`extract_spikes` merges them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import linear_sum_assignment

from .data.spikes import SpikeSignal, torus_distance
from .errors import InputTypeError, ValidationError
from .features.spikes import Spikes
from .particles import Particles
from .problem import Problem
from .regularizers import L1
from .validation import check_real


def blasso(signal: SpikeSignal, lam: float, feature: Spikes | None = None) -> Problem:
    """The BLASSO problem of a :class:`~measureflow.data.SpikeSignal` with regularization λ:
    ``Problem(Spikes(kernel, d), "square", L1(λ), signal)``."""
    if not isinstance(signal, SpikeSignal):
        raise InputTypeError(f"signal must be a mf.data.SpikeSignal, got {type(signal).__name__}")
    lam = check_real("lam", lam, positive=True)
    return Problem(signal.feature if feature is None else feature, "square", L1(lam), signal)


@dataclasses.dataclass(frozen=True)
class SpikeEstimate:
    """Recovered spikes: ``positions`` (K, d) in [0, 1)^d, ``amplitudes`` (K,) and, for
    each, the number of particles merged into it (``counts``)."""

    positions: np.ndarray
    amplitudes: np.ndarray
    counts: np.ndarray

    def __len__(self):
        return len(self.amplitudes)


def _clusters(points: np.ndarray, radius: float) -> np.ndarray:
    """Labels of the connected components of the graph 'ℓ∞ torus distance ≤ radius'
    (single linkage), by union–find."""
    n = len(points)
    parent = np.arange(n)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    close = torus_distance(points[:, None, :], points[None, :, :]) <= radius
    for i, j in zip(*np.nonzero(np.triu(close, 1))):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[ri] = rj
    return np.array([find(i) for i in range(n)])


def extract_spikes(particles: Particles, *, radius: float | None = None, threshold: float = 1e-6,
                   feature: Spikes | None = None) -> SpikeEstimate:
    """Merge particles that converged to the same position and drop negligible ones.

    Each particle carries the amplitude a_i = w_i r_i. Particles with |a_i| ≤ threshold·max|a|
    are dropped; the rest are grouped by single linkage at ℓ∞ torus distance ≤ ``radius``
    (default: a tenth of the kernel's resolution 1/f_c or σ when ``feature`` is given, else
    1e-2 — well below the separation of resolvable spikes, well above the spread of a
    cluster of particles converging to one spike);
    a group becomes one spike with amplitude Σ a_i at the |a_i|-weighted mean position
    (taken on the torus, around the group's heaviest particle). Merged spikes with
    |amplitude| ≤ threshold·max|a| are dropped too. Sorted by position.
    """
    if not isinstance(particles, Particles):
        raise InputTypeError(f"particles must be mf.Particles, got {type(particles).__name__}")
    if radius is None:
        radius = 0.1 * feature.resolution if feature is not None else 1e-2
    radius = check_real("radius", radius, positive=True)
    threshold = check_real("threshold", threshold, nonnegative=True)
    c = 0 if feature is None else feature.weight_index
    P = np.asarray(particles.positions, dtype=float)
    amp = np.asarray(particles.weights, dtype=float) * P[:, c]
    pos = np.mod(np.delete(P, c, axis=1), 1.0)
    d = pos.shape[1]
    scale = np.max(np.abs(amp)) if amp.size else 0.0
    if scale == 0.0:
        return SpikeEstimate(np.zeros((0, d)), np.zeros(0), np.zeros(0, dtype=int))
    keep = np.abs(amp) > threshold * scale
    pos, amp = pos[keep], amp[keep]
    labels = _clusters(pos, radius)
    out_pos, out_amp, out_cnt = [], [], []
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        ref = pos[idx[np.argmax(np.abs(amp[idx]))]]
        rel = (pos[idx] - ref + 0.5) % 1.0 - 0.5  # unwrap around the heaviest particle
        wts = np.abs(amp[idx])
        out_pos.append(np.mod(ref + wts @ rel / wts.sum(), 1.0))
        out_amp.append(amp[idx].sum())
        out_cnt.append(len(idx))
    out_pos, out_amp, out_cnt = np.array(out_pos), np.array(out_amp), np.array(out_cnt)
    big = np.abs(out_amp) > threshold * scale
    order = np.lexsort(out_pos[big].T[::-1])
    return SpikeEstimate(out_pos[big][order], out_amp[big][order], out_cnt[big][order])


@dataclasses.dataclass(frozen=True)
class RecoveryErrors:
    """Errors of recovered spikes against the truth, after matching them one to one
    (Hungarian assignment on the ℓ∞ torus distance).

    position   max over matched pairs of the ℓ∞ torus distance
    amplitude  max over matched pairs of |a_est − a_true|
    missing    true spikes left unmatched;  spurious: recovered spikes left unmatched
    """

    position: float
    amplitude: float
    missing: int
    spurious: int

    def success(self, position_tol: float, amplitude_tol: float) -> bool:
        return (self.missing == 0 and self.spurious == 0 and self.position <= position_tol
                and self.amplitude <= amplitude_tol)


def recovery_errors(estimate: SpikeEstimate, positions, amplitudes) -> RecoveryErrors:
    """Match ``estimate`` to the true spikes (positions (m0, d), amplitudes (m0,))."""
    if not isinstance(estimate, SpikeEstimate):
        raise InputTypeError(f"estimate must be a SpikeEstimate (from extract_spikes), got {type(estimate).__name__}")
    T = np.asarray(positions, dtype=float).reshape(len(np.atleast_1d(amplitudes)), -1)
    a = np.asarray(amplitudes, dtype=float).ravel()
    if T.shape[1] != estimate.positions.shape[1] and len(estimate):
        raise ValidationError(f"true positions have d={T.shape[1]}, the estimate d={estimate.positions.shape[1]}")
    if len(estimate) == 0:
        return RecoveryErrors(float("inf"), float("inf"), len(a), 0)
    D = torus_distance(estimate.positions[:, None, :], T[None, :, :])
    rows, cols = linear_sum_assignment(D)
    return RecoveryErrors(float(D[rows, cols].max()), float(np.abs(estimate.amplitudes[rows] - a[cols]).max()),
                          len(a) - len(cols), len(estimate) - len(rows))
