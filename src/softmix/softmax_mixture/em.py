"""EM for softmax mixtures on counts: O(p L K) per iteration whatever the number of draws N.

Model and objective: see :mod:`softmix.softmax_mixture.model`. One EM iteration at
``(alpha, theta)`` (Bing, Bunea, Niles-Weed and Wegkamp, arXiv 2409.09903, section on EM):

- E-step, in log space: ``log w_jk = log alpha_k + log pi_j(theta_k) - log P(Y = j)``;
- ``alpha_k <- c_k / N`` with ``c_k = sum_j n_j w_jk``;
- atom update: maximise the concave ``Q_k(theta) = sum_j n_j w_jk log pi_j(theta)
  = c_k (theta' m_k - A(theta))``, where ``A(theta) = log sum_l exp(x_l' theta)`` and
  ``m_k = sum_j n_j w_jk x_j / c_k`` is the responsibility-weighted mean of the chosen features.
  Gradient ``c_k (m_k - xbar(theta))`` with ``xbar(theta) = sum_l pi_l(theta) x_l``; Hessian
  ``-c_k Cov_{pi(theta)}(x)``.

The hot path is two matrix products per iteration, both on the user's design X itself (no
whitened copy: :class:`~softmix.softmax_mixture.design.Design` maps the atoms instead): the
scores :meth:`Design.scores` (``(B theta') @ X'``, K x p) and one fused :meth:`Design.project`
(``[n * W, Pi] @ X`` (2K x L), mapped by ``B``) that yields both ``c_k m_k`` and
``xbar(theta_k)``; there is no loop over components in the E-step. When the (2K, p) work arrays
would be large the E-step runs over chunks of the vocabulary (``Design.chunk_rows``).

Two M-steps:

``m_step="newton"`` [chosen: the paper's box is not available to us]
    The exact M-step: damped Newton per component (:func:`softmix.core.solvers.newton_maximize`,
    Armijo backtracking, Cholesky of ``Cov_pi(x)``), warm started at the current atom. Exact EM,
    so the log-likelihood never decreases. Each Newton iteration costs O(p L^2) per component;
    above 30 features the Hessian is matrix-free (Newton-CG, O(p L) per product), except for a
    component whose CG solve used its whole budget (an ill-conditioned ``Cov_pi``: a softmax
    concentrated on a few alternatives, as on real word embeddings), which switches to the
    dense Hessian for the rest of the fit (:func:`_newton_step`; measured in
    docs/guide/softmax-mixture.md, "Real embedding matrices").
``m_step="gradient"`` (the paper's first-order EM)
    One ascent step ``theta_k <- theta_k + eta (m_k - xbar(theta_k))``, eta = ``step_size``.
    Safeguard (spec section 2): the step is accepted only if ``Q_k`` does not decrease, else eta
    is halved (up to ``_MAX_HALVINGS`` times, then the atom is kept). With ``alpha`` updated
    exactly, ``Q`` then never decreases, so (generalised EM) neither does the observed
    log-likelihood. The candidate's ``X @ theta'`` is reused by the next E-step, so an accepted
    step costs no extra product. On a whitened Gaussian design ``Cov_pi(x) ~ I`` and eta = 1 is
    about one Newton step.

``m_step="auto"`` (the estimator's default; resolved once per fit by :func:`select_m_step`)
    In whitened coordinates the Hessian of ``Q_k / c_k`` is ``-Cov_{pi(theta)}(z)``, the Hessian
    of the design's cumulant generating function ``A(theta) = log sum_j exp(z_j' theta)``. For an
    exactly Gaussian design ``A(theta) = ||theta||^2 / 2 + const``, so ``Cov_{pi(theta)}(z) = I``
    at every theta and the gradient step with eta = 1 *is* the Newton step, at O(p L K) instead
    of O(p L^2 K). How far ``Cov_{pi(theta)}(z)`` moves from I is governed by the cumulants of
    order >= 3 of the whitened design (``d/dt Var_{pi(t u)}(u'z)`` at t = 0 is the third
    cumulant along u, the fourth governs the next order), which for standardised data are the
    normalised Hermite coefficients of :func:`softmix.softmax_mixture.moments.design_diagnostics`
    (orders 3 and 4). So: gradient when the whitened design passes that Gaussianity check along
    the directions the atoms move in (those of the centred starting atoms), Newton otherwise
    (and Newton whenever the design is not whitened). The threshold is the diagnostic's own
    (``GAUSSIAN_TOLERANCE``, or 4 sampling standard deviations), not a speed-tuned constant.

Empty components (``c_k = 0``: no responsibility mass, e.g. a zero weight or a complete underflow)
keep their atom and weight 0 and raise a :class:`DegenerateComponentWarning` naming them.

Unidentified designs (some ``c`` with ``x_j' c`` constant over j, e.g. a constant column): detected
once by :func:`~softmix.softmax_mixture.design.prepare_design` on the design's correlation
spectrum (scale-free: rescaling a column rescales the atoms' coordinate and changes nothing
else), which warns (:class:`SoftmixWarning`) and fits in the identified subspace: the returned
atoms have **zero component along the unidentified directions** (the starting atoms' components
along those directions are projected out). The log-likelihood is unaffected.

Stop rule (:func:`stationarity`, the hook of :func:`softmix.core.em.run_em`): ``tol`` is in nats,
the log-likelihood gain that one exact M-step from the current iterate is predicted to make,
``sum_k c_k g_k' (Cov_pi(z) + ...)^{-1} g_k / 2`` (atoms, the Newton decrement of each ``Q_k``)
plus ``sum_k (c_k - N alpha_k)^2 / (2 N alpha_k)`` (weights, likewise). By Fisher's identity ``c_k
g_k`` is the observed score of atom k, so this is zero exactly at stationary points; it is the
same at N = 1e3 and N = 1e10 for the same distance from the optimum in standard errors. The
Newton M-step's inner stop is tied to it (each component stops when its predicted gain is
below ``tol / (10 K)`` nats, never relative to ``|Q_k|``), so EM cannot stall short of ``tol``.
Its value is ``FitResult.criterion_value`` (``criterion="newton_decrement"``). With ``tol=0`` (a
fixed number of iterations) nothing is decided on it, so the returned parameters get the cheap
value instead, at no cost beyond the E-step the final log-likelihood needs: the same sum with
``Cov_pi(z)`` replaced by the design's ``Var(z)`` (I when whitened), ``criterion=
"score_gain_whitened"``; exact where ``Cov_pi(z) = Var(z)``, e.g. at uniform atoms. The exact
value at any parameters is :func:`stationarity_of`.

Degenerate answers that a tolerance alone cannot see, each named by a warning and reported
``converged=False``: counts on a face of the design's convex hull (no MLE, ``stop_reason=
"no_mle"``; remedy ``ridge``), a stationary point with coincident atoms (a saddle: perturbed and
continued, ``stop_reason="saddle"`` if that fails), and more parameters than the ``p - 1`` free
choice probabilities (:func:`~softmix.softmax_mixture.model.n_parameters`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
from scipy.sparse.linalg import LinearOperator

from softmix._validation import check_choice, check_float, check_int
from softmix.core import xp as _xp
from softmix.core.em import run_em
from softmix.core.result import FitResult, chain
from softmix.core.solvers import CG_MAX_ITER, newton_direction, newton_maximize
from softmix.core.special import logsumexp
from softmix.exceptions import ConvergenceWarning, DegenerateComponentWarning, SoftmixWarning
from softmix.softmax_mixture.design import (
    Design,
    face_check_skipped,
    face_direction,
    identity_design,
    prepare_design,
)
from softmix.softmax_mixture.faces import FACE_JUMP_NATS, FaceMonitor, pullback_gain
from softmix.softmax_mixture.model import (
    _CHUNK_ROWS,
    SoftmaxMixtureParams,
    _dot_counts,
    _log_weights,
    check_counts,
    check_features,
    params_from_vector,
    params_to_vector,
)
from softmix.softmax_mixture.moments import (
    GAUSSIAN_TOLERANCE,
    hermite_polynomials,
)
from softmix.softmax_mixture.polish import SlowMonitor, polish_affordable

__all__ = [
    "DEFAULT_MAX_ITER",
    "DEFAULT_M_STEP",
    "DEFAULT_TOL",
    "M_STEPS",
    "Design",
    "EStep",
    "coincident_pairs",
    "component_objective",
    "e_step",
    "fit_em",
    "make_em_map",
    "prepare_design",
    "select_m_step",
    "stationarity_of",
]

M_STEPS = ("auto", "newton", "gradient")

#: [chosen, measured; numbers in docs/guide/softmax-mixture.md] The exact Newton M-step. On Gaussian designs
#: (isotropic or not, thanks to whitening) the paper's gradient step needs as many EM iterations
#: and is cheaper per iteration (O(pLK) vs O(pL^2 K): ~1.5x at L = 10, ~20x at L = 100), but on a
#: heavy-tailed design (Student-t(3) features) it had not converged after 3000 iterations where
#: Newton converged in 3-4. Robustness first for :func:`fit_em` (used by the experiments that
#: study EM itself); the estimator's default is ``"auto"``, which picks the gradient step exactly
#: on Gaussian-like designs (:func:`select_m_step`).
DEFAULT_M_STEP = "newton"
DEFAULT_MAX_ITER = 1000
#: [chosen] The stop rule's threshold in nats (:func:`stationarity`: the log-likelihood one exact
#: M-step from the current iterate is predicted to gain, ``g' H_c^{-1} g / 2``). Scale-free: a
#: remaining gain of eps nats along the worst direction is ``sqrt(2 eps)`` standard errors of
#: the complete-data problem, whatever N is; the observed-data remaining gain is at most
#: ``eps / (1 - lambda)`` with lambda the largest fraction of missing information (EM's linear
#: rate), so 1e-7 nats leaves the optimisation error below ``4.5e-4 / sqrt(1 - lambda)``
#: standard errors (0.0045 at lambda = 0.99) at N = 1e3 and N = 1e10 alike. (The old rule, a
#: relative change 1e-10 of ``|l| ~ N log p``, stopped a fixed *fraction* short: at N = 1e10,
#: p = 2000, 55 nats short, the atoms 0.0006 from the optimum.)
DEFAULT_TOL = 1e-7

_MAX_HALVINGS = 30
_NEWTON_MAX_ITER = 20
#: [chosen] Longest Newton step per inner iteration, in working (whitened) units: a softmax
#: concentrated on few alternatives has a nearly singular Hessian, whose raw Newton step is huge.
_NEWTON_MAX_STEP = 2.0
_NEWTON_RIDGE = 1e-8
#: [chosen, measured] Above this many (identified) features the Newton M-step is matrix-free:
#: conjugate gradients on Hessian-vector products, O(p L) each, instead of the O(p L^2) Hessian.
_NEWTON_DENSE_MAX_FEATURES = 30


@dataclass
class EStep:
    """Sufficient statistics of one E-step at ``(alpha, theta)``.

    Attributes
    ----------
    log_likelihood : float
        ``sum_j n_j log P(Y = j)`` at the input parameters.
    log_partition : ndarray of shape (K,)
        ``A(theta_k)``.
    mass : ndarray of shape (K,)
        ``c_k = sum_j n_j w_jk`` (``alpha_k^+ = c_k / N``).
    weighted_sums : ndarray of shape (K, r)
        ``sum_j n_j w_jk z_j = c_k m_k`` (working coordinates of the design).
    mean_features : ndarray of shape (K, r)
        ``xbar(theta_k) = sum_j pi_j(theta_k) z_j``.
    scores : ndarray of shape (K, p) or None
        The scores ``design.scores(atoms)`` the E-step used (the gradient M-step's start).
    """

    log_likelihood: float
    log_partition: np.ndarray
    mass: np.ndarray
    weighted_sums: np.ndarray
    mean_features: np.ndarray
    scores: np.ndarray | None = None

    def subset(self, components: np.ndarray) -> EStep:
        """The statistics of some components only (``log_likelihood`` is the mixture's)."""
        idx = np.asarray(components)
        return EStep(self.log_likelihood, self.log_partition[idx], self.mass[idx],
                     self.weighted_sums[idx], self.mean_features[idx],
                     None if self.scores is None else _rows_of(self.scores, idx))


def _row_logsumexp(scores: np.ndarray) -> np.ndarray:
    """``log sum_j exp(scores_kj)`` per row, max-shifted (a lean scipy.special.logsumexp)."""
    if not _xp.is_numpy(scores):  # another namespace (softmix.core.xp): the (K,) on the host
        return _xp.to_host(_xp.logsumexp(scores, axis=-1))
    row_max = scores.max(axis=-1, keepdims=True)
    shifted = scores - row_max
    return (row_max + np.log(np.exp(shifted, out=shifted).sum(axis=-1, keepdims=True)))[..., 0]


def _softmax_rows(scores, log_partition: np.ndarray):
    """``exp(scores - log_partition[:, None])`` in the namespace of ``scores``."""
    if _xp.is_numpy(scores):
        return np.exp(scores - log_partition[:, None])
    return _xp.namespace(scores).exp(scores - _xp.from_host(log_partition[:, None], scores))


def _rows_of(scores, idx: np.ndarray):
    """``scores[idx]`` (integer rows) in any namespace."""
    if _xp.is_numpy(scores):
        return scores[idx]
    xp = _xp.namespace(scores)
    return xp.take(scores, _xp.from_host(idx, scores, xp.int64), axis=0)


def _set_rows(scores, idx: np.ndarray, rows):
    """``scores[idx] = rows`` (NumPy), or row by row for another namespace (integer-array
    assignment is not in the array API)."""
    if _xp.is_numpy(scores):
        scores[idx] = rows
        return scores
    for i, k in enumerate(idx.tolist()):
        scores[k, :] = rows[i, :]
    return scores


#: Scores more than this below their row's maximum could underflow exp() (exp(-745) = 0);
#: above it, the E-step can work in probability space without losing anything (see e_step).
_SAFE_RANGE = 600.0


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` in float64. With a float32 design (``fit_em(dtype="float32")``) the product runs
    in float32 on the design itself (half the memory traffic, no float64 copy of it) and only
    the small result is widened: every exp, sum and log of EM stays in float64."""
    if a.dtype == np.float32 or b.dtype == np.float32:
        return (a.astype(np.float32, copy=False) @ b.astype(np.float32, copy=False)).astype(
            np.float64
        )
    return a @ b


def _as_design(features) -> Design:
    """A :class:`Design` as is; a raw (L, p) ``features_t`` array as the identity design."""
    if isinstance(features, Design):
        return features
    return identity_design(np.asarray(features).T)


def e_step(
    design: Design | np.ndarray,
    counts: np.ndarray,
    params: SoftmaxMixtureParams,
    scores: np.ndarray | None = None,
) -> EStep:
    """E-step on counts: O(p L K), two matrix products, no loop over components.

    Parameters
    ----------
    design : Design or ndarray of shape (L, p)
        The prepared design (parameters in its working coordinates), or a transposed raw
        design ``X'`` (parameters in the user's coordinates).
    counts : ndarray of shape (p,)
    params : SoftmaxMixtureParams
    scores : ndarray of shape (K, p), optional
        ``design.scores(params.atoms)`` when already computed (reused from a line search).

    Notes
    -----
    The design-sized work is exactly ``design.scores`` (K, p) and ``design.project`` (2K, p) ->
    (2K, r) (the rows ``n * W`` and ``Pi``); the vocabulary is processed in
    ``design.chunks()`` so the (2K, chunk) work arrays stay small, with the normalisers
    ``A(theta_k)`` from the whole (K, p) scores first. Max-shifted throughout. Where every score
    of a chunk is within ``_SAFE_RANGE`` (600) of its row's maximum, no ``pi_j(theta_k)`` can
    underflow (each is >= exp(-600) / p), so the responsibilities ``alpha_k pi_jk / sum_k'
    alpha_k' pi_jk'`` are computed in probability space: one exp over the scores and one log
    over the chosen alternatives, nothing clipped. Otherwise the same quantities are computed
    in log space (logsumexp over components).
    """
    design = _as_design(design)
    if not _xp.is_numpy(design.features):
        return _e_step_xp(design, counts, params, scores)
    k = params.n_components
    if scores is None:
        scores = np.empty((k, design.n_alternatives))
        for rows in design.chunks():
            scores[:, rows] = design.scores(params.atoms, rows)
    row_max = scores.max(axis=1, keepdims=True)
    norm = np.zeros((k, 1))
    chunks = design.chunks()
    # one chunk (the usual case): exp(scores - max) is computed once, in the work array, and
    # rescaled to pi below (an exp and a fresh (K, p) array fewer per E-step)
    single = len(chunks) == 1
    stacked = np.empty((2 * k, design.n_alternatives if single else 0))
    for rows in chunks:
        shifted = (np.subtract(scores, row_max, out=stacked[k:]) if single
                   else scores[:, rows] - row_max)
        norm += np.exp(shifted, out=shifted).sum(axis=1, keepdims=True)
    log_partition = (row_max + np.log(norm))[:, 0]
    weights = params.weights
    log_weights = _log_weights(weights)
    loglik = 0.0
    products = np.zeros((2 * k, design.n_working))
    mass = np.zeros(k)
    for rows in chunks:
        block = scores[:, rows]
        n_c = counts[rows]
        chosen = n_c > 0
        if not single:  # (single: stacked[k:] holds exp(scores - max) already)
            stacked = np.empty((2 * k, block.shape[1]))
        if float(np.min(block.min(axis=1) - row_max[:, 0])) > -_SAFE_RANGE:
            if single:
                pi = np.divide(stacked[k:], norm, out=stacked[k:])
            else:
                pi = np.subtract(block, log_partition[:, None], out=stacked[k:])
                np.exp(pi, out=pi)
            mix = weights @ pi
            loglik += float(n_c[chosen] @ np.log(mix[chosen]))
            np.multiply(pi, n_c / mix, out=stacked[:k])
            stacked[:k] *= weights[:, None]
        else:
            log_pi = block - log_partition[:, None]
            joint = log_pi + log_weights[:, None]
            log_mix = logsumexp(joint, axis=0)
            loglik += _dot_counts(n_c, log_mix)
            # an alternative of mixture probability 0 (underflow) gets zero responsibilities;
            # if it was chosen, the log-likelihood is -inf and the driver stops.
            log_mix = np.where(np.isfinite(log_mix), log_mix, np.inf)
            np.exp(joint - log_mix, out=stacked[:k])
            stacked[:k] *= n_c
            np.exp(log_pi, out=stacked[k:])
        mass += stacked[:k].sum(axis=1)
        products += design.project(stacked, rows)  # (2K, r)
    return EStep(
        log_likelihood=loglik,
        log_partition=log_partition,
        mass=mass,
        weighted_sums=products[:k],
        mean_features=products[k:],
        scores=scores,
    )


def _e_step_xp(design: Design, counts, params: SoftmaxMixtureParams, scores=None) -> EStep:
    """:func:`e_step` with the design in another array namespace (:mod:`softmix.core.xp`):
    the same formulas (probability-space and log-space branches), the (K, p) and (2K, p) work
    in float64 on the design's device, in one chunk (a device has the memory: (2K, p) float64 is
    41 MB at K = 10, p = 256,000); the statistics returned are NumPy float64."""
    k = params.n_components
    if scores is None:
        scores = design.scores(params.atoms)  # (K, p) float64 on the device
    xp = _xp.namespace(scores)
    n = counts if not _xp.is_numpy(counts) else _xp.from_host(counts, scores)
    chosen = n > 0
    zero = xp.zeros_like(scores[0, :])
    weights = _xp.from_host(params.weights, scores)
    row_max = xp.max(scores, axis=1, keepdims=True)
    shifted = scores - row_max
    if float(xp.min(shifted)) > -_SAFE_RANGE:
        pi = xp.exp(shifted)
        norm = xp.sum(pi, axis=1, keepdims=True)
        pi = pi / norm
        log_partition = _xp.to_host(row_max + xp.log(norm))[:, 0]
        mix = xp.matmul(weights, pi)  # (p,)
        loglik = float(xp.sum(xp.where(chosen, n * xp.log(xp.where(chosen, mix, zero + 1.0)),
                                       zero)))
        resp = pi * (n / mix) * weights[:, None]
    else:
        log_partition_d = _xp.logsumexp(scores, axis=1, keepdims=True)
        log_partition = _xp.to_host(log_partition_d)[:, 0]
        log_pi = scores - log_partition_d
        joint = log_pi + _xp.from_host(_log_weights(params.weights), scores)[:, None]
        log_mix = _xp.logsumexp(joint, axis=0)
        loglik = float(xp.sum(xp.where(chosen, n * log_mix, zero)))
        log_mix = xp.where(xp.isfinite(log_mix), log_mix, zero + float("inf"))
        resp = xp.exp(joint - log_mix) * n
        pi = xp.exp(log_pi)
    products = design.project(xp.concat([resp, pi], axis=0))  # (2K, r) on the host
    return EStep(
        log_likelihood=loglik,
        log_partition=log_partition,
        mass=_xp.to_host(xp.sum(resp, axis=1)),
        weighted_sums=products[:k],
        mean_features=products[k:],
        scores=scores,
    )


def component_objective(
    design: Design | np.ndarray, target: np.ndarray, theta: np.ndarray, order: int = 2,
    *, matrix_free: bool = False,
):
    """The atom M-step objective ``q(theta) = theta' m - A(theta)`` (``= Q_k / c_k``).

    Parameters
    ----------
    design : Design or ndarray of shape (L, p)
        The prepared design (``theta`` in its working coordinates), or a transposed raw design.
    target : ndarray of shape (L,)
        ``m_k``, the responsibility-weighted mean of the chosen features.
    theta : ndarray of shape (L,)
    order : {0, 2}

    Returns
    -------
    value : float
        ``-inf`` when ``theta`` is so large that the scores overflow.
    grad : ndarray of shape (L,)
        ``m - xbar(theta)`` (only for ``order=2``).
    hess : ndarray of shape (L, L) or LinearOperator
        ``-Cov_{pi(theta)}(x)`` (only for ``order=2``); with ``matrix_free=True`` a
        :class:`scipy.sparse.linalg.LinearOperator` computing ``-Cov_pi(x) v`` in O(p L)
        (``X'(pi * (X v)) - xbar (xbar' v)``) instead of forming it in O(p L^2): two calls of
        the design primitives per product (``scores`` of ``v``, ``project`` of ``pi * (X v)``).
    """
    design = _as_design(design)
    theta = np.asarray(theta, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):  # a wild trial step: rejected by Newton
        s = design.scores(theta[None, :])[0, :]
        log_z = float(_row_logsumexp(s))
        value = float(theta @ target) - log_z
    if not np.isfinite(value):
        value = -np.inf
    if order == 0:
        return value
    pi = _softmax_rows(s[None, :], np.array([log_z]))[0, :]
    xbar = design.project(pi[None, :])[0]
    length = design.n_working
    if matrix_free:
        def neg_cov_times(v):
            u = design.scores(np.ravel(v)[None, :])[0, :]
            return xbar * float(xbar @ np.ravel(v)) - design.project((pi * u)[None, :])[0]

        return value, target - xbar, LinearOperator((length, length), matvec=neg_cov_times,
                                                    dtype=float)
    return value, target - xbar, -design.weighted_covariance(_xp.host(pi), xbar)


def _newton_objective(design: Design, target: np.ndarray, penalty=None, *, dense: bool = False):
    """``component_objective`` for :func:`newton_maximize`, with the Hessian made definite.

    [chosen] ``-(Cov_pi(x) + _NEWTON_RIDGE I)`` (working coordinates are whitened, so I is the
    design's own scale): where the softmax concentrates on a few alternatives ``Cov_pi(x)`` is
    nearly singular and the step becomes a capped gradient step instead of an unbounded one.
    The maximiser is unchanged (the objective and gradient are exact). ``penalty`` (r,), when
    given, adds ``-penalty . theta^2 / 2`` to the objective (the ``ridge`` prior, per
    observation of the component: ``ridge * variances / c_k``) and to the Hessian.

    Above ``_NEWTON_DENSE_MAX_FEATURES`` features the Hessian is a matrix-free operator unless
    ``dense=True``; the returned function then records in ``fun.cg_truncated`` whether any
    conjugate-gradient solve on it used the whole ``CG_MAX_ITER`` budget (see
    :func:`_newton_step`).
    """
    length = design.n_working
    matrix_free = length > _NEWTON_DENSE_MAX_FEATURES and not dense
    diag = _NEWTON_RIDGE + (0.0 if penalty is None else penalty)

    def fun(theta: np.ndarray, order: int):
        if order == 0:
            value = component_objective(design, target, theta, 0)
            return value if penalty is None else value - 0.5 * float(penalty @ theta**2)
        value, grad, hess = component_objective(design, target, theta, 2,
                                                matrix_free=matrix_free)
        if penalty is not None:
            value = value - 0.5 * float(penalty @ theta**2)
            grad = grad - penalty * theta
        if matrix_free:
            op, calls = hess, [0]

            def matvec(v):
                calls[0] += 1
                if calls[0] >= CG_MAX_ITER:
                    fun.cg_truncated = True  # type: ignore[attr-defined]
                return op.matvec(v) - diag * np.ravel(v)

            return value, grad, LinearOperator(op.shape, matvec=matvec, dtype=float)
        return value, grad, hess - np.diag(np.broadcast_to(diag, (length,)))

    fun.cg_truncated = False  # type: ignore[attr-defined]
    return fun


#: [chosen, measured] Largest number of (identified) features for which a component whose
#: matrix-free Newton solve is truncated switches to the dense Hessian. Forming ``Cov_pi(z)``
#: costs ~L/40 times the CG budget in flops (2 p L^2 vs 20 x 4 p L) but runs at BLAS-3 speed:
#: on MiniLM's 21,719 x 384 word embeddings one dense Newton M-step took 1.0 s against 1.5 s
#: for the truncated CG one, and gained 179 nats against 6 (benchmarks/RESULTS.md, section
#: "real vocabulary"). Above this the dense Hessian (p L^2 per component) is not affordable.
_NEWTON_DENSE_FALLBACK_MAX_FEATURES = 1024


def _newton_step(design: Design, target, theta, penalty, dense, **options):
    """One component's Newton M-step; returns ``(NewtonResult, dense_used)``.

    [chosen] Matrix-free Newton-CG first (when above ``_NEWTON_DENSE_MAX_FEATURES``); if a CG
    solve used its whole budget, the direction is not a Newton direction (truncated CG on an
    ill-conditioned ``Cov_pi(z)``: a softmax concentrated on a few alternatives) and the
    predicted gain it reports is an underestimate, so the step is redone with the dense
    Hessian (Cholesky) when ``L <= _NEWTON_DENSE_FALLBACK_MAX_FEATURES``. ``dense=True`` (the
    component needed it before in this fit: curvature changes slowly) goes dense directly.
    """
    fun = _newton_objective(design, target, penalty, dense=dense)
    res = newton_maximize(fun, theta, **options)
    if (not dense and fun.cg_truncated
            and design.n_working <= _NEWTON_DENSE_FALLBACK_MAX_FEATURES):
        return newton_maximize(_newton_objective(design, target, penalty, dense=True),
                               theta, **options), True
    return res, dense


def _newton_decrement(design: Design, target, theta, penalty, dense) -> float:
    """``g' (-H)^{-1} g`` of one component's M-step objective at ``theta`` (the same dense or
    matrix-free choice as :func:`_newton_step`: a truncated CG solve would underestimate it)."""
    fun = _newton_objective(design, target, penalty, dense=dense)
    _, grad, hess = fun(theta, 2)
    value = max(float(grad @ newton_direction(grad, hess)), 0.0)
    if (not dense and fun.cg_truncated
            and design.n_working <= _NEWTON_DENSE_FALLBACK_MAX_FEATURES):
        return _newton_decrement(design, target, theta, penalty, True)
    return value


#: [chosen] The Newton M-step's inner tolerance when ``tol=0`` (a fixed number of EM iterations),
#: nats per component: below it a further inner step is meaningless (~1e-6 standard errors).
_INNER_TOL_FLOOR = 1e-12


def make_em_map(
    features: np.ndarray | Design,
    counts: np.ndarray,
    *,
    m_step: str = DEFAULT_M_STEP,
    step_size: float = 1.0,
    newton_max_iter: int = _NEWTON_MAX_ITER,
    tol: float = DEFAULT_TOL,
    ridge: float = 0.0,
) -> Callable[[SoftmaxMixtureParams], tuple[SoftmaxMixtureParams, float]]:
    """The EM map ``params -> (next_params, objective(params))`` for :func:`run_em`.

    Parameters
    ----------
    features : ndarray of shape (p, L) or Design
        The design: the map then works on parameters in the user's coordinates; or a
        :class:`Design` from :func:`prepare_design`: the map then works on *working*
        parameters (``design.to_working`` / ``design.from_working`` convert), as :func:`fit_em`
        does.
    counts : ndarray of shape (p,)
    m_step : {"newton", "gradient"}
    step_size : float
        eta of the gradient M-step (ignored by Newton).
    newton_max_iter : int
        Newton iterations per component and EM iteration (``m_step="newton"``).
    tol : float
        The EM stop tolerance in nats (:data:`DEFAULT_TOL`): the Newton M-step stops a
        component when its predicted remaining gain ``c_k decrement / 2`` is below
        ``tol / (10 K)`` nats (absolute, so the same at any N; 1e-12 nats when ``tol=0``).
    ridge : float
        Penalty ``ridge / 2 * sum_k Var_j(x_j' theta_k)`` on the atoms (0: maximum likelihood);
        the objective is then the penalised log-likelihood (see :func:`fit_em`).

    Returns
    -------
    callable
        The EM map. It carries ``em_map.stationarity(params, exact) -> float``, the hook
        :func:`softmix.core.em.run_em` takes (see :func:`stationarity`), which reuses the
        E-step and M-step just done at ``params``, and ``em_map.objective(params) -> float``
        (the objective the map returns), which shares the E-step with both, and
        ``em_map.prime_scores(atoms, scores)``, which hands the next E-step at parameters with
        these very ``atoms`` their scores (:func:`fit_em`: the auto rule's).

    Notes
    -----
    The map keeps some state, invisible to the caller: the scores ``design.scores(atoms)`` of the
    last gradient step (reused by the next E-step when it is called with those very
    parameters), the stationarity by-products of the last call, and the set of components
    already reported empty (one warning per component and fit).
    """
    check_choice(m_step, "m_step", ("newton", "gradient"))  # "auto" is resolved by fit_em
    design = features if isinstance(features, Design) else identity_design(
        np.asarray(features, dtype=float))
    if ridge and not design.exact:
        raise ValueError("ridge > 0 needs a design prepared from every row (the penalty's metric "
                         "Var_j(x_j' theta) is exact): pass design.exact_design().")
    variances = design.variances
    counts = np.asarray(counts, dtype=float)
    # the counts the E-step multiplies, moved once per map to the design's device
    counts_e = counts if _xp.is_numpy(design.features) else _xp.from_host(
        counts, design.features, _xp.namespace(design.features).float64)
    n_total = float(counts.sum())
    cache: dict = {}
    warned: set[int] = set()
    state: dict = {}
    dense_components: set[int] = set()  # components whose Newton-CG solve was truncated

    def penalty_of(mass):
        """Per-component penalty diagonal (K, r) in per-observation units, or None."""
        if ridge == 0.0:
            return None
        # a component with (numerically) no mass is held at 0 by the prior; 1e-100 keeps the
        # per-observation penalty finite
        return ridge * variances[None, :] / np.maximum(mass, 1e-100)[:, None]

    def stats_at(params: SoftmaxMixtureParams) -> EStep:
        """The E-step at ``params``, computed once per parameter object (the objective, the
        map and the stop rule at the same iterate share it)."""
        if cache.get("at") is params:
            return cache["stats"]
        scores = cache.get("scores") if cache.get("atoms") is params.atoms else None
        cache.clear()
        cache["at"], cache["stats"] = params, e_step(design, counts_e, params, scores)
        return cache["stats"]

    def objective(params: SoftmaxMixtureParams) -> float:
        value = stats_at(params).log_likelihood
        if ridge:
            value -= 0.5 * ridge * float(np.sum(variances * np.asarray(params.atoms) ** 2))
        return value

    def em_map(params: SoftmaxMixtureParams) -> tuple[SoftmaxMixtureParams, float]:
        stats = stats_at(params)
        mass = stats.mass
        empty = mass <= 0.0
        for k in np.flatnonzero(empty):
            if k not in warned:
                warned.add(int(k))
                warnings.warn(
                    f"softmax mixture component {k} is empty (no responsibility mass: weight "
                    f"{params.weights[k]:.3g}); its weight is set to 0 and its atom frozen. "
                    "Use fewer components, restarts (n_init) or a different initialisation.",
                    DegenerateComponentWarning,
                    stacklevel=4,
                )
        weights = mass / n_total
        targets = stats.weighted_sums / np.where(empty, 1.0, mass)[:, None]  # (K, L): m_k
        atoms = params.atoms
        pen = penalty_of(mass)
        # q_k(theta_k) = theta_k' m_k - A(theta_k) [- pen/2 theta^2]: the M-step objective now
        q_old = np.einsum("kl,kl->k", atoms, targets) - stats.log_partition
        if pen is not None:
            q_old = q_old - 0.5 * np.einsum("kl,kl->k", pen, atoms**2)
        gains = np.zeros(params.n_components)
        if m_step == "gradient":
            new_atoms, new_scores, grads = _gradient_step(
                design, atoms, targets, stats.mean_features, q_old, empty, step_size, pen,
                variances, stats.scores,
            )
            # cheap metric: the Hessian taken as c (Var(z) + pen), exact when Cov_pi(z) = Var(z)
            curv = variances if pen is None else variances + pen
            gains = 0.5 * mass * np.sum(grads**2 / curv, axis=1)
        else:
            new_atoms, new_scores = atoms.copy(), None
            inner = tol / (10.0 * params.n_components) if tol > 0 else _INNER_TOL_FLOOR
            for k in np.flatnonzero(~empty):
                res, use_dense = _newton_step(
                    design, targets[k], atoms[k], None if pen is None else pen[k],
                    int(k) in dense_components,
                    max_iter=newton_max_iter,
                    max_step=_NEWTON_MAX_STEP,
                    tol=inner,
                    weight=float(mass[k]),
                )
                if use_dense:
                    dense_components.add(int(k))
                new_atoms[k] = res.x
                gains[k] = 0.5 * mass[k] * res.decrement0
        new = SoftmaxMixtureParams._from_em(weights, new_atoms)  # fresh arrays, owned here
        if new_scores is not None:
            cache["atoms"], cache["scores"] = new.atoms, new_scores
        state.clear()
        state.update(at=params, mass=mass, targets=targets, gains=gains,
                     exact=m_step == "newton")
        value = stats.log_likelihood
        if ridge:
            value -= 0.5 * ridge * float(np.sum(variances * atoms**2))
        return new, value

    def stationarity(params: SoftmaxMixtureParams, exact: bool) -> float:
        if state.get("at") is not params:
            # the returned parameters (never mapped): the E-step only (shared with the
            # objective), the cheap metric of the gradient step, then the exact one if asked
            stats = stats_at(params)
            mass = stats.mass
            targets = stats.weighted_sums / np.where(mass <= 0, 1.0, mass)[:, None]
            pen = penalty_of(mass)
            grads = targets - stats.mean_features
            if pen is not None:
                grads = grads - pen * np.asarray(params.atoms)
            grads[mass <= 0] = 0.0
            curv = variances if pen is None else variances + pen
            state.clear()
            state.update(at=params, mass=mass, targets=targets, exact=False,
                         gains=0.5 * mass * np.sum(grads**2 / curv, axis=1))
        mass, targets, gains = state["mass"], state["targets"], state["gains"]
        if exact and not state["exact"] and design.n_working > _NEWTON_DENSE_MAX_FEATURES:
            pen = penalty_of(mass)
            live = np.flatnonzero(mass > 0)
            gains = np.zeros_like(gains)
            atoms_now = np.asarray(params.atoms, dtype=float)
            done = cache["stats"] if cache.get("at") is params else None  # its E-step
            dec, truncated = _batched_decrements(
                design, atoms_now[live], targets[live], None if pen is None else pen[live],
                None if done is None else done.subset(live))
            gains[live] = 0.5 * mass[live] * dec
            if design.n_working <= _NEWTON_DENSE_FALLBACK_MAX_FEATURES:
                # a CG solve that used its whole budget underestimates the decrement (an
                # ill-conditioned Cov_pi): redo those components, and the dense ones, exactly
                for i, k in enumerate(live):
                    if truncated[i] or int(k) in dense_components:
                        gains[k] = 0.5 * mass[k] * _newton_decrement(
                            design, targets[k], atoms_now[k],
                            None if pen is None else pen[k], True)
            state.update(gains=gains, exact=True)
        elif exact and not state["exact"]:
            pen = penalty_of(mass)
            gains = np.zeros_like(gains)
            for k in np.flatnonzero(mass > 0):
                gains[k] = 0.5 * mass[k] * _newton_decrement(
                    design, targets[k], np.asarray(params.atoms[k], dtype=float),
                    None if pen is None else pen[k], int(k) in dense_components)
            state.update(gains=gains, exact=True)
        return _weight_gain(mass, params.weights, n_total) + float(np.sum(gains))

    def prime_scores(atoms: np.ndarray, scores: np.ndarray) -> None:
        """Hand the E-step at parameters whose atoms are this very array its scores
        ``design.scores(atoms)`` (computed once for the auto rule)."""
        cache.clear()
        cache["atoms"], cache["scores"] = atoms, scores

    em_map.stationarity = stationarity  # type: ignore[attr-defined]
    em_map.objective = objective  # type: ignore[attr-defined]
    em_map.prime_scores = prime_scores  # type: ignore[attr-defined]
    return em_map


def _batched_decrements(design: Design, atoms: np.ndarray, targets: np.ndarray,
                        penalty: np.ndarray | None, stats: EStep | None = None,
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Newton decrements ``g_k' H_k^{-1} g_k`` of every component at once, matrix-free, and
    which components' CG solve used its whole ``CG_MAX_ITER`` budget (truncated: the value is
    then an underestimate, redone densely by the caller when affordable).

    The same truncated conjugate gradients as :func:`softmix.core.solvers.newton_direction`
    (``CG_RTOL``, ``CG_MAX_ITER``, the gradient itself when CG gives no ascent direction) on
    ``H_k = Cov_{pi(theta_k)}(z) + _NEWTON_RIDGE + penalty_k`` (that of
    :func:`_newton_objective`), run for the K components together: each CG iteration is one
    ``design.scores`` (K, p) and one ``design.project`` (K, p) instead of K thin products.
    ``stats``, the E-step at these atoms (its rows for these components, :meth:`EStep.subset`),
    supplies ``pi(theta_k)`` (from its scores) and ``xbar(theta_k)``, saving one of each.
    """
    from softmix.core.solvers import CG_RTOL

    if atoms.shape[0] == 0:
        return np.zeros(0), np.zeros(0, dtype=bool)
    chunks = design.chunks()
    if stats is None or stats.scores is None:
        scores = _full_scores(design, atoms)
        pi = _softmax_rows(scores, _row_logsumexp(scores))
        xbar = sum(design.project(pi[:, rows], rows) for rows in chunks)
    else:
        pi = _softmax_rows(stats.scores, stats.log_partition)
        xbar = stats.mean_features
    grad = targets - xbar
    diag = _NEWTON_RIDGE + (0.0 if penalty is None else penalty)
    if penalty is not None:
        grad = grad - penalty * atoms

    def hess_times(v):  # (m, r) -> Cov_pi v + diag v, row by row
        u = _full_scores(design, v)
        cov_v = sum(design.project(pi[:, rows] * u[:, rows], rows) for rows in chunks)
        return cov_v - xbar * np.sum(xbar * v, axis=1, keepdims=True) + diag * v

    x = np.zeros_like(grad)
    resid = grad.copy()
    direction = resid.copy()
    rs = np.sum(resid**2, axis=1)
    stop = CG_RTOL * np.sqrt(rs)
    active = np.sqrt(rs) > stop
    for _ in range(CG_MAX_ITER):
        if not np.any(active):
            break
        hd = hess_times(direction)
        curv = np.sum(direction * hd, axis=1)
        alpha = np.where(active & (curv > 0), rs / np.where(curv > 0, curv, 1.0), 0.0)
        x += alpha[:, None] * direction
        resid -= alpha[:, None] * hd
        rs_new = np.sum(resid**2, axis=1)
        active &= (np.sqrt(rs_new) > stop) & (curv > 0)
        beta = np.where(active, rs_new / np.where(rs > 0, rs, 1.0), 0.0)
        direction = resid + beta[:, None] * direction
        rs = np.where(active, rs_new, rs)
    dec = np.sum(grad * x, axis=1)
    fallback = ~(dec > 0)  # as newton_direction: the gradient itself
    dec[fallback] = np.sum(grad[fallback] ** 2, axis=1)
    return np.maximum(dec, 0.0), active


def stationarity_of(em_map, params: SoftmaxMixtureParams) -> float:
    """The exact stop-rule value (nats) of :func:`make_em_map`'s map at ``params``.

    ``sum_k (c_k - N alpha_k)^2 / (2 N alpha_k)`` (the weights' Newton decrement) plus
    ``sum_k c_k g_k' (Cov_{pi(theta_k)}(z) + ridge terms)^{-1} g_k / 2`` with
    ``g_k = m_k - xbar(theta_k)`` (the atoms' Newton decrements): the log-likelihood one exact
    M-step from ``params`` is predicted to gain. Zero exactly at stationary points.
    """
    return float(em_map.stationarity(params, True))


def _weight_gain(mass: np.ndarray, weights: np.ndarray, n_total: float) -> float:
    """The weights' Newton decrement ``sum_k (c_k - N alpha_k)^2 / (2 N alpha_k)`` (nats).

    ``c - N alpha`` is the score of the weights (log-ratio coordinates) and ``N (diag(alpha) -
    alpha alpha')`` their complete-data information, so this is ``g' H^{-1} g / 2``, the
    second-order value of the exact gain ``sum_k c_k log(c_k / (N alpha_k))``. Unlike that sum
    (whose first-order terms cancel only in exact arithmetic, leaving ~N * 1e-16 nats of
    round-off), it has no cancellation: it is accurate down to zero at any N. A component whose
    mass is far from its expected count (``|c_k - N alpha_k| > 1e-3 N alpha_k``, e.g. a weight
    collapsing toward 0) contributes its exact term ``c_k log(c_k / (N alpha_k)) - c_k + N
    alpha_k`` instead, where the quadratic would blow up (it reached 1e306 nats on float32 fits
    whose weight had fallen to ~1e-300).
    """
    live = weights > 0
    expected = n_total * weights[live]
    c = mass[live]
    diff = c - expected
    far = np.abs(diff) > 1e-3 * expected
    quad = diff[~far] ** 2 / expected[~far] / 2.0
    cf, ef = c[far], expected[far]
    with np.errstate(divide="ignore", invalid="ignore"):
        exact = np.where(cf > 0, cf * np.log(np.where(cf > 0, cf, 1.0) / ef), 0.0) - cf + ef
    return float(np.sum(quad) + np.sum(exact))


def _gradient_step(design, atoms, targets, mean_features, q_old, empty, step_size, pen=None,
                   variances=None, scores0=None):
    """Safeguarded ``theta_k += eta g_k``: halve eta for each k where Q_k would drop.

    ``g_k = m_k - xbar_k`` (minus ``pen_k * theta_k`` with a ridge). Returns the new atoms
    (K, L), their scores ``atoms @ X'`` (K, p) for the next E-step, and ``g`` (K, L). With a
    penalty the step is ``eta * Var(z) / (Var(z) + pen) * g`` (``variances`` required).

    ``scores0``, the scores of ``atoms`` (the E-step's), makes the step one product whatever
    the halvings: scores are linear in the atom, so with ``d`` the step direction every trial is
    ``scores0 + eta * scores(d)`` (O(K p) each, no pass over the design; on a sampled whitening
    eta = 1 overshoots along the directions where ``Cov_pi(z)`` exceeds 2 and halvings are
    common). Rounding: each step adds ``~eps (|scores0| + eta |scores(d)|)``, so after T
    steps the scores carried from step to step are within ``~T eps`` (relative) of those of
    the atoms themselves (float64: 1e-12 after 1e4 steps; the part from float32 products
    scales with the steps' lengths, which vanish at convergence).
    """
    grad = targets - mean_features  # (K, L)
    if pen is not None:
        grad = grad - pen * atoms
    grad[empty] = 0.0
    # preconditioned by the penalty: the Hessian is ~ -(Var(z) + pen), so with a stiff penalty
    # (a nearly empty component) a plain step would overshoot by orders of magnitude
    direction = grad if pen is None else grad * (variances / (variances + pen))

    def q_of(new, sc, idx):
        value = np.einsum("kl,kl->k", new, targets[idx]) - _row_logsumexp(sc)
        if pen is not None:
            value = value - 0.5 * np.einsum("kl,kl->k", pen[idx], new**2)
        return value

    design = _as_design(design)
    new_atoms = atoms + step_size * direction
    if scores0 is not None:
        step_scores = _full_scores(design, direction)
        scores = scores0 + step_size * step_scores
    else:
        scores = _full_scores(design, new_atoms)
    q_new = q_of(new_atoms, scores, slice(None))
    bad = ~(q_new >= q_old) & ~empty
    eta = step_size
    for _ in range(_MAX_HALVINGS):
        if not np.any(bad):
            break
        eta *= 0.5
        idx = np.flatnonzero(bad)
        new_atoms[idx] = atoms[idx] + eta * direction[idx]
        scores = _set_rows(scores, idx, _full_scores(design, new_atoms[idx]) if scores0 is None
                           else _rows_of(scores0, idx) + eta * _rows_of(step_scores, idx))
        q_new[idx] = q_of(new_atoms[idx], _rows_of(scores, idx), idx)
        bad[idx] = ~(q_new[idx] >= q_old[idx])
    if np.any(bad):  # no ascent found along the gradient: keep those atoms (Q_k unchanged)
        idx = np.flatnonzero(bad)
        new_atoms[idx] = atoms[idx]
        scores = _set_rows(scores, idx, _full_scores(design, atoms[idx]) if scores0 is None
                           else _rows_of(scores0, idx))
    return new_atoms, scores, grad


def _full_scores(design: Design, atoms: np.ndarray) -> np.ndarray:
    """``design.scores(atoms)`` over every row, chunk by chunk into one (K, p) array (on the
    design's device, in one piece, for another array namespace)."""
    if not _xp.is_numpy(design.features):
        return design.scores(atoms)
    out = np.empty((atoms.shape[0], design.n_alternatives))
    for rows in design.chunks():
        out[:, rows] = design.scores(atoms, rows)
    return out


def select_m_step(design: Design, start: SoftmaxMixtureParams,
                  scores: np.ndarray | None = None) -> tuple[str, dict]:
    """Resolve ``m_step="auto"``: ``"gradient"`` on a Gaussian-like whitened design, else Newton.

    The rule and why: module docstring (``m_step="auto"``). Decided on all p rows from the
    scores of the starting atoms, which are the first E-step's (:func:`fit_em` computes them
    once and hands them to both), so the rule costs O(p K) beyond them.

    Parameters
    ----------
    design : Design
    start : SoftmaxMixtureParams
        The starting parameters in *working* coordinates (``design.to_working``).
    scores : ndarray of shape (K, p), optional
        ``design.scores(start.atoms)`` over every row, when already computed.

    Returns
    -------
    m_step : {"gradient", "newton"}
    info : dict
        ``m_step_rule`` (a sentence), ``design_hermite_score`` (the largest normalised Hermite
        coefficient of order 3 or 4 along the directions checked; nan when not computed) and
        ``design_hermite_threshold``.
    """
    if not design.whitened:
        return "newton", {"m_step_rule": "design not whitened: the gradient step is not a "
                          "Newton step there", "design_hermite_score": float("nan"),
                          "design_hermite_threshold": float("nan")}
    atoms = np.asarray(start.atoms, dtype=float)
    norms = np.linalg.norm(atoms, axis=1)
    live = norms > 1e-12
    if np.any(live):  # u'z_j along the atoms' directions u = theta / ||theta||, all rows
        scores = _full_scores(design, atoms) if scores is None else scores
        along = _xp.host(scores)[live] / norms[live, None]  # (D, p)
    else:  # every atom at the centre: check K orthonormal working axes instead
        along = _xp.host(_full_scores(design, np.eye(atoms.shape[1])[: start.n_components]))
    max_score, threshold = _hermite_check(along)
    gaussian = max_score <= threshold
    m_step = "gradient" if gaussian else "newton"
    compare = "<=" if gaussian else ">"
    rule = (f"largest normalised Hermite coefficient (order 3 or 4) of the whitened design "
            f"along the starting atoms {max_score:.3g} {compare} {threshold:.3g}: " + (
                "Gaussian-like, Cov_pi(z) ~ I, the eta = 1 gradient step is a Newton step"
                if gaussian else "far from Gaussian, Cov_pi(z) moves away from I, so the "
                "Newton step is used"))
    return m_step, {"m_step_rule": rule, "design_hermite_score": max_score,
                    "design_hermite_threshold": threshold}


def _hermite_check(along: np.ndarray) -> tuple[float, float]:
    """``design_diagnostics``' check of orders 3 and 4 on the rows of ``along`` (D, p), each
    standardised over the p alternatives (the sampled whitening is only approximate), in
    chunks of alternatives (no (4, p, D) array): ``(max_score, threshold)`` with the
    diagnostic's threshold ``max(GAUSSIAN_TOLERANCE, 4 / sqrt(p))`` (the p rows' sampling
    error), so the same decision as :func:`~softmix.softmax_mixture.moments.design_diagnostics`
    on the standardised ``along.T``."""
    p = along.shape[1]
    chunks = [slice(start, min(start + _CHUNK_ROWS, p)) for start in range(0, p, _CHUNK_ROWS)]
    mean = along.mean(axis=1, keepdims=True)
    var = sum(np.sum((along[:, rows] - mean) ** 2, axis=1, keepdims=True) for rows in chunks) / p
    spread = np.sqrt(var)
    spread = np.where(spread > 0, spread, 1.0)
    sums = np.zeros((2, along.shape[0]))
    for rows in chunks:
        sums += hermite_polynomials((along[:, rows] - mean) / spread, 4)[2:].sum(axis=2)
    scores = np.abs(sums / p) / np.sqrt([6.0, 24.0])[:, None]  # He_3 / sqrt(3!), He_4 / sqrt(4!)
    return float(scores.max()), max(GAUSSIAN_TOLERANCE, 4.0 / np.sqrt(p))


def _max_atom_change(a: SoftmaxMixtureParams, b: SoftmaxMixtureParams) -> float:
    return float(np.max(np.linalg.norm(a.atoms - b.atoms, axis=1)))


def fit_em(
    features: np.ndarray | Design,
    counts: np.ndarray,
    params0: SoftmaxMixtureParams,
    *,
    m_step: str = DEFAULT_M_STEP,
    step_size: float = 1.0,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    param_tol: float = 0.0,
    callback: Callable[[int, SoftmaxMixtureParams, float], object] | None = None,
    init_method: str = "given",
    newton_max_iter: int = _NEWTON_MAX_ITER,
    whiten: bool = True,
    accelerate: str | None = None,
    dtype: str = "float64",
    warn: bool = True,
    ridge: float = 0.0,
    iteration_offset: int = 0,
) -> FitResult:
    """Fit a softmax mixture by EM from ``params0`` (through :func:`softmix.core.em.run_em`).

    Parameters
    ----------
    features : ndarray of shape (p, L) or Design
        The design, or a :class:`Design` from :func:`prepare_design` (then ``whiten`` is
        ignored). An array is checked as :meth:`SoftmaxMixture.fit` checks it.
    counts : ndarray of shape (p,)
        Non-negative integer counts ``n_j``, not all zero (checked; ValueError otherwise).
    params0 : SoftmaxMixtureParams
        Start. ``max_iter=0`` returns this very object.
    m_step : {"newton", "gradient", "auto"}
        Exact damped-Newton M-step, the paper's safeguarded one-gradient-step M-step, or
        ``"auto"``: one of the two chosen once from the design by :func:`select_m_step`
        (recorded in ``result.extra["m_step"]``; ``extra["m_step_requested"]`` is ``"auto"``).
    step_size : float
        eta of the gradient M-step (default 1.0, as in the paper).
    max_iter : int
        Maximum EM iterations.
    tol : float
        Stop when the log-likelihood one exact M-step from the current iterate is predicted to
        gain is ``<= tol`` **nats** (:func:`stationarity_of`, recorded in
        ``result.criterion_value``; see :data:`DEFAULT_TOL` for what 1e-7 means): scale-free,
        the same guarantee at any N. ``0`` runs exactly ``max_iter`` iterations (and records
        the cheap ``criterion="score_gain_whitened"``, module docstring). Floored at
        ``1e-15 N`` nats (float64's precision; ``result.extra["tol_used"]``), which binds only
        above N ~ 1e8 at the default.
    param_tol : float
        Also stop when no working atom moves more than this (Euclidean norm, in the whitened
        coordinates when ``whiten``); 0 disables.
    callback : callable, optional
        ``callback(iteration, params, log_likelihood)``; a truthy return stops the fit.
    init_method : str
        Recorded in the result.
    newton_max_iter : int
        Newton iterations per component per EM iteration.
    whiten : bool
        Work in whitened coordinates (see :class:`Design`): makes ``m_step="gradient"`` the
        paper's whitened step on any design; no effect on Newton's iterates.
    accelerate : {None, "squarem"}
        ``None``: plain EM (one EM map per iteration). ``"squarem"``: SQUAREM extrapolation of
        this EM map in the unconstrained packing of :func:`~softmix.softmax_mixture.model.
        params_to_vector` (working coordinates), with the monotonicity fallback of
        :func:`softmix.core.em.run_em`; an iteration is then one SQUAREM cycle (up to three EM
        maps, ``result.extra["n_map_evals"]``). Same fixed points as plain EM.
    dtype : {"float64", "float32"}
        Precision of the two large products per iteration (a float32 ``features`` array is
        always used as is, in float32; ``"float32"`` on float64 features makes one float32 copy)
        (``X theta'`` and ``X' R``); everything else (exponentials, sums over alternatives,
        the log-likelihood, the M-step solves) is float64. float32 halves the design's memory
        and the products' memory traffic; the optimum it reaches agreed with float64's to
        ~2e-8 (relative log-likelihood) in ``tests/test_accelerate.py``, with ~1.5x more
        iterations at tight ``tol``. The driver's decrease check is off for float32 (round-off
        can exceed its 1e-9 threshold), and the stop tolerance is floored at ``1e-8 N`` nats
        instead of float64's ``1e-15 N`` (the criterion cannot get below the products'
        precision; the tolerance used is ``result.extra["tol_used"]``). Ignored when ``features`` is a :class:`Design` (its own
        dtype is used).
    warn : bool
        Emit convergence warnings (and the unidentified-design warning for raw features).
    iteration_offset : int
        Iterations already done when this fit continues an earlier one (e.g. a screened
        restart, :class:`softmix.core.restarts.Screen`): added to the iteration numbers the
        ``callback`` sees and to the ``max_iter`` the warnings name.
    ridge : float
        [default 0: maximum likelihood] Penalty ``ridge / 2 * sum_k Var_j(x_j' theta_k)``:
        a Gaussian prior on each class's utilities over the alternatives, scale-free (rescaling
        a column does not change it) and worth a fixed number of nats whatever N is, so its
        influence vanishes as N grows. EM then maximises the penalised log-likelihood
        (``history`` and ``objective``; the plain log-likelihood of the result is in
        ``extra["log_likelihood"]``). Use it when the MLE does not exist (the counts lie on a
        face of the design's convex hull, see Warns); e.g. ``ridge=1`` is a unit prior on the
        utilities' spread.

    Returns
    -------
    FitResult
        ``params`` a :class:`SoftmaxMixtureParams`; ``history`` the log-likelihood per iteration.

    Warns
    -----
    SoftmixWarning
        When the maximum-likelihood estimate does not exist (every chosen alternative lies on a
        proper face of the convex hull of the design, :func:`~softmix.softmax_mixture.design.
        face_direction`): the atoms diverge along the reported direction, the result is
        ``converged=False`` with ``stop_reason="no_mle"``; give ``ridge > 0``. Also when EM
        stops at coincident atoms (a saddle) that perturbation cannot leave
        (``stop_reason="saddle"``).

    Notes
    -----
    Saddles: a stationary point where two non-empty components have the same atom (e.g. from a
    start with identical atoms, which EM never separates) is not reported as converged: the
    coincident atoms are split (+/- 0.1 whitened units along a random direction, fixed seed)
    and EM continues with the remaining budget, up to 3 times; ``extra["saddle_escapes"]``
    counts the splits and the history shows each jump.

    The observed log-likelihood ``sum_j n_j log sum_k alpha_k pi_j(theta_k)`` is non-decreasing
    for both M-steps (exact EM; generalised EM with a safeguarded step). Per-iteration cost is
    O(p L K) for the E-step and gradient M-step, plus O(p L^2) per Newton iteration and component
    for the Newton M-step. Reference: Bing, Bunea, Niles-Weed, Wegkamp, arXiv 2409.09903.
    """
    check_choice(m_step, "m_step", M_STEPS)
    step_size = check_float(step_size, "step_size", low=0.0, low_inclusive=False)
    max_iter = check_int(max_iter, "max_iter", low=0)
    tol = check_float(tol, "tol", low=0.0)
    param_tol = check_float(param_tol, "param_tol", low=0.0)
    newton_max_iter = check_int(newton_max_iter, "newton_max_iter", low=1)
    ridge = check_float(ridge, "ridge", low=0.0)
    if isinstance(features, Design):
        design = features
    else:
        check_choice(dtype, "dtype", ("float64", "float32"))
        checked, stats = check_features(features, return_range=True)
        design = prepare_design(checked, whiten=whiten, warn=warn, dtype=dtype,
                                exact=ridge > 0, column_stats=stats)
    if ridge > 0:  # the penalty's metric Var_j(x_j' theta) needs the exact covariance
        design = design.exact_design()
    p, n_features = design.features.shape
    counts = check_counts(counts, p)
    if not isinstance(params0, SoftmaxMixtureParams):
        raise TypeError(
            f"params0 must be a SoftmaxMixtureParams, got {type(params0).__name__}. Build one "
            "with SoftmaxMixtureParams(weights, atoms)."
        )
    if params0.n_features != n_features:
        raise ValueError(
            f"params0.atoms must have one column per feature, shape (K, {n_features}) for "
            f"features of shape {design.features.shape}; got {params0.atoms.shape}."
        )
    start = design.to_working(params0)
    requested, auto_info, scores0 = m_step, {}, None
    if m_step == "auto":  # the start's scores: the auto rule's and the first E-step's
        scores0 = _full_scores(design, np.asarray(start.atoms, dtype=float))
        m_step, auto_info = select_m_step(design, start, scores0)
    # [measured] the criterion cannot go below the precision of the arithmetic: it stalled at
    # ~3e-17 N nats in float64 (N = 2e5 and 1e10) and 3e-10 N to 1e-8 N with float32 products
    # (their ~1e-4 whitened-unit error in m_k - xbar_k); floor the tolerance there
    floor = _PRECISION_FLOOR[design.dtype.name] * float(counts.sum())
    tol_stop = max(tol, floor) if tol > 0 else 0.0
    em_map = make_em_map(
        design, counts, m_step=m_step, step_size=step_size, newton_max_iter=newton_max_iter,
        tol=tol_stop, ridge=ridge,
    )
    if scores0 is not None:
        em_map.prime_scores(start.atoms, scores0)  # type: ignore[attr-defined]
    user_callback = None
    if callback is not None:
        def user_callback(it, params, value):
            return callback(it, design.from_working(params), value)

    penalised = em_map.objective  # type: ignore[attr-defined]  # shares its E-step with the map and the stop rule

    name = f"softmax-mixture EM (m_step={m_step!r})"

    # components heading for a face of the convex hull are moved to their limit (faces.py);
    # not with a ridge (the penalty has a finite optimum) nor for a fixed number of iterations
    monitor = FaceMonitor(design, em_map.objective) if ridge == 0 and tol > 0 else None  # type: ignore[attr-defined]
    # a slow (strongly overlapping) fit is polished by observed-data Newton steps (polish.py)
    slow = (SlowMonitor(design, counts, tol_stop)
            if ridge == 0 and tol > 0 and polish_affordable(design, start.n_components)
            else None)

    def run_once(from_params, budget, warn_run, offset):
        def watch(it, params, value):
            if user_callback is not None and user_callback(it + offset, params, value):
                return True
            if monitor is not None and monitor(it, params, value):
                return True
            return slow is not None and slow(it, params, value)

        return run_em(
            from_params,
            em_map,
            penalised,
            max_iter=budget,
            tol=tol_stop,
            param_tol=param_tol,
            param_distance=_max_atom_change,
            monotone=design.dtype == np.float64,
            callback=watch if (user_callback, monitor, slow) != (None, None, None) else None,
            init_method=init_method,
            name=name,
            warn=warn_run,
            accelerate=accelerate,
            to_vector=params_to_vector,
            from_vector=lambda v: params_from_vector(v, *start.atoms.shape),
            stationarity=em_map.stationarity,
            criterion="newton_decrement",
            cheap_criterion="score_gain_whitened",
            iteration_offset=offset,
        )

    def run(from_params, budget, warn_run, offset=0):
        # one EM run, continued from every jump to a face limit the monitor asks for; offset:
        # iterations of this fit before it, plus iteration_offset (a fit that continues another)
        offset += iteration_offset
        result = run_once(from_params, budget, warn_run, offset)
        while True:
            if monitor is not None and monitor.pending is not None:
                moved = monitor.take()
            elif slow is not None and slow.pending is not None:
                moved = slow.take()
            else:
                return result
            nxt = run_once(moved, budget - result.n_iter, warn_run, offset + result.n_iter)
            result = chain(result, nxt, 0)

    result = run(start, max_iter, warn)
    result = _escape_saddles(result, run, design, max_iter, tol, warn, name)
    face = face_direction(design, counts) if max_iter > 0 and ridge == 0 else None
    if monitor is not None and monitor.faces:  # (no MLE at all: that warning says it)
        result = _settle_faces(result, run, monitor, design, em_map.objective,  # type: ignore[attr-defined]
                               max_iter, tol_stop, warn and face is None)
    if max_iter > 0 and ridge == 0 and face_check_skipped(design, counts):
        result.extra["face_check"] = "skipped"  # too large an LP (design.FACE_LP_MAX_ENTRIES)
    if face is not None:
        if result.stop_reason in ("tol", "param_tol", "saddle"):
            result.stop_reason, result.converged = "no_mle", False
        if warn:
            warnings.warn(
                "the maximum-likelihood estimate does not exist: every chosen alternative (counts "
                "> 0) lies on a face of the convex hull of the features, the alternatives that "
                f"maximise x'c for c = {np.array2string(face, precision=3)}; moving every atom "
                "along c raises the likelihood without end, so the atoms diverge and the "
                "returned atoms are arbitrary (converged=False, stop_reason='no_mle'). Give "
                "ridge > 0 (a prior on the atoms, e.g. ridge=1) for a finite penalised estimate, "
                "or collect choices off that face.",
                SoftmixWarning,
                stacklevel=2,
            )
    if max_iter > 0 and ridge == 0 and face is None:
        _warn_diverging(result, design, warn, set() if monitor is None else set(monitor.faces))
    # the start itself when no iteration ran (no round trip through the working coordinates)
    result.params = params0 if result.params is start else design.from_working(result.params)
    if slow is not None and slow.polishes:
        result.extra["newton_polishes"] = slow.polishes
    result.extra["m_step"] = m_step
    result.extra["m_step_requested"] = requested
    result.extra.update(auto_info)
    result.extra["n_unidentified"] = design.n_unidentified
    result.extra["ridge"] = ridge
    result.extra["tol_used"] = tol_stop
    result.extra["log_likelihood"] = (
        result.objective if not ridge
        else e_step(design, counts, design.to_working(result.params)).log_likelihood
    )
    return result


#: [chosen] Atoms closer than this (whitened units, relative to 1 + their norm) are coincident.
_COINCIDENT_RTOL = 1e-6
#: [chosen] Half-distance of the split of coincident atoms (whitened units: a tenth of the
#: design's spread), and how many splits are tried.
_SADDLE_SPLIT = 0.1
_SADDLE_TRIES = 3
#: [measured, see fit_em] Per-observation floor of the stop tolerance (nats): the precision the
#: criterion reaches with float64 (1e-15 N: ~30x above the 3e-17 N where it stalls; atoms are
#: then located to ~sqrt(2e-15) = 4.5e-8 whitened units, 0.0045 standard errors at N = 1e10) and
#: with float32 products (1e-8 N).
_PRECISION_FLOOR = {"float64": 1e-15, "float32": 1e-8}


def coincident_pairs(params: SoftmaxMixtureParams) -> list[tuple[int, int]]:
    """Pairs ``(k, l)``, ``k < l``, of non-empty components with (numerically) equal atoms.

    In working (whitened, scale-free) coordinates: ``||theta_k - theta_l|| <= 1e-6 (1 +
    max(||theta_k||, ||theta_l||))``.
    """
    atoms, live = np.asarray(params.atoms), np.asarray(params.weights) > 0
    norms = np.linalg.norm(atoms, axis=1)
    pairs = []
    for k in range(atoms.shape[0]):
        for j in range(k + 1, atoms.shape[0]):
            close = np.linalg.norm(atoms[k] - atoms[j]) <= _COINCIDENT_RTOL * (
                1.0 + max(norms[k], norms[j]))
            if live[k] and live[j] and close:
                pairs.append((k, j))
    return pairs


#: [chosen] Standard deviation (nats) over the alternatives of a component's log-probabilities
#: above which its atom is reported as (probably) diverging: e^20 between alternatives one
#: standard deviation apart. Fits with a finite optimum measured here stay far below (Zipfian
#: word frequencies as one class: ~2-3 nats); a component moving toward a face of the convex
#: hull of the design grows without bound (98.9 x the unit grid's spread, 31 nats, in
#: tests/test_smm_converge.py; a whitened norm of 459 on MiniLM's word embeddings).
_DIVERGING_SCORE_SD = 20.0


def _named(components, weights) -> str:
    """``"0 (weight 0.745), 2 (weight 0.008)"``: a warning's components with their weights, so
    they stay recognisable after the estimator puts the components in canonical order."""
    return ", ".join(f"{int(k)} (weight {float(weights[int(k)]):.3g})" for k in components)


def _warn_diverging(result, design: Design, warn: bool, skip: Collection[int] = ()) -> None:
    """Name components whose atoms are so large that they are probably diverging.

    A component whose M-step target lies on a face of the convex hull of the design has no
    finite M-step maximiser: its atom moves along the face's normal without end while the
    log-likelihood approaches its supremum (no maximum-likelihood estimate for this K, even
    when every alternative is chosen; the whole-count face check cannot see it). EM then stops
    on ``tol`` or ``max_iter`` with an atom that is arbitrary along that direction. Detected by
    the score spread ``sd_j(x_j' theta_k)`` (the ``ridge`` metric, scale-free) above
    :data:`_DIVERGING_SCORE_SD` nats; recorded in ``extra["diverging_components"]``.
    """
    atoms = np.asarray(result.params.atoms, dtype=float)
    spread = np.sqrt(np.sum(design.variances * atoms**2, axis=1))
    live = np.asarray(result.params.weights) > 0
    live[list(skip)] = False  # components at a face limit: named by _settle_faces
    big = np.flatnonzero(live & (spread > _DIVERGING_SCORE_SD))
    if big.size == 0:
        return
    result.extra["diverging_components"] = big.tolist()
    if warn:
        warnings.warn(
            f"softmax mixture component(s) {_named(big, result.params.weights)} have atoms so "
            "large that their "
            f"log-probabilities vary by {np.array2string(spread[big], precision=3)} nats (one "
            "standard deviation across the alternatives): such a component is probably moving "
            "toward a face of the convex hull of the features, where the likelihood has no "
            "maximum for this number of components, and its atom is arbitrary along that "
            f"direction (stop_reason={result.stop_reason!r}). Give ridge > 0 (e.g. ridge=1) for "
            "a finite penalised estimate, or use fewer components.",
            DegenerateComponentWarning,
            stacklevel=3,
        )


def _escape_saddles(result, run, design, max_iter, tol, warn, name):
    """Split coincident atoms of a converged fit and continue (see :func:`fit_em` Notes)."""
    escapes = 0
    rng = np.random.default_rng(20240911)
    while result.converged and coincident_pairs(result.params):
        if escapes == _SADDLE_TRIES or result.n_iter >= max_iter:
            result.converged, result.stop_reason = False, "saddle"
            if warn:
                warnings.warn(
                    f"{name} stopped at a stationary point with coincident atoms "
                    f"{coincident_pairs(result.params)} (a saddle of the {result.params.n_components}"
                    f"-component likelihood) and {escapes} split(s) did not leave it; not "
                    "converged. Use a start with distinct atoms (init='random', n_init > 1) or "
                    "fewer components.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
            break
        atoms = np.array(result.params.atoms)
        for k, j in coincident_pairs(result.params):
            u = rng.standard_normal(atoms.shape[1])
            u *= _SADDLE_SPLIT / np.linalg.norm(u)
            atoms[k] += u
            atoms[j] -= u
        escapes += 1
        split = SoftmaxMixtureParams(result.params.weights, atoms)
        nxt = run(split, max_iter - result.n_iter - 1, warn, result.n_iter + 1)
        result = chain(result, nxt, 1)
    result.extra["saddle_escapes"] = escapes
    return result


def _settle_faces(result, run, monitor: FaceMonitor, design: Design, objective, max_iter: int,
                  tol: float, warn: bool):
    """Check that each face limit of the fit is a maximum along its face's normal, continue EM
    from a better point off the face when one is not (that component is then no longer moved
    to faces), and name the face components in a warning and in ``extra``.

    ``extra["faces"]``: ``{component: [alternatives of its face]}`` (design row indices);
    ``extra["face_pullback_gain"]``: ``{component: nats}``, the largest log-likelihood gain
    found by moving the atom back off its face (<= ``tol`` at a maximum along the normal).
    """
    gains: dict = {}
    # a gain below the round-off of the log-likelihood's value is no gain
    tol = max(tol, 1e-13 * abs(float(objective(result.params))))
    for _ in range(2):
        worse = None
        for k, face in sorted(monitor.faces.items()):
            gains[k], point = pullback_gain(design, objective, result.params, face)
            if gains[k] > tol and worse is None:
                worse = (k, point)
        if worse is None or result.n_iter >= max_iter:
            break
        k, point = worse
        monitor.disabled.add(k)
        del monitor.faces[k]
        gains.pop(k)
        result = chain(result, run(point, max_iter - result.n_iter - 1, warn,
                                    result.n_iter + 1), 1)
    faces = {int(k): face.index.tolist() for k, face in sorted(monitor.faces.items())}
    if not faces:
        return result
    result.extra["faces"] = faces
    result.extra["face_pullback_gain"] = {int(k): float(v) for k, v in gains.items()}
    if any(gains.get(k, 0.0) > tol for k in faces) and result.converged:
        result.converged, result.stop_reason = False, "not_stationary"
    if warn:
        weights = np.asarray(result.params.weights)
        sizes = ", ".join(f"{k}: {len(v)} alternatives" for k, v in faces.items())
        warnings.warn(
            f"softmax mixture component(s) {_named(faces, weights)} have no maximum at finite "
            "atoms: each "
            f"concentrates on a face of the convex hull of the features ({sizes}; their rows "
            "are in result.extra['faces']), the alternatives maximising x'd for a direction d "
            "certified by a linear programme, and the likelihood rises as its atom moves to "
            "infinity along d. EM moved it to that limit (every other alternative at least "
            f"{FACE_JUMP_NATS:g} nats below the face) and maximised within the face: the "
            "returned atom represents the limit, and its standard errors along d are undefined "
            f"(converged={result.converged}, stop_reason={result.stop_reason!r}). For a finite "
            "estimate give ridge > 0 (e.g. ridge=1), or use fewer components.",
            DegenerateComponentWarning,
            stacklevel=3,
        )
    return result
