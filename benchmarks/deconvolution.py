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


# -- certified solvers side by side (issue 15) ---------------------------------------------


def certified_instances(instances: int = 20):
    """(setting name, [problem, signal] list): the settings of issue 15, seeds 0..instances-1."""
    from measureflow.kernels import Gaussian

    settings = []
    for lam in (1e-1, 1e-2, 1e-3):
        for noise in (0.0, 0.05):
            settings.append((f"1-D Dirichlet f_c=12, 5 spikes, λ={lam:g}, σ={noise:g}",
                             dict(spikes=5, cutoff=12, noise=noise), lam))
    settings.append(("1-D Gaussian σ_k=0.02, 5 spikes, λ=1e-2, σ=0", dict(spikes=5, kernel=Gaussian(0.02)), 1e-2))
    settings.append(("2-D Dirichlet f_c=6, 4 spikes, λ=1e-2, σ=0", dict(spikes=4, dim=2, cutoff=6), 1e-2))
    for name, kw, lam in settings:
        sigs = [mf.data.SpikeSignal(seed=s, **kw) for s in range(instances)]
        yield name, [(blasso(sg, lam), sg) for sg in sigs]


def solve_all(problem, solvers, warm=True, repeat=3):
    """{name: (wall seconds, result)} per solver; ``warm``: a first untimed run compiles.
    A solver whose timed run takes under 0.5 s is timed ``repeat`` times and the fastest
    run kept (one run of a few ms is at the mercy of the load on a shared machine)."""
    out = {}
    for name, fn in solvers.items():
        if warm:
            fn(problem)
        best = None
        for i in range(repeat):
            t0 = time.perf_counter()
            res = fn(problem)
            wall = time.perf_counter() - t0
            best = wall if best is None else min(best, wall)
            if wall >= 0.5:
                break
        out[name] = (best, res)
    return out


def certified_solvers():
    """The certified solvers compared: deconvolve, SFW with the Newton local solve (its
    default), SFW with the published L-BFGS-B steps, and the grid LASSO."""
    import functools

    from measureflow.baselines import grid_lasso, sliding_frank_wolfe
    from measureflow.deconvolution import deconvolve

    return {"deconvolve": deconvolve, "SFW": sliding_frank_wolfe,
            "SFW (L-BFGS-B)": functools.partial(sliding_frank_wolfe, local="lbfgsb"), "grid LASSO": grid_lasso}


def bare_fb_arithmetic(m=60, cutoff=12, K=2000):
    """Seconds of the Fourier-factored products of one step at m particles: f = Φᵀa
    (m × (2f_c+1) × n) and its adjoints for the amplitude and position gradients, jitted."""
    import jax
    import jax.numpy as jnp

    sig = mf.data.SpikeSignal(spikes=5, cutoff=cutoff, seed=0)
    x = jnp.asarray(sig.X[:, 0])
    w = 2 * jnp.pi * jnp.arange(1, cutoff + 1)
    cx, sx = jnp.cos(x[:, None] * w), jnp.sin(x[:, None] * w)
    y = jnp.asarray(sig.y)

    def step(th):
        a, t = th[:, 0], th[:, 1]
        ct, st = jnp.cos(t[:, None] * w), jnp.sin(t[:, None] * w)
        f = a.sum() + 2 * ((a @ ct) @ cx.T + (a @ st) @ sx.T)
        r = (f - y) / len(y)
        rc, rs = cx.T @ r, sx.T @ r
        ga = r.sum() + 2 * (ct @ rc + st @ rs)
        gt = 2 * a * ((-st * w) @ rc + (ct * w) @ rs)
        return th - 1e-3 * jnp.stack([ga, gt], 1)

    loop = jax.jit(lambda th, n: jax.lax.fori_loop(0, n, lambda i, z: step(z), th))
    th = jnp.asarray(np.column_stack([np.zeros(m), np.arange(m) / m]))
    loop(th, 1).block_until_ready()
    loop(th, K + 1).block_until_ready()
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter(); loop(th, 1).block_until_ready(); t1 = time.perf_counter()
        loop(th, K + 1).block_until_ready(); t2 = time.perf_counter()
        best = min(best, ((t2 - t1) - (t1 - t0)) / K)
    return best


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
    # certified solvers on λ = 1e-3, noiseless 1-D f_c = 12, 5 spikes (issue 15)
    name, probs = next((nm, pr) for nm, pr in certified_instances(1 if quick else 3) if "λ=0.001, σ=0" in nm)
    times = {k: [] for k in certified_solvers()}
    info = {k: [] for k in times}
    for pr, _ in probs:
        for k, (wall, res) in solve_all(pr, certified_solvers()).items():
            times[k].append(wall)
            info[k].append(f"{res.status}, {res.iterations} its, {len(res.spikes)} spikes, gap {res.gap.relative:.0e}")
    med = {k: float(np.median(v)) for k, v in times.items()}
    for k in times:
        rows.append(Row("3 deconvolution", f"time to certificate 1e-8, {k} ({name}, warm)", med[k], fmt_time(med[k]),
                        "< 1 s" if k == "deconvolve" else "", (med[k] < 1.0) if k == "deconvolve" else None,
                        "; ".join(info[k])))
    ratio = min(med["SFW"], med["grid LASSO"]) / med["deconvolve"]
    rows.append(Row("3 deconvolution", "speed-up of deconvolve over the faster baseline", ratio, f"{ratio:.1f}×",
                    "≥ 5×", ratio >= 5, "median times above; the grid LASSO stops at 'grid_optimal' or its cap "
                    "when off-grid spikes keep its torus gap above 1e-8"))
    # one fb step at m = 60 (f_c = 12) vs its bare Fourier-factored arithmetic
    sig = mf.data.SpikeSignal(spikes=5, cutoff=12, seed=0)
    pr = blasso(sig, 0.1)
    mu0 = mf.init.admissible(pr.feature, 60, key=0)
    step = mf.default_step(pr, mu0, method="fb")
    K = 2000
    fns = {"one": lambda: mf.solve(pr, mu0, "fb", step=step, iterations=1, history_every=1, snapshots=0),
           "many": lambda: mf.solve(pr, mu0, "fb", step=step, iterations=1 + K, history_every=1 + K, snapshots=0)}
    for f in fns.values():
        f()
    tt = best_times(fns, reps=3)
    fb = max(tt["many"] - tt["one"], 1e-9) / K
    bare = bare_fb_arithmetic()
    rows.append(Row("3 deconvolution", f"fb step / bare arithmetic (m=60, n={sig.X.shape[0]}, f_c=12)", fb / bare,
                    f"{fb / bare:.1f}×", "≤ 3×", fb / bare <= 3,
                    f"fb step {fmt_time(fb)}, bare Fourier-factored products and adjoints {fmt_time(bare)} (jitted loop)"))
    return rows


def many_small_problems(n: int = 100, seed: int = 0):
    """deconvolve once per random problem, as a sweep does: 1-D, 5 spikes at separation
    1.5/f_c, f_c drawn from {10, 11, 12}, noiseless, λ = 3% of the problem's λ_max; each
    kernel compiled once beforehand. Returns (wall seconds, CPU seconds, certified) per call.

        python benchmarks/deconvolution.py many [n]
    """
    from measureflow import sliding
    from measureflow.deconvolution import deconvolve

    rng = np.random.default_rng(seed)
    for fc in (10, 11, 12):
        deconvolve(blasso(mf.data.SpikeSignal(spikes=5, cutoff=fc, min_separation=1.5 / fc, seed=1), 0.1))
    out = []
    for i in range(n):
        fc = int(rng.integers(10, 13))
        sg = mf.data.SpikeSignal(spikes=5, cutoff=fc, min_separation=1.5 / fc, seed=1000 + i)
        pr = blasso(sg, 0.03 * sliding.lambda_max(blasso(sg, 1.0)))
        t0, c0 = time.perf_counter(), time.process_time()
        res = deconvolve(pr)
        out.append((time.perf_counter() - t0, time.process_time() - c0, res.certified))
    return out


def versus_sfw(n: int = 20, repeat: int = 5):
    """deconvolve vs SFW (Newton) on the first ``n`` instances of λ = 1e-3 noiseless 1-D
    (the issue's headline setting): per instance the best of ``repeat`` warm runs, wall and
    CPU (process time); returns {solver: (walls, cpus)}.

        python benchmarks/deconvolution.py versus [n]
    """
    from measureflow.baselines import sliding_frank_wolfe
    from measureflow.deconvolution import deconvolve

    _, probs = next((nm, pr) for nm, pr in certified_instances(n) if "λ=0.001, σ=0" in nm)
    out = {"deconvolve": ([], []), "SFW": ([], [])}
    for pr, _ in probs:
        for name, fn in (("deconvolve", deconvolve), ("SFW", sliding_frank_wolfe)):
            fn(pr)
            w, c = [], []
            for _ in range(repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                fn(pr)
                w.append(time.perf_counter() - t0)
                c.append(time.process_time() - c0)
            out[name][0].append(min(w))
            out[name][1].append(min(c))
    return out


if __name__ == "__main__":
    import os
    import sys

    if sys.argv[1:2] == ["versus"]:
        load = os.getloadavg()[0]
        res = versus_sfw(int(sys.argv[2]) if len(sys.argv) > 2 else 20)
        med = {k: (1e3 * np.median(w), 1e3 * np.median(c)) for k, (w, c) in res.items()}
        for k, (w, c) in med.items():
            print(f"{k}: median over instances of the best wall {w:.2f} ms, CPU {c:.2f} ms")
        print(f"SFW / deconvolve: wall {med['SFW'][0] / med['deconvolve'][0]:.2f}×, CPU "
              f"{med['SFW'][1] / med['deconvolve'][1]:.2f}×; load {load:.1f} → {os.getloadavg()[0]:.1f}")
    if sys.argv[1:2] == ["many"]:
        rows = np.array(many_small_problems(int(sys.argv[2]) if len(sys.argv) > 2 else 100), dtype=float)
        print(f"{len(rows)} calls: mean {rows[:, 0].mean() * 1e3:.1f} ms wall, mean CPU {rows[:, 1].mean() * 1e3:.1f} ms, "
              f"certified {int(rows[:, 2].sum())}/{len(rows)}; load {os.getloadavg()[0]:.1f}")
