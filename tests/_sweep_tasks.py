"""Tasks used by tests/test_sweep.py. Sweep specs list this module under ``imports:`` so
that worker processes (spawned, or Dask workers) register them too; ``tests/`` reaches
the workers' sys.path through multiprocessing's spawn preparation or PYTHONPATH."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import BaseModel, ConfigDict

import measureflow as mf
from measureflow.experiments.tasks import CustomTeacherConfig, TaskConfig, custom_teacher, register_task


class _Nested(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    scale: float = 1.0


class EchoConfig(TaskConfig):
    value: float
    fail: bool = False
    nested: _Nested = _Nested()


@register_task("echo", config=EchoConfig)
def echo(config):
    """value·scale as a metric and an array; raises when asked to."""
    if config["fail"]:
        raise mf.ValidationError(f"echo asked to fail at value={config['value']}")
    v = config["value"] * config["nested"]["scale"]
    return {"scaled": v, "pid": os.getpid()}, {"v": np.arange(3.0) * v}


@register_task("counted_teacher", config=CustomTeacherConfig)
def counted_teacher(config):
    """custom_teacher that appends its configuration to $MF_TEST_RUN_LOG each time it runs
    (to count executions) and sleeps $MF_TEST_SLEEP seconds (so a sweep can be killed
    midway); neither changes its results."""
    log = os.environ.get("MF_TEST_RUN_LOG")
    metrics, arrays = custom_teacher(config)
    time.sleep(float(os.environ.get("MF_TEST_SLEEP", "0")))
    if log:
        with open(log, "a") as f:
            f.write(json.dumps(config, sort_keys=True) + "\n")
    metrics["x64"] = bool(jax.config.jax_enable_x64)
    return metrics, arrays


class FragileConfig(TaskConfig):
    value: float
    kill: bool = False               # this run kills its worker process...
    kill_marker: str | None = None   # ...once (if the marker file does not exist yet), or always (None)


@register_task("fragile", config=FragileConfig)
def fragile(config):
    """A cheap JAX computation whose ``kill`` runs SIGKILL their own worker process; its
    metrics tell whether the worker computes in float64."""
    if config["kill"]:
        marker = config["kill_marker"]
        if marker is None:
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            with open(marker, "x") as f:  # exclusive create: only one run ever dies
                f.write(str(os.getpid()))
        except FileExistsError:
            pass
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    x = jnp.cumsum(jnp.arange(5.0) * config["value"]) / 3.0
    return ({"x64": bool(jax.config.jax_enable_x64), "dtype": str(x.dtype), "last": x[-1]},
            {"x": np.asarray(x)})


def log_lines(path) -> list[dict]:
    p = Path(path)
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []
