"""Panels (several choices per group, one class per group) and class-membership covariates for
the softmax mixture (issue 12, items 1 and 2)."""

import numpy as np
import pytest
import scipy.sparse

from softmix import SoftmaxMixture
from softmix.core.special import logsumexp
from softmix.datasets import make_panel_softmax_mixture, make_softmax_mixture
from softmix.metrics import atom_error, match_components
from softmix.softmax_mixture.em import prepare_design
from softmix.softmax_mixture.model import SoftmaxMixtureParams, log_class_probabilities
from softmix.softmax_mixture.panel import (
    MembershipParams,
    check_panel,
    fit_panel_em,
    panel_gradient,
    panel_log_likelihood,
    panel_log_responsibilities,
)


def _small_params(rng, k=3, length=2, q=None):
    atoms = rng.standard_normal((k, length))
    if q is None:
        w = rng.dirichlet(np.ones(k))
        return SoftmaxMixtureParams(w, atoms)
    coef = rng.standard_normal((k, q + 1))
    coef[-1] = 0.0
    return MembershipParams(coef, atoms)


@pytest.mark.parametrize("q", [None, 2])
def test_panel_log_likelihood_matches_a_loop_over_groups(q):
    rng = np.random.default_rng(0)
    d = make_panel_softmax_mixture(30, rng.integers(1, 6, 30), 7, 2, 3,
                                   n_covariates=q or 0, random_state=1)
    params = _small_params(rng, q=q)
    data = check_panel(d.features, counts=d.counts, covariates=d.covariates)
    log_pi = log_class_probabilities(d.features, params.atoms)  # (p, K)
    dense = d.counts.toarray()
    total, post = 0.0, []
    for g in range(30):
        if q is None:
            log_w = np.log(params.weights)
        else:
            eta = params.coef @ np.concatenate([[1.0], d.covariates[g]])
            log_w = eta - logsumexp(eta)
        terms = log_w + np.array([sum(dense[g, j] * log_pi[j, k] for j in range(7))
                                  for k in range(3)])
        total += logsumexp(terms)
        post.append(terms - logsumexp(terms))
    assert panel_log_likelihood(d.features, data, params) == pytest.approx(total, rel=1e-12)
    np.testing.assert_allclose(panel_log_responsibilities(d.features, data, params),
                               np.array(post), atol=1e-12)


@pytest.mark.parametrize("q", [None, 2])
def test_panel_gradient_matches_finite_differences(q):
    rng = np.random.default_rng(3)
    d = make_panel_softmax_mixture(25, 4, 6, 2, 3, n_covariates=q or 0, random_state=2)
    data = check_panel(d.features, counts=d.counts, covariates=d.covariates)
    params = _small_params(rng, q=q)
    g_m, g_atoms = panel_gradient(d.features, data, params)
    h = 1e-6

    def f(p):
        return panel_log_likelihood(d.features, data, p)

    num_atoms = np.zeros_like(params.atoms)
    for idx in np.ndindex(params.atoms.shape):
        up, dn = np.array(params.atoms), np.array(params.atoms)
        up[idx] += h
        dn[idx] -= h
        num_atoms[idx] = (f(_replace_atoms(params, up)) - f(_replace_atoms(params, dn))) / (2 * h)
    np.testing.assert_allclose(g_atoms, num_atoms, rtol=1e-6, atol=1e-6)
    if q is None:  # log-ratio parametrisation of the weights
        lr = np.log(params.weights[:-1] / params.weights[-1])
        num = np.zeros(2)
        for i in range(2):
            vals = []
            for s in (h, -h):
                v = lr.copy()
                v[i] += s
                w = np.exp(np.concatenate([v, [0.0]]))
                vals.append(f(SoftmaxMixtureParams(w / w.sum(), params.atoms)))
            num[i] = (vals[0] - vals[1]) / (2 * h)
    else:
        num = np.zeros((2, q + 1))
        for idx in np.ndindex(num.shape):
            vals = []
            for s in (h, -h):
                c = np.array(params.coef)
                c[idx] += s
                vals.append(f(MembershipParams(c, params.atoms)))
            num[idx] = (vals[0] - vals[1]) / (2 * h)
    np.testing.assert_allclose(g_m, num, rtol=1e-6, atol=1e-6)


def _replace_atoms(params, atoms):
    if isinstance(params, MembershipParams):
        return MembershipParams(params.coef, atoms)
    return SoftmaxMixtureParams(params.weights, atoms)


@pytest.mark.parametrize("m_step", ["newton", "gradient"])
def test_groups_with_one_choice_each_equal_no_groups(m_step):
    data = make_softmax_mixture(3000, 40, 3, 3, random_state=0)
    kw = {"m_step": m_step, "random_state": 4, "accelerate": None, "max_iter": 100, "tol": 0}
    plain = SoftmaxMixture(3, **kw).fit(data.features, data.choices)
    grouped = SoftmaxMixture(3, **kw).fit(data.features, data.choices,
                                          groups=np.arange(3000)[::-1])
    assert grouped.n_groups_ == 3000 and plain.n_groups_ is None
    assert grouped.n_iter_ == plain.n_iter_
    np.testing.assert_allclose(grouped.history_, plain.history_, rtol=1e-11)
    np.testing.assert_allclose(grouped.atoms_, plain.atoms_, atol=1e-8)
    np.testing.assert_allclose(grouped.weights_, plain.weights_, atol=1e-10)
    # the posterior of a one-choice group is the posterior of its choice
    np.testing.assert_allclose(
        grouped.predict_proba(data.choices[:5], groups=np.arange(5)),
        plain.predict_proba(data.choices[:5]), atol=1e-8)


def test_sparse_dense_and_long_form_give_the_same_fit():
    d = make_panel_softmax_mixture(400, 4, 30, 3, 2, random_state=5)
    kw = {"random_state": 1, "m_step": "newton"}
    sp = SoftmaxMixture(2, **kw).fit(d.features, counts=d.counts)
    de = SoftmaxMixture(2, **kw).fit(d.features, counts=d.counts.toarray())
    lo = SoftmaxMixture(2, **kw).fit(d.features, d.choices, groups=d.groups)
    for other in (de, lo):
        np.testing.assert_allclose(other.history_, sp.history_, rtol=1e-12)
        np.testing.assert_allclose(other.atoms_, sp.atoms_, atol=1e-10)
    np.testing.assert_allclose(lo.group_ids_, np.arange(400))
    post = sp.predict_proba(counts=d.counts)
    assert post.shape == (400, 2)
    np.testing.assert_allclose(post.sum(axis=1), 1.0)
    np.testing.assert_allclose(post, de.predict_proba(counts=d.counts.toarray()), atol=1e-10)


@pytest.mark.parametrize("q", [0, 2])
@pytest.mark.parametrize("accelerate", [None, "squarem"])
def test_panel_em_is_monotone(q, accelerate):
    sizes = np.random.default_rng(0).integers(1, 9, 300)  # unequal groups
    d = make_panel_softmax_mixture(300, sizes, 20, 2, 3, n_covariates=q, random_state=6)
    m = SoftmaxMixture(3, random_state=0, accelerate=accelerate, tol=0, max_iter=60).fit(
        d.features, counts=d.counts, covariates=d.covariates)
    assert m.fit_result_.n_decreases == 0
    diffs = np.diff(m.history_)
    assert np.all(diffs >= -1e-9 * np.abs(m.history_[1:]))
    assert m.history_[-1] > m.history_[0]


def _recovery(n_groups, q, seed):
    d = make_panel_softmax_mixture(n_groups, 6, 40, 3, 3, n_covariates=q, separation=1.5,
                                   membership_scale=1.0, random_state=seed)
    start = {"weights": np.full(3, 1 / 3), "atoms": d.atoms + 0.3}
    m = SoftmaxMixture(3, init=start).fit(d.features, counts=d.counts, covariates=d.covariates)
    assert m.converged_
    err = atom_error(m.atoms_, d.atoms)
    if q:
        order = match_components(m.atoms_, d.atoms)
        coef = m.membership_coef_[order]
        coef = coef - coef[-1]  # same gauge as the truth (last true class as reference)
        return err, float(np.max(np.abs(coef - d.membership_coef)))
    return err, float(np.max(np.abs(np.sort(m.weights_) - np.sort(d.weights))))


@pytest.mark.parametrize("q", [0, 2])
def test_recovery_error_shrinks_with_n(q):
    small = np.mean([_recovery(300, q, s) for s in range(3)], axis=0)
    large = np.mean([_recovery(4800, q, s) for s in range(3)], axis=0)
    # root-n: 16x the groups should divide the errors by ~4; ask for 2
    assert np.all(large < small / 2), (small, large)
    assert large[0] < 0.05 and large[1] < 0.15


def test_sparse_counts_are_never_densified():
    # a dense (100000 x 20000) float matrix would need 16 GB
    rng = np.random.default_rng(0)
    g, p = 100_000, 20_000
    rows = np.repeat(np.arange(g), 2)
    cols = rng.integers(0, p, rows.size)
    counts = scipy.sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(g, p))
    features = rng.standard_normal((p, 2))
    m = SoftmaxMixture(2, random_state=0, max_iter=3, tol=0).fit(features, counts=counts)
    assert m.n_groups_ == g and m.n_samples_ == rows.size
    assert np.isfinite(m.log_likelihood_)


def test_fit_panel_em_max_iter_zero_returns_the_start():
    d = make_panel_softmax_mixture(50, 3, 10, 2, 2, random_state=0)
    data = check_panel(d.features, counts=d.counts)
    start = SoftmaxMixtureParams([0.5, 0.5], d.atoms)
    res = fit_panel_em(prepare_design(d.features), data, start, max_iter=0)
    assert res.params is start
    assert res.objective == pytest.approx(panel_log_likelihood(d.features, data, start))


def test_bic_counts_membership_parameters():
    d = make_panel_softmax_mixture(200, 3, 15, 2, 3, n_covariates=2, random_state=0)
    m = SoftmaxMixture(3, random_state=0).fit(d.features, counts=d.counts,
                                              covariates=d.covariates)
    n_par = 2 * 3 + 3 * 2
    assert m.bic() == pytest.approx(-2 * m.log_likelihood_ + n_par * np.log(m.n_samples_))
    assert m.bic(counts=d.counts, covariates=d.covariates) == pytest.approx(m.bic())
    assert m.score(counts=d.counts, covariates=d.covariates) == pytest.approx(
        m.log_likelihood_ / m.n_samples_)


def test_given_membership_start():
    d = make_panel_softmax_mixture(200, 3, 12, 2, 2, n_covariates=1, random_state=1)
    m = SoftmaxMixture(2, init=d.params, max_iter=0).fit(
        d.features, counts=d.counts, covariates=d.covariates)
    np.testing.assert_array_equal(m.membership_coef_, d.membership_coef)
    assert m.init_method_ == "given"
    with pytest.raises(ValueError, match="init is a MembershipParams, which needs covariates"):
        SoftmaxMixture(2, init=d.params).fit(d.features, counts=d.counts)


def test_covariates_without_groups_are_per_choice():
    d = make_panel_softmax_mixture(500, 1, 12, 2, 2, n_covariates=1, random_state=3)
    m = SoftmaxMixture(2, random_state=0).fit(d.features, d.choices, covariates=d.covariates)
    assert m.n_groups_ == 500 and m.membership_coef_.shape == (2, 2)
    post = m.predict_proba(d.choices, covariates=d.covariates)
    assert post.shape == (500, 2)


# ---------------------------------------------------------------------------- bad input

def _data():
    return make_panel_softmax_mixture(20, 3, 8, 2, 2, n_covariates=1, random_state=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"groups": np.arange(5)}, r"groups must hold one label per choice"),
    ({"groups": np.full(60, np.nan)}, r"groups contains NaN"),
])
def test_bad_groups(kwargs, match):
    d = _data()
    with pytest.raises(ValueError, match=match):
        SoftmaxMixture(2).fit(d.features, d.choices, **kwargs)


def test_bad_counts_and_covariates():
    d = _data()
    dense = d.counts.toarray()
    with pytest.raises(ValueError, match=r"counts must have one column per alternative"):
        SoftmaxMixture(2).fit(d.features, counts=dense[:, :5])
    bad = dense.copy()
    bad[0, 0] = -1
    with pytest.raises(ValueError, match="counts must be non-negative"):
        SoftmaxMixture(2).fit(d.features, counts=bad)
    with pytest.raises(ValueError, match="counts must hold integers"):
        SoftmaxMixture(2).fit(d.features, counts=scipy.sparse.csr_matrix(dense * 0.5))
    zero = dense.copy()
    zero[3] = 0
    with pytest.raises(ValueError, match=r"all-zero row\(s\) \(e.g. row 3\)"):
        SoftmaxMixture(2).fit(d.features, counts=zero)
    with pytest.raises(ValueError, match="covariates must have one row per group: 20 rows"):
        SoftmaxMixture(2).fit(d.features, counts=dense, covariates=d.covariates[:7])
    with pytest.raises(ValueError, match="groups goes with choices"):
        SoftmaxMixture(2).fit(d.features, counts=dense, groups=np.arange(20))
    with pytest.raises(ValueError, match="covariates contains 1 NaN"):
        z = d.covariates.copy()
        z[0] = np.nan
        SoftmaxMixture(2).fit(d.features, counts=dense, covariates=z)


def test_covariate_model_needs_covariates_to_predict():
    d = _data()
    m = SoftmaxMixture(2, random_state=0).fit(d.features, counts=d.counts,
                                              covariates=d.covariates)
    with pytest.raises(ValueError, match="pass covariates="):
        m.predict_proba(counts=d.counts)
    with pytest.raises(ValueError, match="class-membership covariates"):
        m.predict_proba(d.choices)
    with pytest.raises(ValueError, match=r"covariates must have 1 column\(s\)"):
        m.predict_proba(counts=d.counts, covariates=np.ones((20, 3)))
    plain = SoftmaxMixture(2, random_state=0).fit(d.features, counts=d.counts)
    with pytest.raises(ValueError, match="fit without class-membership covariates"):
        plain.predict_proba(counts=d.counts, covariates=d.covariates)


# ---------------------------------------------------------------------------- against R flexmix

def _flexmix_available() -> bool:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _peers import find_rscript, missing_r_packages

    return find_rscript() is not None and not missing_r_packages(
        ["flexmix", "survival", "jsonlite"])


@pytest.mark.skipif(
    not _flexmix_available(),
    reason="needs Rscript with flexmix, survival and jsonlite (as root: apt-get install "
    "r-base-core r-cran-flexmix r-cran-survival r-cran-mixtools r-cran-jsonlite)",
)
def test_panel_with_covariates_reaches_flexmix_loglik():
    """FLXMRcondlogit grouped by person with FLXPmultinom(~ z1), same start (the benchmark's
    larger rows: benchmarks/flexmix_panel.py)."""
    import flexmix_panel as fp

    _, data, k = fp.cases(0, quick=True)[0]
    r = fp.compare(data, k, seed=0)
    assert r["converged_ours"] and r["converged_flexmix"]
    assert r["ll_ours"] >= r["ll_flexmix"] - fp.RTOL * abs(r["ll_flexmix"])
    assert r["ll_ours"] - r["ll_flexmix"] < 1e-3  # the same optimum
    assert r["df_ours"] == r["df_flexmix"]


@pytest.mark.parametrize("n_covariates", [0, 1])
@pytest.mark.parametrize("scale", [1, 10_000])
def test_panel_fit_stops_on_the_scale_free_criterion(n_covariates, scale):
    """The panel fit uses the softmax mixture's stop rule in nats (issue 9 item 1): multiplying
    every count by 1e4 still ends at a point whose predicted remaining gain is <= tol."""
    d = make_panel_softmax_mixture(300, 4, 30, 2, 2, n_covariates=n_covariates, random_state=3)
    counts = d.counts * scale
    kw = {} if n_covariates == 0 else {"covariates": d.covariates}
    m = SoftmaxMixture(2, random_state=0).fit(d.features, counts=counts, **kw)
    res = m.fit_result_
    assert m.converged_ and res.criterion == "newton_decrement"
    assert 0.0 <= res.criterion_value <= res.extra["tol_used"]
