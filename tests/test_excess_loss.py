"""Excess loss versus m: the cell task against independent NumPy evaluations, batched
against one-by-one cells, resuming from the store, and figures from the CSV tables alone."""

import shutil

import numpy as np
import pandas as pd
import pytest

import measureflow as mf
from measureflow.experiments import excess_loss as ex
from measureflow.experiments.sweep import expand
from measureflow.store import Store

RELU = {"input_dim": 2, "teacher_units": 2, "n": 40, "teacher_scale": 1.0, "teacher_signs": "positive",
        "m": [4], "iterations": 150}
DECONV = {"spikes": 2, "cutoff": 6, "lam": 0.5, "noise": 0.0, "m": [6], "iterations": 150}
PARAMS = {"seeds": 2, "workers": 0, "problems": {"deconvolution": DECONV, "relu": RELU}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One small run of the experiment (2 cells, 2 seeds each): its directory, and the
    stored metrics and arrays of every cell by (problem, m)."""
    out = tmp_path_factory.mktemp("excess_loss")
    calls = []
    ex.run(out, PARAMS, 0, lambda d, c, t: calls.append((d, c, t)))
    assert calls[-1][1:] == (2, 2)
    cells = {}
    with Store(out / "store") as store:
        for r in expand(ex._spec([("deconvolution", 6), ("relu", 4)], [0, 1], PARAMS["problems"])):
            rec = store.get(r.run_id)
            assert rec.status == "done", rec.error
            cells[(r.config["problem"], r.config["m"])] = (rec.metrics, store.load_arrays(r.run_id))
    return out, cells


# -- independent evaluations ----------------------------------------------------------------


def relu_objective(P, X, y):
    """½ mean((f − y)²), f(x) = (1/m) Σ a_i relu(w_i·x), θ = (w, a)."""
    f = (P[:, -1][:, None] * np.maximum(P[:, :-1] @ X.T, 0.0)).mean(axis=0)
    return 0.5 * np.mean((f - y) ** 2)


def relu_data(seed):
    ts = mf.data.TeacherStudent(2, 2, "relu", bias=False, seed=seed)
    T = np.array(ts.teacher)
    T[:, -1] = 1.0  # teacher_signs="positive"
    X = np.asarray(ts.training_set(40, seed=seed).X)
    return X, (np.maximum(T[:, :-1] @ X.T, 0.0)).mean(axis=0)


def dirichlet(u, fc):
    u = np.asarray(u, float)
    s = np.sin(np.pi * u)
    safe = np.where(np.abs(s) < 1e-12, 1.0, s)
    return np.where(np.abs(s) < 1e-12, 2 * fc + 1.0, np.sin((2 * fc + 1) * np.pi * u) / safe)


def test_relu_cell_matches_numpy(tiny):
    _, cells = tiny
    for m in (4,):
        met, arr = cells[("relu", m)]
        assert met["seeds"] == [0, 1] and met["m0"] == 2
        for i, seed in enumerate(met["seeds"]):
            X, y = relu_data(seed)
            mu0 = np.asarray(mf.init.admissible(mf.features.ReLU(2), m, key=seed).positions)
            np.testing.assert_allclose(met["initial"][i], relu_objective(mu0, X, y), rtol=1e-12)
            np.testing.assert_allclose(met["flow_objective"][i], relu_objective(arr["flow_positions"][i], X, y),
                                       rtol=1e-10)
            # the baseline: least squares over a with w frozen at μ0's, independently
            Pb = arr["baseline_positions"][i]
            np.testing.assert_array_equal(Pb[:, :-1], mu0[:, :-1])
            A = np.maximum(X @ mu0[:, :-1].T, 0.0) / m
            a, *_ = np.linalg.lstsq(A, y, rcond=None)
            best = 0.5 * np.mean((A @ a - y) ** 2)
            np.testing.assert_allclose(met["baseline_objective"][i], best, rtol=1e-8, atol=1e-15)
            assert abs(met["teacher_objective"][i]) < 1e-28  # F* = 0 is attained by the teacher


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
            np.testing.assert_allclose(met[f"{method}_sup_eta"][i], np.abs(eta).max(), rtol=1e-7)


def test_runs_table_uses_the_certified_or_exact_fstar(tiny):
    out, cells = tiny
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 2 * 2 * 2
    assert set(runs["method"]) == set(ex.METHODS)
    dec = runs[runs["problem"] == "deconvolution"]
    for seed, g in dec.groupby("seed"):
        met = cells[("deconvolution", 6)][0]
        i = met["seeds"].index(seed)
        lower = max(met["flow_dual"][i], met["baseline_dual"][i], met["fstar_dual"][i])
        np.testing.assert_allclose(g["fstar"], lower, rtol=1e-14)
        # deconvolve certifies F* itself: the bracket is as narrow as its gap (relative ≤ 1e-8)
        assert met["fstar_objective"][i] - met["fstar_dual"][i] <= 1e-8 * met["fstar_dual"][i]
        assert (g["fstar_width"] <= 1e-8 * lower).all()
        np.testing.assert_allclose(g["excess"], g["objective"] - lower, rtol=1e-14)
        # weak duality: the bracket [max D, min F] is nonempty
        assert (g["fstar_width"] >= 0).all() and (g["excess"] >= 0).all()
    rel = runs[runs["problem"] == "relu"]
    assert (rel["fstar"] == 0).all() and (rel["fstar_kind"] == "exact").all()
    np.testing.assert_allclose(rel["relative_excess"], rel["objective"] / rel["initial"], rtol=1e-14)
    summary = pd.read_csv(out / "summary.csv")
    row = summary[(summary["problem"] == "relu") & (summary["method"] == "particle_flow") & (summary["m"] == 4)].iloc[0]
    vals = rel[(rel["method"] == "particle_flow") & (rel["m"] == 4)]["excess"]
    np.testing.assert_allclose(row["excess_median"], np.median(vals), rtol=1e-14)


# -- execution ------------------------------------------------------------------------------


def test_batched_cell_equals_one_by_one(tiny):
    _, cells = tiny
    met, arr = cells[("relu", 4)]
    one, one_arr = ex.run_cell("relu", 4, [0, 1], RELU, batched=False)
    assert one["batched"] is False and met["batched"] is True
    np.testing.assert_allclose(one["flow_objective"], met["flow_objective"], rtol=1e-9)
    np.testing.assert_allclose(one_arr["flow_positions"], arr["flow_positions"], atol=1e-9)
    np.testing.assert_allclose(one_arr["flow_history"], arr["flow_history"], rtol=1e-9)
    np.testing.assert_allclose(one["baseline_objective"], met["baseline_objective"], rtol=1e-12)


def test_rerun_skips_finished_cells_and_runs_only_new_ones(tiny, tmp_path, monkeypatch):
    out, cells = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    computed = []

    def fake(cfg):  # stands in for a computation: records the call, returns stored numbers
        computed.append((cfg["problem"], cfg["m"]))
        met, arr = cells[("relu", 4)]
        return {**met, "m": cfg["m"]}, arr

    monkeypatch.setattr(ex, "_compute", fake)
    before = pd.read_csv(copy / "runs.csv")
    ex.run(copy, PARAMS, 0, lambda *a: None)
    assert computed == []  # every cell came from the store
    pd.testing.assert_frame_equal(pd.read_csv(copy / "runs.csv"), before)
    grown = {**PARAMS, "problems": {**PARAMS["problems"], "relu": {**RELU, "m": [4, 1]}}}
    ex.run(copy, grown, 0, lambda *a: None)
    assert computed == [("relu", 1)]  # only the new cell
    runs = pd.read_csv(copy / "runs.csv")
    assert sorted(runs[runs["problem"] == "relu"]["m"].unique()) == [1, 4]
    ex.run(copy, grown, 0, lambda *a: None)
    assert computed == [("relu", 1)]


def test_plot_and_summary_from_the_csv_tables_alone(tiny, tmp_path):
    out, _ = tiny
    first = ex.plot(out)
    assert sorted(p.name for p in first) == sorted(
        f"excess_loss_{p}.{e}" for p in ("deconvolution", "relu") for e in ("png", "pdf"))
    png = {p.name: p.read_bytes() for p in first}
    only_tables = tmp_path / "tables"
    only_tables.mkdir()
    for name in ("runs.csv", "summary.csv", "cells.csv"):
        shutil.copy(out / name, only_tables / name)
    assert not list(only_tables.rglob("*.npz")) and not (only_tables / "store").exists()
    again = ex.plot(only_tables)
    assert {p.name: p.read_bytes() for p in again} == png  # the same figure, byte for byte
    text = ex.summarize(only_tables)
    assert "ReLU teacher" in text and "deconvolution" in text and "ratio" in text
    with pytest.raises(mf.ValidationError, match="missing"):
        ex.plot(tmp_path / "empty")


def test_bad_parameters_fail_before_any_work(tmp_path):
    with pytest.raises(mf.ValidationError, match="unknown problem"):
        ex.run(tmp_path, {"seeds": 1, "problems": {"tanh": {"m": [2]}}}, 0, lambda *a: None)
    with pytest.raises(mf.ValidationError, match="lam"):
        ex.run(tmp_path, {"seeds": 1, "problems": {"deconvolution": {**DECONV, "lam": -1.0}}}, 0, lambda *a: None)
    with pytest.raises(mf.ValidationError, match="cutoff"):
        ex.run(tmp_path, {"seeds": 1, "problems": {"relu": {**RELU, "cutoff": 3}}}, 0, lambda *a: None)
    with pytest.raises(mf.ValidationError, match="seeds"):
        ex.run(tmp_path, {"seeds": 0, "problems": {"relu": RELU}}, 0, lambda *a: None)
    assert not (tmp_path / "store").exists()
