"""Latent moments of a softmax mixture with a (near-)Gaussian design.

The engine of the moment-based warm starts of Bing, Bunea, Niles-Weed and Wegkamp, "Learning
large softmax mixtures with warm start EM" (arXiv 2409.09903). With features
``x_j ~ N(0, Sigma)`` and many alternatives ``p``, the chosen feature ``x_Y`` is approximately a
draw from the Gaussian location mixture ``sum_k alpha_k N(Sigma theta_k, Sigma)``: tilting
``N(0, Sigma)`` by ``exp(x' theta)`` gives ``N(Sigma theta, Sigma)``. After whitening
(``z_j = Sigma^{-1/2} (x_j - xbar)``, ``theta' = Sigma^{1/2} theta``) the projection ``u' z_Y`` on a
unit direction ``u`` is approximately ``sum_k alpha_k N(u' theta'_k, 1)``, so probabilists' Hermite
polynomials de-noise it: ``E He_r(mu + Z) = mu^r`` gives

    m_r(u) = sum_k alpha_k (u' theta'_k)^r  ~=  sum_j f_j He_r(u' z_j),   f = counts / N.

Everything here works on the p-vector of counts: the cost is O(p L) per direction, whatever N is.

Two diagnostics say when this approximation is poor (the warm starts warn and fall back):

- :func:`design_diagnostics`: how Gaussian the whitened design is along the directions used,
  measured by its own normalised Hermite coefficients ``mean_j He_r(u' z_j) / sqrt(r!)``
  (all zero for an exactly Gaussian design; the latent-moment identity fails by that much);
- :func:`effective_sample_size`: the finite-p error is that of self-normalised importance
  sampling with effective sample size ``ESS(theta') = (sum_j w_j)^2 / sum_j w_j^2``,
  ``w_j = exp(z_j' theta')``; for a Gaussian design ``ESS ~= p exp(-||theta'||^2)``, so p must be
  large relative to ``exp(max_k ||theta'_k||^2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import linalg

from softmix.core.special import logsumexp

__all__ = [
    "GAUSSIAN_TOLERANCE",
    "MIN_EFFECTIVE_SAMPLE_SIZE",
    "DesignDiagnostics",
    "Whitening",
    "design_diagnostics",
    "effective_sample_size",
    "estimate_subspace",
    "hermite_polynomials",
    "latent_moment_covariance",
    "latent_moments",
    "second_moment_matrix",
    "whiten",
]

#: [chosen] A design is called "far from Gaussian" when some normalised Hermite coefficient
#: ``|mean_j He_r(u' z_j)| / sqrt(r!)`` (r = 3..2K-1) exceeds this value (beyond sampling noise).
#: For unit-variance data r = 3 is the skewness / sqrt(6) and r = 4 the excess kurtosis / sqrt(24):
#: a uniform design scores 0.24, a Student-t(5) design about 1.2, a Gaussian one ~ 1/sqrt(p).
GAUSSIAN_TOLERANCE = 0.1

#: [chosen] p is "too small for the atoms' norm" when the importance-sampling effective sample
#: size of some estimated atom is below this: the latent-moment bias is then ~ 1/sqrt(ESS) > 0.1.
MIN_EFFECTIVE_SAMPLE_SIZE = 100.0


@dataclass(frozen=True)
class Whitening:
    """An affine whitening of the design and its way back.

    Attributes
    ----------
    z : ndarray of shape (p, L)
        Whitened features ``Sigma^{-1/2} (x_j - mean)``.
    mean : ndarray of shape (L,)
        The column means removed. Centring is exact for a softmax mixture: adding a constant
        vector to every ``x_j`` adds the same constant to every logit of a class.
    sqrt : ndarray of shape (L, L)
        ``Sigma^{1/2}`` (symmetric): ``theta' = sqrt @ theta``.
    inv_sqrt : ndarray of shape (L, L)
        ``Sigma^{-1/2}`` (symmetric): ``theta = inv_sqrt @ theta'``.
    estimated : bool
        True when Sigma was estimated from the features.
    """

    z: np.ndarray
    mean: np.ndarray
    sqrt: np.ndarray
    inv_sqrt: np.ndarray
    estimated: bool

    def to_white(self, atoms: np.ndarray) -> np.ndarray:
        """Atoms ``(K, L)`` in original coordinates -> whitened ``theta' = Sigma^{1/2} theta``."""
        return np.asarray(atoms, float) @ self.sqrt

    def to_original(self, atoms_white: np.ndarray) -> np.ndarray:
        """Whitened atoms ``(K, L)`` -> original coordinates ``theta = Sigma^{-1/2} theta'``."""
        return np.asarray(atoms_white, float) @ self.inv_sqrt


def whiten(features: np.ndarray, sigma: np.ndarray | None = None) -> Whitening:
    """Whiten the design: ``z_j = Sigma^{-1/2} (x_j - xbar)``.

    Parameters
    ----------
    features : ndarray of shape (p, L)
        The design X.
    sigma : ndarray of shape (L, L), optional
        The known covariance of the rows of X. When omitted it is estimated by the empirical
        covariance of the rows (``X'X / p`` after centring).

    Returns
    -------
    Whitening
        ``z`` and the maps between original and whitened atoms (``x' theta = z' theta'`` up to a
        constant per class, which the softmax ignores).

    Raises
    ------
    ValueError
        If Sigma is not positive definite: a given ``sigma``, or the estimated one (a constant or
        collinear column).
    """
    x = np.asarray(features, dtype=float)
    mean = x.mean(axis=0)
    xc = x - mean
    estimated = sigma is None
    if estimated:
        sigma = xc.T @ xc / x.shape[0]
    sigma = np.asarray(sigma, dtype=float)
    if sigma.shape != (x.shape[1], x.shape[1]):
        raise ValueError(
            f"sigma must have shape ({x.shape[1]}, {x.shape[1]}) to match features, got "
            f"{sigma.shape}."
        )
    sigma = (sigma + sigma.T) / 2.0
    evals, evecs = linalg.eigh(sigma)
    if evals[0] <= 1e-12 * max(evals[-1], 1e-300):
        if not estimated:
            raise ValueError(
                f"sigma must be a positive definite covariance, got smallest eigenvalue "
                f"{evals[0]:.3g} (largest {evals[-1]:.3g}). Give the design's covariance, or "
                "sigma=None to estimate it from features."
            )
        raise ValueError(
            "the feature covariance is singular (a constant or collinear column of features, "
            f"smallest eigenvalue {evals[0]:.3g}); the atoms are not identified along it. Drop or "
            "combine the redundant columns before using a moment-based start."
        )
    root = np.sqrt(evals)
    sqrt = (evecs * root) @ evecs.T
    inv_sqrt = (evecs / root) @ evecs.T
    return Whitening(z=xc @ inv_sqrt, mean=mean, sqrt=sqrt, inv_sqrt=inv_sqrt, estimated=estimated)


def hermite_polynomials(s: np.ndarray, degree: int) -> np.ndarray:
    """Probabilists' Hermite polynomials ``He_1..He_degree`` at the points ``s``.

    Uses the three-term recurrence ``He_{r+1}(s) = s He_r(s) - r He_{r-1}(s)`` (``He_0 = 1``,
    ``He_1 = s``), which is the numerically stable way to evaluate them (no monomial expansion
    with alternating large coefficients).

    Parameters
    ----------
    s : ndarray of shape (...)
    degree : int
        Highest degree, >= 1.

    Returns
    -------
    ndarray of shape (degree, ...)
        Row ``r - 1`` is ``He_r(s)``.
    """
    s = np.asarray(s, dtype=float)
    out = np.empty((degree,) + s.shape)
    prev = np.ones_like(s)
    cur = s
    out[0] = cur
    for r in range(1, degree):
        prev, cur = cur, s * cur - r * prev
        out[r] = cur
    return out


def _frequencies(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    return counts / counts.sum()


def latent_moments(
    z: np.ndarray, counts: np.ndarray, directions: np.ndarray, degree: int
) -> np.ndarray:
    """Estimated moments of the projected (whitened) mixing measure along unit directions.

    Parameters
    ----------
    z : ndarray of shape (p, L)
        Whitened features (see :func:`whiten`).
    counts : ndarray of shape (p,)
        Choice counts ``n_j`` (or frequencies; they are normalised).
    directions : ndarray of shape (L,) or (L, D)
        Unit direction(s) ``u`` in whitened coordinates.
    degree : int
        Highest moment order (``2K - 1`` for K atoms).

    Returns
    -------
    ndarray of shape (degree,) or (D, degree)
        ``m_r(u) = sum_j f_j He_r(u' z_j)``, ``r = 1..degree``, which estimates
        ``sum_k alpha_k (u' theta'_k)^r``.

    Notes
    -----
    Unbiased for the Gaussian location mixture ``sum_k alpha_k N(u' theta'_k, 1)``
    (``E He_r(mu + Z) = mu^r``); the finite-p design error is O(sqrt(exp(||theta'||^2) / p)) and
    the sampling error O(sqrt(r! / N)).
    """
    f = _frequencies(counts)
    u = np.asarray(directions, dtype=float)
    single = u.ndim == 1
    s = z @ (u[:, None] if single else u)  # (p, D)
    he = hermite_polynomials(s, degree)  # (degree, p, D)
    m = np.einsum("j,rjd->dr", f, he)
    return m[0] if single else m


def latent_moment_covariance(
    z: np.ndarray, counts: np.ndarray, direction: np.ndarray, degree: int
) -> np.ndarray:
    """Sampling covariance of :func:`latent_moments` along one direction (from the counts).

    ``Cov = (sum_j f_j h_j h_j' - m m') / N`` with ``h_j = (He_1..He_degree)(u' z_j)``: the
    multinomial sampling covariance of the moment vector, used as the inverse weight matrix of
    the denoising projection (the "optimal weighting" step of Wu & Yang's DMM).

    Returns
    -------
    ndarray of shape (degree, degree)
    """
    counts = np.asarray(counts, dtype=float)
    n = counts.sum()
    f = counts / n
    he = hermite_polynomials(z @ np.asarray(direction, float), degree)  # (degree, p)
    m = he @ f
    second = (he * f) @ he.T
    return (second - np.outer(m, m)) / n


def second_moment_matrix(z: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``M2 = sum_j f_j (z_j z_j' - I)``, which estimates ``sum_k alpha_k theta'_k theta'_k'``.

    Returns
    -------
    ndarray of shape (L, L), symmetric.
    """
    f = _frequencies(counts)
    m2 = (z * f[:, None]).T @ z - np.eye(z.shape[1])
    return (m2 + m2.T) / 2.0


def estimate_subspace(m2: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Top eigenvectors of M2: an orthonormal basis of the estimated span of the atoms.

    (Its error against a true span is :func:`softmix.metrics.subspace_error`.)

    Parameters
    ----------
    m2 : ndarray of shape (L, L)
    n_components : int
        K; the dimension returned is ``d = min(K, L)``.

    Returns
    -------
    basis : ndarray of shape (L, d)
        Orthonormal columns, by decreasing eigenvalue.
    eigenvalues : ndarray of shape (L,)
        All eigenvalues of M2, decreasing. The span error is governed by the gap after the
        K-th one (Davis–Kahan).
    """
    evals, evecs = linalg.eigh(m2)
    order = np.argsort(evals)[::-1]
    d = min(n_components, m2.shape[0])
    return evecs[:, order[:d]], evals[order]


@dataclass(frozen=True)
class DesignDiagnostics:
    """How far the latent-moment approximation can be trusted for this design.

    Attributes
    ----------
    hermite_scores : ndarray of shape (D, degree - 2)
        ``|mean_j He_r(u' z_j)| / sqrt(r!)`` for r = 3..degree along each direction checked.
    max_score : float
        Their maximum (0 for an exactly Gaussian design).
    threshold : float
        ``max(GAUSSIAN_TOLERANCE, 4 / sqrt(p))``: beyond sampling noise of a Gaussian design.
    gaussian : bool
        ``max_score <= threshold``.
    reason : str
        Empty when Gaussian; otherwise a sentence naming the worst direction, order and score.
    """

    hermite_scores: np.ndarray
    max_score: float
    threshold: float
    gaussian: bool
    reason: str


def design_diagnostics(z: np.ndarray, directions: np.ndarray, degree: int) -> DesignDiagnostics:
    """Check that the whitened design looks standard Gaussian along the directions used.

    For an exactly N(0, I) design the design's own Hermite averages ``mean_j He_r(u' z_j)``
    vanish for r >= 1 (up to O(sqrt(r!/p)) noise); r = 1, 2 vanish by whitening, so orders
    3..degree are checked. Their normalised size is the relative error the non-Gaussianity adds
    to the r-th latent moment of a small atom.

    Parameters
    ----------
    z : ndarray of shape (p, L)
        Whitened features.
    directions : ndarray of shape (L, D)
        Unit directions (those the moment method projects on).
    degree : int
        Highest order used (``2K - 1``); at least 3 orders are always checked (r = 3, 4).
    """
    p = z.shape[0]
    degree = max(int(degree), 4)
    he = hermite_polynomials(z @ directions, degree)  # (degree, p, D)
    orders = np.arange(3, degree + 1)
    norms = np.sqrt([math.factorial(int(r)) for r in orders])
    scores = np.abs(he[2:].mean(axis=1)).T / norms  # (D, degree - 2)
    threshold = max(GAUSSIAN_TOLERANCE, 4.0 / math.sqrt(p))
    worst = np.unravel_index(int(np.argmax(scores)), scores.shape)
    max_score = float(scores[worst])
    gaussian = max_score <= threshold
    reason = ""
    if not gaussian:
        reason = (
            f"the whitened design is far from Gaussian: its normalised Hermite coefficient of "
            f"order {orders[worst[1]]} along direction {worst[0]} is {max_score:.3g} > "
            f"{threshold:.3g} (0 for a Gaussian design; order 3 is skewness/sqrt(6), order 4 "
            "excess kurtosis/sqrt(24)), so the latent moments are biased"
        )
    return DesignDiagnostics(scores, max_score, threshold, gaussian, reason)


def effective_sample_size(z: np.ndarray, atoms_white: np.ndarray) -> np.ndarray:
    """Importance-sampling effective sample size of the design for each whitened atom.

    ``ESS(theta') = (sum_j w_j)^2 / sum_j w_j^2`` with ``w_j = exp(z_j' theta')``, computed in log
    space. The latent-moment error of an atom is ~ ``1 / sqrt(ESS)``; for a Gaussian design
    ``ESS ~= p exp(-||theta'||^2)``.

    Parameters
    ----------
    z : ndarray of shape (p, L)
    atoms_white : ndarray of shape (K, L)

    Returns
    -------
    ndarray of shape (K,)
    """
    logits = z @ np.asarray(atoms_white, float).T  # (p, K)
    return np.exp(2.0 * logsumexp(logits, axis=0) - logsumexp(2.0 * logits, axis=0))
