"""Experiments: named run tasks and the sweeps that run them at scale.

- :mod:`~measureflow.experiments.tasks`: the registry of run tasks (``register_task``,
  ``get_task``) and the built-in ``custom_teacher`` task.
- :mod:`~measureflow.experiments.sweep`: sweep specs (YAML/TOML), grid expansion, stable
  run ids, local-process and Dask executors writing to a :class:`measureflow.store.Store`.
"""

from .sweep import Run, SweepSpec, SweepSummary, expand, load_spec, run_id, run_sweep
from .tasks import TaskConfig, available_tasks, get_task, register_task, run_task

__all__ = ["register_task", "get_task", "available_tasks", "run_task", "TaskConfig", "SweepSpec", "Run",
           "SweepSummary", "load_spec", "expand", "run_id", "run_sweep"]
