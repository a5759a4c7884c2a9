"""The mixture of experts' likelihood protocol: vector parametrisation, log-likelihood, score
(per observation) and analytic Hessian for every expert type, names, canonical order.

Unconstrained vector, one block per piece (``k`` experts, ``p = d + 1`` design columns)::

    theta = [gating rows 0..k-2 (k-1)p,  expert 0's block,  ...,  expert k-1's block]

An expert's block is ``[coef_i (p), log nu_i]`` for Gaussian experts (variance as a log),
``coef_i`` (p) for logistic experts, and ``coef_i[c]`` for ``c = 0..C-2`` ((C-1) p, the last
class row is the gauge) for multinomial experts. The last expert is the gating reference (its row
is 0 and is not a parameter). Reported parameters (delta method in :mod:`softmix.inference`):
``gate[i,j]`` (i < k-1; j = 0 the intercept), ``coef[i,j]`` or ``coef[i,c,j]`` (multinomial,
c < C-1), ``variance[i]``.

Canonical order (:func:`canonical_order`, applied by ``MixtureOfExperts.fit``): experts by
decreasing mean gate probability over the training inputs ``(1/n) sum_j P(z = i | x_j)``
(the analogue of mixing weights), ties by increasing expert intercept; the last expert, the one
with the smallest mean gate probability, is the gating reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from softmix.core.special import expit, log_softmax, logsumexp
from softmix.inference.information import mixture_hessian, mixture_scores
from softmix.moe.gating import add_intercept, gate_log_proba_design
from softmix.moe.model import MoEParams, log_joint_design

__all__ = ["MoELikelihood", "canonical_order", "canonical_order_from_share"]


def canonical_order(params: MoEParams, X: np.ndarray) -> np.ndarray:
    """Permutation putting experts in the canonical order (module docstring)."""
    share = np.exp(gate_log_proba_design(add_intercept(X), params.gating)).mean(axis=0)
    return canonical_order_from_share(params, share)


def canonical_order_from_share(params: MoEParams, share: np.ndarray) -> np.ndarray:
    """:func:`canonical_order` from the mean gate probabilities ``share`` (k,) over the training
    X (for data held in blocks, where ``share`` is a chunked reduction)."""
    coef = params.expert_coef
    intercept = coef[:, 0] if coef.ndim == 2 else coef[:, 0, 0]
    return np.lexsort([intercept, -np.round(share, 12)])


@dataclass
class MoELikelihood:
    """Log-likelihood of a k-expert softmax-gated mixture of experts on ``(X, y)`` as a function of
    the unconstrained vector (module docstring).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
        Encoded responses: real (Gaussian), 0/1 (logistic), class indices 0..C-1 (multinomial).
    like : MoEParams
        Any parameter set of the model (gives k, d, the expert type and C).
    ridge : float, default=0
        The estimator's ``ridge``: :meth:`loglik`, :meth:`score` and :meth:`hessian` are then
        those of the penalised objective the fit maximises, ``loglik - ridge/2 ||.||^2`` over the
        gating and classification-expert coefficients (the observed information of a MAP fit);
        :meth:`score_observations` stays the unpenalised per-observation score (the sandwich's
        meat).
    penalty_map : (A, b), optional
        The penalised coordinates as an affine function ``u = A theta + b`` of the vector
        (penalty ``ridge/2 ||u||^2``). Default: the gating and classification coordinates
        themselves. :class:`~softmix.MixtureOfExperts` penalises the coefficients of its
        standardised columns (:mod:`softmix.moe.standardize`); :func:`build` passes that map.
    sample_weight : ndarray of shape (n,), optional
        Frequency weights ``w_j``: the log-likelihood is ``sum_j w_j log p(y_j | x_j)``, as
        if row j were observed ``w_j`` times. :meth:`score_observations` gives the rows'
        contributions ``w_j s_j``, :meth:`score_units` the unweighted ``s_j`` with the weights
        (the sandwich's meat ``sum_j w_j s_j s_j'``), and the n of BIC is ``sum_j w_j``.
    """

    X: np.ndarray
    y: np.ndarray
    like: MoEParams
    ridge: float = 0.0
    sample_weight: np.ndarray | None = None
    penalty_map: tuple[np.ndarray, np.ndarray] | None = None

    family = "mixture_of_experts"

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X, dtype=float)
        self.X1 = add_intercept(self.X)
        self.expert = self.like.expert
        self.k = self.like.n_experts
        self.p = self.X1.shape[1]
        self.n_classes = self.like.n_classes if self.expert == "multinomial" else None
        if self.expert == "multinomial":
            self.y = np.asarray(self.y, dtype=np.intp)
            self._onehot = np.zeros((self.y.size, self.n_classes))
            self._onehot[np.arange(self.y.size), self.y] = 1.0
        else:
            self.y = np.asarray(self.y, dtype=float)
        n = self.X.shape[0]
        self.w = (np.ones(n) if self.sample_weight is None
                  else np.asarray(self.sample_weight, dtype=float))

    # -- layout ------------------------------------------------------------------------------
    @property
    def penalised(self) -> np.ndarray:
        """Mask of the coordinates the ridge penalises (gates; classification coefficients)."""
        mask = np.zeros(self.n_free_parameters, dtype=bool)
        mask[: (self.k - 1) * self.p] = True
        if self.expert != "gaussian":
            mask[(self.k - 1) * self.p :] = True
        return mask

    @property
    def own_size(self) -> int:
        """Length of one expert's block."""
        if self.expert == "gaussian":
            return self.p + 1
        if self.expert == "logistic":
            return self.p
        return (self.n_classes - 1) * self.p

    @property
    def n_free_parameters(self) -> int:
        return (self.k - 1) * self.p + self.k * self.own_size

    @property
    def n_observations(self) -> float:
        """n, the number of observations (the n of BIC; ``sum_j w_j`` with weights)."""
        return float(self.w.sum())

    def _expert_names(self, i: int, variance_name: str) -> list[str]:
        if self.expert == "multinomial":
            return [f"coef[{i},{c},{j}]" for c in range(self.n_classes - 1)
                    for j in range(self.p)]
        out = [f"coef[{i},{j}]" for j in range(self.p)]
        return out + [f"{variance_name}[{i}]"] if self.expert == "gaussian" else out

    @property
    def names(self) -> list[str]:
        """Names of the unconstrained coordinates (``log_variance[i]`` for Gaussian experts)."""
        out = [f"gate[{i},{j}]" for i in range(self.k - 1) for j in range(self.p)]
        for i in range(self.k):
            out += self._expert_names(i, "log_variance")
        return out

    def reported_names(self) -> list[str]:
        out = [f"gate[{i},{j}]" for i in range(self.k - 1) for j in range(self.p)]
        for i in range(self.k):
            out += self._expert_names(i, "variance")
        return out

    # -- vector <-> params -------------------------------------------------------------------
    def to_vector(self, params: MoEParams) -> np.ndarray:
        parts = [params.gating[:-1].ravel()]
        for i in range(self.k):
            if self.expert == "multinomial":
                parts.append(params.expert_coef[i, :-1, :].ravel())
            else:
                parts.append(params.expert_coef[i])
            if self.expert == "gaussian":
                parts.append([np.log(params.expert_variance[i])])
        return np.concatenate(parts)

    def _check(self, theta) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.n_free_parameters,):
            raise ValueError(
                f"theta must have shape ({self.n_free_parameters},) for a {self.k}-expert "
                f"{self.expert} model on {self.p - 1} feature(s); got {theta.shape}."
            )
        return theta

    def _unpack(self, theta):
        theta = self._check(theta)
        k, p = self.k, self.p
        gating = np.vstack([theta[: (k - 1) * p].reshape(k - 1, p), np.zeros((1, p))])
        blocks = theta[(k - 1) * p :].reshape(k, self.own_size)
        var = None
        if self.expert == "multinomial":
            free = blocks.reshape(k, self.n_classes - 1, p)
            coef = np.concatenate([free, np.zeros((k, 1, p))], axis=1)
        elif self.expert == "gaussian":
            coef, var = blocks[:, :p], np.exp(blocks[:, p])
        else:
            coef = blocks
        return gating, coef, var

    def from_vector(self, theta: np.ndarray) -> MoEParams:
        gating, coef, var = self._unpack(theta)
        return MoEParams(gating, coef, var, self.expert)

    def reported(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reported values (variances instead of log-variances) and their Jacobian."""
        theta = self._check(theta)
        values = theta.copy()
        jac = np.eye(theta.size)
        if self.expert == "gaussian":
            idx = (self.k - 1) * self.p + np.arange(self.k) * self.own_size + self.p
            values[idx] = np.exp(theta[idx])
            jac[idx, idx] = values[idx]
        return values, jac

    # -- likelihood and derivatives ----------------------------------------------------------
    def loglik(self, theta: np.ndarray) -> float:
        """``sum_j log p(y_j | x_j)`` (minus the ridge penalty when ``ridge > 0``)."""
        value = float(self.w @ self.loglik_observations(theta))
        if self.ridge:
            value -= 0.5 * self.ridge * float(np.sum(self._penalised_coordinates(theta) ** 2))
        return value

    def _penalty_matrices(self) -> tuple[np.ndarray, np.ndarray]:
        if self.penalty_map is not None:
            return self.penalty_map
        eye = np.eye(self.n_free_parameters)
        return eye[self.penalised], np.zeros(int(self.penalised.sum()))

    def _penalised_coordinates(self, theta: np.ndarray) -> np.ndarray:
        A, b = self._penalty_matrices()
        return A @ np.asarray(theta, dtype=float) + b

    def unpenalised_loglik(self, theta: np.ndarray) -> float:
        """``sum_j w_j log p(y_j | x_j)`` whatever ``ridge`` is (for AIC / BIC)."""
        return float(self.w @ self.loglik_observations(theta))

    def loglik_observations(self, theta: np.ndarray) -> np.ndarray:
        return logsumexp(log_joint_design(self.X1, self.y, self.from_vector(theta)), axis=1)

    def _derivatives(self, theta):
        gating, coef, var = self._unpack(theta)
        params = MoEParams(gating, coef, var, self.expert)
        X1, y, k, p = self.X1, self.y, self.k, self.p
        n = X1.shape[0]
        lj = log_joint_design(X1, y, params)
        tau = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))
        pi = np.exp(gate_log_proba_design(X1, gating))  # (n, k)
        eye = np.eye(k)[:, : k - 1]
        dgate = eye[None, :, :] - pi[:, None, : k - 1]  # (n, k, k-1)
        shared = (dgate[:, :, :, None] * X1[:, None, None, :]).reshape(n, k, (k - 1) * p)
        own, curv_own = [], []
        wt = self.w
        for i in range(k):
            ti = tau[:, i] * wt  # the curvature term sums w_j tau_ji d^2 a_ji
            if self.expert == "gaussian":
                r = y - X1 @ coef[i]
                prec = 1.0 / var[i]
                g = np.column_stack([X1 * (r * prec)[:, None], -0.5 + 0.5 * r**2 * prec])
                c = np.empty((p + 1, p + 1))
                c[:p, :p] = -(X1 * (ti * prec)[:, None]).T @ X1
                c[:p, p] = c[p, :p] = -(X1 * (ti * r * prec)[:, None]).sum(axis=0)
                c[p, p] = -0.5 * float(ti @ (r**2)) * prec
            elif self.expert == "logistic":
                s = expit(X1 @ coef[i])
                g = X1 * (y - s)[:, None]
                c = -(X1 * (ti * s * (1.0 - s))[:, None]).T @ X1
            else:
                cc = self.n_classes - 1
                q = np.exp(log_softmax(X1 @ coef[i].T, axis=1))  # (n, C)
                resid = self._onehot[:, :cc] - q[:, :cc]
                g = (resid[:, :, None] * X1[:, None, :]).reshape(n, cc * p)
                m = -(q[:, :cc, None] * q[:, None, :cc])
                idx = np.arange(cc)
                m[:, idx, idx] += q[:, :cc]
                c = -np.einsum("n,nab,nu,nv->aubv", ti, m, X1, X1).reshape(cc * p, cc * p)
            own.append(g)
            curv_own.append(c)
        size = self.n_free_parameters
        curv = np.zeros((size, size))
        ng = (k - 1) * p
        mg = -(pi[:, : k - 1, None] * pi[:, None, : k - 1])
        idx = np.arange(k - 1)
        mg[:, idx, idx] += pi[:, : k - 1]
        mg *= wt[:, None, None]
        curv[:ng, :ng] = -np.einsum("nab,nu,nv->aubv", mg, X1, X1).reshape(ng, ng)
        for i in range(k):
            sl = slice(ng + i * self.own_size, ng + (i + 1) * self.own_size)
            curv[sl, sl] = curv_own[i]
        return tau, shared, own, curv

    def score_observations(self, theta: np.ndarray) -> np.ndarray:
        """Per-observation contributions ``w_j s_j`` to the score, shape (n, P); they sum to
        the unpenalised :meth:`score` (clusters of the sandwich sum them)."""
        return self.score_units(theta)[0] * self.w[:, None]

    def score_units(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-observation scores ``s_j`` (n, P) and the weights ``w_j`` (ones by default)."""
        tau, shared, own, _ = self._derivatives(theta)
        return mixture_scores(tau, shared, own), self.w

    def score(self, theta: np.ndarray) -> np.ndarray:
        """Gradient of :meth:`loglik`, shape (P,)."""
        out = self.score_observations(theta).sum(axis=0)
        if self.ridge:
            A, _ = self._penalty_matrices()
            out = out - self.ridge * (A.T @ self._penalised_coordinates(theta))
        return out

    def hessian(self, theta: np.ndarray) -> np.ndarray:
        """Analytic Hessian of :meth:`loglik`, shape (P, P)."""
        tau, shared, own, curv = self._derivatives(theta)
        if self.ridge:
            A, _ = self._penalty_matrices()
            curv = curv - self.ridge * (A.T @ A)
        return mixture_hessian(self.w, tau, shared, own, curv)

    def entropy(self, theta: np.ndarray) -> float:
        """Classification entropy ``-sum_j w_j sum_i tau_ji log tau_ji`` (for ICL)."""
        lj = log_joint_design(self.X1, self.y, self.from_vector(theta))
        logt = lj - logsumexp(lj, axis=1, keepdims=True)
        return float(-self.w @ np.sum(np.exp(logt) * logt, axis=1))


class OptionsMoELikelihood:
    """The mixture of experts under the options of :mod:`softmix.moe.options` (``gate=
    "constant"``, ``X_gate``, ``fit_intercept=False``, ``variance="equal"``,
    ``sample_weight``), as a function of its free parameters ``phi``.

    These options are linear constraints on the ordinary model on ``[1, W]`` (``W = [X_gate,
    X]`` or ``X``): ``theta = A phi`` with ``A`` a 0/1 matrix that keeps the free coordinates
    of the full vector of :class:`MoELikelihood` and, with ``variance="equal"``, puts one
    log-variance in every expert's block. So ``loglik(phi) = full(A phi)``, the score is
    ``A' s`` and the Hessian ``A' H A``, exactly.

    Reported parameters: ``gate[i,j]`` (j over ``[1, X_gate]`` or ``[1, X]``), or with
    ``gate="constant"`` the mixing weights ``weight[i]`` (all k, delta method from the
    log-ratios); ``coef[i,j]`` / ``coef[i,c,j]`` with j over ``[1, X]`` (j = 0 the intercept,
    absent with ``fit_intercept=False``); ``variance[i]``, or the one ``variance``.

    Parameters
    ----------
    W1 : ndarray of shape (n, 1 + width)
        The design ``[1, W]`` of the layout.
    y, like, ridge, sample_weight
        As in :class:`MoELikelihood` (``like`` on ``[1, W]``).
    layout : softmix.moe.options.Layout
    """

    family = "mixture_of_experts"

    def __init__(self, W1, y, like: MoEParams, layout, *, ridge: float = 0.0,
                 sample_weight=None) -> None:
        self.full = MoELikelihood(np.asarray(W1)[:, 1:], y, like, ridge=ridge,
                                  sample_weight=sample_weight)
        self.layout = layout
        self.k, self.expert, self.n_classes = self.full.k, self.full.expert, self.full.n_classes
        self.p = layout.n_features + 1  # the experts' [1, X] (for the summary)
        self._build_map()

    def _build_map(self) -> None:
        f, lay, k = self.full, self.layout, self.k
        width1 = lay.width + 1
        gate_cols = np.flatnonzero(lay.gate_mask)
        x_cols = np.concatenate([[0], np.arange(1 + lay.width - lay.n_features, width1)])
        x_pos = {int(c): j for j, c in enumerate(x_cols)}  # column of [1, W] -> j on [1, X]
        columns: list[list[int]] = []
        names: list[str] = []
        var_col = None
        for i in range(k - 1):
            for j, gc in enumerate(gate_cols):
                columns.append([i * width1 + int(gc)])
                names.append(f"gate[{i},{j}]")
        start = (k - 1) * width1
        n_cls = int(self.n_classes or 2) - 1  # class rows per expert (1 unless multinomial)
        for i in range(k):
            base = start + i * f.own_size
            for c in range(n_cls):
                for col in np.flatnonzero(lay.expert_mask):
                    columns.append([base + c * width1 + int(col)])
                    tag = f"{c}," if self.expert == "multinomial" else ""
                    names.append(f"coef[{i},{tag}{x_pos[int(col)]}]")
            if self.expert == "gaussian":
                idx = base + width1
                if lay.variance == "equal":
                    if var_col is None:
                        var_col = len(columns)
                        columns.append([])
                        names.append("log_variance")
                    columns[var_col].append(idx)
                else:
                    columns.append([idx])
                    names.append(f"log_variance[{i}]")
        amap = np.zeros((f.n_free_parameters, len(columns)))
        for j, rows in enumerate(columns):
            amap[rows, j] = 1.0
        self.A = amap
        self._rows = np.array([rows[0] for rows in columns], dtype=np.intp)
        self.names = names
        self._n_gate = (k - 1) * gate_cols.size

    # -- layout ------------------------------------------------------------------------------
    @property
    def n_free_parameters(self) -> int:
        return self.A.shape[1]

    @property
    def n_observations(self) -> float:
        """The n of BIC: the rows, or ``sum_j w_j`` with frequency weights."""
        return self.full.n_observations

    def reported_names(self) -> list[str]:
        out = [n.replace("log_variance", "variance") for n in self.names]
        if self.layout.gate == "constant":
            out = [f"weight[{i}]" for i in range(self.k)] + out[self._n_gate:]
        return out

    # -- vector <-> params -------------------------------------------------------------------
    def to_vector(self, params: MoEParams) -> np.ndarray:
        """Free parameters of ``params`` (a MoEParams on ``[1, W]`` respecting the layout)."""
        return self.full.to_vector(params)[self._rows]

    def from_vector(self, phi: np.ndarray) -> MoEParams:
        return self.full.from_vector(self.A @ self._check(phi))

    def _check(self, phi) -> np.ndarray:
        phi = np.asarray(phi, dtype=float)
        if phi.shape != (self.n_free_parameters,):
            raise ValueError(f"theta must have shape ({self.n_free_parameters},) for this "
                             f"mixture of experts; got {phi.shape}.")
        return phi

    def reported(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reported values and their Jacobian in ``phi`` (class docstring)."""
        values, jac = self.full.reported(self.A @ self._check(phi))
        values, jac = values[self._rows], jac[self._rows] @ self.A
        if self.layout.gate == "constant":
            k = self.k
            a = np.exp(log_softmax(np.concatenate([phi[: k - 1], [0.0]])))
            jw = np.zeros((k, phi.size))
            jw[:, : k - 1] = (np.diag(a) - np.outer(a, a))[:, : k - 1]
            values = np.concatenate([a, values[k - 1:]])
            jac = np.vstack([jw, jac[k - 1:]])
        return values, jac

    # -- likelihood and derivatives ----------------------------------------------------------
    def loglik(self, phi: np.ndarray) -> float:
        return self.full.loglik(self.A @ self._check(phi))

    def unpenalised_loglik(self, phi: np.ndarray) -> float:
        return self.full.unpenalised_loglik(self.A @ self._check(phi))

    def score_observations(self, phi: np.ndarray) -> np.ndarray:
        return self.full.score_observations(self.A @ self._check(phi)) @ self.A

    def score_units(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s, w = self.full.score_units(self.A @ self._check(phi))
        return s @ self.A, w

    def score(self, phi: np.ndarray) -> np.ndarray:
        return self.A.T @ self.full.score(self.A @ self._check(phi))

    def hessian(self, phi: np.ndarray) -> np.ndarray:
        """``A' H A``, exact (the constraints are linear)."""
        return self.A.T @ self.full.hessian(self.A @ self._check(phi)) @ self.A

    def entropy(self, phi: np.ndarray) -> float:
        return self.full.entropy(self.A @ self._check(phi))


# -- the estimator's glue (MixtureOfExperts.inference / summary, select_n_components) -------

#: Name of the estimator's number-of-components hyperparameter.
N_COMPONENTS = "n_experts"


def _uses_options(model, X_gate, sample_weight) -> bool:
    return getattr(model, "_layout", None) is not None or sample_weight is not None


def build(model, X, y, X_gate=None, sample_weight=None):
    """``(lik, theta)`` for a fitted :class:`~softmix.MixtureOfExperts` on ``(X, y)``: an
    :class:`OptionsMoELikelihood` when the fit used the options of
    :mod:`softmix.moe.options` (pass ``X_gate`` and the same ``sample_weight`` as ``fit``),
    else a :class:`MoELikelihood`."""
    from softmix.moe import options as _options
    from softmix.moe.options import Layout

    X = model._check_X(X)
    y_enc = model._check_y(y, X.shape[0], fit=False)
    if _uses_options(model, X_gate, sample_weight):
        W1 = model._design1(X, X_gate)
        weight = _options.check_sample_weight(sample_weight, X.shape[0])
        layout = model._layout or Layout(X.shape[1])
        lik = OptionsMoELikelihood(W1, y_enc, model.params_, layout,
                                   ridge=float(model.ridge), sample_weight=weight)
        return lik, lik.to_vector(model.params_)
    if X_gate is not None:
        model._design1(X, X_gate)  # raises: fitted without X_gate
    lik = MoELikelihood(X, y_enc, model.params_, ridge=float(model.ridge))
    std = getattr(model, "standardizer_", None)
    if model.ridge and std is not None:
        lik.penalty_map = standardised_penalty_map(lik, std)
    return lik, lik.to_vector(model.params_)


def standardised_penalty_map(lik: MoELikelihood, std) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` with ``A theta + b`` the coefficients the estimator's ridge penalises: the
    gating and classification-expert coefficients of ``std.params_in(from_vector(theta))``,
    the fit's internal (standardised) coordinates. That map is affine in ``theta`` (centring
    and scaling columns, variances not involved), so its columns are exact differences."""
    def coords(theta: np.ndarray) -> np.ndarray:
        internal = std.params_in(lik.from_vector(theta))
        parts = [np.ravel(internal.gating)]
        if lik.expert != "gaussian":
            parts.append(np.ravel(internal.expert_coef))
        return np.concatenate(parts)

    zero = np.zeros(lik.n_free_parameters)
    b = coords(zero)
    A = np.column_stack([coords(e) - b for e in np.eye(lik.n_free_parameters)])
    return A, b


def folds(X, y, X_gate=None, sample_weight=None, *, n_folds=5, rng=None):
    """K-fold split of the observations (random, sizes differing by at most one; ``X_gate``
    rows follow). Yields ``(train_args, train_kwargs, test_args, test_kwargs, n_test)``."""
    from softmix._validation import check_array

    if sample_weight is not None:
        raise ValueError("criterion='heldout' does not support sample_weight (the held-out "
                         "score is unweighted); use criterion='bic', 'aic' or 'icl'.")
    X = check_array(X, "X", ndim=2)
    y = np.asarray(y)
    if y.shape[:1] != X.shape[:1]:
        raise ValueError(f"y must have one entry per row of X ({X.shape[0]}), got {y.shape}.")
    Xg = None if X_gate is None else np.asarray(X_gate)
    assign = rng.permutation(X.shape[0]) % n_folds
    for f in range(n_folds):
        test = assign == f
        trk = {} if Xg is None else {"X_gate": Xg[~test]}
        tek = {} if Xg is None else {"X_gate": Xg[test]}
        yield (X[~test], y[~test]), trk, (X[test], y[test]), tek, float(test.sum())


def model_inference(model, X, y, *, method="observed", level=0.95, groups=None, n_boot=200,
                    bootstrap="nonparametric", random_state=None, X_gate=None,
                    sample_weight=None):
    """:meth:`softmix.MixtureOfExperts.inference` (see there)."""
    from softmix._validation import check_fitted
    from softmix.inference._glue import clone_from_fit, header
    from softmix.inference.covariance import infer
    from softmix.metrics import align

    check_fitted(model)
    lik, theta = build(model, X, y, X_gate, sample_weight)
    options = isinstance(lik, OptionsMoELikelihood)
    X_arr, y_raw = model._check_X(X), np.asarray(y)
    n = X_arr.shape[0]
    Xg = None if X_gate is None else np.asarray(X_gate, dtype=float)
    sw = None if sample_weight is None else np.asarray(sample_weight, dtype=float)

    def replicate(rng, kind):
        idx = np.arange(n)
        if kind == "parametric":
            Xb = X_arr
            yb, _ = model.sample(X_arr, random_state=rng, X_gate=Xg)
        else:
            if groups is not None:
                labels, index = np.unique(np.asarray(groups), return_inverse=True)
                pick = rng.integers(0, labels.size, labels.size)
                idx = np.concatenate([np.flatnonzero(index == g) for g in pick])
            else:
                idx = rng.integers(0, n, n)
            Xb, yb = X_arr[idx], y_raw[idx]
        fit = clone_from_fit(model, rng).fit(
            Xb, yb, X_gate=None if Xg is None else Xg[idx],
            sample_weight=None if sw is None else sw[idx])
        aligned = align(fit.params_, model.params_)
        return lik.reported(lik.to_vector(aligned))[0], bool(fit.converged_)

    sizes = {"model": f"MixtureOfExperts(k={lik.k}, {lik.expert})", "observations": n,
             "features": lik.p - 1}
    if options:
        lay = lik.layout
        sizes.update(gate=lay.gate if lay.n_gate_features is None
                     else f"X_gate ({lay.n_gate_features})",
                     intercept=lay.fit_intercept)
        if lik.expert == "gaussian":
            sizes["variance"] = lay.variance
        if sw is not None:
            sizes["sum of weights"] = float(sw.sum())
    if lik.n_classes is not None:
        sizes["classes"] = lik.n_classes
    if model.ridge:
        sizes["ridge"] = float(model.ridge)
    head = header(model, lik, theta, "Mixture of experts results", sizes, model.n_parameters())
    result = infer(lik, theta, method=method, level=level, groups=groups, n_boot=n_boot,
                   bootstrap=bootstrap, random_state=random_state, replicate=replicate,
                   converged=bool(model.converged_), header=head)
    if model.ridge:
        result.extra["notes"].append(
            f"ridge={model.ridge:g}: a penalised (MAP) fit; the information is that of the "
            "penalised log-likelihood (the log-likelihood in the header is unpenalised).")
    if sw is not None:
        result.extra["notes"].append(
            "sample_weight are frequency weights: row j counts as w_j observations (the "
            "information, the sandwich's meat and the n of BIC are weighted sums). For "
            "sampling (probability) weights use method='sandwich' with groups=np.arange(n) "
            "(meat sum_j w_j^2 s_j s_j').")
    return result


def n_parameters(model) -> int:
    """Free parameters the fitted estimator counts (its BIC's)."""
    return int(model.n_parameters())
