"""GIFs of the particle flows: frame counts and rates read back with Pillow, interpolation
between snapshots against hand computations, ``measureflow animate`` from the saved tables
alone (synthetic tables: no solver runs here), and its bad input."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import measureflow as mf
from measureflow.experiments import trajectories as tr
from measureflow.experiments.tables import paths_table, write_table
from measureflow.plotting import animation as an

SNAPSHOTS = 6


def _trajectory_tables(directory, m=5, s=SNAPSHOTS, seed=0):
    """The tables the trajectory experiment saves, with made-up paths (s snapshots)."""
    rng = np.random.default_rng(seed)
    its = np.unique(np.geomspace(1, 500, s).astype(int)) - 1
    s = len(its)
    grid = (np.arange(m) + 0.5) / m
    r = np.outer(np.linspace(0, 1, s), rng.normal(size=m) * 5)
    t = np.mod(grid[None, :] + np.outer(np.linspace(0, 0.3, s), rng.normal(size=m)), 1.0)
    write_table(directory, "deconvolution_paths", paths_table(its, np.stack([r, t], -1), ("r", "t")))
    write_table(directory, "deconvolution_truth", {"t": [0.2, 0.7], "a": [1.5, -1.0]})
    for run in ("relu_gd", "relu_sgd"):
        start = rng.normal(size=(m, 3))
        S = start[None] * np.linspace(1, 2, s)[:, None, None]
        write_table(directory, f"{run}_paths", paths_table(its, S, ("w", "b", "a")))
        write_table(directory, f"{run}_teacher", {"w": [1.0, -0.5], "b": [0.3, 1.0], "a": [1.0, -1.0],
                                                  "mass": [0.5, 0.5]})
    return s


def test_resample_hits_the_snapshots_and_interpolates_between():
    S = np.arange(4 * 2 * 3, dtype=float).reshape(4, 2, 3) ** 1.5
    assert np.array_equal(an.resample(S, 4), S)  # one frame per snapshot: the snapshots themselves
    mid = an.resample(S, 7)  # every other frame halfway between two snapshots
    assert np.allclose(mid[::2], S) and np.allclose(mid[1::2], (S[:-1] + S[1:]) / 2)
    assert np.allclose(an.resample(np.array([0.0, 10.0]), 5), [0, 2.5, 5, 7.5, 10])


def test_resample_goes_the_short_way_round_the_circle():
    t = np.array([[0.9], [0.1]])  # 0.2 apart across 0, not 0.8 apart through 0.5
    got = an.resample(t, 5, periodic=[True])[:, 0]
    assert np.allclose(got, [0.9, 0.95, 0.0, 0.05, 0.1])
    assert np.all((got >= 0) & (got < 1))
    both = an.resample(np.array([[[0.0, 0.95]], [[2.0, 0.05]]]), 3, periodic=[False, True])
    assert np.allclose(both[1, 0], [1.0, 0.0])


@pytest.mark.parametrize("kwargs, expected", [({}, 12), ({"frames": 30}, 30), ({"seconds": 2.5, "fps": 4}, 10),
                                              ({"seconds": 1.0}, 10)])
def test_frame_count(kwargs, expected):
    assert an.frame_count(12, **kwargs) == expected


@pytest.mark.parametrize("kwargs, error, match", [
    ({"frames": 10, "seconds": 1.0}, mf.ValidationError, "frames or as seconds, not both"),
    ({"fps": 0}, mf.ValidationError, r"fps=0 is invalid: it must be >= 1"),
    ({"frames": 1}, mf.ValidationError, r"frames=1 is invalid: it must be >= 2"),
    ({"seconds": -1.0}, mf.ValidationError, r"seconds=-1.0 is invalid: it must be > 0"),
    ({"seconds": 0.01}, mf.ValidationError, "gives 0 frames"),
    ({"fps": 2.5}, mf.InputTypeError, "fps must be an integer"),
])
def test_frame_count_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        an.frame_count(12, **kwargs)


def test_planar_and_spike_gifs_have_the_frames_and_rate_asked_for(tmp_path):
    rng = np.random.default_rng(1)
    its = np.array([0, 1, 3, 9, 30])
    P = rng.normal(size=(5, 4, 2))
    path = an.planar_animation(tmp_path / "p.gif", its, P, np.sign(rng.normal(size=(5, 4))),
                               teacher=np.array([[1.0, 1.0]]), teacher_signs=np.array([1.0]), fps=5, frames=9)
    info = an.gif_info(path)
    assert info["frames"] == 9 and set(info["duration_ms"]) == {200} and info["fps"] == 5
    assert (info["width"], info["height"]) == (480, 368)
    t = np.mod(rng.uniform(size=(5, 3)) + np.linspace(0, 0.5, 5)[:, None], 1.0)
    path = an.spike_animation(tmp_path / "s.gif", its, t, rng.normal(size=(5, 3)), truth_t=[0.5], truth_a=[1.0],
                              fps=20, seconds=0.5)
    info = an.gif_info(path)
    assert info["frames"] == 10 and set(info["duration_ms"]) == {50}
    # a frame that does not move still differs from its neighbour (its label), so Pillow
    # keeps every frame
    still = np.repeat(P[:1], 5, axis=0)
    assert an.gif_info(an.planar_animation(tmp_path / "still.gif", its, still, np.ones((5, 4))))["frames"] == 5


def test_animate_writes_a_gif_per_trajectory_figure_from_the_tables_alone(tmp_path):
    s = _trajectory_tables(tmp_path / "trajectories")
    assert tr.has_tables(tmp_path / "trajectories") and not tr.has_tables(tmp_path)
    paths = tr.animate(tmp_path / "trajectories")
    assert [p.name for p in paths] == ["deconvolution.gif", "relu_gd.gif", "relu_sgd.gif"]
    for p in paths:  # default: one frame per snapshot, 10 frames per second
        info = an.gif_info(p)
        assert info["frames"] == s and set(info["duration_ms"]) == {100}
    paths = tr.animate(tmp_path / "trajectories", fps=4, seconds=1)
    assert all(an.gif_info(p)["frames"] == 4 and set(an.gif_info(p)["duration_ms"]) == {250} for p in paths)


def _cli(monkeypatch, capsys, *args):
    from measureflow.cli import run

    monkeypatch.setattr(sys, "argv", ["measureflow", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        run()
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


def test_cli_animate_options(tmp_path, monkeypatch, capsys):
    _trajectory_tables(tmp_path / "trajectories")
    code, err = _cli(monkeypatch, capsys, "animate", tmp_path, "--fps", 25, "--frames", 7)
    assert code == 0 and err[0].startswith("wrote 3 GIFs")
    for run in tr.ANIMATIONS:
        info = an.gif_info(tmp_path / "trajectories" / f"{run}.gif")
        assert info["frames"] == 7 and set(info["duration_ms"]) == {40}
    code, _ = _cli(monkeypatch, capsys, "animate", tmp_path / "trajectories", "--fps", 5, "--seconds", 1)
    assert code == 0 and an.gif_info(tmp_path / "trajectories" / "relu_gd.gif")["frames"] == 5


@pytest.mark.parametrize("args, message", [
    (["animate", "{empty}"], "holds no trajectory tables"),
    (["animate", "{missing}"], "is not a directory"),
    (["animate", "{tables}", "--frames", "5", "--seconds", "1"], "not both"),
    (["animate", "{tables}", "--fps", "0"], "fps=0 is invalid"),
])
def test_cli_animate_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, capsys, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.csv").write_text("a\n1\n")
    _trajectory_tables(tmp_path / "tables" / "trajectories")
    paths = {"empty": tmp_path / "empty", "missing": tmp_path / "missing", "tables": tmp_path / "tables"}
    code, err = _cli(monkeypatch, capsys, *[a.format(**paths) for a in args])
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not list((tmp_path / "tables" / "trajectories").glob("*.gif"))  # nothing drawn
