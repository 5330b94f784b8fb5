"""Two-layer networks: ReLU / Sigmoid / Erf units, teacher–student data, closed-form
population risks (against quadrature and Monte Carlo), mean-field invariance, and small
runs reaching the optimum of a realizable teacher."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate as si
import scipy.special as sp

import measureflow as mf
from measureflow import population
from _numerics import central_diff
from measureflow.features import Erf, ReLU, Sigmoid

UNITS = [ReLU(3), ReLU(2, bias=True), Sigmoid(3), Sigmoid(2, bias=True), Erf(3), Erf(2, bias=True)]


def random_positions(feature, m, seed):
    return np.random.default_rng(seed).standard_normal((m, feature.dim))


# -- the units ---------------------------------------------------------------------------

@pytest.mark.parametrize("feature", UNITS, ids=repr)
def test_matrix_is_the_pointwise_feature(feature):
    P = random_positions(feature, 5, 0)
    X = np.random.default_rng(1).standard_normal((7, feature.input_dim))
    slow = jax.vmap(lambda th: jax.vmap(lambda x: feature(th, x))(X))(P)
    np.testing.assert_allclose(feature.matrix(P, X), slow, rtol=1e-13, atol=1e-15)
    w, b, a = P[0, :feature.input_dim], (P[0, -2] if feature.bias else 0.0), P[0, -1]
    z = w @ X[0] + b
    expect = {"ReLU": max(z, 0.0), "Sigmoid": 1 / (1 + np.exp(-z)), "Erf": sp.erf(z)}[feature.name]
    assert abs(float(feature(P[0], X[0])) - a * expect) < 1e-14
    assert feature.dim == feature.input_dim + feature.bias + 1 and feature.weight_index == feature.dim - 1


@pytest.mark.parametrize("feature,loss", [(ReLU(2, bias=True), "square"), (Sigmoid(2, bias=True), "logistic"),
                                          (Sigmoid(3), "square"), (ReLU(3), "logistic")], ids=repr)
def test_velocity_matches_finite_differences(feature, loss):
    """∇_θ F'(μ)(θ_i) = (1/w_i) ∂F/∂θ_i by central differences (ReLU kinks are a null set:
    none of the 40 samples lies within h of one)."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, feature.input_dim))
    y = np.sin(X.sum(1)) if loss == "square" else np.where(X[:, 0] > 0, 1.0, -1.0)
    prob = mf.Problem(feature, loss, mf.L2(0.05), mf.data.Dataset(X, y))
    mu = mf.Particles(random_positions(feature, 6, 4), rng.uniform(0.5, 1.5, 6) / 6)
    w = np.asarray(mu.weights)
    objective = jax.jit(lambda P: prob.objective(mf.Particles.unchecked(P, jnp.asarray(w))))
    fd = central_diff(lambda P: float(objective(jnp.asarray(P))), mu.positions) / w[:, None]
    vel, fv_grad = jax.jit(lambda mu: (prob.value_and_velocity(mu)[1], prob.first_variation_grad(mu, mu.positions)))(mu)
    np.testing.assert_allclose(vel, fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fv_grad, fd, rtol=1e-6, atol=1e-8)


def test_homogeneity():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(3)
    for feature in (ReLU(3), ReLU(3, bias=True)):
        th = rng.standard_normal(feature.dim)
        assert feature.homogeneity.kind == "full" and feature.homogeneity.degree == 2
        for lam in (0.3, 2.5):
            np.testing.assert_allclose(feature(lam * th, x), lam**2 * feature(th, x), rtol=1e-13)
    for feature in (Sigmoid(3, bias=True), Erf(3)):
        th = rng.standard_normal(feature.dim)
        hom = feature.homogeneity
        assert hom.kind == "partial" and hom.degree == 1 and hom.coordinate == feature.dim - 1
        scaled = th.copy()
        scaled[-1] *= -1.7
        np.testing.assert_allclose(feature(scaled, x), -1.7 * feature(th, x), rtol=1e-13)
        # ... and not in the other coordinates
        assert abs(float(feature(2 * th, x)) - 4 * float(feature(th, x))) > 1e-3


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_sigmoid_is_overflow_safe(dtype):
    feature = Sigmoid(1, bias=True)
    P = jnp.asarray([[800.0, 0.0, 1.0], [-800.0, 0.0, 1.0], [1e4, 5.0, -2.0]], dtype)
    X = jnp.asarray([[1.0], [-1.0]], dtype)
    M = feature.matrix(P, X)
    np.testing.assert_array_equal(np.asarray(M), [[1, 0], [0, 1], [-2, 0]])
    g = jax.grad(lambda Q: jnp.sum(feature.matrix(Q, X)))(P)
    assert M.dtype == dtype and bool(jnp.all(jnp.isfinite(g)))


def test_admissible_init_and_support_checks():
    relu, sig = ReLU(2, bias=True), Sigmoid(2, bias=True)
    mu = mf.init.admissible(relu, 200, key=0)
    np.testing.assert_allclose(np.linalg.norm(mu.positions, axis=1), 1.0, rtol=1e-12)
    assert mf.init.check_support(relu, mu).ok
    P = np.asarray(mu.positions).copy()
    P[:, -1] = np.abs(P[:, -1])                      # all output weights positive: a half-space
    with pytest.warns(mf.SupportWarning):
        assert not mf.init.check_support(relu, mf.Particles(P)).ok
    mu = mf.init.admissible(sig, 200, key=0)
    assert np.all(np.asarray(mu.positions)[:, -1] == 0)
    assert mf.init.check_support(sig, mu).ok
    P = np.asarray(mu.positions).copy()
    P[:, -1] = 0.1
    with pytest.warns(mf.SupportWarning):
        assert not mf.init.check_support(sig, mf.Particles(P)).ok
    P = np.asarray(mu.positions).copy()
    P[:, 0] = np.abs(P[:, 0]) + 0.1                  # (w, b) confined to a half-space
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not mf.init.check_support(sig, mf.Particles(P)).ok


def test_bad_arguments():
    with pytest.raises(mf.InputTypeError, match="bias"):
        ReLU(2, bias="yes")
    with pytest.raises(mf.ValidationError, match="input_dim"):
        Sigmoid(0)
    with pytest.raises(mf.ValidationError, match="activation"):
        mf.data.TeacherStudent(2, 3, "tanh")
    with pytest.raises(mf.ValidationError, match="inputs"):
        mf.data.TeacherStudent(2, 3, inputs="uniform")
    with pytest.raises(mf.ValidationError, match="noise"):
        mf.data.TeacherStudent(2, 3, noise=-1.0)
    with pytest.raises(mf.ValidationError, match="teacher_units"):
        mf.data.TeacherStudent(2, 0)
    with pytest.raises(mf.ValidationError, match="input_dim"):
        mf.data.TeacherStudent(2, 3, ReLU(3))
    with pytest.raises(mf.ValidationError, match="expects input_dim=3"):
        mf.Problem(ReLU(3), data=mf.data.TeacherStudent(2, 3))


# -- teacher–student data ------------------------------------------------------------------

def test_teacher_student_samples():
    ts = mf.data.TeacherStudent(3, 4, "relu", bias=True, inputs="sphere", noise=0.0, seed=2, eval_size=300)
    assert ts.teacher.shape == (4, 5) and ts.teacher_feature == ReLU(3, bias=True)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(ts.teacher)[:, :4], axis=1), 1.0)
    assert set(np.abs(np.asarray(ts.teacher)[:, -1])) == {1.0}
    train = ts.training_set(300, seed=1)
    np.testing.assert_allclose(np.linalg.norm(train.X, axis=1), 1.0, rtol=1e-12)
    # f* is the mean-field network of the teacher particles (masses 1/m0)
    T = np.asarray(ts.teacher)
    expect = np.mean(T[:, -1:] * np.maximum(T[:, :3] @ np.asarray(train.X).T + T[:, 3:4], 0), axis=0)
    np.testing.assert_allclose(train.y, expect, rtol=1e-12, atol=1e-15)
    assert isinstance(train, mf.data.Dataset) and train.n == 300
    np.testing.assert_array_equal(ts.training_set(300, seed=1).X, train.X)          # reproducible
    assert not np.allclose(ts.training_set(300, seed=2).X, train.X)
    assert not np.allclose(ts.evaluation_set().X[:300], train.X)
    same = mf.data.TeacherStudent(3, 4, "relu", bias=True, inputs="sphere", seed=2, eval_size=300)
    np.testing.assert_array_equal(same.teacher, ts.teacher)
    cls = mf.data.TeacherStudent(2, 3, "sigmoid", task="classification", noise=0.3, seed=1)
    b = cls.training_set(2000)
    assert set(np.unique(b.y)) == {-1.0, 1.0}
    agree = np.sign(cls.target(b.X)) == b.y
    # y = sign(f* + σε): given x, the label keeps the sign of f* with probability
    # q = Φ(|f*(x)|/σ); the agreement is within 4 standard errors of mean q (two-sided)
    from scipy.stats import norm

    q = norm.cdf(np.abs(np.asarray(cls.target(b.X))) / 0.3)
    assert abs(agree.mean() - q.mean()) < 4 * np.sqrt(np.sum(q * (1 - q))) / len(q)
    assert q.mean() < 0.99                            # the noise flips enough labels to be seen


def test_square_risk_of_the_teacher_itself_is_the_noise_floor():
    for ts in (mf.data.TeacherStudent(1, 3, "relu", bias=True, noise=0.2, seed=0),
               mf.data.TeacherStudent(2, 4, "erf", noise=0.2, seed=0, teacher_scale=2.0)):
        risk = jax.jit(mf.Problem(ts.teacher_feature, "square", data=ts).risk)
        T = np.asarray(ts.teacher)
        assert abs(float(risk(ts.teacher_particles())) - 0.02) < 1e-14
        # m = 7 particles of mass 1/7 represent the 3-4 teacher units: a rescaled by copies
        m0 = T.shape[0]
        groups = np.array_split(np.arange(7), m0)
        P = np.concatenate([np.tile(T[k], (len(g), 1)) for k, g in enumerate(groups)])
        P[:, -1] *= np.concatenate([[7 / (m0 * len(g))] * len(g) for g in groups])
        assert abs(float(risk(mf.Particles(P))) - 0.02) < 1e-13
        assert ts.optimal_risk("square") == pytest.approx(0.02)


# -- closed forms --------------------------------------------------------------------------

def gauss(x):
    return np.exp(-x * x / 2) / np.sqrt(2 * np.pi)


@pytest.mark.parametrize("w,b,v,c", [(0.7, 0.3, -1.3, -0.2), (2.0, -1.0, 0.5, 2.0), (-0.4, 0.0, -0.9, 0.5),
                                     (0.0, 0.8, 1.1, -0.3), (0.0, -0.8, 1.1, -0.3), (1.5, 0.2, 1.5, 0.2)])
def test_kernels_against_quadrature(w, b, v, c):
    quad = si.quad(lambda x: max(w * x + b, 0) * max(v * x + c, 0) * gauss(x), -15, 15,
                   points=[p for p in (-b / w if w else 0.0, -c / v if v else 0.0)], epsabs=1e-14, limit=200)[0]
    got = population.relu_bias_kernel_1d(*(jnp.asarray([t]) for t in (w, b, v, c)))[0, 0]
    assert abs(float(got) - quad) < 1e-12
    quad = si.quad(lambda x: sp.erf(w * x) * sp.erf(v * x) * gauss(x), -np.inf, np.inf, epsabs=1e-14)[0]
    assert abs(float(population.erf_kernel(jnp.asarray([[w]]), jnp.asarray([[v]]))[0, 0]) - quad) < 1e-12


def test_arccos_kernel_against_polar_quadrature():
    """d = 2: E relu(w·x) relu(v·x) = ∫ ρ³ e^{−ρ²/2}/(2π) dρ ∫ relu(w·u) relu(v·u) dφ = (1/π) ∫ … dφ."""
    rng = np.random.default_rng(0)
    for _ in range(4):
        w, v = rng.standard_normal(2), rng.standard_normal(2)
        kinks = np.mod([np.arctan2(z[1], z[0]) + s * np.pi / 2 for z in (w, v) for s in (-1, 1)], 2 * np.pi)
        ang = si.quad(lambda t: max(w @ [np.cos(t), np.sin(t)], 0) * max(v @ [np.cos(t), np.sin(t)], 0),
                      0, 2 * np.pi, points=kinks, epsabs=1e-14, limit=200)[0]
        got = float(population.relu_kernel(jnp.asarray([w]), jnp.asarray([v]))[0, 0])
        assert abs(got - ang / np.pi) < 1e-12
    w = rng.standard_normal(4)
    assert float(population.relu_kernel(jnp.asarray([w]), jnp.asarray([w]))[0, 0]) == pytest.approx(w @ w / 2)
    assert float(population.relu_kernel(jnp.asarray([w]), jnp.asarray([-w]))[0, 0]) == pytest.approx(0, abs=1e-15)


EXACT_CASES = [  # (input_dim, activation, bias, inputs, teacher_scale, noise)
    (3, "relu", False, "gaussian", 1.0, 0.0),
    (3, "relu", False, "sphere", 1.0, 0.1),
    (1, "relu", True, "gaussian", 1.0, 0.0),
    (3, "erf", False, "gaussian", 2.0, 0.1),
]


def monte_carlo(ts, P, n=1_000_000, chunks=100, seed=11):
    """Monte-Carlo risk and gradient in P (m, p) from n fresh samples in chunks: the means
    and their standard errors across chunks."""
    feature = ts.teacher_feature
    w = jnp.full(P.shape[0], 1.0 / P.shape[0])

    def chunk_risk(Q, key):
        b = ts.sample(key, n // chunks)
        return jnp.mean(0.5 * (w @ feature.matrix(Q, b.X) - b.y) ** 2)

    keys = jax.random.split(jax.random.PRNGKey(seed), chunks)
    vals, grads = jax.jit(jax.vmap(jax.value_and_grad(chunk_risk), (None, 0)))(P, keys)
    se = lambda a: np.std(np.asarray(a), axis=0, ddof=1) / np.sqrt(chunks)  # noqa: E731
    return np.mean(vals), se(vals), np.mean(np.asarray(grads), axis=0), se(grads)


@pytest.mark.parametrize("case", EXACT_CASES, ids=lambda c: f"{c[1]}-d{c[0]}-bias{c[2]}-{c[3]}")
def test_exact_risk_and_gradient_match_monte_carlo(case):
    """The closed form agrees with a 10⁶-sample Monte-Carlo estimate within 4 standard
    errors, and so does its autodiff gradient with the gradient of the Monte-Carlo objective."""
    d, act, bias, inputs, scale, noise = case
    ts = mf.data.TeacherStudent(d, 3, act, bias=bias, inputs=inputs, noise=noise, seed=1, teacher_scale=scale)
    feature = ts.teacher_feature
    P = random_positions(feature, 4, 2)
    prob = mf.Problem(feature, "square", data=ts)
    exact, grad = jax.jit(jax.value_and_grad(lambda Q: prob.risk(mf.Particles.unchecked(Q, jnp.full(4, 0.25)))))(
        jnp.asarray(P))
    mc, mc_se, mc_grad, mc_grad_se = monte_carlo(ts, jnp.asarray(P))
    assert abs(float(exact) - mc) < 4 * mc_se, (float(exact), mc, mc_se)
    z = np.abs(np.asarray(grad) - mc_grad) / mc_grad_se
    assert z.max() < 4.5, z


def test_exact_gradient_is_finite_and_exact_at_coincident_and_parallel_units():
    """Split particles (equal θ) and parallel units make cos α = ±1, where arccos and sqrt
    are not differentiable: the gradient must still be finite and equal finite differences."""
    ts = mf.data.TeacherStudent(2, 2, "relu", seed=3)
    prob = mf.Problem(ReLU(2), "square", data=ts)
    P = random_positions(ReLU(2), 3, 4)
    P = np.concatenate([P, P[:1], 2.0 * P[1:2], -P[2:3]])
    w = np.full(6, 1 / 6)
    risk_of = jax.jit(lambda Q: prob.risk(mf.Particles.unchecked(Q, jnp.asarray(w))))
    risk = lambda Q: float(risk_of(jnp.asarray(Q)))  # noqa: E731
    g = jax.grad(risk_of)(jnp.asarray(P))
    assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_allclose(g, central_diff(risk, P, h=1e-5), rtol=1e-6, atol=1e-9)


def test_exact_risk_applies_only_where_a_closed_form_exists():
    def exact(ts, feature, loss):  # traced only: the decision is static
        return jax.eval_shape(lambda mu: ts.exact_risk(feature, loss, mu), mf.init.admissible(feature, 5))

    ts = mf.data.TeacherStudent(2, 3, "relu", seed=0)
    assert exact(ts, ReLU(2), mf.losses.square) is not None
    assert exact(ts, ReLU(2), mf.losses.logistic) is None
    assert exact(ts, Erf(2), mf.losses.square) is None
    assert exact(mf.data.TeacherStudent(2, 3, "relu", bias=True), ReLU(2, bias=True), mf.losses.square) is None
    sig = mf.data.TeacherStudent(2, 3, "sigmoid", eval_size=500, seed=0)
    mu = mf.init.admissible(Sigmoid(2), 5, key=0)
    assert exact(sig, Sigmoid(2), mf.losses.square) is None
    ev = sig.evaluation_set()
    prob = mf.Problem(Sigmoid(2), "square", data=sig)
    P = np.asarray(mu.positions).copy()
    P[:, -1] = 1.0
    mu = mf.Particles(P)
    np.testing.assert_allclose(jax.jit(prob.risk)(mu), np.mean(0.5 * (prob.predict(mu, ev.X) - ev.y) ** 2), rtol=1e-13)


# -- the flow ------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["gd", "sgd"])
def test_splitting_invariance_on_a_network(method):
    ts = mf.data.TeacherStudent(1, 3, "relu", bias=True, seed=0)
    feature = ts.teacher_feature
    if method == "gd":
        prob, kw = mf.Problem(feature, data=ts.training_set(200, seed=0)), {}
    else:
        prob, kw = mf.Problem(feature, data=ts), {"batch_size": 32, "key": 3}
    mu0 = mf.init.admissible(feature, 7, key=1)
    a = mf.solve(prob, mu0, method, step=0.5, iterations=200, history_every=25, snapshots=10, **kw)
    b = mf.solve(prob, mu0.split(), method, step=0.5, iterations=200, history_every=25, snapshots=10, **kw)
    np.testing.assert_allclose(b.history, a.history, rtol=1e-10, atol=1e-13)
    Pa, Pb = np.asarray(a.particles.positions), np.asarray(b.particles.positions)
    np.testing.assert_allclose(Pb[:7], Pa, atol=1e-10)
    np.testing.assert_allclose(Pb[7:], Pa, atol=1e-10)
    assert not np.allclose(Pa, np.asarray(mu0.positions))


def test_gd_reaches_the_optimum_of_a_realizable_relu_teacher():
    """d = 1 with bias, 2 teacher units, m = 20: the training loss falls by 10⁶ and the
    exact population excess loss (closed form) by 10⁴."""
    ts = mf.data.TeacherStudent(1, 2, "relu", bias=True, seed=0)
    feature = ts.teacher_feature
    prob = mf.Problem(feature, data=ts.training_set(200, seed=0))
    mu0 = mf.init.admissible(feature, 20, key=0)
    res = mf.solve(prob, mu0, "gd", step=0.5 * mf.default_step(prob, mu0), iterations=4000, snapshots=0)
    assert res.history[-1] < 1e-6 * res.history[0]
    pop = jax.jit(mf.Problem(feature, data=ts).objective)
    assert float(pop(res.particles)) < 1e-4 * float(pop(mu0))


@pytest.mark.slow
def test_sgd_on_the_population_reaches_the_optimum_with_exact_history():
    """Erf units without bias on Gaussian inputs: the history is the exact population risk."""
    ts = mf.data.TeacherStudent(2, 2, "erf", seed=0, teacher_scale=2.0, eval_size=4000)  # eval: default step only
    feature = ts.teacher_feature
    prob = mf.Problem(feature, data=ts)
    mu0 = mf.init.admissible(feature, 20, key=0)
    res = mf.solve(prob, mu0, "sgd", iterations=3000, batch_size=64, key=1, snapshots=0)
    np.testing.assert_allclose(res.history[-1], float(prob.objective(res.particles)), rtol=0, atol=1e-14)
    assert res.history[-1] < 1e-4 * res.history[0]


@pytest.mark.slow
def test_float32_run_on_a_network():
    ts = mf.data.TeacherStudent(2, 3, "relu", seed=0)
    prob = mf.Problem(ReLU(2), data=ts.training_set(200))
    mu0 = mf.init.admissible(ReLU(2), 10, key=0)
    r32 = mf.solve(prob, mu0, "gd", step=0.5, iterations=200, dtype="float32")
    r64 = mf.solve(prob, mu0, "gd", step=0.5, iterations=200)
    assert r32.particles.positions.dtype == np.float32
    np.testing.assert_allclose(r32.history, r64.history, rtol=1e-3)


def test_default_step_control_halves_a_step_that_outgrows_the_curvature():
    """solve(step=None) halves the step ("gd", "fb") when F increases over a history
    interval. Here 4x the default step kills the ReLU units (F stays at ½ E y²); with the
    control the step is halved once and the run descends, and split particles take the
    same decisions (mean-field invariance)."""
    ts = mf.data.TeacherStudent(1, 3, "relu", bias=True, seed=0)
    feature = ts.teacher_feature
    prob = mf.Problem(feature, data=ts.training_set(200))
    mu0 = mf.init.admissible(feature, 8, key=1)
    s0 = mf.default_step(prob, mu0)
    kw = dict(step=4 * s0, iterations=2000, history_every=1, snapshots=0)
    plain = mf.solve(prob, mu0, "gd", halve_on_increase=False, **kw)
    assert plain.history[-1] > plain.history[0]
    guarded = mf.solve(prob, mu0, "gd", halve_on_increase=True, **kw)
    assert float(guarded.step) == pytest.approx(2 * s0, rel=1e-12)
    assert guarded.history[-1] < 0.2 * guarded.history[0]
    split = mf.solve(prob, mu0.split(), "gd", halve_on_increase=True, **kw)
    np.testing.assert_allclose(split.history, guarded.history, rtol=1e-10, atol=1e-15)
    assert float(split.step) == float(guarded.step)
