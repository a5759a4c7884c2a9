"""Softmax-mixture metrics against brute force: matching, errors, W1, subspace distance."""

import itertools

import numpy as np
import pytest

from softmix.metrics import (
    atom_error,
    match_components,
    subspace_error,
    wasserstein1,
    weight_error,
)


def brute_perm(est, true):
    k = true.shape[0]
    return min(itertools.permutations(range(k)),
               key=lambda p: sum(np.linalg.norm(est[p[i]] - true[i]) for i in range(k)))


@pytest.mark.parametrize("seed", range(5))
def test_hungarian_matches_permutation_brute_force(seed):
    rng = np.random.default_rng(seed)
    true = rng.standard_normal((5, 3))
    est = true[rng.permutation(5)] + 0.3 * rng.standard_normal((5, 3))
    perm = match_components(est, true)
    best = brute_perm(est, true)
    cost = lambda p: sum(np.linalg.norm(est[p[i]] - true[i]) for i in range(5))
    assert cost(perm) == pytest.approx(cost(best))
    assert sorted(perm.tolist()) == list(range(5))


def test_atom_and_weight_errors_after_matching():
    true = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    est = np.array([[0.0, 2.1], [0.0, 0.0], [1.0, 0.3]])  # a permutation + perturbations
    assert atom_error(est, true) == pytest.approx(0.3)
    assert atom_error(est, true, reduce="mean") == pytest.approx(0.4 / 3)
    w_true = np.array([0.2, 0.3, 0.5])
    w_est = np.array([0.45, 0.25, 0.3])  # matched: [0.25, 0.3, 0.45]
    assert weight_error(w_est, est, w_true, true) == pytest.approx(0.05 + 0.0 + 0.05)
    with pytest.raises(ValueError, match="same shape"):
        atom_error(est[:2], true)
    with pytest.raises(ValueError, match="reduce must be one of"):
        atom_error(est, true, reduce="median")


def w1_one_dimensional(wa, xa, wb, xb):
    """W1 on the line: integral of |F_a - F_b|."""
    grid = np.sort(np.concatenate([xa, xb]))
    fa = np.array([wa[xa <= g].sum() for g in grid])
    fb = np.array([wb[xb <= g].sum() for g in grid])
    return float(np.sum(np.abs(fa - fb)[:-1] * np.diff(grid)))


@pytest.mark.parametrize("seed", range(5))
def test_w1_matches_the_one_dimensional_closed_form(seed):
    rng = np.random.default_rng(seed)
    wa, wb = rng.dirichlet(np.ones(3)), rng.dirichlet(np.ones(4))
    xa, xb = rng.standard_normal(3), rng.standard_normal(4)
    assert wasserstein1(wa, xa, wb, xb) == pytest.approx(w1_one_dimensional(wa, xa, wb, xb),
                                                          abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_w1_with_uniform_weights_is_the_best_permutation(seed):
    """Birkhoff: with K equal weights the optimal coupling is a permutation."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    w = np.full(4, 0.25)
    brute = min(sum(np.linalg.norm(a[i] - b[p[i]]) for i in range(4)) / 4
                for p in itertools.permutations(range(4)))
    assert wasserstein1(w, a, w, b) == pytest.approx(brute, abs=1e-9)
    assert wasserstein1(w, a, w, a) == pytest.approx(0.0, abs=1e-12)


def test_w1_bad_input():
    with pytest.raises(ValueError, match="simplex"):
        wasserstein1([0.5, 0.6], [0.0, 1.0], [1.0], [0.0])
    with pytest.raises(ValueError, match="weights_a has 2 entries but atoms_a has 3 rows"):
        wasserstein1([0.5, 0.5], [0.0, 1.0, 2.0], [1.0], [0.0])


def test_subspace_error():
    e = np.eye(3)
    assert subspace_error(e[:, :2], e[:, :2] @ np.array([[2.0, 1.0], [0.0, 3.0]])) < 1e-12
    assert subspace_error(e[:, :1], e[:, 1:2]) == pytest.approx(1.0)
    angle = 0.3
    rotated = np.array([[np.cos(angle)], [np.sin(angle)], [0.0]])
    assert subspace_error(e[:, :1], rotated) == pytest.approx(np.sin(angle))
