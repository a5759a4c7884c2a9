"""Issue 14, item 1: the whole softmax-mixture fit against the two matrix products of one EM map.

At p = 50,000, L = 768, K = 10 (float64, one BLAS thread) the script times, in the same run and
interleaved with the fits (the machine is shared), the two products an EM map cannot avoid,
``A @ X.T`` (K x p) and ``S @ X`` (2K x L) on the user's design X: their sum is the *unit*.
Then ``SoftmaxMixture(10, init=start, max_iter=T, tol=0)`` (plain EM, so T iterations are T EM
maps) for several T, and with ``init="random"`` (the default start) and the default SQUAREM
acceleration. Reported: ``setup / unit`` (the T = 0 fit: design preparation, the auto M-step
rule, the start's log-likelihood), ``fit / unit`` and ``per-map / unit = (fit - setup) /
n_maps / unit``, against the issue's target ``fit <= (5 + 1.2 T) units``.

Run it on any source tree (``PYTHONPATH=<tree>/src``) to compare versions::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_smm_setup.py [--quick] [--label L]
"""

from __future__ import annotations

import argparse
import csv
import time
import warnings
from pathlib import Path

import numpy as np

import softmix
from softmix import SoftmaxMixture
from softmix.datasets import make_softmax_mixture
from softmix.softmax_mixture.model import SoftmaxMixtureParams

RESULTS = Path(__file__).resolve().parent / "results"


def unit_seconds(x: np.ndarray, k: int, rng: np.random.Generator, repeats: int = 3) -> float:
    """Median seconds of ``A @ X.T`` (K x p) plus ``S @ X`` (2K x L) on ``x`` itself."""
    a = rng.standard_normal((k, x.shape[1])).astype(x.dtype)
    s = rng.random((2 * k, x.shape[0])).astype(x.dtype)
    a @ x.T, s @ x  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ x.T, s @ x
        out.append(time.perf_counter() - t0)
    return float(np.median(out))


def timed_fit(x, counts, k, **options) -> tuple[float, SoftmaxMixture]:
    model = SoftmaxMixture(k, tol=0.0, random_state=0, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tol=0 with max_iter: a ConvergenceWarning by design
        t0 = time.perf_counter()
        model.fit(x, counts=counts)
        return time.perf_counter() - t0, model


def problem(p, length, k, seed):
    """``(x, counts, start, rng)``: the benchmark's design and N = 1e7 counts, the given start
    (the truth plus 0.3 / sqrt(L) noise) and the generator the timings go on with."""
    data = make_softmax_mixture(10**7, p, length, k, separation=1.0, return_choices=False,
                                random_state=seed)
    rng = np.random.default_rng(seed)
    start = SoftmaxMixtureParams(
        np.full(k, 1.0 / k), data.atoms + 0.3 * rng.standard_normal(data.atoms.shape)
        / np.sqrt(length))
    return data.features, data.counts.astype(float), start, rng


def rows_for(p, length, k, iterations, label, seed=0) -> list[dict]:
    x, counts, start, rng = problem(p, length, k, seed)
    runs = [("given", None, t) for t in iterations]
    runs += [("random", None, 0), ("random", None, max(iterations)),
             ("given", "squarem", max(iterations) // 3)]
    rows, setup = [], {}
    for init, accelerate, t in runs:
        before = unit_seconds(x, k, rng)
        sec, model = timed_fit(x, counts, k, init=start if init == "given" else init,
                               max_iter=t, accelerate=accelerate)
        unit = float(np.median([before, unit_seconds(x, k, rng)]))
        maps = int(model.fit_result_.extra.get("n_map_evals", model.n_iter_))
        if t == 0:
            setup[init] = sec
        base = setup.get(init, float("nan"))
        rows.append({
            "version": label, "init": init, "accelerate": accelerate or "none", "T": t,
            "n_maps": maps, "m_step": model.m_step_used_, "unit_s": unit, "fit_s": sec,
            "setup_units": base / unit, "fit_units": sec / unit,
            "per_map_units": (sec - base) / maps / unit if maps else float("nan"),
            "target_units": 5 + 1.2 * maps, "p": p, "L": length, "K": k,
        })
        print({key: (round(v, 3) if isinstance(v, float) else v) for key, v in rows[-1].items()},
              flush=True)
    return rows


def breakdown_rows(p, length, k, seed=0, repeats=3) -> list[dict]:
    """Seconds of each piece of a fit of this tree (the estimator's path: auto M-step, given
    start), in units: the fixed pieces of a T = 0 fit, one EM map, and the exact stop rule a
    fit with ``tol > 0`` pays where it decides (not paid with ``tol=0``)."""
    from softmix.softmax_mixture.design import prepare_design
    from softmix.softmax_mixture.em import _full_scores, make_em_map, select_m_step
    from softmix.softmax_mixture.model import check_features

    x, counts, start, rng = problem(p, length, k, seed)
    pieces: dict[str, list[float]] = {}

    def clock(name, fn):
        t0 = time.perf_counter()
        out = fn()
        pieces.setdefault(name, []).append(time.perf_counter() - t0)
        return out

    units = []
    for _ in range(repeats):
        units.append(unit_seconds(x, k, rng))
        checked, stats = clock("check_features (one blocked pass)",
                               lambda: check_features(x, return_range=True))
        design = clock("prepare_design (sample covariance, Cholesky, certificate)",
                       lambda c=checked, s=stats: prepare_design(c, column_stats=s, warn=False))
        work = design.to_working(start)
        scores0 = clock("start's scores (K x p product, shared with the first E-step)",
                        lambda d=design, w=work: _full_scores(d, np.asarray(w.atoms)))
        m_step, _ = clock("select_m_step (auto rule on all rows, from those scores)",
                          lambda d=design, w=work, s0=scores0: select_m_step(d, w, s0))
        em_map = make_em_map(design, counts, m_step=m_step, tol=0.0)
        em_map.prime_scores(work.atoms, scores0)
        clock("objective at the start (rest of the E-step)", lambda m=em_map, w=work: m.objective(w))
        clock("cheap criterion (tol=0 report)", lambda m=em_map, w=work: m.stationarity(w, False))
        new = clock("one EM map (M-step; its E-step was the start's)",
                    lambda m=em_map, w=work: m(w)[0])
        clock("next EM map (E-step + M-step)", lambda m=em_map, n=new: m(n)[0])
        clock("exact stop rule (batched CG; only where tol > 0 decides)",
              lambda m=em_map, w=work: m.stationarity(w, True))
    unit = float(np.median(units))
    return [{"piece": name, "seconds": float(np.median(v)), "units": float(np.median(v)) / unit,
             "unit_s": unit} for name, v in pieces.items()]


def markdown(rows: list[dict]) -> str:
    head = ("| version | init | accelerate | T | EM maps | m_step | unit s | fit s | "
            "setup / unit | fit / unit | per map / unit | target 5 + 1.2 maps |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        lines.append(
            f"| {r['version']} | {r['init']} | {r['accelerate']} | {r['T']} | {r['n_maps']} | "
            f"{r['m_step']} | {r['unit_s']:.3f} | {r['fit_s']:.2f} | {r['setup_units']:.1f} | "
            f"{r['fit_units']:.1f} | {r['per_map_units']:.2f} | {r['target_units']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="p=5000, L=128 (a smoke test)")
    parser.add_argument("--label", default=f"softmix {softmix.__version__}")
    parser.add_argument("--csv", default=None, help="append the rows to this CSV")
    parser.add_argument("--breakdown", action="store_true",
                        help="time each setup piece of this tree instead")
    args = parser.parse_args(argv)
    if args.breakdown:
        size = (5000, 128, 10) if args.quick else (50_000, 768, 10)
        print("| piece | seconds | / unit |\n|---|---|---|")
        for r in breakdown_rows(*size):
            print(f"| {r['piece']} | {r['seconds']:.3f} | {r['units']:.2f} |")
        print(f"unit (A @ X.T + S @ X) = {r['unit_s']:.3f} s")
        return 0
    if args.quick:
        rows = rows_for(5000, 128, 10, (0, 1, 3), args.label)
    else:
        rows = rows_for(50_000, 768, 10, (0, 1, 5, 10, 20), args.label)
    print(markdown(rows))
    if args.csv:
        path = Path(args.csv)
        new = not path.exists()
        with path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            if new:
                writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
