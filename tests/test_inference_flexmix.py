"""Our observed-information standard errors against R flexmix's refit() on a softmax-gated
Gaussian mixture of experts (FLXMRglm gaussian + FLXPmultinom). Skipped when Rscript, flexmix or
jsonlite is missing (as root: apt-get install r-base-core r-cran-flexmix r-cran-jsonlite)."""

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from _peers import find_rscript, missing_r_packages, run_r

pytestmark = pytest.mark.skipif(
    find_rscript() is None or bool(missing_r_packages(["flexmix", "jsonlite"])),
    reason="needs Rscript with flexmix and jsonlite (as root: apt-get install r-base-core "
    "r-cran-flexmix r-cran-survival r-cran-jsonlite)",
)


def test_standard_errors_agree_with_flexmix_refit():
    from softmix import MixtureOfExperts
    from softmix.datasets import make_gaussian_moe

    X, y, _ = make_gaussian_moe(600, random_state=1)
    model = MixtureOfExperts(2, n_init=3, tol=1e-12, random_state=0).fit(X, y)
    assert model.converged_
    post = model.posterior(X, y)
    out = run_r("flexmix_refit.R", {"X": X, "y": y, "post0": post, "K": 2,
                                     "iter_max": 5000, "tol": 1e-12}, timeout=600)
    assert out["converged"] and out["K_final"] == 2
    res = model.inference(X, y)
    est = dict(zip(res.names, res.estimates))
    se = dict(zip(res.names, res.std_errors))
    coef = np.asarray(out["coef"]).reshape(2, 2)  # (d+1, K): rows intercept, x1
    coef_se = np.asarray(out["coef_se"]).reshape(2, 2)
    # flexmix started from our posteriors: its component i is our expert i
    for i in range(2):
        for j in range(2):
            assert est[f"coef[{i},{j}]"] == pytest.approx(coef[j, i], abs=2e-3)
            assert se[f"coef[{i},{j}]"] == pytest.approx(coef_se[j, i], rel=0.05)
    # flexmix's gate: component 2 against component 1; ours: expert 0 against expert 1
    gating = np.ravel(out["gating"])
    gating_se = np.ravel(out["gating_se"])
    for j in range(2):
        assert est[f"gate[0,{j}]"] == pytest.approx(-gating[j], abs=2e-2)
        assert se[f"gate[0,{j}]"] == pytest.approx(gating_se[j], rel=0.05)
