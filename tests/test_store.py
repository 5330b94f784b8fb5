"""The results store: round trips, atomicity, schema/damage errors, exports."""

import hashlib
import io
import sqlite3
import zipfile

import numpy as np
import pandas as pd
import pytest

import measureflow as mf
from measureflow.store import SCHEMA_VERSION, RunRecord, Store, StoreError


def _rec(run_id="r1", status="done", **kw):
    base = dict(run_id=run_id, task="t", config={"m": 4, "seed": 1, "model": {"width": 2.5}}, status=status,
                metrics={"objective": 0.125, "nested": {"a": 1}}, seed=1, started_at=1.0, finished_at=2.0,
                duration_s=1.0, versions={"measureflow": mf.__version__}, worker="host:1", sweep="s")
    base.update(kw)
    return RunRecord(**base)


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_record_and_arrays(tmp_path):
    arrays = {"history": np.linspace(0, 1, 7), "positions": np.arange(6.0).reshape(3, 2),
              "counts": np.arange(4, dtype=np.int32), "flags": np.array([True, False])}
    with Store(tmp_path / "s") as store:
        out = store.record(_rec(), arrays)
        assert out.recorded_at is not None and out.arrays == tuple(sorted(arrays))
        store.record(_rec("r2", status="failed", metrics={}, error="DivergenceError: boom"))
    with Store(tmp_path / "s", create=False) as store:
        assert len(store) == 2 and "r1" in store and "nope" not in store
        assert store.counts() == {"done": 1, "failed": 1}
        assert store.run_ids("done") == {"r1"} and store.run_ids() == {"r1", "r2"}
        rec = store.get("r1")
        assert rec.config == {"m": 4, "seed": 1, "model": {"width": 2.5}}
        assert rec.metrics == {"objective": 0.125, "nested": {"a": 1}}
        assert (rec.status, rec.seed, rec.worker, rec.sweep) == ("done", 1, "host:1", "s")
        loaded = store.load_arrays("r1")
        assert set(loaded) == set(arrays)
        for k, v in arrays.items():
            assert loaded[k].dtype == v.dtype and np.array_equal(loaded[k], v)
        assert store.get("r2").error == "DivergenceError: boom" and store.load_arrays("r2") == {}
        mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert sorted(p.name for p in (tmp_path / "s" / "arrays").iterdir()) == ["r1.npz"]  # no temporaries left


def test_rerecording_replaces_and_drops_stale_arrays(tmp_path):
    with Store(tmp_path) as store:
        store.record(_rec(), {"x": np.ones(3)})
        store.record(_rec(status="failed", metrics={}, error="E: again"))
        assert len(store) == 1 and store.get("r1").status == "failed"
        assert not (tmp_path / "arrays" / "r1.npz").exists()


@pytest.mark.parametrize("bad", [
    {"arrays": {"obj": np.array([{"a": 1}], dtype=object)}},   # would need pickle
    {"metrics": {"f": object()}},                                # not JSON
    {"arrays": {"bad/name": np.ones(2)}},
])
def test_invalid_run_leaves_no_trace(tmp_path, bad):
    with Store(tmp_path) as store:
        rec = _rec(metrics=bad.get("metrics", {"ok": 1.0}))
        with pytest.raises(mf.MeasureflowError):
            store.record(rec, bad.get("arrays", {"x": np.ones(2)}))
        assert len(store) == 0
    assert list((tmp_path / "arrays").iterdir()) == []


def test_arrays_load_without_pickle(tmp_path):
    """A tampered array file holding a pickled object array is refused, not unpickled."""
    with Store(tmp_path) as store:
        store.record(_rec(), {"x": np.ones(2)})
        buf = io.BytesIO()
        np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
        with zipfile.ZipFile(tmp_path / "arrays" / "r1.npz", "w") as z:
            z.writestr("x.npy", buf.getvalue())
        with pytest.raises(ValueError, match="allow_pickle"):
            store.load_arrays("r1")


def test_newer_schema_is_refused_untouched(tmp_path):
    Store(tmp_path).close()
    db = tmp_path / "runs.sqlite"
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    con.commit()
    con.close()
    before = _digest(db)
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade measureflow"):
        Store(tmp_path)
    assert isinstance(StoreError("x"), mf.ValidationError)
    assert _digest(db) == before


def test_non_sqlite_file_is_refused_untouched(tmp_path):
    db = tmp_path / "runs.sqlite"
    db.write_bytes(b"this is not a database, but someone's notes\n" * 20)
    before = _digest(db)
    with pytest.raises(StoreError, match="not an SQLite database"):
        Store(tmp_path)
    assert _digest(db) == before


def test_damaged_pages_are_detected(tmp_path):
    with Store(tmp_path) as store:
        for i in range(300):  # several pages of records
            store.record(_rec(f"r{i}", config={"i": i, "pad": "x" * 200}))
    db = tmp_path / "runs.sqlite"
    raw = bytearray(db.read_bytes())
    assert len(raw) > 8 * 4096
    raw[2 * 4096:6 * 4096] = np.random.default_rng(0).integers(0, 256, 4 * 4096, dtype=np.uint8).tobytes()
    db.write_bytes(bytes(raw))
    before = _digest(db)
    with pytest.raises(StoreError, match="damaged"):
        Store(tmp_path)
    assert _digest(db) == before


def test_foreign_sqlite_database_is_refused(tmp_path):
    con = sqlite3.connect(tmp_path / "runs.sqlite")
    con.execute("CREATE TABLE customers (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not a measureflow results store"):
        Store(tmp_path)


def test_missing_store_when_reading(tmp_path):
    with pytest.raises(StoreError, match="no results store"):
        Store(tmp_path / "nothing", create=False)
    assert not (tmp_path / "nothing").exists()


def test_export_csv_and_parquet(tmp_path):
    with Store(tmp_path / "s") as store:
        store.record(_rec("a", metrics={"objective": 0.5, "m": 99, "nested": {"a": 1}}))  # metric "m" clashes with config "m"
        store.record(_rec("b", status="failed", metrics={}, error="DivergenceError: diverged at iteration 3",
                          config={"m": 8, "seed": 2, "model": {"width": 1.0}}))
        csv = store.export(tmp_path / "r.csv")
        df = pd.read_csv(csv)
        assert list(df["run_id"]) == ["a", "b"] and list(df["status"]) == ["done", "failed"]
        assert list(df["m"]) == [4, 8] and list(df["model.width"]) == [2.5, 1.0]
        assert df.loc[0, "objective"] == 0.5 and df.loc[0, "metrics.m"] == 99
        assert df.loc[0, "nested.a"] == 1 and np.isnan(df.loc[1, "objective"])
        assert df.loc[1, "error"].startswith("DivergenceError")
        assert df.loc[0, "version.measureflow"] == mf.__version__
        pq = store.export(tmp_path / "r.parquet")
        back = pd.read_parquet(pq)
        pd.testing.assert_frame_equal(back.reset_index(drop=True), store.to_dataframe(), check_dtype=False)
        only_failed = store.to_dataframe("failed")
        assert list(only_failed["run_id"]) == ["b"]
        with pytest.raises(mf.ValidationError, match="format"):
            store.export(tmp_path / "r.xlsx")


def test_stale_temporaries_are_cleaned(tmp_path):
    import os
    import socket

    with Store(tmp_path) as store:
        dead = tmp_path / "arrays" / f".tmp-999999999@{socket.gethostname()}@ab@x.npz"
        live = tmp_path / "arrays" / f".tmp-{os.getpid()}@{socket.gethostname()}@cd@y.npz"
        dead.write_bytes(b"partial")
        live.write_bytes(b"in progress")
        assert store.remove_stale_temporaries() == 1
        assert not dead.exists() and live.exists()
