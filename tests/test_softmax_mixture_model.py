"""Softmax-mixture model functions: oracles on tiny cases, finite differences, samplers."""

import itertools
import math

import numpy as np
import pytest

from softmix.softmax_mixture.em import component_objective, e_step
from softmix.softmax_mixture.model import (
    SoftmaxMixtureParams,
    log_class_probabilities,
    log_likelihood,
    log_mixture_probabilities,
    log_responsibilities,
    params_from_vector,
    params_to_vector,
    sample_choices,
    sample_counts,
    unidentified_directions,
)


def tiny(seed=0, p=6, length=2, k=3, scale=1.0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((p, length))
    w = rng.dirichlet(np.ones(k))
    atoms = scale * rng.standard_normal((k, length))
    counts = rng.integers(0, 5, size=p).astype(float)
    counts[1] = 0.0
    return x, counts, SoftmaxMixtureParams(w, atoms)


def naive_probs(x, params):
    """pi[j, k] and the mixture by explicit loops."""
    p, k = x.shape[0], params.n_components
    pi = np.zeros((p, k))
    for c in range(k):
        denom = sum(math.exp(float(x[l] @ params.atoms[c])) for l in range(p))
        for j in range(p):
            pi[j, c] = math.exp(float(x[j] @ params.atoms[c])) / denom
    mix = np.array([sum(params.weights[c] * pi[j, c] for c in range(k)) for j in range(p)])
    return pi, mix


def test_log_likelihood_matches_naive_loop():
    x, counts, params = tiny()
    pi, mix = naive_probs(x, params)
    naive = sum(counts[j] * math.log(mix[j]) for j in range(len(counts)))
    assert log_likelihood(x, counts, params) == pytest.approx(naive, rel=1e-12)
    np.testing.assert_allclose(np.exp(log_class_probabilities(x, params.atoms)), pi, rtol=1e-12)
    np.testing.assert_allclose(np.exp(log_mixture_probabilities(x, params)), mix, rtol=1e-12)
    resp = np.exp(log_responsibilities(x, params))
    np.testing.assert_allclose(resp, pi * params.weights / mix[:, None], rtol=1e-12)


def test_log_likelihood_is_exact_where_probabilities_underflow():
    x = np.array([[0.0], [1.0], [2.0]])
    params = SoftmaxMixtureParams(np.array([1.0]), np.array([[2000.0]]))  # exp(-4000) = 0.0
    assert log_likelihood(x, np.array([0.0, 0.0, 3.0]), params) == pytest.approx(0.0, abs=1e-12)
    assert log_likelihood(x, np.array([1.0, 0.0, 3.0]), params) == pytest.approx(-4000.0)
    two = SoftmaxMixtureParams(np.array([0.5, 0.5]), np.array([[2000.0], [-2000.0]]))
    assert log_likelihood(x, np.array([1.0, 0.0, 1.0]), two) == pytest.approx(2 * np.log(0.5))


def test_e_step_statistics_match_naive_loops_in_both_paths():
    """The probability-space fast path and the log-space path agree with explicit loops."""
    for scale in (1.0, 400.0):  # 400: scores far apart -> the log-space path
        x, counts, params = tiny(seed=3, p=8, length=2, k=2, scale=scale)
        stats = e_step(np.ascontiguousarray(x.T), counts, params)
        with np.errstate(under="ignore"):
            log_pi = log_class_probabilities(x, params.atoms)
            resp = np.exp(log_responsibilities(x, params))
        pi = np.exp(log_pi)
        assert stats.log_likelihood == pytest.approx(log_likelihood(x, counts, params), rel=1e-12)
        for k in range(2):
            mass = sum(counts[j] * resp[j, k] for j in range(8))
            wsum = sum(counts[j] * resp[j, k] * x[j] for j in range(8))
            xbar = sum(pi[j, k] * x[j] for j in range(8))
            assert stats.mass[k] == pytest.approx(mass, rel=1e-10)
            np.testing.assert_allclose(stats.weighted_sums[k], wsum, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(stats.mean_features[k], xbar, rtol=1e-9, atol=1e-12)


def q_naive(x, counts, resp_k, theta):
    """Q_k(theta) = sum_j n_j w_jk log pi_j(theta), by a direct formula."""
    s = x @ theta
    log_pi = s - np.log(np.sum(np.exp(s - s.max()))) - s.max()
    return float(np.sum(counts * resp_k * log_pi))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_component_gradient_and_hessian_match_finite_differences(seed):
    x, counts, params = tiny(seed=seed, p=9, length=3, k=2)
    resp = np.exp(log_responsibilities(x, params))
    k = 1
    mass = float(counts @ resp[:, k])
    target = (counts * resp[:, k]) @ x / mass
    theta = np.random.default_rng(seed + 10).standard_normal(3)
    xt = np.ascontiguousarray(x.T)
    value, grad, hess = component_objective(xt, target, theta)
    # Q_k = c_k * q: the M-step objective of the spec
    assert mass * value == pytest.approx(q_naive(x, counts, resp[:, k], theta), rel=1e-10)
    h = 1e-6
    eye = np.eye(3)
    fd_grad = np.array([(component_objective(xt, target, theta + h * e, 0)
                         - component_objective(xt, target, theta - h * e, 0)) / (2 * h)
                        for e in eye])
    np.testing.assert_allclose(grad, fd_grad, rtol=1e-6, atol=1e-8)
    fd_hess = np.array([(component_objective(xt, target, theta + h * e)[1]
                         - component_objective(xt, target, theta - h * e)[1]) / (2 * h)
                        for e in eye])
    np.testing.assert_allclose(hess, fd_hess, rtol=1e-5, atol=1e-7)
    # spec: grad Q_k = sum_j n_j w_jk (x_j - xbar(theta)); Hessian -c_k Cov_pi(x)
    pi = np.exp(log_class_probabilities(x, theta[None, :]))[:, 0]
    xbar = pi @ x
    np.testing.assert_allclose(mass * grad, (counts * resp[:, k]) @ (x - xbar), rtol=1e-10,
                               atol=1e-12)
    cov = ((x - xbar) * pi[:, None]).T @ (x - xbar)
    np.testing.assert_allclose(hess, -cov, rtol=1e-10, atol=1e-12)


def test_params_validation_messages():
    with pytest.raises(ValueError, match="sum to 1"):
        SoftmaxMixtureParams(np.array([0.5, 0.6]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        SoftmaxMixtureParams(np.array([1.5, -0.5]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="same number of components"):
        SoftmaxMixtureParams(np.array([0.5, 0.5]), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        SoftmaxMixtureParams(np.array([0.5, 0.5]), np.array([[0.0, np.nan], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="2-D"):
        SoftmaxMixtureParams(np.array([1.0]), np.zeros(3))


def test_params_are_immutable_and_do_not_freeze_the_callers_arrays():
    atoms = np.zeros((2, 2))
    params = SoftmaxMixtureParams(np.array([0.5, 0.5]), atoms)
    atoms[0, 0] = 5.0  # the caller's array stays writable and is not shared
    assert params.atoms[0, 0] == 0.0
    with pytest.raises(ValueError):
        params.atoms[0, 0] = 1.0
    assert params.n_components == 2 and params.n_features == 2


def test_canonical_is_permutation_invariant():
    _, _, params = tiny(seed=4, k=4)
    for perm in itertools.permutations(range(4)):
        permuted = SoftmaxMixtureParams(params.weights[list(perm)], params.atoms[list(perm)])
        c = permuted.canonical()
        # weights are renormalised on construction: equal up to the last bit
        np.testing.assert_allclose(c.weights, params.canonical().weights, rtol=1e-14)
        np.testing.assert_array_equal(c.atoms, params.canonical().atoms)
    assert np.all(np.diff(params.canonical().weights) <= 0)


def test_vector_round_trip_and_zero_weight():
    _, _, params = tiny(seed=5, k=3, length=4)
    v = params_to_vector(params)
    assert v.shape == (2 + 12,)
    back = params_from_vector(v, 3, 4)
    np.testing.assert_allclose(back.weights, params.weights, rtol=1e-12)
    np.testing.assert_array_equal(back.atoms, params.atoms)
    with pytest.raises(ValueError, match="shape"):
        params_from_vector(v[:-1], 3, 4)
    with pytest.raises(ValueError, match="positive"):
        params_to_vector(SoftmaxMixtureParams(np.array([1.0, 0.0]), np.zeros((2, 1))))


def test_unidentified_directions_and_free_parameters():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 3))
    assert unidentified_directions(x).shape == (3, 0)
    with_constant = np.column_stack([x, np.full(50, 2.5)])
    null = unidentified_directions(with_constant)
    assert null.shape == (4, 1)
    np.testing.assert_allclose(np.abs(null[:, 0]), [0, 0, 0, 1], atol=1e-8)
    collinear = np.column_stack([x, x[:, 0] - 2 * x[:, 1] + 1.0])
    null = unidentified_directions(collinear)
    assert null.shape == (4, 1)
    assert np.ptp(collinear @ null[:, 0]) < 1e-8
    params = SoftmaxMixtureParams(np.array([0.5, 0.5]), np.zeros((2, 4)))
    assert params.n_free_parameters() == 1 + 8
    assert params.n_free_parameters(with_constant) == 1 + 6


def test_sample_counts_has_the_multinomial_mean_and_o_pk_cost():
    x, _, params = tiny(seed=6, p=5, k=2)
    n = 2_000_000
    counts = sample_counts(x, params, n, 0)
    assert counts.dtype == np.int64 and counts.sum() == n
    _, mix = naive_probs(x, params)
    sd = np.sqrt(n * mix * (1 - mix))
    assert np.all(np.abs(counts - n * mix) < 5 * sd)
    # N = 10^12 costs nothing: counts are drawn class by class
    big = sample_counts(x, params, 10**12, 1)
    assert big.sum() == 10**12


def test_sample_choices_matches_mixture_and_labels():
    x, _, params = tiny(seed=7, p=4, k=2)
    choices, labels = sample_choices(x, params, 200_000, 0, return_labels=True)
    assert choices.min() >= 0 and choices.max() < 4 and set(np.unique(labels)) <= {0, 1}
    pi, mix = naive_probs(x, params)
    freq = np.bincount(choices, minlength=4) / choices.size
    np.testing.assert_allclose(freq, mix, atol=5e-3)
    assert np.mean(labels == 0) == pytest.approx(params.weights[0], abs=5e-3)
    first = choices[labels == 0]
    np.testing.assert_allclose(np.bincount(first, minlength=4) / first.size, pi[:, 0], atol=1e-2)
    np.testing.assert_array_equal(sample_choices(x, params, 100, 3), sample_choices(x, params, 100, 3))


def test_parameters_of_another_dimension_name_both_shapes():
    x, counts, params = tiny()
    with pytest.raises(ValueError, match=r"same number of columns L, got shapes \(6, 3\) and \(3, 2\)"):
        log_likelihood(np.column_stack([x, x[:, 0]]), counts, params)
    with pytest.raises(ValueError, match="same number of columns L"):
        sample_counts(x[:, :1], params, 10, random_state=0)


def test_log_likelihood_counts_of_the_wrong_length_name_the_argument():
    x, counts, params = tiny()
    with pytest.raises(ValueError, match=r"counts must have one entry per alternative, shape \(6,\)"):
        log_likelihood(x, counts[:4], params)


def test_samplers_reject_more_draws_than_int64_holds():
    """NumPy's multinomial raised OverflowError ('Python int too large to convert to C long')."""
    from softmix.datasets import make_softmax_mixture

    x, _, params = tiny()
    with pytest.raises(ValueError, match="n_samples must be <= 9223372036854775807"):
        sample_counts(x, params, 2**63, random_state=0)
    with pytest.raises(ValueError, match="n_samples must be <= 9223372036854775807"):
        make_softmax_mixture(10**30, 100, 2, 2, return_choices=False, random_state=0)
    assert sample_counts(x, params, 2**62, random_state=0).sum() == 2**62
