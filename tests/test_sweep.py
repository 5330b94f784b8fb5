"""Sweeps: specs, run ids, resume after SIGKILL, failing runs, worker deaths (process
pool and a real Dask LocalCluster), and the CLI."""

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml

import measureflow as mf
from measureflow.experiments import expand, load_spec, run_id, run_sweep
from measureflow.store import Store

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
import _sweep_tasks  # noqa: E402  (registers echo / counted_teacher / fragile)

# Every teacher run in this module has these sizes, so the in-process reference runs
# compile each m once per session.
SMALL = {"iterations": 200, "n": 40, "n_test": 50, "step": 0.5}


@pytest.fixture(scope="module")
def worker_env(tmp_path_factory):
    """Worker processes (spawned here, or by a subprocess) find tests/ on their path and
    share one JAX compilation cache for the whole module."""
    cache = tmp_path_factory.mktemp("jax-cache")
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "JAX_COMPILATION_CACHE_DIR",
                                            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), saved["PYTHONPATH"]]))
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache)
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    yield dict(os.environ)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _write(path, spec):
    path.write_text(yaml.safe_dump(spec))
    return path


def _comparable(store):
    """{run_id: (status, metrics without timings, arrays)}."""
    out = {}
    for rec in store.records():
        metrics = {k: v for k, v in rec.metrics.items() if k not in ("wall_time",)}
        out[rec.run_id] = (rec.status, metrics, store.load_arrays(rec.run_id))
    return out


def _assert_same_results(a, b):
    assert set(a) == set(b)
    for rid in a:
        (sa, ma, xa), (sb, mb, xb) = a[rid], b[rid]
        assert (sa, ma) == (sb, mb), rid
        assert set(xa) == set(xb)
        for k in xa:
            np.testing.assert_array_equal(xa[k], xb[k], err_msg=f"{rid}/{k}")


# ---------------------------------------------------------------------------------------
# specs and run ids
# ---------------------------------------------------------------------------------------

def test_yaml_and_toml_specs_expand_alike(tmp_path):
    (tmp_path / "s.yaml").write_text(
        "task: echo\nimports: [_sweep_tasks]\nbase: {value: 1.0}\ngrid:\n  value: [1, 2.5]\n  nested.scale: [1, 10]\n")
    (tmp_path / "s.toml").write_text(
        'task = "echo"\nimports = ["_sweep_tasks"]\n[base]\nvalue = 1.0\n[grid]\nvalue = [1, 2.5]\n"nested.scale" = [1, 10]\n')
    a, b = expand(tmp_path / "s.yaml"), expand(tmp_path / "s.toml")
    assert [r.run_id for r in a] == [r.run_id for r in b] and len(a) == 4
    assert a[1].config == {"value": 1.0, "fail": False, "nested": {"scale": 10.0}}
    assert load_spec(tmp_path / "s.yaml").name == "s"


def test_run_id_is_a_hash_of_the_canonical_full_config():
    (r,) = expand({"task": "echo", "base": {"nested": {"scale": 2}, "value": 3}})
    full = {"value": 3.0, "fail": False, "nested": {"scale": 2.0}}
    assert r.config == full
    text = json.dumps({"config": full, "task": "echo"}, sort_keys=True, separators=(",", ":"))
    assert r.run_id == hashlib.sha256(text.encode()).hexdigest()[:16] == run_id("echo", full)
    # defaults spelled out, other key order, ints for floats: same run
    (same,) = expand({"task": "echo", "base": {"fail": False, "value": 3.0, "nested": {"scale": 2.0}}})
    assert same.run_id == r.run_id
    (other,) = expand({"task": "echo", "base": {"value": 3.0000001, "nested": {"scale": 2}}})
    assert other.run_id != r.run_id


def test_grid_union_and_duplicates():
    runs = expand({"task": "echo", "grid": [{"value": [1, 2, 3]}, {"value": [3, 4], "nested.scale": [1]}]})
    assert [r.config["value"] for r in runs] == [1, 2, 3, 4]  # value=3, scale=1 listed twice: one run


@pytest.mark.parametrize("spec, message", [
    ({"task": "echo", "gird": {}}, r"gird: Extra inputs are not permitted.*valid keys: task"),
    ({"task": "echo", "grid": {"value": 5}}, r"grid\.value must be a non-empty list"),
    ({"task": "echo", "grid": {"value": []}}, r"grid\.value must be a non-empty list"),
    ({"task": "echo", "retries": -1}, r"retries: Input should be greater than or equal to 0"),
    ({"task": "echo", "base": {"value": "x"}}, r"base\.value: Input should be a valid number"),
    ({"task": "echo", "base": {"value": 1}, "grid": {"nested.scale": [1, "big"]}},
     r"at \{nested\.scale='big'\}.*grid\.nested\.scale: Input should be a valid number"),
    ({"task": "echo", "base": {"value": 1, "nested": {"scal": 2}}}, r"base\.nested\.scal: Extra inputs"),
    ({"task": "custom_teacher", "base": {"m": 4}, "grid": {"step": [0.1, -1]}},
     r"grid\.step: Input should be greater than 0 \(got -1\)"),
    ({"task": "custom_teacher", "base": {"m": 4, "methd": "gd"}}, r"base\.methd: Extra inputs"),
    ({"task": "custom_teacher"}, r"base\.m: Field required"),
    ({"task": "nope"}, r"task='nope' is not registered \(known tasks: .*custom_teacher"),
    ({"task": "echo", "imports": ["no_such_module_xyz"]}, r"cannot import 'no_such_module_xyz'"),
])
def test_spec_errors_name_the_key(spec, message):
    with pytest.raises(mf.ValidationError, match=message):
        expand(spec)


def test_bad_spec_files(tmp_path):
    (tmp_path / "a.yaml").write_text("task: echo\nbase: [1, 2\n")
    with pytest.raises(mf.ValidationError, match=r"a\.yaml: not valid YAML"):
        load_spec(tmp_path / "a.yaml")
    (tmp_path / "b.json").write_text("{}")
    with pytest.raises(mf.ValidationError, match="unknown format"):
        load_spec(tmp_path / "b.json")
    with pytest.raises(mf.ValidationError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")


def test_task_registry_and_outputs():
    import jax.numpy as jnp

    from measureflow.experiments.tasks import TaskConfig, get_task, register_task, run_task

    class Cfg(TaskConfig):
        k: int = 1

    @register_task("_outputs_probe", config=Cfg)
    def probe(config):
        return ({"a": np.float32(0.5), "b": jnp.asarray(2.0), "c": np.int64(3), "d": {"e": np.bool_(True)},
                 "f": [np.float64(1.5)], "g": None}, {"x": jnp.arange(3.0)})

    metrics, arrays = run_task("_outputs_probe", {"k": 2})
    assert metrics == {"a": 0.5, "b": 2.0, "c": 3, "d": {"e": True}, "f": [1.5], "g": None}
    assert all(type(v) in (float, int) for v in (metrics["a"], metrics["b"], metrics["c"]))
    assert isinstance(arrays["x"], np.ndarray) and arrays["x"].dtype == np.float64
    with pytest.raises(mf.ValidationError, match="already registered"):
        register_task("_outputs_probe", config=Cfg)(lambda c: ({}, {}))
    with pytest.raises(mf.ValidationError, match=r"k: Input should be a valid integer"):
        get_task("_outputs_probe").validate({"k": "2"})

    @register_task("_bad_outputs", config=Cfg)
    def bad(config):
        return {"m": object()} if config["k"] == 1 else ({"m": 1.0}, {"bad name": np.ones(2)})

    with pytest.raises(mf.InputTypeError, match="must return"):
        run_task("_bad_outputs", {})
    with pytest.raises(mf.ValidationError, match="array name 'bad name'"):
        run_task("_bad_outputs", {"k": 2})


def test_task_bugs_become_failed_runs(tmp_path):
    """A task that returns garbage is a failed run with the reason, not a crashed sweep."""
    from measureflow.experiments.tasks import TaskConfig, register_task

    class Cfg(TaskConfig):
        k: int

    @register_task("_sloppy", config=Cfg)
    def sloppy(config):
        return ({"x": object()}, {}) if config["k"] else ({"x": 1.0}, {})

    summary = run_sweep({"task": "_sloppy", "grid": {"k": [0, 1]}}, tmp_path, workers=0, progress=False)
    assert (summary.done, summary.failed) == (1, 1)
    with Store(tmp_path) as store:
        (failed,) = store.records("failed")
        assert failed.error.startswith("InputTypeError: metric 'x' has type object")


# ---------------------------------------------------------------------------------------
# in-process sweeps: failures, resume, retry
# ---------------------------------------------------------------------------------------

def test_failing_run_is_recorded_and_sweep_goes_on(tmp_path):
    spec = {"name": "div", "task": "custom_teacher", "base": {**SMALL, "m": 2},
            "grid": {"step": [0.5, 1e4], "seed": [0, 1]}}
    summary = run_sweep(spec, tmp_path, workers=0, progress=False)
    assert (summary.total, summary.done, summary.failed) == (4, 2, 2)
    with Store(tmp_path) as store:
        failed = store.records("failed")
        assert {r.config["step"] for r in failed} == {1e4}
        for r in failed:
            assert r.error.startswith("DivergenceError: gd diverged at iteration")
            assert "smaller step" in r.error and "DivergenceError" in r.traceback
        done = store.records("done")
        assert all(np.isfinite(r.metrics["objective"]) for r in done)
        df = store.to_dataframe()
    assert sorted(df["status"]) == ["done", "done", "failed", "failed"]
    assert df.loc[df.status == "failed", "objective"].isna().all()


def test_resume_skips_stored_runs_and_retry_failed(tmp_path, capsys):
    spec = {"task": "echo", "imports": ["_sweep_tasks"], "grid": {"value": [1, 2, 3], "fail": [False, True]}}
    first = run_sweep(spec, tmp_path, workers=0, progress=False)
    assert (first.done, first.failed, first.skipped) == (3, 3, 0)
    with Store(tmp_path) as store:
        stamps = {r.run_id: r.recorded_at for r in store.records()}
    again = run_sweep(spec, tmp_path, workers=0, progress=True)
    assert (again.done, again.failed, again.skipped) == (0, 0, 6)
    assert "resuming: 6 of 6 runs already in the store" in capsys.readouterr().err
    retried = run_sweep(spec, tmp_path, workers=0, progress=False, retry_failed=True)
    assert (retried.done, retried.failed, retried.skipped) == (0, 3, 3)
    with Store(tmp_path) as store:
        for r in store.records():
            assert (r.recorded_at == stamps[r.run_id]) == (r.status == "done")
            if r.status == "failed":
                assert "echo asked to fail" in r.error


def test_executor_arguments_are_checked(tmp_path):
    spec = {"task": "echo", "base": {"value": 1}}
    with pytest.raises(mf.ValidationError, match="workers"):
        run_sweep(spec, tmp_path, workers=-1, progress=False)
    with pytest.raises(mf.ValidationError, match="one Dask executor"):
        run_sweep(spec, tmp_path, scheduler="tcp://localhost:1", dask_local=True, progress=False)
    with pytest.raises(mf.ValidationError, match="does not apply"):
        run_sweep(spec, tmp_path, scheduler="tcp://localhost:1", workers=2, progress=False)


# ---------------------------------------------------------------------------------------
# crash safety: SIGKILL the sweep's client midway, then rerun
# ---------------------------------------------------------------------------------------

def _count_rows(db):
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _sweep_cmd(spec, out, *extra):
    return [sys.executable, "-c", "from measureflow.cli import run; run()", "sweep", str(spec), "--out", str(out),
            "--no-progress", *extra]


def test_sigkill_midway_then_resume(tmp_path, worker_env, monkeypatch):
    grid = [{"seed": list(range(10))}, {"step": [1e4]}]  # 11 runs, one diverges
    spec = _write(tmp_path / "spec.yaml", {"task": "counted_teacher", "imports": ["_sweep_tasks"],
                                           "base": {**SMALL, "m": 2}, "grid": grid})
    runs = expand(spec)
    total = len(runs)
    log = tmp_path / "executions.log"
    out = tmp_path / "out"

    # 1. The sweep, in its own process with 2 workers (each run sleeps 0.3 s), is killed
    #    with SIGKILL once a few runs are stored.
    env = {**worker_env, "MF_TEST_RUN_LOG": str(log), "MF_TEST_SLEEP": "0.3"}
    proc = subprocess.Popen(_sweep_cmd(spec, out, "--workers", "2"), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while _count_rows(out / "runs.sqlite") < 3:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the sweep recorded no runs within 180 s"
        time.sleep(0.02)
    children = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # Its workers notice that their client is gone and exit instead of running on.
    _, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"orphaned workers: {alive}"
    with Store(out) as store:
        before = {r.run_id: r.recorded_at for r in store.records()}
    assert 3 <= len(before) < total, "the kill must land midway"
    executed_before = len(_sweep_tasks.log_lines(log))

    # 2. Rerun (here in this process) to completion.
    monkeypatch.setenv("MF_TEST_RUN_LOG", str(log))
    summary = run_sweep(spec, out, workers=0, progress=False)
    assert summary.skipped == len(before) and summary.done + summary.failed == total - len(before)
    with Store(out) as store:
        records = store.records()
        assert sorted(r.run_id for r in records) == sorted(r.run_id for r in runs)  # each exactly once
        for r in records:
            if r.run_id in before:  # stored before the kill: neither recomputed nor rewritten
                assert r.recorded_at == before[r.run_id]
        assert store.counts() == {"done": total - 1, "failed": 1}
        assert all(r.metrics["x64"] for r in store.records("done"))
        resumed = _comparable(store)
    # The execution log (one line per completed task call; the diverging run raises before
    # logging): the rerun executed only runs that were not stored before the kill.
    after = [run_id("counted_teacher", c) for c in _sweep_tasks.log_lines(log)[executed_before:]]
    diverging = {r.run_id for r in runs if r.config["step"] == 1e4}
    assert sorted(after) == sorted({r.run_id for r in runs} - set(before) - diverging)

    # 3. An uninterrupted sweep gives the same results.
    monkeypatch.delenv("MF_TEST_RUN_LOG")
    run_sweep(spec, tmp_path / "ref", workers=0, progress=False)
    with Store(tmp_path / "ref") as store:
        _assert_same_results(resumed, _comparable(store))


# ---------------------------------------------------------------------------------------
# worker deaths
# ---------------------------------------------------------------------------------------

def _fragile_spec(marker, *, always_die=False):
    """value 4 kills its worker once; with ``always_die``, value 5 kills it every time."""
    grid = [{"value": [1.0, 2.0, 3.0]}, {"value": [4.0], "kill": [True]}]
    if always_die:
        grid.append({"value": [5.0], "kill": [True], "kill_marker": [None]})
    return {"task": "fragile", "imports": ["_sweep_tasks"], "retries": 1,
            "base": {"kill_marker": str(marker)}, "grid": grid}


def _check_fresh_float64_workers(store):
    for r in store.records("done"):
        assert r.metrics["x64"] and r.metrics["dtype"] == "float64"
        assert int(r.worker.rsplit(":", 1)[1]) != os.getpid()
        assert r.metrics["last"] == pytest.approx(10 * r.config["value"] / 3.0, rel=1e-15)
        assert store.load_arrays(r.run_id)["x"].dtype == np.float64


def test_process_pool_survives_a_dying_worker(tmp_path, worker_env):
    """A run that kills its worker once is redone; one that always does is recorded as
    failed; the others complete, in fresh float64 worker processes."""
    marker = tmp_path / "died"
    spec = _fragile_spec(marker, always_die=True)
    summary = run_sweep(spec, tmp_path / "out", workers=2, progress=False)
    assert marker.exists()
    assert (summary.total, summary.done, summary.failed) == (5, 4, 1)
    with Store(tmp_path / "out") as store:
        (failed,) = store.records("failed")
        assert failed.config["value"] == 5.0 and failed.error.startswith("WorkerDied")
        _check_fresh_float64_workers(store)


@pytest.fixture(scope="module")
def dask_client(worker_env):
    import logging

    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        yield client


def test_dask_cluster_survives_a_killed_worker(tmp_path, dask_client):
    marker = tmp_path / "died"
    spec = _fragile_spec(marker)
    pids_before = set(dask_client.run(os.getpid).values())
    summary = run_sweep(spec, tmp_path / "out", client=dask_client, progress=False)
    assert marker.exists(), "no worker was killed"
    killed = int(marker.read_text())
    assert killed in pids_before and not psutil.pid_exists(killed)
    assert (summary.total, summary.done, summary.failed) == (4, 4, 0)
    with Store(tmp_path / "out") as store:
        assert sorted(r.config["value"] for r in store.records()) == [1.0, 2.0, 3.0, 4.0]
        _check_fresh_float64_workers(store)


def test_sweep_through_a_scheduler_address(tmp_path, dask_client):
    """`measureflow sweep --scheduler ADDRESS`: the client connects to a running cluster."""
    from typer.testing import CliRunner

    from measureflow.cli import app

    spec = _write(tmp_path / "s.yaml", {"task": "echo", "imports": ["_sweep_tasks"],
                                        "grid": {"value": [1, 2, 3], "fail": [False, True]}})
    address = dask_client.scheduler.address
    res = CliRunner().invoke(app, ["sweep", str(spec), "--out", str(tmp_path / "o"), "--scheduler", address,
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    with Store(tmp_path / "o") as store:
        assert store.counts() == {"done": 3, "failed": 3}
        worker_pids = set(dask_client.run(os.getpid).values())
        assert {r.metrics["pid"] for r in store.records("done")} <= worker_pids


@pytest.mark.slow
def test_quick_example_on_a_dask_local_cluster(tmp_path):
    spec = Path(__file__).resolve().parents[1] / "examples" / "sweeps" / "quick.yaml"
    res = subprocess.run(_sweep_cmd(spec, tmp_path / "o", "--dask-local", "--workers", "2"), capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    with Store(tmp_path / "o") as store:
        assert store.counts()["done"] == len(expand(spec)) and store.counts()["failed"] == 0


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------

def test_cli_results_export(tmp_path):
    from typer.testing import CliRunner

    from measureflow.cli import app

    spec = _write(tmp_path / "s.yaml", {"task": "echo", "imports": ["_sweep_tasks"],
                                        "grid": {"value": [1, 2], "fail": [False, True]}})
    runner = CliRunner()
    res = runner.invoke(app, ["sweep", str(spec), "--out", str(tmp_path / "o"), "--workers", "0", "--no-progress"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["results", str(tmp_path / "o"), "--format", "csv", "--output", str(tmp_path / "r.csv")])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "r.csv")
    assert len(df) == 4 and set(df.columns) >= {"run_id", "status", "value", "fail", "nested.scale", "scaled"}
    assert sorted(df["status"]) == ["done", "done", "failed", "failed"]
    assert df["run_id"].is_unique
    res = runner.invoke(app, ["results", str(tmp_path / "o"), "--format", "parquet"])
    assert res.exit_code == 0 and len(pd.read_parquet(tmp_path / "o" / "results.parquet")) == 4
    res = runner.invoke(app, ["results", str(tmp_path / "o"), "--format", "xml"])
    assert isinstance(res.exception, mf.ValidationError)


def test_cli_reports_bad_spec_in_one_line(tmp_path):
    spec = _write(tmp_path / "s.yaml", {"task": "custom_teacher", "base": {"m": 0}})
    res = subprocess.run(_sweep_cmd(spec, tmp_path / "o"), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error:") and "base.m" in res.stderr and "Traceback" not in res.stderr


def test_a_pool_broken_between_waits_hands_back_the_runs_it_refused():
    """A worker can die after the last wait and before the next submit: the pool then
    refuses new runs; they are handed back (to be redone), not lost or charged."""
    import concurrent.futures as cf
    from concurrent.futures.process import BrokenProcessPool

    from measureflow.experiments.sweep import _submit

    class Breaks:
        def __init__(self):
            self.calls = 0

        def submit(self, job, task, config):
            self.calls += 1
            if self.calls > 1:
                raise BrokenProcessPool("a child process terminated abruptly")
            return cf.Future()

    class Run:
        def __init__(self, i):
            self.task, self.config = "t", {"i": i}

    runs, futures = [Run(0), Run(1), Run(2)], {}
    assert _submit(Breaks(), None, futures, runs) == runs[1:]
    assert list(futures.values()) == runs[:1]
