"""Weighted soft-label logistic solvers of core.solvers: derivatives vs finite differences,
optima vs scipy.optimize, monotonicity from the warm start."""

import numpy as np
import pytest
from scipy import optimize

from softmix.core.solvers import (
    binary_logistic_objective,
    fit_binary_logistic,
    fit_multinomial_logistic,
    multinomial_logistic_objective,
)


def _problem(seed, n=60, p=3, k=4):
    rng = np.random.default_rng(seed)
    design = np.hstack([np.ones((n, 1)), rng.standard_normal((n, p - 1))])
    labels = rng.dirichlet(np.ones(k), size=n)  # soft labels
    weights = rng.uniform(0.2, 2.0, size=n)
    coef = rng.standard_normal((k, p))
    coef[-1] = 0.0
    return design, labels, weights, coef


def _fd_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = eps
        g.flat[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


@pytest.mark.parametrize("ridge", [0.0, 0.7])
def test_multinomial_gradient_and_hessian_match_finite_differences(ridge):
    design, labels, w, coef = _problem(0)
    k, p = coef.shape

    def value(free):
        c = np.vstack([free.reshape(k - 1, p), np.zeros((1, p))])
        return multinomial_logistic_objective(c, design, labels, w, ridge, order=0)

    def grad(free):
        c = np.vstack([free.reshape(k - 1, p), np.zeros((1, p))])
        return multinomial_logistic_objective(c, design, labels, w, ridge, order=1)[1].ravel()

    free = coef[:-1].ravel()
    _, g, h = multinomial_logistic_objective(coef, design, labels, w, ridge, order=2)
    np.testing.assert_allclose(g.ravel(), _fd_grad(value, free), rtol=1e-6, atol=1e-6)
    fd_h = np.array([_fd_grad(lambda x, j=j: grad(x)[j], free) for j in range(free.size)])
    np.testing.assert_allclose(h, fd_h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h, h.T, atol=1e-12)


@pytest.mark.parametrize("ridge", [0.0, 0.3])
def test_binary_gradient_and_hessian_match_finite_differences(ridge):
    rng = np.random.default_rng(1)
    design = np.hstack([np.ones((50, 1)), rng.standard_normal((50, 2))])
    t = rng.uniform(size=50)
    w = rng.uniform(0.1, 1.0, size=50)
    coef = rng.standard_normal(3)
    _, g, h = binary_logistic_objective(coef, design, t, w, ridge, order=2)

    def f(c):
        return binary_logistic_objective(c, design, t, w, ridge, order=0)

    np.testing.assert_allclose(g, _fd_grad(f, coef), rtol=1e-6, atol=1e-6)
    fd_h = np.array([_fd_grad(
        lambda c, j=j: binary_logistic_objective(c, design, t, w, ridge, 1)[1][j], coef)
        for j in range(3)])
    np.testing.assert_allclose(h, fd_h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method", ["newton", "lbfgs"])
def test_multinomial_fit_matches_scipy(seed, method):
    design, labels, w, _ = _problem(seed)
    k, p = labels.shape[1], design.shape[1]
    ridge = 0.1

    def neg(free):
        c = np.vstack([free.reshape(k - 1, p), np.zeros((1, p))])
        v, g = multinomial_logistic_objective(c, design, labels, w, ridge, order=1)
        return -v, -g.ravel()

    ref = optimize.minimize(neg, np.zeros((k - 1) * p), jac=True, method="BFGS",
                            options={"gtol": 1e-10})
    coef = fit_multinomial_logistic(design, labels, w, ridge=ridge, method=method)
    assert np.all(coef[-1] == 0)
    tol = 1e-6 if method == "newton" else 1e-4
    np.testing.assert_allclose(coef[:-1].ravel(), ref.x, atol=tol)


def test_binary_fit_matches_scipy_with_fractional_targets():
    rng = np.random.default_rng(3)
    design = np.hstack([np.ones((80, 1)), rng.standard_normal((80, 2))])
    t = rng.uniform(size=80)
    w = rng.uniform(0.1, 2.0, size=80)
    ref = optimize.minimize(
        lambda c: tuple(-np.asarray(v) for v in binary_logistic_objective(c, design, t, w)),
        np.zeros(3), jac=True, method="BFGS", options={"gtol": 1e-10})
    coef = fit_binary_logistic(design, t, w)
    np.testing.assert_allclose(coef, ref.x, atol=1e-6)


def test_solvers_never_decrease_from_warm_start_and_keep_gauge():
    design, labels, w, coef0 = _problem(4)
    start = multinomial_logistic_objective(coef0, design, labels, w, 0.0, order=0)
    coef, res = fit_multinomial_logistic(design, labels, w, coef0, max_iter=1, full_output=True)
    assert res.value >= start
    assert np.all(coef[-1] == 0)


def test_separable_labels_stay_finite_with_ridge():
    x = np.linspace(-1, 1, 40)
    design = np.column_stack([np.ones(40), x])
    labels = np.column_stack([(x > 0), (x <= 0)]).astype(float)
    coef = fit_multinomial_logistic(design, labels, ridge=1e-2)
    assert np.all(np.isfinite(coef)) and coef[0, 1] > 5  # steep, positive, finite


@pytest.mark.parametrize("ridge", [0.0, 0.3])
def test_binary_objective_matches_the_explicit_formula(ridge):
    # oracle: the binary model written out with scipy's expit (moderate eta, no overflow)
    from scipy.special import expit as sp_expit

    rng = np.random.default_rng(5)
    design = np.hstack([np.ones((40, 1)), rng.standard_normal((40, 2))])
    t = rng.uniform(size=40)
    w = rng.uniform(0.1, 2.0, size=40)
    coef = rng.standard_normal(3)
    eta = design @ coef
    s = sp_expit(eta)
    value = np.sum(w * (t * np.log(s) + (1 - t) * np.log(1 - s))) - 0.5 * ridge * coef @ coef
    grad = design.T @ (w * (t - s)) - ridge * coef
    hess = -(design * (w * s * (1 - s))[:, None]).T @ design - ridge * np.eye(3)
    v, g, h = binary_logistic_objective(coef, design, t, w, ridge, order=2)
    assert v == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(g, grad, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h, hess, rtol=1e-10, atol=1e-12)
    assert binary_logistic_objective(coef, design, t, None, ridge, order=0) == pytest.approx(
        np.sum(t * np.log(s) + (1 - t) * np.log(1 - s)) - 0.5 * ridge * coef @ coef, rel=1e-12)
