"""Update rules (mf.methods): split invariance for every rule with and without minibatches,
WFR against exponentiated gradient / the random-features optimum, mass invariants, optax."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import measureflow as mf
from measureflow.baselines import random_features
from measureflow.features import Custom, Homogeneity

TANH_UNIT = Custom(lambda th, x: th[0] * jnp.tanh(th[1:3] @ x + th[3]), dim=4, input_dim=2,
                   homogeneity=Homogeneity.partial(1, 0))


def tanh_problem(reg=None, n=50, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    y = np.tanh(X @ np.array([1.5, -1.0])) - 0.5 * np.tanh(X @ np.array([0.3, 1.2]) + 0.2)
    return mf.Problem(TANH_UNIT, "square", reg, mf.data.Dataset(X, y))


ADAM = mf.methods.Optax(optax.adam(1e-2), name="adam")
MOMENTUM = mf.methods.Optax(optax.sgd(0.2, momentum=0.9), name="sgd-momentum")
RULES = [
    ("gd", mf.L2(1e-2), 0.3),
    ("fb", mf.L1(1e-2), 0.3),
    (mf.methods.WFR(alpha=2.0, beta=1.0), mf.L2(1e-2), 0.2),
    (mf.methods.WFR(alpha=1.0, beta=0.5, normalize=True), mf.L2(1e-2), 0.2),
    (ADAM, mf.L2(1e-2), 1.0),
    (MOMENTUM, mf.L2(1e-2), 1.0),
]


@pytest.mark.parametrize("batch_size", [None, 16])
@pytest.mark.parametrize("method,reg,step", RULES, ids=["gd", "fb", "wfr", "wfr-normalized", "adam", "momentum"])
def test_every_rule_keeps_the_flow_when_each_particle_is_split(method, reg, step, batch_size):
    """Two copies of half the mass follow the unsplit particle (positions) and keep half its
    mass (WFR), to 1e-10, with the same minibatches (same key)."""
    prob = tanh_problem(reg)
    rng = np.random.default_rng(0)
    mu0 = mf.Particles(rng.standard_normal((9, 4)), rng.uniform(0.5, 1.5, 9) / 9)
    kw = dict(step=step, iterations=150, batch_size=batch_size, key=5, snapshots=0)
    a = mf.solve(prob, mu0, method, **kw)
    b = mf.solve(prob, mu0.split(), method, **kw)
    np.testing.assert_allclose(b.history, a.history, rtol=0, atol=1e-10)
    Pa, Pb = np.asarray(a.particles.positions), np.asarray(b.particles.positions)
    wa, wb = np.asarray(a.particles.weights), np.asarray(b.particles.weights)
    for half in (slice(0, 9), slice(9, 18)):
        np.testing.assert_allclose(Pb[half], Pa, rtol=0, atol=1e-10)
        np.testing.assert_allclose(2 * wb[half], wa, rtol=0, atol=1e-10)
    assert np.max(np.abs(Pa - np.asarray(mu0.positions))) > 1e-2  # the particles did move


def _signed_random_features(m=6, n=40, seed=1, lam=1e-2):
    """Frozen positions, each carried twice with output weight a = +1 and −1: a
    nonnegative measure on them is a signed combination of the m features."""
    rng = np.random.default_rng(seed)
    prob = tanh_problem(mf.L1(lam), n=n, seed=seed)
    inner = rng.standard_normal((m, 3))
    P = np.vstack([np.column_stack([np.ones(m), inner]), np.column_stack([-np.ones(m), inner])])
    return prob, P


def test_wfr_with_frozen_positions_is_exponentiated_gradient_and_reaches_the_convex_optimum():
    """β = 0: w ← w·exp(−αηF'(θ_i)) (checked step by step against NumPy), converging to the
    optimum of the convex problem on the frozen features that random_features solves."""
    prob, P = _signed_random_features()
    m2 = P.shape[0]
    mu0 = mf.Particles(P, np.full(m2, 1.0 / m2))
    rule = mf.methods.WFR(alpha=1.0, beta=0.0, freeze_weight=True)
    one = mf.solve(prob, mu0, rule, step=0.5, iterations=1, snapshots=0)
    fv = np.asarray(prob.first_variation(mu0, mu0.positions))
    np.testing.assert_allclose(one.particles.weights, np.asarray(mu0.weights) * np.exp(-0.5 * fv), rtol=1e-13)
    np.testing.assert_array_equal(one.particles.positions, P)
    res = mf.solve(prob, mu0, rule, step=0.5, iterations=20000, snapshots=0)
    # the same measure as a signed combination with masses 1/m on m2 particles
    coef = np.asarray(res.particles.weights) * P[:, 0]
    base = random_features(prob, mf.Particles(P, np.full(m2, 1.0 / m2)))
    assert np.all(np.asarray(res.particles.weights) >= 0)
    assert res.objective == pytest.approx(base.objective, rel=1e-9, abs=1e-12)
    net = coef[: m2 // 2] + coef[m2 // 2:]
    base_coef = np.asarray(base.particles.positions)[:, 0] / m2
    np.testing.assert_allclose(net, base_coef[: m2 // 2] + base_coef[m2 // 2:], atol=1e-5)


def test_wfr_masses_stay_nonnegative_zero_stays_zero_and_normalize_keeps_a_probability():
    prob = tanh_problem(mf.L2(1e-2))
    rng = np.random.default_rng(3)
    w = rng.uniform(0.5, 1.5, 8)
    w[[2, 5]] = 0.0
    mu0 = mf.Particles(rng.standard_normal((8, 4)), w / w.sum())
    free = mf.solve(prob, mu0, mf.methods.WFR(alpha=5.0), step=0.3, iterations=60, snapshots=80)
    W = np.asarray(free.trajectory_weights)
    assert W.shape[0] == 61 and np.all(W >= 0)
    assert np.all(W[:, [2, 5]] == 0.0)
    assert np.ptp(W.sum(axis=1)) > 1e-3  # unnormalized: the total mass moves
    unit = mf.solve(prob, mu0, mf.methods.WFR(alpha=5.0, normalize=True), step=0.3, iterations=60, snapshots=80)
    Wn = np.asarray(unit.trajectory_weights)
    np.testing.assert_allclose(Wn.sum(axis=1), 1.0, atol=1e-13)
    assert np.all(Wn[:, [2, 5]] == 0.0) and np.all(Wn >= 0)


def test_optax_sgd_without_momentum_is_the_gradient_step():
    """optax.sgd(η) on the mean-field velocity is θ ← θ − η G∇F': the same run as "gd"."""
    prob = tanh_problem(mf.L2(1e-2))
    mu0 = mf.init.admissible(prob.feature, 7, key=2)
    a = mf.solve(prob, mu0, "gd", step=0.3, iterations=100, snapshots=0)
    b = mf.solve(prob, mu0, mf.methods.Optax(optax.sgd(0.3)), iterations=100, snapshots=0)
    np.testing.assert_allclose(b.particles.positions, a.particles.positions, rtol=0, atol=1e-12)
    assert float(b.step) == 1.0  # optax rules take their learning rate from the transformation


def test_adam_step_matches_a_numpy_adam_on_the_velocity():
    prob = tanh_problem(mf.L2(1e-2))
    mu0 = mf.init.admissible(prob.feature, 5, key=4)
    res = mf.solve(prob, mu0, ADAM, iterations=3, snapshots=0)
    P = np.asarray(mu0.positions, float)
    m1 = np.zeros_like(P)
    v = np.zeros_like(P)
    for t in range(1, 4):
        g = np.asarray(prob.first_variation_grad(mf.Particles(P, mu0.weights), jnp.asarray(P)))
        m1 = 0.9 * m1 + 0.1 * g
        v = 0.999 * v + 0.001 * g**2
        P = P - 1e-2 * (m1 / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    np.testing.assert_allclose(res.particles.positions, P, rtol=1e-10, atol=1e-12)
