"""Shared tools of the benchmarks: interleaved best-of timing, compile counting, the
machine description and the result rows of the printed table.

Timing on a shared machine: every ratio compares two timings taken in the same process,
interleaved (A, B, A, B, ...), and each side keeps its best (minimum) time: the run least
disturbed by other processes, the usual estimator of a program's own cost under noise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import time
from typing import Callable

import jax
import numpy as np


@dataclasses.dataclass
class Row:
    """One line of the table: ``section``, ``item``, the measured ``value`` (a ratio, a
    time or a size, formatted in ``shown``), the ``target`` it is held against (text, or
    ""), whether it is ``met`` (True/False/None when there is no target) and a ``note``
    saying how it was measured."""

    section: str
    item: str
    value: float
    shown: str
    target: str = ""
    met: bool | None = None
    note: str = ""


def best_times(fns: dict[str, Callable[[], object]], *, reps: int = 5, min_seconds: float = 0.0) -> dict[str, float]:
    """Best wall time (s) of each zero-argument callable, measured interleaved: ``reps``
    rounds (more while a round takes less than ``min_seconds``), each calling every
    function once in turn. Callables must block until their result is ready."""
    best = {k: float("inf") for k in fns}
    r, start = 0, time.perf_counter()
    while r < reps or time.perf_counter() - start < min_seconds:
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t0)
        r += 1
        if r >= 50 * max(reps, 1):
            break
    return best


def ready(x):
    """Block until every array in the pytree ``x`` is computed."""
    return jax.block_until_ready(x)


@dataclasses.dataclass
class CompileLog:
    """What :func:`count_compiles` saw: number of XLA compilations and seconds spent in
    tracing, lowering and backend compilation (``jax.monitoring`` events)."""

    compiles: int = 0
    backend_seconds: float = 0.0
    trace_seconds: float = 0.0
    lower_seconds: float = 0.0
    names: list = dataclasses.field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.backend_seconds + self.trace_seconds + self.lower_seconds


_BACKEND = "/jax/core/compile/backend_compile_duration"
_TRACE = "/jax/core/compile/jaxpr_trace_duration"
_LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_active: list[CompileLog] = []


def _listener(event, duration, **kw):
    for log in _active:
        if event == _BACKEND:
            log.compiles += 1
            log.backend_seconds += duration
            log.names.append(kw.get("fun_name", "?"))
        elif event == _TRACE:
            log.trace_seconds += duration
        elif event == _LOWER:
            log.lower_seconds += duration


jax.monitoring.register_event_duration_secs_listener(_listener)


@contextlib.contextmanager
def count_compiles():
    """Context manager yielding a :class:`CompileLog` of the compilations inside it."""
    log = CompileLog()
    _active.append(log)
    try:
        yield log
    finally:
        _active.remove(log)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _numpy_blas() -> str:
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{cfg.get('name', '?')} {cfg.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 — older NumPy: no dict mode
        return "unknown"


def _jax_dot_backend() -> str:
    import jax.numpy as jnp

    a = jnp.ones((64, 64), jnp.float32)
    text = jax.jit(lambda x: x @ x).lower(a).compile().as_text()
    return "XLA:CPU, dots via YNNPACK" if "ynn" in text.lower() else "XLA:CPU, dots via Eigen"


def machine() -> list[tuple[str, str]]:
    """(label, value) pairs describing the machine and software."""
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    out = [("cpu", f"{_cpu_model()} ({platform.machine()}), {os.cpu_count()} logical cores"),
           ("threads used", f"jax: all {threads} (XLA:CPU pool); numpy: OpenBLAS default ({threads})"),
           ("load average", f"{load} (1, 5, 15 min, at start)"),
           ("python", platform.python_version()),
           ("jax / jaxlib", f"{jax.__version__} / {jax.lib.__version__ if hasattr(jax.lib, '__version__') else '?'}; "
                            f"{_jax_dot_backend()}; devices {[d.platform for d in jax.devices()]}"),
           ("numpy", f"{np.__version__}; BLAS {_numpy_blas()}")]
    try:
        import torch

        blas = "MKL" if torch.backends.mkl.is_available() else "non-MKL"
        out.append(("torch", f"{torch.__version__}; {torch.get_num_threads()} threads; {blas}"))
    except ImportError:
        out.append(("torch", "not installed (pip install -e '.[bench]')"))
    return out


def fmt_time(s: float) -> str:
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def fmt_bytes(b: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(b) < 1024 or unit == "GiB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return f"{b:.1f} GiB"
