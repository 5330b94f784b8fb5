"""measureflow: optimization over measures by particle gradient descent.

Importing measureflow enables float64 in JAX (``jax_enable_x64``): accuracy matters here,
and solvers run in float64 unless asked for float32.
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from . import data, features, geometry, init, kernels, losses, regularizers  # noqa: E402
from . import certificates, deconvolution  # noqa: E402
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
from .solvers import Result, default_step, run, solve, solve_batch  # noqa: E402
from . import baselines, sliding  # noqa: E402  (certified BLASSO: issue 15)

__all__ = [
    "__version__", "data", "features", "geometry", "init", "losses", "regularizers",
    "kernels", "certificates", "deconvolution", "baselines", "sliding",
    "Problem", "Particles", "Result", "solve", "solve_batch", "run", "default_step", "L1", "L2",
    "MeasureflowError", "ValidationError", "InputTypeError", "DivergenceError", "SupportWarning",
]
