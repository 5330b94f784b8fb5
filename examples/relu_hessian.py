"""Example: minimum or saddle? The Hessian spectrum at the end of a run.

A ReLU teacher with m0 = 2 units on Gaussian inputs in R^d (no bias), the exact population
square loss (arc-cosine kernel). Two end points of the gradient flow (``mf.flow``) are
examined with ``mf.diagnostics.hessian_spectrum`` — the extreme eigenvalues of the
mean-field-scaled Hessian W^{−1/2}∇²F W^{−1/2}, by Lanczos on Hessian-vector products, with
the flat rescaling direction (w, a) → (λw, a/λ) of every unit projected out:

- the student of m units from the admissible init, flowed to t1: it approaches the
  global minimum (F → 0) sublinearly, and on the way the lowest eigenvalue is slightly
  negative and shrinks with F and the velocity (measured for m = 4, d = 2: −1.4e−3 at
  t1 = 50, −8.9e−4 at t1 = 100, −5.6e−4 at t1 = 200): not a critical point yet, so ``saddle()`` there says
  only that a direction of negative curvature is left, not that the run is stuck;
- a constructed saddle: every unit collapsed on one ray, the best single-unit fit (BFGS
  on a one-unit student, a critical point of the m-unit problem by the mean-field
  invariance): F > 0 and a negative eigenvalue shows the direction that splits the units.

The summary gives F, the largest velocity (0 at a critical point), the lowest and highest
eigenvalues, the number of flat directions and the Rayleigh quotients along them. Units
that the flow shrinks towards w = 0 make the spectrum stiff (the population kernel is not
smooth at w = 0: curvatures grow like 1/|w|) and the flow slow to integrate.

    python examples/relu_hessian.py --out examples/out
    python examples/relu_hessian.py --tiny       # seconds: m = 4, d = 2, t1 = 100
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import numpy as np
import scipy.optimize

import measureflow as mf
from _report import report


def velocity_norm(problem, particles) -> float:
    """max_i |∇_θF'(μ)(θ_i)| (= |∇_{θ_i}F| / w_i): 0 at a critical point."""
    g = jax.jit(jax.grad(lambda P: problem.objective(mf.Particles.unchecked(P, particles.weights))))(
        particles.positions)
    return float(np.max(np.abs(np.asarray(g) / np.asarray(particles.weights)[:, None])))


def run(seed: int = 0, m: int = 6, d: int = 3, t1: float = 400.0, k: int = 3):
    feature = mf.features.ReLU(d)
    problem = mf.Problem(feature, "square", data=mf.data.TeacherStudent(d, 2, seed=seed))
    mu0 = mf.init.admissible(feature, m, key=seed)
    end = mf.flow(problem, mu0, t1, rtol=1e-9, atol=1e-12)
    one = lambda th: problem.objective(mf.Particles.unchecked(th[None], np.ones(1)))  # noqa: E731
    value, grad = jax.jit(one), jax.jit(jax.grad(one))
    start = np.mean(np.asarray(problem.data.teacher), axis=0)  # between the teacher's units, same sign of a
    fit = scipy.optimize.minimize(lambda th: float(value(th)), start, jac=lambda th: np.asarray(grad(th)),
                                  method="BFGS", options={"gtol": 1e-12})
    collapsed = mf.Particles(np.repeat(fit.x[None], m, axis=0))
    summary = {"seed": seed, "m": m, "d": d, "t1": t1, "flow_status": end.status}
    spectra = {}
    for name, parts in (("end_of_flow", end.particles), ("collapsed", collapsed)):
        s = mf.diagnostics.hessian_spectrum(problem, parts, k=min(k, m * d))
        spectra[name] = s
        summary.update({
            f"{name}_F": float(problem.objective(parts)), f"{name}_velocity_max": velocity_norm(problem, parts),
            f"{name}_critical": velocity_norm(problem, parts) < 1e-6,
            f"{name}_lowest": ", ".join(f"{v:.3e}" for v in s.lowest),
            f"{name}_highest": float(s.highest[0]), f"{name}_flat_count": s.flat_count,
            f"{name}_flat_rayleigh_max": float(np.max(np.abs(s.flat_rayleigh))), f"{name}_saddle": s.saddle(),
            f"{name}_method": s.method})
    return summary, spectra


def plot(spectra, out: pathlib.Path, stem: str, title: str):
    from measureflow.plotting.figures import new_figure, save_figure

    fig, ax = new_figure(5.5, 4.0)
    for j, (name, s) in enumerate(spectra.items()):
        ev = np.concatenate([s.lowest, s.highest])
        ax.plot(np.full(ev.size, j), ev, "o", ms=6, label=f"{name} ({s.flat_count} flat directions removed)")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xticks(range(len(spectra)), list(spectra))
    ax.set_ylabel("extreme eigenvalues of W^{-1/2} ∇²F W^{-1/2}")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return save_figure(fig, out, stem)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--m", type=int, default=6)
    parser.add_argument("--d", type=int, default=3)
    parser.add_argument("--t1", type=float, default=400.0)
    parser.add_argument("--tiny", action="store_true", help="a run of seconds (m = 4, d = 2, t1 = 100)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("examples/out"))
    args = parser.parse_args()
    m, d, t1 = (4, 2, 100.0) if args.tiny else (args.m, args.d, args.t1)
    summary, spectra = run(args.seed, m, d, t1)
    stem = f"relu_hessian_seed{args.seed}" + ("_tiny" if args.tiny else "")
    paths = plot(spectra, args.out, stem, f"ReLU teacher m0 = 2, student m = {m}")
    report(summary, args.out, stem, paths)


if __name__ == "__main__":
    main()
