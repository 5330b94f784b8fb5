"""Excess loss versus the number of particles m (log-log): the particle flow against the
random-features baseline, median over seeds with the interquartile band and each seed."""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd

from .figures import new_figure, save_figure

#: Colours of the two methods (matplotlib's default blue and orange).
COLORS = {"particle_flow": "C0", "random_features": "C1"}
LABELS = {"particle_flow": "particle gradient flow", "random_features": "random features (convex)"}


def excess_loss_figure(summary: pd.DataFrame, runs: pd.DataFrame, out_dir, stem: str, *, title: str,
                       threshold: float | None = None, floor: float = 1e-16) -> list[pathlib.Path]:
    """Relative excess (F − F*)/F(μ0) against m for each method in ``summary`` (columns
    method, m, m0, relative_median/q25/q75) with the seeds of ``runs`` (method, m,
    relative_excess) as dots; values ≤ ``floor`` (round-off) are drawn at ``floor``. A
    dotted line marks ``threshold`` and dashed lines m0 and 4·m0. Writes PNG and PDF."""
    from matplotlib.ticker import NullLocator

    fig, ax = new_figure(4.6, 3.4)
    for method in ("random_features", "particle_flow"):
        s = summary[summary["method"] == method].sort_values("m")
        if not len(s):
            continue
        c = COLORS.get(method, "k")
        m = s["m"].to_numpy(float)
        clip = lambda v: np.maximum(np.asarray(v, float), floor)  # noqa: E731
        ax.fill_between(m, clip(s["relative_q25"]), clip(s["relative_q75"]), color=c, alpha=0.25, lw=0)
        ax.plot(m, clip(s["relative_median"]), "o-", color=c, lw=1.8, ms=4, label=LABELS.get(method, method))
        r = runs[runs["method"] == method]
        ax.plot(r["m"].to_numpy(float), clip(r["relative_excess"]), ".", color=c, ms=3, alpha=0.45)
    m0 = int(summary["m0"].iloc[0])
    ax.axvline(m0, color="0.4", ls="--", lw=0.8)
    ax.axvline(4 * m0, color="0.7", ls="--", lw=0.8)
    ax.text(m0, 1.0, " m0", transform=ax.get_xaxis_transform(), va="top", fontsize=8, color="0.3")
    ax.text(4 * m0, 1.0, " 4·m0", transform=ax.get_xaxis_transform(), va="top", fontsize=8, color="0.5")
    if threshold is not None:
        ax.axhline(threshold, color="0.5", ls=":", lw=0.8)
    ax.set_xscale("log", base=2)
    ms = sorted(summary["m"].unique())
    ax.set_xticks(ms, [str(int(m)) for m in ms])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_yscale("log")
    ax.set_xlabel("number of particles m")
    ax.set_ylabel(r"$(F(\mu) - F^*)\,/\,F(\mu_0)$")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(True, which="major", alpha=0.3)
    return save_figure(fig, out_dir, stem)
