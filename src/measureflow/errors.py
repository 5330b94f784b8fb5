"""The one error hierarchy of measureflow.

Every error raised on purpose by the package derives from :class:`MeasureflowError`, so
``except mf.MeasureflowError`` catches them all; bad input is additionally a ``ValueError``
or ``TypeError`` so generic handlers keep working.
"""

from __future__ import annotations


class MeasureflowError(Exception):
    """Base class of every error measureflow raises on purpose."""


class ValidationError(MeasureflowError, ValueError):
    """An argument has a bad value (shape, range, NaN, unknown name...)."""


class InputTypeError(MeasureflowError, TypeError):
    """An argument has the wrong type."""


class DivergenceError(MeasureflowError, RuntimeError):
    """A run produced a non-finite objective or position and was stopped.

    Attributes: ``iteration`` (first bad iteration), ``last_objective`` (last finite value),
    ``result`` (the :class:`~measureflow.solvers.Result` up to the last finite state).
    """

    def __init__(self, message: str, *, iteration: int, last_objective: float, result=None):
        super().__init__(message)
        self.iteration = iteration
        self.last_objective = last_objective
        self.result = result


class SupportWarning(UserWarning):
    """An initialization visibly violates the support condition of its feature."""
