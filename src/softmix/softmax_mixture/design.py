"""The design in EM's coordinates: scale-free identification, whitening, and the checks that
depend on the design and the counts only (existence of the MLE, over-parametrisation).

Everything here is done once per fit (not per restart, not per iteration):

- :func:`prepare_design` decides which atom directions are identified on the *correlation*
  spectrum of the design (:func:`~softmix.softmax_mixture.model.design_spectrum`), so rescaling a
  column never changes the decision, and builds the working coordinates EM runs in;
- :func:`face_direction` detects counts that sit on a face of the convex hull of the design, in
  which case the likelihood has no maximum (the atoms diverge);
- :func:`~softmix.softmax_mixture.model.n_parameters` counts what the data can identify.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from softmix.core import xp as _xp
from softmix.exceptions import SoftmixWarning
from softmix.softmax_mixture.model import (
    _CHUNK_ROWS,
    SoftmaxMixtureParams,
    design_spectrum,
)

__all__ = ["Design", "face_direction", "prepare_design"]


@dataclass(frozen=True)
class Design:
    """The design in the coordinates EM works in, prepared once per fit.

    EM runs on working features ``z_j = B' (x_j - xbar)`` (rank r = L - n_unidentified) with
    working atoms ``theta'`` such that ``x_j' theta = z_j' theta' + const_k``, i.e.
    ``theta = B theta'``: the likelihood is the same in both coordinates. With ``D`` the
    diagonal of the columns' standard deviations and ``R = V Lambda V'`` the design's correlation
    matrix on its identified range (:func:`~softmix.softmax_mixture.model.design_spectrum`):

    - ``whiten=True``: ``B = D^{-1} V Lambda^{-1/2}``, so ``Cov(z) = I``. Newton's M-step is
      affine invariant (same iterates); the gradient M-step becomes the paper's whitened step.
    - ``whiten=False``: ``B = D^{-1} V`` (standardised columns, rotated; ``Cov(z) = Lambda``).

    Either way, rescaling column j of the design by ``s`` rescales row j of ``B`` by ``1/s``:
    the working problem is the same and the returned atoms rescale by ``1/s`` (equivariance).
    The returned atoms ``B theta'`` have zero component along unidentified directions in the
    standardised metric (the representative of each equivalence class of least standardised
    norm).

    Attributes
    ----------
    features : ndarray of shape (p, L)
        The design as given (not copied).
    transform : ndarray of shape (L, r)
        B.
    inverse : ndarray of shape (r, L)
        A left inverse of B on its range: ``theta' = inverse @ theta`` (projects out the
        unidentified directions).
    working_t : ndarray of shape (r, p)
        ``z'`` in C order: the only copy of the design EM touches (p r floats).
    n_unidentified : int
        L - r.
    whitened : bool
    variances : ndarray of shape (r,)
        ``Var(z)`` per working coordinate (ones when whitened): the metric of the ``ridge``
        penalty, ``sum_i variances_i theta'_i^2 = Var_j(x_j' theta)``.
    """

    features: np.ndarray
    transform: np.ndarray
    inverse: np.ndarray
    working_t: np.ndarray
    n_unidentified: int
    whitened: bool
    variances: np.ndarray

    def to_working(self, params: SoftmaxMixtureParams) -> SoftmaxMixtureParams:
        return SoftmaxMixtureParams(params.weights, params.atoms @ self.inverse.T)

    def from_working(self, params: SoftmaxMixtureParams) -> SoftmaxMixtureParams:
        return SoftmaxMixtureParams(params.weights, params.atoms @ self.transform.T)


def _collinear_columns(vectors: np.ndarray) -> list[int]:
    """Columns taking part in the null directions (standardised coordinates)."""
    if vectors.size == 0:
        return []
    return np.flatnonzero(np.max(np.abs(vectors), axis=1) > 1e-3).tolist()


def prepare_design(
    features: np.ndarray, *, whiten: bool = True, warn: bool = True, dtype: str = "float64"
) -> Design:
    """Check ``features`` for unidentified directions and build the working coordinates, once.

    Identification is decided on the correlation matrix of the design (scale-free: see
    :func:`~softmix.softmax_mixture.model.design_spectrum`). Cost O(p L^2) (one L x L
    covariance, computed in row blocks) and one (r, p) copy. Pass the result to
    :func:`~softmix.softmax_mixture.em.fit_em` in place of the raw features so restarts do not
    repeat it.

    Raises
    ------
    ValueError
        When no direction is identified (every column constant).

    Warns
    -----
    SoftmixWarning
        When some direction is unidentified (constant columns, or columns that are affine
        combinations of each other): atoms are then fit in the identified subspace and returned
        with zero component along the others. The warning names the columns involved.
    """
    mean, scale, values, vectors, null = design_spectrum(features)
    r = int(null.sum())
    if r == features.shape[1]:
        raise ValueError(
            f"features has no identified direction: every column is constant over the "
            f"{features.shape[0]} alternatives, so the choice probabilities do not depend on "
            "the atoms. Give features that vary across alternatives."
        )
    if r and warn:
        top = _xp.host(features.max(axis=0) if _xp.is_numpy(features)
                       else _xp.namespace(features).max(features, axis=0))
        low = _xp.host(features.min(axis=0) if _xp.is_numpy(features)
                       else _xp.namespace(features).min(features, axis=0))
        magnitude = np.maximum(np.abs(top), np.abs(low))
        constant = np.flatnonzero(top - low <= 1e3 * np.finfo(float).eps * magnitude)
        collinear = sorted(set(_collinear_columns(vectors[:, null])) - set(constant.tolist()))
        parts = []
        if constant.size:
            parts.append(f"constant column(s) {constant.tolist()}")
        if collinear:
            parts.append(f"column(s) {collinear} are affine combinations of each other "
                         "(collinear after standardising each column)")
        warnings.warn(
            f"features has {r} unidentified direction(s) ({'; '.join(parts)}): x_j' c is "
            "constant over the alternatives for some c != 0, so atoms are only defined up to "
            "adding such c. softmix fits in the identified subspace and returns atoms with zero "
            "component along those directions. Drop the constant/collinear columns to silence "
            "this warning.",
            SoftmixWarning,
            stacklevel=3,
        )
    basis = vectors[:, ~null]
    root = np.sqrt(values[~null])
    spread = root if whiten else np.ones(basis.shape[1])
    transform = basis / scale[:, None] / spread
    inverse = (basis * scale[:, None] * spread).T
    variances = np.ones(basis.shape[1]) if whiten else values[~null].copy()
    if not _xp.is_numpy(features):
        working_t = _working_on_device(features, mean, transform, dtype)
        return Design(features, transform, inverse, working_t, r, bool(whiten), variances)
    working_t = np.empty((basis.shape[1], features.shape[0]), dtype=np.dtype(dtype))
    for start in range(0, features.shape[0], _CHUNK_ROWS):  # no (p, L) temporary
        block = features[start : start + _CHUNK_ROWS] - mean
        working_t[:, start : start + _CHUNK_ROWS] = (block @ transform).T
    return Design(features, transform, inverse, working_t, r, bool(whiten), variances)


def _working_on_device(features, mean: np.ndarray, transform: np.ndarray, dtype: str):
    """``z' = B' (X - xbar)'`` (r, p) for an array of another namespace, built on its device in
    row blocks, in the design's own dtype (float32 stays float32; ``dtype="float32"`` also makes
    a float64 design float32): the working design never visits the host."""
    xp = _xp.namespace(features)
    import array_api_compat

    work = xp.float32 if dtype == "float32" else features.dtype
    centre = _xp.from_host(mean, features, xp.float64)
    basis = _xp.from_host(transform, features, xp.float64)
    p = features.shape[0]
    out = xp.empty((transform.shape[1], p), dtype=work,
                   device=array_api_compat.device(features))
    for start in range(0, p, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, p)  # the array API has no out-of-range slice stops
        # centred and rotated in float64 blocks (as the host path does), stored in ``work``
        block = xp.astype(features[start:stop, :], xp.float64) - centre
        out[:, start:stop] = xp.astype(xp.matmul(block, basis).T, work)
    return out


#: Optimal value of the face LP above which a face is reported (the LP's slacks are in working,
#: i.e. standardised, units and capped at 1 per alternative).
_FACE_TOL = 1e-7


def face_direction(design: Design, counts: np.ndarray) -> np.ndarray | None:
    """A direction along which every atom can move forever, raising the likelihood, or None.

    If every chosen alternative (``n_j > 0``) lies on a proper face of the convex hull of the
    design, i.e. some ``c`` has ``x_j' c = max_l x_l' c`` for every chosen j and ``<`` for some
    unchosen l, then moving every atom along ``c`` raises every chosen ``pi_j``: the
    log-likelihood increases strictly and without end, and no maximum-likelihood estimate exists
    (the atoms diverge; a fit returns arbitrary finite atoms wherever its budget or tolerance
    stopped it). Found by one small linear programme (scipy's HiGHS, ``r + 1`` variables, one
    row per alternative); skipped (None) when every alternative is chosen.

    Parameters
    ----------
    design : Design
    counts : ndarray of shape (p,)

    Returns
    -------
    ndarray of shape (L,) or None
        The direction ``c`` in the user's atom coordinates (unit norm), or None when the chosen
        alternatives are not on a proper face.
    """
    chosen = np.asarray(counts) > 0
    if chosen.all():
        return None
    from scipy.optimize import linprog

    z = _xp.to_host(design.working_t).T  # (p, r); from a device: one host copy, only here
    r = z.shape[1]
    on, off = z[chosen], z[~chosen]
    ones_on, ones_off = np.ones((on.shape[0], 1)), np.ones((off.shape[0], 1))
    # variables (c, t): z_j'c = t on the chosen; 0 <= t - z_l'c <= 1 off them; maximise the slack
    a_eq = np.hstack([on, -ones_on])
    a_ub = np.vstack([np.hstack([off, -ones_off]), np.hstack([-off, ones_off])])
    b_ub = np.concatenate([np.zeros(off.shape[0]), np.ones(off.shape[0])])
    objective = np.concatenate([off.sum(axis=0), [-float(off.shape[0])]])
    res = linprog(objective, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.zeros(on.shape[0]),
                  bounds=[(None, None)] * (r + 1), method="highs")
    if res.status != 0 or -float(res.fun) <= _FACE_TOL:
        return None
    direction = design.transform @ np.asarray(res.x[:r])
    norm = float(np.linalg.norm(direction))
    return direction / norm if norm > 0 else None
