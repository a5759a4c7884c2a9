"""EM for softmax-gated mixtures of experts, on the shared driver :func:`softmix.core.em.run_em`.

One EM iteration at parameters ``theta`` (Jordan & Jacobs 1994; Nguyen, Nguyen, Ho 2023,
section 2; Fruytier, Mokhtari, Sanghavi 2024, section 2):

- E-step (log space): ``tau_ji = P(z=i | x_j) f_i(y_j | x_j) / sum_l (same)``; the
  log-likelihood at ``theta`` comes out of the same computation.
- Gating M-step: weighted multinomial logistic regression with soft labels ``tau`` (Newton with
  step-halving, warm-started at the current gating; up to ``inner_max_iter`` iterations).
- Expert M-step: for every expert a weighted one-expert fit with weights ``tau[:, i]``
  (Gaussian: weighted least squares and the floored residual variance, in closed form;
  logistic / multinomial: Newton, warm-started).

Every sub-step never decreases its part of ``Q(. | theta)``, so the log-likelihood never
decreases (exact EM, or a generalised EM when the inner Newton loop is cut short). With
``ridge > 0`` the objective is ``log_likelihood - penalty`` (:func:`softmix.moe.model.penalty`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from softmix._validation import check_choice, check_float, check_int
from softmix.core.em import run_em
from softmix.core.result import FitResult
from softmix.core.special import logsumexp
from softmix.moe.experts import EXPERTS, default_variance_floor, warn_degenerate
from softmix.moe.gating import add_intercept, fit_gating
from softmix.moe.model import (
    MoEParams,
    log_joint_design,
    params_to_vector,
    penalty,
    score_samples_design,
)

__all__ = ["CRITERION", "check_em_options", "e_step", "em_step", "fit_em", "objective",
           "record_criterion", "score_gain", "score_gain_from_sums"]


def objective(X: np.ndarray, y: np.ndarray, params: MoEParams, ridge: float = 0.0) -> float:
    """The objective EM increases: ``log_likelihood(X, y, params) - penalty(params, ridge)``."""
    return _objective_design(add_intercept(X), np.asarray(y), params, ridge)


def _objective_design(X1: np.ndarray, y: np.ndarray, params: MoEParams, ridge: float) -> float:
    lj = log_joint_design(X1, y, params)
    return float(np.sum(logsumexp(lj, axis=1))) - penalty(params, ridge)


def e_step(X1: np.ndarray, y: np.ndarray, params: MoEParams,
           ridge: float = 0.0) -> tuple[np.ndarray, float]:
    """Posteriors ``tau`` (n, k) at ``params`` and the objective there, from ``X1 = [1, X]``.

    ``tau_ji = P(z=i | x_j) f_i(y_j | x_j) / sum_l (same)`` in log space; the objective
    ``sum_j log p(y_j | x_j) - penalty(params, ridge)`` comes out of the same normaliser.
    """
    lj = log_joint_design(X1, y, params)
    lse = logsumexp(lj, axis=1, keepdims=True)
    return np.exp(lj - lse), float(np.sum(lse)) - penalty(params, ridge)


def em_step(
    X1: np.ndarray,
    y: np.ndarray,
    params: MoEParams,
    *,
    ridge: float = 0.0,
    inner_max_iter: int = 300,
    inner_tol: float = 1e-10,
    inner_method: str = "newton",
    variance_floor: float | None = None,
) -> tuple[MoEParams, float, dict[int, str]]:
    """One EM iteration from the design ``X1 = [1, X]``.

    Returns
    -------
    next_params : MoEParams
    value : float
        Objective (penalised log-likelihood) at ``params``.
    degenerate : dict
        ``{expert index: reason}`` for experts that collapsed in this M-step.
    """
    tau, value = e_step(X1, y, params, ridge)
    gating = fit_gating(X1, tau, params.gating, ridge=ridge, max_iter=inner_max_iter,
                        tol=inner_tol, method=inner_method)
    coef, var, degenerate = EXPERTS[params.expert].fit_weighted(
        X1, y, tau, params.expert_coef, params.expert_variance, ridge=ridge,
        max_iter=inner_max_iter, tol=inner_tol, variance_floor=variance_floor,
        method=inner_method, warn=False,
    )
    return MoEParams(gating, coef, var, params.expert), value, degenerate


#: Name of the stationarity criterion recorded in ``FitResult.criterion`` by every MoE fit.
CRITERION = "score_gain_opg"

#: :func:`score_gain` is computed when the model has at most this many free parameters
#: (it needs an eigendecomposition of the (P, P) outer-product matrix); NaN above.
SCORE_GAIN_MAX_PARAMS = 2000


#: ... and when the (n, P) score matrix has at most this many entries (2e8: 1.6 GB).
_SCORE_GAIN_MAX_ENTRIES = 2 * 10**8


def score_gain(X1: np.ndarray, y: np.ndarray, params: MoEParams, ridge: float = 0.0,
               tau: np.ndarray | None = None) -> float:
    """Predicted remaining gain in nats: ``g' (S'S)^+ g / 2``.

    ``S`` (n, P) holds the per-observation scores (:func:`softmix.moe.model.score_samples_design`,
    by Fisher's identity from the posteriors) and ``g`` the gradient of the objective (their
    sum, minus the ridge term). ``S'S`` is the outer-product-of-gradients estimate of the
    information, so this is the Newton-step gain ``g' I^-1 g / 2`` in that metric: 0 at a
    stationary point, invariant to any smooth reparametrisation (units of X or y, variances or
    log variances) and comparable across n (``2 x`` it is the score test statistic, about
    chi-squared with P degrees of freedom at a point one standard error from the optimum).
    NaN when the model has more than :data:`SCORE_GAIN_MAX_PARAMS` free parameters or the
    (n, P) score matrix would exceed 2e8 entries.
    """
    n_par = params_to_vector(params).size
    if n_par > SCORE_GAIN_MAX_PARAMS or n_par * X1.shape[0] > _SCORE_GAIN_MAX_ENTRIES:
        return float("nan")
    if tau is None:
        tau = e_step(X1, y, params, ridge)[0]
    S = score_samples_design(X1, y, params, tau)
    return score_gain_from_sums(S.T @ S, S.sum(axis=0), params, ridge)


def score_gain_from_sums(gram: np.ndarray, total: np.ndarray, params: MoEParams,
                         ridge: float = 0.0) -> float:
    """:func:`score_gain` from ``S'S`` (P, P) and ``S' 1`` (P,), sums over the observations
    (so over row blocks too: :mod:`softmix.moe.dask`)."""
    g = total - ridge * _penalised_vector(params) if ridge else total
    norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    norms = np.where(norms > 0, norms, 1.0)
    evals, evecs = np.linalg.eigh(gram / np.outer(norms, norms))
    keep = evals > 1e-12 * max(float(evals.max()), np.finfo(float).tiny)
    proj = evecs[:, keep].T @ (g / norms)
    return 0.5 * float(np.sum(proj**2 / evals[keep]))


def _penalised_vector(params: MoEParams) -> np.ndarray:
    """The ridge penalty's coefficients in the layout of ``params_to_vector``: gating and
    classification-expert coefficients (Gaussian coefficients and variances: 0)."""
    zero_coef = not EXPERTS[params.expert].is_classifier
    coef = np.zeros_like(params.expert_coef) if zero_coef else params.expert_coef
    var = None if params.expert_variance is None else np.zeros_like(params.expert_variance)
    return params_to_vector(MoEParams(params.gating, coef, var, params.expert))


def record_criterion(result: FitResult, X1: np.ndarray, y: np.ndarray, ridge: float) -> float:
    """Fill ``result.criterion`` / ``criterion_value`` with :func:`score_gain` at its params."""
    with np.errstate(all="ignore"):
        value = score_gain(X1, y, result.params, ridge)
    result.criterion = CRITERION
    result.criterion_value = value
    return value


def check_em_options(inner_max_iter: int = 300, inner_tol: float = 1e-10,
                     inner_method: str = "newton", variance_floor: float | None = None):
    """Validated ``(inner_max_iter, inner_tol, inner_method, variance_floor)`` of :func:`fit_em`.

    Errors name the option (the inner solvers would report a bad method as ``method``; a
    variance floor <= 0 or ``inner_max_iter=0`` used to go through).
    """
    inner_max_iter = check_int(inner_max_iter, "inner_max_iter", low=1)
    inner_tol = check_float(inner_tol, "inner_tol", low=0.0)
    inner_method = check_choice(inner_method, "inner_method", ("newton", "lbfgs"))
    if variance_floor is not None:
        variance_floor = check_float(variance_floor, "variance_floor", low=0.0,
                                     low_inclusive=False, remedy="E.g. variance_floor=1e-8.")
    return inner_max_iter, inner_tol, inner_method, variance_floor


def fit_em(
    X: np.ndarray,
    y: np.ndarray,
    params0: MoEParams,
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    inner_max_iter: int = 300,
    inner_tol: float = 1e-10,
    inner_method: str = "newton",
    ridge: float = 0.0,
    variance_floor: float | None = None,
    callback: Callable[[int, MoEParams, float], object] | None = None,
    init_method: str = "given",
    warn: bool = True,
) -> FitResult:
    """Fit a mixture of experts by EM from ``params0``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Real responses (Gaussian experts), 0/1 (logistic) or class indices (multinomial).
    params0 : MoEParams
        Start.
    max_iter : int
        EM iterations; ``0`` returns ``params0`` unchanged.
    tol : float
        Stop when the relative change of the objective is ``<= tol`` (the authors of the
        Gaussian-MoE paper used 1e-6) and not growing (see :func:`softmix.core.em.run_em`); ``tol=0``
        runs exactly ``max_iter`` iterations.
    inner_max_iter, inner_tol, inner_method
        Newton settings of the gating and classification-expert M-steps.
    ridge : float
        L2 penalty on the gating and classification-expert coefficients.
    variance_floor : float, optional
        Smallest variance of a Gaussian expert (default :func:`~softmix.moe.experts.default_variance_floor`, about ``4.9e-24 var(y)``: round-off level); hitting it issues a
        :class:`~softmix.exceptions.DegenerateComponentWarning` naming the expert.
    callback : callable, optional
        ``callback(iteration, params, objective)``; a truthy return stops the fit.
    init_method : str
        Recorded in the result.
    warn : bool
        Emit convergence and degenerate-expert warnings.

    Returns
    -------
    FitResult
        ``params`` (MoEParams), ``objective`` (penalised log-likelihood, equal to the
        log-likelihood when ``ridge=0``), ``history`` (objective per iteration), ``converged``,
        ``n_iter``, ``stop_reason``; ``criterion`` / ``criterion_value``: the predicted
        remaining gain in nats at ``params`` (:func:`score_gain`, scale-free; reported, the
        stop itself is the tolerance rule); ``extra["log_likelihood"]`` is the unpenalised
        log-likelihood at ``params`` and ``extra["degenerate"]`` maps each expert that collapsed
        to ``(iteration, reason)`` of its first collapse.
    """
    inner_max_iter, inner_tol, inner_method, variance_floor = check_em_options(
        inner_max_iter, inner_tol, inner_method, variance_floor)
    X1 = add_intercept(X)
    y = np.asarray(y)
    if EXPERTS[params0.expert].has_variance and variance_floor is None:
        variance_floor = default_variance_floor(y)
    degenerate: dict[int, tuple[int, str]] = {}
    counter = [0]

    def em_map(params: MoEParams):
        nxt, value, deg = em_step(
            X1, y, params, ridge=ridge, inner_max_iter=inner_max_iter, inner_tol=inner_tol,
            inner_method=inner_method, variance_floor=variance_floor,
        )
        counter[0] += 1
        for i, reason in deg.items():
            degenerate.setdefault(i, (counter[0], reason))
        return nxt, value

    def obj(params: MoEParams) -> float:
        return _objective_design(X1, y, params, ridge)

    result = run_em(
        params0, em_map, obj, max_iter=max_iter, tol=tol, callback=callback,
        init_method=init_method, name="MoE EM", warn=warn,
    )
    result.extra["log_likelihood"] = result.objective + penalty(result.params, ridge)
    result.extra["degenerate"] = degenerate
    record_criterion(result, X1, y, ridge)
    if warn:
        for i, (it, reason) in sorted(degenerate.items()):
            warn_degenerate({i: reason}, when=f" at EM iteration {it}")
    return result
