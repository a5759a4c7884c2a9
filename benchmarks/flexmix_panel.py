"""Panel softmax mixture with class-membership covariates against R flexmix, same data and
start.

flexmix fits the same model as ``softmix.SoftmaxMixture.fit(features, choices, groups=person,
covariates=Z)``: a mixture of conditional logits ``FLXMRcondlogit(strata = ~ choice)`` on the
long format (one stratum of p rows per choice), grouped by person (``y ~ x | person``: each
person keeps one class), with the concomitant model ``FLXPmultinom(~ z1 + ...)`` (or
``FLXPconstant()`` without covariates). Both start from the same person posteriors ``post0``:
flexmix's first step with ``cluster = post0`` is an M-step from them, which
:func:`softmix.softmax_mixture.panel.start_from_posteriors` computes for us; then both run EM to
a relative tolerance of 1e-10. Our log-likelihood omits nothing flexmix includes (both are the
likelihood of the ordered choices), so ours must reach at least flexmix's.

Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/flexmix_panel.py [--seed 0]``. Needs
``Rscript`` with flexmix, survival and jsonlite (``apt-get install r-base-core r-cran-flexmix
r-cran-survival r-cran-mixtools r-cran-jsonlite``). Timings: R's inside R (fit only), ours
around ``fit_panel_em`` (what ``SoftmaxMixture.fit`` runs); one run each on a shared machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peers import PeerUnavailable, ensure_r, run_r

from softmix.datasets import make_panel_softmax_mixture
from softmix.softmax_mixture.em import prepare_design
from softmix.softmax_mixture.panel import check_panel, fit_panel_em, start_from_posteriors

#: Ours may end below flexmix's log-likelihood by at most this (relative): round-off only.
RTOL = 1e-8


def compare(data, n_components: int, *, seed: int = 0, tol: float = 1e-10,
            iter_max: int = 5000, rscript: str | None = None) -> dict:
    """Fit ours and flexmix from the same random person posteriors."""
    rng = np.random.default_rng(seed)
    panel = check_panel(data.features, data.choices, groups=data.groups,
                        covariates=data.covariates)
    post0 = rng.dirichlet(np.ones(n_components), panel.n_groups)
    design = prepare_design(data.features)
    start = start_from_posteriors(design, panel, post0)
    t0 = time.perf_counter()
    ours = fit_panel_em(design, panel, start, m_step="newton", newton_max_iter=1,
                        accelerate="squarem", max_iter=iter_max, tol=tol, warn=False)
    sec_ours = time.perf_counter() - t0
    inputs = {"X": data.features, "choices": data.choices + 1, "person": data.groups + 1,
              "post0": post0, "K": n_components, "iter_max": iter_max, "tol": tol}
    if data.covariates is not None:
        inputs["Z"] = data.covariates
    out = run_r("flexmix_panel_condlogit.R", inputs, rscript=rscript)
    if int(out["K_final"]) != n_components:
        raise RuntimeError(f"flexmix dropped components ({out['K_final']} left)")
    ll_flex = float(out["ll"])
    k, length = data.atoms.shape[0], data.features.shape[1]
    q = 0 if data.covariates is None else data.covariates.shape[1]
    return {
        "n_groups": panel.n_groups, "n_choices": int(panel.n_choices), "k": n_components,
        "ll_ours": ours.objective, "ll_flexmix": ll_flex, "ll_gap": ours.objective - ll_flex,
        "iter_ours": ours.n_iter, "iter_flexmix": int(out["iter"]),
        "converged_ours": ours.converged, "converged_flexmix": bool(out["converged"]),
        "sec_ours": sec_ours, "sec_flexmix": float(out["seconds"]),
        "df_flexmix": int(out["df"]), "df_ours": (k - 1) * (q + 1) + k * length,
        "params_ours": ours.params,
    }


def cases(seed: int, quick: bool = False) -> list[tuple[str, object, int]]:
    """(name, PanelMixtureData, K) for the benchmark rows (``quick``: 60 persons, for tests)."""
    if quick:
        return [("panel, FLXPmultinom(~z1)", make_panel_softmax_mixture(
            60, 3, 5, 2, 2, n_covariates=1, separation=1.5, random_state=seed), 2)]
    return [
        ("panel, FLXPmultinom(~z1+z2)", make_panel_softmax_mixture(
            150, 4, 6, 2, 2, n_covariates=2, separation=1.5, random_state=seed), 2),
        ("panel, constant weights", make_panel_softmax_mixture(
            150, 4, 6, 2, 2, separation=1.5, random_state=seed + 1), 2),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        rscript = ensure_r(("flexmix", "survival", "jsonlite"))
    except PeerUnavailable as exc:
        print(f"flexmix comparison skipped: {exc}")
        return 2
    print(f"softmix panel SoftmaxMixture vs R flexmix (FLXMRcondlogit | person), seed = "
          f"{args.seed}, same start, tol = 1e-10")
    print(f"{'data':<29} {'G':>4} {'N':>5} {'ll ours':>12} {'ll flexmix':>12} {'ours-flex':>10} "
          f"{'iters o/f':>10} {'sec o/f':>13} {'flexmix/ours':>12}")
    ok = True
    for name, data, k in cases(args.seed):
        r = compare(data, k, seed=args.seed, rscript=rscript)
        ratio = r["sec_flexmix"] / max(r["sec_ours"], 1e-9)
        print(f"{name:<29} {r['n_groups']:>4d} {r['n_choices']:>5d} {r['ll_ours']:>12.5f} "
              f"{r['ll_flexmix']:>12.5f} {r['ll_gap']:>10.2e} "
              f"{r['iter_ours']:>4d}/{r['iter_flexmix']:<5d} "
              f"{r['sec_ours']:>6.3f}/{r['sec_flexmix']:<6.3f} {ratio:>12.1f}")
        ok &= r["ll_gap"] >= -RTOL * abs(r["ll_flexmix"])
    print("ours >= flexmix's log-likelihood on every row:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
