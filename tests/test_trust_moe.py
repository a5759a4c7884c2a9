"""Trustworthy mixture-of-experts fits (issue 9, mixtures of experts): equivariance,
identification, separation, variance floor, minimum weight, stationarity."""

import warnings

import numpy as np
import pytest

from softmix import MixtureOfExperts
from softmix.datasets import make_gaussian_moe
from softmix.exceptions import SoftmixWarning


@pytest.fixture(scope="module")
def paper():
    return make_gaussian_moe(2000, random_state=0)


@pytest.fixture(scope="module")
def reference(paper):
    X, y, _ = paper
    return MixtureOfExperts(2, random_state=0).fit(X, y)


def _fit(X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SoftmixWarning)
        return MixtureOfExperts(2, random_state=0, **kw).fit(X, y)


# ------------------------------------------------------------------ item 1: equivariance
@pytest.mark.parametrize("shift", [1e6, -3e4])
def test_shifting_a_column_of_X_gives_the_same_fit(paper, reference, shift):
    X, y, _ = paper
    m = _fit(X + shift, y)  # was: the column dropped, ll -5,409 vs -851, converged, silent
    assert m.log_likelihood_ == pytest.approx(reference.log_likelihood_, abs=1e-5)
    # same slopes; intercepts absorb the shift
    np.testing.assert_allclose(m.expert_coef_[:, 1], reference.expert_coef_[:, 1], rtol=1e-6)
    np.testing.assert_allclose(m.expert_coef_[:, 0],
                               reference.expert_coef_[:, 0] - shift * reference.expert_coef_[:, 1],
                               rtol=1e-6)
    np.testing.assert_allclose(m.predict(X + shift), reference.predict(X), atol=1e-5)


@pytest.mark.parametrize("scale", [1e-6, 1e5])
def test_scaling_a_column_of_X_gives_the_same_fit(paper, reference, scale):
    X, y, _ = paper
    m = _fit(X * scale, y)
    assert m.log_likelihood_ == pytest.approx(reference.log_likelihood_, rel=1e-9)
    np.testing.assert_allclose(m.gating_coef_[:, 1] * scale, reference.gating_coef_[:, 1],
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(m.expert_variance_, reference.expert_variance_, rtol=1e-6)


@pytest.mark.parametrize("a, b", [(1e-4, 0.0), (1e4, 5e5), (-2.0, 3.0)])
def test_an_affine_map_of_y_gives_the_same_fit(paper, reference, a, b):
    X, y, _ = paper
    m = _fit(X, a * y + b)
    n = len(y)
    # densities transform with the Jacobian: ll' = ll - n log|a|
    assert m.log_likelihood_ == pytest.approx(reference.log_likelihood_ - n * np.log(abs(a)),
                                              rel=1e-9, abs=1e-6)
    np.testing.assert_allclose(m.expert_variance_, a**2 * reference.expert_variance_, rtol=1e-6)
    np.testing.assert_allclose(m.predict(X), a * reference.predict(X) + b, rtol=1e-6,
                               atol=1e-6 * abs(a))


def test_permuting_the_experts_of_the_start_permutes_the_fit(paper, reference):
    X, y, _ = paper
    start = reference.params_
    a = MixtureOfExperts(2, init=start.permute([1, 0]), max_iter=50).fit(X, y)
    b = MixtureOfExperts(2, init=start, max_iter=50).fit(X, y)
    assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, abs=1e-8)
    # both fits end in the canonical component order (softmix.moe.likelihood.canonical_order)
    np.testing.assert_allclose(a.expert_coef_, b.expert_coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(a.gating_coef_, b.gating_coef_, rtol=1e-6, atol=1e-8)


def test_duplicating_the_rows_gives_the_same_parameters(paper, reference):
    X, y, _ = paper
    start = MixtureOfExperts(2, max_iter=0, random_state=3).fit(X, y).params_
    a = MixtureOfExperts(2, init=start).fit(X, y)
    b = MixtureOfExperts(2, init=start).fit(np.vstack([X, X]), np.concatenate([y, y]))
    assert b.log_likelihood_ == pytest.approx(2 * a.log_likelihood_, rel=1e-9)
    np.testing.assert_allclose(b.expert_coef_, a.expert_coef_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(b.expert_variance_, a.expert_variance_, rtol=1e-5)


def test_shifted_and_scaled_classification_features_give_the_same_fit():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 2))
    gate = X[:, 0] > 0
    y = np.where(gate, X[:, 1] + 0.5 * rng.standard_normal(600) > 0,
                 X[:, 1] + 0.5 * rng.standard_normal(600) < 0).astype(int)
    ref = MixtureOfExperts(2, expert="logistic", random_state=0, ridge=1e-3).fit(X, y)
    Xt = X * [1e-3, 1e4] + [1e6, -7.0]
    m = MixtureOfExperts(2, expert="logistic", random_state=0, ridge=1e-3).fit(Xt, y)
    assert m.log_likelihood_ == pytest.approx(ref.log_likelihood_, abs=1e-6)
    np.testing.assert_allclose(m.predict_proba(Xt), ref.predict_proba(X), atol=1e-6)


# ------------------------------------------------------------------ item 2: rank deficiency
def test_collinear_columns_are_named_and_not_counted(paper, reference):
    X, y, _ = paper
    X3 = np.column_stack([X, 2.0 * X[:, 0] - 1.0, np.full(len(y), 4.0)])
    with pytest.warns(SoftmixWarning, match=r"constant column\(s\) \[2\].*column\(s\) \[1\]"):
        m = MixtureOfExperts(2, random_state=0).fit(X3, y)
    assert m.dropped_features_.tolist() == [1, 2]
    assert m.n_parameters() == m.n_parameters_ == reference.n_parameters() == 2 + 2 * 3
    assert m.bic(X3, y) == pytest.approx(reference.bic(X, y), rel=1e-6)
    assert m.log_likelihood_ == pytest.approx(reference.log_likelihood_, abs=1e-5)
    np.testing.assert_array_equal(m.expert_coef_[:, 2:], 0.0)  # dropped: reported as 0


def test_full_rank_data_keeps_every_column_and_says_nothing(paper, reference):
    assert reference.dropped_features_.size == 0
    assert reference.n_parameters_ == reference.params_.n_free_parameters


def test_weighted_least_squares_is_equivariant_to_a_shifted_column():
    from softmix.moe.experts import weighted_least_squares

    rng = np.random.default_rng(0)
    x = rng.random(300)
    y = 1.0 + 2.0 * x + 0.1 * rng.standard_normal(300)
    w = rng.random(300)
    ref = weighted_least_squares(np.column_stack([np.ones(300), x]), y, w)
    got = weighted_least_squares(np.column_stack([np.ones(300), x + 1e6]), y, w)
    assert got[1] == pytest.approx(ref[1], rel=1e-6)  # was 0-ish: the column truncated
    assert got[0] == pytest.approx(ref[0] - 1e6 * ref[1], rel=1e-9)


# ------------------------------------------------------------------ item 4: variance floor
def test_the_variance_floor_does_not_bias_a_high_signal_to_noise_fit():
    from softmix.datasets import paper_gaussian_moe_params
    from softmix.exceptions import DegenerateComponentWarning

    truth = paper_gaussian_moe_params().replace(expert_variance=np.array([9e-6, 9e-6]))
    X, y, _ = make_gaussian_moe(3000, params=truth, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateComponentWarning)  # was: "collapsed", both
        m = MixtureOfExperts(2, init="near_truth", truth=truth, random_state=0).fit(X, y)
    # was floored to 1e-6 var(y) ~ 1.5e-5 for both experts; now the MLE, within its noise
    np.testing.assert_allclose(np.sort(m.expert_variance_), [9e-6, 9e-6], rtol=0.1)


def test_an_expert_at_the_floor_is_reported_as_fitting_its_points_exactly():
    from softmix.exceptions import DegenerateComponentWarning
    from softmix.moe.em import fit_em
    from softmix.moe.model import MoEParams

    rng = np.random.default_rng(0)
    X = np.vstack([rng.uniform(size=(300, 1)), np.full((25, 1), 0.5)])
    y = np.concatenate([1 + 2 * X[:300, 0] + 0.3 * rng.standard_normal(300), np.full(25, 5.0)])
    start = MoEParams(np.zeros((2, 2)), np.array([[5.0, 0.0], [1.0, 2.0]]), np.array([1e-3, 0.1]))
    with pytest.warns(DegenerateComponentWarning,
                      match=r"expert 0 .*variance floor.*25\.\d effective point") as rec:
        fit_em(X, y, start, max_iter=50, tol=1e-10)
    assert not any("ridge" in str(w.message) for w in rec)  # no ridge for Gaussian experts


# ------------------------------------------------------------------ item 3: separation
@pytest.mark.parametrize("expert", ["logistic", "multinomial"])
def test_separated_labels_warn_and_name_the_ridge(expert):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 2))
    y = (X[:, 0] > 0).astype(int)  # perfectly separable: the MLE is at infinity
    with pytest.warns(SoftmixWarning, match=r"numerically 0 or 1.*expert.*ridge"):
        m = MixtureOfExperts(2, expert=expert, random_state=0).fit(X, y)
    assert np.abs(m.expert_coef_).max() > 100  # what was reported as converged, silently
    assert m.fit_result_.extra["separation"]
    with warnings.catch_warnings(record=True) as rec:  # the remedy: finite, no warning
        warnings.simplefilter("always")
        r = MixtureOfExperts(2, expert=expert, random_state=0, ridge=0.1).fit(X, y)
    assert not any("numerically" in str(w.message) for w in rec)
    assert np.abs(r.expert_coef_).max() < 50 and not r.fit_result_.extra["separation"]
    # (a ridge makes the penalised MLE finite, so the check is off when ridge > 0)


def test_a_separating_gate_warns():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 2))
    y = np.where(X[:, 0] > 0, 3.0, -3.0) + X[:, 1] + 0.1 * rng.standard_normal(400)
    with pytest.warns(SoftmixWarning, match=r"numerically 0 or 1 occurred in the gate"):
        MixtureOfExperts(2, random_state=0).fit(X, y)


def test_a_well_determined_gate_does_not_warn(reference):
    assert reference.fit_result_.extra["separation"] == {}


# ------------------------------------------------------------------ item 5: min_weight
def test_min_weight_removes_a_spurious_expert_and_says_so():
    from softmix.exceptions import DegenerateComponentWarning

    X, y, _ = make_gaussian_moe(80, random_state=3)
    # min_weight=0: a restart puts an expert on 2 points with a variance at round-off (the
    # likelihood's spike) and it wins; the thin-expert warning names it
    with pytest.warns(DegenerateComponentWarning, match=r"2\.00 effective point.*fewer than "
                      r"its 3 parameters"):
        spike = MixtureOfExperts(3, n_init=10, random_state=3, min_weight=0.0).fit(X, y)
    assert spike.n_experts_ == 3 and spike.expert_variance_.min() < 1e-12
    # default min_weight=0.05 (flexmix's minprior): from that fit, the expert (share 0.025) is
    # removed and the fit goes on with the other two
    with pytest.warns(DegenerateComponentWarning, match=r"below min_weight=0.05.*removed"):
        m = MixtureOfExperts(3, init=spike.params_).fit(X, y)
    assert m.n_experts_ == 2 and m.params_.n_experts == 2
    assert m.expert_variance_.min() > 1e-3
    assert m.fit_result_.extra["removed_experts"]
    assert m.n_parameters_ == 2 + 2 * 3
    with pytest.raises(ValueError, match="min_weight must be"):
        MixtureOfExperts(2, min_weight=-0.1).fit(X, y)


def test_collinearity_within_round_off_of_a_shifted_column_is_found():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 2))
    X[:, 1] = 1e6 + 1e-3 * X[:, 0]  # exactly affine in X[:, 0], up to the round-off of 1e6
    y = rng.standard_normal(100)
    with pytest.warns(SoftmixWarning, match="rank-deficient"):
        m = MixtureOfExperts(2, random_state=0).fit(X, y)
    assert m.dropped_features_.size == 1 and m.n_parameters_ == 2 + 2 * 3
    X[:, 1] = 1e6 + rng.standard_normal(100)  # shifted but independent: kept
    assert MixtureOfExperts(2, random_state=0).fit(X, y).dropped_features_.size == 0
