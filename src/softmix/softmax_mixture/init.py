"""Starting points for softmax-mixture EM.

:data:`INITIALISERS` maps a name to ``init(features, counts, n_components, rng) ->
SoftmaxMixtureParams``. This module defines ``"random"`` and ``"greedy"`` and registers, at
its end, the moment-based warm starts of the paper (``"mom"``, ``"subspace"``, ``"auto"``) from
:data:`softmix.softmax_mixture.warm_start.WARM_STARTS`. :func:`resolve_init` turns the
estimator's ``init`` argument (a registered name, a :class:`SoftmaxMixtureParams` or a dict
with ``weights``/``atoms``) into parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from softmix.core import xp as _xp
from softmix.softmax_mixture.model import SoftmaxMixtureParams, weighted_covariance

__all__ = ["INITIALISERS", "Initialiser", "greedy_init", "random_init", "resolve_init"]

Initialiser = Callable[[np.ndarray, np.ndarray, int, np.random.Generator], SoftmaxMixtureParams]

#: [chosen] Smallest root-mean-square distance of the random atoms from their centre, so the
#: components start apart (identical atoms are a fixed point of EM) even when the data show no
#: spread.
MIN_RANDOM_SPREAD = 0.1
#: [chosen] Largest one: beyond ``||theta'|| ~ 2`` a softmax over a whitened design is already
#: very peaked, and for heavy-tailed designs the excess-variance estimate below is meaningless.
MAX_RANDOM_SPREAD = 2.0


def random_init(
    features: np.ndarray, counts: np.ndarray, n_components: int, rng: np.random.Generator,
    *, design=None,
) -> SoftmaxMixtureParams:
    """Random start at a scale matched to the data [chosen, documented in docs/guide/softmax-mixture.md].

    Weights are uniform. Atoms are ``theta_k = theta_0 + Sigma^{-1/2} g_k`` with
    ``g_k ~ N(0, s^2 I_L / L)`` i.i.d. (so ``E ||Sigma^{1/2}(theta_k - theta_0)||^2 = s^2``), where

    - ``Sigma = Cov(x)`` over the p alternatives (unweighted), pseudo-inverted on its range;
    - ``theta_0 = Sigma^{-1}(xbar_n - xbar)`` with ``xbar_n = sum_j f_j x_j`` the mean chosen
      feature (``f = counts / N``): for a Gaussian design, the single-class atom;
    - ``s^2 = tr(Sigma^{-1} Cov_f(x)) - rank(Sigma)`` clipped to ``[MIN_RANDOM_SPREAD^2,
      MAX_RANDOM_SPREAD^2]``: the variance of the chosen features in excess of the design's
      own, which for a Gaussian design is the between-class spread
      ``sum_k alpha_k ||Sigma^{1/2}(theta_k - theta_bar)||^2``.

    Cost O(p L^2) (two L x L covariances), whatever N is. With a sampled ``design``
    (:class:`~softmix.softmax_mixture.design.Design` with ``exact=False``, the estimator's
    path for large p) the same quantities in its (approximately) whitened coordinates at
    O(p L K): ``theta_0 = B B' (xbar_n - xbar)`` (two rows through ``design.project``) and
    ``s^2`` by Hutchinson's estimator ``tr(B' (Cov_f(x) - Sigma) B) = E_g [Var_f(g'z) -
    Var(g'z)]`` over ``max(K, 8)`` Gaussian probes g (fixed seed; exact variances over all p
    rows through ``design.scores``), so no covariance of the whole design is formed.
    """
    freq = counts / counts.sum()
    if design is not None and not design.exact:
        return _random_init_sampled(design, freq, n_components, rng)
    if _xp.is_numpy(features):
        mean, chosen_mean = features.mean(axis=0), features.T @ freq
    else:  # the two (L,) means on the design's device (covariances too: weighted_covariance)
        xp = _xp.namespace(features)
        mean = _xp.to_host(xp.sum(features, axis=0, dtype=xp.float64)) / features.shape[0]
        chosen_mean = _xp.to_host(_xp.dot(freq, features))
    sigma = weighted_covariance(features, mean=mean) / features.shape[0]
    values, vectors = np.linalg.eigh(sigma)
    keep = values > values[-1] * 1e-10
    inv_sqrt = vectors[:, keep] / np.sqrt(values[keep])  # (L, r): Sigma^{-1/2} on the range
    centre = inv_sqrt @ (inv_sqrt.T @ (chosen_mean - mean))
    chosen_cov = weighted_covariance(features, freq, chosen_mean)
    excess = float(np.trace(inv_sqrt.T @ chosen_cov @ inv_sqrt)) - int(keep.sum())
    spread2 = min(max(excess, MIN_RANDOM_SPREAD**2), MAX_RANDOM_SPREAD**2)
    draws = rng.standard_normal((n_components, int(keep.sum()))) * np.sqrt(spread2 / keep.sum())
    atoms = centre + draws @ inv_sqrt.T
    return SoftmaxMixtureParams(np.full(n_components, 1.0 / n_components), atoms)


def _random_init_sampled(design, freq: np.ndarray, n_components: int,
                         rng: np.random.Generator) -> SoftmaxMixtureParams:
    """:func:`random_init` in a sampled design's working coordinates (see there)."""
    p, r = design.n_alternatives, design.n_working
    means = design.project(np.vstack([freq, np.full(p, 1.0 / p)]))  # (2, r)
    centre = means[0] - means[1]
    probes = np.random.default_rng(7).standard_normal((max(n_components, 8), r))
    sums = np.zeros((4, probes.shape[0]))  # sum f s, sum f s^2, sum s / p, sum s^2 / p
    for rows in design.chunks():
        s = design.scores(probes, rows)  # (m, chunk): g'z_j
        f = freq[rows]
        sums += np.stack([s @ f, s**2 @ f, s.sum(axis=1) / p, (s**2).sum(axis=1) / p])
    var_f = sums[1] - sums[0] ** 2
    var_u = sums[3] - sums[2] ** 2
    excess = float(np.mean(var_f - var_u))
    spread2 = min(max(excess, MIN_RANDOM_SPREAD**2), MAX_RANDOM_SPREAD**2)
    draws = rng.standard_normal((n_components, r)) * np.sqrt(spread2 / r)
    atoms = (centre + draws) @ design.transform.T
    return SoftmaxMixtureParams(np.full(n_components, 1.0 / n_components), atoms)


#: [chosen] Newton iterations of each one-class fit of :func:`greedy_init` (each converges in
#: 5-8 on MiniLM's 21,719 x 384 word embeddings; a residual on a face of the convex hull has no
#: finite maximum, and the cap leaves its atom large along the face's normal, where EM's face
#: limits take over).
GREEDY_NEWTON_ITER = 30
#: [chosen] EM iterations refitting the mixture after each added component but the last, so
#: the next residual is the fitted mixture's (greedy EM).
GREEDY_EM_ITER = 5
#: [chosen] Residual mass (total variation between the mixture and f) below which the mixture
#: already is the data's distribution: the new component is then a split of the heaviest atom.
GREEDY_MIN_RESIDUAL = 1e-6


def greedy_init(
    features: np.ndarray, counts: np.ndarray, n_components: int, rng: np.random.Generator,
    *, design=None,
) -> SoftmaxMixtureParams:
    """Greedy residual start [chosen, measured in benchmarks/RESULTS.md section 14]: components
    added one at a time, each fitted to what the mixture so far under-predicts.

    1. Component 1 is the one-class maximum-likelihood atom ``theta_0`` (a concave problem:
       damped Newton on ``theta' xbar_f - A(theta)``, ``xbar_f`` the mean chosen feature).
    2. Component k + 1 fits the positive residual ``r_j = (f_j - P_k(j))_+`` of the k-component
       mixture ``P_k`` (``f = counts / N``): its atom maximises ``sum_j r_j log pi_j(theta)``
       (the same concave problem with the residual's mean feature), its weight is
       ``sum_j r_j`` (floored at ``1 / (10 K)``: a component of weight 0 is a fixed point of
       EM), and the other weights are scaled to sum to the rest. Between additions
       ``GREEDY_EM_ITER`` EM iterations refit the mixture (greedy EM, as in Vlassis and Likas,
       "A greedy EM algorithm for Gaussian mixture learning", Neural Processing Letters 2002).

    Deterministic: the same design and frequencies give the same start (``rng`` is used only
    when the mixture already reproduces ``f`` to ``GREEDY_MIN_RESIDUAL``, to move a copy of its
    heaviest atom 0.1 whitened units in a random direction). Equivariant: the start depends on
    the design only through probabilities, so shifting or rescaling a column, permuting
    alternatives or doubling the counts changes it by the implied reparametrisation. Cost: K
    one-class Newton fits (each a few M-steps of one component) and ``(K - 1) GREEDY_EM_ITER``
    EM iterations.

    Why it exists: on real embedding matrices one class can concentrate on a "head" of frequent
    alternatives, and EM from :func:`random_init` ends in whichever local optimum its start
    falls towards; on MiniLM's vocabulary (RESULTS section 14, "Starts") the greedy start ended
    11,234 nats above the best of five random starts. Its risk: on heavy-tailed designs a
    residual of a few outlying alternatives can become a spurious class of small weight (same
    section; the face warning names it).
    """
    from softmix.softmax_mixture.design import prepare_design
    from softmix.softmax_mixture.em import (
        _NEWTON_MAX_STEP,
        _newton_step,
        _row_logsumexp,
        _softmax_rows,
        fit_em,
    )

    if design is None:
        design = prepare_design(np.asarray(features, dtype=float), warn=False)
    n_total = float(counts.sum())
    freq = np.asarray(counts, dtype=float) / n_total

    def one_class(target_freq: np.ndarray, theta: np.ndarray) -> np.ndarray:
        mass = float(target_freq.sum())
        target = design.project((target_freq / mass)[None, :])[0]
        res, _ = _newton_step(design, target, theta, None, False, max_iter=GREEDY_NEWTON_ITER,
                              max_step=_NEWTON_MAX_STEP, tol=1e-12)
        return res.x

    theta0 = one_class(freq, np.zeros(design.n_working))
    weights, atoms = np.ones(1), theta0[None, :]
    for k in range(1, n_components):
        scores = np.asarray(_xp.host(design.scores(atoms)), dtype=float)
        mixture = weights @ _softmax_rows(scores, _row_logsumexp(scores))
        residual = np.clip(freq - mixture, 0.0, None)
        mass = float(residual.sum())
        heaviest = atoms[int(np.argmax(weights))]
        if mass <= GREEDY_MIN_RESIDUAL:  # the mixture is f: split its heaviest atom instead
            step = rng.standard_normal(design.n_working)
            new = heaviest + 0.1 * step / np.linalg.norm(step)
        else:
            new = one_class(residual, heaviest)
        mass = max(mass, 1.0 / (10 * n_components))
        weights = np.append(weights * (1.0 - mass), mass)
        atoms = np.vstack([atoms, new])
        if k + 1 < n_components:
            fit = fit_em(design, counts,
                         design.from_working(SoftmaxMixtureParams(weights, atoms)),
                         max_iter=GREEDY_EM_ITER, tol=0.0, warn=False)
            weights, atoms = fit.params.weights, design.to_working(fit.params).atoms
    return design.from_working(SoftmaxMixtureParams(weights, atoms))


#: name -> initialiser; keep this the one registry. The moment-based starts ("mom", "subspace",
#: "auto") are added at the end of this module from softmax_mixture.warm_start.WARM_STARTS.
INITIALISERS: dict[str, Initialiser] = {
    "random": random_init,
    "greedy": greedy_init,
}


def _params_from_user(init, n_components: int, n_features: int) -> SoftmaxMixtureParams:
    if isinstance(init, Mapping):
        missing = {"weights", "atoms"} - set(init)
        if missing:
            raise ValueError(
                f"init given as a dict must have keys 'weights' and 'atoms'; missing "
                f"{sorted(missing)}."
            )
        extra = set(init) - {"weights", "atoms"}
        if extra:
            raise ValueError(
                f"init given as a dict takes only the keys 'weights' and 'atoms'; got also "
                f"{sorted(map(str, extra))}. Remove them (nothing else is used)."
            )
        try:
            init = SoftmaxMixtureParams(np.asarray(init["weights"]), np.asarray(init["atoms"]))
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"init: {exc}") from exc
    if init.n_components != n_components or init.n_features != n_features:
        raise ValueError(
            f"init must have n_components={n_components} components of dimension "
            f"n_features={n_features} (atoms of shape ({n_components}, {n_features})), got "
            f"atoms of shape {init.atoms.shape}."
        )
    return init


def resolve_init(
    init,
    features: np.ndarray,
    counts: np.ndarray,
    n_components: int,
    rng: np.random.Generator,
    *,
    design=None,
) -> tuple[SoftmaxMixtureParams, str]:
    """Starting parameters and the name to record for them.

    Parameters
    ----------
    init : str, SoftmaxMixtureParams or dict
        A key of :data:`INITIALISERS`, or user-given parameters (a dict needs ``weights`` of
        shape (K,) on the simplex and ``atoms`` of shape (K, L)); user-given starts are recorded
        as ``"given"``.
    features : ndarray of shape (p, L)
    counts : ndarray of shape (p,)
    n_components : int
    rng : numpy.random.Generator
    design : Design, optional
        The prepared design of the fit: ``init="random"`` then uses its whitening instead of
        computing the design's covariance again (see :func:`random_init`).

    Returns
    -------
    params : SoftmaxMixtureParams
    name : str
    """
    if isinstance(init, str):
        if init != "random" and init in INITIALISERS and not _xp.is_numpy(features):
            raise ValueError(
                f"init={init!r} (a start computed on the host) runs on NumPy designs only; features "
                f"is a {type(features).__module__}.{type(features).__name__}. Use "
                "init='random' (computed on the design's device) or starting parameters, or "
                "pass the design as a NumPy array.")
        if init not in INITIALISERS:
            raise ValueError(
                f"init must be one of {sorted(INITIALISERS)} or starting parameters "
                f"(SoftmaxMixtureParams or a dict with 'weights' and 'atoms'); got {init!r}."
            )
        if init == "random" and INITIALISERS["random"] is random_init:
            return random_init(features, counts, n_components, rng, design=design), init
        if init == "greedy" and INITIALISERS["greedy"] is greedy_init:
            return greedy_init(features, counts, n_components, rng, design=design), init
        return INITIALISERS[init](features, counts, n_components, rng), init
    if isinstance(init, (SoftmaxMixtureParams, Mapping)):
        return _params_from_user(init, n_components, features.shape[1]), "given"
    raise TypeError(
        f"init must be a str, a SoftmaxMixtureParams or a dict with 'weights' and 'atoms'; got "
        f"{type(init).__name__}."
    )


# The moment-based warm starts of issue 3 ("mom", "subspace", "auto"; their rules and fallbacks
# are documented in softmix.softmax_mixture.warm_start). Imported last: warm_start needs this
# module's random_init.
from softmix.softmax_mixture.warm_start import WARM_STARTS

INITIALISERS.update(WARM_STARTS)
