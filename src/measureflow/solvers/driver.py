"""The host-side driver of the compiled loop: ``mf.solve`` validates, fills in defaults, runs the
if asked), and return a :class:`~measureflow.solvers.state.Result`."""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from .. import methods as _methods
from ..data.base import Sampler
from ..errors import DivergenceError, InputTypeError, ValidationError
from ..particles import Particles
from ..problem import Problem, check_pair
from ..validation import as_key, check_choice, check_int, check_memory, check_real
from . import checkpoint as _checkpoint
from . import geometry as _geometry
from .loop import Controls, run
from .state import (DIVERGED, MAX_ITERATIONS, NO_SNAPSHOT, RUNNING, Result, RunConfig, SolverState, empty_recorder,
                    to_result, with_status)
from .steps import curvature, step_from

_run_jit = jax.jit(run, static_argnames=("config",))


def log_spaced(iterations: int, count: int) -> tuple:
    """About ``count`` distinct log-spaced iterations in [0, iterations], 0 and the end
    included (at most count + 1)."""
    if count <= 0:
        return ()
    if count == 1:
        return (iterations,)
    n = count
    while True:  # rounding merges early points: ask for more until `count` distinct remain
        pts = np.unique(np.concatenate([[0], np.round(np.geomspace(1, iterations, n - 1)), [iterations]]))
        if len(pts) >= min(count, iterations + 1) or n > 4 * count:
            return tuple(int(t) for t in pts)
        n += max(1, count - len(pts))


def history_capacity(iterations: int, every: int) -> int:
    """Records a call of ``iterations`` steps can write (multiples of k, its first and last
    iteration, the close of a divergence), rounded up to a power of two ≥ 2048 so that
    calls of different lengths share one compilation."""
    need = iterations // every + 4
    return max(2048, 1 << (need - 1).bit_length())


def snapshot_slots(start: int, iterations: int, count: int) -> np.ndarray:
    """The log-spaced snapshot iterations of a call, padded to count + 1 slots."""
    pts = np.asarray(log_spaced(iterations, count), np.int64) + start
    out = np.full(count + 1 if count > 0 else 0, NO_SNAPSHOT, np.int64)
    out[: len(pts)] = pts
    return out.astype(np.int32)


def _cast(tree, dtype):
    return jax.tree_util.tree_map(
        lambda a: a.astype(dtype) if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def _key_data(key):
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


def check_dtype(dtype) -> str:
    try:
        name = dtype if isinstance(dtype, str) else str(jnp.dtype(dtype))
    except TypeError:
        name = dtype
    return check_choice("dtype", name, ("float32", "float64"))


def check_run(problem, particles, rule, batch_size, snapshots):
    """The checks of a new run that do not depend on the step: data, labels, the rule's own
    conditions, minibatch and memory sizes."""
    check_pair(problem, particles)
    problem.feature.check_data(problem.data)  # e.g. a sampling grid too coarse for a kernel
    problem.check_labels()  # e.g. 0/1 labels for the logistic loss
    rule.check(problem, particles)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1)
        check_memory(f"a minibatch of batch_size={batch_size} samples in R^{problem.data.input_dim}",
                     2 * batch_size * (problem.data.input_dim + 2) * 8, "lower batch_size")
    elif isinstance(problem.data, Sampler) and not problem.has_exact_risk:
        raise ValidationError(
            "the data is a Sampler without a closed-form population risk for this feature and loss: pass "
            "batch_size= (fresh samples every step), or train on a data set (e.g. sampler.training_set(n))")
    snapshots = check_int("snapshots", snapshots, minimum=0)
    m, p = particles.positions.shape
    check_memory(f"{snapshots} position snapshots of m={m} particles in R^{p}", (snapshots + 4) * m * (p + 1) * 8,
                 "lower snapshots= or m")
    return batch_size, snapshots


def resolve_rule(method, problem, batch_size):
    rule = _methods.get("gd" if method is None else method, problem.regularizer)
    if method == "sgd" and batch_size is None:
        raise ValidationError("method='sgd' needs batch_size= (samples drawn per step)")
    return rule


def initial_state(problem, particles, rule, step, key, history_every) -> SolverState:
    dt = particles.positions.dtype
    return SolverState(
        particles=particles, rule_state=rule.init(problem, particles), step=jnp.asarray(step, dt),
        key=_key_data(as_key(key)), iteration=jnp.asarray(0, jnp.int32), history_every=jnp.asarray(history_every, jnp.int32),
        status=jnp.asarray(RUNNING, jnp.int32), diverged_at=jnp.asarray(-1, jnp.int32),
        last_objective=jnp.asarray(jnp.nan, dt), reference=jnp.asarray(jnp.nan, dt), control=jnp.asarray(jnp.inf, dt))


def pick_step(problem, particles, rule, geometry, step):
    """(η, whether it is the default): the given step, or the rule's default."""
    if step is not None:
        return check_real("step", step, positive=True), False
    if rule.default_step != "curvature":
        return float(rule.default_step), False
    L = curvature(problem, particles, method=rule, geometry=geometry)
    return step_from(L, problem, particles, rule, geometry), True


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A validated run, ready for the compiled loop: the (cast) problem, the initial state
    and recorder, the static config and the call's iteration bounds."""

    problem: Problem
    state: SolverState
    recorder: object
    config: RunConfig
    rule: object
    start: int
    end: int
    dtype: object
    tol: float | None

    def controls(self, stop_at: int) -> Controls:
        i32 = lambda v: jnp.asarray(v, jnp.int32)  # noqa: E731
        return Controls(i32(stop_at), i32(self.start), i32(self.end),
                        jnp.asarray(self.tol if self.tol is not None else -1.0, self.dtype))


def prepare(problem: Problem, particles, method=None, step=None, iterations: int = 1000, *, tol=None,
            batch_size=None, key=None, geometry=None, history_every=None, snapshots: int = 100, dtype=None,
            halve_on_increase=None) -> Prepared:
    """Validate and fill in the defaults of :func:`solve` (same arguments), before any
    work of the loop: ``_run_jit(p.problem, p.state, p.recorder, p.controls(p.end),
    p.config)`` is the run."""
    if not isinstance(problem, Problem):
        raise InputTypeError(f"problem must be a mf.Problem, got {type(problem).__name__}")
    iterations = check_int("iterations", iterations, minimum=1)
    if tol is not None:
        tol = check_real("tol", tol, positive=True)
    if isinstance(particles, Result):
        state, rule, config, dt = _continuation(problem, particles, method, step, key, geometry, batch_size, dtype,
                                                history_every, halve_on_increase, tol)
        snapshots = check_int("snapshots", snapshots, minimum=0)
    elif isinstance(particles, Particles):
        state, rule, config, dt, snapshots = _start(problem, particles, method, step, iterations, tol, batch_size, key,
                                                    geometry, history_every, snapshots, dtype, halve_on_increase)
    else:
        raise InputTypeError(f"particles must be mf.Particles or a mf.Result to continue, got {type(particles).__name__}")
    problem = _cast(problem, dt)
    start = int(state.iteration)
    end = start + iterations
    m, p = state.particles.positions.shape
    recorder = empty_recorder(m, p, dt, history_capacity(iterations, int(state.history_every)),
                              snapshot_slots(start, iterations, snapshots))
    return Prepared(problem, state, recorder, config, rule, start, end, dt, tol)


def solve(problem: Problem, particles, method=None, step: float | None = None, iterations: int = 1000, *,
          tol: float | None = None, batch_size: int | None = None, key=None, geometry=None,
          history_every: int | None = None, snapshots: int = 100, dtype=None, halve_on_increase: bool | None = None,
          checkpoint: str | os.PathLike | None = None, checkpoint_every: int | None = None) -> Result:
    """Run a particle method from ``particles`` (or continue a :class:`Result`).

    method         an update rule (``mf.methods``) or a shortcut "gd", "fb", "wfr", "sgd"
                   (default "gd"; a continued run keeps its rule)
    step           η > 0; ``None``: the rule's default (1 / curvature at the initial
                   particles, or the metric's curvature bound when larger; optax: 1), then
                   halved whenever F rises by over 0.1% in a history interval
    iterations     the most steps this call takes
    tol            stop ("converged") at the first multiple of ``history_every`` where the
                   stationarity Σ_i w_i s_i(μ) (``Result.stationarity``) is ≤ tol times its
                   value at the run's first iteration; ``None``: run all iterations
    batch_size     samples per step, with any rule: fresh draws of a Sampler, or drawn with
                   replacement from a data set, from ``key`` and the iteration
    key            seed or PRNG key (minibatches, noise); default 0
    geometry       "euclidean", "conic" or a Geometry; default: the feature's own
    history_every  k: F and the stationarity are recorded every k steps (default
                   ~1000 records); a continued run keeps its k
    snapshots      about how many log-spaced position snapshots to keep (0: none)
    dtype          "float64" (default) or "float32"
    halve_on_increase  halve the step whenever F rises over a history interval (default:
                   with the default step of a descent rule on full data)
    checkpoint     a file path: the run is written there atomically every
                   ``checkpoint_every`` steps (default: a tenth of the run) and at the end;
                   a rerun with the same path resumes from it (bit for bit)

    With a :class:`Result` as ``particles``, the run continues from its state: ``solve(p,
    solve(p, mu0, iterations=T1), iterations=T2)`` equals ``solve(p, mu0, iterations=T1 +
    T2)`` bit for bit. Raises ValidationError / InputTypeError before any work on bad
    input, and DivergenceError (with ``.iteration`` and ``.result``) if the run blows up.
    """
    prep = prepare(problem, particles, method, step, iterations, tol=tol, batch_size=batch_size, key=key,
                   geometry=geometry, history_every=history_every, snapshots=snapshots, dtype=dtype,
                   halve_on_increase=halve_on_increase)
    if checkpoint_every is not None:
        checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    problem, state, recorder, config, rule = prep.problem, prep.state, prep.recorder, prep.config, prep.rule
    start, end, dt = prep.start, prep.end, prep.dtype
    m, p = state.particles.positions.shape
    header = None
    if checkpoint is not None:
        checkpoint = os.fspath(checkpoint)
        header = {"problem": _checkpoint.problem_fingerprint(problem), "rule": rule.fingerprint(),
                  "dtype": str(np.dtype(dt)), "call_start": start, "call_end": end, "tol": prep.tol,
                  "batch_size": config.batch_size, "geometry": repr(config.geometry),
                  "halve_on_increase": config.halve_on_increase, "particles": [m, p]}
        if os.path.exists(checkpoint):
            (state, recorder), _ = _checkpoint.load(checkpoint, (state, recorder), header)
        every = checkpoint_every or max(1, -(-iterations // 10))
    else:
        every = iterations
    while int(state.status) == RUNNING:
        stop_at = min(end, int(state.iteration) + every)
        state, recorder = _run_jit(problem, state, recorder, prep.controls(stop_at), config)
        if int(state.status) == MAX_ITERATIONS and int(state.iteration) < end:
            state = with_status(state, RUNNING)  # a segment boundary, not the end of the run
        if checkpoint is not None:
            _checkpoint.save(checkpoint, header, (state, recorder))
    res = to_result(state, recorder, rule, config)
    err = _divergence(res, iterations)
    if err is not None:
        raise err
    return res


def _start(problem, particles, method, step, iterations, tol, batch_size, key, geometry, history_every, snapshots,
           dtype, halve_on_increase):
    rule = resolve_rule(method, problem, batch_size)
    batch_size, snapshots = check_run(problem, particles, rule, batch_size, snapshots)
    dt = jnp.dtype(check_dtype("float64" if dtype is None else dtype))
    if history_every is None:
        history_every = max(1, iterations // 1000)
    history_every = min(check_int("history_every", history_every, minimum=1), iterations)
    geom = _geometry.get(geometry, problem.feature)
    cast_problem, cast_particles = _cast(problem, dt), particles.astype(dt)
    eta, default = pick_step(cast_problem, cast_particles, rule, geom, step)
    if halve_on_increase is None:
        # the default step is halved whenever F increases over a history interval: the
        # curvature at μ0 can be exceeded later in the run (2-homogeneous units grow ~2-3x)
        halve_on_increase = default and rule.step_control and rule.deterministic and batch_size is None
    config = RunConfig(rule, geom, batch_size, bool(halve_on_increase), track_stationarity=batch_size is None or tol is not None)
    state = initial_state(cast_problem, cast_particles, rule, eta, 0 if key is None else key, history_every)
    return state, rule, config, dt, snapshots


def _continuation(problem, result, method, step, key, geometry, batch_size, dtype, history_every, halve, tol):
    rule = result.method
    if method is not None and _methods.get(method, problem.regularizer) != rule:
        raise ValidationError(f"cannot continue a run of {rule!r} with method={method!r}: resuming keeps the rule "
                              "(start a new run from result.particles to switch)")
    config = result.config
    for name, given, kept in (("geometry", geometry, None), ("batch_size", batch_size, config.batch_size),
                              ("history_every", history_every, int(result.state.history_every)),
                              ("halve_on_increase", halve, config.halve_on_increase)):
        if given is not None and (name == "geometry" and _geometry.get(given, problem.feature) != config.geometry
                                  or name != "geometry" and given != kept):
            raise ValidationError(f"cannot change {name} when continuing a run (it has {kept!r}); start a new run "
                                  "from result.particles instead")
    state = jax.tree_util.tree_map(jnp.asarray, result.state)
    dt = state.particles.positions.dtype
    if dtype is not None and jnp.dtype(check_dtype(dtype)) != dt:
        raise ValidationError(f"cannot change dtype when continuing a run (it is {dt})")
    check_pair(problem, state.particles)
    if int(state.status) == DIVERGED:
        raise ValidationError("this run diverged: continue from a new run with a smaller step instead")
    changes = {"status": jnp.asarray(RUNNING, jnp.int32)}
    if step is not None:
        changes["step"] = jnp.asarray(check_real("step", step, positive=True), dt)
    if key is not None:
        changes["key"] = _key_data(as_key(key))
    if tol is not None and config.batch_size is not None and not config.track_stationarity:
        config = dataclasses.replace(config, track_stationarity=True)
    return dataclasses.replace(state, **changes), rule, config, dt


def _divergence(res: Result, iterations: int) -> DivergenceError | None:
    if int(res.state.status) != DIVERGED:
        return None
    bad, name, last = int(res.diverged_at), res.provenance()["method"], float(res.last_objective)
    if not math.isfinite(last):  # no finite state at all: not a step issue
        return DivergenceError(
            f"the objective is non-finite at the initial particles ({name}, iteration {bad}): no step "
            "size can help; check the feature, the loss, the data and the initialization for values "
            "outside their domain (log or sqrt of negatives, overflow)",
            iteration=bad, last_objective=last, result=res)
    step = float(res.step)
    return DivergenceError(
        f"{name} diverged at iteration {bad} of {iterations}: the objective or a position became non-finite "
        f"(last finite objective {last:.6g}). Try a smaller step (step={step:.4g}; e.g. step={step / 10:.4g}).",
        iteration=bad, last_objective=last, result=res)
