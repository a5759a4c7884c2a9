"""Calibration by simulation: over replications on well-separated simulated data, the empirical
standard deviation of each estimate matches the mean reported standard error and 95% Wald
intervals cover the truth about 95% of the time. A quick version runs by default; the
``slow`` one (>= 200 replications per family) is the acceptance check of issue 11 (run:
``OPENBLAS_NUM_THREADS=1 .venv/bin/python -m pytest -m slow tests/test_inference_calibration.py
-s``; it prints the table)."""

import warnings

import numpy as np
import pytest

from softmix import MixtureOfExperts, SoftmaxMixture
from softmix.core.restarts import spawn
from softmix.metrics import align
from softmix.moe.model import MoEParams
from softmix.moe.model import sample as sample_moe
from softmix.softmax_mixture.model import SoftmaxMixtureParams, sample_counts

SMM_TRUTH = SoftmaxMixtureParams(np.array([0.6, 0.4]), np.array([[1.5, -0.5], [-1.0, 1.0]]))
MOE_TRUTH = MoEParams(np.array([[0.5, 2.0], [0.0, 0.0]]), np.array([[2.0, 1.0], [-2.0, -1.0]]),
                      np.array([0.25, 0.5]), "gaussian")


def _smm_replicate(rng, n_draws=3000):
    features = np.random.default_rng(12345).standard_normal((30, 2))  # fixed design
    counts = sample_counts(features, SMM_TRUTH, n_draws, rng)
    model = SoftmaxMixture(2, init=SMM_TRUTH, tol=1e-12).fit(features, counts=counts)
    res = model.inference(features, counts=counts)
    aligned = align(model.params_, SMM_TRUTH)
    truth = np.concatenate([SMM_TRUTH.weights, SMM_TRUTH.atoms.ravel()])
    if not np.allclose(aligned.atoms, model.params_.atoms):  # label order moved: re-infer
        return None
    return res, truth, model.converged_


def _moe_replicate(rng, n=500):
    X = rng.standard_normal((n, 1))
    y, _ = sample_moe(X, MOE_TRUTH, rng)
    model = MixtureOfExperts(2, init=MOE_TRUTH, tol=1e-10).fit(X, y)
    res = model.inference(X, y)
    aligned = align(model.params_, MOE_TRUTH)
    if not np.allclose(aligned.expert_coef, model.params_.expert_coef):
        return None
    truth = np.concatenate([MOE_TRUTH.gating[0], MOE_TRUTH.expert_coef[0],
                            MOE_TRUTH.expert_variance[:1], MOE_TRUTH.expert_coef[1],
                            MOE_TRUTH.expert_variance[1:]])
    return res, truth, model.converged_


def calibrate(replicate, n_rep, seed):
    """Per parameter: empirical SD of the estimates, mean reported SE, their ratio, coverage."""
    est, se, cover, names, skipped = [], [], [], None, 0
    for child in spawn(np.random.default_rng(seed), n_rep):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = replicate(child)
        if out is None or not out[2]:
            skipped += 1
            continue
        res, truth, _ = out
        ci = res.conf_int(0.95)
        names = res.names
        est.append(res.estimates)
        se.append(res.std_errors)
        cover.append((ci[:, 0] <= truth) & (truth <= ci[:, 1]))
    est, se, cover = np.array(est), np.array(se), np.array(cover)
    sd = est.std(axis=0, ddof=1)
    mean_se = se.mean(axis=0)
    return {"names": names, "sd": sd, "se": mean_se, "ratio": sd / mean_se,
            "coverage": cover.mean(axis=0), "pooled": float(cover.mean()),
            "n": est.shape[0], "skipped": skipped}


def _print(title, table):
    print(f"\n{title}: {table['n']} replications used ({table['skipped']} skipped), pooled "
          f"coverage {table['pooled']:.3f}")
    print(f"{'parameter':<14}{'emp. SD':>10}{'mean SE':>10}{'SD/SE':>8}{'cover95':>9}")
    for i, name in enumerate(table["names"]):
        print(f"{name:<14}{table['sd'][i]:>10.4f}{table['se'][i]:>10.4f}"
              f"{table['ratio'][i]:>8.3f}{table['coverage'][i]:>9.3f}")


def test_quick_calibration_softmax_mixture():
    table = calibrate(_smm_replicate, 60, seed=1)
    assert table["n"] >= 55
    ratio = np.delete(table["ratio"], 1)  # weight[1] repeats weight[0]
    assert np.all((ratio > 0.7) & (ratio < 1.4)), table
    assert 0.88 <= table["pooled"] <= 1.0


def test_quick_calibration_mixture_of_experts():
    table = calibrate(_moe_replicate, 30, seed=2)
    assert table["n"] >= 27
    assert np.all((table["ratio"] > 0.6) & (table["ratio"] < 1.6)), table
    assert 0.85 <= table["pooled"] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("family", ["softmax_mixture", "mixture_of_experts"])
def test_calibration_by_simulation(family):
    replicate = _smm_replicate if family == "softmax_mixture" else _moe_replicate
    table = calibrate(replicate, 400, seed=11)
    _print(family, table)
    assert table["n"] >= 380
    assert np.all(np.abs(table["ratio"] - 1.0) <= 0.10), table["ratio"]
    assert 0.93 <= table["pooled"] <= 0.97
    # per parameter, 400 replications: binomial SD 1.1%, so a 4-SD band
    assert np.all((table["coverage"] >= 0.905) & (table["coverage"] <= 0.995))
