"""softmix.choice model math and likelihood protocol: oracles, finite differences, special cases."""

import numpy as np
import pytest

from softmix.choice import likelihood as lk
from softmix.choice.data import prepare_choice_data
from softmix.choice.datasets import make_latent_class_logit
from softmix.choice.model import (
    LatentClassLogitParams,
    class_log_probabilities,
    conditional_logit_objective,
    e_step,
    em_map,
)
from softmix.softmax_mixture.model import SoftmaxMixtureParams
from softmix.softmax_mixture.model import log_likelihood as smm_log_likelihood


def _data(q=2, weights=True, seed=0, n_groups=25):
    d = make_latent_class_logit(n_groups, 3, 4, 2, 3, n_covariates=q, random_state=seed)
    w = np.random.default_rng(seed + 1).uniform(0.5, 2.0, n_groups)[d.groups] if weights else None
    data = prepare_choice_data(d.X, d.chosen, d.situations, groups=d.groups,
                               covariates=d.covariates, sample_weight=w)
    return d, data


def _naive_loglik(d, params, w=None):
    """A loop over persons and situations (the oracle)."""
    total = 0.0
    for g in np.unique(d.groups):
        rows = d.groups == g
        z = np.r_[1.0, d.covariates[rows][0]] if d.covariates is not None else np.ones(1)
        eta_w = params.membership_coef @ z
        log_w = eta_w - np.log(np.sum(np.exp(eta_w)))
        f = np.zeros(params.n_classes)
        for s in np.unique(d.situations[rows]):
            r = d.situations == s
            for k in range(params.n_classes):
                u = d.X[r] @ params.coef[k]
                f[k] += u[d.chosen[r] == 1][0] - np.log(np.sum(np.exp(u)))
        total += (1.0 if w is None else w[g]) * np.log(np.sum(np.exp(log_w + f)))
    return total


def test_loglik_matches_a_naive_loop_with_shuffled_rows():
    d, _ = _data(weights=False)
    perm = np.random.default_rng(3).permutation(d.X.shape[0])
    data = prepare_choice_data(d.X[perm], d.chosen[perm], d.situations[perm] * 7 + 100,
                               groups=d.groups[perm].astype(str), covariates=d.covariates[perm])
    assert e_step(d.params, data)[1] == pytest.approx(_naive_loglik(d, d.params), rel=1e-12)


@pytest.mark.parametrize("q, weights", [(0, False), (2, True)])
def test_score_and_hessian_match_finite_differences(q, weights):
    d, data = _data(q=q, weights=weights)
    k = 3
    theta = lk.to_vector(d.params) + 0.1 * np.random.default_rng(2).standard_normal(
        lk.n_free_parameters(k, 2, q))
    g = lk.score(theta, data, k)
    eps = 1e-6
    eye = np.eye(theta.size)
    fd = np.array([(lk.loglik(theta + eps * e, data, k) - lk.loglik(theta - eps * e, data, k))
                   / (2 * eps) for e in eye])
    assert np.max(np.abs(fd - g)) < 1e-6 * max(1.0, np.max(np.abs(g)))
    h = lk.hessian(theta, data, k)
    fdh = np.array([(lk.score(theta + eps * e, data, k) - lk.score(theta - eps * e, data, k))
                    / (2 * eps) for e in eye])
    assert np.max(np.abs(fdh - h)) < 1e-6 * max(1.0, np.max(np.abs(h)))
    assert np.allclose(h, h.T)
    assert np.allclose(lk.score(theta, data, k, per_group=True).sum(axis=0), g)


def test_conditional_logit_derivatives_match_finite_differences():
    _, data = _data()
    a = np.random.default_rng(4).uniform(0, 2, data.n_situations)
    beta = np.array([0.3, -0.7])
    _, grad, hess = conditional_logit_objective(beta, data, a, ridge=0.5)
    eps = 1e-6
    fd = [(conditional_logit_objective(beta + eps * e, data, a, 0.5, 0)
           - conditional_logit_objective(beta - eps * e, data, a, 0.5, 0)) / (2 * eps)
          for e in np.eye(2)]
    assert np.allclose(fd, grad, atol=1e-6)
    fdh = [(conditional_logit_objective(beta + eps * e, data, a, 0.5)[1]
            - conditional_logit_objective(beta - eps * e, data, a, 0.5)[1]) / (2 * eps)
           for e in np.eye(2)]
    assert np.allclose(fdh, hess, atol=1e-6)


def test_vector_round_trip_and_free_parameter_count():
    d, _ = _data()
    theta = lk.to_vector(d.params)
    assert theta.size == lk.n_free_parameters(3, 2, 2) == 3 * 2 + 2 * 3
    back = lk.from_vector(theta, 3, 2, 2)
    assert np.allclose(back.coef, d.params.coef)
    assert np.allclose(back.membership_coef, d.params.membership_coef)
    with pytest.raises(ValueError, match="entries"):
        lk.from_vector(theta[:-1], 3, 2, 2)


def test_canonical_order_is_permutation_invariant_and_keeps_the_likelihood():
    d, data = _data()
    perm = np.array([2, 0, 1])
    permuted = d.params.permuted(perm)
    assert e_step(permuted, data)[1] == pytest.approx(e_step(d.params, data)[1], rel=1e-12)
    a, b = lk.canonical_order(d.params), lk.canonical_order(permuted)
    assert np.allclose(a.coef, b.coef) and np.allclose(a.membership_coef, b.membership_coef)


def test_em_map_is_monotone():
    _, data = _data()
    params = LatentClassLogitParams(np.zeros((3, 2)) + np.arange(3)[:, None] * 0.2,
                                    np.zeros((3, 3)))
    values = []
    for _ in range(15):
        params, value = em_map(params, data)
        values.append(value)
    assert np.all(np.diff(values) >= -1e-10 * np.abs(values[1:]))
    assert values[-1] > values[0] + 1.0


def test_a_fixed_design_equals_the_softmax_mixture():
    rng = np.random.default_rng(5)
    p, length, n = 6, 3, 40
    features = rng.standard_normal((p, length))
    choices = rng.integers(0, p, size=n)
    weights = np.array([0.3, 0.7])
    atoms = rng.standard_normal((2, length))
    X = np.tile(features, (n, 1))
    situations = np.repeat(np.arange(n), p)
    chosen = (np.tile(np.arange(p), n) == np.repeat(choices, p)).astype(int)
    data = prepare_choice_data(X, chosen, situations)
    ours = e_step(LatentClassLogitParams.from_weights(atoms, weights), data)[1]
    counts = np.bincount(choices, minlength=p)
    theirs = smm_log_likelihood(features, counts, SoftmaxMixtureParams(weights, atoms))
    assert ours == pytest.approx(theirs, rel=1e-12)


def test_class_log_probabilities_are_normalised_within_situations():
    _, data = _data()
    log_p, log_f = class_log_probabilities(np.array([[0.5, -1.0], [2.0, 0.1]]), data)
    sums = np.add.reduceat(np.exp(log_p), data.starts, axis=0)
    assert np.allclose(sums, 1.0)
    assert log_f.shape == (data.n_groups, 2)
