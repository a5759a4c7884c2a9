"""MixtureOfExperts: the public contract, predictions, and one test per bad input."""

import numpy as np
import pytest

import softmix
from softmix import MixtureOfExperts
from softmix.datasets import make_gaussian_moe, make_moe
from softmix.exceptions import NotFittedError
from softmix.moe import estimator as est_module
from softmix.moe.model import log_likelihood


@pytest.fixture(scope="module")
def gaussian_fit():
    X, y, truth = make_gaussian_moe(1500, random_state=0)
    return X, y, truth, MixtureOfExperts(2, random_state=0).fit(X, y)


def test_exported_at_top_level():
    assert softmix.MixtureOfExperts is MixtureOfExperts


def test_fitted_attributes_and_scores(gaussian_fit):
    X, y, _, m = gaussian_fit
    assert m.gating_coef_.shape == (2, 2) and np.all(m.gating_coef_[-1] == 0)
    assert m.expert_coef_.shape == (2, 2) and m.expert_variance_.shape == (2,)
    assert m.log_likelihood_ == pytest.approx(log_likelihood(X, y, m.params_))
    assert m.score(X, y) == pytest.approx(m.log_likelihood_ / len(y))
    p = m.params_.n_free_parameters
    assert p == 8  # (k-1)(d+1) gating + k (d+1) coefficients + k variances
    assert m.bic(X, y) == pytest.approx(-2 * m.log_likelihood_ + p * np.log(len(y)))
    assert m.aic(X, y) == pytest.approx(-2 * m.log_likelihood_ + 2 * p)
    assert m.converged_ and m.n_iter_ == len(m.history_) - 1


def test_predict_is_the_gate_weighted_expert_mean(gaussian_fit):
    X, _, _, m = gaussian_fit
    X1 = np.column_stack([np.ones(len(X)), X])
    manual = np.sum(m.gate_proba(X) * (X1 @ m.expert_coef_.T), axis=1)
    np.testing.assert_allclose(m.predict(X), manual)
    np.testing.assert_allclose(m.gate_proba(X).sum(axis=1), 1.0)


def test_posterior_rows_sum_to_one_and_sample_is_seeded(gaussian_fit):
    X, y, _, m = gaussian_fit
    np.testing.assert_allclose(m.posterior(X, y).sum(axis=1), 1.0)
    y1, z1 = m.sample(X, random_state=3)
    y2, z2 = m.sample(X, random_state=3)
    np.testing.assert_array_equal(z1, z2)
    np.testing.assert_array_equal(y1, y2)
    assert y1.shape == (len(X),) and set(np.unique(z1)) <= {0, 1}


def test_multinomial_with_arbitrary_integer_labels():
    X, y, _ = make_moe(600, 2, 2, expert="multinomial", n_classes=3, random_state=1)
    labels = np.array([3, 5, 9])[y.astype(int)]
    m = MixtureOfExperts(2, expert="multinomial", random_state=0, tol=1e-4).fit(X, labels)
    np.testing.assert_array_equal(m.classes_, [3, 5, 9])
    assert m.classes_.dtype == labels.dtype  # as scikit-learn: classes_ keep y's dtype
    assert m.predict(X[:3]).dtype == labels.dtype
    proba = m.predict_proba(X)
    assert proba.shape == (600, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(np.unique(m.predict(X))) <= {3, 5, 9}
    assert set(np.unique(m.sample(X, random_state=0)[0])) <= {3, 5, 9}
    assert np.mean(m.predict(X) == labels) > 0.5


def test_multinomial_with_string_labels():
    # before: TypeError "y must hold real numbers, got dtype <U..."
    X, y, _ = make_moe(400, 2, 2, expert="multinomial", n_classes=3, random_state=1)
    names = np.array(["cat", "dog", "emu"])
    labels = names[y.astype(int)]
    m = MixtureOfExperts(2, expert="multinomial", random_state=0, tol=1e-4).fit(X, labels)
    ref = MixtureOfExperts(2, expert="multinomial", random_state=0, tol=1e-4).fit(X, y)
    np.testing.assert_array_equal(m.classes_, names)
    np.testing.assert_allclose(m.predict_proba(X), ref.predict_proba(X))
    np.testing.assert_array_equal(m.predict(X), names[ref.predict(X).astype(int)])
    assert set(m.sample(X, random_state=0)[0]) <= set(names)
    assert m.score(X, labels.astype(object)) == pytest.approx(ref.score(X, y))  # object array
    with pytest.raises(ValueError, match=r"labels \['owl'\] not seen in fit"):
        m.score(X[:2], ["cat", "owl"])
    with pytest.raises(ValueError, match="y holds numbers but the model was fitted on text"):
        m.score(X[:2], [0, 1])
    with pytest.raises(ValueError, match="y holds text labels but the model was fitted on num"):
        ref.score(X[:2], ["cat", "dog"])
    with pytest.raises(ValueError, match="logistic experts.*text labels.*'multinomial'"):
        MixtureOfExperts(2, expert="logistic").fit(X, labels)
    with pytest.raises(ValueError, match="one entry per row of X"):
        MixtureOfExperts(2, expert="multinomial").fit(X, labels[:-1])
    with pytest.raises(TypeError, match="y must hold real numbers"):
        MixtureOfExperts(2).fit(X, labels)  # Gaussian experts need numbers


def test_logistic_boolean_labels_come_back_as_booleans():
    X, y, _ = make_moe(300, 1, 2, expert="logistic", coef_scale=4.0, random_state=2)
    m = MixtureOfExperts(2, expert="logistic", random_state=0, tol=1e-4).fit(X, y == 1)
    np.testing.assert_array_equal(m.classes_, [False, True])
    assert m.predict(X).dtype == bool and m.sample(X, random_state=0)[0].dtype == bool
    assert m.score(X, y == 1) == pytest.approx(m.score(X, y))


def test_logistic_predict_proba_and_accuracy():
    X, y, truth = make_moe(1000, 2, 2, expert="logistic", coef_scale=4.0, random_state=2)
    m = MixtureOfExperts(2, expert="logistic", random_state=0, n_init=2).fit(X, y)
    proba = m.predict_proba(X)
    assert proba.shape == (1000, 2)
    np.testing.assert_array_equal(m.predict(X), (proba[:, 1] > proba[:, 0]).astype(float))
    assert m.log_likelihood_ >= log_likelihood(X, y, truth) - 1e-6


def test_get_set_params_round_trip():
    m = MixtureOfExperts(3, expert="logistic", tol=1e-4, inner_max_iter=20)
    params = m.get_params()
    assert params["n_experts"] == 3 and params["inner_max_iter"] == 20
    m2 = MixtureOfExperts(**params)
    assert m2.get_params() == params
    m.set_params(tol=1e-5, inner_max_iter=30)
    assert m.tol == 1e-5 and m.solver_options["inner_max_iter"] == 30


# ----------------------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def data():
    X, y, _ = make_gaussian_moe(100, random_state=0)
    return X, y


def test_y_not_1d(data):
    X, y = data
    with pytest.raises(ValueError, match=r"y must be 1-D"):
        MixtureOfExperts(2).fit(X, y[:, None])


def test_y_wrong_length(data):
    X, y = data
    with pytest.raises(ValueError, match=r"one entry per row of X \(100\), got 99"):
        MixtureOfExperts(2).fit(X, y[:-1])


def test_x_not_2d(data):
    X, y = data
    with pytest.raises(ValueError, match=r"X must be 2-D"):
        MixtureOfExperts(2).fit(X[:, 0], y)


@pytest.mark.parametrize("where", ["X", "y"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_anywhere(data, where, bad):
    X, y = data[0].copy(), data[1].copy()
    (X if where == "X" else y)[3] = bad
    with pytest.raises(ValueError, match=rf"{where} contains 1 NaN or infinite"):
        MixtureOfExperts(2).fit(X, y)


@pytest.mark.parametrize("where", ["X", "y"])
def test_values_so_large_that_squares_overflow(data, where):
    # before: overflow RuntimeWarnings and a finite-looking fit (X), or LAPACK failing deep
    # inside lstsq (y)
    X, y = data[0].copy(), data[1].copy()
    (X if where == "X" else y)[3] = 1e160
    with pytest.raises(ValueError, match=rf"{where} holds values up to 1e\+160.*Rescale {where}"):
        MixtureOfExperts(2).fit(X, y)


def test_large_but_safe_values_fit_without_warnings():
    X, y, _ = make_gaussian_moe(300, random_state=0)
    ref = MixtureOfExperts(2, random_state=0).fit(X, y)
    big = MixtureOfExperts(2, random_state=0).fit(X * 1e100, y)  # RuntimeWarnings fail here
    assert big.log_likelihood_ == pytest.approx(ref.log_likelihood_, rel=1e-6)


def test_fit_is_equivariant_to_rescaling_y():
    # the default variance floor is relative to var(y): with the old absolute 1e-12 floor both
    # experts of a y ~ 1e-8 fit collapsed onto it (variances 1e-12 instead of ~1e-17)
    X, y, _ = make_gaussian_moe(500, random_state=0)
    a = MixtureOfExperts(2, random_state=0).fit(X, y)
    b = MixtureOfExperts(2, random_state=0).fit(X, y * 1e-8)
    assert b.log_likelihood_ + len(y) * np.log(1e-8) == pytest.approx(a.log_likelihood_, rel=1e-5)
    np.testing.assert_allclose(b.expert_variance_ / 1e-16, a.expert_variance_, rtol=1e-3)


def test_fewer_samples_than_parameters():
    X, y, _ = make_moe(12, 3, 3, random_state=0)  # 2*4 + 3*5 = 23 parameters
    with pytest.raises(ValueError, match=r"fewer samples \(12\) than free parameters \(23\)"):
        MixtureOfExperts(3).fit(X, y)


def test_logistic_labels_outside_0_1():
    # any two labels are accepted (tests/test_moe_options.py); three are not
    X, y, _ = make_moe(100, 1, 2, expert="logistic", random_state=0)
    y3 = y.copy()
    y3[0] = 2.0
    with pytest.raises(ValueError, match=r"two labels for logistic.*got 3 labels"):
        MixtureOfExperts(2, expert="logistic").fit(X, y3)


@pytest.mark.parametrize("expert", ["logistic", "multinomial"])
def test_fewer_than_two_classes(expert):
    X, _, _ = make_moe(100, 1, 2, random_state=0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        MixtureOfExperts(2, expert=expert).fit(X, np.ones(100))


def test_non_integer_class_labels():
    X, y, _ = make_moe(100, 1, 2, random_state=0)
    with pytest.raises(ValueError, match="integer class labels"):
        MixtureOfExperts(2, expert="multinomial").fit(X, y)


def test_unseen_labels_at_score_time():
    X, y, _ = make_moe(200, 1, 2, expert="multinomial", random_state=0)
    m = MixtureOfExperts(2, expert="multinomial", random_state=0, max_iter=20, tol=0).fit(X, y)
    with pytest.raises(ValueError, match="not seen in fit"):
        m.score(X, np.full(200, 7.0))


def test_wrong_number_of_features_after_fit(gaussian_fit):
    X, _, _, m = gaussian_fit
    with pytest.raises(ValueError, match="fitted with 1"):
        m.predict(np.hstack([X, X]))


@pytest.mark.parametrize("method", ["bic", "aic"])
def test_information_criteria_validate_x(gaussian_fit, method):
    # before: np.shape(5)[0] raised a bare IndexError ("tuple index out of range")
    _, y, _, m = gaussian_fit
    with pytest.raises(ValueError, match="X must be 2-D"):
        getattr(m, method)(5.0, y)


def test_not_fitted():
    with pytest.raises(NotFittedError):
        MixtureOfExperts(2).predict(np.zeros((3, 1)))


def test_predict_proba_needs_a_classification_expert(gaussian_fit):
    X, _, _, m = gaussian_fit
    with pytest.raises(ValueError, match="classification experts"):
        m.predict_proba(X)
    # scikit-learn's tools look for predict_proba with hasattr (it was True, and e.g.
    # check_fit_idempotent then failed calling it)
    assert not hasattr(m, "predict_proba")
    assert hasattr(MixtureOfExperts(2, expert="logistic"), "predict_proba")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_experts": 0}, ValueError, "n_experts must be >= 1"),
        ({"expert": "poisson"}, ValueError, "expert must be one of"),
        ({"solver": "newton"}, ValueError, "solver must be one of"),
        ({"init": "spectral"}, ValueError, "init must be one of"),
        ({"init": "near_truth"}, ValueError, "needs the true parameters"),
        ({"truth": make_gaussian_moe(5, random_state=0)[2]}, ValueError, "only used by"),
        ({"n_init": 0}, ValueError, "n_init must be >= 1"),
        ({"max_iter": -1}, ValueError, "max_iter must be >= 0"),
        ({"tol": -1.0}, ValueError, "tol must be >= 0"),
        ({"ridge": float("nan")}, ValueError, "ridge must be finite"),
        ({"step_size": 0.1}, TypeError, r"unknown option\(s\) \['step_size'\]"),
    ],
)
def test_bad_hyperparameters(data, kwargs, error, match):
    X, y = data
    kwargs = {"n_experts": 2, **kwargs}
    with pytest.raises(error, match=match):
        MixtureOfExperts(**kwargs).fit(X, y)


@pytest.mark.parametrize(("option", "bad", "error", "match"), [
    ("inner_method", "foo", ValueError, "inner_method must be one of"),  # was "method must be"
    ("inner_max_iter", 0, ValueError, "inner_max_iter must be >= 1"),    # was accepted
    ("inner_tol", -1.0, ValueError, "inner_tol must be >= 0"),
    ("variance_floor", -1.0, ValueError, "variance_floor must be > 0"),  # was accepted
    ("variance_floor", "tiny", TypeError, "variance_floor"),            # was a '>' TypeError
])
def test_bad_em_options_name_the_option(data, option, bad, error, match):
    X, y = data
    with pytest.raises(error, match=match):
        MixtureOfExperts(2, random_state=0, **{option: bad}).fit(X, y)


def test_given_init_must_match_the_model(data):
    X, y = data
    _, _, other = make_moe(10, 2, 2, random_state=0)
    with pytest.raises(ValueError, match="is for 2 feature"):
        MixtureOfExperts(2, init=other).fit(X, y)
    _, _, truth = make_gaussian_moe(10, random_state=0)
    with pytest.raises(ValueError, match="same fit"):
        MixtureOfExperts(2, init=truth, n_init=3).fit(X, y)


def test_unknown_solver_lists_every_registered_solver(data):
    X, y = data
    assert tuple(est_module.SOLVERS) == ("em", "gd", "gradient_em")
    with pytest.raises(ValueError, match=r"\('em', 'gd', 'gradient_em'\), got 'sgd'"):
        MixtureOfExperts(2, solver="sgd").fit(X, y)
    m = MixtureOfExperts(2).set_params(solver="sgd")  # validated by fit, as in scikit-learn
    with pytest.raises(ValueError, match="solver must be one of"):
        m.fit(X, y)
    # an unhashable value (scikit-learn's check_do_not_raise_errors_in_init_or_set_params):
    # set_params raised "unhashable type" from the SOLVERS lookup
    m.set_params(solver=np.array(["em"]))
    with pytest.raises(ValueError, match="solver must be one of"):
        m.fit(X, y)


# ----------------------------------------------------------------------------- sklearn protocol

def test_set_params_rejects_unknown_names_and_changes_nothing():
    m = MixtureOfExperts(2, random_state=0)
    before = m.get_params()
    with pytest.raises(ValueError, match=r"invalid parameter\(s\) \['n_expert'\].*n_experts"):
        m.set_params(n_expert=3, tol=1e-3)
    with pytest.raises(ValueError, match=r"\['step_size'\] .*solver='em'"):
        m.set_params(step_size=0.3)  # a GD option while the solver is EM
    assert m.get_params() == before
    m.set_params(solver="gd", step_size=0.3)  # the option of the new solver is accepted
    assert m.solver == "gd" and m.get_params()["step_size"] == 0.3


def test_no_fitted_attribute_before_fit():
    m = MixtureOfExperts(2)
    assert [a for a in vars(m) if a.endswith("_")] == []
    with pytest.raises(NotFittedError):
        m.predict(np.zeros((2, 1)))


def test_sklearn_clone_and_grid_search():
    base = pytest.importorskip("sklearn.base")
    model_selection = pytest.importorskip("sklearn.model_selection")
    X, y, _ = make_gaussian_moe(600, random_state=1)
    m = MixtureOfExperts(2, solver="gradient_em", step_gate=0.5, step_expert=0.5,
                         random_state=3, max_iter=5,
                         tol=0).fit(X, y)
    c = base.clone(m)
    assert c.get_params() == m.get_params()
    assert [a for a in vars(c) if a.endswith("_")] == []
    search = model_selection.GridSearchCV(MixtureOfExperts(1, random_state=0),
                                          {"n_experts": [1, 2]}, cv=3).fit(X, y)
    assert search.best_params_ == {"n_experts": 2}  # held-out log-likelihood (score)


@pytest.mark.parametrize("solver", ["em", "gd"])
def test_same_instance_fitted_twice_gives_the_same_fit(solver):
    X, y, _ = make_gaussian_moe(400, random_state=2)
    m = MixtureOfExperts(2, solver=solver, n_init=2, random_state=5, max_iter=30, tol=0)
    first = m.fit(X, y).params_
    second = m.fit(X, y).params_
    np.testing.assert_array_equal(first.gating, second.gating)
    np.testing.assert_array_equal(first.expert_coef, second.expert_coef)


def test_a_failed_refit_leaves_the_fitted_model_as_it_was():
    X, y, _ = make_moe(300, 2, 2, expert="multinomial", random_state=0)
    m = MixtureOfExperts(2, expert="multinomial", random_state=0, max_iter=20, tol=0).fit(X, y)
    classes, proba = m.classes_.copy(), m.predict_proba(X[:5])
    with pytest.raises(ValueError, match="fewer samples"):
        m.fit(X[:4], np.array([0, 1, 2, 3]))  # 4 classes, too few samples
    np.testing.assert_array_equal(m.classes_, classes)
    np.testing.assert_array_equal(m.predict_proba(X[:5]), proba)
