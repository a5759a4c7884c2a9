"""SQUAREM acceleration of the one EM driver (``run_em(..., accelerate="squarem")``)."""

import warnings

import numpy as np
import pytest

from softmix.core.em import run_em

# An EM-like linear map with two very different rates (the slow direction is what makes EM
# slow): x -> x + c * (1 - x), objective -(w * (1 - x)^2).sum(), maximum at x = 1. Every map
# step brings each coordinate closer to 1, so the objective never decreases (like exact EM).
RATES = np.array([0.9, 0.02])
WEIGHTS = np.array([1e8, 1.0])


def linear_map(x):
    e = 1.0 - x
    return x + RATES * e, -float(np.sum(WEIGHTS * e**2))


def linear_objective(x):
    return -float(np.sum(WEIGHTS * (1.0 - x) ** 2))


def identity(v):
    return np.asarray(v, dtype=float)


def fit(accelerate, **kw):
    kw.setdefault("max_iter", 100_000)
    kw.setdefault("tol", 1e-14)
    return run_em(np.zeros(2), linear_map, linear_objective, accelerate=accelerate,
                  to_vector=identity, from_vector=identity, **kw)


def test_default_is_plain_em_unchanged():
    plain = run_em(np.zeros(2), linear_map, linear_objective, max_iter=50, tol=0.0)
    explicit = fit(None, max_iter=50, tol=0.0)
    np.testing.assert_array_equal(plain.history, explicit.history)
    np.testing.assert_array_equal(plain.params, explicit.params)
    assert plain.extra == {}
    # plain EM: one map evaluation per iteration, x_t = 1 - (1 - c)^t exactly
    np.testing.assert_allclose(plain.params, 1 - (1 - RATES) ** 50)


def test_squarem_same_optimum_far_fewer_map_evaluations_and_monotone():
    plain = fit(None)
    fast = fit("squarem")
    assert plain.converged and fast.converged
    np.testing.assert_allclose(fast.params, 1.0, atol=1e-6)
    assert fast.objective >= plain.objective - 1e-9
    assert fast.extra["n_map_evals"] * 10 < plain.n_iter
    assert fast.n_decreases == 0 and np.all(np.diff(fast.history) >= 0)
    assert len(fast.history) == fast.n_iter + 1


def test_monotonicity_fallback_triggers_and_keeps_the_objective_monotone():
    # the slow direction pushes the step length up until the extrapolation overshoots along the
    # fast, heavily weighted direction: those cycles must fall back to plain EM.
    fast = fit("squarem")
    assert fast.extra["n_fallbacks"] >= 1
    assert np.all(np.diff(fast.history) >= 0)


def test_fallback_on_infeasible_extrapolation_is_exactly_two_plain_em_steps():
    def reject(v):
        raise ValueError("outside the parameter space")

    acc = run_em(np.zeros(2), linear_map, linear_objective, max_iter=7, tol=0.0,
                 accelerate="squarem", to_vector=identity, from_vector=reject)
    plain = run_em(np.zeros(2), linear_map, linear_objective, max_iter=14, tol=0.0)
    np.testing.assert_allclose(acc.params, plain.params, rtol=1e-15)
    np.testing.assert_allclose(acc.history, plain.history[::2], rtol=1e-15)
    assert acc.extra["n_fallbacks"] >= 3 and acc.extra["n_map_evals"] == 14


def test_non_finite_objective_at_the_extrapolation_falls_back_without_warnings():
    # the map is only defined on x <= 1; extrapolations beyond it report NaN
    def guarded_map(x):
        if np.any(x > 1.0 + 1e-12):
            return x, float("nan")
        e = 1.0 - x
        return x + 0.5 * e**2, -float(np.sum(e**3))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = run_em(np.zeros(1), guarded_map, lambda x: -float(np.sum((1 - x) ** 3)),
                     max_iter=200, tol=0.0, accelerate="squarem", to_vector=identity,
                     from_vector=identity)
    assert np.all(np.isfinite(res.history)) and np.all(np.diff(res.history) >= 0)
    assert res.params[0] <= 1.0


def test_max_iter_zero_returns_the_start():
    res = fit("squarem", max_iter=0)
    np.testing.assert_array_equal(res.params, np.zeros(2))
    assert res.stop_reason == "init" and res.n_iter == 0
    assert res.history.tolist() == [linear_objective(np.zeros(2))]


def test_callback_sees_every_cycle():
    seen = []
    fit("squarem", max_iter=5, tol=0.0, callback=lambda t, p, v: seen.append((t, v)))
    assert [t for t, _ in seen] == list(range(5))


def test_bad_accelerate_name():
    with pytest.raises(ValueError, match="accelerate must be None or 'squarem'"):
        fit("anderson")


def test_squarem_needs_the_vector_maps():
    with pytest.raises(ValueError, match="needs to_vector and from_vector"):
        run_em(np.zeros(2), linear_map, linear_objective, max_iter=5, tol=0.0,
               accelerate="squarem")


# --- fast path: row-wise logsumexp / log_softmax over few columns (core.special) -------------

@pytest.mark.parametrize("k", [1, 2, 3, 7, 16, 17])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_few_column_logsumexp_matches_scipy(k, dtype):
    from scipy import special as sp

    from softmix.core.special import log_softmax, logsumexp

    a = (np.random.default_rng(k).standard_normal((500, k)) * 200).astype(dtype)
    rtol = 1e-13 if dtype == np.float64 else 1e-5
    got = logsumexp(a, axis=1)
    assert got.dtype == dtype and got.shape == (500,)
    np.testing.assert_allclose(got, sp.logsumexp(a, axis=1), rtol=rtol)
    np.testing.assert_allclose(logsumexp(a, axis=-1, keepdims=True),
                               sp.logsumexp(a, axis=1, keepdims=True), rtol=rtol)
    np.testing.assert_allclose(log_softmax(a, axis=1), sp.log_softmax(a, axis=1),
                               rtol=rtol, atol=1e-10 if dtype == np.float64 else 1e-3)


def test_few_column_logsumexp_non_finite_rows_without_warnings():
    from softmix.core.special import log_softmax, logsumexp

    a = np.array([[-np.inf, -np.inf, -np.inf], [np.inf, 0.0, 1.0], [np.nan, 1.0, 2.0],
                  [-np.inf, 2.0, -np.inf]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = logsumexp(a, axis=1)
        ls = log_softmax(a[3:], axis=1)
    assert out[0] == -np.inf and out[1] == np.inf and np.isnan(out[2]) and out[3] == 2.0
    np.testing.assert_array_equal(ls, [[-np.inf, 0.0, -np.inf]])


# --- fast path: Gaussian-expert weighted least squares by Cholesky (moe.experts) -------------

def _lstsq(X1, y, w):
    root = np.sqrt(w)
    return np.linalg.lstsq(X1 * root[:, None], y * root, rcond=None)[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_least_squares_matches_lstsq(seed):
    from softmix.moe.experts import weighted_least_squares

    rng = np.random.default_rng(seed)
    X1 = np.column_stack([np.ones(500), rng.standard_normal((500, 4)) * [1, 10, 0.1, 3]])
    y = X1 @ rng.standard_normal(5) + rng.standard_normal(500)
    w = rng.random(500)
    w[:50] = 0.0
    np.testing.assert_allclose(weighted_least_squares(X1, y, w), _lstsq(X1, y, w),
                               rtol=1e-9, atol=1e-12)


def test_weighted_least_squares_falls_back_on_ill_conditioned_designs():
    from softmix.moe.experts import weighted_least_squares

    rng = np.random.default_rng(0)
    x = rng.random(200)
    X1 = np.column_stack([np.ones(200), x, x + 1e-9 * rng.standard_normal(200)])  # cond ~1e9
    y = 1.0 + 2.0 * x + 0.01 * rng.standard_normal(200)
    w = rng.random(200)
    got = weighted_least_squares(X1, y, w)
    np.testing.assert_allclose(got, _lstsq(X1, y, w), rtol=1e-6)
    # exactly collinear columns: lstsq's minimum-norm solution, finite
    X2 = np.column_stack([np.ones(200), x, x])
    np.testing.assert_allclose(weighted_least_squares(X2, y, w), _lstsq(X2, y, w), rtol=1e-8)


def test_to_vector_value_error_falls_back_to_plain_em():
    def fussy(x):
        if np.any(x > 0.5):
            raise ValueError("no unconstrained image")
        return np.asarray(x, dtype=float)

    acc = run_em(np.zeros(2), linear_map, linear_objective, max_iter=40, tol=0.0,
                 accelerate="squarem", to_vector=fussy, from_vector=identity)
    assert np.all(np.diff(acc.history) >= 0)
    assert np.all(acc.params > 0.5)  # it kept going with plain EM steps past the bad region


# --- SQUAREM on the softmax-mixture EM (softmax_mixture.em.fit_em(accelerate=...)) -----------

@pytest.mark.parametrize("m_step", ["newton", "gradient"])
def test_smm_squarem_same_optimum_as_plain_em_fewer_map_evaluations(m_step):
    from softmix.datasets import make_softmax_mixture
    from softmix.softmax_mixture.em import fit_em
    from softmix.softmax_mixture.model import SoftmaxMixtureParams

    d = make_softmax_mixture(20_000, 300, 4, 3, separation=1.5, random_state=0)
    rng = np.random.default_rng(1)
    start = SoftmaxMixtureParams(np.full(3, 1 / 3), d.atoms + 0.3 * rng.standard_normal((3, 4)))
    plain = fit_em(d.features, d.counts, start, m_step=m_step, tol=1e-12, max_iter=5000)
    fast = fit_em(d.features, d.counts, start, m_step=m_step, tol=1e-12, max_iter=5000,
                  accelerate="squarem")
    assert plain.converged and fast.converged
    assert fast.objective == pytest.approx(plain.objective, rel=1e-9, abs=1e-6)
    np.testing.assert_allclose(np.sort(fast.params.weights), np.sort(plain.params.weights),
                               atol=1e-4)
    assert fast.extra["n_map_evals"] < plain.n_iter
    assert fast.n_decreases == 0 and np.all(np.diff(fast.history) >= -1e-9 * abs(fast.objective))


def test_softmax_mixture_default_is_squarem_and_plain_em_stays_available():
    from softmix import SoftmaxMixture
    from softmix.datasets import make_softmax_mixture

    d = make_softmax_mixture(20_000, 300, 3, 2, separation=1.5, random_state=3)
    fast = SoftmaxMixture(2, random_state=0).fit(d.features, counts=d.counts)
    plain = SoftmaxMixture(2, accelerate=None, random_state=0).fit(d.features, counts=d.counts)
    assert fast.get_params()["accelerate"] == "squarem"
    assert "n_map_evals" in fast.fit_result_.extra and "n_map_evals" not in plain.fit_result_.extra
    assert fast.log_likelihood_ == pytest.approx(plain.log_likelihood_, rel=1e-8)
    with pytest.raises(ValueError, match="accelerate must be 'squarem' or None"):
        SoftmaxMixture(2, accelerate="fast").fit(d.features, counts=d.counts)


# --- fast path: float32 design (softmax_mixture.em.fit_em(dtype="float32")) ------------------

@pytest.mark.parametrize("m_step", ["newton", "gradient"])
def test_smm_float32_within_tolerance_of_float64(m_step):
    from softmix.datasets import make_softmax_mixture
    from softmix.softmax_mixture.em import fit_em, prepare_design
    from softmix.softmax_mixture.model import SoftmaxMixtureParams, log_likelihood

    d = make_softmax_mixture(10**6, 2000, 10, 3, separation=1.0, random_state=0,
                             return_choices=False)
    rng = np.random.default_rng(1)
    start = SoftmaxMixtureParams(np.full(3, 1 / 3),
                                 d.atoms + 0.3 * rng.standard_normal(d.atoms.shape) / np.sqrt(10))
    f64 = fit_em(d.features, d.counts, start, m_step=m_step, tol=1e-10, max_iter=3000,
                 accelerate="squarem")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no spurious decrease / convergence warnings
        f32 = fit_em(d.features, d.counts, start, m_step=m_step, tol=1e-10, max_iter=3000,
                     dtype="float32", accelerate="squarem")
    assert f32.converged and f32.params.atoms.dtype == np.float64
    ll32 = log_likelihood(d.features, d.counts, f32.params)  # evaluated in float64
    assert ll32 == pytest.approx(f64.objective, rel=1e-7)
    # float32's fixed point is defined only to its products' precision (the stop criterion stalls
    # at ~1e-8 N nats, 0.01 nats here, where fit_em floors its tolerance): ~3 standard errors
    np.testing.assert_allclose(f32.params.atoms, f64.params.atoms, atol=1e-2)
    assert prepare_design(d.features, dtype="float32").features.dtype == np.float32


def test_smm_bad_dtype():
    from softmix.datasets import make_softmax_mixture
    from softmix.softmax_mixture.em import fit_em

    d = make_softmax_mixture(100, 50, 2, 2, random_state=0)
    with pytest.raises(ValueError, match="dtype"):
        fit_em(d.features, d.counts, d.params, dtype="float16")


def test_softmax_mixture_newton_max_iter_default_and_bad_value():
    from softmix import SoftmaxMixture
    from softmix.datasets import make_softmax_mixture

    d = make_softmax_mixture(20_000, 300, 3, 2, separation=1.5, random_state=4)
    # m_step="newton" explicitly: the default "auto" takes the gradient step on this design
    one = SoftmaxMixture(2, m_step="newton", random_state=0).fit(d.features, counts=d.counts)
    exact = SoftmaxMixture(2, m_step="newton", newton_max_iter=20,
                           random_state=0).fit(d.features, counts=d.counts)
    assert one.get_params()["newton_max_iter"] == 1
    assert one.log_likelihood_ == pytest.approx(exact.log_likelihood_, rel=1e-8)
    assert np.all(np.diff(one.history_) >= -1e-9 * abs(one.log_likelihood_))
    with pytest.raises(ValueError, match="newton_max_iter"):
        SoftmaxMixture(2, newton_max_iter=0).fit(d.features, counts=d.counts)
