"""Random-features baseline: its optimum checked by independent NumPy/SciPy computations."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import measureflow as mf
from measureflow.baselines import design_matrix, random_features
from measureflow.features import Custom, Homogeneity


@pytest.fixture(scope="module")
def setting():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 2))
    y = np.tanh(X @ np.array([1.0, -1.0])) + 0.1 * rng.standard_normal(80)
    feat = Custom(lambda th, x: th[0] * jnp.tanh(th[1:] @ x), dim=3, input_dim=2,
                  homogeneity=Homogeneity.partial(1, 0))
    mu0 = mf.init.admissible(feat, 25, key=0)
    psi = np.tanh(X @ np.asarray(mu0.positions)[:, 1:].T)          # (n, m), independent of A
    return X, y, feat, mu0, psi


def numpy_objective(a, psi, y, w, loss, lam, kind):
    f = psi @ (w * a)
    r = 0.5 * np.mean((f - y) ** 2) if loss == "square" else np.mean(np.logaddexp(0, -y * f))
    pen = {"none": 0.0, "l2": lam * np.sum(w * a**2), "l1": lam * np.sum(w * np.abs(a))}[kind]
    return r + pen


@pytest.mark.parametrize("loss,kind", [("square", "none"), ("square", "l2"), ("square", "l1"),
                                       ("logistic", "l2"), ("logistic", "l1")])
def test_random_features_reaches_the_convex_optimum(setting, loss, kind):
    X, y, feat, mu0, psi = setting
    lam = 1e-2
    yy = np.sign(y) if loss == "logistic" else y
    reg = {"none": None, "l2": mf.L2(lam), "l1": mf.L1(lam)}[kind]
    prob = mf.Problem(feat, loss, reg, mf.data.Dataset(X, yy))
    res = random_features(prob, mu0)
    w = np.asarray(mu0.weights)
    a = np.asarray(res.particles.positions)[:, 0]
    # positions other than the weight are untouched
    np.testing.assert_array_equal(np.asarray(res.particles.positions)[:, 1:], np.asarray(mu0.positions)[:, 1:])
    # L2 acts on all of θ; the frozen part adds a constant
    const = lam * np.sum(w * np.sum(np.asarray(mu0.positions)[:, 1:] ** 2, axis=1)) if kind == "l2" else 0.0
    F = numpy_objective(a, psi, yy, w, loss, lam, kind) + const
    assert abs(F - res.objective) < 1e-12 * max(1, abs(F))
    assert res.optimality < 1e-8
    # an independent solver (Powell-free: L-BFGS on a smooth reformulation for L1: a = u − v, u, v ≥ 0)
    m = len(w)
    if kind == "l1":
        def obj(uv):
            return numpy_objective(uv[:m] - uv[m:], psi, yy, w, loss, lam, "none") + lam * np.sum(np.concatenate([w, w]) * uv)
        ref = scipy.optimize.minimize(obj, np.zeros(2 * m), method="L-BFGS-B", bounds=[(0, None)] * (2 * m),
                                      options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 20000})
    else:
        ref = scipy.optimize.minimize(lambda b: numpy_objective(b, psi, yy, w, loss, lam, kind), np.zeros(m),
                                      method="BFGS", options={"gtol": 1e-12, "maxiter": 20000})
    assert F - const <= ref.fun + 1e-8 * max(1, abs(ref.fun))


def test_design_matrix_and_errors(setting):
    X, y, feat, mu0, psi = setting
    prob = mf.Problem(feat, "square", None, mf.data.Dataset(X, y))
    np.testing.assert_allclose(design_matrix(prob, mu0), psi * np.asarray(mu0.weights), atol=1e-14)
    nonlinear = Custom(lambda th, x: th[0] ** 2 * jnp.tanh(th[1:] @ x), dim=3, input_dim=2, weight_index=0)
    with pytest.raises(mf.ValidationError, match="not linear in its weight coordinate"):
        random_features(mf.Problem(nonlinear, "square", None, prob.data), mu0)
