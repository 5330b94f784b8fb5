"""1. One GD step of a two-layer ReLU network against the machine's matmul peak.

Step: ``mf.solve(method="gd")`` on a ReLU network without bias, θ = (w, a) ∈ R^{d+1},
n samples, m units. The time of one step is the difference between runs of 1 + K and 1
iterations (both record F only at the start and the end), so it is the compiled loop's
per-step cost with nothing else.

FLOPs of one step, counted from the operations the step needs (each multiply-add = 2):
    Z = W Xᵀ                 2mnd
    R = relu(Z)              mn
    f = (w∘a)ᵀ R             2mn
    ∂F/∂a ∝ R g              2mn          (g_j = s_j ℓ'(f_j, y_j), O(n))
    D = a_i g_j 1[Z_ij > 0]  2mn
    ∂F/∂W ∝ D X              2mnd
    total                    4mnd + 7mn   (the O(md + n) rest is left out)
XLA's own cost analysis of the step is printed beside it as a cross-check.
Peak: the best time of a jnp matmul of two N×N matrices (same dtype, same process,
same threads), interleaved with the step timings.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import measureflow as mf
from _harness import Row, best_times, fmt_time, ready


def flops(m: int, n: int, d: int) -> int:
    return 4 * m * n * d + 7 * m * n


def _xla_flops(problem, particles) -> float | None:
    def step(P):
        return problem.value_and_velocity(mf.Particles.unchecked(P, particles.weights))

    try:
        ca = jax.jit(step).lower(particles.positions).compile().cost_analysis()
        ca = ca[0] if isinstance(ca, (list, tuple)) else ca
        return float(ca["flops"])
    except Exception:  # noqa: BLE001 — cost analysis is best effort across jax versions
        return None


def measure(dtype: str, *, n: int = 4096, d: int = 100, m: int = 1024, N: int = 1536, reps: int = 5,
            K: int = 3) -> list[Row]:
    data = mf.data.TeacherStudent(d, 10, seed=0).training_set(n)
    feat = mf.features.ReLU(d)
    problem = mf.Problem(feat, "square", None, data)
    mu0 = mf.init.admissible(feat, m, key=0)

    def solve(T):
        return lambda: mf.solve(problem, mu0, "gd", step=0.01, iterations=T, history_every=T, snapshots=0,
                                dtype=dtype)

    A = jnp.asarray(np.random.default_rng(0).standard_normal((N, N)), dtype)
    mm = jax.jit(lambda a: a @ a)
    fns = {"peak": lambda: ready(mm(A)), "one": solve(1), "many": solve(1 + K)}
    for f in fns.values():
        f()  # compile
    t = best_times(fns, reps=reps)
    step = max(t["many"] - t["one"], 1e-12) / K
    peak = 2 * N**3 / t["peak"]
    achieved = flops(m, n, d) / step
    cast = jax.tree_util.tree_map(lambda a: a.astype(dtype) if hasattr(a, "dtype") else a, problem)
    xla = _xla_flops(cast, mu0.astype(dtype))
    note = (f"step {fmt_time(step)} = {achieved / 1e9:.1f} GFLOP/s ({flops(m, n, d) / 1e9:.3f} GFLOP counted"
            + (f", XLA counts {xla / 1e9:.3f}" if xla else "") + f"); peak {N}³ matmul {peak / 1e9:.1f} GFLOP/s")
    ratio = achieved / peak
    return [Row("1 network step", f"n={n} d={d} m={m} {dtype}: GFLOP/s / matmul peak", ratio, f"{ratio:.2f}",
                "≥ 0.70", ratio >= 0.7, note)]


def run(quick: bool) -> list[Row]:
    rows = []
    for dtype in ("float32", "float64"):
        rows += measure(dtype, reps=5 if quick else 10, K=3 if quick else 8)
    return rows
