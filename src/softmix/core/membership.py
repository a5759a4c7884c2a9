"""Class membership shared by every latent-class model with groups (panels) and concomitants.

A *group* (a person, a panel unit) keeps one latent class for all its observations, so the
E-step is per group: with ``log f_gk`` the log-likelihood of group g's observations under class
k (a sum over its observations) and ``log w_gk`` the log prior weight of class k for group g,

    log r_gk = log w_gk + log f_gk - logsumexp_k(log w_gk + log f_gk)       (posterior)
    log L    = sum_g s_g logsumexp_k(log w_gk + log f_gk)                   (log-likelihood)

(:func:`group_log_posterior`; ``s_g`` optional group weights). The class weights may depend on
group covariates ``z_g`` (q,) through a multinomial logit, flexmix's *concomitant variable
model* ``FLXPmultinom`` and econometrics' *class-membership model*:

    w_gk = softmax_k(gamma_k0 + z_g' gamma_k),    gamma_{K-1} = 0 (the last class is the reference)

Coefficients are stored as ``coef`` of shape (K, q + 1): column 0 the intercept, columns 1..q
the covariates' slopes, the last row all zeros (the convention of the whole package: the
softmax mixture's membership covariates and the mixture-of-experts gate; flexmix, mlogit and
biogeme fix the first class instead, a relabelling). The intercept column is added here, callers pass ``Z`` without it). The M-step in ``gamma`` is a
weighted soft-label multinomial logistic regression of the posteriors on ``[1, Z]``
(:func:`membership_mstep`), solved by the one such solver of the package,
:func:`softmix.core.solvers.fit_multinomial_logistic`; with no covariates (q = 0) it has the
closed form ``w_k = sum_g s_g r_gk / sum_g s_g``.

Users: :class:`softmix.LatentClassLogit` (``softmix.choice``) and the panel / concomitant
options of the softmax mixture. Functions here trust their input (shapes and finiteness are
checked at the public boundary).
"""

from __future__ import annotations

import numpy as np

from softmix.core.solvers import fit_multinomial_logistic
from softmix.core.special import log_softmax, logsumexp

__all__ = [
    "encode_groups",
    "group_log_posterior",
    "group_sum",
    "membership_design",
    "membership_log_weights",
    "membership_mstep",
]


def encode_groups(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes ``0..G-1`` for arbitrary (hashable, sortable) group ids.

    Parameters
    ----------
    ids : array-like of shape (n,)
        Group id of each observation (ints, strings, ...; need not be sorted or contiguous).

    Returns
    -------
    codes : ndarray of int64, shape (n,)
        ``unique_ids[codes] == ids``.
    unique_ids : ndarray of shape (G,)
        The sorted distinct ids: group ``g`` of every output is ``unique_ids[g]``.
    """
    unique_ids, codes = np.unique(np.asarray(ids), return_inverse=True)
    return codes.reshape(-1).astype(np.int64), unique_ids


def group_sum(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group sums of the rows of ``values`` (``np.bincount`` per column, O(n K)).

    Parameters
    ----------
    values : ndarray of shape (n,) or (n, K)
    codes : ndarray of int, shape (n,)
        Group code in ``[0, n_groups)`` of each row (any order).
    n_groups : int

    Returns
    -------
    ndarray of shape (n_groups,) or (n_groups, K)
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        return np.bincount(codes, weights=values, minlength=n_groups)
    out = np.empty((n_groups, values.shape[1]))
    for k in range(values.shape[1]):
        out[:, k] = np.bincount(codes, weights=values[:, k], minlength=n_groups)
    return out


def group_log_posterior(
    log_w: np.ndarray,
    loglik_per_group: np.ndarray,
    group_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, float, np.ndarray]:
    """The per-group E-step: class posteriors, the log-likelihood and each group's share.

    Parameters
    ----------
    log_w : ndarray of shape (K,) or (G, K)
        Log prior class weights (shared, or per group with membership covariates).
    loglik_per_group : ndarray of shape (G, K)
        ``log f_gk``: the summed log-likelihood of group g's observations under class k.
    group_weights : ndarray of shape (G,), optional
        Non-negative weights ``s_g`` of the groups in the total (default 1).

    Returns
    -------
    log_resp : ndarray of shape (G, K)
        ``log r_gk`` (rows log-normalised; never clipped).
    loglik : float
        ``sum_g s_g logsumexp_k(log w_gk + log f_gk)``.
    log_marginal : ndarray of shape (G,)
        ``logsumexp_k(log w_gk + log f_gk)`` per group (unweighted).
    """
    joint = np.asarray(loglik_per_group, dtype=float) + np.asarray(log_w, dtype=float)
    log_marginal = logsumexp(joint, axis=1)
    log_resp = joint - log_marginal[:, None]
    if group_weights is None:
        loglik = float(np.sum(log_marginal))
    else:
        loglik = float(np.dot(group_weights, log_marginal))
    return log_resp, loglik, log_marginal


def membership_design(Z: np.ndarray | None, n_groups: int) -> np.ndarray:
    """``[1, Z]``: the intercept column followed by the covariates, shape (G, q + 1).

    ``Z=None`` (no covariates) gives the single intercept column, shape (G, 1).
    """
    ones = np.ones((n_groups, 1))
    if Z is None:
        return ones
    Z = np.asarray(Z, dtype=float).reshape(n_groups, -1)
    return np.hstack([ones, Z])


def membership_log_weights(coef: np.ndarray, Z: np.ndarray | None, n_groups: int) -> np.ndarray:
    """Log class weights ``log softmax_k([1, z_g] @ coef.T)``, shape (G, K).

    Parameters
    ----------
    coef : ndarray of shape (K, q + 1)
        Membership coefficients, column 0 the intercept, the last row the reference (zeros).
    Z : ndarray of shape (G, q) or None
    n_groups : int
    """
    return log_softmax(membership_design(Z, n_groups) @ np.asarray(coef, dtype=float).T, axis=1)


def membership_mstep(
    Z: np.ndarray | None,
    resp: np.ndarray,
    coef0: np.ndarray | None = None,
    *,
    ridge: float = 0.0,
    weights: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-12,
    absolute_tol: bool = False,
    full_output: bool = False,
):
    """M-step of the class-membership model: weighted soft-label multinomial logit of ``resp``.

    Maximises ``sum_g s_g sum_k r_gk log w_gk(gamma) - ridge/2 ||gamma||^2`` over the free
    rows of ``gamma`` (the last row is fixed at 0).

    Parameters
    ----------
    Z : ndarray of shape (G, q), or None
        Group covariates **without** an intercept column (it is added here). ``None`` or
        ``q = 0``: intercept only.
    resp : ndarray of shape (G, K)
        Posterior class probabilities of the groups (soft labels).
    coef0 : ndarray of shape (K, q + 1), optional
        Warm start (e.g. the previous EM iterate); default zeros. Its last row is ignored.
    ridge : float, default=0.0
        L2 penalty on every free coefficient, intercepts included; > 0 keeps the solution
        finite when a class is separable by the covariates.
    weights : ndarray of shape (G,), optional
        Group weights ``s_g`` (default 1).
    max_iter, tol : int, float
        Newton iterations and Newton-decrement tolerance (relative to ``max(1, |value|)``) of
        :func:`softmix.core.solvers.fit_multinomial_logistic`; its value never decreases from
        ``coef0``, so an EM using this M-step stays monotone even when cut short.
    absolute_tol : bool, default=False
        ``tol`` in nats (the predicted remaining gain) instead of relative.
    full_output : bool, default=False
        Also return ``gain``, the increase of the objective (nats) one Newton step from
        ``coef0`` predicts, ``g' (-H)^{-1} g / 2``: zero exactly when ``coef0`` is the
        M-step's maximiser (NaN without ``coef0``). An EM's stop rule in nats uses it.

    Returns
    -------
    coef : ndarray of shape (K, q + 1)
        Column 0 the intercept, the last row zeros. ``(coef, gain)`` with ``full_output``.

    Notes
    -----
    Intercept only and ``ridge = 0``: the closed form ``gamma_k0 = log m_k - log m_{K-1}`` with
    ``m_k = sum_g s_g r_gk`` (classes with ``m_k = 0`` get ``-inf``: weight 0; the caller
    decides whether that is an error). The last row is the reference, as in the shared solver
    (no rotation).
    """
    resp = np.asarray(resp, dtype=float)
    n_groups = resp.shape[0]
    design = membership_design(Z, n_groups)
    if design.shape[1] == 1 and ridge == 0.0:
        mass = resp.sum(axis=0) if weights is None else np.asarray(weights, float) @ resp
        with np.errstate(divide="ignore"):
            log_mass = np.log(mass)
        coef = (log_mass - log_mass[-1])[:, None]
        if not full_output:
            return coef
        gain = float("nan")
        if coef0 is not None:  # the weights' Newton decrement, sum (m - S w)^2 / (2 S w)
            w0 = np.exp(log_softmax(np.asarray(coef0, dtype=float)[:, 0]))
            live = w0 > 0
            expected = float(mass.sum()) * w0[live]
            gain = float(np.sum((mass[live] - expected) ** 2 / expected)) / 2.0
        return coef, gain
    start = None if coef0 is None else np.asarray(coef0, dtype=float)
    out = fit_multinomial_logistic(design, resp, sample_weight=weights, coef0=start,
                                   ridge=ridge, max_iter=max_iter, tol=tol,
                                   absolute_tol=absolute_tol, full_output=full_output)
    if not full_output:
        return out
    coef, res = out
    return coef, (0.5 * float(res.decrement0) if start is not None else float("nan"))
