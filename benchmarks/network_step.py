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
XLA's own cost analysis of the step (unblocked, so that the count is not per block) is
printed beside it as a cross-check.

Peak: the best rate of jnp matmuls (same dtype, same process, same threads), interleaved
with the step timings: two N×N matrices, the step's own product (m×d)(d×n) in one call,
and the same split in the blocks of samples the step uses (``problem.block_size``). The
largest of the three is the peak: under load from other processes, multithreaded large
products lose more than small ones, and the peak must not be underestimated.

A second pair of rows repeats the whole measurement in a child process pinned to one core
(``--one-core``): step and peak both on one thread. On a 2-vCPU machine the two-thread
ratio swings with whatever else holds the second vCPU; the one-core ratio much less.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

if __name__ == "__main__" and "--one-core" in sys.argv:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # before XLA starts its thread pool

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import measureflow as mf  # noqa: E402
from measureflow import problem as problem_module  # noqa: E402
from _harness import Row, best_times, fmt_time, ready  # noqa: E402


def flops(m: int, n: int, d: int) -> int:
    return 4 * m * n * d + 7 * m * n


def _xla_flops(problem, particles) -> float | None:
    def step(P):
        return problem.value_and_velocity(mf.Particles.unchecked(P, particles.weights))

    saved = problem_module.BLOCK_ENTRIES
    problem_module.BLOCK_ENTRIES = 1 << 62  # one block: XLA counts a loop body once
    try:
        ca = jax.jit(step).lower(particles.positions).compile().cost_analysis()
        ca = ca[0] if isinstance(ca, (list, tuple)) else ca
        return float(ca["flops"])
    except Exception:  # noqa: BLE001 — cost analysis is best effort across jax versions
        return None
    finally:
        problem_module.BLOCK_ENTRIES = saved


def measure(dtype: str, *, n: int = 4096, d: int = 100, m: int = 1024, N: int = 1536, reps: int = 5,
            K: int = 3) -> list[Row]:
    data = mf.data.TeacherStudent(d, 10, seed=0).training_set(n)
    feat = mf.features.ReLU(d)
    problem = mf.Problem(feat, "square", None, data)
    mu0 = mf.init.admissible(feat, m, key=0)

    def solve(T):
        return lambda: mf.solve(problem, mu0, "gd", step=0.01, iterations=T, history_every=T, snapshots=0,
                                dtype=dtype)

    rng = np.random.default_rng(0)
    A = jnp.asarray(rng.standard_normal((N, N)), dtype)
    W = jnp.asarray(rng.standard_normal((m, d)), dtype)
    XT = jnp.asarray(rng.standard_normal((d, n)), dtype)
    B = problem_module.block_size(m, n) or n
    XTb = jnp.asarray(rng.standard_normal((n // B, d, B)), dtype)
    mm = jax.jit(lambda a, b: a @ b)
    blocked = jax.jit(lambda W, Xb: jax.lax.map(lambda x: W @ x, Xb))
    fns = {"square": lambda: ready(mm(A, A)), "shaped": lambda: ready(mm(W, XT)),
           "blocked": lambda: ready(blocked(W, XTb)), "one": solve(1), "many": solve(1 + K)}
    for f in fns.values():
        f()  # compile
    t = best_times(fns, reps=reps)
    step = max(t["many"] - t["one"], 1e-12) / K
    rates = {"square": 2 * N**3 / t["square"], "shaped": 2 * m * n * d / t["shaped"],
             "blocked": 2 * m * n * d / t["blocked"]}
    peak = max(rates.values())
    achieved = flops(m, n, d) / step
    cast = jax.tree_util.tree_map(lambda a: a.astype(dtype) if hasattr(a, "dtype") else a, problem)
    xla = _xla_flops(cast, mu0.astype(dtype))
    note = (f"step {fmt_time(step)} = {achieved / 1e9:.1f} GFLOP/s ({flops(m, n, d) / 1e9:.3f} GFLOP counted"
            + (f", XLA counts {xla / 1e9:.3f}" if xla else "") + f"); matmul GFLOP/s: {N}³ "
            f"{rates['square'] / 1e9:.1f}, ({m}×{d})({d}×{n}) {rates['shaped'] / 1e9:.1f}, in blocks of {B} "
            f"{rates['blocked'] / 1e9:.1f}")
    ratio = achieved / peak
    return [Row("1 network step", f"n={n} d={d} m={m} {dtype}: GFLOP/s / matmul peak", ratio, f"{ratio:.2f}",
                "≥ 0.70", ratio >= 0.7, note)]


def _sizes(quick: bool) -> dict:
    return dict(reps=5 if quick else 10, K=8 if quick else 16, N=1024 if quick else 1536)


def _one_core(quick: bool) -> list[Row]:
    """The same measurement in a child process pinned to one core: the ratio without the
    second thread, whose share of a small VM's time varies the most under load."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, os.path.join(here, "network_step.py"), "--one-core"]
                         + (["--quick"] if quick else []), env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"one-core child failed:\n{out.stderr[-2000:]}")
    rows = [Row(**r) for r in json.loads(out.stdout.strip().splitlines()[-1])]
    for r in rows:
        r.item = r.item.replace(": GFLOP/s", ", 1 core: GFLOP/s")
    return rows


def run(quick: bool) -> list[Row]:
    rows = []
    for dtype in ("float32", "float64"):
        rows += measure(dtype, **_sizes(quick))
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        rows += _one_core(quick)
    return rows


if __name__ == "__main__" and "--one-core" in sys.argv:
    print(json.dumps([dataclasses.asdict(r) for dtype in ("float32", "float64")
                      for r in measure(dtype, **_sizes("--quick" in sys.argv))]))
