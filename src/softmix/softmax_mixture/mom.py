"""Multivariate method of moments for a softmax mixture (L >= 1), built on 1-D DMM solutions.

Pipeline (Bing, Bunea, Niles-Weed, Wegkamp, arXiv 2409.09903, "latent moments"; the way 1-D
solutions are combined is **[chosen]** by us, the paper's rule was not available):

1. whiten the design (:func:`softmix.softmax_mixture.moments.whiten`);
2. estimate the d = min(K, L) dimensional span of the whitened atoms from the top eigenvectors of
   ``M2 = sum_j f_j (z_j z_j' - I)``;
3. **reference direction [chosen]**: run 1-D DMM along each eigenvector and along a few random
   unit directions of the span, and keep the direction whose K recovered atoms are best separated
   (largest minimum gap, after the number of atoms recovered). Projections of distinct atoms on a
   generic direction are distinct, so the best of several is well separated; the weights of the
   estimate are the DMM weights along this direction;
4. **coordinates by pairing [chosen]**: complete the reference direction ``v_1`` to an orthonormal
   basis ``v_1..v_d`` of the span. For each other axis ``v_l`` run DMM along ``v_l`` (atoms
   ``a_l``) and along ``(v_1 + v_l)/sqrt(2)`` (atoms ``b_l``), and give reference atom k the
   coordinate ``a_l[s(k)]`` for the assignment s that minimises
   ``W1({(a_1k + a_l,s(k))/sqrt2, w_k}, DMM along (v_1+v_l)/sqrt2) + W1({a_l,s(k), w_k}, DMM along v_l)``
   (both 1-D Wasserstein distances in the same units). All permutations are tried when the axis
   shows K atoms, all maps when it shows fewer (two atoms may project to one point);
   K <= 5 keeps this at most 5^5 candidates. Why: it needs only 2(d - 1) + a few 1-D problems
   (polynomial in L, exponential in K only through DMM itself, as the paper warns), every piece is
   the 1-D estimator whose rate is known, and the W1 criterion uses the weights as well as the atoms;
5. map back: ``theta_k = Sigma^{-1/2} B c_k`` with B the basis.

If the reference direction shows fewer than K atoms, the heaviest atom is split in two
(``+-`` a tenth of the radius along the reference direction, its weight halved) and
``n_recovered`` says how many were genuinely found.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import linalg

from softmix.core.special import log_softmax, logsumexp
from softmix.softmax_mixture.dmm import DMMResult, dmm
from softmix.softmax_mixture.moments import (
    DesignDiagnostics,
    design_diagnostics,
    effective_sample_size,
    estimate_subspace,
    hermite_polynomials,
    latent_moments,
    second_moment_matrix,
    whiten,
)

__all__ = ["MAX_MOM_COMPONENTS", "MomentEstimate", "method_of_moments", "direction_radius"]

#: [chosen] The largest K the moment method accepts: it needs Hermite moments up to order 2K - 1,
#: whose sampling variance grows like (2K - 1)! (9! ~ 3.6e5 at K = 5); beyond that use the
#: subspace random starts (init="subspace"), as the paper's v2 recommends for larger K.
MAX_MOM_COMPONENTS = 5


@dataclass(frozen=True)
class MomentEstimate:
    """The method-of-moments estimate and what it is worth.

    Attributes
    ----------
    weights : ndarray of shape (K,)
    atoms : ndarray of shape (K, L)
        In original coordinates.
    atoms_white : ndarray of shape (K, L)
        In whitened coordinates ``theta' = Sigma^{1/2} theta``.
    basis : ndarray of shape (L, d)
        Orthonormal basis (whitened coordinates) of the estimated span, reference direction first.
    m2_eigenvalues : ndarray of shape (L,)
        Eigenvalues of M2, decreasing.
    n_recovered : int
        Distinct atoms found along the reference direction (< K: some were split, see module).
    design : DesignDiagnostics
        How Gaussian the whitened design is along the directions used.
    effective_sample_sizes : ndarray of shape (K,)
        Importance-sampling ESS of each estimated atom (small: p too small for its norm).
    n_dmm : int
        Number of 1-D DMM problems solved.
    """

    weights: np.ndarray
    atoms: np.ndarray
    atoms_white: np.ndarray
    basis: np.ndarray
    m2_eigenvalues: np.ndarray
    n_recovered: int
    design: DesignDiagnostics
    effective_sample_sizes: np.ndarray
    n_dmm: int


def direction_radius(m2_along: float, n_components: int, n_alternatives: int) -> float:
    """[chosen] Interval half-width R for the 1-D DMM along a direction.

    ``m_2(u) = sum_k alpha_k (u' theta'_k)^2`` bounds ``max_k |u' theta'_k|`` by
    ``sqrt(m_2(u) / alpha_min)``; with ``alpha_min >= 1/(2K)`` assumed, R = sqrt(2K m_2(u)).
    It is capped at ``sqrt(log p)`` (an atom of larger norm has ESS < 1: nothing about it is
    estimable from latent moments) and floored at 0.1.
    """
    r = math.sqrt(2.0 * n_components * max(m2_along, 0.0))
    return float(min(max(r, 0.1), math.sqrt(math.log(max(n_alternatives, 3)))))


def _dmm_along(z, counts, u, k) -> DMMResult:
    m = latent_moments(z, counts, u, 2 * k - 1)
    return dmm(m, direction_radius(m[1] if m.size > 1 else m[0] ** 2, k, z.shape[0]))


def _separation(res: DMMResult) -> tuple[int, float]:
    gap = float(np.min(np.diff(res.atoms))) if res.n_atoms > 1 else 0.0
    return res.n_atoms, gap


def _split_to(res: DMMResult, k: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    atoms, weights = list(res.atoms), list(res.weights)
    while len(atoms) < k:
        i = int(np.argmax(weights))
        a, w = atoms.pop(i), weights.pop(i)
        atoms += [a - 0.1 * radius, a + 0.1 * radius]
        weights += [w / 2, w / 2]
    order = np.argsort(atoms)
    return np.asarray(atoms)[order], np.asarray(weights)[order]


def _white_log_likelihood(z, counts, weights, atoms_white) -> float:
    """Softmax-mixture log-likelihood in whitened coordinates (equal to the original one:
    ``x_j' theta = z_j' theta' + const`` per class and the softmax ignores the constant)."""
    log_pi = log_softmax(z @ atoms_white.T, axis=0) + np.log(np.maximum(weights, 1e-300))
    return float(np.asarray(counts, float) @ logsumexp(log_pi, axis=1))


def _cross_coordinates(z, counts, basis, ref_atoms, ref_weights) -> np.ndarray:
    """Coordinates of the atoms on ``basis[:, 1:]`` from cross moments with the reference axis.

    With ``s_j = basis' z_j`` (reference coordinate first), independence of orthogonal Gaussian
    coordinates gives ``E He_r(s_1) s_l = sum_k alpha_k a_k^r c_kl`` for the tilted mixture, so
    ``sum_j f_j He_r(s_j1) s_jl`` (r = 0..K-1) equals ``V c_l`` with the Vandermonde-type matrix
    ``V[r, k] = w_k a_k^r`` of the 1-D solution: a linear system (least squares) per axis.
    """
    k = ref_atoms.size
    f = np.asarray(counts, float) / np.sum(counts)
    s = z @ basis
    he = np.vstack([np.ones((1, s.shape[0])), hermite_polynomials(s[:, 0], max(k - 1, 1))])[:k]
    rhs = (he * f) @ s[:, 1:]  # (K, d - 1)
    v = ref_weights[None, :] * ref_atoms[None, :] ** np.arange(k)[:, None]
    sol, *_ = np.linalg.lstsq(v, rhs, rcond=1e-10)
    return sol  # (K, d - 1)


def method_of_moments(
    features: np.ndarray,
    counts: np.ndarray,
    n_components: int,
    *,
    sigma: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    n_random_directions: int = 4,
) -> MomentEstimate:
    """Method-of-moments estimate of a softmax mixture from counts.

    Parameters
    ----------
    features : ndarray of shape (p, L)
        The design X (ideally rows i.i.d. Gaussian).
    counts : ndarray of shape (p,)
        Choice counts ``n_j``.
    n_components : int
        K, 1 <= K <= :data:`MAX_MOM_COMPONENTS`.
    sigma : ndarray of shape (L, L), optional
        Known covariance of the design rows (estimated when omitted).
    rng : numpy.random.Generator, optional
        For the random candidate reference directions (default: a fixed seed 0, so the
        estimate is deterministic).
    n_random_directions : int
        Random candidate reference directions in the span, besides its eigenvectors.

    Returns
    -------
    MomentEstimate

    Notes
    -----
    The latent moments ``sum_j f_j He_r(u' z_j)`` estimate ``sum_k alpha_k (u' theta'_k)^r`` up to
    O(sqrt((2K-1)!/N)) sampling error and O(sqrt(exp(||theta'||^2)/p)) design error; the
    estimate therefore plateaus in N at the finite-p bias (the paper's motivation for a
    warm-started EM). See the module docstring for the [chosen] combination rule.
    """
    k = int(n_components)
    if k > MAX_MOM_COMPONENTS:
        raise ValueError(
            f"n_components={k} is too large for the method of moments (at most "
            f"{MAX_MOM_COMPONENTS}: it needs Hermite moments up to order 2K-1, whose noise grows "
            "like (2K-1)!). Use init='subspace' (random starts in the estimated span of the "
            "atoms), which the paper recommends for larger K."
        )
    rng = np.random.default_rng(0) if rng is None else rng
    white = whiten(features, sigma)
    z = white.z
    m2 = second_moment_matrix(z, counts)
    span, evals = estimate_subspace(m2, k)
    d = span.shape[1]

    # candidate reference directions: the eigenvectors and a few random unit vectors of the span
    cands = [span[:, i] for i in range(d)]
    if d > 1:
        g = rng.standard_normal((d, n_random_directions))
        g /= np.linalg.norm(g, axis=0)
        cands += [span @ g[:, i] for i in range(n_random_directions)]
    r_max = math.sqrt(math.log(max(z.shape[0], 3)))
    best = None
    for u in cands:
        ref = _dmm_along(z, counts, u, k)
        radius = direction_radius(float(latent_moments(z, counts, u, 2)[1]), k, z.shape[0])
        ref_atoms, ref_weights = _split_to(ref, k, radius)
        # orthonormal basis of the span with u first
        q, _ = linalg.qr(np.column_stack([span.T @ u, np.eye(d)]))
        basis = span @ q[:, :d]
        basis[:, 0] = u
        coords = np.zeros((k, d))
        coords[:, 0] = ref_atoms
        if d > 1:
            coords[:, 1:] = _cross_coordinates(z, counts, basis, ref_atoms, ref_weights)
        atoms_white = coords @ basis.T
        # an atom of norm > sqrt(log p) has ESS < 1: nothing about it is estimable; shrink it
        norms = np.linalg.norm(atoms_white, axis=1, keepdims=True)
        atoms_white *= np.minimum(1.0, r_max / np.maximum(norms, 1e-300))
        score = _white_log_likelihood(z, counts, ref_weights, atoms_white)
        if best is None or score > best[0]:
            best = (score, ref_weights, atoms_white, basis, ref.n_atoms)
    _, weights, atoms_white, basis, n_recovered = best
    n_dmm = len(cands)
    directions = basis
    design = design_diagnostics(z, directions, 2 * k - 1)
    ess = effective_sample_size(z, atoms_white)
    return MomentEstimate(
        weights=weights,
        atoms=white.to_original(atoms_white),
        atoms_white=atoms_white,
        basis=basis,
        m2_eigenvalues=evals,
        n_recovered=n_recovered,
        design=design,
        effective_sample_sizes=ess,
        n_dmm=n_dmm,
    )
