"""Sweeps: a base run configuration × grid axes, run on worker processes or a Dask
cluster, every finished run kept in a :class:`~measureflow.store.Store`.

Spec (YAML or TOML)::

    name: quick                 # optional (default: the file name)
    task: custom_teacher        # a registered task (experiments.tasks)
    imports: [my_tasks]         # optional: modules that register more tasks
    retries: 1                  # optional: extra attempts after a worker process dies
    base: {iterations: 2000, n: 200}
    grid:                       # Cartesian product of the axes ("a.b" sets a nested key);
      m: [4, 16, 64]            # a list of such mappings is the union of their products
      seed: [0, 1, 2]

Each run is identified by ``run_id`` = a hash of the canonical JSON of (task, validated
configuration with defaults filled in): rerunning a sweep skips the runs already in the
store and redoes the others, so a crash costs only the runs in flight. Only clients
write the store; workers return (metrics, arrays) and never touch it.

Several clients (``measureflow sweep`` processes of one host) may run the same sweep on
one store and split its runs: a client leases each run in the store before computing it
(:meth:`~measureflow.store.Store.claim`, a few at a time: no more than its free workers),
renews its leases from a heartbeat thread every ``lease_s / 4`` seconds, and the lease
goes with the run's record. A run leased by a client that died or stalled for ``lease_s``
seconds is taken over by another. A client whose remaining runs are all leased by others
polls until they are recorded, then returns; :class:`SweepSummary` tells the runs it
computed from those recorded by others.

The number of runs is counted from the axis lengths (product per mapping, summed over
the mappings) before anything is expanded: a grid of more than ``max_runs`` runs is
refused at once.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import copy
import dataclasses
import functools
import hashlib
import importlib
import itertools
import math
import multiprocessing
import os
import platform
import signal
import socket
import sqlite3
import threading
import time
import tomllib
import traceback as _traceback
from collections import deque
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from .._version import __version__
from ..errors import MeasureflowError, ValidationError
from ..store import RunRecord, Store, canonical_json
from ..validation import check_int
from . import tasks as _tasks
from .tasks import describe_pydantic_error, get_task

__all__ = ["SweepSpec", "Run", "SweepSummary", "load_spec", "expand", "count_runs", "run_id", "run_sweep",
           "execute_run", "DEFAULT_MAX_RUNS"]

DEFAULT_MAX_RUNS = 100_000
_PLAN_PROGRESS_MIN = 2_000  # grids at least this large show a planning progress bar


class SweepSpec(BaseModel):
    """A sweep: ``task``, ``base`` configuration, ``grid`` axes (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    task: str
    name: str = "sweep"
    imports: list[str] = Field(default_factory=list)
    retries: int = Field(default=1, ge=0)
    base: dict[str, Any] = Field(default_factory=dict)
    grid: Any = Field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a sweep: its id, task name and validated configuration."""

    run_id: str
    task: str
    config: dict


@dataclasses.dataclass(frozen=True)
class SweepSummary:
    """What a call to :func:`run_sweep` did: runs in the sweep, skipped (already in the
    store when it started), ``done`` / ``failed`` (computed by this call), its wall time
    in seconds, ``by_others`` (recorded meanwhile by other clients of the store) and
    ``taken_over`` (of this call's runs, those whose expired lease it took over from a
    client that had died or stalled)."""

    total: int
    skipped: int
    done: int
    failed: int
    wall_time: float
    out: Path
    by_others: int = 0
    taken_over: int = 0

    @property
    def remaining(self) -> int:
        return self.total - self.skipped - self.done - self.failed - self.by_others


# ---------------------------------------------------------------------------------------
# Specs and grids
# ---------------------------------------------------------------------------------------

def load_spec(spec) -> SweepSpec:
    """A validated :class:`SweepSpec` from a YAML/TOML file, a dict or a SweepSpec.
    Errors name the file and the key path (``grid.m``, ``base.step``...)."""
    if isinstance(spec, SweepSpec):
        return spec
    source = "sweep spec"
    name = None
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        source, name = str(path), path.stem
        if not path.is_file():
            raise ValidationError(f"sweep spec {path} does not exist")
        text = path.read_text()
        try:
            if path.suffix.lower() == ".toml":
                data = tomllib.loads(text)
            elif path.suffix.lower() in (".yaml", ".yml"):
                data = yaml.safe_load(text)
            else:
                raise ValidationError(f"sweep spec {path}: unknown format {path.suffix!r} (use .yaml, .yml or .toml)")
        except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
            raise ValidationError(f"{source}: not valid {path.suffix.lstrip('.').upper()}: {exc}") from None
    else:
        data = spec
    if not isinstance(data, dict):
        raise ValidationError(f"{source}: the top level must be a mapping of keys (task, base, grid...), "
                              f"got {type(data).__name__}")
    if name is not None and "name" not in data:
        data = {**data, "name": name}
    try:
        parsed = SweepSpec.model_validate(data)
    except pydantic.ValidationError as exc:
        extra = ""
        if any(e["type"] == "extra_forbidden" for e in exc.errors()):
            extra = f" (valid keys: {', '.join(SweepSpec.model_fields)})"
        raise ValidationError(f"{source}: {describe_pydantic_error(exc)}{extra}") from None
    grids = _normalize_grid(parsed.grid, source)
    return parsed.model_copy(update={"grid": grids})


def _normalize_grid(grid, source) -> tuple:
    """``grid`` as a tuple of {axis: values} mappings, checked key by key."""
    single = isinstance(grid, dict)
    if not single and not isinstance(grid, (list, tuple)):
        raise ValidationError(f"{source}: grid must be a mapping of axis -> list of values, or a list of "
                              f"such mappings, got {type(grid).__name__}")
    out = []
    for i, g in enumerate([grid] if single else grid):
        where = "grid" if single else f"grid[{i}]"
        if not isinstance(g, dict):
            raise ValidationError(f"{source}: {where} must be a mapping of axis -> list of values, got {g!r}")
        for axis, values in g.items():
            if not isinstance(axis, str) or not axis or any(not p for p in axis.split(".")):
                raise ValidationError(f"{source}: {where} has an invalid axis name {axis!r}")
            if not isinstance(values, (list, tuple)) or len(values) == 0:
                raise ValidationError(f"{source}: {where}.{axis} must be a non-empty list of values, got {values!r}")
        out.append({k: list(v) for k, v in g.items()})
    return tuple(out)


def run_id(task: str, config: dict) -> str:
    """Stable id of a run: the first 16 hex digits of the SHA-256 of the canonical JSON
    of {"task": task, "config": config} (keys sorted, no whitespace)."""
    text = canonical_json({"task": task, "config": config})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _set_path(cfg: dict, dotted: str, value):
    *parents, leaf = dotted.split(".")
    node = cfg
    for p in parents:
        child = node.get(p)
        if not isinstance(child, dict):
            child = {} if child is None else child
            if not isinstance(child, dict):
                raise ValidationError(f"grid axis {dotted!r}: {p!r} is not a mapping in the base configuration")
            node[p] = child
        node = child
    node[leaf] = value


def count_runs(spec) -> int:
    """The number of grid points of a sweep, Σ over its mappings of Π of their axis
    lengths (1 for no grid), from the lengths alone: nothing is expanded. An upper bound
    on ``len(expand(spec))``, which drops duplicate configurations."""
    spec = load_spec(spec)
    return sum(math.prod(len(v) for v in grid.values()) for grid in (spec.grid or ({},)))


def expand(spec) -> list[Run]:
    """All runs of a sweep, in grid order, duplicates removed. Every configuration is
    validated by its task first: the error names the run and the key (``base.x`` or
    ``grid.x``)."""
    return list(_iter_runs(load_spec(spec)))


def _iter_runs(spec: SweepSpec, on_point=None):
    """The runs of ``spec`` one by one (see :func:`expand`); ``on_point()`` is called
    after each grid point (for progress)."""
    _import_modules(spec.imports)
    task = get_task(spec.task)
    seen = set()
    for gi, grid in enumerate(spec.grid or ({},)):
        axes = list(grid)
        gname = "grid" if len(spec.grid) <= 1 else f"grid[{gi}]"
        for values in itertools.product(*(grid[a] for a in axes)):
            cfg = copy.deepcopy(spec.base)
            for axis, value in zip(axes, values):
                _set_path(cfg, axis, copy.deepcopy(value))
            point = dict(zip(axes, values))

            def locate(loc, axes=axes, gname=gname):
                dotted = ".".join(str(p) for p in loc)
                for a in axes:
                    if dotted == a or dotted.startswith(a + "."):
                        return f"{gname}.{dotted}"
                return f"base.{dotted}" if dotted else "base"

            try:
                valid = task.validate(cfg, locate=locate)
            except ValidationError as exc:
                at = f" at {_show_point(point)}" if point else ""
                raise ValidationError(f"sweep {spec.name!r}{at}: {exc}") from None
            rid = run_id(task.name, valid)
            if on_point is not None:
                on_point()
            if rid not in seen:
                seen.add(rid)
                yield Run(rid, task.name, valid)


def _show_point(point: dict) -> str:
    return "{" + ", ".join(f"{k}={v!r}" for k, v in point.items()) + "}"


def _import_modules(modules) -> None:
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise ValidationError(f"imports: cannot import {mod!r} ({exc}); it must be importable on the "
                                  "client and on every worker (installed, or on PYTHONPATH)") from None


# ---------------------------------------------------------------------------------------
# The worker side
# ---------------------------------------------------------------------------------------

def _versions() -> dict:
    import jax
    import numpy as np

    return {"measureflow": __version__, "jax": jax.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def execute_run(task: str, config: dict, imports: tuple = (), cache_dir: str | None = None) -> dict:
    """Run one task in the current (worker) process and return its outcome as a dict:
    ``status`` ("done"/"failed"), ``metrics``, ``arrays``, ``error``, ``traceback``, times,
    ``versions``, ``worker``. A task's exception becomes a failed outcome; nothing is
    written here. Importing this module imports measureflow (float64 on).

    ``cache_dir``: JAX's persistent compilation cache for this worker (shared by the
    workers of a sweep, so each shape is compiled once, not once per worker), unless the
    process already set one."""
    started = time.time()
    t0 = time.perf_counter()
    out = {"status": "done", "metrics": {}, "arrays": {}, "error": None, "traceback": None}
    try:
        _use_compile_cache(cache_dir)
        _import_modules(imports)
        out["metrics"], out["arrays"] = _tasks.run_task(task, config)
    except Exception as exc:  # noqa: BLE001 - a failing run is data, recorded as failed
        out.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=_traceback.format_exc(),
                   metrics={}, arrays={})
    out.update(started_at=started, finished_at=time.time(), duration_s=time.perf_counter() - t0,
               versions=_versions(), worker=f"{socket.gethostname()}:{os.getpid()}")
    return out


_CACHE_SET = False


def _use_compile_cache(cache_dir: str | None) -> None:
    global _CACHE_SET
    if cache_dir is None or _CACHE_SET:
        return
    _CACHE_SET = True
    import jax

    if jax.config.jax_compilation_cache_dir:  # the user's own choice wins
        return
    jax.config.update("jax_compilation_cache_dir", str(cache_dir))
    # The compiled loops of small runs take well under JAX's default 1 s threshold.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _init_local_worker(parent_pid: int, imports: tuple) -> None:
    """Process-pool worker setup: Ctrl-C is the client's business, and a worker exits by
    itself when its client dies (even by SIGKILL), instead of running on as an orphan."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="measureflow-parent-watch", daemon=True).start()
    try:
        _import_modules(imports)
    except ValidationError:
        pass  # reported per run by execute_run


# ---------------------------------------------------------------------------------------
# The client side
# ---------------------------------------------------------------------------------------

class _Recorder:
    """Writes outcomes to the store and keeps the progress display current."""

    def __init__(self, store: Store, spec: SweepSpec, runs: dict, progress):
        self.store, self.spec, self.runs, self.progress = store, spec, runs, progress
        self.done = self.failed = 0

    def __call__(self, rid: str, outcome: dict):
        run = self.runs[rid]
        self.store.record(RunRecord(
            run_id=rid, task=run.task, config=run.config, status=outcome["status"],
            metrics=outcome.get("metrics") or {}, error=outcome.get("error"),
            traceback=outcome.get("traceback"), seed=_seed_of(run.config),
            started_at=outcome.get("started_at"), finished_at=outcome.get("finished_at"),
            duration_s=outcome.get("duration_s"), versions=outcome.get("versions") or {},
            worker=outcome.get("worker"), sweep=self.spec.name), outcome.get("arrays") or {})
        if outcome["status"] == "done":
            self.done += 1
        else:
            self.failed += 1
        self.progress(done=self.done, failed=self.failed)


_CLAIM_SCAN = 1000  # ids looked at per claim transaction (keeps other clients' waits short)


class _Claims:
    """This client's side of the store's leases: :meth:`take` leases up to ``n`` of the
    pending runs (the caller's free workers) and hands them out; runs leased by other
    live clients are looked at again every ``poll_s`` seconds, until they are recorded
    (counted in ``others``) or their lease expires (then taken over)."""

    def __init__(self, store: Store, runs: dict, pending: list, holder: str, *, lease_s: float,
                 poll_s: float, redo_failed_before: float | None, progress):
        self.store, self.runs, self.holder, self.progress = store, runs, holder, progress
        self.lease_s, self.poll_s, self.redo_failed_before = lease_s, poll_s, redo_failed_before
        self.queue = deque(r.run_id for r in pending)
        self.deferred: list[str] = []
        self.others = self.taken_over = 0
        self._next_look = 0.0

    @property
    def exhausted(self) -> bool:
        """Every pending run is handed out or recorded by another client."""
        return not self.queue and not self.deferred

    def take(self, n: int) -> list[Run]:
        if n <= 0:
            return []
        if not self.queue and self.deferred and time.monotonic() >= self._next_look:
            self.queue.extend(self.deferred)
            self.deferred.clear()
            self._next_look = time.monotonic() + self.poll_s
        claimed: list[str] = []
        while len(claimed) < n and self.queue:
            c = self.store.claim(list(itertools.islice(self.queue, _CLAIM_SCAN)), self.holder,
                                 duration=self.lease_s, limit=n - len(claimed),
                                 redo_failed_before=self.redo_failed_before)
            for _ in range(c.scanned):
                self.queue.popleft()
            self.deferred.extend(c.busy)
            self.taken_over += len(c.taken_over)
            claimed.extend(c.claimed)
            if c.finished:
                self.others += len(c.finished)
                self.progress(others=self.others)
        return [self.runs[rid] for rid in claimed]

    def idle(self):
        """Nothing can be claimed now: wait until the leased runs are worth another look."""
        time.sleep(min(self.poll_s, max(0.01, self._next_look - time.monotonic())))


class _Heartbeat:
    """A daemon thread renewing ``holder``'s leases every ``lease_s / 4`` seconds, on its
    own connection to the store (SQLite connections stay in their thread)."""

    def __init__(self, out, holder: str, lease_s: float):
        self.out, self.holder, self.lease_s = out, holder, lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="measureflow-lease-heartbeat", daemon=True)

    def _beat(self):
        with Store(self.out) as store:
            while not self._stop.wait(self.lease_s / 4):
                try:
                    store.renew(self.holder, duration=self.lease_s)
                except sqlite3.Error:
                    pass  # the store stayed locked past the connection's timeout: next beat

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=70.0)


def _seed_of(config: dict):
    seed = config.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _infra_failure(message: str) -> dict:
    now = time.time()
    return {"status": "failed", "error": message, "traceback": None, "started_at": None,
            "finished_at": now, "duration_s": None, "versions": {}, "worker": None}


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _run_serial(claims: _Claims, job, record):
    while not claims.exhausted:
        batch = claims.take(1)
        if not batch:
            claims.idle()
        for run in batch:
            record(run.run_id, job(run.task, run.config))


def _run_processes(claims: _Claims, job, record, workers: int, retries: int):
    """Fresh "spawn" worker processes (each imports measureflow anew: float64, no forked
    JAX state), each given a run as soon as it is free (claimed then, not before). A
    worker that dies (killed, out of memory, crashed) breaks the pool; the runs that were
    in flight are then redone one at a time in a single-worker pool, so that only the run
    that kills its worker is charged: it gets ``max(retries, 1)`` more attempts and is
    then recorded as failed."""
    while True:
        suspects = []
        with _pool(workers, job) as pool:
            futures: dict[cf.Future, Run] = {}
            while True:
                unsent = _submit(pool, job, futures, claims.take(workers - len(futures)))
                if not futures and not unsent:
                    if claims.exhausted:
                        break
                    claims.idle()
                    continue
                finished = set() if unsent else cf.wait(futures, timeout=claims.poll_s,
                                                         return_when=cf.FIRST_COMPLETED)[0]
                if unsent or any(isinstance(f.exception(), cf.process.BrokenProcessPool) for f in finished):
                    suspects.extend(unsent)  # claimed but refused by the broken pool: redone, not charged
                    for fut, run in futures.items():
                        if fut.done() and not isinstance(fut.exception(), cf.process.BrokenProcessPool):
                            _record_future(record, run, fut)
                        else:
                            suspects.append(run)
                    break
                for fut in finished:
                    _record_future(record, futures.pop(fut), fut)
        if not suspects:
            return
        _isolate(suspects, job, record, max(retries, 1))


def _submit(pool, job, futures: dict, runs: list) -> list:
    """Submit ``runs`` to ``pool`` (into ``futures``); returns those it refused because a
    worker died since the last wait (the pool is then broken)."""
    for i, run in enumerate(runs):
        try:
            futures[pool.submit(job, run.task, run.config)] = run
        except cf.process.BrokenProcessPool:
            return list(runs[i:])
    return []


def _record_future(record, run: Run, fut: cf.Future):
    exc = fut.exception()
    # execute_run catches the task's errors; what is left is e.g. a result that could
    # not be sent back from the worker.
    record(run.run_id, fut.result() if exc is None else _infra_failure(f"{type(exc).__name__}: {exc}"))


def _isolate(suspects: list[Run], job, record, attempts: int):
    """Run each suspect of a pool crash alone; a run whose worker dies ``attempts`` times
    is recorded as failed."""
    queue = [(run, 0) for run in suspects]
    while queue:
        with _pool(1, job) as pool:
            while queue:
                run, tries = queue[0]
                fut = pool.submit(job, run.task, run.config)
                try:
                    outcome = fut.result()
                except cf.process.BrokenProcessPool:
                    queue.pop(0)
                    if tries + 1 >= attempts:
                        record(run.run_id, _infra_failure(
                            f"WorkerDied: the worker process running this run died {tries + 2} time(s) "
                            "(killed, out of memory or crashed)"))
                    else:
                        queue.insert(0, (run, tries + 1))
                    break  # the pool is broken: start a fresh one
                except Exception as exc:  # noqa: BLE001 - see _record_future
                    outcome = _infra_failure(f"{type(exc).__name__}: {exc}")
                queue.pop(0)
                record(run.run_id, outcome)


class _pool:
    """A spawn-context process pool that, on any exception (Ctrl-C included), cancels
    queued runs and terminates its workers instead of waiting for them."""

    def __init__(self, workers: int, job):
        self.executor = cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_local_worker, initargs=(os.getpid(), job.keywords["imports"]))

    def __enter__(self):
        return self.executor

    def __exit__(self, exc_type, *rest):
        if exc_type is None:
            self.executor.shutdown(wait=True)
            return
        processes = list((getattr(self.executor, "_processes", None) or {}).values())
        self.executor.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            proc.terminate()


def _run_dask(claims: _Claims, job, record, client, retries: int, max_in_flight: int | None):
    """Runs go to the cluster as they are claimed: at most ``max_in_flight`` at a time
    (default: the cluster's worker threads now, at least 1)."""
    from distributed import wait
    from distributed.client import FutureCancelledError

    def window() -> int:
        if max_in_flight is not None:
            return max_in_flight
        return max(sum(client.nthreads().values()), 1)

    token = os.urandom(4).hex()
    futures = {}
    try:
        while True:
            for run in claims.take(window() - len(futures)):
                fut = client.submit(job, run.task, run.config, key=f"measureflow-{run.run_id}-{token}",
                                    pure=False, retries=retries)
                futures[fut.key] = (fut, run)
            if not futures:
                if claims.exhausted:
                    break
                claims.idle()
                continue
            try:
                finished, _ = wait([f for f, _ in futures.values()], timeout=claims.poll_s,
                                   return_when="FIRST_COMPLETED")
            except TimeoutError:
                continue
            except cf.CancelledError as exc:  # distributed's FuturesCancelledError
                raise MeasureflowError(f"lost the Dask cluster ({type(exc).__name__}: {exc}); the runs recorded "
                                       "so far are kept: rerun the sweep to resume") from None
            for fut in finished:
                _, run = futures.pop(fut.key)
                try:
                    outcome = fut.result()
                except (FutureCancelledError, OSError) as exc:
                    raise MeasureflowError(f"lost the Dask cluster ({type(exc).__name__}: {exc}); the runs "
                                           "recorded so far are kept: rerun the sweep to resume") from None
                except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: the run killed its workers
                    outcome = _infra_failure(f"{type(exc).__name__}: {exc}")
                record(run.run_id, outcome)
                fut.release()
    finally:
        for fut, _ in futures.values():
            fut.cancel()


def run_sweep(spec, out, *, workers: int | None = None, scheduler: str | None = None,
              dask_local: bool = False, client=None, retry_failed: bool = False,
              compile_cache: bool = True, progress: bool = True, max_runs: int = DEFAULT_MAX_RUNS,
              lease_s: float = 30.0, max_in_flight: int | None = None) -> SweepSummary:
    """Run every run of ``spec`` (a path, dict or :class:`SweepSpec`) that is not yet in the
    store at ``out``; return a :class:`SweepSummary`.

    Executors (one of):
      local processes  default; ``workers`` processes (default: the CPUs available;
                       ``workers=0`` runs in this process, for debugging)
      Dask             ``scheduler="tcp://host:8786"``, an existing ``client``, or
                       ``dask_local=True`` (a LocalCluster with ``workers`` processes)
    ``retry_failed`` redoes runs recorded as failed (by default they are kept, like done
    ones). A failing run is recorded as failed and the sweep goes on.
    ``compile_cache``: local worker processes (and ``dask_local`` workers) share JAX's
    persistent compilation cache in ``out/.jax-cache``; remote Dask workers use whatever
    ``JAX_COMPILATION_CACHE_DIR`` they have. The calling process (``workers=0``) is
    never reconfigured.

    Other clients may work on the same store at the same time (see the module docstring):
    ``lease_s`` is how long a client may go silent before its runs are taken over (its
    heartbeat renews them every ``lease_s / 4`` s). ``max_in_flight`` caps the runs given
    to a Dask cluster at once (default: its worker threads; raise it for an adaptive
    cluster that grows with its queue). A grid of more than ``max_runs`` runs is refused
    before anything is expanded.
    """
    t0 = time.perf_counter()
    started = time.time()
    spec = load_spec(spec)
    max_runs = check_int("max_runs", max_runs, minimum=1)
    if isinstance(lease_s, bool) or not isinstance(lease_s, (int, float)) or not lease_s > 0 or math.isinf(lease_s):
        raise ValidationError(f"lease_s={lease_s!r} must be a positive number of seconds")
    if max_in_flight is not None:
        max_in_flight = check_int("max_in_flight", max_in_flight, minimum=1)
    n_dask = sum(x is not None and x is not False for x in (scheduler, client, dask_local or None))
    if n_dask > 1:
        raise ValidationError("choose one Dask executor: scheduler=, client= or dask_local=True")
    if workers is not None:
        workers = check_int("workers", workers, minimum=0)
        if scheduler is not None or client is not None:
            raise ValidationError("workers= does not apply to an existing Dask cluster (scheduler=/client=); "
                                  "size the cluster itself")
        if dask_local and workers == 0:
            raise ValidationError("dask_local=True needs workers >= 1")
    n_points = count_runs(spec)
    if n_points > max_runs:
        raise ValidationError(f"sweep {spec.name!r}: its grid has {n_points} runs, more than max_runs={max_runs} "
                              "(--max-runs on the command line); raise that limit if you mean it, or split the grid")
    with _planning_display(spec.name, n_points, enabled=progress and n_points >= _PLAN_PROGRESS_MIN) as plan:
        runs = list(_iter_runs(spec, on_point=plan.advance))
        plan.stage("checking the store")
        with Store(out) as store:
            store.remove_stale_temporaries()
            keep = store.run_ids("done" if retry_failed else None)
        pending = [r for r in runs if r.run_id not in keep]
        plan.finish(len(runs), len(runs) - len(pending))
    skipped = len(runs) - len(pending)
    local_dask = compile_cache and dask_local
    holder = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"

    def job(cache: bool):
        cache_dir = str(Path(out).resolve() / ".jax-cache") if cache else None
        return functools.partial(execute_run, imports=tuple(spec.imports), cache_dir=cache_dir)

    with contextlib.ExitStack() as stack:
        if n_dask and pending:  # connect (or start the cluster) before showing progress
            dask = stack.enter_context(_dask_client(scheduler, client, dask_local, workers, len(pending)))
        store = stack.enter_context(Store(out))
        show = stack.enter_context(_progress_display(spec.name, len(runs), skipped, enabled=progress))
        runs_by_id = {r.run_id: r for r in runs}
        recorder = _Recorder(store, spec, runs_by_id, show)
        claims = _Claims(store, runs_by_id, pending, holder, lease_s=float(lease_s),
                         poll_s=min(1.0, lease_s / 4), redo_failed_before=started if retry_failed else None,
                         progress=show)
        if pending:
            stack.enter_context(_Heartbeat(out, holder, float(lease_s)))
            # Runs claimed but not recorded (an error, Ctrl-C) go back to the other clients at once.
            stack.callback(_release_quietly, store, holder)
        if pending and n_dask:
            _run_dask(claims, job(local_dask), recorder, dask, spec.retries, max_in_flight)
        elif pending and workers == 0:
            _run_serial(claims, job(False), recorder)
        elif pending:
            n = min(workers or _default_workers(), len(pending))
            _run_processes(claims, job(compile_cache), recorder, n, spec.retries)
    return SweepSummary(total=len(runs), skipped=skipped, done=recorder.done, failed=recorder.failed,
                        wall_time=time.perf_counter() - t0, out=Path(out), by_others=claims.others,
                        taken_over=claims.taken_over)


def _release_quietly(store: Store, holder: str):
    try:
        store.release(holder)
    except sqlite3.Error:
        pass  # the leases expire by themselves


@contextlib.contextmanager
def _dask_client(scheduler, client, dask_local, workers, n_pending):
    """The given client, a client of the scheduler at ``scheduler``, or of a new
    LocalCluster of worker processes (closed on exit, except a given client)."""
    if client is not None:
        yield client
        return
    from distributed import Client

    if scheduler is not None:
        try:
            c = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise ValidationError(f"cannot connect to the Dask scheduler at {scheduler!r}: {exc}") from None
        with c:
            yield c
        return
    import logging

    from distributed import LocalCluster

    n = min(workers or _default_workers(), n_pending)
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as c:
        yield c


class _planning_display:
    """Progress while a large grid is planned (expanding and validating its points,
    hashing them, checking the store); a no-op if disabled."""

    def __init__(self, name: str, total: int, *, enabled: bool):
        self.name, self.total, self.enabled = name, total, enabled
        self._progress = None
        self._pending = 0
        self._t0 = time.perf_counter()

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task(f"{self.name}: expanding and validating the grid", total=self.total)
        return self

    def advance(self):
        if self._progress is not None:
            self._pending += 1
            if self._pending >= 500:  # rich's update is too slow to call per point
                self._progress.advance(self._task, self._pending)
                self._pending = 0

    def stage(self, what: str):
        if self._progress is not None:
            self._progress.update(self._task, description=f"{self.name}: {what}", advance=self._pending)
            self._pending = 0

    def finish(self, runs: int, stored: int):
        if self._progress is not None:
            self._progress.console.print(f"planned {self.name}: {runs} runs ({stored} already in the store) in "
                                         f"{time.perf_counter() - self._t0:.1f} s")

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)


class _progress_display:
    """A rich progress bar on stderr: finished / failed / by other clients / remaining
    (no-op if disabled)."""

    def __init__(self, name: str, total: int, skipped: int, *, enabled: bool):
        self.name, self.total, self.skipped, self.enabled = name, total, skipped, enabled
        self._progress = None
        self.counts = {"done": 0, "failed": 0, "others": 0}

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("[green]{task.fields[done]} done[/] · [red]{task.fields[failed]} failed[/] · "
                           "{task.fields[others]} by other clients · {task.fields[remaining]} remaining"),
                TimeElapsedColumn(), console=Console(stderr=True))
            self._progress.__enter__()
            self._task = self._progress.add_task(
                self.name, total=self.total, completed=self.skipped, done=0, failed=0, others=0,
                remaining=self.total - self.skipped)
            if self.skipped:
                self._progress.console.print(f"resuming: {self.skipped} of {self.total} runs already in the store")
        return self

    def __call__(self, **counts):
        self.counts.update(counts)
        if self._progress is not None:
            finished = self.skipped + sum(self.counts.values())
            self._progress.update(self._task, completed=finished, remaining=self.total - finished, **self.counts)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
