"""Likelihood protocols: scores against finite differences of the log-likelihood, analytic
Hessians against finite differences of the analytic score, for every family and expert type;
the positive-definiteness check on constructed boundary / saddle cases."""

import warnings

import numpy as np
import pytest

from softmix.inference.covariance import infer
from softmix.inference.information import InformationWarning, check_information
from softmix.moe.likelihood import MoELikelihood
from softmix.moe.model import MoEParams
from softmix.softmax_mixture.likelihood import SoftmaxMixtureLikelihood
from softmix.softmax_mixture.model import SoftmaxMixtureParams, sample_counts


def central_difference(f, x, h=1e-6):
    cols = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        cols.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h))
    return np.array(cols)


def check_derivatives(lik, theta):
    score = lik.score(theta)
    fd_score = central_difference(lik.loglik, theta)
    np.testing.assert_allclose(score, fd_score, atol=1e-5 * max(1.0, np.abs(score).max()))
    hess = lik.hessian(theta)
    fd_hess = central_difference(lik.score, theta)
    np.testing.assert_allclose(hess, fd_hess, atol=1e-5 * max(1.0, np.abs(hess).max()))
    np.testing.assert_allclose(hess, hess.T)
    units, w = lik.score_units(theta)
    np.testing.assert_allclose(w @ units, score, atol=1e-8 * max(1.0, np.abs(score).max()))


@pytest.mark.parametrize("n_components", [1, 2, 3])
def test_softmax_mixture_score_and_hessian_match_finite_differences(n_components):
    rng = np.random.default_rng(n_components)
    features = rng.standard_normal((25, 3))
    weights = rng.dirichlet(np.ones(n_components) * 3)
    params = SoftmaxMixtureParams(weights, rng.standard_normal((n_components, 3)))
    counts = sample_counts(features, params, 3000, rng).astype(float)
    lik = SoftmaxMixtureLikelihood(features, counts, n_components)
    theta = lik.to_vector(params) + 0.1 * rng.standard_normal(lik.n_free_parameters)
    check_derivatives(lik, theta)
    np.testing.assert_allclose(lik.to_vector(lik.from_vector(theta)), theta)
    assert len(lik.names) == lik.n_free_parameters == n_components - 1 + 3 * n_components


def test_softmax_mixture_unidentified_direction_is_removed_from_the_vector():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((20, 2))
    features = np.column_stack([base, np.ones(20)])  # constant column: atoms unidentified on it
    params = SoftmaxMixtureParams(np.array([0.5, 0.5]),
                                  np.array([[1.0, 0.0, 0.0], [-1.0, 0.5, 0.0]]))
    counts = sample_counts(features, params, 2000, rng).astype(float)
    lik = SoftmaxMixtureLikelihood(features, counts, 2)
    assert lik.n_free_parameters == 1 + 2 * 2
    theta = lik.to_vector(params)
    check_derivatives(lik, theta)
    np.testing.assert_allclose(lik.from_vector(theta).atoms, params.atoms, atol=1e-12)
    # adding the null direction to an atom changes neither the vector nor the likelihood
    shifted = SoftmaxMixtureParams(params.weights, params.atoms + [0.0, 0.0, 3.0])
    np.testing.assert_allclose(lik.to_vector(shifted), theta, atol=1e-12)


def test_softmax_mixture_hessian_is_linear_in_the_counts():
    """Counts are sufficient: doubling every count doubles the Hessian (cost independent of N)."""
    rng = np.random.default_rng(3)
    features = rng.standard_normal((15, 2))
    params = SoftmaxMixtureParams(np.array([0.7, 0.3]), rng.standard_normal((2, 2)))
    counts = sample_counts(features, params, 10**9, rng).astype(float)
    one = SoftmaxMixtureLikelihood(features, counts, 2)
    two = SoftmaxMixtureLikelihood(features, 2 * counts, 2)
    theta = one.to_vector(params)
    np.testing.assert_allclose(two.hessian(theta), 2 * one.hessian(theta), rtol=1e-12)


def _moe_case(expert, k, rng, n=150, d=2, n_classes=4):
    X = rng.standard_normal((n, d))
    gating = np.vstack([rng.standard_normal((k - 1, d + 1)), np.zeros((1, d + 1))])
    var = None
    if expert == "multinomial":
        coef = rng.standard_normal((k, n_classes, d + 1))
        coef[:, -1] = 0.0
        y = rng.integers(0, n_classes, n)
    elif expert == "logistic":
        coef = rng.standard_normal((k, d + 1))
        y = rng.integers(0, 2, n).astype(float)
    else:
        coef = rng.standard_normal((k, d + 1))
        var = rng.uniform(0.5, 2.0, k)
        y = rng.standard_normal(n)
    return X, y, MoEParams(gating, coef, var, expert)


@pytest.mark.parametrize("expert", ["gaussian", "logistic", "multinomial"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_moe_score_and_hessian_match_finite_differences(expert, k):
    rng = np.random.default_rng(k)
    X, y, params = _moe_case(expert, k, rng)
    lik = MoELikelihood(X, y, params)
    theta = lik.to_vector(params)
    check_derivatives(lik, theta)
    np.testing.assert_allclose(lik.to_vector(lik.from_vector(theta)), theta)
    assert len(lik.names) == lik.n_free_parameters == params.n_free_parameters
    assert lik.score_observations(theta).shape == (X.shape[0], lik.n_free_parameters)


@pytest.mark.parametrize("expert", ["gaussian", "logistic", "multinomial"])
def test_moe_ridge_penalised_objective_derivatives(expert):
    rng = np.random.default_rng(7)
    X, y, params = _moe_case(expert, 2, rng)
    lik = MoELikelihood(X, y, params, ridge=0.7)
    theta = lik.to_vector(params)
    np.testing.assert_allclose(lik.score(theta), central_difference(lik.loglik, theta),
                               atol=1e-5 * max(1.0, np.abs(lik.score(theta)).max()))
    np.testing.assert_allclose(lik.hessian(theta), central_difference(lik.score, theta),
                               atol=1e-5 * max(1.0, np.abs(lik.hessian(theta)).max()))
    plain = MoELikelihood(X, y, params)
    assert lik.unpenalised_loglik(theta) == pytest.approx(plain.loglik(theta))
    assert lik.loglik(theta) < plain.loglik(theta)


def test_saddle_with_identical_atoms_warns_naming_the_weight():
    """Two identical atoms at the one-component MLE: the weight log-ratio is not identified
    (its information is exactly zero), and the warning names it."""
    rng = np.random.default_rng(0)
    features = rng.standard_normal((30, 2))
    truth = SoftmaxMixtureParams(np.array([1.0]), np.array([[0.7, -0.3]]))
    counts = sample_counts(features, truth, 5000, rng).astype(float)
    one = SoftmaxMixtureLikelihood(features, counts, 1)
    theta = one.to_vector(truth)
    for _ in range(50):  # Newton to the one-component MLE
        theta = theta - np.linalg.solve(one.hessian(theta), one.score(theta))
    atom = one.from_vector(theta).atoms[0]
    two = SoftmaxMixtureLikelihood(features, counts, 2)
    saddle = two.to_vector(SoftmaxMixtureParams(np.array([0.5, 0.5]), np.vstack([atom, atom])))
    with pytest.warns(InformationWarning, match=r"logratio\[0,1\]"):
        cov, flagged = check_information(-two.hessian(saddle), two.names)
    assert flagged[0]
    assert np.isinf(cov[0, 0])


def test_boundary_weight_gives_infinite_standard_errors_and_a_warning():
    """A component with weight 1e-14 (a boundary point): no information about its atom."""
    rng = np.random.default_rng(1)
    features = rng.standard_normal((30, 2))
    params = SoftmaxMixtureParams(np.array([1 - 1e-14, 1e-14]), np.array([[1.0, 0.0],
                                                                          [-2.0, 1.0]]))
    counts = sample_counts(features, SoftmaxMixtureParams(np.array([1.0]), params.atoms[:1]),
                           4000, rng).astype(float)
    lik = SoftmaxMixtureLikelihood(features, counts, 2)
    theta = lik.to_vector(params)
    with pytest.warns(InformationWarning, match=r"atom\[1,0\].*atom\[1,1\]|atom\[1,1\]"):
        res = infer(lik, theta, header={})
    se = dict(zip(res.names, res.std_errors))
    assert np.isinf(se["atom[1,0]"]) and np.isinf(se["atom[1,1]"])
    assert np.all(np.isfinite([se["atom[0,0]"], se["atom[0,1]"]]))
    assert res.extra["flagged"]


def test_positive_definite_information_does_not_warn():
    rng = np.random.default_rng(2)
    X, y, params = _moe_case("gaussian", 2, rng, n=400)
    lik = MoELikelihood(X, y, params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cov, flagged = check_information(np.eye(3) * [1.0, 2.0, 3.0], ["a", "b", "c"])
    assert not flagged.any()
    np.testing.assert_allclose(cov, np.diag([1.0, 0.5, 1 / 3]))
    assert lik.n_observations == 400
