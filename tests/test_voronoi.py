"""Voronoi losses D1/D2 (Nguyen, Nguyen & Ho 2023): oracles, invariances, the infimum."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softmix.metrics import (
    VORONOI_RBAR,
    _voronoi_t0,
    _voronoi_t1,
    voronoi_d1,
    voronoi_d2,
    voronoi_loss,
)

# The paper's true model (spec section 5), expert 2 the reference.
TRUTH = {
    "beta0": np.array([-8.0, 0.0]),
    "beta1": np.array([[25.0], [0.0]]),
    "a": np.array([[-20.0], [20.0]]),
    "b": np.array([15.0, -5.0]),
    "nu": np.array([0.09, 0.16]),
}


def perturbed(model, rng, scale=0.05, k_extra=0):
    """Copy of ``model`` with every parameter jittered; ``k_extra`` copies of the last expert."""
    out = {key: np.array(val, dtype=float) for key, val in model.items()}
    for _ in range(k_extra):
        out = {key: np.concatenate([val, val[-1:]], axis=0) for key, val in out.items()}
    out = {key: val + scale * rng.standard_normal(val.shape) for key, val in out.items()}
    out["nu"] = np.abs(out["nu"]) + 1e-3
    return out


def translate(model, t0, t1):
    out = dict(model)
    out["beta0"] = model["beta0"] + t0
    out["beta1"] = model["beta1"] + np.atleast_1d(t1)
    return out


def permute(model, perm):
    return {key: np.asarray(val)[perm] for key, val in model.items()}


def naive_objective(fitted, true, kind, t0, t1, gauge="reference", rbar=None):
    """The loss at a given (t0, t1) by loops over cells, straight from the spec's formulas."""
    rbar = {1: 1.0, **VORONOI_RBAR, **(rbar or {})}

    def gauged(m):
        m = {key: np.asarray(val, dtype=float) for key, val in m.items()}
        m["beta1"] = m["beta1"].reshape(len(m["beta0"]), -1)
        m["a"] = m["a"].reshape(len(m["beta0"]), -1)
        if gauge == "reference":
            m["beta1"] = m["beta1"] - m["beta1"][-1]
            m["beta0"] = m["beta0"] - m["beta0"][-1]
        else:
            w = np.exp(m["beta0"] - m["beta0"].max())
            w /= w.sum()
            m["beta1"] = m["beta1"] - w @ m["beta1"]
            m["beta0"] = np.log(w)
        return m

    f, g = gauged(fitted), gauged(true)
    k, k_true = len(f["beta0"]), len(g["beta0"])
    cells = [[] for _ in range(k_true)]
    for i in range(k):
        om = np.concatenate([f["beta1"][i], f["a"][i], [f["b"][i], f["nu"][i]]])
        dists = [np.linalg.norm(om - np.concatenate([g["beta1"][j], g["a"][j],
                                                     [g["b"][j], g["nu"][j]]]))
                 for j in range(k_true)]
        cells[int(np.argmin(dists))].append(i)
    total = 0.0
    for j, cell in enumerate(cells):
        r = rbar[len(cell)] if (kind == "d2" and len(cell) > 1) else 1.0
        h = r / 2 if r > 1 else 1.0
        for i in cell:
            db1 = np.linalg.norm(f["beta1"][i] - g["beta1"][j] - t1)
            da = np.linalg.norm(f["a"][i] - g["a"][j])
            db = abs(f["b"][i] - g["b"][j])
            dnu = abs(f["nu"][i] - g["nu"][j])
            total += np.exp(f["beta0"][i]) * (db1**r + db**r + da**h + dnu**h)
        total += abs(sum(np.exp(f["beta0"][i]) for i in cell) - np.exp(g["beta0"][j] + t0))
    return total


# ------------------------------------------------------------------ zero at the truth


@pytest.mark.parametrize("gauge", ["mass", "reference"])
@pytest.mark.parametrize("infimum", [True, False])
def test_losses_are_zero_at_the_truth(gauge, infimum):
    assert voronoi_d1(TRUTH, TRUTH, infimum=infimum, gauge=gauge) == pytest.approx(0, abs=1e-12)
    assert voronoi_d2(TRUTH, TRUTH, infimum=infimum, gauge=gauge) == pytest.approx(0, abs=1e-12)


def test_d2_is_zero_for_a_density_equivalent_split_of_the_truth():
    # Reference expert split in two halves: same conditional density, same cell masses.
    split = {
        "beta0": np.array([-8.0 + np.log(2.0), 0.0, 0.0]),
        "beta1": np.array([25.0, 0.0, 0.0]),
        "a": np.array([-20.0, 20.0, 20.0]),
        "b": np.array([15.0, -5.0, -5.0]),
        "nu": np.array([0.09, 0.16, 0.16]),
    }
    res = voronoi_loss(split, TRUTH, kind="d2")
    assert res.value == pytest.approx(0, abs=1e-12)
    assert res.cell_size.tolist() == [1, 2]


# ------------------------------------------------------------------ hand-computed oracles

ORACLE_TRUE = {"beta0": [np.log(2.0), 0.0], "beta1": [1.0, 0.0], "a": [1.0, -1.0], "b": [0.0, 1.0],
                   "nu": [1.0, 1.0]}


def test_d1_hand_oracle():
    fitted = {"beta0": [np.log(3.0), 0.0], "beta1": [1.5, 0.0], "a": [1.2, -1.0], "b": [0.0, 1.1],
                  "nu": [1.0, 1.3]}
    # No infimum: cell 1: 3 (0.5 + 0.2); cell 2: 1 (0.1 + 0.3); masses |3 - 2| + |1 - 1|.
    assert voronoi_d1(fitted, ORACLE_TRUE, infimum=False) == pytest.approx(3.5)
    # Infimum: t1 = weighted median of (0.5 [w 3], 0 [w 1]) = 0.5 -> beta1 part 1 * 0.5;
    # u = e^{t0}: weighted median of S/m = (1.5 [w 2], 1 [w 1]) = 1.5 -> mass part |1 - 1.5|.
    res = voronoi_loss(fitted, ORACLE_TRUE, kind="d1", gauge="reference")
    assert res.value == pytest.approx(3 * 0.2 + (0.5 + 0.1 + 0.3) + 0.5)
    assert res.t1 == pytest.approx([0.5])
    assert res.t0 == pytest.approx(np.log(1.5))
    assert res.parameter_term == pytest.approx(1.5) and res.mass_term == pytest.approx(0.5)
    assert res.cell_loss == pytest.approx([0.6, 0.9 + 0.5])
    assert res.cell_loss.sum() == pytest.approx(res.value)


def test_d2_hand_oracle_two_atom_cell():
    fitted = {"beta0": [0.0, 0.0, 0.0], "beta1": [1.5, 0.5, 0.0], "a": [1.2, 1.0, -1.0],
                  "b": [0.0, 0.2, 1.1], "nu": [1.0, 1.1, 1.3]}
    # cell 1 = {0, 1}, rbar = 4: (beta1, b) to the 4th, (a, nu) squared; cell 2 = {2}, power 1.
    expected = (0.5**4 + 0.2**2) + (0.5**4 + 0.2**4 + 0.1**2) + (0.1 + 0.3)
    res = voronoi_loss(fitted, ORACLE_TRUE, kind="d2", infimum=False)
    assert res.value == pytest.approx(expected)
    assert res.cell_size.tolist() == [2, 1] and res.cell_exponent.tolist() == [4.0, 1.0]
    # Symmetric beta1 offsets (+-0.5, and 0 with power 1): t1 = 0, masses already equal.
    res_inf = voronoi_loss(fitted, ORACLE_TRUE, kind="d2", gauge="reference")
    assert res_inf.value == pytest.approx(expected)
    assert res_inf.t1 == pytest.approx([0.0], abs=1e-9)
    errors = res.cell_errors()
    assert errors["beta1"] == pytest.approx([0.5, 0.0])
    assert errors["b"] == pytest.approx([0.2, 0.1])
    assert errors["size"].tolist() == [2, 1]


def test_empty_cell_contributes_its_true_mass():
    # Both fitted atoms next to true atom 2: cell 1 empty, D1 still defined (k = k*).
    fitted = {"beta0": [0.0, 0.0], "beta1": [0.1, 0.0], "a": [-1.0, -1.0], "b": [1.0, 1.0],
                  "nu": [1.0, 1.2]}
    res = voronoi_loss(fitted, ORACLE_TRUE, kind="d1", infimum=False)
    assert res.cell_size.tolist() == [0, 2] and np.isnan(res.cell_exponent[0])
    assert res.value == pytest.approx(0.1 + 0.2 + abs(0 - 2.0) + abs(2.0 - 1.0))
    assert res.value == pytest.approx(naive_objective(fitted, ORACLE_TRUE, "d1", 0.0, 0.0))
    assert np.isnan(res.cell_errors()["a"][0])


# ------------------------------------------------------------------ invariances


@pytest.mark.parametrize("k_extra", [0, 1])
def test_invariant_to_permuting_and_translating_either_model(k_extra):
    rng = np.random.default_rng(0)
    fitted = perturbed(TRUTH, rng, scale=0.1, k_extra=k_extra)
    kind = "d1" if k_extra == 0 else "d2"
    base = voronoi_loss(fitted, TRUTH, kind=kind).value
    assert base > 1e-3  # a real, non-zero loss
    k = len(fitted["beta0"])
    for perm in [np.arange(k)[::-1], rng.permutation(k)]:
        assert voronoi_loss(permute(fitted, perm), TRUTH, kind=kind).value == pytest.approx(
            base, rel=1e-9)
    assert voronoi_loss(fitted, permute(TRUTH, [1, 0]), kind=kind).value == pytest.approx(
        base, rel=1e-9)
    for t0, t1 in [(3.0, -7.0), (-2.5, 40.0)]:
        assert voronoi_loss(translate(fitted, t0, t1), TRUTH, kind=kind).value == pytest.approx(
            base, rel=1e-9)
        assert voronoi_loss(fitted, translate(TRUTH, t0, t1), kind=kind).value == pytest.approx(
            base, rel=1e-9)


def test_reference_gauge_depends_on_which_expert_is_last():
    """Why the default gauge with the infimum is "mass": the authors' gauge is label-dependent."""
    rng = np.random.default_rng(1)
    fitted = perturbed(TRUTH, rng, scale=0.3, k_extra=1)
    fitted["beta0"][1] += 1.0
    a = voronoi_d2(fitted, TRUTH, gauge="reference")
    b = voronoi_d2(permute(fitted, [0, 2, 1]), TRUTH, gauge="reference")
    assert abs(a - b) > 1e-3


# ------------------------------------------------------------------ the infimum

finite = st.floats(-3, 3, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k_extra=st.integers(0, 2), scale=st.floats(0.01, 3.0),
       gauge=st.sampled_from(["mass", "reference"]), t0=finite, t1=st.floats(-30, 30))
def test_infimum_never_above_the_objective_anywhere(seed, k_extra, scale, gauge, t0, t1):
    rng = np.random.default_rng(seed)
    fitted = perturbed(TRUTH, rng, scale=scale, k_extra=k_extra)
    fitted["beta0"] = fitted["beta0"] + rng.normal(0, 2, size=fitted["beta0"].shape)
    kind = "d1" if k_extra == 0 else "d2"
    inf = voronoi_loss(fitted, TRUTH, kind=kind, gauge=gauge)
    no_inf = voronoi_loss(fitted, TRUTH, kind=kind, infimum=False, gauge=gauge)
    assert inf.value <= no_inf.value * (1 + 1e-12) + 1e-15
    # the no-infimum value is the spec's objective at (0, 0); the infimum value is the
    # objective at the reported (t0, t1) and is below the objective at any other (t0, t1)
    assert no_inf.value == pytest.approx(naive_objective(fitted, TRUTH, kind, 0.0, 0.0, gauge))
    assert inf.value == pytest.approx(
        naive_objective(fitted, TRUTH, kind, inf.t0, inf.t1, gauge), rel=1e-9, abs=1e-12)
    assert inf.value <= naive_objective(fitted, TRUTH, kind, t0, t1, gauge) * (1 + 1e-9) + 1e-12


def test_default_infimum_below_authors_variant_near_the_truth():
    # Defaults: infimum in the mass gauge vs the authors' (reference gauge, t = 0).
    rng = np.random.default_rng(2)
    for k_extra in [0, 1, 2]:
        for _ in range(20):
            fitted = perturbed(TRUTH, rng, scale=0.05, k_extra=k_extra)
            kind = "d1" if k_extra == 0 else "d2"
            assert voronoi_loss(fitted, TRUTH, kind=kind).value <= voronoi_loss(
                fitted, TRUTH, kind=kind, infimum=False).value


def test_split_reference_expert_goes_to_zero_with_infimum_stuck_without():
    """The authors' pitfall: a redundant expert splitting the reference expert."""
    with_inf, without = [], []
    for eps in [1e-1, 1e-2, 1e-3, 1e-4]:
        split = {
            "beta0": np.array([-8.0 + np.log(2.0) + eps, eps, 0.0]),
            "beta1": np.array([25.0 + eps, -eps, 0.0]),
            "a": np.array([-20.0, 20.0 + eps, 20.0 - eps]),
            "b": np.array([15.0, -5.0 - eps, -5.0 + eps]),
            "nu": np.array([0.09, 0.16 + eps, 0.16]),
        }
        with_inf.append(voronoi_d2(split, TRUTH))
        without.append(voronoi_d2(split, TRUTH, infimum=False))
    assert with_inf[-1] < 1e-3 and np.all(np.diff(with_inf) < 0)
    # stuck at |S_2 - 1| = |e^eps + 1 - 1| ~ 1 for every eps
    assert np.allclose(without, 1.0, atol=0.15)
    assert min(without) > 0.99


# ------------------------------------------------------------------ the two 1-D solvers


@pytest.mark.parametrize("seed", range(20))
def test_t0_solver_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 6))
    S = rng.exponential(size=k) * (rng.random(k) < 0.7)  # some empty cells
    if S.sum() == 0:
        S[0] = 0.5
    m = rng.exponential(size=k)
    t0, value = _voronoi_t0(S, m)
    # inf over u > 0 = min over u >= 0 (continuity): a fine grid, the limit u = 0, the kinks
    u_grid = np.concatenate([np.geomspace(1e-8, 1e4, 200_001), [0.0], S[S > 0] / m[S > 0]])
    brute = np.abs(S[None, :] - m[None, :] * u_grid[:, None]).sum(axis=1)
    assert value == pytest.approx(brute.min(), rel=1e-12, abs=1e-15)
    u = np.exp(t0) if np.isfinite(t0) else 0.0
    assert value == pytest.approx(np.abs(S - m * u).sum(), rel=1e-12)


def test_t0_limit_case_when_empty_cells_dominate():
    # S/m = (0, 0, 1) with weights (1, 1, 0.5): the median is 0, inf over u > 0 is at u -> 0.
    t0, value = _voronoi_t0(np.array([0.0, 0.0, 0.5]), np.array([1.0, 1.0, 0.5]))
    assert t0 == -np.inf and value == pytest.approx(0.5)


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("seed", range(6))
def test_t1_solver_matches_brute_force(d, seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6))
    delta = rng.normal(size=(k, d))
    weight = rng.exponential(size=k)
    power = rng.choice([1.0, 4.0, 6.0], size=k)
    t1, value = _voronoi_t1(delta, weight, power)

    def f(t):
        return weight @ np.linalg.norm(delta - t, axis=1) ** power

    assert value == pytest.approx(f(t1))
    lo, hi = delta.min(axis=0) - 0.1, delta.max(axis=0) + 0.1
    if d == 1:
        grid = np.concatenate([np.linspace(lo[0], hi[0], 200_001), delta[:, 0]])
        brute = (weight[None, :] * np.abs(delta[None, :, 0] - grid[:, None])
                 ** power[None, :]).sum(axis=1)
        assert value <= brute.min() + 1e-9
        assert value >= brute.min() - 1e-6 * weight.sum()
    else:
        g1 = np.linspace(lo[0], hi[0], 401)
        g2 = np.linspace(lo[1], hi[1], 401)
        grid = np.stack(np.meshgrid(g1, g2), axis=-1).reshape(-1, 2)
        brute = (weight[None, :] * np.linalg.norm(
            delta[None, :, :] - grid[:, None, :], axis=2) ** power[None, :]).sum(axis=1)
        assert value <= brute.min() + 1e-9
        # and not far below a fine grid (the grid spacing bounds the gap for these powers)
        assert value >= brute.min() - 0.05 * weight.sum()


def test_t1_is_a_weighted_median_for_d1_powers_one():
    delta = np.array([[0.0], [1.0], [5.0], [-2.0]])
    weight = np.array([1.0, 3.0, 1.0, 1.0])
    t1, value = _voronoi_t1(delta, weight, np.ones(4))
    assert t1 == pytest.approx([1.0])
    assert value == pytest.approx(1 + 4 + 3)


def test_d2_with_d2_features_against_naive():
    rng = np.random.default_rng(5)
    true = {"beta0": [0.5, 0.0], "beta1": [[2.0, -1.0], [0.0, 0.0]], "a": [[1.0, 0.0], [-1.0, 1.0]],
                "b": [0.0, 2.0], "nu": [0.5, 1.0]}
    fitted = perturbed({k: np.asarray(v, float) for k, v in true.items()}, rng, scale=0.2,
                       k_extra=1)
    res = voronoi_loss(fitted, true, kind="d2", gauge="reference")
    assert res.t1.shape == (2,)
    assert res.value == pytest.approx(
        naive_objective(fitted, true, "d2", res.t0, res.t1), rel=1e-9)
    assert res.value <= voronoi_d2(fitted, true, infimum=False)


# ------------------------------------------------------------------ inputs


def test_accepts_moe_params_and_sequences():
    from softmix.moe.model import MoEParams

    rng = np.random.default_rng(3)
    fitted = perturbed(TRUTH, rng, scale=0.1, k_extra=1)
    fitted = translate(fitted, -fitted["beta0"][-1], -fitted["beta1"][-1])

    def to_params(m):
        return MoEParams(
            gating=np.column_stack([m["beta0"], m["beta1"]]),
            expert_coef=np.column_stack([m["b"], m["a"]]),
            expert_variance=m["nu"],
        )

    want = voronoi_d2(fitted, TRUTH)
    assert voronoi_d2(to_params(fitted), to_params(TRUTH)) == pytest.approx(want)
    seq = tuple(fitted[key] for key in ("beta0", "beta1", "a", "b", "nu"))
    assert voronoi_d2(seq, TRUTH) == pytest.approx(want)
    one_d = dict(fitted, beta1=fitted["beta1"][:, 0], a=fitted["a"][:, 0])
    assert voronoi_d2(one_d, TRUTH) == pytest.approx(want)
    assert float(voronoi_loss(fitted, TRUTH, kind="d2")) == want


def test_error_for_cells_of_four_atoms_unless_rbar_given():
    rng = np.random.default_rng(4)
    fitted = perturbed(TRUTH, rng, scale=0.01, k_extra=3)  # 4 atoms near the reference
    with pytest.raises(ValueError, match=r"m = 4 fitted experts.*rbar=\{4: value\}"):
        voronoi_d2(fitted, TRUTH)
    value = voronoi_d2(fitted, TRUTH, rbar={4: 8.0})
    assert voronoi_loss(fitted, TRUTH, kind="d2", rbar={4: 8.0}).cell_exponent.tolist() == [
        1.0, 8.0]
    assert 0 < value < voronoi_d2(fitted, TRUTH, rbar={4: 8.0}, infimum=False)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"beta1": np.zeros((3, 1))}, r"fitted\['beta1'\] must have shape \(2, 1\)"),
        ({"a": np.zeros((2, 2))}, r"fitted\['a'\] must have shape \(2, 1\)"),
        ({"b": np.zeros(3)}, r"fitted\['b'\] must have shape \(2,\)"),
        ({"nu": np.array([0.1, 0.0])}, r"fitted\['nu'\] must hold positive variances"),
        ({"b": np.array([np.nan, 0.0])}, r"fitted\['b'\] contains 1 NaN"),
        ({"beta0": np.zeros((2, 1))}, r"fitted\['beta0'\] must be 1-D"),
    ],
)
def test_bad_shapes_and_values(change, match):
    fitted = dict(TRUTH, **change)
    with pytest.raises(ValueError, match=match):
        voronoi_d1(fitted, TRUTH)


def test_bad_arguments():
    three = perturbed(TRUTH, np.random.default_rng(0), k_extra=1)
    with pytest.raises(ValueError, match="D1 is the exact-specified loss.*k = 3 fitted"):
        voronoi_d1(three, TRUTH)
    with pytest.raises(ValueError, match="D2 is the over-specified loss.*k = 2 fitted"):
        voronoi_d2(TRUTH, three)
    with pytest.raises(ValueError, match="same number of features"):
        voronoi_d1(dict(TRUTH, beta1=np.zeros((2, 2)), a=np.zeros((2, 2))), TRUTH)
    with pytest.raises(ValueError, match="missing the key"):
        voronoi_d1({"beta0": [0.0, 0.0]}, TRUTH)
    with pytest.raises(TypeError, match="fitted must be a softmix.moe.model.MoEParams"):
        voronoi_d1("model", TRUTH)
    with pytest.raises(ValueError, match="kind must be one of"):
        voronoi_loss(TRUTH, TRUTH, kind="d3")
    with pytest.raises(ValueError, match="gauge must be one of"):
        voronoi_d1(TRUTH, TRUTH, gauge="first")
    with pytest.raises(TypeError, match="infimum must be True or False"):
        voronoi_d1(TRUTH, TRUTH, infimum="yes")
    with pytest.raises(ValueError, match="rbar key"):
        voronoi_d2(TRUTH, TRUTH, rbar={1: 2.0})
    with pytest.raises(ValueError, match=r"rbar\[4\] must be >= 1"):
        voronoi_d2(TRUTH, TRUTH, rbar={4: 0.5})
    with pytest.raises(TypeError, match="rbar must be a mapping"):
        voronoi_d2(TRUTH, TRUTH, rbar=[4.0])
    with pytest.raises(ValueError, match="too large for exp"):
        voronoi_d1(dict(TRUTH, beta0=np.array([800.0, 0.0])), TRUTH, gauge="reference")
