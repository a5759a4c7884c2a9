"""``LatentClassLogit``: latent class conditional logit on long-format choice data, by EM."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from softmix._validation import (
    check_array,
    check_fitted,
    check_float,
    check_int,
    check_random_state,
)
from softmix.choice import likelihood as lik
from softmix.choice.data import ChoiceData, check_identified, prepare_choice_data
from softmix.choice.model import (
    LatentClassLogitParams,
    class_log_probabilities,
    e_step,
    log_weights,
    make_em_map,
    objective,
    params_from_responsibilities,
)
from softmix.core.em import run_em
from softmix.core.restarts import fit_with_restarts
from softmix.core.result import FitResult
from softmix.exceptions import DegenerateComponentWarning, SoftmixWarning

__all__ = ["LatentClassLogit"]

INITS = ("random",)
#: The stop rule's floor per choice situation (nats): float64's precision, as for the softmax
#: mixture (the criterion cannot get below the round-off of sums over the situations).
_PRECISION_FLOOR = 1e-15
#: Fitted class weights below this or above 1 minus it are "numerically 0 or 1" (R glm's eps).
_SEPARATION_EPS = 10.0 * np.finfo(float).eps


class LatentClassLogit:
    """Latent class (mixed) conditional logit for long-format choice data, fit by EM.

    Each choice situation has its own set of available alternatives (the rows of ``X`` with its
    situation id); each group (a person, with ``groups``) keeps one latent class for all its
    situations; class weights may depend on group covariates (a multinomial logit, the
    class-membership / concomitant model).

    Parameters
    ----------
    n_classes : int
        K, the number of latent classes.
    init : "random", LatentClassLogitParams, dict or array-like, default="random"
        ``"random"``: each group assigned to a uniformly random class (flexmix's default start),
        then an M-step. Or starting parameters (``LatentClassLogitParams``, or a dict with
        ``coef`` (K, L) and ``membership_coef`` (K, q + 1) or ``weights`` (K,)), or starting
        posteriors, an array of shape (n_groups, K) in the order of ``groups_`` (the sorted
        group ids), from which the first step is an M-step (to match another program's start).
    n_init : int, default=1
        Runs from independent random starts; the best log-likelihood is kept (every run's final
        value in ``fit_result_.all_objectives``). Must be 1 with a given start.
    max_iter : int, default=1000
        EM iterations per run; 0 returns the start.
    tol : float, default=1e-7
        Stop when the (penalised) log-likelihood one exact M-step would still gain is
        ``<= tol`` **nats** (the scale-free rule of :func:`softmix.core.em.run_em`:
        ``fit_result_.criterion = "newton_decrement"``, the complete-data Newton decrements of
        the classes' logits and the membership logit, read off the M-step; zero exactly at a
        stationary point, the same at any number of groups). Floored at ``1e-15`` times the
        number of choice situations (float64's precision; ``fit_result_.extra["tol_used"]``).
        0 runs exactly ``max_iter`` iterations.
    ridge : float, default=0.0
        Penalty ``ridge / 2 (||beta||^2 + ||gamma_free||^2)`` on the class and membership
        coefficients (EM then maximises the penalised log-likelihood; ``history_`` records it).
        > 0 keeps estimates finite when a class is separable (e.g. always chooses one
        alternative).
    newton_max_iter : int, default=20
        Damped-Newton iterations per class and EM iteration (warm-started; the solve stops
        earlier when its predicted remaining gain is below ``tol / (10 (K + 1))`` nats). Each iteration never lowers its part
        of the EM surrogate, so EM is monotone for any value (1 gives a generalised EM).
    accelerate : {None, "squarem"}, default="squarem"
        SQUAREM extrapolation of the EM map with a monotonicity fallback (see
        :func:`softmix.core.em.run_em`); ``None`` for plain EM.
    random_state : None, int or numpy.random.Generator
    callback : callable, optional
        ``callback(iteration, params, objective)`` after each iteration; truthy return stops.

    Attributes
    ----------
    params_ : LatentClassLogitParams
    coef_ : ndarray of shape (n_classes, n_features)
        ``beta_k``, one row per class.
    membership_coef_ : ndarray of shape (n_classes, n_covariates + 1)
        Column 0 the intercept, then one column per covariate; the last row (the reference class
        K - 1) zeros: ``membership_coef_[k]`` are class k's log-odds against class K - 1, the
        gauge of the whole package (the softmax mixture's ``covariates`` and the mixture of
        experts' gate). flexmix, mlogit and biogeme fix the first class instead (the
        same model: compare after subtracting the same row from every row).
    weights_ : ndarray of shape (n_classes,)
        Class weights: without covariates the model's weights; with covariates the average of
        the groups' fitted weights. Classes are in decreasing order of ``weights_`` after
        every fit (``max_iter=0`` excepted; :func:`softmix.choice.likelihood.canonical_order`),
        so fits from different starts or seeds are comparable class by class.
    log_likelihood_ : float
        Log-likelihood at ``params_`` on the training data (unpenalised).
    n_iter_, converged_, stop_reason_, history_, fit_result_
        As for every softmix estimator (one EM driver). ``fit_result_.criterion`` is
        ``"newton_decrement"`` and ``criterion_value`` the stop rule's final value (see
        ``tol``). ``fit_result_.extra["observed_newton_decrement"]`` is the Newton decrement
        ``g' (-H)^{-1} g / 2`` of the observed log-likelihood at the returned parameters
        (analytic score and Hessian, :mod:`softmix.choice.likelihood`; ``inf`` where ``-H`` is
        not positive definite, with a warning; not computed with ``ridge > 0``).
    groups_ : ndarray of shape (n_groups,)
        Sorted group ids (the situation ids when no ``groups`` was given): the rows of
        :meth:`predict_proba` without arguments.
    n_groups_, n_situations_, n_features_in_, n_covariates_ : int
    data_ : ChoiceData
        The validated, sorted training data: with ``theta = likelihood.to_vector(params_)``,
        ``softmix.choice.likelihood.hessian(theta, data_, n_classes)`` and
        ``score(theta, data_, n_classes, per_group=True)`` give observed-information and
        sandwich / cluster standard errors.

    Notes
    -----
    ``P(j | s, k) = exp(x_j' beta_k) / sum_{l in s} exp(x_l' beta_k)``,
    ``w_gk = softmax_k(gamma_k0 + z_g' gamma_k)`` and the log-likelihood
    ``sum_g s_g log sum_k w_gk prod_{s in g} P(c_s | s, k)``. See
    :mod:`softmix.choice.model`. BIC/AIC count ``K L + (K - 1)(q + 1)`` parameters and BIC uses
    n = the number of groups (independent units; the number of situations without
    ``groups``), or the sum of their weights.

    The class-membership gauge is the package's: the last class K - 1 is the reference (its row
    of ``membership_coef_`` is zero), as for ``SoftmaxMixture(...).fit(..., covariates=Z)`` and
    the mixture-of-experts gate. Standard errors: :meth:`inference` / :meth:`summary`
    (``coef[k,l]``, ``membership[k,j]`` for k < K - 1 or ``weight[k]``); choosing K:
    ``softmix.select_n_components(LatentClassLogit(1), range(1, 5), X, chosen, situations,
    groups=g)`` (BIC, AIC, ICL, or held-out log-likelihood over whole groups).
    """

    def __init__(
        self,
        n_classes: int,
        *,
        init: Any = "random",
        n_init: int = 1,
        max_iter: int = 1000,
        tol: float = 1e-7,
        ridge: float = 0.0,
        newton_max_iter: int = 20,
        accelerate: str | None = "squarem",
        random_state: None | int | np.random.Generator = None,
        callback: Callable[[int, LatentClassLogitParams, float], Any] | None = None,
    ) -> None:
        self.n_classes = n_classes
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.ridge = ridge
        self.newton_max_iter = newton_max_iter
        self.accelerate = accelerate
        self.random_state = random_state
        self.callback = callback

    # -- scikit-learn protocol ---------------------------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        return [n for n in inspect.signature(cls.__init__).parameters if n != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters as a dict (scikit-learn protocol)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> LatentClassLogit:
        """Set hyperparameters; unknown names raise ValueError."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"invalid parameter {name!r} for LatentClassLogit; valid: {valid}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()
                         if k != "init" or isinstance(v, str))
        return f"LatentClassLogit({args})"

    # -- fitting -----------------------------------------------------------------------------

    def _hyper(self) -> dict[str, Any]:
        k = check_int(self.n_classes, "n_classes", low=1)
        n_init = check_int(self.n_init, "n_init", low=1)
        if not isinstance(self.init, str) and n_init > 1:
            raise ValueError(
                f"n_init={n_init} with a given init would repeat the same run; use n_init=1 or "
                "init='random'."
            )
        if isinstance(self.init, str) and self.init not in INITS:
            raise ValueError(
                f"init must be one of {INITS}, starting parameters (LatentClassLogitParams or a "
                "dict with 'coef' and 'membership_coef' or 'weights') or starting posteriors "
                f"(n_groups, n_classes); got {self.init!r}."
            )
        if self.accelerate not in (None, "squarem"):
            raise ValueError(f"accelerate must be 'squarem' or None, got {self.accelerate!r}.")
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"callback must be callable or None, got {type(self.callback)}.")
        return {
            "k": k, "n_init": n_init,
            "max_iter": check_int(self.max_iter, "max_iter", low=0),
            "tol": check_float(self.tol, "tol", low=0.0),
            "ridge": check_float(self.ridge, "ridge", low=0.0),
            "newton_max_iter": check_int(self.newton_max_iter, "newton_max_iter", low=1),
        }

    def _given_start(self, data: ChoiceData, k: int, ridge: float) -> LatentClassLogitParams:
        init, q, length = self.init, data.n_covariates, data.n_features
        if isinstance(init, LatentClassLogitParams):
            params = init
        elif isinstance(init, Mapping):
            if "coef" not in init or ("membership_coef" in init) == ("weights" in init):
                raise ValueError(
                    "init as a dict needs 'coef' and exactly one of 'membership_coef' or "
                    f"'weights'; got keys {sorted(init)}."
                )
            if "weights" in init:
                if q:
                    raise ValueError("init 'weights' is for a model without covariates; give "
                                     "'membership_coef' of shape (K, q + 1).")
                params = LatentClassLogitParams.from_weights(init["coef"], init["weights"])
            else:
                params = LatentClassLogitParams(init["coef"], init["membership_coef"])
        else:
            resp = check_array(init, "init", ndim=2)
            if resp.shape != (data.n_groups, k):
                raise ValueError(
                    f"init as starting posteriors must have shape (n_groups, n_classes) = "
                    f"({data.n_groups}, {k}), got {resp.shape}."
                )
            if np.any(resp < 0) or not np.allclose(resp.sum(axis=1), 1.0):
                raise ValueError("init posteriors must be non-negative with rows summing to 1.")
            return params_from_responsibilities(resp, data, length, ridge=ridge)
        if params.coef.shape != (k, length) or params.membership_coef.shape != (k, q + 1):
            raise ValueError(
                f"init must have coef of shape ({k}, {length}) and membership_coef of shape "
                f"({k}, {q + 1}); got {params.coef.shape} and {params.membership_coef.shape}."
            )
        return params

    def fit(self, X: Any, chosen: Any, situations: Any, *, groups: Any = None,
            covariates: Any = None, sample_weight: Any = None) -> LatentClassLogit:
        """Fit by EM on long-format choice data.

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features)
            Attributes of each available alternative of each situation (one row each).
            Alternatives absent from a situation are unavailable in it.
        chosen : array-like of shape (n_rows,)
            1 (or True) on the chosen alternative of each situation, 0 elsewhere: exactly one
            per situation.
        situations : array-like of shape (n_rows,)
            Situation id of each row (ints or strings; any order).
        groups : array-like of shape (n_rows,), optional
            Panel id (person) of each row, constant within a situation: a group keeps one
            class for all its situations. Default: each situation is its own group.
        covariates : array-like of shape (n_rows, n_covariates) or (n_rows,), optional
            Class-membership covariates, constant within a group (without an intercept).
        sample_weight : array-like of shape (n_rows,), optional
            Non-negative weights, constant within a group (a group's weight).

        Returns
        -------
        self
        """
        hp = self._hyper()
        data = prepare_choice_data(X, chosen, situations, groups=groups, covariates=covariates,
                                   sample_weight=sample_weight)
        check_identified(data)
        k, ridge = hp["k"], hp["ridge"]
        if k > data.n_groups:
            raise ValueError(f"n_classes={k} exceeds the number of groups ({data.n_groups}).")
        rng = check_random_state(self.random_state)
        q, length = data.n_covariates, data.n_features

        tol_used = max(hp["tol"], _PRECISION_FLOOR * data.n_situations) if hp["tol"] > 0 else 0.0

        def fit_one(child: np.random.Generator) -> FitResult:
            if isinstance(self.init, str):
                labels = child.integers(0, k, size=data.n_groups)
                resp = np.eye(k)[labels]
                params0 = params_from_responsibilities(resp, data, length, ridge=ridge)
                name = "random"
            else:
                params0, name = self._given_start(data, k, ridge), "given"
            emap = make_em_map(data, ridge=ridge, newton_max_iter=hp["newton_max_iter"],
                               tol=tol_used)
            res = run_em(
                params0, emap, lambda p: objective(p, data, ridge), max_iter=hp["max_iter"],
                tol=tol_used, callback=self.callback, init_method=name,
                name="LatentClassLogit EM", accelerate=self.accelerate,
                to_vector=lik.to_vector, from_vector=lambda v: lik.from_vector(v, k, length, q),
                stationarity=emap.stationarity, criterion="newton_decrement",
            )
            res.extra["tol_used"] = tol_used
            return res

        result = fit_with_restarts(fit_one, hp["n_init"], rng)
        if result.stop_reason != "init":  # canonical class order (choice.likelihood)
            result.params = lik.canonical_order(result.params, data)
        params = result.params
        theta = None
        try:
            theta = lik.to_vector(params)
        except ValueError:
            pass
        observed = float("nan")
        if theta is not None and ridge == 0.0:
            observed = lik.newton_decrement(theta, data, k)
            result.extra["observed_newton_decrement"] = observed
        if observed == float("inf"):
            warnings.warn(
                "LatentClassLogit: the observed information is singular at the returned "
                "parameters (not a strict local maximum): a class may be (nearly) empty, two "
                "classes equal, or the membership model separable (max |membership_coef_| = "
                f"{np.max(np.abs(params.membership_coef)):.3g}). Use ridge > 0, fewer classes "
                "or other starts; standard errors are not available here.",
                SoftmixWarning, stacklevel=2,
            )
        log_resp, loglik, _ = e_step(params, data)
        if ridge == 0.0 and data.Z is not None and k > 1:
            # R glm's rule (as the mixture of experts' gate): fitted weights numerically 0 or 1
            with np.errstate(under="ignore"):
                w = np.exp(log_weights(params, data))
            saturated = int(np.sum(np.any((w < _SEPARATION_EPS) | (w > 1 - _SEPARATION_EPS),
                                          axis=1)))
            if saturated:
                warnings.warn(
                    f"LatentClassLogit: the membership model is (quasi-)separable: {saturated} "
                    "group(s) have fitted class weights numerically 0 or 1, so the maximum "
                    "likelihood is at infinity and membership_coef_ (max |.| = "
                    f"{np.max(np.abs(params.membership_coef)):.3g}) is wherever EM stopped. Use "
                    "ridge > 0 (a finite penalised estimate), fewer classes or fewer covariates.",
                    SoftmixWarning, stacklevel=2,
                )
        mass = np.exp(log_resp).sum(axis=0)
        empty = np.flatnonzero(mass < 1e-8 * data.n_groups)
        if empty.size:
            warnings.warn(
                f"LatentClassLogit: class(es) {empty.tolist()} hold no group (posterior mass "
                f"{mass[empty]}); fit fewer classes or use other starts (n_init).",
                DegenerateComponentWarning, stacklevel=2,
            )
        self.fit_result_ = result
        self.params_ = params
        self.coef_ = np.array(params.coef)
        self.membership_coef_ = np.array(params.membership_coef)

        lw = np.exp(log_weights(params, data))
        self.weights_ = (lw.mean(axis=0) if data.group_weights is None
                         else data.group_weights @ lw / data.group_weights.sum())
        self.log_likelihood_ = float(loglik)
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.stop_reason_ = result.stop_reason
        self.history_ = result.history
        self.init_method_ = result.init_method
        self.groups_ = data.group_ids
        self.n_groups_ = data.n_groups
        self.n_situations_ = data.n_situations
        self.n_features_in_ = length
        self.n_covariates_ = q
        self.n_weight_ = data.total_weight
        self.posteriors_ = np.exp(log_resp)
        self.data_ = data
        return self

    @classmethod
    def _frame_arrays(cls, df, choice: str, situation: str, group: str | None,
                      attributes: Sequence[str], covariates: Sequence[str] | None,
                      weight: str | None) -> dict[str, Any]:
        if not hasattr(df, "columns"):
            raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}.")
        names = [choice, situation] + list(attributes) + list(covariates or [])
        names += [n for n in (group, weight) if n is not None]
        missing = [n for n in names if n not in df.columns]
        if missing:
            raise ValueError(f"columns {missing} are not in df; its columns: {list(df.columns)}.")
        if not attributes:
            raise ValueError("attributes must name at least one column of df.")
        return {
            "X": df[list(attributes)].to_numpy(dtype=float),
            "chosen": df[choice].to_numpy(),
            "situations": df[situation].to_numpy(),
            "groups": None if group is None else df[group].to_numpy(),
            "covariates": None if not covariates else df[list(covariates)].to_numpy(dtype=float),
            "sample_weight": None if weight is None else df[weight].to_numpy(dtype=float),
        }

    @classmethod
    def from_frame(cls, df, *, choice: str, situation: str, attributes: Sequence[str],
                   group: str | None = None, covariates: Sequence[str] | None = None,
                   weight: str | None = None, n_classes: int = 2,
                   **hyperparameters: Any) -> LatentClassLogit:
        """Build and fit from a long-format pandas DataFrame (one row per available
        alternative).

        Parameters
        ----------
        df : pandas.DataFrame
        choice, situation : str
            Columns of the 0/1 choice indicator and the situation id.
        attributes : list of str
            Columns of X.
        group : str, optional
            Column of the panel id.
        covariates : list of str, optional
            Columns of the membership covariates (constant within a group).
        weight : str, optional
            Column of the group weights.
        n_classes : int, default=2
        **hyperparameters
            Passed to :class:`LatentClassLogit` (``n_init``, ``random_state``, ...).

        Returns
        -------
        LatentClassLogit
            Fitted; ``attributes_`` and ``covariates_`` hold the column names.
        """
        arrays = cls._frame_arrays(df, choice, situation, group, attributes, covariates, weight)
        model = cls(n_classes, **hyperparameters)
        model.fit(arrays["X"], arrays["chosen"], arrays["situations"], groups=arrays["groups"],
                  covariates=arrays["covariates"], sample_weight=arrays["sample_weight"])
        model.attributes_ = list(attributes)
        model.covariates_ = list(covariates or [])
        return model

    # -- fitted-model methods ----------------------------------------------------------------

    def _data(self, X, chosen, situations, groups, covariates, sample_weight) -> ChoiceData:
        check_fitted(self)
        return prepare_choice_data(X, chosen, situations, groups=groups, covariates=covariates,
                                   sample_weight=sample_weight, n_features=self.n_features_in_,
                                   n_covariates=self.n_covariates_)

    def predict_proba(self, X: Any = None, chosen: Any = None, situations: Any = None, *,
                      groups: Any = None, covariates: Any = None) -> np.ndarray:
        """Posterior class probabilities of each group given its choices.

        Without arguments, the training groups' posteriors (rows in the order of ``groups_``).
        Otherwise on new long-format data; rows follow the sorted group ids (the sorted
        situation ids without ``groups``).

        Returns
        -------
        ndarray of shape (n_groups, n_classes)
        """
        check_fitted(self)
        if X is None and chosen is None and situations is None:
            return self.posteriors_.copy()
        data = self._data(X, chosen, situations, groups, covariates, None)
        return np.exp(e_step(self.params_, data)[0])

    def predict(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """Most probable class of each group (arguments as :meth:`predict_proba`)."""
        return np.argmax(self.predict_proba(*args, **kwargs), axis=1)

    def _loglik(self, X, chosen, situations, groups, covariates, sample_weight):
        if X is None and chosen is None and situations is None:
            check_fitted(self)
            return self.log_likelihood_, self.n_weight_
        data = self._data(X, chosen, situations, groups, covariates, sample_weight)
        return e_step(self.params_, data)[1], data.total_weight

    def score(self, X: Any = None, chosen: Any = None, situations: Any = None, *,
              groups: Any = None, covariates: Any = None, sample_weight: Any = None) -> float:
        """Mean log-likelihood per group (per situation without ``groups``); no argument:
        on the training data."""
        ll, n = self._loglik(X, chosen, situations, groups, covariates, sample_weight)
        return ll / n

    # -- inference (softmix.inference; the glue is in softmix/choice/inference.py) ----------

    def _protocol(self):
        """The family's likelihood-protocol module (used by softmix.inference / selection)."""
        from softmix.choice import inference

        return inference

    def inference(self, X: Any = None, chosen: Any = None, situations: Any = None, *,
                  groups: Any = None, covariates: Any = None, sample_weight: Any = None,
                  method: str = "observed", level: float = 0.95, n_boot: int = 200,
                  bootstrap: str = "nonparametric", random_state: Any = None):
        """Standard errors, z-values and intervals of ``coef[k,l]`` (class k's taste
        coefficients) and ``membership[k,j]`` (k < K - 1, the non-reference classes; j = 0 the
        intercept) with covariates, or ``weight[k]`` without.

        Same data arguments as :meth:`fit` (none: the training data). ``method``:
        ``"observed"`` (the analytic observed information of
        :mod:`softmix.choice.likelihood`), ``"sandwich"`` (cluster-robust over the groups, the
        independent units; the situations without ``groups``) or ``"bootstrap"`` (``n_boot``
        refits from the fit: ``bootstrap="nonparametric"`` resamples whole groups with all
        their rows, ``"parametric"`` draws choices from the fit on the same design; seeded by
        ``random_state``). See :mod:`softmix.inference.covariance`. Classes are in the fitted
        order (the rows of ``coef_``); bootstrap refits are matched to them on ``coef_``.
        ``sample_weight`` are frequency weights in the observed information and sampling
        weights in the sandwich. Warns (ConvergenceWarning) when the fit did not converge and
        (InformationWarning) naming the parameters when the information is not positive
        definite.

        Returns
        -------
        softmix.inference.InferenceResult

        Examples
        --------
        >>> m = LatentClassLogit(2, random_state=0).fit(X, chosen, sit, groups=g)  # doctest: +SKIP
        >>> print(m.summary(X, chosen, sit, groups=g, method="sandwich"))         # doctest: +SKIP
        """
        return self._protocol().model_inference(
            self, X, chosen, situations, groups=groups, covariates=covariates,
            sample_weight=sample_weight, method=method, level=level, n_boot=n_boot,
            bootstrap=bootstrap, random_state=random_state)

    def summary(self, X: Any = None, chosen: Any = None, situations: Any = None,
                **options: Any) -> str:
        """Text report (model, sizes, log-likelihood, AIC/BIC/ICL, convergence, then estimate,
        standard error, z, p-value and interval per parameter); options as :meth:`inference`."""
        return self.inference(X, chosen, situations, **options).summary()

    def n_parameters(self) -> int:
        """Free parameters ``K L + (K - 1)(q + 1)``."""
        check_fitted(self)
        return lik.n_free_parameters(self.coef_.shape[0], self.n_features_in_, self.n_covariates_)

    def bic(self, X: Any = None, chosen: Any = None, situations: Any = None, *,
            groups: Any = None, covariates: Any = None, sample_weight: Any = None) -> float:
        """``-2 loglik + n_params log n``, n the number of groups (situations without
        ``groups``) or their total weight; lower is better."""
        ll, n = self._loglik(X, chosen, situations, groups, covariates, sample_weight)
        return -2.0 * ll + self.n_parameters() * math.log(n)

    def aic(self, X: Any = None, chosen: Any = None, situations: Any = None, *,
            groups: Any = None, covariates: Any = None, sample_weight: Any = None) -> float:
        """``-2 loglik + 2 n_params``; lower is better."""
        ll, _ = self._loglik(X, chosen, situations, groups, covariates, sample_weight)
        return -2.0 * ll + 2.0 * self.n_parameters()

    def choice_probabilities(self, X: Any, situations: Any, *, covariates: Any = None,
                             groups: Any = None, per_class: bool = False) -> np.ndarray:
        """Predicted choice probabilities of each row (in the input row order).

        Returns
        -------
        ndarray of shape (n_rows,)
            ``sum_k w_gk P(j | s, k)`` (prior class weights, not posteriors); with
            ``per_class=True`` shape (n_rows, n_classes): ``P(j | s, k)``.
        """

        n_rows = np.asarray(X).shape[0]
        first = np.zeros(n_rows, dtype=int)
        sit = np.asarray(situations)
        _, idx = np.unique(sit, return_index=True)
        first[idx] = 1  # a placeholder choice per situation; it does not enter P(j | s, k)
        data = self._data(X, first, situations, groups, covariates, None)
        log_p, _ = class_log_probabilities(self.coef_, data)
        p = np.empty_like(log_p)
        p[data.order] = np.exp(log_p)
        if per_class:
            return p
        w = np.exp(log_weights(self.params_, data))
        row_group = data.situation_group[data.row_situation]
        wr = np.empty_like(p)
        wr[data.order] = w[row_group]
        return np.sum(p * wr, axis=1)

    def sample(self, X: Any, situations: Any, *, groups: Any = None, covariates: Any = None,
               random_state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw choices from the fitted model on a given long-format design.

        Returns
        -------
        chosen : ndarray of int, shape (n_rows,)
            One 1 per situation, in the input row order.
        classes : ndarray of int, shape (n_groups,)
            The drawn class of each group (sorted group ids; situations without ``groups``).
        """

        rng = check_random_state(random_state)
        n_rows = np.asarray(X).shape[0]
        placeholder = np.zeros(n_rows, dtype=int)
        _, idx = np.unique(np.asarray(situations), return_index=True)
        placeholder[idx] = 1
        data = self._data(X, placeholder, situations, groups, covariates, None)
        w = np.exp(log_weights(self.params_, data))
        classes = (rng.random(data.n_groups)[:, None] > np.cumsum(w, axis=1)).sum(axis=1)
        classes = np.minimum(classes, w.shape[1] - 1)
        row_group = data.situation_group[data.row_situation]
        eta = np.einsum("rl,rl->r", data.X, self.coef_[classes[row_group]])
        util = eta + rng.gumbel(size=eta.shape)
        best = np.maximum.reduceat(util, data.starts)
        out = np.zeros(n_rows, dtype=np.int64)
        out[data.order] = (util == best[data.row_situation]).astype(np.int64)
        return out, classes
