"""``mf.solve_batch``: many runs as one compiled, vmapped program."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import InputTypeError, ValidationError
from ..particles import Particles
from ..problem import Problem
from ..validation import as_key, check_int, check_real, check_seed
from . import geometry as _geometry
from .loop import Controls, run
from .driver import (_cast, _key_data, check_dtype, check_run, history_capacity, initial_state, resolve_rule,
                    snapshot_slots)
from .state import RunConfig, empty_recorder, to_result
from .steps import power_iterations, step_from


_AXIS = "runs"  # the vmap axis of a batch: the loop's branches test "any run" over it


def _run_many(problems, states, recorders, controls, config, shared_problem):
    one = lambda pr, st, rec: run(pr, st, rec, controls, config)  # noqa: E731
    return jax.vmap(one, in_axes=(None if shared_problem else 0, 0, 0), axis_name=config.batch_axis)(
        problems, states, recorders)


_run_many_jit = jax.jit(_run_many, static_argnames=("config", "shared_problem"))


def _check_stackable(problems):
    """solve_batch stacks the problems' arrays: one pytree structure, equal shapes."""
    ref = jax.tree_util.tree_structure(problems[0])
    ref_leaves = jax.tree_util.tree_leaves(problems[0])
    for i, pr in enumerate(problems[1:], 1):
        if jax.tree_util.tree_structure(pr) != ref:
            raise ValidationError(
                f"problems[{i}] differs from problems[0] in its feature, loss, regularizer or kind of data; "
                "solve_batch needs problems of identical structure (run the others with mf.solve)")
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(pr), ref_leaves):
            if np.shape(a) != np.shape(b):
                raise ValidationError(
                    f"problems[{i}]{jax.tree_util.keystr(path)} has shape {np.shape(a)} but problems[0] has "
                    f"{np.shape(b)}; solve_batch stacks the problems' arrays, so they need equal sizes")


_seeds_to_keys = jax.jit(jax.vmap(jax.random.PRNGKey))


def _stack_keys(keys):
    """(B, 2) key data for a list of seeds or keys."""
    if all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in keys):
        # one call for all the seeds: jax.random.PRNGKey costs ~0.5 ms per eager call
        return np.asarray(_seeds_to_keys(np.asarray([check_seed("key", k) for k in keys], np.int64)))
    return np.stack([np.asarray(_key_data(as_key(k))) for k in keys])


def _stack_host(trees, dtype):
    """Stack pytrees leaf by leaf in NumPy, floating leaves cast to ``dtype``: eager jnp
    ops here would compile once per distinct shape and run op by op."""
    def stack(*xs):
        a = np.stack([np.asarray(x) for x in xs])
        return a.astype(dtype) if np.issubdtype(a.dtype, np.floating) else a
    return jax.tree_util.tree_map(stack, *trees)


def solve_batch(problems, particles, method="gd", step=None, iterations: int = 1000, *, tol: float | None = None,
                batch_size: int | None = None, keys=None, geometry=None, history_every: int | None = None,
                snapshots: int = 0, dtype="float64") -> list:
    """Many runs as one compiled, vmapped program; returns one Result per run.

    problems   a Problem shared by all runs, or a sequence of Problems of identical
               structure (e.g. teachers drawn with different seeds)
    particles  a sequence of Particles; they may differ in m: the smaller ones are padded
               with massless copies of their first particle, which change neither f_μ nor
               F nor (by the mean-field invariance) the other particles' flow
    step       None (each run's default, estimated for all runs in one vmapped call), a
               float, or one per run (not a mix of None and values for rules with step
               control: the halving control is compiled for the whole batch)
    keys       one seed or key per run (minibatches, noise); default 0, 1, 2, ...
    tol        as in ``solve``: each run stops on its own (the others go on)

    A diverging run does not stop the others: its Result has status "diverged".
    """
    if isinstance(particles, Particles) or not hasattr(particles, "__iter__"):
        raise InputTypeError(f"particles must be a sequence of mf.Particles (one per run), got "
                             f"{type(particles).__name__}; for a single run use mf.solve")
    particles = list(particles)
    shared = isinstance(problems, Problem)
    problems_list = [problems] * len(particles) if shared else list(problems)
    if not particles:
        raise ValidationError("solve_batch needs at least one set of particles")
    if len(problems_list) != len(particles):
        raise ValidationError(f"{len(problems_list)} problems for {len(particles)} particle sets")
    steps = [step] * len(particles) if step is None or np.ndim(step) == 0 else list(step)
    keys = list(range(len(particles))) if keys is None else list(keys)
    if len(steps) != len(particles) or len(keys) != len(particles):
        raise ValidationError(f"step and keys need one entry per run ({len(particles)})")
    iterations = check_int("iterations", iterations, minimum=1)
    if tol is not None:
        tol = check_real("tol", tol, positive=True)
    rule = resolve_rule(method, problems_list[0], batch_size)
    # Host checks run by run (cheap); the casts, padding and stacking are done once in
    # NumPy, and the keys and the default steps come from one vmapped call each: preparing
    # runs one by one (a PRNGKey and a power iteration each) cost as much as small runs.
    for pr, pa in zip(problems_list, particles):
        batch_size, snapshots = check_run(pr, pa, rule, batch_size, snapshots)
    steps = [None if st is None else check_real("step", st, positive=True) for st in steps]
    missing = [b for b, st in enumerate(steps) if st is None]
    curvature_default = rule.default_step == "curvature"
    halve = bool(missing) and curvature_default and rule.step_control and rule.deterministic and batch_size is None
    if missing and len(missing) < len(steps) and halve:
        raise ValidationError(
            f"step gives a value for some runs and None (the default step, halved whenever F rises) for "
            f"runs {missing}; the step control is compiled once per batch: run the two kinds in separate "
            "solve_batch calls")
    if not shared:
        _check_stackable(problems_list)
    history_every = max(1, iterations // 1000) if history_every is None else \
        min(check_int("history_every", history_every, minimum=1), iterations)
    geom = _geometry.get(geometry, problems_list[0].feature)
    dtype = np.dtype(jnp.dtype(check_dtype(dtype)))
    keys = _stack_keys(keys)
    m_max = max(p.m for p in particles)
    rows = np.arange(m_max)  # padding rows repeat the first particle
    positions = np.stack([np.asarray(pa.positions, dtype)[np.where(rows < pa.m, rows, 0)] for pa in particles])
    weights = np.stack([np.concatenate([np.asarray(pa.weights, dtype), np.zeros(m_max - pa.m, dtype)])
                        for pa in particles])
    problems_in = _cast(problems, dtype) if shared else _stack_host(problems_list, dtype)
    if missing:
        if curvature_default:
            some = problems_in if shared else jax.tree_util.tree_map(lambda a: a[missing], problems_in)
            L = np.asarray(power_iterations(some, positions[missing], weights[missing], as_key(0), geom, rule, 30,
                                            shared))
            for b, Lb in zip(missing, L):
                steps[b] = step_from(float(Lb), problems_list[b], particles[b], rule, geom)
        else:
            for b in missing:
                steps[b] = float(rule.default_step)
    config = RunConfig(rule, geom, batch_size, halve, track_stationarity=batch_size is None or tol is not None,
                       batch_axis=_AXIS)
    # one initial state, broadcast: the rule's state is built on the first run's particles
    # (its shapes are those of every run: they are padded to one m)
    template = initial_state(problems_list[0], Particles.unchecked(jnp.asarray(positions[0]), jnp.asarray(weights[0])),
                             rule, steps[0], 0, history_every)
    B = len(particles)
    states = jax.tree_util.tree_map(lambda a: np.broadcast_to(np.asarray(a), (B,) + np.shape(a)).copy(), template)
    rule_states = jax.vmap(lambda P, w: rule.init(problems_list[0], Particles.unchecked(P, w)))(positions, weights)
    states = dataclasses.replace(states, particles=Particles.unchecked(positions, weights), rule_state=rule_states,
                                 step=np.asarray(steps, dtype), key=keys)
    rec = empty_recorder(m_max, positions.shape[2], dtype, history_capacity(iterations, history_every),
                         snapshot_slots(0, iterations, snapshots))
    recs = jax.tree_util.tree_map(lambda a: np.broadcast_to(a, (B,) + np.shape(a)).copy(), rec)
    controls = Controls(jnp.asarray(iterations, jnp.int32), jnp.asarray(0, jnp.int32), jnp.asarray(iterations, jnp.int32),
                        jnp.asarray(tol if tol is not None else -1.0, dtype))
    states, recs = _run_many_jit(problems_in, states, recs, controls, config, shared)
    states, recs = jax.tree_util.tree_map(np.asarray, (states, recs))
    results = []
    for b, pa in enumerate(particles):
        st, rc = jax.tree_util.tree_map(lambda a: a[b], (states, recs))
        res = to_result(st, rc, rule, config)
        m = pa.m
        st = dataclasses.replace(res.state, particles=Particles.unchecked(st.particles.positions[:m],
                                                                           st.particles.weights[:m]))
        if not isinstance(st.rule_state, tuple) or st.rule_state:
            st = dataclasses.replace(st, rule_state=jax.tree_util.tree_map(
                lambda a: a[:m] if np.ndim(a) >= 1 and np.shape(a)[0] == m_max else a, st.rule_state))
        results.append(dataclasses.replace(res, state=st, trajectory=res.trajectory[:, :m],
                                           trajectory_weights=res.trajectory_weights[:, :m]))
    return results
