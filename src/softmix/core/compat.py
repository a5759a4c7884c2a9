"""Keyword renames between the oldest SciPy softmix supports (the floor in pyproject.toml) and
the newest, in one place. Each wrapper calls the new keyword when the installed SciPy has it
and the old one otherwise; the numbers are the same (the old keyword takes the same value)."""

from __future__ import annotations

import inspect

import numpy as np
from scipy.cluster import vq as _vq
from scipy.sparse import linalg as _sparse_linalg

__all__ = ["cg", "kmeans2"]

# SciPy 1.12 renamed cg(tol=) to cg(rtol=) (same meaning: relative residual tolerance).
_CG_RTOL = "rtol" in inspect.signature(_sparse_linalg.cg).parameters
# SciPy 1.15 added kmeans2(rng=); before it the same Generator was passed as seed=.
_KMEANS2_RNG = "rng" in inspect.signature(_vq.kmeans2).parameters


def cg(op, b: np.ndarray, *, rtol: float, maxiter: int):
    """:func:`scipy.sparse.linalg.cg` with ``rtol`` on every supported SciPy (``tol`` < 1.12)."""
    if _CG_RTOL:
        return _sparse_linalg.cg(op, b, rtol=rtol, maxiter=maxiter)
    return _sparse_linalg.cg(op, b, tol=rtol, maxiter=maxiter, atol=0.0)


def kmeans2(data: np.ndarray, k: int, *, minit: str, rng: np.random.Generator):
    """:func:`scipy.cluster.vq.kmeans2` drawing from ``rng`` on every supported SciPy
    (``seed=`` before 1.15)."""
    if _KMEANS2_RNG:
        return _vq.kmeans2(data, k, minit=minit, rng=rng)
    return _vq.kmeans2(data, k, minit=minit, seed=rng)
