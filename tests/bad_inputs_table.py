"""Bad inputs across the Python API, the CLI and sweep configs, with the error each must
produce. ``tests/test_robustness.py`` checks every case; run this file to print the table
(Markdown) of the exact messages:

    .venv/bin/python tests/bad_inputs_table.py > table.md

A case is ``Case(id, where, what, run, error, match)``: ``run(tmp)`` (``tmp`` a scratch
directory) must raise ``error`` (API and configs), or, for CLI cases, return the
arguments of a ``measureflow`` command that must exit with code 2 and print one line
matching ``match``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import dataclasses
import io
import json
import sqlite3
import sys
import tempfile
import traceback
import zipfile
from pathlib import Path
from typing import Callable

import jax.numpy as jnp
import numpy as np

import measureflow as mf
from measureflow.baselines import random_features
from measureflow.experiments import expand, load_spec
from measureflow.features import Custom, Homogeneity, ReLU, Spikes
from measureflow.kernels import Dirichlet, Gaussian
from measureflow.store import RunRecord, Store

VE, TE, SE = mf.ValidationError, mf.InputTypeError, mf.store.StoreError


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    where: str  # "api", "cli" or "config"
    what: str   # the bad input, in words
    run: Callable
    error: type | None  # None for CLI cases (exit code 2)
    match: str


# -- small valid ingredients (module level: built once, cheap) ------------------------------

_rng = np.random.default_rng(0)
X = _rng.standard_normal((20, 2))
y = X[:, 0] - 0.5 * X[:, 1]
TANH = Custom(lambda th, x: th[0] * jnp.tanh(th[1:] @ x), dim=3, input_dim=2,
              homogeneity=Homogeneity.partial(1, 0))
DATA = mf.data.Dataset(X, y)
PROB = mf.Problem(TANH, "square", None, DATA)
MU = mf.Particles(np.column_stack([np.zeros(4), _rng.standard_normal((4, 2))]))


def solve(**kw):
    return lambda tmp: mf.solve(PROB, MU, **{"step": 0.1, "iterations": 5, **kw})


def _checkpoint_mismatch(tmp, what):
    """A checkpoint written by a 3-step run, then resumed against another problem, after its
    version is changed, or after its bytes are damaged."""
    path = tmp / f"{what}.npz"
    mf.solve(PROB, MU, step=0.1, iterations=3, checkpoint=path)
    other = PROB
    if what == "problem":
        other = mf.Problem(TANH, "square", None, mf.data.Dataset(X, 2 * y))
    elif what == "version":
        with np.load(path) as z:
            arrays = dict(z)
        header = json.loads(str(arrays["header"]))
        arrays["header"] = np.asarray(json.dumps(dict(header, measureflow="0.0.0-other")))
        np.savez(path, **arrays)
    else:
        path.write_bytes(path.read_bytes()[:100])
    return mf.solve(other, MU, step=0.1, iterations=3, checkpoint=path)


def _store_with_tampered_arrays(tmp):
    with Store(tmp / "tampered") as store:
        store.record(RunRecord("r1", "t", {}, "done"), {"x": np.ones(2)})
        buf = io.BytesIO()
        np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
        with zipfile.ZipFile(tmp / "tampered" / "arrays" / "r1.npz", "w") as z:
            z.writestr("x.npy", buf.getvalue())
        return store.load_arrays("r1")


def _npy(tmp, name, array):
    path = Path(tmp) / name
    np.save(path, array)
    return path


def _write(tmp, name, text):
    path = tmp / name
    path.write_text(text)
    return path


OK_SPEC = "task: custom_teacher\nbase: {m: 4, iterations: 5, n: 20, n_test: 20}\n"

CASES = [
    # -- data ---------------------------------------------------------------------------
    Case("nan-in-X", "api", "NaN in the inputs X", lambda t: mf.data.Dataset(np.where(np.arange(40).reshape(20, 2) == 7, np.nan, X), y),
         VE, r"X contains non-finite values \(first at index \(3, 1\): nan\)"),
    Case("inf-in-y", "api", "inf in the targets y", lambda t: mf.data.Dataset(X, np.r_[np.inf, y[1:]]),
         VE, r"y contains non-finite values \(first at index \(0,\): inf\)"),
    Case("complex-X", "api", "complex inputs", lambda t: mf.data.Dataset(X + 1j, y), TE, r"X must be real, got dtype complex128"),
    Case("string-y", "api", "string targets", lambda t: mf.data.Dataset(X, ["a"] * 20), TE, r"y must be a numeric array, got dtype <U1"),
    Case("3d-X", "api", "3-D input array", lambda t: mf.data.Dataset(np.ones((4, 2, 2)), np.ones(4)), VE,
         r"X must have shape \(n, d\), got \(4, 2, 2\)"),
    Case("empty-X", "api", "empty data set", lambda t: mf.data.Dataset(np.ones((0, 2)), np.ones(0)), VE,
         r"X must contain at least one sample"),
    Case("y-length", "api", "targets of the wrong length", lambda t: mf.data.Dataset(X, y[:5]), VE,
         r"y has shape \(5,\), expected \(20\)"),
    Case("negative-sample-weights", "api", "negative sample weights",
         lambda t: mf.data.Dataset(X, y, -np.ones(20)), VE, r"sample_weights must be nonnegative"),
    # -- particles ----------------------------------------------------------------------
    Case("m-zero", "api", "m = 0 particles", lambda t: mf.init.admissible(TANH, 0), VE, r"m=0 is invalid: it must be >= 1"),
    Case("m-bool", "api", "m = True", lambda t: mf.init.admissible(TANH, True), TE, r"m must be an integer, got True \(bool\)"),
    Case("m-huge", "api", "m = 10^12 (memory)", lambda t: mf.init.admissible(TANH, 10**12), VE,
         r"m=1000000000000 particles in R\^3 would need .* GiB, more than this machine's .* GiB of memory; lower m"),
    Case("positions-nan", "api", "NaN particle positions", lambda t: mf.Particles(np.full((3, 3), np.nan)), VE,
         r"positions contains non-finite values"),
    Case("positions-ragged", "api", "ragged positions", lambda t: mf.Particles([[1.0, 2.0], [3.0]]), TE,
         r"positions could not be converted to an array"),
    Case("weights-negative", "api", "negative particle masses", lambda t: mf.Particles(np.ones((3, 3)), -np.ones(3)), VE,
         r"weights \(masses\) must be >= 0, got min -1.0 at particle 0"),
    Case("particles-wrong-p", "api", "particles with the wrong p (solve)", lambda t: mf.solve(PROB, mf.Particles(np.ones((4, 2)))),
         VE, r"particles have dimension p=2 but the feature Custom has dim=3"),
    Case("particles-wrong-p-objective", "api", "particles with the wrong p (Problem.objective)",
         lambda t: PROB.objective(mf.Particles(np.ones((4, 2)))), VE,
         r"particles have positions of shape \(4, 2\), but the feature Custom needs \(m, 3\)"),
    Case("predict-wrong-d", "api", "inputs of the wrong dimension (Problem.predict)",
         lambda t: PROB.predict(MU, np.ones((5, 3))), VE, r"X has shape \(5, 3\), .* expected \(n, 2\)"),
    # -- solver arguments ---------------------------------------------------------------
    Case("step-zero", "api", "step = 0", solve(step=0.0), VE, r"step=0.0 is invalid: it must be > 0"),
    Case("step-nan", "api", "step = NaN", solve(step=float("nan")), VE, r"step=nan is invalid: it must be finite"),
    Case("step-bool", "api", "step = True", solve(step=True), TE, r"step must be a real number, got True \(bool\)"),
    Case("step-string", "api", "step = '0.1'", solve(step="0.1"), TE, r"step must be a real number, got '0.1' \(str\)"),
    Case("step-complex", "api", "step = 1j", solve(step=1j), TE, r"step must be a real number, got 1j \(complex\)"),
    Case("iterations-zero", "api", "iterations = 0", solve(iterations=0), VE, r"iterations=0 is invalid: it must be >= 1"),
    Case("iterations-float", "api", "iterations = 10.0", solve(iterations=10.0), TE, r"iterations must be an integer, got 10.0"),
    Case("method-unknown", "api", "unknown method", solve(method="adam"), VE, r"method='adam' is not one of 'gd', 'fb', 'wfr', 'sgd'"),
    Case("method-not-a-rule", "api", "an object that is not an update rule", solve(method=3.5), TE,
         r"method must be one of 'gd', 'fb', 'wfr', 'sgd' or an update rule .*got float: 3.5"),
    Case("optax-not-transformation", "api", "Optax given something that is not a GradientTransformation",
         lambda t: mf.methods.Optax(lambda g: g), TE, r"Optax needs an optax.GradientTransformation .*got function"),
    Case("wfr-alpha-zero", "api", "WFR with alpha = 0", lambda t: mf.methods.WFR(alpha=0.0), VE,
         r"alpha=0.0 is invalid: the Fisher–Rao rate must be finite and > 0"),
    Case("wfr-alpha-inf", "api", "WFR with alpha = inf", lambda t: mf.methods.WFR(alpha=float("inf")), VE,
         r"alpha=inf is invalid"),
    Case("wfr-beta-negative", "api", "WFR with beta < 0", lambda t: mf.methods.WFR(beta=-1.0), VE,
         r"beta=-1.0 is invalid: the Wasserstein rate must be finite and >= 0"),
    Case("wfr-beta-nan", "api", "WFR with beta = NaN", lambda t: mf.methods.WFR(beta=float("nan")), VE,
         r"beta=nan is invalid"),
    Case("wfr-normalize-zero-mass", "api", "WFR(normalize=True) on all-zero masses", lambda t: mf.solve(
        PROB, mf.Particles(MU.positions, np.zeros(4)), mf.methods.WFR(normalize=True), step=0.1), VE,
         r"WFR\(normalize=True\) needs a positive total mass; all initial masses are 0"),
    Case("tol-zero", "api", "tol = 0", solve(tol=0.0), VE, r"tol=0.0 is invalid: it must be > 0"),
    Case("tol-negative", "api", "tol < 0", solve(tol=-1e-3), VE, r"tol=-0.001 is invalid: it must be > 0"),
    Case("resume-other-rule", "api", "continuing a run with another rule", lambda t: mf.solve(
        PROB, mf.solve(PROB, MU, "gd", step=0.1, iterations=3), "wfr"), VE,
         r"cannot continue a run of GradientStep\(\) with method='wfr'"),
    Case("checkpoint-other-problem", "api", "a checkpoint file from another problem",
         lambda t: _checkpoint_mismatch(t, "problem"), VE, r"checkpoint .* belongs to a run with another problem"),
    Case("checkpoint-other-version", "api", "a checkpoint file from another measureflow version",
         lambda t: _checkpoint_mismatch(t, "version"), VE, r"checkpoint .* was written by measureflow 0.0.0-other"),
    Case("checkpoint-damaged", "api", "a damaged checkpoint file", lambda t: _checkpoint_mismatch(t, "damaged"), VE,
         r"checkpoint .* is damaged or not a measureflow checkpoint"),
    Case("sampler-gd-no-closed-form", "api", "gd on a sampler without a closed-form risk", lambda t: mf.solve(
        mf.Problem(TANH, "square", None, mf.data.Sampler(lambda k, n, p: (jnp.ones((n, 2)), jnp.ones(n)), 2)), MU,
        step=0.1), VE, r"the data is a Sampler without a closed-form population risk .* pass batch_size="),
    Case("sgd-no-batch", "api", "sgd without batch_size", solve(method="sgd"), VE, r"method='sgd' needs batch_size="),
    Case("batch-size-huge", "api", "sgd batch_size = 10^12 (memory)", solve(method="sgd", batch_size=10**12), VE,
         r"a minibatch of batch_size=1000000000000 samples in R\^2 would need .* GiB.*; lower batch_size"),
    Case("dtype", "api", "dtype = complex64", solve(dtype="complex64"), VE, r"dtype='complex64' is not one of 'float32', 'float64'"),
    Case("geometry-unknown", "api", "unknown geometry", solve(geometry="riemann"), VE,
         r"geometry='riemann' is not one of 'euclidean', 'conic'"),
    Case("snapshots-huge", "api", "snapshots x m beyond memory", lambda t: mf.solve(
        PROB, mf.Particles(np.zeros((10**5, 3))), step=0.1, iterations=5, snapshots=10**7), VE,
         r"position snapshots of m=100000 particles in R\^3 would need .* GiB.*; lower snapshots= or m"),
    Case("key-string", "api", "key = 'abc'", solve(key="abc"), TE, r"key must be an int seed or a jax.random key, got 'abc'"),
    Case("key-negative", "api", "key = -1", solve(key=-1), VE, r"key=-1 is invalid: it must be >= 0"),
    Case("key-overflow", "api", "key = 2^70", solve(key=2**70), VE, r"key=1180591620717411303424 is invalid: it must be <= 9223372036854775807"),
    Case("solve-batch-shapes", "api", "solve_batch over data sets of different sizes", lambda t: mf.solve_batch(
        [PROB, mf.Problem(TANH, "square", None, mf.data.Dataset(X[:10], y[:10]))], [MU, MU], step=0.1, iterations=2),
         VE, r"problems\[1\]\.data\.X has shape \(10, 2\) but problems\[0\] has \(20, 2\)"),
    Case("solve-batch-single", "api", "solve_batch given one Particles", lambda t: mf.solve_batch(PROB, MU, step=0.1), TE,
         r"particles must be a sequence of mf.Particles .* for a single run use mf.solve"),
    Case("solve-batch-mixed-steps", "api", "solve_batch mixing default and given steps", lambda t: mf.solve_batch(
        PROB, [MU, MU], step=[None, 0.1], iterations=2), VE,
         r"step gives a value for some runs and None .* for runs \[0\]; .* run the two kinds in separate solve_batch calls"),
    # -- continuous-time flow (mf.flow) -----------------------------------------------------
    Case("flow-t1-zero", "api", "flow with t1 = 0", lambda t: mf.flow(PROB, MU, 0.0), VE, r"t1=0.0 is invalid: it must be > 0"),
    Case("flow-rtol-zero", "api", "flow with rtol = 0", lambda t: mf.flow(PROB, MU, 1.0, rtol=0.0), VE,
         r"rtol=0.0 is invalid: it must be > 0"),
    Case("flow-atol-negative", "api", "flow with atol < 0", lambda t: mf.flow(PROB, MU, 1.0, atol=-1e-9), VE,
         r"atol=-1e-09 is invalid: it must be > 0"),
    Case("flow-saveat-outside", "api", "flow save time beyond t1", lambda t: mf.flow(PROB, MU, 1.0, saveat=[0.0, 2.0]), VE,
         r"saveat\[1\]=2 is outside \[0, t1\] = \[0, 1\]"),
    Case("flow-saveat-order", "api", "flow save times not increasing", lambda t: mf.flow(PROB, MU, 1.0, saveat=[0.5, 0.2]),
         VE, r"saveat must be strictly increasing, but saveat\[0\]=0.5 >= saveat\[1\]=0.2"),
    Case("flow-nonsmooth", "api", "flow with the non-smooth L1", lambda t: mf.flow(
        mf.Problem(TANH, "square", mf.L1(0.1), DATA), MU, 1.0), VE,
         r"L1 is non-smooth: the gradient flow would differentiate it; use forward–backward, mf.solve\(..., method='fb'\)"),
    Case("flow-wfr-zero", "api", "WFR flow with both rates 0", lambda t: mf.flow(PROB, MU, 1.0, wfr=(0, 0)), VE,
         r"wfr=\(0, 0\) moves nothing"),
    # -- mean-field Langevin ----------------------------------------------------------------
    Case("langevin-temperature-negative", "api", "Langevin with τ < 0", lambda t: mf.methods.Langevin(-0.1), VE,
         r"temperature=-0.1 is invalid: it must be finite and >= 0"),
    Case("langevin-temperature-nan", "api", "Langevin with τ = nan", lambda t: mf.methods.Langevin(float("nan")), VE,
         r"temperature=nan is invalid: it must be finite and >= 0"),
    Case("langevin-temperature-inf", "api", "Langevin with τ = inf", lambda t: mf.methods.Langevin(float("inf")), VE,
         r"temperature=inf is invalid: it must be finite and >= 0"),
    Case("langevin-temperature-string", "api", "Langevin with τ = 'hot'", lambda t: mf.methods.Langevin("hot"), TE,
         r"temperature must be a real number, got 'hot'"),
    Case("langevin-schedule-negative", "api", "Langevin schedule that turns negative", lambda t: mf.methods.Langevin(
        0.1, schedule=lambda it: 1.0 - it / 50), VE, r"schedule must be positive and finite, but schedule\(100\) = -1"),
    Case("langevin-schedule-zero", "api", "Langevin schedule that is 0 at the start", lambda t: mf.methods.Langevin(
        0.1, schedule=lambda it: 0.0 * it), VE, r"schedule must be positive and finite, but schedule\(0\) = 0"),
    Case("langevin-geometric-rate", "api", "geometric annealing with rate > 1", lambda t: mf.methods.geometric_schedule(1.5),
         VE, r"rate=1.5 is invalid: a geometric annealing needs 0 < rate <= 1"),
    Case("langevin-spec-no-temperature", "config", "method langevin without a temperature in a spec", lambda t: expand(
        {"task": "custom_teacher", "base": {"m": 4, "method": "langevin"}}), VE,
         r"base: Value error, method 'langevin' needs a temperature"),
    Case("langevin-spec-temperature-negative", "config", "negative temperature in a spec", lambda t: expand(
        {"task": "custom_teacher", "base": {"m": 4, "method": "langevin", "temperature": -1.0}}), VE,
         r"base\.temperature: Input should be greater than or equal to 0"),
    # -- diagnostics ------------------------------------------------------------------------
    Case("hessian-k-too-large", "api", "Hessian spectrum with k > m·p", lambda t: mf.diagnostics.hessian_spectrum(
        PROB, MU, k=13), VE, r"k=13 is larger than the dimension of the Hessian: m·p = 4·3 = 12 coordinates"),
    Case("hessian-nonsmooth", "api", "Hessian spectrum with the non-smooth L1", lambda t: mf.diagnostics.hessian_spectrum(
        mf.Problem(TANH, "square", mf.L1(0.1), DATA), MU), VE, r"L1 is non-smooth: .*pass smooth_only=True"),
    Case("entropy-k-too-large", "api", "entropy with k >= the number of samples", lambda t: mf.diagnostics.entropy(
        np.ones((3, 2)), k=3), VE, r"k=3 neighbours need at least k \+ 1 = 4 samples, got N=3"),
    Case("entropy-duplicates", "api", "entropy of duplicated positions", lambda t: mf.diagnostics.entropy(
        np.zeros((5, 2))), VE, r"5 samples have k=1 or more exact duplicates"),
    # -- problem ingredients ------------------------------------------------------------
    Case("lambda-negative", "api", "lambda < 0", lambda t: mf.L1(-0.1), VE, r"lam=-0.1 is invalid: it must be >= 0"),
    Case("lambda-string", "api", "lambda = 'big'", lambda t: mf.L2("big"), TE, r"lam must be a real number, got 'big'"),
    Case("l1-coordinate", "api", "L1 on a coordinate the feature lacks", lambda t: mf.Problem(
        TANH, "square", mf.L1(0.1, coordinate=7), DATA), VE, r"L1 coordinate=7 is out of range .* dim=3 \(valid: 0 to 2\)"),
    Case("loss-unknown", "api", "unknown loss", lambda t: mf.Problem(TANH, "hinge", None, DATA), VE,
         r"loss='hinge' is not one of 'square', 'logistic'"),
    Case("logistic-01-labels", "api", "0/1 labels with the logistic loss", lambda t: mf.solve(
        mf.Problem(TANH, "logistic", None, mf.data.Dataset(X, (y > 0).astype(float))), MU, step=0.1), VE,
         r"the logistic loss needs labels y in \{-1, 1\}, but y has \d+ other value\(s\) \(0.0\); map 0/1 labels"),
    Case("logistic-regression-teacher", "api", "logistic loss on a regression teacher", lambda t: mf.solve(
        mf.Problem(ReLU(2), "logistic", None, mf.data.TeacherStudent(2, 3)), mf.init.admissible(ReLU(2), 4),
        "sgd", step=0.1, batch_size=4), VE, r"the logistic loss needs labels y in \{-1, 1\}.*TeacherStudent\(task='classification'\)"),
    Case("regularizer-no-prox", "api", "fb with a regularizer lacking a prox", lambda t: mf.solve(
        mf.Problem(TANH, "square", lambda th: jnp.sum(th**4), DATA), MU, "fb", step=0.1), VE,
         r"forward–backward applies the prox of the regularizer, but Custom has none"),
    Case("nonsmooth-gd", "api", "gd on the non-smooth L1", lambda t: mf.solve(
        mf.Problem(TANH, "square", mf.L1(0.1), DATA), MU, "gd", step=0.1), VE, r"L1 is non-smooth: the gradient step would differentiate it; use method='fb'"),
    Case("input-dim", "api", "data dimension != feature input_dim", lambda t: mf.Problem(ReLU(3), "square", None, DATA), VE,
         r"data has input dimension 2 but the feature ReLU expects input_dim=3"),
    Case("custom-feature-vector", "api", "user feature returning a vector", lambda t: mf.Problem(
        Custom(lambda th, x: th * x[0], dim=3), "square", None, DATA), VE,
         r"the feature Custom φ\(θ, x\) .* returns shape \(3,\) .* it must return \(\)"),
    Case("custom-feature-fails", "api", "user feature failing on this input dimension", lambda t: mf.Problem(
        Custom(lambda th, x: th @ x, dim=3), "square", None, DATA), VE, r"the feature Custom φ\(θ, x\) .* fails on inputs of shapes \(3,\), \(2,\)"),
    Case("custom-loss-shape", "api", "user loss returning one value per batch", lambda t: mf.Problem(
        TANH, lambda f, y: jnp.sum((f - y) ** 2), None, DATA), VE, r"the loss 'custom' .* returns shape \(\) .* it must return \(3,\)"),
    Case("custom-regularizer-vector", "api", "user regularizer returning a vector", lambda t: mf.Problem(
        TANH, "square", lambda th: th**2, DATA), VE, r"the regularizer Custom V\(θ\) .* returns shape \(3,\)"),
    Case("activation-unknown", "api", "unknown activation", lambda t: mf.data.TeacherStudent(2, 3, "tanh"), VE,
         r"activation='tanh' is not one of 'relu', 'sigmoid', 'erf'"),
    Case("inputs-unknown", "api", "unknown input distribution", lambda t: mf.data.TeacherStudent(2, 3, inputs="uniform"), VE,
         r"inputs='uniform' is not one of 'gaussian', 'sphere'"),
    Case("seed-overflow", "api", "teacher seed = 2^70", lambda t: mf.data.TeacherStudent(2, 3, seed=2**70), VE,
         r"seed=1180591620717411303424 is invalid: it must be <= 9223372036854775807"),
    Case("kernel-unknown", "api", "kernel given by an unknown name", lambda t: Spikes("lorentzian"), TE,
         r"kernel must be a mf.kernels.Dirichlet or Gaussian, got 'lorentzian'"),
    Case("cutoff-zero", "api", "cut-off 0", lambda t: Dirichlet(0), VE, r"cutoff=0 is invalid: it must be >= 1"),
    Case("gaussian-width", "api", "Gaussian kernel wider than the torus", lambda t: Gaussian(0.5), VE, r"width=0.5 is invalid"),
    Case("grid-too-coarse", "api", "signal grid below 2 f_c + 1", lambda t: mf.data.SpikeSignal(3, cutoff=10, grid=15), VE,
         r"grid=15 cannot represent the cut-off f_c=10: .* use grid >= 21"),
    Case("design-too-coarse", "api", "own torus grid too coarse for the kernel (solve)", lambda t: mf.solve(
        mf.Problem(Spikes(Dirichlet(20)), "square", mf.L1(0.1),
                   mf.data.FixedDesign.torus_grid(16, 1, lambda Z: np.cos(2 * np.pi * Z[:, 0]))),
        mf.init.admissible(Spikes(Dirichlet(20)), 8), "fb", step=0.1), VE,
         r"uniform grid of N=16 points: grid=16 cannot represent the cut-off f_c=20"),
    Case("spikes-dim", "api", "spikes on T^3", lambda t: Spikes(Dirichlet(3), dim=3), VE, r"dim=3 is invalid: spikes live on the torus"),
    Case("baseline-wrong-p", "api", "random-features baseline with the wrong p",
         lambda t: random_features(PROB, mf.Particles(np.ones((3, 5)))), VE, r"particles have dimension p=5 but the feature Custom"),
    Case("support-not-particles", "api", "check_support given an array", lambda t: mf.init.check_support(TANH, np.ones((3, 3))),
         TE, r"particles must be mf.Particles, got ndarray"),
    # -- results store (safe loading, safe paths) --------------------------------------------
    Case("run-id-traversal", "api", "run id escaping the store ('../x')", lambda t: Store(t / "s").record(
        RunRecord("../x", "t", {}, "done"), {"a": np.ones(2)}), VE, r"run_id='../x' must be 1-128 letters, digits"),
    Case("array-name-traversal", "api", "array name with a slash", lambda t: Store(t / "s").record(
        RunRecord("ok", "t", {}, "done"), {"a/b": np.ones(2)}), VE, r"array name 'a/b' must be letters, digits"),
    Case("object-array", "api", "object array (would need pickle)", lambda t: Store(t / "s").record(
        RunRecord("ok", "t", {}, "done"), {"a": np.array([{}], dtype=object)}), TE, r"keeps numeric arrays only \(no pickle\)"),
    Case("pickled-npz", "api", "tampered .npz holding a pickle", _store_with_tampered_arrays, SE,
         r"arrays of run r1 .* cannot be read safely: .*allow_pickle"),
    # -- sweep configs (Python API: load_spec / expand) ---------------------------------------
    Case("yaml-python-tag", "config", "YAML with a !!python/object tag", lambda t: load_spec(_write(
        t, "evil.yaml", 'task: custom_teacher\nbase: !!python/object/apply:os.system ["echo pwned"]\n')), VE,
         r"not valid YAML: could not determine a constructor for the tag .*python/object/apply:os.system"),
    Case("toml-syntax", "config", "TOML syntax error", lambda t: load_spec(_write(t, "bad.toml", 'task = "x"\n[base\n')), VE,
         r"bad.toml: not valid TOML"),
    Case("spec-json", "config", "spec in an unsupported format", lambda t: load_spec(_write(t, "s.json", "{}")), VE,
         r"unknown format '.json' \(use .yaml, .yml or .toml\)"),
    Case("spec-typo", "config", "misspelled top-level key", lambda t: load_spec({"task": "custom_teacher", "gird": {}}), VE,
         r"gird: Extra inputs are not permitted.*valid keys: task"),
    Case("spec-grid-scalar", "config", "grid axis that is not a list", lambda t: load_spec({"task": "custom_teacher", "grid": {"m": 5}}),
         VE, r"grid\.m must be a non-empty list of values, got 5"),
    Case("spec-m-zero", "config", "m = 0 in a grid", lambda t: expand({"task": "custom_teacher", "grid": {"m": [4, 0]}}), VE,
         r"at \{m=0\}.*grid\.m: Input should be greater than or equal to 1 \(got 0\)"),
    Case("spec-step-nan", "config", "step = .nan", lambda t: expand(load_spec(_write(
        t, "nan.yaml", "task: custom_teacher\nbase: {m: 4, step: .nan}\n"))), VE, r"base\.step: Input should be a finite number \(got nan\)"),
    Case("spec-step-bool", "config", "step = true", lambda t: expand({"task": "custom_teacher", "base": {"m": 4, "step": True}}), VE,
         r"base\.step: Input should be a valid number \(got True\)"),
    Case("spec-method", "config", "unknown method in a spec", lambda t: expand({"task": "custom_teacher", "base": {"m": 4, "method": "adam"}}),
         VE, r"base\.method: Input should be 'gd', 'fb' or 'langevin' \(got 'adam'\)"),
    Case("spec-task", "config", "unknown task", lambda t: expand({"task": "nosuch"}), VE, r"task='nosuch' is not registered"),
    Case("spec-import", "config", "imports of a missing module", lambda t: expand(
        {"task": "custom_teacher", "imports": ["no_such_module_xyz"], "base": {"m": 4}}), VE,
         r"imports: cannot import 'no_such_module_xyz'"),
] + ([] if importlib.util.find_spec("sklearn") is None else [
    # -- measureflow.sklearn (the optional 'sklearn' extra; NaN and shapes: scikit-learn's own validators)
    Case("sklearn-n-units", "api", "MeanFieldRegressor(n_units=0)", lambda t: _sk().MeanFieldRegressor(n_units=0).fit(X, y),
         VE, r"^The 'n_units' parameter of MeanFieldRegressor must be an int in the range \[1, inf\)\. Got 0 instead\.$"),
    Case("sklearn-max-iter", "api", "MeanFieldClassifier(max_iter=0)", lambda t: _sk().MeanFieldClassifier(max_iter=0).fit(X, y > 0),
         VE, r"^The 'max_iter' parameter of MeanFieldClassifier must be an int in the range \[1, inf\)\. Got 0 instead\.$"),
    Case("sklearn-string-y", "api", "string targets for MeanFieldRegressor", lambda t: _sk().MeanFieldRegressor().fit(X, ["a", "b"] * 10),
         VE, r"MeanFieldRegressor needs numeric targets y, got values of dtype <U1 \(a binary target\); for labels use MeanFieldClassifier"),
    Case("sklearn-one-class", "api", "one class for MeanFieldClassifier", lambda t: _sk().MeanFieldClassifier().fit(X, np.ones(20)),
         VE, r"MeanFieldClassifier needs at least 2 classes in y, got 1 class: 1\.0"),
]) + [
    # -- the command line -----------------------------------------------------------------
    Case("cli-missing-spec", "cli", "sweep spec that does not exist", lambda t: ["sweep", str(t / "nope.yaml"), "--out", str(t / "o")],
         None, r"^error: sweep spec .*nope.yaml does not exist$"),
    Case("cli-yaml-syntax", "cli", "YAML syntax error (multi-line parser message)", lambda t: [
        "sweep", str(_write(t, "syntax.yaml", "task: custom_teacher\nbase: {m: 4\n")), "--out", str(t / "o")],
         None, r"^error: .*syntax.yaml: not valid YAML: while parsing a flow mapping \| .*line 2"),
    Case("cli-yaml-python-tag", "cli", "YAML with !!python/object/apply:os.system", lambda t: [
        "sweep", str(_write(t, "evil.yaml", '!!python/object/apply:os.system ["echo pwned"]\n')), "--out", str(t / "o")],
         None, r"^error: .*evil.yaml: not valid YAML: could not determine a constructor"),
    Case("cli-spec-value", "cli", "bad value in a TOML spec", lambda t: [
        "sweep", str(_write(t, "bad.toml", 'task = "custom_teacher"\n[base]\nm = "four"\n')), "--out", str(t / "o")],
         None, r"^error: sweep 'bad': invalid configuration for task 'custom_teacher': base\.m: Input should be a valid integer \(got 'four'\)$"),
    Case("cli-workers", "cli", "--workers -1", lambda t: ["sweep", str(_write(t, "ok.yaml", OK_SPEC)), "--out", str(t / "o"), "--workers", "-1"],
         None, r"^error: workers=-1 is invalid: it must be >= 0$"),
    Case("cli-workers-type", "cli", "--workers abc", lambda t: ["sweep", str(_write(t, "ok.yaml", OK_SPEC)), "--out", str(t / "o"), "--workers", "abc"],
         None, r"^error: Invalid value for '--workers'.* \(see 'measureflow sweep --help'\)$"),
    Case("cli-out-file", "cli", "--out is an existing file", lambda t: ["sweep", str(_write(t, "ok.yaml", OK_SPEC)), "--out", str(_write(t, "f", "x"))],
         None, r"^error: .*f exists and is not a directory$"),
    Case("cli-results-missing", "cli", "results of a directory without a store", lambda t: ["results", str(t / "none")],
         None, r"^error: no results store in .*none"),
    Case("cli-results-foreign", "cli", "results of a directory holding a foreign SQLite file", lambda t: [
        "results", str(_foreign_store(t))], None, r"^error: .*is an SQLite database but not a measureflow results store"),
    Case("cli-results-format", "cli", "results --format xml", lambda t: ["results", str(t), "--format", "xml"],
         None, r"^error: --format='xml' is not one of 'csv', 'parquet'$"),
    Case("cli-reproduce-only", "cli", "reproduce --only ../etc (unknown experiment, no path escape)",
         lambda t: ["reproduce", "--only", "../etc", "--out", str(t / "r")], None, r"^error: unknown experiment '../etc'; choose from"),
    Case("cli-reproduce-seed", "cli", "reproduce --seed -1", lambda t: ["reproduce", "--seed", "-1", "--out", str(t / "r")],
         None, r"^error: seed=-1 is invalid: it must be >= 0$"),
    Case("cli-reproduce-set-key", "cli", "reproduce --set with a key the experiment's Params lacks", lambda t: [
        "reproduce", "--only", "excess_loss", "--preset", "test", "--out", str(t / "r"), "--set",
        "excess_loss.problems.relu.momentum=0.9"], None,
         r"^error: excess_loss\.problems\.relu\.momentum: Extra inputs are not permitted \(got 0\.9\)$"),
    Case("cli-reproduce-set-type", "cli", "reproduce --set with a value of the wrong type", lambda t: [
        "reproduce", "--only", "excess_loss", "--preset", "test", "--out", str(t / "r"), "--set",
        "excess_loss.problems.deconvolution.lam=\"big\""], None,
         r"^error: excess_loss\.problems\.deconvolution\.lam: Input should be a valid number \(got 'big'\)$"),
    Case("cli-plot-missing", "cli", "plot of a missing directory", lambda t: ["plot", str(t / "nothing")],
         None, r"^error: .*nothing' is not a directory written by `measureflow reproduce`$"),
    Case("cli-animate-no-tables", "cli", "animate a directory without trajectory tables", lambda t: ["animate", str(t)],
         None, r"^error: .* holds no trajectory tables \(trajectories/\*_paths\.csv\); run `measureflow reproduce"),
    Case("cli-animate-length", "cli", "animate --frames and --seconds together", lambda t: [
        "animate", str(t), "--frames", "10", "--seconds", "2"], None,
         r"^error: give the animation's length as frames or as seconds, not both$"),
    Case("cli-deconvolve-nan", "cli", "deconvolve of a signal with a NaN sample", lambda t: [
        "deconvolve", str(_npy(t, "nan.npy", np.r_[np.nan, np.zeros(49)])), "--cutoff", "12", "--lam", "0.1",
        "--out", str(t / "o")], None, r"^error: the signal contains 1 NaN or inf"),
    Case("cli-deconvolve-cutoff", "cli", "deconvolve with a cut-off too high for the samples", lambda t: [
        "deconvolve", str(_npy(t, "y.npy", np.zeros(20))), "--cutoff", "12", "--lam", "0.1", "--out", str(t / "o")],
        None, r"^error: axis 0 of the signal has N=20 samples: grid=20 cannot represent"),
    Case("cli-deconvolve-lam", "cli", "deconvolve --lam 0", lambda t: [
        "deconvolve", str(_npy(t, "y.npy", np.zeros(50))), "--cutoff", "12", "--lam", "0", "--out", str(t / "o")],
        None, r"^error: lam"),
    Case("cli-deconvolve-3d", "cli", "deconvolve of a 3-D array", lambda t: [
        "deconvolve", str(_npy(t, "c.npy", np.zeros((4, 4, 4)))), "--cutoff", "1", "--lam", "0.1", "--out", str(t / "o")],
        None, r"^error: the signal must be a 1-D vector or a 2-D image"),
    Case("cli-deconvolve-empty", "cli", "deconvolve of an empty file", lambda t: [
        "deconvolve", str(_write(t, "e.csv", "")), "--cutoff", "12", "--lam", "0.1", "--out", str(t / "o")],
        None, r"^error: signal file .* is empty"),
    Case("cli-deconvolve-kernel", "cli", "deconvolve --kernel sinc", lambda t: [
        "deconvolve", str(_npy(t, "y.npy", np.zeros(50))), "--kernel", "sinc", "--cutoff", "12", "--lam", "0.1",
        "--out", str(t / "o")], None, r"^error: --kernel='sinc' is not one of"),
    Case("cli-unknown-command", "cli", "unknown command", lambda t: ["bogus"], None, r"^error: No such command 'bogus'"),
]


def _foreign_store(tmp):
    d = tmp / "foreign"
    d.mkdir(exist_ok=True)
    with contextlib.closing(sqlite3.connect(d / "runs.sqlite")) as db:
        db.execute("CREATE TABLE IF NOT EXISTS people (name TEXT)")
        db.commit()
    return d



def _sk():
    import measureflow.sklearn

    return measureflow.sklearn


# -- running the cases -----------------------------------------------------------------------

def run_api(case: Case, tmp: Path) -> BaseException:
    """Run an API/config case and return the exception it raised (AssertionError if none)."""
    try:
        case.run(tmp)
    except Exception as exc:  # noqa: BLE001 - the exception is the result
        return exc
    raise AssertionError(f"{case.id}: no error was raised")


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """``measureflow ARGS`` in this process: (exit code, stdout, stderr)."""
    from measureflow.cli import run

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["measureflow", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def raised_in(exc: BaseException) -> str:
    """The file that raised ``exc`` (the innermost frame)."""
    return traceback.extract_tb(exc.__traceback__)[-1].filename


def outcome(case: Case, tmp: Path) -> tuple[str, str]:
    """(error type or exit code, message) of a case."""
    if case.where == "cli":
        code, _, err = run_cli(case.run(tmp))
        return f"exit {code}", err.strip()
    exc = run_api(case, tmp)
    return type(exc).__name__, str(exc)


def main():
    rows = ["| # | where | bad input | error | message |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as d:
        for i, case in enumerate(CASES, 1):
            tmp = Path(d) / case.id
            tmp.mkdir()
            kind, message = outcome(case, tmp)
            message = message.replace(str(tmp), "<tmp>").replace("|", "\\|").replace("\n", " ")
            rows.append(f"| {i} | {case.where} | {case.what} | {kind} | {message} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
