"""Particle solvers: one compiled loop each (``lax.scan`` over history chunks).

Mean-field particle gradient descent, with a per-particle metric G (geometry):

    gd   θ_i ← θ_i − η G(θ_i) ∇_θ F'(μ)(θ_i)                 (V differentiated)
    fb   θ_i ← prox_{ηV}(θ_i − η G(θ_i) ∇_θ R'(μ)(θ_i))       (forward–backward)
    sgd  as gd (or fb for a non-smooth V) with R' estimated on a fresh minibatch each step

∇_θ F'(μ)(θ_i) = (1/w_i) ∇_{θ_i} F, so the trajectory of the measure does not depend on m.
A non-finite objective or position freezes the state at its last finite value and
``solve`` raises :class:`~measureflow.errors.DivergenceError` naming the iteration.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from . import geometry as _geometry
from ._version import __version__
from ._pytree import pytree_dataclass, static_field
from .data.base import Sampler, subsample
from .errors import DivergenceError, InputTypeError, ValidationError
from .particles import Particles
from .problem import Problem
from .validation import check_choice, check_int, check_memory, check_real, check_seed

METHODS = ("gd", "fb", "sgd")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The static (compile-time) part of a run."""

    method: str
    iterations: int
    history_every: int
    snapshot_iterations: tuple
    batch_size: int | None
    geometry: _geometry.Geometry
    halve_on_increase: bool = False

    @property
    def uses_prox(self) -> bool:
        return self.method == "fb"


@pytree_dataclass
class Result:
    """What a run returns.

    particles              final particles
    history                F at ``history_iterations`` (every ``history_every`` steps and
                           the last); for "sgd" on a sampler, F on the held-out set or exact
    trajectory             positions (s, m, p) at ``trajectory_iterations`` (~log-spaced)
    diverged_at            first non-finite iteration, −1 if none
    step                   the step size used (the last one if the default step was halved)
    key                    the run's PRNG key data (its seed: "sgd" minibatches)
    config, version        provenance: the static :class:`RunConfig` (method, iterations,
                           history and snapshot iterations, batch size, geometry, step
                           control) and the measureflow version that computed the run;
                           with ``step``, ``key`` and the arrays' dtype they determine it
                           bit for bit on the same machine (see :meth:`provenance`)
    """

    particles: Particles
    history: jax.Array
    history_iterations: jax.Array
    trajectory: jax.Array
    trajectory_iterations: jax.Array
    diverged_at: jax.Array
    last_objective: jax.Array
    step: jax.Array
    key: jax.Array
    method: str = static_field()
    iterations: int = static_field()
    config: RunConfig | None = static_field(default=None)
    version: str = static_field(default=__version__)

    @property
    def objective(self) -> float:
        """F at the final particles."""
        return float(self.history[-1])

    def provenance(self) -> dict:
        """The version and configuration of the run as a JSON-ready dict."""
        c = self.config
        out = {"measureflow": self.version, "method": self.method, "iterations": self.iterations,
               "step": float(np.asarray(self.step)), "key": np.asarray(self.key).tolist(),
               "dtype": str(np.asarray(self.history).dtype)}
        if c is not None:
            out.update(history_every=c.history_every, snapshot_iterations=list(c.snapshot_iterations),
                       batch_size=c.batch_size, geometry=repr(c.geometry), halve_on_increase=c.halve_on_increase)
        return out


def log_spaced(iterations: int, count: int) -> tuple:
    """About ``count`` distinct log-spaced iterations in [0, iterations], 0 and the end
    included."""
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


def _minibatch(problem: Problem, key, t, batch_size):
    k = jax.random.fold_in(key, t)
    if isinstance(problem.data, Sampler):
        return problem.data.sample(k, batch_size)
    return subsample(problem.data, k, batch_size)


def _uses_prox(problem: Problem, method: str) -> bool:
    return method == "fb" or (method == "sgd" and not problem.regularizer.smooth)


def run(problem: Problem, particles: Particles, step, key, config: RunConfig) -> Result:
    """The pure, jittable, vmappable run. ``solve`` validates, picks defaults and raises on
    divergence; use ``run`` directly to ``vmap`` over seeds or initializations."""
    feature, reg = problem.feature, problem.regularizer
    geom = config.geometry.resolve(problem)  # binds data-dependent metric constants (traced)
    w = particles.weights
    prox = _uses_prox(problem, config.method)
    T, k = config.iterations, config.history_every
    snaps = jnp.asarray(config.snapshot_iterations, dtype=jnp.int32)
    ns = len(config.snapshot_iterations)

    def batch_at(t):
        if config.method == "sgd":
            return _minibatch(problem, key, t, config.batch_size)
        return None

    def record(t, P, traj):
        if ns == 0:
            return traj
        slot = jnp.minimum(jnp.searchsorted(snaps, t), ns - 1)
        return jax.lax.cond(snaps[slot] == t, lambda tr: tr.at[slot].set(P), lambda tr: tr, traj)

    def advance(t, P, last, eta):
        F, vel = problem.value_and_velocity(Particles.unchecked(P, w), batch_at(t), smooth_only=prox)
        Pn = P - eta * geom.precondition(feature, P, vel)
        if prox:
            Pn = jax.vmap(reg.prox, (0, None))(Pn, eta)
        Pn = feature.wrap(Pn)
        # last = (F, P) of the last state with a finite objective: a run that blows up stops
        # there, so its particles and history stay finite
        finite = jnp.isfinite(F)
        last = (jnp.where(finite, F, last[0]), jnp.where(finite, P, last[1]))
        ok = finite & jnp.all(jnp.isfinite(Pn))
        return jnp.where(ok, Pn, last[1]), jnp.where(ok, -1, t).astype(jnp.int32), last

    def one_step(t, state):
        P, traj, bad, last, eta, F_prev = state
        traj = record(t, P, traj)
        P, bad, last = jax.lax.cond(bad >= 0, lambda: (P, bad, last), lambda: advance(t, P, last, eta))
        return P, traj, bad, last, eta, F_prev

    def objective(P):
        return problem.objective(Particles.unchecked(P, w))

    def chunk(state, c):
        F = objective(state[0])
        if config.halve_on_increase:
            # A deterministic step below the stability limit decreases F; a rise over a
            # history interval means the curvature has outgrown the step (e.g. homogeneous
            # units growing): halve it. F is the same for split particles, so the
            # mean-field invariance is kept. Rises under 0.1% are ignored: on a piecewise
            # smooth F (ReLU kinks crossing samples) iterates chatter along a kink and F
            # can rise slightly at any step size, which halving would not cure.
            P, traj, bad, last, eta, F_prev = state
            eta = jnp.where(F > F_prev + 1e-3 * jnp.abs(F_prev), eta / 2, eta)
            state = (P, traj, bad, last, eta, F)
        state = jax.lax.fori_loop(0, k, lambda i, s: one_step(c * k + i, s), state)
        return state, F

    P0 = particles.positions
    dtype = P0.dtype
    state = (P0, jnp.zeros((ns,) + P0.shape, dtype), jnp.asarray(-1, jnp.int32), (jnp.asarray(jnp.nan, dtype), P0),
             jnp.asarray(step, dtype), jnp.asarray(jnp.inf, dtype))
    n_chunks = T // k
    state, hist = jax.lax.scan(chunk, state, jnp.arange(n_chunks))
    state = jax.lax.fori_loop(n_chunks * k, T, one_step, state)
    P, traj, bad, last, step, _ = state
    traj = record(T, P, traj)
    hist = jnp.concatenate([hist, objective(P)[None]])
    hist_it = np.concatenate([np.arange(n_chunks) * k, [T]])
    return Result(
        particles=Particles.unchecked(P, w), history=hist, history_iterations=jnp.asarray(hist_it),
        trajectory=traj, trajectory_iterations=snaps, diverged_at=bad, last_objective=last[0],
        step=jnp.asarray(step, dtype), key=_key_data(key), method=config.method, iterations=T, config=config)


def _key_data(key):
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


_run_jit = jax.jit(run, static_argnames=("config",))


def as_key(key) -> jax.Array:
    """A PRNG key from an int seed or a key array."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.PRNGKey(check_seed("key", key))
    if isinstance(key, jax.Array) and key.shape == (2,) and key.dtype == jnp.uint32:
        return key
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    raise InputTypeError(f"key must be an int seed or a jax.random key, got {key!r}")


def _cast(tree, dtype):
    return jax.tree_util.tree_map(
        lambda a: a.astype(dtype) if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def curvature(problem: Problem, particles: Particles, *, method: str = "gd", geometry=None,
              iterations: int = 30, key=0) -> float:
    """Largest |eigenvalue| of G W⁻¹ ∇²F_smooth at the particles (power iteration on
    Hessian-vector products): the step must stay below 2 / curvature for stability."""
    _check_pair(problem, particles)
    geom = _geometry.get(geometry, problem.feature)
    return float(_power_iteration(problem, particles.positions, particles.weights, as_key(key), geom,
                                  _uses_prox(problem, method), check_int("iterations", iterations, minimum=1)))


def _power_iteration_impl(problem, P, w, key, geometry, prox, iterations):
    # Massless particles (solve_batch's padding; user particles have w > 0) are left out:
    # the iteration runs on the real particles' block, whose velocities do not depend on
    # them. The start vector is drawn row by row (one key per particle), so a run's
    # estimate does not depend on how much it is padded.
    geom = geometry.resolve(problem)
    real = (w > 0)[:, None]

    def velocity(Q):
        return problem.value_and_velocity(Particles.unchecked(Q, w), smooth_only=prox)[1]

    def body(_, carry):
        v, _lam = carry
        Mv = jnp.where(real, geom.precondition(problem.feature, P, jax.jvp(velocity, (P,), (v,))[1]), 0)
        nrm = jnp.linalg.norm(Mv)
        return Mv / jnp.where(nrm > 0, nrm, 1.0), nrm

    rows = jnp.arange(P.shape[0])
    v0 = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), P.shape[1:], P.dtype))(rows)
    v0 = jnp.where(real, v0, 0)
    v0 = v0 / jnp.linalg.norm(v0)
    return jax.lax.fori_loop(0, iterations, body, (v0, jnp.zeros((), P.dtype)))[1]


# Module level with the problem as an argument: one compilation per shape, not one per
# call (a sweep asks for the default step of every seed).
_power_iteration = jax.jit(_power_iteration_impl, static_argnames=("geometry", "prox", "iterations"))


def _power_iterations(problems, P, w, key, geometry, prox, iterations, shared_problem):
    one = lambda pr, P_, w_: _power_iteration_impl(pr, P_, w_, key, geometry, prox, iterations)  # noqa: E731
    return jax.vmap(one, in_axes=(None if shared_problem else 0, 0, 0))(problems, P, w)


_power_iterations_jit = jax.jit(_power_iterations, static_argnames=("geometry", "prox", "iterations", "shared_problem"))


def default_step(problem: Problem, particles: Particles, *, method: str = "gd", geometry=None) -> float:
    """η = 1 / L (half the stability limit 2/L), L = the larger of the curvature at the
    initial particles and the geometry's bound over the whole run, when it has one
    (``Geometry.curvature_bound``: at μ0 some curvature may be invisible, e.g. along the
    positions of zero-weight particles)."""
    _check_pair(problem, particles)
    geom = _geometry.get(geometry, problem.feature)
    return _step_from(curvature(problem, particles, method=method, geometry=geom), problem, particles, method, geom)


def _step_from(L: float, problem, particles, method, geometry) -> float:
    """1 / max(L, the geometry's curvature bound): the default step from the curvature L
    estimated at the initial particles."""
    bound = geometry.curvature_bound(problem, particles, smooth_only=_uses_prox(problem, method))
    if bound is not None and math.isfinite(L):
        L = max(L, bound)
    if not math.isfinite(L) or L <= 0:
        raise ValidationError(
            f"could not estimate a default step (curvature {L} at the initial particles); pass step=")
    return 1.0 / L


def _check_pair(problem, particles):
    if not isinstance(problem, Problem):
        raise InputTypeError(f"problem must be a mf.Problem, got {type(problem).__name__}")
    if not isinstance(particles, Particles):
        raise InputTypeError(f"particles must be mf.Particles, got {type(particles).__name__}")
    if particles.dim != problem.feature.dim:
        raise ValidationError(
            f"particles have dimension p={particles.dim} but the feature {problem.feature.name} has dim={problem.feature.dim}")


def _validate(problem, particles, method, step, iterations, batch_size, snapshots, history_every, dtype):
    _check_pair(problem, particles)
    check_choice("method", method, METHODS)
    problem.feature.check_data(problem.data)  # e.g. a sampling grid too coarse for a kernel
    problem.check_labels()  # e.g. 0/1 labels for the logistic loss
    iterations = check_int("iterations", iterations, minimum=1)
    if step is not None:
        step = check_real("step", step, positive=True)
    if method == "sgd":
        if batch_size is None:
            raise ValidationError("method='sgd' needs batch_size= (samples drawn per step)")
        batch_size = check_int("batch_size", batch_size, minimum=1)
        check_memory(f"a minibatch of batch_size={batch_size} samples in R^{problem.data.input_dim}",
                     2 * batch_size * (problem.data.input_dim + 2) * 8, "lower batch_size")
    elif batch_size is not None:
        raise ValidationError(f"batch_size={batch_size} only applies to method='sgd', not {method!r}")
    elif isinstance(problem.data, Sampler):
        raise ValidationError(f"method={method!r} needs a fixed data set; a Sampler's population loss needs method='sgd'")
    reg = problem.regularizer
    if _uses_prox(problem, method) and not reg.has_prox:
        raise ValidationError(
            f"method={method!r} applies the prox of the regularizer, but {type(reg).__name__} has none; "
            "give it a prox or use method='gd'")
    if not _uses_prox(problem, method) and not reg.smooth:
        raise ValidationError(
            f"{type(reg).__name__} is non-smooth: method={method!r} would differentiate it; use method='fb'")
    snapshots = check_int("snapshots", snapshots, minimum=0)
    if history_every is None:
        history_every = max(1, iterations // 1000)
    history_every = min(check_int("history_every", history_every, minimum=1), iterations)
    try:
        name = dtype if isinstance(dtype, str) else str(jnp.dtype(dtype))
    except TypeError:
        name = dtype
    check_choice("dtype", name, ("float32", "float64"))
    m, p = particles.positions.shape
    check_memory(f"{snapshots} position snapshots of m={m} particles in R^{p}", (snapshots + 4) * m * p * 8,
                 "lower snapshots= or m")
    return iterations, step, batch_size, snapshots, history_every


def _prepare(problem, particles, method, step, iterations, batch_size, key, geometry, history_every,
             snapshots, dtype):
    """Validate, cast and fill in defaults: (problem, particles, step, key, config)."""
    iterations, step, batch_size, snapshots, history_every = _validate(
        problem, particles, method, step, iterations, batch_size, snapshots, history_every, dtype)
    geom = _geometry.get(geometry, problem.feature)
    dtype = jnp.dtype(dtype)
    cast_problem, cast_particles = _cast(problem, dtype), particles.astype(dtype)
    config = _config(method, iterations, history_every, snapshots, batch_size, geom, default_step=step is None)
    if step is None:
        L = curvature(cast_problem, cast_particles, method=method, geometry=geom)
        step = _step_from(L, problem, particles, method, geom)
    return cast_problem, cast_particles, step, as_key(key), config


def _config(method, iterations, history_every, snapshots, batch_size, geometry, *, default_step: bool):
    # the default step is halved whenever F increases over a history interval (gd, fb): the
    # curvature at μ0 can be exceeded later in the run (2-homogeneous units grow ~2-3x)
    return RunConfig(method, iterations, history_every, log_spaced(iterations, snapshots), batch_size, geometry,
                     halve_on_increase=default_step and method != "sgd")


def _divergence(res: Result, step: float) -> DivergenceError | None:
    bad = int(res.diverged_at)
    if bad < 0:
        return None
    if not math.isfinite(float(res.last_objective)):  # no finite state at all: not a step issue
        return DivergenceError(
            f"the objective is non-finite at the initial particles ({res.method}, iteration {bad}): no step "
            "size can help; check the feature, the loss, the data and the initialization for values "
            "outside their domain (log or sqrt of negatives, overflow)",
            iteration=bad, last_objective=float(res.last_objective), result=res)
    return DivergenceError(
        f"{res.method} diverged at iteration {bad} of {res.iterations}: the objective or a position became "
        f"non-finite (last finite objective {float(res.last_objective):.6g}). Try a smaller step "
        f"(step={step:.4g}; e.g. step={step / 10:.4g}).",
        iteration=bad, last_objective=float(res.last_objective), result=res)


def solve(problem: Problem, particles: Particles, method: str = "gd", step: float | None = None,
          iterations: int = 1000, *, batch_size: int | None = None, key=0, geometry=None,
          history_every: int | None = None, snapshots: int = 100, dtype="float64") -> Result:
    """Run a particle solver from ``particles`` and return a :class:`Result` (NumPy arrays).

    method         "gd", "fb" or "sgd"
    step           η > 0; ``None``: :func:`default_step` (1 / curvature at the initial
                   particles, or the geometry's curvature bound when it has a larger one),
                   halved ("gd", "fb") whenever F rises by over 0.1% in a history interval
    iterations     number of steps
    batch_size     samples per step ("sgd" only); drawn from the sampler, or with
                   replacement from a Dataset, with ``key``
    geometry       "euclidean", "conic" or a :class:`~measureflow.geometry.Geometry`; default:
                   the feature's ``default_geometry`` if it declares one, else "euclidean"
    history_every  objective recorded every k steps (default: ~1000 records)
    snapshots      about how many log-spaced position snapshots to keep (0: none)
    dtype          "float64" (default) or "float32"

    Raises ValidationError/InputTypeError before any work on bad input, and
    DivergenceError (with ``.iteration`` and ``.result``) if the run blows up.
    """
    problem, particles, step, key, config = _prepare(
        problem, particles, method, step, iterations, batch_size, key, geometry, history_every, snapshots, dtype)
    res = jax.tree_util.tree_map(np.asarray, _run_jit(problem, particles, jnp.asarray(step, particles.positions.dtype),
                                                      key, config))
    err = _divergence(res, step)
    if err is not None:
        raise err
    return res


def _run_many(problems, particles, steps, keys, config, shared_problem):
    one = lambda pr, pa, st, k: run(pr, pa, st, k, config)  # noqa: E731
    return jax.vmap(one, in_axes=(None if shared_problem else 0, 0, 0, 0))(problems, particles, steps, keys)


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
    """(B, 2) key data, or typed keys (B,), for a list of seeds or keys."""
    if all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in keys):
        # one call for all the seeds: jax.random.PRNGKey costs ~0.5 ms per eager call
        return np.asarray(_seeds_to_keys(np.asarray([check_seed("key", k) for k in keys], np.int64)))
    keys = [as_key(k) for k in keys]
    if jnp.issubdtype(keys[0].dtype, jax.dtypes.prng_key):  # typed keys stay jax arrays
        return jnp.stack(keys)
    return np.stack([np.asarray(k) for k in keys])


def _stack_host(trees, dtype):
    """Stack pytrees leaf by leaf in NumPy, floating leaves cast to ``dtype``: eager jnp
    ops here would compile once per distinct shape and run op by op."""
    def stack(*xs):
        a = np.stack([np.asarray(x) for x in xs])
        return a.astype(dtype) if np.issubdtype(a.dtype, np.floating) else a
    return jax.tree_util.tree_map(stack, *trees)


def solve_batch(problems, particles, method: str = "gd", step=None, iterations: int = 1000, *,
                batch_size: int | None = None, keys=None, geometry=None, history_every: int | None = None,
                snapshots: int = 0, dtype="float64") -> list[Result]:
    """Many runs as one compiled, vmapped program; returns one :class:`Result` per run.

    problems   a Problem shared by all runs, or a sequence of Problems of identical
               structure (e.g. teachers drawn with different seeds)
    particles  a sequence of Particles; they may differ in m: the smaller ones are padded
               with massless copies of their first particle, which change neither f_μ nor
               F nor (by the mean-field invariance) the other particles' flow
    step       None (each run's default, estimated for all runs in one vmapped call), a
               float, or one per run (for "gd"/"fb" not a mix of None and values: the
               default step's halving control is compiled for the whole batch)
    keys       one seed or key per run ("sgd"); default 0, 1, 2, ...

    A diverging run does not stop the others: its Result has ``diverged_at >= 0``.
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
    # Host checks run by run (cheap); the casts, padding and stacking are done once in
    # NumPy, and the keys and the default steps come from one vmapped call each: preparing
    # runs one by one (a PRNGKey and a power iteration each) cost as much as small runs.
    checked = [_validate(pr, pa, method, st, iterations, batch_size, snapshots, history_every, dtype)
               for pr, pa, st in zip(problems_list, particles, steps)]
    iterations, _, batch_size, snapshots, history_every = checked[0]
    steps = [c[1] for c in checked]
    missing = [b for b, st in enumerate(steps) if st is None]
    if missing and len(missing) < len(steps) and method != "sgd":
        raise ValidationError(
            f"step gives a value for some runs and None (the default step, halved whenever F rises) for "
            f"runs {missing}; the step control is compiled once per batch: run the two kinds in separate "
            "solve_batch calls")
    if not shared:
        _check_stackable(problems_list)
    geom = _geometry.get(geometry, problems_list[0].feature)
    dtype = np.dtype(jnp.dtype(dtype))
    keys = _stack_keys(keys)
    m_max = max(p.m for p in particles)
    rows = np.arange(m_max)  # padding rows repeat the first particle
    positions = np.stack([np.asarray(pa.positions, dtype)[np.where(rows < pa.m, rows, 0)] for pa in particles])
    weights = np.stack([np.concatenate([np.asarray(pa.weights, dtype), np.zeros(m_max - pa.m, dtype)])
                        for pa in particles])
    problems_in = _cast(problems, dtype) if shared else _stack_host(problems_list, dtype)
    if missing:
        some = problems_in if shared else jax.tree_util.tree_map(lambda a: a[missing], problems_in)
        L = np.asarray(_power_iterations_jit(some, positions[missing], weights[missing], as_key(0), geom,
                                             _uses_prox(problems_list[0], method), 30, shared))
        for b, Lb in zip(missing, L):
            steps[b] = _step_from(float(Lb), problems_list[b], particles[b], method, geom)
    config = _config(method, iterations, history_every, snapshots, batch_size, geom, default_step=bool(missing))
    out = _run_many_jit(problems_in, Particles.unchecked(positions, weights), np.asarray(steps, dtype), keys,
                        config, shared)
    out = jax.tree_util.tree_map(np.asarray, out)
    results = []
    for b, pa in enumerate(particles):
        r = jax.tree_util.tree_map(lambda a: a[b], out)
        m = pa.m
        results.append(dataclasses.replace(
            r, particles=Particles.unchecked(r.particles.positions[:m], r.particles.weights[:m]),
            trajectory=r.trajectory[:, :m]))
    return results
