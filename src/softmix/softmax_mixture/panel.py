"""Panels (several choices per person, one class per person) and class-membership covariates
for the softmax mixture.

Model. Group (person) g = 1..G makes ``C_gj`` choices of alternative j (the row g of the
(G, p) count matrix C) and keeps one latent class::

    P(C_g) = sum_k w_gk prod_j pi_j(theta_k)^{C_gj}      (ordered choices; no multinomial coef.)

with ``w_gk = alpha_k`` (no covariates) or ``w_gk = softmax_k(z_g' gamma_k)`` (class-membership
covariates ``z_g = [1, Z_g]``, flexmix's concomitant model ``FLXPmultinom(~ Z)``; ``gamma`` is
``membership_coef`` of shape (K, q+1), intercept in column 0, the last class's row fixed at 0).
Without groups every choice is its own group (G = N, C one-hot), and without covariates that is
exactly the softmax mixture of :mod:`softmix.softmax_mixture.model`.

EM. Only the E-step and the log-likelihood change:

- E-step per group: ``log r_gk = log w_gk + (C log Pi^T)_gk - log P(C_g)`` with ``Pi`` the (K, p)
  class choice probabilities: one (sparse) product, O(nnz(C) K).
- The atom M-step needs each class's *effective counts* ``c_k = (R^T C)_k`` (K x p, O(nnz(C) K)):
  ``Q_k(theta) = sum_j c_kj log pi_j(theta)``, the same concave problem as the unpanelled M-step
  (where ``c_kj = n_j r_jk``), solved by the same Newton / safeguarded-gradient step of
  :mod:`softmix.softmax_mixture.em` in its whitened working coordinates.
- Weights: ``alpha_k = mean_g r_gk``; with covariates, a weighted multinomial logit of the soft
  labels R on ``[1, Z]`` (:func:`softmix.core.solvers.fit_multinomial_logistic`, Newton with
  step-halving from the current coefficients, so Q never decreases).

Every step never lowers its part of Q, so the observed log-likelihood never decreases. The cost
per iteration is O(nnz(C) K + p L K) (plus O(G q^2 K^2) for the membership Newton step); C is
never densified and nothing is O(N) when C is given as counts.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse

from softmix._validation import check_array, check_fitted, check_random_state
from softmix.core.em import run_em
from softmix.core.restarts import fit_with_restarts
from softmix.core.result import FitResult
from softmix.core.solvers import fit_multinomial_logistic, newton_direction, newton_maximize
from softmix.core.special import log_softmax, logsumexp
from softmix.exceptions import DegenerateComponentWarning
from softmix.softmax_mixture.em import (
    _INNER_TOL_FLOOR,
    _NEWTON_MAX_STEP,
    _PRECISION_FLOOR,
    Design,
    _full_scores,
    _gradient_step,
    _newton_objective,
    _row_logsumexp,
    prepare_design,
    select_m_step,
)
from softmix.softmax_mixture.init import resolve_init
from softmix.softmax_mixture.model import (
    SoftmaxMixtureParams,
    _integral,
    check_choices,
    check_features,
    log_class_probabilities,
    params_from_vector,
    params_to_vector,
)

__all__ = [
    "MembershipParams",
    "PanelData",
    "check_panel",
    "fit_panel_em",
    "membership_log_weights",
    "panel_gradient",
    "panel_log_likelihood",
    "panel_log_responsibilities",
    "start_from_posteriors",
]

#: [chosen] Newton iterations of the membership (multinomial logit) M-step per EM iteration,
#: warm started: a generalised EM step whatever the count (step-halving keeps Q from dropping).
_MEMBERSHIP_MAX_ITER = 20


@dataclass(frozen=True, eq=False)
class MembershipParams:
    """Softmax mixture whose class weights are a multinomial logit of covariates.

    Attributes
    ----------
    coef : ndarray of shape (n_components, n_covariates + 1)
        ``gamma_k``: column 0 the intercept, the last row 0 (reference class).
    atoms : ndarray of shape (n_components, n_features)
    """

    coef: np.ndarray
    atoms: np.ndarray

    def __post_init__(self) -> None:
        coef = check_array(self.coef, "membership_coef", ndim=2)
        atoms = check_array(self.atoms, "atoms", ndim=2)
        if coef.shape[0] != atoms.shape[0]:
            raise ValueError(
                f"membership_coef must have one row per component ({atoms.shape[0]}), got "
                f"shape {coef.shape}."
            )
        if np.any(coef[-1] != 0):
            raise ValueError(
                "the last row of membership_coef must be zero (reference class), got "
                f"{coef[-1].tolist()}; subtract it from every row."
            )
        for name, arr in (("coef", coef), ("atoms", atoms)):
            arr = arr.copy()
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def n_components(self) -> int:
        return int(self.atoms.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.atoms.shape[1])


@dataclass(frozen=True)
class PanelData:
    """Validated panel data (see :func:`check_panel`).

    Attributes
    ----------
    counts : ndarray or scipy.sparse.csr_matrix of shape (n_groups, n_alternatives)
        ``C_gj`` as floats; sparse input stays sparse (CSR).
    covariates : ndarray of shape (n_groups, n_covariates + 1) or None
        The membership design ``[1, Z]``.
    group_ids : ndarray of shape (n_groups,) or None
        The sorted distinct ``groups`` labels (row g of ``counts`` is ``group_ids[g]``); None
        when the groups are the rows of ``counts`` (or the choices themselves).
    """

    counts: Any
    covariates: np.ndarray | None
    group_ids: np.ndarray | None

    @property
    def n_groups(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_choices(self) -> float:
        return float(self.counts.sum())

    def totals(self) -> np.ndarray:
        """``C.sum(axis=0)``: the aggregated (p,) counts (for starts and diagnostics)."""
        return np.asarray(self.counts.sum(axis=0), dtype=float).ravel()


def _check_count_matrix(counts: Any, p: int):
    if scipy.sparse.issparse(counts):
        mat = scipy.sparse.csr_matrix(counts, dtype=float)
        mat.sum_duplicates()
        values = mat.data
    else:
        mat = check_array(counts, "counts", ndim=2, dtype=None)
        mat = _integral(mat, "counts", "how many times each group chose each alternative")
        mat = np.asarray(mat, dtype=float)
        values = mat
    if mat.shape[1] != p:
        raise ValueError(
            f"counts must have one column per alternative, shape (n_groups, {p}) like the rows "
            f"of features; got shape {mat.shape}."
        )
    if values.size and not np.all(np.isfinite(values)):
        raise ValueError("counts contains NaN or infinite values; give non-negative integers.")
    if values.size and np.any(values != np.round(values)):
        raise ValueError("counts must hold integers (how many times each group chose each "
                         f"alternative); got e.g. {values[values != np.round(values)][0]}.")
    if values.size and np.any(values < 0):
        raise ValueError(f"counts must be non-negative, got {values[values < 0][0]}.")
    if mat.shape[0] == 0:
        raise ValueError("counts has no row (group): there is no observation to fit.")
    totals = np.asarray(mat.sum(axis=1)).ravel()
    if np.any(totals == 0):
        raise ValueError(
            f"counts has {int(np.sum(totals == 0))} all-zero row(s) (e.g. row "
            f"{int(np.flatnonzero(totals == 0)[0])}): a group without any choice carries no "
            "information about its class. Drop those rows (and their covariates)."
        )
    return mat


def check_panel(features: np.ndarray, choices: Any = None, *, counts: Any = None,
                groups: Any = None, covariates: Any = None) -> PanelData:
    """Validate panel input into a :class:`PanelData`.

    Accepted forms (exactly one of ``choices`` / ``counts``):

    - ``choices`` (N,) with ``groups`` (N,) (any sortable labels): the count matrix of the
      distinct groups (rows in sorted label order), built once as a sparse matrix (O(N));
    - ``choices`` (N,) without ``groups``: every choice is its own group (covariates (N, q));
    - ``counts`` (G, p), dense or scipy.sparse: one row per group.

    ``covariates``: (G, q) (or (N, q) without groups), finite; returned as ``[1, Z]``.
    Errors name the argument and say what was expected.
    """
    p = features.shape[0]
    if (choices is None) == (counts is None):
        raise ValueError(
            "give exactly one of choices (the N chosen alternatives, with groups) or counts "
            f"(an (n_groups, {p}) matrix); got {'both' if choices is not None else 'neither'}."
        )
    group_ids = None
    from softmix.counting import count_choices, grouped_counts, is_dask_collection

    if choices is not None and (is_dask_collection(choices) or is_dask_collection(groups)):
        # a token stream: the sparse count matrix by a distributed count (softmix.counting)
        if groups is None:
            raise ValueError(
                "Dask choices without groups and with covariates: every choice would be its "
                "own group, a (n_samples, p) panel. Give groups (one label per choice), or "
                "count the choices per group yourself and pass counts= (n_groups, p)."
            )
        mat, group_ids = count_choices(choices, p, groups)
        if mat.shape[0] == 0:
            raise ValueError("choices is empty: there is no observation to fit.")
        mat = _check_count_matrix(mat, p)
    elif choices is not None:
        choices = check_choices(choices, p)
        if choices.size == 0:
            raise ValueError("choices is empty: there is no observation to fit.")
        if groups is None:  # every choice its own group
            rows = np.arange(choices.size)
            mat = scipy.sparse.csr_matrix((np.ones(choices.size), (rows, choices)),
                                          shape=(choices.size, p))
        else:
            try:
                labels = np.asarray(groups)
            except Exception as exc:
                raise TypeError(f"groups must be a 1-D array of labels: {exc}") from exc
            if labels.ndim != 1 or labels.shape[0] != choices.shape[0]:
                raise ValueError(
                    f"groups must hold one label per choice, shape ({choices.shape[0]},) like "
                    f"choices; got shape {labels.shape}."
                )
            if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
                raise ValueError("groups contains NaN or infinite labels; give one finite "
                                 "label (e.g. a person id) per choice.")
            mat, group_ids = grouped_counts(choices, labels, p)
            mat = mat.astype(float)
    else:
        if groups is not None:
            raise ValueError(
                "groups goes with choices; with counts every row already is one group. Pass "
                "either fit(features, choices, groups=ids) or fit(features, counts=C)."
            )
        arr = counts if scipy.sparse.issparse(counts) else np.asarray(counts)
        if getattr(arr, "ndim", 2) != 2:
            raise ValueError(f"panel counts must be 2-D (n_groups, {p}), got shape {arr.shape}.")
        mat = _check_count_matrix(counts, p)
    design = None
    if covariates is not None:
        z = check_array(covariates, "covariates", ndim=(1, 2))
        z = z[:, None] if z.ndim == 1 else z
        if z.shape[0] != mat.shape[0]:
            what = ("the distinct groups" if group_ids is not None else
                    "the rows of counts" if counts is not None else "the choices (no groups)")
            raise ValueError(
                f"covariates must have one row per group: {mat.shape[0]} rows for {what}, got "
                f"shape {z.shape}. With groups, give one covariate row per distinct group id in "
                "sorted id order."
            )
        design = np.hstack([np.ones((z.shape[0], 1)), z])
    return PanelData(mat, design, group_ids)


# ---------------------------------------------------------------------------- pure math

def membership_log_weights(params, covariates: np.ndarray | None, n_groups: int) -> np.ndarray:
    """``log w_gk``: shape (K,) for :class:`SoftmaxMixtureParams`, (G, K) for
    :class:`MembershipParams` with ``covariates`` the design ``[1, Z]`` (G, q+1)."""
    if isinstance(params, MembershipParams):
        if covariates is None or covariates.shape[1] != params.coef.shape[1]:
            raise ValueError(
                f"membership_coef has {params.coef.shape[1]} columns (intercept + covariates); "
                f"the covariates design has "
                f"{'none' if covariates is None else covariates.shape[1]}."
            )
        return log_softmax(covariates @ params.coef.T, axis=1)
    with np.errstate(divide="ignore"):  # a zero weight is a legitimate -inf
        return np.log(params.weights)


def _group_log_joint(counts, log_pi: np.ndarray, log_w: np.ndarray) -> np.ndarray:
    """``log w_gk + (C log Pi^T)_gk``, (G, K); a sparse C stays sparse (O(nnz K))."""
    return np.asarray(counts @ log_pi.T) + log_w


def _check_params(params) -> None:
    if not isinstance(params, (SoftmaxMixtureParams, MembershipParams)):
        raise TypeError(f"params must be SoftmaxMixtureParams or MembershipParams, got "
                        f"{type(params).__name__}.")


def panel_log_responsibilities(features: np.ndarray, data: PanelData, params) -> np.ndarray:
    """Per-group class posteriors ``log P(class k | C_g, z_g)``, shape (n_groups, K)."""
    _check_params(params)
    log_pi = log_class_probabilities(features, params.atoms).T  # (K, p)
    joint = _group_log_joint(data.counts, log_pi,
                             membership_log_weights(params, data.covariates, data.n_groups))
    return joint - logsumexp(joint, axis=1, keepdims=True)


def panel_log_likelihood(features: np.ndarray, data: PanelData, params,
                         per_group: bool = False):
    """``sum_g log sum_k w_gk prod_j pi_j(theta_k)^{C_gj}`` (the ordered-choice likelihood).

    With ``per_group=True`` the (n_groups,) terms.
    """
    _check_params(params)
    log_pi = log_class_probabilities(features, params.atoms).T
    joint = _group_log_joint(data.counts, log_pi,
                             membership_log_weights(params, data.covariates, data.n_groups))
    terms = logsumexp(joint, axis=1)
    return terms if per_group else float(terms.sum())


def _panel_loglik_from_scores(scores: np.ndarray, data: PanelData, params) -> float:
    """:func:`panel_log_likelihood` from the (K, p) scores ``Design.scores(atoms)``."""
    log_pi = scores - _row_logsumexp(scores)[:, None]
    joint = _group_log_joint(data.counts, log_pi,
                             membership_log_weights(params, data.covariates, data.n_groups))
    return float(logsumexp(joint, axis=1).sum())


def panel_gradient(features: np.ndarray, data: PanelData, params):
    """Gradient of :func:`panel_log_likelihood` (Fisher's identity).

    Returns
    -------
    grad_membership : ndarray
        With :class:`MembershipParams`: shape (K-1, q+1), ``sum_g (r_gk - w_gk) z_g``; with
        :class:`SoftmaxMixtureParams`: shape (K-1,), the derivative in the log-ratios
        ``log(alpha_k / alpha_K)`` (``sum_g (r_gk - alpha_k)``).
    grad_atoms : ndarray of shape (K, L)
        ``c_k' X - (sum_j c_kj) xbar(theta_k)`` with ``c = R^T C`` the effective counts.
    """
    _check_params(params)
    log_pi = log_class_probabilities(features, params.atoms).T  # (K, p)
    log_w = membership_log_weights(params, data.covariates, data.n_groups)
    joint = _group_log_joint(data.counts, log_pi, log_w)
    resp = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
    eff = np.asarray(data.counts.T @ resp).T  # (K, p)
    pi = np.exp(log_pi)
    grad_atoms = eff @ features - eff.sum(axis=1)[:, None] * (pi @ features)
    w = np.exp(log_w)
    if isinstance(params, MembershipParams):
        grad_m = ((resp - w)[:, :-1]).T @ data.covariates
    else:
        grad_m = (resp - w).sum(axis=0)[:-1]
    return grad_m, grad_atoms


# ---------------------------------------------------------------------------- EM

def _to_vector(params) -> np.ndarray:
    if isinstance(params, MembershipParams):
        return np.concatenate([params.coef[:-1].ravel(), params.atoms.ravel()])
    return params_to_vector(params)


def _from_vector_fn(like) -> Callable[[np.ndarray], Any]:
    k, length = like.atoms.shape
    if isinstance(like, MembershipParams):
        q1 = like.coef.shape[1]

        def from_vector(v):
            v = np.asarray(v, dtype=float)
            coef = np.vstack([v[: (k - 1) * q1].reshape(k - 1, q1), np.zeros((1, q1))])
            return MembershipParams(coef, v[(k - 1) * q1:].reshape(k, length))

        return from_vector
    return lambda v: params_from_vector(v, k, length)


def _with_atoms(params, atoms: np.ndarray):
    if isinstance(params, MembershipParams):
        return MembershipParams(params.coef, atoms)
    return SoftmaxMixtureParams(params.weights, atoms)


def make_panel_em_map(design: Design, data: PanelData, *, m_step: str = "newton",
                      step_size: float = 1.0, newton_max_iter: int = 1, tol: float = 0.0,
                      membership_max_iter: int = _MEMBERSHIP_MAX_ITER):
    """The panel EM map ``params -> (next_params, log_likelihood(params))`` on *working*
    parameters (atoms in the whitened coordinates of ``design``), for :func:`run_em`.

    The map carries ``em_map.stationarity(params, exact) -> nats``, the stop rule of
    :func:`softmix.core.em.run_em` as in :func:`softmix.softmax_mixture.em.make_em_map`: the
    atoms' Newton decrements on the effective counts ``R^T C`` plus the gain of the class-weight
    (or membership) M-step, ``sum_g sum_k r_gk (log w_gk(new) - log w_gk(old))``, which the
    closed-form weights (or the multinomial-logit solver run to convergence) achieve exactly.
    ``tol`` (nats) sets the inner Newton tolerance, ``tol / (10 K)``.
    """
    variances = design.variances
    counts = data.counts
    n_groups = data.n_groups
    warned: set[int] = set()
    state: dict = {}

    def em_map(params):
        atoms = params.atoms
        scores = _full_scores(design, atoms)  # (K, p), float64
        log_partition = _row_logsumexp(scores)
        log_pi = scores - log_partition[:, None]
        log_w = membership_log_weights(params, data.covariates, n_groups)
        joint = _group_log_joint(counts, log_pi, log_w)
        lse = logsumexp(joint, axis=1, keepdims=True)
        loglik = float(lse.sum())
        resp = np.exp(joint - lse)  # (G, K)
        eff = np.asarray(counts.T @ resp).T  # (K, p): effective counts R^T C
        mass = eff.sum(axis=1)
        empty = mass <= 0.0
        for k in np.flatnonzero(empty):
            if k not in warned:
                warned.add(int(k))
                warnings.warn(
                    f"softmax mixture component {k} is empty (no group has responsibility "
                    "mass on it); its atom is frozen. Use fewer components, restarts (n_init) "
                    "or a different initialisation.",
                    DegenerateComponentWarning, stacklevel=4,
                )
        targets = design.project(eff) / np.where(empty, 1.0, mass)[:, None]  # m_k
        gains = np.zeros(params.n_components)
        if m_step == "gradient":
            pi = np.exp(log_pi)
            q_old = np.einsum("kl,kl->k", atoms, targets) - log_partition
            new_atoms, _, grads = _gradient_step(design, atoms, targets,
                                                 design.project(pi), q_old, empty, step_size)
            gains = 0.5 * mass * np.sum(grads**2 / variances, axis=1)  # cheap metric
        else:
            new_atoms = np.array(atoms)
            inner = tol / (10.0 * params.n_components) if tol > 0 else _INNER_TOL_FLOOR
            for k in np.flatnonzero(~empty):
                res = newton_maximize(
                    _newton_objective(design, targets[k]), atoms[k],
                    max_iter=newton_max_iter, max_step=_NEWTON_MAX_STEP, tol=inner,
                    weight=float(mass[k]))
                new_atoms[k] = res.x
                gains[k] = 0.5 * mass[k] * res.decrement0
        if isinstance(params, MembershipParams):
            coef = fit_multinomial_logistic(data.covariates, resp, None, params.coef,
                                            max_iter=membership_max_iter)
            new = MembershipParams(coef, new_atoms)
        else:
            new = SoftmaxMixtureParams._from_em(resp.sum(axis=0) / n_groups, new_atoms)
        new_log_w = membership_log_weights(new, data.covariates, n_groups)
        with np.errstate(invalid="ignore"):  # a weight at 0 with no mass: 0 * -inf terms
            weight_gain = float(np.nansum(resp * (new_log_w - log_w)))
        state.clear()
        state.update(at=params, mass=mass, targets=targets, gains=gains,
                     weight_gain=max(weight_gain, 0.0), exact=m_step == "newton")
        return new, loglik

    def stationarity(params, exact: bool) -> float:
        if state.get("at") is not params:
            em_map(params)
        mass, targets, gains = state["mass"], state["targets"], state["gains"]
        if exact and not state["exact"]:
            gains = np.zeros_like(gains)
            for k in np.flatnonzero(mass > 0):
                _, grad, hess = _newton_objective(design, targets[k])(
                    np.asarray(params.atoms[k], dtype=float), 2)
                gains[k] = 0.5 * mass[k] * max(float(grad @ newton_direction(grad, hess)), 0.0)
            state.update(gains=gains, exact=True)
        return state["weight_gain"] + float(np.sum(gains))

    em_map.stationarity = stationarity  # type: ignore[attr-defined]
    return em_map


def _param_distance(a, b) -> float:
    return float(np.max(np.linalg.norm(a.atoms - b.atoms, axis=1)))


def fit_panel_em(design: Design, data: PanelData, params0, *, m_step: str = "newton",
                 step_size: float = 1.0, max_iter: int = 1000, tol: float = 1e-10,
                 newton_max_iter: int = 1, accelerate: str | None = None, callback=None,
                 init_method: str = "given", warn: bool = True,
                 iteration_offset: int = 0) -> FitResult:
    """Fit a panel softmax mixture (optionally with membership covariates) by EM.

    Parameters
    ----------
    design : Design
        From :func:`softmix.softmax_mixture.em.prepare_design`.
    data : PanelData
        From :func:`check_panel`.
    params0 : SoftmaxMixtureParams or MembershipParams
        Start in the user's coordinates (MembershipParams exactly when ``data.covariates``).
    m_step : {"newton", "gradient", "auto"}
        As in :func:`softmix.softmax_mixture.em.fit_em`.
    step_size, max_iter, tol, newton_max_iter, accelerate, callback, init_method, warn
    iteration_offset
        As in :func:`softmix.softmax_mixture.em.fit_em`.

    Returns
    -------
    FitResult
        ``params`` in the user's coordinates; ``history`` the log-likelihood per iteration;
        ``extra["m_step"]`` the M-step used.
    """
    _check_params(params0)
    if isinstance(params0, MembershipParams) != (data.covariates is not None):
        raise ValueError("params0 must be MembershipParams exactly when the data has "
                         "covariates.")
    start = _with_atoms(params0, params0.atoms @ design.inverse.T)
    auto_info: dict = {}
    if m_step == "auto":
        weights = (np.full(start.n_components, 1.0 / start.n_components)
                   if isinstance(start, MembershipParams) else start.weights)
        m_step, auto_info = select_m_step(design, SoftmaxMixtureParams(weights, start.atoms))
    floor = _PRECISION_FLOOR[design.dtype.name] * float(data.n_choices)
    tol_stop = max(tol, floor) if tol > 0 else 0.0
    em_map = make_panel_em_map(design, data, m_step=m_step, step_size=step_size,
                               newton_max_iter=newton_max_iter, tol=tol_stop)

    def objective(prm):
        return _panel_loglik_from_scores(_full_scores(design, prm.atoms), data, prm)

    def user_callback(it, prm, value):
        return callback(it + iteration_offset, _with_atoms(prm, prm.atoms @ design.transform.T),
                        value)

    result = run_em(
        start, em_map, objective,
        max_iter=max_iter, tol=tol_stop, param_distance=_param_distance,
        monotone=design.dtype == np.float64,
        callback=None if callback is None else user_callback, init_method=init_method,
        name=f"panel softmax-mixture EM (m_step={m_step!r})", warn=warn,
        accelerate=accelerate, to_vector=_to_vector, from_vector=_from_vector_fn(start),
        stationarity=em_map.stationarity, criterion="newton_decrement",
        iteration_offset=iteration_offset,
    )
    result.extra["tol_used"] = tol_stop
    result.params = (params0 if result.params is start
                     else _with_atoms(result.params, result.params.atoms @ design.transform.T))
    result.extra["m_step"] = m_step
    result.extra.update(auto_info)
    result.extra["n_unidentified"] = design.n_unidentified
    return result


def start_from_posteriors(design: Design, data: PanelData, resp: np.ndarray, *,
                          max_iter: int = 100):
    """Parameters from group posteriors ``resp`` (n_groups, K) by one exact M-step (what
    flexmix does with ``cluster=``): per-class conditional logits on the effective counts
    ``R^T C`` (Newton to convergence) and the weights ``mean_g r_gk`` or, with covariates, the
    multinomial logit of ``resp`` on ``[1, Z]``. Returns parameters in the user's coordinates.
    """
    resp = check_array(resp, "resp", ndim=2)
    if resp.shape[0] != data.n_groups or np.any(resp < 0):
        raise ValueError(f"resp must be non-negative of shape (n_groups={data.n_groups}, K), "
                         f"got shape {resp.shape}.")
    resp = resp / resp.sum(axis=1, keepdims=True)
    eff = np.asarray(data.counts.T @ resp).T
    targets = design.project(eff) / eff.sum(axis=1)[:, None]
    atoms = np.array([
        newton_maximize(_newton_objective(design, t), np.zeros(design.n_working),
                        max_iter=max_iter, max_step=_NEWTON_MAX_STEP).x for t in targets])
    atoms = atoms @ design.transform.T
    if data.covariates is not None:
        return MembershipParams(
            fit_multinomial_logistic(data.covariates, resp, max_iter=max_iter), atoms)
    return SoftmaxMixtureParams(resp.mean(axis=0), atoms)


# ---------------------------------------------------------------------------- estimator glue

def canonical_panel_params(params, data: PanelData):
    """``params`` with components in the canonical order of unpanelled fits.

    :class:`SoftmaxMixtureParams`: :meth:`SoftmaxMixtureParams.canonical` (decreasing weight).
    :class:`MembershipParams`: decreasing mean class weight over the groups, ties by the atoms'
    coordinates; the membership coefficients are re-gauged so that the new last class is the
    reference (its row 0), which leaves every group's class weights unchanged.
    """
    if isinstance(params, SoftmaxMixtureParams):
        return params.canonical()
    mean_w = np.exp(membership_log_weights(params, data.covariates, data.n_groups)).mean(axis=0)
    keys = [params.atoms[:, i] for i in range(params.n_features - 1, -1, -1)] + [-mean_w]
    order = np.lexsort(keys)
    coef = params.coef[order] - params.coef[order][-1]
    return MembershipParams(coef, params.atoms[order])


def is_panel_call(counts: Any, groups: Any, covariates: Any) -> bool:
    """Whether :meth:`SoftmaxMixture.fit` takes the panel path (groups, covariates or 2-D /
    sparse counts)."""
    if groups is not None or covariates is not None:
        return True
    if counts is None:
        return False
    return scipy.sparse.issparse(counts) or np.ndim(counts) == 2


def fit_estimator(est, features: Any, choices: Any, counts: Any, groups: Any,
                  covariates: Any):
    """:meth:`SoftmaxMixture.fit` on panel data (sets the fitted attributes; returns ``est``).

    The start is the estimator's ``init`` on the aggregated counts ``C.sum(0)`` (with
    covariates: its weights as the intercepts, the other coefficients 0), or a given
    :class:`MembershipParams` (with covariates).
    """
    features, stats = check_features(features, return_range=True)
    data = check_panel(features, choices, counts=counts, groups=groups, covariates=covariates)
    hp = est._check_hyperparameters(features.shape[0])
    design = prepare_design(features, dtype=hp["dtype"], column_stats=stats)
    totals = data.totals()
    rng = check_random_state(est.random_state)

    given = est.init if isinstance(est.init, MembershipParams) else None
    if given is not None and (data.covariates is None or given.coef.shape != (
            hp["n_components"], data.covariates.shape[1]) or given.n_features !=
            features.shape[1]):
        raise ValueError(
            "init is a MembershipParams, which needs covariates and shapes "
            f"membership_coef ({hp['n_components']}, n_covariates + 1) and atoms "
            f"({hp['n_components']}, {features.shape[1]}); got membership_coef "
            f"{given.coef.shape}, atoms {given.atoms.shape}"
            f"{'' if data.covariates is not None else ' and no covariates'}."
        )

    options = {k: hp[k] for k in ("step_size", "tol", "newton_max_iter", "accelerate")}

    def fit_from(params, m_step, budget, offset, init_method, warn=True):
        return fit_panel_em(design, data, params, m_step=m_step, max_iter=budget,
                            callback=est.callback, init_method=init_method, warn=warn,
                            iteration_offset=offset, **options)

    def fit_one(child: np.random.Generator, budget: int = hp["max_iter"]) -> FitResult:
        warn = budget == hp["max_iter"]
        if given is not None:
            return fit_from(given, hp["m_step"], budget, 0, "given", warn)
        params0, name = resolve_init(est.init, features, totals, hp["n_components"], child,
                                     design=design)
        if data.covariates is not None:
            logw = np.log(np.maximum(params0.weights, 1e-300))
            coef = np.zeros((params0.n_components, data.covariates.shape[1]))
            coef[:, 0] = logw - logw[-1]
            params0 = MembershipParams(coef, params0.atoms)
        return fit_from(params0, hp["m_step"], budget, 0, name, warn)

    result = fit_with_restarts(fit_one, hp["n_init"], rng,
                               screen=est._screen(hp, fit_one, fit_from))
    if result.stop_reason != "init":  # the canonical order of SoftmaxMixture.fit
        result.params = canonical_panel_params(result.params, data)
    params = result.params
    est.fit_result_ = result
    est.params_ = params
    est.atoms_ = np.array(params.atoms)
    if isinstance(params, MembershipParams):
        est.membership_coef_ = np.array(params.coef)
        est.weights_ = np.exp(membership_log_weights(params, data.covariates,
                                                     data.n_groups)).mean(axis=0)
    else:
        est.membership_coef_ = None
        est.weights_ = np.array(params.weights)
    est.log_likelihood_ = float(result.objective)
    est.n_iter_ = result.n_iter
    est.converged_ = result.converged
    est.stop_reason_ = result.stop_reason
    est.history_ = result.history
    est.init_method_ = result.init_method
    est.m_step_used_ = result.extra["m_step"]
    est.features_ = features
    est.n_samples_ = int(data.n_choices)
    est.n_groups_ = data.n_groups
    est.group_ids_ = data.group_ids
    est.n_unidentified_ = design.n_unidentified
    est.n_features_in_ = features.shape[1]
    est.n_parameters_ = est._n_parameters()
    return est


def require_no_covariates(est, method: str) -> None:
    """ValueError when ``est`` was fit with membership covariates: its class weights depend on
    them, so ``method`` needs panel input (``covariates=``)."""
    check_fitted(est)
    if getattr(est, "membership_coef_", None) is not None:
        raise ValueError(
            f"{method}: this model was fit with class-membership covariates, so its class "
            "weights depend on them; pass covariates= (with counts= or choices and groups=) "
            "where the method takes them, or use predict_proba(..., covariates=...)."
        )


def estimator_panel_data(est, features: Any, choices: Any, counts: Any, groups: Any,
                         covariates: Any) -> tuple[np.ndarray, PanelData]:
    """Validated (design, PanelData) for a fitted estimator's scoring methods."""
    check_fitted(est)
    x = est._features(features)
    coef = getattr(est, "membership_coef_", None)
    if coef is not None and covariates is None:
        raise ValueError(
            "this model was fit with class-membership covariates: pass covariates= (one row "
            "per group) to score or predict with it."
        )
    if coef is None and covariates is not None:
        raise ValueError("covariates given, but this model was fit without class-membership "
                         "covariates; drop covariates= or refit with them.")
    data = check_panel(x, choices, counts=counts, groups=groups, covariates=covariates)
    if coef is not None and data.covariates.shape[1] != coef.shape[1]:
        raise ValueError(
            f"covariates must have {coef.shape[1] - 1} column(s) (as in fit), got "
            f"{data.covariates.shape[1] - 1}."
        )
    return x, data
