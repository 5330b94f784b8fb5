"""Autodiff gradients and the first variation against finite differences (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import measureflow as mf
from _numerics import central_diff
from measureflow.features import Custom, Homogeneity


def tanh_unit(th, x):
    return th[0] * jnp.tanh(th[1:-1] @ x + th[-1])


def make_problem(loss="square", regularizer=None, n=40, d=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.sin(X @ rng.standard_normal(d))
    if loss == "logistic":
        y = np.where(y > 0, 1.0, -1.0)
    feat = Custom(tanh_unit, dim=d + 2, input_dim=d, homogeneity=Homogeneity.partial(1, 0))
    return mf.Problem(feat, loss, regularizer, mf.data.Dataset(X, y))


def random_particles(p, m=7, seed=1):
    rng = np.random.default_rng(seed)
    return mf.Particles(rng.standard_normal((m, p)), rng.uniform(0.5, 1.5, m) / m)


def rel_err(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize("loss,reg", [
    ("square", None), ("logistic", None), ("square", mf.L2(0.3)), ("logistic", mf.L1(0.2)),
    ("square", mf.regularizers.Custom(lambda th: jnp.sum(jnp.cosh(th)))),
])
def test_velocity_is_mean_field_gradient(loss, reg):
    """∇_θ F'(μ)(θ_i) = (1/w_i) ∂F/∂θ_i, checked by central differences of F."""
    prob = make_problem(loss, reg)
    mu = random_particles(prob.feature.dim)
    w = np.asarray(mu.weights)

    def F(P):
        return float(prob.objective(mf.Particles(P, w)))

    fd = central_diff(F, np.asarray(mu.positions)) / w[:, None]
    F0, vel = prob.value_and_velocity(mu)
    assert abs(float(F0) - F(np.asarray(mu.positions))) < 1e-12
    assert rel_err(np.asarray(vel), fd) < 1e-6
    vel2 = prob.first_variation_grad(mu, mu.positions)
    assert rel_err(np.asarray(vel2), fd) < 1e-6


@pytest.mark.parametrize("loss", ["square", "logistic"])
def test_first_variation_grad_matches_finite_differences(loss):
    prob = make_problem(loss, mf.L2(0.1))
    mu = random_particles(prob.feature.dim)
    thetas = np.random.default_rng(5).standard_normal((4, prob.feature.dim))
    grad = np.asarray(prob.first_variation_grad(mu, thetas))
    for k, th in enumerate(thetas):
        fd = central_diff(lambda t: float(prob.first_variation(mu, t[None])[0]), th)
        assert rel_err(grad[k], fd) < 1e-6


@pytest.mark.parametrize("loss,reg", [("square", None), ("logistic", mf.L2(0.05)), ("square", mf.L1(0.1))])
def test_first_variation_is_derivative_in_added_mass(loss, reg):
    """F'(μ)(θ) = d/dε F(μ + ε δ_θ) at ε = 0, and d/dε F((1−ε)μ + ε δ_θ) = F'(θ) − ∫F' dμ."""
    prob = make_problem(loss, reg)
    mu = random_particles(prob.feature.dim)
    P, w = np.asarray(mu.positions), np.asarray(mu.weights)
    theta = np.random.default_rng(9).standard_normal(prob.feature.dim)
    fv = float(prob.first_variation(mu, theta[None])[0])

    def F_add(eps):
        # ε < 0 is a signed measure: build it unchecked, the objective is still defined
        return float(prob.objective(mf.Particles.unchecked(jnp.asarray(np.vstack([P, theta])),
                                                           jnp.asarray(np.append(w, eps)))))

    h = 1e-6
    assert abs((F_add(h) - F_add(-h)) / (2 * h) - fv) < 1e-7 * max(1, abs(fv))

    def F_move(eps):
        return float(prob.objective(mf.Particles.unchecked(jnp.asarray(np.vstack([P, theta])),
                                                           jnp.asarray(np.append((1 - eps) * w, eps)))))

    mean_fv = float(w @ np.asarray(prob.first_variation(mu, P)))
    assert abs((F_move(h) - F_move(-h)) / (2 * h) - (fv - mean_fv)) < 1e-7 * max(1, abs(fv))


@pytest.mark.parametrize("name", ["square", "logistic"])
def test_loss_derivative(name):
    loss = mf.losses.get(name)
    f = np.linspace(-3, 3, 13)
    y = np.where(np.arange(13) % 2, 1.0, -1.0)
    d = np.asarray(loss.derivative(jnp.asarray(f), jnp.asarray(y)))
    fd = np.array([(float(loss(fi + 1e-6, yi)) - float(loss(fi - 1e-6, yi))) / 2e-6 for fi, yi in zip(f, y)])
    assert rel_err(d, fd) < 1e-6


@pytest.mark.parametrize("name", ["square", "logistic"])
def test_loss_curvature_is_the_sup_of_the_second_derivative(name):
    """Loss.curvature = sup_f ∂₁²ℓ(f, y) (the default step relies on it): the largest central
    second difference over a fine grid of f, for both labels."""
    loss = mf.losses.get(name)
    f, h = np.linspace(-6, 6, 1201), 1e-4
    second = [(np.asarray(loss(jnp.asarray(f + h), y)) - 2 * np.asarray(loss(jnp.asarray(f), y))
               + np.asarray(loss(jnp.asarray(f - h), y))) / h**2 for y in (jnp.ones(f.size), -jnp.ones(f.size))]
    assert loss.curvature == pytest.approx(np.max(second), rel=1e-5)
    assert loss.quadratic == (name == "square")


def test_losses_are_immutable_and_hashable():
    """Losses are static parts of a Problem (jit keys): frozen, hashed by value."""
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        mf.losses.square.curvature = 2.0
    assert hash(mf.losses.square) == hash(dataclasses.replace(mf.losses.square))
    for reg in (mf.L1(0.1), mf.L2(0.1), mf.regularizers.NoRegularizer(), mf.regularizers.Custom(jnp.sum)):
        with pytest.raises(dataclasses.FrozenInstanceError):
            reg.lam = 0.2
        assert hash(reg) == hash(dataclasses.replace(reg))


def test_l1_coordinate_is_checked_against_the_feature():
    feat = Custom(lambda th, x: th @ x, dim=3, input_dim=3)
    assert mf.L1(0.1, coordinate=-1).for_feature(feat).coordinate == 2
    assert mf.L1(0.1, coordinate=-3).for_feature(feat).coordinate == 0
    for bad in (3, -4):
        with pytest.raises(mf.ValidationError, match=rf"coordinate={bad} is out of range .* dim=3 \(valid: 0 to 2\)"):
            mf.L1(0.1, coordinate=bad).for_feature(feat)


def test_a_callable_is_a_custom_loss_not_assumed_quadratic():
    fn = lambda f, y: jnp.abs(f - y) ** 3  # noqa: E731
    loss = mf.losses.get(fn)
    assert isinstance(loss, mf.losses.Loss) and loss.fn is fn and loss.name == "custom"
    assert not loss.quadratic and loss.curvature is None and loss.labels is None
    np.testing.assert_allclose(loss(jnp.asarray([1.0, -1.0]), jnp.asarray([0.5, 0.0])), [0.125, 1.0])
    with pytest.raises(mf.InputTypeError, match="loss must be 'square', 'logistic', a Loss or a callable, got 5"):
        mf.losses.get(5)


def test_regularizer_flags_and_custom_checks():
    """smooth / has_prox as documented, and a Custom V's arguments checked by type."""
    R = mf.regularizers
    flags = {"none": R.get(None), "l2": mf.L2(0.1), "l1": mf.L1(0.1), "custom": R.get(lambda th: jnp.sum(th**4)),
             "custom_prox": R.Custom(jnp.sum, prox_fn=lambda th, step: th, smooth=False)}
    assert {k: (r.smooth, r.has_prox) for k, r in flags.items()} == {
        "none": (True, True), "l2": (True, True), "l1": (False, True), "custom": (True, False),
        "custom_prox": (False, True)}
    class Quartic(R.Regularizer):  # a user subclass: smooth, no prox unless it defines one
        def value(self, theta):
            return jnp.sum(theta**4)

    assert (Quartic().smooth, Quartic().has_prox) == (True, False)
    theta = jnp.asarray([1.0, -2.0])
    np.testing.assert_array_equal(flags["custom_prox"].prox(theta, 0.5), theta)
    with pytest.raises(mf.ValidationError, match="has no proximal map"):
        flags["custom"].prox(theta, 0.5)
    with pytest.raises(mf.InputTypeError, match="prox must be callable"):
        R.Custom(jnp.sum, prox_fn=5)
    with pytest.raises(mf.InputTypeError, match="regularizer must be callable, got int"):
        R.Custom(5)
    with pytest.raises(mf.ValidationError, match="a non-smooth regularizer needs prox="):
        R.Custom(jnp.sum, smooth=False)
    with pytest.raises(mf.InputTypeError, match="regularizer must be None, mf.L2"):
        R.get(5)


def test_logistic_labels_are_minus_one_and_plus_one():
    feat = Custom(lambda th, x: th @ x, dim=1, input_dim=1)
    X = np.ones((4, 1))
    mf.Problem(feat, "logistic", None, mf.data.Dataset(X, np.array([-1.0, 1.0, 1.0, -1.0]))).check_labels()
    for bad in ([0.0, 1.0, 1.0, 0.0], [-1.0, 2.0, 1.0, -1.0]):
        with pytest.raises(mf.ValidationError, match="labels"):
            mf.Problem(feat, "logistic", None, mf.data.Dataset(X, np.array(bad))).check_labels()


def test_regularizer_values_are_their_closed_forms():
    """V(θ) = λ|θ|² (L2), λ|θ_c| (L1), by hand; a negative λ is refused."""
    theta = jnp.asarray([0.5, -2.0, 3.0])
    assert float(mf.L2(0.3).value(theta)) == pytest.approx(0.3 * (0.25 + 4.0 + 9.0), rel=1e-15)
    assert float(mf.L1(0.3, coordinate=1).value(theta)) == pytest.approx(0.3 * 2.0, rel=1e-15)
    for reg in (mf.L1, mf.L2):
        with pytest.raises(mf.ValidationError, match="lam"):
            reg(-0.1)


def test_logistic_stable_at_large_margins():
    loss = mf.losses.logistic
    for dtype in (jnp.float32, jnp.float64):
        f = jnp.asarray([-1e3, -50.0, 0.0, 50.0, 1e3], dtype)
        y = jnp.ones(5, dtype)
        v, d = np.asarray(loss(f, y)), np.asarray(loss.derivative(f, y))
        assert np.all(np.isfinite(v)) and np.all(np.isfinite(d))
        np.testing.assert_allclose(v[[0, 4]], [1e3, 0.0], atol=1e-6)
        np.testing.assert_allclose(d[[0, 2, 4]], [-1.0, -0.5, 0.0], atol=1e-6)


def test_l1_prox_is_soft_thresholding_and_minimizes():
    reg = mf.L1(0.5, coordinate=1)
    theta = jnp.asarray([0.3, 2.0, -1.0])
    out = np.asarray(reg.prox(theta, 0.4))
    np.testing.assert_allclose(out, [0.3, 1.8, -1.0])
    np.testing.assert_allclose(np.asarray(reg.prox(jnp.asarray([0.0, -0.1, 0.0]), 0.4)), [0, 0, 0])
    # prox is the argmin of V(u) + |u − θ|²/(2 step): compare with a brute-force scan
    u = np.linspace(-3, 3, 600001)
    obj = 0.5 * np.abs(u) + (u - 2.0) ** 2 / (2 * 0.4)
    assert abs(u[np.argmin(obj)] - out[1]) < 1e-5


def test_l2_prox_minimizes():
    reg = mf.L2(0.7)
    theta = jnp.asarray([1.0, -2.0])
    step = 0.3
    out = np.asarray(reg.prox(theta, step))
    grad = 2 * 0.7 * out + (out - np.asarray(theta)) / step   # optimality condition
    np.testing.assert_allclose(grad, 0, atol=1e-12)
