"""mf.methods.Langevin against closed forms: the discretized Gibbs law of F = ∫½|θ|²dμ, the
stationary mean of a linear feature with weight decay, annealing on a teacher–student
ReLU problem within the entropic bias of GD, split invariance in law (energy-distance
two-sample test), the entropic objective, and a Langevin run of the sweep task.

Each closed-form test runs many particles for a few hundred steps (the chains contract
geometrically) rather than few particles for long."""

import numpy as np
import pytest
import scipy.special
import scipy.stats

import measureflow as mf
from measureflow.diagnostics import entropic_objective, hessian_spectrum
from measureflow.experiments.tasks import run_task
from measureflow.features import Custom, ReLU


def _zero(th, x):
    """φ ≡ 0: R is constant and ∇F'(μ)(θ) = ∇V(θ)."""
    return 0.0 * th[0]


def _linear(th, x):
    return th @ x


# -- F = ∫½|θ|² dμ: the law tends to N(0, τ/(1 − η/2)·I) -------------------------------------

P2 = 2
QUAD = mf.Problem(Custom(_zero, dim=P2, input_dim=1), "square", mf.L2(0.5), mf.data.Dataset(np.zeros((1, 1)), np.zeros(1)))
M_LAW = 20_000
MU_WIDE = mf.Particles(np.random.default_rng(0).standard_normal((M_LAW, P2)) * 2.0 + 1.0)


def _within_standard_errors(P, s, n_se=3.0):
    """Mean 0 and covariance s·I of m iid N(0, s·I) samples, each entry within n_se
    standard errors: sd(mean) = sqrt(s/m), sd(variance) = s·sqrt(2/m), sd(covariance) =
    s/sqrt(m). Returns the largest |deviation| / standard error."""
    m, p = P.shape
    z_mean = P.mean(0) / np.sqrt(s / m)
    C = np.cov(P.T)
    se = np.where(np.eye(p, dtype=bool), s * np.sqrt(2.0 / m), s / np.sqrt(m))
    z_cov = (C - s * np.eye(p)) / se
    return max(np.abs(z_mean).max(), np.abs(z_cov).max())


@pytest.mark.parametrize("tau, eta", [(0.1, 0.1), (0.1, 1.5), (1.0, 0.5), (1.0, 1.0)])
def test_quadratic_potential_reaches_the_discretized_gibbs_law(tau, eta):
    # θ ← (1 − η)θ + √(2ητ)ξ: the variance s solves s = (1 − η)²s + 2ητ, s = τ/(1 − η/2);
    # after T steps the start's trace is (1 − η)^{2T} ≤ 0.9^{400}: gone
    res = mf.solve(QUAD, MU_WIDE, mf.methods.Langevin(tau), step=eta, iterations=200, key=7, snapshots=0)
    P = np.asarray(res.particles.positions)
    s = tau / (1 - eta / 2)
    z = _within_standard_errors(P, s)
    print(f"τ={tau} η={eta}: largest |deviation| / standard error {z:.2f}")
    assert z < 3.0
    if eta >= 0.5:  # the discretization term is resolved: the continuous law N(0, τI) is refused
        assert _within_standard_errors(P, tau) > 10.0
    # the entropic objective against its closed form: F = (p/2)s, H = (p/2) log(2πe s)
    ent = entropic_objective(QUAD, res)
    assert ent.temperature == tau
    H = 0.5 * P2 * np.log(2 * np.pi * np.e * s)
    assert abs(ent.objective - 0.5 * P2 * s) < 4 * s * np.sqrt(P2 / (2 * M_LAW))  # sd of ½|θ|²: s·sqrt(p/2)
    assert abs(ent.entropy - H) < 5 * np.sqrt((P2 / 2 + scipy.special.polygamma(1, 1)) / M_LAW) + 0.01
    assert ent.value == pytest.approx(ent.objective - tau * ent.entropy, rel=1e-12)


def test_small_step_is_the_continuous_gibbs_law_to_first_order():
    # η = 0.02: τ/(1 − η/2) = 1.0101 τ, within 1.4 standard errors of τ at m = 20 000
    res = mf.solve(QUAD, MU_WIDE, mf.methods.Langevin(0.1), step=0.02, iterations=1200, key=3, snapshots=0)
    P = np.asarray(res.particles.positions)
    assert _within_standard_errors(P, 0.1 / (1 - 0.01)) < 3.0


# -- linear feature, V = λ|θ|²: the stationary mean solves (A + 2λI) θ̄ = b -------------------

def _linear_problem(lam):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 2)) * np.array([1.0, 0.5])
    y = X @ np.array([1.5, -2.0]) + 0.3 * rng.standard_normal(50)
    return mf.Problem(Custom(_linear, dim=2, input_dim=2), "square", mf.L2(lam), mf.data.Dataset(X, y)), X, y


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_linear_feature_stationary_mean_and_covariance(tau):
    """F'(μ)(θ) = θ·(Aθ̄ − b) + λ|θ|² (A = mean x xᵀ, b = mean y x, θ̄ = ∫θdμ) is quadratic:
    the Gibbs law ∝ exp(−F'/τ) is N(−(Aθ̄ − b)/(2λ), τ/(2λ) I), and its mean θ̄ solves
    the linear fixed point (A + 2λI) θ̄ = b (for any τ). The discrete chain keeps this mean
    and has spread τ/(2λ(1 − λη)) about it; the m-particle mean fluctuates as the AR(1)
    θ̄ ← (I − ηK)θ̄ + ηb + √(2ητ/m) ξ, K = A + 2λI, with stationary covariance
    (2ητ/m)(I − (I − ηK)²)^{-1}: the exact standard errors of the test."""
    lam, eta, m = 0.25, 0.2, 20_000
    prob, X, y = _linear_problem(lam)
    A, b = X.T @ X / len(y), X.T @ y / len(y)
    K = A + 2 * lam * np.eye(2)
    mean_star = np.linalg.solve(K, b)
    mu0 = mf.Particles(np.random.default_rng(2).standard_normal((m, 2)))
    res = mf.solve(prob, mu0, mf.methods.Langevin(tau), step=eta, iterations=400, key=int(100 * tau), snapshots=0)
    P = np.asarray(res.particles.positions)
    I = np.eye(2)
    C_mean = 2 * eta * tau / m * np.linalg.inv(I - (I - eta * K) @ (I - eta * K))
    z = (P.mean(0) - mean_star) / np.sqrt(np.diag(C_mean))
    print(f"τ={tau}: mean {P.mean(0)} closed form {mean_star} z {z}")
    assert np.abs(z).max() < 3.0, (P.mean(0), mean_star, z)
    # a wrong closed form is refused: the unregularized least-squares mean A⁻¹b
    assert np.abs((P.mean(0) - np.linalg.solve(A, b)) / np.sqrt(np.diag(C_mean))).max() > 10
    s = tau / (2 * lam * (1 - lam * eta))
    assert _within_standard_errors(P - mean_star, s) < 3.5  # +0.5: θ̄ is estimated, not known


# -- annealing on a teacher–student ReLU problem ---------------------------------------------

def test_annealed_langevin_ends_within_the_entropic_bias_of_gd():
    """The bound. μ_τ = argmin F − τH satisfies, for any ν, F(μ_τ) ≤ F(ν) + τ(H(μ_τ) − H(ν)).
    Take ν = μ_GD ∗ N(0, σ²I): H(ν) ≥ (p/2) log(2πeσ²) (convolution raises entropy), and
    F(ν) ≤ F(μ_GD) + (β/2)pσ² with β the top eigenvalue of the mean-field Hessian at μ_GD
    (second order; a common translation of all particles is a unit vector of that scaled
    Hessian). Bound H(μ_τ) by the Gaussian of the same covariance C, ½ log((2πe)^p det C);
    with σ² = τ/β:

        F(μ_τ) − F(μ_GD) ≤ B(τ) = pτ/2 + (τ/2) log det(βC/τ),

    the pτ log(1/τ) entropic bias, evaluated at the final temperature τ_T with the final
    particles' covariance. It assumes the annealing has equilibrated at τ_T (the log
    schedule barely moves at the end: τ changes by 0.004% per step at T = 3000)."""
    feat = ReLU(2)
    data = mf.data.TeacherStudent(2, 2, seed=0).training_set(100)
    prob = mf.Problem(feat, "square", mf.L2(1e-3), data)
    mu0 = mf.init.admissible(feat, 100, key=0)
    T = 3000
    gd = mf.solve(prob, mu0, "gd", iterations=T, snapshots=0)
    rule = mf.methods.Langevin(2e-3, schedule=mf.methods.log_schedule)
    lan = mf.solve(prob, mu0, rule, iterations=T, key=1, snapshots=0)
    tau_T = float(rule.temperature_at(T - 1))
    P = np.asarray(lan.particles.positions)
    p = P.shape[1]
    beta = float(hessian_spectrum(prob, gd.particles, k=1).highest[0])
    B = p * tau_T / 2 + tau_T / 2 * np.linalg.slogdet(beta * np.cov(P.T) / tau_T)[1]
    excess = lan.objective - gd.objective
    print(f"F_GD={gd.objective:.6g} F_Langevin={lan.objective:.6g} excess={excess:.3g} B={B:.3g} "
          f"equipartition p·τ_T/2={p * tau_T / 2:.3g} τ_T={tau_T:.3g} β={beta:.3g}")
    assert excess <= B
    assert lan.objective < 0.05 * lan.history[0]  # and it did learn
    ent = entropic_objective(prob, lan)
    assert ent.temperature == pytest.approx(tau_T, rel=1e-12)


# -- split invariance in law: energy distance with a permutation p-value ---------------------

def energy_distance_test(X, Y, permutations=999, seed=0):
    """Multivariate energy distance E = 2E|X − Y| − E|X − X'| − E|Y − Y'| (V-statistic,
    Euclidean) between samples X (n, p), Y (k, p), and its permutation p-value
    (1 + #{E_π ≥ E}) / (1 + permutations). scipy.stats.energy_distance is the 1-D case
    (√E)."""
    Z = np.vstack([X, Y])
    D = np.linalg.norm(Z[:, None, :] - Z[None, :, :], axis=-1)
    n = len(X)

    def stat(idx):
        a, b = idx[:n], idx[n:]
        return 2 * D[np.ix_(a, b)].mean() - D[np.ix_(a, a)].mean() - D[np.ix_(b, b)].mean()

    rng = np.random.default_rng(seed)
    e = stat(np.arange(len(Z)))
    perm = np.array([stat(rng.permutation(len(Z))) for _ in range(permutations)])
    return e, (1 + np.sum(perm >= e)) / (1 + permutations)


def test_energy_distance_matches_scipy_in_one_dimension():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(60), rng.standard_normal(40) + 0.3
    e, _ = energy_distance_test(x[:, None], y[:, None], permutations=1)
    assert np.sqrt(e) == pytest.approx(scipy.stats.energy_distance(x, y), rel=1e-12)


SPLIT_PROB = mf.Problem(ReLU(2), "square", mf.L2(1e-3), mf.data.TeacherStudent(2, 2, seed=0).training_set(60))


def _langevin_end(mu, tau, key):
    return np.asarray(mf.solve(SPLIT_PROB, mu, mf.methods.Langevin(tau), step=0.2, iterations=150, key=key,
                               snapshots=0).particles.positions)


def test_split_run_has_the_law_of_the_unsplit_run():
    """Each particle of μ0 split into two copies of half the mass (then moved apart by
    independent noise) gives the same law of the final particles as the unsplit run with
    another noise key; a run at twice the temperature is told apart (the test has power)."""
    m, tau, pvals = 100, 0.02, []
    for seed in range(3):
        mu = mf.init.admissible(ReLU(2), m, key=seed)
        split = mf.Particles(np.repeat(np.asarray(mu.positions), 2, axis=0), np.full(2 * m, 0.5 / m))
        a = _langevin_end(mu, tau, key=100 + seed)
        b = _langevin_end(split, tau, key=200 + seed)
        pvals.append(energy_distance_test(a, b, permutations=499, seed=seed)[1])
    hot = _langevin_end(mf.init.admissible(ReLU(2), m, key=0), 4 * tau, key=300)
    _, p_hot = energy_distance_test(_langevin_end(mf.init.admissible(ReLU(2), m, key=0), tau, key=100), hot,
                                    permutations=499)
    print(f"split vs unsplit p-values {np.round(pvals, 3).tolist()}; 4τ vs τ p-value {p_hot:.3g}")
    assert min(pvals) > 0.01
    assert p_hot < 0.01


# -- entropic objective: inputs --------------------------------------------------------------

def test_entropic_objective_inputs():
    mu = mf.Particles(np.random.default_rng(0).standard_normal((50, P2)))
    with pytest.raises(mf.ValidationError, match="temperature= is needed"):
        entropic_objective(QUAD, mu)
    gd = mf.solve(QUAD, mu, "gd", step=0.1, iterations=2, snapshots=0)
    with pytest.raises(mf.ValidationError, match="is not Langevin"):
        entropic_objective(QUAD, gd)
    assert entropic_objective(QUAD, gd, temperature=0.0).value == pytest.approx(gd.objective, rel=1e-12)
    unequal = mf.Particles(np.asarray(mu.positions), np.linspace(1, 2, 50) / np.linspace(1, 2, 50).sum())
    with pytest.raises(mf.ValidationError, match="equal masses"):
        entropic_objective(QUAD, unequal, 0.1)


def test_schedules():
    assert float(mf.methods.log_schedule(0)) == pytest.approx(1.0)
    assert float(mf.methods.log_schedule(100)) == pytest.approx(1 / np.log(np.e + 100))
    g = mf.methods.geometric_schedule(0.99)
    assert float(g(10)) == pytest.approx(0.99**10)
    # equal and with a stable repr: one compilation, a checkpoint fingerprint across processes
    assert mf.methods.Langevin(0.1, schedule=g) == mf.methods.Langevin(0.1, schedule=mf.methods.geometric_schedule(0.99))
    assert "0x" not in mf.methods.Langevin(0.1, schedule=mf.methods.log_schedule).fingerprint()
    # a geometric schedule may underflow late in a run (0.999^10^6 = 0): allowed
    mf.methods.Langevin(0.1, schedule=mf.methods.geometric_schedule(0.999))


# -- the sweep task ---------------------------------------------------------------------------

def test_custom_teacher_task_runs_langevin(tmp_path):
    from measureflow.experiments import expand, run_sweep
    from measureflow.store import Store

    base = {"m": 10, "iterations": 60, "n": 30, "n_test": 30, "step": 0.3, "method": "langevin", "temperature": 1e-3}
    spec = {"name": "lv", "task": "custom_teacher", "base": base, "grid": {"schedule": ["log", "geometric"]}}
    runs = expand(spec)
    assert [r.config.get("rate") for r in runs] == [None, 0.999]
    summary = run_sweep(spec, tmp_path, workers=0, progress=False)
    assert (summary.total, summary.done, summary.failed) == (2, 2, 0)
    with Store(tmp_path) as store:
        recs = {r.config["schedule"]: r.metrics for r in store.records("done")}
    assert recs["log"]["temperature_final"] == pytest.approx(1e-3 / np.log(np.e + 59))
    assert recs["geometric"]["temperature_final"] == pytest.approx(1e-3 * 0.999**59)
    for met in recs.values():
        assert met["entropic_objective"] == pytest.approx(
            met["objective"] - met["temperature_final"] * met["entropy"], rel=1e-9)
    # the same seed gives the same noise; another seed other noise
    again, _ = run_task("custom_teacher", {**base, "schedule": "log"})
    assert again["objective"] == recs["log"]["objective"]
    other, _ = run_task("custom_teacher", {**base, "schedule": "log", "seed": 1, "data_seed": 0})
    assert other["objective"] != recs["log"]["objective"]


# -- the run: continuation, minibatches, τ = 0 ------------------------------------------------

def test_continued_and_minibatch_runs_keep_the_noise_and_zero_temperature_is_the_base_rule(tmp_path):
    prob, _, _ = _linear_problem(0.25)
    mu0 = mf.Particles(np.random.default_rng(3).standard_normal((64, 2)))
    rule = mf.methods.Langevin(0.1, schedule=mf.methods.geometric_schedule(0.99))
    for batch in (None, 8):
        whole = mf.solve(prob, mu0, rule, step=0.1, iterations=40, key=5, batch_size=batch, snapshots=0)
        half = mf.solve(prob, mu0, rule, step=0.1, iterations=15, key=5, batch_size=batch, snapshots=0)
        cont = mf.solve(prob, half, iterations=25)
        np.testing.assert_array_equal(cont.particles.positions, whole.particles.positions)
        ckpt = mf.solve(prob, mu0, rule, step=0.1, iterations=40, key=5, batch_size=batch, snapshots=0,
                        checkpoint=tmp_path / f"run{batch}.npz", checkpoint_every=7)
        np.testing.assert_array_equal(ckpt.particles.positions, whole.particles.positions)
        if batch is None:
            full = whole
    other = mf.solve(prob, mu0, rule, step=0.1, iterations=40, key=6, snapshots=0)
    assert np.abs(other.particles.positions - full.particles.positions).max() > 1e-3
    cold = mf.solve(prob, mu0, mf.methods.Langevin(0.0), step=0.1, iterations=40, key=5, snapshots=0)
    gd = mf.solve(prob, mu0, "gd", step=0.1, iterations=40, snapshots=0)
    np.testing.assert_allclose(cold.particles.positions, gd.particles.positions, rtol=0, atol=1e-14)
    f32 = mf.solve(prob, mu0, mf.methods.Langevin(0.1, schedule=mf.methods.log_schedule), step=0.1, iterations=5,
                   dtype="float32", snapshots=0)
    assert f32.particles.positions.dtype == np.float32 and f32.status == "max_iterations"
