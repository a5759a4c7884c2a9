"""The steps behind ``softmix fit``, ``softmix select``, ``softmix summary`` and ``predict``.

Each function reads the user's files (:mod:`softmix.io.readers`), runs the estimator, writes the
outputs (a model file, a predictions table, figures) and returns a *report*: a JSON-ready dict
(paths, sizes, log-likelihood, convergence, timings, warnings) and its ``"text"`` for people.
The command line prints one or the other (``--json``); nothing here prints.

Errors about the input are :class:`~softmix.io.readers.InputError` (a ValueError) with one line
naming the file, the column and the fix; an estimator's own ValueError about the data is
re-raised as an InputError prefixed with the files it came from.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from softmix.core.restarts import SCREEN_KEEP
from softmix.io.persistence import load, read_manifest
from softmix.io.progress import Progress
from softmix.io.readers import InputError, Table, read_matrix, read_table, read_vector
from softmix.io.writers import write_table

__all__ = [
    "MOE_INITS",
    "fit_moe_files",
    "fit_smm_files",
    "parse_grid",
    "predict_files",
    "select_moe_files",
    "select_smm_files",
    "summarize_file",
]

#: Named starts of MixtureOfExperts usable on data (``near_truth`` needs the truth).
MOE_INITS = ("random", "kmeans")


# ------------------------------------------------------------------------------------ helpers
def _check_plot_extra(plot_dir: str | Path | None) -> None:
    if plot_dir is None:
        return
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install 'softmix[plot]' (or drop "
                          "--plot)") from None


def _fit(model: Any, args: tuple, kwargs: dict, where: str, progress: Progress | None,
         label: str) -> tuple[float, list[str]]:
    """Fit with a progress callback and the warnings collected; seconds and warnings."""
    progress = progress or Progress(enabled=False)
    with progress.fit(label, n_init=model.n_init, max_iter=model.max_iter) as callback, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.set_params(callback=callback)
        t0 = time.perf_counter()
        try:
            model.fit(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{where}: {exc}") from None
        finally:
            model.set_params(callback=None)
        seconds = time.perf_counter() - t0
    return seconds, [f"{w.category.__name__}: {w.message}" for w in caught]


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: None instead."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _fit_report(model: Any) -> dict[str, Any]:
    result = model.fit_result_
    return {
        "log_likelihood": _finite(model.log_likelihood_),
        "converged": bool(model.converged_),
        "n_iter": int(model.n_iter_),
        "stop_reason": result.stop_reason,
        "criterion": result.criterion,
        "criterion_value": _finite(result.criterion_value),
        "init_method": result.init_method,
        "n_init": int(model.n_init),
        "screened": result.extra.get("screen", {}).get("n_iter"),
        "all_log_likelihoods": [_finite(v) for v in np.atleast_1d(result.all_objectives)]
        if result.all_objectives is not None else None,
    }


def _fit_text(report: dict[str, Any]) -> str:
    lines = [
        (f"fitted {report['estimator']} ({report['sizes']}) on {report['n_samples']:,} "
        "observations"),
        (f"log-likelihood {report['log_likelihood']:,.4f}   BIC {report['bic']:,.2f}   "
        f"AIC {report['aic']:,.2f}"),
        (f"converged={report['converged']} ({report['stop_reason']}) after {report['n_iter']} "
        f"iterations, best of {report['n_init']} run(s)" + (
            f" (every start screened by {report['screened']} iterations, the best "
            f"{SCREEN_KEEP} continued)" if report.get("screened") else "")),
        f"model written to {report['model']}",
    ]
    lines += [f"figure: {p}" for p in report["plots"]]
    lines.append(f"seconds: read {report['seconds']['read']:.2f}, fit "
                 f"{report['seconds']['fit']:.2f}, total {report['seconds']['total']:.2f}")
    return "\n".join(lines)


def _numeric_vector(path: str | Path, values: np.ndarray, option: str) -> np.ndarray:
    if values.dtype.kind not in "biuf":
        bad = next(v for v in values if _not_number(v))
        raise InputError(f"{path}: {option} must hold numbers, got text such as {bad!r}; fix "
                         "the file or name a numeric --column.")
    return values.astype(float)


def _not_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return True
    return False


def _integral(path: str | Path, values: np.ndarray, option: str, low: float,
              high: float | None, meaning: str) -> np.ndarray:
    bad = ~np.isfinite(values) | (values != np.round(values)) | (values < low)
    if high is not None:
        bad |= values >= high
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        rng = f"[{low:g}, {high:g})" if high is not None else f">= {low:g}"
        raise InputError(f"{path}: {option} entry {values[i]!r} in data row {i + 1} is not an "
                         f"integer {rng}; {meaning}.")
    return values


def _plots(plot_dir: str | Path | None, figures: dict[str, Any]) -> list[str]:
    if plot_dir is None:
        return []
    folder = Path(plot_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in figures.items():
        written.append(str(draw(folder / name)))
    return written


# ------------------------------------------------------------------------------------ smm
def _is_token_dataset(path: str | Path | None) -> bool:
    """A directory or a glob: a (multi-file) Parquet dataset for softmix.count_choices."""
    return path is not None and (Path(path).is_dir() or any(c in str(path) for c in "*?["))


def _read_smm(features: str | Path, counts: str | Path | None, choices: str | Path | None,
              *, features_key: str | None, counts_key: str | None, column: str | None
              ) -> tuple[np.ndarray, dict[str, Any], Table]:
    if (counts is None) == (choices is None):
        raise InputError("give exactly one of --counts FILE (how often each alternative was "
                         "chosen) or --choices FILE (the chosen alternative of each "
                         "observation).")
    table = read_table(features, key=features_key)
    x = table.numeric(None, "--features", what="features")
    if x.shape[0] < 2:
        raise InputError(f"{features}: {x.shape[0]} row(s); --features needs one row per "
                         "alternative (at least 2).")
    p = x.shape[0]
    if counts is not None:
        n = _numeric_vector(counts, read_vector(counts, option="--counts", key=counts_key,
                                                column=column), "--counts")
        if n.shape[0] != p:
            raise InputError(f"{counts}: {n.shape[0]} counts but {features} has {p} rows; give "
                             "one count per alternative (row of --features), in the same order.")
        _integral(counts, n, "--counts", 0, None, "counts are how many times each alternative "
                  "was chosen")
        data = {"counts": n}
    elif _is_token_dataset(choices):  # a Parquet dataset of token ids: a distributed count
        from softmix.counting import count_choices

        if column is None:
            raise InputError(f"{choices}: a Parquet dataset of token ids as --choices needs "
                             "--column NAME, the column of token ids.")
        try:
            data = {"counts": np.asarray(count_choices(choices, p, column=column), dtype=float)}
        except (ValueError, TypeError, ImportError) as exc:
            raise InputError(f"{choices}: {exc}") from exc
        if data["counts"].sum() == 0:
            raise InputError(f"{choices}: the dataset has no token; nothing to fit.")
    else:
        assert choices is not None  # exactly one of counts / choices was checked above
        c = _numeric_vector(choices, read_vector(choices, option="--choices", key=counts_key,
                                                 column=column), "--choices")
        _integral(choices, c, "--choices", 0, p, f"a choice is the 0-based row of --features "
                  f"({features} has {p} rows)")
        data = {"choices": c.astype(np.int64)}
    return x, data, table


def fit_smm_files(features: str | Path, *, n_components: int, out: str | Path,
                  counts: str | Path | None = None, choices: str | Path | None = None,
                  features_key: str | None = None, counts_key: str | None = None,
                  column: str | None = None, init: str = "random", n_init: int = 1,
                  max_iter: int | None = None, tol: float | None = None,
                  dtype: str = "float64", seed: int | None = 0,
                  screen_iter: int | None = None, plot_dir: str | Path | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Fit a :class:`~softmix.SoftmaxMixture` to files and save it to ``out``.

    Parameters
    ----------
    features : path
        The (p, L) design, one row per alternative (every column numeric).
    counts, choices : path
        Exactly one: p counts (one per alternative, same order), or N 0-based chosen rows.
    features_key, counts_key : str, optional
        Array names in ``.npz`` files; ``column`` names the column of the counts/choices file
        (default: its only column).
    n_components, init, n_init, max_iter, tol, dtype, seed, screen_iter
        The estimator's hyperparameters (``seed`` is ``random_state``; None: the defaults for
        ``max_iter`` and ``tol``).
    plot_dir : path, optional
        Folder for ``convergence.png``, ``atoms.png`` and ``membership.png``.
    progress : Progress, optional

    Returns
    -------
    dict
        The report (``"text"`` holds the human-readable version).
    """
    from softmix.softmax_mixture.estimator import SoftmaxMixture

    _check_plot_extra(plot_dir)
    t0 = time.perf_counter()
    x, data, table = _read_smm(features, counts, choices, features_key=features_key,
                               counts_key=counts_key, column=column)
    t_read = time.perf_counter() - t0
    options: dict[str, Any] = {k: v for k, v in (("max_iter", max_iter), ("tol", tol))
                               if v is not None}
    model = SoftmaxMixture(n_components, init=init, n_init=n_init, dtype=dtype,
                           random_state=seed, screen_iter=screen_iter, **options)
    where = ", ".join(str(f) for f in (features, counts, choices) if f is not None)
    t_fit, caught = _fit(model, (x,), dict(data), where, progress, "fit smm")
    n_samples = int(model.n_samples_)
    source = {"features": str(features), "features_columns": table.names}
    source.update({k: str(v) for k, v in (("counts", counts), ("choices", choices))
                   if v is not None})
    t1 = time.perf_counter()
    path = model.save(out, metadata={"command": "fit smm", **source,
                                     "n_samples": n_samples})
    t_save = time.perf_counter() - t1

    def membership(p):
        from softmix.plotting import plot_membership

        post = model.predict_proba(np.arange(x.shape[0]))
        return plot_membership(post, p, row_label="alternative",
                               title="posterior class of each alternative")

    def conv(p):
        from softmix.plotting import plot_convergence

        return plot_convergence(model.history_, p, title="SoftmaxMixture EM convergence")

    def atoms(p):
        from softmix.plotting import plot_parameters

        return plot_parameters(model.atoms_, path=p, title="fitted atoms")

    t2 = time.perf_counter()
    plots = _plots(plot_dir, {"convergence.png": conv, "atoms.png": atoms,
                              "membership.png": membership})
    t_plot = time.perf_counter() - t2
    report = {
        "command": "fit smm",
        "estimator": "SoftmaxMixture",
        "model": str(path),
        "inputs": source,
        "sizes": f"K = {n_components}, p = {x.shape[0]}, L = {x.shape[1]}",
        "n_components": int(n_components),
        "n_alternatives": int(x.shape[0]),
        "n_features": int(x.shape[1]),
        "n_samples": n_samples,
        **_fit_report(model),
        "bic": _finite(model.bic()),
        "aic": _finite(model.aic()),
        "plots": plots,
        "warnings": caught,
        "seconds": {"read": t_read, "fit": t_fit, "save": t_save, "plot": t_plot,
                    "total": time.perf_counter() - t0},
    }
    report["text"] = _fit_text(report)
    return report


# ------------------------------------------------------------------------------------ moe
def _split_columns(text: str | Sequence[str] | None) -> list[str] | None:
    if text is None:
        return None
    names = [c.strip() for c in text.split(",")] if isinstance(text, str) else list(text)
    if not names or any(not n for n in names):
        raise InputError(f"--x {text!r}: give column names separated by commas (e.g. "
                         "--x age,income).")
    return names


def _moe_xy(table: Table, target: str | None, xcols: list[str] | None, expert: str,
            n_features: int | None = None) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    if target is not None:
        table.column(target, "-y")
    if xcols is None:
        xcols = [n for n in table.names if n != target]
        if not xcols:
            raise InputError(f"{table._where()}: no covariate columns besides -y {target!r}; "
                             "add columns or name them with --x.")
    elif target in xcols:
        raise InputError(f"{table._where()}: column {target!r} is both -y (the response) and "
                         "in --x (the covariates); leave it out of --x.")
    X = table.numeric(xcols, "--x", what="covariates")
    if n_features is not None and X.shape[1] != n_features:
        raise InputError(f"{table._where()}: {X.shape[1]} covariate column(s) {xcols} but the "
                         f"model was fitted on {n_features}; name them with --x.")
    if target is None:
        return X, None, xcols
    if expert == "gaussian":
        y = table.numeric([target], "-y", what="responses of gaussian experts")[:, 0]
    else:
        y = table.column(target, "-y")
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)):
                row = int(np.flatnonzero(~np.isfinite(y))[0])
                raise InputError(f"{table._where()}: column {target!r} has a missing value in "
                                 f"data row {row + 1}; fill or drop that row.")
            if np.all(y == np.round(y)):  # integer labels stay integers (predictions too)
                y = y.astype(np.int64)
    return X, y, xcols


def fit_moe_files(data: str | Path, *, target: str, n_experts: int, out: str | Path,
                  x: str | Sequence[str] | None = None, expert: str = "gaussian",
                  key: str | None = None, solver: str = "em", init: str = "random",
                  n_init: int = 1, max_iter: int | None = None, tol: float | None = None,
                  seed: int | None = 0, plot_dir: str | Path | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Fit a :class:`~softmix.MixtureOfExperts` to a table and save it to ``out``.

    Parameters
    ----------
    data : path
        Table with the response column ``target`` and the covariates ``x`` (comma-separated
        names or a list; default every other column). ``key`` selects an ``.npz`` array.
    n_experts, expert, solver, init, n_init, max_iter, tol, seed
        The estimator's hyperparameters (``seed`` is ``random_state``).
    plot_dir : path, optional
        Folder for ``convergence.png``, ``gate.png``, ``coefficients.png``, ``membership.png``.

    Returns
    -------
    dict
        The report (``"text"`` holds the human-readable version).
    """
    from softmix.moe.estimator import MixtureOfExperts

    _check_plot_extra(plot_dir)
    t0 = time.perf_counter()
    table = read_table(data, key=key)
    X, y, xcols = _moe_xy(table, target, _split_columns(x), expert)
    t_read = time.perf_counter() - t0
    options: dict[str, Any] = {k: v for k, v in (("max_iter", max_iter), ("tol", tol))
                               if v is not None}
    model = MixtureOfExperts(n_experts, expert=expert, solver=solver, init=init, n_init=n_init,
                             random_state=seed, **options)
    t_fit, caught = _fit(model, (X, y), {}, str(data), progress, "fit moe")
    t1 = time.perf_counter()
    meta = {"command": "fit moe", "data": str(data), "target": target, "features": xcols,
            "n_samples": int(X.shape[0])}
    path = model.save(out, metadata=meta)
    t_save = time.perf_counter() - t1

    def conv(p):
        from softmix.plotting import plot_convergence

        return plot_convergence(model.history_, p, title="MixtureOfExperts convergence",
                                objective="objective")

    def gate(p):
        from softmix.plotting import plot_gate_probabilities

        grid = np.linspace(X[:, 0].min(), X[:, 0].max(), 200)
        Xg = np.tile(X.mean(axis=0), (grid.size, 1))
        Xg[:, 0] = grid
        others = " (other covariates at their means)" if X.shape[1] > 1 else ""
        return plot_gate_probabilities(grid, model.gate_proba(Xg), p, covariate_name=xcols[0],
                                       title=f"gate probabilities along {xcols[0]}{others}")

    def coef(p):
        from softmix.plotting import plot_parameters

        c = model.expert_coef_.reshape(model.expert_coef_.shape[0], -1)
        return plot_parameters(c, path=p, row_label="expert",
                               title="expert coefficients (intercept first)")

    def membership(p):
        from softmix.plotting import plot_membership

        return plot_membership(model.posterior(X, y), p, class_label="expert",
                               title="posterior expert of each observation")

    t2 = time.perf_counter()
    plots = _plots(plot_dir, {"convergence.png": conv, "gate.png": gate,
                              "coefficients.png": coef, "membership.png": membership})
    t_plot = time.perf_counter() - t2
    report = {
        "command": "fit moe",
        "estimator": "MixtureOfExperts",
        "model": str(path),
        "inputs": {"data": str(data), "target": target, "features": xcols},
        "sizes": f"{n_experts} {expert} experts, d = {X.shape[1]}",
        "n_experts": int(n_experts),
        "expert": expert,
        "n_features": int(X.shape[1]),
        "n_samples": int(X.shape[0]),
        **_fit_report(model),
        "bic": _finite(model.bic(X, y)),
        "aic": _finite(model.aic(X, y)),
        "plots": plots,
        "warnings": caught,
        "seconds": {"read": t_read, "fit": t_fit, "save": t_save, "plot": t_plot,
                    "total": time.perf_counter() - t0},
    }
    report["text"] = _fit_text(report)
    return report


# ------------------------------------------------------------------------------------ select
def parse_grid(text: str, option: str = "-k") -> list[int]:
    """The grid of K of ``softmix select``: ``"1-6"`` (a range, ends included) or ``"2,3,5"``.

    Raises
    ------
    InputError
        Naming ``option`` and the accepted forms, for anything else (``"0-3"``, ``"4-2"``,
        ``"a"``, a repeated K).
    """
    fix = f"give {option} as a range such as 1-6 or a list such as 2,3,5 (integers >= 1)"
    text = str(text).strip()
    try:
        if "-" in text and "," not in text:
            lo, hi = (int(v) for v in text.split("-"))
            grid = list(range(lo, hi + 1))
            if lo > hi:
                raise ValueError
        else:
            grid = [int(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"{option} {text!r}: {fix}.") from None
    if not grid or min(grid) < 1 or len(set(grid)) != len(grid):
        raise InputError(f"{option} {text!r}: {fix}, each K once.")
    return sorted(grid)


def _select(template: Any, grid: list[int], args: tuple, kwargs: dict, where: str, *,
            criterion: str, n_init: int, seed: int | None, n_folds: int,
            progress: Progress | None, label: str) -> tuple[Any, float, list[str]]:
    """Run :func:`softmix.select_n_components` with a per-K progress and the warnings kept."""
    from softmix.selection import select_n_components

    progress = progress or Progress(enabled=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        try:
            result = select_n_components(template, grid, *args, criterion=criterion,
                                         n_init=n_init, random_state=seed, n_folds=n_folds,
                                         progress=progress.steps(label), **kwargs)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{where}: {exc}") from None
        seconds = time.perf_counter() - t0
    return result, seconds, [f"{w.category.__name__}: {w.message}" for w in caught]


def _select_report(result: Any, grid: list[int], *, command: str, estimator: str,
                   inputs: dict[str, Any], out: str | Path | None, metadata: dict[str, Any],
                   plot_dir: str | Path | None, caught: list[str], seed: int | None,
                   seconds: dict[str, float], t0: float) -> dict[str, Any]:
    """Save the best fit, draw the selection curve, and build the report of a sweep."""
    best = result.best_estimator_
    t1 = time.perf_counter()
    if out is not None:  # each run's random_state is a spawned Generator: not storable
        stored = copy.copy(best)
        stored.set_params(random_state=None)
        metadata = {**metadata, "seed": seed}
    path = None if out is None else str(stored.save(out, metadata=metadata))
    seconds["save"] = time.perf_counter() - t1
    crit = result.criterion

    def curve(p):
        from softmix.plotting import plot_selection

        name = "held-out log-likelihood" if crit == "heldout" else crit.upper()
        return plot_selection(result.table["n_components"], result.table[crit], p,
                              criterion=name, chosen=result.best_n_components,
                              lower_is_better=crit != "heldout")

    t2 = time.perf_counter()
    plots = _plots(plot_dir, {"selection.png": curve})
    seconds["plot"] = time.perf_counter() - t2
    seconds["total"] = time.perf_counter() - t0
    table = {c: [_finite(v.item()) if isinstance(v, np.generic) else _finite(v) for v in col]
             for c, col in result.table.items()}
    report = {
        "command": command,
        "estimator": estimator,
        "inputs": inputs,
        "grid": grid,
        "criterion": crit,
        "n_init": int(result.table["n_init"][0]),
        "table": table,
        "best_n_components": int(result.best_n_components),
        "log_likelihood": _finite(best.log_likelihood_),
        "model": path,
        "plots": plots,
        "warnings": caught,
        "seconds": seconds,
    }
    lines = [str(result), f"chosen K = {result.best_n_components} by {crit} over {grid}"]
    if path is not None:
        lines.append(f"best model written to {path}")
    lines += [f"figure: {p}" for p in plots]
    lines.append(f"seconds: read {seconds['read']:.2f}, select {seconds['select']:.2f}, total "
                 f"{seconds['total']:.2f}")
    report["text"] = "\n".join(lines)
    return report


def select_smm_files(features: str | Path, *, grid: Sequence[int],
                     counts: str | Path | None = None, choices: str | Path | None = None,
                     features_key: str | None = None, counts_key: str | None = None,
                     column: str | None = None, criterion: str = "bic", n_init: int = 1,
                     n_folds: int = 5, init: str = "random", max_iter: int | None = None,
                     tol: float | None = None, dtype: str = "float64", seed: int | None = 0,
                     out: str | Path | None = None, plot_dir: str | Path | None = None,
                     progress: Progress | None = None) -> dict[str, Any]:
    """Choose K of a :class:`~softmix.SoftmaxMixture` on files (``softmix select smm``).

    Reads the files as :func:`fit_smm_files` does, runs :func:`softmix.select_n_components`
    over ``grid`` (``n_init`` single-start runs per K; ``criterion`` one of bic, aic, icl,
    heldout with ``n_folds`` folds), saves the best estimator to ``out`` (optional) and writes
    ``selection.png`` to ``plot_dir`` (optional).

    Returns
    -------
    dict
        The report: ``grid``, ``criterion``, ``table`` (columns as lists; None for NaN),
        ``best_n_components``, ``model``, ``plots``, ``warnings``, ``seconds``, ``"text"``.
    """
    from softmix.softmax_mixture.estimator import SoftmaxMixture

    _check_plot_extra(plot_dir)
    grid = sorted(int(k) for k in grid)
    t0 = time.perf_counter()
    x, data, table = _read_smm(features, counts, choices, features_key=features_key,
                               counts_key=counts_key, column=column)
    t_read = time.perf_counter() - t0
    options: dict[str, Any] = {k: v for k, v in (("max_iter", max_iter), ("tol", tol))
                               if v is not None}
    template = SoftmaxMixture(grid[0], init=init, n_init=n_init, dtype=dtype, **options)
    where = ", ".join(str(f) for f in (features, counts, choices) if f is not None)
    result, t_sel, caught = _select(template, grid, (x,), dict(data), where,
                                    criterion=criterion, n_init=n_init, seed=seed,
                                    n_folds=n_folds, progress=progress, label="select smm")
    source = {"features": str(features), "features_columns": table.names}
    source.update({k: str(v) for k, v in (("counts", counts), ("choices", choices))
                   if v is not None})
    meta = {"command": "select smm", **source,
            "n_samples": int(result.best_estimator_.n_samples_)}
    return _select_report(result, grid, command="select smm", estimator="SoftmaxMixture",
                          inputs=source, out=out, metadata=meta, plot_dir=plot_dir,
                          caught=caught, seed=seed, seconds={"read": t_read, "select": t_sel}, t0=t0)


def select_moe_files(data: str | Path, *, target: str, grid: Sequence[int],
                     x: str | Sequence[str] | None = None, expert: str = "gaussian",
                     key: str | None = None, solver: str = "em", criterion: str = "bic",
                     n_init: int = 1, n_folds: int = 5, init: str = "random",
                     max_iter: int | None = None, tol: float | None = None,
                     seed: int | None = 0, out: str | Path | None = None,
                     plot_dir: str | Path | None = None,
                     progress: Progress | None = None) -> dict[str, Any]:
    """Choose the number of experts of a :class:`~softmix.MixtureOfExperts` on a table
    (``softmix select moe``).

    Reads the table as :func:`fit_moe_files` does; otherwise as :func:`select_smm_files`.

    Returns
    -------
    dict
        The report, as :func:`select_smm_files`.
    """
    from softmix.moe.estimator import MixtureOfExperts

    _check_plot_extra(plot_dir)
    grid = sorted(int(k) for k in grid)
    t0 = time.perf_counter()
    table = read_table(data, key=key)
    X, y, xcols = _moe_xy(table, target, _split_columns(x), expert)
    t_read = time.perf_counter() - t0
    options: dict[str, Any] = {k: v for k, v in (("max_iter", max_iter), ("tol", tol))
                               if v is not None}
    template = MixtureOfExperts(grid[0], expert=expert, solver=solver, init=init,
                                n_init=n_init, **options)
    result, t_sel, caught = _select(template, grid, (X, y), {}, str(data),
                                    criterion=criterion, n_init=n_init, seed=seed,
                                    n_folds=n_folds, progress=progress, label="select moe")
    inputs = {"data": str(data), "target": target, "features": xcols}
    meta = {"command": "select moe", **inputs, "n_samples": int(X.shape[0])}
    return _select_report(result, grid, command="select moe", estimator="MixtureOfExperts",
                          inputs=inputs, out=out, metadata=meta, plot_dir=plot_dir,
                          caught=caught, seed=seed, seconds={"read": t_read, "select": t_sel}, t0=t0)


# ------------------------------------------------------------------------------------ summary
def _load(model_path: str | Path) -> tuple[Any, dict[str, Any]]:
    model = load(model_path)
    meta = read_manifest(model_path).get("metadata") or {}
    if not hasattr(model, "params_"):
        raise InputError(f"{model_path}: the saved model was never fitted; fit it first "
                         "(softmix fit ...).")
    return model, meta


def _array_text(name: str, arr: np.ndarray) -> list[str]:
    arr = np.atleast_2d(np.asarray(arr, dtype=float))
    lines = [f"{name}:"]
    for k, row in enumerate(arr.reshape(arr.shape[0], -1)):
        lines.append(f"  {k:>2} " + " ".join(f"{v:9.4f}" for v in row[:12])
                     + (" ..." if row.size > 12 else ""))
    return lines


def summarize_file(model_path: str | Path, *, features: str | Path | None = None,
                   counts: str | Path | None = None, choices: str | Path | None = None,
                   features_key: str | None = None, counts_key: str | None = None,
                   column: str | None = None, data: str | Path | None = None,
                   target: str | None = None, x: str | Sequence[str] | None = None,
                   key: str | None = None) -> dict[str, Any]:
    """Describe a saved model: class, sizes, log-likelihood, BIC/AIC, convergence, parameters.

    With data options the log-likelihood and criteria are those of that data (a softmax
    mixture: ``features`` with ``counts`` or ``choices``; a mixture of experts: ``data`` with
    the response ``target`` and covariates ``x``, by default the columns used in the fit).
    With data, the estimator's ``summary`` method (standard errors, z, p-values) supplies the
    text; without data, the stored fit is described (no standard errors: they need the data).
    """
    from softmix.moe.estimator import MixtureOfExperts
    from softmix.softmax_mixture.estimator import SoftmaxMixture

    model, meta = _load(model_path)
    result = model.fit_result_
    report: dict[str, Any] = {"command": "summary", "model": str(model_path),
                              "estimator": type(model).__name__, **_fit_report(model)}
    lines = [f"{model!r}", f"model file: {model_path}"]
    on = "training data"
    data_args: tuple = ()
    data_kw: dict[str, Any] = {}
    if isinstance(model, SoftmaxMixture):
        k, length = model.atoms_.shape
        report.update(n_components=int(k), n_features=int(length),
                      n_alternatives=int(model.features_.shape[0]),
                      n_samples=int(model.n_samples_))
        lines.append(f"sizes: K = {k} components, p = {model.features_.shape[0]} alternatives,"
                     f" L = {length} features, N = {model.n_samples_:,} observations")
        if features is not None:
            xd, dat, _ = _read_smm(features, counts, choices, features_key=features_key,
                                   counts_key=counts_key, column=column)
            data_args = (xd, dat.get("choices"))
            kw = data_kw = {"counts": dat.get("counts")}
            try:
                loglik, n_obs = model._total_loglik(*data_args, kw["counts"])
                bic, aic = model.bic(*data_args, **kw), model.aic(*data_args, **kw)
            except ValueError as exc:
                raise InputError(f"{features}: {exc}") from None
            on = ", ".join(str(f) for f in (features, counts, choices) if f is not None)
            report.update(log_likelihood=_finite(loglik), n_samples=int(n_obs))
        elif counts is not None or choices is not None:
            raise InputError("--counts/--choices need --features (the design they refer to).")
        else:
            bic, aic = model.bic(), model.aic()
        n_params = model._n_parameters()
        params_text = (_array_text("weights", model.weights_[None, :])
                       + _array_text("atoms (one row per component)", model.atoms_))
    elif isinstance(model, MixtureOfExperts):
        n_params = model.n_parameters()
        report.update(n_experts=int(model.n_experts), expert=model.expert,
                      n_features=int(model.n_features_in_))
        sizes = (f"sizes: {model.n_experts} {model.expert} experts, d = "
                 f"{model.n_features_in_} covariates {meta.get('features', '')}")
        if getattr(model, "classes_", None) is not None:
            sizes += f", classes {model.classes_.tolist()[:10]}"
        lines.append(sizes)
        if data is not None:
            table = read_table(data, key=key)
            target = target or meta.get("target")
            if target is None:
                raise InputError(f"{data}: name the response column with -y.")
            X, y, _ = _moe_xy(table, target, _split_columns(x) or meta.get("features"),
                              model.expert, model.n_features_in_)
            data_args = (X, y)
            try:
                loglik = float(model.score_samples(X, y).sum())
            except ValueError as exc:
                raise InputError(f"{data}: {exc}") from None
            bic, aic, n = model.bic(X, y), model.aic(X, y), X.shape[0]
            on = str(data)
            report["log_likelihood"] = _finite(loglik)
        else:
            n = meta.get("n_samples")
            loglik = model.log_likelihood_
            bic = (-2 * loglik + n_params * math.log(n)) if n else float("nan")
            aic = -2 * loglik + 2 * n_params
        report["n_samples"] = n
        if n:
            lines.append(f"observations: {n:,}")
        params_text = _array_text("gating (one row per expert, intercept first)",
                                  model.gating_coef_)
        params_text += _array_text("expert coefficients (intercept first)", model.expert_coef_)
        if model.expert_variance_ is not None:
            params_text += _array_text("expert variances", model.expert_variance_[None, :])
    else:  # another estimator: the generic part only
        bic = aic = float("nan")
        n_params = None
        params_text = []
    report.update(bic=_finite(bic), aic=_finite(aic), n_parameters=n_params, data=on)
    summary = getattr(model, "summary", None)
    if callable(summary) and data_args:  # the estimator's full report (inference) needs data
        try:
            report["text"] = str(summary(*data_args, **data_kw))
        except ValueError as exc:
            raise InputError(f"{model_path}: {exc}") from None
        return report
    lines += [
        f"log-likelihood on the {on}: {report['log_likelihood']:,.4f}" if on == "training data"
        else f"log-likelihood on {on}: {report['log_likelihood']:,.4f}",
        f"free parameters {n_params}   BIC {bic:,.2f}   AIC {aic:,.2f}"
        if math.isfinite(bic) else
        f"free parameters {n_params}   BIC n/a (pass the data)   AIC {aic:,.2f}",
        (f"convergence: converged={model.converged_} ({result.stop_reason}, criterion "
        f"{result.criterion}) after {model.n_iter_} iterations; init {result.init_method!r}, "
        f"best of {model.n_init} run(s)"),
    ]
    report["text"] = "\n".join(lines + params_text)
    return report


# ------------------------------------------------------------------------------------ predict
def predict_files(model_path: str | Path, *, out: str | Path, data: str | Path | None = None,
                  key: str | None = None, x: str | Sequence[str] | None = None
                  ) -> dict[str, Any]:
    """Predictions of a saved model, written as a table to ``out`` (by its extension).

    Softmax mixture: one row per alternative of ``data`` (a features file; default the training
    design) with ``P(Y = j)`` (``choice_probability``), the class posteriors ``P(Z = k | Y = j)``
    (``class_k``) and the most probable class. Mixture of experts: one row per row of ``data``
    (covariates ``x``, default the fit's columns) with ``prediction`` (mean or most probable
    class), class probabilities ``proba_<label>`` (classification experts) and the gate
    probabilities ``gate_i``.
    """
    from softmix.moe.estimator import MixtureOfExperts
    from softmix.softmax_mixture.estimator import SoftmaxMixture

    t0 = time.perf_counter()
    model, meta = _load(model_path)
    if isinstance(model, SoftmaxMixture):
        if data is not None:
            feats = read_matrix(data, option="--data", key=key, what="features")
            if feats.shape[1] != model.atoms_.shape[1]:
                raise InputError(f"{data}: {feats.shape[1]} feature column(s) but the model "
                                 f"was fitted on {model.atoms_.shape[1]}; give the same "
                                 "features.")
        else:
            feats = model.features_
        p = feats.shape[0]
        post = model.predict_proba(np.arange(p), features=feats)
        cols: dict[str, np.ndarray] = {
            "alternative": np.arange(p),
            "choice_probability": model.choice_probabilities(features=feats),
        }
        cols.update({f"class_{k}": post[:, k] for k in range(post.shape[1])})
        cols["predicted_class"] = post.argmax(axis=1)
    elif isinstance(model, MixtureOfExperts):
        if data is None:
            raise InputError("predict for a mixture of experts needs --data FILE (the "
                             "covariates).")
        table = read_table(data, key=key)
        X, _, _ = _moe_xy(table, None, _split_columns(x) or meta.get("features"),
                          model.expert, model.n_features_in_)
        cols = {"prediction": model.predict(X)}
        if model.expert != "gaussian":
            proba = model.predict_proba(X)
            cols.update({f"proba_{c}": proba[:, i] for i, c in enumerate(model.classes_)})
        gate = model.gate_proba(X)
        cols.update({f"gate_{i}": gate[:, i] for i in range(gate.shape[1])})
    else:
        raise InputError(f"{model_path}: predict does not know {type(model).__name__}.")
    path = write_table(out, cols)
    n_rows = len(next(iter(cols.values())))
    report = {"command": "predict", "model": str(model_path), "estimator": type(model).__name__,
              "data": None if data is None else str(data), "out": str(path), "n_rows": n_rows,
              "columns": list(cols), "seconds": {"total": time.perf_counter() - t0}}
    report["text"] = f"wrote {n_rows:,} rows ({', '.join(list(cols)[:8])}) to {path}"
    return report
