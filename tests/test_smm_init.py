"""Moment-based warm starts (init="mom", "subspace", "auto") and the multivariate MoM."""

import warnings

import numpy as np
import pytest

from softmix.core.restarts import spawn
from softmix.datasets import make_softmax_mixture
from softmix.exceptions import SoftmixWarning
from softmix.metrics import atom_error
from softmix.softmax_mixture import warm_start
from softmix.softmax_mixture.dmm import MomentProjectionError
from softmix.softmax_mixture.em import fit_em
from softmix.softmax_mixture.model import log_likelihood
from softmix.softmax_mixture.mom import method_of_moments
from softmix.softmax_mixture.moments import estimate_subspace, second_moment_matrix, whiten


def _data(n=100_000, p=5_000, big_l=3, k=2, sep=1.0, seed=0):
    return make_softmax_mixture(n, p, big_l, k, separation=sep, return_choices=False,
                                random_state=seed)


def _no_softmix_warnings(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SoftmixWarning)
        return fn(*args)


def test_initialisers_are_registered():
    from softmix.softmax_mixture.init import INITIALISERS

    for name, fn in warm_start.WARM_STARTS.items():
        assert INITIALISERS[name] is fn


def test_mom_recovers_atoms_in_well_separated_case():
    d = _data(n=10_000_000, p=100_000, big_l=3, k=2, seed=1)
    est = method_of_moments(d.features, d.counts, 2)
    assert est.n_recovered == 2 and est.design.gaussian
    assert atom_error(est.atoms, d.atoms) < 0.2
    assert np.all(est.effective_sample_sizes > 1_000)
    # the returned basis spans the whitened atoms
    tw = whiten(d.features).to_white(d.atoms)
    resid = tw - tw @ est.basis @ est.basis.T
    assert np.linalg.norm(resid) < 0.1 * np.linalg.norm(tw)


def test_em_from_mom_reaches_the_optimum_of_em_from_truth_on_demo_setting():
    # the demo's setting: p = 20,000, L = 10, K = 3, N = 10^6
    from softmix.core.threads import blas_threads

    d = make_softmax_mixture(1_000_000, 20_000, 10, 3, return_choices=False, random_state=0)
    with blas_threads(1):  # skinny products: oversubscribed OpenBLAS is ~10x slower
        start = _no_softmix_warnings(warm_start.mom_init, d.features, d.counts, 3,
                                     np.random.default_rng(0))
        from_mom = fit_em(d.features, d.counts, start, tol=1e-10, max_iter=3000)
        from_truth = fit_em(d.features, d.counts, d.params, tol=1e-10, max_iter=3000)
    assert from_mom.converged and from_truth.converged
    assert atom_error(from_mom.params.atoms, from_truth.params.atoms) < 0.01
    assert abs(from_mom.objective - from_truth.objective) < 1e-7 * abs(from_truth.objective)
    assert atom_error(from_mom.params.atoms, d.atoms) < 0.05


@pytest.mark.parametrize("name", ["mom", "subspace", "auto"])
def test_max_iter_zero_returns_the_start(name):
    d = _data()
    start = warm_start.WARM_STARTS[name](d.features, d.counts, 2, np.random.default_rng(3))
    res = fit_em(d.features, d.counts, start, max_iter=0)
    np.testing.assert_array_equal(res.params.atoms, start.atoms)
    np.testing.assert_array_equal(res.params.weights, start.weights)
    assert np.all(start.weights >= 1 / 20 - 1e-12)


def test_subspace_draws_lie_in_the_span_with_trace_scale():
    d = _data(big_l=6, k=5)
    start = warm_start.subspace_init(d.features, d.counts, 5, np.random.default_rng(0),
                                     n_starts=1, n_screen_iter=0)
    w = whiten(d.features)
    m2 = second_moment_matrix(w.z, d.counts)
    span, _ = estimate_subspace(m2, 5)
    tw = w.to_white(start.atoms)
    np.testing.assert_allclose(tw - tw @ span @ span.T, 0, atol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(tw, axis=1), np.sqrt(np.trace(m2)), rtol=1e-10)


def test_subspace_in_one_dimension_gives_distinct_atoms():
    # L = 1, K = 3: the span is a line; the draws must still be three distinct atoms
    d = make_softmax_mixture(200_000, 5_000, 1, 3, return_choices=False, random_state=0)
    start = warm_start.subspace_init(d.features, d.counts, 3, np.random.default_rng(0),
                                     n_starts=1, n_screen_iter=0)
    assert np.min(np.diff(np.sort(start.atoms[:, 0]))) > 1e-3
    tau = np.sqrt(np.trace(second_moment_matrix(whiten(d.features).z, d.counts)))
    assert np.all(np.abs(whiten(d.features).to_white(start.atoms)) <= tau + 1e-12)


def test_subspace_keeps_the_best_screened_start():
    d = _data(big_l=4, k=3)
    best = warm_start.subspace_init(d.features, d.counts, 3, np.random.default_rng(5), n_starts=6)
    single = [
        warm_start.subspace_init(d.features, d.counts, 3, g, n_starts=1)
        for g in spawn(np.random.default_rng(6), 6)
    ]
    ll = log_likelihood(d.features, d.counts, best)
    # the best of 6 screened starts is at least as good as the median single screened start
    assert ll >= np.median([log_likelihood(d.features, d.counts, s) for s in single])


def test_auto_rule():
    d2, d4 = _data(k=2), _data(big_l=4, k=4)
    assert warm_start.auto_choice(d2.features, d2.counts, 2)[0] == "mom"
    choice, reason = warm_start.auto_choice(d4.features, d4.counts, 4)
    assert choice == "subspace" and "K = 4" in reason


def test_auto_without_cvxpy_uses_subspace(monkeypatch):
    monkeypatch.setattr(warm_start, "_has_cvxpy", lambda: False)
    d = _data()
    choice, reason = warm_start.auto_choice(d.features, d.counts, 2)
    assert choice == "subspace" and "softmix[mom]" in reason


def test_auto_falls_back_when_the_solver_fails(monkeypatch):
    def broken(*args, **kwargs):
        raise MomentProjectionError("CLARABEL: status infeasible; SCS: status infeasible.")

    monkeypatch.setattr(warm_start, "mom_init", broken)
    d = _data()
    with pytest.warns(SoftmixWarning, match="CLARABEL.*init='subspace'"):
        params = warm_start.auto_init(d.features, d.counts, 2, np.random.default_rng(0))
    assert np.all(np.isfinite(params.atoms))


def test_mom_rejects_too_many_components():
    d = _data(big_l=6, k=2)
    with pytest.raises(ValueError, match="n_components <= 5.*init='subspace'"):
        warm_start.mom_init(d.features, d.counts, 6, np.random.default_rng(0))


def test_mom_warns_and_falls_back_on_non_gaussian_design():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.7, 1.7, (5_000, 3))
    counts = rng.integers(0, 50, 5_000)
    with pytest.warns(SoftmixWarning, match="far from Gaussian.*falling back to init='subspace'"):
        params = warm_start.mom_init(x, counts, 2, rng)
    assert np.all(np.isfinite(params.atoms)) and params.n_components == 2


def test_subspace_warns_on_non_gaussian_design():
    rng = np.random.default_rng(1)
    x = rng.standard_t(4, (5_000, 3))
    counts = rng.integers(0, 50, 5_000)
    with pytest.warns(SoftmixWarning, match="far from Gaussian.*init='random'"):
        params = warm_start.subspace_init(x, counts, 2, rng, n_starts=2)
    assert np.all(np.isfinite(params.atoms))


def test_mom_warns_and_falls_back_when_p_is_too_small():
    d = _data(p=500, sep=2.5)
    with pytest.warns(SoftmixWarning, match="too small for the atoms' norm.*init='subspace'"):
        params = warm_start.mom_init(d.features, d.counts, 2, np.random.default_rng(0))
    assert np.all(np.isfinite(params.atoms))


def test_warm_starts_handle_a_constant_column():
    d = _data(big_l=3, k=2)
    x = np.column_stack([d.features, np.ones(d.features.shape[0])])
    for name in ("mom", "subspace"):
        params = warm_start.WARM_STARTS[name](x, d.counts, 2, np.random.default_rng(0))
        assert params.atoms.shape == (2, 4)
        np.testing.assert_allclose(params.atoms[:, 3], 0, atol=1e-10)


def test_demo_uses_the_warm_start_and_says_which():
    from softmix.demo import run_demo

    report = run_demo(n_samples=100_000, n_alternatives=3_000, n_features=4, n_components=2,
                      out=None)
    assert "init='auto'" in report
    assert "start: mom (K = 2 <= 3" in report


@pytest.mark.parametrize("name", ["mom", "subspace", "auto"])
def test_estimator_max_iter_zero_returns_the_warm_start(name):
    from softmix import SoftmaxMixture
    from softmix.core.restarts import spawn

    d = _data()
    model = SoftmaxMixture(2, init=name, max_iter=0, random_state=7).fit(d.features,
                                                                          counts=d.counts)
    (child,) = spawn(np.random.default_rng(7), 1)  # the estimator's stream for its one run
    start = warm_start.WARM_STARTS[name](d.features, d.counts, 2, child)
    assert model.n_iter_ == 0 and model.init_method_ == name
    np.testing.assert_allclose(model.atoms_, start.atoms, atol=1e-12)
    np.testing.assert_allclose(model.weights_, start.weights, atol=1e-12)


def test_mom_with_more_components_than_atoms_splits_gracefully():
    # two true atoms, K = 3 asked: the 1-D solution shows 2 atoms, the heaviest is split
    d = make_softmax_mixture(10_000_000, 100_000, 1, 2, return_choices=False, random_state=1)
    est = method_of_moments(d.features, d.counts, 3)
    assert est.atoms.shape == (3, 1) and est.n_recovered == 2
    assert np.all(np.isfinite(est.atoms)) and np.all(est.weights > 0)
    assert np.isclose(est.weights.sum(), 1.0)
    nearest = np.abs(d.atoms[:, 0][:, None] - est.atoms[:, 0][None]).min(axis=1)
    assert np.all(nearest < 0.3)


def test_method_of_moments_counts_of_the_wrong_length_name_the_argument():
    d = _data(n=10_000, p=500)
    with pytest.raises(ValueError, match=r"counts must have one entry per alternative, shape \(500,\)"):
        method_of_moments(d.features, d.counts[:5], 2)


def test_method_of_moments_all_zero_counts_is_an_error_not_a_nan():
    d = _data(n=10_000, p=500)
    with pytest.raises(ValueError, match="counts are all zero"):
        method_of_moments(d.features, 0 * d.counts, 2)


@pytest.mark.parametrize("k, exc, message", [(0, ValueError, "n_components must be >= 1"),
                                              (2.5, TypeError, "n_components must be an int")])
def test_method_of_moments_bad_n_components(k, exc, message):
    d = _data(n=10_000, p=500)
    with pytest.raises(exc, match=message):
        method_of_moments(d.features, d.counts, k)


def test_small_p_warning_reports_the_norm_and_ess_of_the_atom_it_names():
    import re

    d = _data(p=500, sep=2.0, k=3)  # seed 0: the lowest-ESS atom is not the longest one
    with pytest.warns(SoftmixWarning, match="too small for the atoms' norm") as record:
        warm_start.mom_init(d.features, d.counts, 3, np.random.default_rng(0))
    message = next(str(w.message) for w in record if "too small" in str(w.message))
    atom, norm, ess = re.search(
        r"estimated atom (\d+) has whitened norm ([\d.e+-]+) and importance-sampling effective "
        r"sample size ([\d.e+-]+)", message).groups()
    est = method_of_moments(d.features, d.counts, 3, rng=np.random.default_rng(0))
    atom = int(atom)
    assert atom == int(np.argmin(est.effective_sample_sizes))
    assert float(norm) == pytest.approx(np.linalg.norm(est.atoms_white[atom]), rel=2e-3)
    assert float(ess) == pytest.approx(est.effective_sample_sizes[atom], rel=2e-3)
