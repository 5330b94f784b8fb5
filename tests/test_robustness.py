"""Robustness: every bad input gets a clear one-line error (the cases of
``bad_inputs_table.py``), diverging runs stop where they blow up, losses and activations
do not overflow, runs are reproducible to the bit, nothing unsafe is loaded."""

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import measureflow as mf
from measureflow.experiments import run_sweep
from measureflow.experiments.tasks import _tanh_unit
from measureflow.features import Custom, Homogeneity, Sigmoid, Spikes
from measureflow.kernels import Dirichlet

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src" / "measureflow"
sys.path.insert(0, str(TESTS))
import bad_inputs_table as table  # noqa: E402

API = [c for c in table.CASES if c.where != "cli"]
CLI = [c for c in table.CASES if c.where == "cli"]


def test_the_table_covers_api_cli_and_configs():
    kinds = {c.where for c in table.CASES}
    assert kinds == {"api", "cli", "config"} and len(table.CASES) >= 25
    assert len({c.id for c in table.CASES}) == len(table.CASES)


@pytest.mark.parametrize("case", API, ids=[c.id for c in API])
def test_bad_input_is_refused_clearly(case, tmp_path):
    exc = table.run_api(case, tmp_path)
    assert isinstance(exc, case.error) and isinstance(exc, mf.MeasureflowError), repr(exc)
    assert re.search(case.match, str(exc), re.S), str(exc)
    # raised by measureflow itself, not from deep inside JAX or NumPy
    assert SRC.resolve() in Path(table.raised_in(exc)).resolve().parents, table.raised_in(exc)


@pytest.mark.parametrize("case", CLI, ids=[c.id for c in CLI])
def test_bad_cli_input_is_one_line_with_exit_code_2(case, tmp_path):
    code, out, err = table.run_cli(case.run(tmp_path))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(case.match, lines[0]), lines[0]


def test_the_installed_command_refuses_unsafe_yaml(tmp_path):
    """End to end through the real entry point: a YAML tag that would run a shell command
    under yaml.load is refused by the safe loader, on one line, and runs nothing."""
    marker = tmp_path / "pwned"
    spec = tmp_path / "evil.yaml"
    spec.write_text(f'task: custom_teacher\nbase: !!python/object/apply:os.system ["touch {marker}"]\n')
    res = subprocess.run([sys.executable, "-c", "from measureflow.cli import run; run()", "sweep", str(spec),
                          "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and "could not determine a constructor" in res.stderr
    assert not marker.exists() and not (tmp_path / "o").exists()


# -- divergence ------------------------------------------------------------------------------

def _linear_problem(reg=None):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 2))
    feat = Custom(lambda th, x: th[0] * (th[1:] @ x), dim=3, input_dim=2, homogeneity=Homogeneity.full(2),
                  weight_index=0)
    return mf.Problem(feat, "square", reg, mf.data.Dataset(X, X @ [1.0, -0.5])), mf.init.admissible(feat, 5, key=0)


@pytest.mark.parametrize("method, dtype, extra", [
    ("fb", "float64", {}), ("sgd", "float64", {"batch_size": 4}), ("fb", "float32", {})])
def test_divergence_is_detected_for_every_method_and_dtype(method, dtype, extra):
    """(gd in float64 is tested in test_solvers.py.)"""
    prob, mu0 = _linear_problem(mf.L1(0.01) if method == "fb" else mf.L2(1e-3))
    with pytest.raises(mf.DivergenceError, match=rf"{method} diverged at iteration \d+ of 300: .*last finite "
                       r"objective .*Try a smaller step \(step=1000; e\.g\. step=100\)") as info:
        mf.solve(prob, mu0, method, step=1e3, iterations=300, dtype=dtype, snapshots=0, **extra)
    err = info.value
    res = err.result
    assert 0 < err.iteration < 300 and np.isfinite(err.last_objective)
    # the run stopped at its last finite state: finite particles whose objective is the
    # reported last finite one (the minibatch objective for sgd)
    P = res.particles.positions
    assert P.dtype == np.dtype(dtype) and np.all(np.isfinite(P))
    if method != "sgd":
        F = float(prob.objective(mf.Particles(np.asarray(P, float), np.asarray(res.particles.weights, float))))
        assert np.isfinite(F) and F == pytest.approx(err.last_objective, rel=1e-3 if dtype == "float32" else 1e-12)
    assert np.isfinite(res.history[-1])


def test_solve_batch_flags_the_diverging_run_only_and_is_reproducible():
    prob, mu0 = _linear_problem(mf.L1(0.01))
    mu1 = mf.init.admissible(prob.feature, 3, key=1)  # padded to m = 5
    good, bad = mf.solve_batch(prob, [mu0, mu1], "fb", step=[0.05, 1e3], iterations=100)
    assert good.diverged_at == -1 and 0 < bad.diverged_at < 100
    assert np.all(np.isfinite(bad.particles.positions)) and bad.particles.m == 3 and np.isfinite(bad.history[-1])
    assert bad.history[-1] == pytest.approx(float(bad.last_objective), rel=1e-12)
    again = mf.solve_batch(prob, [mu0, mu1], "fb", step=[0.05, 1e3], iterations=100)
    assert [_digest(r) for r in again] == [_digest(good), _digest(bad)]


def test_non_finite_objective_at_the_start_is_not_blamed_on_the_step():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 1))
    feat = Custom(lambda th, x: jnp.log(th[0]) * x[0], dim=2, input_dim=1)
    prob = mf.Problem(feat, "square", None, mf.data.Dataset(X, X[:, 0]))
    with pytest.raises(mf.DivergenceError, match="non-finite at the initial particles .*no step size can help") as info:
        mf.solve(prob, mf.Particles(-np.ones((3, 2))), step=0.1, iterations=10)
    assert info.value.iteration == 0 and "smaller step" not in str(info.value)


# -- overflow-safe losses and activations ---------------------------------------------------------

@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("margin", [1e3, 1e30, -1e3, -1e30])
def test_logistic_loss_is_overflow_safe(dtype, margin):
    """ℓ(f, y) = log(1 + e^{−yf}) at margins yf = ±1e3, ±1e30: the value is max(0, −yf)
    up to e^{−|yf|} (exactly representable here) and the derivative is −y·1{yf < 0}."""
    loss = mf.losses.logistic
    y = jnp.asarray([1.0, -1.0], dtype)
    f = jnp.asarray(margin, dtype) * y
    val, der = loss(f, y), loss.derivative(f, y)
    assert val.dtype == dtype and der.dtype == dtype
    np.testing.assert_array_equal(np.asarray(val), np.full(2, max(0.0, -margin), dtype))
    np.testing.assert_array_equal(np.asarray(der), -np.asarray(y) * (margin < 0))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_sigmoid_unit_and_logistic_problem_are_finite_at_extremes(dtype):
    z = jnp.asarray([-1e4, -1e3, 1e3, 1e4], dtype)
    s = Sigmoid.activation(z)
    np.testing.assert_array_equal(np.asarray(s), [0, 0, 1, 1])
    g = jax.vmap(jax.grad(Sigmoid.activation))(z)
    assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g) == 0)
    # a whole logistic problem whose units saturate and whose margins reach ±1e30
    feat = Sigmoid(1, bias=False)
    X = np.asarray([[1.0], [-1.0], [2.0]])
    prob = mf.Problem(feat, "logistic", None, mf.data.Dataset(X, [1.0, -1.0, 1.0]))
    P = jnp.asarray([[1e4, 1e30], [-1e4, -1e30]], dtype)
    mu = mf.Particles.unchecked(P, jnp.asarray([0.5, 0.5], dtype))
    F, vel = jax.jit(prob.value_and_velocity)(mu)
    assert np.isfinite(float(F)) and np.all(np.isfinite(np.asarray(vel)))


# -- reproducibility ---------------------------------------------------------------------------

def _tanh_problem(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    feat = Custom(_tanh_unit, dim=3, input_dim=2, homogeneity=Homogeneity.partial(1, 0))
    return mf.Problem(feat, "square", mf.L2(1e-3), mf.data.Dataset(X, np.tanh(X @ [1.0, -2.0])))


def _digest(res) -> str:
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(res):
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("method, extra", [("gd", {}), ("sgd", {"batch_size": 8, "key": 7})])
def test_same_configuration_and_seed_give_identical_bits(method, extra):
    prob = _tanh_problem()
    runs = [mf.solve(prob, mf.init.admissible(prob.feature, 16, key=3), method, step=0.2, iterations=150,
                     snapshots=5, **extra) for _ in range(2)]
    a, b = (jax.tree_util.tree_leaves(r) for r in runs)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert _digest(runs[0]) == _digest(runs[1])
    if method == "sgd":  # and the seed matters
        other = mf.solve(prob, mf.init.admissible(prob.feature, 16, key=3), method, step=0.2, iterations=150,
                         snapshots=5, batch_size=8, key=8)
        assert not np.array_equal(other.history, runs[0].history)


_SUBPROCESS_RUN = """
import hashlib, sys, numpy as np, jax
sys.path.insert(0, {tests!r})
import test_robustness as t
import measureflow as mf
prob = t._tanh_problem()
res = mf.solve(prob, mf.init.admissible(prob.feature, 16, key=3), "sgd", step=0.2, iterations=150, snapshots=5,
               batch_size=8, key=7)
print(t._digest(res))
"""


@pytest.mark.slow
def test_a_fresh_process_reproduces_the_bits():
    prob = _tanh_problem()
    res = mf.solve(prob, mf.init.admissible(prob.feature, 16, key=3), "sgd", step=0.2, iterations=150, snapshots=5,
                   batch_size=8, key=7)
    out = subprocess.run([sys.executable, "-c", _SUBPROCESS_RUN.format(tests=str(TESTS))], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == _digest(res)


def test_a_sweep_run_twice_gives_identical_records(tmp_path):
    spec = {"task": "custom_teacher", "base": {"iterations": 60, "n": 30, "n_test": 30, "step": 0.3},
            "grid": {"m": [4], "seed": [0, 1]}}
    for d in ("a", "b"):
        run_sweep(spec, tmp_path / d, workers=0, progress=False)
    with mf.store.Store(tmp_path / "a", create=False) as A, mf.store.Store(tmp_path / "b", create=False) as B:
        assert A.run_ids() == B.run_ids() and len(A) == 2
        for rid in A.run_ids():
            ra, rb = A.get(rid), B.get(rid)
            assert ra.status == rb.status == "done" and ra.config == rb.config
            strip = lambda m: {k: v for k, v in m.items() if k != "wall_time"}  # noqa: E731
            assert strip(ra.metrics) == strip(rb.metrics)
            xa, xb = A.load_arrays(rid), B.load_arrays(rid)
            assert set(xa) == set(xb)
            for k in xa:
                np.testing.assert_array_equal(xa[k], xb[k])
            # every record carries the configuration and the versions that computed it
            assert ra.versions["measureflow"] == mf.__version__ and "jax" in ra.versions
            assert ra.config["m"] == 4 and ra.seed == ra.config["seed"]


def test_results_carry_the_version_and_configuration():
    prob = _tanh_problem()  # the configuration of the sgd run above: compiled once
    res = mf.solve(prob, mf.init.admissible(prob.feature, 16, key=3), "sgd", step=0.2, iterations=150,
                   batch_size=8, key=11, snapshots=5)
    info = res.provenance()
    assert json.loads(json.dumps(info)) == info
    assert info["measureflow"] == mf.__version__ == res.version
    assert (info["method"], info["iterations"], info["step"], info["batch_size"], info["dtype"]) == \
        ("sgd", 150, 0.2, 8, "float64")
    assert info["key"] == np.asarray(jax.random.PRNGKey(11)).tolist()
    assert info["snapshot_iterations"] == list(res.trajectory_iterations)
    assert res.config.geometry == mf.geometry.Euclidean()
    # the recorded key reproduces the run
    again = mf.solve(prob, mf.init.admissible(prob.feature, 16, key=3), "sgd", step=0.2, iterations=150,
                     batch_size=8, key=jnp.asarray(info["key"], jnp.uint32), snapshots=5)
    np.testing.assert_array_equal(again.history, res.history)


# -- safe loading ---------------------------------------------------------------------------------

def _source_files():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 10
    return files


def test_no_shell_commands_eval_or_pickle_in_the_package():
    banned = [r"\bsubprocess\b", r"os\.system", r"os\.popen", r"shell\s*=\s*True", r"\bpickle\b", r"\bmarshal\b",
              r"\beval\(", r"\bexec\(", r"yaml\.load\(", r"yaml\.unsafe_load", r"yaml\.full_load", r"allow_pickle\s*=\s*True",
              r"\bshelve\b", r"\bdill\b", r"cloudpickle"]
    hits = []
    for path in _source_files():
        for no, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            code = re.sub(r"(\"[^\"]*\"|'[^']*')", "", code)  # ignore text in string literals
            hits += [f"{path.relative_to(SRC)}:{no}: {line.strip()}" for pat in banned if re.search(pat, code)]
    assert not hits, "\n".join(hits)


def test_every_array_and_config_load_is_safe():
    """np.load always with allow_pickle=False; YAML only through safe_load; TOML via tomllib."""
    for path in _source_files():
        text = path.read_text()
        for call in re.findall(r"np\.load\([^)]*\)", text):
            assert "allow_pickle=False" in call, f"{path.name}: {call}"
        assert "yaml.load" not in text and "yaml.Loader" not in text, path.name
    sweep = (SRC / "experiments" / "sweep.py").read_text()
    assert "yaml.safe_load(" in sweep and "tomllib.loads(" in sweep


def test_store_paths_stay_inside_the_store(tmp_path):
    """Run ids and array names that could name a path elsewhere are refused; accepted
    ones land inside DIR/arrays."""
    with mf.store.Store(tmp_path / "s") as store:
        for rid in ["../up", "a/b", "/abs", "a\\b", "", "x" * 129, "run\x00"]:
            with pytest.raises(mf.ValidationError, match="run_id"):
                store.record(mf.store.RunRecord(rid, "t", {}, "done"), {"a": np.ones(1)})
        for name in ["../a", "a/b", "/a", "a\\b"]:
            with pytest.raises(mf.ValidationError, match="array name"):
                store.record(mf.store.RunRecord("ok", "t", {}, "done"), {name: np.ones(1)})
        store.record(mf.store.RunRecord("..", "t", {}, "done"), {"a": np.ones(1)})  # a plain file name
    files = {p.resolve() for p in tmp_path.rglob("*") if p.is_file()}
    assert all((tmp_path / "s").resolve() in p.parents for p in files)
    assert (tmp_path / "s" / "arrays" / "...npz").is_file()


# -- checks added to library entry points -----------------------------------------------------------

def test_spikes_refuse_a_uniform_grid_too_coarse_for_the_kernel():
    feat = Spikes(Dirichlet(20))
    signal = lambda Z: np.cos(2 * np.pi * Z[:, 0])  # noqa: E731
    feat.check_data(mf.data.FixedDesign.torus_grid(41, 1, signal))  # N = 2f_c + 1: fine
    for N in (40, 16):
        with pytest.raises(mf.ValidationError, match=rf"uniform grid of N={N} points: grid={N} cannot represent"):
            feat.check_data(mf.data.FixedDesign.torus_grid(N, 1, signal))
    shifted = (np.arange(30) + 0.3) / 30  # a shifted grid is still a grid
    with pytest.raises(mf.ValidationError, match="N=30"):
        feat.check_data(mf.data.Dataset(shifted, np.zeros(30)))
    feat.check_data(mf.data.Dataset(np.random.default_rng(0).uniform(size=30), np.zeros(30)))  # not a grid
    f2 = Spikes(Dirichlet(3), dim=2)
    with pytest.raises(mf.ValidationError, match="N=6"):
        f2.check_data(mf.data.FixedDesign.torus_grid(6, 2, lambda Z: Z[:, 0]))
    f2.check_data(mf.data.FixedDesign.torus_grid(7, 2, lambda Z: Z[:, 0]))


def test_logistic_labels_are_accepted_when_valid():
    X = np.random.default_rng(0).standard_normal((10, 2))
    feat = Custom(lambda th, x: th[0] * jnp.tanh(th[1:] @ x), dim=3, input_dim=2)
    mf.Problem(feat, "logistic", None, mf.data.Dataset(X, np.sign(X[:, 0]))).check_labels()
    relu = mf.features.ReLU(2)
    mf.Problem(relu, "logistic", None, mf.data.TeacherStudent(2, 3, task="classification")).check_labels()
    mf.Problem(feat, "square", None, mf.data.Dataset(X, X[:, 0])).check_labels()  # any real for the square loss


def test_check_memory_and_seeds():
    from measureflow.validation import check_memory, check_seed, memory_bytes

    total = memory_bytes()
    assert total is None or total > 2**20
    check_memory("a small array", 1024)
    if total is not None:
        with pytest.raises(mf.ValidationError, match="a big array would need .* GiB, more than this machine's"):
            check_memory("a big array", 2 * total)
    assert check_seed("seed", np.int64(5)) == 5 and check_seed("seed", 2**63 - 1) == 2**63 - 1
    for bad, err in [(2**63, mf.ValidationError), (-1, mf.ValidationError), (1.0, mf.InputTypeError),
                     (np.bool_(True), mf.InputTypeError)]:
        with pytest.raises(err, match=r"^seed\b.*" + str(bad).replace("(", r"\(").replace(")", r"\)")):
            check_seed("seed", bad)
