"""Binary classification with the logistic loss: labels y = sign(f*(x)) of a ReLU teacher.

x ~ N(0, I₂), a teacher with 3 ReLU units with bias, a student with m = 50 particles
(admissible init: θ uniform on the unit sphere of R⁴) trained by full-batch GD on
n = 2000 labelled samples with ℓ(f, y) = log(1 + e^{−y f}). Without label noise the data
are separable by the teacher, so the infimum of the risk is 0 (approached as the margin
grows, not attained): the loss keeps decreasing, and the classification error on a
held-out draw of 10⁵ samples measures how well the student's decision boundary f_μ = 0
matches the teacher's f* = 0. Teachers whose labels are more than 75% of one class are
skipped (the next seed is drawn), since nearly one-signed f* makes the task trivial.

The figure shows both boundaries in the input plane and the training loss.

    python examples/relu_logistic.py --out examples/out
"""

from __future__ import annotations

import argparse
import pathlib

import jax.numpy as jnp
import numpy as np

import measureflow as mf
from _report import report


def balanced_teacher(feature, teacher_units: int, seed: int, minority: float = 0.25):
    """The first teacher (seeds seed, seed + 1, ...) whose held-out labels have both classes
    at frequency >= ``minority``: a teacher whose f* has nearly one sign makes a trivial task."""
    for s in range(seed, seed + 1000):
        ts = mf.data.TeacherStudent(feature.input_dim, teacher_units, feature, task="classification", seed=s)
        if minority <= float(jnp.mean(ts.evaluation_set().y > 0)) <= 1 - minority:
            return ts, s
    raise RuntimeError("no balanced teacher found")


def run(seed: int = 0, m: int = 50, teacher_units: int = 3, n: int = 2000, iterations: int = 20_000):
    """One run: (summary dict, result, teacher–student data, training problem)."""
    feature = mf.features.ReLU(2, bias=True)
    ts, teacher_seed = balanced_teacher(feature, teacher_units, seed)
    train = mf.Problem(feature, "logistic", data=ts.training_set(n, seed=seed))
    mu0 = mf.init.admissible(feature, m, key=seed)
    res = mf.solve(train, mu0, "gd", iterations=iterations, snapshots=0)
    held_out = ts.evaluation_set()
    population = mf.Problem(feature, "logistic", data=ts)

    def error(problem, data):
        return float(jnp.mean(jnp.where(problem.predict(res.particles, data.X) >= 0, 1.0, -1.0) != data.y))

    summary = {
        "seed": seed, "teacher_seed": teacher_seed,
        "positive_labels": float(jnp.mean(held_out.y > 0)), "m": m, "teacher_units": teacher_units, "n": n, "iterations": iterations,
        "step_final": float(res.step),
        "train_loss_initial": float(res.history[0]), "train_loss_final": float(res.history[-1]),
        "train_error": error(train, train.data),
        "held_out_loss_final": float(population.objective(res.particles)),
        "held_out_error": error(population, held_out), "held_out_samples": held_out.n,
    }
    summary["train_ratio"] = summary["train_loss_final"] / summary["train_loss_initial"]
    return summary, res, ts, train


def plot(res, ts, train, out: pathlib.Path, stem: str):
    from measureflow.plotting.figures import history_axis, new_figure, save_figure

    fig, (ax, ax2) = new_figure(10, 4.6, ncols=2)
    g = np.linspace(-3, 3, 301)
    G = np.stack(np.meshgrid(g, g, indexing="xy"), axis=-1).reshape(-1, 2)
    f_student = np.asarray(train.predict(res.particles, G)).reshape(len(g), len(g))
    # the label function, not f* itself: a ReLU teacher vanishes on whole regions (labelled +1)
    labels = np.where(np.asarray(ts.target(G)) >= 0, 1.0, -1.0).reshape(len(g), len(g))
    X, y = np.asarray(train.data.X), np.asarray(train.data.y)
    ax.scatter(X[:, 0], X[:, 1], c=np.where(y > 0, "tab:red", "tab:blue"), s=3, alpha=0.35, lw=0)
    ax.contour(g, g, labels, levels=[0], colors="k", linewidths=2.5)
    ax.contour(g, g, f_student, levels=[0], colors="tab:orange", linewidths=1.2, linestyles="--")
    ax.plot([], [], "k-", lw=2.5, label="teacher decision boundary")
    ax.plot([], [], "--", color="tab:orange", label="student boundary f_μ = 0")
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
    ax.set_aspect("equal")
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("logistic loss, labels sign(f*), ReLU student")
    history_axis(ax2, res.history_iterations, res.history, "training logistic loss")
    return save_figure(fig, out, stem)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--m", type=int, default=50)
    parser.add_argument("--teacher-units", type=int, default=3)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("examples/out"))
    args = parser.parse_args()
    summary, res, ts, train = run(args.seed, args.m, args.teacher_units, args.n, args.iterations)
    stem = f"relu_logistic_seed{args.seed}"
    paths = plot(res, ts, train, args.out, stem)
    report(summary, args.out, stem, paths)


if __name__ == "__main__":
    main()
