"""The latent class (conditional) logit: parameters, segment-sum math, E-step, M-step, EM map.

Model. Group (person) g keeps one latent class k for all its choice situations s; in situation
s it chooses among its available alternatives j (rows of X in that situation) with the
conditional logit of its class::

    P(j | s, k)  = exp(x_j' beta_k) / sum_{l in s} exp(x_l' beta_k)
    w_gk         = softmax_k(gamma_k0 + z_g' gamma_k),   gamma_{K-1} = 0 (class membership)
    L            = sum_g s_g log sum_k w_gk prod_{s in g} P(c_s | s, k)

With one situation over a fixed set of alternatives and no covariates this is the softmax
mixture (:mod:`softmix.softmax_mixture`): ``beta_k`` are its atoms. Rows are sorted by (group,
situation) (:mod:`softmix.choice.data`), so each situation's log-sum-exp and each group's sum
of log-probabilities are segment reductions (``np.maximum.reduceat``, ``np.add.reduceat``):
O(n_rows L K) per E-step. The M-step is a weighted conditional logit per class (damped Newton,
:func:`softmix.core.solvers.newton_maximize`, O(n_rows L^2) per Newton iteration) and the
membership multinomial logit (:func:`softmix.core.membership.membership_mstep`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from softmix._validation import check_array
from softmix.choice.data import ChoiceData
from softmix.core.membership import (
    group_log_posterior,
    membership_log_weights,
    membership_mstep,
)
from softmix.core.solvers import newton_maximize

__all__ = [
    "LatentClassLogitParams",
    "class_log_probabilities",
    "conditional_logit_objective",
    "e_step",
    "em_map",
    "log_weights",
    "m_step",
    "make_em_map",
    "objective",
    "penalty",
]


@dataclass(frozen=True, eq=False)
class LatentClassLogitParams:
    """Parameters of a latent class logit.

    Parameters
    ----------
    coef : ndarray of shape (n_classes, n_features)
        ``beta_k``, the conditional-logit coefficients of each class.
    membership_coef : ndarray of shape (n_classes, n_covariates + 1)
        ``gamma``: column 0 the intercept, then one column per membership covariate; the last row
        (the reference class, K - 1, as everywhere in softmix) is all zeros. Without covariates, ``weights = softmax(gamma[:, 0])``.
    """

    coef: np.ndarray
    membership_coef: np.ndarray

    def __post_init__(self) -> None:
        coef = check_array(self.coef, "coef", ndim=2).copy()
        gamma = check_array(self.membership_coef, "membership_coef", ndim=2, finite=False).copy()
        if gamma.shape[0] != coef.shape[0]:
            raise ValueError(
                f"coef and membership_coef must have one row per class: got shapes "
                f"{coef.shape} and {gamma.shape}."
            )
        if np.any(np.isnan(gamma)) or np.any(gamma == np.inf):
            raise ValueError("membership_coef must be finite (or -inf for a class of weight 0).")
        if np.any(gamma[-1] != 0):
            raise ValueError(
                "membership_coef's last row (the reference class K - 1) must be zero; subtract "
                "the last row from every row (the same model)."
            )
        coef.setflags(write=False)
        gamma.setflags(write=False)
        object.__setattr__(self, "coef", coef)
        object.__setattr__(self, "membership_coef", gamma)

    @classmethod
    def from_weights(cls, coef: np.ndarray, weights: np.ndarray) -> LatentClassLogitParams:
        """Parameters without covariates from class weights (a point of the simplex)."""
        w = check_array(weights, "weights", ndim=1)
        if np.any(w <= 0) or abs(w.sum() - 1.0) > 1e-8:
            raise ValueError(f"weights must be positive and sum to 1, got {w}.")
        return cls(coef, (np.log(w) - np.log(w[-1]))[:, None])

    @property
    def n_classes(self) -> int:
        return self.coef.shape[0]

    @property
    def weights(self) -> np.ndarray:
        """Class weights at covariates 0 (the weights themselves when there are none)."""
        g = self.membership_coef[:, 0]
        e = np.exp(g - np.max(g))
        return e / e.sum()

    def permuted(self, perm: np.ndarray) -> LatentClassLogitParams:
        """The same model with classes reordered (``new class i = old class perm[i]``)."""
        gamma = self.membership_coef[perm]
        return LatentClassLogitParams(self.coef[perm], gamma - gamma[-1])


def log_weights(params: LatentClassLogitParams, data: ChoiceData) -> np.ndarray:
    """Log class weights per group, shape (G, K) (rows equal without covariates)."""
    if data.Z is None:
        g = params.membership_coef[:, :1].T  # (1, K)
        with np.errstate(invalid="ignore"):
            lw = g - np.logaddexp.reduce(g, axis=1, keepdims=True)
        return np.broadcast_to(lw, (data.n_groups, params.n_classes))
    return membership_log_weights(params.membership_coef, data.Z, data.n_groups)


def _segment_log_softmax(eta: np.ndarray, data: ChoiceData) -> tuple[np.ndarray, np.ndarray]:
    """Within-situation log-softmax of ``eta`` (n_rows, K): ``(log P (n_rows, K), lse (S, K))``."""
    m = np.maximum.reduceat(eta, data.starts, axis=0)
    shifted = eta - m[data.row_situation]
    lse = np.log(np.add.reduceat(np.exp(shifted), data.starts, axis=0))
    return shifted - lse[data.row_situation], lse + m


def class_log_probabilities(coef: np.ndarray, data: ChoiceData) -> tuple[np.ndarray, np.ndarray]:
    """Per-class choice log-probabilities.

    Returns
    -------
    log_p : ndarray of shape (n_rows, K)
        ``log P(j | s, k)`` for every (sorted) row.
    log_f : ndarray of shape (G, K)
        ``log f_gk = sum_{s in g} log P(c_s | s, k)``: each group's log-likelihood per class.
    """
    eta = data.X @ np.ascontiguousarray(np.asarray(coef, dtype=float).T)
    log_p, _ = _segment_log_softmax(eta, data)
    ll_sit = log_p[data.chosen_rows]
    return log_p, np.add.reduceat(ll_sit, data.group_starts, axis=0)


def penalty(params: LatentClassLogitParams, ridge: float) -> float:
    """``ridge / 2 (||beta||^2 + ||gamma_free||^2)`` (0 when ``ridge = 0``)."""
    if ridge == 0.0:
        return 0.0
    gamma = params.membership_coef[:-1]
    return 0.5 * ridge * float(np.sum(params.coef**2) + np.sum(gamma[np.isfinite(gamma)] ** 2))


def e_step(params: LatentClassLogitParams, data: ChoiceData):
    """Log posteriors ``log r_gk`` (G, K), the log-likelihood, and ``log P`` (n_rows, K)."""
    log_p, log_f = class_log_probabilities(params.coef, data)
    log_resp, loglik, _ = group_log_posterior(log_weights(params, data), log_f,
                                              data.group_weights)
    return log_resp, loglik, log_p


def objective(params: LatentClassLogitParams, data: ChoiceData, ridge: float = 0.0) -> float:
    """The penalised log-likelihood EM maximises (the log-likelihood when ``ridge = 0``)."""
    return e_step(params, data)[1] - penalty(params, ridge)


def conditional_logit_objective(beta: np.ndarray, data: ChoiceData, a: np.ndarray,
                                ridge: float = 0.0, order: int = 2):
    """Weighted conditional-logit log-likelihood of one class and its derivatives.

    ``Q(beta) = sum_s a_s log P(c_s | s; beta) - ridge/2 ||beta||^2``;
    ``grad = sum_s a_s (x_{c_s} - xbar_s) - ridge beta`` with ``xbar_s = sum_{j in s} P_j x_j``;
    ``hess = -sum_s a_s sum_{j in s} P_j (x_j - xbar_s)(x_j - xbar_s)' - ridge I``.

    Parameters
    ----------
    beta : ndarray of shape (L,)
    data : ChoiceData
    a : ndarray of shape (S,)
        Non-negative situation weights (the class posterior of the situation's group times the
        group's weight).
    order : {0, 2}
        0: the value; 2: ``(value, grad, hess)``.
    """
    X = data.X
    eta = X @ beta
    m = np.maximum.reduceat(eta, data.starts)
    shifted = eta - m[data.row_situation]
    e = np.exp(shifted)
    tot = np.add.reduceat(e, data.starts)
    log_p_chosen = shifted[data.chosen_rows] - np.log(tot)
    value = float(a @ log_p_chosen) - 0.5 * ridge * float(beta @ beta)
    if order == 0:
        return value
    p = e / tot[data.row_situation]
    ap = p * a[data.row_situation]
    xbar = np.add.reduceat(X * p[:, None], data.starts, axis=0)  # (S, L)
    grad = X[data.chosen_rows].T @ a - X.T @ ap - ridge * beta
    hess = -(X.T @ (X * ap[:, None]) - xbar.T @ (xbar * a[:, None]))
    if ridge:
        hess[np.diag_indices_from(hess)] -= ridge
    return value, grad, hess


def m_step(params: LatentClassLogitParams, resp: np.ndarray, data: ChoiceData, *,
           ridge: float = 0.0, newton_max_iter: int = 20, tol: float = 1e-12,
           absolute_tol: bool = False, full_output: bool = False):
    """Maximise the EM surrogate given group posteriors ``resp`` (G, K), warm-started at
    ``params``.

    Each class's conditional logit and the membership logit are improved by damped Newton with
    step-halving (never lowering their part of the surrogate), so EM is monotone even when the
    ``newton_max_iter`` budget cuts a solve short (a generalised EM).

    ``absolute_tol=True`` makes ``tol`` the inner solves' remaining gain in nats (each one's
    own share), instead of relative. ``full_output=True`` also returns ``gain``: the
    surrogate's increase one Newton step from ``params`` predicts (nats), the sum over the
    classes and the membership model of ``g' (-H)^{-1} g / 2``; zero exactly when ``params``
    maximise the surrogate, i.e. (Fisher's identity) at a stationary point of the objective.
    """
    s = resp if data.group_weights is None else resp * data.group_weights[:, None]
    a = s[data.situation_group]  # (S, K)
    coef = np.empty_like(params.coef)
    gain = 0.0
    for k in range(params.n_classes):
        ak = np.ascontiguousarray(a[:, k])
        if not np.any(ak > 0):
            coef[k] = params.coef[k]
            continue

        def fun(beta, order, ak=ak):
            return conditional_logit_objective(beta, data, ak, ridge, order)

        res = newton_maximize(fun, params.coef[k], max_iter=newton_max_iter, tol=tol,
                              weight=1.0 if absolute_tol else None)
        coef[k] = res.x
        gain += 0.5 * float(res.decrement0)
    gamma, membership_gain = membership_mstep(
        data.Z, resp, params.membership_coef, ridge=ridge, weights=data.group_weights,
        max_iter=newton_max_iter, tol=tol, absolute_tol=absolute_tol, full_output=True)
    new = LatentClassLogitParams(coef, gamma)
    return (new, gain + membership_gain) if full_output else new


#: The inner Newton solves' floor in nats when the EM runs a fixed number of iterations
#: (``tol=0``): below it a further inner step is meaningless.
_INNER_TOL_FLOOR = 1e-12


def make_em_map(data: ChoiceData, *, ridge: float = 0.0, newton_max_iter: int = 20,
                tol: float = 1e-7):
    """The EM map ``params -> (next_params, objective(params))`` for :func:`core.em.run_em`,
    with its stop rule in nats.

    The map carries ``em_map.stationarity(params, exact) -> float`` (the hook of
    :func:`softmix.core.em.run_em`): the gain (nats) one exact M-step from ``params`` is
    predicted to make, the sum of the complete-data Newton decrements of the classes'
    conditional logits and of the membership logit (:func:`m_step` with ``full_output``). The
    M-step is warm-started at ``params``, so its first Newton step is taken at ``params``
    itself: the value is exact, read off the M-step just done (no extra pass). By Fisher's
    identity it is zero exactly at stationary points of the (penalised) log-likelihood, and it
    means the same at any number of groups. The inner solves stop when their predicted gain is
    below ``tol / (10 (K + 1))`` nats, so EM cannot stall short of ``tol``.
    """
    state: dict = {}

    def em_map(params: LatentClassLogitParams):
        inner = tol / (10.0 * (params.n_classes + 1)) if tol > 0 else _INNER_TOL_FLOOR
        log_resp, loglik, _ = e_step(params, data)
        value = loglik - penalty(params, ridge)
        new, gain = m_step(params, np.exp(log_resp), data, ridge=ridge,
                           newton_max_iter=newton_max_iter, tol=inner, absolute_tol=True,
                           full_output=True)
        state.clear()
        state.update(at=params, gain=gain)
        return new, value

    def stationarity(params: LatentClassLogitParams, exact: bool) -> float:
        if state.get("at") is not params:
            em_map(params)
        return float(state["gain"])

    em_map.stationarity = stationarity  # type: ignore[attr-defined]
    return em_map


def em_map(params: LatentClassLogitParams, data: ChoiceData, *, ridge: float = 0.0,
           newton_max_iter: int = 20):
    """One EM iteration: ``(next_params, objective(params))``: the map of
    :func:`make_em_map` with its inner solves run to 1e-12 nats (``tol=0``)."""
    return make_em_map(data, ridge=ridge, newton_max_iter=newton_max_iter, tol=0.0)(params)


def params_from_responsibilities(resp: np.ndarray, data: ChoiceData, n_features: int, *,
                                 ridge: float = 0.0) -> LatentClassLogitParams:
    """The M-step from given group posteriors (G, K), from zero coefficients (a start)."""
    k = resp.shape[1]
    q = data.n_covariates
    zero = LatentClassLogitParams(np.zeros((k, n_features)), np.zeros((k, q + 1)))
    return m_step(zero, resp, data, ridge=ridge, newton_max_iter=100)
