"""LatentClassLogit against biogeme and R flexmix on Swissmetro (panel, availability, covariates).

Specification (the same in every program): 752 respondents (PURPOSE 1 or 3, CHOICE != 0),
6,768 choices among train / Swissmetro / car with availability; K classes, each with its own
alternative-specific constants (train, car; Swissmetro the reference), time and cost
coefficients (biogeme's b01logit scaling); a respondent keeps one class over all his choices.

* biogeme (``pip install biogeme``, benchmark-only): the panel likelihood written directly,
  ``log sum_k w_k PanelLikelihoodTrajectory(logit_k)``, with the class-membership logit on
  MALE and GA, maximised by biogeme's default optimiser from softmix's starting values.
* R flexmix (``benchmarks/r/flexmix_condlogit_panel.R``; Debian ``r-base-core r-cran-flexmix
  r-cran-survival r-cran-jsonlite``): ``FLXMRcondlogit(strata = ~ situation)`` with
  ``y ~ x | id`` (panel) and ``FLXPmultinom(~ male + ga)``, started from softmix's starting
  posteriors.

Both rows report: the log-likelihood each program reached, softmix's from the same start, and
the time ratio (peer seconds / softmix seconds; fit only, one run each, one BLAS thread). The
likelihood is multimodal for K >= 3 (EM and biogeme's Newton-type optimiser can reach
different local maxima from one start), so each row also has softmix's best of ``--n-init``
random starts and its time.
Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_choice.py [--classes 2]``.
Writes (the rows of this K in) ``benchmarks/results/choice_peers.csv``. A missing peer prints the install command and
its row is skipped.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _peers import PeerUnavailable, ensure_r, run_r

from softmix import LatentClassLogit
from softmix.choice.data import prepare_choice_data
from softmix.choice.datasets import find_swissmetro, load_swissmetro
from softmix.choice.model import e_step, params_from_responsibilities

RESULTS = Path(__file__).resolve().parent / "results" / "choice_peers.csv"


def softmix_fit(d, Z, k, init, tol):
    t0 = time.perf_counter()
    m = LatentClassLogit(k, init=init, tol=tol, max_iter=5000).fit(
        d["X"], d["chosen"], d["situation"], groups=d["id"], covariates=Z)
    return m, time.perf_counter() - t0


def biogeme_fit(k, start, path):
    """Maximum likelihood in biogeme from ``start`` (LatentClassLogitParams)."""
    try:
        import pandas as pd
        from biogeme.biogeme import BIOGEME
        from biogeme.database import Database
        from biogeme.expressions import Beta, PanelLikelihoodTrajectory, Variable, exp, log
        from biogeme.models import logit
        from biogeme.parameters import Parameters
    except ImportError as exc:
        raise PeerUnavailable(f"biogeme is not installed ({exc}); run: pip install biogeme")
    df = pd.read_csv(path, sep="\t")
    df = df[(df.CHOICE != 0) & df.PURPOSE.isin([1, 3])].copy()
    df["TRAIN_COST"] = df.TRAIN_CO * (df.GA == 0) / 100.0
    df["SM_COST"] = df.SM_CO * (df.GA == 0) / 100.0
    df["CAR_COST"] = df.CAR_CO / 100.0
    for a in ("TRAIN", "SM", "CAR"):
        df[f"{a}_TIME"] = df[f"{a}_TT"] / 100.0
    df["CAR_AV_SP"] = df.CAR_AV * (df.SP != 0)
    df = df.reset_index(drop=True)
    db = Database("swissmetro", df)
    db.panel("ID")
    v = {n: Variable(n) for n in ("TRAIN_COST", "SM_COST", "CAR_COST", "TRAIN_TIME", "SM_TIME",
                                  "CAR_TIME", "TRAIN_AV", "SM_AV", "CAR_AV_SP", "CHOICE",
                                  "MALE", "GA")}
    # biogeme's class 0 is the reference here; softmix's is the last class (the same model)
    c, g = start.coef, start.membership_coef - start.membership_coef[0]
    prob = []
    for j in range(k):
        asc_t = Beta(f"asc_train_{j}", c[j, 0], None, None, 0)
        asc_c = Beta(f"asc_car_{j}", c[j, 1], None, None, 0)
        b_t = Beta(f"b_time_{j}", c[j, 2], None, None, 0)
        b_c = Beta(f"b_cost_{j}", c[j, 3], None, None, 0)
        util = {1: asc_t + b_t * v["TRAIN_TIME"] + b_c * v["TRAIN_COST"],
                2: b_t * v["SM_TIME"] + b_c * v["SM_COST"],
                3: asc_c + b_t * v["CAR_TIME"] + b_c * v["CAR_COST"]}
        av = {1: v["TRAIN_AV"], 2: v["SM_AV"], 3: v["CAR_AV_SP"]}
        prob.append(PanelLikelihoodTrajectory(logit(util, av, v["CHOICE"])))
    scores = [0.0]
    for j in range(1, k):
        scores.append(Beta(f"cl_cte_{j}", g[j, 0], None, None, 0)
                      + Beta(f"cl_male_{j}", g[j, 1], None, None, 0) * v["MALE"]
                      + Beta(f"cl_ga_{j}", g[j, 2], None, None, 0) * v["GA"])
    num = [exp(s) for s in scores]
    total = num[0]
    for n in num[1:]:
        total = total + n
    mix = num[0] * prob[0]
    for n, p in zip(num[1:], prob[1:], strict=True):
        mix = mix + n * p
    loglike = log(mix / total)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # biogeme writes its reports to the working directory
        try:
            # a Parameters object: biogeme then skips writing its default .toml (which fails with
            # tomlkit >= 0.13: 'Comment cannot contain line breaks')
            bio = BIOGEME(db, loglike, parameters=Parameters(), generate_html=False, generate_yaml=False,
                          save_iterations=False, calculating_second_derivatives="never")
            bio.model_name = "lcl_bench"
            t0 = time.perf_counter()
            res = bio.estimate()
            sec = time.perf_counter() - t0
        finally:
            os.chdir(cwd)
    return float(res.final_log_likelihood), sec


def flexmix_fit(d, Z, k, resp0, tol, iter_max=5000):
    ensure_r(["flexmix", "survival", "jsonlite"])
    _, codes = np.unique(d["id"], return_inverse=True)
    inputs = {
        "X": d["X"], "y": d["chosen"][:, None].astype(float),
        # FLXMRcondlogit tabulates its strata: they must be the integers 1..S
        "situation": (np.unique(d["situation"], return_inverse=True)[1] + 1)[:, None],
        "id": d["id"][:, None].astype(float), "Z": Z,
        "post0": resp0[codes],
        "K": k, "iter_max": iter_max, "tol": tol,
    }
    out = run_r("flexmix_condlogit_panel.R", inputs)
    return float(out["ll"]), float(out["seconds"]), int(out["iter"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-10)
    parser.add_argument("--n-init", type=int, default=10,
                        help="restarts of the extra softmix row (the likelihood is multimodal)")
    args = parser.parse_args(argv)
    try:
        path = find_swissmetro()
    except FileNotFoundError as exc:
        print(f"skipped: {exc}")
        return 0
    d = load_swissmetro(path)
    Z = np.column_stack([d["male"], d["ga"]])
    k = args.classes
    data = prepare_choice_data(d["X"], d["chosen"], d["situation"], groups=d["id"],
                               covariates=Z)
    rng = np.random.default_rng(args.seed)
    resp0 = np.eye(k)[rng.integers(0, k, size=data.n_groups)]
    start = params_from_responsibilities(resp0, data, d["X"].shape[1])
    ll_start = e_step(start, data)[1]
    rows = []
    ours, sec_ours = softmix_fit(d, Z, k, start, args.tol)
    print(f"softmix  from params    : ll {ours.log_likelihood_:.6f}  {sec_ours:.2f} s  "
          f"{ours.n_iter_} iterations (start ll {ll_start:.3f})")
    try:
        ll_bio, sec_bio = biogeme_fit(k, start, path)
        print(f"biogeme  from params    : ll {ll_bio:.6f}  {sec_bio:.2f} s  "
              f"(ratio biogeme/softmix {sec_bio / sec_ours:.2f})")
        rows.append({"peer": "biogeme", "K": k, "ll_peer": ll_bio,
                     "ll_softmix": ours.log_likelihood_, "sec_peer": sec_bio,
                     "sec_softmix": sec_ours, "ratio": sec_bio / sec_ours})
    except PeerUnavailable as exc:
        print(f"biogeme skipped: {exc}")
    ours_r, sec_r = softmix_fit(d, Z, k, resp0, args.tol)
    print(f"softmix  from posteriors: ll {ours_r.log_likelihood_:.6f}  {sec_r:.2f} s  "
          f"{ours_r.n_iter_} iterations")
    try:
        ll_fm, sec_fm, it_fm = flexmix_fit(d, Z, k, resp0, args.tol)
        print(f"flexmix  from posteriors: ll {ll_fm:.6f}  {sec_fm:.2f} s  {it_fm} iterations "
              f"(ratio flexmix/softmix {sec_fm / sec_r:.2f})")
        rows.append({"peer": "flexmix", "K": k, "ll_peer": ll_fm,
                     "ll_softmix": ours_r.log_likelihood_, "sec_peer": sec_fm,
                     "sec_softmix": sec_r, "ratio": sec_fm / sec_r})
    except PeerUnavailable as exc:
        print(f"flexmix skipped: {exc}")
    t0 = time.perf_counter()
    best = LatentClassLogit(k, n_init=args.n_init, random_state=args.seed, tol=args.tol,
                            max_iter=5000).fit(d["X"], d["chosen"], d["situation"],
                                               groups=d["id"], covariates=Z)
    sec_best = time.perf_counter() - t0
    print(f"softmix  n_init={args.n_init:<3d}     : ll {best.log_likelihood_:.6f}  "
          f"{sec_best:.2f} s  (all runs: {np.round(np.sort(best.fit_result_.all_objectives), 3)})")
    for row in rows:
        row.update(n_init=args.n_init, ll_softmix_n_init=best.log_likelihood_,
                   sec_softmix_n_init=sec_best)
    if rows:
        RESULTS.parent.mkdir(exist_ok=True)
        if RESULTS.is_file():  # keep the rows of other K
            with RESULTS.open(newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["K"]) != k] + rows
        with RESULTS.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
