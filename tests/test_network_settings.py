"""Options of the teacher–student data and the admissible init that the d = 100 network
experiments use: cheaper fresh draws (``batch_draws="float32"``), the teacher's output scale,
and input weights scaled at initialization (``admissible(..., scale=)``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import measureflow as mf
from measureflow.data.teacher_student import normals
from measureflow.features import ReLU, Sigmoid, Spikes
from measureflow.kernels import Dirichlet


def _within(sample, value, mean, k=4.0):
    """|mean of sample − value| ≤ k standard errors (two-sided)."""
    se = np.std(sample, ddof=1) / np.sqrt(sample.size)
    return abs(mean - value) <= k * se, (mean, value, se)


@pytest.mark.parametrize("draws", ["exact", "float32"])
def test_fresh_draws_have_the_gaussian_law(draws):
    """Moments of the minibatch inputs and noise against N(0, I): E x = 0, E x² = 1,
    E x⁴ = 3, E x_i x_j = 0 (i ≠ j), each within 4 standard errors; y − f*(x) has
    variance noise²."""
    ts = mf.data.TeacherStudent(4, 3, "sigmoid", bias=True, noise=0.5, seed=1, batch_draws=draws)
    batch = ts.sample(jax.random.PRNGKey(7), 50_000)
    X, y = np.asarray(batch.X), np.asarray(batch.y)
    assert X.dtype == np.float64 and X.shape == (50_000, 4)
    for stat, value in ((X, 0.0), (X**2, 1.0), (X**4, 3.0), (X[:, 0] * X[:, 1], 0.0), (X[:, 2] * X[:, 3], 0.0)):
        ok, info = _within(stat, value, stat.mean())
        assert ok, (draws, info)
    eps = (y - np.asarray(ts.target(X))) / 0.5
    for stat, value in ((eps, 0.0), (eps**2, 1.0), (eps * X[:, 0], 0.0)):
        ok, info = _within(stat, value, stat.mean())
        assert ok, (draws, info)


def test_float32_draws_are_float32_normals_reproducible_from_the_key():
    ts = mf.data.TeacherStudent(5, 2, "relu", batch_draws="float32")
    a, b = ts.sample(jax.random.PRNGKey(3), 64), ts.sample(jax.random.PRNGKey(3), 64)
    c = ts.sample(jax.random.PRNGKey(4), 64)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.allclose(a.X, c.X)
    X = np.asarray(a.X)
    np.testing.assert_array_equal(X.astype(np.float32).astype(np.float64), X)  # float32 values, float64 array
    kx = jax.random.split(jax.random.PRNGKey(3))[0]
    np.testing.assert_array_equal(X, np.asarray(jax.random.normal(kx, (64, 5), jnp.float32), np.float64))
    # the exact draws are the float64 generator's
    ex = mf.data.TeacherStudent(5, 2, "relu").sample(jax.random.PRNGKey(3), 64).X
    np.testing.assert_array_equal(ex, jax.random.normal(kx, (64, 5), jnp.float64))
    assert normals(kx, (3,), jnp.float32, "float32").dtype == jnp.float32


def test_training_and_held_out_sets_do_not_depend_on_batch_draws():
    kw = dict(activation="sigmoid", bias=True, seed=2, eval_size=500)
    exact, fast = mf.data.TeacherStudent(3, 2, **kw), mf.data.TeacherStudent(3, 2, batch_draws="float32", **kw)
    np.testing.assert_array_equal(exact.training_set(100, seed=1).X, fast.training_set(100, seed=1).X)
    np.testing.assert_array_equal(exact.evaluation_set().X, fast.evaluation_set().X)
    np.testing.assert_array_equal(exact.teacher, fast.teacher)
    assert fast.batch_draws == "float32" and exact.batch_draws == "exact"


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "erf"])
def test_output_scale_scales_the_teacher_output_weights(activation):
    base = mf.data.TeacherStudent(4, 5, activation, seed=3)
    big = mf.data.TeacherStudent(4, 5, activation, seed=3, output_scale=2.5)
    T, T2 = np.asarray(base.teacher), np.asarray(big.teacher)
    np.testing.assert_array_equal(T2[:, :-1], T[:, :-1])
    np.testing.assert_allclose(T2[:, -1], 2.5 * T[:, -1], rtol=0, atol=0)
    assert set(np.abs(T2[:, -1])) == {2.5}
    X = np.random.default_rng(0).standard_normal((7, 4))
    np.testing.assert_allclose(big.target(X), 2.5 * np.asarray(base.target(X)), rtol=1e-13, atol=1e-15)


def test_output_scale_in_the_exact_risk():
    """½ E f*² at the zero network scales with output_scale², against Monte Carlo."""
    ts = mf.data.TeacherStudent(3, 4, "relu", seed=1, output_scale=3.0)
    pr = mf.Problem(ts.teacher_feature, "square", None, ts)
    mu = mf.Particles(np.zeros((2, 4)) + np.array([1.0, 0.0, 0.0, 0.0]))  # a = 0: f_μ = 0
    exact = float(pr.objective(mu))
    X = np.random.default_rng(2).standard_normal((50_000, 3))
    f = np.asarray(ts.target(X))
    mc = 0.5 * f**2
    assert abs(mc.mean() - exact) <= 4 * mc.std() / np.sqrt(mc.size)
    base = mf.Problem(ts.teacher_feature, "square", None, mf.data.TeacherStudent(3, 4, "relu", seed=1))
    np.testing.assert_allclose(exact, 9.0 * float(base.objective(mu)), rtol=1e-12)


def test_admissible_scale_scales_the_positions_only():
    f = Sigmoid(10, bias=True)
    mu, small = mf.init.admissible(f, 30, key=4), mf.init.admissible(f, 30, key=4, scale=0.1)
    np.testing.assert_allclose(small.positions, 0.1 * np.asarray(mu.positions), rtol=1e-15)
    assert np.all(np.asarray(small.positions)[:, -1] == 0)
    np.testing.assert_array_equal(small.weights, mu.weights)
    assert mf.init.check_support(f, small, warn=False).ok
    np.testing.assert_array_equal(mf.init.admissible(f, 30, key=4, scale=1.0).positions, mu.positions)


@pytest.mark.parametrize("make,message", [
    (lambda: mf.init.admissible(ReLU(3), 4, scale=0.5), r"scale=0.5 applies to .* ReLU has 'full' homogeneity"),
    (lambda: mf.init.admissible(Spikes(Dirichlet(5)), 4, scale=0.5), r"scale=0.5 .*'torus' positions"),
    (lambda: mf.init.admissible(Sigmoid(3), 4, scale=-1.0), r"scale"),
    (lambda: mf.data.TeacherStudent(3, 2, output_scale=0.0), r"output_scale"),
    (lambda: mf.data.TeacherStudent(3, 2, batch_draws="fast"), r"batch_draws.*'fast'"),
])
def test_bad_options_name_the_value(make, message):
    with pytest.raises(mf.errors.ValidationError, match=message):
        make()


def test_cached_held_out_set_is_the_drawn_one():
    kw = dict(activation="sigmoid", bias=True, seed=4, eval_size=300)
    plain, cached = mf.data.TeacherStudent(3, 2, **kw), mf.data.TeacherStudent(3, 2, cache_held_out=True, **kw)
    assert plain.held_out is None and cached.held_out is not None
    np.testing.assert_array_equal(cached.evaluation_set().X, plain.evaluation_set().X)
    np.testing.assert_array_equal(cached.evaluation_set().y, plain.evaluation_set().y)
    # a leaf: it travels through jit as an argument and the objective is unchanged
    assert any(leaf.shape == (300, 3) for leaf in jax.tree_util.tree_leaves(cached))
    f = Sigmoid(3, bias=True)
    mu = mf.init.admissible(f, 4, key=1)
    mu = mf.Particles(np.asarray(mu.positions) + np.eye(4, f.dim)[:, ::-1])  # nonzero output weights
    objective = jax.jit(lambda pr: pr.objective(mu))
    a = float(objective(mf.Problem(f, "square", None, plain)))
    b = float(objective(mf.Problem(f, "square", None, cached)))
    assert a == b and a > 0
    # the generic Sampler method gives the same
    again = plain.cache_held_out()
    np.testing.assert_array_equal(again.held_out.X, cached.held_out.X)
    assert type(again) is type(plain) and again.eval_size == 300


def test_cache_held_out_must_be_a_bool():
    with pytest.raises(mf.errors.InputTypeError, match="cache_held_out must be True or False, got 'yes'"):
        mf.data.TeacherStudent(3, 2, cache_held_out="yes")
