"""Excess loss at convergence versus m: particle gradient descent against the convex
random-features baseline (Chizat & Bach 2018, Fig. 3).

For each problem, m on a log grid from below m0 to well above it and several runs per m
(a run = a random problem instance and its admissible μ0), the particle flow runs from μ0
until it stops by ``tol`` (or at its iteration cap, recorded as ``max_iterations``), and
the baseline (same μ0, positions frozen, weights optimized) is solved to optimality.
Excess loss = F(μ) − F*; relative excess = (F(μ) − F*)/F(μ0). Problems, tasks and
evaluation: :mod:`.cells`; tables: :mod:`.tables`; figures and reading: :mod:`.report`.

Settings of the ``paper`` preset (and why):

- deconvolution: m0 = 5 spikes on T¹, Dirichlet cut-off f_c = 15 (resolution 1/15; the
  default minimum separation 2/f_c leaves room for 5 random spikes), λ = 1 (about 2 % of
  λ_max = sup|ψ*y| ≈ 56 for these signals: a small bias; the collapse of the particle
  clusters on the spikes is proportional to λ, and λ = 0.5 needed 1.5× the iterations),
  noise-free; 100 random signals per m, forward–backward from zero weights on a uniform
  grid of m positions with 3× the default step (3× fewer iterations, measured, same
  excess), ``tol`` = 1e-14 (the excess at the stop fell about 10× per 100× of tol:
  1e-10 → ~3e-6, 1e-14 → ~2e-8 relative at m = 20), one ``solve_batch`` per m for the
  first 1500 iterations (≈ 5× the median run below m0), the rest one by one; the cells padded to 5
  sizes share 5 compilations; F* certified once per signal by ``deconvolve`` (relative
  gap 1e-8).
- relu, sigmoid: d = 100, m0 = 20 teacher units, 5 runs per m; ReLU (no bias) by GD on
  the exact population loss, sigmoid (with bias) by SGD on fresh samples; the recipe and
  its reasons are beside the presets below. The sigmoid entry uses the TeacherStudent
  options ``output_scale``, ``batch_draws`` and ``cache_held_out`` of the network work of
  issue 16: without them its cells fail with a one-line error naming the options.

Execution: each cell (problem, m) is a run of the sweep task ``excess_loss.cell`` and
each chunk of deconvolution signals one of ``excess_loss.fstar``, stored in
``out_dir/store`` (rerunning skips finished ones; ``workers`` > 0 runs them on local
processes, ``scheduler`` on a Dask cluster). Tables (``out_dir``): ``runs.csv`` (one row
per run and method, with its status), ``summary.csv`` (per problem, method, m),
``cells.csv`` (timings and compilations per cell), ``fstar.csv``. Figures:
``excess_loss_<problem>.png/.pdf`` from the tables alone.
"""

from __future__ import annotations

import pathlib
from typing import Annotated

import pandas as pd
import pydantic
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from ...errors import MeasureflowError, ValidationError
from ..registry import describe_pydantic_error, dotted
from ..tables import write_table
from ..tasks import NonNegativeInt, PositiveInt
from . import cells, report, tables
from .cells import (FSTAR_TASK, PROBLEMS, TASK, DeconvolutionCell, NetworkCell, build_problem, cell_config, compute,
                    run_cell)
from .report import THRESHOLD, findings, plot, summarize
from .tables import FLOOR, METHODS, cell_rows, excess_table, geometric_mean, status_counts, summary_table

NAME = "excess_loss"
TITLE = "Excess loss versus m"
ORDER = 10
#: Seeds of ``reproduce --seed S``: S·SEED_STRIDE, S·SEED_STRIDE + 1, ...
SEED_STRIDE = 1000
#: Deconvolution signals per ``excess_loss.fstar`` run (parallel chunks, resumable).
FSTAR_CHUNK = 25

__all__ = ["NAME", "TITLE", "ORDER", "PRESETS", "Params", "run", "plot", "summarize", "findings", "run_cell",
           "cell_config", "build_problem", "compute", "cell_rows", "excess_table", "summary_table",
           "geometric_mean", "status_counts", "TASK", "FSTAR_TASK", "PROBLEMS", "METHODS", "THRESHOLD", "FLOOR",
           "cells", "tables", "report"]


# -- parameters -----------------------------------------------------------------------------

class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _entry_model(cell_model, name: str):
    """A preset entry of one problem: the cell's keys, with ``m`` a list of particle counts
    and ``seeds`` (optional) the runs per m of this problem."""
    fields = {k: (f.annotation, f) for k, f in cell_model.model_fields.items()
              if k not in ("problem", "m", "seeds")}
    return create_model(name, __base__=_Entry, __doc__=cell_model.__doc__,
                        m=(Annotated[list[PositiveInt], Field(min_length=1)], ...),
                        seeds=(PositiveInt | None, None), **fields)


DeconvolutionParams = _entry_model(DeconvolutionCell, "DeconvolutionParams")
NetworkParams = _entry_model(NetworkCell, "NetworkParams")


class Problems(_Entry):
    """The problems to run (at least one)."""

    deconvolution: DeconvolutionParams | None = None
    relu: NetworkParams | None = None
    sigmoid: NetworkParams | None = None

    @model_validator(mode="after")
    def _some(self):
        if all(getattr(self, p) is None for p in PROBLEMS):
            raise ValueError(f"needs at least one of {', '.join(PROBLEMS)}")
        return self


class Params(_Entry):
    """One preset entry: ``seeds`` runs per m (a problem's own ``seeds`` overrides it),
    ``workers`` local processes for the cells (0: this process), ``scheduler`` a Dask
    scheduler address (instead of local processes), ``problems``."""

    seeds: PositiveInt = 5
    workers: NonNegativeInt = 0
    scheduler: str | None = None
    problems: Problems


def check_params(params) -> Params:
    """``params`` validated by :class:`Params` (one line naming every bad key)."""
    try:
        return Params.model_validate(params)
    except pydantic.ValidationError as exc:
        raise ValidationError(describe_pydantic_error(exc, locate=lambda loc: dotted(loc, NAME))) from None


# -- presets --------------------------------------------------------------------------------

_DECONVOLUTION = {"spikes": 4, "cutoff": 10, "lam": 0.5, "noise": 0.0}
_RELU = {"input_dim": 5, "teacher_units": 4, "n": 500, "teacher_scale": 1.0, "teacher_signs": "random"}
_SIGMOID = {"input_dim": 5, "teacher_units": 4, "n": 500, "teacher_scale": 3.0, "teacher_signs": "random"}
#: The paper's m grids (Chizat & Bach 2018, Fig. 3).
PAPER_M_DECONVOLUTION = [1, 2, 3, 4, 5, 6, 7, 9, 11, 14, 17, 20, 25, 30, 37, 45, 55, 67, 82]
PAPER_M_NETWORKS = [3, 4, 5, 7, 10, 13, 18, 25, 33, 45, 61, 82, 110, 148, 199]
_PAPER_DECONVOLUTION = {"spikes": 5, "cutoff": 15, "lam": 1.0, "noise": 0.0, "seeds": 100,
                        "iterations": 20_000, "batch_iterations": 1500, "tol": 1e-14, "step_scale": 3.0,
                        "history_every": 50,
                        "pad_buckets": [7, 20, 37, 55, 82], "certify": False}
_PAPER_NETWORK = {"input_dim": 100, "teacher_units": 20, "teacher_signs": "random", "training": "population",
                  "seeds": 5}
# The network recipe (measured by the network work of issue 16, /work/briefs/findings-networks.md):
# - ReLU: no bias, teacher (w*) on the unit sphere, a* = ±1; GD on the exact population loss
#   with the default step (halved on increase), μ0 uniform on the unit sphere; tol 1e-9 on the
#   relative stationarity (m ≥ 61 stop near excess ~2e-6 instead of running to the cap).
# - sigmoid: with bias, (w*, b*) on the sphere of radius 6 (clearly non-linear units on
#   x ~ N(0, I)), a* = ±3 (balances the curvatures of weight and position coordinates, so one
#   step serves both; relative excess is scale free); μ0's (w, b) ~ N(0, 0.3² I) (unsaturated
#   units); SGD, step 5, fresh batches of 256 (Gaussians drawn in float32, cast), tol 1e-5, cap
#   10⁴; one solve per seed (batched SGD pays a held-out pass at every step under vmap);
#   history every 500 steps on 2·10⁴ held-out samples, drawn once and stored (cache_held_out;
#   3.4× cheaper steps with float32 draws, measured); excess held out on 10⁵ fresh samples.
# - cost: a ReLU cell at m = 199 with the 2·10⁴ cap was measured at ≈ 8 ms of CPU per step (5
#   seeds: ~13 CPU-minutes); the networks fit the budget only with lower caps at large m or a
#   closed-form first variation in Problem (not in this module).
_PAPER_RELU = {**_PAPER_NETWORK, "teacher_scale": 1.0, "iterations": 20_000, "tol": 1e-9, "history_every": 100}
_PAPER_SIGMOID = {**_PAPER_NETWORK, "teacher_scale": 6.0, "output_scale": 3.0, "batch_draws": "float32",
                  "cache_held_out": True, "bias": True, "init_scale": 0.3, "step": 5.0, "batch_size": 256,
                  "iterations": 10_000, "tol": 1e-5, "history_every": 500, "eval_size": 20_000, "test_size": 100_000,
                  "baseline_n": 20_000, "batched": False}

PRESETS = {
    "test": {
        "seeds": 2, "workers": 0,
        "problems": {
            "deconvolution": {"spikes": 2, "cutoff": 6, "lam": 0.5, "noise": 0.0, "m": [2, 8], "iterations": 400,
                              "tol": 1e-6},
            "relu": {**_RELU, "input_dim": 2, "teacher_units": 2, "training": "population", "m": [1, 8],
                     "iterations": 400, "tol": 1e-8},
            "sigmoid": {**_SIGMOID, "input_dim": 2, "teacher_units": 2, "training": "population", "batch_size": 64,
                        "m": [1, 8], "iterations": 300, "test_size": 4000, "eval_size": 500, "baseline_n": 2000},
        },
    },
    "quick": {  # sized for the whole quick reproduce in minutes: 2 compilations per problem (pad_buckets)
        "seeds": 5, "workers": 0,
        "problems": {
            "deconvolution": {"spikes": 3, "cutoff": 10, "lam": 1.0, "noise": 0.0, "seeds": 10, "m": [2, 3, 6, 12, 24],
                              "iterations": 10_000, "batch_iterations": 2000, "tol": 1e-12, "step_scale": 3.0,
                              "pad_buckets": [6, 24], "certify": False},
            "relu": {**_RELU, "training": "population", "m": [2, 4, 8, 16, 32], "iterations": 5000, "tol": 1e-9,
                     "pad_buckets": [8, 32]},
            "sigmoid": {**_SIGMOID, "m": [2, 4, 8, 16, 32], "iterations": 5000, "tol": 1e-9, "pad_buckets": [8, 32]},
        },
    },
    "paper": {
        "seeds": 5, "workers": 0,
        "problems": {
            "deconvolution": {**_PAPER_DECONVOLUTION, "m": PAPER_M_DECONVOLUTION},
            "relu": {**_PAPER_RELU, "m": PAPER_M_NETWORKS},
            "sigmoid": {**_PAPER_SIGMOID, "m": PAPER_M_NETWORKS},
        },
    },
}


# -- the experiment -------------------------------------------------------------------------

def _seeds(p: Params, name: str, seed: int) -> list[int]:
    count = getattr(p.problems, name).seeds or p.seeds
    return [seed * SEED_STRIDE + k for k in range(count)]


def _entry(p: Params, name: str) -> dict:
    return getattr(p.problems, name).model_dump(mode="json", exclude={"seeds"})


def _spec(cells_: list[tuple[str, int]], seeds: dict[str, list[int]], entries: dict[str, dict]) -> dict:
    """A sweep spec of the cells [(problem, m), ...] (seeds and entry per problem)."""
    grid = []
    for name in dict.fromkeys(c[0] for c in cells_):
        e = {k: [v] for k, v in entries[name].items() if k != "m"}
        grid.append({"problem": [name], "m": [m for n, m in cells_ if n == name], "seeds": [seeds[name]], **e})
    return {"task": TASK, "name": NAME, "imports": [__name__], "grid": grid}


def _fstar_spec(seeds: list[int], entry: dict) -> dict:
    chunks = [seeds[i:i + FSTAR_CHUNK] for i in range(0, len(seeds), FSTAR_CHUNK)]
    base = {k: v for k, v in cells.fstar_config(seeds, entry).items() if k != "seeds"}
    return {"task": FSTAR_TASK, "name": f"{NAME}.fstar", "imports": [__name__], "base": base,
            "grid": [{"seeds": chunks}]}


def run(out_dir, params: dict, seed: int, progress) -> None:
    """Run every cell (and F* chunk) not yet in ``out_dir/store`` and write ``runs.csv``,
    ``summary.csv``, ``cells.csv`` and ``fstar.csv`` from the store."""
    from ...store import Store
    from ..sweep import expand, run_sweep

    out_dir = pathlib.Path(out_dir)
    p = check_params(params)
    names = [n for n in PROBLEMS if getattr(p.problems, n) is not None]
    seeds = {n: _seeds(p, n, seed) for n in names}
    entries = {n: _entry(p, n) for n in names}
    for n in names:  # every cell's configuration, before any work
        for m in entries[n]["m"]:
            cell_config(n, m, seeds[n], entries[n])
    todo = [(n, int(m)) for n in names for m in sorted(set(entries[n]["m"]))]
    specs = [_spec([c], seeds, entries) for c in todo]
    if "deconvolution" in names:
        specs.insert(0, _fstar_spec(seeds["deconvolution"], entries["deconvolution"]))
    store_dir = out_dir / "store"
    executor = {"scheduler": p.scheduler} if p.scheduler else {"workers": p.workers}
    total = len(specs)
    if p.workers == 0 and not p.scheduler:  # in this process, one at a time: progress per cell
        for i, spec in enumerate(specs):
            label = spec["name"] if spec["task"] == FSTAR_TASK else f"{spec['grid'][0]['problem'][0]} m=" \
                f"{spec['grid'][0]['m'][0]}"
            progress(f"{NAME}: {label}", i, total)
            run_sweep(spec, store_dir, progress=False, retry_failed=True, **executor)
    else:
        progress(f"{NAME}: {total} runs", 0, total)
        whole = _spec(todo, seeds, entries)
        if "deconvolution" in names:
            run_sweep(specs[0], store_dir, progress=False, retry_failed=True, **executor)
        run_sweep(whole, store_dir, progress=False, retry_failed=True, **executor)
    progress(f"{NAME}: tables", total, total)

    rows, cell_info, fstar, failed = [], [], [], []
    with Store(store_dir) as store:
        for spec in specs:
            for r in expand(spec):
                rec = store.get(r.run_id) if r.run_id in store else None
                what = f"{spec['name']} {r.config.get('problem', '')} m={r.config.get('m', '-')}"
                if rec is None or rec.status != "done":
                    failed.append(f"{what}: {'not run' if rec is None else rec.error}")
                    continue
                met = rec.metrics
                if spec["task"] == FSTAR_TASK:
                    fstar += tables.fstar_rows(met)
                    continue
                rows += cell_rows(met)
                counts = status_counts(met["flow_status"])
                cell_info.append({"problem": met["problem"], "m": met["m"], "seeds": len(met["seeds"]),
                                  "particles_run": met["particles_run"], "batched": met["batched"],
                                  "flow_wall_s": met["flow_wall_s"], "flow_compilations": met["flow_compilations"],
                                  "flow_iterations_max": max(met["flow_iterations"]),
                                  "baseline_wall_s": float(sum(met["baseline_wall_s"])),
                                  "certificate_wall_s": met["certificate_wall_s"], "cell_wall_s": rec.duration_s,
                                  **counts, "run_id": r.run_id})
    fstar_df = pd.DataFrame(fstar, columns=["seed", "fstar_dual", "fstar_objective"])
    if rows:
        runs = excess_table(rows, fstar_df)
        write_table(out_dir, "runs", runs)
        write_table(out_dir, "summary", summary_table(runs))
        write_table(out_dir, "cells", pd.DataFrame(cell_info))
        write_table(out_dir, "fstar", fstar_df)
    if failed:
        raise MeasureflowError(f"{len(failed)} excess_loss run(s) failed (rerun to retry them): " + "; ".join(failed))
