"""The compiled solver loop: one ``lax.while_loop`` over steps, generic over the update rule.

Each step t computes the problem's field at μ_t (on the step's minibatch, or on the full
data / exact population risk), preconditions the velocity by the metric, and hands it to
the rule. At the multiples of k = ``history_every`` (and at the first and last iteration of
a call) F and the stationarity are recorded; at the multiples of k the step control and the
stop rule act — so where a run is cut (continuation, checkpoints) does not change it.

Stop rule (``tol``): stop at the first multiple of k where the stationarity
S(μ) = Σ_i w_i s_i(μ) (``Rule.stationarity``: |G∇F'|² for the gradient rules, the gradient
mapping for forward–backward, β|∇F'|² + α F'² for WFR) is at most ``tol`` · S(μ_0).

Everything that changes between calls — the step, the key, the iteration bounds, ``tol``,
``history_every`` and the snapshot iterations — is a traced value: one compilation serves
every run of the same problem shapes, rule and recorder capacities.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._pytree import pytree_dataclass
from ..data.base import Sampler, subsample
from ..particles import Particles
from ..problem import Field, Problem
from .state import CONVERGED, DIVERGED, MAX_ITERATIONS, RUNNING, Recorder, RunConfig, SolverState


@pytree_dataclass
class Controls:
    """Run-time bounds of one call: stop at ``stop_at``; the call spans
    [``call_start``, ``call_end``] (its first and last iterations are recorded); ``tol``
    ≤ 0 turns the stop rule off."""

    stop_at: jax.Array
    call_start: jax.Array
    call_end: jax.Array
    tol: jax.Array


def minibatch(problem: Problem, key, batch_size: int):
    """``batch_size`` fresh samples of a sampler, or drawn with replacement from a data set."""
    if isinstance(problem.data, Sampler):
        return problem.data.sample(key, batch_size)
    return subsample(problem.data, key, batch_size)


def run(problem: Problem, state: SolverState, recorder: Recorder, controls: Controls, config: RunConfig):
    """Advance ``state`` until ``controls.stop_at``, convergence or divergence (pure,
    jittable, vmappable). Returns (state, recorder); the caller sets the final status."""
    rule, feature = config.rule, problem.feature
    geom = config.geometry.resolve(problem)  # binds data-dependent metric constants (traced)
    key = state.key
    full_batch = config.batch_size is None
    # a sampler's held-out set is drawn once per call, not at every record (the draw costs
    # more than the pass over it); None: the exact population risk, or the full data
    held_out = None if full_batch or problem.has_exact_risk else problem.data.evaluation_set()

    def anywhere(pred):
        """``pred`` of any run of a vmapped batch (``config.batch_axis``): a lax.cond on it
        stays a branch under vmap, where a per-run predicate makes a select computing both
        sides at every step; the branch then writes per run where ``pred`` holds."""
        if config.batch_axis is None:
            return pred
        return jax.lax.pmax(pred.astype(jnp.int32), config.batch_axis) > 0

    def field_at(parts, batch) -> Field:
        f = problem.field(parts, batch, smooth_only=rule.smooth_only, first_variation=rule.needs_first_variation)
        return f._replace(velocity=geom.precondition(feature, parts.positions, f.velocity))

    def stationarity(parts, f, step):
        return parts.weights @ rule.stationarity(problem, parts, f, step)

    def _value_and_stationarity(f, st):
        return f.value, stationarity(st.particles, f, st.step)

    def snapshot(rec, ns, t, parts, active):
        """Write the particles into snapshot slot ns if it is due at t; returns the recorder
        and the next slot."""
        snaps = rec.snapshot_iterations
        if snaps.shape[0] == 0:
            return rec, ns
        j = jnp.minimum(ns, snaps.shape[0] - 1)
        hit = (snaps[j] == t) & active

        def write(r):  # a branch, not a masked write of the buffer at every step: that copies it
            put = lambda a, v: a.at[j].set(jnp.where(hit, v, a[j]))  # noqa: E731
            return Recorder(r.history, r.stationarity, r.history_iterations, r.count,
                            put(r.trajectory, parts.positions), put(r.trajectory_weights, parts.weights),
                            r.snapshot_iterations)

        return jax.lax.cond(anywhere(hit), write, lambda r: r, rec), ns + hit.astype(ns.dtype)

    def body(carry):
        st, prev, rec, ns = carry
        t = st.iteration
        active = st.status == RUNNING  # False for the finished runs of a batch, carried along
        rec, ns = snapshot(rec, ns, t, st.particles, active)
        step_key = jax.random.fold_in(key, t)
        f = field_at(st.particles, None if full_batch else minibatch(problem, step_key, config.batch_size))
        grid = t % st.history_every == 0
        at_end = t >= controls.stop_at
        # a segment of a checkpointed call ends without a record: the next one starts with it
        is_record = (grid | (t == controls.call_start) | (t == controls.call_end)) & (~at_end | (t == controls.call_end))
        if full_batch:
            F, S = f.value, stationarity(st.particles, f, st.step)
        elif config.track_stationarity:  # minibatch runs: F and S on the full data / population
            F, S = jax.lax.cond(anywhere(is_record & active),
                                lambda: _value_and_stationarity(field_at(st.particles, held_out), st),
                                lambda: (jnp.zeros_like(f.value), jnp.zeros_like(f.value)))
        else:  # F only (a forward pass): S is needed by the stop rule alone
            F = jax.lax.cond(anywhere(is_record & active), lambda: problem.objective(st.particles, held_out),
                             lambda: jnp.zeros_like(f.value))
            S = jnp.full_like(F, jnp.nan)
        # masked scalar writes: cheaper than a branch per step
        i = jnp.where(is_record, rec.count, rec.history.shape[0] - 1)
        keep = lambda a, v: a.at[i].set(jnp.where(is_record, v, a[i]))  # noqa: E731
        rec = Recorder(keep(rec.history, F), keep(rec.stationarity, S), keep(rec.history_iterations, t),
                       rec.count + is_record.astype(rec.count.dtype), rec.trajectory, rec.trajectory_weights,
                       rec.snapshot_iterations)
        reference = jnp.where(jnp.isnan(st.reference) & is_record, S, st.reference)
        step, control = st.step, st.control
        if config.halve_on_increase:
            # A descent step below the stability limit decreases F; a rise over a history
            # interval means the curvature has outgrown the step (e.g. homogeneous units
            # growing): halve it. F is the same for split particles, so the mean-field
            # invariance is kept. Rises under 0.1% are ignored: on a piecewise smooth F
            # (ReLU kinks crossing samples) iterates chatter along a kink and F can rise
            # slightly at any step size, which halving would not cure.
            step = jnp.where(grid & (F > control + 1e-3 * jnp.abs(control)), step / 2, step)
            control = jnp.where(grid, F, control)
        converged = grid & (controls.tol > 0) & (S <= controls.tol * reference)
        last_objective = jnp.where(is_record, F, st.last_objective)
        st = SolverState(st.particles, st.rule_state, step, key, t, st.history_every, st.status, st.diverged_at,
                         last_objective, reference, control)

        def stop():
            status = jnp.where(converged, CONVERGED, MAX_ITERATIONS).astype(jnp.int32)
            return SolverState(st.particles, st.rule_state, st.step, key, t, st.history_every, status,
                               st.diverged_at, st.last_objective, st.reference, st.control), prev

        def advance():
            new, rule_state = rule.update(problem, st.particles, f, st.rule_state, step=st.step,
                                          key=jax.random.fold_in(step_key, 1), iteration=t)
            new = Particles.unchecked(feature.wrap(new.positions), new.weights)
            F_ok = jnp.isfinite(f.value)
            new_ok = F_ok & jnp.all(jnp.isfinite(new.positions)) & jnp.all(jnp.isfinite(new.weights))
            # on a non-finite value the run stops at its last state with a finite objective:
            # the current one if F(μ_t) is finite, else the previous one
            keep = jax.tree_util.tree_map(lambda a, b: jnp.where(F_ok, a, b), (st.particles, st.rule_state, t, f.value),
                                          prev)
            last = (st.particles, st.rule_state, t, f.value)
            pick = lambda a, b: jax.tree_util.tree_map(lambda x, y: jnp.where(new_ok, x, y), a, b)  # noqa: E731
            parts, rs, it, lastF = pick((new, rule_state, t + 1, st.last_objective), keep)
            status = jnp.where(new_ok, st.status, DIVERGED).astype(jnp.int32)
            bad = jnp.where(new_ok, st.diverged_at, t).astype(jnp.int32)
            out = SolverState(parts, rs, st.step, key, it, st.history_every, status, bad,
                              jnp.where(new_ok, jnp.nan, lastF).astype(F.dtype), st.reference, st.control)
            return out, pick(last, prev)

        # both branches as selects, not a lax.cond: the step is computed anyway on all but
        # the last iteration, and a branch per step costs more than the select on CPU
        halt = converged | at_end
        (st_stop, prev_stop), (st_go, prev_go) = stop(), advance()
        st, prev = jax.tree_util.tree_map(lambda a, b: jnp.where(halt, a, b), (st_stop, prev_stop), (st_go, prev_go))
        return st, prev, rec, ns

    def running(carry):
        return carry[0].status == RUNNING

    prev = (state.particles, state.rule_state, state.iteration, jnp.asarray(jnp.nan, state.step.dtype))
    ns = jnp.searchsorted(recorder.snapshot_iterations, state.iteration).astype(jnp.int32)
    st, _, rec, _ = jax.lax.while_loop(running, body, (state, prev, recorder, ns))
    return st, _finish(problem, st, rec)


def _finish(problem, st, rec):
    """After divergence or early stop: the final state's F closes the history (replacing a
    non-finite last record) and its positions the trajectory."""
    t = st.iteration

    def close(r):
        i = jnp.maximum(r.count - 1, 0)
        replace = (r.count > 0) & ((r.history_iterations[i] >= t) | ~jnp.isfinite(r.history[i]))
        slot = jnp.where(replace, i, r.count)
        F = problem.objective(st.particles)
        return Recorder(r.history.at[slot].set(F), r.stationarity.at[slot].set(jnp.where(replace, r.stationarity[i], jnp.nan)),
                        r.history_iterations.at[slot].set(t), slot + 1, r.trajectory, r.trajectory_weights,
                        r.snapshot_iterations)

    rec = jax.lax.cond(st.status == DIVERGED, close, lambda r: r, rec)
    snaps = rec.snapshot_iterations
    if snaps.shape[0] == 0:
        return rec
    slot = jnp.minimum(jnp.searchsorted(snaps, t), snaps.shape[0] - 1)
    early = (st.status == CONVERGED) | (st.status == DIVERGED)  # a call's last iteration is a snapshot already
    missing = early & (snaps[slot] > t)

    def put(r):
        return Recorder(r.history, r.stationarity, r.history_iterations, r.count,
                        r.trajectory.at[slot].set(st.particles.positions),
                        r.trajectory_weights.at[slot].set(st.particles.weights), r.snapshot_iterations.at[slot].set(t))

    return jax.lax.cond(missing, put, lambda r: r, rec)
