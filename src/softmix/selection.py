"""Choosing the number of components: ``select_n_components`` over any softmix estimator.

For each K of the grid, ``n_init`` independent fits (spawned generators, each a single start);
every run's final log-likelihood is kept, and only converged runs compete: the best converged
run of each K gives the row of the table. The criteria (lower is better except ``heldout``)::

    BIC = -2 loglik + n_params log n         AIC = -2 loglik + 2 n_params
    ICL = BIC + 2 sum_units w_j sum_k -tau_jk log tau_jk          (Biernacki, Celeux, Govaert 2000)
    heldout = sum over F folds of the held-out log-likelihood of a fit on the other folds

The ``n`` of BIC is the number of observations: N, the total number of draws, for a softmax
mixture (``counts.sum()``; the p cells are not the sample size), and the number of rows of ``X``
for a mixture of experts (``sum(sample_weight)`` with frequency weights). On a panel (``groups``,
a count matrix, ``covariates``) it is still N, the number of *choices*, not the number of groups:
what ``SoftmaxMixture.bic`` uses on panels and what flexmix's ``BIC`` uses with a grouping
(``nobs`` counts the rows of the data). The number of groups would be the more conservative
choice (the groups are the independent units); with a few choices per group both pick the same
K on well-separated data, and the ICL, whose entropy term is over groups, penalises overlap
further. ``n_params`` is what the estimator counts (identified
parameters: the softmax mixture drops unidentified directions of the design). The latent class
logit's BIC uses its own n, the number of groups (persons; situations without ``groups``), or
their total weight, as :meth:`LatentClassLogit.bic` does; its held-out folds are whole groups
with all their rows.

``criterion="heldout"``: F-fold cross-validation on observations (``n_folds``, default 5). For a
softmax mixture on counts, the N draws are split by multinomial thinning, each cell's count
``n_j`` split ``Multinomial(n_j, 1/F, ..., 1/F)`` across the folds (the counts of a uniform random
assignment of the draws to folds), so the split costs O(p F) whatever N is. For a mixture of
experts, rows are assigned to folds by a random permutation. On a panel the folds are whole
groups (rows of the count matrix, with their covariate rows); a mixture of experts with
``X_gate`` splits its rows too, and ``sample_weight`` is refused there (the held-out score is
unweighted). The same folds serve every K, and the chosen K follows the one-standard-error
rule: the smallest K whose held-out log-likelihood is within one standard error (of the paired
fold differences) of the best. The fold fits use the estimator's own ``n_init`` restarts (set
on the estimator passed in).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from softmix._validation import check_choice, check_int, check_random_state
from softmix.core.restarts import spawn
from softmix.exceptions import SoftmixWarning
from softmix.inference._glue import header

__all__ = ["CRITERIA", "SelectionResult", "select_n_components"]

CRITERIA = ("bic", "aic", "icl", "heldout")

_COLUMNS = ("n_components", "log_likelihood", "n_parameters", "bic", "aic", "icl", "heldout",
            "n_converged", "n_init", "stop_reason")


@dataclass
class SelectionResult:
    """Outcome of :func:`select_n_components`.

    Attributes
    ----------
    table : dict of str -> ndarray
        One entry per K (columns ``n_components``, ``log_likelihood``, ``n_parameters``,
        ``bic``, ``aic``, ``icl``, ``heldout`` (NaN unless ``criterion="heldout"``),
        ``n_converged`` (runs out of ``n_init``), ``n_init``, ``stop_reason`` (of the best
        run)). Criteria are NaN for a K with no converged run. :meth:`to_frame` gives a
        DataFrame.
    criterion : str
    best_n_components : int
    best_estimator_ : estimator
        The best converged fit at ``best_n_components``.
    estimators_ : dict of int -> estimator or None
        The best converged fit of every K.
    all_log_likelihoods : dict of int -> ndarray of shape (n_init,)
        Every run's final log-likelihood (NaN for a run that raised).
    all_converged : dict of int -> ndarray of shape (n_init,), bool
    """

    table: dict
    criterion: str
    best_n_components: int
    best_estimator_: Any
    estimators_: dict = field(default_factory=dict)
    all_log_likelihoods: dict = field(default_factory=dict)
    all_converged: dict = field(default_factory=dict)

    def to_frame(self):
        """:attr:`table` as a ``pandas.DataFrame`` (ImportError naming pandas without it)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover
            raise ImportError("SelectionResult.to_frame needs pandas: pip install pandas (or "
                              "read result.table, a dict of arrays).") from exc
        return pd.DataFrame(self.table)

    def __str__(self) -> str:
        head = f"{'K':>4}{'loglik':>14}{'params':>8}{'BIC':>14}{'AIC':>14}{'ICL':>14}"
        head += f"{'heldout':>14}{'conv':>8}  stop"
        rows = [head]
        t = self.table
        for i in range(len(t["n_components"])):
            mark = " *" if t["n_components"][i] == self.best_n_components else ""
            rows.append(
                f"{t['n_components'][i]:>4}{t['log_likelihood'][i]:>14.6g}"
                f"{t['n_parameters'][i]:>8}{t['bic'][i]:>14.6g}{t['aic'][i]:>14.6g}"
                f"{t['icl'][i]:>14.6g}{t['heldout'][i]:>14.6g}"
                f"{str(t['n_converged'][i]) + '/' + str(t['n_init'][i]):>8}  "
                f"{t['stop_reason'][i]}{mark}")
        return "\n".join(rows)

    def plot(self, ax=None):
        """The criterion against K, the best K marked (matplotlib, imported here).

        Returns
        -------
        matplotlib.axes.Axes
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover
            raise ImportError("SelectionResult.plot needs matplotlib: pip install matplotlib "
                              "(or pip install 'softmix[plot]').") from exc
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        ks = self.table["n_components"]
        for name in ("bic", "aic", "icl") if self.criterion != "heldout" else ("heldout",):
            ax.plot(ks, self.table[name], marker="o", label=name.upper()
                    if name != "heldout" else "held-out log-likelihood")
        best = list(ks).index(self.best_n_components)
        ax.plot([self.best_n_components], [self.table[self.criterion][best]], "k*",
                markersize=14, label=f"best K = {self.best_n_components}")
        ax.set_xlabel("number of components K")
        ax.set_xticks(list(ks))
        ax.legend()
        return ax


def _clone(estimator: Any, name: str, k: int, **changes: Any) -> Any:
    params = estimator.get_params()
    params[name] = k
    params.update(changes)
    first = next(iter(params))
    return type(estimator)(params.pop(first), **params)


def _one_standard_error(grid: np.ndarray, totals: np.ndarray, folds: dict[int, np.ndarray],
                        best_k: int) -> int:
    """The one-standard-error rule of cross-validation (Hastie, Tibshirani and Friedman,
    *Elements of Statistical Learning*, 7.10): the smallest K whose held-out log-likelihood
    is within one standard error of the best K's, the standard error that of the paired
    difference of the F fold totals (``sqrt(F) sd(d_f)``; the folds are the same for every K).
    A larger K must beat a smaller one by more than the cross-validation noise."""
    for k, total in zip(grid, totals):
        if k >= best_k:
            break
        if not np.isfinite(total) or k not in folds:
            continue
        d = folds[best_k] - folds[k]
        se = np.sqrt(d.size) * np.std(d, ddof=1) if d.size > 1 else 0.0
        if total >= totals[list(grid).index(best_k)] - se:
            return int(k)
    return best_k


def select_n_components(
    estimator: Any,
    n_components: Iterable[int],
    *data: Any,
    criterion: str = "bic",
    n_init: int = 5,
    random_state: Any = None,
    n_folds: int = 5,
    progress: Callable[[int, int], None] | None = None,
    **data_kwargs: Any,
) -> SelectionResult:
    """Fit ``estimator`` for every K in ``n_components`` and choose K by a criterion.

    Parameters
    ----------
    estimator : SoftmaxMixture, MixtureOfExperts or LatentClassLogit
        A template (unfitted is fine): its hyperparameters are used for every fit, with K,
        ``n_init=1`` and a spawned ``random_state`` per run. Its ``init`` must be a name.
    n_components : iterable of int
        The grid of K (distinct, >= 1).
    *data, **data_kwargs
        The data as :meth:`fit` takes it: ``(features, choices)`` or ``(features,
        counts=c)``, panels ``(features, choices, groups=g)`` or ``(features, counts=C)`` with
        optional ``covariates=Z``; ``(X, y)`` with optional ``X_gate=`` / ``sample_weight=``;
        ``(X, chosen, situations)`` with optional ``groups=`` / ``covariates=`` /
        ``sample_weight=`` (latent class logit).
    criterion : {"bic", "aic", "icl", "heldout"}, default="bic"
        What is minimised (``"heldout"``: the held-out log-likelihood is maximised). See the
        module docstring for the definitions and the ``n`` of BIC.
    n_init : int, default=5
        Independent single-start runs per K; only converged runs compete.
    random_state : None, int or Generator
    n_folds : int, default=5
        Folds of ``criterion="heldout"``.
    progress : callable, optional
        ``progress(done, total)`` called after each K of the grid (``done`` of ``len(grid)``),
        e.g. :meth:`softmix.io.progress.Progress.steps`.

    Returns
    -------
    SelectionResult

    Warns
    -----
    SoftmixWarning
        When the best K is the smallest or largest of the grid (extend the grid), or a K has no
        converged run.

    Examples
    --------
    >>> res = select_n_components(SoftmaxMixture(1), [1, 2, 3], F, counts=c)  # doctest: +SKIP
    >>> res.best_n_components, res.table["bic"]                               # doctest: +SKIP
    """
    criterion = check_choice(criterion, "criterion", CRITERIA)
    n_init = check_int(n_init, "n_init", low=1)
    n_folds = check_int(n_folds, "n_folds", low=2)
    if not hasattr(estimator, "_protocol"):
        raise TypeError(f"estimator must be a softmix estimator (SoftmaxMixture, "
                        f"MixtureOfExperts, LatentClassLogit), got {type(estimator).__name__}.")
    if not isinstance(estimator.get_params().get("init"), str):
        raise TypeError("estimator.init must be a named initialisation (e.g. 'random') for "
                         "select_n_components: a given start fixes K.")
    try:
        grid = [check_int(k, "n_components", low=1) for k in n_components]
    except TypeError:
        raise TypeError(f"n_components must be an iterable of ints (e.g. range(1, 6)), got "
                        f"{n_components!r}.") from None
    if not grid or len(set(grid)) != len(grid):
        raise ValueError(f"n_components must be a non-empty list of distinct ints, got {grid}.")
    grid = sorted(grid)
    proto = estimator._protocol()
    name = proto.N_COMPONENTS
    rng = check_random_state(random_state)
    table: dict[str, list] = {c: [] for c in _COLUMNS}
    fits: dict[int, Any] = {}
    all_ll: dict[int, np.ndarray] = {}
    all_conv: dict[int, np.ndarray] = {}
    heldout_folds: dict[int, np.ndarray] = {}
    k_rngs = spawn(rng, len(grid))
    split_rng = spawn(rng, 1)[0]  # one split for every K: paired fold totals
    for done, (k, k_rng) in enumerate(zip(grid, k_rngs)):
        if progress is not None:
            progress(done, len(grid))
        run_rngs = spawn(k_rng, n_init + 1)
        lls, convs = np.full(n_init, np.nan), np.zeros(n_init, bool)
        models: list[Any] = []
        errors = []
        for r in range(n_init):
            model = _clone(estimator, name, k, n_init=1, random_state=run_rngs[r],
                           callback=None)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model.fit(*data, **data_kwargs)
            except ValueError as exc:
                errors.append(str(exc))
                models.append(None)
                continue
            lls[r], convs[r] = model.log_likelihood_, bool(model.converged_)
            models.append(model)
        all_ll[k], all_conv[k] = lls, convs
        table["n_components"].append(k)
        table["n_converged"].append(int(convs.sum()))
        table["n_init"].append(n_init)
        if not convs.any():
            if errors and len(errors) == n_init:
                raise ValueError(f"every fit with {name}={k} failed: {errors[0]}")
            warnings.warn(f"no converged run out of {n_init} for {name}={k}: it does not "
                          "compete. Raise max_iter or n_init.", SoftmixWarning, stacklevel=2)
            fits[k] = None
            for c in ("log_likelihood", "n_parameters", "bic", "aic", "icl", "heldout"):
                table[c].append(np.nan)
            stops = [m.fit_result_.stop_reason for m in models if m is not None]
            table["stop_reason"].append(stops[0] if stops else "failed")
            continue
        best = int(np.nanargmax(np.where(convs, lls, -np.inf)))
        model = models[best]
        fits[k] = model
        lik, theta = proto.build(model, *data, **data_kwargs)
        head = header(model, lik, theta, "", {}, proto.n_parameters(model))
        table["log_likelihood"].append(head["log-likelihood"])
        table["n_parameters"].append(head["parameters"])
        table["bic"].append(head["BIC"])
        table["aic"].append(head["AIC"])
        table["icl"].append(head["ICL"])
        table["stop_reason"].append(model.fit_result_.stop_reason)
        if criterion == "heldout":
            per_fold = []
            fold_rngs = spawn(run_rngs[-1], n_folds + 1)
            splits = proto.folds(*data, n_folds=n_folds, rng=copy.deepcopy(split_rng),
                                 **data_kwargs)
            for f, (tr, trk, te, tek, n_test) in enumerate(splits):
                fold_model = _clone(estimator, name, k, random_state=fold_rngs[f],
                                    callback=None)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fold_model.fit(*tr, **trk)
                    per_fold.append(fold_model.score(*te, **tek) * n_test)
            heldout_folds[k] = np.asarray(per_fold)
            table["heldout"].append(float(np.sum(per_fold)))
        else:
            table["heldout"].append(np.nan)
    if progress is not None:
        progress(len(grid), len(grid))
    out = {c: np.asarray(v) for c, v in table.items()}
    score = out[criterion] if criterion != "heldout" else -out["heldout"]
    if np.all(np.isnan(score)):
        raise ValueError(f"no K in {grid} had a converged fit; raise max_iter or n_init.")
    best_k = int(out["n_components"][int(np.nanargmin(score))])
    if criterion == "heldout":
        best_k = _one_standard_error(out["n_components"], out["heldout"], heldout_folds, best_k)
    if len(grid) > 1 and best_k in (grid[0], grid[-1]):
        warnings.warn(
            f"the best {name} by {criterion} is {best_k}, at an end of the grid {grid}: the "
            "optimum may lie outside it; extend the grid.", SoftmixWarning, stacklevel=2)
    return SelectionResult(table=out, criterion=criterion, best_n_components=best_k,
                           best_estimator_=fits[best_k], estimators_=fits,
                           all_log_likelihoods=all_ll, all_converged=all_conv)
