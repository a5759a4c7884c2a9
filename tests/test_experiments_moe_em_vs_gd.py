"""moe-em-vs-gd --quick: EM reaches the statistical floor before GD; lambda_max predicts EM."""

import numpy as np
import pytest

from softmix.experiments import get_experiment
from softmix.experiments.runner import run_experiment


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("moe_em_vs_gd")
    folder, rows, summary = run_experiment("moe-em-vs-gd", quick=True, seed=0, out=out)
    return folder, rows, summary


def test_quick_run_writes_its_folder(quick_run):
    folder, _rows, summary = quick_run
    for name in ("config.json", "results.csv", "summary.md", "em_vs_gd_linear.png",
                 "em_vs_gd_logistic.png", "em_contraction.png"):
        assert (folder / name).is_file(), name
    assert "SymMoLinE" in summary and "SymMoLogE" in summary and "paper" in summary


@pytest.mark.parametrize("kind", ["linear", "logistic"])
def test_em_reaches_the_floor_in_fewer_iterations_than_gd(quick_run, kind):
    _, rows, _ = quick_run
    module = get_experiment("moe-em-vs-gd")
    em = module.floor_iterations(rows, kind, "em")
    gd = module.floor_iterations(rows, kind, "gd")
    assert np.all(np.isfinite(em)), "EM must reach L(theta*) within the budget on every instance"
    gd = np.where(np.isfinite(gd), gd, np.inf)
    assert np.median(em) < np.median(gd)
    assert np.mean(em < gd) >= 0.8


def test_em_history_is_monotone_and_contraction_matches_lambda_max(quick_run):
    _, rows, _ = quick_run
    curves = [r for r in rows if r["record"] == "curve" and r["method"] == "em"]
    by_run = {}
    for r in curves:
        by_run.setdefault((r["kind"], r["instance"]), []).append(r["objective"])
    for values in by_run.values():
        assert np.all(np.diff(values) <= 1e-12)  # L never increases under EM
    inst = [r for r in rows if r["record"] == "instance"]
    ratio = np.array([r["em_contraction"] / r["lambda_max_mle"] for r in inst])
    assert np.all(np.isfinite(ratio))
    assert np.all(np.abs(ratio - 1) < 0.15)


@pytest.mark.slow
def test_paper_scale_settings_em_first_and_lambda_max_predicts_em():
    """Paper-scale model sizes (n, d of the full run) on 10 instances."""
    module = get_experiment("moe-em-vs-gd")
    config = module.Config(n_instances=10)
    rows = module.run(config, np.random.default_rng(1))
    for kind in config.kinds:
        em = module.floor_iterations(rows, kind, "em")
        assert np.all(np.isfinite(em)) and np.median(em) <= 10
        for other in ("gradient_em", "gd"):
            it = module.floor_iterations(rows, kind, other)
            assert np.median(em) < np.median(np.where(np.isfinite(it), it, np.inf))
        inst = module.instance_table(rows, kind)
        ratio = np.array([r["em_contraction"] / r["lambda_max_mle"] for r in inst])
        assert np.all(np.abs(ratio - 1) < 0.15)
