"""What a practitioner would write instead of EM: scipy L-BFGS on the softmax-mixture likelihood.

Objective (to minimise): ``f(v) = -(1/N) sum_j n_j log sum_k alpha_k pi_j(theta_k)`` with the
unconstrained vector ``v = [eta_1..eta_{K-1}, theta_1..theta_K]`` (``alpha = softmax([eta, 0])``:
the layout of :func:`softmix.softmax_mixture.model.params_to_vector`).

Gradient (derived with the responsibilities ``w_jk = alpha_k pi_jk / sum_l alpha_l pi_jl`` and
``c_k = sum_j n_j w_jk``):

* ``d ll / d theta_k = sum_j n_j w_jk (x_j - xbar_k) = X'(n w_k - c_k pi_k)``, with
  ``xbar_k = X' pi_k`` (because ``d log pi_jk / d theta_k = x_j - xbar_k``);
* ``d ll / d eta_k = c_k - N alpha_k`` for ``k < K`` (softmax Jacobian; ``sum_k c_k = N``).

So one evaluation costs the same two products as an EM iteration: ``X @ Theta'`` and
``X' @ (n W - Pi diag(c))``. Tested against finite differences in
``tests/test_benchmark_helpers.py``.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import optimize
from scipy.special import log_softmax, logsumexp

__all__ = ["fit_lbfgs", "smm_objective"]


def _unpack(v: np.ndarray, k: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    log_alpha = log_softmax(np.concatenate([v[: k - 1], [0.0]]))
    return log_alpha, v[k - 1 :].reshape(k, length)


def smm_objective(
    v: np.ndarray, features: np.ndarray, counts: np.ndarray, n_components: int
) -> tuple[float, np.ndarray]:
    """``(f(v), grad f(v))``: mean negative log-likelihood per draw and its gradient.

    Parameters
    ----------
    v : ndarray of shape (K - 1 + K * L,)
    features : ndarray of shape (p, L)
    counts : ndarray of shape (p,)
    n_components : int
    """
    k = n_components
    _p, length = features.shape
    n_total = float(counts.sum())
    log_alpha, atoms = _unpack(v, k, length)
    scores = features @ atoms.T  # (p, K)
    log_pi = scores - logsumexp(scores, axis=0, keepdims=True)
    joint = log_pi + log_alpha
    log_mix = logsumexp(joint, axis=1, keepdims=True)  # (p, 1)
    value = -float(counts @ log_mix[:, 0]) / n_total
    w = np.exp(joint - log_mix) * counts[:, None]  # n_j w_jk
    c = w.sum(axis=0)
    grad_atoms = features.T @ (w - np.exp(log_pi) * c)  # (L, K)
    grad_eta = c[:-1] - n_total * np.exp(log_alpha[:-1])
    grad = -np.concatenate([grad_eta, grad_atoms.T.ravel()]) / n_total
    return value, grad


def fit_lbfgs(
    features: np.ndarray,
    counts: np.ndarray,
    v0: np.ndarray,
    n_components: int,
    *,
    max_iter: int = 20_000,
    ftol: float = 1e-15,
    gtol: float = 1e-10,
) -> dict:
    """Minimise :func:`smm_objective` by scipy's L-BFGS-B from ``v0``; trace every evaluation.

    Returns
    -------
    dict
        ``x`` (final vector), ``log_likelihood`` (final), ``n_iter``, ``n_evals``, ``message``,
        ``trace_t`` / ``trace_ll``: seconds since the start and log-likelihood of every
        objective evaluation (line-search trials included: each is a point the user has).
    """
    features = np.ascontiguousarray(features, dtype=float)
    counts = np.asarray(counts, dtype=float)
    n_total = float(counts.sum())
    trace_t: list[float] = []
    trace_ll: list[float] = []
    t0 = time.perf_counter()

    def fun(v):
        value, grad = smm_objective(v, features, counts, n_components)
        trace_t.append(time.perf_counter() - t0)
        trace_ll.append(-value * n_total)
        return value, grad

    res = optimize.minimize(fun, v0, jac=True, method="L-BFGS-B",
                            options={"maxiter": max_iter, "ftol": ftol, "gtol": gtol,
                                     "maxfun": 10 * max_iter})
    return {
        "x": res.x,
        "log_likelihood": -float(res.fun) * n_total,
        "n_iter": int(res.nit),
        "n_evals": int(res.nfev),
        "message": str(res.message),
        "trace_t": trace_t,
        "trace_ll": np.maximum.accumulate(trace_ll).tolist(),
    }
