"""softmix.core.membership: the per-group E-step and the class-membership M-step."""

import numpy as np
import pytest
from scipy import optimize

from softmix.core.membership import (
    encode_groups,
    group_log_posterior,
    group_sum,
    membership_log_weights,
    membership_mstep,
)
from softmix.core.special import logsumexp


def test_encode_groups_and_group_sum_match_a_loop():
    ids = np.array(["b", "a", "c", "a", "b", "b"])
    codes, unique = encode_groups(ids)
    assert list(unique) == ["a", "b", "c"]
    assert np.array_equal(unique[codes], ids)
    values = np.arange(12.0).reshape(6, 2)
    sums = group_sum(values, codes, 3)
    for g in range(3):
        assert np.allclose(sums[g], values[codes == g].sum(axis=0))
    assert np.allclose(group_sum(values[:, 0], codes, 3), sums[:, 0])


def test_group_log_posterior_is_bayes_rule():
    rng = np.random.default_rng(0)
    log_w = np.log(rng.dirichlet(np.ones(3), size=5))
    llg = rng.normal(size=(5, 3)) * 10
    s = rng.uniform(0.5, 2.0, size=5)
    log_resp, loglik, log_marginal = group_log_posterior(log_w, llg, s)
    joint = np.exp(log_w + llg)
    assert np.allclose(np.exp(log_resp), joint / joint.sum(axis=1, keepdims=True))
    assert np.allclose(log_marginal, np.log(joint.sum(axis=1)))
    assert loglik == pytest.approx(float(s @ np.log(joint.sum(axis=1))))
    # shared weights (K,) broadcast
    _, ll_shared, _ = group_log_posterior(log_w[0], llg)
    assert ll_shared == pytest.approx(float(np.sum(logsumexp(llg + log_w[0], axis=1))))


def test_membership_mstep_without_covariates_is_the_mean_posterior():
    rng = np.random.default_rng(1)
    resp = rng.dirichlet(np.ones(3), size=40)
    w = rng.uniform(0.5, 2.0, size=40)
    coef = membership_mstep(None, resp, weights=w)
    assert coef.shape == (3, 1) and coef[-1, 0] == 0.0  # the last class is the reference
    weights = np.exp(membership_log_weights(coef, None, 1))[0]
    assert np.allclose(weights, w @ resp / w.sum())
    # the Newton route (ridge > 0 forces it) agrees as ridge -> 0
    coef_newton = membership_mstep(np.zeros((40, 0)), resp, weights=w, ridge=1e-10)
    assert np.allclose(coef_newton, coef, atol=1e-6)


def test_membership_mstep_maximises_the_weighted_soft_label_likelihood():
    rng = np.random.default_rng(2)
    g, q, k = 200, 2, 3
    Z = rng.normal(size=(g, q))
    resp = rng.dirichlet(np.ones(k), size=g)
    w = rng.uniform(0.5, 2.0, size=g)
    coef = membership_mstep(Z, resp, weights=w, ridge=0.1)
    assert coef.shape == (k, q + 1)
    assert np.all(coef[-1] == 0.0)

    def neg(x):
        c = np.vstack([x.reshape(k - 1, q + 1), np.zeros(q + 1)])
        lw = membership_log_weights(c, Z, g)
        return -(w @ np.sum(resp * lw, axis=1)) + 0.05 * np.sum(x * x)

    ref = optimize.minimize(neg, np.zeros((k - 1) * (q + 1)), method="BFGS",
                            options={"gtol": 1e-10})
    assert neg(coef[:-1].ravel()) <= ref.fun + 1e-8
    assert np.allclose(coef[:-1].ravel(), ref.x, atol=1e-4)
    # a warm start reaches the same point
    again = membership_mstep(Z, resp, coef0=coef + 0.3, weights=w, ridge=0.1)
    assert np.allclose(again, coef, atol=1e-5)
