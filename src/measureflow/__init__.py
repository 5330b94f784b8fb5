"""measureflow: optimization over measures by particle gradient descent.

Importing measureflow enables float64 in JAX (``jax_enable_x64``; before JAX is imported,
by setting ``JAX_ENABLE_X64=1`` in the environment): accuracy matters here, and solvers run
in float64 unless asked for float32.

The submodules and the names below are imported on first use (PEP 562): ``import
measureflow`` itself does not import JAX, so the ``measureflow`` command answers
``--help``, ``--version`` and argument errors without JAX's import (seconds).
"""

import os as _os
import sys as _sys
from typing import TYPE_CHECKING

# float64 before anything builds an array: on JAX's live configuration if JAX is already
# imported, else through the variable JAX reads when it is imported (child processes
# inherit it: the workers of sweeps and `reproduce --jobs` want float64 too)
if "jax" in _sys.modules:
    _sys.modules["jax"].config.update("jax_enable_x64", True)
else:
    _os.environ["JAX_ENABLE_X64"] = "1"

from ._version import __version__  # noqa: E402
from .errors import (  # noqa: E402
    DivergenceError,
    InputTypeError,
    MeasureflowError,
    SupportWarning,
    ValidationError,
)

#: modules available as attributes (``mf.features``) -> their path, imported on first access
#: (geometry, the metrics on Θ, lives in the solver layer)
_MODULES = {name: name for name in ("data", "features", "init", "kernels", "losses", "regularizers", "methods",
                                    "solvers", "baselines", "certificates", "deconvolution", "store",
                                    "diagnostics", "sliding")} | {"geometry": "solvers.geometry"}
#: other names -> the module that defines them
_NAMES = {
    "Particles": "particles", "Problem": "problem", "L1": "regularizers", "L2": "regularizers",
    "Result": "solvers", "SolverState": "solvers", "default_step": "solvers", "run": "solvers",
    "solve": "solvers", "solve_batch": "solvers",
    "flow": "gradient_flow", "FlowResult": "gradient_flow",   # gradient_flow imports diffrax
}

__all__ = ["__version__", *_MODULES, *_NAMES,
           "MeasureflowError", "ValidationError", "InputTypeError", "DivergenceError", "SupportWarning"]


def __getattr__(name):
    import importlib

    if name in _MODULES:
        value = importlib.import_module(f".{_MODULES[name]}", __name__)
    elif name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    else:
        raise AttributeError(f"module 'measureflow' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and IDEs see
    from . import (baselines, certificates, data, deconvolution, diagnostics, features, init, kernels,  # noqa: F401
                   losses, methods, regularizers, sliding, solvers, store)
    from .gradient_flow import FlowResult, flow  # noqa: F401
    from .particles import Particles  # noqa: F401
    from .problem import Problem  # noqa: F401
    from .regularizers import L1, L2  # noqa: F401
    from .solvers import Result, SolverState, default_step, geometry, run, solve, solve_batch  # noqa: F401
