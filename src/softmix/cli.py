"""The ``softmix`` command: parses arguments and dispatches, nothing else.

Commands::

    softmix demo [--n-samples N] [--n-alternatives P] [--n-features L] [--n-components K] [--seed S]
    softmix reproduce NAME [--quick] [--seed S] [--out DIR] [--idx-dir DIR]
    softmix list
    softmix fit smm --features F (--counts C | --choices C) -k K --out MODEL [options]
    softmix fit moe --data F -y COL [--x COLS] -k K --expert E --out MODEL [options]
    softmix select smm --features F (--counts C | --choices C) -k 1-6 [--criterion C] [options]
    softmix select moe --data F -y COL [--x COLS] -k 1-4 --expert E [options]
    softmix summary MODEL [data options]
    softmix predict MODEL [--data F] --out F

Data files are read by extension (.csv with a header row, .parquet, .npy, .npz with --key);
see softmix.io.readers. The work is done by softmix.io.workflow; ``--json`` prints its report
as one JSON object. Bad input exits with status 2 and one line naming the file and the fix.
"""

from __future__ import annotations

import argparse
import sys


def _progress():
    from softmix.io.progress import Progress

    return Progress()  # draws on stderr only when it is a terminal


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
        progress=_progress().steps(args.name),
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


def _emit(args: argparse.Namespace, report: dict) -> int:
    for warning in report.get("warnings", []):
        print(f"softmix: warning: {' '.join(str(warning).split())}", file=sys.stderr)
    if args.json:
        import json

        print(json.dumps({k: v for k, v in report.items() if k != "text"}))
    else:
        print(report["text"])
    return 0


def _hyper(args: argparse.Namespace) -> dict:
    return {"init": args.init, "n_init": args.n_init, "max_iter": args.max_iter,
            "tol": args.tol, "seed": args.seed}


def _cmd_fit_smm(args: argparse.Namespace) -> int:
    from softmix.io.workflow import fit_smm_files

    return _emit(args, fit_smm_files(
        args.features, counts=args.counts, choices=args.choices, n_components=args.k,
        out=args.out, features_key=args.features_key, counts_key=args.counts_key,
        column=args.column, dtype=args.dtype, screen_iter=args.screen_iter, plot_dir=args.plot,
        progress=_progress(), **_hyper(args)))


def _cmd_fit_moe(args: argparse.Namespace) -> int:
    from softmix.io.workflow import fit_moe_files

    return _emit(args, fit_moe_files(
        args.data, target=args.y, x=args.x, n_experts=args.k, expert=args.expert,
        solver=args.solver, out=args.out, key=args.key, plot_dir=args.plot,
        progress=_progress(), **_hyper(args)))


def _select_options(args: argparse.Namespace) -> dict:
    from softmix.io.workflow import InputError, parse_grid

    if args.folds < 2:
        raise InputError(f"--folds {args.folds}: held-out selection needs at least 2 folds.")
    return {"grid": parse_grid(args.k), "criterion": args.criterion, "n_init": args.n_init,
            "n_folds": args.folds, "init": args.init, "max_iter": args.max_iter,
            "tol": args.tol, "seed": args.seed, "out": args.out, "plot_dir": args.plot,
            "progress": _progress()}


def _cmd_select_smm(args: argparse.Namespace) -> int:
    from softmix.io.workflow import select_smm_files

    return _emit(args, select_smm_files(
        args.features, counts=args.counts, choices=args.choices,
        features_key=args.features_key, counts_key=args.counts_key, column=args.column,
        dtype=args.dtype, **_select_options(args)))


def _cmd_select_moe(args: argparse.Namespace) -> int:
    from softmix.io.workflow import select_moe_files

    return _emit(args, select_moe_files(
        args.data, target=args.y, x=args.x, expert=args.expert, solver=args.solver,
        key=args.key, **_select_options(args)))


def _cmd_summary(args: argparse.Namespace) -> int:
    from softmix.io.workflow import summarize_file

    return _emit(args, summarize_file(
        args.model, features=args.features, counts=args.counts, choices=args.choices,
        features_key=args.features_key, counts_key=args.counts_key, column=args.column,
        data=args.data, target=args.y, x=args.x, key=args.key))


def _cmd_predict(args: argparse.Namespace) -> int:
    from softmix.io.workflow import predict_files

    return _emit(args, predict_files(args.model, data=args.data, out=args.out, key=args.key,
                                     x=args.x))


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _tol(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0 (e.g. 1e-8), got {text!r}")
    return value


def _add_smm_data(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--features", required=required, metavar="F",
                        help="design, one row per alternative (.csv/.parquet/.npy/.npz)")
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--counts", metavar="C", help="how often each alternative was chosen")
    group.add_argument("--choices", metavar="C",
                       help="the chosen alternative (0-based row of --features) per observation"
                            "; or a Parquet dataset of token ids (a directory or glob, with "
                            "--column; counted by softmix.count_choices, needs softmix[dask])")
    parser.add_argument("--features-key", metavar="KEY", help="array of a .npz --features")
    parser.add_argument("--counts-key", metavar="KEY", help="array of a .npz --counts/--choices")
    parser.add_argument("--column", metavar="NAME",
                        help="column of the --counts/--choices table (default: its only one)")


def _add_moe_data(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--data", required=required, metavar="F",
                        help="table of the response and covariates (.csv/.parquet/.npy/.npz)")
    parser.add_argument("-y", required=required, metavar="COL", help="response column")
    parser.add_argument("--x", metavar="COLS",
                        help="covariate columns, comma-separated (default: all other columns)")
    parser.add_argument("--key", metavar="KEY", help="array of a .npz --data")


def _add_fit_options(parser: argparse.ArgumentParser, inits) -> None:
    parser.add_argument("-k", type=_positive, required=True, metavar="K",
                        help="number of components / experts")
    parser.add_argument("--out", required=True, metavar="MODEL",
                        help="model file to write (read it with softmix.load)")
    parser.add_argument("--init", default="random", choices=inits)
    parser.add_argument("--n-init", type=_positive, default=1, help="restarts (default 1)")
    parser.add_argument("--seed", type=_seed, default=0, help="random_state (default 0)")
    parser.add_argument("--max-iter", type=_count, default=None,
                        help="iterations per run (default: the estimator's)")
    parser.add_argument("--tol", type=_tol, default=None,
                        help="relative-change tolerance (default: the estimator's)")
    parser.add_argument("--plot", metavar="DIR", default=None,
                        help="write figures (convergence, parameters, membership) to DIR")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _add_select_options(parser: argparse.ArgumentParser, inits) -> None:
    from softmix.selection import CRITERIA

    parser.add_argument("-k", required=True, metavar="GRID",
                        help="the K to compare: a range 1-6 or a list 2,3,5")
    parser.add_argument("--criterion", choices=CRITERIA, default="bic",
                        help="what chooses K (default bic; heldout: cross-validated "
                             "log-likelihood, one-standard-error rule)")
    parser.add_argument("--n-init", type=_positive, default=1,
                        help="single-start runs per K (default 1)")
    parser.add_argument("--folds", type=_positive, default=5,
                        help="folds of --criterion heldout (default 5, at least 2)")
    parser.add_argument("--init", default="random", choices=inits)
    parser.add_argument("--seed", type=_seed, default=0, help="random_state (default 0)")
    parser.add_argument("--max-iter", type=_count, default=None,
                        help="iterations per run (default: the estimator's)")
    parser.add_argument("--tol", type=_tol, default=None,
                        help="relative-change tolerance (default: the estimator's)")
    parser.add_argument("--out", metavar="MODEL", default=None,
                        help="write the best model to MODEL (read it with softmix.load)")
    parser.add_argument("--plot", metavar="DIR", default=None,
                        help="write the selection curve (selection.png) to DIR")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


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

    from softmix.io.workflow import MOE_INITS
    from softmix.moe.estimator import SOLVERS
    from softmix.moe.experts import EXPERTS
    from softmix.softmax_mixture.init import INITIALISERS

    fit = sub.add_parser("fit", help="fit a model to your files and save it")
    family = fit.add_subparsers(dest="family", required=True)
    smm = family.add_parser("smm", help="softmax mixture: features + counts or choices")
    _add_smm_data(smm, required=True)
    _add_fit_options(smm, sorted(INITIALISERS))
    smm.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                     help="working precision of the design (float32 halves its memory)")
    smm.add_argument("--screen-iter", type=_positive, default=None, metavar="T",
                     help="screened restarts: run each of the --n-init starts T iterations, "
                          "then only the best 2 to the end (default: every start to the end)")
    smm.set_defaults(func=_cmd_fit_smm)
    moe = family.add_parser("moe", help="mixture of experts: a table with a response column")
    _add_moe_data(moe, required=True)
    _add_fit_options(moe, list(MOE_INITS))
    moe.add_argument("--expert", choices=sorted(EXPERTS), default="gaussian")
    moe.add_argument("--solver", choices=sorted(SOLVERS), default="em")
    moe.set_defaults(func=_cmd_fit_moe)

    sel = sub.add_parser("select", help="choose the number of components on your files")
    family = sel.add_subparsers(dest="family", required=True)
    smm = family.add_parser("smm", help="softmax mixture: features + counts or choices")
    _add_smm_data(smm, required=True)
    _add_select_options(smm, sorted(INITIALISERS))
    smm.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                     help="working precision of the design (float32 halves its memory)")
    smm.set_defaults(func=_cmd_select_smm)
    moe = family.add_parser("moe", help="mixture of experts: a table with a response column")
    _add_moe_data(moe, required=True)
    _add_select_options(moe, list(MOE_INITS))
    moe.add_argument("--expert", choices=sorted(EXPERTS), default="gaussian")
    moe.add_argument("--solver", choices=sorted(SOLVERS), default="em")
    moe.set_defaults(func=_cmd_select_moe)

    summ = sub.add_parser("summary", help="describe a saved model (on new data if given)")
    summ.add_argument("model", metavar="MODEL")
    _add_smm_data(summ, required=False)
    _add_moe_data(summ, required=False)
    summ.add_argument("--json", action="store_true", help="print one JSON object")
    summ.set_defaults(func=_cmd_summary)

    pred = sub.add_parser("predict", help="predictions of a saved model, written to a table")
    pred.add_argument("model", metavar="MODEL")
    pred.add_argument("--data", metavar="F", default=None,
                      help="softmax mixture: features (default: the training design); "
                           "mixture of experts: the covariates")
    pred.add_argument("--x", metavar="COLS", help="covariate columns (default: the fit's)")
    pred.add_argument("--key", metavar="KEY", help="array of a .npz --data")
    pred.add_argument("--out", required=True, metavar="F",
                      help="table to write (.csv/.parquet/.npy/.npz)")
    pred.add_argument("--json", action="store_true", help="print one JSON object")
    pred.set_defaults(func=_cmd_predict)
    return parser


def _fail(args: argparse.Namespace, message: str, code: int = 2) -> int:
    message = " ".join(str(message).split())  # one line
    print(f"softmix: error: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        import json

        print(json.dumps({"error": message, "exit_code": code}))
    return code


def main(argv: list[str] | None = None) -> int:
    from softmix.softmax_mixture.dmm import MomentProjectionError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    # bad arguments or input files, a failed SDP, a missing optional extra: each message says
    # what to do
    except (ValueError, TypeError, MomentProjectionError, ImportError) as exc:
        return _fail(args, str(exc))
    except KeyboardInterrupt:
        print("\nsoftmix: interrupted", file=sys.stderr)
        return 130
    except FileNotFoundError as exc:  # a model file that is not there
        return _fail(args, str(exc))
    except OSError as exc:  # e.g. --out names a folder, or a folder we may not write to
        return _fail(args, f"cannot write the outputs: {exc}. Choose another --out.")


if __name__ == "__main__":
    raise SystemExit(main())
