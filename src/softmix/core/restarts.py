"""Random restarts: ``n_init`` runs on spawned generators, keep the best, keep every score."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from softmix.core.result import FitResult

__all__ = ["fit_with_restarts", "spawn"]


def spawn(rng: np.random.Generator, n: int) -> list[np.random.Generator]:
    """``n`` independent child generators of ``rng`` (reproducible, never a global seed).

    The same streams as ``rng.spawn(n)`` (NumPy >= 1.25) on every supported NumPy: before 1.25
    the children are built from the bit generator's ``_seed_seq`` the same way.
    """
    if hasattr(rng, "spawn"):
        return list(rng.spawn(n))
    bit_generator = rng.bit_generator
    seed_seq = getattr(bit_generator, "seed_seq", None) or bit_generator._seed_seq
    return [np.random.Generator(type(bit_generator)(s)) for s in seed_seq.spawn(n)]


def fit_with_restarts(
    fit_one: Callable[[np.random.Generator], FitResult],
    n_init: int,
    rng: np.random.Generator,
) -> FitResult:
    """Run ``fit_one(child_rng)`` ``n_init`` times and return the best result.

    The best is the largest final objective; ties keep the first. Warnings of the losing runs
    are dropped, the winner's are re-emitted. ``result.all_objectives`` holds every run's final
    objective, in run order.
    """
    results: list[tuple[FitResult, list]] = []
    for child in spawn(rng, n_init):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results.append((fit_one(child), caught))
    objectives = np.array([r.objective for r, _ in results])
    best = int(np.argmax(objectives))
    result, caught = results[best]
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    result.all_objectives = objectives
    return result
