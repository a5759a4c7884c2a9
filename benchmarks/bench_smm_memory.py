"""Issue 14, item 3: a full modern vocabulary (p = 256,000, L = 4,096, float32) on one machine.

Generates the design in float32 chunk by chunk (a 4.2 GB array, never a float64 copy), draws
N = 1e7 choices from a K = 10 mixture on it, and fits ``SoftmaxMixture(10, dtype="float32")``
(default ``init="random"`` and ``m_step="auto"``, plain EM so an iteration is one EM map) for a
few iterations. Reports peak resident memory over the design's size, the setup time (the fit's
time minus its iterations), the time per iteration, and the two products of one EM map timed on
the same array (``A @ X.T``, ``S @ X``).

Needs ~5-13 GB: run it alone under the shared lock::

    flock /work/wt/heavy.lock env OPENBLAS_NUM_THREADS=1 .venv/bin/python \\
        benchmarks/bench_smm_memory.py [--p 256000] [--length 4096] [--iterations 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import warnings

import numpy as np

from softmix import SoftmaxMixture
from softmix.softmax_mixture.model import SoftmaxMixtureParams, sample_counts


def rss_peak_bytes() -> int:
    """Peak resident set size of this process so far (Linux: ru_maxrss in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def rss_now_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def make_design(p: int, length: int, rng: np.random.Generator, chunk: int = 8192) -> np.ndarray:
    x = np.empty((p, length), dtype=np.float32)
    for start in range(0, p, chunk):
        rows = min(chunk, p - start)
        x[start : start + rows] = rng.standard_normal((rows, length), dtype=np.float32)
    return x


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p", type=int, default=256_000)
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--n", type=float, default=1e7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    x = make_design(args.p, args.length, rng)
    atoms = rng.standard_normal((args.k, args.length))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    truth = SoftmaxMixtureParams(np.full(args.k, 1.0 / args.k), atoms)
    counts = sample_counts(x, truth, int(args.n), rng).astype(float)
    generate_s = time.perf_counter() - t0
    design_bytes = x.nbytes
    rss_before = rss_now_bytes()

    a = rng.standard_normal((args.k, args.length)).astype(np.float32)
    s = rng.random((2 * args.k, args.p)).astype(np.float32)
    units = []
    for _ in range(2):
        t1 = time.perf_counter()
        a @ x.T, s @ x
        units.append(time.perf_counter() - t1)
    unit = min(units)

    stamps: list[float] = []
    model = SoftmaxMixture(args.k, dtype="float32", max_iter=args.iterations, tol=0.0,
                           accelerate=None, random_state=0,
                           callback=lambda it, prm, val: stamps.append(time.perf_counter()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tol=0: a ConvergenceWarning by design
        t1 = time.perf_counter()
        model.fit(x, counts=counts)
        fit_s = time.perf_counter() - t1
    per_iter = float(np.median(np.diff([t1] + stamps)[1:])) if len(stamps) > 1 else float("nan")
    setup_s = fit_s - per_iter * len(stamps)
    peak = rss_peak_bytes()
    out = {
        "p": args.p, "L": args.length, "K": args.k, "dtype": "float32", "N": int(counts.sum()),
        "iterations": model.n_iter_, "m_step": model.m_step_used_,
        "init": model.init_method_, "design_gb": design_bytes / 1e9,
        "rss_before_fit_gb": rss_before / 1e9, "peak_rss_gb": peak / 1e9,
        "peak_rss_over_design": peak / design_bytes,
        "features_not_copied": model.features_ is x,
        "generate_s": generate_s, "fit_s": fit_s, "setup_s": setup_s,
        "per_iteration_s": per_iter, "two_products_s": unit,
        "setup_over_products": setup_s / unit, "iteration_over_products": per_iter / unit,
        "log_likelihood": model.log_likelihood_,
        "face_check": model.fit_result_.extra.get("face_check", "done"),
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
