"""Inference and model selection for MixtureOfExperts with the flexmix-style options (issue 12):
gate="constant", X_gate, fit_intercept=False, variance="equal", sample_weight."""

import warnings

import numpy as np
import pytest

from softmix import MixtureOfExperts
from softmix.moe.likelihood import MoELikelihood, OptionsMoELikelihood, build
from softmix.selection import select_n_components


def simulate(rng, n=500):
    X = rng.normal(size=(n, 2))
    Xg = rng.normal(size=(n, 1))
    z = (rng.random(n) < 1.0 / (1.0 + np.exp(-(0.5 + 1.5 * Xg[:, 0])))).astype(int)
    y = np.where(z == 0, 1 + 2 * X[:, 0] - X[:, 1], -1 - X[:, 0] + 2 * X[:, 1])
    return X, Xg, y + 0.5 * rng.normal(size=n)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X, Xg, y = simulate(rng)
    return X, Xg, y, rng.integers(1, 4, X.shape[0]).astype(float)


def _fd(f, x, eps=1e-5):
    eye = np.eye(x.size)
    return np.array([(f(x + eps * eye[i]) - f(x - eps * eye[i])) / (2 * eps)
                     for i in range(x.size)])


def _fit(X, y, extra, **kw):
    model = MixtureOfExperts(2, solver="em", n_init=2, random_state=0, tol=1e-10,
                             max_iter=2000, **kw)
    return model.fit(X, y, **extra)


CASES = [
    ({"gate": "constant"}, {}),
    ({"fit_intercept": False}, {"X_gate": True}),
    ({"variance": "equal"}, {"X_gate": True}),
    ({"variance": "equal", "gate": "constant", "fit_intercept": False}, {"sample_weight": True}),
    ({}, {"sample_weight": True}),
]


def _extra(data, spec):
    _, Xg, _, w = data
    out = {}
    if spec.get("X_gate"):
        out["X_gate"] = Xg
    if spec.get("sample_weight"):
        out["sample_weight"] = w
    return out


@pytest.mark.parametrize(("options", "spec"), CASES)
def test_score_and_hessian_match_finite_differences(data, options, spec):
    X, _, y, _ = data
    extra = _extra(data, spec)
    model = _fit(X, y, extra, **options)
    lik, theta = build(model, X, y, **extra)
    assert isinstance(lik, OptionsMoELikelihood)
    assert lik.n_free_parameters == model.n_parameters()
    assert np.abs(lik.score(theta)).max() < 0.05  # a stationary point of the weighted loglik
    phi = theta + 0.05 * np.random.default_rng(1).normal(size=theta.size)
    np.testing.assert_allclose(lik.score(phi), _fd(lik.loglik, phi), rtol=1e-6, atol=1e-4)
    hess = lik.hessian(phi)
    np.testing.assert_allclose(hess, _fd(lik.score, phi).T, rtol=1e-6,
                               atol=1e-6 * np.abs(hess).max())
    res = model.inference(X, y, **extra)
    assert np.all(np.isfinite(res.std_errors)) and np.all(res.std_errors > 0)
    assert len(res.names) == res.estimates.size


def test_names_of_the_options(data):
    X, Xg, y, _ = data
    res = _fit(X, y, {}, gate="constant").inference(X, y)
    assert res.names[:2] == ["weight[0]", "weight[1]"]
    np.testing.assert_allclose(res.estimates[:2].sum(), 1.0)
    np.testing.assert_allclose(res.std_errors[0], res.std_errors[1])
    model = _fit(X, y, {"X_gate": Xg}, fit_intercept=False, variance="equal")
    res = model.inference(X, y, X_gate=Xg)
    assert res.names == ["gate[0,0]", "gate[0,1]", "coef[0,1]", "coef[0,2]", "variance",
                         "coef[1,1]", "coef[1,2]"]
    np.testing.assert_allclose(res.estimates[:2], model.gating_coef_[0])
    assert "X_gate" in model.summary(X, y, X_gate=Xg)
    with pytest.raises(ValueError, match="X_gate"):
        model.inference(X, y)


def test_integer_frequency_weights_equal_replicated_rows(data):
    X, _, y, w = data
    model = _fit(X, y, {"sample_weight": w}, variance="free")
    lik, theta = build(model, X, y, sample_weight=w)
    rep = np.repeat(np.arange(X.shape[0]), w.astype(int))
    plain = MoELikelihood(X[rep], y[rep], model.params_)
    np.testing.assert_allclose(lik.loglik(theta), plain.loglik(theta))
    np.testing.assert_allclose(lik.hessian(theta), plain.hessian(theta), rtol=1e-9)
    sw, _ = lik.score_units(theta)
    s_rep, _ = plain.score_units(theta)
    meat_w = (sw * w[:, None]).T @ sw
    np.testing.assert_allclose(meat_w, s_rep.T @ s_rep, rtol=1e-9)
    res = model.inference(X, y, sample_weight=w, method="sandwich")
    assert any("frequency weights" in note for note in res.extra["notes"])
    assert res.model["observations"] == X.shape[0]


def test_bootstrap_with_x_gate_and_weights(data):
    X, Xg, y, w = data
    model = _fit(X, y, {"X_gate": Xg, "sample_weight": w})
    obs = model.inference(X, y, X_gate=Xg, sample_weight=w)
    boot = model.inference(X, y, X_gate=Xg, sample_weight=w, method="bootstrap", n_boot=8,
                           random_state=0)
    assert boot.extra["n_used"] >= 6
    assert boot.names == obs.names


def test_select_n_components_with_x_gate(data):
    X, Xg, y, _ = data
    res = select_n_components(MixtureOfExperts(1, solver="em", variance="equal"), [1, 2, 3],
                              X, y, X_gate=Xg, n_init=2, random_state=0)
    assert res.best_n_components == 2
    assert res.table["n_parameters"].tolist() == [4, 9, 14]
    with pytest.raises(ValueError, match="sample_weight"):
        select_n_components(MixtureOfExperts(1, solver="em"), [1, 2], X, y,
                            sample_weight=np.ones(X.shape[0]), criterion="heldout", n_init=1)


def test_calibration_quick_constant_gate_equal_variance():
    """25 replications: the observed-information SEs of a constant-gate, equal-variance
    mixture of regressions track the spread of the estimates."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 1))
    truth = np.array([0.6, 0.4, 2.0, 1.0, 0.25, -2.0, -1.0])
    est, se = [], []
    for _ in range(25):
        z = rng.random(400) < 0.6
        y = np.where(z, 2 + X[:, 0], -2 - X[:, 0]) + 0.5 * rng.normal(size=400)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = _fit(X, y, {}, gate="constant", variance="equal")
            res = model.inference(X, y)
        est.append(res.estimates)
        se.append(res.std_errors)
    est, se = np.array(est), np.array(se)
    assert np.all(np.abs(est.mean(axis=0) - truth) < 3 * se.mean(axis=0))
    ratio = est.std(axis=0, ddof=1) / se.mean(axis=0)
    assert np.all(np.abs(ratio - 1.0) < 0.45), ratio
