"""``measureflow reproduce``: run the named experiments and write, under ``DIR``,

    DIR/<name>/*.csv          the numbers behind every figure (the experiment's tables)
    DIR/<name>/*.png, *.pdf   the figures, drawn from those tables only
    DIR/<name>/run.json       what was run: preset, parameters, seed, version, wall time
    DIR/config.json           all of the above for every experiment in DIR
    DIR/<name>/*.gif          animations of the particle flows (experiments with ``animate``)
    DIR/report.md             every figure with a one-paragraph reading of it
    DIR/report.html           the same page, self-contained (figures embedded), for a browser

An experiment is a module or package ``measureflow.experiments.<name>`` that declares
``NAME`` (found without importing it; see :mod:`measureflow.experiments.registry` for the
contract: ``TITLE``, ``ORDER``, ``PRESETS``, ``Params``, ``run``, ``plot``, ``summarize``,
optionally ``animate``/``ANIMATIONS``/``has_tables``). Every preset entry, override and
``--set NAME.key=VALUE`` is validated by the experiment's ``Params`` before any work: a bad
key is one line naming it (``excess_loss.problems.relu.m: ...``). An experiment whose
``run.json`` already records the same parameters, seed and package version is not rerun
(``force=True`` reruns it); its figures are redrawn. With ``jobs > 1`` the experiments run
side by side in fresh worker processes (most of their time is single-threaded compilation);
the figures are drawn in this process.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import multiprocessing
import pathlib
import threading
import time
from typing import Callable

from .._version import __version__
from ..errors import ValidationError
from ..validation import check_int
from . import registry

RUN_RECORD = "run.json"


# -- the registry (measureflow.experiments.registry) ----------------------------------------

def experiments() -> list[str]:
    """Every experiment, in report order (found by :func:`registry.discover`)."""
    return registry.discover()


def installed() -> list[str]:
    """The experiments present, in report order (kept for callers of the old name)."""
    return experiments()


def load(name: str):
    """The module of experiment ``name``, checked against the experiment contract."""
    return registry.load(name)


def select(only=None) -> list[str]:
    """The experiments to run: ``only`` (names, or comma-separated strings), checked against
    the registry, in report order; ``None``: every experiment."""
    if not only:
        return experiments()
    if isinstance(only, str):
        only = [only]
    names = [n.strip() for item in only for n in str(item).split(",") if n.strip()]
    for n in names:
        registry.check_name(n)
    return [n for n in experiments() if n in names]


def parse_settings(settings) -> dict[str, dict]:
    """``--set`` values ``NAME.path.to.key=VALUE`` as {NAME: [(path, value), ...]}: VALUE is
    read as JSON (``3``, ``[3, 4]``, ``true``, ``"x"``), else taken as a string."""
    out: dict[str, list] = {}
    for item in settings or ():
        if not isinstance(item, str) or "=" not in item:
            raise ValidationError(f"--set {item!r} must read NAME.key=VALUE (e.g. excess_loss.seeds=3)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) < 2 or not all(parts):
            raise ValidationError(f"--set {item!r}: the key must be <experiment>.<key>[.<key>...], got {key!r}")
        registry.check_name(parts[0])
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out.setdefault(parts[0], []).append((parts[1:], value))
    return out


def _apply(params: dict, changes) -> dict:
    """A deep copy of ``params`` with each (path, value) set (missing mappings created)."""
    params = json.loads(json.dumps(params))
    for path, value in changes:
        node = params
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
    return params


def resolve_params(names: list[str], preset: str, overrides: dict | None = None, settings=None) -> dict[str, dict]:
    """Each experiment's parameters for ``preset`` (``overrides[name]`` replaces them, then
    the ``--set`` ``settings`` change single keys), each validated by the experiment's
    ``Params`` before any work."""
    if not isinstance(preset, str):
        raise ValidationError(f"preset must be a name such as 'quick', got {preset!r}")
    overrides = overrides or {}
    changes = parse_settings(settings)
    unused = sorted(set(changes) - set(names))
    if unused:
        raise ValidationError(f"--set for {', '.join(unused)}, which this run does not include (see --only)")
    params = {}
    for n in names:
        module = load(n)
        if n in overrides:
            params[n] = overrides[n]
        elif preset in module.PRESETS:
            params[n] = module.PRESETS[preset]
        else:
            raise ValidationError(f"unknown preset {preset!r} for experiment {n!r}; its presets are "
                                  f"{', '.join(module.PRESETS)}")
        if n in changes:
            params[n] = _apply(params[n], changes[n])
        registry.validate_params(n, params[n])
    try:
        json.dumps(params)  # presets must be JSON-able (they go to config.json)
    except TypeError as exc:
        raise ValidationError(f"parameters must be JSON-able: {exc}") from None
    return params


def check_out(out) -> pathlib.Path:
    """``out`` as a directory path: it may not exist yet, but may not be a file."""
    path = pathlib.Path(out)
    if path.exists() and not path.is_dir():
        raise ValidationError(f"--out {str(out)!r} is a file, not a directory")
    return path


# -- progress -------------------------------------------------------------------------------

class _Bars:
    """Rich progress bars on stderr, one per experiment (no-op when disabled)."""

    def __init__(self, names: list[str], enabled: bool):
        self._progress, self._tasks = None, {}
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description:<42}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=Console(stderr=True), transient=False)
        for n in names:
            self._tasks[n] = self._progress.add_task(n, total=None, start=False)

    def __enter__(self):
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.stop()

    def callback(self, name: str) -> Callable[[str, int, int], None]:
        if self._progress is None:
            return lambda description, completed, total: None
        task = self._tasks[name]
        self._progress.start_task(task)

        def update(description: str, completed: int, total: int):
            self._progress.update(task, description=description, completed=completed, total=total)

        return update

    def update(self, name: str, description: str, completed: int, total: int):
        if self._progress is not None:
            self._progress.start_task(self._tasks[name])
            self._progress.update(self._tasks[name], description=description, completed=completed, total=total)

    def finish(self, name: str, note: str):
        if self._progress is not None:
            task = self._tasks[name]
            total = self._progress.tasks[task].total or 1
            self._progress.start_task(task)
            self._progress.update(task, description=f"{name}: {note}", completed=total, total=total)


# -- running --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Summary:
    """What ``reproduce`` did: ``ran`` and ``skipped`` experiments, ``figures`` per
    experiment, ``wall_time`` (s) per experiment run now, and the report path."""

    out: pathlib.Path
    ran: tuple
    skipped: tuple
    figures: dict
    wall_time: dict
    report: pathlib.Path
    animations: dict = dataclasses.field(default_factory=dict)


def _record(params: dict, seed: int, preset: str) -> dict:
    return {"preset": preset, "params": params, "seed": seed, "version": __version__}


def _read_record(exp_dir: pathlib.Path) -> dict | None:
    try:
        return json.loads((exp_dir / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return None


def _up_to_date(exp_dir: pathlib.Path, wanted: dict) -> bool:
    rec = _read_record(exp_dir)
    return rec is not None and all(rec.get(k) == v for k, v in wanted.items() if k != "preset")


def _timed_run(name: str, exp_dir: pathlib.Path, params: dict, seed: int, progress) -> float:
    """Run one experiment into ``exp_dir``; returns its wall time (s)."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / RUN_RECORD).unlink(missing_ok=True)  # a crash leaves no stale record
    start = time.perf_counter()
    load(name).run(exp_dir, params, seed, progress)
    return time.perf_counter() - start


_WORKER_QUEUE = None


def _init_worker(queue):
    global _WORKER_QUEUE
    _WORKER_QUEUE = queue
    import measureflow  # noqa: F401  (float64 on, as in the parent)


def _worker_run(name: str, exp_dir: str, params: dict, seed: int) -> float:
    def progress(description, completed, total):
        _WORKER_QUEUE.put((name, description, completed, total))

    return _timed_run(name, pathlib.Path(exp_dir), params, seed, progress)


def _run_parallel(todo: list[str], out: pathlib.Path, params: dict, seed: int, jobs: int, bars, done):
    """Run the experiments ``todo`` in ``jobs`` spawned processes; ``done(name, wall)`` is
    called in this process as each one finishes (in completion order)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()

    def relay():
        while (item := queue.get()) is not None:
            bars.update(*item)

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    try:
        with cf.ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=ctx, initializer=_init_worker,
                                    initargs=(queue,)) as pool:
            futures = {pool.submit(_worker_run, n, str(out / n), params[n], seed): n for n in todo}
            try:
                for fut in cf.as_completed(futures):
                    done(futures[fut], fut.result())
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    finally:
        queue.put(None)
        reader.join(timeout=5)


def reproduce(out="results", preset: str = "quick", only=None, seed: int = 0, *, params: dict | None = None,
              settings=None, force: bool = False, progress: bool = False, jobs: int = 1) -> Summary:
    """Run the selected experiments into ``out`` (see the module docstring).

    preset   a preset name every selected experiment defines ("quick", "paper")
    only     experiment names (default: all installed)
    params   {name: parameters} replacing the preset for those experiments
    settings ``["NAME.key.key=VALUE", ...]`` (``--set``): single keys changed after that
    force    rerun experiments whose ``run.json`` says they are up to date
    progress show rich progress bars on stderr
    jobs     experiments run at the same time, each in its own process (1: in this one)
    """
    out = check_out(out)
    seed = check_int("seed", seed, minimum=0)
    jobs = check_int("jobs", jobs, minimum=1)
    names = select(only)
    if not names:
        raise ValidationError("no experiment to run: no module of measureflow.experiments declares NAME")
    params_by_name = resolve_params(names, preset, params, settings)  # every check before any work
    out.mkdir(parents=True, exist_ok=True)
    records = {n: _record(params_by_name[n], seed, preset) for n in names}
    skipped = [n for n in names if not force and _up_to_date(out / n, records[n])]
    todo = [n for n in names if n not in skipped]
    figures, wall, animations = {}, {}, {}

    def draw(name: str):
        module = load(name)
        figures[name] = module.plot(out / name)
        if hasattr(module, "animate"):
            animations[name] = module.animate(out / name)

    with _Bars(names, progress) as bars:
        def done(name: str, seconds: float):
            wall[name] = seconds
            (out / name / RUN_RECORD).write_text(json.dumps({**records[name], "wall_time_s": round(seconds, 2)},
                                                            indent=2))
            draw(name)
            bars.finish(name, f"done in {seconds:.0f} s")

        for name in skipped:
            draw(name)
            bars.finish(name, "up to date (not rerun)")
        if jobs > 1 and len(todo) > 1:
            _run_parallel(todo, out, params_by_name, seed, jobs, bars, done)
        else:
            for name in todo:
                done(name, _timed_run(name, out / name, params_by_name[name], seed, bars.callback(name)))
    figures = {n: figures[n] for n in names}  # report order
    write_config(out, seed=seed, preset=preset)
    report = write_report(out, figures)
    return Summary(out, tuple(todo), tuple(skipped), figures, wall, report, animations)


def present(out) -> list[str]:
    """The experiments that have a completed run (``run.json``) under ``out``."""
    out = pathlib.Path(out)
    return [n for n in experiments() if (out / n / RUN_RECORD).is_file()]


def plot_directory(out) -> dict[str, list[pathlib.Path]]:
    """Redraw every figure under ``out`` from its saved tables alone, and the report (md and
    html; the GIFs already there are kept: ``animate_directory`` redraws them)."""
    out = pathlib.Path(out)
    if not out.is_dir():
        raise ValidationError(f"{str(out)!r} is not a directory written by `measureflow reproduce`")
    names = present(out)
    if not names:
        raise ValidationError(f"{str(out)!r} holds no reproduced experiment (no <name>/{RUN_RECORD}); "
                              f"run `measureflow reproduce --out {out}` first")
    figures = {n: load(n).plot(out / n) for n in names}
    write_report(out, figures)
    return figures


def animate_directory(out, *, fps: int | None = None, frames: int | None = None,
                      seconds: float | None = None) -> dict[str, list[pathlib.Path]]:
    """Draw the GIFs of the particle flows from the saved tables alone: ``out`` is a
    directory written by ``reproduce`` or an experiment's own directory holding its tables
    (e.g. ``DIR/trajectories``); the report of a ``reproduce`` directory is then rewritten
    with the new GIFs."""
    from ..plotting.animation import FPS, frame_count

    out = pathlib.Path(out)
    frame_count(2, fps=FPS if fps is None else fps, frames=frames, seconds=seconds)  # checked before any work
    if not out.is_dir():
        raise ValidationError(f"{str(out)!r} is not a directory written by `measureflow reproduce`")
    options = {"fps": fps, "frames": frames, "seconds": seconds}
    animated = [n for n in experiments() if hasattr(load(n), "animate")]
    inside = {n: out / n for n in animated if load(n).has_tables(out / n)}
    if inside:
        written = {n: load(n).animate(d, **options) for n, d in inside.items()}
        if present(out):
            plot_directory(out)  # report.md and report.html show the new GIFs
        return written
    for n in animated:  # an experiment's own directory
        if load(n).has_tables(out):
            written = {n: load(n).animate(out, **options)}
            if out.name == n and n in present(out.parent):
                plot_directory(out.parent)  # DIR/<name>: the report in DIR shows the new GIFs
            return written
    raise ValidationError(f"{str(out)!r} holds no trajectory tables (trajectories/*_paths.csv); run "
                          f"`measureflow reproduce --only trajectories --out {out}` first")


# -- config.json and report.md --------------------------------------------------------------

def _versions() -> dict:
    import platform

    import jax
    import matplotlib
    import numpy

    return {"measureflow": __version__, "python": platform.python_version(), "jax": jax.__version__,
            "numpy": numpy.__version__, "matplotlib": matplotlib.__version__}


def write_config(out, *, seed: int, preset: str) -> pathlib.Path:
    """``out/config.json``: the last invocation's preset and seed, package versions, and
    each present experiment's record (preset, exact parameters, seed, wall time)."""
    out = pathlib.Path(out)
    config = {"preset": preset, "seed": seed, "versions": _versions(),
              "experiments": {n: _read_record(out / n) for n in present(out)}}
    path = out / "config.json"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def _animation_paths(name: str, exp_dir: pathlib.Path) -> list[pathlib.Path]:
    """The experiment's GIFs present in ``exp_dir``, in its ``ANIMATIONS`` order."""
    stems = getattr(load(name), "ANIMATIONS", ())
    return [exp_dir / f"{s}.gif" for s in stems if (exp_dir / f"{s}.gif").is_file()]


def write_report(out, figures: dict[str, list[pathlib.Path]]) -> pathlib.Path:
    """``out/report.md``: for each experiment, its heading, reading and figures (PNG shown,
    PDF linked, then the GIFs present), plus a table of what was run; and ``out/report.html``,
    the same text as one self-contained page (:mod:`measureflow.experiments.report_html`)."""
    from .report_html import write_html

    out = pathlib.Path(out)
    lines = ["# measureflow: reproduced figures", "",
             f"measureflow {__version__}. Regenerate the figures from the tables with "
             f"`measureflow plot {out}`; the exact parameters are in `config.json`.", "",
             "| experiment | preset | seed | wall time (s) |", "|---|---|---|---|"]
    for n in figures:
        rec = _read_record(out / n) or {}
        lines.append(f"| {n} | {rec.get('preset', '?')} | {rec.get('seed', '?')} | {rec.get('wall_time_s', '?')} |")
    for n, paths in figures.items():
        module = load(n)
        lines += ["", f"## {module.TITLE}", "", module.summarize(out / n), ""]
        for p in paths:
            rel = f"{n}/{pathlib.Path(p).name}"  # relative to report.md
            if rel.endswith(".png"):
                lines.append(f"![{module.TITLE}: {pathlib.Path(p).stem}]({rel})")
            elif rel.endswith(".pdf"):
                lines += ["", f"[{pathlib.Path(p).name} (PDF)]({rel})", ""]
        gifs = _animation_paths(n, out / n)
        if gifs:
            lines += ["", f"Animations (GIF, redrawn from the tables by `measureflow animate {out}`):", ""]
            lines += [f"![{module.TITLE}: animation of {p.stem}]({n}/{p.name})" for p in gifs]
    path = out / "report.md"
    text = "\n".join(lines).rstrip() + "\n"
    path.write_text(text)
    write_html(out, text, title="measureflow: reproduced figures")
    return path
