"""3. Deconvolution: forward–backward iteration time against m for a fixed grid, and the
time to a certified duality gap of 1e-8 on the standard 1-D problem.

Standard 1-D problem: the deconvolution problem of the excess-loss experiment
(``experiments.excess_loss``: 4 spikes through the ideal low-pass filter f_c = 10 on the
default 42-point grid, no noise, λ = 0.5, seed 0), with m = 32 = 8 m0 particles from the
admissible init, forward–backward in the conic geometry with the default step.

Iteration time: difference of ``mf.solve(method="fb")`` runs of 1 + K and 1 iterations
(F recorded only at both ends, no snapshots), so only the compiled step is timed. Its
growth with m is the slope of log(time) against log(m) between the two largest m (1 for
linear growth: one step is O(m·n) with n the grid size).

Time to certificate: ``mf.solve`` in chunks of iterations continued from the last
particles, each followed by ``duality_gap`` (sup|η| over the torus by grid + Newton), until
the gap F(μ) − D(p) ≤ 1e-8; compilation is reported apart.
"""

from __future__ import annotations

import math
import time

import numpy as np

import measureflow as mf
from _harness import Row, best_times, count_compiles, fmt_time
from measureflow.certificates import duality_gap
from measureflow.deconvolution import blasso
from measureflow.experiments import excess_loss as el


M_STANDARD = 32


def standard_problem():
    p = el._DECONVOLUTION
    signal = mf.data.SpikeSignal(spikes=p["spikes"], cutoff=p["cutoff"], noise=p["noise"], seed=0)
    return blasso(signal, p["lam"])


def iteration_times(ms, K: int, reps: int) -> dict[int, float]:
    problem = standard_problem()
    out = {}
    for m in ms:
        mu0 = mf.init.admissible(problem.feature, m, key=0)
        step = mf.default_step(problem, mu0, method="fb")

        def solve(T):
            return lambda: mf.solve(problem, mu0, "fb", step=step, iterations=T, history_every=T, snapshots=0)

        fns = {"one": solve(1), "many": solve(1 + K)}
        for f in fns.values():
            f()
        t = best_times(fns, reps=reps)
        out[m] = max(t["many"] - t["one"], 1e-9) / K
    return out


def time_to_gap(target: float = 1e-8, chunk: int = 1000, max_chunks: int = 100):
    problem = standard_problem()
    mu = mf.init.admissible(problem.feature, M_STANDARD, key=0)
    with count_compiles() as log:
        t0 = time.perf_counter()
        step = mf.default_step(problem, mu, method="fb")
        mf.solve(problem, mu, "fb", step=step, iterations=chunk, snapshots=0)  # compile the loop
        duality_gap(problem, mu)  # compile the certificate
        compile_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    step = mf.default_step(problem, mu, method="fb")
    solve_s = cert_s = 0.0
    its, gap = 0, math.inf
    for _ in range(max_chunks):
        t1 = time.perf_counter()
        mu = mf.solve(problem, mu, "fb", step=step, iterations=chunk, snapshots=0).particles
        t2 = time.perf_counter()
        gap = duality_gap(problem, mu)
        cert_s += time.perf_counter() - t2
        solve_s += t2 - t1
        its += chunk
        if gap.gap <= target:
            break
    return time.perf_counter() - t0, its, gap, solve_s, cert_s, log, compile_wall


def run(quick: bool) -> list[Row]:
    ms = [50, 500, 5_000, 50_000] if quick else [50, 500, 5_000, 50_000, 500_000]
    t = iteration_times(ms, K=20 if quick else 50, reps=3 if quick else 5)
    a, b = ms[-2], ms[-1]
    slope = math.log(t[b] / t[a]) / math.log(b / a)
    per = "; ".join(f"m={m}: {fmt_time(v)} ({v / m * 1e9:.1f} ns/particle)" for m, v in t.items())
    n = standard_problem().data.X.shape[0]
    rows = [Row("3 deconvolution", f"fb iteration time ∝ m^k, k (m = {a} → {b}, grid {n})", slope, f"{slope:.2f}",
                "≈ 1 (linear)", slope <= 1.15, per)]
    total, its, gap, solve_s, cert_s, log, compile_wall = time_to_gap()
    ok = gap.gap <= 1e-8
    rows.append(Row("3 deconvolution", f"time to certified gap 1e-8 (standard 1-D, m={M_STANDARD})", total, fmt_time(total),
                    "gap reached", ok,
                    f"{its} fb iterations ({fmt_time(solve_s)}) + certificates ({fmt_time(cert_s)}); final gap "
                    f"{gap.gap:.1e}, relative {gap.relative:.1e}; compilation {fmt_time(compile_wall)} apart "
                    f"({log.compiles} XLA compilations)"))
    return rows
