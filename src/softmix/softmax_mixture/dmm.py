"""Denoised method of moments in one dimension (Wu & Yang 2020).

Given noisy estimates ``m_1..m_{2K-1}`` of the moments of a K-atom probability measure on
``[-R, R]``:

1. **Denoise**: project them onto the moment space of probability measures on ``[-R, R]``, a
   small semidefinite program over the Hankel matrices (:func:`project_moments`);
2. **Gauss quadrature** (Golub–Welsch): the K-point quadrature rule of the projected moments is
   the estimated measure (:func:`gauss_quadrature`).

Without step 1, noisy moments usually are not the moments of any measure and the quadrature
is unusable for K >= 3. Reference: Y. Wu and P. Yang, "Optimal estimation of Gaussian mixtures via
denoised method of moments", Annals of Statistics 48(4), 2020. Their reference implementation
(``Albuso0/mixture``) was read; this is our own code (different quadrature construction: no
``m_{2K} = 1e10`` stand-in, the last Cholesky column comes from a triangular solve).

Solver: the SDP is solved with cvxpy using **Clarabel** (an interior-point conic solver that
installs from PyPI with cvxpy itself), falling back to **SCS** (also installed with cvxpy) if
Clarabel fails. cvxpy is the optional extra ``softmix[mom]``; it is imported only when a
projection is actually needed (moments already in the moment space are their own
projection and need no solver).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import linalg

__all__ = [
    "SOLVERS",
    "DMMResult",
    "MomentProjectionError",
    "dmm",
    "gauss_quadrature",
    "in_moment_space",
    "project_moments",
]

#: Solvers tried in order by :func:`project_moments` (both install with cvxpy from PyPI).
SOLVERS = ("CLARABEL", "SCS")


class MomentProjectionError(RuntimeError):
    """Every SDP solver failed to project the moments (the message names them)."""


def _import_cvxpy():
    try:
        import cvxpy
    except ImportError as exc:
        raise ImportError(
            "the denoised method of moments (init='mom') needs cvxpy for its moment projection: "
            "pip install 'softmix[mom]'. Or use init='subspace' or init='random', which do not."
        ) from exc
    return cvxpy


def _hankels(full: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(H0, H1)``: K x K Hankel matrices of ``full = (m_0..m_{2K-1})``, entries m_{i+j}, m_{i+j+1}."""
    k = len(full) // 2
    h0 = linalg.hankel(full[:k], full[k - 1 : 2 * k - 1])
    h1 = linalg.hankel(full[1 : k + 1], full[k : 2 * k])
    return h0, h1


def _check_moments(moments: np.ndarray) -> np.ndarray:
    m = np.asarray(moments, dtype=float).ravel()
    if m.size % 2 != 1:
        raise ValueError(
            f"moments must hold m_1..m_(2K-1), an odd number of values, got {m.size}."
        )
    if not np.all(np.isfinite(m)):
        raise ValueError("moments contain NaN or infinite values.")
    return m


def in_moment_space(moments: np.ndarray, radius: float, *, tol: float = -1e-12) -> bool:
    """True when ``m_1..m_{2K-1}`` are in the moment space of probability measures on [-R, R].

    The moment space of probability measures on ``[a, b]`` (odd length 2K - 1) is
    ``{H1 - a H0 >= 0, b H0 - H1 >= 0}`` (Lasserre 2009, Thms 3.3-3.4); the check is done on
    moments scaled to ``[-1, 1]`` with smallest eigenvalues > ``tol`` (the default accepts the
    boundary up to round-off; a positive ``tol`` asks for the interior).
    """
    m = _check_moments(moments)
    scaled = np.concatenate([[1.0], m / radius ** np.arange(1, m.size + 1)])
    h0, h1 = _hankels(scaled)
    lower = linalg.eigvalsh(h1 + h0)[0]
    upper = linalg.eigvalsh(h0 - h1)[0]
    return bool(lower > tol and upper > tol)


@functools.lru_cache(maxsize=16)
def _projection_problem(k: int):
    """The projection SDP for K atoms, built once per K with parameters (cvxpy DPP), so repeated
    projections skip cvxpy's canonicalisation."""
    cp = _import_cvxpy()
    n = 2 * k - 1
    y = cp.Variable(n)
    target = cp.Parameter(n)  # chol @ mu, precomputed so the problem stays DPP
    chol = cp.Parameter((n, n))
    full = cp.hstack([np.ones(1), y])
    # H0[i, j] = full[i + j], H1[i, j] = full[i + j + 1]; sums of constant anti-diagonal masks
    masks = [np.fliplr(np.eye(k, k=k - 1 - r)) for r in range(2 * k - 1)]
    h0 = sum(full[r] * masks[r] for r in range(2 * k - 1))
    h1 = sum(full[r + 1] * masks[r] for r in range(2 * k - 1))
    constraints = [h1 + h0 >> 0, h0 - h1 >> 0]
    problem = cp.Problem(cp.Minimize(cp.sum_squares(chol @ y - target)), constraints)
    return problem, y, target, chol


def project_moments(
    moments: np.ndarray,
    radius: float,
    *,
    weight_matrix: np.ndarray | None = None,
    solver: str | None = None,
) -> np.ndarray:
    """Project ``m_1..m_{2K-1}`` onto the moment space of probability measures on [-R, R].

    Solves ``min_y (m - y)' W (m - y)`` subject to the Hankel constraints of
    :func:`in_moment_space`, in moments scaled to ``[-1, 1]`` (``m_r / R^r``, which keeps the SDP
    well conditioned; W is transformed accordingly, identity by default in the scaled units).

    Parameters
    ----------
    moments : ndarray of shape (2K - 1,)
    radius : float
        R > 0: the atoms are assumed to lie in ``[-R, R]``.
    weight_matrix : ndarray of shape (2K - 1, 2K - 1), optional
        Positive definite weight in the original units (e.g. the inverse sampling covariance).
    solver : str, optional
        A cvxpy solver name; by default Clarabel, then SCS if Clarabel fails.

    Returns
    -------
    ndarray of shape (2K - 1,)
        The projected moments (the input itself when it is already in the moment space: no
        solver is called then).

    Raises
    ------
    ImportError
        cvxpy is missing (install ``softmix[mom]``).
    MomentProjectionError
        Every solver failed; the message names them and the fallback.
    """
    m = _check_moments(moments)
    if not (radius > 0 and math.isfinite(radius)):
        raise ValueError(f"radius must be a positive finite number, got {radius!r}.")
    k = (m.size + 1) // 2
    scale = radius ** np.arange(1, m.size + 1)
    mu = m / scale
    if m.size == 1:
        return np.clip(m, -radius, radius)
    if in_moment_space(m, radius):
        return m.copy()
    cp = _import_cvxpy()
    if weight_matrix is None:
        w = np.eye(m.size)
    else:
        w = np.asarray(weight_matrix, float) * np.outer(scale, scale)
        w = (w + w.T) / 2.0
    # sum of squares through a Cholesky factor of W, normalised so the objective is O(1)
    problem, y, target, chol_param = _projection_problem(k)
    chol = linalg.cholesky(w / np.trace(w) * m.size, lower=False)
    chol_param.value = chol
    target.value = chol @ mu
    tried = [solver.upper()] if solver is not None else list(SOLVERS)
    failures = []
    for name in tried:
        try:
            problem.solve(solver=name)
        except (cp.error.SolverError, ValueError) as exc:  # solver missing or crashed
            failures.append(f"{name}: {exc}")
            continue
        if problem.status in ("optimal", "optimal_inaccurate") and y.value is not None:
            return np.asarray(y.value, float) * scale
        failures.append(f"{name}: status {problem.status}")
    raise MomentProjectionError(
        "projecting the moments onto the moment space failed with every SDP solver tried ("
        + "; ".join(failures)
        + "). Fall back to init='subspace' (no SDP needed), or install a working cvxpy solver "
        "(pip install clarabel scs)."
    )


def gauss_quadrature(
    moments: np.ndarray, *, rank_tol: float = 1e-9, weight_tol: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    """Atoms and weights of the K-point Gauss quadrature of ``(1, m_1..m_{2K-1})`` (Golub–Welsch).

    Cholesky ``H0 = R'R`` of the K x K Hankel matrix gives the three-term recurrence of the
    monic orthogonal polynomials: ``a_0 = R_{01}/R_{00}``,
    ``a_i = R_{i,i+1}/R_{ii} - R_{i-1,i}/R_{i-1,i-1}``, ``b_i = R_{i+1,i+1}/R_{ii}``, where the
    last column ``R_{., K}`` solves ``R' c = (m_K..m_{2K-1})``. The eigenvalues of the Jacobi
    matrix ``tridiag(b, a, b)`` are the atoms; the squared first entries of its eigenvectors
    the weights.

    Fewer atoms: when a Cholesky pivot ``||P_r||^2`` (relative to the scale of the moments) is
    below ``rank_tol`` the moments are those of an r-atom measure (r < K) and the r-point rule
    is returned; atoms with weight below ``weight_tol`` are dropped and the weights renormalised.
    So the result may have fewer than K atoms; it never fails on valid moments.

    Parameters
    ----------
    moments : ndarray of shape (2K - 1,)
        ``m_1..m_{2K-1}`` of a probability measure (``m_0 = 1``), e.g. after
        :func:`project_moments`.

    Returns
    -------
    atoms : ndarray of shape (r,), sorted increasing; weights : ndarray of shape (r,), r <= K.
    """
    m = _check_moments(moments)
    k = (m.size + 1) // 2
    scale = max(1.0, float(np.max(np.abs(m) ** (1.0 / np.arange(1, m.size + 1)))))
    mu = np.concatenate([[1.0], m / scale ** np.arange(1, m.size + 1)])
    h0, _ = _hankels(mu)
    # incremental Cholesky: stop at the first pivot that says "fewer atoms"
    r_mat = np.zeros((k, k))
    rank = k
    for i in range(k):
        pivot = h0[i, i] - r_mat[:i, i] @ r_mat[:i, i]
        if not pivot > rank_tol:
            rank = i
            break
        r_mat[i, i] = math.sqrt(pivot)
        for j in range(i + 1, k):
            r_mat[i, j] = (h0[i, j] - r_mat[:i, i] @ r_mat[:i, j]) / r_mat[i, i]
    rank = max(rank, 1)
    r_mat = r_mat[:rank, :rank]
    last = linalg.solve_triangular(r_mat, mu[rank : 2 * rank], trans="T", lower=False)
    full = np.hstack([r_mat, last[:, None]])
    diag = np.diag(full)
    upper = full[np.arange(rank), np.arange(1, rank + 1)] / diag
    alpha = upper.copy()
    alpha[1:] -= upper[:-1]
    beta = diag[1:] / diag[:-1]
    if rank == 1:
        atoms, vecs = alpha.copy(), np.ones((1, 1))
    else:
        atoms, vecs = linalg.eigh_tridiagonal(alpha, beta)
    weights = vecs[0] ** 2
    keep = weights >= weight_tol
    atoms, weights = atoms[keep] * scale, weights[keep]
    return atoms, weights / weights.sum()


@dataclass(frozen=True)
class DMMResult:
    """A denoised 1-D moment estimate.

    Attributes
    ----------
    atoms : ndarray of shape (r,)
        Sorted, r <= K (fewer when the moments only support fewer atoms).
    weights : ndarray of shape (r,)
        Sum to one.
    projected_moments : ndarray of shape (2K - 1,)
    projected : bool
        False when the moments were already inside the moment space (no SDP solved).
    """

    atoms: np.ndarray
    weights: np.ndarray
    projected_moments: np.ndarray
    projected: bool

    @property
    def n_atoms(self) -> int:
        return int(self.atoms.size)


def dmm(
    moments: np.ndarray,
    radius: float,
    *,
    weight_matrix: np.ndarray | None = None,
    solver: str | None = None,
) -> DMMResult:
    """Denoised method of moments: project onto the moment space, then Gauss quadrature.

    Parameters
    ----------
    moments : ndarray of shape (2K - 1,)
        Estimated ``m_1..m_{2K-1}`` of the K-atom mixing measure.
    radius : float
        The atoms are assumed to lie in ``[-radius, radius]``.
    weight_matrix, solver
        See :func:`project_moments`.

    Returns
    -------
    DMMResult
        At most K atoms (fewer when the projected moments lie on the boundary of the moment
        space, i.e. belong to a measure with fewer atoms).
    """
    m = _check_moments(moments)
    projected = project_moments(m, radius, weight_matrix=weight_matrix, solver=solver)
    was_projected = not np.array_equal(projected, m)
    # an SDP solution is accurate to ~1e-8: pivots below 1e-7 are its round-off, not an atom
    atoms, weights = gauss_quadrature(projected, rank_tol=1e-7 if was_projected else 1e-9)
    atoms = np.clip(atoms, -radius, radius)
    return DMMResult(atoms, weights, projected, was_projected)
