"""measureflow: optimization over measures by particle gradient descent.

Importing measureflow enables float64 in JAX (``jax_enable_x64``): accuracy matters here,
and solvers run in float64 unless asked for float32.
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from . import data, features, init, kernels, losses, regularizers  # noqa: E402
from . import methods, solvers  # noqa: E402
from .solvers import geometry  # noqa: E402  (the metrics on Θ live in the solver layer)
from . import baselines, certificates, deconvolution  # noqa: E402
from ._version import __version__  # noqa: E402
from .errors import (  # noqa: E402
    DivergenceError,
    InputTypeError,
    MeasureflowError,
    SupportWarning,
    ValidationError,
)
from .particles import Particles  # noqa: E402
from .problem import Problem  # noqa: E402
from .regularizers import L1, L2  # noqa: E402
from . import store  # noqa: E402  (results on disk: mf.store.Store)
from .solvers import Result, SolverState, default_step, run, solve, solve_batch  # noqa: E402
from . import diagnostics, sliding  # noqa: E402  (sliding: the certified BLASSO pieces)

__all__ = [
    "__version__", "data", "features", "geometry", "init", "losses", "regularizers",
    "kernels", "methods", "solvers", "baselines", "certificates", "deconvolution", "sliding",
    "Problem", "Particles", "Result", "SolverState", "solve", "solve_batch", "run", "default_step", "L1", "L2",
    "flow", "FlowResult", "diagnostics",
    "MeasureflowError", "ValidationError", "InputTypeError", "DivergenceError", "SupportWarning",
]


def __getattr__(name):
    # mf.flow / mf.FlowResult import diffrax (about a second); the module is measureflow.gradient_flow only when first used
    if name in ("flow", "FlowResult"):
        import importlib

        module = importlib.import_module(".gradient_flow", __name__)
        globals().update(flow=module.flow, FlowResult=module.FlowResult)
        return globals()[name]
    raise AttributeError(f"module 'measureflow' has no attribute {name!r}")
