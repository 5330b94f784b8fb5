"""One WFR step against its formula with derivatives of F by central differences:
θ_i ← θ_i − η β (1/w_i) ∂F/∂θ_i and w_i ← w_i exp(−α η F'(μ)(θ_i)), F'(μ)(θ_i) = ∂F/∂w_i;
every coordinate moves unless freeze_weight holds the feature's weight coordinate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import measureflow as mf
from measureflow.features import Custom, Homogeneity

TANH_UNIT = Custom(lambda th, x: th[0] * jnp.tanh(th[1:3] @ x + th[3]), dim=4, input_dim=2,
                   homogeneity=Homogeneity.partial(1, 0))


def _fd(f, z, h=1e-6):
    return np.array([(f(z + h * e.reshape(z.shape)) - f(z - h * e.reshape(z.shape))) / (2 * h)
                     for e in np.eye(z.size)]).reshape(z.shape)


@pytest.mark.parametrize("rule,frozen", [(mf.methods.WFR(alpha=2.0, beta=0.5), False),
                                         (mf.methods.WFR(alpha=1.0, beta=1.0, freeze_weight=True), True)],
                         ids=["default", "frozen-weight"])
def test_one_wfr_step_is_its_formula(rule, frozen):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((25, 2))
    prob = mf.Problem(TANH_UNIT, "square", mf.L2(1e-2), mf.data.Dataset(X, np.tanh(X @ np.array([1.0, -0.5]))))
    P0, w0 = rng.standard_normal((5, 4)), rng.uniform(0.5, 1.5, 5) / 5
    objective = jax.jit(lambda P, w: prob.objective(mf.Particles.unchecked(P, w)))
    F = lambda P, w: float(objective(jnp.asarray(P), jnp.asarray(w)))  # noqa: E731
    grad_P = _fd(lambda P: F(P, w0), P0)
    first_variation = _fd(lambda w: F(P0, w), w0)
    velocity = grad_P / w0[:, None]
    if frozen:
        velocity[:, 0] = 0.0
    step = 0.05
    res = mf.solve(prob, mf.Particles(P0, w0), rule, step=step, iterations=1, snapshots=0)
    np.testing.assert_allclose(np.asarray(res.particles.positions), P0 - step * rule.beta * velocity, rtol=0, atol=1e-8)
    np.testing.assert_allclose(np.asarray(res.particles.weights), w0 * np.exp(-rule.alpha * step * first_variation),
                               rtol=1e-8)
    assert frozen or np.all(np.abs(np.asarray(res.particles.positions) - P0)[:, 0] > 1e-6)
