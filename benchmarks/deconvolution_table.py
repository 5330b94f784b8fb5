"""The issue-15 table: per setting, the fraction certified to 1e-8, the median and worst
final relative duality gap (the grid LASSO's column: the gap it reaches when its grid cannot
hold the off-grid optimum), spikes found / missing / spurious, position and amplitude
errors, and the median warm wall and CPU time of deconvolve vs SFW vs grid LASSO (one
timed run per instance after an untimed compiling run on the first; CPU = process time,
all threads).

    python benchmarks/deconvolution_table.py --instances 20 [--solvers deconvolve,SFW,"grid LASSO"] [--only λ=0.001]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import measureflow as mf  # noqa: E402
from deconvolution import certified_instances, certified_solvers  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--solvers", default="deconvolve,SFW,SFW (L-BFGS-B),grid LASSO")
    ap.add_argument("--only", default=None, help="substring of the setting names to run")
    args = ap.parse_args(argv)
    chosen = {k: v for k, v in certified_solvers().items() if k in args.solvers.split(",")}
    print(f"load average at the start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)\n")
    print("| setting | solver | certified | rel. gap median / max | found/missing/spurious (total) | max pos err "
          "| max amp err | median wall [ms] | median CPU [ms] |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, probs in certified_instances(args.instances):
        if args.only and args.only not in name:
            continue
        stats = {k: [] for k in chosen}
        for i, (pr, sig) in enumerate(probs):
            for k, fn in chosen.items():
                if i == 0:
                    fn(pr)  # compile
                t0, c0 = time.perf_counter(), time.process_time()
                res = fn(pr)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                e = mf.deconvolution.recovery_errors(res.spikes, sig.positions, sig.amplitudes)
                stats[k].append((res.certified, len(res.spikes) - e.spurious, e.missing, e.spurious,
                                 e.position, e.amplitude, wall, cpu, res.gap.relative))
        for k, rows in stats.items():
            r = np.array(rows, dtype=float)
            print(f"| {name} | {k} | {int(r[:, 0].sum())}/{len(r)} | {np.median(r[:, 8]):.0e} / {r[:, 8].max():.0e} | "
                  f"{int(r[:, 1].sum())}/{int(r[:, 2].sum())}/{int(r[:, 3].sum())} | {r[:, 4].max():.1e} | "
                  f"{r[:, 5].max():.1e} | {1e3 * np.median(r[:, 6]):.1f} | {1e3 * np.median(r[:, 7]):.1f} |", flush=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
