"""The ``softmix`` command: parses arguments and dispatches, nothing else.

Commands::

    softmix demo [--n-samples N] [--n-alternatives P] [--n-features L] [--n-components K] [--seed S]
    softmix reproduce NAME [--quick] [--seed S] [--out DIR] [--idx-dir DIR]
    softmix list
"""

from __future__ import annotations

import argparse
import sys


def _progress_bar(label: str):
    def report(done: int, total: int) -> None:
        width = 30
        filled = int(width * done / max(total, 1))
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return report


def _seed(text: str) -> int:
    """``--seed``: a non-negative int (what numpy.random.default_rng accepts)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def _count(text: str) -> int:
    """An integer option that also accepts the scientific notation of the help ("1e6")."""
    try:
        return int(text.replace("_", ""))
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"must be an integer (e.g. 1000000 or 1e6), got {text!r}")
    return int(value)


def _cmd_list(args: argparse.Namespace) -> int:
    from softmix.experiments import get_experiment, names

    for name in names():
        print(f"{name:24s} {get_experiment(name).DESCRIPTION}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from softmix.experiments.runner import run_experiment

    folder, _, summary = run_experiment(
        args.name,
        quick=args.quick,
        seed=args.seed,
        out=args.out,
        progress=_progress_bar(args.name),
        overrides={"idx_dir": args.idx_dir} if args.idx_dir is not None else None,
    )
    print(summary)
    print(f"\nwrote {folder}/ (config.json, results.csv, summary.md, figures)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from softmix.demo import run_demo

    print(run_demo(
        n_samples=args.n_samples,
        n_alternatives=args.n_alternatives,
        n_features=args.n_features,
        n_components=args.n_components,
        seed=args.seed,
        out=args.out,
    ))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softmix",
        description="Softmax mixtures and softmax-gated mixtures of experts.",
    )
    from softmix import __version__

    parser.add_argument("--version", action="version", version=f"softmix {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="simulate a softmax mixture, fit it, print a table")
    demo.add_argument("--n-samples", type=_count, default=1_000_000, help="N draws (default 1e6)")
    demo.add_argument("--n-alternatives", type=_count, default=20_000, help="p (default 20000)")
    demo.add_argument("--n-features", type=_count, default=10, help="L (default 10)")
    demo.add_argument("--n-components", type=_count, default=3, help="K (default 3)")
    demo.add_argument("--seed", type=_seed, default=0)
    demo.add_argument("--out", default="results", help="folder for the figure")
    demo.set_defaults(func=_cmd_demo)

    rep = sub.add_parser("reproduce", help="reproduce a paper's claim (see `softmix list`)")
    rep.add_argument("name")
    rep.add_argument("--quick", action="store_true", help="small grid (minutes, for CI)")
    rep.add_argument("--seed", type=_seed, default=0)
    rep.add_argument("--out", default="results")
    rep.add_argument("--idx-dir", default=None, metavar="DIR",
                     help="folder of MNIST/Fashion-MNIST IDX files (moe-inverted-images)")
    rep.set_defaults(func=_cmd_reproduce)

    lst = sub.add_parser("list", help="list the reproducible experiments")
    lst.set_defaults(func=_cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    from softmix.softmax_mixture.dmm import MomentProjectionError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    # bad arguments, a failed SDP, a missing optional extra: each message says what to do
    except (ValueError, TypeError, MomentProjectionError, ImportError) as exc:
        print(f"softmix: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nsoftmix: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # e.g. --out names a file, or a folder we may not write to
        print(f"softmix: error: cannot write the outputs: {exc}. Choose another --out.",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
