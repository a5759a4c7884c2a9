"""The one EM driver loop used by every softmix model.

A model supplies an *EM map* ``em_map(params) -> (next_params, objective(params))``: it does the
E-step at ``params`` (which yields the objective there as a by-product, at no extra cost) and
the M-step. The driver owns everything else: the iteration budget, the tolerance, the history,
the stop reason, monotonicity bookkeeping, non-finite guards, warnings and the callback.
Gradient methods (GD, gradient EM) use the same driver with their own map, so all methods are
compared iteration by iteration on one history.

Two stop rules (recorded in ``FitResult.criterion`` / ``criterion_value``):

``"relative_change"`` (models that supply no stationarity function; e.g. the MoE today)
    ``|l_t - l_{t-1}| / max(1, |l_t|) <= tol`` and not growing (:func:`_small_and_not_growing`).
    With ``|l| ~ N`` this stops a distance from the optimum that grows with N.
A model's stationarity function (``stationarity=``, :data:`Stationarity`), e.g. ``"newton_decrement"``
    ``tol`` is then an absolute threshold **in nats** on the model's estimate of the
    log-likelihood still to be gained at the current iterate, e.g. ``g' H^{-1} g / 2`` with ``g``
    the observed score (by Fisher's identity the M-step objective's gradient at the current
    iterate) and ``H`` the complete-data (M-step) information. A remaining gain of ``eps`` nats
    puts the iterate about ``sqrt(2 eps)`` standard errors from the optimum along the worst
    direction (the log-likelihood is ``-z^2 / 2`` in standard-error units ``z`` near it), whatever
    N is: the rule means the same at N = 1e3 and N = 1e10.

The hook, for engineers wiring a model to it::

    stationarity(params, exact: bool) -> float   # >= 0, in nats (the objective's units)

- It is called with ``exact=False`` right after every ``em_map(params)`` of the driver's own
  loop, *with the same params object*, so a model may return a by-product of that call (the
  E-step / M-step it has just done at ``params``); this call must be cheap (no extra pass
  over the data beyond O(size of params)).
- When that value is ``<= tol``, the driver confirms with ``exact=True`` (it may cost a pass
  over the data, e.g. a Hessian; return the cheap value again if it is already exact). The fit
  converges (``stop_reason="tol"``) only if the confirmed value is ``<= tol``; a failed
  confirmation is retried after 1, 2, 4, ... more iterations.
- It is called once more with ``exact=True`` on the returned parameters when the loop ends for
  another reason (``max_iter``, ``callback``), to fill ``criterion_value``; with ``tol <= 0``
  (no stop decision is made) and a ``cheap_criterion`` name, with ``exact=False`` instead: the
  cheap value is then a report, recorded under that name.
- Returning NaN means "cannot tell" (never converged on it).
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

__all__ = ["Stationarity", "relative_change", "run_em"]

EMMap = Callable[[Any], tuple[Any, float]]
#: ``stationarity(params, exact) -> remaining gain in nats`` (see the module docstring).
Stationarity = Callable[[Any, bool], float]


def relative_change(old: float, new: float) -> float:
    """|new - old| / max(1, |new|): the relative objective change used by every stop rule."""
    return abs(new - old) / max(1.0, abs(new))


#: Objective changes below this fraction of ``max(1, |objective|)`` are round-off.
_ROUNDOFF = 1e-12


def _small_and_not_growing(history: list[float], tol: float) -> bool:
    """The tolerance stop: the last change is ``<= tol`` (relative) **and** not growing.

    With ``d_t = |l_t - l_{t-1}|`` the fit converges at the first ``t >= 2`` with
    ``d_t <= tol max(1, |l_t|)`` and ``d_t <= max(d_{t-1}, 1e-12 max(1, |l_t|))``. A small change
    alone is also met next to a fixed point that is not a maximum: from a start near a saddle
    (e.g. all mixture-of-experts experts equal), EM moves away geometrically with first changes
    far below ``tol`` (3 of 48 random starts on the Gaussian-MoE paper's model at n = 2e4 were
    declared converged after one iteration at a log-likelihood of -5.6e4 instead of -8.9e3).
    Near a maximum the changes shrink, so the extra condition costs nothing there, and a fit is
    never declared converged on its first iteration: one change says nothing about its trend.
    """
    if len(history) < 3:
        return False
    scale = max(1.0, abs(history[-1]))
    d, d_prev = abs(history[-1] - history[-2]), abs(history[-2] - history[-3])
    return d <= tol * scale and d <= max(d_prev, _ROUNDOFF * scale)


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
    accelerate: str | None = None,
    to_vector: Callable[[Any], np.ndarray] | None = None,
    from_vector: Callable[[np.ndarray], Any] | None = None,
    stationarity: Stationarity | None = None,
    criterion: str = "stationarity",
    cheap_criterion: str | None = None,
    iteration_offset: int = 0,
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
        Without ``stationarity``: stop when the relative objective change
        ``|l_t - l_{t-1}| / max(1, |l_t|) <= tol`` and the change is not growing (see
        :func:`_small_and_not_growing`); never on the first iteration. With ``stationarity``:
        stop when the model's remaining-gain estimate at the current iterate, confirmed with
        ``exact=True``, is ``<= tol`` nats (module docstring). Either way ``tol=0`` runs exactly
        ``max_iter`` iterations.
    param_tol : float
        Also stop when ``param_distance(old, new) <= param_tol`` (only if > 0).
    monotone : bool
        True for exact EM (and safeguarded first-order EM): a decrease of the objective beyond
        round-off is counted and reported with a :class:`SoftmixWarning`.
    callback : callable, optional
        ``callback(iteration, params, objective)`` after every iteration; a truthy return stops.
    init_method, name : str
        Recorded in the result / used in warning messages.
    iteration_offset : int
        Iterations done before this run when it continues an earlier one: the warning at
        ``max_iter`` then names the whole budget, ``iteration_offset + max_iter``.
    warn : bool
        Emit :class:`ConvergenceWarning` on ``max_iter`` / ``non_finite`` stops.
    accelerate : {None, "squarem"}
        ``None`` (default): plain iteration of ``em_map``. ``"squarem"``: SQUAREM extrapolation
        of the EM map with a monotonicity fallback (see Notes); needs ``to_vector`` and
        ``from_vector``. One iteration is then one SQUAREM cycle (up to three ``em_map``
        calls); ``result.extra`` gets ``"n_map_evals"`` and ``"n_fallbacks"``.
    to_vector, from_vector : callable, optional
        Map parameters to a flat float vector in an *unconstrained* parametrisation (e.g. log
        variances, log-ratio weights) and back; extrapolated vectors are mapped back with
        ``from_vector``. If either raises ValueError (e.g. a weight at 0 has no log-ratio) or
        the extrapolation has a non-finite objective, the cycle falls back to plain EM.
    stationarity : callable, optional
        ``stationarity(params, exact) -> float``, the model's scale-free stop rule (module
        docstring). None: the relative-change rule.
    criterion : str
        Name recorded in ``FitResult.criterion`` when ``stationarity`` is given (e.g.
        ``"newton_decrement"``).
    cheap_criterion : str, optional
        Name of the cheap value ``stationarity(params, False)``. When given and ``tol <= 0``
        (a fixed number of iterations: nothing is decided on the criterion), the returned
        parameters' ``criterion_value`` is that cheap value and ``criterion`` this name, so no
        exact evaluation is paid for a report. None (default): always the exact value.

    Returns
    -------
    FitResult
        ``history[t]`` is the objective after ``t`` iterations; ``params`` is the iterate whose
        objective is ``history[-1]``.

    Notes
    -----
    SQUAREM (Varadhan & Roland 2008, scheme S3, with the step-length control of the R package
    ``SQUAREM``). From ``x0``: ``x1 = M(x0)``, ``x2 = M(x1)``, ``r = x1 - x0``,
    ``v = x2 - 2 x1 + x0``, ``a = clip(||r|| / ||v||, 1, a_max)``, extrapolate
    ``x' = x0 + 2 a r + a^2 v`` (``a = 1`` gives ``x2``) and stabilise with one more EM step
    ``x_new = M(x')``. The EM map returns the objective at its input, so ``l(x')`` comes for
    free: the cycle is accepted only if ``l(x') >= l(x1)``; then ``l(x_new) >= l(x') >= l(x1)
    >= l(x0)`` for an exact EM map, so the accelerated iteration is as monotone as EM.
    Otherwise it falls back to ``x2`` (two plain EM steps) and shrinks ``a_max``; ``a_max``
    starts at 1 and is multiplied by 4 whenever an accepted step hits it.
    """
    t0 = time.perf_counter()
    extra: dict = {}
    advance = _plain_advance
    if accelerate is not None:
        if accelerate != "squarem":
            raise ValueError(
                f"accelerate must be None or 'squarem', got {accelerate!r}; use None for plain "
                "EM or 'squarem' for SQUAREM extrapolation."
            )
        if to_vector is None or from_vector is None:
            raise ValueError(
                "accelerate='squarem' needs to_vector and from_vector (the parameters as a flat "
                "unconstrained vector and back); pass both, or use accelerate=None."
            )
        em_map = _CountingMap(em_map)
        advance = _Squarem(em_map, to_vector, from_vector)
    judge = None if stationarity is None else _Judge(stationarity, tol)
    if judge is not None and tol <= 0 and cheap_criterion is not None:
        judge.final_exact, criterion = False, cheap_criterion
    params, prev_params, history, reason, n_iter = _loop(
        params0, em_map, objective, advance, max_iter=max_iter, tol=tol, param_tol=param_tol,
        param_distance=param_distance, callback=callback, judge=judge,
    )
    if accelerate is not None:
        extra = {"n_map_evals": em_map.calls, "n_fallbacks": advance.n_fallbacks}

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
    if judge is not None:
        criterion_value = judge.final(params, reason)
    else:
        criterion = "relative_change"
        criterion_value = (relative_change(history[-2], history[-1]) if len(history) > 1
                           else float("nan"))
    if reason == "max_iter" and tol > 0 and warn and judge is not None:
        warnings.warn(
            f"{name} did not converge in max_iter={iteration_offset + max_iter} iterations: the "
            "predicted remaining "
            f"gain ({criterion}) is {criterion_value:.3g} nats > tol={tol:g} nats. Increase "
            "max_iter, or use a better initialisation (or the Newton M-step).",
            ConvergenceWarning,
            stacklevel=2,
        )
    elif reason == "max_iter" and tol > 0 and warn:
        warnings.warn(
            f"{name} did not converge in max_iter={iteration_offset + max_iter} iterations (last "
            "relative change "
            f"{relative_change(history[-2], history[-1]) if len(history) > 1 else float('nan'):.3g}"
            f"; convergence needs a change <= tol={tol:g} that is not growing). Increase "
            "max_iter, loosen tol, or use a better initialisation.",
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
        criterion=criterion,
        criterion_value=float(criterion_value),
        extra=extra,
    )


def _plain_advance(params: Any, mapped: Any) -> Any:
    """Plain EM: the next iterate is the EM map's image."""
    return mapped


#: Longest wait between two exact confirmations after a failed one (iterations).
_MAX_GAP = 16


class _Judge:
    """The stationarity stop rule: a cheap value every iteration, an exact one to confirm."""

    def __init__(self, stationarity: Stationarity, tol: float) -> None:
        self.stationarity, self.tol = stationarity, tol
        self.next_check, self.gap = 0, 1
        self.last: tuple[Any, float] | None = None  # (params, exact value at params)
        self.final_exact = True  # False: the final report is the cheap value (tol <= 0)

    def converged(self, params: Any, n_iter: int) -> bool:
        if self.tol <= 0 or n_iter < self.next_check:
            return False
        cheap = float(self.stationarity(params, False))
        if not cheap <= self.tol:
            return False
        exact = float(self.stationarity(params, True))
        self.last = (params, exact)
        if exact <= self.tol:
            return True
        self.next_check, self.gap = n_iter + self.gap, min(2 * self.gap, _MAX_GAP)
        return False

    def final(self, params: Any, reason: str) -> float:
        if self.last is not None and self.last[0] is params:
            return self.last[1]
        if reason == "non_finite":
            return float("nan")
        with np.errstate(all="ignore"):
            return float(self.stationarity(params, self.final_exact))


def _loop(params0, em_map, objective, advance, *, max_iter, tol, param_tol, param_distance,
          callback, judge=None):
    """The iteration shared by plain and accelerated EM.

    ``advance(params, em_map(params))`` gives the next iterate (the image itself for plain EM,
    a SQUAREM cycle otherwise). Returns ``(params, prev_params, history, reason, n_iter)``.
    """
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
        mapped, value = em_map(params)
        value = float(value)
        history.append(value)
        if not math.isfinite(value):
            reason = "non_finite"
            break
        if judge is not None and judge.converged(params, n_iter):
            reason = "tol"
            break
        if len(history) >= 2:
            if judge is None and tol > 0 and _small_and_not_growing(history, tol):
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
        prev_params, params = params, advance(params, mapped)
        n_iter += 1
    return params, prev_params, history, reason, n_iter


class _CountingMap:
    """An EM map that counts its evaluations (reported as ``extra["n_map_evals"]``)."""

    def __init__(self, em_map: EMMap) -> None:
        self.em_map = em_map
        self.calls = 0

    def __call__(self, params: Any) -> tuple[Any, float]:
        self.calls += 1
        return self.em_map(params)


class _Squarem:
    """One SQUAREM cycle from ``x0`` given ``x1 = M(x0)`` (see :func:`run_em` Notes)."""

    def __init__(self, em_map: EMMap, to_vector, from_vector) -> None:
        self.em_map, self.to_vector, self.from_vector = em_map, to_vector, from_vector
        self.step_max = 1.0
        self.n_fallbacks = 0

    def __call__(self, x0: Any, x1: Any) -> Any:
        x2, value1 = self.em_map(x1)
        if not math.isfinite(float(value1)):
            return x1  # cannot happen for an exact EM map from a finite point; be safe
        try:
            v0, v1, v2 = (np.asarray(self.to_vector(x), dtype=float) for x in (x0, x1, x2))
        except ValueError:  # e.g. a weight hit 0: no unconstrained image, plain EM step
            return x2
        r = v1 - v0
        v = v2 - 2.0 * v1 + v0
        norm_r, norm_v = float(np.linalg.norm(r)), float(np.linalg.norm(v))
        alpha = 1.0
        if norm_v > 0.0 and math.isfinite(norm_r / norm_v):
            alpha = min(max(norm_r / norm_v, 1.0), self.step_max)
        if alpha <= 1.01:
            if alpha == self.step_max:
                self.step_max *= 4.0
            return x2
        candidate = v0 + 2.0 * alpha * r + alpha**2 * v
        if np.all(np.isfinite(candidate)):
            try:
                x_ext = self.from_vector(candidate)
            except ValueError:
                x_ext = None
            if x_ext is not None:
                with np.errstate(all="ignore"):
                    x_new, value_ext = self.em_map(x_ext)
                if math.isfinite(float(value_ext)) and float(value_ext) >= float(value1):
                    if alpha == self.step_max:
                        self.step_max *= 4.0
                    return x_new
        self.n_fallbacks += 1
        if alpha == self.step_max:
            self.step_max = max(1.0, self.step_max / 4.0)
        return x2
