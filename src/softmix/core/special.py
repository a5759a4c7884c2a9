"""Max-shifted special functions (never overflow, never NaN on finite input).

Thin, documented wrappers over :mod:`scipy.special` so every module uses the same conventions.
"""

from __future__ import annotations

import numpy as np
from scipy import special as _sp

__all__ = ["logsumexp", "log_softmax", "softmax", "log_expit", "expit", "xlogy"]


def logsumexp(a: np.ndarray, axis: int | None = None, keepdims: bool = False) -> np.ndarray:
    """log(sum(exp(a))) along ``axis``, max-shifted. Rows of all -inf give -inf, not NaN."""
    return _sp.logsumexp(a, axis=axis, keepdims=keepdims)


def log_softmax(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """a - logsumexp(a) along ``axis`` (max-shifted)."""
    return _sp.log_softmax(a, axis=axis)


def softmax(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(log_softmax(a)) along ``axis``."""
    return _sp.softmax(a, axis=axis)


def log_expit(a: np.ndarray) -> np.ndarray:
    """log(1 / (1 + exp(-a))), accurate for large |a|."""
    return _sp.log_expit(a)


def expit(a: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-a))."""
    return _sp.expit(a)


def xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x * log(y) with 0 * log(0) = 0 (counts times log-probabilities)."""
    return _sp.xlogy(x, y)
