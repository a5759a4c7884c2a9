"""Mixtures of experts on Dask arrays: the same EM, with every sum over rows a chunked reduction.

:meth:`softmix.MixtureOfExperts.fit` sends ``dask.array`` inputs (chunked by rows) here. Every
quantity the in-memory fit needs from the data is a sum over rows of per-row terms, so each is
computed block by block (:class:`RowBlocks`, one ``dask.delayed`` task per row chunk and a tree
sum with fan-in 8) on whatever scheduler is active: the threaded default, processes, or a
``dask.distributed`` client (``Client("tcp://scheduler:8786")`` on a cluster; nothing here
changes). The parameters stay on the driver (NumPy); the data stay in the workers' chunks and
are re-read every pass (nothing is persisted, so memory is bounded by a few chunks per worker).

What is a reduction (each call of :meth:`RowBlocks.sum` is one pass over the data):

- scan (1 pass): row count, column sums, largest ``|x|``, non-finite counts per chunk, labels;
- standardiser (1 pass): the tall-skinny QR ``R`` factor of the centred columns (block QRs
  stacked and re-factorised), which gives the column spreads and the same pivoted-QR rank
  decision as in memory (:func:`softmix.moe.standardize.standardizer_from_moments`);
- E-step + first M-step statistics (1 pass per EM iteration): log-likelihood, ``sum tau``,
  ``sum tau^2``, the gating's soft-label multinomial log-likelihood with gradient and Hessian at
  the current gating (the first Newton iteration of the gating M-step), and per expert either
  the weighted cross products of the Gaussian least squares (in closed form, centred at the
  current fit's residuals: one pass gives the new coefficients *and* variance) or the
  classification expert's Newton statistics at its current coefficients;
- every further evaluation of an inner Newton solver (a step-halving trial or the next Newton
  iteration) is one pass computing value, gradient and Hessian at the trial point (the
  posteriors ``tau`` at the current parameters are recomputed in the block, not stored), so an
  accepted step's next Newton iteration costs nothing; the gate's and the classification
  experts' solvers run side by side (:class:`_Lockstep`), so a pass serves all of them and an
  EM iteration costs ``1 +`` the largest number of evaluations of one solver (about 3 passes
  in all, for every expert type);
- the stop criterion (:func:`softmix.moe.em.score_gain`: ``S'S`` and ``S'1`` summed), the
  canonical expert order (mean gate probabilities), ``min_weight`` pruning and the diagnostics
  (separation counts, effective points): one pass each, once per fit.

The numerics are the in-memory ones: the same solver (:func:`softmix.core.solvers.newton_maximize`
through ``_maximize``, same tolerances, same warm starts, same step-halving), the same
per-block formulas (:func:`softmix.core.solvers._mlogit`, :func:`softmix.moe.model.log_joint_design`,
:func:`softmix.moe.experts.solve_gram`), the same driver (:func:`softmix.core.em.run_em`),
restarts (:func:`softmix.core.restarts.fit_with_restarts`) and warnings. Only the order of the
floating-point sums differs, so a Dask fit equals the in-memory fit from the same start to
round-off (tested to 1e-8 relative, ``tests/test_moe_dask.py``).

Supported: ``solver="em"``, ``init`` in ``{"random", "near_truth", "near_truth_authors"}`` or a
:class:`~softmix.moe.model.MoEParams`, every expert type, ``n_init``, ``ridge``, ``min_weight``,
the solver options. ``init="random"`` draws its centres with the same generator calls as in
memory (so the same rows) and computes its soft weights blockwise. Not (a ValueError says so):
``init="kmeans"`` (Lloyd iterations over all rows are not implemented blockwise), the gradient
solvers, ``X_gate``, ``sample_weight`` and the flexmix-style options of
:mod:`softmix.moe.options`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from softmix.core.em import run_em
from softmix.core.restarts import fit_with_restarts
from softmix.core.result import FitResult
from softmix.core.solvers import _maximize, _mlogit, _two_class, _two_class_coef
from softmix.core.special import logsumexp
from softmix.moe.diagnostics import effective_points_from_sums, separation, thin_experts
from softmix.moe.em import CRITERION, SCORE_GAIN_MAX_PARAMS, check_em_options, score_gain_from_sums
from softmix.moe.experts import (
    EMPTY_WEIGHT,
    EXPERTS,
    VARIANCE_FLOOR_RATIO,
    _onehot,
    empty_reason,
    floor_reason,
    solve_gram,
    warn_degenerate,
)
from softmix.moe.gating import add_intercept, gate_log_proba_design
from softmix.moe.init import _INIT_MAX_ITER, _INIT_RIDGE, pairs, soft_weights
from softmix.moe.model import (
    MoEParams,
    check_params,
    log_joint_design,
    params_to_vector,
    penalty,
    score_samples_design,
)
from softmix.moe.standardize import Standardizer, standardizer_from_moments

__all__ = ["INSTALL_HINT", "RowBlocks", "fit_em_blocks", "fit_estimator", "is_dask_collection",
           "map_rows"]

#: How to get the optional dependency (named by every ImportError of this module).
INSTALL_HINT = 'pip install "softmix[dask]"'

#: Children of one node of the tree sum.
FAN_IN = 8

#: Rows per slice inside a block for the (rows, P) score matrix of the stop criterion.
_SCORE_SLICE = 65536


def is_dask_collection(value: Any) -> bool:
    """True for a Dask collection (array, dataframe...); never imports dask."""
    return hasattr(value, "__dask_graph__") and hasattr(value, "__dask_keys__")


def _import_dask():
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - dask is a test dependency
        raise ImportError(f"Dask arrays need the optional dependency dask: {INSTALL_HINT}") \
            from exc
    return dask, da


# --------------------------------------------------------------------------------- blocks
def _check_rows(X: Any, y: Any, *, y_name: str = "y"):
    """``(X, y)`` as Dask arrays with the same row chunks, X chunked by rows only."""
    _, da = _import_dask()
    if not is_dask_collection(X):
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got an array of shape {X.shape}.")
    if is_dask_collection(X) and not isinstance(X, da.Array):
        raise TypeError(f"X must be a dask.array.Array (or a NumPy array), got "
                        f"{type(X).__name__}; a Dask DataFrame converts with "
                        "df.to_dask_array(lengths=True).")
    if y is not None and is_dask_collection(y) and not isinstance(y, da.Array):
        raise TypeError(f"{y_name} must be a dask.array.Array (or a NumPy array), got "
                        f"{type(y).__name__}; a Dask Series converts with "
                        "s.to_dask_array(lengths=True).")
    if not isinstance(X, da.Array):  # y is the Dask one: X follows its chunks
        ylen = y.chunks[0]
        if len(X) != sum(ylen):
            raise ValueError(f"{y_name} must have one entry per row of X ({len(X)}), got "
                             f"{sum(ylen)}.")
        X = da.from_array(X, chunks=(ylen, X.shape[1]))
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got a Dask array of shape {X.shape}.")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError("X has unknown chunk sizes (NaN in X.chunks); call "
                         "X.compute_chunk_sizes() first (or build it with known lengths).")
    if X.numblocks[1] != 1:
        raise ValueError(
            f"X must be chunked by rows only, got {X.numblocks[1]} chunks along the columns "
            f"(X.chunks[1] = {X.chunks[1]}); use X.rechunk({{1: -1}}) (a row chunk holds "
            "whole rows).")
    if y is None:
        return X, None
    if not isinstance(y, da.Array):
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"{y_name} must be 1-D, got an array of shape {y.shape}.")
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"{y_name} must have one entry per row of X ({X.shape[0]}), got "
                             f"{y.shape[0]}. Pass X and {y_name} with the same number of "
                             "samples.")
        y = da.from_array(y, chunks=(X.chunks[0],))
    if y.ndim != 1:
        raise ValueError(f"{y_name} must be 1-D, got a Dask array of shape {y.shape}.")
    if any(np.isnan(c) for c in y.chunks[0]):
        raise ValueError(f"{y_name} has unknown chunk sizes (NaN in {y_name}.chunks); call "
                         f"{y_name}.compute_chunk_sizes() first.")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"{y_name} must have one entry per row of X ({X.shape[0]}), got "
                         f"{y.shape[0]}. Pass X and {y_name} with the same number of samples.")
    if y.chunks[0] != X.chunks[0]:
        raise ValueError(
            f"X and {y_name} must have the same row chunks, got X.chunks[0] = "
            f"{_short(X.chunks[0])} and {y_name}.chunks[0] = {_short(y.chunks[0])}; use "
            f"{y_name} = {y_name}.rechunk(X.chunks[0]) (or chunk both alike when creating "
            "them).")
    return X, y


def _short(chunks: Sequence[int]) -> str:
    return str(tuple(chunks)) if len(chunks) <= 8 else f"({', '.join(map(str, chunks[:8]))}, ...)"


def _take_rows(xb, yb, rows):
    return np.asarray(xb)[rows], np.asarray(yb)[rows]


def _tree_add(*parts):
    """Elementwise sum of equally structured dicts / tuples / arrays / numbers (dict keys may
    differ: a missing key counts 0)."""
    first = parts[0]
    if isinstance(first, dict):
        keys = list(dict.fromkeys(k for p in parts for k in p))
        return {k: _tree_add(*[p[k] for p in parts if k in p]) for k in keys}
    if isinstance(first, tuple):
        return tuple(_tree_add(*items) for items in zip(*parts))
    total = first
    for p in parts[1:]:
        total = total + p
    return total


class RowBlocks:
    """Aligned row blocks of ``X`` (n, d) and ``y`` (n,) and the reductions a fit needs.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
        Chunked by rows only (one chunk along the columns).
    y : dask.array.Array of shape (n,)
        With the same row chunks (a NumPy ``y`` is chunked like ``X``).

    Attributes
    ----------
    n_passes : int
        Passes over the data so far (each :meth:`sum` or :meth:`collect` is one).
    """

    def __init__(self, X: Any, y: Any) -> None:
        self.X, self.y = _check_rows(X, y)
        self.n, self.d = (int(v) for v in self.X.shape)
        self.row_chunks = tuple(int(c) for c in self.X.chunks[0])
        self._x = self.X.to_delayed().ravel().tolist()
        self._y = self.y.to_delayed().ravel().tolist()
        self.n_passes = 0

    def _tasks(self, fn: Callable, job: Any) -> list:
        dask, _ = _import_dask()
        job = dask.delayed(job, name=f"softmix-job-{uuid.uuid4().hex}", traverse=False)
        return [dask.delayed(fn, pure=False)(xb, yb, job) for xb, yb in zip(self._x, self._y)]

    def sum(self, fn: Callable, job: Any):
        """``sum_b fn(X_b, y_b, job)`` over the blocks: one pass, a tree sum of fan-in
        :data:`FAN_IN`, computed on the active Dask scheduler."""
        dask, _ = _import_dask()
        parts = self._tasks(fn, job)
        while len(parts) > 1:
            parts = [dask.delayed(_tree_add, pure=False)(*parts[i:i + FAN_IN])
                     for i in range(0, len(parts), FAN_IN)]
        self.n_passes += 1
        return parts[0].compute()

    def rows(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(X[index], y[index])`` as NumPy arrays, read from the blocks holding them (the
        same tasks as every pass, so the scheduler sees one graph of this data)."""
        dask, _ = _import_dask()
        starts = np.concatenate([[0], np.cumsum(self.row_chunks)])
        where = np.searchsorted(starts, index, side="right") - 1
        parts = [dask.delayed(_take_rows, pure=False)(self._x[b], self._y[b],
                                                     index[where == b] - starts[b])
                 for b in np.unique(where)]
        got = dask.compute(*parts)
        order = np.argsort(np.argsort(where, kind="stable"), kind="stable")
        X = np.concatenate([g[0] for g in got])[order]
        return X, np.concatenate([g[1] for g in got])[order]

    def collect(self, fn: Callable, job: Any) -> list:
        """``[fn(X_b, y_b, job) for every block b]`` (small results), in block order: one
        pass."""
        dask, _ = _import_dask()
        self.n_passes += 1
        return list(dask.compute(*self._tasks(fn, job)))


# --------------------------------------------------------------------------------- per block
@dataclass(frozen=True)
class _Prep:
    """Maps a raw block to the internal design ``[1, z]`` and encoded ``y``."""

    std: Standardizer
    expert: str
    classes: Any = None
    y_var: float = 1.0  # var of the internal y (Gaussian experts): 1 unless y is constant

    def default_floor(self) -> float:
        """:func:`softmix.moe.experts.default_variance_floor` of the internal ``y``."""
        floor = VARIANCE_FLOOR_RATIO * self.y_var
        return floor if floor >= np.finfo(float).tiny else 1e-300

    def __call__(self, xb, yb):
        from softmix.moe.estimator import _encode_labels

        X1 = add_intercept(self.std.transform_X(np.asarray(xb, dtype=float)))
        if self.expert == "gaussian":
            return X1, self.std.transform_y(np.asarray(yb, dtype=float))
        labels = np.asarray(yb)
        labels = labels.astype(str) if self.classes.dtype.kind in "US" else labels.astype(float)
        codes = _encode_labels(labels, self.classes)
        return X1, codes.astype(float) if self.expert == "logistic" else codes


@dataclass(frozen=True)
class _Job:
    """What one pass computes: the weights ``tau`` (posteriors at ``params``, or the random
    start's soft weights around ``centres``) and the requested statistics."""

    prep: _Prep
    params: MoEParams | None
    requests: tuple = ()
    centres: np.ndarray | None = None  # random start: (k, m) centres of standardised pairs
    pair_mean: np.ndarray | None = None
    pair_sd: np.ndarray | None = None
    n_classes: int | None = None
    quiet: bool = False


def _labels(expert: str, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Soft labels of a classification expert's fit: ``[y, 1-y]`` (logistic) or one-hot."""
    return _two_class(y) if expert == "logistic" else _onehot(y, n_classes)


def _block_stats(xb, yb, job: _Job) -> dict:
    """The requested sums over one block (see the module docstring)."""
    if job.quiet:
        with np.errstate(all="ignore"):
            return _block_stats_raw(xb, yb, job)
    return _block_stats_raw(xb, yb, job)


def _block_stats_raw(xb, yb, job: _Job) -> dict:
    X1, y = job.prep(xb, yb)
    out: dict = {}
    params: Any = job.params
    tau: Any = None
    if job.centres is not None:
        data = (pairs(X1[:, 1:], y, job.prep.expert, job.n_classes) - job.pair_mean) \
            / job.pair_sd
        tau = soft_weights(data, job.centres)
    elif params is not None and any(r[0] != "gate_share" for r in job.requests):
        lj = log_joint_design(X1, y, params)
        lse = logsumexp(lj, axis=1, keepdims=True)
        tau = np.exp(lj - lse)
        out["loglik"] = float(np.sum(lse))
    for req in job.requests:
        kind = req[0]
        if kind == "mass":
            out["mass"] = (tau.sum(axis=0), np.sum(tau * tau, axis=0))
        elif kind == "gate":  # soft-label multinomial logit of the gate, ridge added later
            _, key, coef, order = req
            out[key] = _mlogit(coef, X1, tau, tau.sum(axis=1), 0.0, order)
        elif kind == "expert":  # classification expert i, weights tau[:, i]
            _, key, i, coef, order = req
            a = _labels(job.prep.expert, y, coef.shape[0]) * tau[:, i:i + 1]
            out[key] = _mlogit(coef, X1, a, a.sum(axis=1), 0.0, order)
        elif kind == "wls":  # Gaussian experts: cross products of [1, z] and the residuals
            coef0 = req[1]
            resid = y[:, None] - X1 @ coef0.T  # (n, k) residuals at the current fit
            gram = np.stack([(X1 * tau[:, i:i + 1]).T @ X1 for i in range(tau.shape[1])])
            cross = (tau * resid).T @ X1
            out["wls"] = (gram, cross, np.sum(tau * resid**2, axis=0))
        elif kind == "score":  # S'S and S'1 of the stop criterion, in slices of rows
            P = params_to_vector(params).size
            gram, total = np.zeros((P, P)), np.zeros(P)
            for s in range(0, X1.shape[0], _SCORE_SLICE):
                S = score_samples_design(X1[s:s + _SCORE_SLICE], y[s:s + _SCORE_SLICE],
                                         params, tau[s:s + _SCORE_SLICE])
                gram += S.T @ S
                total += S.sum(axis=0)
            out["score"] = (gram, total)
        elif kind == "separation":
            out["separation"] = separation(X1, y, params, tau)
        elif kind == "gate_share":  # mean gate probabilities in the user's units (raw X)
            gating = req[1]
            out["gate_share"] = np.exp(gate_log_proba_design(
                add_intercept(np.asarray(xb, dtype=float)), gating)).sum(axis=0)
    return out


# --------------------------------------------------------------------------------- M-step
class _BlockObjective:
    """``fun(x, order)`` of :func:`softmix.core.solvers._maximize` for one soft-label logit
    (the gate, or one classification expert) summed over the blocks, the ridge added once.

    Every evaluation is one pass; it computes order ``spec_order`` (2 for Newton: value,
    gradient and Hessian) whatever order was asked, and caches it by ``x``, so the Newton
    iteration after an accepted step-halving trial costs no pass. ``first`` is the statistic
    at the start, computed in the E-step pass.
    """

    def __init__(self, evaluate: Callable, make_request: Callable, shape: tuple,
                 ridge: float, spec_order: int, x0: np.ndarray, first: tuple) -> None:
        self.evaluate, self.make_request = evaluate, make_request
        self.shape, self.ridge, self.spec_order = shape, ridge, spec_order
        self.cache = {x0.tobytes(): self._penalised(x0, first)}

    def coef(self, x: np.ndarray) -> np.ndarray:
        return np.vstack([x.reshape(self.shape[0] - 1, self.shape[1]),
                          np.zeros((1, self.shape[1]))])

    def _penalised(self, x: np.ndarray, raw: tuple) -> tuple:
        value, grad, hess = (tuple(raw) + (None, None))[:3]
        value = float(value) - 0.5 * self.ridge * float(x @ x)
        if grad is not None:
            grad = np.ravel(grad) - self.ridge * x
        if hess is not None and self.ridge:
            hess = hess.copy()
            hess[np.diag_indices_from(hess)] -= self.ridge
        return value, grad, hess

    def __call__(self, x: np.ndarray, order: int):
        key = x.tobytes()
        hit = self.cache.get(key)
        if hit is None or (order == 2 and hit[2] is None) or (order == 1 and hit[1] is None):
            raw = self.evaluate(self.make_request(self.coef(x), max(order, self.spec_order)))
            hit = self._penalised(x, raw if isinstance(raw, tuple) else (raw,))
            self.cache = {key: hit}  # only the last trial point can be the next iterate
        if order == 0:
            return hit[0]
        return (hit[0], hit[1]) if order == 1 else hit


def _replace_requests(job: _Job, requests: tuple) -> _Job:
    from dataclasses import replace

    return replace(job, requests=requests)


def _solve_logit(evaluate, make_request, start_coef, first, *, ridge, max_iter, tol,
                 method) -> np.ndarray:
    """Maximise one soft-label logit from ``start_coef`` (K, p) as
    :func:`softmix.core.solvers.fit_multinomial_logistic` does; returns the (K, p) coef.
    ``evaluate(request)`` returns the block sums of one request (a pass, see
    :class:`_Lockstep`)."""
    k, p = start_coef.shape
    x0 = np.asarray(start_coef, dtype=float)[:-1].ravel()
    fun = _BlockObjective(evaluate, make_request, (k, p), ridge,
                          2 if method == "newton" else 1, x0, first)
    res = _maximize(fun, x0, method, max_iter, tol)
    return fun.coef(np.asarray(res.x))


class _Lockstep:
    """Run independent inner solvers side by side so that one pass serves all of them.

    Each solver runs in its own thread and calls ``evaluate(request)`` (through
    :class:`_BlockObjective`) whenever it needs block sums; the calling thread waits until every
    solver still running has asked (or finished), computes all pending requests in **one**
    pass and hands each solver its result. A solver's sequence of iterates does not depend on
    the others, so the results are those of running the solvers one after the other, in
    ``max`` instead of ``sum`` of their passes. The threads only do the solvers' small
    NumPy work on the driver; the passes run on the Dask scheduler.
    """

    def __init__(self, blocks: RowBlocks, job: _Job) -> None:
        self.blocks, self.job = blocks, job

    def run(self, solvers: dict[str, Callable[[Callable], Any]]) -> dict[str, Any]:
        """``{name: solver(evaluate)}`` for ``solvers`` ``{name: solver}``."""
        import threading

        if len(solvers) == 1:  # nothing to share: no thread
            (name, solver), = solvers.items()
            return {name: solver(self._single)}
        cond = threading.Condition()
        pending: dict[str, tuple] = {}
        delivered: dict[str, Any] = {}
        live = set(solvers)
        out: dict[str, Any] = {}
        errors: list[BaseException] = []

        def evaluate_for(name):
            def evaluate(request):
                with cond:
                    pending[name] = request
                    cond.notify_all()
                    cond.wait_for(lambda: name in delivered)
                    return delivered.pop(name)
            return evaluate

        def body(name, solver):
            try:
                out[name] = solver(evaluate_for(name))
            except BaseException as exc:  # noqa: BLE001 - re-raised by the caller below
                errors.append(exc)
            finally:
                with cond:
                    live.discard(name)
                    cond.notify_all()

        threads = [threading.Thread(target=body, args=item, daemon=True)
                   for item in solvers.items()]
        for t in threads:
            t.start()
        with cond:
            while True:
                cond.wait_for(lambda: all(name in pending for name in live))
                if not live:
                    break
                batch = dict(pending)
                pending.clear()
                requests = tuple((r[0], f"trial:{name}") + tuple(r[2:])
                                 for name, r in batch.items())
                try:
                    stats = self.blocks.sum(_block_stats,
                                            _replace_requests(self.job, requests))
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    errors.append(exc)
                    stats = None
                for name in batch:
                    delivered[name] = None if stats is None else stats[f"trial:{name}"]
                cond.notify_all()
                if stats is None:
                    break
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return out

    def _single(self, request):
        return self.blocks.sum(_block_stats, _replace_requests(self.job, (request,)))[
            request[1]]


def _m_step(blocks: RowBlocks, job: _Job, gating0: np.ndarray, coef0: np.ndarray,
            var0: Any, expert: str, *, ridge: float, max_iter: int, tol: float,
            method: str, variance_floor: Any):
    """One M-step on the blocks from the weights of ``job`` (posteriors or a random start):
    the gating fit and every expert's weighted fit, warm-started at ``(gating0, coef0,
    var0)``. Returns ``(gating, coef, var, degenerate, first-pass statistics)``."""
    exp: Any = EXPERTS[expert]
    order = 2 if method == "newton" else 1
    requests = [("mass",), ("gate", "gate", np.asarray(gating0, float), order)]
    if exp.is_classifier:
        starts = [_two_class_coef(c) if expert == "logistic" else np.asarray(c, float)
                  for c in coef0]
        requests += [("expert", f"expert{i}", i, c, order) for i, c in enumerate(starts)]
    else:
        requests.append(("wls", np.asarray(coef0, dtype=float)))
    stats = blocks.sum(_block_stats, _replace_requests(job, tuple(requests)))
    total, sum_sq = stats["mass"]

    def logit(make_request, start, first):
        def solver(evaluate):
            return _solve_logit(evaluate, make_request, start, first, ridge=ridge,
                                max_iter=max_iter, tol=tol, method=method)
        return solver

    solvers = {"gate": logit(lambda c, o: ("gate", "trial", c, o), np.asarray(gating0, float),
                             stats["gate"])}
    coef = np.empty_like(np.asarray(coef0, dtype=float))
    var: Any = np.empty(coef.shape[0]) if exp.has_variance else None
    degenerate: dict[int, str] = {}
    for i in range(coef.shape[0]):
        if float(total[i]) <= EMPTY_WEIGHT * blocks.n:  # as _BaseExpert.fit_weighted
            coef[i] = coef0[i]
            if var is not None:
                var[i] = max(float(var0[i]), variance_floor)
            degenerate[i] = empty_reason(float(total[i]))
            continue
        if exp.is_classifier:
            solvers[f"expert{i}"] = logit(lambda c, o, i=i: ("expert", "trial", i, c, o),
                                          starts[i], stats[f"expert{i}"])
            continue
        gram, cross, ssr0 = (s[i] for s in stats["wls"])
        c, v = _gaussian_update(coef0[i], gram, cross, float(ssr0))
        coef[i] = c
        if not v > variance_floor:
            degenerate[i] = floor_reason(v, variance_floor, float(total[i]**2 / max(
                float(sum_sq[i]), 1e-300)))
            v = variance_floor
        var[i] = v
    # the gate's and the classification experts' Newton solvers share their passes
    solved = _Lockstep(blocks, job).run(solvers)
    gating = solved.pop("gate")
    for name, full in solved.items():
        coef[int(name[6:])] = full[0] if expert == "logistic" else full
    return gating, coef, var, degenerate, stats


def _gaussian_update(c0: np.ndarray, gram: np.ndarray, cross: np.ndarray, ssr0: float):
    """Weighted least squares of ``y`` on ``[1, z]`` and its residual variance from the sums
    ``gram = sum w x1 x1'``, ``cross = sum w x1 r0``, ``ssr0 = sum w r0^2`` of the residuals
    ``r0 = y - x1'c0`` at the current coefficients (as
    :func:`softmix.moe.experts.weighted_least_squares`: slopes from the normal equations of the
    columns centred at their weighted means, by :func:`~softmix.moe.experts.solve_gram`).

    Least squares is linear in ``y``, so regressing ``r0`` gives ``c - c0``; the new residual
    sum of squares ``ssr0 - 2 delta'cross + delta' gram delta`` loses no precision as the fit
    converges (``delta -> 0``), unlike the raw ``sum w y^2`` expansion.
    """
    sw = gram[0, 0]
    x_mean = gram[0, 1:] / sw
    r_mean = cross[0] / sw
    centred = gram[1:, 1:] - sw * np.outer(x_mean, x_mean)
    rhs = cross[1:] - sw * x_mean * r_mean
    slope: Any = np.zeros(0)
    if rhs.size:
        slope = solve_gram(centred, rhs)
        if slope is None:  # not safely positive definite: minimum-norm least squares
            slope = np.linalg.lstsq(centred, rhs, rcond=None)[0]
    delta = np.concatenate([[r_mean - float(x_mean @ slope)], slope])
    ssr = ssr0 - 2.0 * float(delta @ cross) + float(delta @ gram @ delta)
    return c0 + delta, ssr / sw


# --------------------------------------------------------------------------------- EM
def _score_gain(blocks: RowBlocks, prep: _Prep, params: MoEParams, ridge: float) -> float:
    """:func:`softmix.moe.em.score_gain` on the blocks (one pass; NaN above
    :data:`~softmix.moe.em.SCORE_GAIN_MAX_PARAMS` free parameters)."""
    if params_to_vector(params).size > SCORE_GAIN_MAX_PARAMS:
        return float("nan")
    gram, total = blocks.sum(_block_stats, _Job(prep, params, (("score",),), quiet=True))["score"]
    with np.errstate(all="ignore"):
        return score_gain_from_sums(gram, total, params, ridge)


def _loglik(blocks: RowBlocks, prep: _Prep, params: MoEParams) -> float:
    return float(blocks.sum(_block_stats, _Job(prep, params, (("mass",),)))["loglik"])


def fit_em_blocks(
    blocks: RowBlocks,
    prep: _Prep,
    params0: MoEParams,
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    inner_max_iter: int = 300,
    inner_tol: float = 1e-10,
    inner_method: str = "newton",
    ridge: float = 0.0,
    variance_floor: float | None = None,
    callback: Callable[[int, MoEParams, float], object] | None = None,
    init_method: str = "given",
    warn: bool = True,
) -> FitResult:
    """:func:`softmix.moe.em.fit_em` on row blocks (internal coordinates of ``prep``).

    Same arguments and result; ``variance_floor=None`` is the default floor
    (``VARIANCE_FLOOR_RATIO`` times the internal ``var(y)``, which is 1 after
    standardisation). ``extra["n_passes"]`` counts the passes over the data of this fit,
    ``extra["em_passes"]`` those of its EM iterations (plus the objective's pass at a
    ``max_iter`` stop).
    """
    inner_max_iter, inner_tol, inner_method, variance_floor = check_em_options(
        inner_max_iter, inner_tol, inner_method, variance_floor)
    if EXPERTS[params0.expert].has_variance and variance_floor is None:
        variance_floor = prep.default_floor()
    passes0 = blocks.n_passes
    degenerate: dict[int, tuple[int, str]] = {}
    counter = [0]

    def em_map(params: MoEParams):
        gating, coef, var, deg, stats = _m_step(
            blocks, _Job(prep, params), params.gating, params.expert_coef,
            params.expert_variance, params.expert, ridge=ridge, max_iter=inner_max_iter,
            tol=inner_tol, method=inner_method, variance_floor=variance_floor)
        counter[0] += 1
        for i, reason in deg.items():
            degenerate.setdefault(i, (counter[0], reason))
        return (MoEParams(gating, coef, var, params.expert),
                float(stats["loglik"]) - penalty(params, ridge))

    def obj(params: MoEParams) -> float:
        return _loglik(blocks, prep, params) - penalty(params, ridge)

    result = run_em(params0, em_map, obj, max_iter=max_iter, tol=tol, callback=callback,
                    init_method=init_method, name="MoE EM", warn=warn)
    result.extra["em_passes"] = blocks.n_passes - passes0  # the iterations' passes
    result.extra["log_likelihood"] = result.objective + penalty(result.params, ridge)
    result.extra["degenerate"] = degenerate
    result.criterion = CRITERION
    result.criterion_value = _score_gain(blocks, prep, result.params, ridge)
    result.extra["n_passes"] = blocks.n_passes - passes0
    if warn:
        for i, (it, reason) in sorted(degenerate.items()):
            warn_degenerate({i: reason}, when=f" at EM iteration {it}")
    return result


def init_random_blocks(blocks: RowBlocks, prep: _Prep, n_experts: int, *, rng, n_classes,
                       ridge: float, variance_floor: float | None) -> MoEParams:
    """:func:`softmix.moe.init.init_random` on the blocks: the same centres (the same draw of
    ``rng``), the soft weights and the one weighted fit per expert and for the gate computed
    blockwise (three passes for the pairs' moments and centres, then the M-step's)."""
    expert = prep.expert
    idx = rng.choice(blocks.n, size=n_experts, replace=False)
    Xc, yc = blocks.rows(idx)
    X1c, ycode = prep(Xc, yc)
    raw_centres = pairs(X1c[:, 1:], ycode, expert, n_classes)
    s1 = blocks.sum(_pair_moments, (prep, n_classes, None))
    mean = s1 / blocks.n
    sd = np.sqrt(blocks.sum(_pair_moments, (prep, n_classes, mean)) / blocks.n)
    sd = np.where(sd > 0, sd, 1.0)
    job = _Job(prep, None, centres=(raw_centres - mean) / sd, pair_mean=mean, pair_sd=sd,
               n_classes=n_classes)
    exp: Any = EXPERTS[expert]
    p = prep.std.keep.size + 1
    coef0 = np.zeros(exp.coef_shape(n_experts, p - 1, n_classes))
    var0: Any = np.full(n_experts, max(prep.y_var, 1e-12)) if exp.has_variance else None
    floor = None
    if exp.has_variance:
        floor = prep.default_floor() if variance_floor is None else variance_floor
    gating, coef, var, degenerate, _ = _m_step(
        blocks, job, np.zeros((n_experts, p)), coef0, var0, expert,
        ridge=max(ridge, _INIT_RIDGE), max_iter=_INIT_MAX_ITER, tol=1e-10, method="newton",
        variance_floor=floor)
    for i in degenerate:  # neutral start, as init_from_weights
        coef[i] = coef0[i]
        if var is not None:
            var[i] = var0[i]
    return MoEParams(gating, coef, var, expert)


def _pair_moments(xb, yb, job):
    """Column sums of the pairs (``mean=None``) or their squared deviations from ``mean``."""
    prep, n_classes, mean = job
    X1, y = prep(xb, yb)
    data = pairs(X1[:, 1:], y, prep.expert, n_classes)
    return data.sum(axis=0) if mean is None else np.sum((data - mean) ** 2, axis=0)



# --------------------------------------------------------------------------------- estimator
def _scan_block(xb, yb, expert):
    """Per-block checks and moments of the raw data (first pass of a fit)."""
    x = np.asarray(xb, dtype=float)
    finite = np.isfinite(x)
    out = {"rows": x.shape[0], "x_bad": int(x.size - np.count_nonzero(finite)),
           "x_sum": np.where(finite, x, 0.0).sum(axis=0),
           "x_max": np.max(np.abs(np.where(finite, x, 0.0)), axis=0, initial=0.0)}
    yv = np.asarray(yb)
    if expert == "gaussian" or yv.dtype.kind == "f":
        yf = yv.astype(float)
        ok = np.isfinite(yf)
        out.update(y_bad=int(yf.size - np.count_nonzero(ok)),
                   y_sum=float(np.sum(yf[ok])), y_max=float(np.max(np.abs(yf[ok]), initial=0.0)))
    else:
        out.update(y_bad=0, y_sum=0.0, y_max=0.0)
    if expert != "gaussian":
        out["labels"] = np.unique(yv[np.isfinite(yv)] if yv.dtype.kind == "f" else yv)
    return out


def _centred_block(xb, yb, job):
    """``R`` of the centred block (QR, ``mode="r"``) and ``sum (y - mean_y)^2``."""
    mean, y_mean = job
    r = np.linalg.qr(np.asarray(xb, dtype=float) - mean, mode="r")
    ss = 0.0 if y_mean is None else float(np.sum((np.asarray(yb, dtype=float) - y_mean) ** 2))
    return r, ss


def _first_bad(scan: list, key: str, chunks: Sequence[int]) -> str:
    starts = np.concatenate([[0], np.cumsum(chunks)])
    b = next(i for i, s in enumerate(scan) if s[key])
    return f"first in row chunk {b} (rows {starts[b]}-{starts[b + 1] - 1})"


def _scan(est, blocks: RowBlocks):
    """Validate the data blockwise; returns ``(prep, classes, n_classes, std)``."""
    from softmix._validation import check_scale_max

    X, y, expert = blocks.X, blocks.y, est.expert
    if X.dtype.kind not in "biuf":
        raise TypeError(f"X must hold real numbers, got dtype {X.dtype}. Convert it with "
                        "X.astype(float).")
    if y.dtype.kind not in ("biuf" if expert == "gaussian" else "biufUS"):
        raise TypeError(f"y must hold {'real numbers' if expert == 'gaussian' else 'labels'}"
                        f", got dtype {y.dtype}. Convert it with y.astype(...) first.")
    if blocks.d < 1:
        raise ValueError(f"X must have at least one column, got shape {X.shape}.")
    scan = blocks.collect(_scan_block, expert)
    n = blocks.n
    for key, name in (("x_bad", "X"), ("y_bad", "y")):
        bad = sum(s[key] for s in scan)
        if bad:
            raise ValueError(f"{name} contains {bad} NaN or infinite value(s) "
                             f"({_first_bad(scan, key, blocks.row_chunks)}). Remove or impute "
                             "them before fitting.")
    x_max = np.max([s["x_max"] for s in scan], axis=0)
    check_scale_max(float(x_max.max()), n, "X")
    classes = n_classes = None
    y_mean = None
    if expert == "gaussian":
        check_scale_max(max(s["y_max"] for s in scan), n, "y")
        y_mean = sum(s["y_sum"] for s in scan) / n
    else:  # the in-memory label checks, on the distinct labels
        labels = np.unique(np.concatenate([s["labels"] for s in scan]))
        _, classes = est._check_y(labels, labels.size, fit=True)
        n_classes = classes.size if expert == "multinomial" else None
    mean = _tree_add(*[s["x_sum"] for s in scan]) / n
    parts = blocks.collect(_centred_block, (mean, y_mean))
    R = np.asarray(np.linalg.qr(np.vstack([r for r, _ in parts]), mode="r"))
    sd = np.sqrt(np.sum(R * R, axis=0) / n)
    y_sd = None if y_mean is None else float(np.sqrt(sum(ss for _, ss in parts) / n))
    std = standardizer_from_moments(mean, sd, x_max, R, y_mean, y_sd, stacklevel=5)
    y_var = 1.0 if y_sd is None else (y_sd / std.y_scale) ** 2
    return _Prep(std, expert, classes, y_var), classes, n_classes, std


def fit_estimator(est, X: Any, y: Any, *, X_gate: Any = None, sample_weight: Any = None):
    """:meth:`softmix.MixtureOfExperts.fit` on Dask arrays (called by it; see the module
    docstring for what is supported). Returns the fitted estimator."""
    from softmix._validation import check_random_state
    from softmix.moe.init import NEAR_TRUTH, initialize
    from softmix.moe.likelihood import canonical_order_from_share

    est._check_hyperparameters()
    unsupported = [name for name, bad in (
        (f"solver={est.solver!r}", est.solver != "em"),
        (f"init={est.init!r}", isinstance(est.init, str) and est.init == "kmeans"),
        ("X_gate", X_gate is not None), ("sample_weight", sample_weight is not None),
        (f"gate={est.gate!r}", est.gate != "softmax"),
        (f"fit_intercept={est.fit_intercept!r}", est.fit_intercept is not True),
        (f"variance={est.variance!r}", est.variance != "free")) if bad]
    if unsupported:
        raise ValueError(
            f"{', '.join(unsupported)} is not supported with Dask arrays; a Dask fit runs "
            "solver='em' with init='random' (or a MoEParams / 'near_truth') and the default "
            "gate, intercept and variance, without X_gate or sample_weight. Fit in memory "
            "(np.asarray / .compute()) for the others.")
    blocks = RowBlocks(X, y)
    prep, classes, n_classes, std = _scan(est, blocks)
    n, d = blocks.n, blocks.d
    if isinstance(est.init, MoEParams):
        check_params(est.init, n_features=d, expert=est.expert, n_classes=n_classes, name="init")
        if est.init.n_experts != est.n_experts:
            raise ValueError(f"init has {est.init.n_experts} experts but "
                             f"n_experts={est.n_experts}.")
    options = dict(est.solver_options)
    check_em_options(**options)
    expert: Any = EXPERTS[est.expert]
    r = std.keep.size
    n_params = (est.n_experts - 1) * (r + 1) + est.n_experts * expert.n_params(r, n_classes)
    if n < n_params:
        raise ValueError(
            f"fewer samples ({n}) than free parameters ({n_params}) of a {est.n_experts}-"
            f"expert {est.expert} model on {r} identified feature(s): the maximum likelihood "
            "is not defined. Use more samples or fewer experts (a smaller n_experts).")
    rng = check_random_state(est.random_state)
    if "variance_floor" in options:
        options["variance_floor"] = std.variance_floor_in(options["variance_floor"])
    shift = std.log_scale(n)
    callback = est.callback
    if callback is not None:
        user_callback = callback

        def callback(it, params, value):
            return user_callback(it, std.params_out(params), value - shift)

    def refit(params0, name):
        return fit_em_blocks(blocks, prep, params0, max_iter=est.max_iter, tol=est.tol,
                             ridge=est.ridge, callback=callback, init_method=name, **options)

    def shares(params):
        total, sum_sq = blocks.sum(_block_stats, _Job(prep, params, (("mass",),)))["mass"]
        return total / n, effective_points_from_sums(total, sum_sq)

    def fit_one(child):
        if isinstance(est.init, MoEParams):
            params0, name = std.params_in(est.init), "given"
        elif est.init in NEAR_TRUTH:  # uses only the shapes of X and y
            params0 = std.params_in(initialize(
                est.init, blocks.X, blocks.y, est.n_experts, est.expert, rng=child,
                n_classes=n_classes, ridge=est.ridge, truth=est.truth))
            name = est.init
        else:
            params0 = init_random_blocks(blocks, prep, est.n_experts, rng=child,
                                         n_classes=n_classes, ridge=est.ridge,
                                         variance_floor=options.get("variance_floor"))
            name = est.init
        return est._prune_with(refit(params0, name), shares, refit)

    internal = fit_with_restarts(fit_one, est.n_init, rng)

    def order_of(params_user):
        share = blocks.sum(_block_stats, _Job(prep, None, (("gate_share", params_user.gating),)))
        return canonical_order_from_share(params_user, share["gate_share"] / n)

    result = est._finish_internal(internal, std, shift, order_of)
    est._store_fit(result, std, d=d, r=r, classes=classes, n_classes=n_classes, layout=None,
                   log_lik=lambda: _loglik(blocks, prep, internal.params) - shift)
    requests = (("mass",),) + ((("separation",),) if est.ridge == 0 else ())
    stats = blocks.sum(_block_stats, _Job(prep, internal.params, requests, quiet=True))
    eff = effective_points_from_sums(*stats["mass"])
    est._warn_diagnostics(internal.params, stats.get("separation", {}),
                          thin_experts(None, internal.params, eff), stacklevel=5)
    est.fit_result_.extra["n_passes"] = blocks.n_passes
    est.fit_result_.extra["n_chunks"] = len(blocks.row_chunks)
    return est


# --------------------------------------------------------------------------------- predictions
def map_rows(fn: Callable, X: Any, *others: Any, width: int | None = None,
             dtype: Any = float):
    """``fn`` applied lazily to every row block: a Dask array of shape (n,) (``width=None``)
    or (n, width), the blocks' results concatenated. ``others`` (e.g. ``y``) are chunked like
    ``X`` (a NumPy one is chunked to match)."""
    dask, da = _import_dask()
    X, _ = _check_rows(X, None)
    columns = [_check_rows(X, o)[1] for o in others]
    xs = X.to_delayed().ravel().tolist()
    cols = [c.to_delayed().ravel().tolist() for c in columns]
    parts = []
    for b, (xb, rows) in enumerate(zip(xs, X.chunks[0])):
        out = dask.delayed(fn, pure=True)(xb, *[c[b] for c in cols])
        parts.append(da.from_delayed(out, shape=(rows,) if width is None else (rows, width),
                                     dtype=dtype))
    return da.concatenate(parts, axis=0)
