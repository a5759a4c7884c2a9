"""The likelihood protocol of the latent class logit (for standard errors, selection, SQUAREM).

Unconstrained vector parametrisation ``theta = [beta.ravel(), gamma[:-1].ravel()]``: the class
coefficients (K, L) in C order, then the free membership rows (K - 1, q + 1) (the last row, the
reference class K - 1, is fixed at 0). ``loglik``, ``score`` and ``hessian`` are analytic in theta
(checked against finite differences in ``tests/test_choice_likelihood.py``).

Derivatives. With ``u_gk = grad_theta log(w_gk f_gk)`` and posteriors ``r_gk``, group g's score
is ``S_g = sum_k r_gk u_gk`` and (Louis's identity)
``hess l_g = sum_k r_gk (hess log(w_gk f_gk) + u_gk u_gk') - S_g S_g'``. Here
``u_gk = [e_k (x) sum_{s in g} (x_{c_s} - xbar_sk), (e_k - w_g)_{:K-1} (x) [1, z_g]]`` and
``hess log(w_gk f_gk) = blockdiag_k(-sum_{s in g} Cov_{P_sk}(x)) (beta block, class k only)
+ -(diag(w_g) - w_g w_g')_{:K-1,:K-1} (x) [1, z_g][1, z_g]'`` (gamma block, the same for all k).
"""

from __future__ import annotations

import numpy as np

from softmix.choice.data import ChoiceData
from softmix.choice.model import LatentClassLogitParams, e_step, em_map, log_weights

__all__ = [
    "canonical_order",
    "em_map",
    "from_vector",
    "hessian",
    "loglik",
    "n_free_parameters",
    "score",
    "to_vector",
]


def to_vector(params: LatentClassLogitParams) -> np.ndarray:
    """``theta = [coef.ravel(), membership_coef[:-1].ravel()]``; ValueError at weight 0."""
    gamma = params.membership_coef[:-1]
    if not np.all(np.isfinite(gamma)):
        raise ValueError("a class has weight 0 (membership_coef -inf): no unconstrained image.")
    return np.concatenate([params.coef.ravel(), gamma.ravel()])


def from_vector(theta: np.ndarray, n_classes: int, n_features: int,
                n_covariates: int = 0) -> LatentClassLogitParams:
    """Inverse of :func:`to_vector`."""
    theta = np.asarray(theta, dtype=float)
    k, length, q1 = n_classes, n_features, n_covariates + 1
    if theta.shape != (k * length + (k - 1) * q1,):
        raise ValueError(
            f"theta must have {k * length + (k - 1) * q1} entries for K={k}, L={length}, "
            f"q={n_covariates}; got shape {theta.shape}."
        )
    coef = theta[: k * length].reshape(k, length)
    gamma = np.vstack([theta[k * length:].reshape(k - 1, q1), np.zeros((1, q1))])
    return LatentClassLogitParams(coef, gamma)


def n_free_parameters(n_classes: int, n_features: int, n_covariates: int = 0) -> int:
    """``K L + (K - 1)(q + 1)`` (identified when X has no within-situation-constant direction)."""
    return n_classes * n_features + (n_classes - 1) * (n_covariates + 1)


def canonical_order(params: LatentClassLogitParams,
                    data: ChoiceData | None = None) -> LatentClassLogitParams:
    """Classes sorted by decreasing weight, then by the first coefficient: the one
    representative of the K! label permutations (applied by ``LatentClassLogit.fit``).

    The weight is the groups' average fitted class weight when ``data`` is given (so the order
    does not depend on where the covariates' origin is), else the intercept weight
    ``softmax(gamma[:, 0])`` (the same thing without covariates). The membership coefficients
    are re-gauged so the new last class is the reference.
    """
    if data is None:
        w = params.weights
    else:
        lw = np.exp(log_weights(params, data))
        w = (lw.mean(axis=0) if data.group_weights is None
             else data.group_weights @ lw / data.group_weights.sum())
    perm = np.lexsort((params.coef[:, 0], -np.round(w, 12)))
    return params.permuted(perm)


def _unpack(theta, data: ChoiceData, n_classes: int) -> LatentClassLogitParams:
    return from_vector(theta, n_classes, data.n_features, data.n_covariates)


def loglik(theta: np.ndarray, data: ChoiceData, n_classes: int) -> float:
    """The log-likelihood at ``theta`` (weighted by the group weights, if any)."""
    return e_step(_unpack(theta, data, n_classes), data)[1]


def _pieces(theta, data: ChoiceData, n_classes: int):
    """Posteriors r (G, K), weights w (G, K), per-class per-group beta scores b (G, K, L),
    per-situation probabilities and the membership design D (G, q+1)."""
    params = _unpack(theta, data, n_classes)
    log_resp, _, log_p = e_step(params, data)
    p = np.exp(log_p)  # (n_rows, K)
    X = data.X
    xbar = np.einsum("rk,rl->rkl", p, X)
    xbar = np.add.reduceat(xbar, data.starts, axis=0)  # (S, K, L)
    d_sit = X[data.chosen_rows][:, None, :] - xbar  # (S, K, L)
    b = np.add.reduceat(d_sit, data.group_starts, axis=0)  # (G, K, L)
    w = np.exp(log_weights(params, data))
    D = np.ones((data.n_groups, 1)) if data.Z is None else np.hstack(
        [np.ones((data.n_groups, 1)), data.Z])
    return params, np.exp(log_resp), w, b, D, p, xbar


def _per_class_grads(r, w, b, D, k):
    """``u_gk`` stacked: (G, K, P)."""
    g, _, length = b.shape
    q1 = D.shape[1]
    u = np.zeros((g, k, k * length + (k - 1) * q1))
    for c in range(k):
        u[:, c, c * length:(c + 1) * length] = b[:, c]
        e = -w[:, :-1].copy()
        if c < k - 1:
            e[:, c] += 1.0
        u[:, c, k * length:] = (e[:, :, None] * D[:, None, :]).reshape(g, -1)
    return u


def score(theta: np.ndarray, data: ChoiceData, n_classes: int, *,
          per_group: bool = False, weighted: bool = True) -> np.ndarray:
    """Gradient of :func:`loglik`, shape (P,); or per group, shape (G, P), with
    ``per_group=True`` (rows weighted by the group weights, so that they sum to the gradient;
    ``weighted=False``: each group's own score, without its weight)."""
    _, r, w, b, D, _, _ = _pieces(theta, data, n_classes)
    u = _per_class_grads(r, w, b, D, n_classes)
    s = np.einsum("gk,gkp->gp", r, u)
    if weighted and data.group_weights is not None:
        s = s * data.group_weights[:, None]
    return s if per_group else s.sum(axis=0)


def hessian(theta: np.ndarray, data: ChoiceData, n_classes: int) -> np.ndarray:
    """Analytic Hessian of :func:`loglik`, shape (P, P) (Louis's identity, module docstring)."""
    k = n_classes
    _, r, w, b, D, p, xbar = _pieces(theta, data, k)
    length = data.n_features
    q1 = D.shape[1]
    sw = np.ones(data.n_groups) if data.group_weights is None else data.group_weights
    u = _per_class_grads(r, w, b, D, k)
    s = np.einsum("gk,gkp->gp", r, u)
    h = np.einsum("g,gk,gkp,gkq->pq", sw, r, u, u) - np.einsum("g,gp,gq->pq", sw, s, s)
    # beta blocks: -sum_s a_sk Cov_{P_sk}(x)
    a = (r * sw[:, None])[data.situation_group]  # (S, K)
    X = data.X
    for c in range(k):
        ap = p[:, c] * a[data.row_situation, c]
        blk = -(X.T @ (X * ap[:, None]) - xbar[:, c].T @ (xbar[:, c] * a[:, c:c + 1]))
        h[c * length:(c + 1) * length, c * length:(c + 1) * length] += blk
    # gamma block: -sum_g s_g (diag(w) - w w')_{free} (x) D D'
    wf = w[:, :-1]
    cov = np.einsum("gi,ij->gij", wf, np.eye(k - 1)) - np.einsum("gi,gj->gij", wf, wf)
    gg = -np.einsum("g,gij,ga,gb->iajb", sw, cov, D, D).reshape((k - 1) * q1, (k - 1) * q1)
    h[k * length:, k * length:] += gg
    return h


def newton_decrement(theta: np.ndarray, data: ChoiceData, n_classes: int) -> float:
    """``g' (-H)^{-1} g / 2`` at ``theta``: the log-likelihood gain (nats) a Newton step
    predicts; a scale-free stationarity measure (``inf`` where ``-H`` is not positive
    definite: not at a maximum)."""
    g = score(theta, data, n_classes)
    h = hessian(theta, data, n_classes)
    try:
        c = np.linalg.cholesky(-h)
    except np.linalg.LinAlgError:
        return float("inf")
    y = np.linalg.solve(c, g)
    return 0.5 * float(y @ y)


__all__ += ["newton_decrement"]
