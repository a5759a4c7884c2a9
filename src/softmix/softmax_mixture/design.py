"""The design in EM's coordinates: scale-free identification, whitening, the two design-sized
primitives of every fit, and the checks that depend on the design and the counts only.

Everything here is prepared once per fit (not per restart, not per iteration):

- :func:`prepare_design` decides which atom directions are identified on the *correlation*
  spectrum of the design (scale-free: rescaling a column never changes the decision) and builds
  the working coordinates EM runs in, **without** a copy of the design: EM keeps the user's X and
  transforms the atoms instead (:meth:`Design.scores`, :meth:`Design.project`). The whitening
  covariance comes from a row sample (all rows when p is small), the identification decision is
  checked on all p rows (see :func:`prepare_design`);
- :func:`face_direction` detects counts that sit on a face of the convex hull of the design, in
  which case the likelihood has no maximum (the atoms diverge);
- :func:`~softmix.softmax_mixture.model.n_parameters` counts what the data can identify.

The only operations whose cost grows with the design (p L) are the two methods
:meth:`Design.scores` ``(K, r) -> (K, p)`` and :meth:`Design.project` ``(M, p) -> (M, r)``; the
E-step, the M-steps (Newton's matrix-free Hessian-vector products included), the stop rule and
the objective go through them, so a port to another array library (or a chunked, out-of-core
design) changes these two functions.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field

import numpy as np

from softmix.core import xp as _xp
from softmix.exceptions import SoftmixWarning
from softmix.softmax_mixture.model import (
    _CHUNK_ROWS,
    UNIDENTIFIED_RTOL,
    SoftmaxMixtureParams,
    column_range,
)

__all__ = [
    "DEFAULT_SAMPLE_ROWS",
    "FACE_LP_MAX_ENTRIES",
    "Design",
    "design_chunk_rows",
    "face_direction",
    "identity_design",
    "prepare_design",
]

#: [chosen, measured in benchmarks/RESULTS.md ("setup at the cost of the problem")] Rows of the
#: design sampled for the whitening covariance: ``max(DEFAULT_SAMPLE_ROWS, 4 L)``, all rows when
#: p is not larger (then everything is exact, as before). Its cost ``n L^2 / 2`` (a symmetric
#: rank-n update) measured 1.0-1.5 EM maps' two products at p = 50,000, L = 768, K = 10 (the
#: whole of ``prepare_design`` 1.5 units, RESULTS.md section 12); the sampled covariance is within
#: ``~2 sqrt(L / n)`` (operator norm, relative) of the full one, which only preconditions EM
#: (Newton's iterates are affine invariant; the fixed points never depend on it).
DEFAULT_SAMPLE_ROWS = 8192
#: [chosen] Candidate null directions of the sample are those with sample eigenvalue below
#: ``_CANDIDATE_SAFETY * (p / n) * UNIDENTIFIED_RTOL * top``: the sample covariance is at most
#: ``p / n`` times the full one (a sum over fewer rows), so every direction null in all p rows
#: is a candidate; each candidate is then decided on all p rows.
_CANDIDATE_SAFETY = 1e4
#: [chosen] Work arrays of the E-step are (K, chunk) / (2K, chunk): the vocabulary is processed
#: in chunks of rows such that one (2K, chunk) float64 array stays below this many bytes.
CHUNK_BYTES = 64 * 2**20
#: [chosen] Largest design (p * (r + 1) entries) for which :func:`face_direction` solves its
#: linear programme (a dense float64 LP of that size); beyond it the check is skipped and
#: ``fit_em`` records ``extra["face_check"] = "skipped"``.
FACE_LP_MAX_ENTRIES = 10_000_000
#: [measured] The LP method of the face checks (scipy's HiGHS interior point): on MiniLM's
#: word embeddings a 308-token candidate face's LP (21,411 x 77, infeasible) took the default
#: dual simplex over 6 minutes (157 iterations in the first 60 s) and the interior-point method
#: 2-3 s (7 iterations).
FACE_LP_METHOD = "highs-ipm"


def design_chunk_rows(n_rows: int, width: int) -> int:
    """Rows per chunk so that a (2 * width, chunk) float64 work array is <= ``CHUNK_BYTES``."""
    return int(max(4096, min(n_rows, CHUNK_BYTES // (16 * max(width, 1)))))


def _as_compute(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return a if a.dtype == dtype else a.astype(dtype)


@dataclass(frozen=True, eq=False)
class Design:
    """The design in the coordinates EM works in, prepared once per fit.

    EM runs on working atoms ``theta'`` of dimension ``r = L - n_unidentified``, with
    ``theta = B theta'`` (``B = transform``) and *virtual* working features
    ``z_j = B' (x_j - mean)``: ``x_j' theta = z_j' theta' + const``, so the likelihood is the same
    in both coordinates. ``z`` is never formed: :meth:`scores` and :meth:`project` apply ``B``
    to the small side of each product and work on the user's X itself. With ``D`` the columns'
    standard deviations and ``R_s = V Lambda V'`` the correlation matrix of the sampled rows on
    the identified range:

    - ``whitened=True``: ``B = D^{-1} W`` with ``W' R_s W = I``, so ``Cov(z) ~ I`` (exactly I
      when every row was used, ``n_sample_rows == p``): ``W = R^{-1}`` from the Cholesky factor
      ``R'R = R_s`` when that certifies every direction identified (see
      :func:`prepare_design`), else ``W = V Lambda^{-1/2}``. The two differ by a rotation of the
      working coordinates: Newton's M-step is affine invariant (same iterates) and the gradient
      M-step, the paper's whitened step, is invariant to rotations.
    - ``whitened=False``: ``B = D^{-1} V`` (standardised columns, rotated).

    Rescaling column j of the design by ``s`` rescales row j of ``B`` by ``1/s``: the working
    problem is the same and the returned atoms rescale by ``1/s`` (equivariance). The returned
    atoms ``B theta'`` have zero component along unidentified directions in the standardised
    metric.

    Attributes
    ----------
    features : ndarray of shape (p, L)
        The design EM reads: the user's array itself (float64, or float32 as given), or one
        centred float32 copy when ``dtype="float32"`` was asked of a float64 design.
    mean : ndarray of shape (L,)
        Centre subtracted in :meth:`scores` / :meth:`project` (float64).
    transform : ndarray of shape (L, r)
        B.
    inverse : ndarray of shape (r, L)
        A left inverse of B on its range: ``theta' = inverse @ theta``.
    n_unidentified : int
        L - r.
    whitened : bool
    variances : ndarray of shape (r,)
        ``Var(z)`` per working coordinate on the rows the covariance was computed from (ones
        when whitened): the cheap metric of the gradient M-step's stop rule and, for a design
        prepared with ``exact=True`` (all rows), the ``ridge`` metric
        ``sum_i variances_i theta'_i^2 = Var_j(x_j' theta)``.
    sample_index : ndarray of shape (n,)
        Sorted rows the covariance was estimated from (``arange(p)`` when exact).
    chunk_rows : int
        Rows per chunk of the E-step (p: one chunk).
    """

    features: np.ndarray
    mean: np.ndarray
    transform: np.ndarray
    inverse: np.ndarray
    n_unidentified: int
    whitened: bool
    variances: np.ndarray
    sample_index: np.ndarray
    chunk_rows: int
    _cache: dict = field(default_factory=dict, repr=False)

    # -- sizes -----------------------------------------------------------------------------

    @property
    def n_alternatives(self) -> int:
        """p."""
        return int(self.features.shape[0])

    @property
    def n_working(self) -> int:
        """r, the dimension of the working atoms."""
        return int(self.transform.shape[1])

    @property
    def dtype(self) -> np.dtype:
        """Precision of the two products (the design's own dtype, as a NumPy dtype)."""
        if not _xp.is_numpy(self.features):
            return np.dtype(_xp.dtype_name(self.features))
        return self.features.dtype

    @property
    def exact(self) -> bool:
        """True when the covariance used every row (whitening and ``variances`` exact)."""
        return self.sample_index.shape[0] == self.n_alternatives

    def chunks(self) -> list[slice]:
        """Row slices covering ``0..p`` in order, ``chunk_rows`` each (one slice normally)."""
        p, step = self.n_alternatives, self.chunk_rows
        return [slice(start, min(start + step, p)) for start in range(0, p, step)]

    # -- the two design-sized primitives ---------------------------------------------------

    def scores(self, atoms: np.ndarray, rows: slice | None = None) -> np.ndarray:
        """Working scores ``z_j' theta'_k`` of working atoms, float64, shape (K, n_rows).

        ``(B theta')' x_j - (B theta')' mean``: one product ``A @ X[rows].T`` with the user-space
        atoms ``A = theta' B'`` (K, L), in the design's precision, widened to float64.

        Parameters
        ----------
        atoms : ndarray of shape (K, r)
        rows : slice, optional
            Rows of the design (all p when None).
        """
        x = self.features if rows is None else self.features[rows, :]
        user = np.asarray(atoms, dtype=float) @ self.transform.T  # (K, L)
        if not _xp.is_numpy(x):  # on the design's device (softmix.core.xp), float64 result
            out = _xp.dot(user, x.T)
            return out - _xp.from_host((user @ self.mean)[:, None], out)
        out = _as_compute(user, x.dtype) @ x.T
        out = out.astype(np.float64, copy=False)
        out -= (user @ self.mean)[:, None]
        return out

    def project(self, stacked: np.ndarray, rows: slice | None = None) -> np.ndarray:
        """``sum_j stacked_mj z_j``, float64, shape (M, r): the working-space image of row weights.

        ``(stacked @ X[rows] - stacked.sum(1) mean') @ B``: one product with the design in its
        precision, the rest on (M, L) arrays.

        Parameters
        ----------
        stacked : ndarray of shape (M, n_rows)
        rows : slice, optional
            Rows of the design ``stacked`` refers to (all p when None).
        """
        x = self.features if rows is None else self.features[rows, :]
        if not _xp.is_numpy(x):  # the product on the device, the (M, L) result on the host
            out = _xp.to_host(_xp.dot(stacked, x))
            sums = _xp.to_host(_xp.namespace(stacked).sum(stacked, axis=1)
                               if not _xp.is_numpy(stacked) else stacked.sum(axis=1))
            return (out - sums[:, None] * self.mean) @ self.transform
        out = (_as_compute(stacked, x.dtype) @ x).astype(np.float64, copy=False)
        out -= stacked.sum(axis=1)[:, None] * self.mean
        return out @ self.transform

    def weighted_covariance(self, weights: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """``sum_j w_j (z_j - c)(z_j - c)'``, float64, shape (r, r): with ``w = pi(theta)`` and
        ``c = xbar(theta)`` the dense Newton Hessian ``Cov_pi(z)`` (centred before the product,
        so no cancellation on an ill-conditioned covariance).

        For r <= 30 from the cached ``working_rows_t``; otherwise in row blocks of at most
        ~32 MB of working rows (``scores`` of the identity on each block), so no design-sized
        array is formed. Cost O(p L r).
        """
        w = np.asarray(weights, dtype=float)
        c = np.asarray(centre, dtype=float)[:, None]
        r = self.n_working
        if r <= _SMALL_WORKING:
            # [measured] uncentred here (the cached rows, as before the blocked path existed):
            # with dtype="float32" on a t(3) design the centred form left the float32 stop rule
            # at 1.8e-8 N, above its 1e-8 N floor (tests/test_softmax_mixture_auto.py), the
            # uncentred one at 0.85e-8 N; both are at float32's precision
            z = self.working_rows_t()
            out = (z * w) @ z.T - c @ c.T
            return (out + out.T) / 2.0
        eye = np.eye(r)
        step = max(1, (32 << 20) // (8 * r))
        out = np.zeros((r, r))
        for start in range(0, self.n_alternatives, step):
            rows = slice(start, min(start + step, self.n_alternatives))
            z = _xp.host(self.scores(eye, rows)) - c  # (r, n_rows), on the host
            out += (z * w[rows]) @ z.T
        return (out + out.T) / 2.0

    # -- derived, cached -------------------------------------------------------------------

    def working_rows_t(self) -> np.ndarray:
        """The working features ``z'`` (r, p), float64, formed once and cached: only for small
        r (the dense Newton Hessian, r <= 30) and small LPs, never on the default large path."""
        if "z_t" not in self._cache:
            out = np.empty((self.n_working, self.n_alternatives))
            eye = np.eye(self.n_working)
            for rows in self.chunks():
                out[:, rows] = _xp.host(self.scores(eye, rows))
            self._cache["z_t"] = out
        return self._cache["z_t"]

    def exact_design(self) -> Design:
        """This design prepared from all p rows (cached; itself when already exact): what the
        ``ridge`` metric needs. Cost O(p L^2) once."""
        if self.exact:
            return self
        if "exact" not in self._cache:
            self._cache["exact"] = prepare_design(
                self.features, whiten=self.whitened, warn=False, exact=True)
        return self._cache["exact"]

    def sample_working(self, directions: np.ndarray, index: np.ndarray) -> np.ndarray:
        """``u' z_j`` for the rows j of ``index`` (sorted row indices) and working directions
        u (D, r): (n, D) float64, O(n L D)."""
        index = np.asarray(index)
        u = np.asarray(directions, dtype=float) @ self.transform.T  # (D, L)
        out = np.empty((index.shape[0], u.shape[0]))
        every = index.shape[0] == self.n_alternatives  # all rows: slices, no gather
        for start in range(0, out.shape[0], _CHUNK_ROWS):
            idx = index[start : start + _CHUNK_ROWS]
            if not _xp.is_numpy(self.features):  # a gather on the device, the block to host
                block = _rows(self.features, idx) - self.mean
            else:
                block = (self.features[start : start + idx.shape[0]] if every
                         else self.features[idx]).astype(np.float64) - self.mean
            out[start : start + idx.shape[0]] = block @ u.T
        return out

    def to_working(self, params: SoftmaxMixtureParams) -> SoftmaxMixtureParams:
        return SoftmaxMixtureParams(params.weights, params.atoms @ self.inverse.T)

    def from_working(self, params: SoftmaxMixtureParams) -> SoftmaxMixtureParams:
        return SoftmaxMixtureParams(params.weights, params.atoms @ self.transform.T)


def identity_design(features: np.ndarray) -> Design:
    """The design as it is (``B = I``, no centring, no whitening): for :func:`~softmix.
    softmax_mixture.em.e_step`, :func:`~softmix.softmax_mixture.em.make_em_map` and friends
    called on a raw (p, L) array, whose parameters are then in the user's coordinates.
    ``variances`` are the columns' variances."""
    x = np.asarray(features)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    p, length = x.shape
    eye = np.eye(length)
    variances = np.asarray(x.var(axis=0), dtype=float)
    return Design(x, np.zeros(length), eye, eye, 0, False, variances, np.arange(p),
                  design_chunk_rows(p, 1))


#: Working dimensions up to which the working rows ``z'`` (r, p) are cached (the dense Newton
#: Hessian below ``em._NEWTON_DENSE_MAX_FEATURES``).
_SMALL_WORKING = 30


def _collinear_columns(vectors: np.ndarray) -> list[int]:
    """Columns taking part in the null directions (standardised coordinates)."""
    if vectors.size == 0:
        return []
    return np.flatnonzero(np.max(np.abs(vectors), axis=1) > 1e-3).tolist()


def _rows(x, index: np.ndarray) -> np.ndarray:
    """``x[index]`` as NumPy float64: a gather on the device for another namespace (a block of
    rows, copied to the host)."""
    if _xp.is_numpy(x):
        return x[index].astype(np.float64)
    xp = _xp.namespace(x)
    return _xp.to_host(xp.take(x, _xp.from_host(index, x, xp.int64), axis=0))


def _sample_covariance(x: np.ndarray, index: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``sum_{j in index} (x_j - mean)(x_j - mean)'`` in float64, in blocks of rows."""
    length = x.shape[1]
    out = np.zeros((length, length))
    contiguous = index.shape[0] == x.shape[0]
    if not _xp.is_numpy(x):  # float64 blocks on the device, the (L, L) sum on the host
        xp = _xp.namespace(x)
        centre = _xp.from_host(mean, x, xp.float64)
        for start in range(0, index.shape[0], _CHUNK_ROWS):
            stop = min(start + _CHUNK_ROWS, index.shape[0])  # no out-of-range stops in the API
            block = (x[start:stop, :] if contiguous else xp.take(
                x, _xp.from_host(index[start:stop], x, xp.int64), axis=0))
            block = xp.astype(block, xp.float64) - centre
            out += _xp.to_host(xp.matmul(block.T, block))
        return (out + out.T) / 2.0
    for start in range(0, index.shape[0], _CHUNK_ROWS):
        if contiguous:  # a view: one centred float64 copy of the block
            block = np.subtract(x[start : start + _CHUNK_ROWS], mean, dtype=np.float64)
        else:  # the gather is a copy already: centred in place when float64
            block = x[index[start : start + _CHUNK_ROWS]]
            if block.dtype == np.float64:
                block -= mean
            else:
                block = np.subtract(block, mean, dtype=np.float64)
        out += block.T @ block  # one operand transposed: a symmetric rank-k update (syrk)
    return (out + out.T) / 2.0


def _exact_covariance_along(x: np.ndarray, mean: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """``W' Sigma W`` over all p rows (W = directions, (L, m)): one thin product, O(p L m)."""
    m = directions.shape[1]
    out = np.zeros((m, m))
    shift = mean @ directions
    if not _xp.is_numpy(x):  # (p, m) thin product on the device, in the design's precision
        proj = _xp.to_host(_xp.dot(x, directions)) - shift
        out = proj.T @ proj
        return (out + out.T) / 2.0 / x.shape[0]
    w = _as_compute(directions, x.dtype)
    for start in range(0, x.shape[0], _CHUNK_ROWS):
        proj = (x[start : start + _CHUNK_ROWS] @ w).astype(np.float64) - shift
        out += proj.T @ proj
    return (out + out.T) / 2.0 / x.shape[0]


def _centred_float32(x, mean: np.ndarray):
    """The one centred float32 copy of a float64 design of another namespace, on its device,
    made in row blocks (``dtype="float32"``)."""
    import array_api_compat

    xp = _xp.namespace(x)
    out = xp.empty(tuple(x.shape), dtype=xp.float32, device=array_api_compat.device(x))
    centre = _xp.from_host(mean, x)
    for start in range(0, x.shape[0], _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, x.shape[0])
        out[start:stop, :] = xp.astype(x[start:stop, :] - centre, xp.float32)
    return out


def _certified_cholesky(corr: np.ndarray, threshold: float):
    """``(R, R^{-1})`` with ``R'R = corr`` (R upper triangular), or None, when it proves that no
    eigenvalue of ``corr`` is at most ``threshold`` times the largest.

    [chosen] The whitening ``W = R^{-1}`` needs ``L^3 / 3`` flops where the eigen-decomposition
    needs ~9 L^3 (about one EM map's two products at p = 50,000, L = 768). The decision stays
    the eigen-decomposition's: ``||R^{-1}||_F^{-2} = 1 / sum_i lambda_i^{-1} <= lambda_min`` and
    ``||corr||_F >= lambda_max``, so ``||R^{-1}||_F^{-2} > 2 threshold ||corr||_F`` (a factor 2
    for round-off: Cholesky's backward error is ~L eps ||corr||, orders below any threshold used
    here) means every eigenvalue is above ``threshold * lambda_max``: there is no candidate null
    direction, as the eigenvalues would have said. None (the caller decomposes) when Cholesky
    fails (a constant column, a singular sample) or the bound is not met (an ill-conditioned
    design: the bound is loose by up to a factor ~L, so such designs take the exact route).
    """
    from scipy.linalg import LinAlgError, cholesky, lapack

    if not np.all(np.diag(corr) > 0):
        return None
    try:
        upper = cholesky(corr, lower=False, check_finite=False)
    except LinAlgError:
        return None
    upper_inv, info = lapack.dtrtri(upper, lower=0)
    if info != 0 or not np.all(np.isfinite(upper_inv)):
        return None
    bound = 1.0 / float(np.sum(upper_inv**2))
    if not bound > 2.0 * threshold * float(np.linalg.norm(corr)):
        return None
    return upper, np.triu(upper_inv)


def prepare_design(
    features: np.ndarray, *, whiten: bool = True, warn: bool = True, dtype: str = "float64",
    sample_rows: int | None = None, exact: bool = False, column_stats=None,
) -> Design:
    """Check ``features`` for unidentified directions and build the working coordinates, once.

    Nothing design-sized is allocated: EM works on ``features`` itself (a float32 design is used
    as is; ``dtype="float32"`` on a float64 design makes the one centred float32 copy EM then
    reads). Steps and costs:

    1. one pass over X (blocked): column means, maxima and minima (constant columns);
    2. the covariance of a row sample (``n = max(DEFAULT_SAMPLE_ROWS, 4 L)`` rows, fixed
       seed; every row when ``p <= n`` or ``exact=True``), O(n L^2) (a symmetric rank-n
       update), and the Cholesky factor of its correlation matrix, ``L^3 / 3`` flops: when its
       inverse proves every eigenvalue above the candidate threshold of step 3 (no direction can
       be unidentified, :func:`_certified_cholesky`), the whitening is ``R^{-1}`` and step 3 is
       not needed; otherwise (a constant column, near-collinear columns, ``whiten=False``) the
       eigen-decomposition of the correlation matrix, ~9 L^3 flops, and step 3;
    3. identification, decided on all p rows: a direction null in all rows is null in any
       sample, so the sample's near-null eigen-directions (below ``1e4 (p / n) * 1e-10`` of the
       largest eigenvalue) are the only candidates; their exact covariance over all rows (one
       thin product, O(p L m) for m candidates) decides with the rule of
       :data:`~softmix.softmax_mixture.model.UNIDENTIFIED_RTOL` (eigenvalue of the correlation
       matrix below 1e-10 times the largest, the largest taken as the exact Rayleigh quotient
       of the sample's top direction). When all rows are used this is exactly the full
       correlation spectrum of :func:`~softmix.softmax_mixture.model.design_spectrum`.

    Pass the result to :func:`~softmix.softmax_mixture.em.fit_em` in place of the raw features
    so restarts do not repeat it.

    Parameters
    ----------
    features : ndarray of shape (p, L)
        The checked design (:func:`~softmix.softmax_mixture.model.check_features`).
    whiten : bool
    warn : bool
        Warn about unidentified directions.
    dtype : {"float64", "float32"}
        Precision of the two products per iteration.
    sample_rows : int, optional
        Rows for the covariance (default ``max(DEFAULT_SAMPLE_ROWS, 4 L)``).
    exact : bool
        Use every row (what the ``ridge`` metric needs; O(p L^2)).
    column_stats : tuple, optional
        ``(colmax, colmin, mean)`` of ``features`` from ``check_features(...,
        return_range=True)``, so step 1 is not repeated.

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
    x = features
    p, length = x.shape
    target = np.dtype(dtype)
    device = not _xp.is_numpy(x)  # another namespace (softmix.core.xp): x stays on its device
    if not device and x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    colmax, colmin, mean = (column_range(x, with_mean=True) if column_stats is None
                            else column_stats)
    if device and target == np.float32 and _xp.dtype_name(x) != "float32":
        x, colmax, colmin, mean = (_centred_float32(x, mean), colmax - mean, colmin - mean,
                                   np.zeros(length))
    elif not device and target == np.float32 and x.dtype != np.float32:
        copy = np.empty(x.shape, dtype=np.float32)  # the one float32 copy, centred in blocks
        for start in range(0, p, _CHUNK_ROWS):
            copy[start : start + _CHUNK_ROWS] = x[start : start + _CHUNK_ROWS] - mean
        x, colmax, colmin, mean = copy, colmax - mean, colmin - mean, np.zeros(length)
    magnitude = np.maximum(np.abs(colmax), np.abs(colmin))
    constant = (colmax - colmin) <= 1e3 * np.finfo(float).eps * magnitude
    n = p if exact else min(p, int(sample_rows) if sample_rows is not None
                            else max(DEFAULT_SAMPLE_ROWS, 4 * length))
    n = max(n, min(p, 2))
    index = (np.arange(p) if n == p
             else np.sort(np.random.default_rng(20241201).choice(p, size=n, replace=False)))
    cov = _sample_covariance(x, index, mean) / n
    scale = np.sqrt(np.maximum(np.diag(cov), 0.0))
    scale = np.where(constant | (scale == 0), 1.0, scale)
    corr = cov / np.outer(scale, scale)
    corr[constant, :] = 0.0
    corr[:, constant] = 0.0
    threshold = UNIDENTIFIED_RTOL * (1.0 if n == p else _CANDIDATE_SAFETY * p / n)
    factor = _certified_cholesky(corr, threshold) if whiten else None
    if factor is not None:  # every direction identified, certified without an eigh
        upper, upper_inv = factor
        return Design(x, mean, upper_inv / scale[:, None], upper * scale[None, :], 0, True,
                      np.ones(length), index, design_chunk_rows(p, 16))
    values, vectors = np.linalg.eigh(corr)
    top = max(float(values[-1]), 0.0)
    if n == p:  # every row: the exact correlation spectrum
        null = values <= UNIDENTIFIED_RTOL * top if top > 0 else np.ones(length, dtype=bool)
        keep_basis, keep_values = vectors[:, ~null], values[~null]
        null_basis = vectors[:, null]
    else:
        cand = values <= _CANDIDATE_SAFETY * (p / n) * UNIDENTIFIED_RTOL * top
        cand[-1] = False
        check = np.column_stack([vectors[:, cand], vectors[:, -1]]) / scale[:, None]
        exact_cov = _exact_covariance_along(x, mean, check)
        top_full = float(exact_cov[-1, -1])
        sub_values, sub_vectors = np.linalg.eigh(exact_cov[:-1, :-1])
        sub_null = sub_values <= UNIDENTIFIED_RTOL * top_full if top_full > 0 else (
            np.ones(sub_values.shape, dtype=bool))
        rotated = vectors[:, cand] @ sub_vectors
        keep_basis = np.column_stack([vectors[:, ~cand], rotated[:, ~sub_null]])
        keep_values = np.concatenate([values[~cand], sub_values[~sub_null]])
        null_basis = rotated[:, sub_null]
    r = int(null_basis.shape[1])
    if r == length:
        raise ValueError(
            f"features has no identified direction: every column is constant over the "
            f"{p} alternatives, so the choice probabilities do not depend on "
            "the atoms. Give features that vary across alternatives."
        )
    if r and warn:
        constant_cols = np.flatnonzero(constant)
        collinear = sorted(set(_collinear_columns(null_basis)) - set(constant_cols.tolist()))
        parts = []
        if constant_cols.size:
            parts.append(f"constant column(s) {constant_cols.tolist()}")
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
    root = np.sqrt(np.maximum(keep_values, np.finfo(float).tiny))
    spread = root if whiten else np.ones(keep_basis.shape[1])
    transform = keep_basis / scale[:, None] / spread
    inverse = (keep_basis * scale[:, None] * spread).T
    variances = np.ones(keep_basis.shape[1]) if whiten else keep_values.copy()
    return Design(x, mean, transform, inverse, r, bool(whiten), variances, index,
                  design_chunk_rows(p, 16))


#: Optimal value of the face LP above which a face is reported (the LP's slacks are in working,
#: i.e. standardised, units and capped at 1 per alternative).
_FACE_TOL = 1e-7


def _spans_affinely(design: Design, chosen: np.ndarray) -> bool:
    """True when (a spread subset of) the chosen alternatives affinely spans the identified space.

    Then no hyperplane ``x'c = t`` contains them all, so they lie on no proper face and the LP of
    :func:`face_direction` is not needed: an O(m L r) rank check on ``m <= 4 r + 1`` chosen rows
    in working coordinates. [measured] On MiniLM's 21,719 x 384 word embeddings with 18,123
    chosen tokens the LP took 367 s (on a loaded 2-core machine), this check well under a second.
    False (undecided: the LP decides) when the subset is rank-deficient.
    """
    rows = np.flatnonzero(chosen)
    r = design.transform.shape[1]
    if rows.size <= r:
        return False
    pick = rows[np.unique(np.linspace(0, rows.size - 1, min(rows.size, 4 * r + 1)).astype(int))]
    block = np.asarray(design.features[pick], dtype=float)
    z = (block - block.mean(axis=0)) @ design.transform
    sv = np.linalg.svd(z, compute_uv=False)
    return bool(sv.size == r and sv[-1] > 1e-6 * sv[0])


def face_direction(design: Design, counts: np.ndarray) -> np.ndarray | None:
    """A direction along which every atom can move forever, raising the likelihood, or None.

    If every chosen alternative (``n_j > 0``) lies on a proper face of the convex hull of the
    design, i.e. some ``c`` has ``x_j' c = max_l x_l' c`` for every chosen j and ``<`` for some
    unchosen l, then moving every atom along ``c`` raises every chosen ``pi_j``: the
    log-likelihood increases strictly and without end, and no maximum-likelihood estimate exists
    (the atoms diverge; a fit returns arbitrary finite atoms wherever its budget or tolerance
    stopped it). Found by one linear programme in the directions that keep the chosen
    alternatives level (their null space, ``n0 <= r`` variables, two rows per unchosen
    alternative; :func:`face_null_space`, :data:`FACE_LP_METHOD`); skipped (None) when every alternative is chosen, and when the LP would
    be larger than :data:`FACE_LP_MAX_ENTRIES` (see :func:`face_check_skipped`). Solved once
    per design and set of chosen alternatives (kept in the design's cache).

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
    # the answer depends on which alternatives are chosen only: kept on the design, so that
    # restarts and screened starts on the same data solve the LP once
    key = ("face_direction", hashlib.sha1(np.packbits(chosen).tobytes()).hexdigest())
    if key not in design._cache:
        design._cache[key] = _face_direction(design, chosen, counts)
    found = design._cache[key]
    return None if found is None else found.copy()


def _face_direction(design: Design, chosen: np.ndarray, counts: np.ndarray) -> np.ndarray | None:
    if chosen.all() or _spans_affinely(design, chosen) or face_check_skipped(design, counts):
        return None
    from scipy.optimize import linprog

    index = np.flatnonzero(chosen)
    zf, null = face_null_space(design, index)
    if null.shape[1] == 0:  # the chosen alternatives affinely span the working space
        return None
    rows = face_rows(design, index, zf, null)
    # c = N u keeps every chosen z_j'c equal; rows u = (z_l - z_f)'c is how far each unchosen
    # alternative is above the chosen level: keep it in [-1, 0] and maximise the total drop
    # (the LP of the original (c, t) form, in the n0 <= r directions of the null space only)
    n0 = null.shape[1]
    res = linprog(rows.sum(axis=0), A_ub=np.vstack([rows, -rows]),
                  b_ub=np.concatenate([np.zeros(rows.shape[0]), np.ones(rows.shape[0])]),
                  bounds=[(None, None)] * n0, method=FACE_LP_METHOD)
    if res.status != 0 or -float(res.fun) <= _FACE_TOL:
        return None
    direction = design.transform @ (null @ np.asarray(res.x))
    norm = float(np.linalg.norm(direction))
    return direction / norm if norm > 0 else None


def face_null_space(design: Design, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The working directions that keep the alternatives ``index`` level, for the face LPs.

    Returns ``(zf, null)``: ``zf`` (m, r) the working rows of ``index`` and ``null`` (r, n0) an
    orthonormal basis of the directions ``d`` with ``z_j' d`` equal for all j in ``index`` (the
    null space of their differences, by SVD, relative tolerance 1e-9); n0 = 0 when they
    affinely span the working space (then they lie on no proper face). O(m r^2).
    """
    r = design.n_working
    zf = design.sample_working(np.eye(r), np.asarray(index))
    diffs = zf[1:] - zf[0]
    if not diffs.shape[0]:
        return zf, np.eye(r)
    _, sv, vt = np.linalg.svd(diffs, full_matrices=True)
    rank = int(np.sum(sv > 1e-9 * sv[0])) if sv.size and sv[0] > 0 else 0
    return zf, vt[rank:].T


def face_rows(design: Design, index: np.ndarray, zf: np.ndarray,
              null: np.ndarray) -> np.ndarray:
    """``(z_l - z_f)' null`` (p - m, n0) for every alternative l not in ``index`` (z_f the first
    row of ``zf``): how far each is above the level of ``index`` along each direction of
    ``null`` (from :func:`face_null_space`). O(p L n0)."""
    off = np.ones(design.n_alternatives, dtype=bool)
    off[np.asarray(index)] = False
    level = zf[0] @ null
    return (_xp.host(design.scores(null.T))[:, off] - level[:, None]).T


def face_check_skipped(design: Design, counts: np.ndarray) -> bool:
    """True when some alternative is unchosen, the chosen ones do not provably span (see
    ``_spans_affinely``) and the face LP is too large to solve (``p (r + 1) >
    FACE_LP_MAX_ENTRIES``): the existence of the MLE is then not checked."""
    chosen = np.asarray(counts) > 0
    if bool(np.all(chosen)):
        return False
    if design.n_alternatives * (design.n_working + 1) <= FACE_LP_MAX_ENTRIES:
        return False
    return not _spans_affinely(design, chosen)
