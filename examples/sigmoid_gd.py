"""Sigmoid-type teacher–student regression: partially 1-homogeneous units a·σ(w·x + b).

Two variants (``--activation``):

- ``sigmoid`` (default): σ(z) = 1/(1 + e^{−z}), input (x, 1) with x ~ N(0, 1), a teacher
  with 3 units of scale |(w*, b*)| = 3, a student with m = 50 particles trained by
  full-batch GD on n = 1000 samples. The population excess loss is estimated on a held-out
  draw of 10⁵ samples (no closed form for the sigmoid).
- ``erf``: σ = erf without bias, x ~ N(0, I₂), trained by SGD with fresh samples; its
  history is the exact population loss (arcsine kernel).

The student starts from the admissible init for partial homogeneity: a = 0 and (w, b)
drawn from N(0, I). The figure shows the paths of the positions (w, b) (or w ∈ R² for
erf), coloured by the final sign of a, with the teacher units as stars: a sigmoid unit is
not homogeneous in (w, b), so the particles must reach the teacher positions themselves.

    python examples/sigmoid_gd.py --out examples/out
    python examples/sigmoid_gd.py --activation erf --out examples/out
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

import measureflow as mf
from _report import report


def run(activation: str = "sigmoid", seed: int = 0, m: int = 50, teacher_units: int = 3, n: int = 1000,
        iterations: int = 20_000, batch_size: int = 100, teacher_scale: float = 3.0, snapshots: int = 200):
    """One run: (summary dict, result, teacher–student data)."""
    if activation == "sigmoid":
        feature = mf.features.Sigmoid(1, bias=True)
    else:
        feature = mf.features.Erf(2, bias=False)
    ts = mf.data.TeacherStudent(feature.input_dim, teacher_units, feature, seed=seed, teacher_scale=teacher_scale)
    population = mf.Problem(feature, "square", data=ts)
    mu0 = mf.init.admissible(feature, m, key=seed)
    summary = {"activation": activation, "seed": seed, "m": m, "teacher_units": teacher_units,
               "iterations": iterations, "teacher_scale": teacher_scale}
    if activation == "sigmoid":
        train = mf.Problem(feature, "square", data=ts.training_set(n, seed=seed))
        res = mf.solve(train, mu0, "gd", iterations=iterations, snapshots=snapshots)
        summary.update(method="gd", n=n, train_loss_initial=float(res.history[0]),
                       train_loss_final=float(res.history[-1]))
        summary["train_ratio"] = summary["train_loss_final"] / summary["train_loss_initial"]
    else:
        res = mf.solve(population, mu0, "sgd", iterations=iterations, batch_size=batch_size, key=seed,
                       snapshots=snapshots)
        summary.update(method="sgd", batch_size=batch_size)
    summary["step_final"] = float(res.step)
    summary["population_excess_initial"] = float(population.objective(mu0))
    summary["population_excess_final"] = float(population.objective(res.particles))
    summary["population_ratio"] = summary["population_excess_final"] / summary["population_excess_initial"]
    summary["population_evaluation"] = "exact" if activation == "erf" else f"held-out ({ts.eval_size} samples)"
    return summary, res, ts


def plot(res, ts, out: pathlib.Path, stem: str, title: str, ylabel: str):
    from measureflow.plotting.figures import history_axis, new_figure, save_figure
    from measureflow.plotting.particle_paths import NEGATIVE, POSITIVE

    fig, (ax, ax2) = new_figure(10, 4.6, ncols=2)
    traj = np.asarray(res.trajectory)[..., :2]
    signs = np.sign(np.asarray(res.particles.positions)[:, -1])
    for i in range(traj.shape[1]):
        c = POSITIVE if signs[i] > 0 else NEGATIVE
        ax.plot(traj[:, i, 0], traj[:, i, 1], color=c, lw=0.8, alpha=0.6)
        ax.plot(traj[-1, i, 0], traj[-1, i, 1], "o", color=c, ms=3)
    ax.plot(traj[0, :, 0], traj[0, :, 1], ".", color="0.5", ms=3, label="initialization (a = 0)")
    T = np.asarray(ts.teacher)
    for k in range(len(T)):
        ax.plot(T[k, 0], T[k, 1], "*", color=POSITIVE if T[k, -1] > 0 else NEGATIVE, ms=14, mec="k")
    ax.plot([], [], "-", color=POSITIVE, label="particle, final a > 0")
    ax.plot([], [], "-", color=NEGATIVE, label="particle, final a < 0")
    ax.plot([], [], "*", color="0.4", mec="k", ms=10, label="teacher unit")
    names = ("w", "b") if ts.teacher_feature.bias else ("w₁", "w₂")
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(title)
    ax.legend(fontsize=7)
    history_axis(ax2, res.history_iterations, res.history, ylabel)
    return save_figure(fig, out, stem)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activation", choices=("sigmoid", "erf"), default="sigmoid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--m", type=int, default=50)
    parser.add_argument("--teacher-units", type=int, default=3)
    parser.add_argument("--n", type=int, default=1000, help="training samples (sigmoid, GD)")
    parser.add_argument("--batch-size", type=int, default=100, help="fresh samples per step (erf, SGD)")
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("examples/out"))
    args = parser.parse_args()
    summary, res, ts = run(args.activation, args.seed, args.m, args.teacher_units, args.n, args.iterations,
                           args.batch_size)
    stem = f"{args.activation}_{summary['method']}_seed{args.seed}"
    ylabel = "training loss (= excess loss)" if summary["method"] == "gd" else "population excess loss (exact)"
    paths = plot(res, ts, args.out, stem, f"{args.activation}, {summary['method'].upper()}, m = {args.m}, "
                 f"m0 = {args.teacher_units}", ylabel)
    report(summary, args.out, stem, paths)


if __name__ == "__main__":
    main()
