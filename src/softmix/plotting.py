"""matplotlib figures for fitted models (the ``softmix[plot]`` extra). Never imported by ``softmix``.

Each ``plot_*`` function takes plain arrays, draws one figure and either writes it to ``path``
(PNG, or any format matplotlib knows from the extension; the figure is then closed and the path
returned) or, with ``path=None``, returns the open :class:`matplotlib.figure.Figure`.

- :func:`plot_convergence`: gap to the final (best) objective per iteration, on a log axis.
- :func:`plot_selection`: an information criterion against the number of components, the
  chosen one marked.
- :func:`plot_parameters`: fitted atoms / coefficients, against the truth when known, with
  intervals when given.
- :func:`plot_gate_probabilities`: gate probabilities of a mixture of experts along a covariate.
- :func:`plot_membership`: posterior class (expert) membership of observations or alternatives.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "loglog_slope",
    "plot_convergence",
    "plot_gate_probabilities",
    "plot_history",
    "plot_membership",
    "plot_parameters",
    "plot_selection",
]


def _plt():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "plotting needs matplotlib: pip install 'softmix[plot]'"
        ) from exc
    return plt


def _title(ax, title: str | None, width: int = 60) -> None:
    if title:
        ax.set_title("\n".join(textwrap.wrap(title, width)), fontsize=10)


def _finish(fig, path: str | Path | None):
    fig.tight_layout()
    if path is None:
        return fig
    fig.savefig(path, dpi=120)
    _plt().close(fig)
    return path


def _vector(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}.")
    return arr


def loglog_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log(y) on log(x) over all points (no points dropped)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def plot_history(history: np.ndarray, path, *, title: str = "EM log-likelihood",
                 ylabel: str = "log-likelihood"):
    """Objective per iteration on its own scale -> ``path``. Prefer :func:`plot_convergence`,
    whose log-scale gap shows the approach to the optimum that this absolute scale hides."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(np.arange(len(history)), history, marker=".")
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    _title(ax, title)
    return _finish(fig, path)


def plot_convergence(history: Any, path: str | Path | None = None, *,
                     title: str | None = "Convergence", objective: str = "log-likelihood",
                     labels: Sequence[str] | None = None):
    """Gap ``best - objective`` per iteration on a log axis (maximisation).

    Parameters
    ----------
    history : array-like of shape (n_iter + 1,), or a sequence of them
        Objective at the start and after every iteration (``model.history_``); several runs
        (e.g. restarts) share the reference value, the best final objective of all.
    path : str or Path, optional
        Where to write the figure; None returns it.
    title : str, optional
        Wrapped to the figure's width.
    objective : str
        Name of the objective, for the axis label.
    labels : sequence of str, optional
        One legend label per run.

    Notes
    -----
    The last iterate's gap is 0 and cannot be drawn on a log axis; points with gap <= 0 are
    left out and the best value is written in the legend. Linear convergence shows as a straight
    line; the slope is the rate.
    """
    if isinstance(history, (list, tuple)) and history and np.ndim(history[0]) >= 1:
        runs = [_vector(h, "history") for h in history]
    else:
        runs = [_vector(history, "history")]
    best = max(float(np.nanmax(r)) for r in runs)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    drawn = False
    for i, run in enumerate(runs):
        gap = best - run
        it = np.arange(run.size)
        ok = np.isfinite(gap) & (gap > 0)
        if ok.any():
            label = labels[i] if labels is not None else (None if len(runs) == 1 else f"run {i}")
            ax.semilogy(it[ok], gap[ok], marker=".", markersize=3, label=label)
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no gap to show (the start is the optimum,\nor no iteration ran)",
                ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"best {objective} - {objective}")
    ax.plot([], [], " ", label=f"best {objective}: {best:,.6g}")
    ax.legend(fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    _title(ax, title)
    return _finish(fig, path)


def plot_selection(n_components: Any, values: Any = None, path: str | Path | None = None, *,
                   criterion: str = "BIC", chosen: int | None = None,
                   lower_is_better: bool = True, title: str | None = None):
    """A criterion (BIC, AIC, held-out log-likelihood...) against the number of components.

    Parameters
    ----------
    n_components : array-like of int, or a table
        The candidate K. A table (a mapping of columns, or a sequence of row mappings) with an
        ``"n_components"`` column and a column named ``criterion`` is read instead, with
        ``values=None``.
    values : array-like of float, optional
        The criterion at each K (NaN for a K that failed: not drawn).
    criterion : str
        Its name (axis label; the table column).
    chosen : int, optional
        The selected K, marked; default the best value (smallest when ``lower_is_better``).
    """
    if values is None:
        table = n_components
        if isinstance(table, Mapping):
            cols = table
        elif isinstance(table, Sequence) and table and isinstance(table[0], Mapping):
            cols = {key: [row[key] for row in table] for key in table[0]}
        else:
            raise TypeError("plot_selection takes (n_components, values) or a table with "
                            f"'n_components' and {criterion!r} columns, got {type(table)}.")
        if "n_components" not in cols or criterion not in cols:
            raise ValueError(f"the table needs 'n_components' and {criterion!r} columns, got "
                             f"{sorted(cols)}.")
        n_components, values = cols["n_components"], cols[criterion]
    ks, vals = _vector(n_components, "n_components"), _vector(values, "values")
    if ks.shape != vals.shape:
        raise ValueError(f"n_components and values must have one entry each, got {ks.size} "
                         f"and {vals.size}.")
    ok = np.isfinite(vals)
    if chosen is None and ok.any():
        pick = np.nanargmin(vals) if lower_is_better else np.nanargmax(vals)
        chosen = int(ks[pick])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ks[ok], vals[ok], marker="o")
    if chosen is not None and np.any(ks == chosen):
        j = int(np.flatnonzero(ks == chosen)[0])
        ax.plot([ks[j]], [vals[j]], marker="*", markersize=16, color="C3", linestyle="none",
                label=f"chosen K = {chosen}")
        ax.legend(fontsize=8)
    ax.set_xticks(ks)
    ax.set_xlabel("number of components K")
    ax.set_ylabel(criterion + (" (lower is better)" if lower_is_better else
                               " (higher is better)"))
    _title(ax, title or f"{criterion} by number of components")
    return _finish(fig, path)


def plot_parameters(fitted: Any, true: Any = None, path: str | Path | None = None, *,
                    lower: Any = None, upper: Any = None, row_label: str = "component",
                    title: str | None = None):
    """Fitted parameters (atoms or coefficients), against the truth when given.

    Parameters
    ----------
    fitted : array-like of shape (K, L) or (P,)
        One row per component / expert (e.g. ``model.atoms_``, ``model.expert_coef_``).
    true : array-like of the same shape, optional
        Known parameters (simulations), already matched to the fitted order (e.g. by
        :func:`softmix.metrics.match_components`). Drawn as fitted against true, with the
        diagonal.
    lower, upper : array-like of the same shape, optional
        Interval ends (e.g. 95% confidence intervals), drawn as error bars.
    row_label : str
        What a row is ("component", "expert").
    """
    est = np.asarray(fitted, dtype=float)
    est2 = est.reshape(est.shape[0], -1) if est.ndim >= 2 else est.reshape(1, -1)
    shape = est.shape

    def same(arr, name):
        if arr is None:
            return None
        arr = np.asarray(arr, dtype=float)
        if arr.shape != shape:
            raise ValueError(f"{name} must have the shape of fitted {shape}, got {arr.shape}.")
        return arr.reshape(est2.shape)

    tru, lo, hi = same(true, "true"), same(lower, "lower"), same(upper, "upper")
    if (lo is None) != (hi is None):
        raise ValueError("give both lower and upper (interval ends), or neither.")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for k in range(est2.shape[0]):
        y = est2[k]
        yerr = None if lo is None else np.vstack([y - lo[k], hi[k] - y])
        x = tru[k] if tru is not None else np.arange(y.size) + 0.08 * (k - est2.shape[0] / 2)
        ax.errorbar(x, y, yerr=yerr, fmt="o", markersize=4, capsize=2,
                    label=f"{row_label} {k}" if est2.shape[0] > 1 else None)
    if tru is not None:
        lim = np.array([min(tru.min(), est2.min()), max(tru.max(), est2.max())])
        ax.plot(lim, lim, color="0.5", linewidth=1, linestyle="--", label="fitted = true")
        ax.set_xlabel("true value")
        ax.set_ylabel("fitted value")
    else:
        ax.axhline(0.0, color="0.7", linewidth=0.8)
        ax.set_xlabel("coordinate")
        ax.set_ylabel("fitted value")
    if est2.shape[0] > 1 or tru is not None:
        ax.legend(fontsize=8)
    _title(ax, title or ("fitted vs true parameters" if tru is not None else
                         "fitted parameters"))
    return _finish(fig, path)


def plot_gate_probabilities(covariate: Any, proba: Any, path: str | Path | None = None, *,
                            covariate_name: str = "x", title: str | None = None):
    """Gate probabilities ``P(z = i | x)`` of each expert along one covariate.

    Parameters
    ----------
    covariate : array-like of shape (n,)
        Values of the covariate (e.g. a grid, or a column of the data).
    proba : array-like of shape (n, n_experts)
        ``model.gate_proba(X)`` at those points.
    """
    x = _vector(covariate, "covariate")
    p = np.asarray(proba, dtype=float)
    if p.ndim != 2 or p.shape[0] != x.size:
        raise ValueError(f"proba must have shape ({x.size}, n_experts), got {p.shape}.")
    order = np.argsort(x, kind="stable")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i in range(p.shape[1]):
        ax.plot(x[order], p[order, i], label=f"expert {i}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(covariate_name)
    ax.set_ylabel("gate probability")
    ax.legend(fontsize=8)
    _title(ax, title or f"gate probabilities along {covariate_name}")
    return _finish(fig, path)


def plot_membership(proba: Any, path: str | Path | None = None, *, row_label: str = "observation",
                    class_label: str = "class", title: str | None = None):
    """Posterior membership ``P(class | data)``: rows sorted by class and certainty, and the
    distribution of the largest posterior (how clear-cut the assignment is).

    Parameters
    ----------
    proba : array-like of shape (n, K)
        Posterior probabilities (rows sum to 1), e.g. ``SoftmaxMixture.predict_proba`` of the
        alternatives or ``MixtureOfExperts.posterior(X, y)``.
    """
    p = np.asarray(proba, dtype=float)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"proba must have shape (n, K) with n, K >= 1, got {p.shape}.")
    top = p.argmax(axis=1)
    certainty = p.max(axis=1)
    order = np.lexsort((-certainty, top))
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.8),
                                      gridspec_kw={"width_ratios": [2, 1]})
    image = left.imshow(p[order].T, aspect="auto", interpolation="nearest", vmin=0, vmax=1,
                        cmap="viridis")
    left.set_yticks(range(p.shape[1]))
    left.set_ylabel(class_label)
    left.set_xlabel(f"{row_label} (sorted by most probable {class_label})")
    fig.colorbar(image, ax=left, label="posterior probability")
    right.hist(certainty, bins=min(30, max(5, p.shape[0] // 5)), range=(1 / p.shape[1] if p.shape[1] > 1 else 0.0, 1.0),
               color="C0")
    right.set_xlabel(f"largest posterior per {row_label}")
    right.set_ylabel("count")
    if title:
        fig.suptitle("\n".join(textwrap.wrap(title, 90)), fontsize=10)
    else:
        fig.suptitle(f"posterior {class_label} membership", fontsize=10)
    return _finish(fig, path)
