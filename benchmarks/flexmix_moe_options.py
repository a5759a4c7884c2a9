"""MixtureOfExperts with flexmix's options against R flexmix, on the same data and start.

Rows (issue 12): a constant-gate mixture of regressions on flexmix's own example data ``NPreg``
(``yn ~ x + I(x^2)``, k = 2, the example of ``?flexmix``), with free and with equal variances
(``FLXMRglmfix(varFix = TRUE)``); a concomitant model (gate ``FLXPmultinom(~ w1 + w2)`` on its
own covariates, experts on x; simulated by :func:`softmix.datasets.make_moe_options`); and
intercept-free experts (``y ~ x - 1``).

Same start: both begin from the posteriors ``post0`` of one of our k-means starts; flexmix's
first step with ``cluster = post0`` is an M-step from them, which is what
:func:`softmix.moe.options.start_from_posteriors` computes for us. Both then run EM to a
relative tolerance of 1e-10. flexmix's Gaussian M-step divides the residual sum of squares by
``n - rank`` (a degrees-of-freedom correction; see ``benchmarks/flexmix_moe.py``), so its fixed
point is not exactly the maximum-likelihood one: ours must reach *at least* its log-likelihood.

Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/flexmix_moe_options.py [--seed 0]``.
Needs ``Rscript`` with flexmix and jsonlite (``apt-get install r-base-core r-cran-flexmix
r-cran-survival r-cran-mixtools r-cran-jsonlite``). Timings: R's inside R (fit only), ours
around ``MixtureOfExperts.fit`` (one run each on a shared machine: read the ratio, not the
absolute seconds).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peers import PeerUnavailable, ensure_r, run_r

from softmix import MixtureOfExperts
from softmix.datasets import make_moe_options
from softmix.moe.experts import default_variance_floor
from softmix.moe.init import initialize
from softmix.moe.model import log_responsibilities
from softmix.moe.options import Layout, start_from_posteriors

#: Ours may end below flexmix's log-likelihood by at most this (relative): round-off only.
RTOL = 1e-8


@functools.lru_cache(maxsize=2)
def load_npreg(rscript: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """flexmix's ``NPreg`` (200 rows): ``X = [x, x^2]`` and ``y = yn``, read through R
    (once per process)."""
    out = run_r("flexmix_moe_options.R", {"dataset": "NPreg"}, rscript=rscript)
    x = np.asarray(out["x"], dtype=float)
    return np.column_stack([x, x**2]), np.asarray(out["yn"], dtype=float)


def compare(X: np.ndarray, y: np.ndarray, n_experts: int, *, X_gate: np.ndarray | None = None,
            gate: str = "constant", fit_intercept: bool = True, variance: str = "free",
            seed: int = 0, tol: float = 1e-10, iter_max: int = 5000,
            rscript: str | None = None) -> dict:
    """Fit ours and flexmix from the same posteriors; return log-likelihoods and timings."""
    layout = Layout(X.shape[1], None if X_gate is None else X_gate.shape[1], gate,
                    fit_intercept, variance)
    init = initialize("kmeans", X, y, n_experts, "gaussian", rng=np.random.default_rng(seed))
    post0 = np.exp(log_responsibilities(X, y, init))
    W1 = layout.design(X, X_gate)
    start = start_from_posteriors(W1, y, post0, init, layout,
                                  variance_floor=default_variance_floor(y))
    model = MixtureOfExperts(n_experts, init=start, gate=gate, fit_intercept=fit_intercept,
                             variance=variance, tol=tol, max_iter=iter_max)
    t0 = time.perf_counter()
    model.fit(X, y, X_gate=X_gate)
    sec_ours = time.perf_counter() - t0
    inputs = {"X": X, "y": y, "post0": post0, "K": n_experts, "iter_max": iter_max, "tol": tol,
              "gate": "constant" if gate == "constant" else "softmax",
              "intercept": bool(fit_intercept), "varfix": variance == "equal"}
    if X_gate is not None:
        inputs["Xgate"] = X_gate
    out = run_r("flexmix_moe_options.R", inputs, rscript=rscript)
    if int(out["K_final"]) != n_experts:
        raise RuntimeError(f"flexmix dropped components ({out['K_final']} of {n_experts} left)")
    ll_flex = float(out["ll"])
    return {
        "n": len(y), "k": n_experts,
        "ll_ours": model.log_likelihood_, "ll_flexmix": ll_flex,
        "ll_gap": model.log_likelihood_ - ll_flex,
        "iter_ours": model.n_iter_, "iter_flexmix": int(out["iter"]),
        "converged_ours": model.converged_, "converged_flexmix": bool(out["converged"]),
        "sec_ours": sec_ours, "sec_flexmix": float(out["seconds"]),
        "df_flexmix": int(out["df"]), "df_ours": model.n_parameters(),
        "model": model,
    }


def cases(seed: int, rscript: str | None = None) -> list[tuple[str, dict]]:
    """(name, keyword arguments of :func:`compare`) for the benchmark rows."""
    X, y = load_npreg(rscript)
    conc = make_moe_options(1000, 1, 2, n_gate_features=2, random_state=seed)
    free = make_moe_options(1000, 2, 2, fit_intercept=False, random_state=seed)
    return [
        ("NPreg constant gate", {"X": X, "y": y, "n_experts": 2, "gate": "constant"}),
        ("NPreg constant, equal var", {"X": X, "y": y, "n_experts": 2, "gate": "constant",
                                       "variance": "equal"}),
        ("concomitant ~ w1 + w2", {"X": conc.X, "y": conc.y, "X_gate": conc.X_gate,
                                   "n_experts": 2, "gate": "softmax"}),
        ("no intercept, constant", {"X": free.X, "y": free.y, "n_experts": 2,
                                    "gate": "constant", "fit_intercept": False}),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        rscript = ensure_r(("flexmix", "jsonlite"))
    except PeerUnavailable as exc:
        print(f"flexmix comparison skipped: {exc}")
        return 2
    print(f"softmix MixtureOfExperts options vs R flexmix, seed = {args.seed}, same start, "
          "tol = 1e-10")
    print(f"{'data':<27} {'n':>5} {'ll ours':>13} {'ll flexmix':>13} {'ours-flex':>10} "
          f"{'iters o/f':>10} {'sec o/f':>13} {'flexmix/ours':>12}")
    ok = True
    for name, kw in cases(args.seed, rscript):
        r = compare(**kw, seed=args.seed, rscript=rscript)
        ratio = r["sec_flexmix"] / max(r["sec_ours"], 1e-9)
        print(f"{name:<27} {r['n']:>5d} {r['ll_ours']:>13.6f} {r['ll_flexmix']:>13.6f} "
              f"{r['ll_gap']:>10.2e} {r['iter_ours']:>4d}/{r['iter_flexmix']:<5d} "
              f"{r['sec_ours']:>6.3f}/{r['sec_flexmix']:<6.3f} {ratio:>12.1f}")
        ok &= r["ll_gap"] >= -RTOL * abs(r["ll_flexmix"])
    print("ours >= flexmix's log-likelihood on every row:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
