"""Seed sweeps of the two ReLU examples (the numbers reported for issue 3).

- Example 1 (relu_gd.py: m = 10, GD on a training set) over ``--gd-seeds`` seeds: the
  fraction of runs whose final excess (training) loss is below 1e-4 of the initial loss.
- Example 2 (relu_sgd.py: m = 100, SGD with fresh samples) over ``--sgd-seeds`` seeds: the
  final exact population excess loss, median and worst.

Each seed draws its own teacher, training set and initialization. Results are printed and
written to ``OUT/relu_seed_sweeps.json``.

    python examples/relu_seed_sweeps.py --out examples/out
    python examples/relu_seed_sweeps.py --gd-seeds 1 --sgd-seeds 1 --iterations 20   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

import relu_gd
import relu_sgd


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gd-seeds", type=int, default=20)
    parser.add_argument("--sgd-seeds", type=int, default=10)
    parser.add_argument("--threshold", type=float, default=1e-4)
    parser.add_argument("--iterations", type=int, default=None,
                        help="iterations of every run (default: the examples' own, 20000)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("examples/out"))
    args = parser.parse_args()
    size = {} if args.iterations is None else {"iterations": args.iterations}
    report = {"gd": [], "sgd": []}
    t0 = time.time()
    for seed in range(args.gd_seeds):
        summary, _, _ = relu_gd.run(seed, snapshots=0, **size)
        report["gd"].append(summary)
        print(f"gd  seed {seed:2d}  loss {summary['train_loss_initial']:.3e} -> {summary['train_loss_final']:.3e}"
              f"  ratio {summary['train_ratio']:.2e}  population excess {summary['population_excess_final']:.2e}"
              f"  step {summary['step_default']:.3g} -> {summary['step_final']:.3g}", flush=True)
    for seed in range(args.sgd_seeds):
        summary, _, _ = relu_sgd.run(seed, snapshots=0, **size)
        report["sgd"].append(summary)
        print(f"sgd seed {seed:2d}  population excess {summary['population_excess_initial']:.3e} -> "
              f"{summary['population_excess_final']:.3e}  ratio {summary['ratio']:.2e}", flush=True)
    if report["gd"]:
        ratios = np.array([s["train_ratio"] for s in report["gd"]])
        report["gd_fraction_below_threshold"] = float(np.mean(ratios < args.threshold))
        report["gd_halved_runs"] = int(sum(s["step_final"] < s["step_default"] for s in report["gd"]))
        print(f"example 1: {np.sum(ratios < args.threshold)}/{len(ratios)} runs end below "
              f"{args.threshold:g} x the initial loss (median ratio {np.median(ratios):.2e}, worst {ratios.max():.2e}); "
              f"default step halved in {report['gd_halved_runs']} runs")
    if report["sgd"]:
        final = np.array([s["population_excess_final"] for s in report["sgd"]])
        ratio = np.array([s["ratio"] for s in report["sgd"]])
        report["sgd_final_median"], report["sgd_final_worst"] = float(np.median(final)), float(final.max())
        print(f"example 2: final population excess loss median {np.median(final):.2e}, worst {final.max():.2e} "
              f"(ratio to initial: median {np.median(ratio):.2e}, worst {ratio.max():.2e})")
    report["seconds"] = time.time() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "relu_seed_sweeps.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
