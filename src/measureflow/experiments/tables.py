"""Tables behind the figures: CSV files that round-trip floats exactly, so a figure
redrawn from them (``measureflow plot``) is the figure first drawn.

- :func:`write_table` / :func:`read_table`: a pandas DataFrame to and from ``DIR/name.csv``.
- :func:`paths_table` / :func:`paths_array`: particle snapshots (s, m, p) in long format,
  one row per (iteration, particle), one column per coordinate.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd

from ..errors import ValidationError

# pandas ≥ 3 parses floats exactly by default (and deprecates the option)
_EXACT = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


def write_table(out_dir: str | pathlib.Path, name: str, table: pd.DataFrame | dict) -> pathlib.Path:
    """Write ``table`` (DataFrame or dict of columns) as ``out_dir/name.csv``."""
    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
    path = pathlib.Path(out_dir) / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)  # floats as their shortest round-trip repr
    return path


def read_table(out_dir: str | pathlib.Path, name: str) -> pd.DataFrame:
    """``out_dir/name.csv`` as a DataFrame (floats parsed exactly); a clear error if missing."""
    path = pathlib.Path(out_dir) / f"{name}.csv"
    if not path.is_file():
        raise ValidationError(f"table {path} is missing: run `measureflow reproduce` for this experiment first")
    return pd.read_csv(path, **_EXACT)


def paths_table(iterations, snapshots: np.ndarray, columns: tuple[str, ...]) -> pd.DataFrame:
    """Long format of snapshots (s, m, p) taken at ``iterations`` (s,): columns iteration,
    particle and one per coordinate (names ``columns``, p of them)."""
    S = np.asarray(snapshots, dtype=float)
    s, m, p = S.shape
    if len(columns) != p:
        raise ValidationError(f"{len(columns)} column names for {p} coordinates")
    table = {"iteration": np.repeat(np.asarray(iterations, dtype=int), m), "particle": np.tile(np.arange(m), s)}
    table.update({c: S[:, :, j].ravel() for j, c in enumerate(columns)})
    return pd.DataFrame(table)


def paths_array(table: pd.DataFrame, columns: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`paths_table`: (iterations (s,), snapshots (s, m, p))."""
    df = table.sort_values(["iteration", "particle"], kind="stable")
    iterations = np.unique(df["iteration"].to_numpy())
    m = int(df["particle"].max()) + 1
    S = df[list(columns)].to_numpy(dtype=float).reshape(len(iterations), m, len(columns))
    return iterations, S
