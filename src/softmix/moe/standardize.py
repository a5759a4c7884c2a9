"""Internal coordinates of a mixture-of-experts fit: centred, scaled, identified columns.

:class:`~softmix.moe.estimator.MixtureOfExperts` fits in standardised coordinates and maps the
result back, so a fit is the same, up to the implied reparametrisation, when a column of ``X``
(or, for Gaussian experts, ``y``) is shifted or rescaled. Without this, the numerics depend on
the units: adding 1e6 to a column of ``X`` on the Gaussian-MoE paper's model made the
least-squares M-step drop that column (log-likelihood -5,409 instead of -851, reported as
converged and silent), because the intercept and the shifted column are collinear to 1e-12.

Internal coordinates (``m``, ``s``: column means and standard deviations of ``X``)::

    z = (x_kept - m) / s,        y_std = (y - m_y) / s_y   (Gaussian experts only)

A coefficient row ``[c0, c]`` on ``[1, z]`` (a gating row, a logistic row, a multinomial class
row, or a Gaussian mean row in ``y_std`` units) is ``[c0 - c'(m / s), c / s]`` on ``[1, x]``;
a Gaussian mean row is then multiplied by ``s_y`` and its intercept shifted by ``m_y``; a
variance is multiplied by ``s_y**2``. The log-likelihood in the original units is the internal
one minus ``n log s_y``.

Identification: a column that is constant, or a linear combination of the intercept and the
columns before it (pivoted QR of the standardised columns, relative threshold
:data:`RANK_TOL`, or the column's own round-off ``1e3 eps max|x_j| / sd_j`` if larger, e.g.
for ``1e6 + 1e-3 x``; scale-free because the columns have unit spread), carries no information a
fit could use. It is left out of the internal design, its coefficients are reported as 0, a
:class:`~softmix.exceptions.SoftmixWarning` names it, and the free-parameter count (BIC/AIC)
counts only the kept columns.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import linalg

from softmix.exceptions import SoftmixWarning
from softmix.moe.model import MoEParams

__all__ = ["RANK_TOL", "Standardizer", "fit_standardizer", "standardizer_from_moments"]

#: A standardised column is dropped when the pivoted-QR diagonal ``|R_jj|`` is below this
#: fraction of ``|R_00|`` (the column is a combination of the others to ~1e-9 of its spread).
RANK_TOL = 1e-9


@dataclass(frozen=True)
class Standardizer:
    """The map between a user's units and a fit's internal coordinates (see the module notes).

    Attributes
    ----------
    x_mean, x_scale : ndarray of shape (n_features,)
        Column means and standard deviations of ``X`` (1 for a constant column).
    keep : ndarray of int
        Indices of the columns in the internal design (the identified ones), in order.
    y_mean, y_scale : float
        Location and scale of ``y`` (0 and 1 for classification experts).
    """

    x_mean: np.ndarray
    x_scale: np.ndarray
    keep: np.ndarray
    y_mean: float = 0.0
    y_scale: float = 1.0

    @property
    def n_features(self) -> int:
        return self.x_mean.size

    @property
    def dropped(self) -> list[int]:
        """Indices of the columns left out (constant or collinear)."""
        return sorted(set(range(self.n_features)) - set(self.keep.tolist()))

    def transform_X(self, X: np.ndarray) -> np.ndarray:
        """Internal design columns ``(X[:, keep] - m) / s``, shape (n, len(keep))."""
        k = self.keep
        return (np.asarray(X, dtype=float)[:, k] - self.x_mean[k]) / self.x_scale[k]

    def transform_y(self, y: np.ndarray) -> np.ndarray:
        """``(y - m_y) / s_y`` (identity for classification labels)."""
        if self.y_scale == 1.0 and self.y_mean == 0.0:
            return y
        return (np.asarray(y, dtype=float) - self.y_mean) / self.y_scale

    def log_scale(self, n: int) -> float:
        """``n log s_y``: internal log-likelihood minus this is the one in the user's units."""
        return n * float(np.log(self.y_scale))

    # ---------------------------------------------------------------- coefficient rows
    def _rows_out(self, rows: np.ndarray) -> np.ndarray:
        """Rows on ``[1, z]`` (..., 1 + len(keep)) -> rows on ``[1, x]`` (..., 1 + d)."""
        k = self.keep
        slopes = rows[..., 1:] / self.x_scale[k]
        out = np.zeros(rows.shape[:-1] + (self.n_features + 1,))
        out[..., 0] = rows[..., 0] - slopes @ self.x_mean[k]
        out[..., 1 + k] = slopes
        return out

    def _rows_in(self, rows: np.ndarray) -> np.ndarray:
        """Rows on ``[1, x]`` -> rows on ``[1, z]``; a dropped constant column's term goes into
        the intercept (a dropped collinear column's cannot be represented and is ignored)."""
        k = self.keep
        out = np.empty(rows.shape[:-1] + (k.size + 1,))
        out[..., 0] = rows[..., 0] + rows[..., 1:] @ self.x_mean
        out[..., 1:] = rows[..., 1 + k] * self.x_scale[k]
        return out

    def params_out(self, params: MoEParams) -> MoEParams:
        """Internal parameters -> the same model in the user's units."""
        coef = self._rows_out(np.asarray(params.expert_coef))
        var = params.expert_variance
        if var is not None:
            coef = coef * self.y_scale
            coef[:, 0] += self.y_mean
            var = np.asarray(var) * self.y_scale**2
        return MoEParams(self._rows_out(np.asarray(params.gating)), coef, var, params.expert)

    def params_in(self, params: MoEParams) -> MoEParams:
        """Parameters in the user's units -> internal coordinates (e.g. a given start)."""
        coef = np.array(params.expert_coef, dtype=float)
        var = params.expert_variance
        if var is not None:
            coef[:, 0] -= self.y_mean
            coef = coef / self.y_scale
            var = np.asarray(var) / self.y_scale**2
        return MoEParams(self._rows_in(np.asarray(params.gating)), self._rows_in(coef), var,
                         params.expert)

    def variance_floor_in(self, floor: float | None) -> float | None:
        """A variance floor in ``y``'s units -> internal units."""
        return None if floor is None else floor / self.y_scale**2


def fit_standardizer(X: np.ndarray, y: np.ndarray, gaussian: bool, *,
                     warn: bool = True) -> Standardizer:
    """Column means and scales of ``X`` (and ``y`` for Gaussian experts) and the identified
    columns; warns naming every constant or collinear column that is left out.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    gaussian : bool
        Standardise ``y`` too (Gaussian experts).
    warn : bool
        Emit the :class:`~softmix.exceptions.SoftmixWarning` about dropped columns.
    """
    X = np.asarray(X, dtype=float)
    mean = X.mean(axis=0)
    y_mean = y_sd = None
    if gaussian:
        y = np.asarray(y, dtype=float)
        y_mean, y_sd = float(y.mean()), float(y.std())
    return standardizer_from_moments(mean, X.std(axis=0), np.max(np.abs(X), axis=0),
                                     X - mean, y_mean, y_sd, warn=warn, stacklevel=4)


def standardizer_from_moments(mean: np.ndarray, sd: np.ndarray, max_abs: np.ndarray,
                              factor: np.ndarray, y_mean: float | None = None,
                              y_sd: float | None = None, *, warn: bool = True,
                              stacklevel: int = 3) -> Standardizer:
    """:func:`fit_standardizer` from the columns' moments, for data held in blocks.

    Parameters
    ----------
    mean, sd, max_abs : ndarray of shape (d,)
        Column means, standard deviations (``ddof=0``) and largest absolute values of ``X``.
    factor : ndarray of shape (m, d)
        Any ``F`` with ``F'F = Xc'Xc`` for the centred columns ``Xc = X - mean``: ``Xc``
        itself, or the ``R`` factor of its (tall-skinny) QR decomposition, which a chunked
        reduction computes (:mod:`softmix.moe.dask`). Pivoted QR of ``F`` has the same ``R``
        diagonal and pivots as that of ``Xc``, so the rank decision is the same.
    y_mean, y_sd : float, optional
        Location and spread of ``y`` (Gaussian experts); None: ``y`` is not standardised.
    warn, stacklevel : bool, int
        Emit the warning about dropped columns (at this ``stacklevel``).
    """
    mean, sd, max_abs = (np.asarray(v, dtype=float) for v in (mean, sd, max_abs))
    factor = np.asarray(factor, dtype=float)
    # a spread at round-off level of the values is no spread (e.g. 1e6 + 1e-12 noise)
    constant = sd <= 64.0 * np.finfo(float).eps * np.maximum(np.abs(mean), np.finfo(float).tiny)
    scale = np.where(constant | (sd == 0), 1.0, sd)
    candidates = np.flatnonzero(~constant)
    keep = candidates
    collinear: list[int] = []
    if candidates.size:
        Z = factor[:, candidates] / scale[candidates]
        _, R, piv = linalg.qr(Z, mode="economic", pivoting=True, check_finite=False)
        diag = np.abs(np.diag(R))
        # a column is known only to its round-off, eps max|x_j| (e.g. x + 1e6): a residual
        # below that, relative to its spread, is no information either
        precision = 1e3 * np.finfo(float).eps * max_abs[candidates] / scale[candidates]
        # the residual of a column on the earlier ones carries the round-off of all of them
        tol = np.maximum(RANK_TOL, np.maximum.accumulate(precision[piv])) \
            * (diag[0] if diag.size else 0.0)
        ok = diag > tol
        rank = int(np.argmin(ok)) if not ok.all() else ok.size
        keep = np.sort(candidates[piv[:rank]])
        collinear = sorted(candidates[piv[rank:]].tolist())
    y_scale = 1.0
    if y_mean is not None and y_sd is not None:
        y_scale = y_sd if y_sd > 64.0 * np.finfo(float).eps * max(abs(y_mean), 1e-300) else 1.0
    else:
        y_mean = 0.0
    if warn and (constant.any() or collinear):
        parts = []
        if constant.any():
            parts.append(f"constant column(s) {np.flatnonzero(constant).tolist()} (collinear "
                         "with the intercept)")
        if collinear:
            parts.append(f"column(s) {collinear} (a linear combination of the intercept and "
                         f"columns {keep.tolist()})")
        warnings.warn(
            "X is rank-deficient: " + " and ".join(parts) + " carry no information the fit "
            "can use; their coefficients are reported as 0 and not counted in n_parameters_ "
            "(BIC/AIC). Remove them from X, or combine them into one column.",
            SoftmixWarning,
            stacklevel=stacklevel,
        )
    return Standardizer(mean, scale, np.asarray(keep, dtype=np.intp), y_mean, y_scale)
