"""Excess loss at convergence versus the number of particles m (log–log), drawn from the
saved tables alone: particle gradient flow (blue) against the convex random-features
baseline (orange).

- a line through the geometric mean over runs per m (``relative_geomean``);
- a faint dot per run; a run that stopped at its iteration cap (status
  ``max_iterations``) is a hollow circle, a diverged run a cross at the top of the axes;
- a dashed vertical line at m0;
- a grey band from the bottom of the axes up to the resolution (``relative_resolution``:
  the width of the certified F* bracket, twice the held-out standard error, or float64
  round-off, relative to F(μ0)) of the particle flow's runs: a flow excess inside it is
  not resolved. (The baseline's resolution is not drawn: its excesses are far larger, and
  so are their held-out standard errors, which scale with the excess.)
"""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd

from .figures import new_figure, save_figure

#: Colours of the two methods (matplotlib's default blue and orange).
COLORS = {"particle_flow": "C0", "random_features": "C1"}
LABELS = {"particle_flow": "particle gradient flow", "random_features": "random features (convex)"}
BAND_COLOR = "0.85"


def excess_loss_figure(summary: pd.DataFrame, runs: pd.DataFrame, out_dir, stem: str, *, title: str,
                       floor: float = 1e-15) -> list[pathlib.Path]:
    """Draw :func:`draw_excess_loss` on a new figure and write it as PNG and PDF."""
    fig, ax = new_figure(4.8, 3.5)
    draw_excess_loss(ax, summary, runs, title=title, floor=floor)
    return save_figure(fig, out_dir, stem)


def draw_excess_loss(ax, summary: pd.DataFrame, runs: pd.DataFrame, *, title: str, floor: float = 1e-15):
    """Relative excess (F − F*)/F(μ0) against m on ``ax`` (module doc) from ``summary``
    (columns method, m, m0, relative_geomean, relative_resolution) and ``runs`` (method,
    m, relative_excess, status). Values ≤ ``floor`` are drawn at ``floor``."""
    from matplotlib.ticker import NullLocator

    clip = lambda v: np.maximum(np.asarray(v, float), floor)  # noqa: E731
    flow = summary[summary["method"] == "particle_flow"]
    res = flow.groupby("m")["relative_resolution"].max().sort_index()
    ms = res.index.to_numpy(float)
    ax.fill_between(ms, floor, clip(res.to_numpy()), color=BAND_COLOR, lw=0, zorder=0,
                    label="not resolved (F* bracket / 2 SE)")
    for method in ("random_features", "particle_flow"):
        s = summary[summary["method"] == method].sort_values("m")
        if not len(s):
            continue
        c = COLORS.get(method, "k")
        ax.plot(s["m"].to_numpy(float), clip(s["relative_geomean"]), "-", color=c, lw=1.8,
                label=LABELS.get(method, method) + " (geometric mean)", zorder=3)
        r = runs[runs["method"] == method]
        finite = np.isfinite(r["relative_excess"].to_numpy(float))
        done = r[finite & (r["status"] != "max_iterations")]
        capped = r[finite & (r["status"] == "max_iterations")]
        ax.plot(done["m"].to_numpy(float), clip(done["relative_excess"]), "o", color=c, ms=3, alpha=0.35, mew=0,
                zorder=2)
        if len(capped):
            ax.plot(capped["m"].to_numpy(float), clip(capped["relative_excess"]), "o", mfc="none", mec=c, ms=4.5,
                    mew=0.8, alpha=0.8, zorder=2, label=f"{LABELS.get(method, method)}: stopped at the cap")
        bad = r[~finite | (r["status"] == "diverged")]
        if len(bad):
            ax.plot(bad["m"].to_numpy(float), np.full(len(bad), 0.97), "x", color=c, ms=5,
                    transform=ax.get_xaxis_transform(), label=f"{LABELS.get(method, method)}: diverged")
    m0 = int(summary["m0"].iloc[0])
    ax.axvline(m0, color="0.3", ls="--", lw=0.9)
    ax.text(m0, 1.0, " m0", transform=ax.get_xaxis_transform(), va="top", fontsize=8, color="0.3")
    ax.set_xscale("log")
    ax.set_xticks(ms, [str(int(m)) for m in ms], fontsize=6, rotation=90 if len(ms) > 10 else 0)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_yscale("log")
    ax.set_xlabel("number of particles m")
    ax.set_ylabel(r"$(F(\mu) - F^*)\,/\,F(\mu_0)$ at convergence")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=6, loc="best", framealpha=0.8)  # deterministic: the same tables give the same figure
    ax.grid(True, which="major", alpha=0.3)
    return ax
