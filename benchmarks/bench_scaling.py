"""Table 4: seconds per EM iteration and peak memory as the problem grows.

Softmax mixtures: vs N (number of draws; the fit works on the p counts, so the cost must not
move), p, L and K, for both M-steps. Gaussian mixture of experts: vs n. Seconds per iteration =
median over a few iterations (``tol=0`` runs exactly ``max_iter``), measured without
tracemalloc; peak memory = tracemalloc's peak of one short fit (NumPy reports its buffers to
tracemalloc), data excluded.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Table, Trace

from softmix.datasets import make_moe, make_softmax_mixture
from softmix.moe.em import fit_em as moe_fit_em
from softmix.moe.init import initialize
from softmix.softmax_mixture import em as smm_em
from softmix.softmax_mixture.model import SoftmaxMixtureParams


def _per_iteration(fit, n_iter: int) -> float:
    trace = Trace()
    trace.start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(trace, n_iter)
    return float(np.median(np.diff(trace.seconds))) if len(trace.seconds) > 1 else float("nan")


def _peak_mb(fit) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(None, 2)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def smm_point(n, p, length, k, m_step, n_iter=5, seed=0) -> dict:
    data = make_softmax_mixture(n, p, length, k, separation=1.0, return_choices=False,
                                random_state=seed)
    X, counts = data.features, data.counts.astype(float)
    params0 = SoftmaxMixtureParams(np.full(k, 1.0 / k), data.atoms * 0.5)

    def fit(callback, max_iter):
        smm_em.fit_em(X, counts, params0, m_step=m_step, max_iter=max_iter, tol=0.0,
                      callback=callback, warn=False)

    return {"model": "softmax mixture", "m_step": m_step, "N": n, "p": p, "L": length, "K": k,
            "sec_per_iteration": _per_iteration(fit, n_iter), "peak_MB": _peak_mb(fit),
            "data_MB": (X.nbytes + counts.nbytes) / 2**20}


def moe_point(n, d=5, k=3, n_iter=5, seed=0) -> dict:
    X, y, _ = make_moe(n, d, k, expert="gaussian", random_state=seed)
    params0 = initialize("kmeans", X, y, k, "gaussian", rng=np.random.default_rng(seed))

    def fit(callback, max_iter):
        moe_fit_em(X, y, params0, max_iter=max_iter, tol=0.0, callback=callback, warn=False)

    return {"model": "Gaussian MoE", "m_step": "exact", "N": n, "p": d, "K": k,
            "sec_per_iteration": _per_iteration(fit, n_iter), "peak_MB": _peak_mb(fit),
            "data_MB": (X.nbytes + y.nbytes) / 2**20}


def run(quick: bool = False) -> Table:
    t0 = time.perf_counter()
    rows = []
    base = {"p": 2000, "L": 10, "K": 3} if quick else {"p": 10_000, "L": 20, "K": 3}
    grids = {
        "N": [10**3, 10**6, 10**9] if quick else [10**3, 10**5, 10**7, 10**9],
        "p": [1000, 4000] if quick else [1000, 10_000, 100_000],
        "L": [5, 20] if quick else [10, 50, 200],
        "K": [2, 5] if quick else [2, 5, 10, 20],
    }
    for m_step in ("gradient", "newton"):
        for var, values in grids.items():
            if m_step == "newton" and var == "L" and not quick:
                values = [10, 50, 100]  # O(p L^2 K) per Newton iteration: L = 200 is minutes
            for v in values:
                cfg = dict(base, N=10**6)
                cfg[var] = v
                row = smm_point(cfg["N"], cfg["p"], cfg["L"], cfg["K"], m_step)
                row["varied"] = var
                rows.append(row)
    for n in ([1000, 10_000] if quick else [1000, 10_000, 100_000, 1_000_000]):
        row = moe_point(n)
        row["varied"] = "N"
        rows.append(row)
    smm_n = [r for r in rows if r["model"] == "softmax mixture" and r["varied"] == "N"]
    headline = []
    for m_step in ("gradient", "newton"):
        sub = [r for r in smm_n if r["m_step"] == m_step]
        spread = max(r["sec_per_iteration"] for r in sub) / min(r["sec_per_iteration"] for r in sub)
        mem = max(r["peak_MB"] for r in sub) / min(r["peak_MB"] for r in sub)
        headline.append(f"softmax mixture, m_step={m_step}: seconds/iteration vary by "
                        f"{spread:.2f}x and peak memory by {mem:.2f}x from N=1e3 to N=1e9")
    notes = [
        (f"Base softmax-mixture point: p={base['p']}, L={base['L']}, K={base['K']}, N=1e6 "
        "(counts drawn directly; N enters only through the p counts). Each row varies one of "
        "N, p, L, K. MoE: d=5, k=3, k-means start, N = n samples."),
        ("peak_MB = tracemalloc peak during a 2-iteration fit (the fit's own allocations; the "
        "data, data_MB, exist before). Timings on a shared, loaded 2-core machine: compare "
        "rows, not absolute values."),
    ]
    return Table("scaling", "4. Scaling: seconds per EM iteration and peak memory", rows,
                 columns=["model", "m_step", "varied", "N", "p", "L", "K", "sec_per_iteration",
                          "peak_MB", "data_MB"],
                 notes=notes, headline=headline, seconds=time.perf_counter() - t0)


if __name__ == "__main__":
    from _report import markdown

    print(markdown(run(quick="--quick" in sys.argv)))
