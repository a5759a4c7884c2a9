"""The one EM driver loop used by every softmix model.

A model supplies an *EM map* ``em_map(params) -> (next_params, objective(params))``: it does the
E-step at ``params`` (which yields the objective there as a by-product, at no extra cost) and
the M-step. The driver owns everything else: the iteration budget, the tolerance, the history,
the stop reason, monotonicity bookkeeping, non-finite guards, warnings and the callback.
Gradient methods (GD, gradient EM) use the same driver with their own map, so all methods are
compared iteration by iteration on one history.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from softmix.core.result import FitResult
from softmix.exceptions import ConvergenceWarning, SoftmixWarning

__all__ = ["run_em", "relative_change"]

EMMap = Callable[[Any], tuple[Any, float]]


def relative_change(old: float, new: float) -> float:
    """|new - old| / max(1, |new|): the relative objective change used by every stop rule."""
    return abs(new - old) / max(1.0, abs(new))


def run_em(
    params0: Any,
    em_map: EMMap,
    objective: Callable[[Any], float],
    *,
    max_iter: int,
    tol: float,
    param_tol: float = 0.0,
    param_distance: Callable[[Any, Any], float] | None = None,
    monotone: bool = True,
    callback: Callable[[int, Any, float], Any] | None = None,
    init_method: str = "given",
    name: str = "EM",
    warn: bool = True,
) -> FitResult:
    """Iterate ``em_map`` from ``params0`` until a stop rule fires.

    Parameters
    ----------
    params0 : object
        Starting parameters.
    em_map : callable
        ``em_map(params) -> (next_params, objective(params))``.
    objective : callable
        ``objective(params) -> float``; called only when ``em_map`` cannot supply the value
        (the start when ``max_iter=0``, the last iterate when the budget runs out).
    max_iter : int
        Maximum number of EM-map applications. ``0`` returns ``params0`` unchanged.
    tol : float
        Stop when the relative objective change ``|l_t - l_{t-1}| / max(1, |l_t|) <= tol``.
        ``tol=0`` runs exactly ``max_iter`` iterations.
    param_tol : float
        Also stop when ``param_distance(old, new) <= param_tol`` (only if > 0).
    monotone : bool
        True for exact EM (and safeguarded first-order EM): a decrease of the objective beyond
        round-off is counted and reported with a :class:`SoftmixWarning`.
    callback : callable, optional
        ``callback(iteration, params, objective)`` after every iteration; a truthy return stops.
    init_method, name : str
        Recorded in the result / used in warning messages.
    warn : bool
        Emit :class:`ConvergenceWarning` on ``max_iter`` / ``non_finite`` stops.

    Returns
    -------
    FitResult
        ``history[t]`` is the objective after ``t`` iterations; ``params`` is the iterate whose
        objective is ``history[-1]``.
    """
    t0 = time.perf_counter()
    history: list[float] = []
    params = params0
    prev_params = None
    reason = None
    n_iter = 0
    while True:
        if n_iter == max_iter:
            history.append(float(objective(params)))
            reason = "init" if max_iter == 0 else "max_iter"
            if not math.isfinite(history[-1]):
                reason = "non_finite"
            break
        next_params, value = em_map(params)
        value = float(value)
        history.append(value)
        if not math.isfinite(value):
            reason = "non_finite"
            break
        if len(history) >= 2:
            if tol > 0 and relative_change(history[-2], value) <= tol:
                reason = "tol"
                break
            if (
                param_tol > 0
                and param_distance is not None
                and prev_params is not None
                and param_distance(prev_params, params) <= param_tol
            ):
                reason = "param_tol"
                break
        if callback is not None and callback(n_iter, params, value):
            reason = "callback"
            break
        prev_params, params = params, next_params
        n_iter += 1

    if reason == "non_finite":
        history.pop()
        if prev_params is None or not history:
            raise FloatingPointError(
                f"{name}: the objective is not finite at the initialisation; check the data "
                "(NaN/inf or extreme values) or give a different start."
            )
        params = prev_params
        n_iter -= 1
        if warn:
            warnings.warn(
                f"{name} stopped: the objective became non-finite after iteration {n_iter + 1}; "
                "returning the last finite iterate. Reduce the step size or use exact EM.",
                ConvergenceWarning,
                stacklevel=2,
            )
    elif reason == "max_iter" and tol > 0 and warn:
        warnings.warn(
            f"{name} did not converge in max_iter={max_iter} iterations (last relative change "
            f"{relative_change(history[-2], history[-1]) if len(history) > 1 else float('nan'):.3g}"
            f" > tol={tol:g}). Increase max_iter, loosen tol, or use a better initialisation.",
            ConvergenceWarning,
            stacklevel=2,
        )
    h = np.asarray(history)
    n_decreases = int(np.sum(h[:-1] - h[1:] > 1e-9 * np.maximum(1.0, np.abs(h[1:]))))
    if monotone and n_decreases and warn:
        warnings.warn(
            f"{name}: the objective decreased in {n_decreases} iteration(s); exact EM never "
            "does this, so the M-step was not exact (raise the inner iterations of the M-step).",
            SoftmixWarning,
            stacklevel=2,
        )
    return FitResult(
        params=params,
        objective=history[-1],
        converged=reason in ("tol", "param_tol"),
        n_iter=n_iter,
        stop_reason=reason,
        history=np.asarray(history),
        init_method=init_method,
        seconds=time.perf_counter() - t0,
        n_decreases=n_decreases,
    )
