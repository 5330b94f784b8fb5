"""Compatibility with what earlier releases wrote: run ids are frozen (a change of the
configuration's serialization would silently re-key every stored run) and a results
store written by the previous release (tests/fixtures/store_v1, made by
tests/fixtures/make_store_v1.py at commit 9d82c95) opens, reads and resumes."""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
import pytest

from measureflow.experiments import expand, run_id, run_sweep
from measureflow.store import Store, StoreError

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
OLD_STORE = FIXTURES / "store_v1"
EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"

# the specs of tests/fixtures/make_store_v1.py, spelled out: the fixture is frozen, so are they
OLD_ECHO = {"name": "old-echo", "task": "echo", "imports": ["_sweep_tasks"],
            "base": {"nested": {"scale": 2}}, "grid": {"value": [1, 3], "fail": [False, True]}}
OLD_TEACHER = {"name": "old-teacher", "task": "custom_teacher",
               "base": {"input_dim": 2, "teacher_units": 2, "n": 20, "n_test": 50, "m": 3, "iterations": 20,
                        "step": 0.5, "lam": 0.0}, "grid": {"seed": [0]}}

#: run id -> (task, status, value of the echo or None); ids as the previous release wrote them
STORED = {
    "d5343396957ce0aa": ("echo", "done", 1.0),
    "ab427dcaf7bbdde8": ("echo", "failed", 1.0),
    "0f3d4a56fa3ccbd8": ("echo", "done", 3.0),
    "50a100e14a6f1670": ("echo", "failed", 3.0),
    "0b580cffd25d9bcb": ("custom_teacher", "done", None),
}


def test_run_ids_of_fixed_configurations_are_frozen():
    assert run_id("echo", {"value": 3.0, "fail": False, "nested": {"scale": 2.0}}) == "0f3d4a56fa3ccbd8"
    (echo,) = expand({"task": "echo", "imports": ["_sweep_tasks"], "base": {"nested": {"scale": 2}, "value": 3}})
    assert echo.run_id == "0f3d4a56fa3ccbd8"
    # a built-in task: its defaults are part of the id, so adding or renaming one re-keys runs
    quick = expand(EXAMPLES / "sweeps" / "quick.yaml")
    assert len(quick) == 18
    assert (quick[0].run_id, quick[-1].run_id) == ("8467654925f65c21", "de3313ad82447183")
    assert {r.run_id for r in expand(OLD_ECHO) + expand(OLD_TEACHER)} == set(STORED)


@pytest.fixture
def old_store(tmp_path):
    """A copy of the previous release's store (opening may migrate it; the fixture stays)."""
    before = (OLD_STORE / "runs.sqlite").read_bytes()
    shutil.copytree(OLD_STORE, tmp_path / "store")
    yield tmp_path / "store"
    assert (OLD_STORE / "runs.sqlite").read_bytes() == before


def test_store_of_the_previous_release_opens_and_reads(old_store):
    with Store(old_store, create=False) as store:
        # nonzero counts only: a later release may add statuses (none of them in an old store)
        assert len(store) == 5 and {k: n for k, n in store.counts().items() if n} == {"done": 3, "failed": 2}
        for rec in store.records():
            task, status, value = STORED[rec.run_id]
            assert (rec.task, rec.status) == (task, status)
            assert rec.versions["measureflow"] == "0.1.0"
            if task == "echo":
                assert rec.sweep == "old-echo" and rec.config == {"value": value, "fail": status == "failed",
                                                                    "nested": {"scale": 2.0}}
                if status == "done":
                    assert rec.metrics["scaled"] == 2 * value
                    np.testing.assert_array_equal(store.load_arrays(rec.run_id)["v"], [0.0, 2 * value, 4 * value])
                else:
                    assert rec.error == f"ValidationError: echo asked to fail at value={value}"
        teacher = store.get("0b580cffd25d9bcb")
        arrays = store.load_arrays("0b580cffd25d9bcb")
        assert set(arrays) == {"history", "history_iterations", "positions", "teacher"}
        assert arrays["positions"].shape == (3, 3) and arrays["history"].shape == (21,)
        assert teacher.metrics["objective"] == arrays["history"][-1] == pytest.approx(0.006494400216025204, rel=1e-15)
        df = store.to_dataframe()
    assert sorted(df["run_id"]) == sorted(STORED)


def test_store_of_the_previous_release_resumes(old_store):
    with Store(old_store, create=False) as store:
        stamps = {r.run_id: r.recorded_at for r in store.records()}
    for spec, n in [(OLD_ECHO, 4), (OLD_TEACHER, 1)]:
        again = run_sweep(spec, old_store, workers=0, progress=False)
        assert (again.done, again.failed, again.skipped) == (0, 0, n)
    retried = run_sweep(OLD_ECHO, old_store, workers=0, progress=False, retry_failed=True)
    assert (retried.done, retried.failed, retried.skipped) == (0, 2, 2)
    grown = dict(OLD_ECHO, grid={"value": [1, 3, 5], "fail": [False]})
    more = run_sweep(grown, old_store, workers=0, progress=False)
    assert (more.done, more.failed, more.skipped) == (1, 0, 2)
    with Store(old_store, create=False) as store:
        assert len(store) == 6 and {k: n for k, n in store.counts().items() if n} == {"done": 4, "failed": 2}
        for rec in store.records():
            if rec.run_id in stamps:
                assert (rec.recorded_at == stamps[rec.run_id]) == (rec.status == "done")
        (new,) = set(store.run_ids()) - set(stamps)
        assert store.get(new).metrics["scaled"] == 10.0


def test_a_store_from_a_newer_schema_is_refused_untouched(old_store):
    import sqlite3

    con = sqlite3.connect(old_store / "runs.sqlite")
    con.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    con.commit()
    con.close()
    before = (old_store / "runs.sqlite").read_bytes()
    with pytest.raises(StoreError, match="schema version 999, newer than this measureflow"):
        Store(old_store, create=False)
    assert (old_store / "runs.sqlite").read_bytes() == before
