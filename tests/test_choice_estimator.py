"""softmix.LatentClassLogit: recovery, EM invariants, special cases, methods, bad input."""

import warnings

import numpy as np
import pytest

from softmix import LatentClassLogit, SoftmaxMixture
from softmix.choice.datasets import make_latent_class_logit
from softmix.exceptions import NotFittedError


def _fit(d, **kw):
    kw.setdefault("random_state", 0)
    kw.setdefault("n_init", 3)
    return LatentClassLogit(d.coef.shape[0], **kw).fit(
        d.X, d.chosen, d.situations, groups=d.groups, covariates=d.covariates)


def _error(model, d):
    """Max abs parameter error after the best of the K! class matchings."""
    from itertools import permutations

    best = np.inf
    for perm in permutations(range(d.coef.shape[0])):
        p = model.params_.permuted(np.array(perm))
        err = max(np.max(np.abs(p.coef - d.coef)),
                  np.max(np.abs(p.membership_coef - d.membership_coef)))
        best = min(best, err)
    return best


def test_recovery_error_shrinks_with_n():
    coef = np.array([[1.5, -1.0, 0.5], [-1.0, 1.0, 1.5]])
    gamma = np.array([[0.3, 1.0], [0.0, 0.0]])  # the last class is the reference
    errors = []
    for n in (200, 3200):
        d = make_latent_class_logit(n, 5, 4, 3, 2, n_covariates=1, coef=coef,
                                    membership_coef=gamma, random_state=1)
        m = _fit(d)
        assert m.converged_
        errors.append(_error(m, d))
    assert errors[1] < errors[0] / 2.0  # root-n rate: 4x fewer -> 1/4 expected
    assert errors[1] < 0.2


def test_em_history_is_monotone_and_restarts_keep_the_best():
    d = make_latent_class_logit(200, 4, 4, 2, 2, n_covariates=1, random_state=2)
    m = _fit(d, accelerate=None, n_init=2)
    h = m.history_
    assert np.all(np.diff(h) >= -1e-9 * np.abs(h[1:]))
    assert m.log_likelihood_ == pytest.approx(np.max(m.fit_result_.all_objectives))
    assert m.fit_result_.criterion == "newton_decrement"
    assert 0.0 <= m.fit_result_.criterion_value < 1e-4


def test_fit_twice_same_seed_is_identical():
    d = make_latent_class_logit(100, 3, 3, 2, 2, random_state=3)
    a, b = _fit(d), _fit(d)
    assert np.array_equal(a.coef_, b.coef_) and a.log_likelihood_ == b.log_likelihood_


def test_one_situation_per_group_equals_no_groups():
    d = make_latent_class_logit(200, 1, 4, 2, 2, random_state=4)
    a = LatentClassLogit(2, random_state=0).fit(d.X, d.chosen, d.situations, groups=d.groups)
    b = LatentClassLogit(2, random_state=0).fit(d.X, d.chosen, d.situations)
    assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, rel=1e-12)
    assert np.allclose(a.coef_, b.coef_) and a.n_groups_ == b.n_groups_ == 200
    assert a.bic() == pytest.approx(b.bic())


def test_fixed_design_fit_reaches_the_softmax_mixture_optimum():
    rng = np.random.default_rng(5)
    p, length, n = 8, 2, 400
    smm = SoftmaxMixture(2, n_init=5, random_state=0, tol=1e-12)
    features = rng.standard_normal((p, length))
    atoms = np.array([[2.0, 0.0], [0.0, -2.0]])
    logits = features @ atoms.T
    probs = 0.5 * (np.exp(logits) / np.exp(logits).sum(0)).sum(axis=1)
    choices = rng.choice(p, size=n, p=probs)
    smm.fit(features, choices)
    X = np.tile(features, (n, 1))
    situations = np.repeat(np.arange(n), p)
    chosen = (np.tile(np.arange(p), n) == np.repeat(choices, p)).astype(int)
    m = LatentClassLogit(2, n_init=5, random_state=0, tol=1e-12).fit(X, chosen, situations)
    assert m.log_likelihood_ == pytest.approx(smm.log_likelihood_, abs=1e-5)


def test_methods_predict_score_bic_sample_from_frame():
    pd = pytest.importorskip("pandas")
    d = make_latent_class_logit(150, 4, 3, 2, 2, n_covariates=1, random_state=6)
    m = _fit(d, n_init=2)
    post = m.predict_proba()
    assert post.shape == (150, 2) and np.allclose(post.sum(axis=1), 1.0)
    again = m.predict_proba(d.X, d.chosen, d.situations, groups=d.groups,
                            covariates=d.covariates)
    assert np.allclose(again, post)
    assert m.score() == pytest.approx(m.log_likelihood_ / 150)
    k = m.n_parameters()
    assert k == 2 * 2 + 1 * 2
    assert m.bic() == pytest.approx(-2 * m.log_likelihood_ + k * np.log(150))
    assert m.aic() == pytest.approx(-2 * m.log_likelihood_ + 2 * k)
    chosen, classes = m.sample(d.X, d.situations, groups=d.groups, covariates=d.covariates,
                               random_state=0)
    assert np.all(np.bincount(d.situations, weights=chosen) == 1) and classes.shape == (150,)
    p = m.choice_probabilities(d.X, d.situations, groups=d.groups, covariates=d.covariates)
    assert np.allclose(np.bincount(d.situations, weights=p), 1.0)
    df = pd.DataFrame({"y": d.chosen, "sit": d.situations, "id": d.groups, "a": d.X[:, 0],
                       "b": d.X[:, 1], "z": d.covariates[:, 0]})
    f = LatentClassLogit.from_frame(df, choice="y", situation="sit", group="id",
                                    attributes=["a", "b"], covariates=["z"], n_classes=2,
                                    n_init=2, random_state=0)
    assert f.log_likelihood_ == pytest.approx(m.log_likelihood_, rel=1e-10)
    assert f.attributes_ == ["a", "b"]
    with pytest.raises(ValueError, match="not in df"):
        LatentClassLogit.from_frame(df, choice="y", situation="sit", attributes=["nope"])


def test_max_iter_zero_returns_a_given_start_and_posterior_start_works():
    d = make_latent_class_logit(80, 3, 3, 2, 2, random_state=7)
    start = {"coef": d.coef, "weights": [0.5, 0.5]}
    m = LatentClassLogit(2, init=start, max_iter=0).fit(d.X, d.chosen, d.situations,
                                                        groups=d.groups)
    assert np.allclose(m.coef_, d.coef) and m.n_iter_ == 0
    resp = np.full((80, 2), 0.5)
    resp[:40] = [0.9, 0.1]
    m2 = LatentClassLogit(2, init=resp).fit(d.X, d.chosen, d.situations, groups=d.groups)
    assert m2.converged_ and m2.init_method_ == "given"


def test_sample_weight_equals_duplicated_groups():
    d = make_latent_class_logit(60, 2, 3, 2, 2, random_state=8)
    w = np.where(d.groups < 30, 2.0, 1.0)
    start = {"coef": d.coef, "weights": [0.4, 0.6]}
    a = LatentClassLogit(2, init=start).fit(d.X, d.chosen, d.situations, groups=d.groups,
                                            sample_weight=w)
    dup = d.groups < 30
    X = np.vstack([d.X, d.X[dup]])
    chosen = np.r_[d.chosen, d.chosen[dup]]
    sit = np.r_[d.situations, d.situations[dup] + 10_000]
    grp = np.r_[d.groups, d.groups[dup] + 10_000]
    b = LatentClassLogit(2, init=start).fit(X, chosen, sit, groups=grp)
    assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, rel=1e-9)
    assert np.allclose(a.coef_, b.coef_, atol=1e-5)


def _good():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 2.0], [0.0, -1.0]])
    chosen = np.array([1, 0, 0, 0, 1])
    situations = np.array([10, 10, 10, 20, 20])
    return X, chosen, situations


@pytest.mark.parametrize("change, exc, match", [
    (lambda a: {**a, "chosen": np.array([1, 1, 0, 0, 1])}, ValueError, "situation 10 has 2"),
    (lambda a: {**a, "chosen": np.array([1, 0, 0, 0, 0])}, ValueError, "situation 20 has 0"),
    (lambda a: {**a, "chosen": np.array([2, 0, 0, 0, 1])}, ValueError, "0/1"),
    (lambda a: {**a, "situations": np.array([10, 10, 20])}, ValueError, "situations must"),
    (lambda a: {**a, "X": np.where(np.eye(5, 2) > 0, np.nan, a["X"])}, ValueError, "NaN"),
    (lambda a: {**a, "X": np.c_[a["X"], np.ones(5)]}, ValueError, "constant within every"),
    (lambda a: {**a, "groups": np.array([1, 2, 1, 3, 3])}, ValueError, "groups must be constant"),
    (lambda a: {**a, "covariates": np.arange(5.0)}, ValueError, "covariates must be constant"),
    (lambda a: {**a, "sample_weight": -np.ones(5)}, ValueError, "non-negative"),
])
def test_bad_input_errors_name_the_argument(change, exc, match):
    X, chosen, situations = _good()
    args = change({"X": X, "chosen": chosen, "situations": situations})
    kw = {k: args.pop(k) for k in ("groups", "covariates", "sample_weight") if k in args}
    with pytest.raises(exc, match=match):
        LatentClassLogit(1).fit(args["X"], args["chosen"], args["situations"], **kw)


def test_hyperparameter_and_state_errors():
    X, chosen, situations = _good()
    with pytest.raises(NotFittedError):
        LatentClassLogit(2).predict_proba()
    with pytest.raises(ValueError, match="exceeds the number of groups"):
        LatentClassLogit(3).fit(X, chosen, situations)
    with pytest.raises(ValueError, match="init must be one of"):
        LatentClassLogit(1, init="kmeans").fit(X, chosen, situations)
    with pytest.raises(ValueError, match="shape"):
        LatentClassLogit(2, init=np.full((3, 2), 0.5)).fit(X, chosen, situations)
    with pytest.raises(ValueError, match="n_init"):
        LatentClassLogit(2, init=np.full((2, 2), 0.5), n_init=2).fit(X, chosen, situations)
    with pytest.raises(TypeError, match="n_classes"):
        LatentClassLogit(1.5).fit(X, chosen, situations)
    m = LatentClassLogit(1).fit(X, chosen, situations)
    with pytest.raises(ValueError, match="2 columns"):
        m.score(X[:, :1], chosen, situations)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(m.score(X, chosen, situations))


def test_fitted_model_is_a_stationary_point_of_the_likelihood_protocol():
    from softmix.choice import likelihood as lk

    d = make_latent_class_logit(200, 4, 4, 2, 2, n_covariates=1, random_state=9,
                                coef=[[1.5, -1.0], [-1.0, 1.5]])
    m = _fit(d, n_init=2, tol=1e-12)
    theta = lk.to_vector(m.params_)
    assert lk.loglik(theta, m.data_, 2) == pytest.approx(m.log_likelihood_, rel=1e-12)
    g = lk.score(theta, m.data_, 2)
    h = lk.hessian(theta, m.data_, 2)
    assert np.all(np.linalg.eigvalsh(-h) > 0)  # a strict local maximum
    assert np.max(np.abs(g)) < 1e-3
    se = np.sqrt(np.diag(np.linalg.inv(-h)))
    assert np.all(np.isfinite(se)) and np.all(se < 1.0)


def test_a_separable_membership_model_warns_and_ridge_fixes_it():
    from softmix.exceptions import SoftmixWarning

    # two nearly equal classes: the best split is a hard one on the covariate (gamma -> inf)
    # (a seed where it happens; 9 before the reference class moved to the last row)
    d = make_latent_class_logit(200, 4, 4, 2, 2, n_covariates=1, random_state=22)
    with pytest.warns(SoftmixWarning, match="separable"):
        m = _fit(d, n_init=2, tol=1e-12)
    assert np.max(np.abs(m.membership_coef_)) > 100
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = _fit(d, n_init=2, tol=1e-12, ridge=1.0)
    assert np.max(np.abs(r.membership_coef_)) < 10


# --- the stop rule in nats (complete-data Newton decrements, read off the M-step) ---------

def test_membership_gain_is_the_newton_prediction_and_zero_at_the_maximiser():
    from softmix.core.membership import membership_design, membership_mstep
    from softmix.core.solvers import multinomial_logistic_objective

    rng = np.random.default_rng(3)
    Z = rng.normal(size=(300, 2))
    resp = rng.dirichlet([1.0, 1.0, 1.0], size=300)
    best, _ = membership_mstep(Z, resp, np.zeros((3, 3)), tol=0.0, full_output=True)
    _, at_best = membership_mstep(Z, resp, best, full_output=True)
    assert at_best < 1e-12
    design = membership_design(Z, 300)
    start = best + np.vstack([0.02 * rng.normal(size=(2, 3)), np.zeros((1, 3))])
    _, predicted = membership_mstep(Z, resp, start, full_output=True)
    actual = (multinomial_logistic_objective(best, design, resp, order=0)
              - multinomial_logistic_objective(start, design, resp, order=0))
    assert predicted == pytest.approx(actual, rel=0.05)  # quadratic model, small step
    # intercept only (closed form): the weights' Newton decrement
    _, gain = membership_mstep(None, resp, np.zeros((3, 1)), full_output=True)
    mass = resp.sum(axis=0)
    assert gain == pytest.approx(np.sum((mass - 100.0) ** 2 / 100.0) / 2)


def test_stop_rule_is_in_nats_and_reports_the_stationary_point():
    d = make_latent_class_logit(300, 4, 4, 2, 2, n_covariates=1, random_state=9,
                                coef=[[1.5, -1.0], [-1.0, 1.5]])
    m = _fit(d, n_init=1, tol=1e-7)
    r = m.fit_result_
    assert r.converged and r.stop_reason == "tol"
    assert r.criterion == "newton_decrement" and 0 <= r.criterion_value <= 1e-7
    assert r.extra["tol_used"] == 1e-7
    # the complete-data bound implies the observed-data one up to EM's rate: both tiny
    assert r.extra["observed_newton_decrement"] < 1e-5
    # a fit stopped early is not at the optimum, and says so
    from softmix.exceptions import ConvergenceWarning

    with pytest.warns(ConvergenceWarning, match="nats"):
        early = _fit(d, n_init=1, max_iter=2, tol=1e-7)
    assert not early.converged_ and early.fit_result_.criterion_value > 1e-7


def test_doubling_the_data_keeps_the_estimate():
    """The stop rule means the same at 2N: doubling every group's weight gives the same
    parameters (to the optimisation error the tolerance implies), not a fit stopped further
    from the optimum."""
    d = make_latent_class_logit(300, 4, 4, 2, 2, n_covariates=1, random_state=9,
                                coef=[[1.5, -1.0], [-1.0, 1.5]])
    kw = {"groups": d.groups, "covariates": d.covariates}
    one = LatentClassLogit(2, random_state=0, tol=1e-9).fit(d.X, d.chosen, d.situations, **kw)
    two = LatentClassLogit(2, random_state=0, tol=1e-9).fit(
        d.X, d.chosen, d.situations, sample_weight=np.full(len(d.chosen), 2.0), **kw)
    assert two.converged_ and one.converged_
    assert two.log_likelihood_ == pytest.approx(2 * one.log_likelihood_, rel=1e-12)
    assert np.allclose(two.coef_, one.coef_, atol=1e-5)
    assert np.allclose(two.membership_coef_, one.membership_coef_, atol=1e-5)


def test_classes_come_out_in_canonical_order_whatever_the_start():
    d = make_latent_class_logit(300, 4, 4, 2, 3, n_covariates=1, random_state=4)
    fits = [_fit(d, n_init=1, random_state=s) for s in range(3)]
    for m in fits:
        assert np.all(np.diff(m.weights_) <= 1e-12)  # decreasing weights
        assert np.allclose(m.membership_coef_[-1], 0.0)  # the last class is the reference
    best = fits[0]  # seeds 0 and 2 reach the same optimum (seed 1 another)
    same = [m for m in fits if abs(m.log_likelihood_ - best.log_likelihood_) < 1e-6]
    assert len(same) >= 2
    for m in same:  # the same optimum is reported with the same labels
        assert np.allclose(m.coef_, best.coef_, rtol=1e-3, atol=1e-4)  # class 3 is near-separable (coef ~ -28)
