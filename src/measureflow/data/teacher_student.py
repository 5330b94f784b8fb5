"""Teacher–student data for two-layer networks.

The teacher is itself a network in mean-field form: m0 units θ*_k = (w*_k, b*_k, a*_k)
with masses 1/m0,

    f*(x) = (1/m0) Σ_k a*_k σ(w*_k·x + b*_k),

(w*_k, b*_k) uniform on the sphere of radius ``teacher_scale`` in R^{d(+1)} and
a*_k = ±``output_scale`` (default 1) with random signs. A student with m ≥ m0 particles of mass 1/m can represent
f* exactly (e.g. n_k particles at (w*_k, b*_k, a*_k · m / (m0 n_k))), so without noise
the optimal risk is 0 for the square loss (realizable teacher).

Inputs x ~ N(0, I_d) ("gaussian") or uniform on the unit sphere S^{d−1} ("sphere").
Regression: y = f*(x) + noise·ε; classification: y = sign(f*(x) + noise·ε) ∈ {−1, +1}
(use the logistic loss), ε ~ N(0, 1), with sign(0) = +1 (a ReLU teacher with biases
vanishes on whole regions of the input space).

Fresh minibatches (``sample``, the draws of ``method="sgd"``) draw their Gaussians with
``batch_draws``: "exact" (``jax.random.normal`` in the working dtype) or "float32" (drawn
in float32, then cast: the same law up to float32 rounding of each draw, relative 6e-8,
and |z| ≤ 5.4, a tail of probability 7e-8; about 3x cheaper in float64 on CPU, where
fresh-sample SGD in d = 100 is bound by the random-number generator). The training and
held-out sets are always drawn exactly, so they do not depend on this choice.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from .. import losses as _losses
from .. import population
from .._pytree import pytree_dataclass
from ..errors import InputTypeError, ValidationError
from ..features.networks import Erf, ReLU, Sigmoid, Unit
from ..particles import Particles
from ..validation import check_choice, check_int, check_memory, check_real, check_seed
from .base import Dataset, Sampler, _dataset_unchecked

ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "erf": Erf}
INPUTS = ("gaussian", "sphere")
TASKS = ("regression", "classification")
BATCH_DRAWS = ("exact", "float32")


def normals(key: jax.Array, shape, dtype=None, draws: str = "exact") -> jax.Array:
    """Standard normal draws of ``shape`` in ``dtype``: "exact" draws them in ``dtype``,
    "float32" in float32 and casts (same law up to float32 rounding; cheaper in float64)."""
    dtype = dtype or jnp.result_type(float)
    if draws == "float32":
        return jax.random.normal(key, shape, jnp.float32).astype(dtype)
    return jax.random.normal(key, shape, dtype)


def sample_inputs(key: jax.Array, n: int, input_dim: int, inputs: str, dtype=None, draws: str = "exact") -> jax.Array:
    """n inputs (n, d): N(0, I_d) or uniform on the unit sphere S^{d−1} (Gaussians drawn
    as ``draws``, see :func:`normals`)."""
    X = normals(key, (n, input_dim), dtype, draws)
    if inputs == "sphere":
        X = X / jnp.linalg.norm(X, axis=1, keepdims=True)
    return X


@dataclasses.dataclass(frozen=True)
class TeacherDraw:
    """The sampling rule ``(key, n, teacher (m0, p)) -> (X (n, d), y (n,))`` of a
    teacher–student problem (hashable: a static part of the sampler). ``draws`` is how
    its Gaussians are drawn (:func:`normals`)."""

    feature: Unit
    inputs: str
    task: str
    noise: float
    draws: str = "exact"

    def __call__(self, key, n, teacher):
        kx, ke = jax.random.split(key)
        X = sample_inputs(kx, n, self.feature.input_dim, self.inputs, teacher.dtype, self.draws)
        f = jnp.mean(self.feature.matrix(teacher, X), axis=0)
        if self.noise > 0:
            f = f + self.noise * normals(ke, f.shape, f.dtype, self.draws)
        if self.task == "classification":
            return X, jnp.where(f >= 0, 1.0, -1.0).astype(f.dtype)
        return X, f


def _teacher_feature(activation, input_dim, bias) -> Unit:
    if isinstance(activation, Unit):
        if activation.input_dim != input_dim:
            raise ValidationError(
                f"activation {activation!r} has input_dim={activation.input_dim}, but input_dim={input_dim}")
        if bias is not None and bool(bias) != activation.bias:
            raise ValidationError(f"bias={bias!r} contradicts the teacher feature {activation!r}")
        return activation
    if isinstance(activation, str):
        cls = ACTIVATIONS[check_choice("activation", activation, ACTIVATIONS)]
        return cls(input_dim, bias=False if bias is None else bias)
    raise InputTypeError(
        f"activation must be 'relu', 'sigmoid', 'erf' or a network feature (mf.features.ReLU, ...), got {activation!r}")


@pytree_dataclass
class TeacherStudent(Sampler):
    """``TeacherStudent(input_dim, teacher_units, activation="relu", bias=False,
    inputs="gaussian", task="regression", noise=0.0, seed=0)``.

    A :class:`Sampler` of fresh teacher–student samples (the population loss, for
    ``method="sgd"``) whose leaf ``params`` holds the teacher units (m0, p);
    :meth:`training_set` gives a fixed sample for full-batch GD. The objective of a
    Problem on this sampler is the exact population risk when a closed form exists
    (square loss; ReLU without bias on Gaussian or sphere inputs, ReLU with bias for
    d = 1 on Gaussian inputs, Erf without bias on Gaussian inputs), else the average
    over a held-out draw of ``eval_size`` samples (seed ``eval_seed``).

    activation     "relu", "sigmoid", "erf" or a network feature (its bias is used)
    teacher_scale  radius of the teacher's (w*, b*) (sharpness of sigmoid/erf units)
    output_scale   |a*_k| of the teacher's output weights (random signs). For sigmoid/erf
                   units it sets the ratio of the position and weight speeds of the flow
                   (∇_w F' ∝ a, ∇_a F' ∝ 1); for ReLU it is a rescaling of the problem
    batch_draws    "exact" or "float32": how fresh minibatches draw their Gaussians
                   (module docstring); training and held-out sets are always exact
    cache_held_out draw the held-out set once and keep it (:meth:`Sampler.cache_held_out`):
                   for SGD runs whose records evaluate F and the stationarity on it

    Teachers drawn with different seeds share their static structure (and held-out
    inputs), so problems over many seeds stack into one ``mf.solve_batch``.
    """

    def __init__(self, input_dim, teacher_units, activation="relu", *, bias=None, inputs="gaussian",
                 task="regression", noise=0.0, seed=0, teacher_scale=1.0, output_scale=1.0, eval_size=100_000,
                 eval_seed=0, batch_draws="exact", cache_held_out=False):
        input_dim = check_int("input_dim", input_dim, minimum=1)
        m0 = check_int("teacher_units", teacher_units, minimum=1)
        feature = _teacher_feature(activation, input_dim, bias)
        check_choice("inputs", inputs, INPUTS)
        check_choice("task", task, TASKS)
        noise = check_real("noise", noise, nonnegative=True)
        seed = check_seed("seed", seed)
        check_memory(f"eval_size={eval_size} held-out samples in R^{input_dim}",
                     (input_dim + 2) * 8 * check_int("eval_size", eval_size, minimum=1), "lower eval_size")
        scale = check_real("teacher_scale", teacher_scale, positive=True)
        out_scale = check_real("output_scale", output_scale, positive=True)
        check_choice("batch_draws", batch_draws, BATCH_DRAWS)
        teacher = _random_teacher(_keys(seed)[0], feature, m0, scale, out_scale)
        super().__init__(TeacherDraw(feature, inputs, task, noise, batch_draws), input_dim, params=teacher,
                         eval_size=eval_size, eval_seed=eval_seed)
        if not isinstance(cache_held_out, (bool, np.bool_)):
            raise InputTypeError(f"cache_held_out must be True or False, got {cache_held_out!r}")
        if cache_held_out:
            object.__setattr__(self, "held_out", self.evaluation_set())

    # -- description -------------------------------------------------------------------
    @property
    def teacher(self) -> jax.Array:
        """The teacher units θ*_k (m0, p)."""
        return self.params

    @property
    def teacher_feature(self) -> Unit:
        return self.draw.feature

    @property
    def inputs(self) -> str:
        return self.draw.inputs

    @property
    def task(self) -> str:
        return self.draw.task

    @property
    def noise(self) -> float:
        return self.draw.noise

    @property
    def batch_draws(self) -> str:
        return self.draw.draws

    @property
    def teacher_units(self) -> int:
        return self.params.shape[0]

    @property
    def _exact_draw(self) -> TeacherDraw:
        return dataclasses.replace(self.draw, draws="exact")

    def teacher_particles(self) -> Particles:
        """The teacher as a measure: units θ*_k with masses 1/m0."""
        return Particles(np.asarray(self.params))

    def target(self, X) -> jax.Array:
        """f*(x) for X (n, d), noise-free; returns (n,)."""
        return jnp.mean(self.teacher_feature.matrix(self.params, jnp.asarray(X)), axis=0)

    # -- samples -----------------------------------------------------------------------
    def training_set(self, n: int, seed: int = 0) -> Dataset:
        """A fixed training set of n samples (independent of the held-out set)."""
        n = check_int("n", n, minimum=1)
        check_memory(f"a training set of n={n} samples in R^{self.input_dim}", 2 * (self.input_dim + 2) * 8 * n,
                     "lower n")
        X, y = _draw(self._exact_draw, _keys(check_seed("seed", seed))[1], n, self.params)
        return Dataset(np.asarray(X), np.asarray(y))

    def evaluation_set(self) -> Dataset:
        if self.held_out is not None:
            return self.held_out
        X, y = _draw(self._exact_draw, _keys(self.eval_seed)[2], self.eval_size, self.params)
        return _dataset_unchecked(X, y)

    # -- population risk ---------------------------------------------------------------
    def _closed_form(self, feature, loss):
        """The kernel K(A, B) = E[φ(A, x) φ(B, x)] of the closed-form risk when the student has
        the teacher's feature, the task is regression and the loss the square loss; ``None``
        otherwise (a trace-time decision)."""
        if self.task != "regression" or not _losses.get(loss).quadratic or feature != self.teacher_feature:
            return None
        K = lambda A, B: feature.second_moment(A, B, self.inputs)  # noqa: E731
        T = self.params
        return None if K(T[:1], T[:1]) is None else K

    def _teacher_masses(self):
        T = self.params
        return jnp.full(T.shape[0], 1.0 / T.shape[0], T.dtype)

    def exact_risk(self, feature, loss, particles):
        """½ E(f_μ − y)² in closed form (a quadratic form in the output weights, see
        :mod:`measureflow.population`) where :meth:`_closed_form` has a kernel; ``None``
        otherwise."""
        K = self._closed_form(feature, loss)
        if K is None:
            return None
        P, T, w, c = particles.positions, self.params, particles.weights, self._teacher_masses()
        # the student–student term in blocks of rows: no m × m kernel matrix for large m
        ss = population.quadratic_form(K, P, w, P, w)
        return 0.5 * (ss - 2.0 * (w @ K(P, T) @ c) + c @ K(T, T) @ c) + 0.5 * self.noise**2

    def exact_first_variation(self, feature, loss, particles, thetas):
        """E[(f_μ − f*)(x) φ(θ_j, x)] = Σ_i w_i K(θ_j, θ_i) − Σ_k c_k K(θ_j, θ*_k) (k,) for thetas
        (k, p), where :meth:`exact_risk` has its closed form; ``None`` otherwise. One kernel
        pass (in blocks of rows: no k × m matrix), where differentiating the risk along probe
        masses costs about five."""
        K = self._closed_form(feature, loss)
        if K is None:
            return None
        return (population.kernel_matvec(K, thetas, particles.positions, particles.weights)
                - K(thetas, self.params) @ self._teacher_masses())

    def optimal_risk(self, loss) -> float | None:
        """inf over students of the population risk: ½ noise² for regression with the
        square loss, 0 for noise-free classification with the logistic loss (an infimum,
        approached as the margin grows); ``None`` when not known."""
        loss = _losses.get(loss)
        if self.task == "regression" and loss.quadratic:
            return 0.5 * self.noise**2
        if self.task == "classification" and loss == _losses.logistic and self.noise == 0:
            return 0.0
        return None


def _keys(seed: int):
    """Independent keys for the teacher, the training set and the held-out set."""
    return jax.random.split(jax.random.PRNGKey(seed), 3)


# One compiled function per shape instead of a dozen eagerly dispatched operations.
_draw = jax.jit(lambda draw, key, n, teacher: draw(key, n, teacher), static_argnums=(0, 2))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _random_teacher(key, feature: Unit, m0: int, scale: float, out_scale: float = 1.0) -> jax.Array:
    kd, ks = jax.random.split(key)
    g = jax.random.normal(kd, (m0, feature.dim - 1))
    inner = scale * g / jnp.linalg.norm(g, axis=1, keepdims=True)
    a = out_scale * jnp.where(jax.random.bernoulli(ks, 0.5, (m0,)), 1.0, -1.0)
    return jnp.concatenate([inner, a[:, None]], axis=1)
