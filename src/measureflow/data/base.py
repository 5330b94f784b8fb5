"""Where the expectation in R(f) = E ℓ(f(x), y) comes from.

- :class:`Dataset`: an empirical measure Σ_j s_j δ_(x_j, y_j) (weights s default 1/n).
- :class:`FixedDesign`: a deterministic design (e.g. the sampling grid of a signal) — the
  same object semantically marked as a quadrature rule rather than a sample.
- :class:`Sampler`: a population distribution, accessed through fresh draws
  ``sample(key, n)``; its objective is evaluated on a fixed large held-out draw unless the
  subclass provides an exact population risk. ``cache_held_out()`` stores that draw as a
  leaf, so it is drawn once rather than once per use (per solver call, per eager evaluation).
All are pytrees, so they travel through ``jit``/``vmap`` as arguments.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._pytree import build, pytree_dataclass, static_field
from ..errors import InputTypeError, ValidationError
from ..validation import check_array, check_int, check_memory, check_seed


@pytree_dataclass
class Dataset:
    """Samples X (n, d), targets y (n,), sample weights (n,) summing to one."""

    X: jax.Array
    y: jax.Array
    sample_weights: jax.Array

    def __init__(self, X, y, sample_weights=None):
        X = check_array("X", X)
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2:
            raise ValidationError(f"X must have shape (n, d), got {X.shape}")
        if X.shape[0] < 1:
            raise ValidationError("X must contain at least one sample")
        y = check_array("y", y, shape=(X.shape[0],)) if np.ndim(y) == 1 else check_array("y", y, ndim=1)
        if sample_weights is None:
            s = np.full(X.shape[0], 1.0 / X.shape[0])
        else:
            s = check_array("sample_weights", sample_weights, shape=(X.shape[0],))
            if np.any(s < 0) or s.sum() <= 0:
                raise ValidationError("sample_weights must be nonnegative with a positive sum")
            s = s / s.sum()
        object.__setattr__(self, "X", jnp.asarray(X))
        object.__setattr__(self, "y", jnp.asarray(y))
        object.__setattr__(self, "sample_weights", jnp.asarray(s))

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def input_dim(self) -> int:
        return self.X.shape[1]

    def evaluation_set(self) -> "Dataset":
        return self

    def exact_risk(self, feature, loss, particles):
        """Closed-form risk, if this data source has one (``None``: use the samples)."""
        return None

    def exact_first_variation(self, feature, loss, particles, thetas):
        """F'(μ)(θ_j) − V(θ_j) (k,) for thetas (k, p) in closed form, if this data source has
        one (``None``: :meth:`Problem.field` differentiates :meth:`exact_risk` along probe masses)."""
        return None


@pytree_dataclass
class FixedDesign(Dataset):
    """A deterministic design with quadrature weights, e.g. a sampling grid."""

    @classmethod
    def torus_grid(cls, n: int, dim: int, values: Callable | np.ndarray) -> "FixedDesign":
        """The uniform grid of n^dim points on [0, 1)^dim with y = values (array or a
        function of X)."""
        n = check_int("n", n, minimum=1)
        dim = check_int("dim", dim, minimum=1)
        check_memory(f"a grid of n^dim = {n}^{dim} points", 2 * float(n) ** dim * (dim + 2) * 8, "lower n")
        axes = [np.arange(n) / n] * dim
        X = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
        y = values(X) if callable(values) else values
        return cls(X, y)


@pytree_dataclass
class Sampler:
    """A population distribution: ``draw(key, n, params) -> (X (n, d), y (n,))``.

    ``params`` is any pytree the draw needs (e.g. teacher weights); it is a leaf of the
    sampler, so the compiled loops take it as an argument. The objective is evaluated on
    a fixed held-out draw of ``eval_size`` samples (seed ``eval_seed``): drawn again at
    each use, or once and stored in the leaf ``held_out`` by :meth:`cache_held_out`.
    """

    params: object
    draw: Callable = static_field()
    input_dim: int = static_field()
    eval_size: int = static_field(default=10_000)
    eval_seed: int = static_field(default=0)
    held_out: object = None  # the cached held-out Dataset, or None (drawn at each use)

    def __init__(self, draw, input_dim, params=None, eval_size=10_000, eval_seed=0):
        if not callable(draw):
            raise InputTypeError(f"draw must be callable (key, n, params) -> (X, y), got {draw!r}")
        object.__setattr__(self, "draw", draw)
        object.__setattr__(self, "input_dim", check_int("input_dim", input_dim, minimum=1))
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "eval_size", check_int("eval_size", eval_size, minimum=1))
        object.__setattr__(self, "eval_seed", check_seed("eval_seed", eval_seed))
        object.__setattr__(self, "held_out", None)

    def sample(self, key: jax.Array, n: int) -> Dataset:
        """A fresh draw of n samples, as an (unvalidated, traceable) Dataset."""
        X, y = self.draw(key, n, self.params)
        return _dataset_unchecked(X, y)

    def evaluation_set(self) -> Dataset:
        if self.held_out is not None:
            return self.held_out
        return self.sample(jax.random.PRNGKey(self.eval_seed), self.eval_size)

    def cache_held_out(self) -> "Sampler":
        """The same sampler with its held-out set drawn now and stored (memory: eval_size ×
        (d + 2) floats). Inside ``jit`` an uncached held-out set is a computation, repeated
        at every use (a solver call draws it once, before its loop; eager evaluations of F
        draw it each time)."""
        held = self.evaluation_set()
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return build(type(self), **{**fields, "held_out": held})

    def exact_risk(self, feature, loss, particles):
        return None

    def exact_first_variation(self, feature, loss, particles, thetas):
        """F'(μ)(θ_j) − V(θ_j) (k,) for thetas (k, p) in closed form, if this data source has
        one (``None``: :meth:`Problem.field` differentiates :meth:`exact_risk` along probe masses)."""
        return None


def _dataset_unchecked(X, y) -> Dataset:
    return build(Dataset, X=X, y=y, sample_weights=jnp.full(X.shape[0], 1.0 / X.shape[0], X.dtype))


def subsample(data: Dataset, key: jax.Array, n: int) -> Dataset:
    """n samples drawn uniformly with replacement (respecting sample weights) from a
    Dataset — the minibatch of "sgd" on an empirical loss."""
    idx = jax.random.choice(key, data.X.shape[0], (n,), replace=True, p=data.sample_weights)
    return _dataset_unchecked(data.X[idx], data.y[idx])
