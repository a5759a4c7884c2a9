"""Cost of choosing K: ``softmix.select_n_components`` against R flexmix ``stepFlexmix``.

Same data (a softmax-gated Gaussian mixture of experts, ``make_moe(n, d=2, k=3)``), same grid
of K (1..5), same number of random starts per K (``--n-init``), the same model in both
(``MixtureOfExperts(expert="gaussian")`` = ``FLXMRglm(family = "gaussian")`` +
``FLXPmultinom(~ x)``), BIC chosen in both, EM tolerance 1e-6 relative in both (flexmix's
default is 1e-6 too). Reported: seconds of the whole selection (flexmix timed inside R, the
stepFlexmix call only; ours around ``select_n_components``), the BIC table, the chosen K.
flexmix counts its parameters as we do (``df``); flexmix may drop a component that falls
below ``minprior`` (set to 0 here, as ours has none), shown in ``k_final``.

Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_selection.py [--n 2000]
[--n-init 3] [--seed 0]``; without R (flexmix, jsonlite) the flexmix column is skipped with the
install command. One run on a shared machine: read the ratio, not absolute speeds.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peers import PeerUnavailable, ensure_r, run_r

from softmix import MixtureOfExperts, select_n_components
from softmix.datasets import make_moe


def run(n: int = 2000, n_init: int = 3, seed: int = 0, ks=(1, 2, 3, 4, 5)) -> dict:
    """Both selections on the same data; a dict with both tables and timings."""
    X, y, _ = make_moe(n, 2, 3, expert="gaussian", random_state=seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = select_n_components(MixtureOfExperts(1, tol=1e-6), list(ks), X, y,
                                   n_init=n_init, random_state=seed)
    sec_ours = time.perf_counter() - t0
    out = {"n": n, "n_init": n_init, "ks": list(ks), "ours": ours, "sec_ours": sec_ours,
           "flexmix": None}
    try:
        ensure_r(("flexmix", "jsonlite"))
    except PeerUnavailable as exc:
        out["flexmix_skipped"] = str(exc)
        return out
    out["flexmix"] = run_r("flexmix_step.R", {"X": X, "y": y, "ks": list(ks), "nrep": n_init,
                                              "iter_max": 1000, "tol": 1e-6, "seed": seed})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--n-init", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    r = run(args.n, args.n_init, args.seed)
    t = r["ours"].table
    print(f"choosing K in {r['ks']} (true K = 3), n = {r['n']}, {r['n_init']} starts per K, "
          "BIC")
    fx = r["flexmix"]
    print(f"{'K':>3} {'BIC ours':>12} {'conv':>5} {'BIC flexmix':>12} {'k_final':>8}")
    for i, k in enumerate(r["ks"]):
        fb = f"{np.atleast_1d(fx['bic'])[i]:>12.2f}" if fx else f"{'-':>12}"
        kf = f"{np.atleast_1d(fx['k_final'])[i]:>8}" if fx else f"{'-':>8}"
        print(f"{k:>3} {t['bic'][i]:>12.2f} {t['n_converged'][i]:>2}/{t['n_init'][i]:<2} {fb} {kf}")
    print(f"chosen K: ours {r['ours'].best_n_components}"
          + (f", flexmix {fx['best_k']}" if fx else ""))
    print(f"seconds: ours {r['sec_ours']:.2f}" + (
        f", flexmix {float(fx['seconds']):.2f} (flexmix/ours "
        f"{float(fx['seconds']) / r['sec_ours']:.1f}x)" if fx else
        f"; flexmix skipped: {r.get('flexmix_skipped')}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
