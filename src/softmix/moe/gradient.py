"""First-order fits of softmax-gated mixtures of experts: gradient descent and gradient EM.

Both run on the shared driver :func:`softmix.core.em.run_em` and return the same
:class:`~softmix.core.result.FitResult` as :func:`softmix.moe.em.fit_em` (same objective in the
same ``history``), so EM, gradient EM and GD compare iteration by iteration (Fruytier,
Mokhtari & Sanghavi, ICML 2025, Appendix D, Algorithms 1-3).

Objective and step sizes. EM's history is the penalised log-likelihood
``l(theta) = sum_j log p(y_j | x_j) - penalty``. Step sizes here refer to the *normalised*
objective ``L(theta) = -l(theta) / n`` (the paper's), so a step does not depend on n:
``theta <- theta + eta * grad l(theta) / n``.

- **Gradient descent** (``fit_gd``): one step on every block with one step size.
- **Gradient EM** (``fit_gradient_em``): E-step at theta_t (posteriors tau), then ``n_inner``
  gradient-ascent steps on Q(. | theta_t) = sum_j sum_i tau_ji [log P(z=i | x_j) +
  log f_i(y_j | x_j)], with step ``step_gate`` on the gate and ``step_expert`` on the experts.
  As grad Q(theta | theta_t) at theta = theta_t equals grad l(theta_t) (Fisher's identity), one
  inner step with equal block steps *is* gradient descent: the methods differ only through the
  block step sizes and the inner steps.

Default steps (``"armijo"``): GD tries the Barzilai-Borwein step ``s's / |s'r|`` and halves it
until a non-monotone Armijo test (against the lowest of the last 10 objectives) holds;
gradient EM does the same on Q(. | theta_t) with a monotone Armijo test, so Q never decreases.
On the Gaussian-MoE paper's model (n = 2000) they reach -857.6 (GD) and -851.3 (gradient EM)
after 1,000 iterations where EM's optimum is -850.8; the former default fixed step 0.1 was at
-5,525. Fixed steps (the paper's protocol) remain available as floats.

Gaussian-expert variances are updated on the log scale (``log nu <- log nu + eta nu g_nu / n``)
so they stay positive; all other blocks take plain steps. A diverging run (objective NaN/inf)
stops with ``stop_reason="non_finite"``, a :class:`~softmix.exceptions.ConvergenceWarning` and
the last finite iterate; it is never returned as a success.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from softmix._validation import check_int, check_step_size
from softmix.core.em import run_em
from softmix.core.result import FitResult
from softmix.exceptions import ConvergenceWarning
from softmix.moe.em import e_step, record_criterion
from softmix.moe.experts import EXPERTS
from softmix.moe.gating import add_intercept, gating_gradient
from softmix.moe.model import MoEParams, log_joint_design, penalty

__all__ = ["ARMIJO", "STATIONARITY_GAIN", "StepSizeSearch", "fit_gd", "fit_gradient_em",
           "stationarity_threshold", "step_size_grid"]


def _q_gradient(X1: np.ndarray, y: np.ndarray, params: MoEParams, tau: np.ndarray, ridge: float):
    """Gradient of sum_j sum_i tau_ji log p(y_j, z=i | x_j; params) - penalty(params):
    (gating (k, d+1), expert coefficients, variances or None)."""
    g_gate = gating_gradient(X1, tau, params.gating)
    g_coef, g_var = EXPERTS[params.expert].grad_log_prob(
        X1, y, params.expert_coef, params.expert_variance, tau
    )
    if ridge:
        g_gate = g_gate - ridge * params.gating
        if EXPERTS[params.expert].is_classifier:
            g_coef = g_coef - ridge * params.expert_coef
    return g_gate, g_coef, g_var


def _step(params: MoEParams, grads, step_gate: float, step_expert: float, n: int) -> MoEParams:
    g_gate, g_coef, g_var = grads
    var = params.expert_variance
    if var is not None:
        var = var * np.exp(step_expert * var * g_var / n)
    return MoEParams(params.gating + step_gate * g_gate / n,
                     params.expert_coef + step_expert * g_coef / n, var, params.expert)


def _is_finite(params: MoEParams) -> bool:
    arrays = [params.gating, params.expert_coef]
    if params.expert_variance is not None:
        arrays.append(params.expert_variance)
    return all(np.all(np.isfinite(a)) for a in arrays)


def _run(X, y, params0, em_map, *, max_iter, tol, ridge, callback, init_method, name, warn,
         step_text):
    """Drive ``em_map`` with overflow turned into a NaN objective (-> ``non_finite`` stop);
    the warnings name the step size where it is the cause (``step_text`` describes it)."""
    X1 = add_intercept(X)
    y = np.asarray(y)

    def guarded(params: MoEParams):
        if not _is_finite(params):
            return params, float("nan")
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return em_map(X1, y, params)

    def objective(params: MoEParams) -> float:
        if not _is_finite(params):
            return float("nan")
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return e_step(X1, y, params, ridge)[1]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # re-issued below with the step
        result = run_em(params0, guarded, objective, max_iter=max_iter, tol=tol,
                        monotone=False, callback=callback, init_method=init_method, name=name,
                        warn=warn)
    result.extra["log_likelihood"] = result.objective + penalty(result.params, ridge)
    gain = record_criterion(result, X1, y, ridge)
    threshold = stationarity_threshold(result.objective, tol)
    result.extra["stationarity_threshold"] = threshold
    if result.converged and np.isfinite(gain) and gain > threshold:
        result.converged, result.stop_reason = False, "not_stationary"
    if warn:
        _warn_first_order(result, name, step_text, max_iter, tol, threshold)
    return result


#: A first-order fit that met ``tol`` counts as converged only if the predicted remaining gain
#: (:func:`softmix.moe.em.score_gain`, in nats; scale-free) is at most this, or at most what
#: ``tol`` itself accepts as one iteration's change (``tol * max(1, |objective|)``). 0.05 nats
#: puts the fit within ~0.3 standard errors of the optimum in every direction.
STATIONARITY_GAIN = 0.05


def stationarity_threshold(objective: float, tol: float) -> float:
    """Largest predicted remaining gain (nats) of a ``converged`` first-order fit."""
    return max(STATIONARITY_GAIN, tol * max(1.0, abs(float(objective))))


def _warn_first_order(result: FitResult, name: str, step_text: str, max_iter: int, tol: float,
                      threshold: float) -> None:
    """The driver's warnings, with remedies that name the step size where it is the cause."""
    fixed = "armijo" not in step_text
    if result.stop_reason == "non_finite":
        msg = (f"{name} stopped: the objective became non-finite after iteration "
               f"{result.n_iter + 1}; returning the last finite iterate. ")
        msg += (f"The step size is too large ({step_text}): use the default backtracking "
                "step ('armijo') or a smaller step." if fixed else
                "The data or the start may be extreme: check them, or use exact EM.")
    elif result.stop_reason == "max_iter" and tol > 0:
        msg = (f"{name} did not converge in max_iter={max_iter} iterations (predicted "
               f"remaining gain {result.criterion_value:.3g} nats). ")
        msg += (f"With a fixed step the step size sets the speed ({step_text}): use the "
                "default backtracking step ('armijo'), tune it (step_size_grid), or increase "
                "max_iter." if fixed else
                "Increase max_iter, or use exact EM (solver='em'), which converges much faster.")
    elif result.stop_reason == "not_stationary":
        msg = (f"{name} met tol after {result.n_iter} iteration(s) but is not at a stationary "
               f"point: the predicted remaining gain is {result.criterion_value:.3g} nats "
               f"(converged needs <= {threshold:.3g}). ")
        msg += (f"The step size is too small for the tolerance ({step_text}): use the default "
                "backtracking step ('armijo'), tune it (step_size_grid), or run tol=0 with "
                "more iterations." if fixed else
                "Lower tol, or use exact EM (solver='em').")
    else:
        return
    warnings.warn(msg, ConvergenceWarning, stacklevel=4)


#: The default step: backtracking line search with the Armijo condition.
ARMIJO = "armijo"
#: Armijo sufficient-increase constant and the number of halvings tried per step.
_ARMIJO_C = 1e-4
_ARMIJO_MAX_HALVINGS = 60
#: GD's Armijo test compares with the lowest of the last this many objectives (Grippo,
#: Lampariello & Lucidi 1986), so Barzilai-Borwein steps are not cut back on every bump.
_NONMONOTONE_MEMORY = 10


def _check_step(value, name: str):
    """``"armijo"`` or a fixed step (finite, > 0)."""
    if isinstance(value, str):
        if value != ARMIJO:
            raise ValueError(f"{name} must be 'armijo' (backtracking) or a positive number, got "
                             f"{value!r}.")
        return value
    return check_step_size(value, name)


def fit_gd(
    X: np.ndarray,
    y: np.ndarray,
    params0: MoEParams,
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    ridge: float = 0.0,
    step_size: float | str = ARMIJO,
    callback: Callable[[int, MoEParams, float], object] | None = None,
    init_method: str = "given",
    warn: bool = True,
) -> FitResult:
    """Fit a mixture of experts by full-batch gradient ascent on the log-likelihood.

    Parameters
    ----------
    X, y, params0, max_iter, tol, ridge
        As in :func:`softmix.moe.em.fit_em` (``tol=0`` runs exactly ``max_iter`` steps).
    step_size : "armijo" or float, default="armijo"
        ``"armijo"``: backtracking line search (each iteration tries twice the last accepted
        step, then halves it until the objective rises by at least ``1e-4 * step * ||grad||^2``
        (Armijo), so the run is monotone and needs no tuning). A float: a fixed step on the
        normalised objective ``L = -loglik / n`` (finite, > 0), as in the paper; tune it with
        :func:`step_size_grid`.
    callback, init_method, warn
        As in :func:`softmix.moe.em.fit_em`.

    Returns
    -------
    FitResult
        ``history`` holds the penalised log-likelihood (a sum over samples, like EM's);
        ``extra["log_likelihood"]`` the unpenalised one at ``params``; ``criterion`` /
        ``criterion_value`` the predicted remaining gain in nats
        (:func:`softmix.moe.em.score_gain`); with ``"armijo"``, ``extra["step_sizes"]`` the
        accepted step of every iteration.

    Notes
    -----
    ``theta_{t+1} = theta_t + eta_t * grad l(theta_t) / n`` with the gradient of
    :func:`softmix.moe.model.gradient` (variances on the log scale, see the module docstring).
    With a fixed step gradient ascent is not monotone (a divergence stops the run with
    ``stop_reason="non_finite"`` and a ConvergenceWarning naming the step size). The ``tol``
    rule compares the objective between iterations, and one step changes it by about
    ``eta ||grad L||^2``: with a small step the rule fires far from a stationary point. Every
    ``tol`` stop is therefore checked in a scale-free metric: unless the predicted remaining
    gain is at most :func:`stationarity_threshold` (0.05 nats, or ``tol * |objective|`` if
    larger), the result has ``converged=False``, ``stop_reason="not_stationary"`` and a
    ConvergenceWarning (a fit started at the optimum passes: its gain is ~0).
    """
    step_size = _check_step(step_size, "step_size")
    return _fit_first_order(X, y, params0, step_size, step_size, 1, max_iter=max_iter, tol=tol,
                            ridge=ridge, callback=callback, init_method=init_method,
                            name="MoE gradient descent", warn=warn,
                            step_text=f"step_size={step_size!r}")


def fit_gradient_em(
    X: np.ndarray,
    y: np.ndarray,
    params0: MoEParams,
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    ridge: float = 0.0,
    step_gate: float | str = ARMIJO,
    step_expert: float | str = ARMIJO,
    n_inner: int = 5,
    callback: Callable[[int, MoEParams, float], object] | None = None,
    init_method: str = "given",
    warn: bool = True,
) -> FitResult:
    """Fit a mixture of experts by gradient EM.

    Parameters
    ----------
    X, y, params0, max_iter, tol, ridge, callback, init_method, warn
        As in :func:`fit_gd`.
    step_gate, step_expert : "armijo" or float, default="armijo"
        ``"armijo"`` (both): every inner step is a backtracking line search on
        ``Q(. | theta_t)`` with one step for both blocks (Q never decreases, so the run is a
        monotone generalised EM). Floats (both): fixed steps of the gate and expert blocks on
        the normalised Q-function, as in the paper. Mixing the two is a ValueError.
    n_inner : int, default=5
        Gradient steps on Q(. | theta_t) per iteration (posteriors held at theta_t).

    Returns
    -------
    FitResult
        As :func:`fit_gd`.

    Notes
    -----
    One iteration: tau = P(z | x, y; theta_t); then ``n_inner`` times
    ``theta <- theta + eta_block * grad_theta Q(theta | theta_t) / n``. With ``n_inner=1`` and
    ``step_gate == step_expert`` this is exactly :func:`fit_gd` with a fixed step. The ``tol``
    stop is checked for stationarity as in :func:`fit_gd`.
    """
    step_gate = _check_step(step_gate, "step_gate")
    step_expert = _check_step(step_expert, "step_expert")
    if (step_gate == ARMIJO) != (step_expert == ARMIJO):
        raise ValueError(
            f"step_gate={step_gate!r} and step_expert={step_expert!r}: use 'armijo' for both "
            "(one backtracking step for both blocks) or a fixed number for both."
        )
    n_inner = check_int(n_inner, "n_inner", low=1)
    return _fit_first_order(X, y, params0, step_gate, step_expert, n_inner, max_iter=max_iter,
                            tol=tol, ridge=ridge, callback=callback, init_method=init_method,
                            name="MoE gradient EM", warn=warn,
                            step_text=f"step_gate={step_gate!r}, step_expert={step_expert!r}")


def _sq_norm(params: MoEParams, grads, n: int) -> float:
    """``||d||^2`` of the step direction ``d`` (coordinates of :func:`_step`, per sample)."""
    g_gate, g_coef, g_var = grads
    total = float(np.sum(g_gate**2) + np.sum(g_coef**2))
    if g_var is not None:
        total += float(np.sum((params.expert_variance * g_var) ** 2))
    return total / n**2


def _coords(params: MoEParams, grads, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The point and the step direction as flat vectors in the coordinates of :func:`_step`
    (log variances), for the Barzilai-Borwein step."""
    g_gate, g_coef, g_var = grads
    x = [params.gating.ravel(), params.expert_coef.ravel()]
    d = [g_gate.ravel() / n, g_coef.ravel() / n]
    if g_var is not None:
        x.append(np.log(params.expert_variance))
        d.append(params.expert_variance * g_var / n)
    return np.concatenate(x), np.concatenate(d)


def _initial_step(state: dict, x: np.ndarray, d: np.ndarray) -> float:
    """First trial step: Barzilai-Borwein ``s's / |s'r|`` (``s``, ``r``: changes of the point
    and of the direction since the last iteration), else twice the last accepted step."""
    eta = 2.0 * state["eta"]
    prev = state.get("prev")
    if prev is not None:
        s_vec, r_vec = x - prev[0], d - prev[1]
        sr = float(s_vec @ r_vec)
        if sr < 0:
            eta = float(s_vec @ s_vec) / -sr
    state["prev"] = (x, d)
    return eta


def _q_value(X1, y, params: MoEParams, tau: np.ndarray, ridge: float) -> float:
    """``Q(params | theta_t) = sum_j sum_i tau_ji log p(y_j, z=i | x_j) - penalty``."""
    lj = log_joint_design(X1, y, params)
    return float(np.sum(np.where(tau > 0, tau * lj, 0.0))) - penalty(params, ridge)


def _armijo_step(params, grads, value, evaluate, n, eta):
    """Backtracking from step ``eta``: the first ``eta / 2^m`` with
    ``f(new) >= value + c eta n ||d||^2``; returns ``(new, f(new), eta)`` or ``(params, value,
    eta)`` when no step of the range increases ``f`` (a stationary point to round-off)."""
    slope = n * _sq_norm(params, grads, n)
    if not slope > 0:
        return params, value, eta
    for _ in range(_ARMIJO_MAX_HALVINGS):
        cand = _step(params, grads, eta, eta, n)
        if _is_finite(cand):
            v = evaluate(cand)
            if np.isfinite(v) and v >= value + _ARMIJO_C * eta * slope:
                return cand, v, eta
        eta *= 0.5
    return params, value, eta


def _fit_first_order(X, y, params0, step_gate, step_expert, n_inner, *, max_iter, tol, ridge,
                     callback, init_method, name, warn, step_text) -> FitResult:
    """Gradient EM with validated steps; ``n_inner=1`` and equal steps is gradient descent."""
    n = np.shape(X)[0]
    armijo = step_gate == ARMIJO
    state = {"eta": 1.0, "cache": None}
    steps_taken: list[float] = []

    def gem_map(X1, y, params):
        tau, value = e_step(X1, y, params, ridge)
        new = params
        for _ in range(n_inner):
            grads = _q_gradient(X1, y, new, tau, ridge)
            new = _step(new, grads, step_gate, step_expert, n)
        return new, value

    def gd_armijo_map(X1, y, params):
        cache = state["cache"]
        if cache is not None and cache[0] is params:
            tau, value = cache[1], cache[2]
        else:
            tau, value = e_step(X1, y, params, ridge)
        grads = _q_gradient(X1, y, params, tau, ridge)

        def evaluate(cand):
            t, v = e_step(X1, y, cand, ridge)
            state["pending"] = (cand, t, v)
            return v

        eta0 = _initial_step(state, *_coords(params, grads, n))
        recent = state.setdefault("recent", [])
        recent.append(value)
        del recent[:-_NONMONOTONE_MEMORY]
        new, _, eta = _armijo_step(params, grads, min(recent), evaluate, n, eta0)
        state["eta"] = eta
        steps_taken.append(eta)
        pending = state.get("pending")
        state["cache"] = pending if pending is not None and pending[0] is new else None
        return new, value

    def gem_armijo_map(X1, y, params):
        tau, value = e_step(X1, y, params, ridge)
        new = params
        q = _q_value(X1, y, new, tau, ridge)
        for _ in range(n_inner):
            grads = _q_gradient(X1, y, new, tau, ridge)
            eta0 = _initial_step(state, *_coords(new, grads, n))
            new, q, eta = _armijo_step(new, grads, q, lambda c: _q_value(X1, y, c, tau, ridge),
                                       n, eta0)
            state["eta"] = eta
        steps_taken.append(state["eta"])
        return new, value

    em_map = gem_map
    if armijo:
        em_map = gd_armijo_map if n_inner == 1 else gem_armijo_map
    result = _run(X, y, params0, em_map, max_iter=max_iter, tol=tol, ridge=ridge,
                  callback=callback, init_method=init_method, name=name, warn=warn,
                  step_text=step_text)
    if armijo:
        result.extra["step_sizes"] = np.asarray(steps_taken[:result.n_iter])
    return result


@dataclass
class StepSizeSearch:
    """Outcome of :func:`step_size_grid`.

    Attributes
    ----------
    best : float
        The step whose run ended with the largest objective among the runs that did not
        diverge.
    objectives : dict
        step -> final objective (``-inf`` for diverged runs).
    stop_reasons : dict
        step -> stop reason of its run.
    best_result : FitResult
        The run of ``best``.
    """

    best: float
    objectives: dict
    stop_reasons: dict
    best_result: FitResult


def step_size_grid(
    fit: Callable[[float], FitResult], step_sizes: Iterable[float]
) -> StepSizeSearch:
    """Run ``fit(step)`` for every step of a grid and report the best.

    Parameters
    ----------
    fit : callable
        ``fit(step) -> FitResult``, e.g.
        ``lambda s: fit_gd(X, y, params0, step_size=s, max_iter=100, tol=0, warn=False)``.
        The objective of the result is maximised (a log-likelihood, as every softmix fit).
    step_sizes : iterable of float
        Candidate steps (each finite and > 0).

    Returns
    -------
    StepSizeSearch
        Runs that stop on a non-finite objective count as ``-inf``; if every run diverged a
        ValueError asks for smaller steps.
    """
    steps = [check_step_size(s, "step_sizes") for s in step_sizes]
    if not steps:
        raise ValueError("step_sizes must hold at least one step size, got an empty grid.")
    objectives, reasons, results = {}, {}, {}
    for s in steps:
        res = fit(s)
        reasons[s] = res.stop_reason
        objectives[s] = -np.inf if res.stop_reason == "non_finite" else float(res.objective)
        results[s] = res
    best = max(steps, key=lambda s: objectives[s])
    if not np.isfinite(objectives[best]):
        raise ValueError(
            f"every step size of the grid {steps} diverged; try smaller step sizes."
        )
    return StepSizeSearch(best, objectives, reasons, results[best])
