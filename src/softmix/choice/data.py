"""Long-format choice data: validation at the public boundary and the sorted layout EM uses.

Input (one row per *available* alternative of each choice situation)::

    X          (n_rows, L)   attributes of the alternative
    chosen     (n_rows,)     1 for the chosen alternative of its situation, else 0
    situations (n_rows,)     situation id (any sortable ids; rows in any order)
    groups     (n_rows,)     optional panel id (a person): constant within a situation
    covariates (n_rows, q)   optional class-membership covariates: constant within a group
    sample_weight (n_rows,)  optional weights: constant within a group

Without ``groups`` every situation is its own group. The rows are sorted once by (group,
situation), so every per-situation and per-group reduction is a segment sum
(``np.add.reduceat``) over contiguous rows: O(n_rows L K) per E-step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from softmix._validation import check_array
from softmix.core.membership import encode_groups

__all__ = ["ChoiceData", "prepare_choice_data"]


@dataclass(frozen=True, eq=False)
class ChoiceData:
    """Choice data sorted by (group, situation) (made by :func:`prepare_choice_data`).

    Attributes
    ----------
    X : ndarray of shape (n_rows, L)
        Attributes, rows sorted.
    starts : ndarray of int, shape (S,)
        First row of each situation.
    row_situation : ndarray of int, shape (n_rows,)
        Situation code of each sorted row (non-decreasing).
    chosen_rows : ndarray of int, shape (S,)
        The sorted row of each situation's chosen alternative.
    group_starts : ndarray of int, shape (G,)
        First situation of each group.
    situation_group : ndarray of int, shape (S,)
        Group code of each situation (non-decreasing).
    Z : ndarray of shape (G, q) or None
        Membership covariates per group.
    group_weights : ndarray of shape (G,) or None
        Weights per group (None: all 1).
    order : ndarray of int, shape (n_rows,)
        ``X_sorted = X_input[order]``.
    situation_ids, group_ids : ndarray
        Original ids of the S situations and G groups, in code order.
    has_groups : bool
        Whether ``groups`` was given (else groups are the situations).
    """

    X: np.ndarray
    starts: np.ndarray
    row_situation: np.ndarray
    chosen_rows: np.ndarray
    group_starts: np.ndarray
    situation_group: np.ndarray
    Z: np.ndarray | None
    group_weights: np.ndarray | None
    order: np.ndarray
    situation_ids: np.ndarray
    group_ids: np.ndarray
    has_groups: bool

    @property
    def n_rows(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def n_situations(self) -> int:
        return self.starts.shape[0]

    @property
    def n_groups(self) -> int:
        return self.group_starts.shape[0]

    @property
    def n_covariates(self) -> int:
        return 0 if self.Z is None else self.Z.shape[1]

    @property
    def total_weight(self) -> float:
        """Number of groups, or the sum of their weights."""
        return float(self.n_groups if self.group_weights is None else self.group_weights.sum())

    def situation_weights(self, group_values: np.ndarray) -> np.ndarray:
        """Broadcast per-group values (G, ...) to the situations (S, ...)."""
        return group_values[self.situation_group]


def _ids(value: Any, name: str, n_rows: int) -> np.ndarray:
    if value is None:
        raise TypeError(f"{name} is required, got None. Pass one id per row of X.")
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise ValueError(
            f"{name} must have shape (n_rows,) = ({n_rows},), one id per row of X; got shape "
            f"{arr.shape}."
        )
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite ids; give every row a valid id.")
    if arr.dtype == object:
        try:
            arr = np.array(arr.tolist())
        except Exception as exc:  # pragma: no cover - exotic objects
            raise TypeError(f"{name} must hold sortable ids (ints or strings): {exc}") from exc
        if arr.dtype == object:
            raise TypeError(f"{name} must hold sortable ids of one kind (ints or strings).")
    return arr


def _show(value: Any) -> str:
    """An id as the user wrote it (``10``, ``'a'``), not NumPy's ``np.int64(10)``."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _per_row(value: Any, name: str, n_rows: int, *, ndim: int) -> np.ndarray:
    arr = check_array(value, name, ndim=(1, 2) if ndim == 2 else 1)
    if arr.ndim == 1 and ndim == 2:
        arr = arr[:, None]
    if arr.shape[0] != n_rows:
        raise ValueError(
            f"{name} must have one row per row of X ({n_rows}), got shape {arr.shape}."
        )
    return arr


def _constant_within(values: np.ndarray, seg_starts: np.ndarray, name: str, what: str,
                     ids: np.ndarray) -> np.ndarray:
    """First value of each segment, after checking the values are constant within it."""
    v = values.reshape(values.shape[0], -1)
    lo = np.minimum.reduceat(v, seg_starts, axis=0)
    hi = np.maximum.reduceat(v, seg_starts, axis=0)
    bad = np.flatnonzero(np.any(lo != hi, axis=1))
    if bad.size:
        raise ValueError(
            f"{name} must be constant within each {what}; {what} {_show(ids[bad[0]])} has "
            f"different values ({bad.size} {what}(s) in all). Give one value per {what}."
        )
    first = v[seg_starts]
    return first.reshape((seg_starts.shape[0],) + values.shape[1:])


def prepare_choice_data(
    X: Any,
    chosen: Any,
    situations: Any,
    *,
    groups: Any = None,
    covariates: Any = None,
    sample_weight: Any = None,
    n_features: int | None = None,
    n_covariates: int | None = None,
) -> ChoiceData:
    """Validate long-format choice data and sort it by (group, situation).

    Parameters
    ----------
    X, chosen, situations, groups, covariates, sample_weight
        See the module docstring and :meth:`softmix.LatentClassLogit.fit`.
    n_features, n_covariates : int, optional
        Required column counts (those seen in fit, for scoring new data).

    Returns
    -------
    ChoiceData

    Raises
    ------
    ValueError, TypeError
        With the argument named: shapes, NaN, ``chosen`` not 0/1, a situation without exactly
        one chosen alternative (its id is named), ``groups`` varying within a situation,
        covariates or weights varying within a group, negative weights.
    """
    X = check_array(X, "X", ndim=2)
    n_rows = X.shape[0]
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"X must have {n_features} columns (the attributes seen in fit), got shape {X.shape}."
        )
    if X.shape[1] < 1:
        raise ValueError(f"X must have at least one attribute column, got shape {X.shape}.")
    chosen = check_array(chosen, "chosen", ndim=1, dtype=None)
    if chosen.shape[0] != n_rows:
        raise ValueError(
            f"chosen must have shape (n_rows,) = ({n_rows},), got shape {chosen.shape}."
        )
    if chosen.dtype.kind not in "biuf" or not np.all((chosen == 0) | (chosen == 1)):
        raise ValueError(
            "chosen must be 0/1 (or boolean): 1 marks the chosen alternative of its situation; "
            f"got values {np.unique(chosen)[:5]}."
        )
    chosen = chosen.astype(bool)
    sit_ids_row = _ids(situations, "situations", n_rows)
    s_code, situation_ids = encode_groups(sit_ids_row)
    n_sit = situation_ids.shape[0]

    per_sit = np.bincount(s_code, weights=chosen.astype(float), minlength=n_sit)
    bad = np.flatnonzero(per_sit != 1)
    if bad.size:
        s = bad[0]
        raise ValueError(
            f"chosen must mark exactly one alternative per situation; situation "
            f"{_show(situation_ids[s])} has {int(per_sit[s])} chosen ({bad.size} situation(s) in "
            "all). Fix or drop those situations."
        )

    # sort by situation first, to check that groups are constant within situations
    order = np.argsort(s_code, kind="stable")
    sit_starts = np.flatnonzero(np.r_[True, np.diff(s_code[order]) != 0])
    if groups is not None:
        g_ids_row = _ids(groups, "groups", n_rows)
        g_code_row, group_ids = encode_groups(g_ids_row)
        g_of_sit = _constant_within(g_code_row[order], sit_starts, "groups", "situation",
                                    situation_ids)
        # situations of a group contiguous: sort rows by (group of situation, situation)
        order = np.lexsort((s_code, g_of_sit[s_code]))
        # re-code situations in the new order so codes are non-decreasing
        sit_order = np.lexsort((np.arange(n_sit), g_of_sit))
        new_code = np.empty(n_sit, dtype=np.int64)
        new_code[sit_order] = np.arange(n_sit)
        s_code = new_code[s_code]
        situation_ids = situation_ids[sit_order]
        situation_group = g_of_sit[sit_order]
    else:
        group_ids = situation_ids
        situation_group = np.arange(n_sit, dtype=np.int64)
    row_situation = s_code[order]
    starts = np.flatnonzero(np.r_[True, np.diff(row_situation) != 0])
    group_starts = np.flatnonzero(np.r_[True, np.diff(situation_group) != 0])
    row_starts_group = starts[group_starts]
    what = "group" if groups is not None else "situation"

    Xs = np.ascontiguousarray(X[order])
    chosen_rows = np.flatnonzero(chosen[order])

    Z = None
    if covariates is not None:
        cov = _per_row(covariates, "covariates", n_rows, ndim=2)[order]
        if n_covariates is not None and cov.shape[1] != n_covariates:
            raise ValueError(
                f"covariates must have {n_covariates} columns (as in fit), got {cov.shape[1]}."
            )
        Z = _constant_within(cov, row_starts_group, "covariates", what, group_ids)
        if Z.shape[1] == 0:
            Z = None
    elif n_covariates:
        raise ValueError(
            f"covariates is required: the model was fit with {n_covariates} membership "
            "covariate(s); pass them (one row per row of X)."
        )
    w = None
    if sample_weight is not None:
        sw = _per_row(sample_weight, "sample_weight", n_rows, ndim=1)[order]
        if np.any(sw < 0):
            raise ValueError("sample_weight must be non-negative; got negative weights.")
        w = _constant_within(sw, row_starts_group, "sample_weight", what, group_ids)
        if not np.any(w > 0):
            raise ValueError("sample_weight must not be all zero.")
    return ChoiceData(Xs, starts, row_situation, chosen_rows, group_starts, situation_group,
                      Z, w, order, situation_ids, group_ids, groups is not None)


def check_identified(data: ChoiceData) -> None:
    """Raise when an attribute combination is constant within every situation.

    Such a direction ``c`` (e.g. a constant column, or a person's age without an interaction)
    cancels in every conditional-logit probability, so the class coefficients are not
    identified along it.
    """
    X = data.X
    sums = np.add.reduceat(X, data.starts, axis=0)
    sizes = np.diff(np.r_[data.starts, data.n_rows])
    centred = X - (sums / sizes[:, None])[data.row_situation]
    sv = np.linalg.svd(centred, compute_uv=False) if data.n_rows >= X.shape[1] else None
    scale = float(np.max(np.abs(centred))) if centred.size else 0.0
    flat = [j for j in range(X.shape[1]) if np.all(centred[:, j] == 0)]
    if flat:
        raise ValueError(
            f"X column(s) {flat} are constant within every situation: their coefficients are "
            "not identified in a conditional logit. Drop them, or interact them with "
            "alternative-specific columns (and put person-level variables in covariates)."
        )
    if sv is None or scale == 0 or sv[-1] <= 1e-10 * sv[0]:
        raise ValueError(
            "the columns of X are collinear within situations (some combination of attributes "
            "is constant in every situation), so the coefficients are not identified; drop a "
            "redundant column."
        )
