"""Observed information of a finite mixture, exactly, from per-component derivatives.

Every softmix family has a log-likelihood of the form ``l(theta) = sum_j w_j log sum_i exp(a_ji)``
with ``a_ji = log P(z = i | unit j) + log f_i(y_j | unit j)`` (``w_j`` = 1 per observation, or the
count of a cell when counts are sufficient). With ``tau_ji = softmax_i(a_ji)`` (the posteriors),
``g_ji = d a_ji / d theta`` and ``s_j = sum_i tau_ji g_ji`` (the score of unit j), the Hessian of
a log-sum-exp is (Louis' identity in closed form)::

    d^2 l = sum_j w_j sum_i tau_ji d^2 a_ji                        (the "curvature" term)
          + sum_j w_j sum_i tau_ji g_ji g_ji'  -  sum_j w_j s_j s_j'  (missing information)

The families supply ``g_ji`` split into a *shared* block (the mixing parameters, dense: gates or
weight log-ratios) and an *own* block (component i's parameters, zero for the other components),
and the curvature term, which they compute in closed form. :func:`mixture_hessian` then costs
``O(n k (P_shared + P_own)^2 + n P^2)``: for the softmax mixture on counts (n = p cells) this is
``O(p K^2 L^2)``, never ``O(N)``.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence

import numpy as np

from softmix.exceptions import SoftmixWarning

__all__ = [
    "InformationWarning",
    "check_information",
    "mixture_hessian",
    "mixture_scores",
]

#: Eigenvalues of the information below ``PD_RTOL * largest`` are treated as zero (no
#: information: boundary, saddle or unidentified direction).
PD_RTOL = 1e-10

#: A parameter is named in the warning when its loading on a null eigenvector exceeds this.
LOADING_MIN = 0.1

#: Rows per block in :func:`mixture_hessian` (bounded memory whatever n is).
_CHUNK = 4096


class InformationWarning(SoftmixWarning):
    """The observed information is not positive definite: some standard errors are infinite."""


def _layout(n_shared: int, own_sizes: Sequence[int]) -> list[slice]:
    starts = n_shared + np.concatenate([[0], np.cumsum(own_sizes)])
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(starts)]


def mixture_scores(tau: np.ndarray, shared: np.ndarray, own: Sequence[np.ndarray]) -> np.ndarray:
    """Per-unit scores ``s_j = sum_i tau_ji g_ji``, shape (n, P).

    Parameters
    ----------
    tau : ndarray of shape (n, k)
        Posteriors.
    shared : ndarray of shape (n, k, P_shared)
        Derivative of ``a_ji`` with respect to the shared (mixing) parameters.
    own : sequence of k arrays of shape (n, P_i)
        Derivative of ``a_ji`` with respect to component i's own parameters.
    """
    _n, k = tau.shape
    parts = [np.einsum("ni,nip->np", tau, shared)]
    parts += [tau[:, i : i + 1] * own[i] for i in range(k)]
    return np.concatenate(parts, axis=1)


def mixture_hessian(
    weights: np.ndarray,
    tau: np.ndarray,
    shared: np.ndarray,
    own: Sequence[np.ndarray],
    curvature: np.ndarray,
) -> np.ndarray:
    """Exact Hessian of ``sum_j w_j log sum_i exp(a_ji)`` (see the module docstring).

    Parameters
    ----------
    weights : ndarray of shape (n,)
        Unit weights ``w_j`` (ones, or cell counts).
    tau, shared, own
        As in :func:`mixture_scores`.
    curvature : ndarray of shape (P, P)
        ``sum_j w_j sum_i tau_ji d^2 a_ji``, supplied in closed form by the family.

    Returns
    -------
    ndarray of shape (P, P)
        Symmetric. Minus it is the observed information.
    """
    n, k = tau.shape
    n_shared = shared.shape[2]
    slices = _layout(n_shared, [o.shape[1] for o in own])
    size = slices[-1].stop if slices else n_shared
    out = np.array(curvature, dtype=float, copy=True)
    if out.shape != (size, size):
        raise ValueError(f"curvature must have shape ({size}, {size}), got {out.shape}.")
    sh = slice(0, n_shared)
    for start in range(0, n, _CHUNK):
        rows = slice(start, start + _CHUNK)
        w = weights[rows]
        t = tau[rows]
        g_sh = shared[rows]
        for i in range(k):
            wt = w * t[:, i]
            gs = g_sh[:, i, :]
            go = own[i][rows]
            out[sh, sh] += (gs * wt[:, None]).T @ gs
            cross = (gs * wt[:, None]).T @ go
            out[sh, slices[i]] += cross
            out[slices[i], sh] += cross.T
            out[slices[i], slices[i]] += (go * wt[:, None]).T @ go
        s = mixture_scores(t, g_sh, [o[rows] for o in own])
        out -= (s * w[:, None]).T @ s
    return (out + out.T) / 2.0


def check_information(
    information: np.ndarray, names: Sequence[str], *, warn: bool = True,
    rtol: float = PD_RTOL, stacklevel: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Invert the observed information on its positive-definite part; flag the rest.

    Parameters
    ----------
    information : ndarray of shape (P, P)
        Minus the Hessian of the log-likelihood (unconstrained parametrisation).
    names : sequence of P str
        Names of the unconstrained coordinates (used in the warning).
    warn : bool
        Issue an :class:`InformationWarning` naming the parameters involved when the
        information is not positive definite.

    Returns
    -------
    cov : ndarray of shape (P, P)
        The inverse on the eigenspace of eigenvalues ``> rtol * largest`` (a pseudo-inverse);
        rows and columns of flagged coordinates are ``inf`` on the diagonal, NaN elsewhere.
    flagged : ndarray of shape (P,), bool
        Coordinates loading (``|v| > 0.1``) on an eigenvector with (near-)zero or negative
        eigenvalue: their standard errors are infinite (no information about them).
    """
    info = (np.asarray(information, dtype=float) + np.asarray(information, dtype=float).T) / 2
    values, vectors = np.linalg.eigh(info)
    top = max(float(np.max(np.abs(values))), np.finfo(float).tiny)
    bad = values <= rtol * top
    flagged = np.zeros(info.shape[0], dtype=bool)
    if np.any(bad):
        flagged = np.any(np.abs(vectors[:, bad]) > LOADING_MIN, axis=1)
        if not np.any(flagged):  # spread thinly over many coordinates: name the largest
            flagged[np.argmax(np.max(np.abs(vectors[:, bad]), axis=1))] = True
        if warn:
            kinds = "negative" if np.any(values[bad] < -rtol * top) else "(near-)zero"
            involved = [names[i] for i in np.flatnonzero(flagged)]
            warnings.warn(
                f"the observed information is not positive definite ({int(bad.sum())} "
                f"{kinds} eigenvalue(s), smallest {values[0]:.3g} vs largest {values[-1]:.3g}): "
                f"no information about {involved}. This happens at a boundary (a weight near "
                "0, an empty component), at a saddle point, or along an unidentified direction "
                "(too many components, collinear features); their standard errors are "
                "reported as inf. Refit with fewer components, more restarts (n_init), or "
                "check identification.",
                InformationWarning,
                stacklevel=stacklevel,
            )
    good = ~bad
    cov = (vectors[:, good] / values[good]) @ vectors[:, good].T
    cov = (cov + cov.T) / 2.0
    if np.any(flagged):
        cov[flagged, :] = np.nan
        cov[:, flagged] = np.nan
        cov[flagged, flagged] = np.inf
    return cov, flagged
