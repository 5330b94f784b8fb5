"""Level lines of a function on a 2-D slice of parameter space (e.g. the first variation
F'(μ0)(θ) at initialization), with curves and points drawn on top."""

from __future__ import annotations

import numpy as np


def level_lines(ax, x: np.ndarray, y: np.ndarray, Z: np.ndarray, *, levels: int = 15, cmap: str = "RdBu_r"):
    """Filled contours of Z (len(y), len(x)) on the grid x × y, a diverging colour map
    centred at 0 (blue: Z < 0), and the zero level line in black. Returns the
    ``contourf`` artist (for a colour bar)."""
    from matplotlib.colors import TwoSlopeNorm

    Z = np.asarray(Z, dtype=float)
    lo, hi = float(np.nanmin(Z)), float(np.nanmax(Z))
    span = max(abs(lo), abs(hi), 1e-300)
    norm = TwoSlopeNorm(vcenter=0.0, vmin=min(lo, -1e-12 * span), vmax=max(hi, 1e-12 * span))
    filled = ax.contourf(x, y, Z, levels=levels, cmap=cmap, norm=norm)
    ax.contour(x, y, Z, levels=filled.levels, colors="k", linewidths=0.3, alpha=0.5)
    if lo < 0 < hi:
        ax.contour(x, y, Z, levels=[0.0], colors="k", linewidths=1.2)
    return filled
