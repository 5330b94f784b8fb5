"""5. Memory: peak RSS of runs with m = 10⁵ particles, each in a fresh subprocess.

Cases (``python benchmarks/memory.py CASE M`` runs one and prints JSON):

- ``deconv``:  the standard 1-D BLASSO of deconvolution.py (grid n = 42), m particles, 20 fb
  steps, no snapshots;
- ``network``: a ReLU network with bias, d = 10, m units, 20 SGD steps on fresh
  teacher–student minibatches of 256 samples, F evaluated on a 10⁴-sample held-out draw.

Reported: the growth of the peak RSS (``resource.getrusage``) over the RSS after building
the problem and particles, the compiled program's temporary buffers (XLA's
``memory_analysis`` of the whole compiled run), and both against the sizes of the arrays
in question: m × n (feature matrix of all samples), m × m, m × n × d (per-sample
gradients). No m × m or m × n × d array may appear: the temporaries must stay below
m × n for the largest sample set the run touches.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import jax

import measureflow as mf
from _harness import Row, fmt_bytes

SGD_BATCH, EVAL, D, ITS = 256, 10_000, 10, 20


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def child(case: str, m: int) -> dict:
    if case == "exact":
        data = mf.data.TeacherStudent(D, 5, seed=0)
        problem = mf.Problem(mf.features.ReLU(D), "square", None, data)
        mu0 = mf.init.admissible(problem.feature, m, key=0)
    elif case == "deconv":
        from deconvolution import standard_problem

        problem = standard_problem()
        mu0 = mf.init.admissible(problem.feature, m, key=0)
        kw = dict(method="fb", step=1e-3, batch_size=None)
        # the naive ψ(x_j − t_i) = Σ_k cos(2πk(x_j − t_i)) would hold m × n × (f_c + 1) terms
        n, d = problem.data.X.shape[0], problem.feature.kernel.cutoff + 1
    if case == "network":
        data = mf.data.TeacherStudent(D, 5, bias=True, eval_size=EVAL, seed=0)
        problem = mf.Problem(mf.features.ReLU(D, bias=True), "square", None, data)
        mu0 = mf.init.admissible(problem.feature, m, key=0)
        kw = dict(method="sgd", step=0.1, batch_size=SGD_BATCH)
        n, d = EVAL, D
    jax.block_until_ready(mu0.positions)
    base = _rss_bytes()
    if case == "exact":  # compile only: the exact risk is Θ(m²) work (10¹⁰ kernel entries)
        fn = jax.jit(lambda P: problem.objective(mf.Particles.unchecked(P, mu0.weights)))
        ma = fn.lower(mu0.positions).compile().memory_analysis()
        return {"case": case, "m": m, "n": m, "d": D, "base": base, "peak": _peak_bytes(),
                "temp": int(ma.temp_size_in_bytes), "finite": True}
    from measureflow.solvers.driver import _run_jit, prepare

    prep = prepare(problem, mu0, kw["method"], kw["step"], ITS, batch_size=kw["batch_size"], history_every=ITS,
                   snapshots=0)
    compiled = _run_jit.lower(prep.problem, prep.state, prep.recorder, prep.controls(prep.end), prep.config).compile()
    ma = compiled.memory_analysis()
    temp = int(getattr(ma, "temp_size_in_bytes", -1)) if ma is not None else -1
    res = mf.solve(problem, mu0, kw["method"], step=kw["step"], iterations=ITS, batch_size=kw["batch_size"],
                   history_every=ITS, snapshots=0)
    ok = bool(jax.numpy.isfinite(res.history[-1]))
    return {"case": case, "m": m, "n": n, "d": d, "base": base, "peak": _peak_bytes(), "temp": temp,
            "finite": ok}


def _spawn(case: str, m: int) -> dict:
    env = dict(os.environ)
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, os.path.join(here, "memory.py"), case, str(m)], env=env,
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"memory child {case} m={m} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool) -> list[Row]:
    rows = []
    m, m_small = 100_000, 1_000
    for case in ("deconv", "network"):
        r, r0 = _spawn(case, m), _spawn(case, m_small)
        # growth over the RSS after setup, less the same run's growth at m = 1000
        # (compiler and runtime memory that does not scale with m)
        growth = (r["peak"] - r["base"]) - (r0["peak"] - r0["base"])
        n, d = r["n"], r["d"]
        mn, mm, mnd = 8 * m * n, 8 * m * m, 8 * m * n * d
        ok = max(growth, r["temp"]) < min(mnd, mm) and r["finite"]
        if case == "deconv":
            what = "standard 1-D BLASSO, 20 fb steps"
            sizes = (f"m×n={fmt_bytes(mn)} (n={n}), m×n×(f_c+1)={fmt_bytes(mnd)} (naive kernel sum), "
                     f"m×m={fmt_bytes(mm)}")
        else:
            what = f"ReLU+bias d={D}, 20 SGD steps of {SGD_BATCH} fresh samples, F on {EVAL} held-out"
            sizes = (f"m×batch={fmt_bytes(8 * m * SGD_BATCH)}, m×n_eval={fmt_bytes(mn)}, "
                     f"m×n_eval×d={fmt_bytes(mnd)}, m×m={fmt_bytes(mm)}")
        rows.append(Row("5 memory", f"{case}, m=1e5: XLA temporaries of the run", r["temp"], fmt_bytes(r["temp"]),
                        "< m×m, m×n×d", ok,
                        f"{what}; peak RSS {fmt_bytes(r['peak'])}, {fmt_bytes(r['peak'] - r['base'])} over setup "
                        f"(m=1e3: {fmt_bytes(r0['peak'])}, {fmt_bytes(r0['peak'] - r0['base'])}; difference "
                        f"{fmt_bytes(growth)}: compilation dominates); {sizes}"))
    r = _spawn("exact", m)
    mm = 8 * m * m
    rows.append(Row("5 memory", "exact population risk, m=1e5: XLA temporaries", r["temp"], fmt_bytes(r["temp"]),
                    "≪ m×m", r["temp"] < mm / 100,
                    f"ReLU d={D} Gaussian teacher, closed-form F (compiled, not run: 10¹⁰ kernel entries); "
                    f"m×m={fmt_bytes(mm)}"))
    return rows


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], int(sys.argv[2]))))
