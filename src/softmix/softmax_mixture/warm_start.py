"""Moment-based warm starts for softmax-mixture EM: ``init="mom"``, ``"subspace"``, ``"auto"``.

Each is a pure function ``(features, counts, n_components, rng) -> SoftmaxMixtureParams``
registered in :data:`softmix.softmax_mixture.init.INITIALISERS`; ``max_iter=0`` in the estimator
returns the start itself.

- ``"mom"``: the multivariate method of moments of :mod:`softmix.softmax_mixture.mom` (latent
  Hermite moments, denoised 1-D MoM, Gauss quadrature), weights floored at ``1/(10K)`` **[chosen]**
  (a zero-weight component is a fixed point of EM) and renormalised.
- ``"subspace"``: the paper's v2 recommendation for larger K. ``SUBSPACE_STARTS`` random starts
  ``theta'_k = tau g_k / ||g_k||`` with ``g_k ~ N(0, I_d)`` in the estimated d = min(K, L)
  dimensional span of the whitened atoms (top eigenvectors of M2), ``tau = sqrt(trace M2)`` (the
  root-mean-square whitened atom norm), uniform weights. **[chosen]** When the span is a line
  (d = 1) norm-tau draws are only +-tau, so for K >= 3 atoms would coincide (a fixed point of
  EM): there ``theta'_k = tau u_k``, ``u_k ~ Uniform(-1, 1)``. (We also tried Gaussian draws of
  RMS norm tau in every d: in smm-components' crowded regime, L = 2, they succeeded in 1/6 runs
  at K = 4 against 5/6 for norm-tau draws; our simulated atoms all have the same norm, which
  favours norm-tau draws.) Each start is screened by
  ``SUBSPACE_SCREEN_ITER`` EM iterations and the one with the best log-likelihood is returned
  (**[chosen]**: the screened iterate, not its raw draw, so the screening work is not thrown away).
- ``"auto"`` **[chosen]**: ``"mom"`` when K <= ``AUTO_MOM_MAX_COMPONENTS`` (3), cvxpy is installed
  and the whitened design passes :func:`~softmix.softmax_mixture.moments.design_diagnostics`;
  otherwise ``"subspace"``. :func:`auto_choice` returns the choice and why.

Bad input and fallbacks (all documented, none silent):

- design far from Gaussian (a normalised Hermite coefficient of the whitened design above
  ``GAUSSIAN_TOLERANCE``): ``"mom"`` warns (:class:`~softmix.exceptions.SoftmixWarning`, naming
  the order, direction and score) and falls back to ``"subspace"``; ``"subspace"`` warns and
  draws its starts with ``init="random"`` instead (its M2 span is biased then), keeping the
  likelihood screening, which is valid for any design;
- p too small for the atoms' norm (importance-sampling effective sample size of an estimated
  atom below ``MIN_EFFECTIVE_SAMPLE_SIZE``): ``"mom"`` warns and falls back to ``"subspace"``;
- K too large for MoM (> ``MAX_MOM_COMPONENTS`` = 5): ``"mom"`` raises ValueError recommending
  ``init="subspace"``;
- the SDP solver fails: ``"mom"`` raises :class:`~softmix.softmax_mixture.dmm.MomentProjectionError`
  naming the solvers and the fallback; ``"auto"`` warns and uses ``"subspace"``;
- cvxpy missing: ``"mom"`` raises ImportError naming the extra ``softmix[mom]``; ``"auto"`` uses
  ``"subspace"``.

Reference: Bing, Bunea, Niles-Weed, Wegkamp, "Learning large softmax mixtures with warm start EM",
arXiv 2409.09903 (v1: MoM warm start; v2: random starts in the estimated subspace).
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
from scipy import linalg

from softmix.exceptions import SoftmixWarning
from softmix.softmax_mixture.dmm import MomentProjectionError
from softmix.softmax_mixture.em import fit_em
from softmix.softmax_mixture.model import SoftmaxMixtureParams, unidentified_directions
from softmix.softmax_mixture.mom import MAX_MOM_COMPONENTS, method_of_moments
from softmix.softmax_mixture.moments import (
    MIN_EFFECTIVE_SAMPLE_SIZE,
    design_diagnostics,
    estimate_subspace,
    second_moment_matrix,
    whiten,
)

__all__ = [
    "AUTO_MOM_MAX_COMPONENTS",
    "SUBSPACE_SCREEN_ITER",
    "SUBSPACE_STARTS",
    "WARM_STARTS",
    "auto_choice",
    "auto_init",
    "floor_weights",
    "mom_init",
    "subspace_init",
]

#: [chosen] "auto" uses the moment method up to this K (the paper: MoM degrades exponentially in
#: K; our smm-components experiment shows where).
AUTO_MOM_MAX_COMPONENTS = 3
#: [chosen] Random starts drawn by "subspace", and EM iterations each is screened with.
SUBSPACE_STARTS = 10
SUBSPACE_SCREEN_ITER = 5


def _identified(features: np.ndarray):
    """Features restricted to their identified directions, and the map of atoms back.

    Directions c with ``x_j' c`` constant over j (a constant column...) carry no information
    (:func:`~softmix.softmax_mixture.model.unidentified_directions`); the starts are built on an
    orthonormal basis Q of their complement and returned as ``Q theta`` (zero along them).
    """
    null = unidentified_directions(features)
    if null.shape[1] == 0:
        return features, (lambda atoms: atoms)
    basis = linalg.null_space(null.T)
    return features @ basis, (lambda atoms: atoms @ basis.T)


def floor_weights(weights: np.ndarray) -> np.ndarray:
    """Weights floored at ``1/(10K)`` and renormalised [chosen]: a zero-weight component is a
    fixed point of EM, so a start must give every component some mass."""
    k = weights.size
    w = np.maximum(weights, 1.0 / (10.0 * k))
    return w / w.sum()


def _design_check(z: np.ndarray, counts: np.ndarray, n_components: int):
    span, _ = estimate_subspace(second_moment_matrix(z, counts), n_components)
    directions = np.column_stack([span, np.eye(z.shape[1])])
    return design_diagnostics(z, directions, 2 * n_components - 1)


def mom_init(
    features: np.ndarray, counts: np.ndarray, n_components: int, rng: np.random.Generator
) -> SoftmaxMixtureParams:
    """Method-of-moments start (falls back to :func:`subspace_init` with a warning; see module).

    Parameters
    ----------
    features : ndarray of shape (n_alternatives, n_features)
        The design X (validated by the caller, e.g. :class:`softmix.SoftmaxMixture`).
    counts : ndarray of shape (n_alternatives,)
        Choice counts ``n_j``.
    n_components : int
        K.
    rng : numpy.random.Generator
        Source of all randomness (candidate directions, random draws).

    Returns
    -------
    SoftmaxMixtureParams

    Raises
    ------
    ValueError
        ``n_components > MAX_MOM_COMPONENTS`` (use ``init="subspace"``).
    ImportError
        cvxpy is missing and a moment projection is needed (``pip install 'softmix[mom]'``).
    MomentProjectionError
        Both SDP solvers failed.
    """
    if n_components > MAX_MOM_COMPONENTS:
        raise ValueError(
            f"init='mom' supports n_components <= {MAX_MOM_COMPONENTS}, got {n_components}: the "
            "moment method needs Hermite moments up to order 2K-1 and degrades exponentially in "
            "K. Use init='subspace' (random starts in the estimated span of the atoms)."
        )
    x, back = _identified(features)
    z = whiten(x).z
    design = _design_check(z, counts, n_components)
    if not design.gaussian:
        warnings.warn(
            f"init='mom': {design.reason}; falling back to init='subspace'.",
            SoftmixWarning,
            stacklevel=2,
        )
        return subspace_init(features, counts, n_components, rng, _design_ok=False)
    est = method_of_moments(x, counts, n_components, rng=rng)
    ess = est.effective_sample_sizes
    if np.min(ess) < MIN_EFFECTIVE_SAMPLE_SIZE:
        worst = int(np.argmin(ess))
        warnings.warn(
            f"init='mom': p = {x.shape[0]} is too small for the atoms' norm: the estimated atom "
            f"{worst} has whitened norm {np.linalg.norm(est.atoms_white[worst]):.3g}"
            f" and importance-sampling effective sample size {ess[worst]:.3g} < "
            f"{MIN_EFFECTIVE_SAMPLE_SIZE:g} (the latent moments need p >> exp(||theta||^2)); "
            "falling back to init='subspace'.",
            SoftmixWarning,
            stacklevel=2,
        )
        return subspace_init(features, counts, n_components, rng)
    return SoftmaxMixtureParams(floor_weights(est.weights), back(est.atoms))


def subspace_init(
    features: np.ndarray,
    counts: np.ndarray,
    n_components: int,
    rng: np.random.Generator,
    *,
    n_starts: int = SUBSPACE_STARTS,
    n_screen_iter: int = SUBSPACE_SCREEN_ITER,
    _design_ok: bool | None = None,
) -> SoftmaxMixtureParams:
    """Best of ``n_starts`` random starts in the estimated span of the atoms (see module).

    Parameters
    ----------
    features : ndarray of shape (n_alternatives, n_features)
        The design X (validated by the caller, e.g. :class:`softmix.SoftmaxMixture`).
    counts : ndarray of shape (n_alternatives,)
        Choice counts ``n_j``.
    n_components : int
        K.
    rng : numpy.random.Generator
        Source of all randomness (candidate directions, random draws).

    n_starts : int
        Random starts drawn (R).
    n_screen_iter : int
        EM iterations each start is screened with (0: the raw draws are compared).

    Returns
    -------
    SoftmaxMixtureParams
        The screened iterate with the largest log-likelihood.
    """
    x, back = _identified(features)
    white = whiten(x)
    m2 = second_moment_matrix(white.z, counts)
    span, _ = estimate_subspace(m2, n_components)
    if _design_ok is None:
        diag = _design_check(white.z, counts, n_components)
        _design_ok = diag.gaussian
        if not _design_ok:
            warnings.warn(
                f"init='subspace': {diag.reason}; its estimated span is unreliable, so the "
                f"{n_starts} screened starts are drawn by init='random' instead.",
                SoftmixWarning,
                stacklevel=2,
            )
    tau = float(np.sqrt(max(np.trace(m2), 1e-2)))
    best = None
    for _ in range(n_starts):
        if _design_ok:
            if span.shape[1] == 1:
                g = tau * rng.uniform(-1.0, 1.0, (n_components, 1))
            else:
                g = rng.standard_normal((n_components, span.shape[1]))
                g *= tau / np.linalg.norm(g, axis=1, keepdims=True)
            start = SoftmaxMixtureParams(
                np.full(n_components, 1.0 / n_components), white.to_original(g @ span.T)
            )
        else:
            # imported here: init.py imports this module to register the warm starts
            from softmix.softmax_mixture.init import random_init

            start = random_init(x, counts, n_components, rng)
        res = fit_em(x, counts, start, max_iter=n_screen_iter, tol=0.0, warn=False)
        if best is None or res.objective > best.objective:
            best = res
    return SoftmaxMixtureParams(best.params.weights, back(best.params.atoms))


def _has_cvxpy() -> bool:
    return importlib.util.find_spec("cvxpy") is not None


def auto_choice(features: np.ndarray, counts: np.ndarray, n_components: int) -> tuple[str, str]:
    """The start ``init="auto"`` uses here, and why: ``("mom" | "subspace", reason)``."""
    if n_components > AUTO_MOM_MAX_COMPONENTS:
        return "subspace", f"K = {n_components} > {AUTO_MOM_MAX_COMPONENTS}"
    if not _has_cvxpy():
        return "subspace", "cvxpy is not installed (pip install 'softmix[mom]')"
    x, _ = _identified(features)
    design = _design_check(whiten(x).z, counts, n_components)
    if not design.gaussian:
        return "subspace", design.reason
    return "mom", f"K = {n_components} <= {AUTO_MOM_MAX_COMPONENTS} and a Gaussian-looking design"


def auto_init(
    features: np.ndarray, counts: np.ndarray, n_components: int, rng: np.random.Generator
) -> SoftmaxMixtureParams:
    """``"mom"`` or ``"subspace"`` by :func:`auto_choice` (rule in the module docstring).

    Parameters
    ----------
    features : ndarray of shape (n_alternatives, n_features)
        The design X (validated by the caller, e.g. :class:`softmix.SoftmaxMixture`).
    counts : ndarray of shape (n_alternatives,)
        Choice counts ``n_j``.
    n_components : int
        K.
    rng : numpy.random.Generator
        Source of all randomness (candidate directions, random draws).

    Returns
    -------
    SoftmaxMixtureParams
    """
    choice, _ = auto_choice(features, counts, n_components)
    if choice == "subspace":
        return subspace_init(features, counts, n_components, rng)
    try:
        return mom_init(features, counts, n_components, rng)
    except MomentProjectionError as exc:
        warnings.warn(f"init='auto': {exc} Using init='subspace'.", SoftmixWarning, stacklevel=2)
        return subspace_init(features, counts, n_components, rng)


#: The initialisers this module registers in ``softmix.softmax_mixture.init.INITIALISERS``.
WARM_STARTS = {"mom": mom_init, "subspace": subspace_init, "auto": auto_init}
