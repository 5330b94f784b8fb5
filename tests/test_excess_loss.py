"""Excess loss at convergence versus m: the cell task against independent NumPy evaluations,
batched against one-by-one cells, resuming from the store, the aggregations against NumPy on
constructed tables, the figure's conventions from constructed tables, and the parameters
validated by ``Params`` before any work."""

import shutil
import sys

import numpy as np
import pandas as pd
import pytest

import measureflow as mf
from measureflow.experiments import excess_loss as ex
from measureflow.experiments.sweep import expand
from measureflow.store import Store

RELU = {"input_dim": 3, "teacher_units": 2, "teacher_scale": 1.0, "teacher_signs": "random",
        "training": "population", "m": [4], "iterations": 150, "tol": 1e-6}
DECONV = {"spikes": 2, "cutoff": 6, "lam": 0.5, "noise": 0.0, "m": [6], "iterations": 150}
PARAMS = {"seeds": 2, "workers": 0, "problems": {"deconvolution": DECONV, "relu": RELU}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One small run of the experiment (2 cells and one F* chunk, 2 seeds each): its
    directory, and the stored metrics and arrays of every cell by (problem, m)."""
    out = tmp_path_factory.mktemp("excess_loss")
    calls = []
    ex.run(out, PARAMS, 0, lambda d, c, t: calls.append((d, c, t)))
    assert calls[-1][1:] == (3, 3)
    p = ex.check_params(PARAMS)
    seeds = {n: ex._seeds(p, n, 0) for n in ("deconvolution", "relu")}
    entries = {n: ex._entry(p, n) for n in ("deconvolution", "relu")}
    cells = {}
    with Store(out / "store") as store:
        for r in expand(ex._spec([("deconvolution", 6), ("relu", 4)], seeds, entries)):
            rec = store.get(r.run_id)
            assert rec.status == "done", rec.error
            cells[(r.config["problem"], r.config["m"])] = (rec.metrics, store.load_arrays(r.run_id))
    return out, cells


# -- independent evaluations ----------------------------------------------------------------

def arccos_kernel(U, V):
    """E relu(u·x) relu(v·x), x ~ N(0, I): |u||v|(sin α + (π − α) cos α)/(2π) (Cho & Saul)."""
    nu, nv = np.linalg.norm(U, axis=1), np.linalg.norm(V, axis=1)
    cos = np.clip(U @ V.T / np.outer(nu, nv), -1, 1)
    a = np.arccos(cos)
    return np.outer(nu, nv) * (np.sin(a) + (np.pi - a) * cos) / (2 * np.pi)


def relu_population_risk(P, T):
    """½E(f_μ − f*)², f_μ = (1/m)Σ a_i relu(w_i·x), f* = (1/m0)Σ c_k relu(v_k·x)."""
    a, W = P[:, -1] / len(P), P[:, :-1]
    c, V = T[:, -1] / len(T), T[:, :-1]
    return 0.5 * (a @ arccos_kernel(W, W) @ a - 2 * a @ arccos_kernel(W, V) @ c + c @ arccos_kernel(V, V) @ c)


def dirichlet(u, fc):
    u = np.asarray(u, float)
    s = np.sin(np.pi * u)
    safe = np.where(np.abs(s) < 1e-12, 1.0, s)
    return np.where(np.abs(s) < 1e-12, 2 * fc + 1.0, np.sin((2 * fc + 1) * np.pi * u) / safe)


def test_relu_population_cell_matches_numpy(tiny):
    _, cells = tiny
    met, arr = cells[("relu", 4)]
    assert met["seeds"] == [0, 1] and met["m0"] == 2 and met["excess_kind"] == "exact"
    assert set(met["flow_status"]) <= {"converged", "max_iterations"}
    for i, seed in enumerate(met["seeds"]):
        T = np.asarray(mf.data.TeacherStudent(3, 2, "relu", bias=False, seed=seed).teacher)
        mu0 = np.asarray(mf.init.admissible(mf.features.ReLU(3), 4, key=seed).positions)
        np.testing.assert_allclose(met["initial"][i], relu_population_risk(mu0, T), rtol=1e-10)
        np.testing.assert_allclose(met["flow_objective"][i], relu_population_risk(arr["flow_positions"][i], T),
                                   rtol=1e-9)
        # the baseline: the exact population least squares over the output weights, by NumPy
        Pb = arr["baseline_positions"][i]
        np.testing.assert_array_equal(Pb[:, :-1], mu0[:, :-1])
        G = arccos_kernel(mu0[:, :-1], mu0[:, :-1])
        g = arccos_kernel(mu0[:, :-1], T[:, :-1]) @ (T[:, -1] / 2)
        b = np.linalg.solve(G, g)
        best = 0.5 * (arccos_kernel(T[:, :-1], T[:, :-1]) @ (T[:, -1] / 2) @ (T[:, -1] / 2) - g @ b)
        np.testing.assert_allclose(met["baseline_objective"][i], best, rtol=1e-7, atol=1e-14)
        np.testing.assert_allclose(Pb[:, -1] / 4, b, rtol=1e-7)
        # the flow does at least as well as the convex baseline on the same μ0 here (m > m0)
        assert met["flow_objective"][i] < met["baseline_objective"][i]


def test_deconvolution_cell_matches_numpy_and_certifies(tiny):
    _, cells = tiny
    met, arr = cells[("deconvolution", 6)]
    fc, lam = DECONV["cutoff"], DECONV["lam"]
    for i, seed in enumerate(met["seeds"]):
        sig = mf.data.SpikeSignal(spikes=2, cutoff=fc, seed=seed)
        N = sig.grid
        x = np.arange(N) / N
        y = dirichlet(x[:, None] - np.asarray(sig.positions)[:, 0][None, :], fc) @ np.asarray(sig.amplitudes)
        t_fine = np.arange(40_000) / 40_000
        for method in ("flow", "baseline"):
            P = arr[f"{method}_positions"][i]
            w = 1.0 / len(P)
            f = dirichlet(x[:, None] - P[:, 1][None, :], fc) @ (w * P[:, 0])
            F = 0.5 * np.mean((f - y) ** 2) + lam * w * np.abs(P[:, 0]).sum()
            np.testing.assert_allclose(met[f"{method}_objective"][i], F, rtol=1e-11)
            # dual point p = s (y − f), s = min(1, 1/sup|η|), η by brute force on a fine grid
            eta = dirichlet(t_fine[:, None] - x[None, :], fc) @ (y - f) / (lam * N)
            s = min(1.0, 1.0 / np.abs(eta).max())
            p = s * (y - f)
            D = np.mean(y * p - 0.5 * p**2)
            np.testing.assert_allclose(met[f"{method}_dual"][i], D, rtol=1e-7)
            np.testing.assert_allclose(met[f"{method}_gap"][i], F - D, rtol=0, atol=1e-7 * F)
        # μ0: zero weights on a uniform grid of m positions (the paper's initialization)
        mu0 = np.asarray(mf.init.admissible(sig.feature, 6, key=seed).positions)
        assert np.all(mu0[:, 0] == 0)
        gaps = np.diff(np.sort(mu0[:, 1]))
        np.testing.assert_allclose(gaps, 1 / 6, rtol=1e-12)


def test_runs_table_uses_the_certified_or_exact_fstar(tiny):
    out, cells = tiny
    runs = pd.read_csv(out / "runs.csv")
    fstar = pd.read_csv(out / "fstar.csv")
    assert len(runs) == 2 * 2 * 2 and sorted(fstar["seed"]) == [0, 1]
    assert set(runs["method"]) == set(ex.METHODS)
    assert set(runs["status"]) <= {"converged", "max_iterations", "diverged"}
    dec = runs[runs["problem"] == "deconvolution"]
    met = cells[("deconvolution", 6)][0]
    for seed, g in dec.groupby("seed"):
        i = met["seeds"].index(seed)
        f = fstar[fstar["seed"] == seed].iloc[0]
        lower = max(met["flow_dual"][i], met["baseline_dual"][i], f["fstar_dual"])
        np.testing.assert_allclose(g["fstar"], lower, rtol=1e-14)
        # deconvolve certifies F* itself: the bracket is as narrow as its gap (relative ≤ 1e-8)
        assert f["fstar_objective"] - f["fstar_dual"] <= 1e-8 * f["fstar_dual"]
        assert (g["fstar_width"] <= 1e-8 * lower).all()
        np.testing.assert_allclose(g["excess"], g["objective"] - lower, rtol=1e-14)
        assert (g["fstar_width"] >= 0).all() and (g["excess"] >= 0).all()  # weak duality
        np.testing.assert_allclose(g["resolution"], np.maximum(g["fstar_width"], ex.FLOOR * g["initial"]))
    rel = runs[runs["problem"] == "relu"]
    assert (rel["fstar"] == 0).all() and (rel["excess_kind"] == "exact").all()
    np.testing.assert_allclose(rel["relative_excess"], rel["objective"] / rel["initial"], rtol=1e-14)
    flow = rel[rel["method"] == "particle_flow"]
    assert list(flow["status"]) == cells[("relu", 4)][0]["flow_status"]
    summary = pd.read_csv(out / "summary.csv")
    cells_csv = pd.read_csv(out / "cells.csv")
    assert {"flow_wall_s", "cell_wall_s", "flow_compilations", "converged", "max_iterations"} <= set(cells_csv)


# -- aggregations on constructed tables -----------------------------------------------------

def constructed_runs(rng):
    rows = []
    statuses = ["converged", "max_iterations", "diverged"]
    for method in ex.METHODS:
        for m in (2, 5, 9):
            for seed in range(7):
                e = 10.0 ** rng.uniform(-12, 0)
                rows.append({"problem": "relu", "method": method, "m": m, "m0": 3, "seed": seed, "excess": e,
                             "relative_excess": e / 2.0, "relative_resolution": 1e-15, "fstar_width": 0.0,
                             "status": statuses[(seed + m) % 3] if method == "particle_flow" else "converged",
                             "wall_time_s": 1.0})
    runs = pd.DataFrame(rows)
    runs.loc[3, "relative_excess"] = 0.0  # an exact zero counts at the floor
    return runs


def test_geometric_mean_and_status_counts_against_numpy():
    rng = np.random.default_rng(0)
    v = 10.0 ** rng.uniform(-10, 0, 50)
    assert ex.geometric_mean(v) == pytest.approx(float(np.prod(v) ** (1 / 50)), rel=1e-12)
    assert ex.geometric_mean([0.0, 1e-3, -1e-20], floor=1e-9) == pytest.approx((1e-9 * 1e-3 * 1e-9) ** (1 / 3))
    assert ex.geometric_mean([1e-4, np.nan, np.inf]) == pytest.approx(1e-4)
    assert np.isnan(ex.geometric_mean([np.nan]))
    assert ex.status_counts(["converged", "diverged", "converged"]) == {"converged": 2, "max_iterations": 0,
                                                                        "diverged": 1}
    runs = constructed_runs(rng)
    summary = ex.summary_table(runs)
    for _, row in summary.iterrows():
        g = runs[(runs.method == row.method) & (runs.m == row.m)]
        r = g["relative_excess"].to_numpy()
        np.testing.assert_allclose(row.relative_geomean, np.exp(np.mean(np.log(np.maximum(r, ex.FLOOR)))),
                                   rtol=1e-12)
        np.testing.assert_allclose(row.relative_median, np.median(r), rtol=1e-14)
        np.testing.assert_allclose([row.relative_q25, row.relative_q75], np.quantile(r, [0.25, 0.75]), rtol=1e-14)
        np.testing.assert_allclose(row.excess_geomean, np.exp(np.mean(np.log(g["excess"]))), rtol=1e-12)
        for status in ("converged", "max_iterations", "diverged"):
            assert row[status] == (g["status"] == status).sum()
        assert row.seeds == 7


def test_figure_conventions_from_constructed_tables():
    import matplotlib.colors as mcolors
    from matplotlib.collections import PolyCollection

    from measureflow.plotting.excess_loss import draw_excess_loss
    from measureflow.plotting.figures import new_figure

    runs = constructed_runs(np.random.default_rng(1))
    runs.loc[runs["status"] == "diverged", "status"] = "converged"  # diverged runs: checked below
    summary = ex.summary_table(runs)
    summary["relative_resolution"] = [1e-9 if m == 9 else 1e-12 for m in summary["m"]]
    # the baseline's (large) resolution is not the band's: the band is the flow's
    summary.loc[summary["method"] == "random_features", "relative_resolution"] = 1e-3
    fig, ax = new_figure(4, 3)
    draw_excess_loss(ax, summary, runs, title="t")
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    for method, colour in (("particle_flow", "C0"), ("random_features", "C1")):
        line = next(ln for lab, ln in lines.items()
                    if lab.endswith("(geometric mean)") and mcolors.same_color(ln.get_color(), colour))
        s = summary[summary.method == method].sort_values("m")
        np.testing.assert_allclose(line.get_xdata(), s["m"])
        np.testing.assert_allclose(line.get_ydata(), np.maximum(s["relative_geomean"], ex.FLOOR))
    # runs at the cap are hollow circles of the flow's colour, at their values
    hollow = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and ln.get_markerfacecolor() == "none"]
    assert len(hollow) == 1 and mcolors.same_color(hollow[0].get_markeredgecolor(), "C0")
    capped = runs[runs.status == "max_iterations"]
    assert sorted(hollow[0].get_ydata()) == sorted(np.maximum(capped["relative_excess"], ex.FLOOR))
    # the dashed vertical line at m0
    assert any(ln.get_linestyle() == "--" and list(ln.get_xdata()) == [3, 3] for ln in ax.get_lines())
    # the band: from the floor up to the flow's resolution, per m
    band = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(band) == 1
    top = band[0].get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(1e-9)
    import matplotlib.pyplot as plt
    plt.close(fig)


# -- execution ------------------------------------------------------------------------------

def test_batched_cell_equals_one_by_one(tiny):
    _, cells = tiny
    met, arr = cells[("relu", 4)]
    one, one_arr = ex.run_cell("relu", 4, [0, 1], RELU, batched=False)
    assert one["batched"] is False and met["batched"] is True
    assert one["flow_status"] == met["flow_status"] and one["flow_iterations"] == met["flow_iterations"]
    np.testing.assert_allclose(one["flow_objective"], met["flow_objective"], rtol=1e-9)
    np.testing.assert_allclose(one_arr["flow_positions"], arr["flow_positions"], atol=1e-9)
    np.testing.assert_allclose(one["baseline_objective"], met["baseline_objective"], rtol=1e-12)


def test_padded_cell_and_continued_runs_equal_the_plain_batch(tiny):
    """Massless padding (cells sharing a compilation) changes neither the flow nor its stop;
    nor does stopping the batch early and continuing the unfinished runs one by one."""
    _, cells = tiny
    met, arr = cells[("deconvolution", 6)]
    padded, parr = ex.run_cell("deconvolution", 6, [0, 1], {**DECONV, "pad_buckets": [4, 9], "certify": False,
                                                            "batch_iterations": 60})
    assert met["flow_status"] == ["max_iterations"] * 2  # the fixture's runs go to their cap (150): all continued
    assert padded["particles_run"] == 9 and met["particles_run"] == 6
    assert padded["flow_status"] == met["flow_status"] and padded["flow_iterations"] == met["flow_iterations"]
    np.testing.assert_allclose(padded["flow_step"], met["flow_step"], rtol=1e-12)
    np.testing.assert_allclose(padded["flow_objective"], met["flow_objective"], rtol=1e-10)
    np.testing.assert_allclose(parr["flow_positions"], arr["flow_positions"], atol=1e-10)
    assert ex.cells.padded_size(10, [4, 9]) == 10 and ex.cells.padded_size(3, [4, 9]) == 4


def test_rerun_skips_finished_cells_and_runs_only_new_ones(tiny, tmp_path, monkeypatch):
    out, cells = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    computed = []

    def fake(cfg):  # stands in for a computation: records the call, returns stored numbers
        computed.append((cfg["problem"], cfg["m"]))
        met, arr = cells[("relu", 4)]
        return {**met, "m": cfg["m"]}, arr

    monkeypatch.setattr(ex.cells, "compute", fake)
    before = pd.read_csv(copy / "runs.csv")
    ex.run(copy, PARAMS, 0, lambda *a: None)
    assert computed == []  # every cell came from the store
    pd.testing.assert_frame_equal(pd.read_csv(copy / "runs.csv"), before)
    grown = {**PARAMS, "problems": {**PARAMS["problems"], "relu": {**RELU, "m": [4, 1]}}}
    ex.run(copy, grown, 0, lambda *a: None)
    assert computed == [("relu", 1)]  # only the new cell
    runs = pd.read_csv(copy / "runs.csv")
    assert sorted(runs[runs["problem"] == "relu"]["m"].unique()) == [1, 4]


def test_plot_and_summary_from_the_csv_tables_alone(tiny, tmp_path):
    out, _ = tiny
    first = ex.plot(out)
    assert sorted(p.name for p in first) == sorted(
        f"excess_loss_{p}.{e}" for p in ("deconvolution", "relu") for e in ("png", "pdf"))
    png = {p.name: p.read_bytes() for p in first}
    only_tables = tmp_path / "tables"
    only_tables.mkdir()
    for name in ("runs.csv", "summary.csv"):
        shutil.copy(out / name, only_tables / name)
    again = ex.plot(only_tables)
    assert {p.name: p.read_bytes() for p in again} == png  # the same figure, byte for byte
    text = ex.summarize(only_tables)
    assert "ReLU teacher" in text and "deconvolution" in text and "converged" in text
    summary = pd.read_csv(out / "summary.csv")
    flow = summary[(summary.problem == "relu") & (summary.method == "particle_flow")]
    assert f"of the flow's {int(flow.seeds.sum())} runs {int(flow.converged.sum())} converged" in text
    with pytest.raises(mf.ValidationError, match="missing"):
        ex.plot(tmp_path / "empty")


# -- parameters -----------------------------------------------------------------------------

def test_every_preset_validates_and_the_paper_grid_is_the_papers():
    for preset in ex.PRESETS.values():
        ex.check_params(preset)
    paper = ex.PRESETS["paper"]["problems"]
    assert paper["deconvolution"]["m"] == [1, 2, 3, 4, 5, 6, 7, 9, 11, 14, 17, 20, 25, 30, 37, 45, 55, 67, 82]
    assert paper["deconvolution"]["spikes"] == 5 and paper["deconvolution"]["seeds"] == 100
    for name in ("relu", "sigmoid"):
        assert paper[name]["m"] == [3, 4, 5, 7, 10, 13, 18, 25, 33, 45, 61, 82, 110, 148, 199]
        assert paper[name]["input_dim"] == 100 and paper[name]["teacher_units"] == 20


@pytest.mark.parametrize("change, key", [
    ({"problems": {"relu": {**RELU, "momentum": 0.9}}}, "excess_loss.problems.relu.momentum: Extra inputs"),
    ({"problems": {"deconvolution": {**DECONV, "lam": "big"}}}, "excess_loss.problems.deconvolution.lam:"),
    ({"problems": {"relu": {**RELU, "m": 4}}}, "excess_loss.problems.relu.m: Input should be a valid list"),
    ({"problems": {"relu": {**RELU, "m": [0]}}}, "excess_loss.problems.relu.m[0]:"),
    ({"problems": {"tanh": {"m": [2]}}}, "excess_loss.problems.tanh: Extra inputs"),
    ({"seeds": 0}, "excess_loss.seeds:"),
    ({"problems": {}}, "excess_loss.problems: Value error, needs at least one"),
])
def test_bad_parameters_fail_in_one_line_naming_the_key(tmp_path, change, key):
    with pytest.raises(mf.ValidationError) as info:
        ex.run(tmp_path, {**PARAMS, **change}, 0, lambda *a: None)
    message = str(info.value)
    assert "\n" not in message and key in message
    assert not (tmp_path / "store").exists()  # nothing ran


def test_reproduce_validates_presets_and_set_values_before_any_work(tmp_path, monkeypatch, capsys):
    from measureflow.cli import run
    from measureflow.experiments import reproduce as rp

    with pytest.raises(mf.ValidationError, match=r"^excess_loss\.problems\.relu\.iterations: Input should be a valid"):
        rp.reproduce(tmp_path / "o", "test", only=["excess_loss"], settings=["excess_loss.problems.relu.iterations=x"])
    with pytest.raises(mf.ValidationError, match="must read NAME.key=VALUE"):
        rp.reproduce(tmp_path / "o", "test", only=["excess_loss"], settings=["excess_loss.seeds"])
    assert not (tmp_path / "o").exists()
    # --set changes one key of the preset, JSON-parsed
    params = rp.resolve_params(["excess_loss"], "test", settings=["excess_loss.problems.relu.m=[3, 25]",
                                                                 "excess_loss.seeds=4"])
    assert params["excess_loss"]["problems"]["relu"]["m"] == [3, 25] and params["excess_loss"]["seeds"] == 4
    assert ex.PRESETS["test"]["seeds"] == 2  # the preset itself is unchanged
    monkeypatch.setattr(sys, "argv", ["measureflow", "reproduce", "--only", "excess_loss", "--preset", "test",
                                      "--out", str(tmp_path / "c"), "--set", "excess_loss.problems.relu.bogus=1"])
    with pytest.raises(SystemExit) as exit_info:
        run()
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: excess_loss.problems.relu.bogus: Extra inputs")
