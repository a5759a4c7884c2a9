"""Property-based invariances of both families (hypothesis, a few small examples each).

Permuting components/experts or alternatives/samples, shifting and rescaling a column, and
duplicating the data leave the fit unchanged up to the implied reparametrisation; the same seed
twice is bit-identical; ``max_iter=0`` returns the start; probabilities sum to one.
Fits run to a tight tolerance from a given start (the truth), so both fits of a pair reach the
same optimum and differ only by floating-point rounding.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softmix import MixtureOfExperts, SoftmaxMixture, SoftmixWarning
from softmix.datasets import make_moe, make_softmax_mixture
from softmix.metrics import match_components
from softmix.moe.model import MoEParams
from softmix.softmax_mixture import SoftmaxMixtureParams

SETTINGS = settings(max_examples=3, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**16)

# ------------------------------------------------------------------ softmax mixture helpers


def _smm_data(seed, p=30, big_l=2, k=2, n=5_000):
    return make_softmax_mixture(n, p, big_l, k, separation=2.0, return_choices=False,
                                random_state=seed)


def _smm_fit(features, counts, start, **kw):
    kw.setdefault("tol", 1e-12)
    kw.setdefault("max_iter", 2_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SoftmixWarning)
        return SoftmaxMixture(start.n_components, init=start, random_state=0, **kw).fit(
            features, counts=counts)


def _same_mixture(a: SoftmaxMixture, b: SoftmaxMixture, atoms_b=None, atol=1e-5):
    """Same log-likelihood and the same (weights, atoms) after matching the components."""
    atoms_b = b.atoms_ if atoms_b is None else atoms_b
    order = match_components(a.atoms_, atoms_b)
    np.testing.assert_allclose(a.atoms_[order], atoms_b, atol=atol, rtol=1e-5)
    np.testing.assert_allclose(a.weights_[order], b.weights_, atol=atol)


@SETTINGS
@given(seed=seeds)
def test_smm_permuting_alternatives_and_components_leaves_the_fit(seed):
    d = _smm_data(seed)
    rng = np.random.default_rng(seed)
    base = _smm_fit(d.features, d.counts, d.params)
    rows = rng.permutation(d.features.shape[0])
    comps = rng.permutation(d.params.n_components)
    start = SoftmaxMixtureParams(d.weights[comps], d.atoms[comps])
    other = _smm_fit(d.features[rows], d.counts[rows], start)
    assert other.log_likelihood_ == pytest.approx(base.log_likelihood_, rel=1e-9)
    _same_mixture(base, other)


@SETTINGS
@given(seed=seeds, shift=st.floats(-50, 50))
def test_smm_shifting_a_column_leaves_the_fit(seed, shift):
    """Adding a constant to a feature adds the same term to every alternative's utility."""
    d = _smm_data(seed)
    base = _smm_fit(d.features, d.counts, d.params)
    shifted = d.features.copy()
    shifted[:, 1] += shift
    other = _smm_fit(shifted, d.counts, d.params)
    assert other.log_likelihood_ == pytest.approx(base.log_likelihood_, rel=1e-9)
    _same_mixture(base, other)


@SETTINGS
@given(seed=seeds, log_scale=st.floats(-2, 2))
def test_smm_rescaling_a_column_rescales_the_atoms(seed, log_scale):
    s = 10.0**log_scale
    d = _smm_data(seed)
    base = _smm_fit(d.features, d.counts, d.params)
    scaled = d.features.copy()
    scaled[:, 0] *= s
    atoms0 = d.atoms.copy()
    atoms0[:, 0] /= s
    other = _smm_fit(scaled, d.counts, SoftmaxMixtureParams(d.weights, atoms0))
    assert other.log_likelihood_ == pytest.approx(base.log_likelihood_, rel=1e-9)
    back = other.atoms_.copy()
    back[:, 0] *= s
    order = match_components(base.atoms_, back)
    np.testing.assert_allclose(base.atoms_[order], back, atol=1e-5, rtol=1e-5)


def test_smm_rescaling_a_column_by_1e6_keeps_it():
    """Base: a column with 1e-6 the spread of the other is projected out as 'unidentified'."""
    test_smm_rescaling_a_column_rescales_the_atoms.hypothesis.inner_test(seed=0, log_scale=-6.0)


@SETTINGS
@given(seed=seeds)
def test_smm_duplicating_the_data_leaves_the_fit(seed):
    d = _smm_data(seed)
    base = _smm_fit(d.features, d.counts, d.params)
    twice = _smm_fit(d.features, 2 * d.counts, d.params)
    assert twice.log_likelihood_ == pytest.approx(2 * base.log_likelihood_, rel=1e-9)
    _same_mixture(base, twice, atol=1e-4)


@SETTINGS
@given(seed=seeds, n_init=st.integers(1, 2), m_step=st.sampled_from(["newton", "gradient"]))
def test_smm_same_seed_is_bit_identical_and_probabilities_sum_to_one(seed, n_init, m_step):
    d = _smm_data(seed)

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SoftmixWarning)
            return SoftmaxMixture(2, n_init=n_init, m_step=m_step, max_iter=50,
                                  random_state=seed).fit(d.features, counts=d.counts)

    a, b = fit(), fit()
    assert np.array_equal(a.atoms_, b.atoms_) and np.array_equal(a.weights_, b.weights_)
    assert np.array_equal(a.history_, b.history_)
    assert a.choice_probabilities().sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(a.choice_probabilities(per_class=True).sum(axis=0), 1.0,
                               atol=1e-12)
    post = a.predict_proba(np.arange(d.features.shape[0]))
    np.testing.assert_allclose(post.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(post >= 0)


@SETTINGS
@given(seed=seeds)
def test_smm_max_iter_zero_returns_the_start(seed):
    d = _smm_data(seed)
    start = SoftmaxMixtureParams(np.array([0.3, 0.7]), d.atoms + 0.1)
    fit = _smm_fit(d.features, d.counts, start, max_iter=0)
    assert np.array_equal(fit.atoms_, start.atoms) and np.array_equal(fit.weights_,
                                                                      start.weights)
    assert fit.n_iter_ == 0


# ------------------------------------------------------------------ mixtures of experts

EXPERTS = ("gaussian", "logistic", "multinomial")


def _moe_data(seed, expert, n=300):
    """Well-determined data: classes overlap (coefficients of scale 0.7), so that no expert
    separates its classes and the MLE is finite (separation is issue 9 MoE item 3)."""
    return make_moe(n, 2, 2, expert=expert, n_classes=3, gate_scale=1.5,
                    coef_scale=1.5 if expert == "gaussian" else 0.7, random_state=seed)


def _moe_fit(X, y, start, expert, **kw):
    kw.setdefault("tol", 1e-11)
    kw.setdefault("max_iter", 400)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SoftmixWarning)
        return MixtureOfExperts(start.n_experts, expert=expert, init=start, random_state=0,
                                **kw).fit(X, y)


def _affine(params: MoEParams, column: int, scale: float, shift: float) -> MoEParams:
    """The parameters of the same model on ``X[:, column] * scale + shift``."""
    def move(arr):
        arr = np.array(arr, dtype=float)
        arr[..., 0] -= arr[..., 1 + column] * shift / scale
        arr[..., 1 + column] /= scale
        return arr
    return MoEParams(move(params.gating), move(params.expert_coef), params.expert_variance,
                     params.expert)


def _same_fit(a: MixtureOfExperts, b: MixtureOfExperts, Xa, ya, Xb, yb, params_b=None,
              atol=1e-4):
    """Two fits of the same model: Gaussian experts (a finite, identified MLE here) by their
    parameters (``params_b``: b's mapped to a's parametrisation); logistic/multinomial experts,
    whose MLE can lie at infinity when one expert separates its points (issue 9 MoE item 3),
    by what they predict: the posterior over experts and the class probabilities."""
    if a.expert == "gaussian":
        _close(a.params_, b.params_ if params_b is None else params_b, atol=atol)
    else:
        np.testing.assert_allclose(np.sort(a.posterior(Xa, ya), axis=1),
                                   np.sort(b.posterior(Xb, yb), axis=1), atol=atol)
        np.testing.assert_allclose(a.predict_proba(Xa), b.predict_proba(Xb), atol=atol)


def _close(a: MoEParams, b: MoEParams, atol=1e-4):
    np.testing.assert_allclose(a.gating, b.gating, atol=atol, rtol=1e-4)
    np.testing.assert_allclose(a.expert_coef, b.expert_coef, atol=atol, rtol=1e-4)
    if a.expert_variance is not None:
        np.testing.assert_allclose(a.expert_variance, b.expert_variance, atol=atol, rtol=1e-4)


@pytest.mark.parametrize("expert", EXPERTS)
@SETTINGS
@given(seed=seeds)
def test_moe_permuting_samples_and_experts_leaves_the_fit(expert, seed):
    X, y, truth = _moe_data(seed, expert)
    # a small ridge for classification experts: one expert can separate its points, and then
    # the MLE is at infinity and two fits drift apart along it (seen with the declared minimum
    # versions, make test-min); the penalised fit is finite and just as permutation-invariant
    kw = {} if expert == "gaussian" else {"ridge": 1e-2}
    base = _moe_fit(X, y, truth, expert, **kw)
    rows = np.random.default_rng(seed).permutation(len(y))
    other = _moe_fit(X[rows], y[rows], truth.permute([1, 0]), expert, **kw)
    assert other.log_likelihood_ == pytest.approx(base.log_likelihood_, rel=1e-8)
    # both fits end in the canonical expert order (softmix.moe.likelihood.canonical_order)
    _same_fit(base, other, X[rows], y[rows], X[rows], y[rows], params_b=other.params_)


@pytest.mark.parametrize("expert", EXPERTS)
@SETTINGS
@given(seed=seeds, log_scale=st.floats(-1.5, 1.5), shift=st.floats(-20, 20))
def test_moe_affine_change_of_a_column_is_a_reparametrisation(expert, seed, log_scale, shift):
    scale = 10.0**log_scale
    X, y, truth = _moe_data(seed, expert)
    base = _moe_fit(X, y, truth, expert)
    X2 = X.copy()
    X2[:, 1] = X2[:, 1] * scale + shift
    other = _moe_fit(X2, y, _affine(truth, 1, scale, shift), expert)
    assert other.log_likelihood_ == pytest.approx(base.log_likelihood_, rel=1e-7)
    np.testing.assert_allclose(np.sort(other.posterior(X2, y), axis=1),
                               np.sort(base.posterior(X, y), axis=1), atol=1e-4)
    np.testing.assert_allclose(other.predict(X2), base.predict(X), rtol=1e-4, atol=1e-4)
    if expert == "gaussian":  # the slopes (the intercepts absorb shift x slope: rounding)
        mapped = _affine(base.params_, 1, scale, shift)
        np.testing.assert_allclose(other.params_.expert_coef[:, 1:],
                                   mapped.expert_coef[:, 1:], atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(other.params_.expert_variance,
                                   base.params_.expert_variance, rtol=1e-4)


@pytest.mark.parametrize("expert", [
    # d431ed1: the logistic/multinomial fits on the shifted column ended 0.01 / 0.9 nats lower
    "gaussian", "logistic", "multinomial",
])
def test_moe_shifting_a_column_by_1e6_is_a_reparametrisation(expert):
    """A large offset is a reparametrisation (issue 9 MoE item 1: lstsq's rcond dropped such a
    column from Gaussian experts on its data)."""
    test_moe_affine_change_of_a_column_is_a_reparametrisation.hypothesis.inner_test(
        expert=expert, seed=0, log_scale=0.0, shift=1e6)


@SETTINGS
@given(seed=seeds, log_scale=st.floats(-2, 2), shift=st.floats(-100, 100))
def test_moe_affine_change_of_y_is_a_reparametrisation(seed, log_scale, shift):
    s = 10.0**log_scale
    X, y, truth = _moe_data(seed, "gaussian")
    base = _moe_fit(X, y, truth, "gaussian")
    coef = truth.expert_coef * s
    coef[:, 0] += shift
    start = truth.replace(expert_coef=coef, expert_variance=truth.expert_variance * s**2)
    other = _moe_fit(X, y * s + shift, start, "gaussian")
    assert other.log_likelihood_ == pytest.approx(base.log_likelihood_ - len(y) * np.log(s),
                                                  rel=1e-7, abs=1e-6)
    back = base.params_.expert_coef * s
    back[:, 0] += shift
    np.testing.assert_allclose(other.params_.expert_coef, back, atol=1e-3 * s, rtol=1e-4)
    np.testing.assert_allclose(other.params_.expert_variance,
                               base.params_.expert_variance * s**2, rtol=1e-4)
    np.testing.assert_allclose(other.params_.gating, base.params_.gating, atol=1e-4)


@pytest.mark.parametrize("expert", EXPERTS)
@SETTINGS
@given(seed=seeds)
def test_moe_duplicating_the_data_leaves_the_fit(expert, seed):
    X, y, truth = _moe_data(seed, expert)
    base = _moe_fit(X, y, truth, expert)
    twice = _moe_fit(np.vstack([X, X]), np.concatenate([y, y]), truth, expert)
    assert twice.log_likelihood_ == pytest.approx(2 * base.log_likelihood_, rel=1e-8)
    _same_fit(base, twice, X, y, X, y)


@pytest.mark.parametrize("solver", ["em", "gd", "gradient_em"])
@pytest.mark.parametrize("expert", EXPERTS)
@SETTINGS
@given(seed=seeds)
def test_moe_same_seed_max_iter_zero_and_probabilities(expert, solver, seed):
    X, y, truth = _moe_data(seed, expert, n=120)

    def fit(**kw):
        kw = {"max_iter": 15, "random_state": seed, **kw}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SoftmixWarning)
            return MixtureOfExperts(2, expert=expert, solver=solver, **kw).fit(X, y)

    a, b = fit(), fit()
    for name in ("gating", "expert_coef"):
        assert np.array_equal(getattr(a.params_, name), getattr(b.params_, name))
    assert np.array_equal(a.history_, b.history_)
    np.testing.assert_allclose(a.gate_proba(X).sum(axis=1), 1.0, atol=1e-12)
    post = a.posterior(X, y)
    np.testing.assert_allclose(post.sum(axis=1), 1.0, atol=1e-12)
    if expert != "gaussian":
        np.testing.assert_allclose(a.predict_proba(X).sum(axis=1), 1.0, atol=1e-12)
    start = fit(init=truth, max_iter=0, random_state=None)
    assert np.array_equal(start.params_.gating, truth.gating)
    assert np.array_equal(start.params_.expert_coef, truth.expert_coef)
    assert start.n_iter_ == 0
