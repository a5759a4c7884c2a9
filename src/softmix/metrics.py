"""Comparing fitted and true parameters: component matching (Hungarian), parameter errors,
Wasserstein-1 between mixing measures, Voronoi losses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from scipy import optimize

from softmix._validation import check_array, check_choice, check_float, check_int
from softmix.core.special import log_softmax, softmax

# ---------------------------------------------------------------------------------------------
# Voronoi losses for softmax-gated Gaussian mixtures of experts (Nguyen, Nguyen & Ho, 2023)
# ---------------------------------------------------------------------------------------------

#: rbar(m) for a Voronoi cell holding m >= 2 fitted atoms (Nguyen, Nguyen & Ho 2023, the
#: solvability exponents; the authors' code: ``rbar = [0, 1, 4, 6]``). Unknown for m >= 4.
VORONOI_RBAR: Mapping[int, float] = MappingProxyType({2: 4.0, 3: 6.0})

_MOE_KEYS = ("beta0", "beta1", "a", "b", "nu")


@dataclass(frozen=True, eq=False)
class VoronoiLoss:
    """A Voronoi loss between a fitted and a true Gaussian MoE, with its breakdown.

    ``float(loss)`` is :attr:`value`. Cells, masses and per-atom errors are measured in the
    gauge named by :attr:`gauge` and at the optimal translation (t0, t1) (zero without the
    infimum).

    Attributes
    ----------
    value : float
        The loss: ``parameter_term + mass_term``.
    kind : {"d1", "d2"}
        Exact-specified (D1) or over-specified (D2) loss.
    infimum : bool
        Whether the infimum over gating translations (t0, t1) was taken.
    gauge : {"mass", "reference"}
        The gauge both models were put in before the loss was computed.
    t0 : float
        Optimal translation of the true intercepts (``-inf`` when the infimum is only reached
        in the limit u = e^{t0} -> 0; 0.0 without the infimum).
    t1 : ndarray of shape (n_features,)
        Optimal translation of the true gating slopes.
    cell_of : ndarray of shape (n_experts,)
        Index j of the true expert whose Voronoi cell holds each fitted expert.
    cell_size : ndarray of shape (n_true_experts,)
        |A_j|, the number of fitted experts in each cell (0 for an empty cell).
    cell_exponent : ndarray of shape (n_true_experts,)
        The exponent rbar(|A_j|) applied to (beta1, b) in each cell (1 for D1 and for cells of
        one atom; ``nan`` for empty cells).
    cell_mass : ndarray of shape (n_true_experts,)
        S_j = sum_{i in A_j} exp(beta0_i).
    true_mass : ndarray of shape (n_true_experts,)
        exp(beta0*_j + t0).
    cell_loss : ndarray of shape (n_true_experts,)
        Each cell's share of the loss: its atoms' parameter terms plus |S_j - exp(beta0*_j + t0)|.
    parameter_term, mass_term : float
        The two parts of :attr:`value`.
    beta1_error, a_error, b_error, nu_error : ndarray of shape (n_experts,)
        Per fitted expert i in cell j: ||beta1_i - beta1*_j - t1||, ||a_i - a*_j||,
        |b_i - b*_j| and |nu_i - nu*_j| (unpowered). With :meth:`cell_errors` these give the
        per-parameter errors of redundant experts (cells with two or more atoms).
    """

    value: float
    kind: str
    infimum: bool
    gauge: str
    t0: float
    t1: np.ndarray
    cell_of: np.ndarray
    cell_size: np.ndarray
    cell_exponent: np.ndarray
    cell_mass: np.ndarray
    true_mass: np.ndarray
    cell_loss: np.ndarray
    parameter_term: float
    mass_term: float
    beta1_error: np.ndarray
    a_error: np.ndarray
    b_error: np.ndarray
    nu_error: np.ndarray

    def __float__(self) -> float:
        return float(self.value)

    def cell_errors(self) -> dict[str, np.ndarray]:
        """Worst per-parameter error within each cell.

        Returns
        -------
        dict of str to ndarray of shape (n_true_experts,)
            Keys ``"beta1"``, ``"a"``, ``"b"``, ``"nu"``: the largest error over the fitted
            experts of cell j (``nan`` for an empty cell), plus ``"size"`` (|A_j|). Section 4 of
            the spec predicts n^{-1/8} for beta1 and b and n^{-1/4} for a and nu in cells of two
            atoms of an over-specified MLE (n^{-1/12}, n^{-1/6} with three atoms).
        """
        k_true = self.cell_size.shape[0]
        out: dict[str, np.ndarray] = {"size": self.cell_size.copy()}
        for key, err in (("beta1", self.beta1_error), ("a", self.a_error),
                         ("b", self.b_error), ("nu", self.nu_error)):
            worst = np.full(k_true, np.nan)
            for j in range(k_true):
                members = err[self.cell_of == j]
                if members.size:
                    worst[j] = float(members.max())
            out[key] = worst
        return out


def _moe_arrays(model: Any, name: str) -> dict[str, np.ndarray]:
    """(beta0, beta1, a, b, nu) of a Gaussian MoE given as MoEParams, a mapping or a 5-sequence."""
    if all(hasattr(model, attr) for attr in ("gating", "expert_coef", "expert_variance")):
        if getattr(model, "expert", "gaussian") != "gaussian":
            raise ValueError(
                f"{name}: Voronoi losses are defined for Gaussian experts, got a MoEParams with "
                f"expert={model.expert!r}."
            )
        gating = check_array(model.gating, f"{name}.gating", ndim=2)
        coef = check_array(model.expert_coef, f"{name}.expert_coef", ndim=2)
        raw = {"beta0": gating[:, 0], "beta1": gating[:, 1:], "b": coef[:, 0],
               "a": coef[:, 1:], "nu": model.expert_variance}
    elif isinstance(model, Mapping):
        missing = [key for key in _MOE_KEYS if key not in model]
        if missing:
            raise ValueError(
                f"{name} is missing the key(s) {missing}; a Gaussian MoE given as a mapping needs "
                f"the keys {list(_MOE_KEYS)} (beta0 (k,), beta1 (k, d), a (k, d), b (k,), nu (k,))."
            )
        raw = {key: model[key] for key in _MOE_KEYS}
    elif isinstance(model, (tuple, list)) and len(model) == 5:
        raw = dict(zip(_MOE_KEYS, model))
    else:
        raise TypeError(
            f"{name} must be a softmix.moe.model.MoEParams, a mapping with keys "
            f"{list(_MOE_KEYS)}, or a sequence (beta0, beta1, a, b, nu); got "
            f"{type(model).__name__}."
        )
    out = {key: check_array(raw[key], f"{name}[{key!r}]", ndim=(1, 2) if key in ("beta1", "a")
                            else 1) for key in _MOE_KEYS}
    k = out["beta0"].shape[0]
    for key in ("beta1", "a"):
        if out[key].ndim == 1:  # d = 1 given as (k,)
            out[key] = out[key][:, None]
    d = out["beta1"].shape[1]
    expected = {"beta0": (k,), "beta1": (k, d), "a": (k, d), "b": (k,), "nu": (k,)}
    for key, shape in expected.items():
        if out[key].shape != shape:
            raise ValueError(
                f"{name}[{key!r}] must have shape {shape} (k = {k} experts from beta0, d = {d} "
                f"features from beta1), got {out[key].shape}. Give every array one row per expert."
            )
    if d < 1:
        raise ValueError(f"{name}: the gating slopes beta1 need at least one feature, got d = 0.")
    if np.any(out["nu"] <= 0):
        raise ValueError(
            f"{name}['nu'] must hold positive variances, got {out['nu'].tolist()}. Pass variances "
            "(sigma**2), not log-variances."
        )
    return out


def _in_gauge(m: dict[str, np.ndarray], gauge: str, name: str) -> dict[str, np.ndarray]:
    """Translate the gating (beta0, beta1) of one model into ``gauge``.

    ``"reference"``: subtract the last expert's (beta0, beta1) (the MoEParams and the authors'
    convention). ``"mass"``: beta0 -> beta0 - logsumexp(beta0), so the masses exp(beta0) sum to
    one, and beta1 -> beta1 - sum_i softmax(beta0)_i beta1_i (mass-weighted centre 0); this gauge
    does not depend on how the experts are labelled.
    """
    out = dict(m)
    if gauge == "reference":
        out["beta0"] = m["beta0"] - m["beta0"][-1]
        out["beta1"] = m["beta1"] - m["beta1"][-1]
        if out["beta0"].max() > 700.0:
            raise ValueError(
                f"{name}: gating intercepts relative to the last expert reach "
                f"{out['beta0'].max():.4g}, too large for exp() in the reference gauge. Use "
                "gauge='mass'."
            )
    else:
        out["beta0"] = log_softmax(m["beta0"])
        out["beta1"] = m["beta1"] - softmax(m["beta0"]) @ m["beta1"]
    return out


def _voronoi_t0(cell_mass: np.ndarray, true_mass: np.ndarray) -> tuple[float, float]:
    """Exact inf over u = e^{t0} > 0 of sum_j |S_j - m*_j u|.

    The objective is sum_j m*_j |S_j / m*_j - u|, piecewise linear and convex in u, so its
    minimiser over u >= 0 is the m*-weighted median of the ratios S_j / m*_j. When that median
    is 0 and no positive u does as well, the infimum over u > 0 is the limit u -> 0
    (t0 = -inf, value sum_j S_j).

    Returns
    -------
    t0 : float
        log u at the optimum (``-inf`` for the limit case).
    value : float
        The infimum.
    """
    ratio = cell_mass / true_mass
    order = np.argsort(ratio, kind="stable")
    cumulative = np.cumsum(true_mass[order])
    median = float(ratio[order][np.searchsorted(cumulative, 0.5 * cumulative[-1], side="left")])

    def objective(u: float) -> float:
        return float(np.abs(cell_mass - true_mass * u).sum())

    if median <= 0.0:
        positive = ratio[ratio > 0.0]
        smallest = float(positive.min())  # some cell is non-empty, so this exists
        if objective(smallest) <= objective(0.0):
            median = smallest
        else:
            return -np.inf, objective(0.0)
    return float(np.log(median)), objective(median)


def _voronoi_t1(
    delta: np.ndarray, weight: np.ndarray, power: np.ndarray
) -> tuple[np.ndarray, float]:
    """inf over t1 in R^d of f(t1) = sum_i weight_i ||delta_i - t1||^power_i (powers >= 1).

    f is convex; its minimiser lies in the convex hull of the delta_i. d = 1: bounded Brent on
    [min delta, max delta]; d > 1: Nelder-Mead. Either way the answer is compared with the
    candidates t1 = 0, every delta_i and the weighted mean, so the returned value is never above
    f(0) (the no-infimum value) and is exact at a kink (a weighted median when all powers are 1).

    Returns
    -------
    t1 : ndarray of shape (d,)
    value : float
    """
    d = delta.shape[1]

    def f(t: np.ndarray) -> float:
        return float(weight @ np.linalg.norm(delta - t, axis=1) ** power)

    candidates = [np.zeros(d), *delta, weight @ delta / weight.sum()]
    scale = max(1.0, float(np.abs(delta).max()))
    if d == 1:
        lo, hi = float(delta.min()), float(delta.max())
        if hi > lo:
            res = optimize.minimize_scalar(
                lambda s: f(np.array([s])), bounds=(lo, hi), method="bounded",
                options={"xatol": 1e-12 * scale, "maxiter": 500},
            )
            candidates.append(np.array([float(res.x)]))
    else:
        start = min(candidates, key=f)
        res = optimize.minimize(
            f, start, method="Nelder-Mead",
            options={"xatol": 1e-10 * scale, "fatol": 1e-14, "maxiter": 4000 * d,
                     "maxfev": 8000 * d},
        )
        candidates.append(np.asarray(res.x, dtype=float))
    values = [f(t) for t in candidates]
    best = int(np.argmin(values))
    return np.asarray(candidates[best], dtype=float), float(values[best])


def _check_rbar(rbar: Mapping[int, float] | None) -> dict[int, float]:
    table = dict(VORONOI_RBAR)
    if rbar is None:
        return table
    if not isinstance(rbar, Mapping):
        raise TypeError(
            f"rbar must be a mapping {{cell size m: exponent rbar(m)}}, e.g. {{4: 8.0}}, got "
            f"{type(rbar).__name__}."
        )
    for m, value in rbar.items():
        m = check_int(m, "rbar key (cell size m)", low=2)
        table[m] = check_float(value, f"rbar[{m}]", low=1.0)
    return table


def voronoi_loss(
    fitted: Any,
    true: Any,
    *,
    kind: str,
    infimum: bool = True,
    gauge: str | None = None,
    rbar: Mapping[int, float] | None = None,
) -> VoronoiLoss:
    """Voronoi loss D1 or D2 between a fitted and a true softmax-gated Gaussian MoE.

    Parameters
    ----------
    fitted, true : MoEParams, mapping or sequence
        Each model as a :class:`softmix.moe.model.MoEParams`, as a mapping with keys
        ``beta0`` (k,), ``beta1`` (k, d), ``a`` (k, d), ``b`` (k,), ``nu`` (k,) (gating
        intercepts and slopes, expert slopes and intercepts, expert variances; ``beta1`` and
        ``a`` may be (k,) when d = 1), or as the sequence ``(beta0, beta1, a, b, nu)``.
    kind : {"d1", "d2"}
        ``"d1"``: exact-specified loss, needs as many fitted as true experts. ``"d2"``:
        over-specified loss, needs at least as many fitted as true experts.
    infimum : bool, default=True
        Take the infimum over the gating translations (t0, t1) as the paper defines.
        ``False`` evaluates at t0 = t1 = 0: the authors' experiment code.
    gauge : {"mass", "reference"} or None, default=None
        Gauge both models are put in first. ``"mass"``: intercepts normalised so the masses
        exp(beta0) sum to one and slopes centred at their mass-weighted mean; independent of
        how experts are labelled and of any translation of either model. ``"reference"``: the
        last expert's gating subtracted (the authors' convention; depends on which expert is
        last). ``None``: ``"mass"`` with the infimum, ``"reference"`` without it, so
        ``infimum=False`` reproduces the authors' numbers.
    rbar : mapping of int to float, optional
        Exponents rbar(m) for D2 cells of m atoms, added to (and overriding) the known
        rbar(2) = 4, rbar(3) = 6. Needed when a cell holds 4 or more fitted atoms.

    Returns
    -------
    VoronoiLoss
        The value (``float(result)``) and its breakdown by cell and parameter.

    Raises
    ------
    ValueError
        Bad shapes, non-positive variances, a mismatch of the number of experts for ``kind``,
        different feature dimensions, or (D2) a cell of >= 4 atoms with no ``rbar`` for it.

    Notes
    -----
    Atoms omega_i = (beta1_i, a_i, b_i, nu_i) (beta0 excluded). Fitted expert i belongs to the
    Voronoi cell A_j of the true atom nearest in Euclidean distance (ties: lowest j); cells may
    be empty. With Delta beta1_ij = beta1_i - beta1*_j - t1, Delta a_ij, Delta b_ij, Delta nu_ij
    and S_j = sum_{i in A_j} exp(beta0_i)::

        D1 = inf_{t0,t1} sum_j [ sum_{i in A_j} e^{beta0_i} (||Dbeta1|| + ||Da|| + |Db| + |Dnu|)
                                 + |S_j - e^{beta0*_j + t0}| ]
        D2 = inf_{t0,t1} { sum_{j: |A_j| > 1} sum_{i in A_j} e^{beta0_i} (||Dbeta1||^r + |Db|^r
                              + ||Da||^{r/2} + |Dnu|^{r/2}),  r = rbar(|A_j|)
                           + sum_{j: |A_j| = 1} (as in D1) + sum_j |S_j - e^{beta0*_j + t0}| }

    The objective separates: t0 enters only the mass terms, solved exactly as a weighted median
    over u = e^{t0} > 0; t1 enters only the convex beta1 terms, minimised numerically (exactly
    at kinks; see ``_voronoi_t1``). Translations of either model's gating and relabelling of
    either model's experts leave the ``"mass"``-gauge loss with the infimum unchanged.

    Differences from the authors' code (``infimum=False`` otherwise matches it): cells use the
    Euclidean distance between whole atoms, as the paper defines them (their code sums the
    per-block norms; the two differ only near ties), and cell sizes are counted per true
    expert, so empty cells cannot misalign the exponents.

    Examples
    --------
    A redundant expert that splits the reference expert of the paper's model (same density):

    >>> import numpy as np
    >>> truth = dict(beta0=[-8.0, 0.0], beta1=[25.0, 0.0], a=[-20.0, 20.0], b=[15.0, -5.0],
    ...              nu=[0.09, 0.16])
    >>> split = dict(beta0=[-8.0 + np.log(2.0), 0.0, 0.0], beta1=[25.0, 0.0, 0.0],
    ...              a=[-20.0, 20.0, 20.0], b=[15.0, -5.0, -5.0], nu=[0.09, 0.16, 0.16])
    >>> round(voronoi_d2(split, truth), 12)                # the paper's loss
    0.0
    >>> round(voronoi_d2(split, truth, infimum=False), 4)  # stuck at |2 - 1|
    1.0003

    References
    ----------
    Nguyen, Nguyen & Ho (2023), "Demystifying Softmax Gating Function in Gaussian Mixture of
    Experts", NeurIPS; arXiv:2305.03288 (Voronoi losses; Theorems 1 and 2).
    """
    kind = check_choice(kind, "kind", ("d1", "d2"))
    if not isinstance(infimum, (bool, np.bool_)):
        raise TypeError(f"infimum must be True or False, got {type(infimum).__name__}.")
    if gauge is None:
        gauge = "mass" if infimum else "reference"
    gauge = check_choice(gauge, "gauge", ("mass", "reference"))
    table = _check_rbar(rbar) if kind == "d2" else {}
    fit = _in_gauge(_moe_arrays(fitted, "fitted"), gauge, "fitted")
    tru = _in_gauge(_moe_arrays(true, "true"), gauge, "true")
    k, k_true = fit["beta0"].shape[0], tru["beta0"].shape[0]
    d = fit["beta1"].shape[1]
    if tru["beta1"].shape[1] != d:
        raise ValueError(
            f"fitted and true models must have the same number of features d; got d = {d} "
            f"(fitted) and d = {tru['beta1'].shape[1]} (true)."
        )
    if kind == "d1" and k != k_true:
        raise ValueError(
            f"D1 is the exact-specified loss: it needs as many fitted experts as true ones, got "
            f"k = {k} fitted and k* = {k_true} true. Use kind='d2' (voronoi_d2) for k > k*."
        )
    if kind == "d2" and k < k_true:
        raise ValueError(
            f"D2 is the over-specified loss: it needs at least as many fitted experts as true "
            f"ones, got k = {k} fitted and k* = {k_true} true."
        )

    def atoms(m: dict[str, np.ndarray]) -> np.ndarray:
        return np.column_stack([m["beta1"], m["a"], m["b"], m["nu"]])

    dist = np.linalg.norm(atoms(fit)[:, None, :] - atoms(tru)[None, :, :], axis=2)
    cell_of = np.argmin(dist, axis=1)
    cell_size = np.bincount(cell_of, minlength=k_true)

    cell_exponent = np.where(cell_size > 0, 1.0, np.nan)
    if kind == "d2":
        for j in np.flatnonzero(cell_size > 1):
            m = int(cell_size[j])
            if m not in table:
                raise ValueError(
                    f"the Voronoi cell of true expert {j} holds m = {m} fitted experts, but "
                    f"rbar(m) is only known for m <= 3 (rbar(2) = 4, rbar(3) = 6; Nguyen, "
                    f"Nguyen & Ho 2023). Pass rbar={{{m}: value}} to choose one explicitly (the "
                    f"follow-up Dendrogram paper conjectures rbar(m) = 2m)."
                )
            cell_exponent[j] = table[m]
    r = cell_exponent[cell_of]  # (k,), 1 for D1 and singletons
    half = np.where(r > 1.0, r / 2.0, 1.0)  # (a, nu) exponent: rbar/2 in shared cells, else 1

    weight = np.exp(fit["beta0"])
    true_base = np.exp(tru["beta0"])
    if np.any(true_base == 0.0):
        raise ValueError(
            f"true: the mass exp(beta0*) of true expert(s) {np.flatnonzero(true_base == 0.0).tolist()}"
            " underflows to 0 in this gauge (intercept below about -745); drop such experts from "
            "the true model, they carry no weight."
        )
    delta_beta1 = fit["beta1"] - tru["beta1"][cell_of]
    a_error = np.linalg.norm(fit["a"] - tru["a"][cell_of], axis=1)
    b_error = np.abs(fit["b"] - tru["b"][cell_of])
    nu_error = np.abs(fit["nu"] - tru["nu"][cell_of])
    cell_mass = np.bincount(cell_of, weights=weight, minlength=k_true)

    if infimum:
        t1, _ = _voronoi_t1(delta_beta1, weight, r)
        t0, _ = _voronoi_t0(cell_mass, true_base)
    else:
        t1, t0 = np.zeros(d), 0.0
    beta1_error = np.linalg.norm(delta_beta1 - t1, axis=1)
    per_atom = weight * (beta1_error**r + b_error**r + a_error**half + nu_error**half)
    true_mass = true_base * (np.exp(t0) if np.isfinite(t0) else 0.0)
    mass_gap = np.abs(cell_mass - true_mass)
    cell_loss = np.bincount(cell_of, weights=per_atom, minlength=k_true) + mass_gap
    parameter_term, mass_term = float(per_atom.sum()), float(mass_gap.sum())
    return VoronoiLoss(
        value=parameter_term + mass_term, kind=kind, infimum=bool(infimum), gauge=gauge,
        t0=float(t0), t1=t1, cell_of=cell_of, cell_size=cell_size, cell_exponent=cell_exponent,
        cell_mass=cell_mass, true_mass=true_mass, cell_loss=cell_loss,
        parameter_term=parameter_term, mass_term=mass_term, beta1_error=beta1_error,
        a_error=a_error, b_error=b_error, nu_error=nu_error,
    )


def voronoi_d1(fitted: Any, true: Any, *, infimum: bool = True, gauge: str | None = None) -> float:
    """Exact-specified Voronoi loss D1 (k = k*) between two Gaussian MoEs.

    See :func:`voronoi_loss` (``kind="d1"``) for the parameters, the definition and the
    per-cell breakdown. ``infimum=False`` is the authors' variant (t0 = t1 = 0, reference gauge).
    """
    return voronoi_loss(fitted, true, kind="d1", infimum=infimum, gauge=gauge).value


def voronoi_d2(
    fitted: Any,
    true: Any,
    *,
    infimum: bool = True,
    gauge: str | None = None,
    rbar: Mapping[int, float] | None = None,
) -> float:
    """Over-specified Voronoi loss D2 (k >= k*) between two Gaussian MoEs.

    rbar(1) = 1, rbar(2) = 4, rbar(3) = 6; a cell of 4 or more fitted atoms raises ValueError
    unless ``rbar`` gives its exponent. See :func:`voronoi_loss` (``kind="d2"``).
    ``infimum=False`` is the authors' variant (t0 = t1 = 0, reference gauge).
    """
    return voronoi_loss(fitted, true, kind="d2", infimum=infimum, gauge=gauge, rbar=rbar).value


# ---------------------------------------------------------------------------------------------
# Softmax mixtures (Bing, Bunea, Niles-Weed & Wegkamp 2024): matching, errors, W1, subspaces
# ---------------------------------------------------------------------------------------------


def _atoms_pair(estimated_atoms, true_atoms) -> tuple[np.ndarray, np.ndarray]:
    est = check_array(estimated_atoms, "estimated_atoms", ndim=(1, 2))
    tru = check_array(true_atoms, "true_atoms", ndim=(1, 2))
    est = est[:, None] if est.ndim == 1 else est
    tru = tru[:, None] if tru.ndim == 1 else tru
    if est.shape != tru.shape:
        raise ValueError(
            f"estimated_atoms and true_atoms must have the same shape (K, L), got {est.shape} "
            f"and {tru.shape}. Fit as many components as there are true ones."
        )
    return est, tru


def match_components(estimated_atoms, true_atoms) -> np.ndarray:
    """Permutation matching estimated to true components (Hungarian assignment).

    Parameters
    ----------
    estimated_atoms, true_atoms : array-like of shape (K, L) (or (K,) for L = 1)

    Returns
    -------
    perm : ndarray of shape (K,), int
        ``estimated_atoms[perm[k]]`` is matched to ``true_atoms[k]``; the permutation minimises
        ``sum_k ||estimated_atoms[perm[k]] - true_atoms[k]||_2``
        (:func:`scipy.optimize.linear_sum_assignment`).
    """
    est, tru = _atoms_pair(estimated_atoms, true_atoms)
    cost = np.linalg.norm(tru[:, None, :] - est[None, :, :], axis=2)  # (true, est)
    rows, cols = optimize.linear_sum_assignment(cost)
    perm = np.empty(tru.shape[0], dtype=np.int64)
    perm[rows] = cols
    return perm


def atom_error(estimated_atoms, true_atoms, reduce: str = "max") -> float:
    """Err_theta: the matched atom error ``max_k`` (or ``mean_k``) ``||theta_hat - theta_k||_2``.

    Components are matched by :func:`match_components` (spec section 4).
    """
    reduce = check_choice(reduce, "reduce", ("max", "mean"))
    est, tru = _atoms_pair(estimated_atoms, true_atoms)
    errors = np.linalg.norm(est[match_components(est, tru)] - tru, axis=1)
    return float(errors.max() if reduce == "max" else errors.mean())


def weight_error(est_weights, est_atoms, true_weights, true_atoms) -> float:
    """Err_alpha = ``||alpha_hat_sigma - alpha||_1`` after matching the atoms."""
    est, tru = _atoms_pair(est_atoms, true_atoms)
    a_hat = check_array(est_weights, "est_weights", ndim=1)
    a = check_array(true_weights, "true_weights", ndim=1)
    if a_hat.shape != (est.shape[0],) or a.shape != (tru.shape[0],):
        raise ValueError(
            f"est_weights and true_weights must have shape (K,) = ({tru.shape[0]},), got "
            f"{a_hat.shape} and {a.shape}."
        )
    for name, w in (("est_weights", a_hat), ("true_weights", a)):
        if np.any(w < 0):
            raise ValueError(f"{name} must be non-negative mixture weights, got {w}.")
    return float(np.abs(a_hat[match_components(est, tru)] - a).sum())


def wasserstein1(weights_a, atoms_a, weights_b, atoms_b) -> float:
    """W1 between the discrete measures ``sum_i a_i delta_{theta_i}`` and ``sum_k b_k delta_{eta_k}``.

    Parameters
    ----------
    weights_a : array-like of shape (K_a,), on the simplex
    atoms_a : array-like of shape (K_a, L) (or (K_a,) for L = 1)
    weights_b : array-like of shape (K_b,), on the simplex
    atoms_b : array-like of shape (K_b, L)

    Returns
    -------
    float
        ``min_P sum_ik P_ik ||theta_i - eta_k||_2`` over couplings P >= 0 with margins a and b:
        a K_a x K_b transport LP (:func:`scipy.optimize.linprog`, HiGHS).
    """
    wa = check_array(weights_a, "weights_a", ndim=1)
    wb = check_array(weights_b, "weights_b", ndim=1)
    xa = check_array(atoms_a, "atoms_a", ndim=(1, 2))
    xb = check_array(atoms_b, "atoms_b", ndim=(1, 2))
    xa = xa[:, None] if xa.ndim == 1 else xa
    xb = xb[:, None] if xb.ndim == 1 else xb
    for name, w, x in (("a", wa, xa), ("b", wb, xb)):
        if w.shape[0] != x.shape[0]:
            raise ValueError(
                f"weights_{name} has {w.shape[0]} entries but atoms_{name} has {x.shape[0]} rows."
            )
        if np.any(w < 0) or abs(w.sum() - 1.0) > 1e-8:
            raise ValueError(f"weights_{name} must be on the simplex (>= 0, sum 1), got {w}.")
    if xa.shape[1] != xb.shape[1]:
        raise ValueError(f"atoms_a and atoms_b must have the same dimension, got {xa.shape[1]} "
                         f"and {xb.shape[1]}.")
    ka, kb = xa.shape[0], xb.shape[0]
    cost = np.linalg.norm(xa[:, None, :] - xb[None, :, :], axis=2)
    a_eq = np.zeros((ka + kb, ka * kb))
    for i in range(ka):
        a_eq[i, i * kb : (i + 1) * kb] = 1.0
    for k in range(kb):
        a_eq[ka + k, k::kb] = 1.0
    res = optimize.linprog(cost.ravel(), A_eq=a_eq, b_eq=np.concatenate([wa / wa.sum(),
                           wb / wb.sum()]), bounds=(0, None), method="highs")
    if res.status != 0:  # pragma: no cover - a transport LP with valid margins is feasible
        raise RuntimeError(f"wasserstein1: the transport LP failed: {res.message}")
    return float(max(res.fun, 0.0))


def subspace_error(basis_hat, basis) -> float:
    """``||P_hat - P||_op``: operator-norm distance of the orthogonal projectors on two spans.

    Parameters
    ----------
    basis_hat, basis : array-like of shape (L, K)
        Columns spanning each subspace (orthonormalised here, so any basis works).

    Returns
    -------
    float in [0, 1]
        The sine of the largest principal angle (1 when the dimensions differ).
    """
    u_hat = check_array(basis_hat, "basis_hat", ndim=2)
    u = check_array(basis, "basis", ndim=2)
    if u_hat.shape[0] != u.shape[0]:
        raise ValueError(f"basis_hat and basis must have the same number of rows L, got "
                         f"{u_hat.shape} and {u.shape}.")
    q_hat, q = np.linalg.qr(u_hat)[0], np.linalg.qr(u)[0]
    return float(np.linalg.norm(q_hat @ q_hat.T - q @ q.T, ord=2))


def align(fitted: Any, reference: Any) -> Any:
    """``fitted`` with its components permuted to match ``reference`` (Hungarian assignment).

    For comparing fits (restarts, bootstrap replicates, a fit and the truth): label switching
    makes component k of two fits unrelated; after ``align`` they are the matched pair.

    Parameters
    ----------
    fitted, reference : SoftmaxMixtureParams, MoEParams, or fitted estimators (their
        ``params_``), of the same family and sizes.

    Returns
    -------
    SoftmaxMixtureParams or MoEParams
        The fitted parameters reordered. Softmax mixtures are matched on the atoms (the
        permutation of :func:`match_components`); mixtures of experts on the experts'
        parameters (coefficients, and log-variances for Gaussian experts), the gating
        re-expressed against the new last expert (:meth:`MoEParams.permute`), so the model is
        unchanged.
    """
    from softmix.moe.model import MoEParams
    from softmix.softmax_mixture.model import SoftmaxMixtureParams

    fit = getattr(fitted, "params_", fitted)
    ref = getattr(reference, "params_", reference)
    if isinstance(fit, SoftmaxMixtureParams) and isinstance(ref, SoftmaxMixtureParams):
        perm = match_components(fit.atoms, ref.atoms)
        return SoftmaxMixtureParams(fit.weights[perm], fit.atoms[perm])
    if isinstance(fit, MoEParams) and isinstance(ref, MoEParams):
        if fit.expert != ref.expert or fit.expert_coef.shape != ref.expert_coef.shape:
            raise ValueError(
                f"fitted and reference must be the same model: got {fit.expert!r} experts with "
                f"coefficients {fit.expert_coef.shape} and {ref.expert!r} with "
                f"{ref.expert_coef.shape}."
            )

        def features(p: MoEParams) -> np.ndarray:
            parts = [p.expert_coef.reshape(p.n_experts, -1)]
            if p.expert_variance is not None:
                parts.append(np.log(p.expert_variance)[:, None])
            return np.hstack(parts)

        return fit.permute(match_components(features(fit), features(ref)))
    raise TypeError(
        "fitted and reference must both be SoftmaxMixtureParams or both MoEParams (or fitted "
        f"estimators); got {type(fit).__name__} and {type(ref).__name__}."
    )
