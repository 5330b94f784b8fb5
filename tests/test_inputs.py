"""Bad input is refused with a clear error before any work; init and CLI basics."""

import os
import subprocess
import sys
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import measureflow as mf
from measureflow.features import Custom, Homogeneity


@pytest.fixture
def prob():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 2))
    feat = Custom(lambda th, x: th[0] * jnp.tanh(th[1:] @ x), dim=3, input_dim=2,
                  homogeneity=Homogeneity.partial(1, 0))
    return mf.Problem(feat, "square", None, mf.data.Dataset(X, X[:, 0]))


@pytest.mark.parametrize("kwargs,match", [
    (dict(step=0.0), r"step=0.0 .* must be > 0"),
    (dict(step=-1.0), r"step=-1.0 .* must be > 0"),
    (dict(step=float("nan")), r"step=nan .* finite"),
    (dict(iterations=0), r"iterations=0 .* >= 1"),
    (dict(method="adam"), r"method='adam' is not one of 'gd', 'fb', 'wfr', 'sgd'"),
    (dict(method="sgd"), r"needs batch_size"),
    (dict(batch_size=0), r"batch_size=0 .* >= 1"),
    (dict(dtype="float16"), r"dtype='float16'"),
])
def test_bad_solver_arguments(prob, kwargs, match):
    mu0 = mf.init.admissible(prob.feature, 4)
    with pytest.raises(mf.ValidationError, match=match):
        mf.solve(prob, mu0, **kwargs)


def test_bad_data():
    X = np.ones((5, 2))
    X[3, 1] = np.nan
    with pytest.raises(mf.ValidationError, match=r"X contains non-finite values \(first at index \(3, 1\)"):
        mf.data.Dataset(X, np.ones(5))
    with pytest.raises(mf.ValidationError, match=r"y has shape \(4,\), expected \(5\)"):
        mf.data.Dataset(np.ones((5, 2)), np.ones(4))
    with pytest.raises(mf.InputTypeError, match="y must be a numeric array"):
        mf.data.Dataset(np.ones((5, 2)), ["a"] * 5)


def test_shape_mismatches(prob):
    with pytest.raises(mf.ValidationError, match=r"particles have dimension p=2 but the feature Custom has dim=3"):
        mf.solve(prob, mf.Particles(np.ones((4, 2))))
    feat3 = Custom(lambda th, x: th @ x, dim=3, input_dim=3)
    with pytest.raises(mf.ValidationError, match="input dimension 2 .* input_dim=3"):
        mf.Problem(feat3, "square", None, prob.data)
    with pytest.raises(mf.ValidationError, match=r"weights has shape \(3,\), expected \(4\)"):
        mf.Particles(np.ones((4, 3)), np.ones(3))


def test_bad_m_lambda_and_names(prob):
    with pytest.raises(mf.ValidationError, match="m=0 is invalid"):
        mf.init.admissible(prob.feature, 0)
    with pytest.raises(mf.ValidationError, match="m=0"):
        mf.Particles(np.ones((0, 3)))
    with pytest.raises(mf.ValidationError, match="lam=-0.1 is invalid: it must be >= 0"):
        mf.L2(-0.1)
    with pytest.raises(mf.ValidationError, match="lam=-1.0"):
        mf.L1(-1.0)
    with pytest.raises(mf.ValidationError, match="loss='hinge' is not one of"):
        mf.Problem(prob.feature, "hinge", None, prob.data)
    with pytest.raises(mf.InputTypeError, match="feature must be"):
        mf.Problem("relu", "square", None, prob.data)


def test_method_regularizer_compatibility(prob):
    mu0 = mf.init.admissible(prob.feature, 4)
    l1 = mf.Problem(prob.feature, "square", mf.L1(0.1), prob.data)
    with pytest.raises(mf.ValidationError, match="L1 is non-smooth: the gradient step would differentiate it"):
        mf.solve(l1, mu0, "gd")
    smooth_no_prox = mf.Problem(prob.feature, "square", lambda th: jnp.sum(th**4), prob.data)
    with pytest.raises(mf.ValidationError, match="applies the prox of the regularizer, but Custom has none"):
        mf.solve(smooth_no_prox, mu0, "fb")
    no_weight = Custom(lambda th, x: th @ x, dim=2)
    with pytest.raises(mf.ValidationError, match="declares none"):
        mf.Problem(no_weight, "square", mf.L1(0.1), prob.data)


def test_errors_share_one_base_class():
    for cls in (mf.ValidationError, mf.InputTypeError, mf.DivergenceError):
        assert issubclass(cls, mf.MeasureflowError)
    assert issubclass(mf.ValidationError, ValueError) and issubclass(mf.InputTypeError, TypeError)


def test_admissible_init_full_and_partial():
    relu_like = Custom(lambda th, x: th[-1] * jnp.maximum(th[:-1] @ x, 0), dim=3, input_dim=2,
                       homogeneity=Homogeneity.full(2))
    mu = mf.init.admissible(relu_like, 200, key=0, radius=2.0)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(mu.positions), axis=1), 2.0)
    np.testing.assert_allclose(np.asarray(mu.weights), 1 / 200)
    assert mf.init.check_support(relu_like, mu).ok

    tanh_unit = Custom(lambda th, x: th[0] * jnp.tanh(th[1:] @ x), dim=3, input_dim=2,
                       homogeneity=Homogeneity.partial(1, 0))
    mu = mf.init.admissible(tanh_unit, 200, key=0)
    P = np.asarray(mu.positions)
    assert np.all(P[:, 0] == 0)
    # the other coordinates N(0, I) (Custom.sample_positions): mean, std and correlation
    # within 4 standard errors (1/√m, 1/√(2m), 1/√m), two-sided
    m, Z = len(P), P[:, 1:]
    assert np.all(np.abs(Z.mean(0)) < 4 / np.sqrt(m))
    assert np.all(np.abs(Z.std(0, ddof=1) - 1) < 4 / np.sqrt(2 * m))
    assert abs(np.corrcoef(Z.T)[0, 1]) < 4 / np.sqrt(m)
    assert mf.init.check_support(tanh_unit, mu).ok
    # same key → same init
    np.testing.assert_array_equal(np.asarray(mf.init.admissible(tanh_unit, 200, key=0).positions), P)


def test_check_support_detects_violations():
    relu_like = Custom(lambda th, x: th[-1] * jnp.maximum(th[:-1] @ x, 0), dim=3,
                       homogeneity=Homogeneity.full(2))
    P = np.abs(np.random.default_rng(0).standard_normal((100, 3)))   # one orthant only
    with pytest.warns(mf.SupportWarning, match="half-space"):
        report = mf.init.check_support(relu_like, mf.Particles(P))
    assert not report.ok
    tanh_unit = Custom(lambda th, x: th[0] * jnp.tanh(th[1:] @ x), dim=3,
                       homogeneity=Homogeneity.partial(1, 0))
    Q = np.random.default_rng(1).standard_normal((100, 3))
    with pytest.warns(mf.SupportWarning, match="nonzero weight"):
        mf.init.check_support(tanh_unit, mf.Particles(Q))
    Q[:, 0] = 0
    Q[:, 2] = 2 * Q[:, 1]   # positions on a line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = mf.init.check_support(tanh_unit, mf.Particles(Q), warn=False)
    assert not report.ok and "affine subspace of dimension 1" in str(report)


def test_cli_version_and_help():
    exe = [sys.executable, "-c", "from measureflow.cli import run; run()"]
    out = subprocess.run(exe + ["--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"measureflow {mf.__version__}"
    out = subprocess.run(exe + ["--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "particle gradient descent" in out.stdout


def test_the_command_answers_help_without_importing_jax_and_measureflow_still_turns_float64_on():
    """`import measureflow` is lazy (the command's --help, --version and argument errors
    need no JAX: seconds saved); float64 is on whichever of JAX and measureflow comes first."""
    probe = ("import sys; from measureflow.cli import app; import typer.testing as t; "
             "r = t.CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
             "print(sorted(m for m in sys.modules if m == 'jax' or m.startswith('jax.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
    for first, second in (("measureflow", "jax"), ("jax", "measureflow")):
        code = (f"import {first}, {second}; import jax.numpy as jnp, measureflow as mf; "
                "print(jnp.ones(2).dtype, mf.Problem.__name__, mf.geometry.Conic.__name__, mf.flow.__name__)")
        env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert out.stdout.split() == ["float64", "Problem", "Conic", "flow"], out.stdout + out.stderr
