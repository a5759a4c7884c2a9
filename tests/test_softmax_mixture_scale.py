"""The issue-2 scale case: p = 50,000, L = 100, K = 5, N = 10^7 counts, memory never O(N)."""

import time
import tracemalloc

import pytest

from softmix import SoftmaxMixture
from softmix.datasets import make_softmax_mixture
from softmix.metrics import atom_error
from softmix.softmax_mixture.model import sample_counts

P, L, K = 50_000, 100, 5


def traced_fit(features, counts, params, **kw):
    """Fit from counts under tracemalloc; returns (model, peak bytes allocated during fit)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        model = SoftmaxMixture(params.n_components, init=params, m_step="gradient", **kw).fit(
            features, counts=counts)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return model, peak


def test_memory_of_a_fit_is_the_same_at_n_1e4_and_1e9():
    """Default-suite version: a smaller design, N up to 10^9, a few iterations."""
    data = make_softmax_mixture(0, 20_000, 50, 4, return_choices=False, random_state=0)
    peaks = []
    for n in (10_000, 1_000_000_000):
        counts = sample_counts(data.features, data.params, n, 1)
        _, peak = traced_fit(data.features, counts, data.params, max_iter=3, tol=0.0)
        peaks.append(peak)
    assert peaks[1] < 1.1 * peaks[0] + 1e6
    assert peaks[1] < 2 * 20_000 * 50 * 8  # one working copy of the design + row blocks


@pytest.mark.slow  # ~5 s alone with one BLAS thread; minutes on a loaded machine
def test_large_fit_finishes_and_memory_does_not_scale_with_n():
    n = 10_000_000
    t0 = time.perf_counter()
    data = make_softmax_mixture(n, P, L, K, return_choices=False, random_state=0)
    assert data.choices is None and data.counts.sum() == n
    small_counts = sample_counts(data.features, data.params, 10_000, 1)
    _, peak_small = traced_fit(data.features, small_counts, data.params, max_iter=3, tol=0.0)
    t1 = time.perf_counter()
    model, peak = traced_fit(data.features, data.counts, data.params, max_iter=1000)
    seconds = time.perf_counter() - t1
    assert model.converged_, model.stop_reason_
    assert atom_error(model.atoms_, data.atoms) < 0.05
    design_bytes = P * L * 8
    # one working copy of the design (L, p) plus O(p K) arrays; an (N,) float array alone would
    # be 80 MB and an (N, K) one 400 MB
    assert peak < 1.5 * design_bytes < n * 8
    assert peak < 1.1 * peak_small + 1e6  # same peak at N = 10^4 and N = 10^7
    print(f"\nN=1e7 fit: {model.n_iter_} EM iterations in {seconds:.1f} s "
          f"(data {t1 - t0:.1f} s); tracemalloc peak {peak / 1e6:.1f} MB "
          f"(N=1e4: {peak_small / 1e6:.1f} MB; design {design_bytes / 1e6:.0f} MB)")
