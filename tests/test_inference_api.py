"""model.inference / model.summary: names, shapes, intervals, the summary text, to_frame, the
covariance options (sandwich, cluster, bootstrap agree with observed on correct models), the
non-converged warning, bootstrap failure counting, canonical order and metrics.align."""

import numpy as np
import pytest
from scipy import stats

from softmix import ConvergenceWarning, InferenceResult, MixtureOfExperts, SoftmaxMixture
from softmix.datasets import make_gaussian_moe
from softmix.inference.covariance import infer
from softmix.metrics import align
from softmix.moe.likelihood import canonical_order
from softmix.softmax_mixture.model import SoftmaxMixtureParams, sample_choices, sample_counts

TRUTH = SoftmaxMixtureParams(np.array([0.6, 0.4]), np.array([[2.0, 0.0], [-2.0, 1.0]]))


@pytest.fixture(scope="module")
def smm():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((40, 2))
    choices = sample_choices(features, TRUTH, 4000, rng)
    model = SoftmaxMixture(2, n_init=3, random_state=0).fit(features, choices)
    return model, features, choices


@pytest.fixture(scope="module")
def moe():
    X, y, _ = make_gaussian_moe(800, random_state=0)
    return MixtureOfExperts(2, n_init=3, random_state=0).fit(X, y), X, y


def test_softmax_mixture_names_shapes_and_summary(smm):
    model, features, choices = smm
    res = model.inference(features, choices)
    assert isinstance(res, InferenceResult)
    assert res.names == ["weight[0]", "weight[1]", "atom[0,0]", "atom[0,1]", "atom[1,0]",
                         "atom[1,1]"]
    assert res.estimates.shape == res.std_errors.shape == (6,)
    assert res.cov.shape == (6, 6)
    np.testing.assert_allclose(res.estimates[:2], model.weights_)
    np.testing.assert_allclose(res.estimates[2:], model.atoms_.ravel())
    # weights sum to one: their covariance has the (1, 1) direction exactly null
    assert res.std_errors[0] == pytest.approx(res.std_errors[1])
    assert res.cov[:2, :2].sum() == pytest.approx(0.0, abs=1e-12)
    # counts give the same answer as choices (sufficiency)
    counts = np.bincount(choices, minlength=features.shape[0])
    np.testing.assert_allclose(model.inference(features, counts=counts).std_errors,
                               res.std_errors, rtol=1e-10)
    ci = res.conf_int(0.9)
    q = stats.norm.ppf(0.95)
    np.testing.assert_allclose(ci[:, 1] - res.estimates, q * res.std_errors)
    text = model.summary(features, choices)
    for word in ("log-likelihood", "AIC", "BIC", "ICL", "criterion", "converged", "std err",
                 "P>|z|", *res.names):
        assert word in text
    assert f"{model.log_likelihood_:.6g}" in text
    assert f"{model.bic():.6g}" in text


@pytest.mark.parametrize("expert", ["gaussian", "logistic", "multinomial"])
def test_moe_names_for_every_expert_type(expert):
    from softmix.datasets import make_moe

    X, y, _ = make_moe(1500, 2, 2, expert=expert, gate_scale=1.0, coef_scale=1.5,
                       random_state=3)
    if expert == "multinomial":  # string labels
        y = np.array(["a", "b", "c"])[np.asarray(y, dtype=int)]
    model = MixtureOfExperts(2, expert=expert, n_init=2, random_state=0).fit(X, y)
    assert model.converged_
    res = model.inference(X, y)
    gate = [f"gate[0,{j}]" for j in range(3)]
    if expert == "multinomial":
        coef = [f"coef[{i},{c},{j}]" for i in range(2) for c in range(2) for j in range(3)]
        assert res.names == gate + coef
        assert res.estimates[3:9] == pytest.approx(model.expert_coef_[0, :2].ravel())
    elif expert == "logistic":
        assert res.names == gate + [f"coef[{i},{j}]" for i in range(2) for j in range(3)]
    else:
        assert res.names == gate + ["coef[0,0]", "coef[0,1]", "coef[0,2]", "variance[0]",
                                    "coef[1,0]", "coef[1,1]", "coef[1,2]", "variance[1]"]
        assert res.estimates[res.names.index("variance[1]")] == pytest.approx(
            model.expert_variance_[1])
    assert res.cov.shape == (len(res.names),) * 2
    assert np.all(np.isfinite(res.std_errors)) and np.all(res.std_errors > 0)
    assert res.estimates[:3] == pytest.approx(model.gating_coef_[0])


def test_to_frame_columns(moe):
    model, X, y = moe
    frame = model.inference(X, y).to_frame()
    assert list(frame.columns) == ["estimate", "std_error", "z", "p_value", "ci_lower",
                                   "ci_upper"]
    assert list(frame.index) == model.inference(X, y).names


def test_to_frame_without_pandas_names_it(moe, monkeypatch):
    import sys

    model, X, y = moe
    res = model.inference(X, y)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        res.to_frame()


def test_not_converged_fit_warns(smm):
    _, features, choices = smm
    with pytest.warns(ConvergenceWarning):
        model = SoftmaxMixture(2, max_iter=2, random_state=0, accelerate=None).fit(features,
                                                                                     choices)
    assert not model.converged_
    with pytest.warns(ConvergenceWarning, match="non-stationary point"):
        res = model.inference(features, choices)
    assert "did not converge" in res.summary()


def test_sandwich_and_bootstrap_agree_with_observed_on_a_correct_model(smm, moe):
    model, features, choices = smm
    obs = model.inference(features, choices).std_errors
    sand = model.inference(features, choices, method="sandwich").std_errors
    np.testing.assert_allclose(sand, obs, rtol=0.15)
    boot = model.inference(features, choices, method="bootstrap", n_boot=60, random_state=0)
    assert boot.extra["n_used"] + boot.extra["n_failed"] + boot.extra["n_not_converged"] == 60
    np.testing.assert_allclose(boot.std_errors, obs, rtol=0.35)  # 60 replicates: SE of SD ~9%
    param = model.inference(features, choices, method="bootstrap", bootstrap="parametric",
                            n_boot=60, random_state=1)
    np.testing.assert_allclose(param.std_errors, obs, rtol=0.35)
    mo, X, y = moe
    obs = mo.inference(X, y).std_errors
    np.testing.assert_allclose(mo.inference(X, y, method="sandwich").std_errors, obs, rtol=0.2)
    boot = mo.inference(X, y, method="bootstrap", n_boot=40, random_state=0)
    np.testing.assert_allclose(boot.std_errors, obs, rtol=0.4)
    assert boot.extra["replicates"].shape == (boot.extra["n_used"], len(boot.names))
    again = mo.inference(X, y, method="bootstrap", n_boot=40, random_state=0)
    np.testing.assert_array_equal(again.std_errors, boot.std_errors)  # spawned, reproducible


def test_cluster_sandwich_with_singleton_groups_is_the_sandwich_times_g_over_g_minus_1(moe):
    model, X, y = moe
    n = X.shape[0]
    plain = model.inference(X, y, method="sandwich")
    single = model.inference(X, y, method="sandwich", groups=np.arange(n))
    np.testing.assert_allclose(single.cov, plain.cov * n / (n - 1), rtol=1e-10)
    # clusters of duplicated rows: every score counted twice inside its cluster
    X2, y2 = np.vstack([X, X]), np.concatenate([y, y])
    twice = MixtureOfExperts(2, init=model.params_, tol=1e-12).fit(X2, y2)
    clustered = twice.inference(X2, y2, method="sandwich", groups=np.tile(np.arange(n), 2))
    assert clustered.extra["n_groups"] == n
    np.testing.assert_allclose(clustered.std_errors, single.std_errors, rtol=1e-3)
    with pytest.raises(ValueError, match="groups"):
        model.inference(X, y, method="sandwich", groups=np.arange(n - 1))


def test_bootstrap_counts_failed_and_non_converged_replicates_without_redrawing():
    from softmix.softmax_mixture.likelihood import SoftmaxMixtureLikelihood

    rng = np.random.default_rng(0)
    features = rng.standard_normal((20, 2))
    counts = sample_counts(features, TRUTH, 2000, rng).astype(float)
    lik = SoftmaxMixtureLikelihood(features, counts, 2)
    theta = lik.to_vector(TRUTH)
    calls = []

    def replicate(child, kind):
        calls.append(kind)
        i = len(calls)
        if i % 4 == 0:
            raise ValueError("boom")
        return lik.reported(theta)[0] + child.standard_normal(6), i % 4 != 1

    res = infer(lik, theta, method="bootstrap", n_boot=20, replicate=replicate, random_state=0)
    assert len(calls) == 20  # never redrawn
    assert res.extra["n_failed"] == 5 and res.extra["n_not_converged"] == 5
    assert res.extra["n_used"] == 10
    assert "5 bootstrap replicate(s) failed" in res.summary()
    with pytest.raises(ValueError, match="bootstrap replicates converged"):
        infer(lik, theta, method="bootstrap", n_boot=3, replicate=lambda r, k: 1 / 0)


def test_bad_arguments_are_named(smm):
    model, features, choices = smm
    with pytest.raises(ValueError, match="method"):
        model.inference(features, choices, method="hessian")
    with pytest.raises(ValueError, match="level"):
        model.inference(features, choices, level=95)
    with pytest.raises(ValueError, match="bootstrap"):
        model.inference(features, choices, method="bootstrap", bootstrap="wild")
    with pytest.raises(ValueError, match="choices"):
        model.inference(features, counts=np.ones(40), method="sandwich", groups=np.arange(40))


def test_canonical_order_after_fit(smm, moe):
    model, _, _ = smm
    assert np.all(np.diff(model.weights_) <= 0)
    mo, X, _ = moe
    np.testing.assert_array_equal(canonical_order(mo.params_, X), np.arange(2))
    share = mo.gate_proba(X).mean(axis=0)
    assert share[0] >= share[1]


def test_align_undoes_a_permutation(smm, moe):
    model, _, _ = smm
    p = model.params_
    swapped = SoftmaxMixtureParams(p.weights[::-1], p.atoms[::-1])
    back = align(swapped, model)
    np.testing.assert_allclose(back.atoms, p.atoms)
    np.testing.assert_allclose(back.weights, p.weights)
    mo = moe[0]
    perm = mo.params_.permute([1, 0])
    back = align(perm, mo.params_)
    np.testing.assert_allclose(back.gating, mo.params_.gating, atol=1e-12)
    np.testing.assert_allclose(back.expert_coef, mo.params_.expert_coef)
    with pytest.raises(TypeError, match="SoftmaxMixtureParams"):
        align(p, mo.params_)


def test_softmax_mixture_cluster_options_use_the_choices(smm):
    model, features, choices = smm
    n = choices.size
    plain = model.inference(features, choices, method="sandwich")
    single = model.inference(features, choices, method="sandwich", groups=np.arange(n))
    np.testing.assert_allclose(single.cov, plain.cov * n / (n - 1), rtol=1e-8, atol=1e-14)
    pairs = model.inference(features, choices, method="sandwich", groups=np.arange(n) // 2)
    assert pairs.extra["n_groups"] == n // 2
    assert np.all(np.isfinite(pairs.std_errors))
    boot = model.inference(features, choices, method="bootstrap", groups=np.arange(n) // 4,
                           n_boot=12, random_state=0)
    assert boot.extra["n_used"] + boot.extra["n_failed"] + boot.extra["n_not_converged"] == 12
    assert boot.extra["n_used"] >= 10


def test_ridge_fit_uses_the_penalised_information(moe):
    _, X, y = moe
    model = MixtureOfExperts(2, ridge=5.0, n_init=2, random_state=0).fit(X, y)
    res = model.inference(X, y)
    assert "ridge=5" in res.summary()
    assert res.model["log-likelihood"] == pytest.approx(model.log_likelihood_)
    lik, theta = model._protocol().build(model, X, y)
    # the MAP fit is a stationary point of the penalised objective the protocol describes
    assert np.abs(lik.score(theta)).max() < 1e-2 * np.abs(lik.score_observations(theta)).sum()
