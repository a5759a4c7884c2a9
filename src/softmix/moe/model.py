"""Softmax-gated mixture of experts: parameters and the pure math (likelihood, posteriors,
gradient, sampler).

Model (Nguyen, Nguyen, Ho 2023, eq. (1); Fruytier, Mokhtari, Sanghavi 2024, section 2)::

    p(y | x) = sum_{i=1..k} softmax_i(beta0_i + beta1_i'x) f_i(y | x)

with ``f_i`` a Gaussian (linear mean, variance ``nu_i``), logistic or multinomial expert
(:mod:`softmix.moe.experts`). The last expert's gating row is fixed at zero (gauge).
All functions take ``X`` of shape (n, d) (the intercept column is added here) and ``y`` of
shape (n,): real for Gaussian experts, 0/1 for logistic, class indices ``0..C-1`` for
multinomial experts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from softmix.core.special import logsumexp
from softmix.moe.experts import EXPERTS, get_expert
from softmix.moe.gating import add_intercept, gate_log_proba_design, gating_gradient

__all__ = [
    "MoEParams",
    "check_params",
    "gradient",
    "log_joint",
    "log_likelihood",
    "log_responsibilities",
    "params_from_vector",
    "params_to_vector",
    "penalty",
    "sample",
    "score_samples",
    "score_samples_design",
]


@dataclass(frozen=True, eq=False)
class MoEParams:
    """Parameters of a softmax-gated mixture of ``k`` experts on ``d`` features.

    Attributes
    ----------
    gating : ndarray of shape (k, d+1)
        Row ``i = [beta0_i, beta1_i...]``; the last row is zero (gauge).
    expert_coef : ndarray of shape (k, d+1) or (k, C, d+1)
        Rows ``[b_i, a_i...]`` for ``"gaussian"`` and ``"logistic"`` experts; for
        ``"multinomial"`` experts one (C, d+1) block per expert whose last class row is zero.
    expert_variance : ndarray of shape (k,) or None
        Variances ``nu_i`` of Gaussian experts (not standard deviations); None otherwise.
    expert : {"gaussian", "logistic", "multinomial"}

    Notes
    -----
    The dataclass checks shapes and the two gauges; it does not require positive variances,
    because the same container holds gradients (:func:`gradient`). :func:`check_params`
    validates a parameter set at the public boundary. Arrays are stored read-only.
    """

    gating: np.ndarray
    expert_coef: np.ndarray
    expert_variance: np.ndarray | None = None
    expert: str = "gaussian"

    def __post_init__(self) -> None:
        expert = get_expert(self.expert)
        gating = _frozen(self.gating, "gating")
        coef = _frozen(self.expert_coef, "expert_coef")
        if gating.ndim != 2 or gating.shape[0] < 1 or gating.shape[1] < 1:
            raise ValueError(f"gating must have shape (k, d+1), got {gating.shape}.")
        k, p = gating.shape
        want_ndim = 3 if self.expert == "multinomial" else 2
        if coef.ndim != want_ndim or coef.shape[0] != k or coef.shape[-1] != p:
            want = "(k, C, d+1)" if want_ndim == 3 else "(k, d+1)"
            raise ValueError(
                f"expert_coef of {self.expert!r} experts must have shape {want} = "
                f"({k}, {'C, ' if want_ndim == 3 else ''}{p}) to match gating {gating.shape}, "
                f"got {coef.shape}."
            )
        if np.any(gating[-1] != 0):
            raise ValueError(
                "the last row of gating must be zero (gauge), got "
                f"{gating[-1].tolist()}. Subtract it from every row: "
                "softmix.moe.gating.normalize_gauge(gating)."
            )
        if want_ndim == 3:
            if coef.shape[1] < 2:
                raise ValueError(f"multinomial experts need C >= 2 classes, got {coef.shape[1]}.")
            if np.any(coef[:, -1, :] != 0):
                raise ValueError(
                    "the last class row of every multinomial expert must be zero (gauge); "
                    "subtract it from the expert's class rows."
                )
        if expert.has_variance:
            if self.expert_variance is None:
                raise ValueError("gaussian experts need expert_variance of shape (k,), got None.")
            var = _frozen(self.expert_variance, "expert_variance")
            if var.shape != (k,):
                raise ValueError(f"expert_variance must have shape ({k},), got {var.shape}.")
        else:
            if self.expert_variance is not None:
                raise ValueError(
                    f"{self.expert!r} experts have no variance; pass expert_variance=None."
                )
            var = None
        object.__setattr__(self, "gating", gating)
        object.__setattr__(self, "expert_coef", coef)
        object.__setattr__(self, "expert_variance", var)

    @property
    def n_experts(self) -> int:
        return self.gating.shape[0]

    @property
    def n_features(self) -> int:
        """d (the design has d + 1 columns with the intercept)."""
        return self.gating.shape[1] - 1

    @property
    def n_classes(self) -> int | None:
        """C for multinomial experts, 2 for logistic, None for Gaussian experts."""
        if self.expert == "multinomial":
            return self.expert_coef.shape[1]
        return 2 if self.expert == "logistic" else None

    @property
    def n_free_parameters(self) -> int:
        """Free parameters (for BIC): ``(k-1)(d+1)`` gating + ``k`` times one expert's count."""
        k, d = self.n_experts, self.n_features
        return (k - 1) * (d + 1) + k * get_expert(self.expert).n_params(d, self.n_classes)

    def permute(self, order) -> MoEParams:
        """The same model with experts reordered (``new expert i = old expert order[i]``).

        The gating is moved back to the gauge of the new last expert (its row subtracted from
        every row), so the conditional density is unchanged.
        """
        order = np.asarray(order, dtype=np.intp)
        if sorted(order.tolist()) != list(range(self.n_experts)):
            raise ValueError(
                f"order must be a permutation of 0..{self.n_experts - 1}, got {order.tolist()}."
            )
        gating = self.gating[order]
        var = None if self.expert_variance is None else self.expert_variance[order]
        return MoEParams(gating - gating[-1], self.expert_coef[order], var, self.expert)

    def replace(self, **changes) -> MoEParams:
        """A copy with some fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        return (
            f"MoEParams(expert={self.expert!r}, n_experts={self.n_experts}, "
            f"n_features={self.n_features}, gating={self.gating.tolist()}, "
            f"expert_coef={self.expert_coef.tolist()}, expert_variance="
            f"{None if self.expert_variance is None else self.expert_variance.tolist()})"
        )


def _frozen(value, name: str) -> np.ndarray:
    arr = np.array(value, dtype=float, copy=True)
    arr.setflags(write=False)
    return arr


def check_params(params: MoEParams, *, n_features: int | None = None, expert: str | None = None,
                 n_classes: int | None = None, name: str = "params") -> MoEParams:
    """Validate a user-given parameter set: type, finiteness, positive variances, shapes."""
    if not isinstance(params, MoEParams):
        raise TypeError(f"{name} must be a MoEParams, got {type(params).__name__}.")
    arrays = [params.gating, params.expert_coef]
    if params.expert_variance is not None:
        arrays.append(params.expert_variance)
        if np.any(params.expert_variance <= 0):
            raise ValueError(
                f"{name}.expert_variance must be > 0, got {params.expert_variance.tolist()}."
            )
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise ValueError(f"{name} contains NaN or infinite values.")
    if expert is not None and params.expert != expert:
        raise ValueError(f"{name} has expert={params.expert!r} but the model uses {expert!r}.")
    if n_features is not None and params.n_features != n_features:
        raise ValueError(
            f"{name} is for {params.n_features} feature(s) but X has {n_features} column(s)."
        )
    if n_classes is not None and params.expert == "multinomial" and params.n_classes != n_classes:
        raise ValueError(f"{name} has {params.n_classes} classes but y has {n_classes}.")
    return params


# ------------------------------------------------------------------------- likelihood & co.

def log_joint_design(X1: np.ndarray, y: np.ndarray, params: MoEParams) -> np.ndarray:
    """:func:`log_joint` from the design ``X1 = [1, X]`` (used inside the fitting loops)."""
    expert = EXPERTS[params.expert]
    return gate_log_proba_design(X1, params.gating) + expert.log_prob(
        X1, y, params.expert_coef, params.expert_variance
    )


def log_joint(X: np.ndarray, y: np.ndarray, params: MoEParams) -> np.ndarray:
    """``log P(z=i | x_j) + log f_i(y_j | x_j)``, shape (n, k)."""
    return log_joint_design(add_intercept(X), np.asarray(y), params)


def log_likelihood(X: np.ndarray, y: np.ndarray, params: MoEParams) -> float:
    """``sum_j log p(y_j | x_j)`` (a sum over samples, not a mean)."""
    return float(np.sum(logsumexp(log_joint(X, y, params), axis=1)))


def log_responsibilities(X: np.ndarray, y: np.ndarray, params: MoEParams) -> np.ndarray:
    """Posterior ``log P(z=i | x_j, y_j)``, shape (n, k) (rows log-sum-exp to 0)."""
    lj = log_joint(X, y, params)
    return lj - logsumexp(lj, axis=1, keepdims=True)


def penalty(params: MoEParams, ridge: float) -> float:
    """Ridge penalty ``ridge/2 (||gating||^2 + ||coef||^2 of classification experts)``.

    EM with ``ridge > 0`` maximises ``log_likelihood - penalty`` (a MAP estimate).
    """
    if not ridge:
        return 0.0
    return 0.5 * ridge * float(np.sum(params.gating**2)) + EXPERTS[params.expert].penalty(
        params.expert_coef, ridge
    )


def gradient(X: np.ndarray, y: np.ndarray, params: MoEParams) -> MoEParams:
    """Gradient of :func:`log_likelihood` with respect to every parameter block.

    Returns
    -------
    MoEParams
        Same layout as ``params``: gating block (last row 0), expert coefficients (last class
        row 0 for multinomial experts) and, for Gaussian experts, the derivative with respect to
        the *variances* ``nu_i`` (chain-rule it for a log-variance parametrisation).

    Notes
    -----
    By Fisher's identity the gradient of ``log p(y|x)`` equals the expectation of the gradient
    of ``log p(y, z | x)`` under the posterior ``tau``: the gating block is
    ``sum_j (tau_ji - pi_ji) [1, x_j]`` and expert block ``i`` is
    ``sum_j tau_ji grad log f_i(y_j | x_j)``.
    """
    X1 = add_intercept(X)
    y = np.asarray(y)
    lj = log_joint_design(X1, y, params)
    tau = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))
    g_gate = gating_gradient(X1, tau, params.gating)
    g_coef, g_var = EXPERTS[params.expert].grad_log_prob(
        X1, y, params.expert_coef, params.expert_variance, tau
    )
    return MoEParams(g_gate, g_coef, g_var, params.expert)


def score_samples_design(X1: np.ndarray, y: np.ndarray, params: MoEParams,
                         tau: np.ndarray | None = None) -> np.ndarray:
    """Per-observation gradient of ``log p(y_j | x_j)``, shape (n, n_free), in the layout of
    :func:`params_to_vector` (variance entries: derivative with respect to ``nu_i``).

    Rows sum to the vectorised :func:`gradient`. ``tau`` (the posteriors at ``params``) is
    computed when not given. Used for the outer-product-of-gradients metric (the stationarity
    criterion of :func:`softmix.moe.em.score_gain`) and for sandwich / cluster covariances.
    """
    if tau is None:
        lj = log_joint_design(X1, y, params)
        tau = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))
    n = X1.shape[0]
    pi = np.exp(gate_log_proba_design(X1, params.gating))
    gate = ((tau - pi)[:, :-1, None] * X1[:, None, :]).reshape(n, -1)
    blocks = EXPERTS[params.expert].score_samples(X1, y, params.expert_coef,
                                                  params.expert_variance, tau)
    return np.hstack([gate] + [b.reshape(n, -1) for b in blocks])


def score_samples(X: np.ndarray, y: np.ndarray, params: MoEParams) -> np.ndarray:
    """:func:`score_samples_design` from ``X`` of shape (n, d)."""
    return score_samples_design(add_intercept(X), np.asarray(y), params)


def sample(X: np.ndarray, params: MoEParams, rng: np.random.Generator) -> tuple:
    """Draw ``z_j ~ Cat(P(z | x_j))`` then ``y_j ~ f_{z_j}(. | x_j)``.

    Returns
    -------
    y : ndarray of shape (n,)
    z : ndarray of shape (n,)
        Expert labels (0-based).
    """
    X1 = add_intercept(X)
    prob = np.exp(gate_log_proba_design(X1, params.gating))
    u = rng.random(X1.shape[0])[:, None]
    z = np.minimum((np.cumsum(prob, axis=1) < u).sum(axis=1), params.n_experts - 1)
    y = EXPERTS[params.expert].sample(X1, params.expert_coef, params.expert_variance, z, rng)
    return y, z


# ------------------------------------------------------------------------- flat vectors

def params_to_vector(params: MoEParams) -> np.ndarray:
    """Free parameters as one vector: gating rows ``0..k-2``, expert coefficients (without the
    multinomial gauge rows), then variances (Gaussian experts). Works on gradients too."""
    parts = [params.gating[:-1].ravel()]
    if params.expert == "multinomial":
        parts.append(params.expert_coef[:, :-1, :].ravel())
    else:
        parts.append(params.expert_coef.ravel())
    if params.expert_variance is not None:
        parts.append(params.expert_variance.ravel())
    return np.concatenate(parts)


def params_from_vector(vector: np.ndarray, like: MoEParams) -> MoEParams:
    """Inverse of :func:`params_to_vector` with the shapes and expert type of ``like``."""
    v = np.asarray(vector, dtype=float).ravel()
    expected = params_to_vector(like).size
    if v.size != expected:
        raise ValueError(
            f"vector has {v.size} entries, expected {expected} (the free parameters of a "
            f"{like.n_experts}-expert {like.expert} model on {like.n_features} feature(s))."
        )
    k, p = like.gating.shape
    pos = (k - 1) * p
    gating = np.vstack([v[:pos].reshape(k - 1, p), np.zeros((1, p))])
    if like.expert == "multinomial":
        c = like.expert_coef.shape[1]
        size = k * (c - 1) * p
        free = v[pos:pos + size].reshape(k, c - 1, p)
        coef = np.concatenate([free, np.zeros((k, 1, p))], axis=1)
    else:
        size = k * p
        coef = v[pos:pos + size].reshape(k, p)
    pos += size
    var = None
    if like.expert_variance is not None:
        var = v[pos:pos + k]
    return MoEParams(gating, coef, var, like.expert)
