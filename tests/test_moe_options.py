"""MixtureOfExperts with flexmix's options (issue 12, item 4): constant gate, gate on its own
covariates, intercept-free experts, equal variances, sample weights, any two logistic labels."""

import numpy as np
import pytest

from softmix import MixtureOfExperts
from softmix.datasets import make_moe, make_moe_options
from softmix.moe.model import MoEParams, params_from_vector, params_to_vector
from softmix.moe.options import Layout, weighted_gradient, weighted_objective

OPTION_SETS = [
    {"gate": "constant"},
    {"n_gate_features": 2},
    {"fit_intercept": False},
    {"variance": "equal"},
    {"gate": "constant", "variance": "equal", "fit_intercept": False},
]


def _estimator_kwargs(opts):
    return {k: v for k, v in opts.items() if k != "n_gate_features"}


@pytest.mark.parametrize("opts", OPTION_SETS)
def test_weighted_gradient_matches_finite_differences(opts):
    d = make_moe_options(60, 2, 3, random_state=0, **opts)
    W1 = d.layout.design(d.X, d.X_gate)
    w = np.random.default_rng(1).uniform(0.5, 2.0, 60)
    params = d.params
    grad = params_to_vector(weighted_gradient(W1, d.y, params, d.layout, w))
    v0 = params_to_vector(params)
    h = 1e-6
    num = np.zeros_like(v0)
    free = params_to_vector(MoEParams(
        np.where(d.layout.gate_mask, 1.0, 0.0) * np.ones_like(params.gating) * (
            np.arange(3)[:, None] < 2),
        np.where(d.layout.expert_mask, 1.0, 0.0) * np.ones_like(params.expert_coef),
        np.ones(3), "gaussian")) > 0
    for i in np.flatnonzero(free):
        vals = []
        for s in (h, -h):
            v = v0.copy()
            if opts.get("variance") == "equal" and i >= v0.size - 3:
                v[-3:] += s  # the one shared variance
            else:
                v[i] += s
            vals.append(weighted_objective(W1, d.y, params_from_vector(v, params), w))
        num[i] = (vals[0] - vals[1]) / (2 * h)
    np.testing.assert_allclose(grad[free], num[free], rtol=1e-5, atol=1e-5)
    assert np.all(grad[~free] == 0)


def test_constant_gate_with_logistic_experts():
    d = make_moe_options(600, 2, 2, gate="constant", expert="logistic", coef_scale=3.0,
                         random_state=1)
    m = MixtureOfExperts(2, expert="logistic", gate="constant", random_state=0, tol=0,
                         max_iter=30).fit(d.X, d.y)
    assert m.fit_result_.n_decreases == 0 and m.gating_coef_.shape == (2, 1)
    np.testing.assert_allclose(m.gate_proba(d.X[:3]), np.tile(m.weights_, (3, 1)))
    assert m.predict_proba(d.X[:3]).shape == (3, 2)


@pytest.mark.parametrize("opts", OPTION_SETS)
def test_em_is_monotone_and_respects_the_constraints(opts):
    d = make_moe_options(800, 2, 2, random_state=3, **opts)
    m = MixtureOfExperts(2, random_state=0, tol=0, max_iter=40, **_estimator_kwargs(opts))
    m.fit(d.X, d.y, X_gate=d.X_gate)
    assert m.fit_result_.n_decreases == 0
    assert np.all(np.diff(m.history_) >= -1e-9 * np.abs(m.history_[1:]))
    d.layout.check(m.params_, "params_")  # zeros where the options fix them
    if opts.get("gate") == "constant":
        assert m.gating_coef_.shape == (2, 1)
        gp = m.gate_proba(d.X[:5])
        np.testing.assert_allclose(gp, np.tile(m.weights_, (5, 1)))
    if opts.get("fit_intercept") is False:
        assert np.all(m.expert_coef_[:, 0] == 0)
    if opts.get("variance") == "equal":
        assert np.ptp(m.expert_variance_) == 0
    assert m.n_parameters() == d.layout.n_free_parameters("gaussian", 2, None)


def _recovery_error(opts, n, seed):
    d = make_moe_options(n, 2, 2, random_state=seed, gate_scale=1.0, coef_scale=3.0, **opts)
    m = MixtureOfExperts(2, random_state=seed, n_init=3, **_estimator_kwargs(opts))
    m.fit(d.X, d.y, X_gate=d.X_gate)
    est, true = m.params_, d.params
    errs = []
    for order in ([0, 1], [1, 0]):  # label switching: the better of the two matchings
        g = est.gating[order] - est.gating[order][-1]
        errs.append(max(np.max(np.abs(est.expert_coef[order] - true.expert_coef)),
                        np.max(np.abs(g - true.gating)),
                        np.max(np.abs(est.expert_variance[order] - true.expert_variance))))
    return min(errs)


@pytest.mark.parametrize("opts", OPTION_SETS[:4])
def test_recovery_error_shrinks_with_n(opts):
    small = np.mean([_recovery_error(opts, 400, s) for s in range(2)])
    large = np.mean([_recovery_error(opts, 6400, s) for s in range(2)])
    assert large < small / 2, (small, large)  # 16x the data: ~4x smaller at root-n rate
    assert large < 0.2


def test_unit_sample_weights_change_nothing_and_integer_weights_repeat_rows():
    X, y, _ = make_moe(300, 1, 2, random_state=0)
    ref = MixtureOfExperts(2, random_state=0, tol=0, max_iter=15).fit(X, y)
    ones = MixtureOfExperts(2, random_state=0, tol=0, max_iter=15).fit(
        X, y, sample_weight=np.ones(300))
    np.testing.assert_allclose(ones.history_, ref.history_, rtol=1e-10)
    w = np.random.default_rng(0).integers(1, 4, 300)
    start = ref.params_
    weighted = MixtureOfExperts(2, init=start, tol=0, max_iter=15).fit(X, y, sample_weight=w)
    repeated = MixtureOfExperts(2, init=start, tol=0, max_iter=15).fit(
        np.repeat(X, w, axis=0), np.repeat(y, w))
    np.testing.assert_allclose(weighted.history_, repeated.history_, rtol=1e-9)
    np.testing.assert_allclose(weighted.expert_coef_, repeated.expert_coef_, atol=1e-7)


def test_gate_on_its_own_covariates_needs_them_to_predict():
    d = make_moe_options(400, 1, 2, n_gate_features=2, random_state=0)
    m = MixtureOfExperts(2, random_state=0).fit(d.X, d.y, X_gate=d.X_gate)
    assert m.gating_coef_.shape == (2, 3) and m.expert_coef_.shape == (2, 2)
    assert m.predict(d.X[:4], X_gate=d.X_gate[:4]).shape == (4,)
    assert m.score(d.X, d.y, X_gate=d.X_gate) == pytest.approx(m.log_likelihood_ / 400)
    with pytest.raises(ValueError, match="pass X_gate="):
        m.predict(d.X[:4])
    with pytest.raises(ValueError, match=r"X_gate has 1 column\(s\) but the model was fitted "
                                         r"with 2"):
        m.gate_proba(d.X[:4], d.X_gate[:4, :1])
    plain = MixtureOfExperts(2, random_state=0).fit(d.X, d.y)
    with pytest.raises(ValueError, match="fitted without X_gate"):
        plain.predict(d.X[:4], X_gate=d.X_gate[:4])
    y, z = m.sample(d.X, random_state=0, X_gate=d.X_gate)
    assert y.shape == (400,) and set(np.unique(z)) <= {0, 1}


@pytest.mark.parametrize("labels", [(-1, 1), (3, 7), ("no", "yes"), (False, True)])
def test_logistic_experts_take_any_two_labels(labels):
    X, y01, _ = make_moe(400, 1, 2, expert="logistic", coef_scale=3.0, random_state=2)
    lab = np.array(labels, dtype=object if isinstance(labels[0], str) else None)
    y = lab[y01.astype(int)]
    if isinstance(labels[0], str):
        y = y.astype(str)
    kw = {"expert": "logistic", "random_state": 0, "tol": 0, "max_iter": 10}
    ref = MixtureOfExperts(2, **kw).fit(X, y01)
    m = MixtureOfExperts(2, **kw).fit(X, y)
    np.testing.assert_array_equal(m.classes_, np.sort(np.asarray(y.tolist()))[[0, -1]])
    assert m.log_likelihood_ == pytest.approx(ref.log_likelihood_, rel=1e-12)
    np.testing.assert_allclose(m.predict_proba(X[:5]), ref.predict_proba(X[:5]))
    assert set(m.predict(X).tolist()) <= set(np.asarray(y).tolist())
    assert m.score(X, y) == pytest.approx(ref.score(X, y01))


@pytest.mark.parametrize("kwargs, fit_kwargs, exc, match", [
    ({"gate": "fixed"}, {}, ValueError, r"gate must be one of \('softmax', 'constant'\)"),
    ({"variance": "shared"}, {}, ValueError, r"variance must be one of \('free', 'equal'\)"),
    ({"fit_intercept": "no"}, {}, TypeError, "fit_intercept must be True or False"),
    ({"gate": "constant", "solver": "gd"}, {}, ValueError, "need solver='em'"),
    ({}, {"sample_weight": -np.ones(200)}, ValueError, "sample_weight must be non-negative"),
    ({}, {"sample_weight": np.ones(3)}, ValueError, "sample_weight must have one entry"),
    ({}, {"sample_weight": np.zeros(200)}, ValueError, "sample_weight sums to 0"),
    ({}, {"X_gate": np.ones((5, 1))}, ValueError, r"X_gate must have one row per row of X"),
    ({}, {"X_gate": np.full((200, 1), np.nan)}, ValueError, "X_gate contains 200 NaN"),
])
def test_bad_options_name_the_argument(kwargs, fit_kwargs, exc, match):
    X, y, _ = make_moe(200, 1, 2, random_state=0)
    with pytest.raises(exc, match=match):
        MixtureOfExperts(2, **kwargs).fit(X, y, **fit_kwargs)


def test_layout_masks():
    lay = Layout(2, 3, "softmax", False, "equal")
    np.testing.assert_array_equal(lay.gate_mask, [1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(lay.expert_mask, [0, 0, 0, 0, 1, 1])
    assert Layout(2, None, "constant").gate_mask.tolist() == [True, False, False]
    assert lay.n_free_parameters("gaussian", 3, None) == 2 * 4 + 3 * 2 + 1


# ---------------------------------------------------------------------------- against R flexmix

def _flexmix_available() -> bool:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _peers import find_rscript, missing_r_packages

    return find_rscript() is not None and not missing_r_packages(["flexmix", "jsonlite"])


needs_flexmix = pytest.mark.skipif(
    not _flexmix_available(),
    reason="needs Rscript with flexmix and jsonlite (as root: apt-get install r-base-core "
    "r-cran-flexmix r-cran-survival r-cran-mixtools r-cran-jsonlite)",
)


@needs_flexmix
@pytest.mark.parametrize("case", [
    "NPreg constant gate",
    "concomitant ~ w1 + w2",
    pytest.param("NPreg constant, equal var", marks=pytest.mark.slow),
    pytest.param("no intercept, constant", marks=pytest.mark.slow),
])
def test_reaches_flexmix_loglik(case):
    """flexmix's NPreg mixture of regressions (constant gate; free and equal variances), a
    concomitant gate FLXPmultinom(~ w1 + w2) and intercept-free experts, same start."""
    import flexmix_moe_options as fo

    kw = dict(fo.cases(0))[case]
    r = fo.compare(**kw, seed=0)
    assert r["converged_ours"] and r["converged_flexmix"]
    # flexmix's df-corrected variances put its fixed point slightly below the MLE
    assert r["ll_ours"] >= r["ll_flexmix"] - fo.RTOL * abs(r["ll_flexmix"])
    assert r["ll_ours"] - r["ll_flexmix"] < 0.05  # the same optimum, not another one
    assert r["df_ours"] == r["df_flexmix"]  # the same free-parameter count
