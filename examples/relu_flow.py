"""Example: the continuous-time gradient flow of a ReLU student, and gradient descent as its
explicit Euler scheme.

A teacher with m0 ReLU units on Gaussian inputs in R^d (no bias), a training set of n
samples, the square loss, and a student of m units from the admissible init. The
Wasserstein gradient flow dθ_i/dt = −∇_θF'(μ_t)(θ_i) is integrated by ``mf.flow``
(diffrax, Tsit5, error-controlled steps) to time t1; gradient descent with steps η, η/2,
η/4 run to the same time t1 = iterations · η approaches it at first order: the distance
between the GD particles and the flow's halves with η (error ratios ≈ 2).

The figure shows F(μ_t) along the flow and the GD histories (iteration k at time kη); the
summary adds the population excess loss at t1 (exact, arc-cosine kernel).

    python examples/relu_flow.py --out examples/out
    python examples/relu_flow.py --tiny          # seconds: m = 4, n = 100, t1 = 1
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

import measureflow as mf
from _report import report


def run(seed: int = 0, m: int = 20, d: int = 3, teacher_units: int = 3, n: int = 500, t1: float = 20.0,
        step: float = 0.2, saves: int = 50, rtol: float = 1e-8, atol: float = 1e-10):
    """(summary, flow result, GD results by step) for one seed."""
    feature = mf.features.ReLU(d)
    teacher = mf.data.TeacherStudent(d, teacher_units, seed=seed)
    problem = mf.Problem(feature, "square", data=teacher.training_set(n, seed=seed))
    population = mf.Problem(feature, "square", data=teacher)
    mu0 = mf.init.admissible(feature, m, key=seed)
    saveat = np.concatenate([[0.0], np.geomspace(t1 * 1e-3, t1, saves - 1)])
    fl = mf.flow(problem, mu0, t1, saveat=saveat, rtol=rtol, atol=atol)
    gds, errors = {}, []
    for eta in (step, step / 2, step / 4):
        iterations = round(t1 / eta)
        gds[eta] = mf.solve(problem, mu0, "gd", step=eta, iterations=iterations, snapshots=0,
                            history_every=max(1, iterations // 200))
        errors.append(float(np.max(np.abs(np.asarray(gds[eta].particles.positions) - fl.particles.positions))))
    summary = {
        "seed": seed, "m": m, "d": d, "teacher_units": teacher_units, "t1": t1, "rtol": rtol, "atol": atol,
        "flow_status": fl.status, "flow_accepted_steps": int(fl.accepted), "flow_rejected_steps": int(fl.rejected),
        "F_initial": float(fl.history[0]), "F_flow_t1": float(fl.history[-1]),
        "population_excess_flow_t1": float(population.objective(fl.particles)),
    }
    for eta, err in zip(gds, errors):
        summary[f"F_gd_step{eta:g}"] = float(gds[eta].history[-1])
        summary[f"gd_flow_distance_step{eta:g}"] = err
    summary["error_ratio_1"] = errors[0] / errors[1]
    summary["error_ratio_2"] = errors[1] / errors[2]
    return summary, fl, gds


def plot(fl, gds, out: pathlib.Path, stem: str, title: str):
    from measureflow.plotting.figures import new_figure, save_figure

    fig, ax = new_figure(5.5, 4.2)
    ax.loglog(fl.times[1:], fl.history[1:], "k-", lw=2, label="flow (diffrax)")
    for eta, res in gds.items():
        t = np.asarray(res.history_iterations) * eta
        ax.loglog(t[1:], np.asarray(res.history)[1:], "--", label=f"GD, η = {eta:g}")
    ax.set_xlabel("time t (GD: iteration · η)")
    ax.set_ylabel("F(μ_t) (training loss)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, out, stem)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--m", type=int, default=20)
    parser.add_argument("--t1", type=float, default=20.0)
    parser.add_argument("--n", type=int, default=500, help="training samples")
    parser.add_argument("--step", type=float, default=0.2, help="the largest GD step η (then η/2, η/4)")
    parser.add_argument("--tiny", action="store_true", help="a run of seconds (m = 4, n = 100, t1 = 1)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("examples/out"))
    args = parser.parse_args()
    m, n, t1, saves = (4, 100, 1.0, 10) if args.tiny else (args.m, args.n, args.t1, 50)
    summary, fl, gds = run(args.seed, m, n=n, t1=t1, step=args.step if not args.tiny else 0.1, saves=saves)
    stem = f"relu_flow_seed{args.seed}" + ("_tiny" if args.tiny else "")
    paths = plot(fl, gds, args.out, stem, f"ReLU, flow and GD, m = {m}")
    report(summary, args.out, stem, paths)


if __name__ == "__main__":
    main()
