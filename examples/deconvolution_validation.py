"""Validation of BLASSO by forward–backward particle descent (the numbers reported for
issue 4). Every run uses the default step and the default (conic) geometry.

- ``noiseless``: m0 = 5 spikes, Dirichlet f_c = 12, separation > 2/f_c, no noise, small λ,
  m = 10·m0 particles, over ``--seeds`` seeds: success = every spike found once, positions
  within 1e-4 and amplitudes within λ (the BLASSO shrinkage is ≈ λ/‖ψ‖² = λ/25).
- ``noisy``: the same with noise, run until the duality gap certifies F(μ) − F* < 1e-8·F*;
  sup|η| over the torus and |η| at the recovered spikes.
- ``2d``: m0 = 4 spikes on T², f_c = 6, separation > 2/f_c (ℓ∞), m = 144 = (2f_c)² particles.
- ``timing``: seconds per iteration against m on a fixed grid (compilation excluded; best of
  interleaved repetitions, see benchmarks/_harness.py for why).

    python examples/deconvolution_validation.py [noiseless noisy 2d timing] [--seeds 20] [--out DIR]
    python examples/deconvolution_validation.py --seeds 1 --seeds-2d 1 --iterations 20 --ms 8   # a smoke run

Prints a summary and writes ``deconvolution_validation.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

import measureflow as mf
from measureflow.certificates import certificate, duality_gap
from measureflow.deconvolution import blasso, extract_spikes, recovery_errors


def solve_until(problem, mu0, *, chunk, max_iterations, target=None):
    """Forward–backward with the default step, in chunks of ``chunk`` iterations (the step
    fixed after the first), until the relative duality gap is below ``target``."""
    res = mf.solve(problem, mu0, "fb", iterations=chunk, snapshots=0)
    step, done = float(res.step), chunk
    gap = duality_gap(problem, res.particles)
    while (target is not None and gap.relative > target) and done < max_iterations:
        res = mf.solve(problem, res.particles, "fb", step=step, iterations=chunk, snapshots=0)
        done += chunk
        gap = duality_gap(problem, res.particles)
    return res, step, done, gap


def noiseless(seeds, lam=0.1, iterations=40_000):
    rows = []
    for seed in range(seeds):
        t0 = time.perf_counter()
        signal = mf.data.SpikeSignal(spikes=5, cutoff=12, min_separation=2 / 12, seed=seed)
        problem = blasso(signal, lam)
        mu0 = mf.init.admissible(problem.feature, 50, key=seed)
        res, step, done, gap = solve_until(problem, mu0, chunk=iterations, max_iterations=iterations)
        est = extract_spikes(res.particles, radius=1e-2)
        err = recovery_errors(est, signal.positions, signal.amplitudes)
        ok = err.success(1e-4, lam)
        rows.append(dict(seed=seed, success=bool(ok), position_error=err.position, amplitude_error=err.amplitude,
                         amplitude_error_over_lambda=err.amplitude / lam, missing=err.missing,
                         spurious=err.spurious, separation=signal.separation, relative_gap=gap.relative,
                         step=step, iterations=done, seconds=time.perf_counter() - t0))
        print(f"noiseless seed {seed:2d}: {'ok ' if ok else 'FAIL'} pos {err.position:.2e} amp {err.amplitude:.2e} "
              f"(= {err.amplitude / lam:.3f} λ) missing {err.missing} spurious {err.spurious} "
              f"gap {gap.relative:.1e} [{rows[-1]['seconds']:.0f}s]", flush=True)
    return dict(lam=lam, iterations=iterations, particles=50, runs=rows,
                successes=sum(r["success"] for r in rows), seeds=seeds)


def noisy(seed=0, noise=0.2, lam=1.0, target=1e-8, chunk=10_000, max_iterations=200_000):
    t0 = time.perf_counter()
    signal = mf.data.SpikeSignal(spikes=5, cutoff=12, min_separation=2 / 12, noise=noise, seed=seed)
    problem = blasso(signal, lam)
    mu0 = mf.init.admissible(problem.feature, 50, key=seed)
    res, step, done, gap = solve_until(problem, mu0, chunk=chunk, max_iterations=max_iterations, target=target)
    est = extract_spikes(res.particles, radius=1e-2)
    err = recovery_errors(est, signal.positions, signal.amplitudes)
    cert = certificate(problem, res.particles)
    at_spikes = np.abs(cert(est.positions)) - 1
    out = dict(seed=seed, noise=noise, lam=lam, iterations=done, step=step, objective=gap.objective,
               dual=gap.dual, gap=gap.gap, relative_gap=gap.relative, sup_eta_minus_1=cert.sup - 1,
               eta_at_spikes_minus_1=at_spikes.tolist(), signs_match=bool(np.all(np.sign(cert(est.positions))
                                                                                == np.sign(est.amplitudes))),
               spikes_found=len(est), position_error=err.position, amplitude_error=err.amplitude,
               seconds=time.perf_counter() - t0)
    print(f"noisy: {done} iterations, relative gap {gap.relative:.2e}, sup|η| − 1 = {cert.sup - 1:.2e}, "
          f"max ||η(spike)| − 1| = {np.abs(at_spikes).max():.2e}, {len(est)} spikes, pos err {err.position:.2e}, "
          f"amp err {err.amplitude:.2e}", flush=True)
    return out


def two_d(seeds, lam=0.6, iterations=40_000, m=144):
    rows = []
    for seed in range(seeds):
        t0 = time.perf_counter()
        signal = mf.data.SpikeSignal(spikes=4, dim=2, cutoff=6, min_separation=2 / 6, seed=seed)
        problem = blasso(signal, lam)
        mu0 = mf.init.admissible(problem.feature, m, key=seed)
        res, step, done, gap = solve_until(problem, mu0, chunk=iterations, max_iterations=iterations)
        est = extract_spikes(res.particles, radius=1e-2)
        err = recovery_errors(est, signal.positions, signal.amplitudes)
        rows.append(dict(seed=seed, position_error=err.position, amplitude_error=err.amplitude, missing=err.missing,
                         spurious=err.spurious, relative_gap=gap.relative, step=step, iterations=done,
                         seconds=time.perf_counter() - t0))
        print(f"2-D seed {seed}: pos {err.position:.2e} amp {err.amplitude:.2e} missing {err.missing} "
              f"spurious {err.spurious} gap {gap.relative:.1e} [{rows[-1]['seconds']:.0f}s]", flush=True)
    return dict(lam=lam, iterations=iterations, particles=m, runs=rows)


def timing(ms=(25, 50, 100, 200, 400, 800), iterations=2000, reps=3):
    signal = mf.data.SpikeSignal(spikes=5, cutoff=12, min_separation=2 / 12, seed=0)
    problem = blasso(signal, 0.1)
    runs = {}
    for m in ms:
        mu0 = mf.init.admissible(problem.feature, m, key=0)
        mf.solve(problem, mu0, "fb", step=1e-3, iterations=iterations, snapshots=0)  # compile
        runs[m] = lambda mu0=mu0: mf.solve(problem, mu0, "fb", step=1e-3, iterations=iterations, snapshots=0)
    best = {m: float("inf") for m in ms}
    for _ in range(reps):  # interleaved: each m sees the same machine load
        for m in ms:
            t0 = time.perf_counter()
            runs[m]()
            best[m] = min(best[m], time.perf_counter() - t0)
    rows = [dict(m=m, grid=signal.n, us_per_iteration=1e6 * best[m] / iterations,
                 us_per_iteration_per_particle=1e6 * best[m] / iterations / m) for m in ms]
    for r in rows:
        print(f"timing m={r['m']:4d} N={r['grid']}: {r['us_per_iteration']:8.1f} µs/iteration "
              f"({r['us_per_iteration_per_particle']:.2f} µs per particle)", flush=True)
    return dict(iterations=iterations, reps=reps, rows=rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", default=["noiseless", "noisy", "2d", "timing"])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--seeds-2d", type=int, default=5)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).parent / "out")
    parser.add_argument("--iterations", type=int, default=None,
                        help="iterations of every run, and the most for 'noisy' (default: each part's own)")
    parser.add_argument("--ms", type=lambda s: tuple(int(v) for v in s.split(",")), default=(25, 50, 100, 200, 400, 800),
                        help="particle counts of 'timing', comma-separated")
    args = parser.parse_args()
    n = args.iterations
    report = {}
    if "noiseless" in args.parts:
        report["noiseless"] = noiseless(args.seeds) if n is None else noiseless(args.seeds, iterations=n)
        print(f"noiseless: {report['noiseless']['successes']}/{args.seeds} successes")
    if "noisy" in args.parts:
        report["noisy"] = noisy() if n is None else noisy(chunk=n, max_iterations=n)
    if "2d" in args.parts:
        report["2d"] = two_d(args.seeds_2d) if n is None else two_d(args.seeds_2d, iterations=n)
    if "timing" in args.parts:
        report["timing"] = timing(args.ms) if n is None else timing(args.ms, iterations=n)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"deconvolution_validation_{'_'.join(args.parts)}.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
