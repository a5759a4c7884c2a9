"""Components whose likelihood maximum lies at infinity, on a face of the design's convex hull.

A softmax component ``pi_j(theta) ~ exp(x_j' theta)`` can approach any distribution of the
closure of the family: a softmax restricted to a face ``F`` of the convex hull of the ``x_j``
(the alternatives that maximise ``x' d`` for some direction ``d``), reached as
``theta + t d``, ``t -> infinity``. In a mixture such a limit can be better than every finite
atom near it: on a real vocabulary (MiniLM's word embeddings with word frequencies as counts,
``benchmarks/bench_smm_vocabulary.py``) one of two components takes the ~360 most frequent
function words, fewer than L = 384, so the restricted softmax is a free distribution on them.
EM then creeps toward that limit for ever: each step gains less (the off-face mass decays like
``exp(-t gap)``), the atom's norm grows without bound and no stop rule is met, or an
arbitrary finite atom is reported.

This module finds such a face from a component's probabilities during the fit, proves it is a
face (an exact separating direction from a small linear programme), and gives EM the limit
directly: the atom is moved along ``d`` until the off-face alternatives are
:data:`FACE_JUMP_NATS` nats below the face (probability ratio ``e^-200``), after which EM maximises
within the face like any other component (the M-step's gradient along ``d`` is then zero to
float64 precision). A jump is taken only when it raises the log-likelihood, and the limit is
checked at the end to be a maximum along the face's normal (:func:`pullback_gain`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from softmix.core.special import logsumexp
from softmix.softmax_mixture.design import (
    FACE_LP_MAX_ENTRIES,
    FACE_LP_METHOD,
    Design,
    face_null_space,
    face_rows,
)
from softmix.softmax_mixture.model import SoftmaxMixtureParams

__all__ = ["FACE_JUMP_NATS", "Face", "FaceMonitor", "certify_face", "pullback_gain"]

#: [chosen] Score spread ``sd_j(z_j' theta_k)`` (nats; the atom without its earlier jumps) from
#: which a component is examined for a face; after a failed examination the next waits for a
#: spread 1.25x larger (so a legitimately peaked component costs a few examinations per fit).
#: Finite optima measured here have spreads of 2-4 nats (Zipfian word frequencies as one class);
#: the MiniLM component heading for its face passed 8 nats after ~30 EM cycles.
FACE_CHECK_SPREAD = 8.0
_FACE_CHECK_GROWTH = 1.25
#: [chosen] Candidate faces: the fewest most probable alternatives holding all but this much of
#: the component's mass, for each of these tail masses.
_FACE_TAILS = (1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 0.1)
#: [chosen, measured] A candidate is jumped to when it already holds all but this much of the
#: mass, or when the same candidate was found at the component's previous examination (it is
#: no longer shrinking). [measured] On MiniLM a jump to the set holding 1 - 1e-3 (340 tokens,
#: cycle 45, still shrinking) raised the likelihood at once but ended 110 nats below plain EM's
#: cycle 85: a sub-face that cut tokens the limit keeps.
_FACE_SETTLED_TAIL = 1e-6
#: [chosen] How far a jump moves the atom: the off-face alternatives end at least this many nats
#: below every face alternative (``e^-200 = 1.4e-87``: their probability is then below any
#: tolerance times any N, so the likelihood is that of the limit to float64 precision, while the
#: scores stay far from float64's range).
FACE_JUMP_NATS = 200.0
#: [chosen] Jumps per fit (nested faces: a face component can move to a face of its face).
MAX_FACE_JUMPS = 8
#: [chosen] Largest face LP (entries of its constraint matrix, (p - m) x dim N) tried while
#: fitting: the faces EM heads for on real designs are nearly full-dimensional (MiniLM: 360 of
#: 384 dimensions, an LP of 21,359 x 25 solved in 0.5 s); a small candidate's LP (dim N ~ 300)
#: took 20 s there and is skipped.
FACE_LP_FIT_ENTRIES = 2_000_000
#: [chosen] Off-face masses at which :func:`pullback_gain` evaluates the likelihood.
_PULLBACK_MASSES = (1e-8, 1e-5, 1e-3)


@dataclass
class Face:
    """A component at the limit on a face of the convex hull of the design.

    Attributes
    ----------
    component : int
    index : ndarray of int
        The face's alternatives (sorted row indices of the design).
    direction : ndarray of shape (r,)
        Working direction ``d`` certifying the face: ``z_j' d`` is the same on the face and at
        least 1 lower on every other alternative.
    gap : float
        ``min`` over the other alternatives of that drop (>= 1 up to the LP's tolerance).
    """

    component: int
    index: np.ndarray
    direction: np.ndarray
    gap: float


def certify_face(design: Design, index: np.ndarray,
                 max_entries: int = FACE_LP_MAX_ENTRIES) -> tuple[np.ndarray, float] | None:
    """A direction proving that the alternatives ``index`` form a face, or None.

    ``d`` with ``z_j' d = h`` for every j in ``index`` and ``z_l' d <= h - 1`` for every other
    alternative, found in the null space ``N`` of the face's own differences (``d = N u``, so the
    first condition holds by construction) by a linear programme in ``u`` (scipy's HiGHS, one
    row per other alternative, ``dim N`` variables). None when the alternatives affinely span
    the working space, when no such ``d`` exists (they are not a face), or when the LP would be
    larger than ``max_entries`` (default
    :data:`~softmix.softmax_mixture.design.FACE_LP_MAX_ENTRIES`).

    Returns
    -------
    (d, gap) : (ndarray of shape (r,), float) or None
        ``gap = h - max_l z_l' d`` over the other alternatives.
    """
    from scipy.optimize import linprog

    index = np.asarray(index)
    r, p = design.n_working, design.n_alternatives
    if index.size == 0 or index.size >= p or index.size * r > FACE_LP_MAX_ENTRIES:
        return None
    if index.size > r:  # a spread subset that affinely spans: no face (an O(r^3) check)
        pick = index[np.unique(np.linspace(0, index.size - 1, 2 * r + 1).astype(int))]
        sub = design.sample_working(np.eye(r), pick)
        sv = np.linalg.svd(sub[1:] - sub[0], compute_uv=False)
        if sv.size >= r and sv[r - 1] > 1e-9 * sv[0]:
            return None
    zf, null = face_null_space(design, index)  # (m, r) working rows of the face, (r, n0)
    n0 = null.shape[1]
    if n0 == 0 or (p - index.size) * n0 > max_entries:
        return None
    rows = face_rows(design, index, zf, null)  # (p - m, n0)
    level = zf[0] @ null  # (n0,): z_f' N, the same for every face row
    res = linprog(np.zeros(n0), A_ub=rows, b_ub=-np.ones(rows.shape[0]),
                  bounds=[(None, None)] * n0, method=FACE_LP_METHOD)
    if res.status != 0:
        return None
    d = null @ np.asarray(res.x)
    on = zf @ d
    gap = float(on.min() - np.max(rows @ res.x + level @ res.x))
    if not gap > 0 or float(np.ptp(on)) > 1e-6 * gap:
        return None
    return d, gap


def _log_probs(design: Design, atom: np.ndarray) -> np.ndarray:
    scores = design.scores(np.asarray(atom, dtype=float)[None, :])[0]
    return scores - logsumexp(scores)


@dataclass
class FaceMonitor:
    """The callback that watches a fit for components heading to a face (see the module doc).

    Called as ``monitor(iteration, working_params, objective)`` by
    :func:`softmix.core.em.run_em`; returns True (stop this run) when it has a jump ready in
    :attr:`pending` (``(jumped_params, Face)``), which the caller takes with :meth:`take` and
    continues EM from.

    Parameters
    ----------
    design : Design
    objective : callable
        ``objective(working_params) -> float``, the log-likelihood (the EM map's).
    """

    design: Design
    objective: Callable[[SoftmaxMixtureParams], float]
    faces: dict = field(default_factory=dict)  # component -> its latest Face
    pending: tuple | None = None
    n_jumps: int = 0
    disabled: set = field(default_factory=set)
    _threshold: dict = field(default_factory=dict)
    _seen: dict = field(default_factory=dict)  # component -> candidate sets at its last check
    _anchor: dict = field(default_factory=dict)  # face component -> its atom after the jump

    def _spread(self, params: SoftmaxMixtureParams) -> np.ndarray:
        # a face component's spread is measured from its atom just after the jump: what grows
        # again is a drift within the face (toward a face of the face)
        atoms = np.array(params.atoms, dtype=float)
        for k, anchor in self._anchor.items():
            atoms[k] = atoms[k] - anchor
        return np.sqrt(np.sum(self.design.variances * atoms**2, axis=1))

    def __call__(self, iteration: int, params: SoftmaxMixtureParams, value: float) -> bool:
        if self.n_jumps >= MAX_FACE_JUMPS:
            return False
        spread = self._spread(params)
        live = np.asarray(params.weights) > 0
        for k in map(int, np.flatnonzero(live)):
            if k in self.disabled or spread[k] <= self._threshold.get(k, FACE_CHECK_SPREAD):
                continue
            found = self.jump(params, k, float(value))
            if found is not None:
                self.pending = found
                return True
            self._threshold[k] = _FACE_CHECK_GROWTH * float(spread[k])
        return False

    def jump(self, params: SoftmaxMixtureParams, k: int,
             value: float) -> tuple[SoftmaxMixtureParams, Face] | None:
        """A log-likelihood-raising jump of component ``k`` to a certified face of its most
        probable alternatives (the largest such face), or None."""
        design = self.design
        atoms = np.asarray(params.atoms, dtype=float)
        logp = _log_probs(design, atoms[k])
        order = np.argsort(-logp)
        # log mass of the alternatives from sorted position i on
        tail = np.logaddexp.accumulate(logp[order][::-1])[::-1]
        sizes: dict[int, float] = {}
        for delta in _FACE_TAILS:
            below = np.flatnonzero(tail < np.log(delta))
            m = int(below[0]) if below.size else 0
            if 0 < m < design.n_alternatives and m not in sizes:
                sizes[m] = delta
        seen, self._seen[k] = self._seen.get(k, set()), set()
        for m, delta in sizes.items():  # the largest face (least mass cut, smallest LP) first
            index = np.sort(order[:m])
            key = hash(index.tobytes())
            self._seen[k].add(key)
            if delta > _FACE_SETTLED_TAIL and key not in seen:
                continue  # still shrinking: wait for the next examination
            certified = certify_face(design, index, FACE_LP_FIT_ENTRIES)
            if certified is None:
                continue
            d, gap = certified
            moved = atoms.copy()
            moved[k] = moved[k] + (FACE_JUMP_NATS / gap) * d
            jumped = SoftmaxMixtureParams._from_em(np.asarray(params.weights), moved)
            if float(self.objective(jumped)) > value:
                return jumped, Face(k, index, d, gap)
        return None

    def take(self) -> SoftmaxMixtureParams:
        """The pending jumped parameters (recording the face); clears :attr:`pending`."""
        assert self.pending is not None
        jumped, face = self.pending
        self.faces[face.component] = face  # a face of a face replaces the face
        self._threshold.pop(face.component, None)
        self._seen.pop(face.component, None)
        self._anchor[face.component] = np.array(jumped.atoms[face.component], dtype=float)
        self.pending = None
        self.n_jumps += 1
        return jumped


def pullback_gain(design: Design, objective: Callable[[SoftmaxMixtureParams], float],
                  params: SoftmaxMixtureParams,
                  face: Face) -> tuple[float, SoftmaxMixtureParams | None]:
    """Largest log-likelihood gain from moving a face component back off its face, and where.

    The atom is moved back along ``-d`` until the off-face alternatives hold
    :data:`_PULLBACK_MASSES` of the component's mass; the limit is a maximum along the face's
    normal when no such point is better (gain <= 0). Returns ``(gain, best_point_or_None)``.
    """
    atoms = np.asarray(params.atoms, dtype=float)
    k, d = face.component, face.direction
    base = float(objective(params))
    scores_d = design.scores(d[None, :])[0]
    top = float(scores_d[face.index].max())
    off = np.ones(design.n_alternatives, dtype=bool)
    off[face.index] = False
    logp = _log_probs(design, atoms[k])
    best_gain, best = -np.inf, None
    for mass in _PULLBACK_MASSES:
        # moving by -s d raises the off-face log-probabilities by s (top - z_l'd) >= s gap:
        # bisect s for the off-face mass (monotone in s)
        lo, hi = 0.0, FACE_JUMP_NATS * 4.0 / face.gap
        for _ in range(60):
            s = 0.5 * (lo + hi)
            shifted = logp + s * (top - scores_d)
            shifted[~off] = logp[~off]
            lm = float(logsumexp(shifted[off]) - logsumexp(shifted))
            lo, hi = (s, hi) if lm < np.log(mass) else (lo, s)
        moved = atoms.copy()
        moved[k] = moved[k] - 0.5 * (lo + hi) * d
        point = SoftmaxMixtureParams._from_em(np.asarray(params.weights), moved)
        gain = float(objective(point)) - base
        if gain > best_gain:
            best_gain, best = gain, point
    return best_gain, best
