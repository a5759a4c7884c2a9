"""The EM driver, restarts and the Newton solver on problems with known answers."""

import warnings

import numpy as np
import pytest

from softmix.core.em import run_em
from softmix.core.restarts import fit_with_restarts
from softmix.core.solvers import newton_maximize
from softmix.exceptions import ConvergenceWarning


def contraction(params):
    """EM-like map x -> (x + 1) / 2 on objective -(x - 1)^2 (maximum at 1)."""
    return (params + 1.0) / 2.0, -((params - 1.0) ** 2)


def objective(x):
    return -((x - 1.0) ** 2)


def test_max_iter_zero_returns_start_unchanged():
    res = run_em(5.0, contraction, objective, max_iter=0, tol=1e-8)
    assert res.params == 5.0 and res.n_iter == 0 and res.stop_reason == "init"
    assert res.history.tolist() == [-16.0]


def test_tol_zero_runs_exactly_max_iter_and_history_matches_params():
    res = run_em(5.0, contraction, objective, max_iter=7, tol=0.0)
    assert res.n_iter == 7 and res.stop_reason == "max_iter" and not res.converged
    assert len(res.history) == 8
    assert res.params == pytest.approx(1 + 4 / 2**7)
    assert res.objective == pytest.approx(objective(res.params))
    assert np.all(np.diff(res.history) > 0) and res.n_decreases == 0


def test_converges_and_reports_tol():
    res = run_em(5.0, contraction, objective, max_iter=500, tol=1e-12)
    assert res.converged and res.stop_reason == "tol"
    assert res.objective == pytest.approx(objective(res.params))
    assert abs(res.params - 1) < 1e-5


def test_max_iter_warns_with_remedy():
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        run_em(5.0, contraction, objective, max_iter=3, tol=1e-12)


def test_non_finite_returns_last_finite_iterate():
    def diverging(x):
        return x * 1e200, (-x if x < 1e300 else float("nan"))

    with pytest.warns(ConvergenceWarning, match="non-finite"):
        res = run_em(1.0, diverging, lambda x: -x, max_iter=10, tol=0.0, monotone=False)
    assert res.stop_reason == "non_finite" and np.isfinite(res.objective)
    assert np.isfinite(res.params) and res.params == 1e200


def test_decrease_is_counted_and_warned_when_monotone_expected():
    def wrong(x):
        return x + 1.0, -x  # objective falls every step

    with pytest.warns(UserWarning, match="decreased"):
        res = run_em(0.0, wrong, lambda x: -x, max_iter=4, tol=0.0)
    assert res.n_decreases == 4


def test_callback_can_stop():
    res = run_em(5.0, contraction, objective, max_iter=50, tol=0.0,
                 callback=lambda it, p, v: it >= 2)
    assert res.stop_reason == "callback" and res.n_iter == 2


def test_restarts_keep_best_and_all_objectives_and_are_reproducible():
    def fit_one(rng):
        start = rng.normal() * 10
        return run_em(start, contraction, objective, max_iter=2, tol=0.0)

    a = fit_with_restarts(fit_one, 5, np.random.default_rng(3))
    b = fit_with_restarts(fit_one, 5, np.random.default_rng(3))
    assert a.objective == max(a.all_objectives) and len(a.all_objectives) == 5
    np.testing.assert_array_equal(a.all_objectives, b.all_objectives)
    assert len(set(a.all_objectives)) == 5


def test_newton_maximises_concave_quadratic_plus_logsumexp():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 3))
    c = rng.normal(size=3)

    def fun(x, order):
        z = A @ x
        lse = np.log(np.exp(z - z.max()).sum()) + z.max()
        value = c @ x - lse - 0.5 * x @ x
        if order == 0:
            return value
        p = np.exp(z - lse)
        grad = c - A.T @ p - x
        hess = -(A.T * p) @ A + np.outer(A.T @ p, A.T @ p) - np.eye(3)
        return value, grad, hess

    res = newton_maximize(fun, np.zeros(3), tol=1e-14)
    assert res.converged
    _, grad, _ = fun(res.x, 2)
    assert np.linalg.norm(grad) < 1e-8
    # finite-difference check of the gradient used above
    x = rng.normal(size=3)
    _, g, _ = fun(x, 2)
    fd = [(fun(x + 1e-6 * e, 0) - fun(x - 1e-6 * e, 0)) / 2e-6 for e in np.eye(3)]
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_warnings_filter_is_not_leaked_by_restarts():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_with_restarts(lambda rng: run_em(1.0, contraction, objective, max_iter=3, tol=1e-3),
                          2, np.random.default_rng(0))


# The tolerance stop: small AND not growing (a start next to a saddle moves away slowly).

def _scripted(values):
    """A step map on integer 'parameters' t whose objective at t is values[t]."""
    def step(t):
        return t + 1, values[t]
    return step, (lambda t: values[t])


def test_stop_needs_a_small_change_that_is_not_growing():
    # changes 1e-4, 2e-4, 4e-4, 1, 0.1, 1e-9, 1e-10 at scale 1e4: all of the first three are
    # below tol * |l| = 1e-2 but growing (leaving a saddle): the plain rule stopped at t = 1.
    values = -1e4 + np.cumsum([0, 1e-4, 2e-4, 4e-4, 1.0, 0.1, 1e-9, 1e-10, 1e-11, 0, 0])
    step, obj = _scripted(values)
    res = run_em(0, step, obj, max_iter=9, tol=1e-6)
    assert res.converged and res.stop_reason == "tol"
    assert res.n_iter == 6 and res.params == 6
    np.testing.assert_array_equal(res.history, values[:7])


def test_never_converged_on_the_first_iteration_even_at_the_maximum():
    values = np.full(10, -5.0)
    step, obj = _scripted(values)
    res = run_em(0, step, obj, max_iter=9, tol=1e-6)
    assert res.converged and res.n_iter == 2


def test_growing_changes_until_max_iter_warn_and_do_not_converge():
    values = -1e4 + np.cumsum(1e-6 * 2.0 ** np.arange(12))
    step, obj = _scripted(values)
    with pytest.warns(Warning, match="did not converge in max_iter=5 .*not growing"):
        res = run_em(0, step, obj, max_iter=5, tol=1e-6)
    assert not res.converged and res.stop_reason == "max_iter" and res.n_iter == 5


def test_tol_zero_runs_max_iter_and_user_callback_still_stops():
    values = np.full(10, -5.0)
    step, obj = _scripted(values)
    res = run_em(0, step, obj, max_iter=7, tol=0.0)
    assert res.n_iter == 7 and res.stop_reason == "max_iter" and not res.converged
    res = run_em(0, step, obj, max_iter=7, tol=1e-6, callback=lambda it, p, v: it == 1)
    assert res.stop_reason == "callback" and res.n_iter == 1
