"""SoftmaxMixture: the estimator contract, choices vs counts, every bad input of issue 2."""

import math
import re
from pathlib import Path

import numpy as np
import pytest

import softmix
from softmix import NotFittedError, SoftmaxMixture, SoftmixWarning
from softmix.datasets import make_softmax_mixture
from softmix.softmax_mixture.model import SoftmaxMixtureParams, log_likelihood


@pytest.fixture(scope="module")
def data():
    return make_softmax_mixture(20_000, 400, 3, 2, random_state=0)


def fitted(data, **kw):
    kw.setdefault("random_state", 0)
    return SoftmaxMixture(2, **kw).fit(data.features, data.choices)


def test_choices_and_counts_give_identical_fits(data):
    a = SoftmaxMixture(2, n_init=2, random_state=3).fit(data.features, data.choices)
    b = SoftmaxMixture(2, n_init=2, random_state=3).fit(data.features, counts=data.counts)
    np.testing.assert_array_equal(a.atoms_, b.atoms_)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    np.testing.assert_array_equal(a.history_, b.history_)
    assert a.n_iter_ == b.n_iter_ and a.n_samples_ == b.n_samples_ == 20_000


def test_fit_twice_with_the_same_seed_is_identical(data):
    a, b = fitted(data, n_init=2), fitted(data, n_init=2)
    np.testing.assert_array_equal(a.atoms_, b.atoms_)
    np.testing.assert_array_equal(a.fit_result_.all_objectives, b.fit_result_.all_objectives)


def test_fitted_attributes(data):
    m = fitted(data, n_init=3)
    assert m.weights_.shape == (2,) and m.atoms_.shape == (2, 3)
    assert m.converged_ and m.stop_reason_ == "tol" and m.init_method_ == "random"
    assert len(m.history_) == m.n_iter_ + 1 and m.history_[-1] == m.log_likelihood_
    assert m.fit_result_.all_objectives.shape == (3,)
    assert m.log_likelihood_ == pytest.approx(m.fit_result_.all_objectives.max())
    assert m.log_likelihood_ == pytest.approx(
        log_likelihood(data.features, data.counts, m.params_), rel=1e-12)
    assert isinstance(m.params_, SoftmaxMixtureParams) and m.n_unidentified_ == 0


def test_max_iter_zero_returns_user_init_and_tol_zero_runs_max_iter(data):
    start = {"weights": [0.3, 0.7], "atoms": np.zeros((2, 3)) + [[1.0], [-1.0]]}
    m = SoftmaxMixture(2, init=start, max_iter=0).fit(data.features, data.choices)
    np.testing.assert_array_equal(m.atoms_, start["atoms"])
    np.testing.assert_array_equal(m.weights_, [0.3, 0.7])
    assert m.n_iter_ == 0 and m.stop_reason_ == "init" and m.init_method_ == "given"
    m = SoftmaxMixture(2, max_iter=4, tol=0.0, random_state=0).fit(data.features, data.choices)
    assert m.n_iter_ == 4 and m.stop_reason_ == "max_iter"


def test_predict_proba_predict_score_bic_aic(data):
    m = fitted(data)
    proba = m.predict_proba(data.choices[:50])
    assert proba.shape == (50, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(m.predict(data.choices[:50]), proba.argmax(axis=1))
    # Bayes: P(k | j) = alpha_k pi_jk / P(j)
    per_class = m.choice_probabilities(per_class=True)
    mix = m.choice_probabilities()
    assert per_class.shape == (400, 2) and mix.shape == (400,)
    np.testing.assert_allclose(per_class.sum(axis=0), 1.0)
    np.testing.assert_allclose(mix, per_class @ m.weights_)
    j = int(data.choices[0])
    np.testing.assert_allclose(proba[0], m.weights_ * per_class[j] / mix[j])
    n = data.choices.size
    assert m.score(data.features, data.choices) == pytest.approx(m.log_likelihood_ / n)
    assert m.score(counts=data.counts) == pytest.approx(m.log_likelihood_ / n)
    k_free = 1 + 2 * 3
    assert m.bic() == pytest.approx(-2 * m.log_likelihood_ + k_free * math.log(n))
    assert m.aic() == pytest.approx(-2 * m.log_likelihood_ + 2 * k_free)
    assert m.bic(data.features, data.choices[:100]) == pytest.approx(
        -2 * 100 * m.score(data.features, data.choices[:100]) + k_free * math.log(100))


def test_sample(data):
    m = fitted(data)
    draws = m.sample(5000, random_state=1)
    assert draws.shape == (5000,) and draws.dtype == np.int64
    assert draws.min() >= 0 and draws.max() < 400
    np.testing.assert_array_equal(draws, m.sample(5000, random_state=1))


def test_get_set_params_and_repr():
    m = SoftmaxMixture(3, n_init=2)
    params = m.get_params()
    assert params["n_components"] == 3 and params["n_init"] == 2 and params["init"] == "random"
    assert m.set_params(tol=1e-6) is m and m.tol == 1e-6
    with pytest.raises(ValueError, match="invalid parameter 'bogus'"):
        m.set_params(bogus=1)
    assert "SoftmaxMixture(n_components=3" in repr(m)


@pytest.mark.parametrize("method", ["predict_proba", "predict", "score", "bic", "aic", "sample",
                                    "choice_probabilities"])
def test_not_fitted(method, data):
    m = SoftmaxMixture(2)
    args = {"predict_proba": (data.choices,), "predict": (data.choices,), "sample": (10,),
            "score": (data.features, data.choices)}.get(method, ())
    with pytest.raises(NotFittedError, match="not fitted"):
        getattr(m, method)(*args)


def test_restarts_keep_the_best_and_use_spawned_streams(data):
    # max_iter=0: the objectives are those of the starts, which differ run to run
    m = SoftmaxMixture(2, n_init=4, max_iter=0, random_state=0).fit(data.features, data.choices)
    objs = m.fit_result_.all_objectives
    assert objs.shape == (4,) and len(np.unique(objs)) == 4
    assert m.log_likelihood_ == objs.max()
    assert m.log_likelihood_ == pytest.approx(
        log_likelihood(data.features, data.counts, m.params_), rel=1e-12)


def test_readme_example_runs_as_written():
    """The 10-line example at the top of README.md must be true for this API."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme, re.DOTALL).group(1)
    assert "SoftmaxMixture" in block
    namespace: dict = {"print": lambda *a, **k: None}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["model"].converged_
    assert softmix.metrics.atom_error(namespace["model"].atoms_, namespace["data"].atoms) < 0.1


# --- bad input: one test per case (issue 2) ----------------------------------------------------

def test_nan_in_features(data):
    x = data.features.copy()
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="features contains 1 NaN or infinite"):
        SoftmaxMixture(2).fit(x, data.choices)


def test_inf_in_features(data):
    x = data.features.copy()
    x[0, 0] = np.inf
    with pytest.raises(ValueError, match="features contains 1 NaN or infinite"):
        SoftmaxMixture(2).fit(x, data.choices)


def test_features_not_2d(data):
    with pytest.raises(ValueError, match="features must be 2-D"):
        SoftmaxMixture(2).fit(data.features[:, 0], data.choices)


def test_choices_out_of_range(data):
    bad = data.choices.copy()
    bad[5] = 400
    with pytest.raises(ValueError, match=r"choices must be alternative indices in \[0, 400\)"):
        SoftmaxMixture(2).fit(data.features, bad)
    bad[5] = -1
    with pytest.raises(ValueError, match="got -1"):
        SoftmaxMixture(2).fit(data.features, bad)


def test_choices_non_integer(data):
    with pytest.raises(ValueError, match="choices must hold integers.*such as 1.5"):
        SoftmaxMixture(2).fit(data.features, np.array([0, 1.5, 2]))
    with pytest.raises(TypeError, match="choices must hold real numbers"):
        SoftmaxMixture(2).fit(data.features, np.array(["a", "b"]))


def test_integral_float_choices_are_accepted(data):
    a = fitted(data)
    b = SoftmaxMixture(2, random_state=0).fit(data.features, data.choices.astype(float))
    np.testing.assert_array_equal(a.atoms_, b.atoms_)


def test_negative_counts(data):
    counts = data.counts.copy()
    counts[7] = -2
    with pytest.raises(ValueError, match="counts must be non-negative, got -2 at index 7"):
        SoftmaxMixture(2).fit(data.features, counts=counts)


def test_non_integer_counts(data):
    counts = data.counts.astype(float)
    counts[0] += 0.5
    with pytest.raises(ValueError, match="counts must hold integers"):
        SoftmaxMixture(2).fit(data.features, counts=counts)


def test_counts_wrong_length(data):
    with pytest.raises(ValueError, match=r"counts must have one entry per alternative, shape "
                                         r"\(400,\).*got shape \(399,\)"):
        SoftmaxMixture(2).fit(data.features, counts=data.counts[:-1])


def test_both_choices_and_counts(data):
    with pytest.raises(ValueError, match="exactly one of choices.*got both"):
        SoftmaxMixture(2).fit(data.features, data.choices, counts=data.counts)


def test_neither_choices_nor_counts(data):
    with pytest.raises(ValueError, match="exactly one of choices.*got neither"):
        SoftmaxMixture(2).fit(data.features)


def test_all_counts_zero(data):
    with pytest.raises(ValueError, match="counts are all zero"):
        SoftmaxMixture(2).fit(data.features, counts=np.zeros(400))
    with pytest.raises(ValueError, match="choices is empty"):
        SoftmaxMixture(2).fit(data.features, np.array([], dtype=int))


def test_n_components_below_one(data):
    with pytest.raises(ValueError, match="n_components must be >= 1, got 0"):
        SoftmaxMixture(0).fit(data.features, data.choices)
    with pytest.raises(TypeError, match="n_components must be an int"):
        SoftmaxMixture(2.0).fit(data.features, data.choices)


def test_n_components_above_p(data):
    with pytest.raises(ValueError, match=r"n_components must be <= the number of alternatives "
                                         r"\(400\), got 401"):
        SoftmaxMixture(401).fit(data.features, data.choices)


def test_constant_column_warns_and_pins_atoms(data):
    x = np.column_stack([data.features, np.ones(400)])
    with pytest.warns(SoftmixWarning, match=r"unidentified direction.*constant column\(s\) \[3\]"):
        m = SoftmaxMixture(2, random_state=0).fit(x, data.choices)
    assert m.n_unidentified_ == 1 and np.all(np.abs(m.atoms_[:, 3]) < 1e-10)
    ref = fitted(data)
    assert m.log_likelihood_ == pytest.approx(ref.log_likelihood_, abs=1e-3)
    assert m.bic() == pytest.approx(ref.bic(), abs=1e-2)  # same number of free parameters


def test_collinear_columns_warn(data):
    x = np.column_stack([data.features, data.features[:, 0] + 2 * data.features[:, 1]])
    with pytest.warns(SoftmixWarning, match="1 unidentified direction"):
        SoftmaxMixture(2, random_state=0, max_iter=5, tol=0.0).fit(x, data.choices)


def test_bad_init(data):
    with pytest.raises(ValueError, match="init must be one of"):
        SoftmaxMixture(2, init="kmeans++").fit(data.features, data.choices)
    with pytest.raises(TypeError, match="init must be a str"):
        SoftmaxMixture(2, init=3).fit(data.features, data.choices)
    with pytest.raises(ValueError, match="init: weights must sum to 1"):
        SoftmaxMixture(2, init={"weights": [0.5, 0.6], "atoms": np.zeros((2, 3))}).fit(
            data.features, data.choices)
    with pytest.raises(ValueError, match=r"atoms of shape \(2, 3\)"):
        SoftmaxMixture(2, init={"weights": [0.5, 0.5], "atoms": np.zeros((2, 4))}).fit(
            data.features, data.choices)
    with pytest.raises(ValueError, match="missing"):
        SoftmaxMixture(2, init={"weights": [0.5, 0.5]}).fit(data.features, data.choices)
    with pytest.raises(ValueError, match="n_init=2 with a user-given init"):
        SoftmaxMixture(2, n_init=2, init=SoftmaxMixtureParams(np.array([0.5, 0.5]),
                                                              np.zeros((2, 3)))).fit(
            data.features, data.choices)


def test_init_dict_with_an_unknown_key_is_an_error(data):
    start = {"weights": [0.5, 0.5], "atoms": np.zeros((2, 3)), "weigths": [0.9, 0.1]}
    with pytest.raises(ValueError, match=r"only the keys 'weights' and 'atoms'; got also \['weigths'\]"):
        SoftmaxMixture(2, init=start).fit(data.features, data.choices)


def test_no_fitted_attribute_before_fit():
    """scikit-learn's convention (and check_is_fitted): attributes ending in '_' exist only
    after fit."""
    assert [name for name in vars(SoftmaxMixture(2)) if name.endswith("_")] == []


def test_bad_hyperparameters(data):
    with pytest.raises(ValueError, match="m_step must be one of"):
        SoftmaxMixture(2, m_step="exact").fit(data.features, data.choices)
    with pytest.raises(ValueError, match="tol must be >= 0"):
        SoftmaxMixture(2, tol=-1.0).fit(data.features, data.choices)
    with pytest.raises(ValueError, match="n_init must be >= 1"):
        SoftmaxMixture(2, n_init=0).fit(data.features, data.choices)
    with pytest.raises(TypeError, match="random_state"):
        SoftmaxMixture(2, random_state="zero").fit(data.features, data.choices)


def test_predict_proba_bad_choices(data):
    m = fitted(data)
    with pytest.raises(ValueError, match=r"choices must be alternative indices in \[0, 400\)"):
        m.predict_proba([400])
    with pytest.raises(ValueError, match="features must have 3 columns"):
        m.score(np.zeros((10, 2)), [0])


def test_counts_beyond_int64_are_kept_not_wrapped(data):
    """1e17 x the counts exceed 2^63 for the largest ones: the float->int64 cast used to wrap
    them (a RuntimeWarning, then 'counts must be non-negative')."""
    counts = np.bincount(data.choices, minlength=data.features.shape[0]) * 1e17
    assert counts.max() >= 2.0**63
    m = SoftmaxMixture(2, random_state=0, max_iter=5, tol=0.0).fit(data.features, counts=counts)
    assert np.isfinite(m.log_likelihood_) and m.n_samples_ == pytest.approx(counts.sum())


def test_huge_float_choice_is_reported_out_of_range(data):
    with pytest.raises(ValueError, match="choices must be alternative indices"):
        SoftmaxMixture(2).fit(data.features, [1.0, 2.0, 1e19])
