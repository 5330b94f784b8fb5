"""Figures and the report paragraph of the excess-loss experiment, from ``summary.csv`` and
``runs.csv`` alone (:func:`plot`, :func:`findings`, :func:`summarize`)."""

from __future__ import annotations

import math
import pathlib

import pandas as pd

from ..tables import read_table
from .cells import PROBLEMS
from .tables import FLOOR

#: The flow's geometric-mean relative excess should fall below this above m0.
THRESHOLD = 1e-3
DESCRIPTIONS = {
    "deconvolution": "1-D sparse deconvolution (BLASSO)",
    "relu": "ReLU teacher",
    "sigmoid": "sigmoid teacher",
}


def plot(out_dir, stem_prefix: str = "excess_loss") -> list[pathlib.Path]:
    """One log–log figure per problem (:func:`measureflow.plotting.excess_loss.excess_loss_figure`)."""
    from ...plotting.excess_loss import excess_loss_figure

    out_dir = pathlib.Path(out_dir)
    summary, runs = read_table(out_dir, "summary"), read_table(out_dir, "runs")
    paths = []
    for problem in PROBLEMS:
        s = summary[summary["problem"] == problem]
        if len(s):
            paths += excess_loss_figure(s, runs[runs["problem"] == problem], out_dir, f"{stem_prefix}_{problem}",
                                        title=DESCRIPTIONS[problem], floor=FLOOR)
    return paths


def findings(summary: pd.DataFrame) -> dict[str, dict]:
    """Per problem: the geometric means at the largest m and their ratio, the smallest m
    where the flow's geometric mean is below ``THRESHOLD`` (``None`` if none), and the
    status counts of the flow's runs (all m; ``capped_at`` the m's with runs at the cap)."""
    out = {}
    for problem in PROBLEMS:
        s = summary[summary["problem"] == problem]
        if not len(s):
            continue
        flow = s[s["method"] == "particle_flow"].sort_values("m")
        base = s[s["method"] == "random_features"].sort_values("m")
        m_max = int(flow["m"].max())
        f, b = flow[flow["m"] == m_max].iloc[0], base[base["m"] == m_max].iloc[0]
        below = flow[flow["relative_geomean"] < THRESHOLD]["m"]
        out[problem] = {
            "m0": int(f["m0"]), "m_max": m_max, "seeds": int(f["seeds"]),
            "flow_relative": float(f["relative_geomean"]), "baseline_relative": float(b["relative_geomean"]),
            "ratio": float(b["relative_geomean"] / f["relative_geomean"]) if f["relative_geomean"] > 0 else math.inf,
            "m_below": int(below.min()) if len(below) else None,
            "converged": int(flow["converged"].sum()), "max_iterations": int(flow["max_iterations"].sum()),
            "diverged": int(flow["diverged"].sum()), "runs": int(flow["seeds"].sum()),
            "capped_at": [int(m) for m in flow[flow["max_iterations"] > 0]["m"]],
            "resolution": float(flow["relative_resolution"].max()),
        }
    return out


def summarize(out_dir) -> str:
    """A paragraph with the numbers behind the figures (read from ``summary.csv``)."""
    summary = read_table(pathlib.Path(out_dir), "summary")
    parts = []
    for problem, f in findings(summary).items():
        ratio = f"{f['ratio']:.3g}×" if math.isfinite(f["ratio"]) else "∞"
        if f["m_below"] is None:
            reach = f"never falls below {THRESHOLD:g} on this grid"
        else:
            reach = f"falls below {THRESHOLD:g} from m = {f['m_below']} (m0 = {f['m0']})"
        capped = (f"; {f['max_iterations']} stopped at the iteration cap (hollow circles; m = "
                  f"{', '.join(map(str, f['capped_at']))})" if f["max_iterations"] else "")
        diverged = f"; {f['diverged']} diverged" if f["diverged"] else ""
        parts.append(
            f"**{DESCRIPTIONS[problem]}** (m0 = {f['m0']}, {f['seeds']} runs per m): of the flow's {f['runs']} runs "
            f"{f['converged']} converged{capped}{diverged}. At m = {f['m_max']} the geometric-mean relative excess is "
            f"{f['flow_relative']:.2e} for the particle flow against {f['baseline_relative']:.2e} for random "
            f"features (ratio {ratio}); the flow's {reach}. Excesses below {f['resolution']:.1e} (grey band) are "
            "not resolved.")
    return ("Relative excess loss (F(μ) − F*)/F(μ0) at convergence (runs stop by the stationarity tolerance "
            "or at their iteration cap), geometric mean over runs with one dot per run: particle gradient flow "
            "(blue) against convex minimization over the weights of the same initial particles (orange). F* is "
            "certified by duality for deconvolution (the band is the width of its bracket) and 0 for the "
            "noise-free teachers (exact population or training loss, or a held-out estimate whose band is twice "
            "its standard error). " + " ".join(parts))
