"""Convergence rates: a quantity against a size in log-log axes, with fitted power laws."""

from __future__ import annotations

import numpy as np


def fit_power_law(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares fit of log y = c + slope·log x; returns (slope, c). Needs two or more
    points with x, y > 0."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = (x > 0) & (y > 0)
    if keep.sum() < 2:
        return float("nan"), float("nan")
    slope, c = np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)
    return float(slope), float(c)


def rate_plot(ax, x: np.ndarray, samples: np.ndarray, *, label: str, color, slope: float | None = None,
              intercept: float | None = None):
    """Median over samples (rows: x values, columns: repetitions, NaN allowed) with the
    min–max range as error bars, and the fitted line exp(intercept)·x^slope dashed."""
    x = np.asarray(x, dtype=float)
    S = np.asarray(samples, dtype=float)
    med = np.nanmedian(S, axis=1)
    lo, hi = np.nanmin(S, axis=1), np.nanmax(S, axis=1)
    ax.errorbar(x, med, yerr=[med - lo, hi - med], fmt="o", color=color, ms=4, capsize=2, lw=1, label=label)
    if slope is not None and np.isfinite(slope):
        xx = np.geomspace(x.min(), x.max(), 50)
        ax.plot(xx, np.exp(intercept) * xx**slope, "--", color=color, lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
