"""Example 2: the same kind of ReLU teacher (3 units, input (x, 1) with x ~ N(0, 1)),
a student with m = 100 particles trained by SGD on the population loss, with fresh
samples at every step.

Each step draws ``batch_size`` new teacher samples (``TeacherStudent.sample``) and moves
every particle by the stochastic mean-field velocity; the step is the default (1/curvature
at μ0, estimated on the held-out draw). Without label noise the teacher is realizable and
every sample's gradient vanishes at the optimum, so a constant step still converges.

The recorded history is the exact population loss (closed-form ReLU second moments for
d = 1 with biases), i.e. the excess loss without sampling noise. The figure shows the
paths of |a_i|·(w_i, b_i) in the plane, coloured by sign(a_i), with the teacher units as
dashed rays and stars at |a*|·(w*, b*) (see relu_gd.py).

    python examples/relu_sgd.py --seed 0 --out examples/out
"""

from __future__ import annotations

import argparse
import pathlib

import measureflow as mf
from _report import report
from relu_gd import plot


def run(seed: int = 0, m: int = 100, teacher_units: int = 3, batch_size: int = 100,
        iterations: int = 20_000, snapshots: int = 200):
    """One run: (summary dict, result, teacher–student data)."""
    feature = mf.features.ReLU(1, bias=True)
    ts = mf.data.TeacherStudent(1, teacher_units, feature, seed=seed)
    problem = mf.Problem(feature, "square", data=ts)
    mu0 = mf.init.admissible(feature, m, key=seed)
    res = mf.solve(problem, mu0, "sgd", iterations=iterations, batch_size=batch_size, key=seed,
                   snapshots=snapshots)
    summary = {
        "seed": seed, "m": m, "teacher_units": teacher_units, "batch_size": batch_size,
        "iterations": iterations, "step": float(res.step),
        "population_excess_initial": float(res.history[0]),
        "population_excess_final": float(res.history[-1]),
    }
    summary["ratio"] = summary["population_excess_final"] / summary["population_excess_initial"]
    return summary, res, ts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--m", type=int, default=100)
    parser.add_argument("--teacher-units", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("examples/out"))
    args = parser.parse_args()
    summary, res, ts = run(args.seed, args.m, args.teacher_units, args.batch_size, args.iterations)
    stem = f"relu_sgd_seed{args.seed}"
    paths = plot(res, ts, args.out, stem, f"ReLU, SGD (fresh samples), m = {args.m}, m0 = {args.teacher_units}",
                 ylabel="population excess loss (exact)")
    report(summary, args.out, stem, paths)


if __name__ == "__main__":
    main()
