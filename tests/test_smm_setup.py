"""Issue 14 (items 1 and 3): setup at the cost of the problem, and a design that is never copied.

The design is used as given (no whitened copy), the whitening covariance comes from a row sample
with the identification decision checked on every row, and the E-step can run over chunks of the
vocabulary. These tests check each of those against the exact / unchunked computation.
"""

from __future__ import annotations

import dataclasses
import tracemalloc
import warnings

import numpy as np
import pytest

from softmix import SoftmaxMixture
from softmix.exceptions import SoftmixWarning
from softmix.softmax_mixture import design as design_mod
from softmix.softmax_mixture.design import prepare_design
from softmix.softmax_mixture.em import e_step, fit_em, make_em_map, select_m_step
from softmix.softmax_mixture.init import random_init
from softmix.softmax_mixture.model import (
    SoftmaxMixtureParams,
    check_features,
    log_likelihood,
    sample_counts,
)


def _mixture(p=6000, length=5, k=3, seed=0, n=200_000, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((p, length)).astype(dtype)
    atoms = rng.standard_normal((k, length)) / np.sqrt(length)
    params = SoftmaxMixtureParams(np.full(k, 1.0 / k), atoms)
    counts = sample_counts(x, params, n, rng).astype(float)
    return x, counts, params


def _naive_working(design, x):
    """z = (X - mean) B, formed explicitly (float64)."""
    return (np.asarray(x, dtype=float) - design.mean) @ design.transform


def test_primitives_equal_the_explicit_working_design():
    x, _, _ = _mixture(p=3000, length=6)
    x = x + np.array([5.0, -3.0, 0.0, 1.0, 100.0, 0.5])  # offsets: the centring is in the maps
    design = prepare_design(x, sample_rows=400)
    assert not design.exact and design.sample_index.shape == (400,)
    z = _naive_working(design, x)
    rng = np.random.default_rng(1)
    atoms = rng.standard_normal((4, design.n_working))
    np.testing.assert_allclose(design.scores(atoms), atoms @ z.T, rtol=1e-9, atol=1e-9)
    weights = rng.random((5, x.shape[0]))
    np.testing.assert_allclose(design.project(weights), weights @ z, rtol=1e-9, atol=1e-7)
    rows = slice(100, 900)
    np.testing.assert_allclose(design.scores(atoms, rows), atoms @ z[rows].T, rtol=1e-9,
                               atol=1e-9)
    np.testing.assert_allclose(design.project(weights[:, rows], rows), weights[:, rows] @ z[rows],
                               rtol=1e-9, atol=1e-7)
    # the sampled whitening is approximate on all rows but exact on the sample
    zs = z[design.sample_index]  # centred at the design's mean (all rows)
    np.testing.assert_allclose(zs.T @ zs / zs.shape[0], np.eye(6), atol=1e-8)


def test_sampled_identification_checks_every_row():
    rng = np.random.default_rng(2)
    p, n = 5000, 300
    x = rng.standard_normal((p, 4))
    index = prepare_design(x, sample_rows=n).sample_index  # the fixed-seed sample for (p, n)
    # a pair collinear on the sampled rows only: broken on 3 rows outside the sample
    outside = np.setdiff1d(np.arange(p), index)[:3]
    hidden = np.column_stack([x, 2.0 * x[:, 0] - x[:, 1]])
    hidden[outside, 4] += 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # identified on all rows: no unidentified warning
        design = prepare_design(hidden, sample_rows=n)
    assert design.n_unidentified == 0 and np.all(np.isfinite(design.transform))
    assert prepare_design(hidden, exact=True).n_unidentified == 0
    # the same pair collinear on every row is found, with the columns named
    exact_pair = np.column_stack([x, 2.0 * x[:, 0] - x[:, 1]])
    with pytest.warns(SoftmixWarning, match=r"column\(s\) \[0, 1, 4\]"):
        design = prepare_design(exact_pair, sample_rows=n)
    assert design.n_unidentified == 1
    null = design.inverse.T  # the working atoms never move along the null direction
    c = np.array([2.0, -1.0, 0.0, 0.0, -1.0])
    assert np.abs(c @ null).max() < 1e-8 * np.abs(null).max()
    # a column constant on the sample only is identified (its variance lives outside the sample)
    const_in_sample = np.column_stack([x, np.zeros(p)])
    const_in_sample[outside, 4] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert prepare_design(const_in_sample, sample_rows=n).n_unidentified == 0


def test_sampled_design_is_scale_free_and_reaches_the_exact_optimum():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4000, 4))
    params = SoftmaxMixtureParams(np.array([0.4, 0.6]), np.array([[1.2, 0, 0, 0],
                                                                   [-1.2, 0.6, 0, 0]]))
    counts = sample_counts(x, params, 10**5, rng).astype(float)
    kw = {"tol": 1e-9, "max_iter": 3000, "m_step": "newton", "accelerate": "squarem"}
    exact = fit_em(prepare_design(x, exact=True), counts, params, **kw)
    sampled = fit_em(prepare_design(x, sample_rows=300), counts, params, **kw)
    assert sampled.converged and exact.converged
    assert sampled.objective == pytest.approx(exact.objective, rel=1e-10)
    np.testing.assert_allclose(sampled.params.atoms, exact.params.atoms, atol=1e-3)
    scale = np.array([1e-3, 1.0, 10.0, 1e4])
    scaled = fit_em(prepare_design(x * scale, sample_rows=300), counts, SoftmaxMixtureParams(
        params.weights, params.atoms / scale), **kw)
    assert scaled.objective == pytest.approx(sampled.objective, rel=1e-10)
    np.testing.assert_allclose(scaled.params.atoms * scale, sampled.params.atoms, atol=1e-3)


def test_chunked_e_step_and_em_map_equal_unchunked():
    x, counts, params = _mixture(p=5000, length=6, k=4)
    counts[::7] = 0.0  # unchosen alternatives in every chunk
    design = prepare_design(x, sample_rows=1000)
    chunked = dataclasses.replace(design, chunk_rows=333, _cache={})
    assert len(chunked.chunks()) == 16 and len(design.chunks()) == 1
    start = design.to_working(params)
    big = SoftmaxMixtureParams(params.weights, 200.0 * start.atoms)  # the log-space path
    for prm in (start, big):
        a, b = e_step(design, counts, prm), e_step(chunked, counts, prm)
        assert b.log_likelihood == pytest.approx(a.log_likelihood, rel=1e-12)
        for field in ("log_partition", "mass", "weighted_sums", "mean_features"):
            np.testing.assert_allclose(getattr(b, field), getattr(a, field), rtol=1e-10,
                                       atol=1e-9 * np.abs(getattr(a, field)).max())
    for m_step in ("gradient", "newton"):
        new_a, val_a = make_em_map(design, counts, m_step=m_step)(start)
        new_b, val_b = make_em_map(chunked, counts, m_step=m_step)(start)
        assert val_b == pytest.approx(val_a, rel=1e-12)
        np.testing.assert_allclose(new_b.atoms, new_a.atoms, rtol=1e-8, atol=1e-10)


def test_float32_design_is_used_as_is_and_never_copied():
    x, counts, _ = _mixture(p=100_000, length=64, k=3, dtype=np.float32)
    counts += 1.0  # every alternative chosen: no face LP (its own, bounded, float64 problem)
    assert check_features(x) is x
    design = prepare_design(x)
    assert design.features is x and np.shares_memory(design.features, x)
    assert not design.exact  # p > the default sample: the sampled path
    model = SoftmaxMixture(3, dtype="float32", max_iter=3, tol=0.0, random_state=0)
    tracemalloc.start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter=3 on purpose
        model.fit(x, counts=counts)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert model.features_ is x
    assert np.isfinite(model.log_likelihood_)
    # everything the fit allocates together stays well below one copy of the design
    assert peak < 0.75 * x.nbytes, (peak, x.nbytes)
    # float32 products agree with the float64 evaluation of the same parameters
    ll64 = log_likelihood(x.astype(np.float64), counts, model.params_)
    assert model.score(counts=counts) * counts.sum() == pytest.approx(ll64, rel=1e-6)


def test_float32_input_with_nan_is_rejected_without_a_copy():
    x = np.ones((10, 3), dtype=np.float32)
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        check_features(x)
    x[3, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        check_features(x)


def test_auto_rule_on_the_row_sample_matches_the_exact_rule():
    rng = np.random.default_rng(4)
    gaussian = rng.standard_normal((20_000, 5))
    heavy = rng.standard_t(3, size=(20_000, 5))
    start = SoftmaxMixtureParams(np.full(2, 0.5), 0.5 * rng.standard_normal((2, 5)))
    for x, expected in ((gaussian, "gradient"), (heavy, "newton")):
        for design in (prepare_design(x, exact=True), prepare_design(x, sample_rows=3000)):
            m_step, info = select_m_step(design, design.to_working(start))
            assert m_step == expected, info


def test_ridge_uses_the_exact_metric_on_a_sampled_design():
    x, counts, params = _mixture(p=4000, length=3)
    sampled = prepare_design(x, sample_rows=200)
    a = fit_em(sampled, counts, params, ridge=1.0, tol=1e-9, max_iter=300, m_step="newton")
    b = fit_em(x, counts, params, ridge=1.0, tol=1e-9, max_iter=300, m_step="newton")
    assert a.objective == pytest.approx(b.objective, rel=1e-10)
    assert sampled.exact_design() is sampled.exact_design()  # computed once
    with pytest.raises(ValueError, match="exact_design"):
        make_em_map(sampled, counts, ridge=1.0)


def test_random_init_on_a_sampled_design_is_cheap_and_at_the_data_scale():
    x, counts, _ = _mixture(p=20_000, length=8, k=3, n=10**6)
    design = prepare_design(x, sample_rows=2000)
    a = random_init(x, counts, 400, np.random.default_rng(0), design=design)
    b = random_init(x, counts, 400, np.random.default_rng(0), design=design)
    np.testing.assert_array_equal(a.atoms, b.atoms)
    exact = random_init(x, counts, 400, np.random.default_rng(0))
    # same centre (the single-class atom) and a spread of the same order as the exact rule's
    np.testing.assert_allclose(a.atoms.mean(0), exact.atoms.mean(0), atol=0.15)
    spread_a = np.linalg.norm(a.atoms - a.atoms.mean(0), axis=1).mean()
    spread_e = np.linalg.norm(exact.atoms - exact.atoms.mean(0), axis=1).mean()
    assert 0.5 < spread_a / spread_e < 2.0


def test_face_check_is_recorded_as_skipped_when_too_large(monkeypatch):
    x, counts, params = _mixture(p=500, length=3)
    counts[3:] = 0.0  # 3 chosen alternatives cannot span r = 3 dimensions affinely
    monkeypatch.setattr(design_mod, "FACE_LP_MAX_ENTRIES", 100)
    res = fit_em(x, counts, params, max_iter=2, tol=0.0, warn=False)
    assert res.extra["face_check"] == "skipped"


def test_batched_newton_decrements_equal_the_per_component_ones():
    from softmix.core.solvers import newton_direction
    from softmix.softmax_mixture.em import _batched_decrements, _newton_objective

    x, counts, params = _mixture(p=3000, length=40, k=4)
    design = prepare_design(x, sample_rows=1000)
    start = design.to_working(params)
    stats = e_step(design, counts, start)
    targets = stats.weighted_sums / stats.mass[:, None]
    for pen in (None, np.full((4, 40), 0.3)):
        batched, truncated = _batched_decrements(design, np.asarray(start.atoms), targets, pen)
        assert not truncated.any()
        single = []
        for k in range(4):
            _, grad, hess = _newton_objective(design, targets[k], None if pen is None
                                              else pen[k])(np.asarray(start.atoms[k]), 2)
            single.append(float(grad @ newton_direction(grad, hess)))
        np.testing.assert_allclose(batched, single, rtol=1e-8)
        # from the E-step at these atoms (pi from its scores, its xbar): the same decrements
        reused, _ = _batched_decrements(design, np.asarray(start.atoms)[1:], targets[1:],
                                        None if pen is None else pen[1:],
                                        stats.subset(np.arange(1, 4)))
        np.testing.assert_allclose(reused, single[1:], rtol=1e-8)
    em_map = make_em_map(design, counts, m_step="gradient")
    from softmix.softmax_mixture.em import stationarity_of
    value = stationarity_of(em_map, start)  # goes through the batched path (r = 40 > 30)
    assert value > 0 and np.isfinite(value)


# -- setup at the cost of the problem (issue 14 item 1): what each cut must leave unchanged -----


def _eigen_design(x, **kw):
    """The design as prepared before the Cholesky whitening (the eigen-decomposition path)."""
    import unittest.mock

    with unittest.mock.patch.object(design_mod, "_certified_cholesky", lambda c, t: None):
        return prepare_design(x, **kw)


def test_cholesky_whitening_is_certified_and_equals_the_eigen_fits():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5000, 6)) @ rng.standard_normal((6, 6)) + 3.0
    for kw in ({"sample_rows": 800}, {"exact": True}):
        chol, eig = prepare_design(x, **kw), _eigen_design(x, **kw)
        assert chol.n_unidentified == eig.n_unidentified == 0
        # a different whitening of the same covariance: W' R_s W = I, B^{-1} B = I
        np.testing.assert_allclose(chol.inverse @ chol.transform, np.eye(6), atol=1e-10)
        rot = eig.inverse @ chol.transform  # working(chol) -> working(eig): orthogonal
        np.testing.assert_allclose(rot.T @ rot, np.eye(6), atol=1e-10)
        assert not np.allclose(rot, np.eye(6))  # really another basis (the test can fail)
    params = SoftmaxMixtureParams(np.array([0.5, 0.5]), 0.3 * rng.standard_normal((2, 6)))
    counts = sample_counts(x, params, 10**5, rng).astype(float)
    start = SoftmaxMixtureParams(params.weights, params.atoms * 0.5)
    for m_step in ("newton", "gradient"):  # Newton: affine invariant; gradient: rotation invariant
        a = fit_em(prepare_design(x, sample_rows=800), counts, start, m_step=m_step,
                   max_iter=8, tol=0.0, warn=False)
        b = fit_em(_eigen_design(x, sample_rows=800), counts, start, m_step=m_step,
                   max_iter=8, tol=0.0, warn=False)
        np.testing.assert_allclose(a.history, b.history, rtol=1e-11)
        np.testing.assert_allclose(a.params.atoms, b.params.atoms, rtol=1e-7, atol=1e-9)


def test_ill_conditioned_or_collinear_designs_take_the_eigen_route():
    rng = np.random.default_rng(6)
    base = rng.standard_normal((3000, 4))
    calls = []
    real = design_mod._certified_cholesky

    def spy(corr, threshold):
        out = real(corr, threshold)
        calls.append(out is not None)
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(design_mod, "_certified_cholesky", spy)
        prepare_design(base, sample_rows=500)
        # nearly collinear (an eigenvalue ~5e-7 of the correlation: identified, but within the
        # sampled path's candidate threshold 1e4 (p / n) 1e-10, so decided on all rows)
        near = np.column_stack([base, base[:, 0] + 1e-3 * rng.standard_normal(3000)])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert prepare_design(near, sample_rows=500).n_unidentified == 0
        with pytest.warns(SoftmixWarning):
            exact_pair = prepare_design(np.column_stack([base, base[:, 0] - base[:, 1]]),
                                        sample_rows=500)
        assert exact_pair.n_unidentified == 1
    assert calls == [True, False, False]


def test_auto_rule_check_equals_the_design_diagnostic_on_all_rows():
    from softmix.softmax_mixture.em import _hermite_check
    from softmix.softmax_mixture.moments import design_diagnostics

    rng = np.random.default_rng(7)
    along = np.vstack([rng.standard_normal(20_000), rng.standard_t(4, 20_000),
                       rng.exponential(size=20_000) * 3.0 + 1.0])
    standardised = (along.T - along.T.mean(0)) / along.T.std(0)
    diag = design_diagnostics(standardised, np.eye(3), 4)
    score, threshold = _hermite_check(along)
    assert score == pytest.approx(diag.max_score, rel=1e-10)
    assert threshold == diag.threshold


def test_auto_fit_computes_the_start_scores_once(monkeypatch):
    x, counts, params = _mixture(p=20_000, length=40, k=3)
    design = prepare_design(x)
    assert not design.exact
    calls = []
    real = design_mod.Design.scores

    def counting(self, atoms, rows=None):
        calls.append(np.asarray(atoms).shape[0])
        return real(self, atoms, rows)

    monkeypatch.setattr(design_mod.Design, "scores", counting)
    res = fit_em(design, counts, params, m_step="auto", max_iter=0, tol=0.0)
    assert res.extra["m_step"] == "gradient"
    assert calls == [3]  # the auto rule's scores are the start's E-step's: one (K, p) product
    calls.clear()
    res = fit_em(design, counts, params, m_step="auto", max_iter=4, tol=0.0)
    # one product per gradient step (halvings included) and the start's: 5 in all, no CG
    assert calls == [3] * 5, calls
    assert res.criterion == "score_gain_whitened"


def test_gradient_step_from_the_e_step_scores_equals_the_direct_one():
    from softmix.softmax_mixture.em import _gradient_step

    x, counts, params = _mixture(p=5000, length=8, k=4)
    design = prepare_design(x, sample_rows=500)
    start = design.to_working(SoftmaxMixtureParams(params.weights, 3.0 * params.atoms))
    stats = e_step(design, counts, start)
    targets = stats.weighted_sums / stats.mass[:, None]
    atoms = np.asarray(start.atoms)
    q_old = np.einsum("kl,kl->k", atoms, targets) - stats.log_partition
    empty = np.zeros(4, dtype=bool)
    for step in (1.0, 8.0):  # 8: most components halve several times
        direct = _gradient_step(design, atoms, targets, stats.mean_features, q_old, empty, step)
        carried = _gradient_step(design, atoms, targets, stats.mean_features, q_old, empty, step,
                                 scores0=stats.scores)
        np.testing.assert_array_equal(carried[0], direct[0])  # the same halvings, same atoms
        np.testing.assert_allclose(carried[1], direct[1], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(carried[1], design.scores(carried[0]), atol=1e-12)


def test_stop_rule_is_exact_whenever_it_decides_and_cheap_only_as_a_report():
    from softmix.softmax_mixture.em import stationarity_of

    x, counts, params = _mixture(p=6000, length=40, k=3)
    design = prepare_design(x, sample_rows=2000)
    start = SoftmaxMixtureParams(params.weights, 0.5 * params.atoms)
    fixed = fit_em(design, counts, start, m_step="gradient", max_iter=3, tol=0.0)
    assert fixed.criterion == "score_gain_whitened"
    em_map = make_em_map(design, counts, m_step="gradient", tol=0.0)
    work = design.to_working(fixed.params)
    assert fixed.criterion_value == pytest.approx(em_map.stationarity(work, False), rel=1e-10)
    exact = stationarity_of(em_map, work)
    assert exact != pytest.approx(fixed.criterion_value, rel=1e-3)  # really another number
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter with tol > 0: a ConvergenceWarning
        budget = fit_em(design, counts, start, m_step="gradient", max_iter=3)
    assert budget.criterion == "newton_decrement"
    assert budget.criterion_value == pytest.approx(exact, rel=1e-8)
    done = fit_em(design, counts, start, m_step="newton", max_iter=300, accelerate="squarem")
    assert done.converged and done.criterion == "newton_decrement"
    assert done.criterion_value <= done.extra["tol_used"]
    assert stationarity_of(make_em_map(design, counts, m_step="newton"),
                           design.to_working(done.params)) <= done.extra["tol_used"]
