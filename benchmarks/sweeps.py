"""4. Sweeps: the runs of the quick excess-loss experiment batched (``vmap`` over seeds, and
over widths m by padding) against the same runs one by one.

Runs: the particle flow of ``measureflow.experiments.excess_loss``'s "quick" preset for the
ReLU teacher (d = 5, 4 teacher units, n = 500, widths m ∈ {2, …, 64}, 5 seeds — each seed
its own teacher, data and μ0, default step), with fewer iterations in ``--quick`` mode.
Built and run with the experiment's own cell functions (``cell_config``,
``build_problem``, ``cells._flow``). Three ways to run the 30 runs:

- one by one   ``_flow(batched=False)`` per cell: ``mf.solve`` per seed
- per cell     ``_flow(batched=True)`` per cell: one ``mf.solve_batch`` over the 5 seeds
- padded       one ``mf.solve_batch`` of all 30 runs, widths padded to m = 64 with
               massless particles (one compiled program)

Each is timed cold (its first call, compilation included; compilations counted with
``jax.monitoring``) and warm (best of the later calls, interleaved). The final objectives
of the three ways are checked to agree.

The same is repeated on small runs — the "test" preset's ReLU problem size (d = 2, 2
teacher units, n = 60) on the same widths and seeds — where the cost of a run is its
per-step overhead rather than its arithmetic: batching pays in proportion to that share.
"""

from __future__ import annotations

import time

import numpy as np

import measureflow as mf
from _harness import Row, best_times, count_compiles, fmt_time
from measureflow.experiments import excess_loss as el


def _cells(iterations: int, small: bool):
    params = dict(el.PRESETS["quick"]["problems"]["relu"])
    seeds = list(range(el.PRESETS["quick"]["seeds"]))
    widths = params.pop("m")
    params["iterations"] = iterations
    if small:
        test = el.PRESETS["test"]["problems"]["relu"]
        params.update({k: test[k] for k in ("input_dim", "teacher_units", "n")})
    cells = []
    for m in widths:
        cfg = el.cell_config("relu", m, seeds, params)
        problems = [el.build_problem(cfg, s)[0] for s in seeds]
        inits = [mf.init.admissible(pr.feature, m, key=s) for pr, s in zip(problems, seeds)]
        cells.append((cfg, problems, inits))
    return cells, widths, seeds


def run(quick: bool) -> list[Row]:
    T = 500 if quick else el.PRESETS["quick"]["problems"]["relu"]["iterations"]
    return measure(T, quick, small=False) + measure(T, quick, small=True)


def measure(T: int, quick: bool, small: bool) -> list[Row]:
    cells, widths, seeds = _cells(T, small)
    p = cells[0][0]
    what = f"{'small runs' if small else 'quick preset'} (d={p['input_dim']}, n={p['n']})"

    def by_cell(batched):
        out = []
        for cfg, problems, inits in cells:
            out += [float(r.history[-1]) for r in el.cells._flow({**cfg, "batched": batched}, problems, inits)]
        return out

    def padded():
        problems = [pr for _, prs, _ in cells for pr in prs]
        inits = [mu for _, _, mus in cells for mu in mus]
        res = mf.solve_batch(problems, inits, method="gd", iterations=T, history_every=max(1, T // 100), snapshots=0)
        return [float(r.history[-1]) for r in res]

    fns = {"one by one": lambda: by_cell(False), "per cell": lambda: by_cell(True), "padded": padded}
    cold, logs, finals = {}, {}, {}
    for name, f in fns.items():
        with count_compiles() as log:
            t0 = time.perf_counter()
            finals[name] = np.asarray(f())
            cold[name] = time.perf_counter() - t0
        logs[name] = log
    warm = best_times(fns, reps=2 if quick else 3)
    agree = all(np.allclose(finals[k], finals["one by one"], rtol=1e-6, atol=1e-12) for k in finals)
    n_runs = len(widths) * len(seeds)
    check = "final F agree (1e-6)" if agree else "WARNING: final F DIFFER"
    rows = []
    for name, label in (("per cell", "vmap over seeds (per cell)"), ("padded", "vmap over seeds + padded widths")):
        r_warm = warm["one by one"] / warm[name]
        r_cold = cold["one by one"] / cold[name]
        rows.append(Row("4 sweeps", f"{what}, {label}: speed-up", r_warm, f"{r_warm:.1f}×", "≥ 3×",
                        r_warm >= 3, f"warm {fmt_time(warm[name])} vs {fmt_time(warm['one by one'])}; cold "
                                     f"(incl. compilation) {r_cold:.1f}×: {fmt_time(cold[name])} vs "
                                     f"{fmt_time(cold['one by one'])}; {n_runs} runs × {T} steps; {check}"))
    for name in fns:
        log = logs[name]
        programs = sum(1 for n in log.names if "run" in n)
        rows.append(Row("4 sweeps", f"{what}, compilations, {name}", log.compiles, f"{log.compiles}", "", None,
                        f"{programs} solver programs + {log.compiles - programs} helpers; "
                        f"{fmt_time(log.seconds)} tracing + lowering + XLA compile"))
    return rows
