"""``SoftmaxMixture``: a scikit-learn-style estimator for softmax mixtures, fit by EM on counts."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from softmix._validation import (
    check_choice,
    check_fitted,
    check_float,
    check_int,
    check_random_state,
)
from softmix.core import xp as _xp
from softmix.core.restarts import Screen, fit_with_restarts
from softmix.core.result import FitResult
from softmix.exceptions import SoftmixWarning
from softmix.softmax_mixture import panel as _panel
from softmix.softmax_mixture.em import (
    DEFAULT_MAX_ITER,
    DEFAULT_TOL,
    M_STEPS,
    fit_em,
    prepare_design,
)
from softmix.softmax_mixture.init import INITIALISERS, resolve_init
from softmix.softmax_mixture.model import (
    SoftmaxMixtureParams,
    check_choices,
    check_counts,
    check_features,
    log_class_probabilities,
    log_likelihood,
    log_mixture_probabilities,
    log_responsibilities,
    sample_choices,
    to_counts,
)

__all__ = ["SoftmaxMixture", "check_choices", "check_counts", "check_features", "to_counts"]


def _numpy_only(features: Any, what: str) -> None:
    """Refuse a non-NumPy design for the parts not ported to other array namespaces."""
    if features is not None and not _xp.is_numpy(features):
        raise TypeError(
            f"{what} run on NumPy designs only; features is a {type(features).__module__}."
            f"{type(features).__name__}. Pass numpy.asarray(features) (a CUDA tensor: "
            "features.cpu().numpy()). Plain fits on counts or choices accept it.")


def _relabel_components(result: FitResult, order: np.ndarray) -> None:
    """Put ``result``'s components in ``order`` (component ``order[i]`` becomes ``i``), with
    the component numbers its ``extra`` reports (``faces``, ``face_pullback_gain``,
    ``diverging_components``)."""
    new = np.argsort(order)  # old component -> new number
    result.params = SoftmaxMixtureParams(result.params.weights[order], result.params.atoms[order])
    for key in ("faces", "face_pullback_gain"):
        if key in result.extra:
            result.extra[key] = {int(new[k]): v for k, v in sorted(
                result.extra[key].items(), key=lambda kv: int(new[kv[0]]))}
    if "diverging_components" in result.extra:
        result.extra["diverging_components"] = sorted(
            int(new[k]) for k in result.extra["diverging_components"])


class SoftmaxMixture:
    """Softmax mixture (mixed multinomial logit) fit by EM on choice counts.

    Parameters
    ----------
    n_components : int
        K, the number of latent classes (1 <= K <= number of alternatives).
    init : str, SoftmaxMixtureParams or dict, default="random"
        Starting point: a name registered in
        :data:`softmix.softmax_mixture.init.INITIALISERS` (``"random"``; ``"greedy"``, the
        deterministic residual start of :func:`~softmix.softmax_mixture.init.greedy_init`,
        on MiniLM's vocabulary better than one random start; and the moment-based warm starts
        when installed),
        or parameters (``SoftmaxMixtureParams`` or a dict with
        ``weights`` (K,) and ``atoms`` (K, L)); with ``covariates``, also a
        :class:`~softmix.softmax_mixture.panel.MembershipParams`. Use ``"auto"`` (or
        ``n_init``) when atoms are crowded (K > L). Why ``"random"`` is the default:
        docs/guide/softmax-mixture.md ("Defaults and why").
    n_init : int, default=1
        Number of runs from independent starts (spawned generators); the best
        log-likelihood is kept, every run's final value is in ``fit_result_.all_objectives``.
        Must be 1 with a user-given start or ``init="greedy"`` (it would repeat the same run).
    screen_iter : int or None, default=None
        Screened restarts: every one of the ``n_init`` starts runs ``screen_iter`` iterations,
        then only the 2 with the largest log-likelihood (``softmix.core.restarts.SCREEN_KEEP``)
        continue to ``max_iter`` (:class:`softmix.core.restarts.Screen`). Many starts
        then cost about ``n_init * screen_iter`` iterations instead of ``n_init`` whole fits;
        the screened-out starts' values (after the screen) are in
        ``fit_result_.all_objectives``, the screen's record in ``fit_result_.extra["screen"]``.
        For hard designs with many local optima: on MiniLM's word embeddings
        ``n_init=30, screen_iter=12`` reached the best optimum known from one seed (13,312
        nats above the best of 30 whole default fits) at the cost of about 5 of them (15
        when a continued start crawls to ``max_iter``), but ended lower from another (docs/guide/softmax-mixture.md, "Which local optimum"). None
        (or ``n_init <= 2``, or ``screen_iter >= max_iter``): every start runs to the end.
    m_step : {"auto", "newton", "gradient"}, default="auto"
        Safeguarded damped-Newton M-step, or the paper's safeguarded one-gradient-step M-step
        in whitened coordinates (O(p L K) instead of O(p L^2 K) per iteration). ``"auto"``
        chooses once per fit (:func:`softmix.softmax_mixture.em.select_m_step`): the gradient
        step when the whitened design is Gaussian-like along the starting atoms, Newton
        otherwise; the choice is in ``m_step_used_``. The rule and its measurements:
        docs/guide/softmax-mixture.md and ``benchmarks/RESULTS.md`` (table 2).
    step_size : float, default=1.0
        eta of the gradient M-step.
    max_iter : int, default=1000
        EM iterations per run; 0 returns the initialisation.
    tol : float, default=1e-7
        Stop when the log-likelihood one exact M-step would still gain is <= ``tol`` **nats**
        (the scale-free criterion ``fit_result_.criterion = "newton_decrement"``, its final
        value in ``fit_result_.criterion_value``): the fit is then about ``sqrt(2 tol)``
        complete-data standard errors from the optimum at any N (see
        :data:`softmix.softmax_mixture.em.DEFAULT_TOL`). 0 runs exactly ``max_iter``.
    accelerate : {"squarem", None}, default="squarem"
        ``"squarem"``: SQUAREM extrapolation of the EM map with a monotonicity fallback
        (:func:`softmix.core.em.run_em`); same optimum, reached sooner (measured in
        docs/performance.md and ``benchmarks/RESULTS.md``). An
        iteration (``n_iter_``, ``history_``, ``max_iter``) is then one SQUAREM cycle of up to
        three EM iterations. ``None``: plain EM, one EM iteration per iteration.
    newton_max_iter : int, default=1
        Damped Newton iterations per component and EM iteration (``m_step="newton"``). 1: one
        safeguarded Newton step, a generalised EM (the log-likelihood never decreases) with the
        same fixed points as exact EM; use 20 or more for an exact M-step (studies of EM
        itself). Why 1 is the default: docs/performance.md.
    dtype : {"float64", "float32"} or numpy dtype, default="float64"
        Precision of the two large matrix products per iteration, which run on the design
        itself (no working copy); exponentials, sums, the log-likelihood and the M-step solves
        stay float64 (see :func:`softmix.softmax_mixture.em.fit_em`). A float32 design is used
        as given (never copied), so its products are float32 whatever ``dtype`` says;
        ``"float32"`` on a float64 design makes one centred float32 copy (half its memory).
        The optimum agrees with float64's to ~1e-7 (relative log-likelihood).
    ridge : float, default=0.0
        Penalty ``ridge / 2 * sum_k Var_j(x_j' theta_k)`` on the atoms (a Gaussian prior on
        each class's utilities; scale-free, a fixed number of nats whatever N). 0 is maximum
        likelihood. Use it when the MLE does not exist (a warning says so: the chosen
        alternatives lie on a face of the convex hull of the features, and the atoms would
        diverge). ``log_likelihood_`` stays the plain log-likelihood.
    random_state : None, int or numpy.random.Generator
        Seeds the initialisations (an int gives the same fit every time).
    callback : callable, optional
        ``callback(iteration, params, log_likelihood)`` after every EM iteration of every run;
        a truthy return stops that run.

    Attributes
    ----------
    params_ : SoftmaxMixtureParams
    weights_ : ndarray of shape (n_components,)
    atoms_ : ndarray of shape (n_components, n_features)
    log_likelihood_ : float
        ``sum_j n_j log P(Y = j)`` on the training data at ``params_``.
    n_iter_ : int
    converged_ : bool
    stop_reason_ : str
    history_ : ndarray of shape (n_iter_ + 1,)
        Log-likelihood at the start and after each iteration (best run).
    init_method_ : str
    m_step_used_ : {"newton", "gradient"}
        The M-step the best run used (what ``m_step="auto"`` resolved to); also in
        ``fit_result_.extra["m_step"]``, with the rule in ``extra["m_step_rule"]``.
    fit_result_ : FitResult
    features_ : ndarray of shape (n_alternatives, n_features)
        The training design (a reference, not a copy): the default for the methods below.
    n_samples_ : int
        N, the number of training observations.
    n_unidentified_ : int
        Unidentified directions of the design (0 normally; see Notes).
    n_features_in_ : int
        L, the number of columns of the training design (scikit-learn's name).
    membership_coef_ : ndarray of shape (n_components, n_covariates + 1) or None
        Fit with ``covariates``: class weights ``softmax_k(membership_coef_ @ [1, z])``
        (column 0 the intercept, last row 0: the reference class); ``weights_`` is then their
        mean over the training groups. None otherwise.
    n_groups_ : int or None
        Number of groups of a panel fit (None otherwise).
    group_ids_ : ndarray or None
        Sorted distinct ``groups`` labels of a fit with ``groups`` (row order of the panel).
    n_parameters_ : int
        Identified free parameters, what :meth:`bic` / :meth:`aic` count:
        ``min(K - 1 + K (L - r), p - 1)`` (r = ``n_unidentified_``); see
        :func:`softmix.softmax_mixture.model.n_parameters`. When ``K - 1 + K (L - r) > p - 1``
        the model is over-parametrised (different parameters give the same distribution over
        the p alternatives) and ``fit`` warns.

    Notes
    -----
    Model: ``P(Y = j) = sum_k alpha_k softmax(X theta_k)_j`` for alternatives j = 1..p with known
    features ``X`` (p, L). EM maximises ``sum_j n_j log P(Y = j)``; counts are sufficient, so
    ``fit(features, choices)`` and ``fit(features, counts=bincount(choices))`` give identical
    results and each iteration costs O(p L K) whatever N is. If some direction ``c`` has
    ``X c`` constant (e.g. a constant column), atoms are not identified along it: a
    :class:`SoftmixWarning` is issued and the returned atoms have zero component along such
    directions. See :mod:`softmix.softmax_mixture.em`.

    Component order: after every fit (``max_iter=0`` excepted: the start is returned as given)
    components are in the canonical order, decreasing weight, ties by increasing first atom
    coordinate (:func:`softmix.softmax_mixture.likelihood.canonical_order`); use
    :func:`softmix.metrics.align` to match two fits. Standard errors: :meth:`inference`.

    References
    ----------
    Bing, Bunea, Niles-Weed, Wegkamp, "Learning large softmax mixtures with warm start EM",
    arXiv 2409.09903.
    """

    def __init__(
        self,
        n_components: int,
        *,
        init: str | SoftmaxMixtureParams | Mapping = "random",
        n_init: int = 1,
        screen_iter: int | None = None,
        m_step: str = "auto",
        step_size: float = 1.0,
        max_iter: int = DEFAULT_MAX_ITER,
        tol: float = DEFAULT_TOL,
        accelerate: str | None = "squarem",
        newton_max_iter: int = 1,
        dtype: str = "float64",
        ridge: float = 0.0,
        random_state: None | int | np.random.Generator = None,
        callback: Callable[[int, SoftmaxMixtureParams, float], Any] | None = None,
    ) -> None:
        self.n_components = n_components
        self.init = init
        self.n_init = n_init
        self.screen_iter = screen_iter
        self.m_step = m_step
        self.step_size = step_size
        self.max_iter = max_iter
        self.tol = tol
        self.accelerate = accelerate
        self.newton_max_iter = newton_max_iter
        self.dtype = dtype
        self.ridge = ridge
        self.random_state = random_state
        self.callback = callback

    # -- scikit-learn protocol ---------------------------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [name for name in sig.parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters as a dict (scikit-learn protocol)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> SoftmaxMixture:
        """Set hyperparameters (scikit-learn protocol); unknown names raise ValueError."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"invalid parameter {name!r} for SoftmaxMixture; valid parameters: {valid}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()
                         if k != "init" or isinstance(v, str))
        return f"SoftmaxMixture({args})"

    def save(self, path: Any, *, metadata: Mapping | None = None) -> Any:
        """Write the model to one file (a zip of a JSON manifest and ``.npy`` arrays, no
        pickle); read it back with ``softmix.load(path)``. See :func:`softmix.io.persistence.save`.
        """
        from softmix.io.persistence import save

        return save(self, path, metadata=metadata)

    # -- fitting -----------------------------------------------------------------------------

    def _check_hyperparameters(self, n_alternatives: int) -> dict[str, Any]:
        k = check_int(self.n_components, "n_components", low=1)
        if k > n_alternatives:
            raise ValueError(
                f"n_components must be <= the number of alternatives ({n_alternatives}), got {k}."
            )
        n_init = check_int(self.n_init, "n_init", low=1)
        deterministic = not isinstance(self.init, str) or self.init == "greedy"
        if deterministic and n_init > 1:
            what = ("init='greedy' (a deterministic start)" if isinstance(self.init, str)
                    else "a user-given init")
            raise ValueError(
                f"n_init={n_init} with {what} would repeat the same run; use n_init=1 or a "
                "random init (e.g. init='random') for several starts."
            )
        if isinstance(self.init, str) and self.init not in INITIALISERS:
            raise ValueError(
                f"init must be one of {sorted(INITIALISERS)} or starting parameters "
                f"(SoftmaxMixtureParams or a dict with 'weights' and 'atoms'); got {self.init!r}."
            )
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"callback must be callable or None, got {type(self.callback).__name__}.")
        screen_iter = (None if self.screen_iter is None
                       else check_int(self.screen_iter, "screen_iter", low=1))
        return {
            "n_components": k,
            "n_init": n_init,
            "screen_iter": screen_iter,
            "m_step": check_choice(self.m_step, "m_step", M_STEPS),
            "step_size": check_float(self.step_size, "step_size", low=0.0, low_inclusive=False),
            "max_iter": check_int(self.max_iter, "max_iter", low=0),
            "tol": check_float(self.tol, "tol", low=0.0),
            "accelerate": self._check_accelerate(),
            "newton_max_iter": check_int(self.newton_max_iter, "newton_max_iter", low=1),
            "dtype": self._check_dtype(),
            "ridge": check_float(self.ridge, "ridge", low=0.0),
        }

    def _screen(self, hp: dict, fit_one: Callable, fit_from: Callable) -> Screen | None:
        """The :class:`~softmix.core.restarts.Screen` of ``screen_iter`` (None: no screen).

        ``fit_one(child, budget)`` is one run from a start of ``init`` with at most ``budget``
        iterations (warning about its end only when ``budget`` is ``max_iter``);
        ``fit_from(params, m_step, budget, offset, init_method)`` a run from given parameters
        that continues one of ``offset`` iterations (``iteration_offset`` of ``fit_em``).
        """
        n_iter, max_iter = hp["screen_iter"], hp["max_iter"]
        if n_iter is None or n_iter >= max_iter:
            return None

        def resume(first: FitResult) -> FitResult:
            done = first.n_iter
            # the screen's M-step (not chosen again by "auto" from the new start), and how
            nxt = fit_from(first.params, first.extra["m_step"], max_iter - done, done,
                           first.init_method)
            nxt.extra.update({k: v for k, v in first.extra.items()
                              if k.startswith(("m_step", "design_hermite"))})
            return nxt

        return Screen(n_iter, lambda child: fit_one(child, n_iter), resume)

    def _check_dtype(self) -> str:
        try:  # "float32", np.float32 and np.dtype("float32") all name the same precision
            name = None if self.dtype is None else np.dtype(self.dtype).name
        except TypeError:
            name = None
        if name in ("float64", "float32"):
            return name
        raise ValueError(
            f"dtype must be 'float64' or 'float32' (the working precision of the design), got "
            f"{self.dtype!r}. Use dtype='float32' to halve the design's memory, else the default."
        )

    def _check_accelerate(self) -> str | None:
        if self.accelerate is None or self.accelerate == "squarem":
            return self.accelerate
        raise ValueError(
            f"accelerate must be 'squarem' or None, got {self.accelerate!r}. Use None for plain "
            "EM (one EM iteration per iteration, e.g. to study EM itself)."
        )

    def fit(self, features: Any, choices: Any = None, *, counts: Any = None,
            groups: Any = None, covariates: Any = None) -> SoftmaxMixture:
        """Fit by EM from ``choices`` (N,) or ``counts`` (p,) or (n_groups, p) (exactly one).

        Parameters
        ----------
        features : array-like of shape (n_alternatives, n_features)
            Known features of the p alternatives (finite). A PyTorch tensor (CUDA or CPU), a
            CuPy array or another array-API array keeps the design-sized work on its device
            (``pip install 'softmix[array-api]'``, :mod:`softmix.core.xp`): the fitted
            parameters are NumPy float64, the probabilities over alternatives and posteriors
            that methods return are in the design's namespace. Not for panels or the
            moment-based starts.
        choices : array-like of int, shape (n_samples,), optional
            The chosen alternative of each observation, in ``[0, n_alternatives)``. A Dask
            array or Series (a token stream past memory; with ``groups`` a NumPy or Dask array)
            is counted where it lives by :func:`softmix.count_choices` (a distributed
            bincount); the fit is then the same as with the same choices in memory.
        counts : array-like of shape (n_alternatives,) or (n_groups, n_alternatives), optional
            How often each alternative was chosen (non-negative integers, not all zero); a 2-D
            array or scipy.sparse matrix is a panel: row g holds group g's counts.
        groups : array-like of shape (n_samples,), optional
            Group (person) of each choice: a group makes several choices and keeps one class
            (:mod:`softmix.softmax_mixture.panel`). Rows of the panel are the sorted distinct
            labels (``group_ids_``).
        covariates : array-like of shape (n_groups, n_covariates), optional
            Class-membership covariates: the class weights become ``softmax(gamma [1, z_g])``
            (``membership_coef_``); (n_samples, n_covariates) without groups.

        Returns
        -------
        self
        """
        if _panel.is_panel_call(counts, groups, covariates):
            _numpy_only(features, "panel fits (groups, covariates or 2-D counts)")
            return _panel.fit_estimator(self, features, choices, counts, groups, covariates)
        features, stats = check_features(features, return_range=True)  # used as is, no copy
        n = to_counts(features, choices, counts)
        hp = self._check_hyperparameters(features.shape[0])
        # warns once about unidentified directions; exact (all rows) only for ridge's metric
        design = prepare_design(features, dtype=hp["dtype"], exact=hp["ridge"] > 0,
                                column_stats=stats)
        rng = check_random_state(self.random_state)
        identified, nominal = self._count(features.shape[0], features.shape[1],
                                          hp["n_components"], design.n_unidentified)
        if nominal > identified:
            warnings.warn(
                f"SoftmaxMixture is over-parametrised: {nominal} free parameters "
                f"(K - 1 + K L = {nominal} for K={hp['n_components']}, "
                f"L={features.shape[1] - design.n_unidentified} identified directions) but the "
                f"model is a distribution over p={features.shape[0]} alternatives, which has "
                f"only p - 1 = {identified}: different parameters give the same likelihood, so "
                "weights_ and atoms_ are not identified (another seed gives other values). BIC "
                f"and AIC count {identified}. Use fewer components or fewer features.",
                SoftmixWarning,
                stacklevel=2,
            )

        options = {k: hp[k] for k in ("step_size", "tol", "accelerate", "newton_max_iter",
                                      "ridge")}

        def fit_one(child: np.random.Generator, budget: int = hp["max_iter"]) -> FitResult:
            params0, name = resolve_init(self.init, features, n, hp["n_components"], child,
                                         design=design)
            return fit_em(design, n, params0, m_step=hp["m_step"], max_iter=budget,
                          callback=self.callback, init_method=name,
                          warn=budget == hp["max_iter"], **options)

        def fit_from(params, m_step, budget, offset, init_method):
            return fit_em(design, n, params, m_step=m_step, max_iter=budget,
                          callback=self.callback, init_method=init_method,
                          iteration_offset=offset, **options)

        result = fit_with_restarts(fit_one, hp["n_init"], rng,
                                   screen=self._screen(hp, fit_one, fit_from))
        if result.stop_reason != "init":  # canonical order (likelihood.canonical_order)
            _relabel_components(result, result.params.canonical_order())
        self.fit_result_ = result
        self.params_ = result.params
        self.weights_ = np.array(result.params.weights)
        self.atoms_ = np.array(result.params.atoms)
        self.log_likelihood_ = float(result.extra.get("log_likelihood", result.objective))
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.stop_reason_ = result.stop_reason
        self.history_ = result.history
        self.init_method_ = result.init_method
        self.m_step_used_ = result.extra["m_step"]
        self.features_ = features
        self.n_samples_ = int(n.sum())
        self.n_unidentified_ = design.n_unidentified
        self.n_features_in_ = features.shape[1]
        self.membership_coef_, self.n_groups_, self.group_ids_ = None, None, None
        self.n_parameters_ = identified
        return self

    # -- fitted-model methods ----------------------------------------------------------------

    def _features(self, features: Any) -> np.ndarray:
        check_fitted(self)
        if features is None:
            return self.features_
        features = check_features(features)
        if features.shape[1] != self.atoms_.shape[1]:
            raise ValueError(
                f"features must have {self.atoms_.shape[1]} columns (n_features seen in fit), "
                f"got shape {features.shape}."
            )
        return features

    def predict_proba(self, choices: Any = None, *, features: Any = None, counts: Any = None,
                      groups: Any = None, covariates: Any = None) -> np.ndarray:
        """Posterior class probabilities ``P(Z = k | Y = choice)`` for each choice.

        Parameters
        ----------
        choices : array-like of int, shape (n_samples,)
        features : array-like of shape (n_alternatives, n_features), optional
            Design the choices refer to (default: the training design).
        counts, groups, covariates : optional
            Panel data as in :meth:`fit`: then the posterior of each *group* given all its
            choices (and covariates), shape (n_groups, n_components), rows in sorted group
            order (or the rows of ``counts``). Needed (``covariates``) for a model fit with
            covariates.

        Returns
        -------
        ndarray of shape (n_samples, n_components) or (n_groups, n_components)
        """
        if _panel.is_panel_call(counts, groups, covariates):
            x, data = _panel.estimator_panel_data(self, features, choices, counts, groups,
                                                  covariates)
            return np.exp(_panel.panel_log_responsibilities(x, data, self.params_))
        _panel.require_no_covariates(self, "predict_proba")
        x = self._features(features)
        choices = check_choices(choices, x.shape[0])
        if not _xp.is_numpy(x):  # (n_samples, K) on the design's device (softmix.core.xp)
            xp = _xp.namespace(x)
            resp = xp.exp(log_responsibilities(x, self.params_))
            return xp.take(resp, _xp.from_host(choices, resp, xp.int64), axis=0)
        return np.exp(log_responsibilities(x, self.params_))[choices]

    def predict(self, choices: Any = None, *, features: Any = None, **panel: Any) -> np.ndarray:
        """Most probable class of each choice (or group: ``counts``/``groups``/``covariates``
        as in :meth:`predict_proba`), shape (n_samples,) or (n_groups,)."""
        return np.argmax(self.predict_proba(choices, features=features, **panel), axis=1)

    def score(self, features: Any = None, choices: Any = None, *, counts: Any = None,
              groups: Any = None, covariates: Any = None) -> float:
        """Mean log-likelihood per observation, ``sum_j n_j log P(Y = j) / N``.

        Signature mirrors :meth:`fit`: ``score(features, choices)`` or
        ``score(features, counts=...)``; ``features=None`` uses the training design. On panel
        data the panel log-likelihood divided by the number of choices.
        """
        if _panel.is_panel_call(counts, groups, covariates):
            x, data = _panel.estimator_panel_data(self, features, choices, counts, groups,
                                                  covariates)
            return _panel.panel_log_likelihood(x, data, self.params_) / data.n_choices
        _panel.require_no_covariates(self, "score")
        x = self._features(features)
        n = to_counts(x, choices, counts)
        return log_likelihood(x, n, self.params_) / n.sum()

    @staticmethod
    def _count(p: int, length: int, k: int, r: int) -> tuple[int, int]:
        """(identified, nominal) parameter counts (see ``n_parameters_``)."""
        nominal = k - 1 + k * (length - r)
        return min(nominal, p - 1), nominal

    def _n_parameters(self) -> int:
        check_fitted(self)
        if self.n_groups_ is not None or self.membership_coef_ is not None:
            # panels / covariates: the p - 1 cap of one multinomial does not apply (a group's
            # count vector carries more), so every membership and atom parameter counts
            k, length = self.atoms_.shape
            coef = self.membership_coef_
            n_membership = k - 1 if coef is None else (k - 1) * coef.shape[1]
            return n_membership + k * (length - self.n_unidentified_)
        return self.n_parameters_

    def _total_loglik(self, features, choices, counts, groups=None,
                      covariates=None) -> tuple[float, float]:
        if features is None and choices is None and counts is None:
            check_fitted(self)
            return self.log_likelihood_, float(self.n_samples_)
        if _panel.is_panel_call(counts, groups, covariates):
            x, data = _panel.estimator_panel_data(self, features, choices, counts, groups,
                                                  covariates)
            return _panel.panel_log_likelihood(x, data, self.params_), data.n_choices
        _panel.require_no_covariates(self, "bic/aic")
        x = self._features(features)
        n = to_counts(x, choices, counts)
        return log_likelihood(x, n, self.params_), float(n.sum())

    def bic(self, features: Any = None, choices: Any = None, *, counts: Any = None,
            groups: Any = None, covariates: Any = None) -> float:
        """Bayesian information criterion ``-2 loglik + n_params log N`` (lower is better).

        With no argument, on the training data; otherwise on ``(features, choices | counts)``.
        ``n_params = n_parameters_ = min(K - 1 + K (L - r), p - 1)``: the identified
        parameters (r the number of unidentified directions, p the number of alternatives).
        """
        loglik, n = self._total_loglik(features, choices, counts, groups, covariates)
        return -2.0 * loglik + self._n_parameters() * math.log(n)

    def aic(self, features: Any = None, choices: Any = None, *, counts: Any = None,
            groups: Any = None, covariates: Any = None) -> float:
        """Akaike information criterion ``-2 loglik + 2 n_params`` (lower is better)."""
        loglik, _ = self._total_loglik(features, choices, counts, groups, covariates)
        return -2.0 * loglik + 2.0 * self._n_parameters()

    def sample(self, n_samples: int, random_state: Any = None) -> np.ndarray:
        """Draw ``n_samples`` choices from the fitted mixture, shape (n_samples,), int64.

        (For the latent classes too, or for counts without O(N) memory, use
        :func:`softmix.softmax_mixture.model.sample_choices` / ``sample_counts``.)
        """
        check_fitted(self)
        _panel.require_no_covariates(self, "sample")
        return sample_choices(self.features_, self.params_, n_samples,
                              check_random_state(random_state))

    def choice_probabilities(self, *, per_class: bool = False, features: Any = None) -> np.ndarray:
        """Fitted choice probabilities over the alternatives.

        Returns
        -------
        ndarray of shape (n_alternatives,)
            The mixture ``P(Y = j)``; or, with ``per_class=True``, shape
            (n_alternatives, n_components): ``pi_j(theta_k)``.
        """
        x = self._features(features)
        if not per_class:
            _panel.require_no_covariates(self, "choice_probabilities")
        exp = np.exp if _xp.is_numpy(x) else _xp.namespace(x).exp  # on the design's device
        if per_class:
            return exp(log_class_probabilities(x, self.params_.atoms))
        return exp(log_mixture_probabilities(x, self.params_))

    # -- inference (softmix.inference; the glue is in softmax_mixture/likelihood.py) ---------

    def _protocol(self):
        """The family's likelihood-protocol module (used by softmix.inference / selection)."""
        from softmix.softmax_mixture import likelihood

        return likelihood

    def inference(self, features: Any = None, choices: Any = None, *, counts: Any = None,
                  method: str = "observed", level: float = 0.95, groups: Any = None,
                  n_boot: int = 200, bootstrap: str = "nonparametric",
                  random_state: Any = None, covariates: Any = None):
        """Standard errors, z-values and intervals of ``weight[k]`` and ``atom[k,l]``.

        Same data arguments as :meth:`fit` (``inference(features, choices)`` or
        ``inference(features, counts=c)``; ``features=None`` is the training design).
        ``method``: ``"observed"`` (exact observed information on counts, O(p K^2 L^2)),
        ``"sandwich"`` (robust; cluster-robust with ``groups``, one label per choice) or
        ``"bootstrap"`` (``n_boot`` refits from the fit, ``bootstrap="nonparametric"`` or
        ``"parametric"``, seeded by ``random_state``). See :mod:`softmix.inference.covariance`;
        components are in the canonical order (decreasing weight). Warns (ConvergenceWarning)
        when the fit did not converge, and (InformationWarning) naming the parameters when the
        information is not positive definite.

        Panel fits (``fit`` with ``groups``, a count matrix or ``covariates``) take the same
        panel data again (``inference(features, choices, groups=g)``, ``inference(features,
        counts=C)``, plus ``covariates=Z``): the likelihood is the panel one, the groups are the
        units (``"sandwich"`` clusters on them, ``"bootstrap"`` resamples them with their
        covariate rows), and with covariates ``membership[k,j]`` (k < K-1; j = 0 the
        intercept) replace ``weight[k]``. A sparse count matrix is never densified.

        Returns
        -------
        softmix.inference.InferenceResult
        """
        return self._protocol().model_inference(
            self, features, choices, counts=counts, method=method, level=level, groups=groups,
            n_boot=n_boot, bootstrap=bootstrap, random_state=random_state,
            covariates=covariates)

    def summary(self, features: Any = None, choices: Any = None, *, counts: Any = None,
                **options: Any) -> str:
        """Text report: model, sizes, log-likelihood, AIC/BIC/ICL, convergence, then estimate,
        standard error, z, p-value and interval per parameter (options as :meth:`inference`)."""
        return self.inference(features, choices, counts=counts, **options).summary()
