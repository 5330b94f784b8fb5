"""What the network examples do with their results: save the summary next to the figure
and print it."""

from __future__ import annotations

import json
import pathlib


def report(summary: dict, out: pathlib.Path, stem: str, figure_paths) -> None:
    """Write ``out/stem.json`` and print the summary, one ``key value`` per line, and the
    figure's paths."""
    (out / f"{stem}.json").write_text(json.dumps(summary, indent=2))
    for key, value in summary.items():
        print(f"{key:28s} {value:.6g}" if isinstance(value, float) else f"{key:28s} {value}")
    print("figure:", *figure_paths)
