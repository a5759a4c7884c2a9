"""Starting points of mixture-of-experts fits, found by name in :data:`INITIALISERS`.

- ``"random"`` (default): soft responsibilities around ``n_experts`` random centres:
  distinct samples drawn at random as centres in the standardised ``(x, y)`` space (``y``
  one-hot for multinomial experts) and ``tau_ji`` proportional to
  ``exp(-||z_j - c_i||^2 / 2)`` (one E-step of an isotropic unit-variance Gaussian mixture on
  the standardised pairs ``z_j``); then one weighted fit per expert and one gating fit on
  ``tau``. The experts start different (spatially coherent weights) but not from a hard,
  often separable split. Why not the alternatives (paper model, fits 2 nats or more below the
  near-truth fit, 2 starts per data set): meteorits' default, a random *balanced* hard
  partition, gives every expert a random half of the data, so at large ``n`` all experts fit
  the same global regression and the start sits next to the symmetric saddle of the
  likelihood, where the first EM steps barely move (3 of 48 moe-voronoi fits at n >= 2e4
  stopped there after one iteration; with the stop rule of
  :func:`softmix.core.em.run_em`, 1 of 36 fits at n = 1e3-1e5 still ended low); the *hard*
  nearest-centre partition failed in 18 of 96 fits at n = 100-464 (bad local optima); these
  soft weights failed in none of the 132 fits.
- ``"kmeans"``: k-means (k-means++ seeding, :func:`scipy.cluster.vq.kmeans2`) on the same
  standardised pairs, then the same per-group fits.
- ``"near_truth"``: for experiments only: the true parameters plus Gaussian noise whose scale
  shrinks with ``n`` (the authors' "favourable" start, ``ParamNMoE$initParam(nearTrue=TRUE)``;
  see the Notes of :func:`init_near_truth`). Needs ``truth=``. ``"near_truth_authors"``: the
  same start drawn exactly as the authors' code draws it (quirks included).

A user-given :class:`~softmix.moe.model.MoEParams` is the fourth option; the estimator passes it
straight to the EM.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from softmix.core.compat import kmeans2
from softmix.core.special import log_softmax
from softmix.moe.experts import EXPERTS, default_variance_floor
from softmix.moe.gating import add_intercept, fit_gating
from softmix.moe.model import MoEParams

__all__ = [
    "INITIALISERS",
    "NEAR_TRUTH",
    "init_from_partition",
    "init_from_weights",
    "init_kmeans",
    "init_near_truth",
    "init_random",
    "initialize",
]

#: Newton iterations and ridge of the one-off gating / expert fits on hard labels. A hard
#: partition can be separable (k-means clusters split x), where the unpenalised logistic fit
#: has no finite maximiser; the tiny ridge keeps the start finite and barely changes it.
_INIT_MAX_ITER = 50
_INIT_RIDGE = 1e-4


def init_from_partition(
    X: np.ndarray,
    y: np.ndarray,
    labels: np.ndarray,
    n_experts: int,
    expert: str = "gaussian",
    *,
    n_classes: int | None = None,
    ridge: float = 0.0,
    variance_floor: float | None = None,
) -> MoEParams:
    """Parameters fitted to a hard partition: one weighted fit per expert, one gating fit.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    labels : ndarray of shape (n,)
        Expert index of every sample, in ``0..n_experts-1``.
    n_experts : int
    expert : str
        Key of :data:`~softmix.moe.experts.EXPERTS`.
    n_classes : int, optional
        Number of classes (multinomial experts).
    ridge : float
        Ridge of the fits (at least a tiny one, see the module notes).
    variance_floor : float, optional
        Floor of Gaussian variances.

    Returns
    -------
    MoEParams
        As :func:`init_from_weights` with the one-hot rows of ``labels``.
    """
    onehot = np.zeros((len(labels), n_experts))
    onehot[np.arange(len(labels)), labels] = 1.0
    return init_from_weights(X, y, onehot, expert, n_classes=n_classes, ridge=ridge,
                             variance_floor=variance_floor)


def init_from_weights(
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    expert: str = "gaussian",
    *,
    n_classes: int | None = None,
    ridge: float = 0.0,
    variance_floor: float | None = None,
) -> MoEParams:
    """Parameters fitted to responsibilities: one weighted fit per expert, one gating fit.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    weights : ndarray of shape (n, n_experts)
        Non-negative responsibilities (rows summing to 1), or one-hot rows.
    expert, n_classes, ridge, variance_floor
        As in :func:`init_from_partition`.

    Returns
    -------
    MoEParams
        An expert with too little weight to fit (degenerate) keeps a neutral start: zero
        coefficients and, for Gaussian experts, ``var(y)``.
    """
    X1 = add_intercept(X)
    exp = EXPERTS[expert]
    n_experts = weights.shape[1]
    fit_ridge = max(ridge, _INIT_RIDGE)
    gating = fit_gating(X1, weights, None, ridge=fit_ridge, max_iter=_INIT_MAX_ITER)
    coef0 = np.zeros(exp.coef_shape(n_experts, X1.shape[1] - 1, n_classes))
    var0 = np.full(n_experts, max(float(np.var(y)), 1e-12)) if exp.has_variance else None
    floor = default_variance_floor(y) if variance_floor is None else variance_floor
    coef, var, degenerate = exp.fit_weighted(
        X1, y, weights, coef0, var0, ridge=fit_ridge, max_iter=_INIT_MAX_ITER,
        variance_floor=floor, warn=False,
    )
    for i in degenerate:  # neutral start instead of an exactly-fitting tiny group
        coef[i] = coef0[i]
        if var is not None:
            var[i] = var0[i]
    return MoEParams(gating, coef, var, expert)


def pairs(X: np.ndarray, y: np.ndarray, expert: str, n_classes: int | None) -> np.ndarray:
    """The pairs ``(x, y)``, shape (n, d + 1) or, ``y`` one-hot for multinomial experts,
    (n, d + C)."""
    if expert == "multinomial":
        yy = np.zeros((len(y), n_classes))
        yy[np.arange(len(y)), y.astype(np.intp)] = 1.0
    else:
        yy = np.asarray(y, dtype=float)[:, None]
    return np.hstack([X, yy])


def soft_weights(data: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """``softmax_i(-||z_j - c_i||^2 / 2)``, shape (n, k): the soft responsibilities of
    :func:`init_random` around the ``centres`` (k, m) of the standardised pairs ``data``."""
    sq_dist = (np.sum(data**2, axis=1)[:, None] - 2.0 * data @ centres.T
               + np.sum(centres**2, axis=1)[None, :])
    return np.exp(log_softmax(-0.5 * sq_dist, axis=1))


def _standardised_pairs(X: np.ndarray, y: np.ndarray, expert: str,
                        n_classes: int | None) -> np.ndarray:
    """The pairs ``(x, y)`` (``y`` one-hot for multinomial experts), each column standardised."""
    data = pairs(X, y, expert, n_classes)
    sd = data.std(axis=0)
    return (data - data.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _top_up(labels: np.ndarray, n_experts: int, n_features: int,
            rng: np.random.Generator) -> np.ndarray:
    """Give every group at least ``min(d + 2, n // n_experts)`` samples, moved at random from
    the groups above that size, so every expert starts from a fit."""
    min_size = min(n_features + 2, len(labels) // n_experts)
    for i in range(n_experts):
        short = min_size - int(np.sum(labels == i))
        if short > 0:
            counts = np.bincount(labels, minlength=n_experts)
            donors = np.flatnonzero(counts[labels] > min_size)
            take = min(short, donors.size)
            labels[rng.choice(donors, size=take, replace=False)] = i
    return labels


def init_random(X, y, n_experts, expert="gaussian", *, rng, n_classes=None, ridge=0.0,
                variance_floor=None, truth=None) -> MoEParams:
    """Soft responsibilities around random sample centres in standardised ``(x, y)`` + fits.

    ``tau_ji = softmax_i(-||z_j - c_i||^2 / 2)`` with ``c_i`` distinct samples drawn
    uniformly (see the module notes for why this start), then :func:`init_from_weights`.
    """
    data = _standardised_pairs(X, y, expert, n_classes)
    centres = data[rng.choice(len(y), size=n_experts, replace=False)]
    weights = soft_weights(data, centres)
    return init_from_weights(X, y, weights, expert, n_classes=n_classes, ridge=ridge,
                             variance_floor=variance_floor)


def init_kmeans(X, y, n_experts, expert="gaussian", *, rng, n_classes=None, ridge=0.0,
                variance_floor=None, truth=None) -> MoEParams:
    """k-means on standardised ``(x, y)`` (one-hot y for multinomial experts) + per-group fits.

    Clusters smaller than ``d + 2`` samples are topped up with random samples from the others,
    so every expert starts from a fit.
    """
    data = _standardised_pairs(X, y, expert, n_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty clusters are repaired below
        _, labels = kmeans2(data, n_experts, minit="++", rng=rng)
    labels = _top_up(labels, n_experts, X.shape[1], rng)
    return init_from_partition(X, y, labels, n_experts, expert, n_classes=n_classes,
                               ridge=ridge, variance_floor=variance_floor)


def init_near_truth(X, y, n_experts, expert="gaussian", *, rng, truth: MoEParams,
                    n_classes=None, ridge=0.0, variance_floor=None,
                    style: str = "per_coordinate") -> MoEParams:
    """The true parameters plus noise shrinking with ``n`` (experiment-only start).

    Parameters
    ----------
    truth : MoEParams
        The true model (``k* = truth.n_experts <= n_experts``).

    Notes
    -----
    Follows the authors' code (Nguyen, Nguyen, Ho 2023; meteoritsSim ``initParam`` with
    ``nearTrue=TRUE``): fitted expert ``i`` copies true expert ``s_i`` where ``s`` is drawn
    uniformly with replacement until it covers every true expert, and the last fitted expert
    copies the last (reference) true expert. Gating rows get ``N(0, (0.005 n^-0.083)^2)``
    noise, expert coefficients ``N(0, (0.05 n^-0.083)^2)`` and standard deviations
    ``|N(0, (0.005 n^-0.25)^2)|``. Differences from their code: the noise is drawn per
    coordinate (theirs adds one scalar to a whole column) and it perturbs the true *variance*
    through its standard deviation (theirs starts the variance at the true standard deviation).
    The last gating row stays 0 (gauge).

    ``style="authors"`` (``init="near_truth_authors"``) reproduces their code instead,
    quirks included: one noise draw per gating row and per expert, added to its intercept and
    slopes alike (R's recycled ``rnorm(n=1)``), and the variance started at the true
    *standard deviation* plus the noise (``sigma_init = sigma + |N(0, sd^2)|`` stored as the
    variance, i.e. 0.3 or 0.4 instead of 0.09 or 0.16 on the paper's model).
    """
    if not isinstance(truth, MoEParams):
        raise TypeError(
            "init='near_truth' needs the true parameters: pass truth=<MoEParams>, got "
            f"{type(truth).__name__}."
        )
    k_true = truth.n_experts
    if n_experts < k_true:
        raise ValueError(
            f"init='near_truth' needs n_experts >= the true number of experts {k_true}, got "
            f"{n_experts}."
        )
    if truth.expert != expert or truth.n_features != X.shape[1]:
        raise ValueError(
            f"truth is a {truth.expert!r} model on {truth.n_features} feature(s); the fit uses "
            f"{expert!r} experts on {X.shape[1]} feature(s)."
        )
    n = len(y)
    if n_experts == k_true:
        s = np.arange(k_true)
    else:
        while True:
            s = np.append(rng.integers(0, k_true, size=n_experts - 1), k_true - 1)
            if np.unique(s).size == k_true:
                break
    gate_sd, coef_sd, sd_sd = 0.005 * n**-0.083, 0.05 * n**-0.083, 0.005 * n**-0.25
    authors = style == "authors"
    p = truth.gating.shape[1]
    coef_shape = truth.expert_coef[s].shape
    if authors:  # one draw per row, recycled over its coordinates
        gate_noise = np.repeat(rng.standard_normal((n_experts, 1)), p, axis=1)
        coef_noise = np.broadcast_to(
            rng.standard_normal(coef_shape[:-1] + (1,)), coef_shape)
    else:
        gate_noise = rng.standard_normal((n_experts, p))
        coef_noise = rng.standard_normal(coef_shape)
    gating = truth.gating[s] + gate_sd * gate_noise
    gating[-1] = 0.0
    coef = truth.expert_coef[s] + coef_sd * coef_noise
    if expert == "multinomial":
        coef[:, -1, :] = 0.0
    var = None
    if truth.expert_variance is not None:
        sd = np.sqrt(truth.expert_variance[s]) + np.abs(sd_sd * rng.standard_normal(n_experts))
        var = sd if authors else sd**2
    return MoEParams(gating, coef, var, expert)


#: Initialisation name -> function ``(X, y, n_experts, expert, *, rng, n_classes, ridge,
#: variance_floor, truth) -> MoEParams``.
INITIALISERS: dict[str, Callable[..., MoEParams]] = {
    "random": init_random,
    "kmeans": init_kmeans,
    "near_truth": init_near_truth,
    "near_truth_authors": lambda *a, **kw: init_near_truth(*a, style="authors", **kw),
}

#: The initialisations that need ``truth=`` (experiments only).
NEAR_TRUTH = ("near_truth", "near_truth_authors")


def initialize(
    method: str,
    X: np.ndarray,
    y: np.ndarray,
    n_experts: int,
    expert: str = "gaussian",
    *,
    rng: np.random.Generator,
    n_classes: int | None = None,
    ridge: float = 0.0,
    variance_floor: float | None = None,
    truth: MoEParams | None = None,
) -> MoEParams:
    """Starting parameters by the initialisation named ``method`` (see :data:`INITIALISERS`)."""
    if method not in INITIALISERS:
        raise ValueError(f"init must be one of {tuple(INITIALISERS)} or a MoEParams, got "
                         f"{method!r}.")
    return INITIALISERS[method](
        X, y, n_experts, expert, rng=rng, n_classes=n_classes, ridge=ridge,
        variance_floor=variance_floor, truth=truth,
    )
