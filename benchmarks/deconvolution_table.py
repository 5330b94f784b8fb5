"""The issue-15 table: per setting, the fraction certified to 1e-8, spikes found / missing /
spurious, position and amplitude errors, and the median warm time to certificate of
deconvolve vs SFW vs grid LASSO.

    python benchmarks/deconvolution_table.py --instances 20 [--solvers deconvolve,SFW,"grid LASSO"]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import measureflow as mf  # noqa: E402
from deconvolution import certified_instances, certified_solvers, solve_all  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--solvers", default="deconvolve,SFW,grid LASSO")
    ap.add_argument("--only", default=None, help="substring of the setting names to run")
    args = ap.parse_args(argv)
    chosen = {k: v for k, v in certified_solvers().items() if k in args.solvers.split(",")}
    print("| setting | solver | certified | found/missing/spurious (total) | max pos err | max amp err | median time [s] |")
    print("|---|---|---|---|---|---|---|")
    for name, probs in certified_instances(args.instances):
        if args.only and args.only not in name:
            continue
        stats = {k: [] for k in chosen}
        for i, (pr, sig) in enumerate(probs):
            for k, (wall, res) in solve_all(pr, chosen, warm=(i == 0)).items():
                e = mf.deconvolution.recovery_errors(res.spikes, sig.positions, sig.amplitudes)
                stats[k].append((res.certified, len(res.spikes) - e.spurious, e.missing, e.spurious,
                                 e.position, e.amplitude, wall))
        for k, rows in stats.items():
            r = np.array(rows, dtype=float)
            print(f"| {name} | {k} | {int(r[:, 0].sum())}/{len(r)} | {int(r[:, 1].sum())}/{int(r[:, 2].sum())}/"
                  f"{int(r[:, 3].sum())} | {r[:, 4].max():.1e} | {r[:, 5].max():.1e} | {np.median(r[:, 6]):.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
