"""Concave maximisation for M-steps: damped Newton with Armijo step-halving, and (added by the
models that need them) weighted multinomial / binary logistic regressions built on it.

Every M-step of softmix that has no closed form is a smooth concave problem (a weighted
multinomial logit): the softmax-mixture atom update, the MoE gating update, logistic and
multinomial experts. They all use :func:`newton_maximize` so there is one place for the
safeguards (Cholesky with a ridge fallback, step-halving, Newton-decrement stop).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.sparse import linalg as sparse_linalg

from softmix.core.compat import cg
from softmix.core.special import log_softmax

__all__ = ["NewtonResult", "newton_direction", "newton_maximize"]


@dataclass
class NewtonResult:
    """Outcome of :func:`newton_maximize`.

    ``decrement0`` is the Newton decrement ``g' (-H)^{-1} g`` at the start ``x0`` (before any
    step cap), so ``weight * decrement0 / 2`` is the quadratic model's predicted gain of a full
    maximisation from ``x0``: a stationarity measure of the start (NaN if ``max_iter=0``).
    """

    x: np.ndarray
    value: float
    n_iter: int
    converged: bool
    decrement0: float = float("nan")


#: Relative precision below which an objective change is round-off (a few ulps of |value|).
_ROUNDOFF = 64 * np.finfo(float).eps


#: Matrix-free Newton (``hess`` given as a LinearOperator): CG relative tolerance and iterations
#: [chosen, measured on the softmax-mixture M-step at L = 100: 1e-6 and 50 cost 1.6x more time
#: per EM iteration for the same iterates] (an inexact Newton step; the outer loop converges).
CG_RTOL = 1e-2
CG_MAX_ITER = 20


def newton_direction(grad: np.ndarray, hess) -> np.ndarray:
    """Solve ``(-hess) d = grad`` for a concave objective.

    Uses a Cholesky factorisation of ``-hess``; if it is not positive definite (flat directions,
    e.g. an unidentified design), a ridge growing from 1e-10 * trace is added until it is.
    ``hess`` may also be a :class:`scipy.sparse.linalg.LinearOperator` (Hessian-vector products
    only, for large problems): then truncated conjugate gradients (``CG_RTOL``, at most
    ``CG_MAX_ITER`` iterations; every CG iterate of a negative definite ``hess`` is an ascent
    direction, so a truncated solve is still usable).
    """
    if grad.size == 0:  # nothing free (e.g. the gate of one expert); SciPy < 1.11 fails on 0x0
        return grad.copy()
    if isinstance(hess, sparse_linalg.LinearOperator):
        neg_op = sparse_linalg.LinearOperator(hess.shape, matvec=lambda v: -hess.matvec(v),
                                              dtype=float)
        d, _ = cg(neg_op, grad, rtol=CG_RTOL, maxiter=CG_MAX_ITER)
        return d if float(grad @ d) > 0 else grad  # guard: never a non-ascent direction
    neg = -hess
    scale = max(float(np.trace(neg)) / max(neg.shape[0], 1), 1e-300)
    ridge = 0.0
    for _ in range(12):
        try:
            c = linalg.cho_factor(neg + ridge * np.eye(neg.shape[0]), check_finite=False)
            return linalg.cho_solve(c, grad, check_finite=False)
        except linalg.LinAlgError:
            ridge = scale * (1e-10 if ridge == 0.0 else ridge / scale * 100.0)
    return grad / scale  # hopeless curvature: scaled gradient ascent, still a direction of ascent


def newton_maximize(
    fun: Callable[[np.ndarray, int], tuple],
    x0: np.ndarray,
    *,
    max_iter: int = 50,
    tol: float = 1e-10,
    max_halvings: int = 40,
    armijo: float = 1e-4,
    max_step: float | None = None,
    weight: float | None = None,
) -> NewtonResult:
    """Maximise a smooth concave function by damped Newton.

    Parameters
    ----------
    fun : callable
        ``fun(x, order)``: ``order=0`` returns ``value``; ``order=2`` returns
        ``(value, grad, hess)`` with ``grad`` of shape (n,) and ``hess`` of shape (n, n).
    x0 : ndarray of shape (n,)
        Start (warm start from the previous EM iterate).
    max_iter : int
        Newton iterations. ``max_iter=1`` is one safeguarded Newton step.
    tol : float
        Stop when the Newton decrement ``grad' d / 2 <= tol * max(1, |value|)`` (relative), or,
        when ``weight`` is given, ``weight * grad' d / 2 <= tol`` (absolute: the predicted
        remaining gain of ``weight * fun``, e.g. in nats when ``fun`` is a per-observation
        log-likelihood and ``weight`` the number of observations; this does not depend on how
        large ``|value|`` or ``weight`` is). ``tol=0`` stops only when no step can help.
    max_step : float, optional
        Cap on the Euclidean norm of the full Newton step (the direction is shrunk to this
        length first, then halved as usual). Guards against the huge steps of a nearly singular
        Hessian (e.g. a softmax concentrated on one alternative). None: no cap.
    weight : float, optional
        Makes ``tol`` absolute on ``weight * fun`` (see ``tol``). None: relative ``tol``.

    Returns
    -------
    NewtonResult
        The value never decreases from ``fun(x0)`` by more than round-off: a step that cannot
        increase it after ``max_halvings`` halvings is rejected and the solver stops.

    Notes
    -----
    When the predicted gain ``decrement / 2`` is below the round-off of ``value`` (a few ulps of
    ``|value|``), the Armijo test cannot tell an ascent step from a descent one, so the full
    (capped) Newton step is accepted as long as the value did not drop beyond round-off: the
    quadratic model is exact to that precision. Without this, a per-observation objective
    (``|value| ~ log p``) with ``weight = N = 1e10`` could not move once the summed gain is below
    ``1e10 * 1e-15`` nats, far above a meaningful tolerance.
    """
    x = np.array(x0, dtype=float, copy=True)
    value = None
    decrement0 = float("nan")
    for it in range(1, max_iter + 1):
        value, grad, hess = fun(x, 2)
        direction = newton_direction(grad, hess)
        if it == 1:
            decrement0 = max(float(grad @ direction), 0.0)
        if max_step is not None:
            norm = float(np.linalg.norm(direction))
            if norm > max_step:
                direction = direction * (max_step / norm)
        decrement = float(grad @ direction)
        limit = tol * max(1.0, abs(value)) if weight is None else tol / max(weight, 1e-300)
        if decrement / 2.0 <= limit or not decrement > 0:
            return NewtonResult(x, float(value), it - 1, True, decrement0)
        roundoff = _ROUNDOFF * max(1.0, abs(value))
        step = 1.0
        for _ in range(max_halvings):
            candidate = x + step * direction
            new_value = fun(candidate, 0)
            if np.isfinite(new_value) and (
                new_value >= value + armijo * step * decrement
                or (decrement / 2.0 <= roundoff and new_value >= value - roundoff)
            ):
                x, value = candidate, new_value
                break
            step *= 0.5
        else:
            return NewtonResult(x, float(value), it, False, decrement0)
    if value is None:
        value = fun(x, 0)
    return NewtonResult(x, float(value), max_iter, False, decrement0)


# ---------------------------------------------------------------------------------------------
# Weighted logistic regressions with soft labels (MoE gating, logistic / multinomial experts,
# the softmax-mixture atom update). One place for the objective, its derivatives and the solver.
# ---------------------------------------------------------------------------------------------

__all__ += [
    "binary_logistic_objective",
    "fit_binary_logistic",
    "fit_multinomial_logistic",
    "multinomial_logistic_objective",
]


def multinomial_logistic_objective(
    coef: np.ndarray,
    design: np.ndarray,
    soft_labels: np.ndarray,
    sample_weight: np.ndarray | None = None,
    ridge: float = 0.0,
    order: int = 1,
):
    """Weighted soft-label multinomial log-likelihood and its derivatives.

    Parameters
    ----------
    coef : ndarray of shape (K, p)
        Class coefficients; the last row is the reference class and must be zero (gauge).
        Only rows ``0..K-2`` are free parameters.
    design : ndarray of shape (n, p)
        Design matrix (e.g. ``[1, x]``).
    soft_labels : ndarray of shape (n, K)
        Non-negative soft labels (responsibilities or one-hot rows); rows need not sum to 1.
    sample_weight : ndarray of shape (n,), optional
        Non-negative row weights (default 1).
    ridge : float
        Penalty ``ridge / 2 * ||coef||^2`` (on every free coefficient, intercepts included:
        this keeps the problem strictly concave and the solution finite on separable data).
    order : {0, 1, 2}
        0: value; 1: ``(value, grad)``; 2: ``(value, grad, hess)``.

    Returns
    -------
    value : float
        ``sum_i w_i sum_k s_ik log softmax_k(design_i @ coef.T) - ridge/2 ||coef||^2``.
    grad : ndarray of shape (K-1, p)
        Gradient with respect to the free rows.
    hess : ndarray of shape ((K-1)*p, (K-1)*p)
        Hessian with respect to the free rows flattened in C order.

    Notes
    -----
    With ``a_ik = w_i s_ik``, ``m_i = sum_k a_ik`` and ``P = softmax(design @ coef.T)``:
    ``grad_k = design' (a_k - m * P_k) - ridge coef_k`` and
    ``hess_{kl} = -design' diag(m P_k (delta_kl - P_l)) design - ridge I``.
    """
    design = np.asarray(design, dtype=float)
    a, m = _label_mass(soft_labels, sample_weight)
    return _mlogit(np.asarray(coef, dtype=float), design, a, m, ridge, order)


def _label_mass(soft_labels, sample_weight) -> tuple[np.ndarray, np.ndarray]:
    """``a = w * s`` (n, K) and its row sums ``m`` (n,), computed once per M-step."""
    a = np.asarray(soft_labels, dtype=float)
    if sample_weight is not None:
        a = a * np.asarray(sample_weight, dtype=float)[:, None]
    return a, a.sum(axis=1)


def _mlogit(coef, design, a, m, ridge, order):
    """:func:`multinomial_logistic_objective` with ``a`` and ``m`` precomputed."""
    p = design.shape[1]
    k = a.shape[1]
    coef = coef.reshape(k, p)
    logp = log_softmax(design @ np.ascontiguousarray(coef.T), axis=1)  # ~10x faster matmul
    free = coef[:-1]
    value = float(np.einsum("ij,ij->", a, logp)) - 0.5 * ridge * float(np.sum(free * free))
    if order == 0:
        return value
    mp = np.exp(logp[:, :-1]) * m[:, None]  # m_i P_ik for the free classes
    grad = (a[:, :-1] - mp).T @ design - ridge * free
    if order == 1:
        return value, grad
    km = k - 1
    prob = mp / np.where(m > 0, m, 1.0)[:, None]
    hess = np.empty((km, p, km, p))
    for i in range(km):
        for j in range(i, km):
            c = mp[:, i] * ((1.0 if i == j else 0.0) - prob[:, j])
            block = -(design.T * c) @ design
            hess[i, :, j, :] = block
            if j != i:
                hess[j, :, i, :] = block.T
    hess = hess.reshape(km * p, km * p)
    if ridge:
        hess[np.diag_indices_from(hess)] -= ridge
    return value, grad, hess


def _maximize(fun, x0: np.ndarray, method: str, max_iter: int, tol: float,
              weight: float | None = None) -> NewtonResult:
    """Newton (default) or L-BFGS (for problems too large for a dense Hessian) on ``fun``.

    ``weight`` makes Newton's ``tol`` absolute (see :func:`newton_maximize`)."""
    if method == "newton":
        return newton_maximize(fun, x0, max_iter=max_iter, tol=tol, weight=weight)
    if method == "lbfgs":
        from scipy import optimize

        start = float(fun(x0, 0))

        def neg(x):
            value, grad = fun(x, 1)
            return -value, -grad.ravel()

        res = optimize.minimize(
            neg, x0, jac=True, method="L-BFGS-B",
            options={"maxiter": max_iter, "gtol": 1e-8, "ftol": max(tol, 1e-15)},
        )
        if not np.isfinite(res.fun) or -res.fun < start:  # never return a worse point
            return NewtonResult(np.array(x0, dtype=float), start, int(res.nit), False)
        return NewtonResult(res.x, float(-res.fun), int(res.nit), bool(res.success))
    raise ValueError(f"method must be 'newton' or 'lbfgs', got {method!r}.")


def fit_multinomial_logistic(
    design: np.ndarray,
    soft_labels: np.ndarray,
    sample_weight: np.ndarray | None = None,
    coef0: np.ndarray | None = None,
    ridge: float = 0.0,
    max_iter: int = 300,
    tol: float = 1e-10,
    method: str = "newton",
    full_output: bool = False,
    absolute_tol: bool = False,
):
    """Weighted multinomial logistic regression with soft labels (last class fixed at 0).

    Maximises :func:`multinomial_logistic_objective` by damped Newton (IRLS) with Armijo
    step-halving (:func:`newton_maximize`), warm-started at ``coef0``. The objective never
    decreases from ``coef0``, so an EM whose M-step uses this is monotone even when the inner
    loop is cut short.

    Parameters
    ----------
    design : ndarray of shape (n, p)
    soft_labels : ndarray of shape (n, K)
    sample_weight : ndarray of shape (n,), optional
    coef0 : ndarray of shape (K, p), optional
        Warm start (its last row is ignored and set to 0). Default: zeros.
    ridge : float
        L2 penalty (see :func:`multinomial_logistic_objective`).
    max_iter : int
        Newton iterations (the authors of the Gaussian-MoE paper used up to 300 with a
        relative tolerance of 1e-7 on the objective; ``tol`` here is on the Newton decrement,
        relative to ``max(1, |value|)``, which is tighter).
    tol : float
    method : {"newton", "lbfgs"}
        ``"lbfgs"`` avoids the dense ``((K-1)p)^2`` Hessian for large problems.
    full_output : bool
        Also return the :class:`NewtonResult` (its ``decrement0 / 2`` is the gain in nats a
        Newton step from ``coef0`` predicts: the objective is a sum, not a mean).
    absolute_tol : bool
        Newton's ``tol`` in nats (the predicted remaining gain) instead of relative to
        ``max(1, |value|)``: what an EM with a stop rule in nats needs, so the inner solve
        cannot stall short of the outer tolerance at large n.

    Returns
    -------
    coef : ndarray of shape (K, p)
        Last row zero. ``(coef, NewtonResult)`` when ``full_output``.
    """
    design = np.asarray(design, dtype=float)
    labels = np.asarray(soft_labels, dtype=float)
    p = design.shape[1]
    k = labels.shape[1]
    x0 = np.zeros((k - 1) * p) if coef0 is None else np.asarray(coef0, float)[:-1].ravel()

    a, m = _label_mass(labels, sample_weight)

    def fun(x, order):
        coef = np.vstack([x.reshape(k - 1, p), np.zeros((1, p))])
        out = _mlogit(coef, design, a, m, ridge, order)
        if order == 0:
            return out
        return (out[0], out[1].ravel()) + tuple(out[2:])

    res = _maximize(fun, x0, method, max_iter, tol, 1.0 if absolute_tol else None)
    coef = np.vstack([np.asarray(res.x).reshape(k - 1, p), np.zeros((1, p))])
    return (coef, res) if full_output else coef


def binary_logistic_objective(
    coef: np.ndarray,
    design: np.ndarray,
    targets: np.ndarray,
    sample_weight: np.ndarray | None = None,
    ridge: float = 0.0,
    order: int = 1,
):
    """Weighted binary log-likelihood with fractional targets, and its derivatives.

    ``value = sum_i w_i [t_i log sigmoid(eta_i) + (1 - t_i) log sigmoid(-eta_i)]
    - ridge/2 ||coef||^2`` with ``eta = design @ coef``; ``grad = design' (w (t - sigmoid(eta)))
    - ridge coef``; ``hess = -design' diag(w s (1 - s)) design - ridge I``.

    Computed as the two-class :func:`multinomial_logistic_objective` with soft labels
    ``[t, 1 - t]`` and coefficients ``[coef, 0]`` (one implementation of the logistic model).

    Parameters
    ----------
    coef : ndarray of shape (p,)
    design : ndarray of shape (n, p)
    targets : ndarray of shape (n,)
        Values in [0, 1] (soft targets allowed).
    sample_weight : ndarray of shape (n,), optional
    ridge : float
    order : {0, 1, 2}
    """
    coef = np.asarray(coef, dtype=float)
    out = multinomial_logistic_objective(_two_class_coef(coef), design, _two_class(targets),
                                         sample_weight, ridge, order)
    if order == 0:
        return out
    return (out[0], out[1][0]) + tuple(out[2:])


def _two_class(targets) -> np.ndarray:
    """Soft labels ``[t, 1 - t]``: the binary model is the two-class multinomial one."""
    t = np.asarray(targets, dtype=float)
    return np.column_stack([t, 1.0 - t])


def _two_class_coef(coef: np.ndarray) -> np.ndarray:
    """``[coef, 0]``: class 1 first, class 0 the reference (``softmax([eta, 0])_0 =
    sigmoid(eta)``)."""
    return np.vstack([coef, np.zeros_like(coef)])


def fit_binary_logistic(
    design: np.ndarray,
    targets: np.ndarray,
    sample_weight: np.ndarray | None = None,
    coef0: np.ndarray | None = None,
    ridge: float = 0.0,
    max_iter: int = 300,
    tol: float = 1e-10,
    method: str = "newton",
    full_output: bool = False,
):
    """Weighted binary logistic regression with fractional targets (Newton/IRLS, step-halving).

    Maximises :func:`binary_logistic_objective` from ``coef0`` (default zeros); the value never
    decreases from the start.

    Returns
    -------
    coef : ndarray of shape (p,)
        ``(coef, NewtonResult)`` when ``full_output``.
    """
    coef0 = None if coef0 is None else _two_class_coef(np.asarray(coef0, dtype=float))
    coef, res = fit_multinomial_logistic(design, _two_class(targets), sample_weight, coef0,
                                         ridge, max_iter, tol, method, full_output=True)
    return (coef[0], res) if full_output else coef[0]
