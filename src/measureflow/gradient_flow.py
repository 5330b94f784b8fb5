"""The continuous-time particle gradient flow, integrated by diffrax with error control.

    Wasserstein      dθ_i/dt = −∇_θF'(μ_t)(θ_i)            (= −(1/w_i) ∇_{θ_i}F)
    WFR (α, β)       dθ_i/dt = −β ∇_θF'(μ_t)(θ_i),   dw_i/dt = −α w_i F'(μ_t)(θ_i)

with μ_t = Σ_i w_i(t) δ_{θ_i(t)}. Gradient descent with step η is the explicit Euler
scheme of the first ODE (first order in η); the flow is the object of the global
convergence theorem (Chizat & Bach 2018), so integrating it to a tolerance separates what
the theory says from discretization effects.

The masses are integrated as log-masses relative to the start, u_i = log(w_i / w_i(0)),
du_i/dt = −α F'(μ_t)(θ_i): they stay positive, and split particles (each copy half the
mass) have identical states, so the solver's error norm, hence its step sequence, is the
same for a split and an unsplit run (split invariance to rounding, not to the tolerance).
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from ._pytree import pytree_dataclass, static_field
from .data.base import Sampler
from .errors import InputTypeError, ValidationError
from .particles import Particles
from .problem import Problem, check_pair
from .validation import check_array, check_int, check_real

STATUSES = ("converged", "max_steps", "diverged")

#: Positions beyond this size count as a blow-up (a flow of an F unbounded below).
_BLOWUP = 1e100

_SOLVERS = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8,
            "bosh3": diffrax.Bosh3, "heun": diffrax.Heun}


@pytree_dataclass
class FlowResult:
    """What :func:`flow` returns (NumPy arrays).

    particles         the particles at the last time reached (t1 unless stopped early)
    t_final           that time
    times             the save times (s,)
    positions         θ_i at the save times (s, m, p); times after an early stop: inf
    weights           w_i at the save times (s, m) (constant unless ``wfr``)
    history           F(μ_t) at the save times (s,)
    status            "converged" (t1 reached with the error control satisfied at every
                      accepted step), "max_steps" (stopped after ``max_steps`` steps: a
                      stiff flow, raise max_steps or loosen rtol/atol) or "diverged"
                      (a non-finite objective or state, positions beyond 1e100, or a
                      step below 100 ulps of t1: a finite-time blow-up)
    accepted, rejected  the solver's accepted and rejected steps
    solver, rtol, atol, wfr   provenance

    ``objective`` is F at t1 (NaN if the run stopped before t1 or t1 is not a save time);
    ``trajectory`` is ``positions``, as in ``Result``.
    """

    particles: Particles
    t_final: np.ndarray
    times: np.ndarray
    positions: np.ndarray
    weights: np.ndarray
    history: np.ndarray
    accepted: np.ndarray
    rejected: np.ndarray
    status: str = static_field()
    solver: str = static_field()
    rtol: float = static_field()
    atol: float = static_field()
    wfr: tuple | None = static_field(default=None)

    @property
    def trajectory(self) -> np.ndarray:
        """The positions at the save times (s, m, p), as ``Result.trajectory``."""
        return self.positions

    @property
    def objective(self) -> float:
        """F at the final particles."""
        return float(self.history[-1]) if float(self.times[-1]) == float(self.t_final) else float("nan")


def _solver(solver):
    if solver is None:
        return diffrax.Tsit5()
    if isinstance(solver, str):
        if solver.lower() not in _SOLVERS:
            raise ValidationError(f"solver={solver!r} is not one of {', '.join(map(repr, _SOLVERS))} "
                                  "(or pass a diffrax.AbstractAdaptiveSolver instance)")
        return _SOLVERS[solver.lower()]()
    if not isinstance(solver, diffrax.AbstractAdaptiveSolver):
        raise InputTypeError(f"solver must be a name or an adaptive diffrax solver (one with an error estimate, "
                             f"e.g. diffrax.Tsit5()), got {type(solver).__name__}")
    return solver


def _exact(problem: Problem, particles: Particles) -> bool:
    """Whether the objective is an exact population risk (decided from static structure)."""
    return problem.data.exact_risk(problem.feature, problem.loss, particles) is not None


def _validate(problem, particles, t1, saveat, rtol, atol, max_steps, wfr):
    check_pair(problem, particles)
    t1 = check_real("t1", t1, positive=True)
    rtol = check_real("rtol", rtol, positive=True)
    atol = check_real("atol", atol, positive=True)
    max_steps = check_int("max_steps", max_steps, minimum=1)
    reg = problem.regularizer
    if not reg.smooth:
        raise ValidationError(f"{type(reg).__name__} is non-smooth: the gradient flow would differentiate it; "
                              "use forward–backward, mf.solve(..., method='fb'), instead")
    if isinstance(problem.data, Sampler) and not _exact(problem, particles):
        raise ValidationError("the flow needs a fixed data set or an exact population risk, but this Sampler has "
                              "no closed-form risk for this feature and loss; use a training set "
                              "(e.g. data.training_set(n)) or method='sgd'")
    problem.feature.check_data(problem.data)
    problem.check_labels()
    if saveat is None:
        ts = np.array([0.0, t1])
    else:
        ts = check_array("saveat", saveat)
        ts = ts.reshape(1) if ts.ndim == 0 else ts
        if ts.ndim != 1 or ts.size == 0:
            raise ValidationError(f"saveat must be a non-empty 1-D array of times, got shape {ts.shape}")
        out = np.flatnonzero((ts < 0) | (ts > t1))
        if out.size:
            raise ValidationError(f"saveat[{out[0]}]={ts[out[0]]:g} is outside [0, t1] = [0, {t1:g}]")
        bad = np.flatnonzero(np.diff(ts) <= 0)
        if bad.size:
            i = bad[0]
            raise ValidationError(f"saveat must be strictly increasing, but saveat[{i}]={ts[i]:g} >= "
                                  f"saveat[{i + 1}]={ts[i + 1]:g}")
    if wfr is not None:
        if not isinstance(wfr, (tuple, list)) or len(wfr) != 2:
            raise InputTypeError(f"wfr must be a pair (alpha, beta) of rates, got {wfr!r}")
        alpha = check_real("wfr alpha", wfr[0], nonnegative=True)
        beta = check_real("wfr beta", wfr[1], nonnegative=True)
        if alpha == 0 and beta == 0:
            raise ValidationError("wfr=(0, 0) moves nothing: give alpha > 0 (masses) or beta > 0 (positions)")
        wfr = (alpha, beta)
    return t1, ts, rtol, atol, max_steps, wfr


def _fields(problem: Problem, P, w, exact: bool, need_fv: bool):
    """(F, ∇_θF'(μ)(θ_i) (m, p), F'(μ)(θ_i) (m,) or None) at positions P and masses w."""
    if exact:
        # exact population risk: autodiff of F; ∂F/∂θ_i = w_i ∇F'(θ_i), ∂F/∂w_i = F'(θ_i)
        F, (gP, gw) = jax.value_and_grad(lambda Q, v: problem.objective(Particles.unchecked(Q, v)), (0, 1))(P, w)
        return F, gP / w[:, None], gw if need_fv else None
    parts = Particles.unchecked(P, w)
    F, vel = problem.value_and_velocity(parts)
    return F, vel, problem.first_variation(parts, P) if need_fv else None


def _integrate(problem, P0, w0, ts, t1, rtol, atol, rates, *, solver, max_steps, wfr_on, exact):
    """The compiled program: t1, rtol, atol, the save times and the WFR rates are
    run-time values; the problem's shape, the solver, max_steps and the kind of flow are
    static."""
    alpha, beta = rates

    def masses(u):
        return w0 * jnp.exp(u) if wfr_on else w0

    def field(t, y, args):
        P, u = y
        _, vel, fv = _fields(problem, P, masses(u), exact, wfr_on)
        if wfr_on:
            return -beta * vel, -alpha * fv
        return -vel, None

    def save(t, y, args):
        P, u = y
        w = masses(u)
        return P, w, problem.objective(Particles.unchecked(P, w))

    # A step below 100 ulps of t1 cannot advance time: the flow blows up in finite time
    # (F unbounded below) and diffrax stops with dt_min_reached, reported as "diverged".
    dtmin = 100 * jnp.finfo(P0.dtype).eps * t1
    saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=ts, fn=save), diffrax.SubSaveAt(t1=True)])
    y0 = (P0, jnp.zeros_like(w0) if wfr_on else None)  # fixed masses: no mass state (nor in the error norm)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), solver, jnp.zeros((), P0.dtype), t1, None, y0, saveat=saveat,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=0.3, icoeff=0.3, dtmin=dtmin,
                                                  force_dtmin=False),
        max_steps=max_steps, throw=False,
        adjoint=diffrax.RecursiveCheckpointAdjoint())
    (Ps, ws, Fs), (Pf, uf) = sol.ys[0], sol.ys[1]
    code = jnp.where(sol.result == diffrax.RESULTS.successful, 0,
                     jnp.where(sol.result == diffrax.RESULTS.max_steps_reached, 1, 2))
    return dict(times=sol.ts[0], positions=Ps, weights=ws, history=Fs, final_positions=Pf[0],
                final_weights=masses(uf[0] if wfr_on else None), t_final=sol.ts[1][0], code=code,
                accepted=sol.stats["num_accepted_steps"], rejected=sol.stats["num_rejected_steps"])


_integrate_jit = jax.jit(_integrate, static_argnames=("solver", "max_steps", "wfr_on", "exact"))


def flow(problem: Problem, particles: Particles, t1: float, *, saveat=None, rtol: float = 1e-6,
         atol: float = 1e-9, solver=None, max_steps: int = 100_000, wfr=None) -> FlowResult:
    """Integrate the particle gradient flow from ``particles`` over [0, t1].

    saveat     increasing times in [0, t1] at which positions, masses and F are saved
               (default: 0 and t1)
    rtol, atol relative and absolute tolerances of the PID step-size controller (PI
               coefficients 0.3/0.3, robust to the kinks of ReLU units on a finite data
               set; the error norm is the RMS over all coordinates, so it does not depend
               on m)
    solver     an adaptive explicit Runge–Kutta scheme: "tsit5" (default), "dopri5",
               "dopri8", "bosh3", "heun", or any ``diffrax.AbstractAdaptiveSolver``
    max_steps  the most steps (accepted and rejected) before stopping with "max_steps"
    wfr        ``None`` (Wasserstein flow, masses fixed) or ``(alpha, beta)``: the
               Wasserstein–Fisher–Rao flow, masses moved at rate alpha, positions at beta

    F and its gradients are those of ``mf.solve``'s "gd" (the training data, or the exact
    population risk where the data has one). One compilation per problem shape, solver,
    ``max_steps`` and kind of flow; t1, the tolerances, the save times (their number is
    static) and the WFR rates are run-time values. Raises ValidationError/InputTypeError
    before any work on bad input (t1 ≤ 0, rtol/atol ≤ 0, save times outside [0, t1] or not
    increasing, a non-smooth V: use forward–backward, ``method="fb"``).
    """
    t1, ts, rtol, atol, max_steps, wfr = _validate(problem, particles, t1, saveat, rtol, atol, max_steps, wfr)
    solver = _solver(solver)
    dtype = particles.positions.dtype
    exact = _exact(problem, particles)
    rates = tuple(jnp.asarray(r, dtype) for r in (wfr if wfr is not None else (0.0, 1.0)))
    out = _integrate_jit(problem, particles.positions, particles.weights, jnp.asarray(ts, dtype),
                         jnp.asarray(t1, dtype), jnp.asarray(rtol, dtype), jnp.asarray(atol, dtype), rates,
                         solver=solver, max_steps=max_steps, wfr_on=wfr is not None, exact=exact)
    out = {k: np.asarray(v) for k, v in out.items()}
    Pf, wf = out["final_positions"], out["final_weights"]
    reached = ts <= out["t_final"]
    finite = (np.all(np.isfinite(Pf)) and np.all(np.isfinite(wf))
              and np.all(np.isfinite(out["history"][reached])))
    if not finite or (Pf.size and np.max(np.abs(Pf)) > _BLOWUP):
        status = "diverged"
    else:
        status = STATUSES[int(out["code"])]  # 0 successful, 1 max_steps_reached, 2 any other stop
    positions = out["positions"]
    if problem.feature.position_domain != "euclidean":  # torus coordinates back into [0, 1)
        flat = jnp.asarray(positions).reshape(-1, positions.shape[-1])
        positions = np.where(np.isfinite(positions),
                             np.asarray(problem.feature.wrap(flat)).reshape(positions.shape), positions)
    return FlowResult(
        particles=Particles.unchecked(np.asarray(problem.feature.wrap(jnp.asarray(Pf))), wf),
        t_final=out["t_final"], times=out["times"], positions=positions, weights=out["weights"],
        history=out["history"], accepted=out["accepted"], rejected=out["rejected"], status=status,
        solver=type(solver).__name__, rtol=rtol, atol=atol, wfr=wfr)


__all__ = ["flow", "FlowResult", "STATUSES"]
