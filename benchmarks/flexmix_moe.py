"""Our Gaussian mixture-of-experts EM against R flexmix on the same data and the same start.

flexmix fits the same model as ``softmix.MixtureOfExperts(expert="gaussian")``:
``FLXMRglm(family = "gaussian")`` experts with a ``FLXPmultinom`` concomitant model (a softmax
gate on ``[1, x]``). Both start from the same posteriors ``post0`` (the posteriors of one of our
k-means starts): flexmix's first step with ``cluster = post0`` is an M-step from them, which is
exactly our first EM iteration from the parameters that produced ``post0``. Both then run EM to
a tight relative tolerance (1e-10; flexmix divides by ``|ll| + 0.1``, we by ``max(1, |ll|)``).

What is compared, and why it is the same quantity
-------------------------------------------------
- ``ll_flexmix``: ``logLik(m)``, the plain sum over samples of ``log sum_i pi_i(x) N(y | mu_i(x),
  sigma_i^2)``; its ``df`` attribute (the parameter count) does not enter the value.
- ``ll_ours``: ``log_likelihood(X, y, params)`` at our EM fit (the same sum).
- ``ll_ours_at_flexmix``: our log-likelihood function evaluated at flexmix's fitted parameters
  (gate moved to our gauge, last expert 0; flexmix's is first expert 0). It must equal
  ``ll_flexmix`` to round-off: the two libraries compute the same objective.
- Convention difference: flexmix's Gaussian M-step sets ``sigma^2 = sum_j w_j r_j^2 /
  (mean(w) (n - rank))``, i.e. the weighted residual variance times ``n / (n - d - 1)`` (a
  degrees-of-freedom correction with ``n`` the *total* sample size), not the maximum-likelihood
  ``sum_j w_j r_j^2 / sum_j w_j``. Its fixed point is therefore not exactly the MLE, and its
  log-likelihood is lower than ours by about 1e-3 nats (relative ~6e-7 at n = 2000); the gate is
  fitted by ``nnet`` (BFGS, relative tolerance 1e-8) instead of Newton. Both effects are far
  below the 1e-4 relative agreement that is asserted.

Run: ``.venv/bin/python benchmarks/flexmix_moe.py [--n 2000] [--seed 0]``. It needs ``Rscript``
with flexmix and jsonlite; otherwise it prints the exact install command
(``apt-get install r-base-core r-cran-flexmix r-cran-survival r-cran-mixtools r-cran-jsonlite``).
Timings are measured inside R (fit only) and around our ``fit_em`` call; the machine is shared,
so read them as a side-by-side ratio of one run, not as absolute speeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peers import PeerUnavailable, ensure_r, run_r

from softmix.datasets import make_gaussian_moe, make_moe
from softmix.moe.em import fit_em
from softmix.moe.init import initialize
from softmix.moe.model import MoEParams, log_likelihood, log_responsibilities

#: Asserted agreement of the two fitted log-likelihoods (relative).
RTOL = 1e-4


def compare(X: np.ndarray, y: np.ndarray, n_experts: int, *, seed: int = 0, tol: float = 1e-10,
            iter_max: int = 5000, rscript: str | None = None) -> dict:
    """Fit ours and flexmix from the same start; return both log-likelihoods and timings."""
    params0 = initialize("kmeans", X, y, n_experts, "gaussian", rng=np.random.default_rng(seed))
    post0 = np.exp(log_responsibilities(X, y, params0))
    t0 = time.perf_counter()
    ours = fit_em(X, y, params0, max_iter=iter_max, tol=tol, warn=False)
    sec_ours = time.perf_counter() - t0
    out = run_r("flexmix_moe.R", {"X": X, "y": y, "post0": post0, "K": n_experts,
                                  "iter_max": iter_max, "tol": tol}, rscript=rscript)
    if int(out["K_final"]) != n_experts:
        raise RuntimeError(f"flexmix dropped components ({out['K_final']} of {n_experts} left)")
    coef = np.asarray(out["coef"], dtype=float).reshape(X.shape[1] + 1, n_experts)
    sigma = np.atleast_1d(np.asarray(out["sigma"], dtype=float))
    gating = np.asarray(out["gating"], dtype=float).reshape(X.shape[1] + 1, n_experts).T
    theirs = MoEParams(gating - gating[-1], coef.T, sigma**2, "gaussian")
    ll_ours = log_likelihood(X, y, ours.params)
    ll_flex = float(out["ll"])
    return {
        "n": len(y),
        "k": n_experts,
        "ll_ours": ll_ours,
        "ll_flexmix": ll_flex,
        "ll_ours_at_flexmix": log_likelihood(X, y, theirs),
        "rel_diff": abs(ll_ours - ll_flex) / abs(ll_flex),
        "iter_ours": ours.n_iter,
        "iter_flexmix": int(out["iter"]),
        "converged_ours": ours.converged,
        "converged_flexmix": bool(out["converged"]),
        "sec_ours": sec_ours,
        "sec_flexmix": float(out["seconds"]),
        "params_ours": ours.params,
        "params_flexmix": theirs,
    }


def datasets(n: int, seed: int) -> list[tuple[str, np.ndarray, np.ndarray, int]]:
    """The paper's true model (d = 1, k = 2) and a random 3-expert MoE on 2 features."""
    X1, y1, _ = make_gaussian_moe(n, random_state=seed)
    X2, y2, _ = make_moe(n, 2, 3, expert="gaussian", random_state=seed)
    return [("paper (d=1, k=2)", X1, y1, 2), ("random (d=2, k=3)", X2, y2, 3)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="samples per data set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        rscript = ensure_r(("flexmix", "jsonlite"))
    except PeerUnavailable as exc:
        print(f"flexmix comparison skipped: {exc}")
        return 2
    print(f"softmix MixtureOfExperts EM vs R flexmix (FLXMRglm gaussian + FLXPmultinom), "
          f"n = {args.n}, seed = {args.seed}, same start, tol = 1e-10")
    header = (f"{'data':<18} {'ll ours':>14} {'ll flexmix':>14} {'rel diff':>9} "
              f"{'ours@flexmix':>14} {'iters o/f':>10} {'sec o/f':>13} {'flexmix/ours':>12}")
    print(header)
    ok = True
    for name, X, y, k in datasets(args.n, args.seed):
        r = compare(X, y, k, seed=args.seed, rscript=rscript)
        ratio = r["sec_flexmix"] / max(r["sec_ours"], 1e-9)
        print(f"{name:<18} {r['ll_ours']:>14.6f} {r['ll_flexmix']:>14.6f} {r['rel_diff']:>9.1e} "
              f"{r['ll_ours_at_flexmix']:>14.6f} {r['iter_ours']:>4d}/{r['iter_flexmix']:<5d} "
              f"{r['sec_ours']:>6.2f}/{r['sec_flexmix']:<6.2f} {ratio:>12.1f}")
        ok &= r["rel_diff"] <= RTOL
        ok &= abs(r["ll_ours_at_flexmix"] - r["ll_flexmix"]) <= 1e-8 * abs(r["ll_flexmix"])
    print("agreement to 1e-4 relative:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
