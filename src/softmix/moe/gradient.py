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
from softmix.moe.em import e_step
from softmix.moe.experts import EXPERTS
from softmix.moe.gating import add_intercept, gating_gradient
from softmix.moe.model import MoEParams, penalty

__all__ = ["StepSizeSearch", "fit_gd", "fit_gradient_em", "step_size_grid"]


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


def _run(X, y, params0, em_map, *, max_iter, tol, ridge, callback, init_method, name, warn):
    """Drive ``em_map`` with overflow turned into a NaN objective (-> ``non_finite`` stop)."""
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

    result = run_em(params0, guarded, objective, max_iter=max_iter, tol=tol,
                    monotone=False, callback=callback, init_method=init_method, name=name,
                    warn=warn)
    result.extra["log_likelihood"] = result.objective + penalty(result.params, ridge)
    if result.converged:
        _check_stationary(X1, y, params0, result, ridge, name, warn)
    return result


#: A first-order fit that met ``tol`` counts as converged only if its gradient norm fell below
#: this fraction of the starting one (a good step takes it down by 1e3 or more before the
#: objective change reaches tol = 1e-6; a too-small step leaves it near the start's).
STATIONARITY_RATIO = 1e-2


def _gradient_norm(X1: np.ndarray, y: np.ndarray, params: MoEParams, ridge: float) -> float:
    """Norm of the normalised gradient in the coordinates the steps use (log variances)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        tau = e_step(X1, y, params, ridge)[0]
        g_gate, g_coef, g_var = _q_gradient(X1, y, params, tau, ridge)
    blocks = [g_gate, g_coef] + ([params.expert_variance * g_var] if g_var is not None else [])
    return float(np.sqrt(sum(np.sum(b * b) for b in blocks))) / len(y)


def _check_stationary(X1, y, params0, result: FitResult, ridge: float, name: str,
                      warn: bool) -> None:
    """Turn a ``tol`` stop far from a stationary point into ``not_stationary`` + a warning.

    The shared stop rule compares objectives between iterations; one step of size eta changes
    the objective by about ``eta ||grad L||^2``, so with a small step it fires anywhere (on the
    Gaussian-MoE paper's model, ``step_size=1e-4`` stopped after 2 iterations at a
    log-likelihood of -5561 where EM reaches -851).
    """
    g0 = _gradient_norm(X1, y, params0, ridge)
    g = _gradient_norm(X1, y, result.params, ridge)
    result.extra["gradient_norm"] = g
    if np.isfinite(g) and g > STATIONARITY_RATIO * g0 and g > 1e-10:
        result.converged, result.stop_reason = False, "not_stationary"
        if warn:
            warnings.warn(
                f"{name} met tol after {result.n_iter} iteration(s) but is not at a stationary "
                f"point: the gradient norm only fell from {g0:.3g} to {g:.3g}. The step is too "
                "small for the tolerance: tune it (softmix.moe.gradient.step_size_grid), or run "
                "tol=0 with more iterations.",
                ConvergenceWarning,
                stacklevel=4,
            )


def fit_gd(
    X: np.ndarray,
    y: np.ndarray,
    params0: MoEParams,
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    ridge: float = 0.0,
    step_size: float = 0.1,
    callback: Callable[[int, MoEParams, float], object] | None = None,
    init_method: str = "given",
    warn: bool = True,
) -> FitResult:
    """Fit a mixture of experts by full-batch gradient descent with a fixed step.

    Parameters
    ----------
    X, y, params0, max_iter, tol, ridge
        As in :func:`softmix.moe.em.fit_em` (``tol=0`` runs exactly ``max_iter`` steps).
    step_size : float, default=0.1
        Step on the normalised objective ``L = -loglik / n`` (finite, > 0). Tune it with
        :func:`step_size_grid`.
    callback, init_method, warn
        As in :func:`softmix.moe.em.fit_em`.

    Returns
    -------
    FitResult
        ``history`` holds the penalised log-likelihood (a sum over samples, like EM's);
        ``extra["log_likelihood"]`` the unpenalised one at ``params``.

    Notes
    -----
    ``theta_{t+1} = theta_t + step_size * grad l(theta_t) / n`` with the gradient of
    :func:`softmix.moe.model.gradient` (variances on the log scale, see the module docstring).
    Gradient descent is not monotone: the objective may go down with a large step; a
    divergence stops the run with ``stop_reason="non_finite"`` and a ConvergenceWarning.
    The ``tol`` rule compares the objective between iterations, and one step changes it by
    about ``step_size * ||grad L||^2``: with a small step the rule fires far from a stationary
    point. Such a stop is checked: unless the gradient norm fell below
    :data:`STATIONARITY_RATIO` times the start's, the result has ``converged=False``,
    ``stop_reason="not_stationary"`` and a ConvergenceWarning. Tune the step
    (:func:`step_size_grid`) or run ``tol=0``.
    """
    step_size = check_step_size(step_size, "step_size")
    return _fit_first_order(X, y, params0, step_size, step_size, 1, max_iter=max_iter, tol=tol,
                            ridge=ridge, callback=callback, init_method=init_method,
                            name="MoE gradient descent", warn=warn)


def fit_gradient_em(
    X: np.ndarray,
    y: np.ndarray,
    params0: MoEParams,
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    ridge: float = 0.0,
    step_gate: float = 0.1,
    step_expert: float = 0.1,
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
    step_gate, step_expert : float, default=0.1
        Steps (finite, > 0) of the gate and expert blocks on the normalised Q-function.
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
    ``step_gate == step_expert`` this is exactly :func:`fit_gd`.
    """
    step_gate = check_step_size(step_gate, "step_gate")
    step_expert = check_step_size(step_expert, "step_expert")
    n_inner = check_int(n_inner, "n_inner", low=1)
    return _fit_first_order(X, y, params0, step_gate, step_expert, n_inner, max_iter=max_iter,
                            tol=tol, ridge=ridge, callback=callback, init_method=init_method,
                            name="MoE gradient EM", warn=warn)


def _fit_first_order(X, y, params0, step_gate, step_expert, n_inner, *, max_iter, tol, ridge,
                     callback, init_method, name, warn) -> FitResult:
    """Gradient EM with validated steps; ``n_inner=1`` and equal steps is gradient descent."""
    n = np.shape(X)[0]

    def gem_map(X1, y, params):
        tau, value = e_step(X1, y, params, ridge)
        new = params
        for _ in range(n_inner):
            new = _step(new, _q_gradient(X1, y, new, tau, ridge), step_gate, step_expert, n)
        return new, value

    return _run(X, y, params0, gem_map, max_iter=max_iter, tol=tol, ridge=ridge,
                callback=callback, init_method=init_method, name=name, warn=warn)


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
