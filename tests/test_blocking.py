"""Sums over samples and particles evaluated in blocks (memory and cache): the blocked
values and gradients must equal the whole-matrix formulas, and the compiled programs must
not hold the whole feature / kernel matrix."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import measureflow as mf
from measureflow import population
from measureflow import problem as problem_module
from measureflow.deconvolution import blasso


def _direct_value_and_velocity(prob, mu):
    """F and ∇_θF'(μ)(θ_i) from the whole m × n matrix: (1/w_i) ∂F/∂θ_i by autodiff."""
    data = prob.data.evaluation_set()
    w = mu.weights

    def F(P):
        f = w @ prob.feature.matrix(P, data.X)
        return data.sample_weights @ prob.loss(f, data.y) + w @ jax.vmap(prob.regularizer.value)(P)

    val, grad = jax.value_and_grad(F)(mu.positions)
    return val, grad / w[:, None]


def _cases():
    rng = np.random.default_rng(0)
    ts = mf.data.TeacherStudent(3, 4, bias=True, seed=0)
    X = rng.normal(size=(203, 3))  # not a multiple of any block size: padding is exercised
    reg = mf.data.Dataset(X, np.asarray(ts.target(X)))
    cls = mf.data.Dataset(X, np.sign(rng.normal(size=203)))
    sig = mf.data.SpikeSignal(spikes=2, cutoff=8, noise=0.1, seed=1)
    return [
        (mf.Problem(mf.features.ReLU(3, bias=True), "square", mf.L2(0.01), reg), mf.Particles(rng.normal(size=(37, 5)))),
        (mf.Problem(mf.features.Sigmoid(3), "logistic", None, cls), mf.Particles(rng.normal(size=(11, 4)))),
        (blasso(sig, 0.2), mf.Particles(np.column_stack([rng.normal(size=29), rng.uniform(size=29)]))),
    ]


@pytest.mark.parametrize("case", range(3))
def test_blocked_value_velocity_and_predict_equal_the_whole_matrix(case, monkeypatch):
    prob, mu = _cases()[case]
    n = prob.data.evaluation_set().n
    F0, v0 = jax.jit(_direct_value_and_velocity)(prob, mu)
    f0 = mu.weights @ prob.feature.matrix(mu.positions, prob.data.evaluation_set().X)
    monkeypatch.setattr(problem_module, "_MIN_BLOCK", 4)
    monkeypatch.setattr(problem_module, "BLOCK_ENTRIES", 8 * mu.m)  # blocks of 8 samples
    assert problem_module.block_size(mu.m, n) == 8
    F1, v1 = jax.jit(lambda mu: prob.value_and_velocity(mu))(mu)
    np.testing.assert_allclose(F1, F0, rtol=1e-12)
    np.testing.assert_allclose(v1, v0, rtol=1e-10, atol=1e-12)
    f1, F2 = jax.jit(lambda mu: (prob.predict(mu), prob.objective(mu)))(mu)
    np.testing.assert_allclose(f1, f0, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(F2, F0, rtol=1e-12)


def test_block_size_rule():
    assert problem_module.block_size(20, 15) is None  # small: one block
    assert problem_module.block_size(1024, 4096) == 1024  # 2^20 entries per block
    assert problem_module.block_size(1024, 4095) is None  # under four blocks
    assert problem_module.block_size(10**5, 50) is None  # under four blocks of the minimum 16
    assert problem_module.block_size(10**5, 10**4) == 16


def test_velocity_holds_no_m_by_n_matrix():
    """XLA's temporaries of one value_and_velocity at m = n = 2^13 stay far below the
    m × n feature matrix (512 MiB in float64)."""
    m = n = 1 << 13
    rng = np.random.default_rng(0)
    prob = mf.Problem(mf.features.ReLU(4), "square", None, mf.data.Dataset(rng.normal(size=(n, 4)), rng.normal(size=n)))
    P = jnp.asarray(rng.normal(size=(m, 5)))
    w = jnp.full(m, 1.0 / m)
    fn = jax.jit(lambda P: prob.value_and_velocity(mf.Particles.unchecked(P, w)))
    temp = fn.lower(P).compile().memory_analysis().temp_size_in_bytes
    assert temp < 8 * m * n / 16


@pytest.mark.parametrize("activation,bias,d", [("relu", False, 3), ("relu", True, 1), ("erf", False, 2)])
def test_blocked_exact_risk_equals_the_full_quadratic_form(activation, bias, d, monkeypatch):
    ts = mf.data.TeacherStudent(d, 4, activation, bias=bias, noise=0.1, seed=1)
    feat = ts.teacher_feature
    rng = np.random.default_rng(2)
    mu = mf.Particles(rng.normal(size=(61, feat.dim)))
    monkeypatch.setattr(population, "BLOCK_ENTRIES", 20 * 61)  # blocks of 20 rows, padded
    K = lambda A, B: feat.second_moment(A, B, ts.inputs)  # noqa: E731
    T = ts.params
    c = jnp.full(T.shape[0], 1.0 / T.shape[0])

    def full(P):  # ½ E[(f_μ − f* − ε)²] from the dense second-moment matrices
        w = mu.weights
        return 0.5 * (w @ K(P, P) @ w - 2.0 * w @ K(P, T) @ c + c @ K(T, T) @ c) + 0.5 * 0.1**2

    def blocked(P):
        return ts.exact_risk(feat, "square", mf.Particles.unchecked(P, mu.weights))

    both = jax.jit(lambda P: (blocked(P), full(P), jax.grad(blocked)(P), jax.grad(full)(P)))
    b, f, gb, gf = both(mu.positions)
    np.testing.assert_allclose(b, f, rtol=1e-12)
    np.testing.assert_allclose(gb, gf, rtol=1e-9, atol=1e-15)


def test_quadratic_form_is_the_weighted_kernel_sum(monkeypatch):
    rng = np.random.default_rng(3)
    A, B = rng.normal(size=(57, 2)), rng.normal(size=(13, 2))
    a, b = rng.normal(size=57), rng.normal(size=13)
    kernel = lambda U, V: jnp.exp(-jnp.sum((U[:, None] - V[None]) ** 2, -1))  # noqa: E731
    monkeypatch.setattr(population, "BLOCK_ENTRIES", 5 * 13)
    brute = sum(a[i] * b[j] * np.exp(-np.sum((A[i] - B[j]) ** 2)) for i in range(57) for j in range(13))
    np.testing.assert_allclose(population.quadratic_form(kernel, A, a, B, b), brute, rtol=1e-12)
