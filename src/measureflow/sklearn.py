"""scikit-learn estimators: a two-layer network trained as a particle system by ``mf.solve``.

    f_μ(x) = Σ_i w_i a_i σ(w_i·x + b_i),   μ = Σ_i w_i δ_{θ_i},  θ_i = (w_i, b_i, a_i) ∈ R^{d+2}

with masses w_i = 1/m (``n_units`` = m), fitted by minimizing F(μ) = Σ_j s_j ℓ(f_μ(x_j), y_j) +
∫V dμ over the particles, s_j = 1/n. :class:`MeanFieldRegressor` uses the square loss
ℓ = ½(f − y)²; :class:`MeanFieldClassifier` the logistic loss log(1 + e^{−yf}) on labels ±1,
one network for two classes and one network per class (one-vs-rest) for more.

``fit`` is (same numbers, to rounding)::

    feature = mf.features.ReLU(d, bias=True)                  # activation, bias
    problem = mf.Problem(feature, loss, mf.L2(alpha), mf.data.Dataset(X, y))
    mu0 = mf.init.admissible(feature, n_units, key=seed)       # seed: random_state
    result = mf.solve(problem, mu0, method, step, iterations=max_iter, tol=tol,
                      batch_size=batch_size, key=seed, history_every=10, snapshots=0)

and ``warm_start=True`` continues the previous fit: ``mf.solve(problem, result_, iterations=max_iter)``.
The data set is padded with zero-weight copies of its last sample to a bucket size
(:func:`padded_rows`) so that data sets of similar sizes share one compilation.

Needs scikit-learn ≥ 1.6 (the ``sklearn`` extra: ``pip install "measureflow[sklearn]"``).
"""

from __future__ import annotations

import dataclasses
import numbers

import jax
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from . import methods as _methods
from .data.base import Dataset
from .errors import ValidationError
from .features.base import Homogeneity
from .features.networks import ReLU, Sigmoid, Unit
from .init import admissible
from .particles import Particles
from .problem import Problem, block_size
from .regularizers import L1, L2
from .solvers import Result, solve

__all__ = ["MeanFieldRegressor", "MeanFieldClassifier", "Tanh"]

#: F and the stationarity are recorded (and ``tol`` tested) every this many steps. A constant,
#: not a fraction of ``max_iter``: a warm-started run then records where one long run would.
HISTORY_EVERY = 10


@dataclasses.dataclass(frozen=True)
class Tanh(Unit):
    """φ(θ, x) = a · tanh(w·x + b); partially 1-homogeneous in a (the admissible init puts
    a = 0). A module-level class, so that fitted estimators serialize (by reference to it)."""

    @property
    def homogeneity(self) -> Homogeneity:
        return Homogeneity.partial(1, self.dim - 1)

    @staticmethod
    def activation(z):
        return jax.numpy.tanh(z)


ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}
PENALTIES = ("l2", "l1")


def _param_error(est, name, requirement, value) -> ValidationError:
    # scikit-learn's wording for invalid hyper-parameters (InvalidParameterError)
    return ValidationError(f"The {name!r} parameter of {type(est).__name__} must be {requirement}. "
                           f"Got {value!r} instead.")


def _check_int(est, name, value, minimum, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum:
        req = f"an int in the range [{minimum}, inf)" + (" or None" if allow_none else "")
        raise _param_error(est, name, req, value)
    return int(value)


def _check_real(est, name, value, *, positive, allow_none=False):
    if value is None and allow_none:
        return None
    ok = (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and np.isfinite(value)
          and (value > 0 if positive else value >= 0))
    if not ok:
        req = f"a float in the range {'(0' if positive else '[0'}, inf)" + (" or None" if allow_none else "")
        raise _param_error(est, name, req, value)
    return float(value)


def _check_choice(est, name, value, choices, extra=""):
    if not isinstance(value, str) or value not in choices:
        req = "a str among {" + ", ".join(map(repr, choices)) + "}" + extra
        raise _param_error(est, name, req, value)
    return value


def padded_rows(n: int) -> int:
    """The number of rows a data set of n samples is padded to: the next power of two (at
    least 16) up to 4096, then the next multiple of an eighth of the octave (≤ 12.5% more)."""
    if n <= 4096:
        return max(16, 1 << (n - 1).bit_length())
    g = 1 << (n.bit_length() - 4)
    return -(-n // g) * g


def padded_dataset(X, y) -> Dataset:
    """Dataset(X, y) with the last sample repeated up to ``padded_rows(n)`` rows at weight 0.

    The empirical risk, its gradients and the minibatch draws are those of Dataset(X, y)
    (zero weights add exact zeros; the draws with replacement never pick them), and the
    compiled loop of mf.solve, specialized to the array shapes, is reused across data sets
    of similar sizes (cross-validation folds, scikit-learn's checks) instead of recompiled.
    """
    n = X.shape[0]
    N = padded_rows(n)
    s = np.zeros(N)
    s[:n] = 1.0
    Xp = np.concatenate([X, np.repeat(X[-1:], N - n, axis=0)])
    yp = np.concatenate([y, np.repeat(y[-1:], N - n)])
    return Dataset(Xp, yp, s)


class _MeanFieldNetwork(BaseEstimator):
    """Shared fit machinery: hyper-parameter checks, the problem, the (continued) solve."""

    _loss = "square"

    def __init__(self, n_units=100, *, activation="relu", bias=True, method="gd", step=None, max_iter=1000,
                 tol=1e-6, alpha=0.0, penalty="l2", batch_size=None, warm_start=False, random_state=None):
        self.n_units = n_units
        self.activation = activation
        self.bias = bias
        self.method = method
        self.step = step
        self.max_iter = max_iter
        self.tol = tol
        self.alpha = alpha
        self.penalty = penalty
        self.batch_size = batch_size
        self.warm_start = warm_start
        self.random_state = random_state

    # -- hyper-parameters ---------------------------------------------------------------
    def _checked_params(self) -> dict:
        """The hyper-parameters, checked (scikit-learn style ValueError naming the
        parameter) before any work."""
        p = {"n_units": _check_int(self, "n_units", self.n_units, 1),
             "max_iter": _check_int(self, "max_iter", self.max_iter, 1),
             "batch_size": _check_int(self, "batch_size", self.batch_size, 1, allow_none=True),
             "step": _check_real(self, "step", self.step, positive=True, allow_none=True),
             "tol": _check_real(self, "tol", self.tol, positive=True, allow_none=True),
             "alpha": _check_real(self, "alpha", self.alpha, positive=False),
             "activation": _check_choice(self, "activation", self.activation, tuple(ACTIVATIONS)),
             "penalty": _check_choice(self, "penalty", self.penalty, PENALTIES)}
        for name in ("bias", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise _param_error(self, name, "an instance of 'bool'", getattr(self, name))
        if not isinstance(self.method, _methods.Rule):
            _check_choice(self, "method", self.method, _methods.SHORTCUTS, " or a mf.methods rule")
        return p

    def _feature(self, p, d) -> Unit:
        return ACTIVATIONS[p["activation"]](d, bias=bool(self.bias))

    def _regularizer(self, p):
        if p["alpha"] == 0:
            return None
        return L2(p["alpha"]) if p["penalty"] == "l2" else L1(p["alpha"])

    def _seed(self) -> int:
        # an int random_state is the seed itself (so a fit equals mf.solve with key=seed);
        # None or a RandomState draws one
        rng = check_random_state(self.random_state)  # refuses what scikit-learn refuses (e.g. -1)
        if isinstance(self.random_state, numbers.Integral) and not isinstance(self.random_state, bool):
            return int(self.random_state)
        return int(rng.randint(np.iinfo(np.int32).max))

    def _solve(self, p, feature, X, y, previous: Result | None, seed: int) -> Result:
        """One particle system: a new run from the admissible init, or ``previous`` continued."""
        problem = Problem(feature, self._loss, self._regularizer(p), padded_dataset(X, y))
        batch = p["batch_size"]
        if self.method == "sgd" and batch is None:
            batch = min(200, X.shape[0])  # scikit-learn's batch_size="auto"
        if previous is not None:
            return solve(problem, previous, self.method, p["step"], p["max_iter"], tol=p["tol"], batch_size=batch,
                         snapshots=0)
        mu0 = admissible(feature, p["n_units"], key=seed)
        return solve(problem, mu0, self.method, p["step"], p["max_iter"], tol=p["tol"], batch_size=batch, key=seed,
                     history_every=HISTORY_EVERY, snapshots=0)

    def _continuing(self, X) -> bool:
        if not (self.warm_start and hasattr(self, "result_")):
            return False
        if X.shape[1] != self.n_features_in_:
            raise ValidationError(f"warm_start=True: X has {X.shape[1]} features, but {type(self).__name__} was "
                                  f"fitted with {self.n_features_in_} features; fit with warm_start=False")
        return True

    def _predict_network(self, particles: Particles, X) -> np.ndarray:
        """f_μ(X) (n,) in blocks of samples (no m × n matrix for large n)."""
        P, w = particles.positions, particles.weights
        B = block_size(P.shape[0], X.shape[0]) or X.shape[0]
        return np.concatenate([np.asarray(w @ self.feature_.matrix(P, X[i:i + B])) for i in range(0, X.shape[0], B)])


def _summaries(results):
    """(n_iter_, history_, converged_) from one Result or a list (one per class)."""
    if isinstance(results, Result):
        return results.iteration, np.asarray(results.history), results.converged
    return (np.array([r.iteration for r in results]), [np.asarray(r.history) for r in results],
            np.array([r.converged for r in results]))


class MeanFieldRegressor(RegressorMixin, _MeanFieldNetwork):
    """Two-layer network f(x) = (1/m) Σ_i a_i σ(w_i·x + b_i) fitted by a particle method (square loss).

    Parameters
    ----------
    n_units : int ≥ 1, default 100
        m, the number of hidden units (particles θ_i = (w_i, b_i, a_i)).
    activation : {"relu", "sigmoid", "tanh"}, default "relu"
        σ: mf.features.ReLU (2-homogeneous, init uniform on the unit sphere), Sigmoid or
        :class:`Tanh` (1-homogeneous in a, init a = 0, (w, b) ~ N(0, I)).
    bias : bool, default True
        Whether the units carry a bias b.
    method : {"gd", "fb", "wfr", "sgd"} or a mf.methods rule, default "gd"
        The update rule of ``mf.solve``; "sgd" draws ``batch_size`` samples per step.
    step : float > 0 or None, default None
        η; None: measureflow's default (1 / curvature at μ0, halved when F rises).
    max_iter : int ≥ 1, default 1000
        Most steps per fit (``n_iter_`` reports those taken).
    tol : float > 0 or None, default 1e-6
        Stop when the stationarity Σ_i w_i|∇F'(θ_i)|² is ≤ tol times its value at the start
        (tested every 10 steps); None: always run ``max_iter`` steps.
    alpha : float ≥ 0, default 0.0
        Penalty strength λ of ∫V dμ.
    penalty : {"l2", "l1"}, default "l2"
        V(θ) = λ|θ|² (weight decay) or λ|a| on the output weight (needs "fb" or "sgd").
    batch_size : int ≥ 1 or None, default None
        Samples per step (drawn with replacement); None: full batch ("sgd": min(200, n)).
    warm_start : bool, default False
        Continue the previous fit (``mf.solve(problem, result_, iterations=max_iter)``,
        bit-identical to one longer run on the same data).
    random_state : int, RandomState or None
        An int is the seed of the init and of the minibatches (a fit then equals
        ``mf.solve`` with ``key=random_state``).

    Attributes
    ----------
    particles_ : mf.Particles, positions (m, p) and masses (m,)
    result_ : mf.Result of the last fit (its ``state`` continues it)
    n_iter_ : int, iterations reached (counted from the first fit under warm_start)
    history_ : ndarray, F every 10 iterations of the last fit
    converged_ : bool, whether ``tol`` stopped the run; ``status_`` the Result's status
    feature_ : the mf feature; ``n_features_in_`` (and ``feature_names_in_``)
    """

    def fit(self, X, y):
        """Fit the network on X (n, d) and real targets y (n,); returns self."""
        p = self._checked_params()
        if y is not None:
            y_arr = column_or_1d(y, warn=True)
            if y_arr.dtype.kind in "OUSb" and not _numeric(y_arr):
                raise ValidationError(f"MeanFieldRegressor needs numeric targets y, got values of dtype {y_arr.dtype} "
                                      f"(a {type_of_target(y_arr)} target); for labels use MeanFieldClassifier")
        X, y = validate_data(self, X, y, reset=True, dtype=np.float64, y_numeric=True)
        previous = self.result_ if self._continuing(X) else None
        self.feature_ = self._feature(p, X.shape[1])
        self.result_ = self._solve(p, self.feature_, X, y, previous, self._seed())
        self.particles_ = self.result_.particles
        self.n_iter_, self.history_, self.converged_ = _summaries(self.result_)
        self.status_ = self.result_.status
        return self

    def predict(self, X):
        """f_μ(X) (n,)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self._predict_network(self.particles_, X)


def _numeric(y) -> bool:
    try:
        y.astype(np.float64)
    except (TypeError, ValueError):
        return False
    return y.dtype.kind != "b"


class MeanFieldClassifier(ClassifierMixin, _MeanFieldNetwork):
    """Two-layer network classifier trained by a particle method with the logistic loss.

    Two classes: one network f, labels ±1 (``classes_[1]`` is +1), loss log(1 + e^{−yf}),
    ``decision_function`` = f (n,), ``predict_proba`` = (1 − s(f), s(f)) with s the sigmoid.
    K > 2 classes: one-vs-rest, K independent networks f_k (class k against the others, each
    with the same hyper-parameters and seed), ``decision_function`` = (f_1..f_K) (n, K),
    prediction argmax_k f_k, ``predict_proba`` = s(f_k) / Σ_l s(f_l).

    Parameters are those of :class:`MeanFieldRegressor`. Attributes as there, with for
    K > 2 one entry per class: ``particles_`` / ``result_`` / ``history_`` lists, ``n_iter_``
    and ``converged_`` arrays (K,); plus ``classes_`` (sorted labels).
    """

    _loss = "logistic"

    def fit(self, X, y):
        """Fit on X (n, d) and labels y (n,) with at least two classes; returns self."""
        p = self._checked_params()
        X, y = validate_data(self, X, y, reset=True, dtype=np.float64)
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValidationError(f"MeanFieldClassifier needs at least 2 classes in y, got 1 class: {classes.tolist()[0]!r}")
        continuing = self._continuing(X)
        if continuing and not np.array_equal(classes, self.classes_):
            raise ValidationError(f"warm_start=True: y has the classes {classes.tolist()}, but the previous fit had "
                                  f"{self.classes_.tolist()}; fit with warm_start=False")
        self.classes_ = classes
        self.feature_ = self._feature(p, X.shape[1])
        seed = self._seed()
        # one logistic problem per network: labels ±1 for class 1 (binary) or class k (one-vs-rest)
        positives = [1] if len(classes) == 2 else range(len(classes))
        previous = (self.result_ if isinstance(self.result_, list) else [self.result_]) if continuing else None
        results = [self._solve(p, self.feature_, X, np.where(codes == k, 1.0, -1.0), previous and previous[i], seed)
                   for i, k in enumerate(positives)]
        self.result_ = results[0] if len(results) == 1 else results
        self.particles_ = results[0].particles if len(results) == 1 else [r.particles for r in results]
        self.n_iter_, self.history_, self.converged_ = _summaries(self.result_)
        self.status_ = [r.status for r in results] if len(results) > 1 else results[0].status
        return self

    def decision_function(self, X):
        """f(X) (n,) for two classes (> 0: ``classes_[1]``), (f_k(X)) (n, K) for K > 2."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        if isinstance(self.particles_, Particles):
            return self._predict_network(self.particles_, X)
        return np.stack([self._predict_network(P, X) for P in self.particles_], axis=1)

    def predict_proba(self, X):
        """Class probabilities (n, K): the logistic model's for two classes, normalized
        one-vs-rest sigmoids for more."""
        f = self.decision_function(X)
        if f.ndim == 1:
            return np.stack([_sigmoid(-f), _sigmoid(f)], axis=1)
        s = _sigmoid(f)
        return s / s.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        return np.log(self.predict_proba(X))

    def predict(self, X):
        """The class with the largest decision value (for two classes: f > 0 → ``classes_[1]``)."""
        f = self.decision_function(X)
        idx = (f > 0).astype(int) if f.ndim == 1 else np.argmax(f, axis=1)
        return self.classes_[idx]


def _sigmoid(f):
    # 1 / (1 + e^{-f}) without overflow for large |f|
    return np.exp(-np.logaddexp(0.0, -f))
