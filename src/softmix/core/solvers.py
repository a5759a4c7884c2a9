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

__all__ = ["NewtonResult", "newton_maximize", "newton_direction"]


@dataclass
class NewtonResult:
    x: np.ndarray
    value: float
    n_iter: int
    converged: bool


def newton_direction(grad: np.ndarray, hess: np.ndarray) -> np.ndarray:
    """Solve ``(-hess) d = grad`` for a concave objective.

    Uses a Cholesky factorisation of ``-hess``; if it is not positive definite (flat directions,
    e.g. an unidentified design), a ridge growing from 1e-10 * trace is added until it is.
    """
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
        Stop when the Newton decrement ``grad' d / 2 <= tol * max(1, |value|)``.

    Returns
    -------
    NewtonResult
        The value never decreases from ``fun(x0)``: a step that cannot increase it after
        ``max_halvings`` halvings is rejected and the solver stops.
    """
    x = np.array(x0, dtype=float, copy=True)
    value = None
    for it in range(1, max_iter + 1):
        value, grad, hess = fun(x, 2)
        direction = newton_direction(grad, hess)
        decrement = float(grad @ direction)
        if decrement / 2.0 <= tol * max(1.0, abs(value)):
            return NewtonResult(x, float(value), it - 1, True)
        step = 1.0
        for _ in range(max_halvings):
            candidate = x + step * direction
            new_value = fun(candidate, 0)
            if np.isfinite(new_value) and new_value >= value + armijo * step * decrement:
                x, value = candidate, new_value
                break
            step *= 0.5
        else:
            return NewtonResult(x, float(value), it, False)
    if value is None:
        value = fun(x, 0)
    return NewtonResult(x, float(value), max_iter, False)
