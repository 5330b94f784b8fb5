"""Diagnostics of a particle measure: its differential entropy, and the Hessian spectrum of
F at the particles (minimum or saddle?).

- :func:`entropy`: the Kozachenko–Leonenko k-nearest-neighbour estimate of
  H(μ) = −∫ log(dμ/dθ) dμ from samples (the entropic term of mean-field Langevin).
- :func:`hessian_spectrum`: the extreme eigenvalues of the mean-field-scaled Hessian
  W^{−1/2} ∇²F W^{−1/2} by Lanczos on Hessian-vector products, with the flat directions
  that the feature's homogeneity creates projected out and reported separately.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse.linalg as spla
from scipy.spatial import cKDTree
from scipy.special import digamma, gammaln

from .errors import InputTypeError, MeasureflowError, ValidationError
from .particles import Particles
from .problem import Problem
from .validation import check_array, check_choice, check_int, check_real

# -- entropy --------------------------------------------------------------------------------


def entropy(positions, k: int = 1, *, boxsize=None) -> float:
    """Kozachenko–Leonenko estimate of the differential entropy (nats) of the law of the
    N samples ``positions`` (N, d):

        Ĥ = ψ(N) − ψ(k) + log V_d + (d/N) Σ_i log ε_i,     V_d = π^{d/2} / Γ(d/2 + 1),

    ε_i the Euclidean distance from sample i to its k-th nearest neighbour (a k-d tree,
    ``scipy.spatial.cKDTree``). For an equal-weight particle measure this is the entropy of
    the law the particles are drawn from, not of the atomic measure (whose entropy is −∞).
    ``boxsize=L``: positions on the torus [0, L)^d (periodic distances, e.g. spikes on
    T^d, ``L = 1``), where a uniform law has no boundary and no boundary bias.

    Bias. Ĥ is consistent for any k fixed as N → ∞ (densities with a finite moment and
    log f integrable). At finite N it assumes the density constant on each neighbour ball:
    for a smooth density bounded away from zero the bias is O((k/N)^{2/d}); at the edge of
    a compact support (uniform laws) balls stick out and Ĥ is biased upwards, by
    O((k/N)^{1/d}); in high dimension both decay slowly (d ≥ 4: slower than the N^{−1/2}
    noise). Its standard deviation is about sqrt((Var log f(X) + ψ'(k)) / N) (ψ' the
    trigamma function, the variance of log of the Gamma(k) ball mass): a larger k lowers
    the variance and raises the bias. Duplicate samples (ε_i = 0) make it −∞ and are
    refused.
    """
    X = check_array("positions", positions)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValidationError(f"positions must have shape (N, d), got {X.shape}")
    N, d = X.shape
    k = check_int("k", k, minimum=1)
    if k >= N:
        raise ValidationError(f"k={k} neighbours need at least k + 1 = {k + 1} samples, got N={N}")
    if boxsize is not None:
        boxsize = check_real("boxsize", boxsize, positive=True)
        if np.any((X < 0) | (X >= boxsize)):
            raise ValidationError(f"positions must lie in [0, boxsize) = [0, {boxsize:g}) on the torus; wrap them first")
    dist, _ = cKDTree(X, boxsize=boxsize).query(X, k=k + 1)  # the first neighbour is the point itself
    eps = dist[:, -1]
    if np.any(eps <= 0):
        raise ValidationError(f"{int(np.sum(eps <= 0))} samples have k={k} or more exact duplicates (zero distance "
                              "to their k-th neighbour): the entropy estimate would be -inf; use a larger k or "
                              "de-duplicate the positions")
    log_vd = 0.5 * d * math.log(math.pi) - gammaln(0.5 * d + 1.0)
    return float(digamma(N) - digamma(k) + log_vd + d * np.mean(np.log(eps)))
