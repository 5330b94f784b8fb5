"""First-call latency: a fresh process runs one 1-D forward–backward solve (the standard
BLASSO problem of section 3, m = 32, default step, 10⁴ iterations) twice; the first call
pays the compilations (default step, loop), the second is the work alone. A third call
with other ``iterations``, ``step``, ``tol`` and key shows what changing run-time values
costs (it must not recompile)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from _harness import Row, fmt_time

_CHILD = r"""
import json, sys, time
sys.path.insert(0, {here!r})
t0 = time.perf_counter()
import measureflow as mf
from deconvolution import standard_problem
from _harness import count_compiles
t_import = time.perf_counter() - t0
problem = standard_problem()
mu0 = mf.init.admissible(problem.feature, 32, key=0)
out = {{"import": t_import}}
for name, kw in [("first", {{}}), ("second", {{}}), ("changed", dict(iterations=7000, tol=1e-9, key=3))]:
    with count_compiles() as log:
        t = time.perf_counter()
        res = mf.solve(problem, mu0, "fb", iterations=kw.pop("iterations", 10_000), snapshots=0, **kw)
        float(res.objective)
        out[name] = time.perf_counter() - t
    out[name + "_compiles"] = log.compiles
print(json.dumps(out))
"""


def run(quick: bool) -> list[Row]:
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([sys.executable, "-c", _CHILD.format(here=here)], capture_output=True, text=True,
                          timeout=600, check=True)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    ratio = r["first"] / r["second"]
    return [
        Row("6 latency", "first 1-D fb solve in a fresh process (compile + run)", r["first"], fmt_time(r["first"]), "",
            None, f"second call {fmt_time(r['second'])} (the work), ratio {ratio:.1f}×; {r['first_compiles']} XLA "
                  f"compilations; import measureflow {fmt_time(r['import'])}"),
        Row("6 latency", "same solve, other iterations / tol / key: compilations", r["changed_compiles"],
            str(r["changed_compiles"]), "0", r["changed_compiles"] == 0, f"{fmt_time(r['changed'])}"),
    ]
