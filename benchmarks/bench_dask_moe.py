"""Gaussian mixture of experts on Dask: rows stored chunked on disk (zarr), fitted on a
``dask.distributed.LocalCluster``; peak memory of the driver and the workers, and seconds per
EM iteration against the in-memory fit of the same rows (where they fit in memory).

The data (``--features`` columns, two experts, the truth of ``make_moe``) are generated chunk by
chunk straight into a zarr store (never the whole array in memory), fitted with
``MixtureOfExperts(2, max_iter=--iters, tol=0)`` (a fixed number of EM iterations; the first
iteration is timed after the scan, standardiser and random-start passes) on 2 worker processes
of 1 thread, and, for ``rows <= --in-memory-max``, the same rows loaded into memory and fitted
in this process with the same settings. Memory: RSS of the driver and of every worker process,
sampled every 0.1 s in a thread (psutil), minus nothing (absolute peaks; the idle baselines are
reported too). The store is deleted afterwards.

Run (the full size under the shared memory lock)::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dask_moe.py --rows 1e6
    OPENBLAS_NUM_THREADS=1 flock /work/wt/heavy.lock .venv/bin/python \\
        benchmarks/bench_dask_moe.py --rows 1e6 1e7 1e8 --in-memory-max 1e7 --iters 2 --write
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

import numpy as np

HERE = Path(__file__).resolve().parent
SECTION = "## Mixture of experts on Dask: rows from zarr on a LocalCluster"


class PeakRSS:
    """Peak RSS (bytes) of this process and of each child process, sampled in a thread."""

    def __init__(self, interval: float = 0.1) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.driver = 0
        self.workers: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.driver = max(self.driver, self.proc.memory_info().rss)
                for child in self.proc.children(recursive=True):
                    try:
                        rss = child.memory_info().rss
                    except Exception:  # noqa: BLE001, S112 - a child that just exited
                        continue
                    self.workers[child.pid] = max(self.workers.get(child.pid, 0), rss)
            except Exception:  # noqa: BLE001, S110 - the process table changed under us
                pass
            time.sleep(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _gen_block(block, truth, seed, features, block_info=None):
    """Rows of one chunk: x ~ N(0, I) and y from the truth, seeded by the chunk's index."""
    from softmix.moe.model import sample

    loc = block_info[0]["chunk-location"][0]
    rng = np.random.default_rng([seed, loc])
    xb = rng.standard_normal((block.shape[0], features))
    return np.column_stack([xb, sample(xb, truth, rng)[0]])


def write_store(path: Path, rows: int, features: int, chunk: int, seed: int = 0):
    """X (rows, features) and y (rows,) into a zarr group, generated chunk by chunk on the
    workers (never the whole array in one place); returns the truth."""
    import dask.array as da
    import zarr

    from softmix.datasets import make_moe

    truth = make_moe(10, features, 2, random_state=seed)[2]
    root = zarr.open_group(str(path), mode="w")
    make = getattr(root, "create_array", None) or root.create_dataset
    kw = {"compressors": None} if int(zarr.__version__.split(".")[0]) >= 3 else {
        "compressor": None}
    zX = make("X", shape=(rows, features), chunks=(chunk, features), dtype="f8", **kw)
    zy = make("y", shape=(rows,), chunks=(chunk,), dtype="f8", **kw)
    rows_only = da.zeros((rows, 1), chunks=(chunk, 1))
    both = rows_only.map_blocks(_gen_block, truth, seed, features, dtype=float,
                                chunks=(rows_only.chunks[0], (features + 1,)))
    da.store([both[:, :features], both[:, features]], [zX, zy], lock=False)
    return truth


def pass_times(X, y, client) -> dict:
    """Scan + standardiser passes, then one E-step statistics pass and one Newton-trial pass
    (the two kinds of pass an EM iteration is made of) at the start, timed, with peaks."""
    from softmix import MixtureOfExperts
    from softmix.moe import dask as mdask
    
    est = MixtureOfExperts(2)
    blocks = mdask.RowBlocks(X, y)
    t = time.perf_counter()
    prep, _, _, std = mdask._scan(est, blocks)
    t_setup = time.perf_counter() - t
    k, p = 2, std.keep.size + 1
    params = mdask.MoEParams(np.vstack([np.full(p, 0.1), np.zeros(p)]),
                             np.vstack([np.full(p, 0.5), np.full(p, -0.5)]), np.ones(k))
    e_job = mdask._Job(prep, params, (("mass",), ("gate", "gate", params.gating, 2),
                                      ("wls", params.expert_coef)))
    t = time.perf_counter()
    blocks.sum(mdask._block_stats, e_job)
    t_e = time.perf_counter() - t
    t = time.perf_counter()
    blocks.sum(mdask._block_stats,
               mdask._Job(prep, params, (("gate", "trial", params.gating, 2),)))
    return {"setup_s": t_setup, "e_pass_s": t_e, "trial_pass_s": time.perf_counter() - t}


def timed_fit(X, y, iters: int):
    """Fit with ``iters`` EM iterations; seconds per iteration from the callback's clock."""
    from softmix import MixtureOfExperts

    stamps = []
    t0 = time.perf_counter()
    model = MixtureOfExperts(2, max_iter=iters, tol=0.0, random_state=0, min_weight=0.0,
                             callback=lambda *a: stamps.append(time.perf_counter()))
    model.fit(X, y)
    total = time.perf_counter() - t0
    per_iter = float(np.median(np.diff(stamps))) if len(stamps) > 1 else float("nan")
    return model, per_iter, total


def run_size(rows: int, args, client, passes_per_iter: float | None) -> dict:
    import dask.array as da

    tmp = Path(tempfile.mkdtemp(prefix="softmix-dask-bench-", dir=args.tmp))
    try:
        t = time.perf_counter()
        write_store(tmp / "data.zarr", rows, args.features, args.chunk)
        t_write = time.perf_counter() - t
        X = da.from_zarr(str(tmp / "data.zarr"), component="X")
        y = da.from_zarr(str(tmp / "data.zarr"), component="y")
        client.run(lambda: __import__("gc").collect())
        row = {"rows": rows, "chunks": len(X.chunks[0]), "write_s": t_write}
        if rows > args.fit_max:  # passes only (a whole fit takes too long here)
            with PeakRSS() as peak:
                times = pass_times(X, y, client)
            row.update(times, mode="passes", passes_per_iter=passes_per_iter,
                       dask_s_per_iter=times["e_pass_s"] + (passes_per_iter - 1)
                       * times["trial_pass_s"], driver_peak_MB=peak.driver / 2**20,
                       worker_peak_MB=max(peak.workers.values(), default=0) / 2**20)
            return row
        with PeakRSS() as peak:
            model, per_iter, total = timed_fit(X, y, args.iters)
        extra = model.fit_result_.extra
        row.update(mode="fit", dask_s_per_iter=per_iter, dask_total_s=total,
                   passes=extra["n_passes"], passes_per_iter=extra["em_passes"] / model.n_iter_,
                   driver_peak_MB=peak.driver / 2**20,
                   worker_peak_MB=max(peak.workers.values(), default=0) / 2**20,
                   loglik_per_row=model.log_likelihood_ / rows)
        if rows <= args.in_memory_max:
            Xm, ym = X.compute(), y.compute()
            with PeakRSS() as mpeak:
                mem, mem_iter, mem_total = timed_fit(Xm, ym, args.iters)
            row.update(memory_s_per_iter=mem_iter, memory_total_s=mem_total,
                       memory_peak_MB=mpeak.driver / 2**20, ratio=per_iter / mem_iter,
                       max_rel_param_diff=float(max(
                           np.max(np.abs(getattr(model, a) - getattr(mem, a))
                                  / np.maximum(np.abs(getattr(mem, a)), 1e-12))
                           for a in ("gating_coef_", "expert_coef_", "expert_variance_"))))
            del Xm, ym
        return row
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def markdown(rows: list[dict], args, baseline: dict, label: str) -> str:
    cmd = " ".join(["OPENBLAS_NUM_THREADS=1 flock /work/wt/heavy.lock .venv/bin/python",
                    "benchmarks/bench_dask_moe.py"] + sys.argv[1:])
    lines = [f"{SECTION} ({label})", "",
             (f"Command: `{cmd}` (not run by `make bench`; {args.iters} EM iterations, tol=0, "
              f"d = {args.features}, 2 experts, chunks of {args.chunk:,} rows, LocalCluster of "
              "2 worker processes x 1 thread on the shared 2-core machine). Idle RSS before "
              f"the fit: driver {baseline['driver']:.0f} MB, workers {baseline['worker']:.0f} "
              "MB each. Peaks are absolute RSS sampled every 0.1 s (psutil)."), "",
             ("| rows | chunks | mode | Dask s/iter | passes/iter | in-memory s/iter | ratio | "
              "driver peak MB | worker peak MB | in-memory peak MB | max rel. param diff |"),
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        mem = r.get("memory_s_per_iter")

        def fmt(key, spec, r=r, mem=mem):
            return "-" if mem is None else format(r[key], spec)

        mode = "fit" if r["mode"] == "fit" else (
            f"passes: E {r['e_pass_s']:.0f} s, trial {r['trial_pass_s']:.0f} s")
        lines.append(
            f"| {r['rows']:.0e} | {r['chunks']} | {mode} | {r['dask_s_per_iter']:.2f} | "
            f"{r['passes_per_iter']:.1f} | {fmt('memory_s_per_iter', '.2f')} | "
            f"{fmt('ratio', '.1f')} | {r['driver_peak_MB']:.0f} | {r['worker_peak_MB']:.0f} | "
            f"{fmt('memory_peak_MB', '.0f')} | {fmt('max_rel_param_diff', '.1e')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", type=float, default=[1e6])
    parser.add_argument("--features", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=1_000_000)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--in-memory-max", type=float, default=1e7)
    parser.add_argument("--fit-max", type=float, default=1e7,
                        help="larger sizes time one E-step and one trial pass, not a fit")
    parser.add_argument("--tmp", default=None, help="folder of the temporary zarr store")
    parser.add_argument("--write", action="store_true", help="add the table to RESULTS.md")
    parser.add_argument("--passes-per-iter", type=float, default=3.5,
                        help="for the passes-only sizes when no fit ran before them")
    parser.add_argument("--label", default="fits", help="section title suffix in RESULTS.md")
    args = parser.parse_args(argv)
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, memory_limit="4GiB") as cluster, \
            Client(cluster) as client:
        with PeakRSS() as idle:
            time.sleep(0.5)
        baseline = {"driver": idle.driver / 2**20,
                    "worker": max(idle.workers.values(), default=0) / 2**20}
        rows = []
        per_iter = args.passes_per_iter
        for n in sorted(args.rows):
            row = run_size(int(n), args, client, per_iter)
            if row["mode"] == "fit":
                per_iter = row["passes_per_iter"]
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()},
                  flush=True)
            rows.append(row)
    text = markdown(rows, args, baseline, args.label)
    print(text)
    if args.write:
        path = HERE / "RESULTS.md"
        old = path.read_text()
        title = f"{SECTION[3:]} ({args.label})"  # the heading may carry a section number
        at = old.find(title)
        if at >= 0:  # replace this section (up to the next "## " heading), keeping its heading
            start = old.rfind("\n## ", 0, at) + 1
            end = old.find("\n## ", at + len(title))
            heading = old[start:at]
            text = heading + text[3:]
            old = old[:start] + (old[end + 1:] if end >= 0 else "")
        path.write_text(old.rstrip("\n") + "\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
