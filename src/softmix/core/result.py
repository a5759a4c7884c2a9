"""The result every softmix optimiser returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["STOP_REASONS", "FitResult", "chain"]

#: Why a fit stopped.
#: ``"tol"``: relative objective change <= tol; ``"param_tol"``: parameter change <= param_tol;
#: ``"max_iter"``: the iteration budget ran out (a ConvergenceWarning is issued, unless
#: ``tol=0``, which asks for exactly ``max_iter`` iterations);
#: ``"non_finite"``: the objective became NaN/inf; the last finite iterate is returned;
#: ``"init"``: ``max_iter=0``, the initialisation itself is returned;
#: ``"callback"``: the user's callback asked to stop;
#: ``"not_stationary"``: a first-order method (GD, gradient EM) met the objective tolerance but
#: its gradient is far from zero (a small step changes the objective little anywhere); not
#: converged, a ConvergenceWarning is issued;
#: ``"no_mle"``: the likelihood has no maximum (e.g. softmax-mixture counts on a face of the
#: design's convex hull: the atoms diverge); not converged, a warning names the remedy;
#: ``"saddle"``: a stationary point with coincident components that perturbation did not leave;
#: not converged, a ConvergenceWarning is issued.
STOP_REASONS = ("tol", "param_tol", "max_iter", "non_finite", "init", "callback",
                "not_stationary", "no_mle", "saddle")


@dataclass
class FitResult:
    """Outcome of one optimisation run.

    Attributes
    ----------
    params : object
        Final parameters (a frozen model-specific dataclass).
    objective : float
        Objective at ``params`` (a log-likelihood: larger is better).
    converged : bool
        True when the stop reason is a tolerance (``"tol"`` or ``"param_tol"``).
    n_iter : int
        Number of iterations done: EM-map evaluations for plain EM, SQUAREM cycles (up to three
        maps each, counted in ``extra["n_map_evals"]``) with ``accelerate="squarem"``.
    stop_reason : str
        One of :data:`STOP_REASONS`.
    history : ndarray of shape (n_iter + 1,)
        Objective at the start and after every iteration.
    init_method : str
        Name of the initialisation that produced the start.
    seconds : float
        Wall-clock time of the run (initialisation excluded).
    n_decreases : int
        Iterations where the objective went down by more than round-off (0 for exact EM).
    all_objectives : ndarray or None
        Final objective of every restart when the result comes from
        :func:`~softmix.core.restarts.fit_with_restarts` (with a screen: where each start's run
        ended, after the screen for the starts not continued).
    criterion : str
        Name of the stationarity criterion that judged convergence: ``"relative_change"``
        (``|l_t - l_{t-1}| / max(1, |l_t|)``, models without a stationarity function), or a
        scale-free one supplied by the model through :func:`softmix.core.em.run_em`'s
        ``stationarity`` hook, such as the softmax mixture's ``"newton_decrement"``: the
        log-likelihood one exact M-step is predicted to gain, in nats, which means the same
        at N = 1e3 and N = 1e10.
    criterion_value : float
        Its value at ``params`` (NaN where not computed; for ``"relative_change"`` the last
        change).
    extra : dict
        Anything model-specific (e.g. per-iteration parameter traces for experiments).
    """

    params: Any
    objective: float
    converged: bool
    n_iter: int
    stop_reason: str
    history: np.ndarray
    init_method: str = "given"
    seconds: float = 0.0
    n_decreases: int = 0
    all_objectives: np.ndarray | None = None
    criterion: str = "relative_change"
    criterion_value: float = float("nan")
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.stop_reason not in STOP_REASONS:
            raise ValueError(f"stop_reason must be one of {STOP_REASONS}, got {self.stop_reason!r}")
        self.history = np.asarray(self.history, dtype=float)


def chain(result: FitResult, nxt: FitResult, extra_iterations: int = 0) -> FitResult:
    """``nxt``, a run continued from (a modification of) ``result``'s parameters, as the
    continuation of ``result``: histories joined, iterations (plus ``extra_iterations`` for
    the modification itself), seconds, decreases and map evaluations added up, and
    ``result``'s ``extra`` entries that ``nxt`` lacks kept. Returns ``nxt``, updated."""
    nxt.history = np.concatenate([result.history, nxt.history])
    nxt.n_iter += result.n_iter + extra_iterations
    nxt.n_decreases += result.n_decreases
    nxt.seconds += result.seconds
    for key in ("n_map_evals", "n_fallbacks"):
        if key in result.extra and key in nxt.extra:
            nxt.extra[key] += result.extra[key]
    nxt.extra.update({k: v for k, v in result.extra.items() if k not in nxt.extra})
    return nxt
