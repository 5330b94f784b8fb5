"""Update rules of the particle solvers (``mf.methods``), optax style: small frozen
objects with ``init`` / ``update`` and static flags (see :mod:`.base`).

    GradientStep()            "gd"    θ ← θ − η G ∇F'
    ForwardBackward()         "fb"    θ ← prox_{ηV}(θ − η G ∇R')
    WFR(alpha, beta, ...)     "wfr"   + masses w ← w·exp(−αηF')
    Optax(tx)                         any optax.GradientTransformation on the velocity field
    Langevin(τ, base, ...)            base + √(2ητ_t) ξ

``"sgd"`` is the gradient step (forward–backward for a non-smooth V) on minibatches:
``batch_size=`` works with every rule.
"""

from __future__ import annotations

from ..errors import InputTypeError
from ..validation import check_choice
from .base import Rule
from .gradient import ForwardBackward, GradientStep
from .langevin import Langevin, geometric_schedule, log_schedule
from .optax_rule import Optax
from .wfr import WFR

#: the string shortcuts of ``solve(method=...)``
SHORTCUTS = ("gd", "fb", "wfr", "sgd")


def get(method, regularizer=None) -> Rule:
    """A rule from a shortcut or a :class:`Rule`. ``"sgd"`` resolves like ``"gd"``, or to
    forward–backward when ``regularizer`` is non-smooth (the solver asks for minibatches)."""
    if isinstance(method, Rule):
        return method
    if isinstance(method, str):
        name = check_choice("method", method, SHORTCUTS)
        if name == "sgd":
            return ForwardBackward() if regularizer is not None and not regularizer.smooth else GradientStep()
        return {"gd": GradientStep, "fb": ForwardBackward, "wfr": WFR}[name]()
    raise InputTypeError(
        f"method must be one of {', '.join(map(repr, SHORTCUTS))} or an update rule (mf.methods.GradientStep(), "
        f"mf.methods.WFR(...), mf.methods.Optax(tx), ...), got {type(method).__name__}: {method!r}")


__all__ = ["Rule", "GradientStep", "ForwardBackward", "WFR", "Optax", "Langevin", "log_schedule",
           "geometric_schedule", "get", "SHORTCUTS"]
