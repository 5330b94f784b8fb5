"""The curvature behind the default step (``mf.solvers.curvature``: power iteration on
Jacobian-vector products of the rule's field) against the eigenvalues of a Jacobian built
by central differences, for a rule that moves masses too (WFR: the state is (θ_i, w_i))."""

import jax.numpy as jnp
import numpy as np
import pytest

import measureflow as mf
from measureflow.features import Custom, Homogeneity

TANH_UNIT = Custom(lambda th, x: th[0] * jnp.tanh(th[1:3] @ x + th[3]), dim=4, input_dim=2,
                   homogeneity=Homogeneity.partial(1, 0))


def _problem_and_particles(m=4):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 2))
    prob = mf.Problem(TANH_UNIT, "square", mf.L2(1e-2), mf.data.Dataset(X, np.tanh(X @ np.array([1.5, -1.0]))))
    return prob, rng.standard_normal((m, 4)), rng.uniform(0.5, 1.5, m) / m


def _tangent(prob, rule, z, m):
    Q, u = z[: m * 4].reshape(m, 4), z[m * 4:]
    parts = mf.Particles.unchecked(jnp.asarray(Q), jnp.asarray(u))
    dP, dw = rule.tangent(prob, parts, prob.field(parts, first_variation=True))
    return np.concatenate([np.asarray(dP).ravel(), np.asarray(dw)])


@pytest.mark.parametrize("rule", [mf.methods.WFR(alpha=2.0, beta=1.0), mf.methods.WFR(alpha=0.5, beta=3.0)],
                         ids=["alpha2-beta1", "alpha0.5-beta3"])
def test_wfr_curvature_is_the_largest_eigenvalue_of_the_finite_difference_jacobian(rule):
    prob, P, w = _problem_and_particles()
    m, z0, h = len(w), np.concatenate([P.ravel(), w]), 1e-6
    J = np.stack([(_tangent(prob, rule, z0 + h * e, m) - _tangent(prob, rule, z0 - h * e, m)) / (2 * h)
                  for e in np.eye(z0.size)], axis=1)
    mags = np.sort(np.abs(np.linalg.eigvals(J)))[::-1]
    assert mags[1] < 0.9 * mags[0]  # a dominant eigenvalue: power iteration converges to it
    L = mf.solvers.curvature(prob, mf.Particles(P, w), method=rule, geometry="euclidean", iterations=200)
    assert L == pytest.approx(mags[0], rel=1e-6)
    # the default step is 1/L for a rule that moves masses (no position-only bound applies)
    assert mf.default_step(prob, mf.Particles(P, w), method=rule, geometry="euclidean") == pytest.approx(
        1 / mags[0], rel=1e-3)


def test_a_position_rule_steps_by_the_metrics_bound_where_the_curvature_at_mu0_is_blind():
    """From zero weights (the admissible spike init) the curvature along positions is
    invisible at μ0, so forward–backward's default step is 1/max(L, the conic bound)."""
    signal = mf.data.SpikeSignal(3, cutoff=12, noise=0.0, seed=0)
    prob = mf.deconvolution.blasso(signal, lam=0.1)
    mu0 = mf.init.admissible(prob.feature, 20, key=0)
    geom = mf.solvers.geometry.get(None, prob.feature)
    bound = geom.curvature_bound(prob, mu0, smooth_only=True)
    L = mf.solvers.curvature(prob, mu0, method="fb")
    assert bound is not None and bound > 1.5 * L  # the bound is what sets the step here
    assert mf.default_step(prob, mu0, method="fb") == pytest.approx(1 / bound, rel=1e-12)
