"""A registry of named run tasks: the unit of work of a sweep.

A task is a function ``fn(config: dict) -> (metrics: dict, arrays: dict)``, registered
under a name together with a pydantic model of its configuration::

    class MyConfig(TaskConfig):          # extra keys are rejected, ints are not floats...
        m: PositiveInt
        seed: NonNegativeInt = 0
        step: PositiveFloat | None = None

    @register_task("my_task", config=MyConfig)
    def my_task(config):                 # config: the validated, defaults-filled dict
        ...
        return {"objective": 0.1}, {"history": np.array([...])}

- ``config`` arrives validated: :func:`Task.validate` runs the model before any work (the
  sweep validates every run of a grid up front, so a typo fails in a second, not after an
  hour). Its normalized form (``model_dump``) is what the run id hashes.
- ``metrics`` must be JSON-serializable scalars (NumPy/JAX scalars are converted) or
  nested dicts/lists of them; they become columns of the results table.
- ``arrays`` are numeric NumPy-convertible arrays (no object arrays: the store never
  pickles); they go to one ``.npz`` file per run.
- A task signals a failed run by raising (e.g. ``mf.DivergenceError``); the sweep records
  the run as failed with the error message and goes on.

Tasks must be importable by name in every worker process: define them in a module and
list that module under ``imports:`` in the sweep spec (built-in tasks need nothing, nor do
an experiment's tasks named ``<experiment>.<task>``: the registry,
:mod:`measureflow.experiments.registry`, imports the experiment on first use).
"""

from __future__ import annotations

import math
import numbers
import re
import time
from typing import Annotated, Literal

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from ..errors import InputTypeError, ValidationError
from .registry import Task, available_tasks, describe_pydantic_error, get_task, register_task

__all__ = ["TaskConfig", "Task", "register_task", "get_task", "available_tasks", "run_task",
           "describe_pydantic_error"]


class TaskConfig(BaseModel):
    """Base for task configuration models: unknown keys are errors, types are strict
    (``5`` is not ``"5"`` nor ``True``; an int is accepted where a float is expected and
    normalized to a float, so ``step: 1`` and ``step: 1.0`` give the same run id)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


_ARRAY_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def run_task(task: Task | str, config: dict) -> tuple[dict, dict]:
    """Validate ``config``, run the task, and return (plain-JSON metrics, NumPy arrays)."""
    task = get_task(task) if isinstance(task, str) else task
    cfg = task.validate(config)
    out = task.fn(cfg)
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], dict) and isinstance(out[1], dict)):
        raise InputTypeError(f"task {task.name!r} must return (metrics dict, arrays dict), got {type(out).__name__}")
    metrics = {str(k): _plain(v, f"metric {k!r}") for k, v in out[0].items()}
    arrays = {str(k): _array(v, k) for k, v in out[1].items()}
    return metrics, arrays


def _plain(value, where: str):
    """A JSON-ready copy of a metric value (NumPy/JAX scalars become Python numbers)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "__jax_array__") or type(value).__module__.startswith("jax"):
        arr = np.asarray(value)
        if arr.ndim == 0 and arr.dtype != object:
            return _plain(arr.item(), where)
        return [_plain(v, where) for v in arr.tolist()]
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    raise InputTypeError(f"{where} has type {type(value).__name__}, which is not a JSON number, string, bool or list")


def _array(value, name) -> np.ndarray:
    if not _ARRAY_NAME.match(name):
        raise ValidationError(f"array name {name!r} must be letters, digits, '_', '-', '.' (it names a file in the store)")
    arr = np.asarray(value)
    if arr.dtype == object:
        raise InputTypeError(f"array {name!r} has dtype object; the results store keeps numeric arrays only (no pickle)")
    return arr


# ---------------------------------------------------------------------------------------
# Built-in task: a two-layer tanh network in a teacher–student regression
# ---------------------------------------------------------------------------------------

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class CustomTeacherConfig(TaskConfig):
    """Configuration of ``custom_teacher``.

    m              student units (particles)
    seed           seed of the student initialization
    data_seed      seed of the teacher and the samples (default: ``seed``)
    method         "gd", "fb" (forward–backward; needed for ``regularizer="l1"``) or
                   "langevin" (mean-field Langevin on the gradient step, or on
                   forward–backward for ``l1``; noise from ``seed``)
    temperature    τ0 ≥ 0 of ``langevin`` (required with it, refused otherwise)
    schedule       ``langevin``'s annealing: "constant" (τ0), "log" (τ0 / log(e + t)) or
                   "geometric" (τ0 · rate^t)
    rate           the geometric schedule's rate, 0 < rate ≤ 1 (default 0.999)
    step           step size η (``null``: 1 / curvature at the initialization)
    iterations     number of steps
    n, n_test      training samples, fresh clean test samples
    input_dim      d
    teacher_units  m0, units of the teacher network
    lam            regularization strength λ ≥ 0 (0: none)
    regularizer    "l2" (λ|θ|², weight decay) or "l1" (λ|a| on the output weight)
    noise          standard deviation of Gaussian label noise
    geometry       "euclidean" or "conic"
    """

    m: PositiveInt
    seed: NonNegativeInt = 0
    data_seed: NonNegativeInt | None = None
    method: Literal["gd", "fb", "langevin"] = "gd"
    temperature: NonNegativeFloat | None = None
    schedule: Literal["constant", "log", "geometric"] = "constant"
    rate: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    step: PositiveFloat | None = None
    iterations: PositiveInt = 1000
    n: PositiveInt = 200
    n_test: PositiveInt = 1000
    input_dim: PositiveInt = 2
    teacher_units: PositiveInt = 3
    lam: NonNegativeFloat = 0.0
    regularizer: Literal["l2", "l1"] = "l2"
    noise: NonNegativeFloat = 0.0
    geometry: Literal["euclidean", "conic"] = "euclidean"

    @model_validator(mode="after")
    def _langevin_keys(self):
        if self.method == "langevin" and self.temperature is None:
            raise ValueError("method 'langevin' needs a temperature (τ0 >= 0)")
        if self.method != "langevin" and (self.temperature is not None or self.schedule != "constant"
                                          or self.rate is not None):
            raise ValueError(f"temperature, schedule and rate are keys of method 'langevin', not {self.method!r}")
        if self.rate is not None and self.schedule != "geometric":
            raise ValueError(f"rate is the geometric schedule's; schedule is {self.schedule!r}")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        # The Langevin keys appear only in Langevin runs: the normalized configuration (and
        # so the run id) of a gd / fb run is what it was before they existed.
        out = handler(self)
        if self.method != "langevin":
            for key in ("temperature", "schedule", "rate"):
                out.pop(key, None)
        elif self.schedule != "geometric":
            out.pop("rate", None)
        elif out.get("rate") is None:
            out["rate"] = 0.999
        return out


def _rule(config: dict, regularizer):
    """The update rule of a ``custom_teacher`` configuration (a shortcut or a Langevin rule)."""
    import measureflow as mf

    if config["method"] != "langevin":
        return config["method"]
    base = mf.methods.ForwardBackward() if regularizer is not None and not regularizer.smooth else mf.methods.GradientStep()
    schedule = {"constant": None, "log": mf.methods.log_schedule}.get(config["schedule"])
    if config["schedule"] == "geometric":
        schedule = mf.methods.geometric_schedule(config["rate"])
    return mf.methods.Langevin(config["temperature"], base=base, schedule=schedule)


def _tanh_unit(theta, x):
    """φ(θ, x) = a·tanh(w·x) with θ = (a, w): partially 1-homogeneous in a = θ[0].

    A module-level function (not a lambda) so that features built in different runs
    compare equal and the compiled loop is reused within a worker process."""
    return theta[0] * jnp.tanh(theta[1:] @ x)


def teacher_student_data(input_dim: int, teacher_units: int, n: int, n_test: int, noise: float, seed: int):
    """Teacher f*(x) = Σ_k c_k tanh(v_k·x), c_k ~ N(0, 1), v_k uniform on the unit sphere;
    x ~ N(0, I_d). Returns (teacher positions (m0, 1 + d), X (n, d), y (n,), X_test, f*(X_test))."""
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((teacher_units, input_dim))
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    c = rng.standard_normal(teacher_units)
    X = rng.standard_normal((n, input_dim))
    X_test = rng.standard_normal((n_test, input_dim))
    y = np.tanh(X @ V.T) @ c + noise * rng.standard_normal(n)
    f_test = np.tanh(X_test @ V.T) @ c
    return np.column_stack([c, V]), X, y, X_test, f_test


@jax.jit
def _evaluate(problem, particles, X):
    # One compiled call instead of a dozen eagerly dispatched (and compiled) operations.
    return problem.risk(particles), problem.predict(particles, X)


@register_task("custom_teacher", config=CustomTeacherConfig)
def custom_teacher(config: dict) -> tuple[dict, dict]:
    """Train a student a·tanh(w·x) network (``mf.features.Custom``) on a teacher–student
    regression by particle gradient descent from the admissible initialization (a = 0).

    Metrics: ``objective`` F(μ) on the training set, ``risk`` (its loss part),
    ``excess_loss`` F(μ) − F* with F* = 0 for the realizable case (λ = 0, no noise; ``null``
    otherwise, where F* is unknown), ``test_excess_risk`` ½ mean (f_μ − f*)² on fresh clean
    samples, ``step_used`` (η, chosen when ``step`` is null), ``iterations_run``,
    ``wall_time`` (seconds in the solver, compilation included); for ``langevin`` also
    ``temperature_final`` (τ at the last step), ``entropy`` (Kozachenko–Leonenko Ĥ of the
    final particles) and ``entropic_objective`` (F − τ_final·Ĥ). Arrays: ``history``/``history_iterations`` (F along the run), ``positions``
    (m, 1 + d), ``teacher`` (m0, 1 + d).
    """
    import measureflow as mf

    d = config["input_dim"]
    data_seed = config["seed"] if config["data_seed"] is None else config["data_seed"]
    teacher, X, y, X_test, f_test = teacher_student_data(
        d, config["teacher_units"], config["n"], config["n_test"], config["noise"], data_seed)
    feature = mf.features.Custom(_tanh_unit, dim=d + 1, input_dim=d,
                                 homogeneity=mf.features.Homogeneity.partial(1, 0))
    lam = config["lam"]
    regularizer = None if lam == 0 else (mf.L2(lam) if config["regularizer"] == "l2" else mf.L1(lam))
    problem = mf.Problem(feature, loss="square", regularizer=regularizer, data=mf.data.Dataset(X, y))
    mu0 = mf.init.admissible(feature, config["m"], key=config["seed"])
    start = time.perf_counter()
    rule = _rule(config, regularizer)
    noise = {"key": config["seed"]} if config["method"] == "langevin" else {}
    result = mf.solve(problem, mu0, method=rule, step=config["step"], iterations=config["iterations"],
                      geometry=config["geometry"], snapshots=0, **noise)
    wall = time.perf_counter() - start
    objective = float(result.objective)
    risk, f_student = _evaluate(problem, result.particles, X_test)
    realizable = lam == 0 and config["noise"] == 0
    metrics = {
        "objective": objective,
        "risk": float(risk),
        "excess_loss": objective if realizable else None,
        "test_excess_risk": 0.5 * float(np.mean((np.asarray(f_student) - f_test) ** 2)),
        "step_used": float(result.step),
        "iterations_run": int(result.iterations),
        "wall_time": wall,
    }
    if config["method"] == "langevin":
        ent = mf.diagnostics.entropic_objective(problem, result)
        metrics.update(temperature_final=ent.temperature, entropy=ent.entropy, entropic_objective=ent.value)
    if not all(math.isfinite(v) for v in (objective, risk, metrics["test_excess_risk"])):
        raise mf.DivergenceError(f"non-finite final metrics {metrics}", iteration=config["iterations"],
                                 last_objective=objective)
    arrays = {
        "history": np.asarray(result.history),
        "history_iterations": np.asarray(result.history_iterations),
        "positions": np.asarray(result.particles.positions),
        "teacher": teacher,
    }
    return metrics, arrays
