"""Checks of a fitted mixture of experts that the likelihood alone does not reveal.

- :func:`separation`: the gate or a logistic / multinomial expert separates the data, so the
  maximum likelihood is at infinity and the reported coefficients are wherever the inner
  Newton solver stopped (on separable labels, coefficients of ~3,000 were reported as
  converged with no warning). Detected as R's ``glm`` does: fitted probabilities numerically
  0 or 1 (within ``10 eps``, glm's ``eps = 10 * .Machine$double.eps``) at points that carry
  weight in that fit. The remedy is a ridge (``ridge > 0``: the penalised MLE is finite, so
  the estimator runs this check only when ``ridge == 0``).
- :func:`thin_experts`: experts that hold fewer effective points (the smaller of
  ``sum tau`` and Kish's ``(sum tau)^2 / sum tau^2``) than they have parameters: their estimates are not determined
  by the data (a restart that puts an expert on a handful of points with a tiny variance wins
  on likelihood without being a model of anything).
"""

from __future__ import annotations

import numpy as np

from softmix.moe.experts import EXPERTS
from softmix.moe.gating import gate_log_proba_design
from softmix.moe.model import MoEParams

__all__ = ["SEPARATION_EPS", "WEIGHT_FLOOR", "effective_points", "effective_points_from_sums", "separation", "thin_experts"]

#: Fitted probabilities below this, or above 1 minus it, are "numerically 0 or 1" (R glm).
SEPARATION_EPS = 10.0 * np.finfo(float).eps
#: A point counts for an expert's fit when its responsibility is at least this.
WEIGHT_FLOOR = 1e-3


def separation(X1: np.ndarray, y: np.ndarray, params: MoEParams,
               tau: np.ndarray) -> dict[str, int]:
    """Where fitted probabilities are numerically 0 or 1.

    Parameters
    ----------
    X1 : ndarray of shape (n, d+1)
        Design ``[1, X]``.
    y : ndarray of shape (n,)
    params : MoEParams
    tau : ndarray of shape (n, k)
        Posteriors at ``params`` (the weights of each expert's fit).

    Returns
    -------
    dict
        ``{"gate": count}`` and/or ``{"expert i": count}``: the number of points (with
        weight) whose fitted probabilities in that block are within :data:`SEPARATION_EPS`
        of 0 or 1; empty when there are none.
    """
    out: dict[str, int] = {}
    with np.errstate(under="ignore"):
        gate = np.exp(gate_log_proba_design(X1, params.gating))
    if params.n_experts > 1:
        count = int(np.sum(np.any((gate < SEPARATION_EPS) | (gate > 1 - SEPARATION_EPS), axis=1)))
        if count:
            out["gate"] = count
    expert = EXPERTS[params.expert]
    if expert.is_classifier:
        with np.errstate(under="ignore"):
            prob = expert.mean(X1, params.expert_coef)  # (n, k) or (n, k, C)
        extreme = (prob < SEPARATION_EPS) | (prob > 1 - SEPARATION_EPS)
        if extreme.ndim == 3:
            extreme = np.any(extreme, axis=2)
        for i in range(params.n_experts):
            count = int(np.sum(extreme[:, i] & (tau[:, i] >= WEIGHT_FLOOR)))
            if count:
                out[f"expert {i}"] = count
    return out


def effective_points(tau: np.ndarray) -> np.ndarray:
    """Effective number of points of every expert, shape (k,): the smaller of the expected
    count ``sum_j tau_ji`` and Kish's ``(sum tau)^2 / sum tau^2`` (a weight spread thinly
    over many points has a large Kish size but little information; a few points with full
    weight have a Kish size of only a few points; the smaller of the two is what the
    expert's estimates rest on)."""
    tau = np.asarray(tau, dtype=float)
    return effective_points_from_sums(tau.sum(axis=0), np.sum(tau * tau, axis=0))


def effective_points_from_sums(total: np.ndarray, sum_sq: np.ndarray) -> np.ndarray:
    """:func:`effective_points` from ``sum_j tau_ji`` and ``sum_j tau_ji^2`` (k,) (sums over
    row blocks, :mod:`softmix.moe.dask`)."""
    return np.minimum(total, total**2 / np.maximum(sum_sq, 1e-300))


def thin_experts(tau: np.ndarray | None, params: MoEParams,
                 eff: np.ndarray | None = None) -> dict[int, float]:
    """``{expert: effective points}`` for experts with fewer effective points than the
    parameters of one expert (:meth:`Expert.n_params`); ``eff`` (k,): the effective points
    already computed (then ``tau`` is not used)."""
    n_par = EXPERTS[params.expert].n_params(params.n_features, params.n_classes)
    if eff is None:
        eff = effective_points(np.asarray(tau))
    return {i: float(e) for i, e in enumerate(eff) if e < n_par}
