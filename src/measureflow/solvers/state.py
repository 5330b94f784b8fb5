"""What a run carries and returns: the solver state (enough to continue a run bit for bit),
the recorder (history and snapshots) and the :class:`Result`.

Status codes: running (inside the loop), converged (the stop rule fired), max_iterations,
diverged (a non-finite objective or particle: the state is the last finite one).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from .._pytree import pytree_dataclass, static_field
from .._version import __version__
from ..particles import Particles

STATUSES = ("running", "converged", "max_iterations", "diverged")
RUNNING, CONVERGED, MAX_ITERATIONS, DIVERGED = range(4)
#: snapshot slots past the last requested iteration hold this (keeps the list sorted)
NO_SNAPSHOT = np.iinfo(np.int32).max


@pytree_dataclass
class SolverState:
    """The full state of a run (a pytree of arrays).

    particles       positions (m, p) and masses (m,)
    rule_state      the update rule's own state (optax moments, ...)
    step            η now (the default step may have been halved)
    key             the run's PRNG key data; step t draws from fold_in(key, t)
    iteration       steps done
    history_every   k: F and the stationarity are recorded, and the step control and the
                    stop rule act, at the iterations that are multiples of k
    status          a code of :data:`STATUSES`
    diverged_at     the iteration where a non-finite value appeared (−1: none)
    last_objective  F at ``particles`` when known (the last record), else NaN
    reference       the stationarity at the run's first iteration (the stop rule's scale)
    control         F at the last multiple of k (the step control compares with it)
    """

    particles: Particles
    rule_state: object
    step: jax.Array
    key: jax.Array
    iteration: jax.Array
    history_every: jax.Array
    status: jax.Array
    diverged_at: jax.Array
    last_objective: jax.Array
    reference: jax.Array
    control: jax.Array


@pytree_dataclass
class Recorder:
    """History (capacity H) and snapshots (capacity S) of one call, filled in the loop."""

    history: jax.Array               # (H,) F
    stationarity: jax.Array          # (H,) Σ_i w_i s_i
    history_iterations: jax.Array    # (H,) int32
    count: jax.Array                 # records written
    trajectory: jax.Array            # (S, m, p)
    trajectory_weights: jax.Array    # (S, m)
    snapshot_iterations: jax.Array   # (S,) int32, NO_SNAPSHOT past the requested ones


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The static (compile-time) part of a run: the rule, the metric, the minibatch size,
    whether the step is halved when F rises, and whether minibatch runs compute the
    stationarity on the full data at record points (a full pass: only when ``tol`` asks), and
    the name of the vmap axis when the loop runs as one of a batch (``mf.solve_batch``)."""

    rule: object
    geometry: object
    batch_size: int | None = None
    halve_on_increase: bool = False
    track_stationarity: bool = True
    batch_axis: str | None = None


@pytree_dataclass
class Result:
    """What a run returns (NumPy arrays, trimmed to what was recorded).

    state                 the :class:`SolverState` at the end: ``mf.solve(problem, result,
                          iterations=N)`` continues from it
    history               F at ``history_iterations`` (multiples of k, the first and the
                          last iteration of the call); for minibatch runs F on the full
                          data, the exact population risk or the held-out set
    stationarity          the optimality measure Σ_i w_i s_i at the same iterations
                          (``Rule.stationarity``; the stop rule compares it with its value
                          at the run's start)
    trajectory            positions (s, m, p) at ``trajectory_iterations`` (~log-spaced)
    trajectory_weights    masses (s, m) at the same iterations
    method                the update rule; ``config`` the static settings; ``version``
                          the measureflow version that computed it
    """

    state: SolverState
    history: jax.Array
    stationarity: jax.Array
    history_iterations: jax.Array
    trajectory: jax.Array
    trajectory_weights: jax.Array
    trajectory_iterations: jax.Array
    method: object = static_field()
    config: RunConfig | None = static_field(default=None)
    version: str = static_field(default=__version__)

    @property
    def particles(self) -> Particles:
        return self.state.particles

    @property
    def step(self):
        return self.state.step

    @property
    def key(self):
        return self.state.key

    @property
    def iteration(self) -> int:
        """The iteration reached (steps done since the run's start)."""
        return int(self.state.iteration)

    iterations = iteration

    @property
    def status(self) -> str:
        """"converged", "max_iterations" or "diverged"."""
        return STATUSES[int(self.state.status)]

    @property
    def converged(self) -> bool:
        return int(self.state.status) == CONVERGED

    @property
    def diverged_at(self):
        return self.state.diverged_at

    @property
    def last_objective(self):
        return self.state.last_objective

    @property
    def objective(self) -> float:
        """F at the final particles."""
        return float(self.history[-1])

    def provenance(self) -> dict:
        """Version, rule and settings of the run as a JSON-ready dict."""
        c = self.config
        batch = c.batch_size if c is not None else None
        out = {"measureflow": self.version, "method": rule_name(self.method, batch), "rule": repr(self.method),
               "iterations": self.iteration, "status": self.status,
               "step": float(np.asarray(self.step)), "key": np.asarray(self.key).tolist(),
               "history_every": int(self.state.history_every), "dtype": str(np.asarray(self.history).dtype),
               "snapshot_iterations": [int(t) for t in np.asarray(self.trajectory_iterations)]}
        if c is not None:
            out.update(batch_size=c.batch_size, geometry=repr(c.geometry), halve_on_increase=c.halve_on_increase)
        return out


def rule_name(rule, batch_size=None) -> str:
    """The shortcut of a built-in rule ("sgd" for the gradient rules on minibatches), else
    the rule's class name."""
    from .. import methods

    if batch_size is not None and type(rule) in (methods.GradientStep, methods.ForwardBackward):
        return "sgd"
    names = {methods.GradientStep: "gd", methods.ForwardBackward: "fb", methods.WFR: "wfr"}
    return names.get(type(rule), type(rule).__name__)


def empty_recorder(m: int, p: int, dtype, history_capacity: int, snapshot_iterations) -> Recorder:
    """A recorder with room for ``history_capacity`` records and the given snapshots."""
    snaps = np.asarray(snapshot_iterations, np.int32)
    S = snaps.shape[0]
    return Recorder(history=np.full(history_capacity, np.nan, dtype), stationarity=np.full(history_capacity, np.nan, dtype),
                    history_iterations=np.zeros(history_capacity, np.int32), count=np.asarray(0, np.int32),
                    trajectory=np.zeros((S, m, p), dtype), trajectory_weights=np.zeros((S, m), dtype),
                    snapshot_iterations=snaps)


def to_result(state: SolverState, rec: Recorder, rule, config: RunConfig) -> Result:
    """The host-side Result: NumPy arrays, the recorder trimmed to what was written."""
    state = jax.tree_util.tree_map(np.asarray, state)
    rec = jax.tree_util.tree_map(np.asarray, rec)
    n = int(rec.count)
    filled = rec.snapshot_iterations <= int(state.iteration)
    return Result(state=state, history=rec.history[:n], stationarity=rec.stationarity[:n],
                  history_iterations=rec.history_iterations[:n], trajectory=rec.trajectory[filled],
                  trajectory_weights=rec.trajectory_weights[filled], trajectory_iterations=rec.snapshot_iterations[filled],
                  method=rule, config=config)


def with_status(state: SolverState, status: int) -> SolverState:
    return dataclasses.replace(state, status=np.asarray(status, np.int32))
