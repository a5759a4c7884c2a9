"""Softmax-mixture EM on counts: monotonicity, recovery, N^{-1/2} rate, degenerate cases."""

import warnings

import numpy as np
import pytest

from softmix.datasets import make_softmax_mixture
from softmix.exceptions import DegenerateComponentWarning, SoftmixWarning
from softmix.metrics import atom_error
from softmix.plotting import loglog_slope
from softmix.softmax_mixture.em import fit_em, make_em_map, prepare_design
from softmix.softmax_mixture.init import random_init
from softmix.softmax_mixture.model import SoftmaxMixtureParams, log_likelihood


def small(seed, n=20_000, p=300, length=3, k=3, sep=1.0):
    return make_softmax_mixture(n, p, length, k, separation=sep, return_choices=False,
                                random_state=seed)


def assert_monotone(history):
    drops = history[:-1] - history[1:]
    assert np.all(drops <= 1e-10 * np.abs(history[1:])), drops.max()


@pytest.mark.parametrize("m_step", ["newton", "gradient"])
def test_em_never_decreases_the_log_likelihood_over_many_seeds(m_step):
    for seed in range(15):
        d = small(seed)
        start = random_init(d.features, d.counts.astype(float), 3, np.random.default_rng(seed))
        res = fit_em(d.features, d.counts, start, m_step=m_step, max_iter=60, tol=0.0)
        assert res.n_iter == 60 and res.n_decreases == 0
        assert_monotone(res.history)
        assert res.history[-1] > res.history[0]


def test_history_is_the_log_likelihood_of_each_iterate():
    d = small(0)
    start = random_init(d.features, d.counts.astype(float), 3, np.random.default_rng(0))
    seen = []
    res = fit_em(d.features, d.counts, start, max_iter=5, tol=0.0,
                 callback=lambda it, prm, ll: seen.append((prm, ll)))
    for prm, ll in seen:
        assert ll == pytest.approx(log_likelihood(d.features, d.counts, prm), rel=1e-12)
    assert res.objective == pytest.approx(log_likelihood(d.features, d.counts, res.params),
                                          rel=1e-12)


def test_gradient_safeguard_keeps_ascent_with_a_huge_step():
    """eta = 50 overshoots; the backtracking must still never lower the log-likelihood."""
    d = small(1)
    start = random_init(d.features, d.counts.astype(float), 3, np.random.default_rng(1))
    res = fit_em(d.features, d.counts, start, m_step="gradient", step_size=50.0, max_iter=40,
                 tol=0.0)
    assert res.n_decreases == 0
    assert_monotone(res.history)
    # and on the raw (unwhitened, anisotropic) design too
    x = d.features * np.array([0.1, 1.0, 10.0])
    res = fit_em(x, d.counts, SoftmaxMixtureParams(start.weights, start.atoms / [0.1, 1, 10]),
                 m_step="gradient", whiten=False, max_iter=40, tol=0.0)
    assert res.n_decreases == 0
    assert_monotone(res.history)


def test_both_m_steps_reach_the_same_optimum():
    d = small(2, n=200_000, p=2000)
    start = random_init(d.features, d.counts.astype(float), 3, np.random.default_rng(3))
    a = fit_em(d.features, d.counts, start, m_step="newton", tol=1e-12, max_iter=3000)
    b = fit_em(d.features, d.counts, start, m_step="gradient", tol=1e-12, max_iter=3000)
    assert a.converged and b.converged
    # EM converges linearly: both stop within ~0.01 nats of the same optimum (the statistical
    # atom error here is ~0.03, so 5e-3 agreement is a meaningful check)
    assert a.objective == pytest.approx(b.objective, abs=2e-2)
    assert atom_error(a.params.atoms, b.params.atoms) < 5e-3


def test_truth_start_error_below_005_on_demo_setting():
    d = make_softmax_mixture(1_000_000, 20_000, 10, 3, return_choices=False, random_state=0)
    res = fit_em(d.features, d.counts, d.params, m_step="gradient")
    assert res.converged
    assert atom_error(res.params.atoms, d.atoms) < 0.05
    assert res.objective >= log_likelihood(d.features, d.counts, d.params)


def test_error_shrinks_like_inverse_sqrt_n():
    """Mean (over 3 seeds) atom error at N = 1e4, 1e5, 1e6 from the truth: slope ~ -1/2."""
    ns = [10_000, 100_000, 1_000_000]
    errors = []
    for n in ns:
        errs = []
        for seed in range(3):
            d = make_softmax_mixture(n, 5_000, 3, 2, return_choices=False, random_state=seed)
            res = fit_em(d.features, d.counts, d.params, m_step="gradient", max_iter=2000)
            errs.append(atom_error(res.params.atoms, d.atoms))
        errors.append(np.mean(errs))
    slope = loglog_slope(np.array(ns), np.array(errors))
    assert -0.7 < slope < -0.35, (errors, slope)
    assert errors[0] > errors[1] > errors[2]


def test_max_iter_zero_returns_the_start_itself():
    d = small(3)
    start = d.params
    res = fit_em(d.features, d.counts, start, max_iter=0)
    assert res.params is start and res.n_iter == 0 and res.stop_reason == "init"
    assert res.history.tolist() == [pytest.approx(log_likelihood(d.features, d.counts, start))]


def test_tol_zero_runs_exactly_max_iter():
    d = small(4)
    res = fit_em(d.features, d.counts, d.params, max_iter=7, tol=0.0)
    assert res.n_iter == 7 and len(res.history) == 8 and res.stop_reason == "max_iter"


def test_empty_component_is_reported_by_name_and_frozen():
    d = small(5)
    start = SoftmaxMixtureParams(np.array([0.5, 0.0, 0.5]), d.atoms)
    with pytest.warns(DegenerateComponentWarning, match="component 1 is empty"):
        res = fit_em(d.features, d.counts, start, max_iter=20, tol=0.0)
    assert res.params.weights[1] == 0.0
    np.testing.assert_allclose(res.params.atoms[1], d.atoms[1], atol=1e-12)
    assert np.all(np.isfinite(res.params.atoms)) and res.n_decreases == 0


def test_constant_column_is_projected_out_with_a_warning():
    d = small(6, n=50_000, p=1000, length=2, k=2)
    x = np.column_stack([d.features, np.full(1000, 3.0)])
    start = SoftmaxMixtureParams(d.params.weights, np.column_stack([d.atoms, [5.0, -5.0]]))
    with pytest.warns(SoftmixWarning, match=r"1 unidentified direction\(s\) \(constant column"):
        res = fit_em(x, d.counts, start, tol=1e-12, max_iter=2000)
    ref = fit_em(d.features, d.counts, d.params, tol=1e-12, max_iter=2000)
    assert np.all(np.abs(res.params.atoms[:, 2]) < 1e-10)  # pinned: zero along the constant
    assert res.objective == pytest.approx(ref.objective, abs=1e-4)
    assert atom_error(res.params.atoms[:, :2], ref.params.atoms) < 1e-3


def test_all_constant_design_is_an_error():
    with pytest.raises(ValueError, match="no identified direction"):
        prepare_design(np.ones((10, 2)))


def test_newton_recovers_from_a_far_start_without_overflow_warnings():
    """Atoms of norm ~ 40 make each softmax a point mass (Cov ~ 0): the capped, ridged Newton
    step must still climb, and no RuntimeWarning (an error in this suite) may escape."""
    d = small(7, n=100_000, p=2000)
    far = SoftmaxMixtureParams(d.params.weights, 40.0 * d.atoms)
    res = fit_em(d.features, d.counts, far, m_step="newton", max_iter=100, tol=0.0)
    assert res.n_decreases == 0
    assert res.objective > res.history[0] + 1e4
    assert np.all(np.isfinite(res.params.atoms))


def test_em_map_in_user_coordinates_matches_fit_em():
    """make_em_map(raw features) iterates in the user's coordinates; same log-likelihoods."""
    d = small(8)
    em_map = make_em_map(d.features, d.counts, m_step="newton", tol=0.0)  # as fit_em(tol=0)
    params, values = d.params, []
    for _ in range(5):
        params, value = em_map(params)
        values.append(value)
    res = fit_em(d.features, d.counts, d.params, m_step="newton", max_iter=5, tol=0.0)
    np.testing.assert_allclose(values, res.history[:5], rtol=1e-10)
    np.testing.assert_allclose(params.atoms, res.params.atoms, atol=1e-6)


def test_fit_em_bad_options():
    d = small(9)
    with pytest.raises(ValueError, match="m_step"):
        fit_em(d.features, d.counts, d.params, m_step="lbfgs")
    with pytest.raises(ValueError, match="step_size"):
        fit_em(d.features, d.counts, d.params, step_size=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        fit_em(d.features, d.counts, d.params, max_iter=-1)


def test_fit_em_negative_counts_are_an_error_not_a_zero_objective():
    d = small(9)
    with pytest.raises(ValueError, match="counts must be non-negative"):
        fit_em(d.features, -d.counts, d.params)


def test_fit_em_counts_of_the_wrong_length_name_the_argument():
    d = small(9)
    with pytest.raises(ValueError, match=r"counts must have one entry per alternative, shape \(300,\)"):
        fit_em(d.features, d.counts[:5], d.params)


def test_fit_em_start_of_the_wrong_dimension_names_params0():
    d = small(9)
    start = SoftmaxMixtureParams(d.params.weights, np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"params0.atoms must have one column per feature"):
        fit_em(d.features, d.counts, start)
    with pytest.raises(TypeError, match="params0 must be a SoftmaxMixtureParams, got dict"):
        fit_em(d.features, d.counts, {"weights": d.params.weights, "atoms": d.params.atoms})


def test_fit_em_accepts_lists_like_the_estimator():
    d = small(9)
    a = fit_em(d.features, d.counts, d.params, max_iter=3, tol=0.0)
    b = fit_em(d.features.tolist(), d.counts.tolist(), d.params, max_iter=3, tol=0.0)
    np.testing.assert_array_equal(a.history, b.history)


def test_no_warning_on_a_clean_fit():
    d = small(10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_em(d.features, d.counts, d.params, max_iter=3000)


def test_matrix_free_newton_matches_dense_newton(monkeypatch):
    """Above _NEWTON_DENSE_MAX_FEATURES the Newton M-step uses CG on Hessian-vector products:
    same optimum as the dense Hessian."""
    from softmix.softmax_mixture import em

    d = make_softmax_mixture(100_000, 2_000, 6, 2, return_choices=False, random_state=11)
    start = random_init(d.features, d.counts.astype(float), 2, np.random.default_rng(0))
    dense = fit_em(d.features, d.counts, start, m_step="newton", tol=1e-12, max_iter=2000)
    monkeypatch.setattr(em, "_NEWTON_DENSE_MAX_FEATURES", 0)
    free = fit_em(d.features, d.counts, start, m_step="newton", tol=1e-12, max_iter=2000)
    assert free.n_decreases == 0 and free.converged
    assert free.objective == pytest.approx(dense.objective, abs=1e-2)
    assert atom_error(free.params.atoms, dense.params.atoms) < 5e-3


def test_hessian_vector_product_matches_dense_hessian():
    from softmix.softmax_mixture.em import component_objective

    rng = np.random.default_rng(0)
    xt = rng.standard_normal((5, 40))
    target, theta, v = rng.standard_normal(5), rng.standard_normal(5), rng.standard_normal(5)
    _, g1, dense = component_objective(xt, target, theta)
    _, g2, op = component_objective(xt, target, theta, matrix_free=True)
    np.testing.assert_allclose(g1, g2)
    np.testing.assert_allclose(op.matvec(v), dense @ v, rtol=1e-10, atol=1e-12)
