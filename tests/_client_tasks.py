"""A task for tests/test_sweep_clients.py: cheap (no JAX work), optionally held back until
a file exists, and leaving one line in a log file per computation, so that a test can
count who computed what."""

from __future__ import annotations

import json
import os
import time

from measureflow.experiments.tasks import TaskConfig, register_task


class GatedConfig(TaskConfig):
    value: int
    log: str                  # one JSON line {"pid", "value"} appended per computation
    gate: str | None = None   # wait until this file exists before computing
    sleep: float = 0.0


@register_task("gated", config=GatedConfig)
def gated(config):
    """value² after waiting for ``gate`` and sleeping ``sleep`` seconds."""
    if config["gate"]:
        deadline = time.monotonic() + 120
        while not os.path.exists(config["gate"]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gate {config['gate']} never opened")
            time.sleep(0.02)
    time.sleep(config["sleep"])
    line = json.dumps({"pid": os.getpid(), "value": config["value"]}) + "\n"
    fd = os.open(config["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one small O_APPEND write: lines of concurrent clients do not mix
    finally:
        os.close(fd)
    return {"square": config["value"] ** 2, "pid": os.getpid()}, {}


def log_lines(path) -> list[dict]:
    return [json.loads(ln) for ln in open(path).read().splitlines()] if os.path.exists(path) else []
