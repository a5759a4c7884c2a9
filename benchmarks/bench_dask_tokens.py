"""A token stream counted past memory and fitted: softmix.count_choices on a Dask LocalCluster.

Draws ``--tokens`` token ids from a known softmax mixture (p alternatives, L features, K
classes), chunk by chunk into a Parquet dataset on disk (one file per chunk of ``--chunk``
tokens; the stream is never whole in memory), then

1. counts it with ``softmix.count_choices(folder, p, column="token")`` on a
   ``dask.distributed.LocalCluster`` (``--workers`` processes, one thread each): wall time, the
   driver's peak RSS during the count (sampled every 20 ms by psutil) and each worker's peak
   RSS (``ru_maxrss`` of the worker process);
2. fits ``SoftmaxMixture(K)`` on the counts (time, iterations, weight and atom errors against
   the truth), and end to end from the Dask Series (``fit(features, choices=series)``, which
   counts again), checking both fits agree;
3. for the side-by-side ratio, reads the whole dataset into memory (pyarrow) when it has at
   most ``--inmem-max`` tokens and times ``np.bincount`` on it (the in-memory path), checking
   the counts are identical.

The data are deleted afterwards (``--keep`` keeps them). The 1e8-token run needs ~1.5 GB for
the in-memory comparison: run it under the shared memory lock,
``flock /work/wt/heavy.lock .venv/bin/python benchmarks/bench_dask_tokens.py``; quick run:
``--tokens 2e6``. Writes ``benchmarks/results/dask_tokens.csv`` (``--tokens`` below 1e8:
``results-quick/``) and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _report import Table, markdown, write_csv

from softmix import SoftmaxMixture, count_choices
from softmix.datasets import make_softmax_mixture
from softmix.metrics import atom_error, weight_error
from softmix.softmax_mixture.model import SoftmaxMixtureParams, sample_choices


class PeakRSS:
    """Peak resident memory of this process while the ``with`` block runs (psutil sampling)."""

    def __init__(self, interval: float = 0.02) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self.start_rss = 0

    def __enter__(self):  # -> PeakRSS
        self.start_rss = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def _worker_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def write_dataset(folder: Path, features, params, n_tokens: int, chunk: int, seed: int) -> float:
    """Draw the stream chunk by chunk into ``folder/part-*.parquet``; returns seconds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = time.perf_counter()
    rngs = np.random.default_rng(seed).spawn(-(-n_tokens // chunk))
    for i, rng in enumerate(rngs):
        size = min(chunk, n_tokens - i * chunk)
        tokens = sample_choices(features, params, size, rng).astype(np.int32)
        pq.write_table(pa.table({"token": tokens}), folder / f"part-{i:05d}.parquet")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> Table:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=float, default=1e8)
    parser.add_argument("--p", type=int, default=20_000, help="alternatives")
    parser.add_argument("--L", type=int, default=32, help="features")
    parser.add_argument("--K", type=int, default=3, help="classes")
    parser.add_argument("--chunk", type=float, default=5e6, help="tokens per Parquet file")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--inmem-max", type=float, default=1e8,
                        help="largest stream read whole into memory for np.bincount")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default=None, help="where to write the dataset (default: tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the dataset")
    args = parser.parse_args(argv)
    n_tokens, chunk = int(args.tokens), int(args.chunk)
    script_start = time.perf_counter()

    import dask.dataframe as dd
    from dask.distributed import Client, LocalCluster

    truth = make_softmax_mixture(0, args.p, args.L, args.K, return_choices=False,
                                 random_state=args.seed)
    params = SoftmaxMixtureParams(truth.weights, truth.atoms)
    root = Path(tempfile.mkdtemp(prefix="softmix-tokens-", dir=args.dir))
    folder = root / "tokens"
    folder.mkdir()
    rows: list[dict] = []
    try:
        gen_s = write_dataset(folder, truth.features, params, n_tokens, chunk, args.seed)
        disk_mb = sum(f.stat().st_size for f in folder.iterdir()) / 2**20

        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
        client = Client(cluster)
        try:
            t0 = time.perf_counter()  # warm-up: workers import softmix, pandas, pyarrow once
            count_choices(min(folder.iterdir()), args.p, column="token")
            warm_s = time.perf_counter() - t0
            with PeakRSS() as driver:
                t0 = time.perf_counter()
                counts = count_choices(folder, args.p, column="token")
                count_s = time.perf_counter() - t0
            workers = client.run(_worker_peak_mb)
            assert counts.sum() == n_tokens

            t0 = time.perf_counter()
            fit = SoftmaxMixture(args.K, n_init=3, random_state=0).fit(truth.features,
                                                                        counts=counts)
            fit_s = time.perf_counter() - t0
            series = dd.read_parquet(folder, columns=["token"])["token"]
            with PeakRSS() as driver_e2e:
                t0 = time.perf_counter()
                e2e = SoftmaxMixture(args.K, n_init=3, random_state=0).fit(truth.features,
                                                                            choices=series)
                e2e_s = time.perf_counter() - t0
            same = bool(np.array_equal(e2e.atoms_, fit.atoms_))
        finally:
            client.close()
            cluster.close()
        w_err = weight_error(fit.weights_, fit.atoms_, truth.weights, truth.atoms)
        a_err = atom_error(fit.atoms_, truth.atoms)
        base = {"tokens": n_tokens, "p": args.p, "L": args.L, "K": args.K,
                "files": len(os.listdir(folder)), "disk_MB": round(disk_mb, 1)}
        rows.append(dict(base, path=f"count_choices, LocalCluster {args.workers}x1 thread",
                         count_s=round(count_s, 2),
                         driver_peak_MB=round((driver.peak - driver.start_rss) / 2**20, 1),
                         worker_peak_MB=round(max(workers.values()), 1),
                         fit_s=round(fit_s, 2), n_iter=fit.n_iter_,
                         weight_err_l1=float(f"{w_err:.2g}"), atom_err_max=float(f"{a_err:.2g}")))
        rows.append(dict(base, path="SoftmaxMixture.fit(features, choices=dask Series)",
                         count_s=float("nan"),
                         driver_peak_MB=round((driver_e2e.peak - driver_e2e.start_rss) / 2**20, 1),
                         worker_peak_MB=float("nan"), fit_s=round(e2e_s, 2),
                         n_iter=e2e.n_iter_, weight_err_l1=float("nan"),
                         atom_err_max=float("nan"), same_fit=same))

        if n_tokens <= args.inmem_max:
            import pyarrow.parquet as pq

            with PeakRSS() as mem:
                t0 = time.perf_counter()
                tokens = np.asarray(pq.read_table(folder, columns=["token"]).column("token"),
                                    dtype=np.int64)
                read_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                ref = np.bincount(tokens, minlength=args.p)
                bincount_s = time.perf_counter() - t0
            del tokens
            rows.append(dict(base, path="in memory: pyarrow read + np.bincount",
                             count_s=round(read_s + bincount_s, 2),
                             bincount_only_s=round(bincount_s, 2),
                             driver_peak_MB=round((mem.peak - mem.start_rss) / 2**20, 1),
                             worker_peak_MB=float("nan"), identical_counts=bool(
                                 np.array_equal(ref, counts)),
                             ratio_dask_over_inmem=round(count_s / (read_s + bincount_s), 2)))
    finally:
        if not args.keep:
            shutil.rmtree(root)
    table = Table(
        name="dask_tokens",
        title=f"{n_tokens:.0e}-token stream: count_choices on a LocalCluster, then the fit",
        rows=rows,
        columns=list(dict.fromkeys(c for row in rows for c in row)),
        seconds=time.perf_counter() - script_start,
        notes=[(f"Generation (chunk by chunk, {chunk:.0e} tokens per file): {gen_s:.1f} s; "
                f"a warm-up count of one file first (imports on the workers): {warm_s:.1f} s; "
                f"dataset {'kept in ' + str(root) if args.keep else 'deleted afterwards'}.")],
    )
    folder_out = HERE / ("results" if n_tokens >= 10**8 else "results-quick")
    write_csv(table, folder_out)
    print(markdown(table))
    return table


if __name__ == "__main__":
    main()
