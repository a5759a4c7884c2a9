"""Random restarts: ``n_init`` runs on spawned generators, keep the best, keep every score;
optionally screened (every start stopped early, only the most promising continued)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from softmix.core.result import FitResult, chain

__all__ = ["SCREEN_KEEP", "Screen", "fit_with_restarts", "spawn"]


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


#: [measured] How many screened starts a :class:`Screen` continues by default. On MiniLM's
#: word embeddings (benchmarks/RESULTS.md, section 14, "Starts") the ranking after a dozen
#: cycles picks out the best basin but not always the best point within it.
SCREEN_KEEP = 2


@dataclass(frozen=True)
class Screen:
    """How :func:`fit_with_restarts` screens its starts: ``start(child)`` is a short run (at
    most ``n_iter`` iterations, not warning about its early end) and ``resume(result)``
    continues it from ``result.params`` with what is left of the budget (warning as a whole
    run does). ``keep`` starts are continued."""

    n_iter: int
    start: Callable[[np.random.Generator], FitResult]
    resume: Callable[[FitResult], FitResult]
    keep: int = SCREEN_KEEP


def fit_with_restarts(
    fit_one: Callable[[np.random.Generator], FitResult],
    n_init: int,
    rng: np.random.Generator,
    *,
    screen: Screen | None = None,
) -> FitResult:
    """Run ``fit_one(child_rng)`` ``n_init`` times and return the best result.

    The best is the largest final objective; ties keep the first. Warnings of the losing runs
    are dropped, the winner's are re-emitted. ``result.all_objectives`` holds every run's final
    objective, in run order.

    With ``screen`` (and ``n_init > screen.keep``): every start is first a short run,
    ``screen.start(child)``; the ``screen.keep`` best (largest objective, NaN last, ties to the
    earlier start) are continued by ``screen.resume`` (also one that already stopped, so that
    the returned diagnostics come from a whole run; not one the user's callback stopped), and
    the best continued run is returned, its history and iterations joined to its screen's
    (:func:`softmix.core.result.chain`). Its warnings are its screen's (e.g. about its start)
    and its continuation's. ``all_objectives`` then holds each start's objective where its run
    ended (after the screen for the starts not continued); ``result.extra["screen"]`` is
    ``{"n_init", "n_iter", "screened_objectives" (after the screen, start order), "continued"
    (start indices, best after the screen first)}``.
    """
    if screen is not None and n_init > screen.keep:
        return _screened(screen, n_init, rng)
    results = [_recorded(fit_one, child) for child in spawn(rng, n_init)]
    objectives = np.array([r.objective for r, _ in results])
    best = int(np.argmax(objectives))
    result, caught = results[best]
    _reemit(caught)
    result.all_objectives = objectives
    return result


def _screened(screen: Screen, n_init: int, rng: np.random.Generator) -> FitResult:
    screened = [_recorded(screen.start, child) for child in spawn(rng, n_init)]
    values = np.array([r.objective for r, _ in screened], dtype=float)
    ranked = np.argsort([-_finite_or_minus_inf(v) for v in values], kind="stable")
    continued = [int(i) for i in ranked[:max(1, screen.keep)]]
    finals = {}
    for i in continued:
        first, caught_first = screened[i]
        if first.stop_reason == "callback":
            finals[i] = (first, caught_first)
            continue
        nxt, caught = _recorded(screen.resume, first)
        nxt.history = nxt.history[1:]  # its start is where the screen ended
        finals[i] = (chain(first, nxt), caught_first + caught)
    best = max(continued, key=lambda i: (_finite_or_minus_inf(finals[i][0].objective),
                                         -continued.index(i)))
    result, caught = finals[best]
    _reemit(caught)
    all_objectives = values.copy()
    for i in continued:
        all_objectives[i] = finals[i][0].objective
    result.all_objectives = all_objectives
    result.init_method = screened[best][0].init_method
    result.extra["screen"] = {"n_init": n_init, "n_iter": screen.n_iter,
                              "screened_objectives": values.tolist(), "continued": continued}
    return result


def _recorded(run: Callable, arg) -> tuple[FitResult, list]:
    """``run(arg)`` with its warnings recorded instead of shown."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run(arg)
    return result, list(caught)


def _finite_or_minus_inf(value: float) -> float:
    """NaN ranks last."""
    return -np.inf if np.isnan(value) else float(value)


def _reemit(caught: list) -> None:
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
