"""Mutation testing of measureflow's numerical core with cosmic-ray (``make mutate``).

cosmic-ray runs one test command per mutant (a fresh ``pytest`` process: JAX is never
forked after initialization): ``select_tests.py``, which runs only the covering tests that
execute the function the mutant changed, found by one coverage run of the covering tests per
module (``mutation-map.json``; JAX's caches cleared before each test so every test that uses a
jitted function is recorded for it). Each module is mutated in its own copy of the tree (src/,
tests/, examples/, pyproject.toml) under ``--work``, against the fast tests that cover it
(MODULES below), so modules run in parallel (``--jobs``) without touching the checkout.

    python mutation/run.py                      # every module, 2 parallel workers
    python mutation/run.py losses certificates  # some modules (names as in MODULES)
    python mutation/run.py --sample 0 losses    # every mutant, not a sample of 40
    python mutation/run.py --rerun-survivors losses  # survivors again, against today's tests
    python mutation/run.py --jobs 1 --report-only

Size (counted 2026-12-02, before square_risk left population): after the operator filter
(EXCLUDE) the core has 2045 mutants (losses 28,
regularizers 67, kernels 169, certificates 285, population 192, problem 204, methods 238,
solvers 671, store 191). Each costs one pytest process (JAX import, compilations, the
covering tests that execute the mutated function, up to the first failure), so all of them
take many hours on 2 cores; by default a fixed random sample of 40 per module runs (360
mutants), which estimates each module's score within about ±6 points (one standard error
at a score of 80%).

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
import sqlite3
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
REPORTS = ROOT / "mutation" / "reports"

#: module name -> (source file(s) under src/measureflow, the fast tests that cover it). Each
#: mutant costs one pytest process over these (up to the first failure; a survivor runs them
#: all), so each list is the module's direct tests without the long runs (seconds each,
#: 15–60 s in all on a quiet 2-core machine), fastest-failing first.
_T = "tests/"
#: the bad-input checks (the table of tests/bad_inputs_table.py on the API, argument errors):
#: every numerical module validates its inputs
_INPUTS = [_T + "test_inputs.py", "--deselect", _T + "test_inputs.py::test_cli_version_and_help",
           _T + "test_robustness.py::test_bad_input_is_refused_clearly", _T + "test_input_messages.py"]
MODULES = {
    "losses": (["losses.py"], [_T + "test_core_gradients.py", _T + "test_properties.py",
                               _T + "test_solvers.py::test_default_step_is_stable_and_close_to_the_limit",
                               _T + "test_deconvolution.py::test_curvature_bound_term_by_term_and_tight_where_the_residual_vanishes"] + _INPUTS),
    "regularizers": (["regularizers.py"], [_T + "test_core_gradients.py", _T + "test_properties.py",
                                           _T + "test_solvers.py::test_fb_reaches_lasso_minimum",
                                           _T + "test_solver_layer.py::test_fb_stationarity_is_the_gradient_mapping_and_vanishes_at_the_lasso_optimum"] + _INPUTS),
    "kernels": (["kernels.py"], [_T + "test_properties.py", _T + "test_deconvolution.py",
                                 "--deselect", _T + "test_deconvolution.py::test_euclidean_flow_stays_available_but_is_stiff",
                                 _T + "test_certificates.py"] + _INPUTS),
    "certificates": (["certificates.py"], [_T + "test_certificates.py", _T + "test_certificate_pieces.py",
                                           _T + "test_deconvolve.py::test_single_spike_has_the_closed_form_solution_and_certificate",
                                           _T + "test_deconvolve.py::test_lambda_above_lambda_max_returns_the_certified_zero_measure",
                                           _T + "test_deconvolve.py::test_certificate_sup_matches_a_dense_scan_and_bounded_maximization"] + _INPUTS),
    "population": (["population.py"], [_T + "test_blocking.py", _T + "test_population_memory.py", _T + "test_networks.py", _T + "test_exact_field.py",
                                       "--deselect", _T + "test_exact_field.py::test_batched_sgd_on_a_sampler_equals_single_runs",
                                       "--deselect", _T + "test_networks.py::test_default_step_control_halves_a_step_that_outgrows_the_curvature"] + _INPUTS),
    "problem": (["problem.py"], [_T + "test_core_gradients.py", _T + "test_blocking.py", _T + "test_solvers.py",
                                 _T + "test_exact_field.py", _T + "test_wfr_step.py", "--deselect",
                                 _T + "test_exact_field.py::test_batched_sgd_on_a_sampler_equals_single_runs",
                                 "--deselect", _T + "test_solvers.py::test_solve_batch_default_steps_equal_solve",
                                 "--deselect", _T + "test_solvers.py::test_solve_batch_equals_one_by_one_with_padding",
                                 "--deselect", _T + "test_solvers.py::test_solve_batch_over_problems_with_sgd"] + _INPUTS),
    "methods": (["methods"], [_T + "test_methods.py", _T + "test_method_shortcuts.py", _T + "test_wfr_step.py", _T + "test_curvature.py", _T + "test_solver_layer.py::test_continuing_a_run_is_bit_identical_to_one_uninterrupted_run",
                              _T + "test_langevin.py::test_linear_feature_stationary_mean_and_covariance",
                              _T + "test_langevin.py::test_quadratic_potential_reaches_the_discretized_gibbs_law",
                              _T + "test_langevin.py::test_schedules", _T + "test_langevin.py::test_entropic_objective_inputs"] + _INPUTS),
    "solvers": (["solvers"], [_T + "test_solver_layer.py", _T + "test_solvers.py", _T + "test_curvature.py",
                              _T + "test_solver_files.py",
                              _T + "test_deconvolution.py::test_conic_metric_scales_the_position_step_by_s_over_r2_plus_eps",
                              _T + "test_deconvolution.py::test_curvature_bound_term_by_term_and_tight_where_the_residual_vanishes",
                              "--deselect", _T + "test_solver_layer.py::test_gd_on_the_exact_population_risk_matches_gd_on_a_large_sample",
                              "--deselect", _T + "test_solvers.py::test_solve_batch_default_steps_equal_solve"] + _INPUTS),
    "store": (["store.py"], [_T + "test_store.py", _T + "test_store_files.py", _T + "test_compatibility.py", _T + "test_sweep_clients.py"]),
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
test-command = "{python} {select} {tree} --timeout {test_timeout}"

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


def _configure(name: str, tree: pathlib.Path, env: dict, log, timeout_factor: float) -> tuple[pathlib.Path, float]:
    """Run the covering tests once, unmutated, under coverage (the map of which tests execute
    which function, ``mutation-map.json``; its time sets the per-mutant timeout), keep the
    pristine sources beside the tree, and write the cosmic-ray config whose test command
    (select_tests.py) runs only the tests that execute the mutated code. Raises RuntimeError
    if the covering tests fail unmutated."""
    sources, tests = MODULES[name]
    roots = [tree / "src" / "measureflow" / s for s in sources]
    files = [p.relative_to(tree) for r in roots for p in (sorted(r.glob("**/*.py")) if r.is_dir() else [r])]
    shutil.rmtree(tree / ".pristine", ignore_errors=True)
    for rel in files:
        (tree / ".pristine" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(tree / rel, tree / ".pristine" / rel)
    order = tree / "order.txt"
    order.unlink(missing_ok=True)
    cov_env = dict(env, PYTHONPATH=f"{env['PYTHONPATH']}{os.pathsep}{ROOT / 'mutation'}",
                   COVERAGE_FILE=str(tree / ".coverage"), MUTATION_ORDER_FILE=str(order))
    t0 = time.perf_counter()
    base = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "_trace_each_test",
                 "--cov=measureflow", "--cov-context=test", "--cov-report=", *tests], tree, cov_env, log)
    baseline = time.perf_counter() - t0
    if base != 0:
        raise RuntimeError(f"the covering tests fail unmutated (see {log.name})")
    (tree / "mutation-map.json").write_text(json.dumps(
        {"covering": tests, "order": order.read_text().split("\n")[:-1],
         "files": {str(rel): {"lines": _lines_to_tests(tree, rel)} for rel in files}}))
    cfg = tree / "cosmic-ray.toml"
    limit = round(timeout_factor * baseline + 30)
    cfg.write_text(CONFIG.format(paths=json.dumps([f"src/measureflow/{s}" for s in sources]), timeout=limit,
                                 test_timeout=limit, python=sys.executable, select=ROOT / "mutation" / "select_tests.py",
                                 tree=tree, exclude=json.dumps(EXCLUDE)))
    return cfg, baseline


def _lines_to_tests(tree: pathlib.Path, rel: pathlib.Path) -> dict[str, list[str]]:
    """Each line inside a function executed by some test -> the tests that executed any line
    of its innermost enclosing function. Lines outside functions, or in functions no test ran
    in-process (e.g. only in a subprocess), are left out: their mutants run every covering test."""
    import ast

    from coverage import CoverageData

    data = CoverageData(basename=str(tree / ".coverage"))
    data.read()
    by_line = data.contexts_by_lineno(str((tree / rel).resolve()))
    funcs = sorted((n.lineno, n.end_lineno) for n in ast.walk(ast.parse((tree / rel).read_text()))
                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    out: dict[str, list[str]] = {}
    for start, end in funcs:  # later (inner) functions overwrite their outer ones' lines
        tests = sorted({c.rsplit("|", 1)[0] for line in range(start, end + 1) for c in by_line.get(line, ()) if c})
        for line in range(start, end + 1):
            if tests:
                out[str(line)] = tests
            else:
                out.pop(str(line), None)
    return out


def _env(tree: pathlib.Path) -> dict:
    return dict(os.environ, PYTHONPATH=str(tree / "src"), JAX_PLATFORMS="cpu")


def _unchanged(name: str, tree: pathlib.Path) -> bool:
    """Whether the module's sources in ``tree`` (pristine copies) equal the checkout's."""
    pristine = tree / ".pristine" / "src" / "measureflow"
    for src in MODULES[name][0]:
        ours, theirs = ROOT / "src" / "measureflow" / src, pristine / src
        files = sorted(p.relative_to(ours) for p in ours.rglob("*.py")) if ours.is_dir() else [pathlib.Path()]
        if not all((theirs / f).exists() and (ours / f).read_bytes() == (theirs / f).read_bytes() for f in files):
            return False
    return True


def run_module(name: str, work: pathlib.Path, timeout_factor: float, sample: int | None) -> dict:
    tree = work / name
    db = tree / "session.sqlite"
    if db.exists() and (tree / "cosmic-ray.toml").exists() and _unchanged(name, tree):
        return _resume(name, tree, db, sample)
    _copy_tree(tree)
    env = _env(tree)
    log = open(work / f"{name}.log", "w")
    try:
        cfg, baseline = _configure(name, tree, env, log, timeout_factor)
    except RuntimeError as e:
        return {"module": name, "error": str(e)}
    for cmd in ([_bin("cosmic-ray"), "init", cfg, db], [_bin("cr-filter-operators"), db, cfg],
                [_bin("cr-filter-pragma"), db]):
        if _run(cmd, tree, env, log) != 0:
            return {"module": name, "error": f"{cmd[0]} failed (see {work / name}.log)"}
    _sample(db, sample, seed=0)
    if _run([_bin("cosmic-ray"), "exec", cfg, db], tree, env, log) != 0:
        return {"module": name, "error": f"cosmic-ray exec failed (see {work / name}.log)"}
    return summarize(name, db, baseline)


def _restore(tree: pathlib.Path) -> None:
    """Put the pristine sources back: an interrupted cosmic-ray leaves its last mutant applied
    (later mutants would then be planted on top of it)."""
    pristine = tree / ".pristine"
    for p in pristine.rglob("*.py"):
        shutil.copy2(p, tree / p.relative_to(pristine))


def _resume(name: str, tree: pathlib.Path, db: pathlib.Path, sample: int | None) -> dict:
    """Go on with an interrupted session of unchanged source: its mutants not yet run, cut
    to ``sample`` in all (the ones already run count)."""
    _restore(tree)
    done = sum(1 for line in _dump(db) if line[1] is not None and line[1].get("worker_outcome") != "skipped")
    _sample(db, None if sample is None else max(sample - done, 0), seed=1)
    with open(tree.parent / f"{name}.log", "a") as log:
        if _run([_bin("cosmic-ray"), "exec", tree / "cosmic-ray.toml", db], tree, _env(tree), log) != 0:
            return {"module": name, "error": f"cosmic-ray exec failed (see {log.name})"}
    return summarize(name, db, None)


def _dump(db: pathlib.Path) -> list:
    out = subprocess.run([_bin("cosmic-ray"), "dump", str(db)], capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def rerun_survivors(name: str, work: pathlib.Path, timeout_factor: float) -> dict:
    """Run a finished session's survivors (and timeouts) again against today's tests: the
    "after" of the score, once tests were written for the survivors. The module's source must
    be unchanged since the session (mutants are positions in it); tests/ and examples/ are
    copied afresh. The session's counts before the rerun are kept in ``before``."""
    tree, db = work / name, work / name / "session.sqlite"
    if not db.exists():
        return {"module": name, "error": f"no session to rerun under {tree} (run the module first)"}
    if not _unchanged(name, tree):
        return {"module": name, "error": f"the sources of {name} changed since the session: run it afresh"}
    _restore(tree)
    before = summarize(name, db, None, write=False)
    for sub in ("tests", "examples"):
        shutil.rmtree(tree / sub)
        shutil.copytree(ROOT / sub, tree / sub, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = _env(tree)
    log = open(work / f"{name}.rerun.log", "w")
    try:
        cfg, baseline = _configure(name, tree, env, log, timeout_factor)
    except RuntimeError as e:
        return {"module": name, "error": str(e)}
    with sqlite3.connect(db) as con:  # a deleted result makes the mutant pending again
        con.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED' OR worker_outcome = 'TIMEOUT' "
                    "OR output = 'timeout'")
    if _run([_bin("cosmic-ray"), "exec", cfg, db], tree, env, log) != 0:
        return {"module": name, "error": f"cosmic-ray exec failed (see {log.name})"}
    return {**summarize(name, db, baseline), "before": before}


def _sample(db: pathlib.Path, size: int | None, seed: int) -> None:
    """Keep a random sample of ``size`` pending mutants (fixed seed: the same sample every
    run of the same code), marking the others skipped: the score is then an estimate with
    standard error ≈ √(s(1 − s)/size)."""
    if size is None:
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


def summarize(name: str, db: pathlib.Path, baseline: float | None, write: bool = True) -> dict:
    """Counts per outcome of a session; a mutant stopped by a time limit (cosmic-ray's, which
    it reports as killed with output "timeout", or pytest-timeout's) counts as a timeout, not
    as killed: on a loaded machine a slow survivor can hit the limit."""
    if write:
        REPORTS.mkdir(parents=True, exist_ok=True)
        report = subprocess.run([_bin("cr-report"), "--show-diff", "--surviving-only", str(db)],
                                capture_output=True, text=True, check=False).stdout
        (REPORTS / f"{name}.txt").write_text(report)
    counts = {"killed": 0, "survived": 0, "timeout": 0, "incompetent": 0, "skipped": 0, "pending": 0}
    survivors = []
    for item, result in _dump(db):
        if result is None:
            counts["pending"] += 1
            continue
        outcome = result.get("worker_outcome")
        if outcome == "skipped":
            counts["skipped"] += 1
        elif outcome == "timeout" or (result.get("output") or "").strip() == "timeout" \
                or "+ Timeout +" in (result.get("output") or ""):
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
    return {"module": name, "baseline_s": None if baseline is None else round(baseline, 1), **counts, "survivors": survivors}


def _score(r: dict) -> str:
    denom = r["killed"] + r["survived"]
    return f"{100 * r['killed'] / denom:.1f}%" if denom else "n/a"


def write_summary(rows: list[dict]) -> None:
    """summary.md: one row per module (killed / survived / timeout, score killed / (killed +
    survived)); a rerun of the survivors adds its session's counts before the rerun. Rows of
    modules not in this run are kept from earlier runs (reports/summary.json)."""
    store = REPORTS / "summary.json"
    known = json.loads(store.read_text()) if store.exists() else {}
    known.update({r["module"]: r for r in rows})
    rows = [known[n] for n in MODULES if n in known]
    REPORTS.mkdir(parents=True, exist_ok=True)
    store.write_text(json.dumps(known, indent=1) + "\n")
    lines = ["# Mutation testing summary (cosmic-ray)", "",
             "| module | killed | survived | timeout | incompetent | skipped | not run | score | before the rerun "
             "(killed / survived / timeout, score) | baseline s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['module']} | error: {r['error']} |||||||||")
            continue
        b = r.get("before")
        was = f"{b['killed']} / {b['survived']} / {b['timeout']}, {_score(b)}" if b else ""
        lines.append(f"| {r['module']} | {r['killed']} | {r['survived']} | {r['timeout']} | {r['incompetent']} | "
                     f"{r['skipped']} | {r['pending']} | {_score(r)} | {was} | {r['baseline_s'] or ''} |")
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
    ap.add_argument("--sample", type=int, default=40,
                    help="mutants per module, a fixed random sample (0: all; 2045 in all, hours on 2 cores)")
    ap.add_argument("--report-only", action="store_true", help="summarize existing sessions under --work")
    ap.add_argument("--rerun-survivors", action="store_true",
                    help="run the survivors and timeouts of the sessions under --work again, against today's tests")
    args = ap.parse_args(argv)
    names = args.modules or list(MODULES)
    unknown = sorted(set(names) - set(MODULES))
    if unknown:
        ap.error(f"unknown module(s) {unknown}; choose from {', '.join(MODULES)}")
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        rows = [summarize(n, work / n / "session.sqlite", None) for n in names
                if (work / n / "session.sqlite").exists()]
    else:
        job = ((lambda n: rerun_survivors(n, work, args.timeout_factor)) if args.rerun_survivors
               else (lambda n: run_module(n, work, args.timeout_factor, args.sample or None)))
        with cf.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            rows = list(pool.map(job, names))
    write_summary(rows)


if __name__ == "__main__":
    main()
