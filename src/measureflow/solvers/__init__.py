"""The solver layer: the compiled loop over update rules (``mf.methods``), metrics on Θ,
default steps, the stop rule, results, continuation and checkpoints.

    solve(problem, particles | result, method, step, iterations, *, tol, batch_size, ...)
    solve_batch(problems, particles, ...)       many runs as one vmapped program
    run(problem, state, recorder, controls, config)   the pure loop (for your own jit/vmap)
"""

from . import geometry
from .batch import solve_batch
from .loop import Controls, minibatch, run
from .driver import log_spaced, solve
from .state import STATUSES, Recorder, Result, RunConfig, SolverState
from .steps import curvature, default_step

__all__ = ["solve", "solve_batch", "run", "Controls", "minibatch", "log_spaced", "Result", "SolverState", "Recorder",
           "RunConfig", "STATUSES", "curvature", "default_step", "geometry"]
