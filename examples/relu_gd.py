"""Example 1: a ReLU teacher with 3 units learned by a student with m = 10 particles (GD).

Each unit is θ = (w, b, a) acting on the input with its bias coordinate, (x, 1) ∈ R²
("input dimension 2 with bias"), with x ~ N(0, 1): φ(θ, x) = a·relu(w x + b). The student
f_μ = (1/m) Σ_i a_i relu(w_i x + b_i) starts from the admissible init (θ_i uniform on the
unit sphere of R³) and runs full-batch gradient descent on a fixed training set of n
teacher samples, with the default step (1/curvature at μ0, halved if the loss rises).

The teacher is realizable, so the optimal training loss is 0 and the excess loss is the
loss itself. The population excess loss is exact: for d = 1 the ReLU second moments with
biases are in closed form (measureflow.population).

The figure shows the paths of the points |a_i|·(w_i, b_i) in the plane — (w, b) is
2-dimensional here, which is why the input is one-dimensional plus a bias — coloured by
the sign of a_i, with the teacher units as dashed rays and stars at |a*|·(w*, b*). A
2-homogeneous unit is determined by its ray and its scale |a|·|(w, b)|: at the optimum the
particles lie on the teacher rays and the scales on ray k add up to (m/m0)·|a*_k||(w*_k, b*_k)|
(masses 1/m against 1/m0).

    python examples/relu_gd.py --seed 0 --out examples/out
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

import measureflow as mf
from _report import report


def run(seed: int = 0, m: int = 10, teacher_units: int = 3, n: int = 1000, iterations: int = 20_000,
        snapshots: int = 200):
    """One run: (summary dict, result, teacher–student data)."""
    feature = mf.features.ReLU(1, bias=True)
    ts = mf.data.TeacherStudent(1, teacher_units, feature, seed=seed)
    train = mf.Problem(feature, "square", data=ts.training_set(n, seed=seed))
    population = mf.Problem(feature, "square", data=ts)
    mu0 = mf.init.admissible(feature, m, key=seed)
    res = mf.solve(train, mu0, "gd", iterations=iterations, snapshots=snapshots)
    summary = {
        "seed": seed, "m": m, "teacher_units": teacher_units, "n": n, "iterations": iterations,
        "step_default": mf.default_step(train, mu0), "step_final": float(res.step),
        "train_loss_initial": float(res.history[0]), "train_loss_final": float(res.history[-1]),
        "population_excess_initial": float(population.objective(mu0)),
        "population_excess_final": float(population.objective(res.particles)),
    }
    summary["train_ratio"] = summary["train_loss_final"] / summary["train_loss_initial"]
    return summary, res, ts


def planar(positions: np.ndarray) -> np.ndarray:
    """|a|·(w, b) for positions (..., 3) = (w, b, a); returns (..., 2)."""
    return np.abs(positions[..., 2:3]) * positions[..., :2]


def plot(res, ts, out: pathlib.Path, stem: str, title: str, ylabel: str = "training loss (= excess loss)"):
    from measureflow.plotting.figures import history_axis, new_figure, save_figure
    from measureflow.plotting.particle_paths import planar_paths

    fig, (ax, ax2) = new_figure(10, 4.6, ncols=2)
    T = np.asarray(ts.teacher)
    planar_paths(ax, planar(np.asarray(res.trajectory)), np.sign(np.asarray(res.particles.positions)[:, 2]),
                 teacher=planar(T), teacher_signs=np.sign(T[:, 2]))
    ax.set_xlabel("|a|·w")
    ax.set_ylabel("|a|·b")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower left")
    history_axis(ax2, res.history_iterations, res.history, ylabel)
    return save_figure(fig, out, stem)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--m", type=int, default=10)
    parser.add_argument("--teacher-units", type=int, default=3)
    parser.add_argument("--n", type=int, default=1000, help="training samples")
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("examples/out"))
    args = parser.parse_args()
    summary, res, ts = run(args.seed, args.m, args.teacher_units, args.n, args.iterations)
    stem = f"relu_gd_seed{args.seed}"
    paths = plot(res, ts, args.out, stem, f"ReLU, GD, m = {args.m}, m0 = {args.teacher_units}")
    report(summary, args.out, stem, paths)


if __name__ == "__main__":
    main()
