"""The softmax mixture's likelihood protocol: vector parametrisation, log-likelihood, score and
analytic Hessian on counts, names, canonical order.

Unconstrained vector (length ``K - 1 + K (L - r)``)::

    theta = [log(alpha_0/alpha_{K-1}), ..., log(alpha_{K-2}/alpha_{K-1}),  eta_0, ..., eta_{K-1}]

where the atoms are ``theta_k = B eta_k`` and ``B`` (L, L - r) is an orthonormal basis of the
identified directions of the design (``B = I`` and ``eta_k = theta_k`` for an identified design;
see :func:`~softmix.softmax_mixture.model.unidentified_directions`). The last component is the
reference of the weight log-ratios. Counts are sufficient: every function costs
``O(p K^2 L^2)`` at most (the Hessian), whatever the number of draws N is.

Reported parameters (delta method in :mod:`softmix.inference`): ``weight[k]`` (all K) and
``atom[k,l]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from softmix.core.special import log_softmax
from softmix.inference.information import mixture_hessian, mixture_scores
from softmix.softmax_mixture.model import (
    SoftmaxMixtureParams,
    log_class_probabilities,
    log_responsibilities,
    unidentified_directions,
)

__all__ = ["SoftmaxMixtureLikelihood", "canonical_order"]


def canonical_order(params: SoftmaxMixtureParams) -> np.ndarray:
    """The canonical component order: decreasing weight, ties by increasing first atom coordinate
    (then the second...). ``params.canonical()`` is ``params`` reordered by it."""
    keys = [params.atoms[:, i] for i in range(params.n_features - 1, -1, -1)] + [-params.weights]
    return np.lexsort(keys)


@dataclass
class SoftmaxMixtureLikelihood:
    """Log-likelihood of a K-component softmax mixture on a design and counts, as a function of
    the unconstrained vector (module docstring).

    Parameters
    ----------
    features : ndarray of shape (p, L)
    counts : ndarray of shape (p,)
        ``n_j``; the cells j are the statistical units (all draws of a cell share a score).
    n_components : int
    choices : ndarray of shape (N,), optional
        The individual draws, when known (needed only for cluster-robust ``groups``).

    Examples
    --------
    >>> lik = SoftmaxMixtureLikelihood(features, counts, 2)          # doctest: +SKIP
    >>> theta = lik.to_vector(model.params_)                         # doctest: +SKIP
    >>> lik.loglik(theta), lik.score(theta), lik.hessian(theta)      # doctest: +SKIP
    """

    features: np.ndarray
    counts: np.ndarray
    n_components: int
    choices: np.ndarray | None = None

    family = "softmax_mixture"

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=float)
        self.counts = np.asarray(self.counts, dtype=float)
        null = unidentified_directions(self.features)
        length = self.features.shape[1]
        if null.shape[1]:
            # orthonormal basis of the complement of the null directions
            u, _, _ = np.linalg.svd(np.eye(length) - null @ null.T)
            self.basis = u[:, : length - null.shape[1]]
        else:
            self.basis = np.eye(length)
        self.reduced = self.features @ self.basis  # (p, L - r): x_j' theta_k = z_j' eta_k

    # -- layout ------------------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return self.features.shape[1]

    @property
    def n_free_parameters(self) -> int:
        """``K - 1 + K (L - r)``: what the likelihood identifies (r unidentified directions)."""
        return self.n_components - 1 + self.n_components * self.basis.shape[1]

    @property
    def n_observations(self) -> float:
        """N, the number of draws (the n of BIC)."""
        return float(self.counts.sum())

    @property
    def names(self) -> list[str]:
        """Names of the unconstrained coordinates."""
        k, m = self.n_components, self.basis.shape[1]
        out = [f"logratio[{i},{k - 1}]" for i in range(k - 1)]
        basis_named = self.basis.shape[1] == self.n_features
        out += [f"atom[{i},{j}]" if basis_named else f"eta[{i},{j}]"
                for i in range(k) for j in range(m)]
        return out

    def reported_names(self) -> list[str]:
        k, length = self.n_components, self.n_features
        return [f"weight[{i}]" for i in range(k)] + [
            f"atom[{i},{j}]" for i in range(k) for j in range(length)]

    # -- vector <-> params -------------------------------------------------------------------
    def to_vector(self, params: SoftmaxMixtureParams) -> np.ndarray:
        """Unconstrained vector of ``params`` (weights must be positive)."""
        if np.any(params.weights <= 0):
            raise ValueError(
                f"params.weights must be positive for inference (log-ratios), got "
                f"{params.weights.tolist()}: a component is empty; refit with fewer components."
            )
        logw = np.log(params.weights)
        eta = params.atoms @ self.basis
        return np.concatenate([logw[:-1] - logw[-1], eta.ravel()])

    def from_vector(self, theta: np.ndarray) -> SoftmaxMixtureParams:
        """Inverse of :meth:`to_vector` (atoms with no component along unidentified directions)."""
        theta = self._check(theta)
        k = self.n_components
        weights = np.exp(log_softmax(np.concatenate([theta[: k - 1], [0.0]])))
        eta = theta[k - 1 :].reshape(k, -1)
        return SoftmaxMixtureParams(weights / weights.sum(), eta @ self.basis.T)

    def reported(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reported values ``[weights, atoms.ravel()]`` and their Jacobian (delta method)."""
        theta = self._check(theta)
        params = self.from_vector(theta)
        k, length, m = self.n_components, self.n_features, self.basis.shape[1]
        alpha = params.weights
        jac = np.zeros((k + k * length, theta.size))
        # d alpha / d w_m = alpha (e_m - alpha_m), m < K-1
        jw = np.diag(alpha) - np.outer(alpha, alpha)
        jac[:k, : k - 1] = jw[:, : k - 1]
        for i in range(k):
            jac[k + i * length : k + (i + 1) * length, k - 1 + i * m : k - 1 + (i + 1) * m] = (
                self.basis)
        return np.concatenate([alpha, params.atoms.ravel()]), jac

    def _check(self, theta) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.n_free_parameters,):
            raise ValueError(
                f"theta must have shape ({self.n_free_parameters},) for K={self.n_components} "
                f"and {self.basis.shape[1]} identified direction(s); got {theta.shape}."
            )
        return theta

    # -- likelihood and derivatives ----------------------------------------------------------
    def _pieces(self, theta):
        theta = self._check(theta)
        k = self.n_components
        logw = log_softmax(np.concatenate([theta[: k - 1], [0.0]]))
        eta = theta[k - 1 :].reshape(k, -1)
        logpi = log_class_probabilities(self.reduced, eta)  # (p, K)
        return logw, eta, logpi

    def loglik(self, theta: np.ndarray) -> float:
        """``sum_j n_j log sum_k alpha_k pi_j(theta_k)``."""
        logw, _, logpi = self._pieces(theta)
        joint = logpi + logw
        mx = joint.max(axis=1, keepdims=True)
        logp = (mx + np.log(np.exp(joint - mx).sum(axis=1, keepdims=True)))[:, 0]
        return float(self.counts @ np.where(self.counts > 0, logp, 0.0))

    def _derivatives(self, theta):
        logw, eta, logpi = self._pieces(theta)
        k = self.n_components
        alpha = np.exp(logw)
        params = SoftmaxMixtureParams._from_em(alpha.copy(), eta.copy())
        tau = np.exp(log_responsibilities(self.reduced, params))  # (p, K)
        pi = np.exp(logpi)
        z = self.reduced
        means = pi.T @ z  # (K, m): x-bar_k in reduced coordinates
        p = z.shape[0]
        eye = np.eye(k)[:, : k - 1]
        shared = np.broadcast_to((eye - alpha[None, : k - 1])[None], (p, k, k - 1))
        own = [z - means[i] for i in range(k)]
        return alpha, pi, tau, shared, own, means

    def score_units(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell scores ``s_j`` (p, P) and the cell weights ``n_j``: every draw of cell j has
        the score ``s_j``; the total score is ``sum_j n_j s_j``."""
        _, _, tau, shared, own, _ = self._derivatives(theta)
        return mixture_scores(tau, shared, own), self.counts

    def score_observations(self, theta: np.ndarray) -> np.ndarray:
        """Per-draw scores (N, P); needs ``choices``."""
        if self.choices is None:
            raise ValueError("per-observation scores need the individual choices; pass choices "
                             "(not counts) to use groups=.")
        s, _ = self.score_units(theta)
        return s[self.choices]

    def score(self, theta: np.ndarray) -> np.ndarray:
        """Gradient of :meth:`loglik`, shape (P,)."""
        s, w = self.score_units(theta)
        return w @ s

    def hessian(self, theta: np.ndarray) -> np.ndarray:
        """Analytic Hessian of :meth:`loglik`, shape (P, P), in O(p K^2 L^2)."""
        alpha, pi, tau, shared, own, means = self._derivatives(theta)
        k, m = self.n_components, self.basis.shape[1]
        size = self.n_free_parameters
        curv = np.zeros((size, size))
        total = float(self.counts.sum())
        a = alpha[: k - 1]
        curv[: k - 1, : k - 1] = -total * (np.diag(a) - np.outer(a, a))
        mass = self.counts @ tau  # (K,)
        for i in range(k):
            dz = self.reduced - means[i]
            cov = (dz * pi[:, i : i + 1]).T @ dz
            sl = slice(k - 1 + i * m, k - 1 + (i + 1) * m)
            curv[sl, sl] = -mass[i] * cov
        return mixture_hessian(self.counts, tau, shared, own, curv)

    def entropy(self, theta: np.ndarray) -> float:
        """Classification entropy ``-sum_j n_j sum_k tau_jk log tau_jk`` (for ICL)."""
        params = self.from_vector(theta)
        logt = log_responsibilities(self.features, params)
        return float(-self.counts @ np.sum(np.exp(logt) * logt, axis=1))


# -- the estimator's glue (SoftmaxMixture.inference / summary, select_n_components) ---------

#: Name of the estimator's number-of-components hyperparameter.
N_COMPONENTS = "n_components"


def build(model, features=None, choices=None, *, counts=None):
    """``(lik, theta)`` for a fitted :class:`~softmix.SoftmaxMixture` on the given data."""
    from softmix.softmax_mixture.model import check_choices, to_counts

    x = model._features(features)
    n = to_counts(x, choices, counts)
    ch = None if choices is None else check_choices(choices, x.shape[0])
    lik = SoftmaxMixtureLikelihood(x, n, model.params_.n_components, choices=ch)
    return lik, lik.to_vector(model.params_)


def fit_arguments(features, choices=None, *, counts=None):
    """Normalise the data arguments to ``(features, counts)`` (for resampling / folds)."""
    from softmix.softmax_mixture.model import check_features, to_counts

    x = check_features(features)
    return x, to_counts(x, choices, counts)


def folds(features, choices=None, *, counts=None, n_folds=5, rng=None):
    """K-fold split of the N draws by thinning: each cell's count ``n_j`` is split
    ``Multinomial(n_j, (1/F, ..., 1/F))`` across the F folds (exactly the counts of a uniform
    random assignment of the draws to folds). Yields ``(train_args, train_kwargs, test_args,
    test_kwargs, n_test)`` as fit / score take them."""
    x, n = fit_arguments(features, choices, counts=counts)
    n_int = n.astype(np.int64)
    parts = np.stack([rng.multinomial(int(c), np.full(n_folds, 1.0 / n_folds)) for c in n_int])
    for f in range(n_folds):
        test = parts[:, f].astype(float)
        train = n - test
        yield (x,), {"counts": train}, (x,), {"counts": test}, float(test.sum())


def model_inference(model, features=None, choices=None, *, counts=None, method="observed",
                    level=0.95, groups=None, n_boot=200, bootstrap="nonparametric",
                    random_state=None):
    """:meth:`softmix.SoftmaxMixture.inference` (see there)."""
    from softmix._validation import check_fitted
    from softmix.inference._glue import clone_from_fit, header
    from softmix.inference.covariance import infer
    from softmix.metrics import align
    from softmix.softmax_mixture.model import sample_counts

    check_fitted(model)
    lik, theta = build(model, features, choices, counts=counts)
    if groups is not None and lik.choices is None:
        raise ValueError("groups needs the individual choices (one group label per choice); "
                         "pass choices instead of counts.")
    total = int(lik.counts.sum())

    def replicate(rng, kind):
        if kind == "parametric":
            cb = sample_counts(lik.features, model.params_, total, rng)
        elif groups is not None:
            labels, index = np.unique(np.asarray(groups), return_inverse=True)
            pick = rng.integers(0, labels.size, labels.size)
            members = np.bincount(pick, minlength=labels.size)[index]  # copies of each choice
            cb = np.bincount(lik.choices, weights=members, minlength=lik.features.shape[0])
        else:
            cb = rng.multinomial(total, lik.counts / lik.counts.sum())
        fit = clone_from_fit(model, rng).fit(lik.features, counts=cb)
        aligned = align(fit.params_, model.params_)
        return lik.reported(lik.to_vector(aligned))[0], bool(fit.converged_)

    p, length = lik.features.shape
    head = header(model, lik, theta, "Softmax mixture results",
                  {"model": f"SoftmaxMixture(K={lik.n_components})", "alternatives": p,
                   "features": length, "observations": total}, model._n_parameters())
    result = infer(lik, theta, method=method, level=level, groups=groups, n_boot=n_boot,
                   bootstrap=bootstrap, random_state=random_state, replicate=replicate,
                   converged=bool(model.converged_), header=head)
    r = length - lik.basis.shape[1]
    if r:
        result.extra["notes"].append(
            f"The design has {r} unidentified direction(s): the atoms are reported with no "
            "component along them (a normalisation, not an estimate), so some atom "
            "coordinates or combinations have standard error 0.")
    return result


def n_parameters(model) -> int:
    """Free parameters the fitted estimator counts (its BIC's)."""
    return int(model._n_parameters())
