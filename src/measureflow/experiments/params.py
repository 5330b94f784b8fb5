"""Preset parameters checked by an experiment's pydantic ``Params`` model.

An experiment module declares ``Params``, a ``pydantic.BaseModel`` with
``extra="forbid"`` describing one preset entry (the mapping its ``run`` receives);
:func:`parse` validates a mapping against it and reports every bad key in one line, as
:func:`measureflow.experiments.registry.validate_params` does for the CLI.
"""

from __future__ import annotations

from typing import TypeVar

import pydantic

from ..errors import ValidationError
from .registry import describe_pydantic_error, dotted

M = TypeVar("M", bound=pydantic.BaseModel)


def parse(model: type[M], params, experiment: str) -> M:
    """``model`` validated from ``params`` (a mapping or an instance of ``model``)."""
    if isinstance(params, model):
        return params
    try:
        return model.model_validate(params)
    except pydantic.ValidationError as exc:
        raise ValidationError(describe_pydantic_error(exc, locate=lambda loc: dotted(loc, experiment))) from None
