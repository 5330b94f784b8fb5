"""4. Sweeps: the runs of a quick excess-loss experiment batched (``vmap`` over seeds, and
over widths m by padding) against the same runs one by one.

Experiment: a ReLU teacher (3 units, d = 2, realizable, no noise) and 200 training
samples; students of widths m ∈ {1, 2, 4, 8, 16, 32}, 5 initialization seeds each, GD with
a fixed step for the same number of steps. Three ways to run the 30 runs:

- one by one   ``mf.solve`` per run (one compilation per width, reused across seeds)
- per width    ``mf.solve_batch`` over the 5 seeds of each width (one compilation per width)
- padded       one ``mf.solve_batch`` of all 30 runs, padded to m = 32 with massless
               particles (one compilation)

Each is timed cold (first call: compilation included, counted with ``jax.monitoring``)
and warm (best of the later calls); the final objectives of the three are checked to agree.
"""

from __future__ import annotations

import time

import numpy as np

import measureflow as mf
from _harness import Row, best_times, count_compiles, fmt_time

WIDTHS, SEEDS, STEP = (1, 2, 4, 8, 16, 32), range(5), 0.5


def _setup():
    teacher = mf.data.TeacherStudent(2, 3, seed=0)
    data = teacher.training_set(200, seed=0)
    feat = mf.features.ReLU(2)
    problem = mf.Problem(feat, "square", None, data)
    inits = [(m, s, mf.init.admissible(feat, m, key=s)) for m in WIDTHS for s in SEEDS]
    return problem, inits


def run(quick: bool) -> list[Row]:
    T = 2000 if quick else 10_000
    problem, inits = _setup()

    def one_by_one():
        return [mf.solve(problem, mu, "gd", step=STEP, iterations=T, snapshots=0).history[-1] for _, _, mu in inits]

    def per_width():
        out = []
        for m in WIDTHS:
            runs = [mu for mm, _, mu in inits if mm == m]
            out += [r.history[-1] for r in mf.solve_batch(problem, runs, "gd", step=STEP, iterations=T)]
        return out

    def padded():
        return [r.history[-1] for r in mf.solve_batch(problem, [mu for *_, mu in inits], "gd", step=STEP,
                                                      iterations=T)]

    fns = {"one by one": one_by_one, "per width": per_width, "padded": padded}
    cold, logs, finals = {}, {}, {}
    for name, f in fns.items():
        with count_compiles() as log:
            t0 = time.perf_counter()
            finals[name] = np.asarray(f())
            cold[name] = time.perf_counter() - t0
        logs[name] = log
    warm = best_times(fns, reps=2 if quick else 3)
    agree = all(np.allclose(finals[k], finals["one by one"], rtol=1e-6, atol=1e-12) for k in finals)
    check = "final F agree (1e-6)" if agree else "WARNING: final F DIFFER"
    rows = []
    for name in ("per width", "padded"):
        r_warm = warm["one by one"] / warm[name]
        r_cold = cold["one by one"] / cold[name]
        label = "vmap over seeds, one program per width" if name == "per width" else "vmap over seeds and padded widths"
        rows.append(Row("4 sweeps", f"{label}: speed-up vs one by one", r_warm, f"{r_warm:.1f}×", "≥ 3×",
                        r_warm >= 3, f"warm {fmt_time(warm[name])} vs {fmt_time(warm['one by one'])}; cold "
                                     f"(incl. compilation) {r_cold:.1f}×: {fmt_time(cold[name])} vs "
                                     f"{fmt_time(cold['one by one'])}; 30 runs × {T} steps; {check}"))
    for name in fns:
        log = logs[name]
        rows.append(Row("4 sweeps", f"compilations, {name}", log.compiles, f"{log.compiles}", "", None,
                        f"{fmt_time(log.seconds)} tracing + lowering + XLA compile"))
    return rows
