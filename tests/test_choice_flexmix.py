"""LatentClassLogit reaches at least R flexmix's log-likelihood (FLXMRcondlogit with ``| id``
and FLXPmultinom) on the same simulated panel data with varying choice sets and the same start.
Skipped when Rscript, flexmix, survival or jsonlite is missing (apt-get install r-base-core
r-cran-flexmix r-cran-survival r-cran-jsonlite); benchmarks/bench_choice.py has the Swissmetro
comparison with timings."""

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from _peers import find_rscript, missing_r_packages

pytestmark = pytest.mark.skipif(
    find_rscript() is None or bool(missing_r_packages(["flexmix", "survival", "jsonlite"])),
    reason="needs Rscript with flexmix, survival and jsonlite (apt-get install r-base-core "
    "r-cran-flexmix r-cran-survival r-cran-jsonlite)",
)


def test_panel_condlogit_with_concomitant_reaches_flexmix():
    import bench_choice

    from softmix import LatentClassLogit
    from softmix.choice.datasets import make_latent_class_logit

    sim = make_latent_class_logit(200, 6, 4, 2, 2, n_covariates=1, availability=0.7,
                                  separation=3.0, random_state=4)
    d = {"X": sim.X, "chosen": sim.chosen, "situation": sim.situations, "id": sim.groups + 1}
    resp0 = np.eye(2)[np.random.default_rng(0).integers(0, 2, size=200)]
    ll_fm, _, iters = bench_choice.flexmix_fit(d, sim.covariates, 2, resp0, 1e-8, iter_max=300)
    ours = LatentClassLogit(2, init=resp0, tol=1e-10).fit(
        sim.X, sim.chosen, sim.situations, groups=sim.groups + 1, covariates=sim.covariates)
    assert ours.converged_
    assert np.isfinite(ll_fm) and iters < 300  # flexmix converged
    assert ours.log_likelihood_ >= ll_fm - 1e-6 * abs(ll_fm)
    assert ours.log_likelihood_ == pytest.approx(ll_fm, rel=1e-8)  # measured: the same optimum
