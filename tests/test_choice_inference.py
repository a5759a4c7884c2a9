"""Standard errors, summaries and selection of K for the latent class logit (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from softmix import LatentClassLogit, select_n_components
from softmix.choice import inference as proto
from softmix.choice.data import prepare_choice_data
from softmix.choice.datasets import make_latent_class_logit
from softmix.core.restarts import spawn

COEF = np.array([[1.5, -1.0], [-1.0, 1.0]])
GAMMA = np.array([[0.3, 0.8], [0.0, 0.0]])  # the last class is the reference


def _args(d):
    return (d.X, d.chosen, d.situations), {"groups": d.groups, "covariates": d.covariates}


def _fit(d, **kw):
    kw.setdefault("random_state", 0)
    kw.setdefault("n_init", 3)
    args, data_kw = _args(d)
    return LatentClassLogit(d.coef.shape[0], **kw).fit(*args, **data_kw)


def _fd_jacobian(f, x, h=1e-6):
    cols = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        cols.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("q, weighted", [(0, False), (1, True), (2, False)])
def test_protocol_derivatives_match_finite_differences(q, weighted):
    d = make_latent_class_logit(30, 3, 4, 3, 3, n_covariates=q, random_state=q)
    rng = np.random.default_rng(5)
    sw = rng.uniform(0.5, 2.0, 30)[d.groups] if weighted else None
    data = prepare_choice_data(d.X, d.chosen, d.situations, groups=d.groups,
                               covariates=d.covariates, sample_weight=sw)
    lik = proto.ChoiceLikelihood(data, 3)
    theta = lik.to_vector(d.params) + 0.1 * rng.standard_normal(lik.n_free_parameters)
    assert np.allclose(lik.score(theta), _fd_jacobian(lik.loglik, theta), atol=1e-5)
    assert np.allclose(lik.hessian(theta), _fd_jacobian(lik.score, theta), atol=1e-5)
    s, w = lik.score_units(theta)
    assert np.allclose(w @ s, lik.score(theta))
    assert np.allclose(lik.score_observations(theta).sum(axis=0), lik.score(theta))
    values, jac = lik.reported(theta)
    assert np.allclose(jac, _fd_jacobian(lambda t: lik.reported(t)[0], theta), atol=1e-7)
    assert len(lik.reported_names()) == values.size and len(lik.names) == theta.size


def test_names_shapes_and_summary():
    d = make_latent_class_logit(120, 4, 4, 2, 2, n_covariates=1, coef=COEF,
                                membership_coef=GAMMA, random_state=1)
    m = _fit(d)
    args, kw = _args(d)
    r = m.inference(*args, **kw)
    assert r.names == ["coef[0,0]", "coef[0,1]", "coef[1,0]", "coef[1,1]",
                       "membership[0,0]", "membership[0,1]"]
    assert r.estimates.shape == (6,) and r.cov.shape == (6, 6)
    assert np.allclose(r.estimates[:4], m.coef_.ravel())
    assert np.allclose(r.estimates[4:], m.membership_coef_[0])
    assert np.all(np.isfinite(r.std_errors)) and np.all(r.std_errors > 0)
    # no arguments: the training data, the same result
    assert np.allclose(m.inference().std_errors, r.std_errors)
    text = m.summary(*args, **kw)
    assert "Latent class logit results" in text and "membership[0,1]" in text
    assert "reference class 1" in text
    assert r.model["BIC"] == pytest.approx(m.bic(*args, **kw))
    assert r.model["parameters"] == m.n_parameters() == 6
    # without covariates: weight[k], which sum to 1 with a singular covariance along the sum
    d0 = make_latent_class_logit(120, 4, 4, 2, 2, coef=COEF, random_state=2)
    m0 = _fit(d0)
    r0 = m0.inference()
    assert r0.names[-2:] == ["weight[0]", "weight[1]"]
    assert r0.estimates[-2:].sum() == pytest.approx(1.0)
    assert np.allclose(r0.estimates[-2:], m0.weights_)
    assert r0.std_errors[-1] == pytest.approx(r0.std_errors[-2])
    with pytest.raises(ValueError, match="together"):
        m.inference(d.X, d.chosen)
    with pytest.raises(ValueError, match="method"):
        m.inference(method="jackknife")


def test_sandwich_is_close_to_observed_on_a_correctly_specified_panel():
    d = make_latent_class_logit(800, 5, 4, 2, 2, n_covariates=1, coef=COEF,
                                membership_coef=GAMMA, random_state=3)
    m = _fit(d, init={"coef": COEF, "membership_coef": GAMMA}, n_init=1)
    obs = m.inference(method="observed")
    sand = m.inference(method="sandwich")
    assert sand.extra["n_groups"] == 800
    ratio = sand.std_errors / obs.std_errors
    assert np.all(np.abs(ratio - 1.0) < 0.15), ratio


def test_bootstrap_resamples_groups_and_agrees_with_observed():
    d = make_latent_class_logit(200, 4, 4, 2, 2, n_covariates=1, coef=COEF,
                                membership_coef=GAMMA, random_state=4)
    m = _fit(d)
    obs = m.inference()
    for kind in ("nonparametric", "parametric"):
        boot = m.inference(method="bootstrap", bootstrap=kind, n_boot=25, random_state=0)
        assert boot.extra["n_used"] + boot.extra["n_failed"] + \
            boot.extra["n_not_converged"] == 25
        assert boot.extra["replicates"].shape[1] == 6
        ratio = boot.std_errors / obs.std_errors
        assert np.all((ratio > 0.5) & (ratio < 1.8)), (kind, ratio)


def test_group_arrays_and_folds_keep_groups_whole():
    d = make_latent_class_logit(40, 3, 4, 2, 2, n_covariates=1, random_state=5)
    data = prepare_choice_data(d.X, d.chosen, d.situations, groups=d.groups,
                               covariates=d.covariates)
    pick = np.array([3, 3, 7])  # a repeated group becomes two groups
    (X, chosen, sit), kw = proto._group_arrays(data, pick)
    sub = prepare_choice_data(X, chosen, sit, **kw)
    assert sub.n_groups == 3 and sub.n_situations == 9
    assert np.allclose(sub.Z[:, 0], data.Z[pick, 0])
    rows = np.sum(d.groups == 3) * 2 + np.sum(d.groups == 7)
    assert X.shape[0] == rows
    args, data_kw = _args(d)
    seen = []
    splits = proto.folds(*args, **data_kw, n_folds=4, rng=np.random.default_rng(0))
    for tr, trk, te, tek, n_test in splits:
        a = prepare_choice_data(*tr, **trk)
        b = prepare_choice_data(*te, **tek)
        assert a.n_groups + b.n_groups == 40 and n_test == b.n_groups
        assert a.n_rows + b.n_rows == d.X.shape[0]
        seen.append(b.n_groups)
    assert sum(seen) == 40


def _calibration(n_rep, n_groups, seed):
    """Fits from the truth on n_rep simulated panels: estimates and observed SEs."""
    ests, ses = [], []
    for rng in spawn(np.random.default_rng(seed), n_rep):
        d = make_latent_class_logit(n_groups, 4, 4, 2, 2, n_covariates=1, coef=COEF,
                                    membership_coef=GAMMA, random_state=rng)
        m = _fit(d, init={"coef": COEF, "membership_coef": GAMMA}, n_init=1)
        assert m.converged_
        r = m.inference()
        ests.append(r.estimates)
        ses.append(r.std_errors)
    truth = np.r_[COEF.ravel(), GAMMA[0]]
    ests, ses = np.asarray(ests), np.asarray(ses)
    q = stats.norm.ppf(0.975)
    coverage = np.mean(np.abs(ests - truth) <= q * ses)
    return np.std(ests, axis=0, ddof=1) / np.mean(ses, axis=0), coverage


def test_observed_standard_errors_are_calibrated_quick():
    ratio, coverage = _calibration(30, 250, seed=10)
    assert np.all((ratio > 0.65) & (ratio < 1.4)), ratio
    assert 0.85 <= coverage <= 1.0, coverage


@pytest.mark.slow
def test_observed_standard_errors_are_calibrated():
    ratio, coverage = _calibration(200, 300, seed=11)
    assert np.all(np.abs(ratio - 1.0) < 0.10), ratio
    assert 0.93 <= coverage <= 0.97, coverage


@pytest.mark.parametrize("criterion", ["bic", "aic", "icl", "heldout"])
def test_select_n_components_finds_the_true_k(criterion):
    coef = np.array([[2.5, -2.0], [-2.0, 2.5]])
    d = make_latent_class_logit(200, 6, 4, 2, 2, n_covariates=1, coef=coef,
                                membership_coef=GAMMA, random_state=6)
    args, kw = _args(d)
    res = select_n_components(LatentClassLogit(1), range(1, 4), *args, **kw,
                              criterion=criterion, n_init=2, random_state=0, n_folds=3)
    assert res.best_n_components == 2, str(res)
    assert isinstance(res.best_estimator_, LatentClassLogit)
    assert res.best_estimator_.n_classes == 2
    assert list(res.table["n_parameters"]) == [2, 6, 10]
