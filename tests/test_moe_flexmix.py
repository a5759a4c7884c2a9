"""Our Gaussian-MoE EM agrees with R flexmix (FLXMRglm gaussian + FLXPmultinom) on the same data
and start. Skipped when Rscript, flexmix or jsonlite is missing (see benchmarks/flexmix_moe.py
for the full comparison and the install command)."""

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from _peers import find_rscript, missing_r_packages

pytestmark = pytest.mark.skipif(
    find_rscript() is None or bool(missing_r_packages(["flexmix", "jsonlite"])),
    reason="needs Rscript with flexmix and jsonlite (apt-get install r-base-core "
    "r-cran-flexmix r-cran-survival r-cran-mixtools r-cran-jsonlite)",
)


def test_loglik_agrees_with_flexmix_on_the_papers_model():
    import flexmix_moe

    from softmix.datasets import make_gaussian_moe

    X, y, _ = make_gaussian_moe(600, random_state=1)
    r = flexmix_moe.compare(X, y, 2, seed=1)
    assert r["converged_ours"] and r["converged_flexmix"]
    assert r["rel_diff"] <= 1e-4
    # same objective: our log-likelihood at flexmix's parameters is flexmix's logLik
    assert r["ll_ours_at_flexmix"] == pytest.approx(r["ll_flexmix"], rel=1e-9)
    # ours is the MLE; flexmix's df-corrected variances make its fixed point slightly lower
    assert r["ll_ours"] >= r["ll_flexmix"] - 1e-6 * abs(r["ll_flexmix"])
    np.testing.assert_allclose(r["params_ours"].expert_coef, r["params_flexmix"].expert_coef,
                               atol=1e-2)
