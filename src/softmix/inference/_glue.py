"""Shared pieces of the estimators' ``inference`` / ``summary``: the summary header and clones."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def clone_from_fit(model: Any, rng: np.random.Generator) -> Any:
    """An unfitted copy of ``model`` that starts from its fit (n_init=1, no callback)."""
    params = model.get_params()
    params.update(init=model.params_, n_init=1, random_state=rng, callback=None)
    if "truth" in params:
        params["truth"] = None
    first = next(iter(params))
    return type(model)(params.pop(first), **params)


def header(model: Any, lik: Any, theta: np.ndarray, title: str, sizes: dict,
           n_parameters: int) -> dict:
    """Summary-header facts: sizes, log-likelihood, AIC/BIC/ICL, convergence."""
    loglik = getattr(lik, "unpenalised_loglik", lik.loglik)(theta)  # MAP fits: the data's
    n = lik.n_observations
    bic = -2.0 * loglik + n_parameters * math.log(n)
    result = model.fit_result_
    out = {"title": title, **sizes, "parameters": int(n_parameters),
           "log-likelihood": loglik, "AIC": -2.0 * loglik + 2.0 * n_parameters, "BIC": bic,
           "ICL": bic + 2.0 * lik.entropy(theta), "converged": bool(model.converged_),
           "stop reason": result.stop_reason, "iterations": int(result.n_iter),
           "criterion": getattr(result, "criterion", "relative_change"),
           "criterion value": float(getattr(result, "criterion_value", float("nan")))}
    return out
