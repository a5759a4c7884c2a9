"""Checks at the public boundary. Every failure is a ValueError/TypeError whose message names
the argument, what was expected, what was got, and the remedy. Internal code trusts its input."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import scipy.sparse

__all__ = [
    "check_array",
    "check_choice",
    "check_fitted",
    "check_float",
    "check_int",
    "check_random_state",
    "check_scale",
    "check_step_size",
]


def check_random_state(random_state: Any) -> np.random.Generator:
    """Normalise ``None | int | numpy.random.Generator`` to a Generator (never a global seed)."""
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative int, got {random_state}.")
        return np.random.default_rng(int(random_state))
    if isinstance(random_state, np.random.SeedSequence):
        return np.random.default_rng(random_state)
    raise TypeError(
        "random_state must be None, a non-negative int or a numpy.random.Generator, got "
        f"{type(random_state).__name__}. Use e.g. random_state=0 or np.random.default_rng(0)."
    )


def check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """An integer in [low, high] (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r}).")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}.")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}.")
    return value


def check_float(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    remedy: str = "",
) -> float:
    """A finite real number in [low, high] (or (low, high] when ``low_inclusive=False``).

    ``remedy`` (e.g. ``"Use tol=1e-6."``) is appended to every error message.
    """
    tail = f" {remedy}" if remedy else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a real number, got {type(value).__name__} ({value!r}).{tail}"
        )
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}.{tail}")
    if low is not None and (value < low or (not low_inclusive and value == low)):
        op = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {op} {low}, got {value}.{tail}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}.{tail}")
    return value


def check_step_size(value: Any, name: str) -> float:
    """A step size: a finite real number > 0 (TypeError/ValueError naming ``name``)."""
    return check_float(value, name, low=0.0, low_inclusive=False,
                       remedy=f"Step sizes must be finite and > 0, e.g. {name}=0.5.")


def check_array(
    value: Any,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    dtype: type | str | None = np.float64,
    finite: bool = True,
    min_rows: int = 1,
) -> np.ndarray:
    """Convert to an ndarray of ``dtype`` with the required ``ndim``; reject NaN/inf.

    None, sparse matrices, strings, objects and complex values are rejected with a TypeError
    naming ``name``.
    """
    if value is None:
        raise TypeError(f"{name} is required, got None. Pass an array-like of numbers.")
    if scipy.sparse.issparse(value):
        raise TypeError(
            f"{name} is a sparse {type(value).__name__}; softmix needs dense input. Pass "
            f"{name}.toarray()."
        )
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be array-like of numbers; could not convert: {exc}") from exc
    if arr.dtype == object or arr.dtype.kind in "USVc":
        raise TypeError(
            f"{name} must hold real numbers, got dtype {arr.dtype}. Convert it to a numeric "
            "NumPy array first."
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be {want}, got an array of shape {arr.shape}.")
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    if finite and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(
            f"{name} contains {bad} NaN or infinite value(s). Remove or impute them before fitting."
        )
    if arr.ndim >= 1 and arr.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} row(s), got shape {arr.shape}.")
    return arr


def check_choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    """One of a fixed set of strings."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}.")
    return value


def check_fitted(estimator: Any, attribute: str = "params_") -> None:
    """Raise NotFittedError when ``estimator`` has no ``attribute`` yet."""
    from softmix.exceptions import NotFittedError

    if getattr(estimator, attribute, None) is None:
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with "
            "appropriate arguments before using this method."
        )


def check_scale(arr: np.ndarray, name: str, *, magnitude: float | None = None) -> None:
    """Reject values so large that sums of squares over the rows of ``arr`` overflow (a
    ValueError naming ``name`` that asks to rescale), e.g. a Gram matrix ``X'X``.
    ``magnitude``: ``max |arr|`` when the caller already has it (no pass over ``arr``)."""
    limit = np.sqrt(np.finfo(float).max / max(arr.shape[0], 1)) * 1e-3
    if magnitude is not None:
        big = float(magnitude)
    else:
        big = float(np.max(np.abs(arr))) if arr.size else 0.0
    if big > limit:
        raise ValueError(
            f"{name} holds values up to {big:.3g} in absolute value: the fit's sums of squares "
            f"over {arr.shape[0]} samples would overflow (limit about {limit:.3g}). Rescale "
            f"{name} (e.g. standardise it) before fitting."
        )
