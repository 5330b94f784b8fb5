"""Mutation testing of measureflow's numerical core with cosmic-ray (``make mutate``).

cosmic-ray runs one test command per mutant (a fresh ``pytest`` process: JAX is never
forked after initialization). Each module is mutated in its own copy of the tree (src/,
tests/, examples/, pyproject.toml) under ``--work``, against the fast tests that cover it
(MODULES below), so modules run in parallel (``--jobs``) without touching the checkout.

    python mutation/run.py                      # every module, 2 parallel workers
    python mutation/run.py losses certificates  # some modules (names as in MODULES)
    python mutation/run.py --sample 0 losses    # every mutant, not a sample of 60
    python mutation/run.py --jobs 1 --report-only

Size: after the operator filter (EXCLUDE) the core has 2045 mutants (losses 28,
regularizers 67, kernels 169, certificates 285, population 192, problem 204, methods 238,
solvers 671, store 191). Each costs one pytest process (JAX import, compilations, the
covering tests up to the first failure), so all of them take many hours on 2 cores; by
default a fixed random sample of 60 per module runs (540 mutants), which estimates each
module's score within about ±6 points (one standard error at a score of 80%).

Writes ``mutation/reports/<module>.txt`` (cr-report: every mutant and its outcome, the
survivors with their diff) and ``mutation/reports/summary.md`` (killed / survived /
timeout per module and the score killed / (killed + survived)). Reading it: a survivor is
a change to the code that no covering test notices — either a missing check (write the
test) or an equivalent mutant (same behaviour; note why in mutation/equivalent.md).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
REPORTS = ROOT / "mutation" / "reports"

#: module name -> (source file(s) under src/measureflow, fast tests that cover it)
MODULES = {
    "losses": (["losses.py"], ["tests/test_core_gradients.py",
                               "tests/test_solvers.py::test_default_step_is_stable_and_close_to_the_limit",
                               "tests/test_deconvolution.py::test_curvature_bound_term_by_term_and_tight_where_the_residual_vanishes"]),
    "regularizers": (["regularizers.py"], ["tests/test_core_gradients.py",
                                           "tests/test_solvers.py::test_fb_reaches_lasso_minimum"]),
    "kernels": (["kernels.py"], ["tests/test_deconvolution.py"]),
    "certificates": (["certificates.py"], ["tests/test_certificates.py"]),
    "population": (["population.py"], ["tests/test_networks.py"]),
    "problem": (["problem.py"], ["tests/test_core_gradients.py", "tests/test_solvers.py"]),
    "methods": (["methods"], ["tests/test_methods.py", "tests/test_langevin.py", "tests/test_solvers.py"]),
    "solvers": (["solvers"], ["tests/test_solvers.py", "tests/test_solver_layer.py", "tests/test_deconvolution.py"]),
    "store": (["store.py"], ["tests/test_store.py", "tests/test_compatibility.py"]),
}

#: mutation operators kept: for arithmetic the natural swaps (+ ↔ −, × ↔ ÷, ** → ×), for
#: comparisons the boundary and negated forms (< → ≤, < → ≥, == → !=, is → is not, ...), a
#: deleted unary minus or not; plus every number (±1), boolean, and/or, break/continue,
#: exception and zero-iteration mutant. Excluded: the other operator swaps (on floats
#: bitwise ops, shifts, // and % only raise TypeError, and a second or third replacement
#: of the same operator rarely finds what the first did not, at one pytest process each)
#: and RemoveDecorator (dropping @jax.jit changes no number).
ALLOWED = ("Add_Sub|Sub_Add|Mul_Div|Div_Mul|Pow_Mul|FloorDiv_Div|Mod_FloorDiv|Eq_NotEq|NotEq_Eq|Lt_LtE|LtE_Lt|"
           "Gt_GtE|GtE_Gt|Lt_GtE|LtE_Gt|Gt_LtE|GtE_Lt|Is_IsNot|IsNot_Is|In_NotIn|NotIn_In|Delete_USub|Delete_Not")
EXCLUDE = [rf"core/Replace(Binary|Comparison|Unary)Operator_(?!({ALLOWED})$)", r"core/RemoveDecorator"]

CONFIG = """[cosmic-ray]
module-path = {paths}
timeout = {timeout}
excluded-modules = []
test-command = "{python} -m pytest -x -q -p no:cacheprovider -p no:randomly --timeout {test_timeout} {tests}"

[cosmic-ray.distributor]
name = "local"

[cosmic-ray.filters.operators-filter]
exclude-operators = {exclude}
"""


def _copy_tree(dest: pathlib.Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "*.egg-info")
    for name in ("src", "tests", "examples"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")


def _bin(name: str) -> str:
    return str(pathlib.Path(sys.executable).with_name(name))


def _run(cmd, cwd, env, log):
    log.write(f"$ {' '.join(map(str, cmd))}\n")
    log.flush()
    return subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False).returncode


def run_module(name: str, work: pathlib.Path, timeout_factor: float, sample: int | None) -> dict:
    sources, tests = MODULES[name]
    tree = work / name
    _copy_tree(tree)
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), JAX_PLATFORMS="cpu")
    paths = [f"src/measureflow/{s}" for s in sources]
    log = open(work / f"{name}.log", "w")
    # baseline time of the test command, unmutated: sets the per-mutant timeout
    t0 = time.perf_counter()
    base = _run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests], tree, env, log)
    baseline = time.perf_counter() - t0
    if base != 0:
        return {"module": name, "error": f"the covering tests fail unmutated (see {work / name}.log)"}
    cfg = tree / "cosmic-ray.toml"
    cfg.write_text(CONFIG.format(paths=json.dumps(paths), timeout=round(timeout_factor * baseline + 30),
                                 test_timeout=round(timeout_factor * baseline + 30), python=sys.executable,
                                 tests=" ".join(tests), exclude=json.dumps(EXCLUDE)))
    db = tree / "session.sqlite"
    for cmd in ([_bin("cosmic-ray"), "init", cfg, db], [_bin("cr-filter-operators"), db, cfg],
                [_bin("cr-filter-pragma"), db]):
        if _run(cmd, tree, env, log) != 0:
            return {"module": name, "error": f"{cmd[0]} failed (see {work / name}.log)"}
    _sample(db, sample, seed=0)
    if _run([_bin("cosmic-ray"), "exec", cfg, db], tree, env, log) != 0:
        return {"module": name, "error": f"cosmic-ray exec failed (see {work / name}.log)"}
    return summarize(name, db, baseline)


def _sample(db: pathlib.Path, size: int | None, seed: int) -> None:
    """Keep a random sample of ``size`` pending mutants (fixed seed: the same sample every
    run of the same code), marking the others skipped: the score is then an estimate with
    standard error ≈ √(s(1 − s)/size)."""
    if not size:
        return
    import random

    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(db), WorkDB.Mode.open) as work_db:
        pending = sorted(item.job_id for item in work_db.pending_work_items)
        if len(pending) <= size:
            return
        keep = set(random.Random(seed).sample(pending, size))
        for job_id in pending:
            if job_id not in keep:
                work_db.set_result(job_id, WorkResult(output="not in the sample", worker_outcome=WorkerOutcome.SKIPPED))


def summarize(name: str, db: pathlib.Path, baseline: float) -> dict:
    REPORTS.mkdir(parents=True, exist_ok=True)
    report = subprocess.run([_bin("cr-report"), "--show-diff", "--surviving-only", str(db)],
                            capture_output=True, text=True, check=False).stdout
    (REPORTS / f"{name}.txt").write_text(report)
    dump = subprocess.run([_bin("cosmic-ray"), "dump", str(db)], capture_output=True, text=True, check=True).stdout
    counts = {"killed": 0, "survived": 0, "timeout": 0, "incompetent": 0, "skipped": 0, "pending": 0}
    survivors = []
    for line in dump.splitlines():
        item, result = json.loads(line)
        if result is None:
            counts["pending"] += 1
            continue
        outcome = result.get("worker_outcome")
        if outcome == "skipped":
            counts["skipped"] += 1
        elif outcome == "timeout":
            counts["timeout"] += 1
        elif outcome != "normal":
            counts["incompetent"] += 1  # the mutant could not be run (abnormal worker exit)
        elif result.get("test_outcome") == "killed":
            counts["killed"] += 1
        elif result.get("test_outcome") == "survived":
            counts["survived"] += 1
            m = item["mutations"][0]
            survivors.append(f"{m['module_path']}:{m['start_pos'][0]} {m['operator_name']} #{m['occurrence']}")
        else:
            counts["incompetent"] += 1
    return {"module": name, "baseline_s": round(baseline, 1), **counts, "survivors": survivors}


def write_summary(rows: list[dict]) -> None:
    lines = ["# Mutation testing summary (cosmic-ray)", "",
             "| module | killed | survived | timeout | incompetent | skipped | not run | score | baseline s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['module']} | error: {r['error']} ||||||||")
            continue
        denom = r["killed"] + r["survived"]
        score = f"{100 * r['killed'] / denom:.1f}%" if denom else "n/a"
        lines.append(f"| {r['module']} | {r['killed']} | {r['survived']} | {r['timeout']} | {r['incompetent']} | "
                     f"{r['skipped']} | {r['pending']} | {score} | {r['baseline_s']} |")
    lines += ["", "Survivors (file:line operator #occurrence; diffs in reports/<module>.txt):", ""]
    for r in rows:
        lines += [f"- {s}" for s in r.get("survivors", [])]
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modules", nargs="*", help=f"modules to mutate (default: all of {', '.join(MODULES)})")
    ap.add_argument("--jobs", type=int, default=2, help="modules mutated in parallel (one copy of the tree each)")
    ap.add_argument("--work", default=os.environ.get("MUTATION_WORK", "/tmp/measureflow-mutation"),
                    help="where the copies and sessions go")
    ap.add_argument("--timeout-factor", type=float, default=3.0,
                    help="a mutant whose tests run longer than this × the unmutated time (+30 s) is a timeout")
    ap.add_argument("--sample", type=int, default=60,
                    help="mutants per module, a fixed random sample (0: all; 2045 in all, hours on 2 cores)")
    ap.add_argument("--report-only", action="store_true", help="summarize existing sessions under --work")
    args = ap.parse_args(argv)
    names = args.modules or list(MODULES)
    unknown = sorted(set(names) - set(MODULES))
    if unknown:
        ap.error(f"unknown module(s) {unknown}; choose from {', '.join(MODULES)}")
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        rows = [summarize(n, work / n / "session.sqlite", float("nan")) for n in names
                if (work / n / "session.sqlite").exists()]
    else:
        with cf.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            rows = list(pool.map(lambda n: run_module(n, work, args.timeout_factor, args.sample or None), names))
    write_summary(rows)


if __name__ == "__main__":
    main()
