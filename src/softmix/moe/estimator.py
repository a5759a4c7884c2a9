"""Scikit-learn-style estimator of softmax-gated mixtures of experts."""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from softmix._validation import (
    check_array,
    check_choice,
    check_fitted,
    check_float,
    check_int,
    check_random_state,
    check_scale,
)
from softmix.core.restarts import fit_with_restarts
from softmix.core.result import FitResult
from softmix.core.special import logsumexp
from softmix.exceptions import DegenerateComponentWarning, SoftmixWarning
from softmix.moe import options as _options
from softmix.moe.dask import is_dask_collection as _is_dask
from softmix.moe.diagnostics import effective_points, separation, thin_experts
from softmix.moe.em import check_em_options, e_step, fit_em
from softmix.moe.experts import EXPERTS, get_expert
from softmix.moe.gating import add_intercept, gate_log_proba_design
from softmix.moe.gradient import fit_gd, fit_gradient_em
from softmix.moe.init import INITIALISERS, NEAR_TRUTH, initialize
from softmix.moe.likelihood import canonical_order
from softmix.moe.model import MoEParams, check_params, log_joint_design
from softmix.moe.model import sample as _sample
from softmix.moe.standardize import Standardizer, fit_standardizer

__all__ = ["SOLVERS", "MixtureOfExperts"]

#: Solver name -> ``solver(X, y, params0, *, max_iter, tol, ridge, callback, init_method,
#: **options) -> FitResult``. One place for the dispatch.
SOLVERS: dict[str, Callable[..., FitResult]] = {
    "em": fit_em,
    "gd": fit_gd,
    "gradient_em": fit_gradient_em,
}


def _solver_options(solver: Callable[..., FitResult]) -> set[str] | None:
    """Keyword options of ``solver`` that the estimator does not set itself (None: any)."""
    sig = inspect.signature(solver)
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    accepted = {n for n, p in sig.parameters.items() if p.kind == p.KEYWORD_ONLY}
    return accepted - {"max_iter", "tol", "ridge", "callback", "init_method"}


def _encode_labels(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Index of every label in the sorted ``classes`` (ValueError naming unseen labels)."""
    idx = np.minimum(np.searchsorted(classes, labels), classes.size - 1)
    if not np.all(classes[idx] == labels):
        raise ValueError(
            f"y holds labels {np.setdiff1d(labels, classes)[:10].tolist()} not seen in fit "
            f"(classes_ = {classes[:10].tolist()})."
        )
    return idx


def _logistic_float(expert: str, codes: np.ndarray) -> np.ndarray:
    """Logistic experts take y as floats 0/1 (index of the label in ``classes_``)."""
    return codes.astype(float) if expert == "logistic" else codes


def _to_user_units(result: FitResult, std: Standardizer, shift: float) -> FitResult:
    """A fit in internal coordinates -> the same fit in the user's units: parameters mapped
    back, objectives (log-likelihoods) minus ``shift = n log s_y``."""
    extra = dict(result.extra)
    extra["internal_params"] = result.params
    if extra.get("log_likelihood") is not None:
        extra["log_likelihood"] = float(extra["log_likelihood"]) - shift
    return dataclasses.replace(
        result, params=std.params_out(result.params), objective=result.objective - shift,
        history=result.history - shift, extra=extra,
        all_objectives=None if result.all_objectives is None else result.all_objectives - shift,
    )


class _UnavailableError(ValueError, AttributeError):
    """A method that the estimator's configuration does not offer (``hasattr`` is False)."""


class MixtureOfExperts:
    """Softmax-gated mixture of experts fitted by maximum likelihood.

    Parameters
    ----------
    n_experts : int
        Number of experts ``k``.
    expert : {"gaussian", "logistic", "multinomial"}, default="gaussian"
        Linear-Gaussian experts (regression, per-expert variance), binary logistic experts
        (``y`` any two labels, the larger in sorted order being the event, as in
        scikit-learn) or multinomial logistic experts (integer or string class labels).
    solver : {"em", "gd", "gradient_em"}, default="em"
        ``"em"``: exact EM. ``"gd"`` and ``"gradient_em"`` are the gradient methods of
        :mod:`softmix.moe.gradient` (Fruytier, Mokhtari, Sanghavi 2025).
    init : {"random", "kmeans", "near_truth", "near_truth_authors"} or MoEParams, default="random"
        Initialisation (see :mod:`softmix.moe.init`): soft responsibilities around
        ``n_experts`` random sample centres in standardised ``(x, y)`` with per-expert weighted
        fits and one gating fit, k-means on ``(x, y)`` with per-group fits, the true parameters plus noise (experiments only; needs
        ``truth``), or a user-given :class:`~softmix.moe.model.MoEParams`.
    n_init : int, default=1
        Restarts from independent initialisations; the best log-likelihood is kept.
    max_iter : int, default=1000
        Iterations of the solver; ``0`` returns the initialisation.
    tol : float, default=1e-6
        Stop when the relative change of the objective is ``<= tol`` and not growing (never on
        the first iteration; see :func:`softmix.core.em.run_em`); ``0`` runs ``max_iter``
        iterations. Every fit records a scale-free stationarity measure in
        ``fit_result_.criterion`` / ``criterion_value``: the predicted remaining gain in nats
        (:func:`softmix.moe.em.score_gain`). For ``"gd"`` and ``"gradient_em"`` a ``tol`` stop
        counts as converged only if that gain is at most 0.05 nats (or ``tol * |objective|``);
        otherwise ``stop_reason="not_stationary"``, ``converged_=False`` and a
        ConvergenceWarning (a fixed step of 1e-4 met ``tol`` after 2 iterations at -5561 on the
        paper's model, where EM reaches -851).
    min_weight : float, default=0.05
        flexmix's ``minprior``: after a fit (each restart), an expert whose weight share
        (mean responsibility ``sum_j tau_ji / n``) is below ``min_weight`` is removed, the
        gate is re-gauged and the fit continues from the remaining experts until no share is
        below (a DegenerateComponentWarning names the removed experts; ``n_experts_`` is the
        number kept, ``fit_result_.extra["removed_experts"]`` records each removal). 0 keeps
        every expert. Independently, a warning names every expert of the chosen fit that holds
        fewer effective points (Kish) than its parameters.
    ridge : float, default=0.0
        L2 penalty ``ridge/2 ||.||^2`` on the gating and classification-expert coefficients
        of the standardised columns (a MAP fit; keeps them finite on separable data, the remedy
        the separation warning names).
    random_state : None, int or numpy.random.Generator
        Seed of the initialisations (restarts get spawned child streams); an int gives the
        same fit every time. :meth:`sample` takes its own ``random_state``.
    callback : callable, optional
        ``callback(iteration, params, objective)`` after every iteration; truthy return stops.
    truth : MoEParams, optional
        The true parameters, only for ``init="near_truth"``.
    gate : {"softmax", "constant"}, default="softmax"
        ``"constant"``: weights that do not depend on x, the classic mixture of regressions
        (flexmix's default ``FLXPconstant``); ``weights_`` holds them.
    fit_intercept : bool, default=True
        False: experts without intercept (their intercept column is fixed at 0).
    variance : {"free", "equal"}, default="free"
        Gaussian experts: one variance each, or one variance shared by all (flexmix's
        ``FLXMRglmfix(varFix = TRUE)``).
    **solver_options
        Passed to the solver. EM: ``inner_max_iter`` (300), ``inner_tol`` (1e-10),
        ``inner_method`` ("newton" or "lbfgs"), ``variance_floor`` (in ``y``'s units; default ``4.9e-24 var(y)``, round-off level). GD:
        ``step_size`` (``"armijo"``: Barzilai-Borwein trial steps with a backtracking Armijo
        test; or a fixed float, which refers to the standardised internal coordinates).
        Gradient EM: ``step_gate``, ``step_expert`` (both ``"armijo"``, or both floats),
        ``n_inner`` (5). Names are checked by :meth:`set_params` and :meth:`fit`.

    Attributes
    ----------
    params_ : MoEParams
        Fitted parameters.
    gating_coef_ : ndarray of shape (n_experts, n_features + 1)
        Gating rows ``[beta0_i, beta1_i...]``; the last row is 0 (gauge).
    expert_coef_ : ndarray of shape (n_experts, n_features + 1) or (n_experts, C, n_features + 1)
    expert_variance_ : ndarray of shape (n_experts,) or None
    classes_ : ndarray of shape (C,)
        Sorted class labels (classification experts), with the dtype of the integer, boolean
        or (multinomial experts) string ``y`` given to :meth:`fit`; :meth:`predict` and
        :meth:`sample` return these labels.
    log_likelihood_ : float
        Total log-likelihood of the training data at ``params_``.
    n_iter_ : int
    converged_ : bool
    history_ : ndarray of shape (n_iter_ + 1,)
        Objective (penalised log-likelihood) after each iteration.
    fit_result_ : FitResult
        Everything else (stop reason, all restarts' objectives, degenerate experts...), in the
        user's units; ``fit_result_.extra["internal_params"]`` holds the parameters in the
        internal coordinates of ``standardizer_``.
    n_features_in_ : int
    weights_ : ndarray of shape (n_experts,)
        Only with ``gate="constant"``: the mixing weights.

    With ``gate="constant"``, ``fit_intercept=False``, ``variance="equal"``, ``X_gate`` or
    ``sample_weight`` (:mod:`softmix.moe.options`; ``solver="em"`` only), ``params_`` is the
    model on ``[1, X_gate, X]`` (or ``[1, X]``) with the constrained coefficients at 0,
    ``gating_coef_`` the gate's coefficients on ``[1, X_gate]`` (shape (n_experts, 1) for a
    constant gate) and ``expert_coef_`` those on ``[1, X]``; methods that take ``X`` then
    take ``X_gate=`` too when the fit had it.
    n_experts_ : int
        Experts in the fitted model (``n_experts`` minus those removed by ``min_weight``).
    n_parameters_ : int
        Identified free parameters (what :meth:`bic` / :meth:`aic` count); see
        :meth:`n_parameters`.
    dropped_features_ : ndarray of int
        Columns of ``X`` left out of the fit because they are constant or a linear combination
        of the intercept and the other columns (a SoftmixWarning names them); their
        coefficients are 0 in ``params_``.
    standardizer_ : softmix.moe.standardize.Standardizer
        The map between the user's units and the internal coordinates of the fit.

    Notes
    -----
    **Units.** The fit runs in internal coordinates: the columns of ``X`` centred and scaled
    to unit spread and, for Gaussian experts, ``y`` too (:mod:`softmix.moe.standardize`); the
    parameters are mapped back. So shifting or rescaling a column of ``X`` or ``y`` gives the
    same fit up to the implied reparametrisation (same log-likelihood up to ``n log`` of a
    ``y`` scale, same predictions), whatever the units (a column shifted by 1e6 was silently
    dropped before). The ``ridge`` penalises the coefficients on the standardised columns (as
    glmnet's ``standardize=TRUE``), which keeps a ridged fit equivariant too.

    The model is ``p(y | x) = sum_i softmax_i(beta0_i + beta1_i'x) f_i(y | x)`` and the fit
    maximises ``sum_j log p(y_j | x_j)`` (minus the ridge penalty). With Gaussian experts this
    is the softmax-gated Gaussian MoE of Nguyen, Nguyen, Ho (NeurIPS 2023); with logistic and
    multinomial experts the models of Fruytier, Mokhtari, Sanghavi (2024). The same model is
    fitted by R flexmix (``FLXMRglm`` + ``FLXPmultinom``) and meteorits (``emNMoE``).

    Expert order: after every fit (``max_iter=0`` excepted) experts are in the canonical order
    of :func:`softmix.moe.likelihood.canonical_order`: decreasing mean gate probability over the
    training X, the last (smallest) expert being the gating reference; use
    :func:`softmix.metrics.align` to match two fits. Standard errors: :meth:`inference`.

    Examples
    --------
    >>> from softmix import MixtureOfExperts
    >>> from softmix.datasets import make_gaussian_moe
    >>> X, y, truth = make_gaussian_moe(2000, random_state=0)
    >>> model = MixtureOfExperts(2, random_state=0).fit(X, y)
    >>> model.predict(X[:3]).shape
    (3,)
    """

    def __init__(
        self,
        n_experts: int,
        *,
        expert: str = "gaussian",
        solver: str = "em",
        init: str | MoEParams = "random",
        n_init: int = 1,
        max_iter: int = 1000,
        tol: float = 1e-6,
        ridge: float = 0.0,
        min_weight: float = 0.05,
        random_state: None | int | np.random.Generator = None,
        callback: Callable[[int, MoEParams, float], Any] | None = None,
        truth: MoEParams | None = None,
        gate: str = "softmax",
        fit_intercept: bool = True,
        variance: str = "free",
        **solver_options: Any,
    ) -> None:
        self.n_experts = n_experts
        self.expert = expert
        self.solver = solver
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.ridge = ridge
        self.min_weight = min_weight
        self.random_state = random_state
        self.callback = callback
        self.truth = truth
        self.gate = gate
        self.fit_intercept = fit_intercept
        self.variance = variance
        self.solver_options = dict(solver_options)

    # ----------------------------------------------------------------- sklearn plumbing
    _PARAM_NAMES = ("n_experts", "expert", "solver", "init", "n_init", "max_iter", "tol",
                    "ridge", "min_weight", "random_state", "callback", "truth", "gate",
                    "fit_intercept", "variance")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters (including the solver options) as a dict."""
        out = {name: getattr(self, name) for name in self._PARAM_NAMES}
        out.update(self.solver_options)
        return out

    def set_params(self, **params: Any) -> MixtureOfExperts:
        """Set hyperparameters and solver options (scikit-learn protocol).

        Raises
        ------
        ValueError
            For a name that is neither a hyperparameter nor an option of the solver in effect
            after the call (e.g. a misspelling); nothing is changed then.
        """
        solver = params.get("solver", self.solver)
        options = [name for name in params if name not in self._PARAM_NAMES]
        # an unknown (or unhashable) solver is reported by fit (scikit-learn validates there)
        known = isinstance(solver, str) and solver in SOLVERS
        accepted = _solver_options(SOLVERS[solver]) if known else None
        unknown = sorted(set(options) - accepted) if accepted is not None else []
        if unknown:
            raise ValueError(
                f"invalid parameter(s) {unknown} for MixtureOfExperts with solver={solver!r}: "
                f"the hyperparameters are {list(self._PARAM_NAMES)} and the options of this "
                f"solver {sorted(accepted)}. Check the spelling (get_params() lists the current "
                "values)."
            )
        for name, value in params.items():
            if name in self._PARAM_NAMES:
                setattr(self, name, value)
            else:
                self.solver_options[name] = value
        return self

    def __sklearn_tags__(self):
        """scikit-learn (>= 1.6) estimator tags, so that ``clone``, ``GridSearchCV`` and
        ``cross_val_score`` (scored by :meth:`score`, the held-out log-likelihood) work.
        Needs scikit-learn, which softmix itself does not."""
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=True),
                    input_tags=InputTags())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()
                         if k not in ("callback", "truth") or v is not None)
        return f"MixtureOfExperts({args})"

    def save(self, path: Any, *, metadata: Mapping | None = None) -> Any:
        """Write the model to one file (a zip of a JSON manifest and ``.npy`` arrays, no
        pickle); read it back with ``softmix.load(path)``. See :func:`softmix.io.persistence.save`.
        """
        from softmix.io.persistence import save

        return save(self, path, metadata=metadata)

    # ----------------------------------------------------------------- validation
    def _check_hyperparameters(self) -> Callable[..., FitResult]:
        check_int(self.n_experts, "n_experts", low=1)
        get_expert(self.expert)
        check_choice(self.solver, "solver", tuple(SOLVERS))
        check_int(self.n_init, "n_init", low=1)
        check_int(self.max_iter, "max_iter", low=0)
        check_float(self.tol, "tol", low=0.0)
        check_float(self.ridge, "ridge", low=0.0)
        check_float(self.min_weight, "min_weight", low=0.0, high=1.0,
                    remedy="E.g. min_weight=0.05 (flexmix's minprior), or 0 to keep every "
                    "expert.")
        if isinstance(self.init, MoEParams):
            if self.n_init > 1:
                raise ValueError(
                    f"n_init={self.n_init} restarts would all start from the given MoEParams "
                    "and give the same fit; use n_init=1 with a given start, or a named init."
                )
        elif not isinstance(self.init, str) or self.init not in INITIALISERS:
            raise ValueError(
                f"init must be one of {tuple(INITIALISERS)} or a MoEParams, got {self.init!r}."
            )
        if self.init in NEAR_TRUTH and not isinstance(self.truth, MoEParams):
            raise ValueError(
                "init='near_truth' needs the true parameters: pass truth=<MoEParams> "
                f"(got truth={self.truth!r}); for real data use init='random' or 'kmeans'."
            )
        if self.truth is not None and self.init not in NEAR_TRUTH:
            raise ValueError(
                f"truth is only used by init='near_truth', but init={self.init!r}; drop truth= "
                "or use init='near_truth'."
            )
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"callback must be callable or None, got {type(self.callback)}.")
        solver = SOLVERS[self.solver]
        accepted = _solver_options(solver)
        unknown = sorted(set(self.solver_options) - accepted) if accepted is not None else []
        if unknown:
            raise TypeError(
                f"unknown option(s) {unknown} for solver={self.solver!r}; it accepts "
                f"{sorted(accepted)}."
            )
        return solver

    def _check_X(self, X: Any, fitted: bool = True) -> np.ndarray:
        X = check_array(X, "X", ndim=2)
        if X.ndim == 2 and X.shape[1] < 1:
            raise ValueError(f"X must have at least one column, got shape {X.shape}.")
        if fitted and X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} feature(s) but the model was fitted with "
                f"{self.n_features_in_}."
            )
        return X

    def _check_y(self, y: Any, n: int, fit: bool) -> np.ndarray:
        """Encoded ``y``; with ``fit=True`` the classes found are returned too (``(y, classes)``)
        and ``classes_`` is left alone, so a failing fit does not touch a fitted model."""
        try:
            raw = np.asarray(y)
        except ValueError:  # ragged: check_array below reports it
            raw = np.zeros(0)
        text = raw.dtype.kind in "US" or (
            raw.dtype.kind == "O" and raw.size > 0
            and all(isinstance(v, str) for v in raw.ravel()))
        if text and self.expert != "gaussian":
            return self._check_text_labels(raw, n, fit)
        label_dtype = raw.dtype
        y = check_array(y, "y", ndim=1)
        if y.shape[0] != n:
            raise ValueError(
                f"y must have one entry per row of X ({n}), got {y.shape[0]}. Pass X and y "
                "with the same number of samples."
            )
        if self.expert == "gaussian":
            return (y, None) if fit else y
        if not np.all(y == np.round(y)):
            raise ValueError(
                f"y must hold integer class labels for {self.expert!r} experts, got non-integer "
                f"values such as {y[y != np.round(y)][:3].tolist()}."
            )
        if fit:
            classes = np.unique(y)
            if self.expert == "logistic" and classes.size > 2:
                raise ValueError(
                    "y must hold two labels for logistic experts (the larger is the event, as "
                    f"in scikit-learn), got {classes.size} labels such as "
                    f"{classes[:10].tolist()}. Use expert='multinomial' for more classes."
                )
            if classes.size < 2:
                raise ValueError(
                    f"y must hold at least 2 classes for {self.expert!r} experts, got only "
                    f"{classes.tolist()}."
                )
            if label_dtype.kind in "iub":  # classes_ (and predict, sample) keep y's dtype
                classes = classes.astype(label_dtype)
        else:
            classes = self.classes_
            if classes.dtype.kind in "US":
                raise ValueError(
                    f"y holds numbers but the model was fitted on text labels (classes_ = "
                    f"{classes[:10].tolist()}); pass labels from classes_."
                )
        y_enc = _encode_labels(y, classes)
        y_enc = y_enc.astype(float) if self.expert == "logistic" else y_enc
        return (y_enc, classes) if fit else y_enc

    def _check_text_labels(self, raw: np.ndarray, n: int, fit: bool):
        """:meth:`_check_y` for string class labels (multinomial experts only)."""
        if raw.ndim != 1:
            raise ValueError(f"y must be 1-D, got an array of shape {raw.shape}.")
        if raw.shape[0] != n:
            raise ValueError(
                f"y must have one entry per row of X ({n}), got {raw.shape[0]}. Pass X and y "
                "with the same number of samples."
            )
        labels = raw.astype(str)
        if fit:
            classes = np.unique(labels)
            if classes.size < 2:
                raise ValueError(
                    f"y must hold at least 2 classes for {self.expert!r} experts, got only "
                    f"{classes.tolist()}."
                )
            if self.expert == "logistic" and classes.size > 2:
                raise ValueError(
                    f"y must hold two labels for logistic experts, got {classes.size} text "
                    f"labels such as "
                    f"{classes[:5].tolist()}. Use expert='multinomial' for more classes."
                )
            return _logistic_float(self.expert, _encode_labels(labels, classes)), classes
        if self.classes_.dtype.kind not in "US":
            raise ValueError(
                f"y holds text labels but the model was fitted on numeric labels (classes_ = "
                f"{self.classes_[:10].tolist()}); pass labels from classes_."
            )
        return _logistic_float(self.expert, _encode_labels(labels, self.classes_))

    def _check_options(self, X: np.ndarray, X_gate: Any, sample_weight: Any):
        """``(layout, [1, W], sample_weight)`` of the flexmix-style options, or
        ``(None, None, None)`` for the ordinary model (:mod:`softmix.moe.options`)."""
        gate, fit_intercept, variance = _options.check_options(self.gate, self.fit_intercept,
                                                               self.variance)
        Xg = None if X_gate is None else self._check_X_gate(X_gate, X.shape[0], None)
        weight = _options.check_sample_weight(sample_weight, X.shape[0])
        layout = _options.Layout(X.shape[1], None if Xg is None else Xg.shape[1], gate,
                                 fit_intercept, variance)
        if layout.is_default and weight is None:
            return None, None, None
        if self.solver != "em":
            raise ValueError(
                f"gate={gate!r}, fit_intercept={fit_intercept}, variance={variance!r}, X_gate "
                f"and sample_weight need solver='em' (got solver={self.solver!r}); use "
                "solver='em', or the defaults with the gradient solvers."
            )
        return layout, layout.design(X, Xg), weight

    def _check_X_gate(self, X_gate: Any, n: int, width: int | None) -> np.ndarray:
        Xg = check_array(X_gate, "X_gate", ndim=2)
        if Xg.shape[0] != n:
            raise ValueError(f"X_gate must have one row per row of X ({n}), got shape "
                             f"{Xg.shape}.")
        if width is not None and Xg.shape[1] != width:
            raise ValueError(f"X_gate has {Xg.shape[1]} column(s) but the model was fitted "
                             f"with {width}.")
        check_scale(Xg, "X_gate")
        return Xg

    def _design1(self, X: np.ndarray, X_gate: Any) -> np.ndarray:
        """The fitted model's design ``[1, W]`` for validated ``X`` (and ``X_gate``)."""
        layout = getattr(self, "_layout", None)
        q = None if layout is None else layout.n_gate_features
        if q is None:
            if X_gate is not None:
                raise ValueError("X_gate given, but the model was fitted without X_gate (its "
                                 "gate uses X); drop X_gate or refit with it.")
            return add_intercept(X) if layout is None else layout.design(X, None)
        if X_gate is None:
            raise ValueError(f"the model was fitted with X_gate ({q} column(s)); pass "
                             "X_gate= (the gate's covariates) here too.")
        return layout.design(X, self._check_X_gate(X_gate, X.shape[0], q))

    # ----------------------------------------------------------------- fit
    def fit(self, X: Any, y: Any, *, X_gate: Any = None,
            sample_weight: Any = None) -> MixtureOfExperts:
        """Fit the mixture of experts to ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Real responses (Gaussian), any two labels (logistic: the larger one, in sorted
            order, is the event, as in scikit-learn) or class labels (multinomial: integers
            or strings).
        X_gate : array-like of shape (n_samples, n_gate_features), optional
            Covariates of the gate (flexmix's concomitant variables); default: the gate uses X.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative observation weights: the fit maximises ``sum_j w_j log p(y_j|x_j)``.

        Returns
        -------
        self

        Notes
        -----
        Dask arrays (``X`` chunked by rows, ``y`` with the same row chunks) are fitted by
        chunked reductions on the active Dask scheduler, to the same result
        (:mod:`softmix.moe.dask`; ``solver="em"``, no ``X_gate`` / ``sample_weight``).
        """
        if _is_dask(X) or _is_dask(y):
            from softmix.moe.dask import fit_estimator

            return fit_estimator(self, X, y, X_gate=X_gate, sample_weight=sample_weight)
        solver = self._check_hyperparameters()
        X = self._check_X(X, fitted=False)
        y_enc, classes = self._check_y(y, X.shape[0], fit=True)
        check_scale(X, "X")
        if self.expert == "gaussian":
            check_scale(y_enc, "y")
        n, d = X.shape
        expert = EXPERTS[self.expert]
        n_classes = classes.size if self.expert == "multinomial" else None
        layout, W1, weight = self._check_options(X, X_gate, sample_weight)
        if layout is not None:
            n_params = layout.n_free_parameters(self.expert, self.n_experts, n_classes)
            if n < n_params:
                raise ValueError(
                    f"fewer samples ({n}) than free parameters ({n_params}) of a "
                    f"{self.n_experts}-expert {self.expert} model on {d} feature(s): the "
                    "maximum likelihood is not defined. Use more samples or fewer experts (a smaller "
                    "n_experts)."
                )
        if isinstance(self.init, MoEParams):
            check_params(self.init, n_features=d if layout is None else layout.width,
                         expert=self.expert, n_classes=n_classes, name="init")
            if self.init.n_experts != self.n_experts:
                raise ValueError(
                    f"init has {self.init.n_experts} experts but n_experts={self.n_experts}."
                )
        options = dict(self.solver_options)
        if self.solver == "em":  # before the start uses variance_floor
            check_em_options(**options)
        # internal coordinates: centred, scaled, identified columns (moe/standardize.py)
        std = fit_standardizer(X, y_enc, self.expert == "gaussian")
        Xi, yi = std.transform_X(X), std.transform_y(y_enc)
        r = Xi.shape[1]
        n_params = (self.n_experts - 1) * (r + 1) + self.n_experts * expert.n_params(r, n_classes)
        if layout is None and n < n_params:
            raise ValueError(
                f"fewer samples ({n}) than free parameters ({n_params}) of a {self.n_experts}-"
                f"expert {self.expert} model on {r} identified feature(s): the maximum "
                "likelihood is not defined. Use more samples or fewer experts (a smaller "
                "n_experts)."
            )
        rng = check_random_state(self.random_state)
        raw_options = dict(options)  # the options' fit runs in the user's units
        if "variance_floor" in options:
            options["variance_floor"] = std.variance_floor_in(options["variance_floor"])
        shift = std.log_scale(n)  # internal objective - shift = objective in y's units
        callback = self.callback
        if callback is not None:
            user_callback = callback

            def callback(it, params, value):
                return user_callback(it, std.params_out(params), value - shift)

        def fit_one(child: np.random.Generator) -> FitResult:
            if layout is not None and isinstance(self.init, MoEParams):  # on [1, X_gate, X]
                return _options.fit_estimator_run(
                    layout, X, W1, y_enc, self.init, True, sample_weight=weight,
                    max_iter=self.max_iter, tol=self.tol, ridge=self.ridge,
                    callback=self.callback, init_method="given", **raw_options)
            if isinstance(self.init, MoEParams):
                params0, name = std.params_in(self.init), "given"
            elif self.init in NEAR_TRUTH:  # the truth's noise is drawn in the user's units
                params0 = std.params_in(initialize(
                    self.init, X, y_enc, self.n_experts, self.expert, rng=child,
                    n_classes=n_classes, ridge=self.ridge, truth=self.truth))
                name = self.init
            else:
                params0 = initialize(
                    self.init, Xi, yi, self.n_experts, self.expert, rng=child,
                    n_classes=n_classes, ridge=self.ridge,
                    variance_floor=options.get("variance_floor"),
                )
                name = self.init
            if layout is not None:  # flexmix's options: the model on [1, X_gate, X]
                return _options.fit_estimator_run(
                    layout, X, W1, y_enc, std.params_out(params0), False,
                    sample_weight=weight, max_iter=self.max_iter, tol=self.tol,
                    ridge=self.ridge, callback=self.callback, init_method=name,
                    **raw_options)
            run = solver(Xi, yi, params0, max_iter=self.max_iter, tol=self.tol,
                         ridge=self.ridge, callback=callback, init_method=name, **options)
            return self._prune(run, solver, Xi, yi, callback, options)

        internal = fit_with_restarts(fit_one, self.n_init, rng)
        if layout is not None:
            result = internal
            if result.stop_reason != "init":  # canonical order (see softmix.moe.likelihood)
                result.params = result.params.permute(canonical_order(result.params, W1[:, 1:]))
        else:
            result = self._finish_internal(
                internal, std, shift, lambda p: canonical_order(p, X))
        self._store_fit(result, std, d=d, r=r, classes=classes, n_classes=n_classes,
                        layout=layout, log_lik=lambda: self._log_lik(X, y_enc).sum())
        if layout is None:  # (the options' fits are on [1, X_gate, X]: not diagnosed here)
            self._diagnose(internal, Xi, yi)
        return self

    def _finish_internal(self, internal: FitResult, std: Standardizer, shift: float,
                         order_of: Callable[[MoEParams], np.ndarray]) -> FitResult:
        """The chosen internal fit in canonical expert order (``order_of(params in the user's
        units)``, see :mod:`softmix.moe.likelihood`), mapped to the user's units."""
        if internal.stop_reason != "init":  # canonical order, decided in the user's units
            internal.params = internal.params.permute(order_of(std.params_out(internal.params)))
        result = _to_user_units(internal, std, shift)
        if result.stop_reason == "init" and isinstance(self.init, MoEParams):
            result.params = self.init  # max_iter=0 returns the start itself, bit for bit
        return result

    def _store_fit(self, result: FitResult, std: Standardizer, *, d: int, r: int,
                   classes: Any, n_classes: int | None, layout: Any,
                   log_lik: Callable[[], float]) -> None:
        """Set the fitted attributes from the final ``result`` (user's units); ``log_lik()``
        is the training log-likelihood when the solver did not report it."""
        # fitted attributes only now: a fit that raised leaves a fitted model as it was
        self.n_features_in_ = d
        if classes is not None:
            self.classes_ = classes
        self.fit_result_ = result
        self.params_ = result.params
        self._layout = layout
        self.standardizer_ = std
        self.dropped_features_ = np.asarray(std.dropped, dtype=np.intp)
        k_fit = result.params.n_experts
        self.n_experts_ = k_fit
        self.n_parameters_ = (
            (k_fit - 1) * (r + 1) + k_fit * EXPERTS[self.expert].n_params(r, n_classes)
            if layout is None else layout.n_free_parameters(self.expert, k_fit, n_classes))
        self.gating_coef_ = np.array(result.params.gating)
        self.expert_coef_ = np.array(result.params.expert_coef)
        if layout is not None:
            self.gating_coef_ = layout.gate_coef(result.params.gating)
            self.expert_coef_ = layout.expert_coef(result.params.expert_coef)
        self.weights_ = (np.exp(gate_log_proba_design(np.ones((1, 1)), self.gating_coef_))[0]
                         if self.gate == "constant" else None)
        self.expert_variance_ = (None if result.params.expert_variance is None
                                 else np.array(result.params.expert_variance))
        # every solver reports it; the fallback (an extra pass over the data) only runs if not
        reported = result.extra.get("log_likelihood")
        self.log_likelihood_ = float(reported if reported is not None else log_lik())
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.history_ = result.history

    def _prune(self, run: FitResult, solver, Xi, yi, callback, options) -> FitResult:
        """flexmix's ``minprior``: remove experts whose weight share is below ``min_weight``
        and continue the fit with the others, until none is below (or one expert is left)."""
        X1 = add_intercept(Xi)

        def shares(params):
            tau = e_step(X1, yi, params, self.ridge)[0]
            return tau.mean(axis=0), effective_points(tau)

        def refit(reduced, init_method):
            return solver(Xi, yi, reduced, max_iter=self.max_iter, tol=self.tol,
                          ridge=self.ridge, callback=callback, init_method=init_method,
                          **options)

        return self._prune_with(run, shares, refit)

    def _prune_with(self, run: FitResult, shares, refit) -> FitResult:
        """:meth:`_prune` given ``shares(params) -> (mean responsibility, effective points)``
        (both (k,)) and ``refit(params, init_method) -> FitResult`` (in memory or on blocks)."""
        removed = []
        while self.min_weight > 0 and run.params.n_experts > 1:
            share, eff = shares(run.params)
            small = share < self.min_weight
            if not small.any():
                break
            keep = np.flatnonzero(~small)
            if keep.size == 0:  # every share below: keep the largest expert
                keep = np.array([int(np.argmax(share))])
            removed.append({"experts": np.flatnonzero(small).tolist(),
                            "shares": share[small].tolist(),
                            "effective_points": eff[small].tolist(),
                            "objective": run.objective, "n_iter": run.n_iter})
            warnings.warn(
                f"expert(s) {np.flatnonzero(small).tolist()} (0-based, of "
                f"{run.params.n_experts}) held weight share(s) "
                f"{[round(float(v), 4) for v in share[small]]} below min_weight="
                f"{self.min_weight:g} ({[round(float(v), 1) for v in eff[small]]}"
                " effective points) and were removed; the fit continued with "
                f"{keep.size} expert(s) (n_experts_). Set min_weight=0 to keep every expert.",
                DegenerateComponentWarning,
                stacklevel=5,
            )
            p = run.params
            gating = p.gating[keep] - p.gating[keep][-1]
            var = None if p.expert_variance is None else p.expert_variance[keep]
            reduced = MoEParams(gating, p.expert_coef[keep], var, p.expert)
            run = refit(reduced, run.init_method)
        if removed:
            run.extra["removed_experts"] = removed
        return run

    def _diagnose(self, internal: FitResult, Xi: np.ndarray, yi: np.ndarray) -> None:
        """Warnings about the chosen fit: separation, experts thinner than their parameters."""
        params = internal.params
        X1 = add_intercept(Xi)
        with np.errstate(all="ignore"):
            tau = e_step(X1, yi, params, self.ridge)[0]
        # with a ridge the penalised MLE is finite: large logits there are the fit, not a
        # solver stopping on the way to infinity
        found = separation(X1, yi, params, tau) if self.ridge == 0 else {}
        self._warn_diagnostics(params, found, thin_experts(tau, params))

    def _warn_diagnostics(self, params: MoEParams, found: dict, thin: dict,
                          stacklevel: int = 4) -> None:
        """Record and warn about separation (``found``) and thin experts (``thin``)."""
        self.fit_result_.extra["separation"] = found
        if found:
            where = ", ".join(f"{block} ({count} point(s))" for block, count in found.items())
            warnings.warn(
                f"fitted probabilities numerically 0 or 1 occurred in the {where}: the data "
                "are (quasi-)separated there, the maximum likelihood is at infinity and the "
                "reported coefficients (largest |coefficient| "
                f"{max(np.abs(self.gating_coef_).max(), np.abs(self.expert_coef_).max()):.3g})"
                " are wherever the solver stopped. Use a ridge (e.g. ridge=1e-2) for a finite, "
                "penalised fit, or fewer experts / features.",
                SoftmixWarning,
                stacklevel=stacklevel,
            )
        self.fit_result_.extra["thin_experts"] = thin
        n_par = EXPERTS[params.expert].n_params(params.n_features, params.n_classes)
        for i, eff in sorted(thin.items()):
            warnings.warn(
                f"expert {i} (0-based) of the chosen fit holds {eff:.2f} effective point(s), "
                f"fewer than its {n_par} parameters: its estimates are not determined by the "
                "data (a spike of the likelihood, not a model). Raise min_weight, use fewer "
                "experts or more data.",
                DegenerateComponentWarning,
                stacklevel=stacklevel,
            )

    # ----------------------------------------------------------------- predictions
    def _log_lik(self, X: np.ndarray, y_enc: np.ndarray, X_gate: Any = None) -> np.ndarray:
        return logsumexp(log_joint_design(self._design1(X, X_gate), y_enc, self.params_),
                         axis=1)

    def _lazy(self, method, X: Any, X_gate: Any, *others: Any, width: int | None = None,
              dtype: Any = float):
        """``method`` on every row block of a Dask ``X`` (and ``others``, e.g. ``y``): a lazy
        Dask array (:func:`softmix.moe.dask.map_rows`). ``X_gate`` is not supported there."""
        from softmix.moe.dask import map_rows

        if X_gate is not None:
            raise ValueError("X_gate with Dask arrays is not supported (Dask fits have no "
                             "X_gate); drop X_gate.")
        if not others:
            return map_rows(lambda xb: method(xb), X, width=width, dtype=dtype)
        return map_rows(lambda xb, yb: method(xb, yb), X, *others, width=width, dtype=dtype)

    def gate_proba(self, X: Any, X_gate: Any = None) -> np.ndarray:
        """Gate probabilities ``P(z = i | x)``, shape (n_samples, n_experts)."""
        check_fitted(self)
        if _is_dask(X):
            return self._lazy(self.gate_proba, X, X_gate, width=self.n_experts_)
        X = self._check_X(X)
        return np.exp(gate_log_proba_design(self._design1(X, X_gate), self.params_.gating))

    def posterior(self, X: Any, y: Any, X_gate: Any = None) -> np.ndarray:
        """Posterior expert probabilities ``P(z = i | x, y)``, shape (n_samples, n_experts)."""
        check_fitted(self)
        if _is_dask(X) or _is_dask(y):
            return self._lazy(self.posterior, X, X_gate, y, width=self.n_experts_)
        X = self._check_X(X)
        y_enc = self._check_y(y, X.shape[0], fit=False)
        lj = log_joint_design(self._design1(X, X_gate), y_enc, self.params_)
        return np.exp(lj - logsumexp(lj, axis=1, keepdims=True))

    @property
    def predict_proba(self) -> Callable[[Any], np.ndarray]:
        """Class probabilities ``sum_i P(z=i|x) P(y=c|x,z=i)``, shape (n_samples, n_classes).

        ``predict_proba(X)``, only for classification experts (``"logistic"``,
        ``"multinomial"``); columns follow ``classes_``. With Gaussian experts the attribute
        itself raises an error that is both a ValueError and an AttributeError, so
        ``hasattr(model, "predict_proba")`` is False, as scikit-learn's tools expect (its
        ``available_if`` pattern).
        """
        if self.expert == "gaussian":
            raise _UnavailableError(
                "predict_proba is defined for classification experts ('logistic', "
                "'multinomial'); Gaussian experts predict a mean: use predict(X)."
            )
        return self._predict_proba

    def _predict_proba(self, X: Any, X_gate: Any = None) -> np.ndarray:
        check_fitted(self)
        if _is_dask(X):
            return self._lazy(self._predict_proba, X, X_gate, width=self.classes_.size)
        X = self._check_X(X)
        X1 = self._design1(X, X_gate)
        gate = np.exp(gate_log_proba_design(X1, self.params_.gating))
        means = EXPERTS[self.expert].mean(X1, self.params_.expert_coef)
        if self.expert == "logistic":
            p1 = np.sum(gate * means, axis=1)
            return np.column_stack([1.0 - p1, p1])
        return np.einsum("nk,nkc->nc", gate, means)

    def predict(self, X: Any, X_gate: Any = None) -> np.ndarray:
        """Conditional mean ``E[y | x]`` (Gaussian experts) or most probable class.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_fitted(self)
        if _is_dask(X):
            dtype = float if self.expert == "gaussian" else self.classes_.dtype
            return self._lazy(self.predict, X, X_gate, dtype=dtype)
        if self.expert != "gaussian":
            return self.classes_[np.argmax(self.predict_proba(X, X_gate), axis=1)]
        X = self._check_X(X)
        X1 = self._design1(X, X_gate)
        gate = np.exp(gate_log_proba_design(X1, self.params_.gating))
        return np.sum(gate * EXPERTS["gaussian"].mean(X1, self.params_.expert_coef), axis=1)

    def score(self, X: Any, y: Any, X_gate: Any = None) -> float:
        """Mean log-likelihood per sample, ``(1/n) sum_j log p(y_j | x_j)``.

        With Dask arrays: a lazy 0-d Dask array (``.compute()`` gives the float)."""
        if _is_dask(X) or _is_dask(y):
            return self.score_samples(X, y, X_gate).mean()
        return float(np.mean(self.score_samples(X, y, X_gate)))

    def score_samples(self, X: Any, y: Any, X_gate: Any = None) -> np.ndarray:
        """``log p(y_j | x_j)`` per sample, shape (n_samples,) (a lazy Dask array for Dask
        inputs)."""
        check_fitted(self)
        if _is_dask(X) or _is_dask(y):
            return self._lazy(self.score_samples, X, X_gate, y)
        X = self._check_X(X)
        return self._log_lik(X, self._check_y(y, X.shape[0], fit=False), X_gate)

    def n_parameters(self) -> int:
        """Identified free parameters of the fitted model (what BIC and AIC count).

        Equal to ``n_parameters_``: ``(k-1)(r+1)`` gating parameters plus ``k`` times one
        expert's (``r + 2`` Gaussian, ``r + 1`` logistic, ``(C-1)(r+1)`` multinomial), where
        ``r`` is the number of identified columns of ``X`` (``n_features_in_`` minus the
        constant or collinear columns in ``dropped_features_``). Model selection and inference
        code should call this, not count ``params_``' entries (which include the dropped
        columns' zero coefficients).
        """
        check_fitted(self)
        return int(self.n_parameters_)

    def bic(self, X: Any, y: Any, X_gate: Any = None) -> float:
        """Bayesian information criterion ``-2 log L + n_parameters log n`` (lower is better)."""
        log_lik = self.score_samples(X, y, X_gate)  # validates X and y first
        return -2.0 * float(log_lik.sum()) + self.n_parameters() * np.log(log_lik.size)

    def aic(self, X: Any, y: Any, X_gate: Any = None) -> float:
        """Akaike information criterion ``-2 log L + 2 n_parameters`` (lower is better)."""
        return -2.0 * float(self.score_samples(X, y, X_gate).sum()) + 2.0 * self.n_parameters()

    def sample(self, X: Any, random_state: None | int | np.random.Generator = None,
               X_gate: Any = None) -> tuple:
        """Draw responses at the given inputs from the fitted model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        random_state : None, int or Generator
            Default: a fresh generator (never the global state).

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Responses (class labels from ``classes_`` for classification experts).
        z : ndarray of shape (n_samples,)
            Expert that generated each response.
        """
        check_fitted(self)
        X = self._check_X(X)
        rng = check_random_state(random_state)
        W1 = self._design1(X, X_gate)
        y, z = _sample(W1[:, 1:], self.params_, rng)
        if self.expert != "gaussian":
            y = self.classes_[np.asarray(y, dtype=np.intp)]
        return y, z

    # ----------------------------------------------------------------- inference
    def _protocol(self):
        """The family's likelihood-protocol module (used by softmix.inference / selection)."""
        from softmix.moe import likelihood

        return likelihood

    def inference(self, X: Any, y: Any, *, method: str = "observed", level: float = 0.95,
                  groups: Any = None, n_boot: int = 200, bootstrap: str = "nonparametric",
                  random_state: Any = None, X_gate: Any = None, sample_weight: Any = None):
        """Standard errors, z-values and intervals of ``gate[i,j]``, ``coef[i,j]`` (multinomial
        ``coef[i,c,j]``) and ``variance[i]``.

        Same data as :meth:`fit`. ``method``: ``"observed"`` (exact observed information),
        ``"sandwich"`` (robust; cluster-robust with ``groups``, one label per row) or
        ``"bootstrap"`` (``n_boot`` refits from the fit, ``"nonparametric"`` (rows, or whole
        groups) or ``"parametric"``, seeded by ``random_state``). See
        :mod:`softmix.inference.covariance`. Experts are in the canonical order of
        :mod:`softmix.moe.likelihood`; the last expert is the gating reference (not reported).

        Fits with the options of :mod:`softmix.moe.options` take ``X_gate=`` (when the fit had
        it) and the same ``sample_weight=`` as :meth:`fit`: the constrained coefficients are
        not parameters (``gate="constant"`` reports the mixing weights ``weight[i]``;
        ``gate[i,j]`` indexes ``[1, X_gate]``, ``coef[i,j]`` indexes ``[1, X]`` with no
        ``j = 0`` when ``fit_intercept=False``; ``variance="equal"`` reports one
        ``variance``). ``sample_weight`` are frequency weights (row j counts ``w_j`` times):
        the observed information and the sandwich's meat are weighted sums; for sampling
        weights use ``method="sandwich", groups=np.arange(n)``.

        Returns
        -------
        softmix.inference.InferenceResult
        """
        return self._protocol().model_inference(
            self, X, y, method=method, level=level, groups=groups, n_boot=n_boot,
            bootstrap=bootstrap, random_state=random_state, X_gate=X_gate,
            sample_weight=sample_weight)

    def summary(self, X: Any, y: Any, **options: Any) -> str:
        """Text report (model, sizes, log-likelihood, AIC/BIC/ICL, convergence, parameter table);
        options as :meth:`inference`."""
        return self.inference(X, y, **options).summary()
