"""The solver layer: stop rule and status, continuation and checkpoints (bit for bit, also
after SIGKILL), one compilation per problem shape, GD on the exact population risk, and
the layering of the package's imports."""

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import measureflow as mf
from measureflow.features import Custom, Homogeneity

TANH_UNIT = Custom(lambda th, x: th[0] * jnp.tanh(th[1:3] @ x + th[3]), dim=4, input_dim=2,
                   homogeneity=Homogeneity.partial(1, 0))
SRC = Path(mf.__file__).resolve().parent


def tanh_problem(reg=None, n=50, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    y = np.tanh(X @ np.array([1.5, -1.0])) - 0.5 * np.tanh(X @ np.array([0.3, 1.2]) + 0.2)
    return mf.Problem(TANH_UNIT, "square", reg, mf.data.Dataset(X, y))


def linear_problem(n=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal(n)
    return mf.Problem(Custom(lambda th, x: th @ x, dim=d, input_dim=d), "square", None, mf.data.Dataset(X, y)), X, y


# -- the stop rule --------------------------------------------------------------------------


def test_tol_stops_a_converging_run_and_reports_the_measure():
    """Least squares: GD converges linearly; with tol the run stops at the first history
    point where Σ w|∇F'|² ≤ tol·(its value at μ0), computed here independently."""
    prob, X, y = linear_problem()
    mu0 = mf.init.admissible(prob.feature, 4, key=1)
    res = mf.solve(prob, mu0, "gd", step=0.5, iterations=20000, tol=1e-12, history_every=10)
    assert res.status == "converged" and res.converged and res.iteration < 20000 and res.iteration % 10 == 0
    n = X.shape[0]

    def stationarity(P):
        r = (P @ X.T).mean(axis=0) @ np.eye(n) - y  # f_μ(x_j) − y_j with masses 1/m
        g = X.T @ r / n  # ∇_θF'(μ) is the same for every particle (φ linear in θ)
        return float(g @ g)

    S0, S = stationarity(np.asarray(mu0.positions)), stationarity(np.asarray(res.particles.positions))
    assert res.stationarity[0] == pytest.approx(S0, rel=1e-10)
    assert res.stationarity[-1] == pytest.approx(S, rel=1e-6, abs=1e-30)
    assert S <= 1e-12 * S0 < res.stationarity[-2]  # it stopped at the first point below
    longer = mf.solve(prob, mu0, "gd", step=0.5, iterations=res.iteration - 10, history_every=10)
    assert longer.status == "max_iterations" and longer.stationarity[-1] > 1e-12 * S0


def test_a_run_that_cannot_converge_in_time_reports_max_iterations():
    prob = tanh_problem(mf.L2(1e-3))
    mu0 = mf.init.admissible(prob.feature, 10, key=0)
    res = mf.solve(prob, mu0, "gd", step=0.05, iterations=200, tol=1e-14)
    assert res.status == "max_iterations" and res.iteration == 200
    assert res.history_iterations[-1] == 200


def test_fb_stationarity_is_the_gradient_mapping_and_vanishes_at_the_lasso_optimum():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(80)
    y = 0.7 * x + 0.3 * rng.standard_normal(80)
    feat = Custom(lambda th, xx: th[0] * xx[0], dim=1, input_dim=1, homogeneity=Homogeneity.partial(1, 0))
    prob = mf.Problem(feat, "square", mf.L1(0.2), mf.data.Dataset(x[:, None], y))
    mu0 = mf.Particles(rng.uniform(0.1, 1.0, (6, 1)))
    res = mf.solve(prob, mu0, "fb", step=0.5, iterations=5000, tol=1e-20, history_every=5)
    assert res.status == "converged"
    c, q = x @ y / 80, x @ x / 80
    beta = np.sign(c) * max(abs(c) - 0.2, 0) / q
    assert float(np.asarray(res.particles.weights) @ np.asarray(res.particles.positions)[:, 0]) == pytest.approx(beta, rel=1e-9)


# -- continuation and checkpoints -----------------------------------------------------------

RESUMABLE = [
    ("gd", mf.L2(1e-2), dict(step=0.3)),
    ("fb", mf.L1(1e-2), dict(step=0.3)),
    ("wfr", mf.L2(1e-2), dict(step=0.2)),
    (mf.methods.Optax(optax.adam(1e-2), name="adam"), mf.L2(1e-2), {}),
    ("sgd", mf.L2(1e-2), dict(step=0.3, batch_size=8, key=4)),
    ("gd", mf.L2(1e-3), {}),  # the default step and its halving control
]


@pytest.mark.parametrize("method,reg,kw", RESUMABLE, ids=["gd", "fb", "wfr", "adam", "sgd", "gd-default-step"])
def test_continuing_a_run_is_bit_identical_to_one_uninterrupted_run(method, reg, kw):
    prob = tanh_problem(reg)
    mu0 = mf.init.admissible(prob.feature, 6, key=2)
    kw = dict(kw, history_every=7, snapshots=0)
    whole = mf.solve(prob, mu0, method, iterations=250, **kw)
    first = mf.solve(prob, mu0, method, iterations=93, **kw)
    kw.pop("key", None)
    kw.pop("history_every")
    rest = mf.solve(prob, first, iterations=157, **{k: v for k, v in kw.items() if k != "step"})
    assert rest.iteration == whole.iteration == 250
    for a, b in zip(jax.tree_util.tree_leaves(rest.state), jax.tree_util.tree_leaves(whole.state)):
        np.testing.assert_array_equal(a, b)
    # the records of the two calls are those of the whole run (plus the cut at 93)
    joined = dict(zip(np.concatenate([first.history_iterations, rest.history_iterations]).tolist(),
                      np.concatenate([first.history, rest.history]).tolist()))
    assert {int(t): joined[int(t)] for t in whole.history_iterations} == dict(
        zip(whole.history_iterations.tolist(), whole.history.tolist()))


def test_checkpointed_run_equals_the_plain_run_and_a_finished_checkpoint_is_not_rerun(tmp_path):
    prob = tanh_problem(mf.L2(1e-2))
    mu0 = mf.init.admissible(prob.feature, 6, key=2)
    kw = dict(step=0.3, iterations=300, history_every=4, snapshots=20)
    plain = mf.solve(prob, mu0, "gd", **kw)
    path = tmp_path / "run.npz"
    ck = mf.solve(prob, mu0, "gd", checkpoint=path, checkpoint_every=37, **kw)
    for a, b in zip(jax.tree_util.tree_leaves(ck), jax.tree_util.tree_leaves(plain)):
        np.testing.assert_array_equal(a, b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.npz"]  # no temporary file left
    again = mf.solve(prob, mu0, "gd", checkpoint=path, checkpoint_every=37, **kw)
    np.testing.assert_array_equal(again.history, plain.history)


_KILLED_RUN = """
import sys
sys.path.insert(0, {tests!r})
import measureflow as mf
from test_solver_layer import tanh_problem
prob = tanh_problem(mf.L2(1e-2))
mu0 = mf.init.admissible(prob.feature, 6, key=2)
mf.solve(prob, mu0, "gd", step=0.3, iterations={its}, history_every=1000, snapshots=10, checkpoint={path!r},
         checkpoint_every={every})
"""


def test_a_run_killed_mid_way_resumes_from_its_checkpoint_bit_for_bit(tmp_path):
    from measureflow.solvers import checkpoint as ck

    its, every = 200_000, 5_000
    path = tmp_path / "killed.npz"
    code = _KILLED_RUN.format(tests=str(Path(__file__).parent), its=its, path=str(path), every=every)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not path.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    prob = tanh_problem(mf.L2(1e-2))
    mu0 = mf.init.admissible(prob.feature, 6, key=2)
    kw = dict(step=0.3, iterations=its, history_every=1000, snapshots=10)
    with np.load(path) as z:
        import json
        assert json.loads(str(z["header"]))["call_end"] == its
    prep = mf.solvers.driver.prepare(prob, mu0, "gd", **kw)
    (state, _), _ = ck.load(path, (prep.state, prep.recorder), {})
    assert 0 < int(state.iteration) < its  # killed mid-way
    resumed = mf.solve(prob, mu0, "gd", checkpoint=path, checkpoint_every=every, **kw)
    plain = mf.solve(prob, mu0, "gd", **kw)
    for a, b in zip(jax.tree_util.tree_leaves(resumed), jax.tree_util.tree_leaves(plain)):
        np.testing.assert_array_equal(a, b)


# -- compilations ---------------------------------------------------------------------------

_events = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: _events.append(event) if event == "/jax/core/compile/backend_compile_duration" else None)


def _compiles(fn):
    before = len(_events)
    fn()
    return len(_events) - before


def test_iterations_step_tol_and_key_are_run_time_values():
    prob = tanh_problem(mf.L2(1e-2))
    mu0 = mf.init.admissible(prob.feature, 6, key=2)
    base = dict(step=0.3, iterations=100, tol=1e-6, key=0, batch_size=8, snapshots=10)
    mf.solve(prob, mu0, "gd", **base)  # compiles
    for change in (dict(iterations=357), dict(step=0.17), dict(tol=1e-3), dict(key=5), dict(iterations=1999, tol=1e-9)):
        assert _compiles(lambda: mf.solve(prob, mu0, "gd", **dict(base, **change))) == 0, change


# -- the exact population risk --------------------------------------------------------------


def _exact_against_sample(n, iterations, rtol):
    ts = mf.data.TeacherStudent(4, 3, "relu", bias=False, seed=1)
    feat = ts.teacher_feature
    mu0 = mf.init.admissible(feat, 8, key=3)
    exact = mf.solve(mf.Problem(feat, data=ts), mu0, "gd", step=0.2, iterations=iterations, snapshots=0)
    sample = mf.solve(mf.Problem(feat, data=ts.training_set(n, seed=2)), mu0, "gd", step=0.2, iterations=iterations,
                      snapshots=0)
    F_exact, F_sample = exact.history, sample.history
    assert F_exact[-1] < 0.5 * F_exact[0]
    np.testing.assert_allclose(F_sample, F_exact, rtol=rtol)
    P, Q = np.asarray(exact.particles.positions), np.asarray(sample.particles.positions)
    assert np.max(np.abs(P - Q)) < rtol * np.max(np.abs(P))
    return ts, feat, mu0


@pytest.mark.slow
def test_gd_on_the_exact_population_risk_matches_gd_on_a_million_samples():
    _exact_against_sample(10**6, 150, 1e-2)


def test_gd_on_the_exact_population_risk_matches_gd_on_a_large_sample():
    """A closed-form population risk (ReLU, no bias, Gaussian inputs) is differentiated
    directly; GD on 10⁵ samples of the same teacher follows it within the sample's error
    (relative ~ 1/√n ≈ 3e-3: 3e-2 allowed; 10⁶ samples and 1e-2 in the slow test)."""
    ts, feat, mu0 = _exact_against_sample(10**5, 60, 3e-2)
    # and the exact velocity is the mean-field one: (1/w_i) ∂F/∂θ_i
    prob = mf.Problem(feat, data=ts)
    F_of = lambda Pq: prob.objective(mf.Particles.unchecked(Pq, mu0.weights))  # noqa: E731
    g = jax.grad(F_of)(mu0.positions) / mu0.weights[:, None]
    np.testing.assert_allclose(prob.field(mu0).velocity, g, rtol=1e-10, atol=1e-13)
    fv = prob.field(mu0, first_variation=True).first_variation
    np.testing.assert_allclose(fv, prob.first_variation(mu0, mu0.positions, batch=ts.training_set(10**5, seed=3)),
                               rtol=5e-2, atol=5e-3)


@pytest.mark.slow
def test_exact_gd_reaches_the_global_minimum_of_a_d100_teacher_with_m40():
    ts = mf.data.TeacherStudent(100, 20, "relu", bias=False, seed=0)
    prob = mf.Problem(ts.teacher_feature, data=ts)
    mu0 = mf.init.admissible(ts.teacher_feature, 40, key=0)
    res = mf.solve(prob, mu0, "gd", iterations=100_000, tol=1e-16, snapshots=0)
    assert res.objective / res.history[0] < 1e-6


# -- layering --------------------------------------------------------------------------------

LAYERS = [
    {"errors", "validation", "_pytree", "_version"},
    {"kernels", "losses", "regularizers", "population", "particles"},
    {"features"},
    {"data"},
    {"problem", "init"},
    {"methods"},
    {"solvers"},
    {"certificates", "baselines", "deconvolution", "sliding", "gradient_flow", "diagnostics"},
    {"store", "plotting", "signal_io"},
    {"experiments", "sklearn"},
    {"cli"},
]


def _layer(top: str) -> int:
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"module measureflow.{top} is in no layer of this test: add it to LAYERS")


def test_no_module_imports_from_a_layer_above_it():
    bad = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts == ["__init__"]:
            continue
        package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
        me = _layer(parts[0])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                base = (package if parts[-1] != "__init__" else parts[:-1])
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                targets = [base + (node.module.split(".") if node.module else [])]
                if not node.module:
                    targets = [base + [a.name] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("measureflow"):
                targets = [node.module.split(".")[1:]]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".")[1:] for a in node.names if a.name.startswith("measureflow.")]
            else:
                continue
            for t in targets:
                if t and _layer(t[0]) > me:
                    bad.append(f"{'/'.join(parts)} imports {'.'.join(t)}")
    assert not bad, "imports from a layer above: " + "; ".join(bad)
