"""Softmax gate of a mixture of experts on ``[1, x]``, last expert fixed at 0 (gauge).

``P(z = i | x) = softmax_i(beta0_i + beta1_i'x)``; the gating matrix has shape (k, d+1) with row
``i = [beta0_i, beta1_i...]`` and a zero last row. The gate is identifiable only up to a common
translation of all rows; fixing the last row at 0 removes that freedom (Nguyen, Nguyen, Ho 2023,
Proposition 1; meteorits uses the same gauge).

The gating M-step of EM maximises ``sum_j sum_i tau_ji log P(z=i | x_j)`` over the gating: a
multinomial logistic regression with soft labels ``tau``, solved by Newton/IRLS with
step-halving (:func:`softmix.core.solvers.fit_multinomial_logistic`).
"""

from __future__ import annotations

import numpy as np

from softmix.core.solvers import fit_multinomial_logistic, multinomial_logistic_objective
from softmix.core.special import log_softmax

__all__ = [
    "add_intercept",
    "fit_gating",
    "gate_log_proba",
    "gate_log_proba_design",
    "gate_logits",
    "gating_gradient",
    "normalize_gauge",
]


def add_intercept(X: np.ndarray) -> np.ndarray:
    """Design ``[1, X]`` of shape (n, d+1) from ``X`` of shape (n, d)."""
    X = np.asarray(X, dtype=float)
    return np.hstack([np.ones((X.shape[0], 1)), X])


def gate_logits(X: np.ndarray, gating: np.ndarray) -> np.ndarray:
    """Gating logits ``beta0_i + beta1_i'x_j``, shape (n, k)."""
    return add_intercept(X) @ np.asarray(gating, dtype=float).T


def gate_log_proba_design(X1: np.ndarray, gating: np.ndarray) -> np.ndarray:
    """``log P(z=i | x_j)`` from the design ``X1 = [1, X]``, shape (n, k) (max-shifted)."""
    return log_softmax(X1 @ gating.T, axis=1)


def gate_log_proba(X: np.ndarray, gating: np.ndarray) -> np.ndarray:
    """``log P(z=i | x_j)`` for ``X`` of shape (n, d) and gating (k, d+1): shape (n, k).

    Computed with a max-shifted log-softmax: never overflows, never -inf for finite input.
    """
    return gate_log_proba_design(add_intercept(X), np.asarray(gating, dtype=float))


def fit_gating(
    X1: np.ndarray,
    responsibilities: np.ndarray,
    gating0: np.ndarray | None = None,
    *,
    ridge: float = 0.0,
    max_iter: int = 300,
    tol: float = 1e-10,
    method: str = "newton",
) -> np.ndarray:
    """Gating M-step: weighted multinomial logistic regression with soft labels.

    Parameters
    ----------
    X1 : ndarray of shape (n, d+1)
        Design ``[1, X]`` (see :func:`add_intercept`).
    responsibilities : ndarray of shape (n, k)
        Soft labels ``tau`` (rows sum to 1), or one-hot rows of a hard partition.
    gating0 : ndarray of shape (k, d+1), optional
        Warm start (the current gating). Default zeros.
    ridge : float
        ``ridge / 2 * ||gating||^2`` penalty (keeps the gate finite on separable data).
    max_iter, tol, method
        Inner Newton solver settings; see :func:`~softmix.core.solvers.fit_multinomial_logistic`.

    Returns
    -------
    gating : ndarray of shape (k, d+1)
        Last row zero. ``Q(gating) >= Q(gating0)`` always (step-halving), so EM stays monotone.
    """
    return fit_multinomial_logistic(
        X1, responsibilities, None, gating0, ridge=ridge, max_iter=max_iter, tol=tol,
        method=method,
    )


def gating_gradient(X1: np.ndarray, responsibilities: np.ndarray, gating: np.ndarray) -> np.ndarray:
    """``sum_j (tau_ji - P(z=i | x_j)) [1, x_j]``, shape (k, d+1), last row zero.

    By Fisher's identity this is the gradient of the log-likelihood with respect to the gating
    when ``responsibilities`` are the posteriors at ``gating``.
    """
    _, grad = multinomial_logistic_objective(gating, X1, responsibilities, None, 0.0, 1)
    return np.vstack([grad, np.zeros((1, X1.shape[1]))])


def normalize_gauge(gating: np.ndarray) -> np.ndarray:
    """Subtract the last row from every row: the same gate with the last row at zero."""
    gating = np.asarray(gating, dtype=float)
    return gating - gating[-1:]
