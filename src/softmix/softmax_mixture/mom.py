"""Multivariate method of moments for a softmax mixture (L >= 1), built on 1-D DMM solutions.

Pipeline (Bing, Bunea, Niles-Weed, Wegkamp, arXiv 2409.09903, "latent moments"; the way 1-D
solutions are combined is **[chosen]** by us, the paper's rule was not available):

1. whiten the design (:func:`softmix.softmax_mixture.moments.whiten`);
2. estimate the d = min(K, L) dimensional span of the whitened atoms from the top eigenvectors of
   ``M2 = sum_j f_j (z_j z_j' - I)``;
3. **candidate reference directions [chosen]**: each eigenvector of M2 and a few random unit
   directions of the span. Along each, 1-D DMM (orders 1..2K-1, projection weighted by
   ``diag(1/r!)``) gives atoms ``a_k`` and weights ``w_k``; atoms lighter than ``0.1/K`` count as
   not recovered, and the heaviest atom is split until there are K (``n_recovered`` says how many
   were genuinely found);
4. **other coordinates from cross moments [chosen]**: complete the direction ``v_1`` to an
   orthonormal basis ``v_1..v_d`` of the span. Orthogonal coordinates of a standard Gaussian are
   independent, so ``sum_j f_j He_r(v_1' z_j) (v_l' z_j) ~= sum_k alpha_k a_k^r c_kl``
   (r = 0..K-1): a K x K linear system ``V c_l = m_l`` with ``V[r, k] = w_k a_k^r`` gives every
   coordinate ``c_kl`` at once (minimum-norm least squares with a singular-value cut-off, so
   near-coincident reference atoms share a coordinate instead of diverging). Each candidate
   direction yields a full estimate; the one with the largest softmax-mixture log-likelihood is
   kept. Why: the coordinates off the reference axis need moments of order <= K only (the
   Hermite noise grows like r!), no combinatorial pairing of per-axis solutions, and the cost
   is polynomial in L (O(p L K) per candidate); the one 1-D problem per candidate is where the
   paper's "exponential in K" degradation lives. (We first tried pairing per-axis DMM solutions
   through DMM along ``(v_1 + v_l)/sqrt2`` in W1; with the finite-p noise of p = 2e4 the
   per-axis solutions were too poor for the pairing to be reliable.)
5. map back: ``theta_k = Sigma^{-1/2} B c_k`` with B the basis.

Splitting: the heaviest atom becomes two at ``+-`` a tenth of the radius along the reference
direction, each with half its weight. Atom norms are capped at ``sqrt(log p)`` (an atom of larger
norm has effective sample size < 1: the latent moments say nothing about it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import linalg

from softmix._validation import check_int
from softmix.softmax_mixture.dmm import DMMResult, dmm
from softmix.softmax_mixture.model import (
    SoftmaxMixtureParams,
    check_counts,
    check_features,
    log_likelihood,
)
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

__all__ = ["MAX_MOM_COMPONENTS", "MomentEstimate", "direction_radius", "method_of_moments"]

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


#: [chosen] Weight matrix of the DMM projection: diag(1 / r!), the inverse variance of He_r(Z) for
#: a standard Gaussian Z. Both noises of the latent moments (sampling, O(1/N), and finite-p
#: design, O(exp(||theta||^2)/p)) scale like that, so high orders are trusted less; with the
#: identity weight the projection tends to explain high-order noise by a spurious far atom of tiny
#: weight.
_HERMITE_WEIGHTS = {
    k: np.diag([1.0 / math.factorial(r) for r in range(1, 2 * k)])
    for k in range(1, MAX_MOM_COMPONENTS + 1)
}


def _dmm_along(z, counts, u, k) -> DMMResult:
    m = latent_moments(z, counts, u, 2 * k - 1)
    radius = direction_radius(m[1] if m.size > 1 else m[0] ** 2, k, z.shape[0])
    return dmm(m, radius, weight_matrix=_HERMITE_WEIGHTS[k])


#: [chosen] A 1-D atom with weight below MIN_WEIGHT_FRACTION / K counts as not recovered: its
#: position is not identified by the moments (the projection often parks noise in such a far,
#: light atom), and its cross coordinates would be divided by its weight.
MIN_WEIGHT_FRACTION = 0.1


def _split_to(res: DMMResult, k: int, radius: float) -> tuple[np.ndarray, np.ndarray, int]:
    """K atoms from a 1-D solution: light atoms dropped, then the heaviest split until K."""
    keep = res.weights >= MIN_WEIGHT_FRACTION / k
    atoms, weights = list(res.atoms[keep]), list(res.weights[keep] / res.weights[keep].sum())
    n_found = len(atoms)
    while len(atoms) < k:
        i = int(np.argmax(weights))
        a, w = atoms.pop(i), weights.pop(i)
        atoms += [a - 0.1 * radius, a + 0.1 * radius]
        weights += [w / 2, w / 2]
    order = np.argsort(atoms)
    return np.asarray(atoms)[order], np.asarray(weights)[order], n_found


#: [chosen] Relative singular-value cut-off of the cross-moment solve: when two reference atoms
#: (nearly) coincide their columns are (nearly) collinear and the minimum-norm solution shares
#: the coordinate between them instead of sending them to +-infinity.
_CROSS_RCOND = 1e-3


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
    sol, *_ = np.linalg.lstsq(v, rhs, rcond=_CROSS_RCOND)
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
    features = check_features(features)
    counts = check_counts(counts, features.shape[0])
    k = check_int(n_components, "n_components", low=1)
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
        ref_atoms, ref_weights, n_found = _split_to(ref, k, radius)
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
        # x_j' theta = z_j' theta' + const per class: the likelihood is the same in z
        score = log_likelihood(z, counts, SoftmaxMixtureParams(ref_weights, atoms_white))
        if best is None or score > best[0]:
            best = (score, ref_weights, atoms_white, basis, n_found)
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
