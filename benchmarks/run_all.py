"""Run every benchmark table and write ``benchmarks/RESULTS.md`` and ``benchmarks/results/*.csv``.

``make bench`` runs this. Tables (each also runnable alone, ``python benchmarks/bench_*.py``):

1. softmax mixture: EM iteration / the two matrix products (p=50k, L=768, K=10; f64, f32);
2. softmax mixture: time to the optimum vs plain EM, scipy L-BFGS, R flexmix;
3. Gaussian MoE: time to the optimum vs R flexmix and mixtools hmeEM;
4. scaling of seconds/iteration and peak memory in N, p, L, K (and n for the MoE).

R and the R packages are installed from Debian packages when missing and running as root;
otherwise the R rows are skipped with the exact install command in the table's notes.

BLAS threads: the whole run is limited to ``--threads`` (default 1) through threadpoolctl, so
softmix and R (reference BLAS, single-threaded) are compared on equal terms and the timings do
not depend on how busy the other core is. ``--threads 2`` measures the other setting.

``--quick`` (a smoke test) writes ``RESULTS-quick.md`` and ``results-quick/*.csv`` instead, so it
never overwrites the full run's tracked files (both are git-ignored).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _peers import machine_info
from _report import markdown, write_csv

from softmix.core.threads import blas_threads

TABLES = {
    "iteration": ("bench_smm", "iteration_table"),
    "optimum": ("bench_smm", "optimum_table"),
    "moe": ("bench_moe", "run"),
    "scaling": ("bench_scaling", "run"),
}


#: Sections of RESULTS.md below this line are written by their own scripts and kept on rewrite.
OWN_SCRIPTS_MARKER = "<!-- own-scripts:"


def keep_own_sections(new: str, old: str) -> str:
    """``new`` followed by the part of ``old`` from :data:`OWN_SCRIPTS_MARKER` on (the sections
    other benchmark scripts wrote), so a rerun of this script does not delete them."""
    at = old.find(OWN_SCRIPTS_MARKER)
    return new if at < 0 else new.rstrip("\n") + "\n\n" + old[at:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--only", nargs="*", choices=list(TABLES), help="tables to run")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    parser.add_argument("--out", type=Path, default=HERE, help="folder of RESULTS.md")
    args = parser.parse_args(argv)
    names = args.only or list(TABLES)

    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    info = machine_info()
    tables = []
    with blas_threads(args.threads):
        for name in names:
            module, func = TABLES[name]
            print(f"[bench] {name} ...", flush=True)
            t = time.perf_counter()
            table = getattr(__import__(module), func)(args.quick)
            tables.append(table)
            # quick (smoke-test) tables never overwrite the tracked full-run CSVs
            write_csv(table, args.out / ("results-quick" if args.quick else "results"))
            print(f"[bench] {name}: {time.perf_counter() - t:.0f} s", flush=True)
            for line in table.headline:
                print("   ", line, flush=True)

    given = sys.argv[1:] if argv is None else argv
    cmd = "make bench" if not given else "python benchmarks/run_all.py " + " ".join(given)
    lines = [
        "# softmix benchmarks",
        "",
        f"Command: `{cmd}` (quick: {args.quick}); BLAS threads: {args.threads}.",
        f"Date: {started:%Y-%m-%d %H:%M} UTC; total wall time {time.perf_counter() - t0:.0f} s.",
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()) + ".",
        "",
        ("The machine is shared (other engineers' jobs ran at the same time): every comparison "
        "below is a ratio measured side by side in one run, never a lone absolute time."),
        "",
        "## Headline",
        "",
    ]
    for table in tables:
        lines.extend(f"- {h}" for h in table.headline)
    lines.append("")
    for table in tables:
        lines.append(markdown(table))
    out = args.out / ("RESULTS.md" if not args.quick else "RESULTS-quick.md")
    text = "\n".join(lines)
    out.write_text(keep_own_sections(text, out.read_text() if out.exists() else ""))
    print(f"[bench] wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
