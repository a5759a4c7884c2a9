"""Latent moments, whitening, subspace and design diagnostics (softmax_mixture.moments)."""

import math

import numpy as np
import pytest
from numpy.polynomial import hermite_e
from scipy.special import log_softmax, logsumexp

from softmix.metrics import subspace_error
from softmix.softmax_mixture.moments import (
    GAUSSIAN_TOLERANCE,
    design_diagnostics,
    effective_sample_size,
    estimate_subspace,
    hermite_polynomials,
    latent_moment_covariance,
    latent_moments,
    second_moment_matrix,
    whiten,
)


def _mixture_probabilities(features, weights, atoms):
    """Exact P(Y = j) of a softmax mixture (oracle written independently of the library)."""
    log_pi = log_softmax(features @ atoms.T, axis=0) + np.log(weights)
    return np.exp(logsumexp(log_pi, axis=1))


def test_hermite_polynomials_match_numpy_hermite_e():
    s = np.linspace(-4, 4, 17)
    he = hermite_polynomials(s, 9)
    for r in range(1, 10):
        coef = np.zeros(r + 1)
        coef[r] = 1.0
        np.testing.assert_allclose(he[r - 1], hermite_e.hermeval(s, coef), rtol=1e-12, atol=1e-9)


def test_latent_moments_exact_on_gauss_hermite_mixture():
    # Oracle: a Gaussian location mixture sum_k a_k N(mu_k, 1) discretised EXACTLY for polynomials
    # of degree < 2 * 20 by Gauss-Hermite (probabilists') nodes; E He_r(mu + Z) = mu^r.
    nodes, w = hermite_e.hermegauss(20)
    w = w / w.sum()
    mus, alphas = np.array([-1.3, 0.4, 2.0]), np.array([0.2, 0.5, 0.3])
    z = np.concatenate([nodes + mu for mu in mus])[:, None]
    freqs = np.concatenate([a * w for a in alphas])
    m = latent_moments(z, freqs, np.ones(1), 7)
    truth = np.array([alphas @ mus**r for r in range(1, 8)])
    np.testing.assert_allclose(m, truth, rtol=1e-10, atol=1e-10)


def test_latent_moments_monte_carlo_within_covariance():
    rng = np.random.default_rng(3)
    n = 200_000
    theta = np.array([[1.0, -0.5], [-0.8, 0.6]])
    alphas = np.array([0.35, 0.65])
    lab = rng.choice(2, size=n, p=alphas)
    z = theta[lab] + rng.standard_normal((n, 2))
    counts = np.ones(n)
    u = np.array([0.6, 0.8])
    m = latent_moments(z, counts, u, 5)
    truth = np.array([alphas @ (theta @ u) ** r for r in range(1, 6)])
    sd = np.sqrt(np.diag(latent_moment_covariance(z, counts, u, 5)))
    assert np.all(np.abs(m - truth) < 4 * sd)
    # several directions at once give the same numbers
    both = latent_moments(z, counts, np.column_stack([u, [1.0, 0.0]]), 5)
    np.testing.assert_allclose(both[0], m)


def test_whitening_identity_and_invariance():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 3))
    x = rng.standard_normal((5000, 3)) @ a + 2.0
    w = whiten(x)
    np.testing.assert_allclose(w.z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(w.z.T @ w.z / len(x), np.eye(3), atol=1e-10)
    theta = rng.standard_normal((2, 3))
    np.testing.assert_allclose(w.to_original(w.to_white(theta)), theta, atol=1e-12)
    diff = x @ theta.T - w.z @ w.to_white(theta).T  # a constant per class: same softmax
    np.testing.assert_allclose(diff - diff[0], 0, atol=1e-9)
    known = whiten(x, sigma=a.T @ a)
    assert not known.estimated and w.estimated
    np.testing.assert_allclose(known.z.T @ known.z / len(x), np.eye(3), atol=0.1)


def test_whitening_rejects_singular_and_misshaped_sigma():
    x = np.random.default_rng(0).standard_normal((100, 3))
    x[:, 2] = 1.0
    with pytest.raises(ValueError, match="singular"):
        whiten(x)
    with pytest.raises(ValueError, match="sigma must have shape"):
        whiten(x[:, :2], sigma=np.eye(3))


def test_whitening_a_given_non_positive_sigma_blames_sigma_not_the_features():
    x = np.random.default_rng(0).standard_normal((100, 3))
    with pytest.raises(ValueError, match=r"sigma must be a positive definite covariance, got "
                                         r"smallest eigenvalue -1"):
        whiten(x, sigma=-np.eye(3))


def test_subspace_recovered_in_well_separated_case():
    rng = np.random.default_rng(1)
    p, big_l = 50_000, 8
    x = rng.standard_normal((p, big_l))
    q, _ = np.linalg.qr(rng.standard_normal((big_l, 2)))
    atoms = 1.2 * q.T
    probs = _mixture_probabilities(x, np.array([0.5, 0.5]), atoms)
    counts = rng.multinomial(2_000_000, probs / probs.sum())
    w = whiten(x)
    m2 = second_moment_matrix(w.z, counts)
    basis, evals = estimate_subspace(m2, 2)
    truth, _ = np.linalg.qr(w.to_white(atoms).T)
    assert subspace_error(basis, truth) < 0.1  # the one subspace metric (softmix.metrics)
    assert evals[1] > 5 * abs(evals[2])
    # M2 ~ sum_k alpha_k theta'_k theta'_k'
    tw = w.to_white(atoms)
    np.testing.assert_allclose(m2, 0.5 * tw.T @ tw, atol=0.1)


def test_design_diagnostics_flags_non_gaussian_designs():
    rng = np.random.default_rng(2)
    p = 20_000
    dirs = np.eye(3)
    gauss = whiten(rng.standard_normal((p, 3))).z
    ok = design_diagnostics(gauss, dirs, 5)
    assert ok.gaussian and ok.reason == "" and ok.max_score < GAUSSIAN_TOLERANCE
    uniform = whiten(rng.uniform(-1, 1, (p, 3))).z
    bad = design_diagnostics(uniform, dirs, 5)
    assert not bad.gaussian and "far from Gaussian" in bad.reason
    assert bad.max_score == pytest.approx(1.2 / math.sqrt(24), rel=0.1)  # excess kurtosis -1.2
    heavy = whiten(rng.standard_t(5, (p, 3))).z
    assert not design_diagnostics(heavy, dirs, 3).gaussian


def test_effective_sample_size_gaussian_formula():
    rng = np.random.default_rng(4)
    p = 200_000
    z = rng.standard_normal((p, 2))
    atoms = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.5]])
    ess = effective_sample_size(z, atoms)
    assert ess[0] == pytest.approx(p)
    np.testing.assert_allclose(ess[1:], p * np.exp(-np.array([1.0, 2.25])), rtol=0.2)
