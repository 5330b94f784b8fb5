"""Saving figures reproducibly: the same figure gives the same PNG and PDF bytes.

Matplotlib stamps a creation date into PDFs; it is left out here so that a figure redrawn
from the saved tables (``measureflow plot DIR``) is byte-identical to the first drawing.
"""

from __future__ import annotations

import pathlib

import numpy as np

FORMATS = ("png", "pdf")
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None, "Creator": None}}


def use_agg() -> None:
    """Select the non-interactive Agg backend (figures are only written to files)."""
    import matplotlib

    matplotlib.use("Agg", force=True)


def new_figure(width: float, height: float, **subplots):
    """``(fig, axes)`` with a fixed size (inches) and style, on the Agg backend."""
    use_agg()
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), layout="constrained", **subplots)


def history_axis(ax, iterations, objective, ylabel: str) -> None:
    """The objective against iteration + 1 (so that iteration 0 shows) on log-log axes."""
    ax.loglog(np.asarray(iterations) + 1, np.asarray(objective), color="k", lw=1)
    ax.set_xlabel("iteration + 1")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)


def save_figure(fig, out_dir: str | pathlib.Path, stem: str, *, dpi: int = 150) -> list[pathlib.Path]:
    """Write ``fig`` as ``out_dir/stem.png`` and ``out_dir/stem.pdf`` (no timestamps), close
    it and return the two paths."""
    import matplotlib.pyplot as plt

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = out_dir / f"{stem}.{fmt}"
        fig.savefig(path, format=fmt, dpi=dpi, metadata=_METADATA[fmt])
        paths.append(path)
    plt.close(fig)
    return paths
