"""Store corners: a Parquet export turns list- or mixed-type metric columns into JSON or
text (a list in every run included); stray files in the arrays folder that do not look like
this store's temporaries are left alone."""

import json
import socket

import pandas as pd

import measureflow as mf
from measureflow.store import RunRecord, Store


def _rec(run_id, metrics):
    return RunRecord(run_id=run_id, task="t", config={"seed": 1}, status="done", metrics=metrics, seed=1,
                     started_at=1.0, finished_at=2.0, duration_s=1.0, versions={"measureflow": mf.__version__},
                     worker="host:1", sweep="s")


def test_parquet_export_writes_list_and_mixed_columns_as_text(tmp_path):
    with Store(tmp_path / "s") as store:
        store.record(_rec("a", {"curve": [1.0, 0.5], "label": "fast", "objective": 0.5}))
        store.record(_rec("b", {"curve": [2.0, 0.25], "label": 3.0, "objective": 0.25}))
        back = pd.read_parquet(store.export(tmp_path / "r.parquet"))
    assert list(back["curve"]) == [json.dumps([1.0, 0.5]), json.dumps([2.0, 0.25])]
    assert list(back["label"]) == ["fast", "3.0"]
    assert list(back["objective"]) == [0.5, 0.25]  # one numeric kind: kept as numbers


def test_stale_temporary_cleanup_skips_names_it_cannot_parse(tmp_path):
    with Store(tmp_path) as store:
        odd = [tmp_path / "arrays" / f".tmp-notapid@{socket.gethostname()}@x.npz",  # pid not a number
               tmp_path / "arrays" / ".tmp-123"]  # a pid but no host part
        for p in odd:
            p.write_bytes(b"?")
        assert store.remove_stale_temporaries() == 0
        assert all(p.exists() for p in odd)


def test_a_failed_insert_is_rolled_back_and_the_store_stays_usable(tmp_path):
    import dataclasses
    import sqlite3

    import pytest

    with Store(tmp_path) as store:
        bad = dataclasses.replace(_rec("bad", {"objective": 1.0}), seed=object())  # SQLite cannot bind it
        with pytest.raises(sqlite3.ProgrammingError, match="binding parameter"):
            store.record(bad)
        assert not store._db.in_transaction
        store.record(_rec("good", {"objective": 0.5}))
        assert store.run_ids() == {"good"}
