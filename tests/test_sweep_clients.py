"""Several sweep clients on one store (leases: claim, renew, expiry, takeover), a client
killed while holding leases, grids counted and refused before expansion (--max-runs),
and stores written before the leases table existed."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

import measureflow as mf
from measureflow.experiments import expand, run_sweep
from measureflow.experiments import sweep as sweep_module
from measureflow.experiments.sweep import DEFAULT_MAX_RUNS, count_runs
from measureflow.store import _SCHEMA, Claim, RunRecord, Store

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
import _client_tasks  # noqa: E402  (registers "gated")

SUMMARY = re.compile(r"(\d+) runs: (\d+) already stored, (\d+) done, (\d+) failed"
                     r"(?:, (\d+) recorded by other clients)?(?: \((\d+) taken over from stalled clients\))?")


@pytest.fixture
def env():
    """The environment of client subprocesses: tests/ on their path (for ``imports:``)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}


def _spec(tmp_path, n, *, gate=None, sleep=0.0, **extra):
    spec = {"name": "clients", "task": "gated", "imports": ["_client_tasks"],
            "base": {"log": str(tmp_path / "computed.log"), "gate": None if gate is None else str(gate),
                     "sleep": sleep},
            "grid": {"value": list(range(n))}, **extra}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _client(spec, out, env, *extra):
    cmd = [sys.executable, "-c", "from measureflow.cli import run; run()", "sweep", str(spec), "--out", str(out),
           "--no-progress", "--workers", "0", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _leases(out) -> dict:
    """{run_id: holder}, read without the Store (which would create or migrate)."""
    try:
        con = sqlite3.connect(f"file:{out / 'runs.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return dict(con.execute("SELECT run_id, holder FROM leases"))
        finally:
            con.close()
    except sqlite3.Error:  # not created yet
        return {}


def _wait_for(condition, procs, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        for p in procs:
            assert p.poll() is None, f"a client exited before {what}: {p.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------
# the lease table
# ---------------------------------------------------------------------------------------

def test_claim_renew_expiry_takeover_with_a_fake_clock(tmp_path):
    with Store(tmp_path) as store:
        a = store.claim(["r1", "r2", "r3"], "A", duration=10, limit=2, now=100.0)
        assert a == Claim(claimed=("r1", "r2"), scanned=2)
        b = store.claim(["r1", "r2", "r3"], "B", duration=10, limit=5, now=101.0)
        assert (b.claimed, b.busy, b.taken_over, b.scanned) == (("r3",), ("r1", "r2"), (), 3)
        assert store.leases() == {"r1": ("A", 110.0), "r2": ("A", 110.0), "r3": ("B", 111.0)}
        # A renews at 105 (to 115); B's lease on r3 runs out at 111 and A takes it over.
        assert store.renew("A", duration=10, now=105.0) == {"r1", "r2"}
        c = store.claim(["r1", "r2", "r3"], "A", duration=10, limit=5, now=112.0)
        assert (c.claimed, c.taken_over) == (("r1", "r2", "r3"), ("r3",))  # its own leases are renewed
        assert store.renew("B", duration=10, now=113.0) == set()  # B lost r3
        # An expired lease is not a claim: at 200 B takes everything over.
        d = store.claim(["r1", "r2", "r3"], "B", duration=10, limit=5, now=200.0)
        assert d.taken_over == ("r1", "r2", "r3")
        # Recording a run drops its lease in the same transaction; recorded runs are "finished".
        store.record(RunRecord(run_id="r1", task="t", config={}, status="done"))
        store.record(RunRecord(run_id="r2", task="t", config={}, status="failed", error="E: x"))
        assert set(store.leases()) == {"r3"}
        e = store.claim(["r1", "r2", "r3"], "A", duration=10, limit=5, now=201.0)
        assert (e.finished, e.busy, e.claimed) == (("r1", "r2"), ("r3",), ())
        # ...except a failed run recorded before redo_failed_before (retry_failed=True).
        recorded = store.get("r2").recorded_at
        f = store.claim(["r2"], "A", duration=10, limit=5, now=201.0, redo_failed_before=recorded + 1)
        assert f.claimed == ("r2",)
        assert store.release("B") == 1 and store.release("A", ["r2", "r9"]) == 1 and store.leases() == {}
        with pytest.raises(mf.ValidationError, match="duration"):
            store.claim(["r1"], "A", duration=0, limit=1)


_RAW_CLIENT = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
con.execute("PRAGMA journal_mode=WAL")
time.sleep(float(sys.argv[3]))
if sys.argv[2] == "read":
    print(",".join(sorted(r[0] for r in con.execute("SELECT run_id FROM leases"))))
else:
    con.execute("INSERT INTO leases VALUES (?, 'B', 0, 1e12)", (sys.argv[2],))
con.close()
"""


def test_a_second_store_in_one_process_keeps_the_first_in_sync(tmp_path):
    """Opening a second Store of a database this process has open (the sweep's heartbeat
    does) must not drop the first one's SQLite locks. If it did, another process closing
    its connection would think it the last one, checkpoint and delete the WAL, and from
    then on this process and the others would not see each other's writes (two clients
    computed every run)."""
    db = str(tmp_path / "runs.sqlite")

    def other(*args):
        return subprocess.Popen([sys.executable, "-c", _RAW_CLIENT, db, *args], stdout=subprocess.PIPE, text=True)

    Store(tmp_path).close()
    writer = other("r1", "1.0")  # connected before the Stores below, closes after them
    time.sleep(0.5)
    first = Store(tmp_path)
    second = Store(tmp_path)
    try:
        first.claim(["r0"], "A", duration=600, limit=1)
        assert writer.wait(timeout=60) == 0
        first.claim(["r2"], "A", duration=600, limit=1)
        assert other("read", "0").communicate(timeout=60)[0].strip() == "r0,r1,r2"
        assert other("r3", "0").wait(timeout=60) == 0
        assert set(first.leases()) == set(second.leases()) == {"r0", "r1", "r2", "r3"}
    finally:
        second.close()
        first.close()


def test_concurrent_claims_never_lease_a_run_twice(tmp_path):
    """Four threads (each with its own connection) claim from one list of ids: every id
    goes to exactly one of them."""
    Store(tmp_path).close()
    ids = [f"r{i}" for i in range(200)]
    got = {}

    def claimer(name):
        mine = []
        with Store(tmp_path) as store:
            while True:  # (a holder's own leases would be claimed again: leave them out)
                c = store.claim([r for r in ids if r not in mine], name, duration=60, limit=3)
                if not c.claimed:
                    break
                mine += c.claimed
        got[name] = mine

    threads = [threading.Thread(target=claimer, args=(f"T{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [r for mine in got.values() for r in mine]
    assert sorted(everything) == sorted(ids)  # each once
    with Store(tmp_path) as store:
        assert {rid: h for rid, (h, _) in store.leases().items()} == {r: n for n, mine in got.items() for r in mine}


# ---------------------------------------------------------------------------------------
# several clients on one store
# ---------------------------------------------------------------------------------------

def test_two_clients_split_a_sweep(tmp_path, env):
    """Two `measureflow sweep` processes on one --out: each run is computed exactly once,
    and each client computes some (both hold a lease before the gate opens)."""
    n = 10
    gate = tmp_path / "gate"
    spec = _spec(tmp_path, n, gate=gate, sleep=0.05)
    out = tmp_path / "out"
    clients = [_client(spec, out, env) for _ in range(2)]
    _wait_for(lambda: len(set(_leases(out).values())) == 2, clients, "both clients hold a lease")
    gate.touch()
    results = [p.communicate(timeout=120) + (p.returncode,) for p in clients]
    for stdout, stderr, code in results:
        assert code == 0, stderr[-2000:]
    computed = _client_tasks.log_lines(tmp_path / "computed.log")
    assert sorted(c["value"] for c in computed) == list(range(n))  # no run computed twice
    summaries = [tuple(int(x or 0) for x in SUMMARY.search(stderr).groups()) for _, stderr, _ in results]
    for total, skipped, done, failed, others, taken in summaries:
        assert (total, failed, taken) == (n, 0, 0) and done >= 1
        assert skipped + done + others == n  # each client saw every run finished
    assert sum(s[2] for s in summaries) == n
    pids = {c["pid"] for c in computed}
    assert len(pids) == 2
    with Store(out) as store:
        assert store.counts() == {"done": n, "failed": 0} and store.leases() == {}
        for rec in store.records():
            assert rec.metrics["square"] == rec.config["value"] ** 2
        by_pid = sorted(sum(1 for rec in store.records() if rec.metrics["pid"] == p) for p in pids)
    assert by_pid == sorted(s[2] for s in summaries)


def test_a_killed_client_leaves_its_runs_to_another(tmp_path, env):
    """Client A is SIGKILLed while it holds a lease (its run waits at a closed gate);
    client B, with the same short lease, computes the rest, then takes A's run over once
    the lease has expired."""
    n = 4
    gate = tmp_path / "gate"
    spec = _spec(tmp_path, n, gate=gate)
    out = tmp_path / "out"
    a = _client(spec, out, env, "--lease-seconds", "1.5")
    _wait_for(lambda: _leases(out), [a], "client A holds a lease")
    (held,) = _leases(out)
    os.kill(a.pid, signal.SIGKILL)
    a.communicate()
    assert _leases(out) == {held: _leases(out)[held]}  # the dead client's lease is still there
    gate.touch()
    summary = run_sweep(spec, out, workers=0, progress=False, lease_s=1.5)
    assert (summary.total, summary.skipped, summary.done, summary.failed) == (n, 0, n, 0)
    assert (summary.taken_over, summary.by_others, summary.remaining) == (1, 0, 0)
    with Store(out) as store:
        assert store.counts() == {"done": n, "failed": 0} and store.leases() == {}
        assert store.get(held).metrics["pid"] == os.getpid()
    computed = _client_tasks.log_lines(tmp_path / "computed.log")
    assert sorted(c["value"] for c in computed) == list(range(n))
    assert {c["pid"] for c in computed} == {os.getpid()}


def test_a_client_waits_for_runs_leased_by_a_live_client(tmp_path):
    """A run leased by another (live: its lease is long) is not computed: the client
    polls until the other records it, and reports it as recorded by others."""
    n = 3
    spec = _spec(tmp_path, n)
    runs = expand(spec)
    other = runs[0]
    with Store(tmp_path / "out") as store:
        assert store.claim([other.run_id], "elsewhere:1:ab", duration=600, limit=1).claimed == (other.run_id,)

    def finish_later():
        time.sleep(1.0)
        with Store(tmp_path / "out") as store:
            store.record(RunRecord(run_id=other.run_id, task="gated", config=other.config, status="done",
                                   metrics={"square": 0, "pid": -1}))

    thread = threading.Thread(target=finish_later)
    thread.start()
    summary = run_sweep(spec, tmp_path / "out", workers=0, progress=False, lease_s=1.0)
    thread.join()
    assert (summary.done, summary.by_others, summary.taken_over, summary.remaining) == (n - 1, 1, 0, 0)
    with Store(tmp_path / "out") as store:
        assert store.get(other.run_id).metrics["pid"] == -1 and store.leases() == {}
    assert sorted(c["value"] for c in _client_tasks.log_lines(tmp_path / "computed.log")) == list(range(1, n))


# ---------------------------------------------------------------------------------------
# counting before expanding
# ---------------------------------------------------------------------------------------

BIG_GRID = {f"axis{i}": list(range(10)) for i in range(7)}  # 10^7 points


def test_counting_a_grid_matches_its_expansion():
    base = {"log": "unused"}
    assert count_runs({"task": "gated", "base": base, "grid": BIG_GRID}) == 10**7
    assert count_runs({"task": "gated", "base": {**base, "value": 1}}) == 1
    grid = [{"value": [1, 2, 3], "sleep": [0.0, 1.0]}, {"value": [7]}]
    spec = {"task": "gated", "base": base, "grid": grid}
    assert count_runs(spec) == 7 == len(expand(spec))
    # duplicates are dropped by the expansion: the count is an upper bound
    dup = {"task": "gated", "base": base, "grid": [{"value": [1, 2]}, {"value": [2], "sleep": [0]}]}
    assert count_runs(dup) == 3 and len(expand(dup)) == 2


def test_a_huge_grid_is_refused_before_any_work(tmp_path, monkeypatch):
    def no_expansion(*a, **k):
        raise AssertionError("the grid was expanded")

    monkeypatch.setattr(sweep_module, "_iter_runs", no_expansion)
    spec = {"name": "huge", "task": "gated", "base": {"log": "x"}, "grid": BIG_GRID}
    with pytest.raises(mf.ValidationError, match=r"'huge': its grid has 10000000 runs, more than "
                                                 r"max_runs=100000 \(--max-runs on the command line\)"):
        run_sweep(spec, tmp_path / "out", workers=0, progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(mf.ValidationError, match="max_runs=0 is invalid"):
        run_sweep(spec, tmp_path / "out", workers=0, progress=False, max_runs=0)


@pytest.mark.parametrize("kw, message", [
    ({"lease_s": 0}, "lease_s=0 must be a positive number"),
    ({"lease_s": float("inf")}, "lease_s=inf must be a positive number"),
    ({"max_in_flight": 0}, "max_in_flight=0 is invalid"),
    ({"max_runs": 2.5}, "max_runs must be an integer"),
])
def test_client_arguments_are_checked(tmp_path, kw, message):
    with pytest.raises(mf.MeasureflowError, match=message):
        run_sweep(_spec(tmp_path, 2), tmp_path / "out", workers=0, progress=False, **kw)
    assert not (tmp_path / "out").exists()


def test_max_runs_raises_the_limit(tmp_path):
    spec = _spec(tmp_path, 12)
    with pytest.raises(mf.ValidationError, match="12 runs, more than max_runs=11"):
        run_sweep(spec, tmp_path / "out", workers=0, progress=False, max_runs=11)
    summary = run_sweep(spec, tmp_path / "out", workers=0, progress=False, max_runs=12)
    assert (summary.total, summary.done) == (12, 12)


def test_planning_progress_for_large_grids(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep_module, "_PLAN_PROGRESS_MIN", 5)
    spec = _spec(tmp_path, 6)
    run_sweep(spec, tmp_path / "out", workers=0, progress=True)
    assert "planned clients: 6 runs (0 already in the store)" in capsys.readouterr().err
    run_sweep(_spec(tmp_path, 4), tmp_path / "out", workers=0, progress=True)  # below the threshold: quiet
    assert "planned" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# stores of the previous release (no leases table)
# ---------------------------------------------------------------------------------------

def test_a_store_without_the_leases_table_opens_and_resumes(tmp_path):
    """A store laid out by the previous release (the schema without ``leases``) holding two
    finished runs: a sweep resumes it, computing only the two others."""
    spec = _spec(tmp_path, 4)
    runs = expand(spec)
    run_sweep({**yaml.safe_load(spec.read_text()), "grid": {"value": [0, 1]}}, tmp_path / "new", workers=0,
              progress=False)
    old = tmp_path / "old"
    (old / "arrays").mkdir(parents=True)
    con = sqlite3.connect(old / "runs.sqlite", isolation_level=None)
    for stmt in filter(str.strip, _SCHEMA.split(";")):
        con.execute(stmt)
    con.executemany("INSERT INTO meta VALUES (?, ?)", [("schema_version", "1"), ("created_with", "measureflow 0.x")])
    con.execute("ATTACH DATABASE ? AS new", (str(tmp_path / "new" / "runs.sqlite"),))
    con.execute("INSERT INTO runs SELECT * FROM new.runs")
    con.execute("DETACH DATABASE new")
    con.close()
    con = sqlite3.connect(old / "runs.sqlite")
    assert {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")} == {"meta", "runs"}
    stamps = dict(con.execute("SELECT run_id, recorded_at FROM runs"))
    con.close()
    assert set(stamps) == {runs[0].run_id, runs[1].run_id}

    summary = run_sweep(spec, old, workers=0, progress=False)
    assert (summary.skipped, summary.done, summary.remaining) == (2, 2, 0)
    with Store(old, create=False) as store:
        assert store.counts() == {"done": 4, "failed": 0} and store.leases() == {}
        assert all(store.get(rid).recorded_at == t for rid, t in stamps.items())
    assert sorted(c["value"] for c in _client_tasks.log_lines(tmp_path / "computed.log")) == [0, 1, 2, 3]


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------

def test_cli_max_runs(tmp_path, env):
    from typer.testing import CliRunner

    from measureflow.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["sweep", "--help"], terminal_width=200)
    assert "--max-runs" in res.output and "--lease-seconds" in res.output
    default = next(p.default for p in __import__("typer").main.get_command(app).commands["sweep"].params
                   if p.name == "max_runs")
    assert default == DEFAULT_MAX_RUNS

    spec = _spec(tmp_path, 3)
    res = runner.invoke(app, ["sweep", str(spec), "--out", str(tmp_path / "o"), "--workers", "0", "--no-progress",
                              "--max-runs", "2"])
    assert isinstance(res.exception, mf.ValidationError) and "3 runs, more than max_runs=2" in str(res.exception)
    res = runner.invoke(app, ["sweep", str(spec), "--out", str(tmp_path / "o"), "--workers", "0", "--no-progress",
                              "--max-runs", "3"])
    assert res.exit_code == 0, res.output

    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump({"task": "gated", "base": {"log": "x"}, "grid": BIG_GRID}))
    done = subprocess.run([sys.executable, "-c", "from measureflow.cli import run; run()", "sweep", str(big),
                           "--out", str(tmp_path / "big")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: sweep 'big': its grid has 10000000 runs")
    assert "--max-runs" in lines[0] and not (tmp_path / "big").exists()
