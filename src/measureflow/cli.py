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


def run():
    """Entry point: run the app, turning measureflow errors into one-line messages."""
    from .errors import MeasureflowError

    try:
        app(standalone_mode=False)
    except MeasureflowError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
