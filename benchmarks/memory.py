"""5. Memory: peak RSS of runs with m = 10⁵ particles, each in a fresh subprocess.

Cases (``python benchmarks/memory.py CASE M`` runs one and prints JSON):

- ``deconv``:  the standard 1-D BLASSO (grid n = 50) with m particles, 20 forward–backward
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
    if case == "deconv":
        from deconvolution import standard_problem

        problem = standard_problem()
        mu0 = mf.init.admissible(problem.feature, m, key=0)
        kw = dict(method="fb", step=1e-3, batch_size=None)
        n, d = problem.data.X.shape
    else:
        data = mf.data.TeacherStudent(D, 5, bias=True, eval_size=EVAL, seed=0)
        problem = mf.Problem(mf.features.ReLU(D, bias=True), "square", None, data)
        mu0 = mf.init.admissible(problem.feature, m, key=0)
        kw = dict(method="sgd", step=0.1, batch_size=SGD_BATCH)
        n, d = EVAL, D
    jax.block_until_ready(mu0.positions)
    base = _rss_bytes()
    prob, parts, step, key, config = mf.solvers._prepare(problem, mu0, kw["method"], kw["step"], ITS,
                                                         kw["batch_size"], 0, None, ITS, 0, "float64")
    compiled = mf.solvers._run_jit.lower(prob, parts, step, key, config).compile()
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
    m = 100_000
    for case in ("deconv", "network"):
        r = _spawn(case, m)
        growth = r["peak"] - r["base"]
        n, d = r["n"], r["d"]
        mn, mm, mnd = 8 * m * n, 8 * m * m, 8 * m * n * d
        worst = max(growth, r["temp"])
        ok = worst < mn and r["finite"]
        what = ("standard 1-D BLASSO, 20 fb steps" if case == "deconv"
                else f"ReLU d={D}, 20 SGD steps of {SGD_BATCH} samples, F on {EVAL} held-out")
        rows.append(Row("5 memory", f"{case}, m=1e5: peak RSS growth", growth, fmt_bytes(growth),
                        "< m×n array", ok,
                        f"{what}; peak RSS {fmt_bytes(r['peak'])}; XLA temporaries {fmt_bytes(r['temp'])}; "
                        f"m×n={fmt_bytes(mn)} (n={n}), m×n×d={fmt_bytes(mnd)}, m×m={fmt_bytes(mm)}"))
    return rows


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], int(sys.argv[2]))))
