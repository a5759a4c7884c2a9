"""MoE EM: monotone, recovery of the paper's true model, initialisations, degenerate experts."""

import itertools
import warnings

import numpy as np
import pytest

from softmix import MixtureOfExperts
from softmix.datasets import make_gaussian_moe, make_moe, paper_gaussian_moe_params
from softmix.exceptions import DegenerateComponentWarning
from softmix.moe.em import fit_em, objective
from softmix.moe.experts import EXPERTS, default_variance_floor
from softmix.moe.init import INITIALISERS, initialize
from softmix.moe.model import MoEParams, log_likelihood

EXPERT_TYPES = ["gaussian", "logistic", "multinomial"]


def _match(fit: MoEParams, truth: MoEParams):
    """Max abs errors (gating, expert coef, variance) after the best permutation, with the
    fitted gating moved to the gauge of the permuted last expert."""
    best = None
    for perm in itertools.permutations(range(truth.n_experts)):
        err = np.abs(fit.expert_coef[list(perm)] - truth.expert_coef).max()
        if best is None or err < best[0]:
            best = (err, list(perm))
    fit = fit.permute(best[1])
    return (np.abs(fit.gating - truth.gating), np.abs(fit.expert_coef - truth.expert_coef),
            np.abs(fit.expert_variance - truth.expert_variance))


@pytest.mark.parametrize("expert", EXPERT_TYPES)
@pytest.mark.parametrize("seed", range(4))
def test_em_never_decreases_the_log_likelihood(expert, seed):
    X, y, _ = make_moe(300, 2, 3, expert=expert, random_state=seed)
    params0 = initialize("random", X, y, 3, expert, rng=np.random.default_rng(seed),
                         n_classes=3)
    res = fit_em(X, y, params0, max_iter=40, tol=0.0, warn=False)
    h = res.history
    assert len(h) == 41 and res.n_decreases == 0
    assert np.all(np.diff(h) >= -1e-9 * np.abs(h[1:])), np.diff(h).min()
    assert h[-1] > h[0]
    assert res.objective == pytest.approx(log_likelihood(X, y, res.params), rel=1e-12)


def test_em_with_ridge_is_monotone_in_the_penalised_objective():
    X, y, _ = make_moe(200, 2, 2, expert="logistic", random_state=9)
    params0 = initialize("kmeans", X, y, 2, "logistic", rng=np.random.default_rng(0))
    res = fit_em(X, y, params0, max_iter=30, tol=0.0, ridge=0.5, warn=False)
    assert res.n_decreases == 0
    assert res.objective == pytest.approx(objective(X, y, res.params, ridge=0.5))
    assert res.extra["log_likelihood"] == pytest.approx(log_likelihood(X, y, res.params))


def test_recovers_the_papers_true_model_at_n_1e4():
    # Nguyen, Nguyen, Ho (2023), section 5: k = k* = 2. Errors are parametric, O(n^-1/2);
    # the gate is very steep (slope 25), so its slope is the least precise parameter: over
    # seeds 0-7 the largest gating error at n = 1e4 was ~1.0 (4 %), coefficients ~0.14,
    # variances ~0.008. With seed 0 at n = 300 or n = 1000 the same fit misses these bounds.
    X, y, truth = make_gaussian_moe(10_000, random_state=0)
    model = MixtureOfExperts(2, random_state=0).fit(X, y)
    assert model.converged_
    e_gate, e_coef, e_var = _match(model.params_, truth)
    assert e_gate.max() < 0.08 * 25
    assert e_coef.max() < 0.3
    assert e_var.max() < 0.02
    gate = model.params_.gating[np.argmax(np.abs(model.params_.gating[:, 1]))]
    assert -gate[0] / gate[1] == pytest.approx(8 / 25, abs=0.005)  # where the gate switches
    # the truth is not better than the MLE
    assert model.log_likelihood_ >= log_likelihood(X, y, truth)


@pytest.mark.parametrize("init", sorted(INITIALISERS))
def test_every_initialiser_gives_valid_params_and_a_good_fit(init):
    X, y, truth = make_gaussian_moe(2000, random_state=1)
    params0 = initialize(init, X, y, 2, "gaussian", rng=np.random.default_rng(0), truth=truth)
    assert isinstance(params0, MoEParams) and params0.n_experts == 2
    assert np.all(np.isfinite(params0.gating)) and np.all(params0.expert_variance > 0)
    res = fit_em(X, y, params0, max_iter=500, tol=1e-8)
    assert res.objective > log_likelihood(X, y, truth) - 1.0


def test_near_truth_with_more_experts_covers_every_true_expert():
    truth = paper_gaussian_moe_params()
    X, y, _ = make_gaussian_moe(1000, random_state=2)
    p0 = initialize("near_truth", X, y, 4, rng=np.random.default_rng(3), truth=truth)
    nearest = [int(np.argmin(np.abs(truth.expert_coef - c).sum(axis=1))) for c in p0.expert_coef]
    assert set(nearest) == {0, 1} and nearest[-1] == 1
    assert np.all(p0.gating[-1] == 0)
    with pytest.raises(ValueError, match="n_experts >= the true number"):
        initialize("near_truth", X, y, 1, rng=np.random.default_rng(0), truth=truth)


def test_max_iter_zero_returns_the_initialisation():
    X, y, truth = make_gaussian_moe(300, random_state=3)
    res = fit_em(X, y, truth, max_iter=0, tol=1e-6)
    assert res.params is truth and res.n_iter == 0 and res.stop_reason == "init"
    model = MixtureOfExperts(2, init=truth, max_iter=0).fit(X, y)
    np.testing.assert_array_equal(model.gating_coef_, truth.gating)
    np.testing.assert_array_equal(model.expert_coef_, truth.expert_coef)
    np.testing.assert_array_equal(model.expert_variance_, truth.expert_variance)
    assert model.n_iter_ == 0 and model.history_.shape == (1,)


@pytest.mark.parametrize("expert", EXPERT_TYPES)
def test_fit_twice_with_the_same_seed_is_identical(expert):
    X, y, _ = make_moe(200, 2, 2, expert=expert, random_state=4)
    a = MixtureOfExperts(2, expert=expert, n_init=2, random_state=7, max_iter=50, tol=0).fit(X, y)
    b = MixtureOfExperts(2, expert=expert, n_init=2, random_state=7, max_iter=50, tol=0).fit(X, y)
    np.testing.assert_array_equal(a.gating_coef_, b.gating_coef_)
    np.testing.assert_array_equal(a.expert_coef_, b.expert_coef_)
    np.testing.assert_array_equal(a.history_, b.history_)


def test_restarts_keep_the_best_and_record_every_run():
    X, y, _ = make_moe(300, 1, 3, random_state=5)
    model = MixtureOfExperts(3, n_init=4, random_state=0, max_iter=200).fit(X, y)
    objs = model.fit_result_.all_objectives
    assert objs.shape == (4,) and model.log_likelihood_ == pytest.approx(objs.max())


def test_collapsed_variance_warns_naming_the_expert_and_stays_finite():
    # 25 copies of one point: an expert sitting on them can drive its variance to 0 and the
    # likelihood to infinity; the floor stops it and the warning names the expert.
    rng = np.random.default_rng(0)
    X = np.vstack([rng.uniform(size=(300, 1)), np.full((25, 1), 0.5)])
    y = np.concatenate([1.0 + 2.0 * X[:300, 0] + 0.3 * rng.standard_normal(300), np.full(25, 5.0)])
    start = MoEParams(np.zeros((2, 2)), np.array([[5.0, 0.0], [1.0, 2.0]]), np.array([1e-3, 0.1]))
    with pytest.warns(DegenerateComponentWarning, match=r"expert 0 \(0-based\).*floor"):
        res = fit_em(X, y, start, max_iter=50, tol=1e-10)
    floor = default_variance_floor(y)
    assert res.params.expert_variance[0] == pytest.approx(floor)
    assert np.all(np.isfinite(res.history)) and np.isfinite(res.objective)


@pytest.mark.parametrize("expert", ["logistic", "multinomial"])
def test_empty_expert_warns_naming_it_and_stays_finite(expert):
    X, y, params = make_moe(200, 1, 2, expert=expert, random_state=6)
    gating = np.array([[-900.0, 0.0], [0.0, 0.0]])  # expert 0 gets exactly zero weight
    start = params.replace(gating=gating)
    with pytest.warns(DegenerateComponentWarning, match=r"expert 0 \(0-based\).*empty"):
        res = fit_em(X, y, start, max_iter=5, tol=0.0)
    assert np.all(np.isfinite(res.params.expert_coef)) and np.isfinite(res.objective)


def test_variance_floor_in_the_weighted_fit_is_reported():
    X1 = np.column_stack([np.ones(5), np.arange(5.0)])
    y = 1.0 + 2.0 * np.arange(5.0)  # an exact line: residual variance 0
    coef, var, deg = EXPERTS["gaussian"].fit_weighted(
        X1, y, np.ones((5, 1)), np.zeros((1, 2)), np.ones(1), variance_floor=1e-3, warn=False)
    np.testing.assert_allclose(coef[0], [1.0, 2.0])
    assert var[0] == 1e-3 and 0 in deg
    with pytest.warns(DegenerateComponentWarning, match="expert 0"):
        EXPERTS["gaussian"].fit_weighted(X1, y, np.ones((5, 1)), np.zeros((1, 2)), np.ones(1),
                                         variance_floor=1e-3)


def test_no_runtime_warnings_on_a_steep_gate():
    X, y, truth = make_gaussian_moe(500, random_state=8)
    steep = truth.replace(gating=np.array([[-800.0, 2500.0], [0.0, 0.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = fit_em(X, y, steep, max_iter=20, tol=1e-8, warn=False)
    assert np.isfinite(res.objective) and res.n_decreases == 0


def test_one_gaussian_expert_is_ordinary_least_squares():
    X, y, _ = make_moe(300, 2, 2, random_state=10)
    model = MixtureOfExperts(1, random_state=0).fit(X, y)
    X1 = np.column_stack([np.ones(300), X])
    coef, rss, *_ = np.linalg.lstsq(X1, y, rcond=None)
    np.testing.assert_allclose(model.expert_coef_[0], coef, rtol=1e-10)
    assert model.expert_variance_[0] == pytest.approx(rss[0] / 300, rel=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20))
def test_recovery_at_n_1e4_over_seeds(seed):
    X, y, truth = make_gaussian_moe(10_000, random_state=seed)
    model = MixtureOfExperts(2, n_init=2, random_state=seed).fit(X, y)
    e_gate, e_coef, e_var = _match(model.params_, truth)
    assert e_gate.max() < 0.08 * 25 and e_coef.max() < 0.3 and e_var.max() < 0.02
