"""GPU vs CPU: time per EM iteration and log-likelihood agreement of one softmax-mixture fit.

The same ``SoftmaxMixture(...).fit(features, counts=...)`` call on a design that lives on a GPU
(a CUDA tensor or a CuPy array: the design-sized work stays there, :mod:`softmix.core.xp`) and
on the same design as a NumPy float32 array on the host. Default case: the issue's full
vocabulary, p = 256,000 alternatives, L = 4,096 features, K = 10, float32, the design generated
on the device (standard Gaussian, fixed seed), counts drawn from a known mixture (plus one per
alternative, so every alternative is chosen and no face check runs); gradient M-step, plain EM
(no SQUAREM), ``tol=0`` so both runs make exactly ``--iters`` iterations.

Run it, on a machine with an NVIDIA GPU and PyTorch (a few minutes on an H200, most of it the
CPU run)::

    OPENBLAS_NUM_THREADS=16 python benchmarks/gpu.py --device cuda --json gpu.json

``--backend cupy`` uses CuPy instead of PyTorch. The tiny case that CI runs on a CPU
(seconds)::

    python benchmarks/gpu.py --device cpu --small

The output (a markdown table on stdout, the same as JSON with ``--json``) says which devices were
measured; with ``--device cpu`` no GPU figure is produced and the table says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from softmix import SoftmaxMixture
from softmix.core import xp as softmix_xp
from softmix.exceptions import SoftmixWarning
from softmix.softmax_mixture.model import SoftmaxMixtureParams, log_mixture_probabilities

FULL = {"n_alternatives": 256_000, "n_features": 4096, "n_components": 10, "iters": 5,
        "n_draws": 10_000_000}
SMALL = {"n_alternatives": 2000, "n_features": 32, "n_components": 4, "iters": 5,
         "n_draws": 200_000}
SEED = 20241201


def _design(backend: str, device: str, p: int, length: int):
    """A standard Gaussian (p, L) float32 design generated where it will be used."""
    if backend == "torch":
        import torch

        gen = torch.Generator(device=device).manual_seed(SEED)
        return torch.randn(p, length, generator=gen, device=device, dtype=torch.float32)
    if backend == "cupy":
        import cupy

        return cupy.random.default_rng(SEED).standard_normal((p, length), dtype=cupy.float32)
    return np.random.default_rng(SEED).standard_normal((p, length), dtype=np.float32)


def _counts(features, k: int, n_draws: int) -> np.ndarray:
    """Counts from a known K-class mixture (atoms of norm ~1.5), plus one per alternative."""
    rng = np.random.default_rng(SEED + 1)
    length = features.shape[1]
    truth = SoftmaxMixtureParams(np.full(k, 1.0 / k), 1.5 * rng.standard_normal((k, length))
                                 / np.sqrt(length))
    probs = np.exp(softmix_xp.host(log_mixture_probabilities(features, truth)))
    return rng.multinomial(n_draws, probs / probs.sum()).astype(float) + 1.0


def _sync(backend: str) -> None:
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
    elif backend == "cupy":
        import cupy

        cupy.cuda.Device().synchronize()


def _timed_fit(features, counts, k: int, iters: int, backend: str, dtype: str) -> dict:
    """One fit of exactly ``iters`` iterations; per-iteration times from the callback (each
    callback follows a log-likelihood that was brought to the host, so the device is synced)."""
    stamps: list[float] = []
    moved: list[int] = []

    def record(it, prm, val):
        stamps.append(time.perf_counter())
        moved.append(softmix_xp.TRANSFERRED["to_host"] + softmix_xp.TRANSFERRED["from_host"])

    _sync(backend)
    start = time.perf_counter()
    est = SoftmaxMixture(k, m_step="gradient", accelerate=None, max_iter=iters, tol=0.0,
                         random_state=0, dtype=dtype,
                         callback=record)
    est.fit(features, counts=counts)
    _sync(backend)
    total = time.perf_counter() - start
    steps = np.diff(stamps) if len(stamps) > 1 else np.array([total])
    per_iter = float(np.median(steps))
    traffic = float(np.median(np.diff(moved))) if len(moved) > 1 else float("nan")
    return {"seconds_total": total, "seconds_per_iteration": per_iter,
            "seconds_setup": max(stamps[0] - start - per_iter, 0.0) if stamps else total,
            "host_device_bytes_per_iteration": traffic, "n_iter": int(est.n_iter_), "history": [float(v) for v in est.history_],
            "log_likelihood": float(est.log_likelihood_)}


def _gpu_name(backend: str) -> str:
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0)
    import cupy

    return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="where the array-API run happens (cpu: no GPU figure)")
    parser.add_argument("--backend", choices=["torch", "cupy", "numpy"], default="torch",
                        help="array library of the device run (numpy only with --device cpu)")
    parser.add_argument("--small", action="store_true",
                        help="tiny case (p=2000, L=32, K=4): seconds on a CPU")
    parser.add_argument("--iters", type=int, default=None, help="EM iterations per run")
    parser.add_argument("-p", "--n-alternatives", type=int, default=None,
                        help="override p (e.g. to measure the host<->device traffic at the "
                        "full L and K on a small design)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    args = parser.parse_args(argv)
    if args.device == "cuda" and args.backend == "numpy":
        parser.error("--backend numpy runs on the CPU only: use --device cpu")
    case = dict(SMALL if args.small else FULL)
    if args.iters is not None:
        case["iters"] = args.iters
    if args.n_alternatives is not None:
        case["n_alternatives"] = args.n_alternatives
    p, length, k, iters = (case["n_alternatives"], case["n_features"], case["n_components"],
                           case["iters"])
    if args.backend == "torch":
        import torch

        if args.device == "cpu":
            torch.set_num_threads(1)

    # the -p override can make p < L (unidentified directions, over-parametrised): warned
    # once by the library, not part of the timing table
    warnings.filterwarnings("ignore", category=SoftmixWarning)
    rows = []
    features = _design(args.backend, args.device, p, length)
    counts = _counts(features, k, case["n_draws"])
    if args.device == "cuda":  # warm-up (CUDA context, cuBLAS handles), not timed
        _timed_fit(features[:4096, :], counts[:4096], k, 2, args.backend, "float32")
    run = _timed_fit(features, counts, k, iters, args.backend, "float32")
    run.update(backend=args.backend, device=args.device, dtype="float32")
    rows.append(run)
    host = softmix_xp.to_host(features, None)  # the same numbers as a NumPy float32 array
    del features
    if args.backend != "numpy":
        ref = _timed_fit(host, counts, k, iters, "numpy", "float32")
        ref.update(backend="numpy", device="cpu", dtype="float32")
        rows.append(ref)
    if args.small:  # float64 reference: what the float32 runs should agree with
        ref64 = _timed_fit(host.astype(np.float64), counts, k, iters, "numpy", "float64")
        ref64.update(backend="numpy", device="cpu", dtype="float64")
        rows.append(ref64)
    reference = rows[-1]
    for row in rows:
        diffs = [abs(a - b) / abs(b) for a, b in zip(row["history"], reference["history"])]
        row["loglik_rel_diff"] = float(max(diffs)) if diffs else float("nan")
        row["reference"] = f"{reference['backend']} {reference['dtype']} on {reference['device']}"
    measured = sorted({row["device"] for row in rows})
    table = {
        "case": case, "seed": SEED, "m_step": "gradient", "accelerate": None,
        "devices_measured": measured,
        "gpu": (f"measured: {_gpu_name(args.backend)}" if args.device == "cuda"
                else "not measured: this run used --device cpu (no GPU)"),
        "python": platform.python_version(), "numpy": np.__version__,
        "rows": rows,
    }
    speed = ""
    if args.device == "cuda":
        speed = (f"GPU speed-up per iteration: "
                 f"{rows[1]['seconds_per_iteration'] / rows[0]['seconds_per_iteration']:.1f}x")
    lines = [
        (f"p = {p}, L = {length}, K = {k}, {iters} EM iterations (gradient M-step, no "
         f"SQUAREM), float32 design; devices measured: {', '.join(measured)}; GPU: "
         f"{table['gpu']}"),
        "",
        ("| device | backend | dtype | setup s | s / iteration | host<->device bytes / "
         "iteration | final log-likelihood "
         f"| max rel. diff of log-likelihood per iteration vs {reference['backend']} "
         f"{reference['dtype']} |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['device']} | {row['backend']} | {row['dtype']} | {row['seconds_setup']:.3g} "
            f"| {row['seconds_per_iteration']:.3g} | "
            + (f"{row['host_device_bytes_per_iteration']:.0f}" if row["backend"] != "numpy"
               else "0 (host)")
            + f" | {row['log_likelihood']:.10g} "
            f"| {row['loglik_rel_diff']:.2e} |")
    if speed:
        lines += ["", speed]
    print("\n".join(lines))
    if args.json is not None:
        args.json.write_text(json.dumps(table, indent=2))
    return table


if __name__ == "__main__":
    main()
