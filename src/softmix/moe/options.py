"""Mixtures of experts as flexmix users know them: a constant gate (mixture of regressions), a
gate on its own covariates (flexmix's concomitant ``FLXPmultinom(~ w)``), intercept-free
experts, equal variances across Gaussian experts, and sample weights.

All of these are *linear constraints* on the ordinary softmax-gated model of
:mod:`softmix.moe.model`, so they are fitted in it: with ``W = [X_gate, X]`` (or ``W = X``
when the gate uses the experts' covariates) the parameters are a :class:`MoEParams` on
``[1, W]`` whose gating is zero outside the gate's columns (only the intercept for
``gate="constant"``) and whose expert coefficients are zero outside the experts' columns (and
on the intercept with ``fit_intercept=False``). Likelihood, posteriors, predictions and the
sampler are then those of :mod:`softmix.moe.model`, unchanged; only the M-step differs:

- gate: weighted multinomial logit of the responsibilities on the gate's own columns
  (:func:`softmix.core.solvers.fit_multinomial_logistic`, Newton with step-halving from the
  current gate; for a constant gate the intercepts, i.e. ``log(sum_j w_j tau_ji)`` up to the
  gauge);
- experts: the weighted one-expert fits of :mod:`softmix.moe.experts` on the experts' columns
  with weights ``w_j tau_ji``;
- ``variance="equal"``: the pooled residual variance ``sum_ij w_j tau_ji r_ji^2 / sum_j w_j``
  (the exact M-step: the least-squares coefficients do not depend on a shared variance).

The objective is ``sum_j w_j log p(y_j | x_j) - penalty``; every sub-step never decreases its
part of Q, so EM stays monotone (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from softmix._validation import check_array, check_choice
from softmix.core.em import run_em
from softmix.core.result import FitResult
from softmix.core.solvers import fit_multinomial_logistic
from softmix.core.special import logsumexp
from softmix.moe.em import check_em_options
from softmix.moe.experts import EXPERTS, default_variance_floor, warn_degenerate
from softmix.moe.gating import add_intercept
from softmix.moe.model import MoEParams, log_joint_design, penalty

__all__ = ["GATES", "VARIANCES", "Layout", "constrained_m_step", "fit_em_options",
           "start_from_posteriors", "weighted_gradient", "weighted_objective"]

GATES = ("softmax", "constant")
VARIANCES = ("free", "equal")


@dataclass(frozen=True)
class Layout:
    """Which columns of ``[1, W]`` the gate and the experts use (``W = [X_gate, X]`` or ``X``).

    Attributes
    ----------
    n_features : int
        d, the columns of the experts' ``X``.
    n_gate_features : int or None
        q, the columns of ``X_gate``; None when the gate uses ``X`` itself.
    gate : {"softmax", "constant"}
    fit_intercept : bool
        Whether the experts have an intercept.
    variance : {"free", "equal"}
        Gaussian experts: one variance each, or one shared variance.
    """

    n_features: int
    n_gate_features: int | None = None
    gate: str = "softmax"
    fit_intercept: bool = True
    variance: str = "free"

    @property
    def width(self) -> int:
        """Columns of W."""
        return self.n_features + (self.n_gate_features or 0)

    @property
    def is_default(self) -> bool:
        """The ordinary model (gate and experts on ``[1, X]``, free variances)."""
        return (self.n_gate_features is None and self.gate == "softmax" and self.fit_intercept
                and self.variance == "free")

    @property
    def gate_mask(self) -> np.ndarray:
        """Free gating columns of ``[1, W]`` (bool, (width + 1,))."""
        mask = np.zeros(self.width + 1, dtype=bool)
        mask[0] = True
        if self.gate == "softmax":
            q = self.width - self.n_features if self.n_gate_features is not None else self.width
            mask[1:1 + q] = True
        return mask

    @property
    def expert_mask(self) -> np.ndarray:
        """Free expert columns of ``[1, W]`` (bool, (width + 1,))."""
        mask = np.zeros(self.width + 1, dtype=bool)
        mask[0] = self.fit_intercept
        mask[1 + self.width - self.n_features:] = True
        return mask

    def design(self, X: np.ndarray, X_gate: np.ndarray | None) -> np.ndarray:
        """``[1, W]`` from validated ``X`` (n, d) and ``X_gate`` (n, q) (or None)."""
        if self.n_gate_features is None:
            return add_intercept(X)
        return add_intercept(np.hstack([X_gate, X]))

    def gate_coef(self, gating: np.ndarray) -> np.ndarray:
        """The gate's own coefficients (k, q+1) on ``[1, X_gate]`` (``[1, X]``; (k, 1) for a
        constant gate)."""
        return np.array(gating[:, self.gate_mask])

    def expert_coef(self, coef: np.ndarray) -> np.ndarray:
        """Expert coefficients on ``[1, X]`` (intercept column 0 when ``fit_intercept=False``)."""
        cols = np.concatenate([[0], np.arange(1 + self.width - self.n_features, self.width + 1)])
        return np.array(coef[..., cols])

    def embed_experts(self, coef_on_x1: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`expert_coef`: coefficients on ``[1, X]`` -> on ``[1, W]``, masked."""
        out = np.zeros(coef_on_x1.shape[:-1] + (self.width + 1,))
        out[..., 0] = coef_on_x1[..., 0] if self.fit_intercept else 0.0
        out[..., 1 + self.width - self.n_features:] = coef_on_x1[..., 1:]
        return out

    def n_free_parameters(self, expert: str, n_experts: int, n_classes: int | None) -> int:
        """Free parameters (for BIC): gate, expert coefficients, variances."""
        k = n_experts
        n_gate = (k - 1) * int(self.gate_mask.sum())
        n_cols = int(self.expert_mask.sum())
        if expert == "multinomial":
            n_exp = k * (n_classes - 1) * n_cols
        else:
            n_exp = k * n_cols
        if EXPERTS[expert].has_variance:
            n_exp += 1 if self.variance == "equal" else k
        return n_gate + n_exp

    def check(self, params: MoEParams, name: str = "init") -> None:
        """ValueError unless ``params`` lives on ``[1, W]`` and respects the masks."""
        if params.gating.shape[1] != self.width + 1:
            raise ValueError(
                f"{name} must be a MoEParams on [1, X_gate, X] ({self.width + 1} columns) for "
                f"these options, got gating of shape {params.gating.shape}."
            )
        if np.any(params.gating[:, ~self.gate_mask] != 0) or np.any(
                params.expert_coef[..., ~self.expert_mask] != 0):
            raise ValueError(
                f"{name} has non-zero coefficients where the options fix them at 0 (gate "
                "columns outside its covariates, or expert intercepts with "
                "fit_intercept=False, or expert columns on X_gate)."
            )
        if (self.variance == "equal" and params.expert_variance is not None
                and np.ptp(params.expert_variance) != 0):
            raise ValueError(f"{name} must have equal expert variances with variance='equal'.")


def check_options(gate, fit_intercept, variance) -> tuple[str, bool, str]:
    """Validated ``(gate, fit_intercept, variance)``; errors name the argument."""
    gate = check_choice(gate, "gate", GATES)
    if not isinstance(fit_intercept, (bool, np.bool_)):
        raise TypeError(f"fit_intercept must be True or False, got {fit_intercept!r}.")
    variance = check_choice(variance, "variance", VARIANCES)
    return gate, bool(fit_intercept), variance


def check_sample_weight(sample_weight, n: int) -> np.ndarray | None:
    """``sample_weight`` as a non-negative (n,) float array with a positive sum (or None)."""
    if sample_weight is None:
        return None
    w = check_array(sample_weight, "sample_weight", ndim=1)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have one entry per row of X ({n}), got shape "
                         f"{w.shape}.")
    if np.any(w < 0):
        raise ValueError(f"sample_weight must be non-negative, got {w[w < 0][0]} at index "
                         f"{int(np.flatnonzero(w < 0)[0])}.")
    if not w.sum() > 0:
        raise ValueError("sample_weight sums to 0: there is nothing to fit.")
    return w


def weighted_objective(W1: np.ndarray, y: np.ndarray, params: MoEParams,
                       sample_weight: np.ndarray | None = None, ridge: float = 0.0) -> float:
    """``sum_j w_j log p(y_j | x_j) - penalty(params, ridge)`` from the design ``[1, W]``."""
    lse = logsumexp(log_joint_design(W1, y, params), axis=1)
    total = float(lse.sum() if sample_weight is None else sample_weight @ lse)
    return total - penalty(params, ridge)


def constrained_m_step(W1: np.ndarray, y: np.ndarray, tau: np.ndarray, params: MoEParams,
                       layout: Layout, *, sample_weight: np.ndarray | None = None,
                       ridge: float = 0.0, inner_max_iter: int = 300, inner_tol: float = 1e-10,
                       inner_method: str = "newton", variance_floor: float | None = None):
    """The M-step under ``layout`` from responsibilities ``tau`` (n, k), warm started at
    ``params`` (on ``[1, W]``). Returns ``(MoEParams, degenerate)``."""
    gmask, emask = layout.gate_mask, layout.expert_mask
    k = tau.shape[1]
    gate = np.zeros((k, W1.shape[1]))
    if k > 1:
        gate[:, gmask] = fit_multinomial_logistic(
            W1[:, gmask], tau, sample_weight, params.gating[:, gmask], ridge=ridge,
            max_iter=inner_max_iter, tol=inner_tol, method=inner_method)
    weights = tau if sample_weight is None else tau * sample_weight[:, None]
    expert = EXPERTS[params.expert]
    E1 = W1[:, emask]
    sub, var, degenerate = expert.fit_weighted(
        E1, y, weights, params.expert_coef[..., emask], params.expert_variance, ridge=ridge,
        max_iter=inner_max_iter, tol=inner_tol, variance_floor=variance_floor,
        method=inner_method, warn=False)
    coef = np.zeros(params.expert_coef.shape)
    coef[..., emask] = sub
    if expert.has_variance and layout.variance == "equal":
        resid2 = (y[:, None] - E1 @ sub.T) ** 2
        total = float(weights.sum())
        pooled = float(np.sum(weights * resid2)) / total
        if not pooled > variance_floor:
            degenerate.setdefault(0, f"the shared variance {pooled:.3g} fell to the floor "
                                     f"{variance_floor:.3g}")
            pooled = variance_floor
        var = np.full(k, pooled)
    return MoEParams(gate, coef, var, params.expert), degenerate


def start_from_posteriors(W1: np.ndarray, y: np.ndarray, tau: np.ndarray, like: MoEParams,
                          layout: Layout, **m_step_options) -> MoEParams:
    """A start under ``layout`` from posteriors ``tau`` (n, k): one constrained M-step (what
    flexmix does with ``cluster=``), warm started from ``like`` (on ``[1, X]``) embedded."""
    k = tau.shape[1]
    var = like.expert_variance
    if var is not None and layout.variance == "equal":
        var = np.full(k, float(np.mean(var)))
    embedded = MoEParams(np.zeros((k, W1.shape[1])), layout.embed_experts(like.expert_coef),
                         var, like.expert)
    params, _ = constrained_m_step(W1, y, tau, embedded, layout, **m_step_options)
    return params


def fit_em_options(
    W1: np.ndarray,
    y: np.ndarray,
    params0: MoEParams,
    layout: Layout,
    *,
    sample_weight: np.ndarray | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    ridge: float = 0.0,
    inner_max_iter: int = 300,
    inner_tol: float = 1e-10,
    inner_method: str = "newton",
    variance_floor: float | None = None,
    callback: Callable[[int, MoEParams, float], object] | None = None,
    init_method: str = "given",
    warn: bool = True,
) -> FitResult:
    """EM for a mixture of experts under ``layout`` (see the module docstring).

    Parameters
    ----------
    W1 : ndarray of shape (n_samples, width + 1)
        ``layout.design(X, X_gate)``.
    y : ndarray of shape (n_samples,)
        Encoded responses (as for :func:`softmix.moe.em.fit_em`).
    params0 : MoEParams
        Start on ``[1, W]`` respecting the layout (:meth:`Layout.check`).
    sample_weight : ndarray of shape (n_samples,), optional
        Non-negative observation weights (frequency weights): the objective is
        ``sum_j w_j log p(y_j | x_j)``.
    max_iter, tol, ridge, inner_max_iter, inner_tol, inner_method, variance_floor, callback,
    init_method, warn
        As in :func:`softmix.moe.em.fit_em`.

    Returns
    -------
    FitResult
        As :func:`softmix.moe.em.fit_em`; ``extra["log_likelihood"]`` the (weighted)
        log-likelihood at ``params``.
    """
    inner_max_iter, inner_tol, inner_method, variance_floor = check_em_options(
        inner_max_iter, inner_tol, inner_method, variance_floor)
    layout.check(params0, "params0")
    y = np.asarray(y)
    if EXPERTS[params0.expert].has_variance and variance_floor is None:
        variance_floor = default_variance_floor(y)
    options = {"sample_weight": sample_weight, "ridge": ridge, "inner_max_iter": inner_max_iter,
               "inner_tol": inner_tol, "inner_method": inner_method,
               "variance_floor": variance_floor}
    degenerate: dict[int, tuple[int, str]] = {}
    counter = [0]

    def em_map(params: MoEParams):
        lj = log_joint_design(W1, y, params)
        lse = logsumexp(lj, axis=1, keepdims=True)
        value = float(lse.sum() if sample_weight is None else sample_weight @ lse[:, 0])
        tau = np.exp(lj - lse)
        nxt, deg = constrained_m_step(W1, y, tau, params, layout, **options)
        counter[0] += 1
        for i, reason in deg.items():
            degenerate.setdefault(i, (counter[0], reason))
        return nxt, value - penalty(params, ridge)

    result = run_em(
        params0, em_map, lambda prm: weighted_objective(W1, y, prm, sample_weight, ridge),
        max_iter=max_iter, tol=tol, callback=callback, init_method=init_method,
        name=f"MoE EM (gate={layout.gate!r}, variance={layout.variance!r})", warn=warn,
    )
    result.extra["log_likelihood"] = result.objective + penalty(result.params, ridge)
    result.extra["degenerate"] = degenerate
    if warn:
        for i, (it, reason) in sorted(degenerate.items()):
            warn_degenerate({i: reason}, when=f" at EM iteration {it}")
    return result


def fit_estimator_run(layout: Layout, X: np.ndarray, W1: np.ndarray, y: np.ndarray,
                      params0: MoEParams, given: bool, *, sample_weight=None,
                      max_iter: int, tol: float, ridge: float, callback, init_method: str,
                      **em_options) -> FitResult:
    """One run of :class:`~softmix.moe.estimator.MixtureOfExperts` under ``layout``.

    A named initialisation gives parameters on ``[1, X]``; unless they already satisfy the
    layout (only ``sample_weight`` given), their posteriors seed one constrained M-step
    (:func:`start_from_posteriors`). A user-given start is already on ``[1, W]``.
    """
    inner_max_iter, inner_tol, inner_method, variance_floor = check_em_options(**em_options)
    if EXPERTS[params0.expert].has_variance and variance_floor is None:
        variance_floor = default_variance_floor(y)
    m_opts = {"sample_weight": sample_weight, "ridge": ridge, "inner_max_iter": inner_max_iter,
              "inner_tol": inner_tol, "inner_method": inner_method,
              "variance_floor": variance_floor}
    if not given and not layout.is_default:  # (only sample_weight: the start fits as is)
        lj = log_joint_design(add_intercept(X), y, params0)
        tau = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))
        params0 = start_from_posteriors(W1, y, tau, params0, layout, **m_opts)
    return fit_em_options(W1, y, params0, layout, max_iter=max_iter, tol=tol,
                          callback=callback, init_method=init_method, **m_opts)


def weighted_gradient(W1: np.ndarray, y: np.ndarray, params: MoEParams, layout: Layout,
                      sample_weight: np.ndarray | None = None) -> MoEParams:
    """Gradient of :func:`weighted_objective` (``ridge=0``) in the free parameters of
    ``layout`` (Fisher's identity), zero where the layout fixes a coefficient.

    With ``variance="equal"`` every entry of ``expert_variance`` holds the derivative with
    respect to the one shared variance.
    """
    from softmix.moe.gating import gate_log_proba_design

    lj = log_joint_design(W1, y, params)
    tau = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))
    w = np.ones(W1.shape[0]) if sample_weight is None else sample_weight
    gate = np.exp(gate_log_proba_design(W1, params.gating))
    g_gate = ((tau - gate) * w[:, None]).T @ W1
    g_gate[-1] = 0.0
    g_gate[:, ~layout.gate_mask] = 0.0
    g_coef, g_var = EXPERTS[params.expert].grad_log_prob(
        W1, y, params.expert_coef, params.expert_variance, tau * w[:, None])
    g_coef = np.array(g_coef)
    g_coef[..., ~layout.expert_mask] = 0.0
    if params.expert == "multinomial":
        g_coef[:, -1, :] = 0.0
    if g_var is not None and layout.variance == "equal":
        g_var = np.full_like(g_var, g_var.sum())
    return MoEParams(g_gate, g_coef, g_var, params.expert)
