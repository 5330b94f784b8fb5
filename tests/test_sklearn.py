"""measureflow.sklearn: scikit-learn's own estimator checks, pipelines and model selection,
clone/pickle, equality with mf.solve, warm starts and bad input."""

import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn is the optional 'sklearn' extra")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import measureflow as mf  # noqa: E402
from measureflow.sklearn import MeanFieldClassifier, MeanFieldRegressor  # noqa: E402

# Small instances. scikit-learn's checks fit ~100 times on data sets of ~30 shapes, and each
# new shape compiles the solver's loop (~3-10 s on 2 shared cores): the default run has the
# API checks (legacy=False), `-m slow` all of them (what `check_estimator` runs).
CHECKED = [MeanFieldRegressor(n_units=16, max_iter=50), MeanFieldClassifier(n_units=16, max_iter=50)]


@parametrize_with_checks(CHECKED, legacy=False)
def test_scikit_learn_api_checks(estimator, check):
    check(estimator)


@pytest.mark.slow
@parametrize_with_checks(CHECKED)
def test_scikit_learn_estimator_checks_all(estimator, check):
    check(estimator)


def _regression(n=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X, np.tanh(X @ np.arange(1.0, d + 1)) + 0.3 * X[:, 0]


def test_pipeline_under_grid_search_fits():
    X, y = _regression()
    pipe = make_pipeline(StandardScaler(), MeanFieldRegressor(n_units=10, max_iter=100, random_state=0))
    search = GridSearchCV(pipe, {"meanfieldregressor__alpha": [0.0, 1e-3], "meanfieldregressor__tol": [None, 1e-4]},
                          cv=3)
    search.fit(X, y)  # folds of 40 samples and the refit on 60: one compilation (64 rows)
    assert set(search.best_params_) == {"meanfieldregressor__alpha", "meanfieldregressor__tol"}
    assert search.best_estimator_[-1].n_iter_ >= 1 and search.score(X, y) > 0.5


@pytest.mark.parametrize("est, target", [
    (MeanFieldRegressor(n_units=10, max_iter=80, activation="tanh", random_state=3), "real"),
    (MeanFieldClassifier(n_units=10, max_iter=80, random_state=3), "three classes"),
])
def test_clone_and_pickle_round_trip_a_fitted_estimator(est, target):
    X, y = _regression()
    if target == "three classes":
        y = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
    fitted = est.fit(X, y)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))
    if target == "three classes":
        np.testing.assert_array_equal(again.predict_proba(X), fitted.predict_proba(X))
    # clone: same hyper-parameters, unfitted; refitting reproduces the fit (random_state)
    twin = clone(fitted)
    assert twin.get_params() == fitted.get_params() and not hasattr(twin, "particles_")
    np.testing.assert_array_equal(twin.fit(X, y).predict(X), fitted.predict(X))


def test_teacher_student_fit_equals_mf_solve():
    """Same data, seed and rule: the estimator's particles and excess population loss are
    those of mf.solve (the teacher-student population risk is in closed form)."""
    ts = mf.data.TeacherStudent(input_dim=4, teacher_units=3, activation="relu", bias=False, seed=1)
    data = ts.training_set(200, seed=2)
    est = MeanFieldRegressor(n_units=24, activation="relu", bias=False, max_iter=400, tol=None, random_state=7)
    est.fit(np.asarray(data.X), np.asarray(data.y))

    feature = mf.features.ReLU(4, bias=False)
    res = mf.solve(mf.Problem(feature, "square", None, data), mf.init.admissible(feature, 24, key=7), "gd",
                   iterations=400)
    population = mf.Problem(ts.teacher_feature, data=ts)
    excess = lambda P: float(population.risk(P)) - ts.optimal_risk("square")  # noqa: E731
    assert est.n_iter_ == res.iteration == 400
    assert excess(res.particles) < 0.5 * excess(mf.init.admissible(feature, 24, key=7))  # it learned
    assert abs(excess(est.particles_) - excess(res.particles)) <= 1e-10
    np.testing.assert_allclose(est.particles_.positions, res.particles.positions, rtol=0, atol=1e-10)
    np.testing.assert_allclose(est.predict(np.asarray(data.X)), population.predict(res.particles, data.X), atol=1e-10)


@pytest.mark.parametrize("cls, method", [(MeanFieldRegressor, "gd"), (MeanFieldRegressor, "sgd"),
                                         (MeanFieldClassifier, "gd")])
def test_warm_start_two_fits_equal_one_of_twice_the_iterations(cls, method):
    X, y = _regression()
    if cls is MeanFieldClassifier:
        y = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
    kw = dict(n_units=10, tol=None, method=method, batch_size=16 if method == "sgd" else None, random_state=0)
    warm = cls(max_iter=30, warm_start=True, **kw).fit(X, y).fit(X, y)
    once = cls(max_iter=60, **kw).fit(X, y)
    pw = warm.particles_ if isinstance(warm.particles_, list) else [warm.particles_]
    po = once.particles_ if isinstance(once.particles_, list) else [once.particles_]
    assert np.all(warm.n_iter_ == 60) and len(pw) == len(po)
    for a, b in zip(pw, po):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.weights, b.weights)
    # without warm_start a second fit starts again
    cold = cls(max_iter=30, **kw).fit(X, y)
    np.testing.assert_array_equal(np.asarray(cold.n_iter_), np.asarray(clone(cold).fit(X, y).fit(X, y).n_iter_))


def test_random_state_reproducibility():
    X, y = _regression()
    a = MeanFieldRegressor(n_units=10, max_iter=20, random_state=5).fit(X, y).particles_.positions
    b = MeanFieldRegressor(n_units=10, max_iter=20, random_state=5).fit(X, y).particles_.positions
    c = MeanFieldRegressor(n_units=10, max_iter=20, random_state=6).fit(X, y).particles_.positions
    rs = MeanFieldRegressor(n_units=10, max_iter=20, random_state=np.random.RandomState(5)).fit(X, y)
    rs2 = MeanFieldRegressor(n_units=10, max_iter=20, random_state=np.random.RandomState(5)).fit(X, y)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_array_equal(rs.particles_.positions, rs2.particles_.positions)


def test_classifier_binary_and_one_vs_rest():
    X, y = _regression()
    labels = np.where(y > np.median(y), "high", "low")
    clf = MeanFieldClassifier(n_units=10, max_iter=200, random_state=0).fit(X, labels)
    f = clf.decision_function(X)
    assert f.shape == (60,) and list(clf.classes_) == ["high", "low"]
    np.testing.assert_array_equal(clf.predict(X), np.where(f > 0, "low", "high"))  # classes_[1] is +1
    np.testing.assert_allclose(clf.predict_proba(X)[:, 1], 1 / (1 + np.exp(-f)), rtol=1e-12)
    assert clf.score(X, labels) > 0.8
    three = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
    ovr = MeanFieldClassifier(n_units=10, max_iter=200, random_state=0).fit(X, three)
    F = ovr.decision_function(X)
    assert F.shape == (60, 3) and len(ovr.particles_) == 3 and ovr.n_iter_.shape == (3,)
    # class k's network is the binary fit of k against the rest
    k_vs_rest = MeanFieldClassifier(n_units=10, max_iter=200, random_state=0).fit(X, three == 1)
    np.testing.assert_allclose(F[:, 1], k_vs_rest.decision_function(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ovr.predict_proba(X).sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("est, kind, match", [
    (MeanFieldRegressor(), "nan", "Input X contains NaN"),
    (MeanFieldClassifier(), "nan", "Input X contains NaN"),
    (MeanFieldRegressor(), "3d", "Found array with dim 3"),
    (MeanFieldRegressor(), "y-length", "inconsistent numbers of samples"),
    (MeanFieldRegressor(), "predict-features", "X has 2 features, but MeanFieldRegressor is expecting 3"),
    (MeanFieldRegressor(), "string-y", "needs numeric targets y"),
    (MeanFieldClassifier(), "one-class", "at least 2 classes in y, got 1 class"),
    (MeanFieldClassifier(), "continuous-y", "Unknown label type"),
    (MeanFieldRegressor(n_units=0), "ok", r"The 'n_units' parameter of MeanFieldRegressor must be an int in the range \[1, inf\)\. Got 0"),
    (MeanFieldClassifier(max_iter=0), "ok", r"The 'max_iter' parameter of MeanFieldClassifier must be an int in the range \[1, inf\)"),
    (MeanFieldRegressor(activation="elu"), "ok", r"The 'activation' parameter .* among \{'relu', 'sigmoid', 'tanh'\}"),
    (MeanFieldRegressor(method="newton"), "ok", r"The 'method' parameter"),
    (MeanFieldRegressor(alpha=-1.0), "ok", r"The 'alpha' parameter"),
    (MeanFieldRegressor(tol=0.0), "ok", r"The 'tol' parameter"),
    (MeanFieldRegressor(bias="yes"), "ok", r"The 'bias' parameter"),
])
def test_bad_input_is_a_scikit_learn_style_value_error(est, kind, match):
    X, y = _regression(n=20)
    if kind == "nan":
        X[3, 1] = np.nan
    elif kind == "3d":
        X = X.reshape(20, 3, 1)
    elif kind == "y-length":
        y = y[:5]
    elif kind == "string-y":
        y = np.array(["a", "b"] * 10)
    elif kind == "one-class":
        y = np.zeros(20)
    elif kind in ("ok", "predict-features"):
        y = (y > 0).astype(int) if isinstance(est, MeanFieldClassifier) else y
    with pytest.raises(ValueError, match=match):
        if kind == "predict-features":
            est.set_params(n_units=10, max_iter=2).fit(X, y).predict(X[:, :2])
        else:
            est.fit(X, y)
