"""Choice counts of token streams, in memory or past one machine (a distributed bincount).

A softmax mixture only sees its data through the counts ``n_j`` (how often alternative j was
chosen), or through the per-group count matrix ``C_gj`` of a panel (:mod:`.softmax_mixture.panel`).
:func:`count_choices` computes them from a stream of token ids that may not fit in memory: a
NumPy array, a Dask array, a Dask DataFrame column or a Parquet dataset on disk. Each chunk is
validated and counted where it lives (``np.bincount``, or a sparse COO matrix per group), and
the partial counts are summed by a tree reduction in Dask's graph, on whatever scheduler is
active (threads, processes, a ``dask.distributed`` ``Client``); only the (p,) counts (or the
sparse (G, p) matrix) reach the caller. The EM fit on them is then O(p L K) per iteration on
one machine, whatever the number of tokens.

Dask is optional (``pip install "softmix[dask]"``): it is imported only when a Dask collection
or a Parquet path is given.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse

from softmix._validation import check_int
from softmix.softmax_mixture.model import check_choices

__all__ = ["GroupedCounts", "count_choices", "is_dask_collection"]

#: Fan-in of the tree reduction: partial counts are summed ``SPLIT_EVERY`` at a time, so no
#: task ever holds more than this many partial results.
SPLIT_EVERY = 8

_DASK_HINT = 'Install the optional Dask support with `pip install "softmix[dask]"`.'


class GroupedCounts(NamedTuple):
    """Per-group counts returned by :func:`count_choices` with groups.

    Attributes
    ----------
    counts : scipy.sparse.csr_matrix of shape (n_groups, n_alternatives), int64
        Row g: how often group ``group_ids[g]`` chose each alternative. Pass it as
        ``SoftmaxMixture.fit(features, counts=counts)``.
    group_ids : ndarray of shape (n_groups,)
        The distinct group labels in sorted order (``np.unique``'s order; the order of
        ``SoftmaxMixture.group_ids_`` for a fit with ``groups``).
    """

    counts: scipy.sparse.csr_matrix
    group_ids: np.ndarray


def is_dask_collection(value: Any) -> bool:
    """Whether ``value`` is a Dask collection (array, DataFrame, Series), without importing Dask."""
    return hasattr(value, "__dask_graph__") and callable(value.__dask_graph__)


def _import_dask(what: str):
    try:
        import dask
    except ImportError as exc:
        raise ImportError(f"{what} needs Dask, which is not installed. {_DASK_HINT}") from exc
    return dask


# --------------------------------------------------------------------- per-chunk kernels

def _where(chunk: int | None) -> str:
    return "" if chunk is None else f" (in chunk {chunk} of the input)"


def _validated_choices(values: Any, p: int, chunk: int | None, name: str) -> np.ndarray:
    """One chunk of token ids as int64 in [0, p) (the checks of ``check_choices``)."""
    if hasattr(values, "isna") and bool(np.asarray(values.isna()).any()):  # pandas NA / None
        raise ValueError(f"{name} contains missing values{_where(chunk)}; every token needs an "
                         "alternative index. Drop or fill those rows.")
    if hasattr(values, "to_numpy"):  # a pandas Series (a DataFrame partition); nullable dtypes
        values = values.to_numpy(dtype=getattr(values.dtype, "numpy_dtype", None))
    try:
        arr = check_choices(values, p)
    except (TypeError, ValueError) as exc:
        msg = str(exc).replace("choices", name, 1) if name != "choices" else str(exc)
        raise type(exc)(msg + _where(chunk)) from None
    return arr


def _validated_labels(values: Any, size: int, chunk: int | None, name: str) -> np.ndarray:
    if hasattr(values, "isna") and bool(np.asarray(values.isna()).any()):
        raise ValueError(f"{name} contains missing labels{_where(chunk)}; give one label (e.g. "
                         "a document or person id) per token.")
    labels = np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values)
    if labels.ndim != 1 or labels.shape[0] != size:
        raise ValueError(f"{name} must hold one label per token, shape ({size},) like the "
                         f"choices; got shape {labels.shape}{_where(chunk)}.")
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
        raise ValueError(f"{name} contains NaN or infinite labels{_where(chunk)}; give one "
                         "finite label per token.")
    return labels


def _chunk_counts(values: Any, p: int, chunk: int | None, name: str) -> np.ndarray:
    return np.bincount(_validated_choices(values, p, chunk, name), minlength=p).astype(np.int64)


def _chunk_grouped(values: Any, labels: Any, p: int, chunk: int | None, name: str,
                   group_name: str) -> GroupedCounts:
    arr = _validated_choices(values, p, chunk, name)
    labels = _validated_labels(labels, arr.size, chunk, group_name)
    return grouped_counts(arr, labels, p, group_name, _where(chunk))


def grouped_counts(choices: np.ndarray, labels: np.ndarray, p: int, name: str = "groups",
                   where: str = "") -> GroupedCounts:
    """The (G, p) int64 CSR count matrix of validated choices (int, in [0, p)) and their group
    labels (1-D, one per choice), groups in ``np.unique`` order: the one construction of the
    panel count matrix (also used by :func:`softmix.softmax_mixture.panel.check_panel`)."""
    try:
        ids, rows = np.unique(labels, return_inverse=True)
    except TypeError as exc:
        raise TypeError(f"{name} labels must be sortable (numbers or strings){where}"
                        f": {exc}") from None
    mat = scipy.sparse.csr_matrix(
        (np.ones(choices.size, dtype=np.int64), (rows.ravel(), choices)), shape=(ids.size, p))
    mat.sum_duplicates()
    return GroupedCounts(mat, ids)


def _sum_counts(*parts: np.ndarray) -> np.ndarray:
    return np.asarray(np.sum(parts, axis=0, dtype=np.int64))


def _merge_grouped(*parts: GroupedCounts) -> GroupedCounts:
    """Sum partial per-group counts: union of the (sorted) labels, rows re-indexed to it."""
    parts = tuple(part for part in parts if part.group_ids.size)
    if not parts:
        return GroupedCounts(scipy.sparse.csr_matrix((0, 0), dtype=np.int64), np.array([]))
    p = parts[0].counts.shape[1]
    try:
        ids = np.unique(np.concatenate([part.group_ids for part in parts]))
    except TypeError as exc:
        raise TypeError(f"groups labels must be of one sortable kind (all numbers or all "
                        f"strings) across the chunks: {exc}") from None
    rows, cols, vals = [], [], []
    for part in parts:
        coo = part.counts.tocoo()
        rows.append(np.searchsorted(ids, part.group_ids)[coo.row])
        cols.append(coo.col)
        vals.append(coo.data)
    mat = scipy.sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(ids.size, p), dtype=np.int64)
    mat.sum_duplicates()
    return GroupedCounts(mat, ids)


# --------------------------------------------------------------------- Dask plumbing

def _tree_sum(parts: list, combine):
    """Delayed tree reduction of ``parts`` by ``combine``, ``SPLIT_EVERY`` at a time."""
    from dask import delayed

    combine = delayed(combine, pure=True)
    while len(parts) > 1:
        parts = [combine(*parts[i:i + SPLIT_EVERY]) for i in range(0, len(parts), SPLIT_EVERY)]
    return parts[0]


def _frame_kind(value: Any) -> str | None:
    """``"frame"`` / ``"series"`` for a Dask DataFrame / Series, None otherwise."""
    if not hasattr(value, "divisions"):  # Dask arrays have none; cheap before the import
        return None
    try:
        import dask.dataframe as dd
    except ImportError:  # dask without its dataframe extra: value cannot be one
        return None
    if isinstance(value, dd.DataFrame):
        return "frame"
    return "series" if isinstance(value, dd.Series) else None


def _dask_chunks(choices: Any, groups: Any, column: str | None,
                 group_column: str | None) -> tuple[list, list | None]:
    """Per-chunk delayed objects of the token ids (and labels), aligned."""
    if isinstance(choices, (str, os.PathLike)):
        _import_dask("A Parquet dataset path as choices")
        try:
            import dask.dataframe as dd
        except ImportError as exc:
            raise ImportError(f"Reading a Parquet dataset needs dask.dataframe: {exc}. "
                              f"{_DASK_HINT}") from exc
        if column is None:
            raise ValueError(
                "choices is a Parquet dataset path: name its column of token ids with column= "
                "(and the group column with group_column=), e.g. count_choices(path, p, "
                "column='token')."
            )
        cols = [column] + ([group_column] if group_column is not None else [])
        try:
            choices = dd.read_parquet(os.fspath(choices), columns=cols)
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"choices: could not read the Parquet dataset {choices!r} with "
                             f"columns {cols}: {exc}") from exc
        if len(choices.columns) != len(cols):
            raise ValueError(f"choices: the Parquet dataset has no column(s) {cols} (found "
                             f"{list(choices.columns)}).")
    kind = _frame_kind(choices)
    if kind == "frame":
        if groups is not None:
            raise ValueError("groups goes with array choices; for a DataFrame name the group "
                             "column with group_column=.")
        names = list(choices.columns)
        if column is None:
            if len(names) != 1:
                raise ValueError(f"choices is a DataFrame with columns {names}: name the column "
                                 "of token ids with column= (and groups with group_column=).")
            column = names[0]
        for arg, col in (("column", column), ("group_column", group_column)):
            if col is not None and col not in names:
                raise ValueError(f"{arg}={col!r} is not a column of choices (columns: {names}).")
        parts = choices[column].to_delayed()
        labels = None if group_column is None else choices[group_column].to_delayed()
        return parts, labels
    if column is not None or group_column is not None:
        raise ValueError("column= and group_column= name columns of a DataFrame or Parquet "
                         f"dataset; choices is a {type(choices).__name__}. Drop them.")
    if kind == "series":
        if groups is not None:
            raise ValueError("groups with Series choices: put both in one DataFrame and use "
                             "column= and group_column=.")
        return choices.to_delayed(), None
    import dask.array as da

    x = choices if is_dask_collection(choices) else da.from_array(np.asarray(choices))
    if x.ndim != 1:
        raise ValueError(f"choices must be 1-D (one token id per row), got shape {x.shape}.")
    if x.dtype == object or x.dtype.kind in "USVcb":
        raise TypeError(f"choices must hold integer token ids, got dtype {x.dtype}.")
    parts = list(x.to_delayed().ravel())
    if groups is None:
        return parts, None
    g = groups if is_dask_collection(groups) else da.from_array(np.asarray(groups))
    if getattr(g, "ndim", 1) != 1 or not hasattr(g, "rechunk"):
        raise ValueError("groups must be a 1-D array of labels (NumPy or Dask), one per token.")
    if g.shape[0] != x.shape[0] and not (np.isnan(g.shape[0]) or np.isnan(x.shape[0])):
        raise ValueError(f"groups must hold one label per choice, shape ({x.shape[0]},) like "
                         f"choices; got shape {g.shape}.")
    g = g.rechunk(x.chunks)
    return parts, list(g.to_delayed().ravel())


# --------------------------------------------------------------------- public function

def count_choices(choices: Any, n_alternatives: int, groups: Any = None, *,
                  column: str | None = None,
                  group_column: str | None = None) -> np.ndarray | GroupedCounts:
    """Count how often each alternative was chosen, in memory or by a distributed bincount.

    Parameters
    ----------
    choices : array-like, Dask array, Dask DataFrame / Series, str or path
        The token ids (chosen alternatives), integers in ``[0, n_alternatives)``: a NumPy
        array or list; a 1-D ``dask.array`` (chunked by rows); a Dask Series, or a Dask
        DataFrame with the ids in column ``column``; or a Parquet dataset (a file, a
        directory or a glob such as ``"tokens/*.parquet"``, read with
        ``dask.dataframe.read_parquet``) with the ids in column ``column``.
    n_alternatives : int
        p, the number of alternatives (rows of the features matrix); the length of the result.
    groups : array-like or Dask array of shape (n_samples,), optional
        Group label of each token (e.g. its document or person), any sortable labels (numbers
        or strings), with array ``choices``. For a DataFrame or Parquet dataset, name the group
        column with ``group_column`` instead.
    column : str, optional
        Column of token ids of a DataFrame / Parquet dataset (required for a Parquet dataset,
        and for a DataFrame with more than one column).
    group_column : str, optional
        Column of group labels of a DataFrame / Parquet dataset.

    Returns
    -------
    ndarray of shape (n_alternatives,), int64
        Without groups: ``n_j``, the number of tokens equal to j (``np.bincount(choices,
        minlength=n_alternatives)``).
    GroupedCounts
        With groups: ``(counts, group_ids)``, a scipy.sparse CSR int64 matrix of shape
        (n_groups, n_alternatives) (row g: the counts of group ``group_ids[g]``) and the
        distinct labels in sorted order. No dense (n_groups, n_alternatives) array is formed.

    Raises
    ------
    ValueError
        Token ids out of ``[0, n_alternatives)``, non-integer, NaN or missing (named
        ``choices``, or the column, and the chunk), NaN group labels, misaligned groups, a
        missing ``column``.
    TypeError
        Non-numeric ids (strings, booleans), unsortable labels.
    ImportError
        A Dask collection or a Parquet path without Dask installed (install with
        ``pip install "softmix[dask]"``).

    Notes
    -----
    NumPy input is counted directly. Dask input (and Parquet, read as a Dask DataFrame) is
    counted chunk by chunk where the chunks live: each chunk is validated and reduced to its
    counts (``np.bincount``; with groups a sparse COO matrix over the chunk's own labels), and
    the partial results are summed by a tree reduction (fan-in :data:`SPLIT_EVERY`) in the Dask
    graph, on the active scheduler (a ``dask.distributed.Client`` if one is set up, else
    Dask's default). Memory per task is a few chunks plus their partial counts (p integers, or
    the non-zeros of the chunk's groups); the stream itself never reaches the caller. A bad
    token raises the ValueError/TypeError above from the task that found it (Dask re-raises it
    in the caller with the same type and message). The same code runs on a multi-node cluster:
    only the ``Client`` address changes.

    Examples
    --------
    >>> import numpy as np
    >>> from softmix import count_choices
    >>> count_choices(np.array([0, 2, 2, 1]), 4)
    array([1, 1, 2, 0])
    >>> counts, ids = count_choices([0, 2, 2], 3, groups=["b", "a", "b"])
    >>> ids.tolist(), counts.toarray().tolist()
    (['a', 'b'], [[0, 0, 1], [1, 0, 1]])
    """
    p = check_int(n_alternatives, "n_alternatives", low=1)
    name = "choices" if column is None else f"choices column {column!r}"
    group_name = "groups" if group_column is None else f"groups column {group_column!r}"
    lazy = (is_dask_collection(choices) or is_dask_collection(groups)
            or isinstance(choices, (str, os.PathLike)))
    if not lazy:
        if column is not None or group_column is not None:
            raise ValueError("column= and group_column= name columns of a Dask DataFrame or "
                             f"Parquet dataset; choices is a {type(choices).__name__}. Drop them.")
        if groups is None:
            return _chunk_counts(choices, p, None, name)
        return _chunk_grouped(choices, groups, p, None, name, group_name)
    dask = _import_dask(f"count_choices on a {type(choices).__name__}")
    parts, labels = _dask_chunks(choices, groups, column, group_column)
    if labels is None:  # no groups (a group_column always comes with its labels)
        kernel = dask.delayed(_chunk_counts, pure=True)
        partial = [kernel(part, p, i, name) for i, part in enumerate(parts)]
        if not partial:
            return np.zeros(p, dtype=np.int64)
        return np.asarray(dask.compute(_tree_sum(partial, _sum_counts))[0], dtype=np.int64)
    kernel = dask.delayed(_chunk_grouped, pure=True)
    partial = [kernel(part, lab, p, i, name, group_name)
               for i, (part, lab) in enumerate(zip(parts, labels, strict=True))]
    if not partial:
        return GroupedCounts(scipy.sparse.csr_matrix((0, p), dtype=np.int64), np.array([]))
    out = dask.compute(_tree_sum(partial, _merge_grouped))[0]
    if out.counts.shape[1] != p:  # every chunk empty
        out = GroupedCounts(scipy.sparse.csr_matrix((0, p), dtype=np.int64), out.group_ids)
    return out
