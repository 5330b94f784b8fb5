"""Preset parameters checked by an experiment's pydantic ``Params`` model.

An experiment module declares ``Params``, a ``pydantic.BaseModel`` with
``extra="forbid"`` describing one preset entry (the mapping its ``run`` receives);
:func:`parse` validates a mapping against it and turns pydantic's report into the
package's one-line :class:`~measureflow.errors.ValidationError` naming the first bad key.
"""

from __future__ import annotations

from typing import TypeVar

import pydantic

from ..errors import ValidationError

M = TypeVar("M", bound=pydantic.BaseModel)


def parse(model: type[M], params, experiment: str) -> M:
    """``model`` validated from ``params`` (a mapping or an instance of ``model``)."""
    if isinstance(params, model):
        return params
    try:
        return model.model_validate(params)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        got = "" if err["type"] == "missing" else f" (got {err.get('input')!r})"
        raise ValidationError(f"{experiment} parameters: {where}: {err['msg']}{got}") from None
