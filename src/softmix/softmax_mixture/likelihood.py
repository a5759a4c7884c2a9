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


def is_panel_fit(model) -> bool:
    """Whether ``model`` was fit on panel data (groups, a count matrix or covariates)."""
    return getattr(model, "n_groups_", None) is not None


def _panel_data(model, features, choices, counts, groups, covariates):
    from softmix.softmax_mixture.panel import estimator_panel_data

    if features is None and choices is None and counts is None:
        raise ValueError("this model was fit on panel data: pass the data again, as fit took "
                         "it (features, choices, groups=... or features, counts=C, and "
                         "covariates= when the fit had them).")
    return estimator_panel_data(model, features, choices, counts, groups, covariates)


def build(model, features=None, choices=None, *, counts=None, groups=None, covariates=None):
    """``(lik, theta)`` for a fitted :class:`~softmix.SoftmaxMixture` on the given data: a
    :class:`PanelLikelihood` when the model was fit on panel data, else a
    :class:`SoftmaxMixtureLikelihood` (``groups`` then ignored: cluster labels are the
    sandwich's business)."""
    from softmix.softmax_mixture.model import check_choices, to_counts

    if is_panel_fit(model):
        x, data = _panel_data(model, features, choices, counts, groups, covariates)
        lik = PanelLikelihood(x, data, model.params_.n_components)
        return lik, lik.to_vector(model.params_)
    if covariates is not None:
        raise ValueError("covariates given, but this model was fit without class-membership "
                         "covariates; drop covariates= or refit with them.")
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


def folds(features, choices=None, *, counts=None, groups=None, covariates=None, n_folds=5,
          rng=None):
    """K-fold split of the data. Unpanelled: the N draws by thinning, each cell's count ``n_j``
    split ``Multinomial(n_j, (1/F, ..., 1/F))`` across the F folds (exactly the counts of a
    uniform random assignment of the draws to folds). Panels (``groups``, a 2-D / sparse count
    matrix or ``covariates``): whole groups (rows of the count matrix, with their covariate
    rows) by a random permutation. Yields ``(train_args, train_kwargs, test_args,
    test_kwargs, n_test)`` as fit / score take them (``n_test`` the held-out choices)."""
    from softmix.softmax_mixture.model import check_features
    from softmix.softmax_mixture.panel import check_panel, is_panel_call

    if is_panel_call(counts, groups, covariates):
        x = check_features(features)
        data = check_panel(x, choices, counts=counts, groups=groups, covariates=covariates)
        assign = rng.permutation(data.n_groups) % n_folds
        for f in range(n_folds):
            parts = []
            for rows in (assign != f, assign == f):
                kw = {"counts": data.counts[np.flatnonzero(rows)]}
                if data.covariates is not None:
                    kw["covariates"] = data.covariates[rows, 1:]
                parts.append(kw)
            yield (x,), parts[0], (x,), parts[1], float(parts[1]["counts"].sum())
        return
    x, n = fit_arguments(features, choices, counts=counts)
    n_int = n.astype(np.int64)
    parts = np.stack([rng.multinomial(int(c), np.full(n_folds, 1.0 / n_folds)) for c in n_int])
    for f in range(n_folds):
        test = parts[:, f].astype(float)
        train = n - test
        yield (x,), {"counts": train}, (x,), {"counts": test}, float(test.sum())


def _align_panel(fitted, reference):
    """``fitted`` (SoftmaxMixtureParams or MembershipParams) with components matched to
    ``reference`` on the atoms (Hungarian); membership coefficients re-gauged to the
    reference's last class."""
    from softmix.metrics import match_components
    from softmix.softmax_mixture.panel import MembershipParams

    perm = match_components(fitted.atoms, reference.atoms)
    if isinstance(fitted, MembershipParams):
        coef = fitted.coef[perm]
        return MembershipParams(coef - coef[-1], fitted.atoms[perm])
    return SoftmaxMixtureParams(fitted.weights[perm], fitted.atoms[perm])


def _panel_inference(model, lik, theta, *, method, level, n_boot, bootstrap, random_state):
    """:func:`model_inference` on a panel fit: groups are the units (cluster-robust sandwich
    over them; the bootstrap resamples whole groups with their covariates)."""
    import scipy.sparse

    from softmix.inference._glue import clone_from_fit, header
    from softmix.inference.covariance import infer

    data = lik.data
    counts = data.counts
    z = None if data.covariates is None else data.covariates[:, 1:]
    n_groups = data.n_groups
    sparse = scipy.sparse.issparse(counts)

    def replicate(rng, kind):
        if kind == "parametric":
            log_w = (np.broadcast_to(np.log(model.params_.weights), (n_groups, lik.n_components))
                     if z is None else
                     log_softmax(data.covariates @ model.params_.coef.T, axis=1))
            w = np.exp(log_w)
            u = rng.random(n_groups)[:, None]
            cls = np.minimum((np.cumsum(w, axis=1) < u).sum(axis=1), lik.n_components - 1)
            pi = np.exp(log_class_probabilities(lik.features, model.params_.atoms))  # (p, K)
            cb = np.zeros((n_groups, lik.features.shape[0]))
            totals = lik.group_totals.astype(np.int64)
            for k in range(lik.n_components):
                rows = np.flatnonzero(cls == k)
                if rows.size:
                    cb[rows] = rng.multinomial(totals[rows], pi[:, k] / pi[:, k].sum())
            cb = scipy.sparse.csr_matrix(cb) if sparse else cb
            zb = z
        else:
            pick = rng.integers(0, n_groups, n_groups)
            cb = counts[pick]
            zb = None if z is None else z[pick]
        fit = clone_from_fit(model, rng).fit(lik.features, counts=cb, covariates=zb)
        aligned = _align_panel(fit.params_, model.params_)
        return lik.reported(lik.to_vector(aligned))[0], bool(fit.converged_)

    p, length = lik.features.shape
    sizes = {"model": f"SoftmaxMixture(K={lik.n_components}, panel)", "alternatives": p,
             "features": length, "groups": n_groups, "observations": int(data.n_choices)}
    if z is not None:
        sizes["covariates"] = z.shape[1]
    head = header(model, lik, theta, "Softmax mixture results (panel)", sizes,
                  model._n_parameters())
    result = infer(lik, theta, method=method, level=level,
                   groups=np.arange(n_groups) if method == "sandwich" else None,
                   n_boot=n_boot, bootstrap=bootstrap, random_state=random_state,
                   replicate=replicate, converged=bool(model.converged_), header=head)
    result.extra["notes"].append(
        f"Panel of {n_groups} groups ({int(data.n_choices)} choices), one latent class per "
        "group: the groups are the independent units (the sandwich clusters on them, the "
        "bootstrap resamples them); BIC uses n = the number of choices.")
    if z is not None:
        result.extra["notes"].append(
            f"membership[k,j]: class k's log-odds against the reference class "
            f"{lik.n_components - 1} (j = 0 the intercept, j >= 1 covariate j-1).")
    return result


def model_inference(model, features=None, choices=None, *, counts=None, method="observed",
                    level=0.95, groups=None, n_boot=200, bootstrap="nonparametric",
                    random_state=None, covariates=None):
    """:meth:`softmix.SoftmaxMixture.inference` (see there)."""
    from softmix._validation import check_fitted
    from softmix.inference._glue import clone_from_fit, header
    from softmix.inference.covariance import infer
    from softmix.metrics import align
    from softmix.softmax_mixture.model import sample_counts

    check_fitted(model)
    if is_panel_fit(model):
        lik, theta = build(model, features, choices, counts=counts, groups=groups,
                           covariates=covariates)
        return _panel_inference(model, lik, theta, method=method, level=level, n_boot=n_boot,
                                bootstrap=bootstrap, random_state=random_state)
    lik, theta = build(model, features, choices, counts=counts, covariates=covariates)
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


# -- panels and class-membership covariates (issue 12) ------------------------------------------


class PanelLikelihood:
    """Log-likelihood of a panel softmax mixture (one class per group, optionally with
    class-membership covariates) as a function of an unconstrained vector.

    The model of :mod:`softmix.softmax_mixture.panel`: group g with count row ``C_g`` and
    ``l_g = log sum_k w_gk prod_j pi_j(theta_k)^{C_gj}``. The groups are the statistical units
    (their scores are independent), so the sandwich's meat sums over groups. Vector::

        theta = [membership block,  eta_0, ..., eta_{K-1}]

    with the membership block the K-1 log-ratios ``log(alpha_k / alpha_{K-1})`` (no covariates)
    or the K-1 rows of ``gamma`` (K-1)(q+1) (row-major; the last class is the reference, its row
    0), and ``theta_k = B eta_k`` as in :class:`SoftmaxMixtureLikelihood`.

    Derivatives (``z_j`` the reduced features, ``zbar_k = sum_j pi_jk z_j``, ``n_g = sum_j
    C_gj``): ``d a_gk / d eta_k = (C Z)_g - n_g zbar_k``; ``d log w_gk / d gamma_m =
    (delta_km - w_gm) u_g`` (``u_g = [1, Z_g]``); the curvature is ``-sum_k m_k Cov_k(z)`` with
    ``m_k = sum_g tau_gk n_g`` for the atoms and ``-sum_g (diag w_g - w_g w_g') (x) u_g u_g'``
    for the membership. :meth:`hessian` costs ``O(nnz(C) (L + K) + p K L^2 + G P^2)`` (P the
    number of free parameters); a sparse ``C`` is never densified.

    Parameters
    ----------
    features : ndarray of shape (p, L)
    data : softmix.softmax_mixture.panel.PanelData
    n_components : int
    """

    family = "softmax_mixture"

    def __init__(self, features, data, n_components: int) -> None:
        self.features = np.asarray(features, dtype=float)
        self.data = data
        self.n_components = int(n_components)
        self._flat = SoftmaxMixtureLikelihood(self.features, np.ones(self.features.shape[0]),
                                              self.n_components)
        self.basis, self.reduced = self._flat.basis, self._flat.reduced
        self.covariates = data.covariates  # [1, Z] (G, q+1) or None
        counts = data.counts
        self.group_totals = np.asarray(counts.sum(axis=1), dtype=float).ravel()  # n_g
        self.group_features = np.asarray(counts @ self.reduced)  # (C Z) (G, m)

    # -- layout ------------------------------------------------------------------------------
    @property
    def n_groups(self) -> int:
        return self.data.n_groups

    @property
    def n_features(self) -> int:
        return self.features.shape[1]

    @property
    def n_membership(self) -> int:
        q1 = 1 if self.covariates is None else self.covariates.shape[1]
        return (self.n_components - 1) * q1

    @property
    def n_free_parameters(self) -> int:
        return self.n_membership + self.n_components * self.basis.shape[1]

    @property
    def n_observations(self) -> float:
        """N, the number of choices (the n of BIC, as in ``SoftmaxMixture.bic`` on panels)."""
        return self.data.n_choices

    def _membership_names(self) -> list[str]:
        k = self.n_components
        if self.covariates is None:
            return [f"logratio[{i},{k - 1}]" for i in range(k - 1)]
        return [f"membership[{i},{j}]" for i in range(k - 1)
                for j in range(self.covariates.shape[1])]

    @property
    def names(self) -> list[str]:
        return self._membership_names() + self._flat.names[self.n_components - 1:]

    def reported_names(self) -> list[str]:
        k, length = self.n_components, self.n_features
        head = ([f"weight[{i}]" for i in range(k)] if self.covariates is None
                else self._membership_names())
        return head + [f"atom[{i},{j}]" for i in range(k) for j in range(length)]

    # -- vector <-> params -------------------------------------------------------------------
    def to_vector(self, params) -> np.ndarray:
        """Unconstrained vector of ``SoftmaxMixtureParams`` (no covariates) or
        ``MembershipParams`` (covariates)."""
        from softmix.softmax_mixture.panel import MembershipParams

        if (self.covariates is None) == isinstance(params, MembershipParams):
            raise ValueError("params must be MembershipParams exactly when the panel has "
                             "covariates.")
        if self.covariates is None:
            return self._flat.to_vector(params)
        eta = params.atoms @ self.basis
        return np.concatenate([params.coef[:-1].ravel(), eta.ravel()])

    def from_vector(self, theta: np.ndarray):
        """Inverse of :meth:`to_vector`."""
        from softmix.softmax_mixture.panel import MembershipParams

        theta = self._check(theta)
        if self.covariates is None:
            return self._flat.from_vector(theta)
        gamma, eta = self._unpack(theta)
        return MembershipParams(gamma, eta @ self.basis.T)

    def _check(self, theta) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.n_free_parameters,):
            raise ValueError(
                f"theta must have shape ({self.n_free_parameters},) for this panel model "
                f"(K={self.n_components}); got {theta.shape}."
            )
        return theta

    def _unpack(self, theta):
        k, nm = self.n_components, self.n_membership
        q1 = nm // max(k - 1, 1) if k > 1 else (
            1 if self.covariates is None else self.covariates.shape[1])
        gamma = np.vstack([theta[:nm].reshape(k - 1, q1), np.zeros((1, q1))])
        return gamma, theta[nm:].reshape(k, -1)

    def reported(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reported values and their Jacobian: weights (no covariates) or the free membership
        coefficients (covariates), then the atoms."""
        theta = self._check(theta)
        if self.covariates is None:
            return self._flat.reported(theta)
        k, length, m, nm = self.n_components, self.n_features, self.basis.shape[1], \
            self.n_membership
        _, eta = self._unpack(theta)
        jac = np.zeros((nm + k * length, theta.size))
        jac[:nm, :nm] = np.eye(nm)
        for i in range(k):
            jac[nm + i * length: nm + (i + 1) * length, nm + i * m: nm + (i + 1) * m] = \
                self.basis
        return np.concatenate([theta[:nm], (eta @ self.basis.T).ravel()]), jac

    # -- likelihood and derivatives ----------------------------------------------------------
    def _joint(self, theta):
        gamma, eta = self._unpack(self._check(theta))
        logpi = log_class_probabilities(self.reduced, eta)  # (p, K)
        if self.covariates is None:
            logw = np.broadcast_to(log_softmax(gamma[:, 0]), (self.n_groups, self.n_components))
        else:
            logw = log_softmax(self.covariates @ gamma.T, axis=1)
        joint = np.asarray(self.data.counts @ logpi) + logw  # (G, K), O(nnz K)
        return joint, logw, logpi, eta

    def loglik_groups(self, theta: np.ndarray) -> np.ndarray:
        """Per-group log-likelihood terms, shape (G,)."""
        joint, *_ = self._joint(theta)
        mx = joint.max(axis=1, keepdims=True)
        return (mx + np.log(np.exp(joint - mx).sum(axis=1, keepdims=True)))[:, 0]

    def loglik(self, theta: np.ndarray) -> float:
        """``sum_g log sum_k w_gk prod_j pi_j(theta_k)^{C_gj}``."""
        return float(self.loglik_groups(theta).sum())

    def _derivatives(self, theta):
        joint, logw, logpi, _ = self._joint(theta)
        k, g = self.n_components, self.n_groups
        tau = np.exp(joint - joint.max(axis=1, keepdims=True))
        tau /= tau.sum(axis=1, keepdims=True)
        w = np.exp(logw)  # (G, K)
        pi = np.exp(logpi)
        means = pi.T @ self.reduced  # (K, m)
        d = w[:, None, : k - 1] * -1.0 + np.eye(k)[None, :, : k - 1]  # (G, K, K-1)
        if self.covariates is None:
            shared = d
        else:
            u = self.covariates
            shared = (d[:, :, :, None] * u[:, None, None, :]).reshape(g, k, -1)
        own = [self.group_features - self.group_totals[:, None] * means[i] for i in range(k)]
        return tau, w, pi, means, shared, own

    def score_units(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-group scores (G, P) and unit weights (ones): the groups are the units."""
        tau, _, _, _, shared, own = self._derivatives(theta)
        return mixture_scores(tau, shared, own), np.ones(self.n_groups)

    def score_observations(self, theta: np.ndarray) -> np.ndarray:
        """Per-group scores (G, P) (a group's choices share one class: it is the observation
        of the cluster-robust sandwich)."""
        return self.score_units(theta)[0]

    def score(self, theta: np.ndarray) -> np.ndarray:
        """Gradient of :meth:`loglik`, shape (P,)."""
        return self.score_units(theta)[0].sum(axis=0)

    def hessian(self, theta: np.ndarray) -> np.ndarray:
        """Analytic Hessian of :meth:`loglik`, shape (P, P) (class docstring)."""
        tau, w, pi, means, shared, own = self._derivatives(theta)
        k, m, nm = self.n_components, self.basis.shape[1], self.n_membership
        size = self.n_free_parameters
        curv = np.zeros((size, size))
        wk = w[:, : k - 1]
        if self.covariates is None:
            total = float(self.n_groups)
            a = wk[0]
            curv[:nm, :nm] = -total * (np.diag(a) - np.outer(a, a))
        else:
            u = self.covariates
            mg = -(wk[:, :, None] * wk[:, None, :])
            idx = np.arange(k - 1)
            mg[:, idx, idx] += wk
            curv[:nm, :nm] = -np.einsum("gab,gu,gv->aubv", mg, u, u).reshape(nm, nm)
        mass = self.group_totals @ tau  # (K,)
        for i in range(k):
            dz = self.reduced - means[i]
            cov = (dz * pi[:, i: i + 1]).T @ dz
            sl = slice(nm + i * m, nm + (i + 1) * m)
            curv[sl, sl] = -mass[i] * cov
        return mixture_hessian(np.ones(self.n_groups), tau, shared, own, curv)

    def entropy(self, theta: np.ndarray) -> float:
        """Classification entropy over groups ``-sum_g sum_k tau_gk log tau_gk`` (for ICL)."""
        joint, *_ = self._joint(theta)
        logt = joint - joint.max(axis=1, keepdims=True)
        logt = logt - np.log(np.exp(logt).sum(axis=1, keepdims=True))
        return float(-np.sum(np.exp(logt) * logt))
