"""Example: mean-field Langevin dynamics against gradient descent on a ReLU teacher–student problem.

A ReLU teacher with m0 = 2 units on Gaussian inputs in R^d (no bias), a training set of n
samples, the square loss and weight decay V = λ|θ|² (Langevin needs a confining V: without
it the Gibbs law exp(−F'/τ) of a 2-homogeneous unit is not normalizable). From the same
admissible start, four runs of T steps:

- ``gd``: gradient descent (the curvature-based default step, halved when F rises);
- ``langevin``: constant temperature τ0 (θ ← θ − η∇F' + √(2ητ0) ξ, the base rule's default
  step, never halved), which ends at the entropic minimizer's F, above GD's;
- ``log`` and ``geometric``: annealed, τ_t = τ0 / log(e + t) and τ0 · rate^t.

For each Langevin run the summary gives F, the final temperature τ_T, the entropy Ĥ of the
final particles (Kozachenko–Leonenko, ``mf.diagnostics.entropic_objective``), the
entropic objective F − τ_T Ĥ, the excess F − F_GD and the entropic bias bound

    B(τ) = pτ/2 + (τ/2) log det(βC/τ)          (β: top eigenvalue of the mean-field Hessian
                                                 at the end of GD; C: the final particles'
                                                 covariance; p: the dimension of a unit)

that F(μ_τ) − F(μ_GD) ≤ B(τ) for the entropic minimizer μ_τ (see tests/test_langevin.py
for its derivation), together with the equipartition estimate pτ/2 of the excess near a
non-degenerate minimum. The figure shows F along the four runs.

    python examples/langevin.py --out examples/out
    python examples/langevin.py --tiny       # about a minute on 2 busy cores: m = 40, T = 600
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

import measureflow as mf
from _report import report


def entropic_bias_bound(tau: float, positions, beta: float) -> float:
    """B(τ) = pτ/2 + (τ/2) log det(βC/τ), C the covariance of ``positions`` (m, p)."""
    P = np.asarray(positions)
    return P.shape[1] * tau / 2 + tau / 2 * np.linalg.slogdet(beta * np.cov(P.T) / tau)[1]


def run(seed: int = 0, m: int = 200, d: int = 2, n: int = 200, T: int = 6000, tau0: float = 2e-3,
        lam: float = 1e-3, rate: float = 0.999):
    feature = mf.features.ReLU(d)
    data = mf.data.TeacherStudent(d, 2, seed=seed).training_set(n, seed=seed)
    problem = mf.Problem(feature, "square", mf.L2(lam), data)
    mu0 = mf.init.admissible(feature, m, key=seed)
    gd = mf.solve(problem, mu0, "gd", iterations=T, snapshots=0)
    beta = float(mf.diagnostics.hessian_spectrum(problem, gd.particles, k=1).highest[0])
    summary = {"seed": seed, "m": m, "d": d, "n": n, "iterations": T, "lam": lam, "tau0": tau0,
               "gd_F": gd.objective, "gd_step": float(gd.step), "hessian_top": beta}
    histories = {"gd": (gd.history_iterations, gd.history)}
    schedules = {"langevin": None, "log": mf.methods.log_schedule, "geometric": mf.methods.geometric_schedule(rate)}
    for name, schedule in schedules.items():
        rule = mf.methods.Langevin(tau0, schedule=schedule)
        res = mf.solve(problem, mu0, rule, iterations=T, key=seed + 1, snapshots=0)
        ent = mf.diagnostics.entropic_objective(problem, res)
        p = res.particles.positions.shape[1]
        summary.update({
            f"{name}_F": ent.objective, f"{name}_tau_final": ent.temperature, f"{name}_entropy": ent.entropy,
            f"{name}_entropic_objective": ent.value, f"{name}_excess_over_gd": ent.objective - gd.objective,
            f"{name}_bias_bound": entropic_bias_bound(ent.temperature, res.particles.positions, beta),
            f"{name}_equipartition": p * ent.temperature / 2})
        histories[name] = (res.history_iterations, res.history)
    return summary, histories


def plot(histories, out: pathlib.Path, stem: str, title: str):
    from measureflow.plotting.figures import new_figure, save_figure

    fig, ax = new_figure(5.5, 4.0)
    for name, (it, F) in histories.items():
        ax.plot(np.maximum(it, 1), F, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("F(μ)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, out, stem)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--m", type=int, default=200)
    parser.add_argument("--iterations", type=int, default=6000)
    parser.add_argument("--tau0", type=float, default=2e-3)
    parser.add_argument("--tiny", action="store_true", help="a small run (m = 40, 600 steps)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("examples/out"))
    args = parser.parse_args()
    m, T = (40, 600) if args.tiny else (args.m, args.iterations)
    args.out.mkdir(parents=True, exist_ok=True)
    summary, histories = run(args.seed, m=m, T=T, tau0=args.tau0)
    stem = f"langevin_seed{args.seed}" + ("_tiny" if args.tiny else "")
    paths = plot(histories, args.out, stem, f"ReLU teacher m0 = 2, student m = {m}: GD and Langevin")
    report(summary, args.out, stem, paths)


if __name__ == "__main__":
    main()
