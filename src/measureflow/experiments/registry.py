"""The experiment layer's one registry: named sweep tasks and the experiments of
``measureflow reproduce``.

**Tasks** (the unit of work of a sweep): ``fn(config) -> (metrics, arrays)`` registered by
:func:`register_task` with a pydantic model of its configuration (see
:mod:`measureflow.experiments.tasks`). A task named ``<experiment>.<name>`` (e.g.
``excess_loss.cell``) is found without an ``imports:`` entry: :func:`get_task` imports the
experiment's module on first use.

**Experiments**: a module or package ``measureflow.experiments.<name>`` is an experiment
when it declares, at module level, ``NAME = "<name>"`` — found by reading the source
(:mod:`ast`), so listing the experiments imports none of them. Adding an experiment is
adding that one module; nothing else lists it. Its contract (checked by :func:`load`):

    NAME, TITLE      its name (the module's) and heading
    ORDER            an int literal: the position in the report (ascending; modules
                     without it come after, by name), so the report order never depends
                     on the file system
    PRESETS          preset name → one parameter entry (JSON-able)
    Params           a pydantic BaseModel (``extra="forbid"``) of one preset entry: every
                     preset and every override is validated through it before any work
    run(out_dir, params, seed, progress), plot(out_dir) -> [paths], summarize(out_dir) -> str
    optional: animate, ANIMATIONS, has_tables
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import pathlib
import pkgutil
from typing import Callable

import pydantic
from pydantic import BaseModel

from ..errors import InputTypeError, ValidationError

CONTRACT = ("NAME", "TITLE", "PRESETS", "Params", "run", "plot", "summarize")
#: Position of experiments that declare no ORDER (after those that do, by name).
DEFAULT_ORDER = 1000
_PACKAGE = __name__.rsplit(".", 1)[0]


# -- tasks ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Task:
    """A registered task: ``name``, the function, and its configuration model."""

    name: str
    fn: Callable[[dict], tuple]
    config_model: type[BaseModel]

    def validate(self, config: dict, *, locate: Callable[[tuple], str] | None = None) -> dict:
        """The normalized configuration (defaults filled in), or a ValidationError that
        names every bad key: ``locate(loc)`` turns a pydantic location into the path the
        user wrote (e.g. ``base.step`` or ``grid.m``)."""
        if not isinstance(config, dict):
            raise InputTypeError(f"the configuration of task {self.name!r} must be a mapping, got {type(config).__name__}")
        try:
            model = self.config_model.model_validate(config)
        except pydantic.ValidationError as exc:
            problems = describe_pydantic_error(exc, locate=locate)
            raise ValidationError(f"invalid configuration for task {self.name!r}: {problems}") from None
        return model.model_dump(mode="json")

    def __call__(self, config: dict) -> tuple[dict, dict]:
        from .tasks import run_task

        return run_task(self, config)


_TASKS: dict[str, Task] = {}


def register_task(name: str, *, config: type[BaseModel]):
    """Decorator: register ``fn(config) -> (metrics, arrays)`` under ``name`` with the
    pydantic model ``config`` that validates its run configuration."""
    if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise ValidationError(f"task name {name!r} must be a non-empty string of letters, digits, '_', '-', '.'")
    if not (isinstance(config, type) and issubclass(config, BaseModel)):
        raise InputTypeError(f"config= must be a pydantic model class (e.g. a TaskConfig subclass), got {config!r}")

    def decorator(fn):
        if not callable(fn):
            raise InputTypeError(f"a task must be callable, got {type(fn).__name__}")
        old = _TASKS.get(name)
        if old is not None and (old.fn.__module__, old.fn.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValidationError(
                f"task {name!r} is already registered by {old.fn.__module__}.{old.fn.__qualname__}; pick another name")
        _TASKS[name] = Task(name, fn, config)  # re-registration (module reload) replaces
        return fn

    return decorator


def get_task(name: str) -> Task:
    """The task registered under ``name``; a name ``<experiment>.<task>`` imports that
    experiment's module first. ValidationError listing the known tasks otherwise."""
    if isinstance(name, str) and name not in _TASKS and "." in name:
        prefix = name.split(".", 1)[0]
        if prefix in discover():
            load(prefix)
    try:
        return _TASKS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_TASKS)) or "none"
        raise ValidationError(
            f"task={name!r} is not registered (known tasks: {known}); a task defined in your own "
            "module must be listed under `imports:` in the sweep spec") from None


def available_tasks() -> tuple[str, ...]:
    return tuple(sorted(_TASKS))


def describe_pydantic_error(exc: pydantic.ValidationError, *, locate: Callable[[tuple], str] | None = None) -> str:
    """One line for all problems: ``path: message (got value)``, joined by ``; ``."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        path = locate(loc) if locate is not None else dotted(loc)
        msg = err.get("msg", "invalid")
        got = "" if err.get("type") == "missing" else f" (got {_short(err.get('input'))})"
        lines.append(f"{path or '<root>'}: {msg}{got}")
    return "; ".join(lines)


def dotted(loc: tuple, prefix: str = "") -> str:
    """A pydantic location as the path a user writes: ``a.b[0].c`` (after ``prefix``)."""
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- experiments ----------------------------------------------------------------------------

def _declarations(path: pathlib.Path) -> dict:
    """Module-level literal assignments NAME / ORDER of a source file (not imported)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return {}
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            key = node.targets[0].id
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            key = node.target.id
        else:
            continue
        if key in ("NAME", "ORDER"):
            try:
                found[key] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return found


def _search_path() -> list[str]:
    return list(importlib.import_module(_PACKAGE).__path__)


def discover() -> list[str]:
    """The experiments' names in report order: every submodule or subpackage of
    ``measureflow.experiments`` whose source declares ``NAME`` equal to its module name,
    sorted by (``ORDER``, name)."""
    found = {}
    for info in pkgutil.iter_modules(_search_path()):
        base = pathlib.Path(info.module_finder.path) / info.name
        source = base / "__init__.py" if info.ispkg else base.with_suffix(".py")
        decl = _declarations(source)
        if decl.get("NAME") == info.name and info.name not in found:
            order = decl.get("ORDER", DEFAULT_ORDER)
            found[info.name] = order if isinstance(order, int) and not isinstance(order, bool) else DEFAULT_ORDER
    return sorted(found, key=lambda n: (found[n], n))


def check_name(name) -> str:
    names = discover()
    if name not in names:
        raise ValidationError(f"unknown experiment {name!r}; choose from {', '.join(names)}")
    return name


def load(name: str):
    """The module of experiment ``name``, checked against the contract (module doc)."""
    check_name(name)
    module = importlib.import_module(f"{_PACKAGE}.{name}")
    missing = [a for a in CONTRACT if not hasattr(module, a)]
    if missing:
        hint = (" (Params: a pydantic BaseModel with extra='forbid' describing one PRESETS entry)"
                if "Params" in missing else "")
        raise ValidationError(f"experiment module {module.__name__} lacks {', '.join(missing)}{hint}")
    params = module.Params
    if not (isinstance(params, type) and issubclass(params, BaseModel)) or \
            params.model_config.get("extra") != "forbid":
        raise ValidationError(f"experiment module {module.__name__}: Params must be a pydantic BaseModel with "
                              "model_config extra='forbid'")
    return module


def validate_params(name: str, params) -> dict:
    """``params`` (one preset entry of experiment ``name``) checked by its ``Params``;
    returns it unchanged, or raises one line naming every bad key as
    ``<name>.<path>: message (got value)``."""
    module = load(name)
    if not isinstance(params, dict):
        raise ValidationError(f"{name}: parameters must be a mapping, got {type(params).__name__}")
    try:
        module.Params.model_validate(params)
    except pydantic.ValidationError as exc:
        raise ValidationError(describe_pydantic_error(exc, locate=lambda loc: dotted(loc, name))) from None
    return params
