"""Helpers of the benchmark harness (benchmarks/): fast, no timing assertions."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _baselines
import _peers
import _report


def small_problem(seed=0, p=30, length=3, k=3):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((p, length))
    counts = rng.integers(0, 20, p).astype(float)
    v = rng.standard_normal(k - 1 + k * length)
    return features, counts, v, k


def naive_loglik(v, features, counts, k):
    """Loops over alternatives and components: the definition."""
    logits = np.concatenate([v[: k - 1], [0.0]])
    alpha = np.exp(logits) / np.exp(logits).sum()
    atoms = v[k - 1 :].reshape(k, -1)
    total = 0.0
    for j in range(features.shape[0]):
        prob = 0.0
        for c in range(k):
            s = features @ atoms[c]
            prob += alpha[c] * np.exp(s[j]) / np.exp(s).sum()
        total += counts[j] * np.log(prob)
    return total


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lbfgs_objective_matches_the_definition(seed):
    features, counts, v, k = small_problem(seed)
    value, _ = _baselines.smm_objective(v, features, counts, k)
    assert value == pytest.approx(-naive_loglik(v, features, counts, k) / counts.sum(),
                                  rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lbfgs_gradient_matches_finite_differences(seed):
    features, counts, v, k = small_problem(seed)
    _, grad = _baselines.smm_objective(v, features, counts, k)
    h = 1e-6
    fd = np.array([
        (_baselines.smm_objective(v + h * e, features, counts, k)[0]
         - _baselines.smm_objective(v - h * e, features, counts, k)[0]) / (2 * h)
        for e in np.eye(v.size)
    ])
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


def test_lbfgs_layout_is_the_library_packing():
    from softmix.softmax_mixture.model import (
        SoftmaxMixtureParams,
        log_likelihood,
        params_from_vector,
    )

    features, counts, v, k = small_problem(3)
    params = params_from_vector(v, k, features.shape[1])
    assert isinstance(params, SoftmaxMixtureParams)
    value, _ = _baselines.smm_objective(v, features, counts, k)
    assert -value * counts.sum() == pytest.approx(log_likelihood(features, counts, params),
                                                  rel=1e-12)


def test_fit_lbfgs_increases_the_likelihood_and_traces_it():
    features, counts, v, k = small_problem(4)
    out = _baselines.fit_lbfgs(features, counts, v, k, max_iter=50)
    start = -_baselines.smm_objective(v, features, counts, k)[0] * counts.sum()
    assert out["log_likelihood"] > start
    assert len(out["trace_t"]) == len(out["trace_ll"]) == out["n_evals"]
    assert np.all(np.diff(out["trace_ll"]) >= 0) and np.all(np.diff(out["trace_t"]) >= 0)
    assert out["trace_ll"][-1] == pytest.approx(out["log_likelihood"])


def test_time_to_target():
    t = [0.1, 0.2, 0.3, 0.4]
    ll = [-10.0, -5.0, -1.0000005, -1.0]
    assert _peers.time_to_target(t, ll, -1.0, rtol=1e-6) == 0.3
    assert _peers.time_to_target(t, ll, -1.0, rtol=1e-9) == 0.4
    assert _peers.time_to_target(t, ll, 0.0, rtol=1e-9) == float("inf")
    with pytest.raises(ValueError, match="same shape"):
        _peers.time_to_target(t, ll[:2], -1.0)


def test_median_time_calls_warmup_plus_repeats():
    calls = []
    out = _peers.median_time(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and out >= 0


def test_write_inputs_round_trips_float64_exactly(tmp_path):
    x = np.random.default_rng(0).standard_normal((7, 3)) * 1e-3
    idx = np.arange(5)
    _peers.write_inputs(tmp_path, {"X": x, "i": idx, "K": 3, "name": "a"})
    back = np.loadtxt(tmp_path / "X.csv", delimiter=",")
    np.testing.assert_array_equal(back, x)
    assert (tmp_path / "i.csv").read_text().split() == ["0", "1", "2", "3", "4"]
    assert json.loads((tmp_path / "params.json").read_text()) == {"K": 3, "name": "a"}
    with pytest.raises(ValueError, match="1-D or 2-D"):
        _peers.write_inputs(tmp_path, {"T": np.zeros((2, 2, 2))})


def test_missing_rscript_gives_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("SOFTMIX_RSCRIPT", str(tmp_path / "no-such-Rscript"))
    assert _peers.find_rscript() is None
    assert _peers.missing_r_packages(["flexmix"]) == ["flexmix"]
    with pytest.raises(_peers.PeerUnavailable) as info:
        _peers.ensure_r(["flexmix"], install=False)
    assert "apt-get install" in str(info.value) and "r-cran-flexmix" in str(info.value)


@pytest.mark.skipif(_peers.find_rscript() is None, reason="Rscript not installed")
def test_run_r_exchanges_csv_and_json(tmp_path):
    if _peers.missing_r_packages(["jsonlite"]):
        pytest.skip("R package jsonlite missing")
    script = tmp_path / "echo.R"
    script.write_text(
        'source(file.path("' + str(_peers.R_DIR) + '", "_io.R"))\n'
        "X <- read_mat('X'); prm <- read_params()\n"
        "write_out(list(colsums = colSums(X), k = prm$K * 2, seconds = 0.5))\n"
    )
    x = np.arange(6.0).reshape(3, 2) / 3
    out = _peers.run_r(script, {"X": x, "K": 4})
    np.testing.assert_allclose(out["colsums"], x.sum(axis=0), rtol=1e-15)
    assert out["k"] == 8 and out["seconds"] == 0.5
    bad = tmp_path / "bad.R"
    bad.write_text("stop('boom')\n")
    with pytest.raises(RuntimeError, match="boom"):
        _peers.run_r(bad, {})


def test_trace_callback_records_monotone_times():
    tr = _report.Trace()
    for i, v in enumerate([-3.0, -2.0, -1.5]):
        assert tr(i, None, v) is False
    assert tr.values == [-3.0, -2.0, -1.5]
    assert np.all(np.diff(tr.seconds) >= 0)


def test_report_markdown_and_csv(tmp_path):
    table = _report.Table("t", "T", [{"a": 1.5, "b": float("inf")}, {"a": None, "c": "x"}],
                          columns=["a", "b"], notes=["note"])
    md = _report.markdown(table)
    assert "| a | b |" in md and "| 1.5 | never |" in md and "- note" in md
    path = _report.write_csv(table, tmp_path)
    assert path.read_text().splitlines()[0] == "a,b,c"


def test_moe_vector_round_trip_uses_log_variances():
    import bench_moe

    from softmix.datasets import make_moe

    _, _, params = make_moe(10, 2, 3, random_state=0)
    v = bench_moe.moe_to_vector(params)
    np.testing.assert_allclose(v[-3:], np.log(params.expert_variance))
    back = bench_moe.moe_from_vector(params)(v)
    np.testing.assert_allclose(back.gating, params.gating)
    np.testing.assert_allclose(back.expert_coef, params.expert_coef)
    np.testing.assert_allclose(back.expert_variance, params.expert_variance)


def test_run_all_keeps_the_sections_other_scripts_wrote():
    import run_all

    old = ("# old tables\n\n## 1. old\n\n" + run_all.OWN_SCRIPTS_MARKER
           + " ... -->\n\n## 5. choice\nrows\n")
    text = run_all.keep_own_sections("# new tables\n\n## 1. new\n", old)
    assert text.startswith("# new tables") and "## 1. old" not in text
    assert text.endswith(run_all.OWN_SCRIPTS_MARKER + " ... -->\n\n## 5. choice\nrows\n")
    assert run_all.keep_own_sections("# new\n", "# no marker\n") == "# new\n"
