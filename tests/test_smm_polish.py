"""Observed-data Newton polish of a slow softmax-mixture EM fit (softmax_mixture/polish.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import softmix
from softmix.datasets import make_softmax_mixture
from softmix.softmax_mixture import polish
from softmix.softmax_mixture.likelihood import SoftmaxMixtureLikelihood
from softmix.softmax_mixture.model import SoftmaxMixtureParams


def overlapping(n=10**5, separation=0.3, seed=0):
    """Two strongly overlapping classes: EM's linear rate is close to 1 here."""
    return make_softmax_mixture(n, 300, 3, 2, separation=separation, return_choices=False,
                                random_state=seed)


def fit(data, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", softmix.exceptions.ConvergenceWarning)
        options = {"max_iter": 3000, **options}
        return softmix.SoftmaxMixture(2, random_state=0, **options).fit(
            data.features, counts=data.counts)


def observed_decrement(data, params):
    """``g' (-H)^+ g / 2`` of the observed log-likelihood (nats) at ``params``."""
    _, info = polish.newton_polish(data.features, data.counts, params, tol=0.0, max_steps=1)
    return info["decrement"]


def test_a_slow_fit_is_polished_to_the_optimum(monkeypatch):
    """[measured] EM alone met its stop rule after 1,692 SQUAREM cycles (5,076 maps) and
    0.0017 nats below the optimum (the rule bounds one M-step's gain; EM's rate ~0.9999 makes
    the remaining gain ~1e4 times larger); polished, 32 cycles and at the optimum."""
    data = overlapping()
    model = fit(data)
    r = model.fit_result_
    assert model.converged_ and r.n_iter < 100
    assert r.extra["newton_polishes"] and r.extra["newton_polishes"][0]["gain"] > 0
    assert observed_decrement(data, model.params_) <= 1e-9
    monkeypatch.setattr(polish, "POLISH_MAX_PARAMETERS", 0)  # EM alone
    alone = fit(data)
    assert "newton_polishes" not in alone.fit_result_.extra
    assert alone.fit_result_.n_iter > 10 * r.n_iter
    assert model.log_likelihood_ >= alone.log_likelihood_ - 1e-9
    assert observed_decrement(data, alone.params_) > 1e-4  # EM alone stopped short


def test_newton_polish_climbs_to_the_same_point_from_nearby_starts():
    data = overlapping(separation=0.5)
    best = fit(data)
    lik = SoftmaxMixtureLikelihood(data.features, data.counts, 2)
    top = lik.loglik(lik.to_vector(best.params_))
    rng = np.random.default_rng(1)
    ends = []
    for _ in range(2):
        start = SoftmaxMixtureParams(best.weights_, best.atoms_ + 0.05 * rng.standard_normal(
            best.atoms_.shape))
        out, info = polish.newton_polish(data.features, data.counts, start, tol=1e-7)
        assert info["steps"] >= 1 and info["gain"] > 0 and info["decrement"] <= 1e-8
        assert lik.loglik(lik.to_vector(out)) == pytest.approx(top, abs=1e-7)
        ends.append(out.canonical().atoms)
    np.testing.assert_allclose(ends[0], ends[1], atol=1e-5)


def test_polished_fit_is_equivariant_to_doubling_the_counts_and_rescaling_a_column():
    from types import SimpleNamespace

    data = overlapping(separation=0.5)
    base = fit(data)
    twice = fit(SimpleNamespace(features=data.features, counts=2 * data.counts))
    np.testing.assert_allclose(twice.atoms_, base.atoms_, atol=1e-5)
    np.testing.assert_allclose(twice.log_likelihood_, 2 * base.log_likelihood_, rtol=1e-11)
    scale = np.array([1.0, 1e3, 1.0])
    rescaled = fit(SimpleNamespace(features=data.features * scale, counts=data.counts))
    np.testing.assert_allclose(rescaled.atoms_ * scale, base.atoms_, atol=1e-5)


def test_no_polish_where_it_is_not_affordable_or_not_asked():
    data = overlapping(separation=0.5)
    for options in ({"tol": 0.0, "max_iter": 60}, {"ridge": 1.0}, {"dtype": "float32"}):
        model = fit(data, **options)
        assert "newton_polishes" not in model.fit_result_.extra, options
