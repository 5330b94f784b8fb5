"""Hidden units of a two-layer network, φ(θ, x) = a·σ(w·x + b).

θ = (w, b, a) ∈ R^{d+2} with a bias, θ = (w, a) ∈ R^{d+1} without; the output weight a is
the last coordinate (``weight_index``). A network with m hidden units is the measure
μ = Σ_i w_i δ_{θ_i} (mean-field masses w_i = 1/m): f_μ(x) = Σ_i w_i a_i σ(w_i·x + b_i).

- :class:`ReLU`: σ(z) = max(z, 0); φ(λθ) = λ² φ(θ) (fully 2-homogeneous).
- :class:`Sigmoid`: σ(z) = 1 / (1 + e^{−z}); 1-homogeneous in a only (partial).
- :class:`Erf`: σ(z) = erf(z), a sigmoid-shaped unit whose Gaussian second moments
  are in closed form (the arcsine kernel); partially 1-homogeneous like the sigmoid.

``second_moment(thetas, others, inputs)`` gives E_x[φ(θ_i, x) φ(θ'_j, x)] in closed form
where one is known (:mod:`measureflow.population`), else ``None``; the teacher–student
data use it for the exact population risk.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .. import population
from ..errors import InputTypeError
from ..validation import check_int
from .base import Feature, Homogeneity


@dataclasses.dataclass(frozen=True)
class Unit(Feature):
    """Base class of the network units: ``a · activation(w·x + b)``.

    input_dim  d, the dimension of x
    bias       whether θ carries a bias b (θ = (w, b, a)) or not (θ = (w, a))
    """

    input_dim: int
    bias: bool = False

    def __post_init__(self):
        object.__setattr__(self, "input_dim", check_int("input_dim", self.input_dim, minimum=1))
        if not isinstance(self.bias, (bool, np.bool_)):
            raise InputTypeError(f"bias must be True or False, got {self.bias!r}")
        object.__setattr__(self, "bias", bool(self.bias))

    @property
    def dim(self) -> int:
        return self.input_dim + int(self.bias) + 1

    @property
    def weight_index(self) -> int:
        return self.dim - 1

    @staticmethod
    def activation(z: jax.Array) -> jax.Array:
        raise NotImplementedError

    def unpack(self, thetas: jax.Array):
        """(w (..., d), b (...) — zeros without a bias —, a (...)) from thetas (..., p)."""
        d = self.input_dim
        b = thetas[..., d] if self.bias else jnp.zeros(thetas.shape[:-1], thetas.dtype)
        return thetas[..., :d], b, thetas[..., -1]

    def __call__(self, theta, x):
        w, b, a = self.unpack(theta)
        return a * self.activation(w @ x + b)

    def matrix(self, thetas, X):
        # One (m, d) x (d, n) product, then the activation: the solvers' hot path.
        W, b, a = self.unpack(thetas)
        Z = W @ X.T
        if self.bias:
            Z = Z + b[:, None]
        return a[:, None] * self.activation(Z)

    def second_moment(self, thetas: jax.Array, others: jax.Array, inputs: str):
        """E_x[φ(θ_i, x) φ(θ'_j, x)] (m, k) for thetas (m, p), others (k, p) and x drawn
        from ``inputs`` ("gaussian": N(0, I_d), "sphere": uniform on S^{d−1}), or
        ``None`` when no closed form is implemented (decided from static information)."""
        return None


@dataclasses.dataclass(frozen=True)
class ReLU(Unit):
    """φ(θ, x) = a · max(w·x + b, 0), fully 2-homogeneous: φ(λθ, x) = λ² φ(θ, x), λ > 0.

    Closed-form second moments: without bias on Gaussian inputs (arc-cosine kernel) and
    on the sphere (the same divided by d); with a bias for d = 1 on Gaussian inputs.
    """

    @property
    def homogeneity(self) -> Homogeneity:
        return Homogeneity.full(2)

    @staticmethod
    def activation(z):
        return jax.nn.relu(z)

    def second_moment(self, thetas, others, inputs):
        W, b, a = self.unpack(thetas)
        V, c, a2 = self.unpack(others)
        if inputs == "gaussian" and not self.bias:
            K = population.relu_kernel(W, V)
        elif inputs == "sphere" and not self.bias:
            # x = |g| u with |g| independent of u and E|g|² = d; relu·relu is 2-homogeneous in x
            K = population.relu_kernel(W, V) / self.input_dim
        elif inputs == "gaussian" and self.input_dim == 1:
            K = population.relu_bias_kernel_1d(W[:, 0], b, V[:, 0], c)
        else:
            return None
        return a[:, None] * K * a2[None, :]


@dataclasses.dataclass(frozen=True)
class Sigmoid(Unit):
    """φ(θ, x) = a · σ(w·x + b), σ(z) = 1/(1 + e^{−z}); partially 1-homogeneous in a.

    σ is evaluated overflow-free (``jax.nn.sigmoid``) in float32 and float64. The
    admissible init puts a = 0 and draws (w, b) from N(0, I).
    """

    @property
    def homogeneity(self) -> Homogeneity:
        return Homogeneity.partial(1, self.dim - 1)

    @staticmethod
    def activation(z):
        return jax.nn.sigmoid(z)


@dataclasses.dataclass(frozen=True)
class Erf(Unit):
    """φ(θ, x) = a · erf(w·x + b); partially 1-homogeneous in a. Without a bias and on
    Gaussian inputs its second moments are the arcsine kernel, so the teacher–student
    square loss is exact."""

    @property
    def homogeneity(self) -> Homogeneity:
        return Homogeneity.partial(1, self.dim - 1)

    @staticmethod
    def activation(z):
        return jax.lax.erf(z)

    def second_moment(self, thetas, others, inputs):
        if inputs != "gaussian" or self.bias:
            return None
        W, _, a = self.unpack(thetas)
        V, _, a2 = self.unpack(others)
        return a[:, None] * population.erf_kernel(W, V) * a2[None, :]
