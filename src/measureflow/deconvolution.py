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
import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from .data.spikes import SpikeSignal, torus_distance
from .errors import InputTypeError, ValidationError
from .features.spikes import Spikes
from .particles import Particles
from .problem import Problem
from .regularizers import L1
from .certificates import grid_scan
from .sliding import SignedMeasure, blas_single_threaded
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


# -- the certified solver (issue 15) ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DeconvolutionResult:
    """What :func:`deconvolve` (and the baselines of :mod:`measureflow.baselines`) return.

    particles   the solution as particles of unit mass (r = amplitude); the zero measure
                is one particle of amplitude 0
    spikes      the recovered spikes (:class:`SpikeEstimate`, sorted by position)
    gap         the final :class:`~measureflow.certificates.DualityGap` (its certificate)
    status      "converged" (certified: gap.relative ≤ tol) or "max_iterations" (or, for the
                grid LASSO, "grid_optimal": the grid problem solved, the torus not certified)
    history     (k, 3): wall time since the start [s], objective F, relative gap — one row
                per certificate computed
    iterations  outer iterations (certificates computed)
    """

    particles: Particles
    spikes: SpikeEstimate
    gap: object
    status: str
    history: np.ndarray
    iterations: int
    solver: str

    @property
    def certified(self) -> bool:
        return self.status == "converged"


def result_from(problem, nu, gap, status, history, iterations, solver) -> DeconvolutionResult:
    """Package a signed measure (:class:`~measureflow.sliding.SignedMeasure`) as a result."""
    from . import sliding

    d = problem.feature.input_dim
    order = np.lexsort(nu.positions.T[::-1]) if len(nu) else np.zeros(0, dtype=int)
    est = SpikeEstimate(nu.positions[order].reshape(-1, d), nu.amplitudes[order], np.ones(len(nu), dtype=int))
    mu = sliding.to_particles(nu, size=max(len(nu), 1))
    mu = Particles(np.asarray(mu.positions), np.asarray(mu.weights))
    return DeconvolutionResult(mu, est, gap, status, np.asarray(history, dtype=float).reshape(-1, 3),
                               iterations, solver)


def default_particles(feature: Spikes) -> int:
    """m for the exploration flow: 5 particles per kernel resolution along each axis
    (60 for f_c = 12 in 1-D, 30² for f_c = 6 in 2-D is capped at 400)."""
    per_axis = int(math.ceil(5 / feature.resolution))
    return min(per_axis ** feature.input_dim, 400)


#: the Newton polish runs on supports of at most this many spikes
_NEWTON_MAX = 48


@blas_single_threaded
def deconvolve(problem: Problem, *, tol: float = 1e-8, m: int | None = None, key: int = 0,
               flow_iterations: int | None = None, max_iterations: int = 50, merge_radius: float | None = None,
               **certificate_options) -> DeconvolutionResult:
    """Certified BLASSO: min_ν ½ Σ_j s_j (ψ*ν(x_j) − y_j)² + λ|ν|(T^d), to a relative
    duality gap ≤ ``tol``.

    1. η of ν = 0 (A*y/λ) on the certificate's grid. If a grid value exceeds 1 (by more
       than a gap of ``tol`` allows), 0 is proven not optimal: insert zero-amplitude spikes
       at the grid maxima of |η| above max(1, max|η|/2), parabola-refined
       (:func:`_grid_peaks`), without the Newton stage of a full certificate. Otherwise
       certify 0; λ ≥ λ_max = sup|Σ_j s_j y_j ψ(x_j − ·)|: the zero measure, certified.
    2. explore (optional): ``flow_iterations`` (default 0: measured on the issue-15 1-D
       instances, the insertions below from ν = 0 certify sooner than after 25–400 flow
       steps; in 2-D the flow leaves hundreds of particles to slide) forward–backward steps (``mf.solve(method="fb")``) from the admissible init with
       ``m`` particles (default :func:`default_particles`), then merge particles within
       ``merge_radius`` (default 0.25·resolution) and prune zeros;
    3. (after a certificate) insert a zero-amplitude spike at every local maximum of |η|
       above max(1, sup|η|/2) (Frank–Wolfe insertions, the arg max among them);
    4. repeat until certified or ``max_iterations`` certificates: :func:`local_solve`
       (amplitudes in closed form for the signs of η, Newton on amplitudes and positions;
       the L-BFGS-B slide when that made no progress or on large supports), certificate
       (sup|η| by grid + Newton); if not certified, insert as in 3.
    "converged" means certified: relative gap ≤ ``tol``. At ``max_iterations`` certificates
    the best measure seen is returned, with its certificate.

    ``key`` seeds the init's offset; ``certificate_options`` go to
    :func:`~measureflow.certificates.certificate` (``grid``, ``newton_steps``).
    """
    import time

    from . import init as _init
    from . import sliding
    from .solvers import solve
    from .validation import check_int

    data = sliding.problem_data(problem)
    tol = check_real("tol", tol, positive=True)
    if flow_iterations is None:  # measured: insertions from ν = 0 reach the certificate faster
        flow_iterations = 0
    flow_iterations = check_int("flow_iterations", flow_iterations, minimum=0)
    max_iterations = check_int("max_iterations", max_iterations, minimum=1)
    feat = problem.feature
    m = default_particles(feat) if m is None else check_int("m", m, minimum=1)
    radius = 0.25 * feat.resolution if merge_radius is None else check_real("merge_radius", merge_radius, positive=True)
    t0 = time.perf_counter()
    history = []

    def record(nu):
        gap, cert = sliding.certify(problem, nu, **certificate_options)
        history.append((time.perf_counter() - t0, gap.objective, gap.relative))
        return gap, cert

    nu, cert, sign = sliding.empty(data.dim), None, None
    scan = grid_scan(problem, sliding.to_particles(nu), grid=certificate_options.get("grid"))
    top = float(np.max(np.abs(scan.values)))
    # sup|η| ≥ top > 1 proves ν = 0 not optimal, and its relative gap is at least
    # (top − 1)²/(2 top − 1) (the gap of 0 with p = y/sup|η|): no Newton stage needed to
    # insert at the grid peaks. Otherwise (λ near or above λ_max) certify 0 fully.
    if flow_iterations > 0 or top <= 1.0 or (top - 1.0) ** 2 / (2.0 * top - 1.0) <= tol:
        gap, cert = record(nu)
        if cert.sup <= 1.0 or gap.relative <= tol:   # λ ≥ λ_max: zero is optimal
            return result_from(problem, nu, gap, "converged", history, 1, "deconvolve")
    else:
        T, sign = _grid_peaks(scan)
        nu = SignedMeasure(np.zeros(len(T)), T)
    if flow_iterations > 0:
        mu0 = _init.admissible(feat, m, key=key)
        mu = solve(problem, mu0, "fb", iterations=flow_iterations, history_every=flow_iterations,
                   snapshots=0).particles
        nu = sliding.from_particles(mu)
        nu = sliding.merge_prune(nu, radius, threshold=1e-3 * np.max(np.abs(nu.amplitudes), initial=0.0))
    if len(nu) == 0:
        nu = _insert(nu, cert)
    best, use_slide = None, False
    while True:
        nu = local_solve(data, nu, cert, feat.resolution, use_slide=use_slide, sign=sign)
        sign = None
        gap, cert = record(nu)
        if gap.relative <= tol:
            its = len(history)
            nu, gap = _tidy(problem, data, nu, gap, tol, feat.resolution, history, t0)
            return result_from(problem, nu, gap, "converged", history, its, "deconvolve")
        if len(history) >= max_iterations:
            break
        # no progress from the Newton path (a sign pattern it cannot leave): L-BFGS-B next
        use_slide = best is not None and gap.objective >= best[1].objective * (1 - 1e-12)
        if best is None or gap.objective < best[1].objective:
            best = (nu, gap)
        nu = _insert(nu, cert, radius=1e-2 * feat.resolution)
    if best is not None and best[1].objective < gap.objective:
        nu, gap = best
    return result_from(problem, nu, gap, "max_iterations", history, len(history), "deconvolve")


#: the first insertions: grid peaks of |η(0)| above this fraction of the highest
_FIRST_CUT = 0.3


def _grid_peaks(scan):
    """Insertion points read off a grid scan of η: the grid local maxima of |η| above
    max(1, max|η|/2) (the grid arg max among them), each moved along every axis to the
    vertex of the parabola through it and its two neighbours (within half a grid step);
    points closer than half a step to a stronger one are dropped. Returns positions
    (K, d) and the signs of η there (K,)."""
    n, vals, G = scan.n, scan.values, scan.grid
    d = G.shape[1]
    A = np.abs(vals).reshape((n,) * d)
    idx = scan.maxima[np.abs(vals[scan.maxima]) > max(1.0, _FIRST_CUT * float(np.max(np.abs(vals))))]
    idx = idx[np.argsort(-np.abs(vals[idx]), kind="stable")]
    multi = np.unravel_index(idx, A.shape)
    pos = G[idx].copy()
    for ax in range(d):
        up, down = list(multi), list(multi)
        up[ax], down[ax] = (multi[ax] + 1) % n, (multi[ax] - 1) % n
        vp, v0, vm = A[tuple(up)], A[tuple(multi)], A[tuple(down)]
        den = vm - 2.0 * v0 + vp
        shift = np.where(den < 0, 0.5 * (vm - vp) / np.where(den < 0, den, -1.0), 0.0)
        pos[:, ax] += np.clip(shift, -0.5, 0.5) / n
    pos = np.mod(pos, 1.0)
    keep = []
    for i in range(len(pos)):
        if not keep or torus_distance(pos[keep], pos[i]).min() > 0.5 / n:
            keep.append(i)
    return pos[keep], np.sign(vals[idx[keep]])


def local_solve(data, nu, cert, resolution: float, *, use_slide: bool = False, sign=None):
    """The local solve after insertions (shared with sliding Frank–Wolfe): on supports of
    at most 48 spikes, amplitudes in closed form for the signs of ν's amplitudes and, at
    the new zero-amplitude spikes, of η there (``sign``, else read off ``cert``)
    (:func:`~measureflow.sliding.fit_amplitudes`);
    else, or with ``use_slide``, the joint L-BFGS-B slide; then merge spikes within
    resolution/100 and Newton on the support (:func:`~measureflow.sliding.polish`)."""
    from . import sliding

    if use_slide or len(nu) > _NEWTON_MAX:
        nu = sliding.slide(data, nu)
        for _ in range(20):  # L-BFGS-B alone until the support is small: Newton costs O(K³)
            if len(nu) <= _NEWTON_MAX:
                break
            nu = sliding.slide(data, sliding.merge_prune(nu, 1e-2 * resolution), maxiter=200)
    else:
        if sign is None:
            sign = np.where(nu.amplitudes != 0, np.sign(nu.amplitudes), _eta_signs(cert, nu))
        nu = sliding.fit_amplitudes(data, nu, sign)
    nu = sliding.merge_prune(nu, 1e-2 * resolution)
    if len(nu) <= _NEWTON_MAX:
        nu = sliding.polish(data, nu)
    return nu


def _tidy(problem, data, nu, gap, tol, resolution, history, t0):
    """Certified ν with spikes closer than resolution/10 (one spike split in two, a
    degenerate optimum): merged and re-polished, kept if still certified."""
    import time

    from . import sliding

    merged = sliding.merge_prune(nu, 0.1 * resolution)
    if len(merged) == len(nu):
        return nu, gap
    merged = sliding.polish(data, merged)
    g2, _ = sliding.certify(problem, merged)
    history.append((time.perf_counter() - t0, g2.objective, g2.relative))
    return (merged, g2) if g2.relative <= tol else (nu, gap)


def _eta_signs(cert, nu):
    """sign η(t_k) at the positions of ν (evaluated at a padded size: no recompilation)."""
    from .sliding import bucket

    P = nu.positions
    padded = np.concatenate([P, np.repeat(P[:1], bucket(len(P)) - len(P), axis=0)])
    return np.sign(cert(padded)[:len(P)])


def _insert(nu, cert, every: bool = True, radius: float = 0.0):
    """ν plus a zero-amplitude spike at the arg max of |η| and (``every``) at every other
    local maximum of |η| above max(1, sup|η|/2) that lies farther than ``radius`` from the
    spikes of ν and from a stronger maximum inserted (the local solve would merge it back:
    near an optimum every spike is a local maximum with |η| ≈ 1)."""
    from .sliding import SignedMeasure

    d = nu.positions.shape[1]
    new = [np.mod(np.atleast_1d(cert.argmax).astype(float), 1.0)]
    if every and len(cert.maxima):
        cut = max(1.0, 0.5 * cert.sup)  # the strong violations: weak maxima are side lobes
        strong = np.flatnonzero(np.abs(cert.maxima_eta) > cut)
        strong = strong[np.argsort(-np.abs(cert.maxima_eta[strong]), kind="stable")]
        for t in np.mod(cert.maxima[strong].reshape(-1, d), 1.0):
            taken = np.vstack([nu.positions, np.array(new)]) if len(nu) else np.array(new)
            if torus_distance(taken, t).min() > max(radius, 1e-9):
                new.append(t)
    T = np.array(new, dtype=float).reshape(len(new), d)
    return SignedMeasure(np.concatenate([nu.amplitudes, np.zeros(len(T))]), np.vstack([nu.positions, T]))
