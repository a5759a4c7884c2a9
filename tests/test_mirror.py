"""Symmetric two-expert models: EM as mirror descent, gradients, missing information.

Identity checked by ``test_hessian_is_complete_minus_missing_information`` (derived in the
docstring of :mod:`softmix.moe.mirror`): -log p(y | x) = A_x(theta) - log sum_z exp(T'theta) +
const, so Hessian L = I_c - I_m, with I_c = Hessian A and I_m the posterior variance of T.
"""

import warnings

import numpy as np
import pytest

from softmix.datasets import make_sym_mixture_of_experts
from softmix.exceptions import ConvergenceWarning
from softmix.moe import mirror as m

KINDS = ("linear", "logistic")


def problem(kind, n=1500, d=3, seed=0):
    # the logistic model needs a higher signal-to-noise ratio to be well posed
    beta_norm, w_norm = (3.0, 1.5) if kind == "linear" else (8.0, 4.0)
    X, y, beta, w = make_sym_mixture_of_experts(n, d, kind=kind, beta_norm=beta_norm,
                                                w_norm=w_norm, random_state=seed)
    theta_star = np.concatenate([w, beta])
    theta = theta_star + np.random.default_rng(seed + 100).normal(scale=0.7, size=2 * d)
    return X, y, theta_star, theta


def central_difference(f, theta, h=1e-6):
    eye = np.eye(theta.shape[0])
    return np.array([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in eye])


@pytest.mark.parametrize("kind", KINDS)
def test_em_step_is_mirror_descent_step(kind):
    X, y, _, theta = problem(kind)
    new = m.sym_em_step(X, y, theta, kind)
    lhs = m.mirror_gradient(X, new, kind)
    rhs = m.mirror_gradient(X, theta, kind) - m.sym_gradient(X, y, theta, kind)
    assert np.max(np.abs(lhs - rhs)) < 1e-8
    assert np.max(np.abs(new - theta)) > 1e-2  # the step did move


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_finite_differences(kind):
    X, y, _, theta = problem(kind)
    fd = central_difference(lambda t: m.sym_objective(X, y, t, kind), theta)
    np.testing.assert_allclose(m.sym_gradient(X, y, theta, kind), fd, atol=1e-7)
    fd_a = central_difference(lambda t: m.mirror_map(X, t, kind), theta)
    np.testing.assert_allclose(m.mirror_gradient(X, theta, kind), fd_a, atol=1e-7)
    hess_a = central_difference(lambda t: m.mirror_gradient(X, t, kind), theta)
    np.testing.assert_allclose(m.complete_information(X, theta, kind), hess_a, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_hessian_is_complete_minus_missing_information(kind):
    X, y, _, theta = problem(kind)
    hess = central_difference(lambda t: m.sym_gradient(X, y, t, kind), theta)
    identity = m.complete_information(X, theta, kind) - m.missing_information(X, y, theta, kind)
    np.testing.assert_allclose(hess, identity, atol=1e-6)
    # M = I_c^{-1} I_m, so I - M = I_c^{-1} Hessian L
    M = m.missing_information_matrix(X, y, theta, kind)
    np.testing.assert_allclose(np.eye(len(theta)) - M,
                               np.linalg.solve(m.complete_information(X, theta, kind), hess),
                               atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_em_contraction_matches_lambda_max_at_the_mle(kind):
    X, y, theta_star, _ = problem(kind, n=4000)
    fit = m.fit_symmetric(X, y, theta_star, kind=kind, method="em", max_iter=300, tol=1e-15,
                          warn=False)
    mle = fit.params
    rate = m.predicted_em_rate(X, y, mle, kind)
    assert 0.0 < rate < 1.0
    # Jacobian of the EM map at the MLE is M: check along its top eigenvector
    M = m.missing_information_matrix(X, y, mle, kind)
    values, vectors = np.linalg.eig(M)
    top = np.real(vectors[:, np.argmax(np.real(values))])
    eps = 1e-5
    moved = m.sym_em_step(X, y, mle + eps * top, kind) - m.sym_em_step(X, y, mle, kind)
    np.testing.assert_allclose(moved / eps, rate * top, atol=1e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_em_is_monotone(kind):
    X, y, _, theta = problem(kind)
    fit = m.fit_symmetric(X, y, theta, kind=kind, method="em", max_iter=30)
    assert fit.n_decreases == 0
    assert np.all(np.diff(fit.history) >= -1e-12)
    assert fit.extra["trace"].shape == (31, theta.shape[0])
    np.testing.assert_allclose(-m.sym_objective(X, y, fit.extra["trace"][7], kind),
                               fit.history[7])


def test_em_gd_and_gradient_em_reach_the_same_optimum():
    X, y, _, theta = problem("linear", n=2000, d=2, seed=3)
    fits = {
        "em": m.fit_symmetric(X, y, theta, method="em", max_iter=200, warn=False),
        "gd": m.fit_symmetric(X, y, theta, method="gd", step_size=1.0, max_iter=2000, warn=False),
        "gradient_em": m.fit_symmetric(X, y, theta, method="gradient_em", step_w=3.0,
                                       step_beta=1.0, n_inner=3, max_iter=1000, warn=False),
    }
    ref = fits["em"].params
    assert np.linalg.norm(m.sym_gradient(X, y, ref, "linear")) < 1e-8
    for name, fit in fits.items():
        np.testing.assert_allclose(fit.params, ref, atol=1e-6, err_msg=name)

    # EM reaches the optimum to 1e-4 far sooner than GD
    def first_close(fit):
        return int(np.argmax(np.linalg.norm(fit.extra["trace"] - ref, axis=1) < 1e-4))

    assert 0 < first_close(fits["em"]) < first_close(fits["gd"])


def test_logistic_methods_reach_the_same_objective():
    # SymMoLogE is poorly conditioned at its MLE (flat direction along beta, lambda_max ~ 0.97):
    # the methods agree in objective tightly and in parameters loosely.
    X, y, _, theta = problem("logistic", n=2000, d=2, seed=3)
    em = m.fit_symmetric(X, y, theta, kind="logistic", max_iter=1000, tol=1e-15, warn=False)
    gd = m.fit_symmetric(X, y, theta, kind="logistic", method="gd", step_size=16.0,
                         max_iter=3000, warn=False)
    gem = m.fit_symmetric(X, y, theta, kind="logistic", method="gradient_em", step_w=8.0,
                          step_beta=16.0, n_inner=4, max_iter=1000, warn=False)
    for fit in (gd, gem):
        assert abs(fit.objective - em.objective) < 1e-5
        assert np.linalg.norm(fit.params - em.params) / np.linalg.norm(em.params) < 0.05


def test_gradient_em_with_one_inner_step_and_equal_steps_is_gd():
    X, y, _, theta = problem("linear")
    gd = m.fit_symmetric(X, y, theta, method="gd", step_size=0.7, max_iter=10)
    gem = m.fit_symmetric(X, y, theta, method="gradient_em", step_size=0.7, n_inner=1,
                          max_iter=10)
    np.testing.assert_allclose(gd.extra["trace"], gem.extra["trace"], atol=1e-12)


def test_divergent_gd_stops_non_finite_with_warning():
    X, y, _, theta = problem("linear")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.warns(ConvergenceWarning, match="non-finite"):
            fit = m.fit_symmetric(X, y, theta, method="gd", step_size=1e3, max_iter=500)
    assert fit.stop_reason == "non_finite" and not fit.converged
    assert np.all(np.isfinite(fit.params)) and np.isfinite(fit.objective)
    assert np.all(np.isfinite(fit.history))


@pytest.mark.parametrize("bad", [0.0, -1.0, np.inf, np.nan])
@pytest.mark.parametrize("arg", ["step_size", "step_w", "step_beta"])
def test_bad_step_sizes_are_rejected(arg, bad):
    X, y, _, theta = problem("linear", n=50)
    with pytest.raises(ValueError, match=arg):
        m.fit_symmetric(X, y, theta, method="gradient_em", **{arg: bad})


def test_bad_inputs_name_the_argument():
    X, y, _, theta = problem("logistic", n=50)
    with pytest.raises(ValueError, match="theta0"):
        m.fit_symmetric(X, y, theta[:-1], kind="logistic")
    with pytest.raises(ValueError, match=r"\{0, 1\}"):
        m.fit_symmetric(X, y + 0.5, theta, kind="logistic")
    with pytest.raises(ValueError, match="method"):
        m.fit_symmetric(X, y, theta, kind="logistic", method="newton")
    with pytest.raises(ValueError, match="length"):
        m.fit_symmetric(X, y[:-1], theta, kind="logistic")


def test_linear_needs_full_column_rank():
    # before: scipy's LinAlgError "A singular matrix detected" from inside the EM step
    X, y, _, theta = problem("linear", n=50)
    collinear = np.column_stack([X, X[:, 0]])
    with pytest.raises(ValueError, match="X must have full column rank.*rank 3 with 4 columns"):
        m.fit_symmetric(collinear, y, np.zeros(8) + 0.1, kind="linear")
    with pytest.raises(ValueError, match="rank 1 with 3 columns and 1 samples"):
        m.fit_symmetric(X[:1], y[:1], theta, kind="linear")


@pytest.mark.parametrize(("kind", "where"), [("linear", "X"), ("logistic", "X"), ("linear", "y")])
def test_values_whose_squares_overflow_name_the_argument(kind, where):
    # before: linear EM failed inside scipy.linalg.solve ("array must not contain infs or
    # NaNs"); logistic EM stopped as 'non_finite' after one iteration
    X, y, _, theta = problem(kind, n=50)
    X, y = X.copy(), y.copy()
    (X if where == "X" else y)[0] = 1e200
    with pytest.raises(ValueError, match=rf"{where} holds values up to 1e\+200.*Rescale"):
        m.fit_symmetric(X, y, theta, kind=kind)


@pytest.mark.parametrize("kind", KINDS)
def test_generator_draws_from_the_model(kind):
    X, y, beta, w = make_sym_mixture_of_experts(20000, 2, kind=kind, beta_norm=2.0, w_norm=1.0,
                                                random_state=5)
    assert np.linalg.norm(beta) == pytest.approx(2.0) and np.linalg.norm(w) == pytest.approx(1.0)
    theta = np.concatenate([w, beta])
    # the truth is (close to) a stationary point of the empirical objective at n = 20000
    assert np.linalg.norm(m.sym_gradient(X, y, theta, kind)) < 0.05
    assert np.linalg.norm(m.sym_gradient(X, y, -theta, kind)) < 0.05  # label-switching symmetry
    assert m.sym_objective(X, y, theta, kind) < m.sym_objective(X, y, 0.5 * theta, kind) - 0.005
    if kind == "logistic":  # P(y=1|x) = s(x'w) s(x'beta) + s(-x'w) s(-x'beta), s = sigmoid
        a, c = X @ w, X @ beta
        p1 = 1 / (1 + np.exp(-a)) / (1 + np.exp(-c)) + 1 / (1 + np.exp(a)) / (1 + np.exp(c))
        assert abs(y.mean() - p1.mean()) < 4 * np.sqrt(0.25 / len(y))
    else:  # E[y^2 | x] = (x'beta)^2 + 1
        assert abs(np.mean(y**2) - np.mean((X @ beta) ** 2 + 1)) < 0.1
    again = make_sym_mixture_of_experts(20000, 2, kind=kind, random_state=5)
    np.testing.assert_array_equal(again[1], y)


def test_max_iter_zero_returns_the_start():
    X, y, _, theta = problem("linear", n=100)
    fit = m.fit_symmetric(X, y, theta, max_iter=0)
    assert fit.stop_reason == "init" and np.array_equal(fit.params, theta)
    assert fit.history[0] == pytest.approx(-m.sym_objective(X, y, theta, "linear"))


def test_generator_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="beta must have shape"):
        make_sym_mixture_of_experts(10, 3, beta=np.ones(2))
    with pytest.raises(ValueError, match="kind"):
        make_sym_mixture_of_experts(10, 3, kind="probit")
    with pytest.raises(ValueError, match="n_samples"):
        make_sym_mixture_of_experts(0, 3)
    with pytest.raises(ValueError, match="beta_norm"):
        make_sym_mixture_of_experts(10, 3, beta_norm=-1.0)
