"""Reproducing a paper's claim from Python: the ``smm-cost`` experiment.

The same as ``softmix reproduce smm-cost [--quick] --out DIR``: runs the experiment (EM's cost
per iteration as N, p and L grow), writes ``DIR/smm-cost/`` (config.json, results.csv,
summary.md, the figure) and prints the summary. Every registered experiment
(``softmix.experiments.names()``) runs the same way; their reports are in docs/experiments/.

Run::

    python examples/reproduction.py --quick --out results
"""

from __future__ import annotations

import argparse

from softmix.experiments import names
from softmix.experiments.runner import run_experiment


def main(argv: list[str] | None = None) -> dict:
    """Run the example; returns the output folder and the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid (seconds)")
    parser.add_argument("--name", default="smm-cost", choices=names())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    folder, rows, summary = run_experiment(args.name, quick=args.quick, seed=args.seed,
                                           out=args.out)
    print(summary)
    print(f"\nwrote {folder}/")
    return {"folder": folder, "rows": rows, "summary": summary}


if __name__ == "__main__":
    main()
