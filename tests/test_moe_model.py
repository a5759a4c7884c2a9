"""MoE core: likelihood against a naive oracle, gradient against finite differences,
parameter container, gating and sampler."""

import numpy as np
import pytest
from scipy import stats

from softmix.datasets import make_moe, paper_gaussian_moe_params
from softmix.moe.gating import gate_log_proba, normalize_gauge
from softmix.moe.model import (
    MoEParams,
    gradient,
    log_joint,
    log_likelihood,
    log_responsibilities,
    params_from_vector,
    params_to_vector,
    sample,
)

EXPERT_TYPES = ["gaussian", "logistic", "multinomial"]


def _naive_log_likelihood(X, y, params):
    """Loop over samples and experts with scipy.stats densities."""
    total = 0.0
    for x, yy in zip(X, y, strict=True):
        x1 = np.concatenate([[1.0], x])
        logits = params.gating @ x1
        gate = np.exp(logits) / np.exp(logits).sum()
        dens = 0.0
        for i in range(params.n_experts):
            if params.expert == "gaussian":
                f = stats.norm.pdf(yy, params.expert_coef[i] @ x1,
                                   np.sqrt(params.expert_variance[i]))
            elif params.expert == "logistic":
                p1 = 1 / (1 + np.exp(-params.expert_coef[i] @ x1))
                f = p1 if yy == 1 else 1 - p1
            else:
                z = params.expert_coef[i] @ x1
                f = (np.exp(z) / np.exp(z).sum())[int(yy)]
            dens += gate[i] * f
        total += np.log(dens)
    return total


@pytest.mark.parametrize("expert", EXPERT_TYPES)
def test_log_likelihood_matches_naive_loop(expert):
    X, y, params = make_moe(40, 2, 3, expert=expert, random_state=0)
    assert log_likelihood(X, y, params) == pytest.approx(_naive_log_likelihood(X, y, params),
                                                         rel=1e-12)


@pytest.mark.parametrize("expert", EXPERT_TYPES)
def test_gradient_matches_finite_differences(expert):
    X, y, params = make_moe(60, 2, 3, expert=expert, coef_scale=1.0, random_state=1)
    g = params_to_vector(gradient(X, y, params))
    v = params_to_vector(params)
    fd = np.zeros_like(v)
    eps = 1e-6
    for i in range(v.size):
        e = np.zeros_like(v)
        e[i] = eps
        fd[i] = (log_likelihood(X, y, params_from_vector(v + e, params))
                 - log_likelihood(X, y, params_from_vector(v - e, params))) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-5)
    assert g.size == params.n_free_parameters


def test_gradient_keeps_the_gauge_blocks_at_zero():
    X, y, params = make_moe(50, 1, 3, expert="multinomial", n_classes=4, random_state=2)
    grad = gradient(X, y, params)
    assert np.all(grad.gating[-1] == 0) and np.all(grad.expert_coef[:, -1, :] == 0)


def test_gradient_vanishes_at_an_em_fixed_point():
    from softmix.moe.em import fit_em

    X, y, truth = make_moe(400, 1, 2, random_state=3)
    res = fit_em(X, y, truth, max_iter=2000, tol=1e-14, warn=False)
    g = params_to_vector(gradient(X, y, res.params))
    g0 = params_to_vector(gradient(X, y, truth))
    assert np.max(np.abs(g)) < 1e-4 * np.max(np.abs(g0))


def test_responsibilities_normalised_and_consistent_with_joint():
    X, y, params = make_moe(30, 2, 3, random_state=4)
    lr = log_responsibilities(X, y, params)
    np.testing.assert_allclose(np.exp(lr).sum(axis=1), 1.0)
    lj = log_joint(X, y, params)
    np.testing.assert_allclose(lr - lj, (lr - lj)[:, :1].repeat(3, axis=1), atol=1e-12)


def test_gate_is_invariant_to_translating_the_gating():
    X, _, params = make_moe(20, 2, 3, random_state=5)
    shifted = params.gating + np.array([0.3, -1.0, 2.0])
    np.testing.assert_allclose(gate_log_proba(X, shifted), gate_log_proba(X, params.gating))
    np.testing.assert_allclose(normalize_gauge(shifted), params.gating, atol=1e-12)


def test_extreme_logits_do_not_overflow():
    params = MoEParams(np.array([[1e4, -1e4], [0.0, 0.0]]), np.zeros((2, 2)), np.ones(2))
    X = np.array([[1.0], [-1.0], [0.0]])
    lj = log_joint(X, np.zeros(3), params)
    assert np.all(np.isfinite(np.logaddexp.reduce(lj, axis=1)))


@pytest.mark.parametrize("expert", EXPERT_TYPES)
def test_vector_round_trip(expert):
    _, _, params = make_moe(5, 3, 4, expert=expert, random_state=6)
    back = params_from_vector(params_to_vector(params), params)
    for a, b in [(back.gating, params.gating), (back.expert_coef, params.expert_coef)]:
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="entries"):
        params_from_vector(np.zeros(3), params)


def test_params_validate_shapes_and_gauge_and_are_read_only():
    with pytest.raises(ValueError, match="last row of gating must be zero"):
        MoEParams(np.ones((2, 2)), np.zeros((2, 2)), np.ones(2))
    with pytest.raises(ValueError, match="expert_coef"):
        MoEParams(np.zeros((2, 2)), np.zeros((3, 2)), np.ones(2))
    with pytest.raises(ValueError, match="need expert_variance"):
        MoEParams(np.zeros((2, 2)), np.zeros((2, 2)), None)
    with pytest.raises(ValueError, match="no variance"):
        MoEParams(np.zeros((2, 2)), np.zeros((2, 2)), np.ones(2), "logistic")
    with pytest.raises(ValueError, match="last class row"):
        MoEParams(np.zeros((2, 2)), np.ones((2, 3, 2)), None, "multinomial")
    with pytest.raises(ValueError, match="expert must be one of"):
        MoEParams(np.zeros((2, 2)), np.zeros((2, 2)), None, "poisson")
    p = paper_gaussian_moe_params()
    with pytest.raises(ValueError):
        p.gating[0, 0] = 1.0
    assert p.n_experts == 2 and p.n_features == 1 and p.n_free_parameters == 2 + 2 * 3


def test_sampler_follows_the_gate_and_the_experts():
    rng = np.random.default_rng(7)
    params = paper_gaussian_moe_params()
    X = rng.uniform(size=(40_000, 1))
    y, z = sample(X, params, rng)
    gate = np.exp(gate_log_proba(X, params.gating))
    assert abs(np.mean(z == 0) - gate[:, 0].mean()) < 0.01
    resid = y - np.einsum("np,np->n", np.hstack([np.ones((len(X), 1)), X]),
                          params.expert_coef[z])
    for i in range(2):
        assert np.var(resid[z == i]) == pytest.approx(params.expert_variance[i], rel=0.05)


@pytest.mark.parametrize("expert", EXPERT_TYPES)
def test_permute_keeps_the_density_and_the_gauge(expert):
    X, y, params = make_moe(50, 2, 3, expert=expert, random_state=8)
    perm = params.permute([2, 0, 1])
    assert np.all(perm.gating[-1] == 0)
    np.testing.assert_allclose(log_joint(X, y, perm), log_joint(X, y, params)[:, [2, 0, 1]])
    np.testing.assert_allclose(perm.permute([1, 2, 0]).gating, params.gating, atol=1e-12)
    with pytest.raises(ValueError, match="permutation"):
        params.permute([0, 0, 1])


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"gate_scale": float("nan")}, ValueError),  # gave NaN parameters and data, no error
    ({"coef_scale": np.inf}, ValueError),
    ({"coef_scale": -1.0}, ValueError),
    ({"gate_scale": "2"}, TypeError),            # was a NumPy UFuncTypeError
])
def test_make_moe_checks_its_scales(kwargs, error):
    name = next(iter(kwargs))
    with pytest.raises(error, match=name):
        make_moe(10, **kwargs)
