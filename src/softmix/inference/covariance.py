"""Covariance of the estimates: observed information, sandwich (cluster-robust), bootstrap.

All three work on a family's likelihood protocol object ``lik`` (``to_vector``, ``loglik``,
``score_units`` / ``score_observations``, ``hessian``, ``reported``, ``names``,
``reported_names``; see :mod:`softmix.softmax_mixture.likelihood` and
:mod:`softmix.moe.likelihood`) and never look at which family it is.

- ``"observed"``: ``V = (-H)^{-1}`` at the fit, ``H`` the analytic Hessian of the observed
  log-likelihood in the unconstrained parametrisation; reported parameters by the delta method
  ``J V J'`` (``J`` the Jacobian of the map to weights / atoms / gates / coefficients /
  variances).
- ``"sandwich"``: ``V = A^{-1} B A^{-1}`` with ``A = -H`` and ``B = sum_i s_i s_i'`` over
  observations, or, with ``groups``, ``B = G/(G-1) sum_g (sum_{i in g} s_i)(...)'`` over the G
  clusters (the small-sample factor of Stata's and statsmodels' cluster option). On a panel
  softmax mixture the groups are the observations (one latent class per group): the
  estimator passes ``groups = arange(G)`` so the meat sums the group scores.
- ``"bootstrap"``: ``n_boot`` replicates (``"parametric"``: data drawn from the fitted model;
  ``"nonparametric"``: observations, or whole groups, resampled with replacement; a panel's
  groups with their covariate rows), each refitted
  *from the fit* with a spawned generator, its components matched to the fit's by Hungarian
  assignment; the covariance of the aligned replicates. Replicates that raise or do not converge
  are counted (``extra["n_failed"]``, ``extra["n_not_converged"]``) and left out, never redrawn.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from softmix._validation import check_choice, check_int, check_random_state
from softmix.core.restarts import spawn
from softmix.exceptions import ConvergenceWarning
from softmix.inference.information import check_information
from softmix.inference.report import InferenceResult, _check_level

__all__ = ["METHODS", "infer"]

METHODS = ("observed", "sandwich", "bootstrap")
BOOTSTRAP_KINDS = ("nonparametric", "parametric")


def _delta(cov: np.ndarray, flagged: np.ndarray, jac: np.ndarray) -> np.ndarray:
    """``J V J'`` with flagged coordinates' infinite variance carried to the reported ones."""
    finite = np.where(np.isfinite(cov), cov, 0.0)
    out = jac @ finite @ jac.T
    out = (out + out.T) / 2.0
    hit = np.any(np.abs(jac[:, flagged]) > 0, axis=1) if np.any(flagged) else None
    if hit is not None and np.any(hit):
        out[hit, :] = np.nan
        out[:, hit] = np.nan
        out[hit, hit] = np.inf
    return out


def _meat(lik: Any, theta: np.ndarray, groups: Any) -> tuple[np.ndarray, int | None]:
    if groups is None:
        s, w = lik.score_units(theta)
        return (s * w[:, None]).T @ s, None
    s = lik.score_observations(theta)
    groups = np.asarray(groups)
    if groups.ndim != 1 or groups.shape[0] != s.shape[0]:
        raise ValueError(
            f"groups must give one cluster label per observation ({s.shape[0]}), got shape "
            f"{groups.shape}."
        )
    _, index = np.unique(groups, return_inverse=True)
    n_groups = int(index.max()) + 1
    if n_groups < 2:
        raise ValueError("groups must hold at least 2 clusters for a cluster-robust covariance.")
    sums = np.zeros((n_groups, s.shape[1]))
    np.add.at(sums, index, s)
    return n_groups / (n_groups - 1.0) * (sums.T @ sums), n_groups


def infer(
    lik: Any,
    theta: np.ndarray,
    *,
    method: str = "observed",
    level: float = 0.95,
    groups: Any = None,
    n_boot: int = 200,
    bootstrap: str = "nonparametric",
    random_state: Any = None,
    replicate: Callable[[np.random.Generator, str], tuple[np.ndarray, bool]] | None = None,
    converged: bool = True,
    header: dict | None = None,
) -> InferenceResult:
    """Standard errors of the reported parameters at ``theta`` (see the module docstring).

    Parameters
    ----------
    lik : likelihood protocol object
    theta : ndarray of shape (P,)
        The fit, in ``lik``'s unconstrained parametrisation.
    method : {"observed", "sandwich", "bootstrap"}
    level : float
        Interval level of the result's summary.
    groups : array-like of shape (n_observations,), optional
        Cluster labels: cluster-robust sandwich, or the cluster bootstrap.
    n_boot : int
        Bootstrap replicates.
    bootstrap : {"nonparametric", "parametric"}
    random_state : None, int or Generator
        Seeds the bootstrap (one spawned child generator per replicate).
    replicate : callable
        ``replicate(rng, kind) -> (reported values aligned to the fit, converged)``; supplied by
        the estimator (it knows how to resample and refit).
    converged : bool
        Whether the fit converged; a :class:`ConvergenceWarning` is issued when it did not.
    header : dict
        Model facts for the summary header.
    """
    method = check_choice(method, "method", METHODS)
    level = _check_level(level)
    header = dict(header or {})
    notes: list[str] = []
    if not converged:
        crit = header.get("criterion")
        value = header.get("criterion value")
        warnings.warn(
            "the fit did not converge"
            + (f" ({crit} = {value:.3g})" if crit is not None and value is not None else "")
            + ": standard errors at a non-stationary point are meaningless. Refit with a "
            "larger max_iter (or tighter tol) until converged_ is True.",
            ConvergenceWarning, stacklevel=3,
        )
        notes.append("The fit did not converge: these standard errors are not valid.")
    values, jac = lik.reported(theta)
    names = lik.reported_names()
    extra: dict[str, Any] = {}
    if method in ("observed", "sandwich"):
        hess = lik.hessian(theta)
        cov_t, flagged = check_information(-hess, lik.names, stacklevel=4)
        if method == "sandwich":
            meat, n_groups = _meat(lik, theta, groups)
            bread = np.where(np.isfinite(cov_t), cov_t, 0.0)
            sand = bread @ meat @ bread
            cov_t = np.where(np.isfinite(cov_t), (sand + sand.T) / 2.0, cov_t)
            if n_groups is not None:
                extra["n_groups"] = n_groups
                notes.append(f"Cluster-robust covariance over {n_groups} groups.")
        elif groups is not None:
            raise ValueError("groups is used by method='sandwich' or 'bootstrap'; with "
                             "method='observed' drop groups.")
        cov = _delta(cov_t, flagged, jac)
        extra["flagged"] = [lik.names[i] for i in np.flatnonzero(flagged)]
        if np.any(flagged):
            notes.append(f"No information about {extra['flagged']}: their standard errors "
                         "are inf.")
    else:
        if replicate is None:
            raise ValueError("method='bootstrap' needs a replicate function (use the "
                             "estimator's inference method).")
        kind = check_choice(bootstrap, "bootstrap", BOOTSTRAP_KINDS)
        n_boot = check_int(n_boot, "n_boot", low=2)
        rng = check_random_state(random_state)
        reps, n_failed, n_not_converged = [], 0, 0
        errors: list[str] = []
        for child in spawn(rng, n_boot):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    vals, ok = replicate(child, kind)
            except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
                n_failed += 1
                if len(errors) < 3:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if not ok:
                n_not_converged += 1
                continue
            reps.append(vals)
        if len(reps) < 2:
            raise ValueError(
                f"only {len(reps)} of {n_boot} bootstrap replicates converged ({n_failed} "
                f"failed, {n_not_converged} did not converge; first errors: {errors}); use "
                "method='observed', more data, or a larger max_iter."
            )
        reps_arr = np.asarray(reps)
        cov = np.atleast_2d(np.cov(reps_arr, rowvar=False))
        extra.update(n_boot=n_boot, n_used=len(reps), n_failed=n_failed,
                     n_not_converged=n_not_converged, kind=kind, replicates=reps_arr,
                     errors=errors)
        if n_failed or n_not_converged:
            notes.append(f"{n_failed} bootstrap replicate(s) failed and {n_not_converged} did "
                         f"not converge out of {n_boot}; they were left out (not redrawn).")
    extra["notes"] = notes
    diag = np.diag(cov).copy()
    std = np.sqrt(np.where(diag >= 0, diag, np.nan))
    return InferenceResult(names=names, estimates=values, std_errors=std, cov=cov,
                           method=method, level=level, model=header, extra=extra)
