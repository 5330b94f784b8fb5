"""The tables of the excess-loss experiment, from the stored cell metrics alone.

- :func:`cell_rows`: one row per (seed, method) of a cell's metrics;
- :func:`excess_table` (``runs.csv``): F* per (problem, seed) subtracted — 0 for the
  noise-free teachers, the largest certified dual value for deconvolution — the excess
  E = F − F*, the relative excess E / F(μ0) and the resolution (the level below which an
  excess is not resolved: the width of the certified F* bracket, twice the held-out
  standard error, or round-off);
- :func:`summary_table` (``summary.csv``): per (problem, method, m) the median, geometric
  mean and quartiles of the (relative) excess and the status counts;
- :func:`geometric_mean`, :func:`status_counts`: the two aggregations.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .cells import PROBLEMS

METHODS = ("particle_flow", "random_features")
STATUSES = ("converged", "max_iterations", "diverged")
#: Relative excesses below this (round-off of F(μ0)-sized sums in float64) are not resolved.
FLOOR = 1e-15


def geometric_mean(values, floor: float = FLOOR) -> float:
    """exp(mean(log(max(v, floor)))) over the finite values (NaN if none): values at or
    below ``floor`` (zero or round-off-negative excesses) count as ``floor``."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return math.nan
    return float(np.exp(np.mean(np.log(np.maximum(v, floor)))))


def status_counts(statuses) -> dict[str, int]:
    """{status: count} over ``STATUSES`` (every key present)."""
    s = list(statuses)
    return {k: s.count(k) for k in STATUSES}


def cell_rows(metrics: dict) -> list[dict]:
    """One row per (seed, method) of a cell's metrics (before F* is known)."""
    rows = []
    deconv = metrics["problem"] == "deconvolution"
    S = len(metrics["seeds"])
    certified = deconv and "flow_dual" in metrics
    for i, seed in enumerate(metrics["seeds"]):
        common = {"problem": metrics["problem"], "m": metrics["m"], "m0": metrics["m0"], "seed": seed,
                  "initial": metrics["initial"][i], "excess_kind": metrics["excess_kind"]}
        flow = {**common, "method": "particle_flow", "objective": metrics["flow_objective"][i],
                "raw_excess": metrics["flow_excess"][i], "excess_se": metrics["flow_excess_se"][i],
                "status": metrics["flow_status"][i], "iterations": metrics["flow_iterations"][i],
                "max_iterations": metrics["max_iterations"], "step": metrics["flow_step"][i], "kkt": math.nan,
                "wall_time_s": metrics["flow_wall_s"] / S}
        base = {**common, "method": "random_features", "objective": metrics["baseline_objective"][i],
                "raw_excess": metrics["baseline_excess"][i], "excess_se": metrics["baseline_excess_se"][i],
                "status": "converged", "iterations": 0, "max_iterations": 0, "step": math.nan,
                "kkt": metrics["baseline_kkt"][i], "wall_time_s": metrics["baseline_wall_s"][i]}
        for row, name in ((flow, "flow"), (base, "baseline")):
            row["dual"] = metrics[f"{name}_dual"][i] if certified else math.nan
            row["gap"] = metrics[f"{name}_gap"][i] if certified else math.nan
        rows += [flow, base]
    return rows


def fstar_rows(metrics: dict) -> list[dict]:
    """One row per seed of an ``excess_loss.fstar`` record."""
    return [{"seed": s, "fstar_dual": lo, "fstar_objective": hi}
            for s, lo, hi in zip(metrics["seeds"], metrics["fstar_dual"], metrics["fstar_objective"])]


def excess_table(rows, fstar: pd.DataFrame | None = None) -> pd.DataFrame:
    """The runs table (module doc). ``fstar``: columns seed, fstar_dual, fstar_objective
    (deconvolve's certified brackets); deconvolution's F* lower bound is the largest dual
    value of the seed (every run's and deconvolve's), its upper bound the smallest F."""
    df = pd.DataFrame(list(rows))
    df["fstar"] = 0.0
    df["fstar_width"] = 0.0
    dec = df["problem"] == "deconvolution"
    if dec.any():
        d = df[dec]
        lower = d.groupby("seed")["dual"].max()
        upper = d.groupby("seed")["objective"].min()
        if fstar is not None and len(fstar):
            f = fstar.set_index("seed")
            lower = np.fmax(lower, f["fstar_dual"].reindex(lower.index))
            upper = np.fmin(upper, f["fstar_objective"].reindex(upper.index))
        df.loc[dec, "fstar"] = d["seed"].map(lower).to_numpy()
        df.loc[dec, "fstar_width"] = (d["seed"].map(upper) - d["seed"].map(lower)).to_numpy()
    held = df["excess_kind"] == "held_out"
    df["excess"] = np.where(held, df["raw_excess"], df["objective"] - df["fstar"])
    df["relative_excess"] = df["excess"] / df["initial"]
    df["resolution"] = np.maximum.reduce([df["fstar_width"].to_numpy(float), 2 * df["excess_se"].to_numpy(float),
                                         FLOOR * np.abs(df["initial"].to_numpy(float))])
    df["relative_resolution"] = df["resolution"] / df["initial"]
    order = {p: i for i, p in enumerate(PROBLEMS)}
    df = df.sort_values(["problem", "method", "m", "seed"], key=lambda c: c.map(order) if c.name == "problem" else c,
                        kind="stable").reset_index(drop=True)
    first = ["problem", "m", "m0", "seed", "method", "status", "excess", "relative_excess", "excess_se", "resolution",
             "relative_resolution", "objective", "fstar", "fstar_width", "initial", "excess_kind"]
    return df[first + [c for c in df.columns if c not in first and c != "raw_excess"]]


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (problem, method, m): median, geometric mean (:func:`geometric_mean`) and
    quartiles of the excess and of the relative excess over the finite values, the median
    resolution, and the status counts."""
    out = []
    for (problem, method, m), g in runs.groupby(["problem", "method", "m"], sort=False):
        e, r = g["excess"].to_numpy(float), g["relative_excess"].to_numpy(float)
        fe, fr = e[np.isfinite(e)], r[np.isfinite(r)]
        q = (lambda v, p: float(np.quantile(v, p)) if len(v) else math.nan)  # noqa: E731
        row = {"problem": problem, "method": method, "m": int(m), "m0": int(g["m0"].iloc[0]), "seeds": len(g),
               "excess_median": q(fe, 0.5), "excess_geomean": geometric_mean(fe),
               "excess_q25": q(fe, 0.25), "excess_q75": q(fe, 0.75),
               "relative_median": q(fr, 0.5), "relative_geomean": geometric_mean(fr),
               "relative_q25": q(fr, 0.25), "relative_q75": q(fr, 0.75),
               "relative_min": float(fr.min()) if len(fr) else math.nan,
               "relative_max": float(fr.max()) if len(fr) else math.nan,
               "relative_resolution": float(np.median(g["relative_resolution"])),
               "fstar_width_max": float(g["fstar_width"].max()),
               "wall_time_s_median": float(g["wall_time_s"].median())}
        row.update(status_counts(g["status"]))
        out.append(row)
    return pd.DataFrame(out)
