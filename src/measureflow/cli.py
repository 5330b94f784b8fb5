"""The ``measureflow`` command.

Errors of measureflow's own (bad input) are printed on one line with exit code 2, no
traceback. Each subcommand lives in its own section below.
"""

from __future__ import annotations

import sys

import typer

from ._version import __version__

app = typer.Typer(
    name="measureflow", no_args_is_help=True, add_completion=False,
    help="Optimization over measures by particle gradient descent.")


def _version(value: bool):
    if value:
        typer.echo(f"measureflow {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")):
    """Optimization over measures by particle gradient descent."""


# -- sweeps and results (issue 6) -----------------------------------------------------------

@app.command("sweep")
def sweep_command(
    spec: str = typer.Argument(..., help="Sweep spec file (.yaml, .yml or .toml)."),
    out: str = typer.Option(..., "--out", help="Results store directory (created if missing; resumed if not)."),
    workers: int = typer.Option(None, "--workers", help="Local worker processes (default: the CPUs available; "
                                "0: run in this process). With --dask-local: the LocalCluster's processes."),
    scheduler: str = typer.Option(None, "--scheduler", help="Address of a Dask scheduler, e.g. tcp://host:8786."),
    dask_local: bool = typer.Option(False, "--dask-local", help="Start a Dask LocalCluster (worker processes)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Redo runs recorded as failed."),
    compile_cache: bool = typer.Option(True, "--compile-cache/--no-compile-cache",
                                       help="Share JAX's compilation cache between local workers (DIR/.jax-cache)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the live progress bar."),
    max_runs: int = typer.Option(100_000, "--max-runs", help="Refuse a grid of more runs than this (counted "
                                 "before anything is expanded)."),
    lease_seconds: float = typer.Option(30.0, "--lease-seconds", help="Other clients of the store take over "
                                        "this one's runs after it has been silent this long."),
):
    """Run every run of SPEC not yet in the store --out (finished runs are skipped).

    Several of these commands may share one --out (on one machine): they split the runs."""
    from .errors import ValidationError
    from .experiments.sweep import run_sweep

    if scheduler is not None and dask_local:
        raise ValidationError("--scheduler and --dask-local exclude each other")
    try:
        summary = run_sweep(spec, out, workers=workers, scheduler=scheduler, dask_local=dask_local,
                            retry_failed=retry_failed, compile_cache=compile_cache, progress=progress,
                            max_runs=max_runs, lease_s=lease_seconds)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the finished runs are stored in {out}; run the same command again to resume",
                   err=True)
        raise SystemExit(130) from None  # (click returns typer.Exit codes in non-standalone mode)
    others = f", {summary.by_others} recorded by other clients" if summary.by_others else ""
    taken = f" ({summary.taken_over} taken over from stalled clients)" if summary.taken_over else ""
    typer.echo(f"{summary.total} runs: {summary.skipped} already stored, {summary.done} done, "
               f"{summary.failed} failed{others}{taken} in {summary.wall_time:.1f} s -> {summary.out}", err=True)


@app.command("results")
def results_command(
    directory: str = typer.Argument(..., help="Results store directory (written by `measureflow sweep`)."),
    format: str = typer.Option("csv", "--format", help="csv or parquet."),
    output: str = typer.Option(None, "--output", help="Output file (default: CSV to stdout, "
                               "Parquet to DIR/results.parquet)."),
    status: str = typer.Option(None, "--status", help="Only runs with this status (done or failed)."),
):
    """Export a results store: one row per run (run_id, status, configuration, metrics)."""
    from .errors import ValidationError
    from .store import Store

    if format not in ("csv", "parquet"):
        raise ValidationError(f"--format={format!r} is not one of 'csv', 'parquet'")
    with Store(directory, create=False) as store:
        if output is None and format == "csv":
            typer.echo(store.to_dataframe(status).to_csv(index=False), nl=False)
            return
        path = store.export(output or f"{directory}/results.parquet", format, status=status)
    typer.echo(f"wrote {path}", err=True)


# -- reproducing the figures (issue 5) ------------------------------------------------------

@app.command("reproduce")
def reproduce_command(
    preset: str = typer.Option("quick", "--preset", help="quick (minutes on a laptop) or paper (full size)."),
    only: list[str] = typer.Option(None, "--only", help="Run only this experiment (repeatable, or comma-separated): "
                                   "excess_loss, trajectories, first_variation, mean_field_limit."),
    out: str = typer.Option("results", "--out", help="Output directory (created if missing)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random draw (data, initializations, minibatches)."),
    force: bool = typer.Option(False, "--force", help="Rerun experiments already up to date in --out."),
    jobs: int = typer.Option(1, "--jobs", help="Experiments run side by side, each in its own process."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    settings: list[str] = typer.Option(None, "--set", help="Change one preset key, NAME.key.key=VALUE (VALUE as "
                                       "JSON), e.g. excess_loss.problems.relu.m=[3,25] (repeatable)."),
):
    """Run the experiments: figures (PNG, PDF, GIF), tables (CSV), config.json, report.md and report.html in --out."""
    from .experiments.reproduce import reproduce

    summary = reproduce(out, preset, only, seed, settings=settings, force=force, progress=progress, jobs=jobs)
    for name in summary.skipped:
        typer.echo(f"{name}: up to date, figures redrawn (--force reruns it)", err=True)
    total = sum(summary.wall_time.values())
    typer.echo(f"{len(summary.ran)} experiment(s) run in {total:.1f} s; report: {summary.report}", err=True)


@app.command("plot")
def plot_command(directory: str = typer.Argument(..., help="A directory written by `measureflow reproduce`.")):
    """Redraw every figure in DIRECTORY (and report.md, report.html) from its saved tables alone."""
    from .experiments.reproduce import plot_directory

    figures = plot_directory(directory)
    count = sum(len(paths) for paths in figures.values())
    typer.echo(f"redrew {count} figure files for {', '.join(figures)} in {directory}", err=True)


@app.command("animate")
def animate_command(
    directory: str = typer.Argument(..., help="A directory written by `measureflow reproduce` (or its "
                                    "trajectories/ folder)."),
    fps: int = typer.Option(10, "--fps", help="Frames per second."),
    seconds: float = typer.Option(None, "--seconds", help="Length of each GIF in seconds (frames = seconds x fps)."),
    frames: int = typer.Option(None, "--frames", help="Frames of each GIF (default: one per saved snapshot)."),
):
    """Draw GIFs of the particle flows (DIR/trajectories/*.gif) from the saved tables alone."""
    from .experiments.reproduce import animate_directory

    written = animate_directory(directory, fps=fps, frames=frames, seconds=seconds)
    paths = [str(p) for ps in written.values() for p in ps]
    typer.echo(f"wrote {len(paths)} GIFs: {', '.join(paths)}", err=True)


# -- deconvolution of a user's signal (issue 15) --------------------------------------------

@app.command("deconvolve")
def deconvolve_command(
    signal: str = typer.Argument(..., help="Samples on a uniform grid of the torus: .npy (1-D vector or 2-D "
                                 "image) or .csv (one column, 'x,value' columns, or an image)."),
    kernel: str = typer.Option("dirichlet", "--kernel", help="dirichlet (needs --cutoff) or gaussian (needs --sigma)."),
    cutoff: int = typer.Option(None, "--cutoff", help="Cut-off frequency f_c of the Dirichlet kernel."),
    sigma: float = typer.Option(None, "--sigma", help="Width σ of the periodized Gaussian kernel."),
    lam: float = typer.Option(..., "--lam", help="Regularization λ > 0."),
    out: str = typer.Option(..., "--out", help="Output directory (created if missing)."),
    tol: float = typer.Option(1e-8, "--tol", help="Relative duality gap to certify."),
):
    """Certified BLASSO of SIGNAL: writes spikes.csv, certificate.json and deconvolution.png to --out."""
    from .signal_io import deconvolve_signal

    summary = deconvolve_signal(signal, kernel=kernel, cutoff=cutoff, sigma=sigma, lam=lam, out=out, tol=tol)
    typer.echo(summary)


def run():
    """Entry point: run the app, turning measureflow errors into one-line messages."""
    from .errors import MeasureflowError

    try:
        # standalone_mode=False returns a command's exit code (typer.Exit) instead of exiting
        # prog_name: the hint names `measureflow`, however the process was started
        code = app(standalone_mode=False, prog_name="measureflow")
    except MeasureflowError as exc:
        # one line: multi-line messages (a YAML parser's context, with its caret line) joined
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and set(ln.strip()) != {"^"}]
        typer.echo(f"error: {' | '.join(lines)}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except Exception as exc:
        # usage errors (click's, or the copy of click that typer vendors) show themselves
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            message = " ".join(exc.format_message().split()) if hasattr(exc, "format_message") else ""
            if message:  # one line, like measureflow's own errors
                ctx = getattr(exc, "ctx", None)
                hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
                typer.echo(f"error: {message}{hint}", err=True)
            else:  # e.g. no arguments: the help
                exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)
