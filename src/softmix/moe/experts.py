"""Experts of a mixture of experts: Gaussian (linear mean), logistic (binary) and multinomial.

Every expert type is a stateless object with the same interface, so the EM loop, the gradient
solvers and the estimator never branch on which expert they run; they look it up by name in
:data:`EXPERTS`. All functions take the *design* ``X1 = [1, X]`` of shape (n, d+1).

Parameter layout (``k`` experts, ``p = d + 1``):

- ``"gaussian"``: ``coef`` (k, p), rows ``[b_i, a_i...]`` (mean ``b_i + a_i'x``); ``variance`` (k,).
- ``"logistic"``: ``coef`` (k, p), ``P(y=1 | x, z=i) = sigmoid(b_i + a_i'x)``; ``variance`` None.
- ``"multinomial"``: ``coef`` (k, C, p), ``P(y=c | x, z=i) = softmax_c(coef[i] @ [1, x])``, the
  last class row of every expert is zero (gauge); ``variance`` None.

M-steps are *weighted one-expert fits*: expert ``i`` is refitted on all samples with weights
``w[:, i]`` (the responsibilities). Gaussian: weighted least squares and the weighted residual
variance, floored (never zero; a floor hit is reported). Logistic / multinomial: weighted
logistic regressions by Newton with step-halving (:mod:`softmix.core.solvers`), warm-started.
"""

from __future__ import annotations

import warnings
from typing import Protocol

import numpy as np
from scipy import linalg

from softmix.core.solvers import (
    fit_binary_logistic,
    fit_multinomial_logistic,
    multinomial_logistic_objective,
)
from softmix.core.special import expit, log_expit, log_softmax
from softmix.exceptions import DegenerateComponentWarning

__all__ = [
    "EXPERTS",
    "VARIANCE_FLOOR_RATIO",
    "Expert",
    "GaussianExpert",
    "LogisticExpert",
    "MultinomialExpert",
    "default_variance_floor",
    "get_expert",
]

#: An expert whose total responsibility is below this fraction of n is "empty": its
#: parameters are kept (there is nothing to fit) and a DegenerateComponentWarning is issued.
EMPTY_WEIGHT = 1e-10


def weighted_least_squares(X1: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``argmin_c sum_j w_j (y_j - X1_j c)^2`` for a design whose column 0 is the intercept,
    shape (p,). A design without an intercept column (column 0 not all ones, as in the
    intercept-free experts of :mod:`softmix.moe.options`) is solved as it is, uncentred.

    The other columns are centred at their weighted means first (the intercept is recovered
    from the means), so a column far from 0 (``x + 1e6``) is not collinear with the intercept
    in the numerics and the fit is equivariant to shifting a column (before, a shift of 1e6
    made the SVD fallback truncate that column: log-likelihood -5,409 instead of -851).

    Fast path (benchmarks/, issue 6): Cholesky of the equilibrated normal equations
    ``D^-1 Xc' W Xc D^-1`` (``D`` the column norms), O(n p^2) with one pass over the data and no
    LAPACK call on the tall matrix (``lstsq``'s SVD on (n, p) was ~100x slower here, and much
    slower still with several BLAS threads on a busy machine). Falls back to ``lstsq`` when the
    equilibrated Gram matrix is not safely positive definite (condition number above ~1e12,
    where forming it would lose accuracy), so the result is the least-squares solution either way.
    """
    if X1.shape[1] == 0 or not np.all(X1[:, 0] == 1.0):
        # no intercept column (moe.options: fit_intercept=False): plain weighted least squares
        return _wls_centred(X1, y, w) if X1.shape[1] else np.zeros(0)
    sw = float(w.sum())
    x_mean = (w @ X1[:, 1:]) / sw
    y_mean = float(w @ y) / sw
    Xc = X1[:, 1:] - x_mean
    yc = y - y_mean
    slope = _wls_centred(Xc, yc, w) if Xc.shape[1] else np.zeros(0)
    return np.concatenate([[y_mean - float(x_mean @ slope)], slope])


def solve_gram(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray | None:
    """Solve the normal equations ``gram c = rhs`` by Cholesky of the equilibrated ``gram``
    (``D^-1 gram D^-1``, ``D`` the square roots of its diagonal); None when that matrix is not
    safely positive definite (a Cholesky diagonal below 1e-6 of the largest), where the
    caller falls back to a least-squares solve. Shared by the in-memory weighted least
    squares and the Dask M-step, which gets ``gram`` as a sum over row blocks."""
    scale = np.sqrt(np.diag(gram))
    if np.all(scale > 0) and np.all(np.isfinite(gram)):
        try:
            factor = linalg.cho_factor(gram / np.outer(scale, scale), check_finite=False)
        except linalg.LinAlgError:
            factor = None
        if factor is not None:
            diag = np.abs(np.diag(factor[0]))
            if diag.min() > 1e-6 * diag.max():
                return linalg.cho_solve(factor, rhs / scale, check_finite=False) / scale
    return None


def _wls_centred(Xc: np.ndarray, yc: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least squares without intercept (columns already centred)."""
    xw = Xc * w[:, None]
    coef = solve_gram(xw.T @ Xc, xw.T @ yc)
    if coef is not None:
        return coef
    root = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(Xc * root[:, None], yc * root, rcond=None)
    return coef


#: The default variance floor as a fraction of ``var(y)``: ``(1e4 eps)^2 ~ 4.9e-24``, a
#: residual standard deviation of 1e4 units of round-off of ``y``'s spread. A residual
#: variance below it is not measurable in double precision (the residuals of a weighted fit
#: are computed to ~eps times ``y``'s scale), so the floor binds only when an expert
#: interpolates its points exactly, never on a well-determined fit.
VARIANCE_FLOOR_RATIO = (1e4 * np.finfo(float).eps) ** 2


def default_variance_floor(y: np.ndarray) -> float:
    """Default variance floor of Gaussian experts: ``VARIANCE_FLOOR_RATIO * var(y)``.

    Round-off level, relative to ``y``'s spread (so a fit is equivariant to rescaling ``y``).
    It keeps the likelihood finite when an expert collapses onto points it fits exactly; it
    does not bias legitimate high signal-to-noise fits (the former ``1e-6 var(y)`` floored a
    true variance of 9e-6 to 1.5e-5 in both experts of a fit with 1,356 effective points per
    expert). Spurious near-singular experts are handled by ``min_weight`` and the
    few-effective-points warning of :class:`~softmix.moe.estimator.MixtureOfExperts`, not by a
    floor that would bias every fit. 1e-300 when ``var(y)`` is 0 or subnormal (constant ``y``).
    """
    floor = VARIANCE_FLOOR_RATIO * float(np.var(y))
    return floor if floor >= np.finfo(float).tiny else 1e-300


class Expert(Protocol):
    """Interface every expert type implements (see the module docstring for the layouts)."""

    name: str
    has_variance: bool
    is_classifier: bool

    def coef_shape(self, n_experts: int, n_features: int, n_classes: int | None) -> tuple: ...

    def n_params(self, n_features: int, n_classes: int | None) -> int: ...

    def log_prob(self, X1, y, coef, variance) -> np.ndarray: ...

    def grad_log_prob(self, X1, y, coef, variance, weights) -> tuple: ...

    def fit_one(self, X1, y, w, coef0, variance0, **options) -> tuple: ...

    def fit_weighted(self, X1, y, weights, coef0, variance0, **options) -> tuple: ...

    def mean(self, X1, coef) -> np.ndarray: ...

    def sample(self, X1, coef, variance, z, rng) -> np.ndarray: ...

    def penalty(self, coef, ridge: float) -> float: ...


class _BaseExpert:
    """Shared loop of the weighted M-step over experts and the degenerate-expert reporting."""

    name = "base"
    has_variance = False
    is_classifier = False

    def fit_weighted(
        self,
        X1: np.ndarray,
        y: np.ndarray,
        weights: np.ndarray,
        coef0: np.ndarray,
        variance0: np.ndarray | None = None,
        *,
        ridge: float = 0.0,
        max_iter: int = 300,
        tol: float = 1e-10,
        variance_floor: float | None = None,
        method: str = "newton",
        warn: bool = True,
    ) -> tuple[np.ndarray, np.ndarray | None, dict[int, str]]:
        """Refit every expert ``i`` on all samples with weights ``weights[:, i]``.

        Parameters
        ----------
        X1 : ndarray of shape (n, p)
            Design ``[1, X]``.
        y : ndarray of shape (n,)
        weights : ndarray of shape (n, k)
            Non-negative weights (responsibilities, or one-hot rows of a hard partition).
        coef0, variance0 : ndarray
            Current parameters (warm start; kept for an expert with no weight).
        ridge : float
            L2 penalty of the logistic / multinomial experts (ignored by Gaussian experts).
        max_iter, tol, method
            Inner Newton solver settings (classification experts).
        variance_floor : float, optional
            Gaussian experts: smallest variance (default :func:`default_variance_floor`).
        warn : bool
            Emit a :class:`DegenerateComponentWarning` naming each degenerate expert.

        Returns
        -------
        coef : ndarray
            New coefficients, same shape as ``coef0``.
        variance : ndarray of shape (k,) or None
        degenerate : dict
            ``{expert index: reason}`` for experts that collapsed during this fit.
        """
        k = weights.shape[1]
        coef = np.empty_like(np.asarray(coef0, dtype=float))
        variance = np.empty(k) if self.has_variance else None
        if self.has_variance and variance_floor is None:
            variance_floor = default_variance_floor(y)
        degenerate: dict[int, str] = {}
        n = X1.shape[0]
        for i in range(k):
            w = weights[:, i]
            v0 = None if variance0 is None else float(variance0[i])
            if float(w.sum()) <= EMPTY_WEIGHT * n:
                coef[i] = coef0[i]
                if self.has_variance:
                    variance[i] = max(v0, variance_floor)
                degenerate[i] = empty_reason(float(w.sum()))
                continue
            c, v, reason = self.fit_one(
                X1, y, w, coef0[i], v0, ridge=ridge, max_iter=max_iter, tol=tol,
                variance_floor=variance_floor, method=method,
            )
            coef[i] = c
            if self.has_variance:
                variance[i] = v
            if reason:
                degenerate[i] = reason
        if warn:
            warn_degenerate(degenerate)
        return coef, variance, degenerate

    def penalty(self, coef: np.ndarray, ridge: float) -> float:
        """``ridge / 2 * ||coef||^2`` for classification experts, 0 for Gaussian experts."""
        if not self.is_classifier or not ridge:
            return 0.0
        return 0.5 * ridge * float(np.sum(np.asarray(coef) ** 2))


def empty_reason(total: float) -> str:
    """Why an expert with total responsibility ``total`` was left unchanged."""
    return (f"total responsibility {total:.3g} (<= {EMPTY_WEIGHT:g} n): the expert is empty; "
            "its parameters were left unchanged")


def floor_reason(var: float, floor: float, effective: float) -> str:
    """Why a Gaussian expert's variance ``var`` was set to the ``floor``."""
    return (
        f"its residual variance {var:.3g} is at or below the variance floor {floor:.3g} and "
        f"was set to the floor: the expert fits its {effective:.1f} effective point(s) to "
        "within that variance (a spike of the likelihood, not a model of the data, unless the "
        "data are exactly linear there)"
    )


def warn_degenerate(degenerate: dict[int, str], when: str = "") -> None:
    """One :class:`DegenerateComponentWarning` per degenerate expert, naming it (0-based)."""
    for i, reason in sorted(degenerate.items()):
        warnings.warn(
            f"expert {i} (0-based) is degenerate{when}: {reason}. Use fewer experts, restarts "
            "(n_init), a larger min_weight (MixtureOfExperts), or a different initialisation.",
            DegenerateComponentWarning,
            stacklevel=3,
        )


class GaussianExpert(_BaseExpert):
    """Linear-Gaussian expert ``y | x, z=i ~ N(b_i + a_i'x, nu_i)`` (``nu_i`` a variance)."""

    name = "gaussian"
    has_variance = True
    is_classifier = False

    def coef_shape(self, n_experts: int, n_features: int, n_classes: int | None = None) -> tuple:
        return (n_experts, n_features + 1)

    def n_params(self, n_features: int, n_classes: int | None = None) -> int:
        return n_features + 2

    def log_prob(self, X1, y, coef, variance) -> np.ndarray:
        """``log N(y_j | X1_j coef_i, nu_i)``, shape (n, k)."""
        resid = y[:, None] - X1 @ coef.T
        return -0.5 * (np.log(2.0 * np.pi * variance) + resid**2 / variance)

    def grad_log_prob(self, X1, y, coef, variance, weights):
        """``sum_j w_ji d log f_i(y_j) / d(coef_i, nu_i)``: shapes (k, p) and (k,)."""
        resid = y[:, None] - X1 @ coef.T
        g_coef = (weights * resid / variance).T @ X1
        g_var = np.sum(weights * (resid**2 / variance - 1.0), axis=0) / (2.0 * variance)
        return g_coef, g_var

    def score_samples(self, X1, y, coef, variance, weights) -> list[np.ndarray]:
        """Per-sample ``w_ji d log f_i(y_j) / d(coef_i, nu_i)``: [(n, k, p), (n, k)]."""
        resid = y[:, None] - X1 @ coef.T
        g_coef = (weights * resid / variance)[:, :, None] * X1[:, None, :]
        g_var = weights * (resid**2 / variance - 1.0) / (2.0 * variance)
        return [g_coef, g_var]

    def fit_one(self, X1, y, w, coef0, variance0, *, variance_floor, **_ignored):
        """Weighted least squares and the weighted residual variance, floored."""
        sw = float(w.sum())
        coef = weighted_least_squares(X1, y, w)
        resid = y - X1 @ coef
        var = float(w @ resid**2) / sw
        reason = None
        if not var > variance_floor:
            reason = floor_reason(var, variance_floor, _effective_points(w))
            var = variance_floor
        return coef, var, reason

    def mean(self, X1, coef) -> np.ndarray:
        """Expert means ``X1 @ coef.T``, shape (n, k)."""
        return X1 @ coef.T

    def sample(self, X1, coef, variance, z, rng) -> np.ndarray:
        mu = np.einsum("np,np->n", X1, coef[z])
        return mu + np.sqrt(variance[z]) * rng.standard_normal(X1.shape[0])


class LogisticExpert(_BaseExpert):
    """Logistic expert ``P(y=1 | x, z=i) = sigmoid(b_i + a_i'x)``, y in {0, 1}."""

    name = "logistic"
    has_variance = False
    is_classifier = True

    def coef_shape(self, n_experts: int, n_features: int, n_classes: int | None = None) -> tuple:
        return (n_experts, n_features + 1)

    def n_params(self, n_features: int, n_classes: int | None = None) -> int:
        return n_features + 1

    def log_prob(self, X1, y, coef, variance=None) -> np.ndarray:
        eta = X1 @ coef.T
        return np.where(y[:, None] > 0.5, log_expit(eta), log_expit(-eta))

    def grad_log_prob(self, X1, y, coef, variance, weights):
        eta = X1 @ coef.T
        return (weights * (y[:, None] - expit(eta))).T @ X1, None

    def score_samples(self, X1, y, coef, variance, weights) -> list[np.ndarray]:
        """Per-sample ``w_ji (y_j - p_ji) [1, x_j]``: [(n, k, p)]."""
        eta = X1 @ coef.T
        return [(weights * (y[:, None] - expit(eta)))[:, :, None] * X1[:, None, :]]

    def fit_one(self, X1, y, w, coef0, variance0=None, *, ridge=0.0, max_iter=300, tol=1e-10,
                method="newton", **_ignored):
        coef = fit_binary_logistic(X1, y, w, coef0, ridge=ridge, max_iter=max_iter, tol=tol,
                                   method=method)
        return coef, None, None

    def mean(self, X1, coef) -> np.ndarray:
        """``P(y=1 | x, z=i)``, shape (n, k)."""
        return expit(X1 @ coef.T)

    def sample(self, X1, coef, variance, z, rng) -> np.ndarray:
        p1 = expit(np.einsum("np,np->n", X1, coef[z]))
        return (rng.random(X1.shape[0]) < p1).astype(float)


class MultinomialExpert(_BaseExpert):
    """Multinomial expert ``P(y=c | x, z=i) = softmax_c(coef[i] @ [1, x])``, y in {0..C-1}."""

    name = "multinomial"
    has_variance = False
    is_classifier = True

    def coef_shape(self, n_experts: int, n_features: int, n_classes: int | None = None) -> tuple:
        if n_classes is None or n_classes < 2:
            raise ValueError(f"multinomial experts need n_classes >= 2, got {n_classes}.")
        return (n_experts, n_classes, n_features + 1)

    def n_params(self, n_features: int, n_classes: int | None = None) -> int:
        return (n_classes - 1) * (n_features + 1)

    def class_log_proba(self, X1, coef) -> np.ndarray:
        """``log P(y=c | x, z=i)``, shape (n, k, C)."""
        return log_softmax(np.einsum("np,kcp->nkc", X1, coef), axis=2)

    def log_prob(self, X1, y, coef, variance=None) -> np.ndarray:
        logp = self.class_log_proba(X1, coef)
        idx = np.asarray(y, dtype=np.intp)[:, None, None]
        return np.take_along_axis(logp, np.broadcast_to(idx, (len(y), coef.shape[0], 1)),
                                  axis=2)[:, :, 0]

    def grad_log_prob(self, X1, y, coef, variance, weights):
        k, c, _ = coef.shape
        onehot = _onehot(y, c)
        grad = np.zeros_like(coef, dtype=float)
        for i in range(k):
            _, g = multinomial_logistic_objective(coef[i], X1, onehot, weights[:, i], 0.0, 1)
            grad[i, :-1] = g
        return grad, None

    def score_samples(self, X1, y, coef, variance, weights) -> list[np.ndarray]:
        """Per-sample ``w_ji (1[y_j=c] - p_jic) [1, x_j]`` for the free classes
        ``c < C-1``: [(n, k, C-1, p)]."""
        prob = self.mean(X1, coef)
        resid = _onehot(y, coef.shape[1])[:, None, :] - prob
        g = (weights[:, :, None] * resid)[:, :, :-1, None] * X1[:, None, None, :]
        return [g]

    def fit_one(self, X1, y, w, coef0, variance0=None, *, ridge=0.0, max_iter=300, tol=1e-10,
                method="newton", **_ignored):
        coef = fit_multinomial_logistic(X1, _onehot(y, coef0.shape[0]), w, coef0, ridge=ridge,
                                        max_iter=max_iter, tol=tol, method=method)
        return coef, None, None

    def mean(self, X1, coef) -> np.ndarray:
        """Class probabilities per expert, shape (n, k, C)."""
        return np.exp(self.class_log_proba(X1, coef))

    def sample(self, X1, coef, variance, z, rng) -> np.ndarray:
        prob = np.exp(log_softmax(np.einsum("np,ncp->nc", X1, coef[z]), axis=1))
        u = rng.random(X1.shape[0])[:, None]
        return np.minimum((np.cumsum(prob, axis=1) < u).sum(axis=1), coef.shape[1] - 1)


def _onehot(y: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(y), n_classes))
    out[np.arange(len(y)), np.asarray(y, dtype=np.intp)] = 1.0
    return out


def _effective_points(w: np.ndarray) -> float:
    """Kish effective sample size ``(sum w)^2 / sum w^2``."""
    return float(w.sum() ** 2 / max(float(w @ w), 1e-300))


#: Expert types by name. The estimator's ``expert=`` argument is a key of this dict.
EXPERTS: dict[str, _BaseExpert] = {
    "gaussian": GaussianExpert(),
    "logistic": LogisticExpert(),
    "multinomial": MultinomialExpert(),
}


def get_expert(name: str) -> _BaseExpert:
    """The expert object registered as ``name`` (ValueError listing the names otherwise)."""
    try:
        return EXPERTS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"expert must be one of {tuple(EXPERTS)}, got {name!r}."
        ) from None
