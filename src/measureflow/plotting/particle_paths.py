"""Particle paths: how the particles of a measure move during the flow.

- :func:`planar_paths`: network units θ = (w, b, a) (or (w₁, w₂, a)) drawn as the points
  |a|·(w, b) of the plane, coloured by sign(a); for a 2-homogeneous unit this point carries
  the unit's whole contribution (|a|·|(w, b)| is its scale, (w, b)/|(w, b)| its direction).
- :func:`ray_mass_panel`: at the end, the student's mass on each teacher ray (aggregated
  over the units near it) against the teacher's own mass on it, in the same plane.
- :func:`spike_paths`: spikes θ = (r, t) on T¹ drawn in the (position t, amplitude) plane,
  with the true spikes as marks and the amplitude gathered near each.
"""

from __future__ import annotations

import numpy as np

POSITIVE, NEGATIVE = "tab:red", "tab:blue"


def _sign_color(sign):
    return POSITIVE if sign > 0 else NEGATIVE


def planar_paths(ax, paths: np.ndarray, signs: np.ndarray, *, teacher: np.ndarray | None = None,
                 teacher_signs: np.ndarray | None = None, teacher_scale: float = 1.0):
    """Draw particle paths in the plane.

    paths          (s, m, 2) points |a_i|·(w_i, b_i) at s snapshots (first: μ0, last: final)
    signs          (m,) sign of each particle's final output weight a_i (its colour)
    teacher        (k, 2) teacher units |a*|·(w*, b*), drawn as dashed rays from 0 (a
                   2-homogeneous unit is identified by its ray) and as stars at
                   ``teacher_scale`` × the point (the total the student particles on that ray
                   must carry: m/m0 for masses 1/m against 1/m0)

    The frame fits the particles; a teacher star that falls outside it is drawn hollow
    where its ray leaves the frame.
    """
    paths = np.asarray(paths, dtype=float)
    for i in range(paths.shape[1]):
        c = _sign_color(signs[i])
        ax.plot(paths[:, i, 0], paths[:, i, 1], color=c, lw=0.8, alpha=0.6)
        ax.plot(paths[-1, i, 0], paths[-1, i, 1], "o", color=c, ms=3.5)
    ax.plot(paths[0, :, 0], paths[0, :, 1], ".", color="0.5", ms=2.5, label="initialization μ0")
    T = None if teacher is None else np.asarray(teacher, dtype=float) * teacher_scale
    extent = frame_extent(paths, T)
    outside = draw_teacher(ax, T, teacher_signs, extent) if T is not None else False
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.plot([], [], "-", color=POSITIVE, label="particle, a > 0")
    ax.plot([], [], "-", color=NEGATIVE, label="particle, a < 0")
    if teacher is not None:
        ax.plot([], [], "*", color="0.3", mec="k", ms=10, label="teacher unit (and its ray)")
    if outside:
        ax.plot([], [], "*", mfc="none", mec="0.3", ms=10, label="teacher unit beyond the frame")
    ax.axhline(0, color="0.85", lw=0.5, zorder=0)
    ax.axvline(0, color="0.85", lw=0.5, zorder=0)
    ax.set_aspect("equal")


def frame_extent(paths: np.ndarray, teacher: np.ndarray | None = None) -> float:
    """Half-width of a square frame centred at 0 that holds the points ``paths`` (..., 2) and
    the teacher stars (k, 2), those up to twice the particles' reach."""
    extent = 1.15 * max(np.abs(np.asarray(paths, dtype=float)).max(), 1e-12)
    if teacher is not None:
        extent = max(extent, 1.1 * min(np.abs(teacher).max(), 2.0 * extent))
    return extent


def draw_teacher(ax, teacher: np.ndarray, teacher_signs: np.ndarray, extent: float, ms: float = 12) -> bool:
    """Teacher units (k, 2) as dashed rays from 0 to the frame's edge and stars (hollow, at the
    edge, for a star beyond the frame); returns whether one was beyond it."""
    outside = False
    for k in range(len(teacher)):
        c = _sign_color(teacher_signs[k])
        reach = np.abs(teacher[k]).max()
        u = teacher[k] / max(reach, 1e-300)  # the ray, scaled to reach the frame's edge at 1
        ax.plot([0, extent * u[0]], [0, extent * u[1]], ls="--", color=c, lw=0.8, alpha=0.7)
        if reach <= extent:
            ax.plot(*teacher[k], "*", color=c, ms=ms, mec="k", mew=0.6)
        else:
            outside = True
            ax.plot(*(0.97 * extent * u), "*", mfc="none", mec=c, ms=ms, mew=1.2)
    return outside


def _unwrap_breaks(t: np.ndarray) -> np.ndarray:
    """A copy of a torus path t (s,) with NaN inserted where it wraps around [0, 1)."""
    t = np.asarray(t, dtype=float)
    jumps = np.flatnonzero(np.abs(np.diff(t)) > 0.5) + 1
    return np.insert(t, jumps, np.nan)


def spike_paths(ax, t: np.ndarray, amplitude: np.ndarray, *, truth_t: np.ndarray | None = None,
                truth_a: np.ndarray | None = None, tolerance: float | None = None):
    """Draw spike particles in the (position, amplitude) plane.

    t, amplitude  (s, m) positions in [0, 1) and amplitudes (r_i/m for masses 1/m) at s
                  snapshots (first: μ0 at r = 0)
    truth_t       (k,) true spike positions, drawn as dashed lines and, with truth_a
                  (k,), as diamonds at (t_k, a_k), coloured by sign
    tolerance     with the truth: the particles' amplitude within this torus distance of
                  each true spike (same sign), summed, as a hollow circle at t_k — on the
                  diamond when the particles near it carry the spike's amplitude together
    """
    t, r = np.asarray(t, dtype=float), np.asarray(amplitude, dtype=float)
    for i in range(t.shape[1]):
        c = _sign_color(r[-1, i]) if r[-1, i] != 0 else "0.6"
        tt = _unwrap_breaks(t[:, i])
        rr = np.insert(r[:, i], np.flatnonzero(np.abs(np.diff(t[:, i])) > 0.5) + 1, np.nan)
        ax.plot(tt, rr, color=c, lw=0.8, alpha=0.6)
        ax.plot(t[-1, i], r[-1, i], "o", color=c, ms=3.5)
    ax.plot(t[0], r[0], "|", color="0.4", ms=6, label="initialization μ0 (r = 0)")
    if truth_t is not None:
        truth_t = np.asarray(truth_t, dtype=float)
        for k, tk in enumerate(truth_t):
            c = _sign_color(truth_a[k]) if truth_a is not None else "k"
            ax.axvline(tk, color=c, ls="--", lw=0.9, alpha=0.5)
        ax.plot([], [], "--", color="0.3", label="true spike position")
    if truth_t is not None and truth_a is not None:
        ta = np.asarray(truth_a, dtype=float)
        for tk, ak in zip(truth_t, ta):
            ax.plot(tk, ak, "D", color=_sign_color(ak), mec="k", ms=7, mew=0.6, zorder=4)
        ax.plot([], [], "D", color="0.5", mec="k", ms=6, label="true spike (t_k, a_k)")
        if tolerance is not None:
            d = np.abs(t[-1][:, None] - truth_t[None, :]) % 1.0
            near = (np.minimum(d, 1.0 - d) <= tolerance) & (np.sign(r[-1])[:, None] == np.sign(ta)[None, :])
            gathered = (r[-1][:, None] * near).sum(axis=0)
            ax.plot(truth_t, gathered, "o", mfc="none", mec="k", ms=12, mew=1.2, zorder=5,
                    label=f"amplitude within {tolerance:.3g}, summed")
    ax.axhline(0, color="0.8", lw=0.5, zorder=0)
    ax.set_xlim(0, 1)


def ray_mass_panel(ax, teacher: np.ndarray, teacher_mass: np.ndarray, student_mass: np.ndarray,
                   final: np.ndarray | None = None, *, degrees: float = 5.0):
    """The student's mass on each teacher ray against the teacher's, in the plane.

    teacher        (k, 3) teacher units (w₁, w₂, a*): their directions u_k = w*_k/|w*_k|
    teacher_mass   (k,) the teacher's signed mass a*_k|w*_k|/m0 on each ray: a star at
                   |mass|·u_k, coloured by sign
    student_mass   (k,) the student's signed mass on the ray (units within ``degrees`` of u_k
                   with the same sign): a hollow circle at |mass|·u_k
    final          (m, 3) the final units, each drawn as a small dot at (|a_i||w_i|/m)·u_i
                   (its own mass), so that the mass off the rays shows too
    """
    T = np.asarray(teacher, dtype=float)
    U = T[:, :2] / np.linalg.norm(T[:, :2], axis=1, keepdims=True)
    tm, sm = np.abs(np.asarray(teacher_mass, dtype=float)), np.abs(np.asarray(student_mass, dtype=float))
    reach = max(tm.max(), sm.max(), 1e-12)
    if final is not None:
        P = np.asarray(final, dtype=float)
        mass = np.abs(P[:, 2]) * np.linalg.norm(P[:, :2], axis=1) / len(P)
        n = np.linalg.norm(P[:, :2], axis=1)
        pts = P[:, :2] / np.where(n > 0, n, 1.0)[:, None] * mass[:, None]
        ax.scatter(pts[:, 0], pts[:, 1], s=8, c=[_sign_color(v) for v in P[:, 2]], alpha=0.6, zorder=3,
                   label="one unit: (|a||w|/m)·w/|w|")
        reach = max(reach, mass.max())
    extent = 1.25 * reach
    for k in range(len(T)):
        c = _sign_color(T[k, 2])
        ax.plot([0, extent * U[k, 0]], [0, extent * U[k, 1]], ls="--", color=c, lw=0.8, alpha=0.7)
        for side in (-1, 1):  # the ±degrees cone around the ray
            a = np.arctan2(U[k, 1], U[k, 0]) + side * np.radians(degrees)
            ax.plot([0, extent * np.cos(a)], [0, extent * np.sin(a)], ls=":", color=c, lw=0.6, alpha=0.5)
        ax.plot(*(tm[k] * U[k]), "*", color=c, ms=14, mec="k", mew=0.6, zorder=4)
        ax.plot(*(sm[k] * U[k]), "o", mfc="none", mec="k", ms=13, mew=1.3, zorder=5)
    ax.plot([], [], "*", color="0.5", mec="k", ms=10, label="teacher: |a*||w*|/m0 on its ray")
    ax.plot([], [], "o", mfc="none", mec="k", ms=10, label=f"student: Σ |a||w|/m within {degrees:g}°")
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.axhline(0, color="0.85", lw=0.5, zorder=0)
    ax.axvline(0, color="0.85", lw=0.5, zorder=0)
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="upper right")
