"""Results on disk: one SQLite database of run records plus one ``.npz`` file per run.

Layout of a store directory::

    DIR/runs.sqlite          run records (WAL mode), a ``meta`` table with the schema version
    DIR/arrays/<run_id>.npz  the run's arrays (numeric only; loaded with allow_pickle=False)

Crash safety: a run's arrays are written to a temporary file and renamed into place
(``os.replace`` is atomic), then its record is committed in one transaction. A process
killed at any point leaves either the complete run or no record of it (at worst an orphan
array file, overwritten when the run is redone). Nothing is ever pickled.

A database written by a newer schema, a damaged file, or a file that is not a measureflow
store raises :class:`StoreError` and is left untouched.

Several clients on one store: a ``leases`` table holds, per run being computed, its
holder (``host:pid:token``) and an expiry time. :meth:`Store.claim` takes runs that are
neither recorded nor leased by a live holder (an expired lease is taken over) in one
``BEGIN IMMEDIATE`` transaction, so two clients never hold the same run;
:meth:`Store.renew` extends a holder's leases (the client's heartbeat) and
:meth:`Store.record` drops the run's lease in the transaction that stores it. The table
was added within schema version 1: a store written before it gets it when opened (an
older measureflow ignores it). SQLite's WAL mode needs every process on one host, so the
clients of a store must run on the machine that holds it (their workers need not).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import socket
import sqlite3
import threading
import time
import zipfile
from pathlib import Path
from typing import Iterable

import numpy as np

from ._version import __version__
from .errors import InputTypeError, ValidationError

__all__ = ["Store", "RunRecord", "Claim", "StoreError", "SCHEMA_VERSION", "canonical_json", "flatten"]

SCHEMA_VERSION = 1
DB_NAME = "runs.sqlite"
ARRAYS_DIR = "arrays"
STATUSES = ("done", "failed")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_RUN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_TMP_PREFIX = ".tmp-"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    run_id      TEXT PRIMARY KEY,
    task        TEXT NOT NULL,
    sweep       TEXT,
    status      TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    config      TEXT NOT NULL,
    metrics     TEXT NOT NULL,
    error       TEXT,
    traceback   TEXT,
    seed        INTEGER,
    started_at  REAL,
    finished_at REAL,
    duration_s  REAL,
    recorded_at REAL NOT NULL,
    versions    TEXT NOT NULL,
    worker      TEXT,
    arrays      TEXT NOT NULL
);
CREATE INDEX runs_status ON runs (status);
"""

# Added within schema version 1 (stores written before get it on open, see _add_leases).
_LEASES_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    run_id     TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    claimed_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_holder ON leases (holder);
"""


@dataclasses.dataclass(frozen=True)
class Claim:
    """What one :meth:`Store.claim` found among the ids it looked at (the first
    ``scanned`` of those it was given, in order): ``claimed`` (now leased to the caller;
    ``taken_over`` are those whose previous lease had expired), ``finished`` (recorded
    already) and ``busy`` (leased by another live holder)."""

    claimed: tuple = ()
    taken_over: tuple = ()
    finished: tuple = ()
    busy: tuple = ()
    scanned: int = 0


class StoreError(ValidationError):
    """The store cannot be used as asked (newer schema, damaged or foreign database file,
    missing store); nothing was modified."""


def canonical_json(obj) -> str:
    """JSON with sorted keys and no whitespace: equal configurations give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One finished run (``status`` "done" or "failed").

    ``config`` and ``metrics`` are JSON-ready dicts; times are Unix seconds;
    ``versions`` maps package names to the versions that computed the run; ``arrays`` are
    the names of the arrays stored for it (filled in by :meth:`Store.record`).
    """

    run_id: str
    task: str
    config: dict
    status: str
    metrics: dict = dataclasses.field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    seed: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration_s: float | None = None
    versions: dict = dataclasses.field(default_factory=dict)
    worker: str | None = None
    sweep: str | None = None
    recorded_at: float | None = None
    arrays: tuple = ()


class Store:
    """``Store(directory, create=True)``: open (or create) the results store in a directory.

    Any number of processes of one host may open, read and write it at once (SQLite WAL;
    each write is one transaction). Sweep clients sharing a store split its runs through
    leases (:meth:`claim`, :meth:`renew`, :meth:`release`); workers never open it. Use as
    a context manager or call :meth:`close`; one ``Store`` object belongs to one thread.
    """

    def __init__(self, directory, *, create: bool = True):
        if not isinstance(directory, (str, os.PathLike)):
            raise InputTypeError(f"directory must be a path, got {type(directory).__name__}")
        self.directory = Path(directory)
        self.db_path = self.directory / DB_NAME
        self.arrays_dir = self.directory / ARRAYS_DIR
        if self.directory.exists() and not self.directory.is_dir():
            raise StoreError(f"{self.directory} exists and is not a directory")
        exists = self.db_path.exists() and self.db_path.stat().st_size > 0
        if not exists and not create:
            raise StoreError(f"no results store in {self.directory} (expected {self.db_path})")
        self._key = os.path.realpath(self.db_path)
        if exists and not _opened(self._key, 0):
            _check_header(self.db_path)
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.arrays_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.db_path, timeout=60.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the results database {self.db_path}: {exc}") from None
        try:
            if exists:
                self._check_existing()
            else:
                self._create()
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a committed run survives a killed process (not a power cut).
            self._db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"the results database {self.db_path} is damaged or not a measureflow store "
                             f"({exc}); it was left untouched") from None
        except BaseException:
            self._db.close()
            raise
        _opened(self._key, +1)
        self._closed = False

    # -- opening -----------------------------------------------------------------------
    def _create(self):
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables:  # someone created it between our check and now
                db.execute("ROLLBACK")
                self._check_existing()
                return
            for stmt in filter(str.strip, (_SCHEMA + _LEASES_SCHEMA).split(";")):
                db.execute(stmt)
            db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
                ("schema_version", str(SCHEMA_VERSION)), ("created_with", f"measureflow {__version__}"),
                ("created_at", repr(time.time()))])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _check_existing(self):
        db = self._db
        check = [r[0] for r in db.execute("PRAGMA quick_check")]
        if check != ["ok"]:
            raise StoreError(f"the results database {self.db_path} is damaged (SQLite quick_check: "
                             f"{'; '.join(map(str, check[:3]))}); it was left untouched — restore it from a "
                             "backup or start a new store in another directory")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            raise StoreError(f"{self.db_path} is an SQLite database but not a measureflow results store "
                             f"(tables: {', '.join(sorted(tables)) or 'none'}); it was left untouched")
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        try:
            version = int(row[0])
        except (TypeError, ValueError):
            raise StoreError(f"{self.db_path} has no valid schema version in its meta table "
                             f"({row!r}); it was left untouched") from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the results store {self.directory} was written with store schema version {version}, newer "
                f"than this measureflow {__version__} reads (version {SCHEMA_VERSION}); upgrade measureflow. "
                "The store was left untouched")
        if version < SCHEMA_VERSION or "runs" not in tables:
            raise StoreError(f"the results store {self.directory} has schema version {version} and tables "
                             f"{sorted(tables)}, which this measureflow cannot read; it was left untouched")
        if "leases" not in tables:
            self._add_leases()

    def _add_leases(self):
        """Migration within schema version 1: a store written before leases existed gets
        the (empty) table; its runs are untouched. A store this process may not write
        stays as it is (readable; claims need the table)."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "readonly" in str(exc) or "read-only" in str(exc):
                return
            raise
        try:
            for stmt in filter(str.strip, _LEASES_SCHEMA.split(";")):
                db.execute(stmt)
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('leases_added_with', ?)",
                       (f"measureflow {__version__}",))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def close(self):
        if not self._closed:
            self._closed = True
            self._db.close()
            _opened(self._key, -1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- writing -----------------------------------------------------------------------
    def record(self, record: RunRecord, arrays: dict | None = None) -> RunRecord:
        """Store a finished run: arrays first (temporary file, then an atomic rename), then
        its record in one transaction. Replaces an earlier record of the same run id."""
        if not isinstance(record, RunRecord):
            raise InputTypeError(f"record must be a RunRecord, got {type(record).__name__}")
        if not isinstance(record.run_id, str) or not _RUN_ID.match(record.run_id):
            raise ValidationError(f"run_id={record.run_id!r} must be 1-128 letters, digits, '_', '-', '.'")
        if record.status not in STATUSES:
            raise ValidationError(f"status={record.status!r} is not one of {', '.join(map(repr, STATUSES))}")
        arrays = {} if arrays is None else arrays
        names = tuple(sorted(arrays))
        payload = {n: _numeric_array(n, a) for n, a in arrays.items()}
        config_json = _to_json("config", record.config)
        metrics_json = _to_json("metrics", record.metrics)
        versions_json = _to_json("versions", record.versions)
        target = self.arrays_dir / f"{record.run_id}.npz"
        if payload:
            self.arrays_dir.mkdir(parents=True, exist_ok=True)
            _atomic_write(target, lambda f: np.savez(f, **payload))
        recorded_at = time.time()
        row = (record.run_id, record.task, record.sweep, record.status, config_json, metrics_json,
               record.error, record.traceback, record.seed, record.started_at, record.finished_at,
               record.duration_s, recorded_at, versions_json, record.worker, json.dumps(list(names)))
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT OR REPLACE INTO runs VALUES (" + ",".join("?" * len(row)) + ")", row)
            db.execute("DELETE FROM leases WHERE run_id=?", (record.run_id,))  # recorded: no longer leased
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if not payload and target.exists():  # a redone run without arrays: drop stale ones
            target.unlink()
        return dataclasses.replace(record, recorded_at=recorded_at, arrays=names)

    # -- leases (several clients on one store) -------------------------------------------
    def claim(self, run_ids: Iterable[str], holder: str, *, duration: float, limit: int,
              redo_failed_before: float | None = None, now: float | None = None) -> Claim:
        """Lease to ``holder`` up to ``limit`` of ``run_ids`` (looked at in order) that are
        not recorded and not leased by another holder whose lease is still running at
        ``now`` (default: the current time); each lease runs until ``now + duration``.
        A run recorded as failed before ``redo_failed_before`` counts as not recorded (to
        redo failed runs once, not after another client redid them). One ``BEGIN
        IMMEDIATE`` transaction, so concurrent claims never lease a run twice."""
        if not isinstance(holder, str) or not holder:
            raise ValidationError(f"holder={holder!r} must be a non-empty string")
        if not (isinstance(duration, (int, float)) and duration > 0):
            raise ValidationError(f"duration={duration!r} must be a positive number of seconds")
        now = time.time() if now is None else now
        claimed, taken, finished, busy = [], [], [], []
        scanned = 0
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for rid in run_ids:
                if len(claimed) >= limit:
                    break
                scanned += 1
                row = db.execute("SELECT status, recorded_at FROM runs WHERE run_id=?", (rid,)).fetchone()
                if row is not None and not (redo_failed_before is not None and row[0] == "failed"
                                            and row[1] < redo_failed_before):
                    finished.append(rid)
                    continue
                lease = db.execute("SELECT holder, expires_at FROM leases WHERE run_id=?", (rid,)).fetchone()
                if lease is not None and lease[0] != holder:
                    if lease[1] > now:
                        busy.append(rid)
                        continue
                    taken.append(rid)
                db.execute("INSERT OR REPLACE INTO leases (run_id, holder, claimed_at, expires_at) VALUES (?, ?, ?, ?)",
                           (rid, holder, now, now + duration))
                claimed.append(rid)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return Claim(tuple(claimed), tuple(taken), tuple(finished), tuple(busy), scanned)

    def renew(self, holder: str, *, duration: float, now: float | None = None) -> set:
        """Extend every lease of ``holder`` to ``now + duration``; returns the ids it still
        holds (a lease that expired and was taken over by another client is gone)."""
        now = time.time() if now is None else now
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("UPDATE leases SET expires_at=? WHERE holder=?", (now + duration, holder))
            held = {r[0] for r in db.execute("SELECT run_id FROM leases WHERE holder=?", (holder,))}
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return held

    def release(self, holder: str, run_ids: Iterable[str] | None = None) -> int:
        """Drop the leases of ``holder`` (all of them, or only those of ``run_ids``) so that
        other clients may take those runs at once; returns how many were dropped."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if run_ids is None:
                n = db.execute("DELETE FROM leases WHERE holder=?", (holder,)).rowcount
            else:
                n = sum(db.execute("DELETE FROM leases WHERE holder=? AND run_id=?", (holder, rid)).rowcount
                        for rid in run_ids)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return n

    def leases(self) -> dict:
        """The current leases: {run_id: (holder, expires_at)} (expired ones included)."""
        return {r[0]: (r[1], r[2]) for r in self._db.execute("SELECT run_id, holder, expires_at FROM leases")}

    def remove_stale_temporaries(self) -> int:
        """Delete temporary array files left by killed processes of this host; returns how
        many. (Files of live processes or other hosts are kept.)"""
        host = socket.gethostname()
        removed = 0
        if not self.arrays_dir.is_dir():
            return 0
        for path in self.arrays_dir.glob(_TMP_PREFIX + "*"):
            parts = path.name[len(_TMP_PREFIX):].split("@")
            try:
                pid, tmp_host = int(parts[0]), parts[1]
            except (ValueError, IndexError):
                continue
            if tmp_host == host and not _pid_alive(pid):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    # -- reading -----------------------------------------------------------------------
    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def __contains__(self, run_id) -> bool:
        return self._db.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone() is not None

    def run_ids(self, status: str | Iterable[str] | None = None) -> set:
        """Ids of recorded runs, optionally only those with the given status(es)."""
        statuses = _statuses(status)
        q = f"SELECT run_id FROM runs WHERE status IN ({','.join('?' * len(statuses))})"
        return {r[0] for r in self._db.execute(q, statuses)}

    def counts(self) -> dict:
        """Number of runs per status."""
        out = {s: 0 for s in STATUSES}
        out.update(dict(self._db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()))
        return out

    def get(self, run_id: str) -> RunRecord:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise ValidationError(f"run_id={run_id!r} is not in the store {self.directory}")
        return _from_row(row)

    def records(self, status: str | Iterable[str] | None = None) -> list[RunRecord]:
        """All run records (in order of recording), optionally filtered by status."""
        statuses = _statuses(status)
        q = f"SELECT {_COLUMNS} FROM runs WHERE status IN ({','.join('?' * len(statuses))}) ORDER BY recorded_at, run_id"
        return [_from_row(r) for r in self._db.execute(q, statuses)]

    def load_arrays(self, run_id: str) -> dict:
        """The arrays of a run as a dict of NumPy arrays (empty if it stored none)."""
        rec = self.get(run_id)
        if not rec.arrays:
            return {}
        path = self.arrays_dir / f"{run_id}.npz"
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except FileNotFoundError:
            raise StoreError(f"the arrays of run {run_id} are missing ({path})") from None
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            # an object array (it would need pickle, refused) or a damaged file
            raise StoreError(f"the arrays of run {run_id} in {path} cannot be read safely: {exc}") from None

    def to_dataframe(self, status: str | Iterable[str] | None = None):
        """A pandas DataFrame, one row per run: ``run_id``, ``status``, ``task``, ``sweep``,
        the flattened configuration (nested keys joined by '.'), the flattened metrics,
        then ``error``, timings, ``worker`` and the package versions (``version.<name>``).
        A metric whose name clashes with another column is prefixed ``metrics.``."""
        import pandas as pd

        rows = []
        for rec in self.records(status):
            row = {"run_id": rec.run_id, "status": rec.status, "task": rec.task, "sweep": rec.sweep}
            cfg = {k if k not in _RESERVED else f"config.{k}": v for k, v in flatten(rec.config).items()}
            row.update(cfg)
            for k, v in flatten(rec.metrics).items():
                row[k if k not in _RESERVED and k not in cfg else f"metrics.{k}"] = v
            row.update({"error": rec.error, "started_at": rec.started_at, "finished_at": rec.finished_at,
                        "duration_s": rec.duration_s, "recorded_at": rec.recorded_at, "worker": rec.worker})
            row.update({f"version.{k}": v for k, v in rec.versions.items()})
            rows.append(row)
        if not rows:
            return pd.DataFrame(columns=["run_id", "status", "task", "sweep", "error"])
        return pd.DataFrame(rows)

    def export(self, path, format: str | None = None, *, status=None) -> Path:
        """Write the results table to ``path`` as "csv" or "parquet" (default: from the
        suffix). The file is written to a temporary name and renamed."""
        path = Path(path)
        fmt = format or path.suffix.lstrip(".").lower()
        if fmt not in ("csv", "parquet"):
            raise ValidationError(f"format={fmt!r} is not one of 'csv', 'parquet'")
        df = self.to_dataframe(status)
        if fmt == "csv":
            _atomic_write(path, lambda f: f.write(df.to_csv(index=False).encode()))
        else:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise ValidationError("Parquet export needs pyarrow: pip install 'measureflow[parquet]'") from None
            # Columns mixing types (e.g. a metric that is a list in one run) become JSON text.
            for col in df.columns:
                kinds = {type(v) for v in df[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
                if len(kinds) > 1 and not kinds <= {int, float} or kinds & {list, dict}:
                    df[col] = [None if v is None else json.dumps(v) if isinstance(v, (list, dict)) else str(v)
                               for v in df[col]]
            _atomic_write(path, lambda f: df.to_parquet(f, index=False))
        return path


_RESERVED = {"run_id", "status", "task", "sweep", "error", "started_at", "finished_at", "duration_s",
             "recorded_at", "worker"}
_COLUMNS = ("run_id, task, config, status, metrics, error, traceback, seed, started_at, finished_at, "
            "duration_s, versions, worker, sweep, recorded_at, arrays")


def _from_row(row) -> RunRecord:
    (run_id, task, config, status, metrics, error, tb, seed, started, finished, duration, versions,
     worker, sweep, recorded, arrays) = row
    return RunRecord(run_id=run_id, task=task, config=json.loads(config), status=status,
                     metrics=json.loads(metrics), error=error, traceback=tb, seed=seed, started_at=started,
                     finished_at=finished, duration_s=duration, versions=json.loads(versions), worker=worker,
                     sweep=sweep, recorded_at=recorded, arrays=tuple(json.loads(arrays)))


def flatten(obj: dict, prefix: str = "") -> dict:
    """Nested dicts to one level with keys joined by '.'; lists become JSON text."""
    out = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple, dict)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def _statuses(status) -> tuple:
    if status is None:
        return STATUSES
    statuses = (status,) if isinstance(status, str) else tuple(status)
    for s in statuses:
        if s not in STATUSES:
            raise ValidationError(f"status={s!r} is not one of {', '.join(map(repr, STATUSES))}")
    return statuses


def _to_json(name: str, obj) -> str:
    if not isinstance(obj, dict):
        raise InputTypeError(f"{name} must be a dict, got {type(obj).__name__}")
    try:
        return canonical_json(obj)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(f"{name} is not JSON-serializable: {exc}") from None


def _numeric_array(name, value) -> np.ndarray:
    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_.-]+$", name):
        raise ValidationError(f"array name {name!r} must be letters, digits, '_', '-', '.'")
    arr = np.asarray(value)
    if arr.dtype.kind not in "biufcSU":  # object / void arrays would need pickle
        raise InputTypeError(f"array {name!r} has dtype {arr.dtype}; the store keeps numeric arrays only (no pickle)")
    return arr


def _atomic_write(target: Path, write) -> None:
    """``write(file)`` into a temporary file next to ``target``, flush it to disk, and
    rename it over ``target`` (atomic on POSIX and Windows)."""
    tmp = target.with_name(f"{_TMP_PREFIX}{os.getpid()}@{socket.gethostname()}@{os.urandom(4).hex()}@{target.name}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_OPEN_DBS: dict = {}
_OPEN_LOCK = threading.Lock()


def _opened(key: str, change: int) -> int:
    """How many Stores of this process have the database ``key`` open (after adding
    ``change``). While one has, the file must not be opened outside SQLite: closing any
    descriptor of a file drops all of the process's POSIX locks on it, SQLite's included,
    and another process could then checkpoint and delete the WAL under us."""
    with _OPEN_LOCK:
        n = _OPEN_DBS.get(key, 0) + change
        if n > 0:
            _OPEN_DBS[key] = n
        else:
            _OPEN_DBS.pop(key, None)
        return n


def _check_header(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(len(_SQLITE_MAGIC))
    if head != _SQLITE_MAGIC:
        raise StoreError(f"{path} is not an SQLite database (damaged or a foreign file); refusing to use or "
                         "overwrite it — move it away or choose another directory")


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there: assume alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
