"""Observed-data Newton steps for a softmax-mixture fit whose EM has become slow.

EM converges linearly, at the rate of the fraction of missing information. Where the classes
overlap strongly that rate is close to 1 and EM crawls: on MiniLM's word embeddings (K = 2, one
class on a face of ~365 function words) the log-likelihood still rose by ~3e-4 nats per SQUAREM
cycle after 150 cycles, with the stop rule at 6.5e-5 nats, while four Newton steps on the
observed log-likelihood gained the remaining 0.025 nats and brought the Newton decrement to
1e-14 (2 s each; ``benchmarks/bench_smm_vocabulary.py``).

:class:`SlowMonitor` is a callback for :func:`softmix.core.em.run_em` that watches the
log-likelihood's gains; when they shrink slower than :data:`SLOW_RATIO` over
:data:`SLOW_WINDOW` iterations, and EM at that rate would need more iterations than a polish
costs (``SlowMonitor._worth_it``), it runs :func:`newton_polish` (when the dense observed
information is affordable, :data:`POLISH_MAX_PARAMETERS`) and, if that raised the likelihood,
asks the caller to continue EM from the polished point, where EM's own stop rule then judges
convergence. Each Newton step uses the analytic Hessian of
:class:`~softmix.softmax_mixture.likelihood.SoftmaxMixtureLikelihood` on its positive-curvature
eigenspace (directions without curvature, such as the normal of a face a component sits on,
are left alone) and a backtracking line search, so every accepted step raises the likelihood.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import numpy as np

from softmix.core import xp as _xp
from softmix.softmax_mixture.design import Design
from softmix.softmax_mixture.model import SoftmaxMixtureParams

__all__ = ["POLISH_MAX_PARAMETERS", "SlowMonitor", "newton_polish"]

#: [chosen] Largest number of free parameters ``K - 1 + K r`` for which the dense observed
#: information is formed (its eigendecomposition is then well under a second).
POLISH_MAX_PARAMETERS = 2000
#: [chosen] Largest ``p x P`` (per-alternative scores the Hessian is built from, float64: 400 MB).
POLISH_MAX_ENTRIES = 50_000_000
#: [chosen] EM is *slow* when the log-likelihood gain over the last :data:`SLOW_WINDOW`
#: iterations is more than :data:`SLOW_RATIO` of the gain over the window before (a linear rate
#: above 0.5^(1/10) = 0.93 per iteration), after at least ``3 * SLOW_WINDOW`` iterations.
SLOW_WINDOW = 10
SLOW_RATIO = 0.5
#: [chosen] Newton steps per polish and polishes per fit.
_POLISH_STEPS = 10
_MAX_POLISHES = 3
#: [chosen] Eigenvalues of the observed information below this fraction of the largest are
#: treated as no curvature. [measured] On the MiniLM fit the 20 directions normal to a
#: component's face had |eigenvalue| ~1e-12 = 7e-18 of the largest (round-off), the smallest
#: real ones 1.5e-7.
_CURVATURE_RTOL = 1e-13
#: [chosen, measured] Only in EM's asymptotic phase: a gain per iteration of at most this
#: fraction of |log-likelihood| (scale-free). [measured] On MiniLM (seeds 0 and 1) a polish at
#: ~9 nats per cycle (1.4e-6 of |l|) moved to a stationary point 5.6 and 46 nats below where EM
#: alone went on to.
_ASYMPTOTIC = 1e-7
_MAX_HALVINGS = 30


def polish_affordable(design: Design, n_components: int) -> bool:
    """True when :func:`newton_polish` may run: a float64 design (any array namespace: the
    polish works on a host copy, affordable at these sizes) and a dense observed information of
    at most :data:`POLISH_MAX_PARAMETERS` parameters and :data:`POLISH_MAX_ENTRIES` score
    entries."""
    size = n_components - 1 + n_components * design.n_working
    return (design.dtype == np.float64
            and size <= POLISH_MAX_PARAMETERS
            and design.n_alternatives * size <= POLISH_MAX_ENTRIES)


def newton_polish(features: np.ndarray, counts: np.ndarray, params: SoftmaxMixtureParams,
                  *, tol: float, max_steps: int = _POLISH_STEPS) -> tuple[SoftmaxMixtureParams,
                                                                           dict]:
    """Damped Newton steps on the observed log-likelihood from ``params`` (user coordinates).

    Each step: the score ``g`` and the analytic Hessian ``H``, the eigendecomposition of
    ``-H``, the Newton direction on its eigenvectors with eigenvalue above
    ``_CURVATURE_RTOL`` times the largest, and halving from the full step until the
    log-likelihood rises. Stops when the predicted gain ``g' (-H)^+ g / 2`` is at most
    ``tol / 10`` nats, when no halving rises, or after ``max_steps`` steps.

    Returns
    -------
    (params, info)
        The last accepted parameters and ``{"steps", "gain", "decrement", "negative"}``: steps
        taken, nats gained, the last predicted gain, and how many eigenvalues of ``-H`` were
        clearly negative at the start (a saddle when > 0).
    """
    from softmix.softmax_mixture.likelihood import SoftmaxMixtureLikelihood

    lik = SoftmaxMixtureLikelihood(features, counts, params.n_components)
    theta = lik.to_vector(params)
    value = lik.loglik(theta)
    start = value
    info = {"steps": 0, "gain": 0.0, "decrement": float("nan"), "negative": 0}
    for step in range(max_steps):
        grad = lik.score(theta)
        lam, vec = np.linalg.eigh(-lik.hessian(theta))
        top = float(np.max(np.abs(lam))) if lam.size else 0.0
        keep = lam > _CURVATURE_RTOL * top
        if step == 0:
            info["negative"] = int(np.sum(lam < -_CURVATURE_RTOL * top))
        gv = vec[:, keep].T @ grad
        predicted = 0.5 * float(gv @ (gv / lam[keep]))
        info["decrement"] = predicted
        if not np.isfinite(predicted) or predicted <= tol / 10.0:
            break
        direction = vec[:, keep] @ (gv / lam[keep])
        size = 1.0
        for _ in range(_MAX_HALVINGS):
            trial = lik.loglik(theta + size * direction)
            if trial > value:
                break
            size /= 2.0
        else:
            break
        theta, value = theta + size * direction, trial
        info["steps"] = step + 1
    info["gain"] = value - start
    return lik.from_vector(theta), info


@functools.cache
def _product_rate() -> float:
    """Flops per second of one 512 x 512 float64 matrix product on this machine (measured
    once per process, best of 3)."""
    a = np.random.default_rng(0).standard_normal((512, 512))
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t0)
    return 2.0 * 512**3 / max(best, 1e-9)


@dataclass
class SlowMonitor:
    """The callback that polishes a slow EM fit by Newton steps (see the module doc).

    ``monitor(iteration, working_params, objective)`` returns True (stop this run) when it has
    polished parameters ready in :attr:`pending` (working coordinates), which the caller takes
    with :meth:`take` and continues EM from.

    Parameters
    ----------
    design : Design
    counts : ndarray of shape (p,)
    tol : float
        The fit's stop tolerance (nats).
    """

    design: Design
    counts: np.ndarray
    tol: float
    pending: SoftmaxMixtureParams | None = None
    polishes: list = field(default_factory=list)  # the info of each polish
    _values: list = field(default_factory=list)
    _times: list = field(default_factory=list)

    def __call__(self, iteration: int, params: SoftmaxMixtureParams, value: float) -> bool:
        if iteration == 0:
            self._values, self._times = [], []  # a new run (after a jump or a polish)
        self._values.append(float(value))
        self._times.append(time.perf_counter())
        w = SLOW_WINDOW
        if len(self.polishes) >= _MAX_POLISHES or len(self._values) < 3 * w + 1:
            return False
        v = self._values
        recent, before = v[-1] - v[-1 - w], v[-1 - w] - v[-1 - 2 * w]
        if not (before > 0 and recent > SLOW_RATIO * before):
            return False
        if not self._worth_it(recent, before, params.n_components):
            return False
        user = self.design.from_working(params)
        features = _xp.to_host(self.design.features)
        polished, info = newton_polish(features, self.counts, user, tol=self.tol)
        info["iteration"] = iteration
        self.polishes.append(info)
        self._values, self._times = [], []
        if info["gain"] <= 0:
            return False
        self.pending = self.design.to_working(polished)
        return True

    def _worth_it(self, recent: float, before: float, n_components: int) -> bool:
        """Whether EM at its current linear rate would take longer than a polish.

        EM's rate ``rho = (recent / before)^(1 / SLOW_WINDOW)`` and its gain per iteration
        ``g = recent / SLOW_WINDOW`` put the iterations left until a gain of ``tol`` at
        ``log(tol / g) / log(rho)`` (infinite when the gains are not shrinking), each taking the
        measured seconds per iteration of the last window. A Newton step costs ~``2 p P^2 +
        10 P^3`` flops (the Hessian's product of the per-alternative scores, the
        eigendecomposition), timed at this machine's matrix-product rate (one 512 x 512 product,
        measured once); a polish ~5 steps. Polish when EM's time left is larger, and only once
        EM is in its asymptotic phase (``g <= _ASYMPTOTIC |l|``).
        """
        ratio = recent / before
        per_iteration = recent / SLOW_WINDOW
        if per_iteration <= self.tol or per_iteration > _ASYMPTOTIC * abs(self._values[-1]):
            return False
        now = time.perf_counter()
        seconds_per_iteration = (now - self._times[-1 - SLOW_WINDOW]) / SLOW_WINDOW
        if ratio >= 1.0:
            left = np.inf
        else:
            left = np.log(self.tol / per_iteration) / (np.log(ratio) / SLOW_WINDOW)
        size = n_components - 1 + n_components * self.design.n_working
        flops = 2.0 * self.design.n_alternatives * size**2 + 10.0 * size**3
        return bool(left * seconds_per_iteration > 5.0 * flops / _product_rate())

    def take(self) -> SoftmaxMixtureParams:
        """The pending polished parameters; clears :attr:`pending`."""
        assert self.pending is not None
        out, self.pending = self.pending, None
        return out
