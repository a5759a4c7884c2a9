"""Issue 14, item 2: what made a real word-embedding design hard, on a small synthetic stand-in.

On MiniLM's 21,719 x 384 embeddings the Newton M-step is matrix-free (L > 30) and a component
concentrates on a few hundred function words: ``Cov_pi(z)`` then has condition ~1e5, truncated
conjugate gradients (20 iterations) return a poor direction and *underestimate* the Newton
decrement (the stop rule's value). The stand-in: Student-t(3) features with anisotropic
columns, p = 1500, L = 40, a concentrated class. See benchmarks/bench_smm_vocabulary.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import softmix
from softmix.softmax_mixture import em as smm_em
from softmix.softmax_mixture.design import _spans_affinely, face_direction
from softmix.softmax_mixture.model import weighted_covariance


def heavy_design(p=1500, length=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_t(3, size=(p, length)) * np.geomspace(1, 10, length)
    return x, rng


def from_eigen_basis(design, x, g):
    """Rows ``g`` given in the eigen-decomposition whitening ``B = D^{-1} V Lambda^{-1/2}`` (the
    working basis these instances were drawn in when the tests were written), mapped to
    ``design``'s working coordinates (the Cholesky whitening ``D^{-1} R^{-1}`` now): the same
    atoms in the user's coordinates, so the same problem instance."""
    centred = x - x.mean(axis=0)
    cov = centred.T @ centred / x.shape[0]
    d = np.sqrt(np.diag(cov))
    lam, v = np.linalg.eigh(cov / np.outer(d, d))
    return (np.asarray(g) @ (v / np.sqrt(lam) / d[:, None]).T) @ design.inverse.T


def concentrated(design, theta):
    z = design.working_rows_t()
    s = theta @ z
    pi = np.exp(s - s.max())
    pi /= pi.sum()
    return pi, z @ pi


def test_decrement_is_exact_where_truncated_cg_underestimates_it():
    x, rng = heavy_design()
    design = smm_em.prepare_design(x, warn=False)
    z = design.working_rows_t()
    theta = from_eigen_basis(design, x, 8.0 * rng.standard_normal(z.shape[0])
                             / np.sqrt(z.shape[0]))
    pi, xbar = concentrated(design, theta)
    cov = weighted_covariance(z.T, pi, xbar)
    eig = np.linalg.eigvalsh(cov)
    assert eig.max() / eig.min() > 1e6  # the hardness: a nearly singular Cov_pi
    target = 0.9 * xbar + 0.1 * z.mean(axis=1)
    fun = smm_em._newton_objective(design, target)
    _, grad, hess = fun(theta, 2)
    truncated = float(grad @ smm_em.newton_direction(grad, hess))
    assert fun.cg_truncated
    exact = float(grad @ np.linalg.solve(cov + smm_em._NEWTON_RIDGE * np.eye(len(grad)), grad))
    assert truncated < 0.5 * exact  # the old stop rule's value: far too optimistic
    assert smm_em._newton_decrement(design, target, theta, None, False) == pytest.approx(exact,
                                                                                    rel=1e-6)


def test_newton_step_falls_back_to_dense_and_gains_more(monkeypatch):
    x, rng = heavy_design()
    design = smm_em.prepare_design(x, warn=False)
    z = design.working_rows_t()
    theta = from_eigen_basis(design, x, 4.0 * rng.standard_normal(z.shape[0])
                             / np.sqrt(z.shape[0]))
    _, xbar = concentrated(design, theta)
    target = 0.9 * xbar + 0.1 * z.mean(axis=1)
    options = {"max_iter": 1, "max_step": smm_em._NEWTON_MAX_STEP, "tol": 0.0}
    new, dense = smm_em._newton_step(design, target, theta, None, False, **options)
    assert dense
    monkeypatch.setattr(smm_em, "_NEWTON_DENSE_FALLBACK_MAX_FEATURES", 0)
    old, old_dense = smm_em._newton_step(design, target, theta, None, False, **options)
    assert not old_dense
    start = smm_em.component_objective(design, target, theta, 0)
    assert new.value > start and old.value > start  # both safeguarded ascent steps
    # run to the M-step optimum: the dense solve gets there, the truncated one is left short
    full = {"max_iter": 20, "max_step": smm_em._NEWTON_MAX_STEP, "tol": 1e-10, "weight": 1.0}
    old20, _ = smm_em._newton_step(design, target, theta, None, False, **full)
    monkeypatch.setattr(smm_em, "_NEWTON_DENSE_FALLBACK_MAX_FEATURES", 1024)
    new20, _ = smm_em._newton_step(design, target, theta, None, False, **full)
    assert new20.converged and new20.value >= old20.value - 1e-12
    # the dense step is the Newton step of the exact Hessian (capped, then Armijo)
    _, grad, hess = smm_em._newton_objective(design, target, dense=True)(theta, 2)
    step = np.linalg.solve(-hess, grad)
    step *= min(1.0, smm_em._NEWTON_MAX_STEP / np.linalg.norm(step))
    moved = new.x - theta
    assert np.allclose(moved / np.linalg.norm(moved), step / np.linalg.norm(step), atol=1e-8)


def test_default_fit_converges_on_the_heavy_tailed_stand_in():
    x, rng = heavy_design()
    design = smm_em.prepare_design(x, warn=False)
    length = design.working_rows_t().shape[0]
    atoms = np.vstack([0.3 * rng.standard_normal(length), 3.0 * rng.standard_normal(length)])
    atoms = from_eigen_basis(design, x, atoms / np.sqrt(length))
    s = atoms @ design.working_rows_t()
    pi = np.exp(s - s.max(axis=1, keepdims=True))
    pi /= pi.sum(axis=1, keepdims=True)
    counts = rng.multinomial(10**6, np.array([0.7, 0.3]) @ pi)
    for seed in range(4):  # seed 1 hit max_iter=100 with main's truncated-CG M-step
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", softmix.exceptions.ConvergenceWarning)
            model = softmix.SoftmaxMixture(2, random_state=seed, max_iter=60).fit(
                x, counts=counts)
        assert model.converged_, (seed, model.fit_result_.criterion_value)
        assert model.fit_result_.criterion_value <= 1e-7


def test_affine_span_certificate_skips_the_face_lp_only_when_no_face_exists():
    x, _ = heavy_design(p=300, length=5)
    design = smm_em.prepare_design(x, warn=False)
    chosen = np.ones(300, dtype=bool)
    chosen[::7] = False
    assert _spans_affinely(design, chosen)
    assert face_direction(design, chosen.astype(float)) is None
    # every chosen alternative on one hyperplane: no certificate, the LP decides
    flat = x.copy()
    flat[:, 0] = np.where(chosen, flat[:, 0].max() + 1.0, flat[:, 0])
    flat_design = smm_em.prepare_design(flat, warn=False)
    assert not _spans_affinely(flat_design, chosen)
    direction = face_direction(flat_design, chosen.astype(float))
    assert direction is not None and abs(direction[0]) > 0.99


def unit_grid_with_heavy_edge():
    """Every alternative chosen (the whole-count face check finds nothing), but the 10
    alternatives on the edge x1 = 1 of a unit grid carry a 100x excess."""
    g = np.linspace(0.0, 1.0, 10)
    x = np.array([[a, b] for a in g for b in g])
    counts = np.full(100, 10.0)
    counts[x[:, 0] == 1.0] = 1000.0
    return x, counts


def test_a_component_heading_for_a_face_is_moved_to_its_limit_and_converges():
    """One component puts all its mass on the heavy edge: its atom grows along x1 without end
    (no maximum at finite atoms). Before faces.py every seed hit max_iter=300 with an arbitrary
    atom (e.g. 69.6) and a stop-rule value 1e-3 to 1e-2 nats. Now EM certifies the face, moves
    the component to the limit and converges, from every seed to the same optimum."""
    from softmix.exceptions import DegenerateComponentWarning

    x, counts = unit_grid_with_heavy_edge()
    edge = np.flatnonzero(x[:, 0] == 1.0).tolist()
    values = []
    for seed in range(5):
        with pytest.warns(DegenerateComponentWarning, match="no maximum at finite atoms") as rec:
            m = softmix.SoftmaxMixture(2, random_state=seed, max_iter=300).fit(
                x, counts=counts)
        r = m.fit_result_
        assert m.converged_ and r.stop_reason == "tol" and r.n_iter < 60, (seed, r.n_iter)
        assert r.criterion_value <= 1e-7
        (k, face), = r.extra["faces"].items()
        # the warning names the class by its weight too (its number is the fit's own order)
        message = next(str(w.message) for w in rec if "no maximum" in str(w.message))
        assert f"(weight {m.weights_[k]:.3g})" in message
        assert face == edge
        assert r.extra["face_pullback_gain"][k] <= 1e-7  # a maximum along the normal
        # the limit: component k is uniform on the edge (the mass off it is below e^-200)
        pk = m.choice_probabilities(per_class=True)[:, k]
        np.testing.assert_allclose(pk[edge], 0.1, rtol=1e-6)
        assert np.delete(pk, edge).sum() < 1e-80
        assert "diverging_components" not in r.extra
        values.append(m.log_likelihood_)
    np.testing.assert_allclose(values, values[0], rtol=1e-10)
    # the limit model's optimum, by hand: a uniform distribution on the edge with the edge's
    # excess weight, and the other component's fit; no finite atoms reach this value
    assert values[0] > -30182.2257


def test_without_the_face_jump_a_diverging_component_is_named():
    """``tol=0`` (a fixed number of iterations) does not move components to faces: the atom
    then grows along x1 for ever, and the component is named by its score spread."""
    from softmix.exceptions import DegenerateComponentWarning

    x, counts = unit_grid_with_heavy_edge()
    with pytest.warns(DegenerateComponentWarning, match="face of the convex hull"):
        m = softmix.SoftmaxMixture(2, random_state=0, max_iter=300, m_step="newton",
                                   tol=0.0).fit(x, counts=counts)
    big = m.fit_result_.extra["diverging_components"]
    assert len(big) == 1 and m.atoms_[big[0], 0] > 50
    assert "faces" not in m.fit_result_.extra
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateComponentWarning)
        r = softmix.SoftmaxMixture(2, random_state=0, max_iter=300, ridge=1.0).fit(
            x, counts=counts)
    assert "diverging_components" not in r.fit_result_.extra
    assert "faces" not in r.fit_result_.extra
    assert r.converged_ and np.abs(r.atoms_).max() < 50


def test_certify_face_proves_faces_and_only_faces():
    from softmix.softmax_mixture.faces import certify_face

    x, _ = unit_grid_with_heavy_edge()
    design = smm_em.prepare_design(x, warn=False)
    edge = np.flatnonzero(x[:, 0] == 1.0)
    d, gap = certify_face(design, edge)
    z = design.working_rows_t().T
    on, off = z[edge] @ d, np.delete(z @ d, edge)
    assert np.ptp(on) <= 1e-9 * gap and gap >= 1 - 1e-7
    np.testing.assert_allclose(on.min() - off.max(), gap, rtol=1e-9)
    assert certify_face(design, [99]) is not None  # a vertex is a face
    corner_pair = [0, 99]  # opposite corners: their segment crosses the interior
    assert certify_face(design, corner_pair) is None
    assert certify_face(design, np.flatnonzero(x[:, 0] >= 0.5)) is None  # spans the plane
    assert certify_face(design, [45]) is None  # an interior point


def test_face_limit_is_equivariant():
    """Permuting the alternatives, rescaling and shifting a column, doubling the counts: the
    same face (permuted), the same probabilities, and a doubled log-likelihood."""
    x, counts = unit_grid_with_heavy_edge()

    def fit(x, counts):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", softmix.exceptions.DegenerateComponentWarning)
            return softmix.SoftmaxMixture(2, random_state=0).fit(x, counts=counts)

    base = fit(x, counts)
    probs = base.choice_probabilities()
    perm = np.random.default_rng(3).permutation(100)
    moved = fit(x[perm] * np.array([3.0, 0.5]) + np.array([-2.0, 7.0]), counts[perm])
    np.testing.assert_allclose(moved.choice_probabilities(), probs[perm], atol=1e-9)
    (face,) = moved.fit_result_.extra["faces"].values()
    assert sorted(perm[face].tolist()) == next(iter(base.fit_result_.extra["faces"].values()))
    doubled = fit(x, 2 * counts)
    np.testing.assert_allclose(doubled.log_likelihood_, 2 * base.log_likelihood_, rtol=1e-10)
    np.testing.assert_allclose(doubled.choice_probabilities(), probs, atol=1e-9)


def test_pullback_finds_a_better_point_off_a_face_that_is_not_a_maximum():
    """At the grid's limit the likelihood of *other* counts, with the column next to the edge
    heavily under-predicted, rises when the component moves back off its face."""
    from softmix.softmax_mixture.faces import Face, certify_face, pullback_gain

    x, counts = unit_grid_with_heavy_edge()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", softmix.exceptions.DegenerateComponentWarning)
        m = softmix.SoftmaxMixture(2, random_state=0).fit(x, counts=counts)
    design = smm_em.prepare_design(x, warn=False)
    (k, index), = m.fit_result_.extra["faces"].items()
    d, gap = certify_face(design, np.asarray(index))
    face = Face(k, np.asarray(index), d, gap)
    params = design.to_working(m.params_)
    same = smm_em.make_em_map(design, counts).objective
    gain, _ = pullback_gain(design, same, params, face)
    assert gain <= 1e-7
    other = counts.copy()
    other[np.isclose(x[:, 0], 8 / 9)] = 600.0
    gain, point = pullback_gain(design, smm_em.make_em_map(design, other).objective, params, face)
    assert gain > 1.0 and point is not None


def test_weights_decrement_is_the_exact_gain_far_from_the_optimum_and_never_explodes():
    """The weights' part of the stop rule: the quadratic near the optimum (no cancellation), the
    exact complete-data gain ``sum c log(c / N alpha)`` far from it. A weight collapsing to
    1e-300 with one unit of mass gave 1e306 nats with the quadratic alone."""
    from softmix.softmax_mixture.em import _weight_gain

    near_mass, near_w = np.array([600.0, 400.0]), np.array([0.6000001, 0.3999999])
    quad = np.sum((near_mass - 1000 * near_w) ** 2 / (1000 * near_w)) / 2
    assert _weight_gain(near_mass, near_w, 1000.0) == pytest.approx(quad, rel=1e-12)
    far_mass, far_w = np.array([999.0, 1.0]), np.array([1 - 1e-300, 1e-300])
    exact = np.sum(far_mass * np.log(far_mass / (1000 * far_w)))
    assert _weight_gain(far_mass, far_w, 1000.0) == pytest.approx(exact, rel=1e-9)
    assert _weight_gain(np.array([1000.0, 0.0]), np.array([0.9, 0.1]), 1000.0) == pytest.approx(
        1000 * np.log(1 / 0.9), rel=1e-12)


def _face_direction_by_the_full_lp(design, counts):
    """Oracle: the (c, t) LP of the face check over all r + 1 variables (the original form)."""
    from scipy.optimize import linprog

    chosen = counts > 0
    z = design.working_rows_t().T
    on, off = z[chosen], z[~chosen]
    a_eq = np.hstack([on, -np.ones((on.shape[0], 1))])
    a_ub = np.vstack([np.hstack([off, -np.ones((off.shape[0], 1))]),
                      np.hstack([-off, np.ones((off.shape[0], 1))])])
    b_ub = np.concatenate([np.zeros(off.shape[0]), np.ones(off.shape[0])])
    c = np.concatenate([off.sum(axis=0), [-float(off.shape[0])]])
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.zeros(on.shape[0]),
                  bounds=[(None, None)] * (z.shape[1] + 1), method="highs")
    return res.status == 0 and -res.fun > 1e-7, -res.fun


def test_face_lp_in_the_null_space_decides_as_the_full_lp():
    """Chosen sets on a face (a facet, an edge, a vertex of a grid, a random face of a random
    design) and not on one (random subsets, an interior point): the same verdict, and the
    direction keeps every chosen alternative level and every other one at or below it."""
    rng = np.random.default_rng(0)
    grid = np.array([[a, b, c] for a in range(4) for b in range(4) for c in range(3)], float)
    cases = [(grid, grid[:, 0] == 3), (grid, (grid[:, 0] == 3) & (grid[:, 1] == 0)),
             (grid, (grid[:, 0] == 3) & (grid[:, 1] == 0) & (grid[:, 2] == 2)),
             (grid, (grid[:, 0] == 1) & (grid[:, 1] == 1))]
    for _ in range(12):
        x = rng.standard_normal((40, 4))
        d = rng.standard_normal(4)
        top = np.argsort(-(x @ d))[: rng.integers(1, 4)]
        face = np.zeros(40, bool)
        face[top[:1]] = True  # a vertex, the maximiser of x'd, is always a face
        cases += [(x, face), (x, rng.random(40) < rng.uniform(0.05, 0.3))]
    verdicts = []
    for x, chosen in cases:
        if not chosen.any():
            continue
        design = smm_em.prepare_design(x, warn=False)
        counts = chosen.astype(float)
        expected, _ = _face_direction_by_the_full_lp(design, counts)
        direction = face_direction(design, counts)
        assert (direction is not None) == expected
        verdicts.append(expected)
        if direction is not None:
            s = x @ direction
            assert np.ptp(s[chosen]) <= 1e-6 * (1 + np.ptp(s))
            assert s[~chosen].max() <= s[chosen].min() + 1e-6 * (1 + np.ptp(s))
    assert any(verdicts) and not all(verdicts)
