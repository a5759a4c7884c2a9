"""The latent class logit's glue to :mod:`softmix.inference` and :mod:`softmix.selection`.

The protocol module of :class:`softmix.LatentClassLogit` (its ``_protocol()``), like
:mod:`softmix.softmax_mixture.likelihood` and :mod:`softmix.moe.likelihood` for the other two
estimators: :class:`ChoiceLikelihood` (the likelihood-protocol object the generic covariance
code works on), :func:`build`, :func:`n_parameters`, :func:`folds` and
:func:`model_inference`. The derivatives are the analytic ones of
:mod:`softmix.choice.likelihood`.

The groups (persons; the situations without ``groups``) are the statistical units: the sandwich
clusters on them, the nonparametric bootstrap resamples whole groups with all their rows, and
the held-out folds of :func:`softmix.select_n_components` are whole groups. Classes are
reported in the fitted model's order (``coef_`` rows); the last class is the membership
reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from softmix.choice import likelihood as _lik
from softmix.choice.data import ChoiceData, prepare_choice_data

__all__ = ["N_COMPONENTS", "ChoiceLikelihood", "build", "folds", "model_inference",
           "n_parameters"]

#: Name of the estimator's number-of-components hyperparameter.
N_COMPONENTS = "n_classes"


class ChoiceLikelihood:
    """Log-likelihood of a latent class logit as a function of the unconstrained vector
    ``theta = [coef.ravel(), membership_coef[:-1].ravel()]`` (:mod:`softmix.choice.likelihood`).

    Reported parameters: ``coef[k,l]`` (every class), then ``membership[k,j]`` (k < K - 1; j = 0
    the intercept, j >= 1 covariate j - 1) with covariates, or ``weight[k]`` (every class, the
    delta method through the softmax) without.

    Parameters
    ----------
    data : ChoiceData
    n_classes : int
    """

    family = "latent_class_logit"

    def __init__(self, data: ChoiceData, n_classes: int) -> None:
        self.data = data
        self.n_components = int(n_classes)
        self.n_features = data.n_features
        self.n_covariates = data.n_covariates

    @property
    def n_observations(self) -> float:
        """The n of BIC: the number of groups or their total weight (as
        :meth:`LatentClassLogit.bic`)."""
        return self.data.total_weight

    @property
    def n_free_parameters(self) -> int:
        return _lik.n_free_parameters(self.n_components, self.n_features, self.n_covariates)

    def _membership_names(self) -> list[str]:
        k = self.n_components
        if self.n_covariates == 0:
            return [f"logratio[{i},{k - 1}]" for i in range(k - 1)]
        return [f"membership[{i},{j}]" for i in range(k - 1) for j in range(self.n_covariates + 1)]

    def _coef_names(self) -> list[str]:
        return [f"coef[{i},{j}]" for i in range(self.n_components) for j in range(self.n_features)]

    @property
    def names(self) -> list[str]:
        """Names of the unconstrained coordinates."""
        return self._coef_names() + self._membership_names()

    def reported_names(self) -> list[str]:
        tail = ([f"weight[{i}]" for i in range(self.n_components)] if self.n_covariates == 0
                else self._membership_names())
        return self._coef_names() + tail

    def to_vector(self, params) -> np.ndarray:
        return _lik.to_vector(params)

    def from_vector(self, theta: np.ndarray):
        return _lik.from_vector(theta, self.n_components, self.n_features, self.n_covariates)

    def reported(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reported values and their Jacobian with respect to ``theta``."""
        theta = np.asarray(theta, dtype=float)
        k, nb = self.n_components, self.n_components * self.n_features
        if self.n_covariates:
            return theta.copy(), np.eye(theta.size)
        g = np.r_[theta[nb:], 0.0]
        w = np.exp(g - g.max())
        w /= w.sum()
        jac = np.zeros((nb + k, theta.size))
        jac[:nb, :nb] = np.eye(nb)
        jac[nb:, nb:] = (np.diag(w) - np.outer(w, w))[:, : k - 1]
        return np.r_[theta[:nb], w], jac

    def loglik(self, theta: np.ndarray) -> float:
        return _lik.loglik(theta, self.data, self.n_components)

    def score(self, theta: np.ndarray) -> np.ndarray:
        return _lik.score(theta, self.data, self.n_components)

    def score_units(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-group scores (G, P), unweighted, and the group weights (frequency weights)."""
        s = _lik.score(theta, self.data, self.n_components, per_group=True, weighted=False)
        w = self.data.group_weights
        return s, (np.ones(self.data.n_groups) if w is None else w)

    def score_observations(self, theta: np.ndarray) -> np.ndarray:
        """Per-group scores times the group weights (G, P): the clusters' contributions."""
        return _lik.score(theta, self.data, self.n_components, per_group=True)

    def hessian(self, theta: np.ndarray) -> np.ndarray:
        return _lik.hessian(theta, self.data, self.n_components)

    def entropy(self, theta: np.ndarray) -> float:
        """Classification entropy over groups ``-sum_g s_g sum_k r_gk log r_gk`` (for ICL)."""
        from softmix.choice.model import e_step

        log_r = e_step(self.from_vector(theta), self.data)[0]
        ent = -np.sum(np.exp(log_r) * log_r, axis=1)
        w = self.data.group_weights
        return float(ent.sum() if w is None else w @ ent)


def _check_data_args(X, chosen, situations):
    given = [a is not None for a in (X, chosen, situations)]
    if any(given) and not all(given):
        raise ValueError("pass X, chosen and situations together (as fit takes them), or none "
                         "of them for the training data.")
    return all(given)


def _model_data(model, X, chosen, situations, groups, covariates, sample_weight) -> ChoiceData:
    from softmix._validation import check_fitted

    check_fitted(model)
    if not _check_data_args(X, chosen, situations):
        if groups is not None or covariates is not None or sample_weight is not None:
            raise ValueError("groups, covariates or sample_weight given without X, chosen and "
                             "situations; pass the data again as fit took it.")
        return model.data_
    return model._data(X, chosen, situations, groups, covariates, sample_weight)


def build(model, X=None, chosen=None, situations=None, *, groups=None, covariates=None,
          sample_weight=None):
    """``(lik, theta)`` for a fitted :class:`~softmix.LatentClassLogit` on the given data (none:
    the training data)."""
    data = _model_data(model, X, chosen, situations, groups, covariates, sample_weight)
    lik = ChoiceLikelihood(data, model.params_.n_classes)
    try:
        theta = lik.to_vector(model.params_)
    except ValueError:
        raise ValueError("a class of the fit has weight 0 (membership_coef -inf): no standard "
                         "errors; refit with fewer classes or ridge > 0.") from None
    return lik, theta


def n_parameters(model) -> int:
    """Free parameters the fitted estimator counts (its BIC's)."""
    return int(model.n_parameters())


def _group_arrays(data: ChoiceData, pick: np.ndarray) -> tuple[tuple, dict]:
    """Long-format arrays of the groups ``pick`` (codes, repeats allowed: each copy becomes its
    own group with its own situations), as ``fit`` takes them: ``(X, chosen, situations)`` and
    ``groups`` / ``covariates`` / ``sample_weight``."""
    n_sit = data.n_situations
    row_start = data.starts[data.group_starts]  # first row of each group
    row_end = np.r_[row_start[1:], data.n_rows]
    sizes = row_end - row_start
    copy = np.repeat(np.arange(pick.size), sizes[pick])
    offset = np.arange(copy.size) - np.repeat(np.cumsum(sizes[pick]) - sizes[pick], sizes[pick])
    rows = row_start[pick][copy] + offset
    chosen = np.zeros(data.n_rows, dtype=np.int64)
    chosen[data.chosen_rows] = 1
    kw: dict[str, Any] = {"groups": copy}
    if data.Z is not None:
        kw["covariates"] = data.Z[pick][copy]
    if data.group_weights is not None:
        kw["sample_weight"] = data.group_weights[pick][copy]
    situations = copy.astype(np.int64) * n_sit + data.row_situation[rows]
    return (data.X[rows], chosen[rows], situations), kw


def folds(X, chosen, situations, *, groups=None, covariates=None, sample_weight=None,
          n_folds=5, rng=None):
    """F-fold split by whole groups (a random permutation of the groups; the situations without
    ``groups``). Yields ``(train_args, train_kwargs, test_args, test_kwargs, n_test)`` as fit /
    score take them, ``n_test`` the held-out groups' total weight (score is per group)."""
    data = prepare_choice_data(X, chosen, situations, groups=groups, covariates=covariates,
                               sample_weight=sample_weight)
    if data.n_groups < n_folds:
        raise ValueError(f"n_folds={n_folds} exceeds the number of groups ({data.n_groups}).")
    assign = rng.permutation(data.n_groups) % n_folds
    for f in range(n_folds):
        train, test = np.flatnonzero(assign != f), np.flatnonzero(assign == f)
        tr, trk = _group_arrays(data, train)
        te, tek = _group_arrays(data, test)
        n_test = float(test.size if data.group_weights is None else data.group_weights[test].sum())
        yield tr, trk, te, tek, n_test


def model_inference(model, X=None, chosen=None, situations=None, *, groups=None,
                    covariates=None, sample_weight=None, method="observed", level=0.95,
                    n_boot=200, bootstrap="nonparametric", random_state=None):
    """:meth:`softmix.LatentClassLogit.inference` (see there)."""
    from softmix.inference._glue import clone_from_fit, header
    from softmix.inference.covariance import infer
    from softmix.metrics import match_components

    lik, theta = build(model, X, chosen, situations, groups=groups, covariates=covariates,
                       sample_weight=sample_weight)
    data = lik.data
    n_groups = data.n_groups
    everyone = np.arange(n_groups)

    def replicate(rng, kind):
        pick = everyone if kind == "parametric" else rng.integers(0, n_groups, n_groups)
        args, kw = _group_arrays(data, pick)
        if kind == "parametric":
            drawn, _ = model.sample(args[0], args[2], groups=kw["groups"],
                                    covariates=kw.get("covariates"), random_state=rng)
            args = (args[0], drawn, args[2])
        fit = clone_from_fit(model, rng).fit(*args, **kw)
        perm = match_components(fit.coef_, model.coef_)
        aligned = fit.params_.permuted(perm)
        return lik.reported(lik.to_vector(aligned))[0], bool(fit.converged_)

    sizes = {"model": f"LatentClassLogit(K={lik.n_components})", "groups": n_groups,
             "situations": data.n_situations, "rows": data.n_rows, "features": lik.n_features}
    if lik.n_covariates:
        sizes["covariates"] = lik.n_covariates
    head = header(model, lik, theta, "Latent class logit results", sizes, n_parameters(model))
    result = infer(lik, theta, method=method, level=level,
                   groups=everyone if method == "sandwich" else None, n_boot=n_boot,
                   bootstrap=bootstrap, random_state=random_state, replicate=replicate,
                   converged=bool(model.converged_), header=head)
    unit = "groups" if data.has_groups else "situations (no groups: each is its own group)"
    result.extra["notes"].append(
        f"{n_groups} {unit}, one latent class per group: the groups are the independent units "
        "(the sandwich clusters on them, the bootstrap resamples them with all their rows); "
        "BIC uses n = the number of groups (or their total weight).")
    if data.group_weights is not None:
        result.extra["notes"].append(
            "sample_weight: frequency weights in the observed information, sampling weights "
            "in the sandwich (its meat sums the weighted group scores).")
    if lik.n_covariates:
        result.extra["notes"].append(
            f"membership[k,j]: class k's log-odds against the reference class "
            f"{lik.n_components - 1} (j = 0 the intercept, j >= 1 covariate j-1).")
    return result
