"""select_n_components: picks the true K on well-separated data for both families, by every
criterion; keeps every restart; warns at the ends of the grid; names bad arguments."""

import warnings

import matplotlib
import numpy as np
import pytest

from softmix import MixtureOfExperts, SoftmaxMixture, SoftmixWarning, select_n_components
from softmix.moe.model import MoEParams
from softmix.moe.model import sample as sample_moe
from softmix.softmax_mixture.model import SoftmaxMixtureParams, sample_counts

matplotlib.use("Agg")

SMM = SoftmaxMixtureParams(np.array([0.5, 0.3, 0.2]),
                           np.array([[2.0, 0.0], [-1.5, 1.5], [-0.5, -2.0]]))


@pytest.fixture(scope="module")
def smm_data():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((40, 2))
    return features, sample_counts(features, SMM, 20000, rng)


@pytest.fixture(scope="module")
def moe_data():
    rng = np.random.default_rng(1)
    truth = MoEParams(np.array([[0.0, 3.0], [0.0, 0.0]]), np.array([[3.0, 1.0], [-3.0, -1.0]]),
                      np.array([0.3, 0.3]), "gaussian")
    X = rng.standard_normal((400, 1))
    y, _ = sample_moe(X, truth, rng)
    return X, y


@pytest.mark.parametrize("criterion", ["bic", pytest.param("heldout", marks=pytest.mark.slow)])
def test_softmax_mixture_picks_the_true_k(smm_data, criterion):
    """(ICL is not asserted here: one choice says little about its class, the classification
    entropy of a softmax mixture is large even at the truth, and ICL under-selects.)"""
    features, counts = smm_data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SoftmixWarning)
        res = select_n_components(SoftmaxMixture(1), [2, 3, 4], features, counts=counts,
                                  criterion=criterion, n_init=3, random_state=0, n_folds=3)
    # best K inside the grid: no end-of-grid warning (an over-fitted K = 4 may crawl along its
    # flat direction and not reach the stop rule in nats within max_iter: it does not compete)
    assert not [w for w in caught if "at an end of the grid" in str(w.message)]
    assert res.best_n_components == 3
    assert res.best_estimator_.n_components == 3 and res.best_estimator_.converged_
    assert res.best_estimator_.log_likelihood_ == pytest.approx(res.table["log_likelihood"][1])
    np.testing.assert_array_equal(res.table["n_components"], [2, 3, 4])
    ok = res.table["n_converged"] > 0  # rows of K without a converged run are NaN
    assert ok[:2].all()
    assert np.all(np.isnan(res.table["bic"][~ok]))
    np.testing.assert_array_equal(res.table["n_parameters"][ok], [5, 8, 11][:ok.sum()])
    n = counts.sum()  # the n of BIC is the number of draws
    np.testing.assert_allclose(res.table["bic"][ok], -2 * res.table["log_likelihood"][ok]
                               + res.table["n_parameters"][ok] * np.log(n))
    assert np.all(res.table["icl"][ok] >= res.table["bic"][ok])
    assert res.all_log_likelihoods[3].shape == (3,)  # every restart's final value is kept
    assert np.all(np.isfinite(res.all_log_likelihoods[4]))  # kept even when not converged
    assert np.nanmax(res.all_log_likelihoods[3][res.all_converged[3]]) == pytest.approx(
        res.table["log_likelihood"][1])
    if criterion == "heldout":
        assert np.all(np.isfinite(res.table["heldout"][ok]))
        assert res.table["heldout"][1] == np.nanmax(res.table["heldout"])


@pytest.mark.parametrize("criterion", ["bic", "icl", "heldout"])
def test_mixture_of_experts_picks_the_true_k(moe_data, criterion):
    X, y = moe_data
    res = select_n_components(MixtureOfExperts(1), [1, 2, 3], X, y, criterion=criterion,
                              n_init=2, random_state=0, n_folds=3)
    assert res.best_n_components == 2
    assert res.best_estimator_.n_experts == 2
    np.testing.assert_array_equal(res.table["n_parameters"], [3, 8, 13])
    assert res.table["n_converged"][1] <= 2
    assert set(res.table["stop_reason"]) <= {"tol", "param_tol", "max_iter", "not_stationary"}
    frame = res.to_frame()
    assert list(frame["n_components"]) == [1, 2, 3]
    assert "heldout" in frame.columns
    ax = res.plot()
    assert ax.get_xlabel() == "number of components K"
    assert str(res).count("*") == 1


def test_heldout_folds_of_counts_split_the_draws_by_thinning(smm_data):
    from softmix.softmax_mixture.likelihood import folds

    features, counts = smm_data
    splits = list(folds(features, counts=counts, n_folds=4, rng=np.random.default_rng(0)))
    assert len(splits) == 4
    tests = np.array([tek["counts"] for _, _, _, tek, _ in splits])
    np.testing.assert_array_equal(tests.sum(axis=0), counts)  # every draw in exactly one fold
    for (_, trk, _, tek, n_test), test in zip(splits, tests):
        np.testing.assert_array_equal(trk["counts"] + tek["counts"], counts)
        assert n_test == test.sum()
        assert abs(n_test - counts.sum() / 4) < 5 * np.sqrt(counts.sum() / 4)


def test_best_k_at_an_end_of_the_grid_warns(moe_data):
    X, y = moe_data
    with pytest.warns(SoftmixWarning, match="end of the grid"):
        res = select_n_components(MixtureOfExperts(1), [1, 2], X, y, n_init=1, random_state=0)
    assert res.best_n_components == 2


def test_without_a_converged_fit_nothing_competes(smm_data):
    features, counts = smm_data
    with pytest.warns(SoftmixWarning, match="no converged run"), \
            pytest.raises(ValueError, match="no K"):
        select_n_components(SoftmaxMixture(1, max_iter=1, accelerate=None), [2, 3], features,
                            counts=counts, n_init=1, random_state=0)


def test_bad_arguments(smm_data):
    features, counts = smm_data
    with pytest.raises(ValueError, match="criterion"):
        select_n_components(SoftmaxMixture(1), [1, 2], features, counts=counts,
                            criterion="cv")
    with pytest.raises(ValueError, match="distinct"):
        select_n_components(SoftmaxMixture(1), [2, 2], features, counts=counts)
    with pytest.raises(TypeError, match="iterable"):
        select_n_components(SoftmaxMixture(1), 3, features, counts=counts)
    with pytest.raises(TypeError, match="named initialisation"):
        select_n_components(SoftmaxMixture(3, init=SMM), [2, 3], features, counts=counts)
    with pytest.raises(TypeError, match="softmix estimator"):
        select_n_components(object(), [2, 3], features, counts=counts)
