"""Symmetric two-expert mixtures (SymMoLinE, SymMoLogE): EM as mirror descent.

The two symmetric models of Fruytier, Mokhtari & Sanghavi (2025) have one gating vector ``w`` and
one expert vector ``beta`` (``beta_1 = -beta_2 = beta``). Everything here works on the stacked
parameter vector ``theta = [w, beta]`` of shape (2 * n_features,), with the normalised negative
log-likelihood

    L(theta) = -(1/n) sum_i log sum_{z in {1,2}} p(y_i | x_i, z; beta) P(z | x_i; w),

    P(z=1 | x) = sigmoid(x'w),  s = +1 for z=1 and -1 for z=2,
    SymMoLinE:  y | x, z ~ N(s x'beta, 1),
    SymMoLogE:  P(y=1 | x, z) = sigmoid(s x'beta).

Mirror-descent view. Given x, the complete data (y, z) form an exponential family with natural
parameter theta, sufficient statistic T(y, z, x) and log-partition A_x(theta):

    SymMoLinE:  T = (1[z=1] x, s y x),        A_x = log(1 + e^{x'w}) + (x'beta)^2 / 2,
    SymMoLogE:  T = (1[z=1] x, s (y - 1/2) x), A_x = log(1 + e^{x'w}) + log(2 cosh(x'beta / 2)).

With the mirror map A(theta) = (1/n) sum_i A_{x_i}(theta) and the expected statistic
Tbar(theta_t) = (1/n) sum_i E[T | x_i, y_i; theta_t], Fisher's identity gives
grad L(theta_t) = grad A(theta_t) - Tbar(theta_t), and the exact M-step solves
grad A(theta+) = Tbar(theta_t). Hence the EM step is the unprojected mirror-descent step with
unit step size

    grad A(theta+) = grad A(theta_t) - grad L(theta_t).

Second order: -log p(y | x) = A_x(theta) - log sum_z exp(T(y, z, x)'theta) + const, so

    Hessian L = I_c - I_m,   I_c = Hessian A (complete information),
    I_m = (1/n) sum_i r_i (1 - r_i) v_i v_i' (missing information, Var[T | x, y]),

with r_i = P(z=1 | x_i, y_i; theta), v_i = (x_i, 2 y_i x_i) (SymMoLinE) or
(x_i, (2 y_i - 1) x_i) (SymMoLogE). Near the maximum-likelihood estimate the EM map has Jacobian
I - I_c^{-1} Hessian L = M = I_c^{-1} I_m, so lambda_max(M) is the predicted linear rate of EM
(the parameter error shrinks by that factor per iteration).

References
----------
Q. Fruytier, A. Mokhtari, S. Sanghavi. Learning Mixtures of Experts with EM: A Mirror Descent
Perspective. ICML 2025 (arXiv:2411.06056).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import linalg

from softmix._validation import (
    check_array,
    check_choice,
    check_float,
    check_int,
    check_scale,
    check_step_size,
)
from softmix.core.em import run_em
from softmix.core.result import FitResult
from softmix.core.solvers import newton_direction, newton_maximize
from softmix.core.special import expit, log_expit

__all__ = [
    "KINDS",
    "complete_information",
    "expected_statistic",
    "fit_symmetric",
    "mirror_gradient",
    "mirror_map",
    "missing_information",
    "missing_information_matrix",
    "predicted_em_rate",
    "split_theta",
    "sym_em_map",
    "sym_em_step",
    "sym_gd_map",
    "sym_gradient",
    "sym_gradient_em_map",
    "sym_hessian",
    "sym_log_likelihood",
    "sym_mle",
    "sym_objective",
    "sym_posterior",
]

#: The two symmetric models: ``"linear"`` (SymMoLinE) and ``"logistic"`` (SymMoLogE).
KINDS = ("linear", "logistic")

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


def split_theta(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``theta = [w, beta]`` of shape (2d,) -> ``(w, beta)``, each of shape (d,)."""
    d = theta.shape[0] // 2
    return theta[:d], theta[d:]


def _softplus(a: np.ndarray) -> np.ndarray:
    """log(1 + e^a) without overflow."""
    return np.logaddexp(0.0, a)


def _parts(X: np.ndarray, y: np.ndarray, theta: np.ndarray, kind: str):
    """Per-sample gate score a = x'w, expert score c = x'beta and the 'sign' u of the expert
    part: the posterior log-odds of z=1 is a + 2u (linear, u = y c) or a + u (logistic,
    u = (2y - 1) c)."""
    w, beta = split_theta(theta)
    a = X @ w
    c = X @ beta
    if kind == "linear":
        u = y * c
    else:
        u = (2.0 * y - 1.0) * c
    return a, c, u


def sym_posterior(X: np.ndarray, y: np.ndarray, theta: np.ndarray, kind: str) -> np.ndarray:
    """Posterior r_i = P(z=1 | x_i, y_i; theta), shape (n_samples,).

    SymMoLinE: r = sigmoid(x'w + 2 y x'beta); SymMoLogE: r = sigmoid(x'w + (2y - 1) x'beta).
    """
    a, _, u = _parts(X, y, theta, kind)
    return expit(a + (2.0 * u if kind == "linear" else u))


def sym_log_likelihood(X: np.ndarray, y: np.ndarray, theta: np.ndarray, kind: str) -> np.ndarray:
    """Per-sample log p(y_i | x_i; theta), shape (n_samples,) (log space, never overflows)."""
    a, c, u = _parts(X, y, theta, kind)
    if kind == "linear":
        # log[sig(a) phi(y - c) + sig(-a) phi(y + c)]
        base = -_LOG_SQRT_2PI - 0.5 * y**2 - 0.5 * c**2
        return base + np.logaddexp(log_expit(a) + u, log_expit(-a) - u)
    # log[sig(a) sig(u) + sig(-a) sig(-u)]
    return np.logaddexp(log_expit(a) + log_expit(u), log_expit(-a) + log_expit(-u))


def sym_objective(X: np.ndarray, y: np.ndarray, theta: np.ndarray, kind: str) -> float:
    """L(theta) = -(1/n) sum_i log p(y_i | x_i; theta) (the normalised negative log-likelihood)."""
    return float(-np.mean(sym_log_likelihood(X, y, theta, kind)))


def _statistic_direction(X: np.ndarray, y: np.ndarray, kind: str) -> np.ndarray:
    """The expert half of v_i: 2 y_i x_i (linear) or (2 y_i - 1) x_i (logistic)."""
    return (2.0 * y if kind == "linear" else 2.0 * y - 1.0)[:, None] * X


def expected_statistic(X: np.ndarray, y: np.ndarray, theta: np.ndarray, kind: str) -> np.ndarray:
    """Tbar(theta) = (1/n) sum_i E[T | x_i, y_i; theta], shape (2d,): the E-step.

    w-part: mean r x. beta-part: mean (2r - 1) y x (linear) or mean (2r - 1)(y - 1/2) x
    (logistic).
    """
    r = sym_posterior(X, y, theta, kind)
    n = X.shape[0]
    yy = y if kind == "linear" else y - 0.5
    return np.concatenate([X.T @ r / n, X.T @ ((2.0 * r - 1.0) * yy) / n])


def mirror_map(X: np.ndarray, theta: np.ndarray, kind: str) -> float:
    """A(theta) = (1/n) sum_i A_{x_i}(theta), the log-partition of p(y, z | x) averaged over x.

    SymMoLinE: A_x = log(1 + e^{x'w}) + (x'beta)^2 / 2 (the y-dependent normaliser of the
    Gaussian is a constant and is dropped); SymMoLogE: A_x = log(1 + e^{x'w}) +
    log(2 cosh(x'beta / 2)).
    """
    w, beta = split_theta(theta)
    a, c = X @ w, X @ beta
    gate = _softplus(a)
    if kind == "linear":
        expert = 0.5 * c**2
    else:
        # log(2 cosh(c/2)) = |c|/2 + log(1 + e^{-|c|})
        expert = 0.5 * np.abs(c) + np.log1p(np.exp(-np.abs(c)))
    return float(np.mean(gate + expert))


def mirror_gradient(X: np.ndarray, theta: np.ndarray, kind: str) -> np.ndarray:
    """grad A(theta), shape (2d,): (mean sigmoid(x'w) x, mean x'beta x) for SymMoLinE,
    (mean sigmoid(x'w) x, mean (sigmoid(x'beta) - 1/2) x) for SymMoLogE."""
    w, beta = split_theta(theta)
    n = X.shape[0]
    c = X @ beta
    expert = c if kind == "linear" else expit(c) - 0.5
    return np.concatenate([X.T @ expit(X @ w) / n, X.T @ expert / n])


def sym_gradient(X: np.ndarray, y: np.ndarray, theta: np.ndarray, kind: str) -> np.ndarray:
    """grad L(theta) = grad A(theta) - Tbar(theta), shape (2d,) (Fisher's identity).

    Explicitly: w-part mean (sigmoid(x'w) - r) x; beta-part mean (x'beta - (2r - 1) y) x
    (linear) or mean (sigmoid(x'beta) - t) x with t = r y + (1 - r)(1 - y) (logistic).
    """
    return mirror_gradient(X, theta, kind) - expected_statistic(X, y, theta, kind)


def _weighted_gram(X: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return (X * weights[:, None]).T @ X / X.shape[0]


def complete_information(X: np.ndarray, theta: np.ndarray, kind: str) -> np.ndarray:
    """I_c(theta) = Hessian of A, shape (2d, 2d): block-diagonal
    (mean s(x'w)(1 - s(x'w)) x x', mean x x') for SymMoLinE; the beta block is
    mean s(x'beta)(1 - s(x'beta)) x x' for SymMoLogE (s = sigmoid)."""
    w, beta = split_theta(theta)
    d = w.shape[0]
    p = expit(X @ w)
    out = np.zeros((2 * d, 2 * d))
    out[:d, :d] = _weighted_gram(X, p * (1.0 - p))
    if kind == "linear":
        out[d:, d:] = X.T @ X / X.shape[0]
    else:
        q = expit(X @ beta)
        out[d:, d:] = _weighted_gram(X, q * (1.0 - q))
    return out


def missing_information(X: np.ndarray, y: np.ndarray, theta: np.ndarray, kind: str) -> np.ndarray:
    """I_m(theta) = (1/n) sum_i r_i (1 - r_i) v_i v_i', shape (2d, 2d), with v_i = (x_i, 2 y_i x_i)
    (SymMoLinE) or (x_i, (2 y_i - 1) x_i) (SymMoLogE): the posterior variance of T."""
    r = sym_posterior(X, y, theta, kind)
    V = np.hstack([X, _statistic_direction(X, y, kind)])
    return _weighted_gram(V, r * (1.0 - r))


def sym_hessian(X: np.ndarray, y: np.ndarray, theta: np.ndarray, kind: str) -> np.ndarray:
    """Hessian of L, shape (2d, 2d): I_c - I_m (see the module docstring)."""
    return complete_information(X, theta, kind) - missing_information(X, y, theta, kind)


def sym_mle(
    X: np.ndarray, y: np.ndarray, theta0: np.ndarray, kind: str, *, max_iter: int = 50,
    gtol: float = 1e-12,
) -> np.ndarray:
    """Polish ``theta0`` (e.g. the end of an EM run) to a stationary point of L by Newton steps
    with the exact Hessian I_c - I_m, falling back to an EM step whenever the Newton step does
    not decrease L (so L never increases). Returns theta of shape (2d,)."""
    theta = np.array(theta0, dtype=float)
    value = sym_objective(X, y, theta, kind)
    for _ in range(max_iter):
        grad = sym_gradient(X, y, theta, kind)
        if np.max(np.abs(grad)) <= gtol:
            break
        candidate = theta + newton_direction(-grad, -sym_hessian(X, y, theta, kind))
        cand_value = sym_objective(X, y, candidate, kind)
        if not cand_value <= value:
            candidate = sym_em_step(X, y, theta, kind)
            cand_value = sym_objective(X, y, candidate, kind)
        theta, value = candidate, cand_value
    return theta


def missing_information_matrix(
    X: np.ndarray, y: np.ndarray, theta: np.ndarray, kind: str
) -> np.ndarray:
    """M(theta) = I_c^{-1} I_m, shape (2d, 2d): the missing-information matrix."""
    return linalg.solve(complete_information(X, theta, kind), missing_information(X, y, theta, kind),
                        assume_a="pos")


def predicted_em_rate(X: np.ndarray, y: np.ndarray, theta: np.ndarray, kind: str) -> float:
    """lambda_max(M(theta)): the largest eigenvalue of I_c^{-1} I_m.

    M is similar to the symmetric I_c^{-1/2} I_m I_c^{-1/2}, so its eigenvalues are real and
    >= 0; they come from the symmetric-definite problem I_m v = lambda I_c v. At the MLE this is
    the linear rate at which EM's parameter error contracts; L is alpha-strongly convex relative
    to A exactly where lambda_max(M) <= 1 - alpha (Fruytier et al., Theorem B.2).
    """
    values = linalg.eigh(missing_information(X, y, theta, kind),
                         complete_information(X, theta, kind), eigvals_only=True)
    return float(values[-1])


def _solve_logistic_moment(X: np.ndarray, target: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Solve (1/n) sum_i sigmoid(x_i'b) x_i = target for b by damped Newton.

    This is the weighted logistic regression with soft targets t_i whenever target = mean t x:
    maximise target'b - mean softplus(x'b) (concave). Solved to round-off (the EM identity is
    tested to 1e-8).
    """
    n = X.shape[0]

    def fun(b: np.ndarray, order: int):
        a = X @ b
        value = float(target @ b - np.mean(_softplus(a)))
        if order == 0:
            return value
        p = expit(a)
        return value, target - X.T @ p / n, -_weighted_gram(X, p * (1.0 - p))

    x = newton_maximize(fun, start, max_iter=50, tol=1e-16).x
    # Two undamped Newton steps from the damped solution polish it to round-off (the damped
    # solver's Armijo test cannot see gains below the round-off of the objective value).
    for _ in range(2):
        _, grad, hess = fun(x, 2)
        x = x + newton_direction(grad, hess)
    return x


def sym_em_step(X: np.ndarray, y: np.ndarray, theta: np.ndarray, kind: str) -> np.ndarray:
    """One exact EM step theta -> theta+, shape (2d,).

    Solves grad A(theta+) = Tbar(theta): the gate is a logistic regression of the soft labels
    r_i on x_i (Newton); the SymMoLinE expert has the closed form
    beta+ = (X'X)^{-1} X'((2r - 1) * y); the SymMoLogE expert is a logistic regression with soft
    targets t_i = r_i y_i + (1 - r_i)(1 - y_i) (Newton).
    """
    target = expected_statistic(X, y, theta, kind)
    w, beta = split_theta(theta)
    d = w.shape[0]
    w_new = _solve_logistic_moment(X, target[:d], w)
    if kind == "linear":
        beta_new = linalg.solve(X.T @ X / X.shape[0], target[d:], assume_a="pos")
    else:
        beta_new = _solve_logistic_moment(X, target[d:] + 0.5 * X.mean(axis=0), beta)
    return np.concatenate([w_new, beta_new])


def _guarded(value_and_next: Callable[[np.ndarray], tuple[np.ndarray, float]]):
    """Wrap a map so overflow in a diverging run gives a NaN objective (the driver then stops
    with ``non_finite``) instead of a RuntimeWarning."""

    def wrapped(theta: np.ndarray):
        if not np.all(np.isfinite(theta)):
            return theta, float("nan")
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return value_and_next(theta)

    return wrapped


def sym_em_map(X: np.ndarray, y: np.ndarray, kind: str):
    """EM map for :func:`softmix.core.em.run_em`: theta -> (EM step, mean log-likelihood)."""

    def em_map(theta: np.ndarray):
        return sym_em_step(X, y, theta, kind), -sym_objective(X, y, theta, kind)

    return _guarded(em_map)


def sym_gd_map(X: np.ndarray, y: np.ndarray, kind: str, step_size: float):
    """Gradient-descent map: theta -> (theta - step_size * grad L(theta), -L(theta))."""

    def gd_map(theta: np.ndarray):
        value = -sym_objective(X, y, theta, kind)
        return theta - step_size * sym_gradient(X, y, theta, kind), value

    return _guarded(gd_map)


def sym_gradient_em_map(
    X: np.ndarray, y: np.ndarray, kind: str, step_w: float, step_beta: float, n_inner: int
):
    """Gradient-EM map: E-step at theta_t, then ``n_inner`` gradient steps on Q(. | theta_t).

    grad_theta Q(theta | theta_t) = grad A(theta) - Tbar(theta_t) (the mirror form), with step
    ``step_w`` on the gate block and ``step_beta`` on the expert block. With one inner step and
    equal step sizes this is exactly gradient descent on L.
    """
    d = X.shape[1]
    steps = np.concatenate([np.full(d, step_w), np.full(d, step_beta)])

    def gem_map(theta: np.ndarray):
        value = -sym_objective(X, y, theta, kind)
        target = expected_statistic(X, y, theta, kind)
        new = theta
        for _ in range(n_inner):
            new = new - steps * (mirror_gradient(X, new, kind) - target)
        return new, value

    return _guarded(gem_map)


def fit_symmetric(
    X: np.ndarray,
    y: np.ndarray,
    theta0: np.ndarray,
    *,
    kind: str = "linear",
    method: str = "em",
    max_iter: int = 100,
    tol: float = 0.0,
    step_size: float = 1.0,
    step_w: float | None = None,
    step_beta: float | None = None,
    n_inner: int = 1,
    warn: bool = True,
) -> FitResult:
    """Fit a symmetric two-expert model by EM, gradient descent or gradient EM.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        Real responses (``kind="linear"``) or labels in {0, 1} (``kind="logistic"``).
    theta0 : array-like of shape (2 * n_features,)
        Start ``[w, beta]``.
    kind : {"linear", "logistic"}
        SymMoLinE or SymMoLogE.
    method : {"em", "gd", "gradient_em"}
        Exact EM (mirror descent with unit step), fixed-step gradient descent on L, or gradient
        EM (``n_inner`` gradient steps on Q with block step sizes ``step_w``, ``step_beta``;
        both default to ``step_size``).
    max_iter, tol : int, float
        Passed to :func:`softmix.core.em.run_em` (``tol=0`` runs exactly ``max_iter``).
    step_size : float
        GD step (finite, > 0), on the normalised objective L.
    step_w, step_beta : float, optional
        Gradient-EM steps of the gate and expert blocks (finite, > 0; default ``step_size``).
    n_inner : int
        Inner gradient steps of gradient EM (>= 1).
    warn : bool
        Emit the driver's ConvergenceWarning.

    Returns
    -------
    FitResult
        ``history[t] = -L(theta_t)`` (the mean log-likelihood, larger is better, as for every
        softmix fit); ``extra["trace"]`` is an array of shape (n_iter + 1, 2 * n_features)
        holding theta_t for every entry of the history. A diverging GD run stops with
        ``stop_reason="non_finite"``, a ConvergenceWarning and the last finite iterate.

    Notes
    -----
    Objective and maps are described in the module docstring; the same driver runs the three
    methods so their histories compare iteration by iteration.
    """
    kind = check_choice(kind, "kind", KINDS)
    method = check_choice(method, "method", ("em", "gd", "gradient_em"))
    X = check_array(X, "X", ndim=2)
    y = check_array(y, "y", ndim=1)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have length n_samples={X.shape[0]} like X, got {y.shape[0]}.")
    if kind == "logistic" and not np.all((y == 0) | (y == 1)):
        raise ValueError("y must hold labels in {0, 1} for kind='logistic'; recode the labels.")
    check_scale(X, "X")
    if kind == "linear":
        check_scale(y, "y")
        rank = int(np.linalg.matrix_rank(X))
        if rank < X.shape[1]:  # else scipy's LinAlgError from inside the EM step
            raise ValueError(
                f"X must have full column rank for kind='linear' (the EM step solves "
                f"X'X beta = X'((2r - 1) y)); got rank {rank} with {X.shape[1]} columns and "
                f"{X.shape[0]} samples. Drop collinear columns or use more samples."
            )
    theta0 = check_array(theta0, "theta0", ndim=1)
    if theta0.shape[0] != 2 * X.shape[1]:
        raise ValueError(
            f"theta0 must have shape (2 * n_features,) = ({2 * X.shape[1]},) holding [w, beta], "
            f"got {theta0.shape}."
        )
    max_iter = check_int(max_iter, "max_iter", low=0)
    tol = check_float(tol, "tol", low=0.0)
    step_size = check_step_size(step_size, "step_size")
    n_inner = check_int(n_inner, "n_inner", low=1)
    if method == "em":
        em_map, name, monotone = sym_em_map(X, y, kind), "EM", True
    elif method == "gd":
        em_map, name, monotone = sym_gd_map(X, y, kind, step_size), "gradient descent", False
    else:
        sw = step_size if step_w is None else check_step_size(step_w, "step_w")
        sb = step_size if step_beta is None else check_step_size(step_beta, "step_beta")
        em_map = sym_gradient_em_map(X, y, kind, sw, sb, n_inner)
        name, monotone = "gradient EM", False
    objective = _guarded(lambda t: (t, -sym_objective(X, y, t, kind)))
    return run_traced(theta0, em_map, lambda t: objective(t)[1], max_iter=max_iter, tol=tol,
                      monotone=monotone, name=name, warn=warn)


def run_traced(params0, em_map, objective, **kwargs) -> FitResult:
    """:func:`softmix.core.em.run_em` that also records the iterate behind every history
    entry in ``result.extra["trace"]`` (a list, or a stacked array when the iterates are
    arrays)."""
    seen: list = []

    def recording(params):
        seen.append(params)
        return em_map(params)

    result = run_em(params0, recording, objective, **kwargs)
    trace = seen[: len(result.history)]
    if len(trace) < len(result.history):
        trace.append(result.params)
    result.extra["trace"] = np.array(trace) if isinstance(params0, np.ndarray) else trace
    return result
