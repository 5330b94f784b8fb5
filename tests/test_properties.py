"""Property-based tests (hypothesis): argument validation, losses (convexity, derivative
vs finite differences, finiteness), proximal maps (optimality condition, firm
non-expansiveness) and kernels (periodicity, symmetry, value at 0, normalization).

Arrays of fixed shapes keep JAX from recompiling for every example."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import measureflow as mf
from measureflow.features import Spikes
from measureflow.kernels import Dirichlet, Gaussian
from measureflow.validation import check_array, check_int, check_real

FAST = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)

# -- validation -----------------------------------------------------------------------------


@FAST
@given(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**6, 10**6)))
def test_check_real_accepts_every_finite_number(x):
    assert check_real("x", x) == float(x)
    assert check_real("x", np.float32(x) if abs(x) < 1e30 else x) == pytest.approx(float(x), rel=1e-6)


@FAST
@given(st.one_of(st.booleans(), st.text(max_size=5), st.complex_numbers(allow_nan=False).filter(lambda z: z.imag != 0),
                 st.lists(finite, min_size=2, max_size=3), st.none()))
def test_check_real_refuses_non_reals_with_a_type_error(x):
    with pytest.raises(mf.InputTypeError, match=r"x must be a real number, got"):
        check_real("x", x)


@FAST
@given(st.sampled_from([math.nan, math.inf, -math.inf, np.float32("nan"), np.float64("-inf"), np.array(np.inf)]))
def test_check_real_refuses_nan_and_inf(x):
    with pytest.raises(mf.ValidationError, match=r"x=.* is invalid: it must be finite"):
        check_real("x", x)


@FAST
@given(st.integers(-1000, 1000), st.integers(-1000, 1000))
def test_check_int_bounds_name_the_argument_and_value(x, lo):
    if x >= lo:
        assert check_int("m", x, minimum=lo) == x
    else:
        with pytest.raises(mf.ValidationError, match=rf"m={x} is invalid: it must be >= {lo}"):
            check_int("m", x, minimum=lo)


@FAST
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), elements=finite), st.data())
def test_check_array_names_the_first_non_finite_entry(arr, data):
    assert np.array_equal(check_array("X", arr), arr)
    idx = tuple(data.draw(st.integers(0, s - 1)) for s in arr.shape)
    bad = arr.copy()
    bad[idx] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    first = tuple(int(i) for i in np.argwhere(~np.isfinite(bad))[0])
    with pytest.raises(mf.ValidationError, match=rf"X contains non-finite values \(first at index {re_tuple(first)}"):
        check_array("X", bad)


def re_tuple(t):
    return r"\(" + r", ".join(str(i) for i in t) + ("," if len(t) == 1 else "") + r"\)"


@FAST
@given(st.sampled_from([np.complex128, np.str_, object, np.bytes_]))
def test_check_array_refuses_non_real_dtypes(dtype):
    arr = np.zeros(3, dtype=dtype) if dtype is not object else np.array([None, 1, "a"], dtype=object)
    with pytest.raises(mf.InputTypeError, match="X must be"):
        check_array("X", arr)


# -- losses ---------------------------------------------------------------------------------

LOSSES = [mf.losses.square, mf.losses.logistic]
labels = st.sampled_from([-1.0, 1.0])
moderate = st.floats(-30, 30, allow_nan=False)


def _val(loss, f, y):
    return float(loss(jnp.asarray([f]), jnp.asarray([y]))[0])


@pytest.mark.parametrize("loss", LOSSES, ids=lambda l: l.name)
@FAST
@given(f1=moderate, f2=moderate, t=st.floats(0, 1), y=labels)
def test_losses_are_convex_in_f(loss, f1, f2, t, y):
    mid = _val(loss, t * f1 + (1 - t) * f2, y)
    chord = t * _val(loss, f1, y) + (1 - t) * _val(loss, f2, y)
    assert mid <= chord + 1e-12 * (1 + abs(chord))


@pytest.mark.parametrize("loss", LOSSES, ids=lambda l: l.name)
@FAST
@given(f=moderate, y=labels)
def test_loss_derivative_matches_central_differences(loss, f, y):
    h = 1e-5
    fd = (_val(loss, f + h, y) - _val(loss, f - h, y)) / (2 * h)
    d = float(loss.derivative(jnp.asarray([f]), jnp.asarray([y]))[0])
    assert d == pytest.approx(fd, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@FAST
@given(log_margin=st.floats(-3, 30), sign=labels, y=labels)
def test_logistic_loss_and_derivative_stay_finite_and_exact(dtype, log_margin, sign, y):
    """At any margin yf = ±10^k (k ≤ 30) the logistic loss is finite, ≥ 0, at least
    max(0, −yf) and within log 2 of it; the derivative is in [−1, 1] with the sign of −y."""
    f = sign * 10.0**log_margin
    loss = mf.losses.logistic
    fa, ya = jnp.asarray([f], dtype), jnp.asarray([y], dtype)
    v, d = float(loss(fa, ya)[0]), float(loss.derivative(fa, ya)[0])
    hinge = max(0.0, -y * float(fa[0]))
    assert math.isfinite(v) and math.isfinite(d)
    assert hinge * (1 - 1e-6) <= v <= hinge * (1 + 1e-6) + math.log(2) + 1e-6
    assert -1.0 <= d * y <= 0.0


# -- proximal maps ----------------------------------------------------------------------------

vec3 = hnp.arrays(np.float64, (3,), elements=st.floats(-50, 50))
lam_st = st.floats(0, 10)
step_st = st.floats(1e-3, 10)


def _prox(reg, theta, step):
    return np.asarray(reg.prox(jnp.asarray(theta), step))


@FAST
@given(theta=vec3, lam=lam_st, step=step_st, c=st.integers(0, 2))
def test_l1_prox_satisfies_its_optimality_condition(theta, lam, step, c):
    """u = prox_{ηV}(θ) ⇔ (θ − u)/η ∈ ∂V(u): other coordinates unchanged; on the weight
    coordinate (θ_c − u_c)/η = λ sign(u_c) if u_c ≠ 0, |θ_c|/η ≤ λ if u_c = 0."""
    reg = mf.L1(lam, coordinate=c)
    u = _prox(reg, theta, step)
    others = [i for i in range(3) if i != c]
    np.testing.assert_array_equal(u[others], theta[others])
    g = (theta[c] - u[c]) / step
    if u[c] != 0:
        assert g == pytest.approx(lam * np.sign(u[c]), abs=1e-9 * (1 + abs(theta[c]) / step))
    else:
        assert abs(theta[c]) / step <= lam * (1 + 1e-12) + 1e-12


@FAST
@given(theta=vec3, lam=lam_st, step=step_st)
def test_l2_prox_satisfies_its_optimality_condition(theta, lam, step):
    """V = λ|θ|²: (θ − u)/η = ∇V(u) = 2λu."""
    u = _prox(mf.L2(lam), theta, step)
    np.testing.assert_allclose((theta - u) / step, 2 * lam * u, rtol=1e-10, atol=1e-10 * (1 + np.abs(theta).max()))


@pytest.mark.parametrize("make", [lambda lam: mf.L1(lam, coordinate=1), mf.L2,
                                  lambda lam: mf.regularizers.NoRegularizer()], ids=["L1", "L2", "none"])
@FAST
@given(a=vec3, b=vec3, lam=lam_st, step=step_st)
def test_proxes_are_firmly_nonexpansive(make, a, b, lam, step):
    """|P(a) − P(b)|² ≤ ⟨P(a) − P(b), a − b⟩ for the prox P of a convex V."""
    reg = make(lam)
    pa, pb = _prox(reg, a, step), _prox(reg, b, step)
    lhs, rhs = np.sum((pa - pb) ** 2), np.dot(pa - pb, a - b)
    assert lhs <= rhs + 1e-9 * (1 + np.sum((a - b) ** 2))


# -- kernels ------------------------------------------------------------------------------------

KERNELS = [Dirichlet(1), Dirichlet(7), Gaussian(0.03), Gaussian(0.2)]
pts = hnp.arrays(np.float64, (8,), elements=st.floats(-3, 3))


def _psi(kernel, u):
    return np.asarray(kernel(jnp.asarray(u)))


@pytest.mark.parametrize("kernel", KERNELS, ids=repr)
@FAST
@given(u=pts, shift=st.integers(-3, 3))
def test_kernels_are_one_periodic_and_even(kernel, u, shift):
    scale = _psi(kernel, np.zeros(1))[0]
    v = _psi(kernel, u)
    np.testing.assert_allclose(_psi(kernel, u + shift), v, atol=1e-11 * scale)
    np.testing.assert_allclose(_psi(kernel, -u), v, atol=1e-11 * scale)


@settings(FAST, max_examples=15)
@given(fc=st.sampled_from([1, 5, 40]), dim=st.sampled_from([1, 2]), t=hnp.arrays(np.float64, (2,), elements=st.floats(0, 1)))
def test_dirichlet_peak_is_2fc_plus_1_per_axis(fc, dim, t):
    """ψ(0) = 2f_c + 1 and |ψ| ≤ ψ(0); a unit spike at t seen at x = t is (2f_c + 1)^d."""
    k = Dirichlet(fc)
    assert _psi(k, np.zeros(1))[0] == pytest.approx(2 * fc + 1, rel=1e-13)
    assert np.all(np.abs(_psi(k, np.linspace(0, 1, 101))) <= 2 * fc + 1 + 1e-9)
    feat = Spikes(k, dim=dim)
    theta = jnp.concatenate([jnp.ones(1), jnp.asarray(t[:dim])])
    assert float(feat(theta, jnp.asarray(t[:dim]))) == pytest.approx((2 * fc + 1) ** dim, rel=1e-12)


@pytest.mark.parametrize("kernel", KERNELS, ids=repr)
def test_kernel_mean_over_the_torus_is_its_zeroth_fourier_coefficient(kernel):
    """∫_T ψ = ψ̂(0): 1 for Dirichlet, σ√(2π) for the periodized Gaussian (exact on a
    uniform grid of N > bandwidth points)."""
    N = 2 * kernel.bandwidth + 1
    mean = _psi(kernel, np.arange(N) / N).mean()
    want = 1.0 if isinstance(kernel, Dirichlet) else kernel.width * math.sqrt(2 * math.pi)
    assert mean == pytest.approx(want, rel=1e-12)
    assert float(kernel.fourier(np.asarray([0]))[0]) == pytest.approx(want, rel=1e-14)


@pytest.mark.parametrize("kernel", KERNELS, ids=repr)
@FAST
@given(t=hnp.arrays(np.float64, (4,), elements=st.floats(0, 1)), x=hnp.arrays(np.float64, (5,), elements=st.floats(0, 1)))
def test_kernel_cross_matrix_is_psi_of_differences(kernel, t, x):
    M = np.asarray(kernel.cross(jnp.asarray(t), jnp.asarray(x)))
    scale = _psi(kernel, np.zeros(1))[0]
    np.testing.assert_allclose(M, _psi(kernel, x[None, :] - t[:, None]), atol=1e-11 * scale)


@FAST
@given(sigma=st.floats(0.01, 0.25))
def test_gaussian_peak_value(sigma):
    """ψ(0) = Σ_j exp(−j²/(2σ²)) = 1 + 2 Σ_{j≥1} exp(−j²/(2σ²))."""
    want = 1 + 2 * sum(math.exp(-(j**2) / (2 * sigma**2)) for j in range(1, 5))
    assert _psi(Gaussian(sigma), np.zeros(1))[0] == pytest.approx(want, rel=1e-14)


@FAST
@given(sigma=st.floats(-1, 1).filter(lambda s: s <= 0 or s > 0.25))
def test_gaussian_width_is_validated(sigma):
    with pytest.raises(mf.ValidationError, match="width="):
        Gaussian(sigma)
