"""Animated GIFs of particle flows, drawn from saved snapshots alone.

- :func:`frame_count`: how many frames an animation has, from ``fps`` and ``frames`` or
  ``seconds`` (default: one frame per snapshot).
- :func:`resample`: snapshots (s, m, p) at ``frames`` evenly spaced fractional snapshot
  indices, by linear interpolation between neighbouring snapshots (periodic coordinates
  along the shorter arc).
- :func:`planar_animation`: network units as the points |a|·(w, b) moving in the plane, with
  their trails, coloured by sign(a), the teacher's units as rays and stars.
- :func:`spike_animation`: spikes θ = (r, t) as stems of height r sliding along T¹, with the
  true spikes.

Frames are written with matplotlib's ``PillowWriter`` (Pillow, which matplotlib depends
on). Every frame carries its own label (iteration and frame number), so no two consecutive
frames are identical and the GIF keeps exactly the requested number of frames (Pillow
merges identical neighbours).
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from ..errors import ValidationError
from ..validation import check_int, check_real
from .particle_paths import NEGATIVE, POSITIVE, _sign_color, draw_teacher, frame_extent

#: Default frame rate (frames per second) and drawing resolution of the GIFs.
FPS = 10
DPI = 80
_SIZE = (6.0, 4.6)  # inches: 480 × 368 pixels at DPI


def frame_count(snapshots: int, *, fps: int = FPS, frames: int | None = None, seconds: float | None = None) -> int:
    """The number of frames: ``frames``, or ``round(seconds · fps)``, or (neither given) one
    per snapshot; at least 2. ``frames`` and ``seconds`` exclude each other."""
    snapshots = check_int("snapshots", snapshots, minimum=2)
    fps = check_int("fps", fps, minimum=1, maximum=100)
    if frames is not None and seconds is not None:
        raise ValidationError("give the animation's length as frames or as seconds, not both")
    if frames is not None:
        return check_int("frames", frames, minimum=2, maximum=10_000)
    if seconds is not None:
        seconds = check_real("seconds", seconds, positive=True)
        n = int(round(seconds * fps))
        if not 2 <= n <= 10_000:
            raise ValidationError(f"seconds={seconds:g} at fps={fps} gives {n} frames; it must give 2 to 10000")
        return n
    return snapshots


def resample(snapshots: np.ndarray, frames: int, *, periodic=None) -> np.ndarray:
    """Snapshots (s, m, p) (or (s,) / (s, m)) at ``frames`` evenly spaced positions from the
    first to the last snapshot, linearly interpolated; coordinates flagged in ``periodic``
    (p booleans, period 1) move along the shorter arc and stay in [0, 1)."""
    S = np.asarray(snapshots, dtype=float)
    s = S.shape[0]
    x = np.linspace(0.0, s - 1, frames)
    lo = np.minimum(np.floor(x).astype(int), s - 2)
    frac = (x - lo).reshape((frames,) + (1,) * (S.ndim - 1))
    step = S[lo + 1] - S[lo]
    if periodic is not None:
        mask = np.asarray(periodic, dtype=bool)
        step = np.where(mask, step - np.round(step), step)  # the shorter way round the circle
    out = S[lo] + frac * step
    if periodic is not None:
        out = np.where(mask, np.mod(out, 1.0), out)
    return out


def _figure():
    from .figures import use_agg

    use_agg()
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=_SIZE)
    # fixed margins (not a layout engine): the axes must not move from frame to frame
    ax = fig.add_axes((0.12, 0.19, 0.84, 0.72))
    return fig, ax


def _label(fig):
    return fig.text(0.5, 0.015, "", ha="center", va="bottom", fontsize=9, family="monospace")


def _frame_text(iteration: float, k: int, n: int) -> str:
    return f"iteration {int(round(iteration)):>7,d}   frame {k + 1:>{len(str(n))}d}/{n}"


def _write(fig, path: pathlib.Path, frames: int, fps: int, draw) -> pathlib.Path:
    """Call ``draw(k)`` for each frame and write the GIF (looping) at ``fps``."""
    import matplotlib.pyplot as plt
    from matplotlib.animation import PillowWriter

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = PillowWriter(fps=fps)
    try:
        with writer.saving(fig, str(path), dpi=DPI):
            for k in range(frames):
                draw(k)
                writer.grab_frame()
    finally:
        plt.close(fig)
    return path


def planar_animation(path, iterations, paths: np.ndarray, signs: np.ndarray, *, teacher=None, teacher_signs=None,
                     teacher_scale: float = 1.0, fps: int = FPS, frames: int | None = None,
                     seconds: float | None = None, title: str = "", xlabel: str = "", ylabel: str = ""):
    """GIF of network units moving in the plane; returns its path.

    iterations  (s,) the iteration of each snapshot
    paths       (s, m, 2) points |a_i|·(w_i, b_i) at the snapshots
    signs       (s, m) sign of each unit's output weight a_i at the snapshots (its colour)
    teacher     (k, 2) teacher units |a*|·(w*, b*), drawn as in :func:`planar_paths`
    """
    paths = np.asarray(paths, dtype=float)
    n = frame_count(paths.shape[0], fps=fps, frames=frames, seconds=seconds)
    P = resample(paths, n)
    sign_frames = np.sign(np.asarray(signs, dtype=float))[np.round(np.linspace(0, paths.shape[0] - 1, n)).astype(int)]
    its = resample(np.asarray(iterations, dtype=float), n)
    T = None if teacher is None else np.asarray(teacher, dtype=float) * teacher_scale
    extent = frame_extent(paths, T)
    fig, ax = _figure()
    outside = draw_teacher(ax, T, teacher_signs, extent, ms=10) if T is not None else False
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal", adjustable="box")
    ax.axhline(0, color="0.85", lw=0.5, zorder=0)
    ax.axvline(0, color="0.85", lw=0.5, zorder=0)
    final = np.sign(np.asarray(signs, dtype=float)[-1])
    trails = [ax.plot([], [], color=_sign_color(final[i]), lw=0.7, alpha=0.45)[0] for i in range(P.shape[1])]
    dots = ax.scatter(P[0, :, 0], P[0, :, 1], s=14, zorder=3)
    ax.plot([], [], "o", color=POSITIVE, ms=4, label="unit, a > 0")
    ax.plot([], [], "o", color=NEGATIVE, ms=4, label="unit, a < 0")
    if T is not None:
        ax.plot([], [], "*", color="0.3", mec="k", ms=9, label="teacher unit (and its ray)")
    if outside:
        ax.plot([], [], "*", mfc="none", mec="0.3", ms=9, label="teacher unit beyond the frame")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    label = _label(fig)

    def draw(k):
        for i, line in enumerate(trails):
            line.set_data(P[: k + 1, i, 0], P[: k + 1, i, 1])
        dots.set_offsets(P[k])
        dots.set_color([_sign_color(v) for v in sign_frames[k]])
        label.set_text(_frame_text(its[k], k, n))

    return _write(fig, path, n, fps, draw)


def spike_animation(path, iterations, t: np.ndarray, r: np.ndarray, *, truth_t=None, truth_a=None, fps: int = FPS,
                    frames: int | None = None, seconds: float | None = None, title: str = ""):
    """GIF of spikes sliding on T¹ = [0, 1) with their weights as stems; returns its path.

    iterations  (s,) the iteration of each snapshot
    t, r        (s, m) positions and weights at the snapshots (first: μ0 at r = 0)
    truth_t     (k,) true spike positions, truth_a (k,) their amplitudes (drawn as stems)

    With masses 1/m, particle i adds (r_i/m)·ψ(x − t_i) to the signal: its stem has height
    r_i/m, on the scale of the true amplitudes (particles that merge share a spike).
    """
    from matplotlib.collections import LineCollection

    t, r = np.asarray(t, dtype=float), np.asarray(r, dtype=float)
    n = frame_count(t.shape[0], fps=fps, frames=frames, seconds=seconds)
    both = resample(np.stack([t, r], axis=-1), n, periodic=[True, False])
    T, R = both[..., 0], both[..., 1] / t.shape[1]
    its = resample(np.asarray(iterations, dtype=float), n)
    high = [np.abs(R).max()]
    fig, ax = _figure()
    if truth_t is not None:
        ta = np.asarray(truth_a, dtype=float)
        high.append(np.abs(ta).max())
        for tk, ak in zip(np.asarray(truth_t, dtype=float), ta):
            c = _sign_color(ak)
            ax.plot([tk, tk], [0, ak], ls="--", color=c, lw=1.0, alpha=0.8)
            ax.plot(tk, ak, "D", mfc="none", mec=c, ms=7, mew=1.2)
        ax.plot([], [], "D", mfc="none", mec="0.3", ms=6, ls="--", color="0.3", label="true spike")
    top = 1.15 * max(max(high), 1e-12)
    ax.set_xlim(0, 1)
    ax.set_ylim(-top, top)
    ax.axhline(0, color="0.7", lw=0.6, zorder=0)
    stems = LineCollection([], lw=1.2, alpha=0.8)
    ax.add_collection(stems)
    heads = ax.scatter(T[0], R[0], s=12, zorder=3)
    ax.plot([], [], "o", color=POSITIVE, ms=4, label="particle: r/m > 0")
    ax.plot([], [], "o", color=NEGATIVE, ms=4, label="particle: r/m < 0")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("position t")
    ax.set_ylabel("amplitude (particle: r/m)")
    label = _label(fig)

    def draw(k):
        colors = [_sign_color(v) if v != 0 else "0.6" for v in R[k]]
        stems.set_segments([((x, 0.0), (x, y)) for x, y in zip(T[k], R[k])])
        stems.set_color(colors)
        heads.set_offsets(np.column_stack([T[k], R[k]]))
        heads.set_color(colors)
        label.set_text(_frame_text(its[k], k, n))

    return _write(fig, path, n, fps, draw)


def gif_info(path) -> dict:
    """Frames, frame duration (ms), pixel size and file size of a GIF (read back with Pillow)."""
    from PIL import Image

    path = pathlib.Path(path)
    with Image.open(path) as im:
        durations = []
        for k in range(im.n_frames):
            im.seek(k)
            durations.append(im.info.get("duration", 0))
        return {"frames": im.n_frames, "duration_ms": durations, "width": im.width, "height": im.height,
                "bytes": path.stat().st_size, "fps": 1000.0 / durations[0] if durations[0] else math.inf}
