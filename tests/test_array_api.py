"""Softmax-mixture fits on arrays of other namespaces (softmix.core.xp): array-api-strict checks
that the design-sized code is namespace-clean, PyTorch (CPU here, CUDA on a GPU) that a real
library works, float32 included. The rule checked: the fitted parameters are NumPy float64;
the design-sized arrays returned (probabilities over the alternatives, posteriors) are in the
design's namespace; everything equals the NumPy fit."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from softmix import SoftmaxMixture
from softmix.core import xp as softmix_xp
from softmix.datasets import make_softmax_mixture
from softmix.exceptions import SoftmixWarning
from softmix.softmax_mixture.em import e_step, fit_em, prepare_design
from softmix.softmax_mixture.model import SoftmaxMixtureParams, log_mixture_probabilities

ROOT = Path(__file__).resolve().parents[1]


def _compat() -> None:
    pytest.importorskip("array_api_compat", reason="needs array-api-compat: pip install "
                        "'softmix[array-api]'")


@pytest.fixture(scope="module")
def xs():
    _compat()
    return pytest.importorskip(
        "array_api_strict", reason="needs array-api-strict: pip install 'softmix[dev]' (or "
        "pip install array-api-strict)")


@pytest.fixture(scope="module")
def data():
    d = make_softmax_mixture(4000, 80, 4, 3, random_state=3, return_choices=False)
    return d.features, d.counts


def _fit(features, counts, **kw):
    kw = {"random_state": 5, "max_iter": 6, "tol": 0.0, **kw}
    return SoftmaxMixture(3, **kw).fit(features, counts=counts)


@pytest.mark.parametrize("m_step", ["newton", "gradient"])
def test_strict_fit_equals_numpy(xs, data, m_step):
    x, n = data
    ref = _fit(x, n, m_step=m_step)
    est = _fit(xs.asarray(x), n, m_step=m_step)
    assert type(est.atoms_) is np.ndarray and est.atoms_.dtype == np.float64
    assert type(est.weights_) is np.ndarray
    np.testing.assert_allclose(est.atoms_, ref.atoms_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(est.weights_, ref.weights_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(est.history_, ref.history_, rtol=1e-13)
    assert est.m_step_used_ == ref.m_step_used_


def test_strict_default_fit_and_returned_arrays(xs, data):
    x, n = data
    ref = SoftmaxMixture(3, random_state=2).fit(x, counts=n)
    est = SoftmaxMixture(3, random_state=2).fit(xs.asarray(x), counts=n)
    assert est.converged_ and ref.converged_
    assert abs(est.log_likelihood_ - ref.log_likelihood_) < 1e-6
    probs = est.choice_probabilities()
    per_class = est.choice_probabilities(per_class=True)
    post = est.predict_proba([0, 3, 3, 7])
    for arr, shape in [(probs, (80,)), (per_class, (80, 3)), (post, (4, 3))]:
        assert isinstance(arr, type(xs.asarray(x))) and tuple(arr.shape) == shape
    np.testing.assert_allclose(np.asarray(softmix_xp.to_host(probs)),
                               ref.choice_probabilities(), atol=1e-7)
    np.testing.assert_allclose(softmix_xp.to_host(post), ref.predict_proba([0, 3, 3, 7]),
                               atol=1e-5)
    assert abs(est.score(counts=n) - ref.score(counts=n)) < 1e-8
    assert abs(est.score(xs.asarray(x), counts=n) - est.score(counts=n)) < 1e-12
    assert abs(est.bic() - ref.bic()) < 1e-5
    assert est.sample(20, random_state=0).shape == (20,)


def test_strict_e_step_log_space_branch(xs):
    """Scores spread over more than 600 nats: the log-space branch, equal to NumPy's."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 3))
    params = SoftmaxMixtureParams(np.array([0.5, 0.3, 0.2]), 200.0 * rng.standard_normal((3, 3)))
    counts = rng.integers(0, 5, 50).astype(float)
    ref = e_step(np.ascontiguousarray(x.T), counts, params)
    got = e_step(xs.asarray(np.ascontiguousarray(x.T)), counts, params)
    assert np.isfinite(ref.log_likelihood) or ref.log_likelihood == -np.inf
    assert got.log_likelihood == pytest.approx(ref.log_likelihood, rel=1e-12)
    for name in ("log_partition", "mass", "weighted_sums", "mean_features"):
        np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=1e-11,
                                   atol=1e-12)


def test_strict_ridge_unidentified_and_face(xs, data):
    x, n = data
    x2 = np.column_stack([x, np.ones(x.shape[0])])  # a constant column: warned, projected out
    counts = n.copy()
    counts[:5] = 0.0  # some unchosen alternatives: the face check runs (host copy)
    with pytest.warns(SoftmixWarning, match="unidentified"):
        ref = _fit(x2, counts, ridge=0.5)
    with pytest.warns(SoftmixWarning, match="unidentified"):
        est = _fit(xs.asarray(x2), counts, ridge=0.5)
    np.testing.assert_allclose(est.atoms_, ref.atoms_, atol=1e-10)
    assert est.log_likelihood_ == pytest.approx(ref.log_likelihood_, rel=1e-12)


def test_fit_em_and_log_mixture_on_strict(xs, data):
    x, n = data
    start = SoftmaxMixtureParams(np.full(3, 1 / 3), np.random.default_rng(1).normal(size=(3, 4)))
    ref = fit_em(x, n, start, max_iter=4, tol=0.0, accelerate="squarem")
    got = fit_em(xs.asarray(x), n, start, max_iter=4, tol=0.0, accelerate="squarem")
    np.testing.assert_allclose(got.params.atoms, ref.params.atoms, atol=1e-10)
    lm = log_mixture_probabilities(xs.asarray(x), ref.params)
    np.testing.assert_allclose(softmix_xp.to_host(lm), log_mixture_probabilities(x, ref.params),
                               atol=1e-12)


def test_errors_on_other_namespaces(xs, data):
    x, n = data
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="features contains 1 NaN"):
        SoftmaxMixture(2).fit(xs.asarray(bad), counts=n)
    with pytest.raises(ValueError, match="init='subspace'.*NumPy designs only"):
        SoftmaxMixture(2, init="subspace").fit(xs.asarray(x), counts=n)
    with pytest.raises(TypeError, match="panel fits.*NumPy designs only"):
        SoftmaxMixture(2).fit(xs.asarray(x), counts=np.vstack([n, n]))
    with pytest.raises(ValueError, match="2-D"):
        SoftmaxMixture(2).fit(xs.asarray(x[:, 0]), counts=n)
    design = prepare_design(xs.asarray(x), dtype="float32")  # a float64 array asked float32
    assert design.dtype == np.float32 and softmix_xp.dtype_name(design.features) == "float32"


# -- PyTorch (CPU here; the same code runs on CUDA: benchmarks/gpu.py) -----------------------

def _torch():
    torch = pytest.importorskip(
        "torch", reason="needs PyTorch (not a softmix dependency): pip install torch")
    _compat()
    torch.set_num_threads(1)
    return torch


@pytest.mark.parametrize("m_step", ["newton", "gradient"])
def test_torch_float64_equals_numpy(data, m_step):
    torch = _torch()
    x, n = data
    ref = _fit(x, n, m_step=m_step)
    est = _fit(torch.asarray(x), n, m_step=m_step)
    np.testing.assert_allclose(est.atoms_, ref.atoms_, atol=1e-10)
    post = est.predict_proba([1, 2])
    assert isinstance(post, torch.Tensor) and post.dtype == torch.float64
    assert est.choice_probabilities().device == torch.asarray(x).device


def test_torch_float32_stays_float32(data):
    torch = _torch()
    x, n = data
    x32 = torch.asarray(x, dtype=torch.float32)
    design = prepare_design(x32)
    assert design.features is x32  # EM reads the tensor itself: no copy, no float64 copy
    assert design.dtype == np.float32
    ref = _fit(x.astype(np.float32), n, dtype="float32")
    est = _fit(x32, n)
    assert est.atoms_.dtype == np.float64
    np.testing.assert_allclose(est.atoms_, ref.atoms_, atol=1e-4)
    assert est.log_likelihood_ == pytest.approx(ref.log_likelihood_, rel=1e-6)
    assert est.choice_probabilities().dtype == torch.float64  # float64 probabilities
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(est.score(counts=n))


# -- the GPU benchmark's tiny CPU case (what CI can run) ------------------------------------

def test_gpu_benchmark_small_cpu_case(tmp_path):
    if None in (importlib.util.find_spec("torch"), importlib.util.find_spec("array_api_compat")):
        backend = "numpy"
    else:
        backend = "torch"
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--small",
         "--backend", backend, "--json", str(out)],
        check=False, capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
             "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")},
    )
    assert proc.returncode == 0, proc.stderr
    table = json.loads(out.read_text())
    assert table["devices_measured"] == ["cpu"]
    assert "not measured" in table["gpu"]
    assert table["rows"][0]["seconds_per_iteration"] > 0
    assert max(row["loglik_rel_diff"] for row in table["rows"]) < 1e-5
    assert "| device |" in proc.stdout
