"""Denoised 1-D method of moments: projection SDP and Golub-Welsch quadrature."""

import math
import sys

import numpy as np
import pytest

from softmix.softmax_mixture.dmm import (
    MomentProjectionError,
    dmm,
    gauss_quadrature,
    in_moment_space,
    project_moments,
)
from softmix.softmax_mixture.moments import latent_moments


def _moments(atoms, weights, n):
    atoms, weights = np.asarray(atoms, float), np.asarray(weights, float)
    return np.array([weights @ atoms**r for r in range(1, n + 1)])


CASES = [
    ([-1.0, 1.5], [0.4, 0.6]),
    ([-1.5, 0.2, 1.3], [0.3, 0.3, 0.4]),
    ([-2.0, -0.7, 0.4, 1.8], [0.2, 0.3, 0.25, 0.25]),
]


@pytest.mark.parametrize("atoms, weights", CASES)
def test_dmm_exact_moments_recover_atoms(atoms, weights):
    k = len(atoms)
    res = dmm(_moments(atoms, weights, 2 * k - 1), 3.0)
    assert res.n_atoms == k and not res.projected
    np.testing.assert_allclose(res.atoms, atoms, atol=1e-6)
    np.testing.assert_allclose(res.weights, weights, atol=1e-6)


@pytest.mark.parametrize("atoms, weights, tol", [(*CASES[0], 0.05), (*CASES[1], 0.15)])
def test_dmm_noisy_moments_from_gaussian_mixture_samples(atoms, weights, tol):
    # Samples of sum_k w_k N(a_k, 1); Hermite moments are then unbiased but noisy.
    rng = np.random.default_rng(7)
    n = 400_000
    k = len(atoms)
    lab = rng.choice(k, size=n, p=weights)
    x = (np.asarray(atoms)[lab] + rng.standard_normal(n))[:, None]
    m = latent_moments(x, np.ones(n), np.ones(1), 2 * k - 1)
    res = dmm(m, 3.0)
    assert res.n_atoms == k
    assert np.max(np.abs(res.atoms - atoms)) < tol
    assert np.max(np.abs(res.weights - weights)) < tol


def test_projection_outside_the_moment_space():
    # (m1, m2, m3) = (0, 2, 0) is impossible on [-1, 1] (m2 <= 1); the nearest valid point is the
    # two-point measure at +-1: (0, 1, 0).
    m = np.array([0.0, 2.0, 0.0])
    assert not in_moment_space(m, 1.0)
    proj = project_moments(m, 1.0)
    np.testing.assert_allclose(proj, [0.0, 1.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(project_moments(m, 1.0, solver="SCS"), proj, atol=1e-3)
    atoms, weights = gauss_quadrature(proj)
    np.testing.assert_allclose(atoms, [-1.0, 1.0], atol=1e-3)
    np.testing.assert_allclose(weights, [0.5, 0.5], atol=1e-3)


def test_projection_is_identity_inside_and_denoising_helps():
    m = _moments(*CASES[1], 5)
    np.testing.assert_array_equal(project_moments(m, 3.0), m)
    # heavy noise: raw quadrature gives atoms far outside [-R, R] or fails to give 3 atoms;
    # the projected estimate stays in [-R, R]
    rng = np.random.default_rng(0)
    noisy = m + 0.5 * np.sqrt([math.factorial(r) for r in range(1, 6)]) * rng.standard_normal(5)
    res = dmm(noisy, 3.0)
    assert res.projected and np.all(np.abs(res.atoms) <= 3.0)
    assert np.isclose(res.weights.sum(), 1.0)


def test_fewer_atoms_than_requested_are_handled():
    # moments m1..m5 (K = 3) of a two-atom measure: the quadrature finds the two atoms
    m = _moments([-1.0, 0.5], [0.3, 0.7], 5)
    atoms, weights = gauss_quadrature(m)
    np.testing.assert_allclose(atoms, [-1.0, 0.5], atol=1e-6)
    np.testing.assert_allclose(weights, [0.3, 0.7], atol=1e-6)
    res = dmm(_moments([0.7], [1.0], 5), 2.0)
    assert res.n_atoms == 1 and abs(res.atoms[0] - 0.7) < 1e-4


def test_single_moment_is_clipped():
    res = dmm(np.array([5.0]), 2.0)
    assert res.atoms.tolist() == [2.0] and res.weights.tolist() == [1.0]


def test_bad_moments_and_radius():
    with pytest.raises(ValueError, match="odd number"):
        dmm(np.array([0.1, 0.2]), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        dmm(np.array([0.1, np.nan, 0.2]), 1.0)
    with pytest.raises(ValueError, match="radius"):
        project_moments(np.array([0.0, 2.0, 0.0]), 0.0)


def test_solver_failure_names_the_solver_and_the_fallback():
    with pytest.raises(MomentProjectionError, match="NOT_A_SOLVER.*init='subspace'"):
        project_moments(np.array([0.0, 2.0, 0.0]), 1.0, solver="not_a_solver")


def test_missing_cvxpy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cvxpy", None)
    with pytest.raises(ImportError, match=r"softmix\[mom\]"):
        project_moments(np.array([0.0, 2.0, 0.0]), 1.0, solver="CLARABEL")


def test_projection_is_the_nearest_valid_moment_vector():
    # oracle: no moment vector of a random measure on [-1, 1] is closer to the input than the
    # projection, and the projection itself is (numerically) a valid moment vector
    rng = np.random.default_rng(11)
    m = np.array([0.3, 0.2, 0.5, 0.9, -0.4])  # not a moment vector on [-1, 1]
    assert not in_moment_space(m, 1.0)
    proj = project_moments(m, 1.0)
    assert in_moment_space(proj, 1.0, tol=-1e-6)
    best = np.linalg.norm(proj - m)
    for _ in range(2000):
        k = rng.integers(1, 4)
        atoms, weights = rng.uniform(-1, 1, k), rng.dirichlet(np.ones(k))
        assert np.linalg.norm(_moments(atoms, weights, 5) - m) >= best - 1e-6
