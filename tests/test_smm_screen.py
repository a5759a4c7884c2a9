"""Screened restarts (SoftmaxMixture(screen_iter=...), softmix.core.restarts.Screen)."""

import json
import warnings

import numpy as np
import pytest

from softmix import SoftmaxMixture
from softmix.core.restarts import SCREEN_KEEP, Screen, fit_with_restarts, spawn
from softmix.core.result import FitResult
from softmix.datasets import make_softmax_mixture
from softmix.exceptions import ConvergenceWarning
from softmix.softmax_mixture.em import fit_em, prepare_design
from softmix.softmax_mixture.init import resolve_init


def _data(seed=0, p=300, big_l=4, k=3, n=20_000):
    d = make_softmax_mixture(n, p, big_l, k, return_choices=False, random_state=seed)
    return d.features, d.counts


def _fit(x, counts, **kw):
    kw = {"random_state": 3, **kw}
    return SoftmaxMixture(3, **kw).fit(x, counts=counts)


def test_screened_fit_is_the_by_hand_search():
    """Oracle: every start's first 4 cycles, the two best continued, the better one kept."""
    x, counts = _data()
    model = _fit(x, counts, n_init=6, screen_iter=4)
    design = prepare_design(x)
    screened = []
    for child in spawn(np.random.default_rng(3), 6):
        start, _ = resolve_init("random", x, counts, 3, child, design=design)
        screened.append(fit_em(design, counts, start, m_step="auto", max_iter=4,
                               accelerate="squarem", newton_max_iter=1, warn=False))
    values = [r.objective for r in screened]
    best_two = np.argsort(values)[::-1][:SCREEN_KEEP]
    finals = {int(i): fit_em(design, counts, screened[i].params,
                             m_step=screened[i].extra["m_step"], max_iter=1000 - 4,
                             accelerate="squarem", newton_max_iter=1) for i in best_two}
    winner = max(finals, key=lambda i: finals[i].objective)
    assert model.log_likelihood_ == pytest.approx(finals[winner].objective, rel=1e-12)
    assert model.n_iter_ == screened[winner].n_iter + finals[winner].n_iter
    assert model.converged_
    screen = model.fit_result_.extra["screen"]
    assert screen["n_iter"] == 4 and screen["n_init"] == 6
    assert screen["continued"] == [int(i) for i in best_two]
    np.testing.assert_allclose(screen["screened_objectives"], values, rtol=1e-12)
    expected = np.array(values)
    for i, r in finals.items():
        expected[i] = r.objective
    np.testing.assert_allclose(model.fit_result_.all_objectives, expected, rtol=1e-12)
    json.dumps(screen)  # plain data


def test_history_is_one_run():
    x, counts = _data()
    model = _fit(x, counts, n_init=5, screen_iter=3)
    h = model.history_
    assert h.shape == (model.n_iter_ + 1,)
    assert h[-1] == pytest.approx(model.log_likelihood_, rel=1e-12)
    assert np.all(np.diff(h) >= -1e-9 * abs(h[-1]))  # monotone through the join


@pytest.mark.parametrize("kw", [{"screen_iter": None}, {"screen_iter": 5, "n_init": 2},
                                {"screen_iter": 1000}])
def test_no_screen_is_plain_restarts(kw):
    """No screen, or one that would continue every start / cover the whole budget."""
    x, counts = _data()
    kw = {"n_init": 4, **kw}
    plain = _fit(x, counts, n_init=kw["n_init"])
    other = _fit(x, counts, **kw)
    np.testing.assert_array_equal(plain.atoms_, other.atoms_)
    np.testing.assert_array_equal(plain.fit_result_.all_objectives,
                                  other.fit_result_.all_objectives)
    assert "screen" not in other.fit_result_.extra


@pytest.mark.parametrize("bad", [0, -2, 1.5, "12", True])
def test_bad_screen_iter_is_named(bad):
    x, counts = _data()
    with pytest.raises((ValueError, TypeError), match="screen_iter"):
        _fit(x, counts, n_init=4, screen_iter=bad)


def test_screen_end_does_not_warn_and_the_winner_does():
    x, counts = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        _fit(x, counts, n_init=5, screen_iter=2)  # every screen stops at its budget: silent
    with pytest.warns(ConvergenceWarning, match="max_iter=4 iterations"):  # the whole budget
        model = _fit(x, counts, n_init=5, screen_iter=2, max_iter=4)
    assert not model.converged_ and model.stop_reason_ == "max_iter"
    assert model.n_iter_ == 4


def test_callback_sees_one_numbering_per_run():
    x, counts = _data()
    seen = []
    _fit(x, counts, n_init=4, screen_iter=3, callback=lambda it, p, v: seen.append(it))
    assert seen[:12] == [0, 1, 2] * 4  # 4 screens of 3 iterations
    rest = seen[12:]  # then each continued start, numbered on from its screen
    second = next(i for i in range(1, len(rest)) if rest[i] <= rest[i - 1])
    assert rest[:second] == list(range(3, 3 + second))
    assert rest[second:] == list(range(3, 3 + len(rest) - second))


def test_callback_stop_during_the_screen_is_respected():
    x, counts = _data()
    model = _fit(x, counts, n_init=4, screen_iter=5, callback=lambda it, p, v: it >= 1)
    plain = _fit(x, counts, n_init=1, callback=lambda it, p, v: it >= 1)
    assert model.stop_reason_ == plain.stop_reason_ == "callback"
    assert model.n_iter_ == plain.n_iter_ < 5  # not continued past the user's stop


def test_equivariant_under_permuting_alternatives_and_doubling():
    x, counts = _data()
    ref = _fit(x, counts, n_init=5, screen_iter=3)
    perm = np.random.default_rng(1).permutation(x.shape[0])
    moved = _fit(x[perm], counts[perm], n_init=5, screen_iter=3)
    doubled = _fit(x, 2 * counts, n_init=5, screen_iter=3)
    assert moved.log_likelihood_ == pytest.approx(ref.log_likelihood_, rel=1e-9)
    assert doubled.log_likelihood_ == pytest.approx(2 * ref.log_likelihood_, rel=1e-9)
    np.testing.assert_allclose(moved.weights_, ref.weights_, atol=1e-5)
    np.testing.assert_allclose(doubled.atoms_, ref.atoms_, atol=1e-3)


def test_panel_fit_screens_too():
    x, _ = _data(n=10)
    rng = np.random.default_rng(0)
    choices = rng.integers(0, x.shape[0], 600)
    groups = np.repeat(np.arange(60), 10)
    model = SoftmaxMixture(2, n_init=4, screen_iter=2, random_state=0).fit(
        x, choices, groups=groups)
    screen = model.fit_result_.extra["screen"]
    assert len(screen["continued"]) == SCREEN_KEEP
    assert model.history_.shape == (model.n_iter_ + 1,)
    assert model.history_[-1] == pytest.approx(model.log_likelihood_, rel=1e-12)


def test_saved_and_loaded_with_its_screen(tmp_path):
    import softmix

    x, counts = _data()
    model = _fit(x, counts, n_init=4, screen_iter=3)
    back = softmix.load(model.save(tmp_path / "m.softmix"))
    assert back.get_params()["screen_iter"] == 3
    np.testing.assert_array_equal(back.atoms_, model.atoms_)


def test_generic_screen_ranks_nan_last_and_keeps_the_start_warnings():
    def start(child):
        value = float(child.random())
        if value < 0.5:
            value = float("nan")
        warnings.warn(f"start {value}")
        return FitResult(value, value, False, 1, "max_iter", np.array([0.0, value]))

    def resume(first):
        return FitResult(first.params, first.objective + 1.0, True, 2, "tol",
                         np.array([first.objective, first.objective + 0.5,
                                   first.objective + 1.0]))

    rng = np.random.default_rng(0)
    values = [float(c.random()) for c in spawn(np.random.default_rng(0), 8)]
    with pytest.warns(UserWarning) as caught:
        result = fit_with_restarts(lambda c: start(c), 8, rng,
                                   screen=Screen(1, start, resume))
    finite = [v for v in values if v >= 0.5]
    assert result.objective == pytest.approx(max(finite) + 1.0)
    assert result.n_iter == 3 and result.history.shape == (4,)
    assert [str(w.message) for w in caught] == [f"start {max(finite)}"]
    assert np.isnan(result.all_objectives).sum() == sum(v < 0.5 for v in values)


def test_cli_fit_smm_screen_iter(tmp_path, capsys):
    from softmix.cli import main

    x, counts = _data()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "c.npy", counts)
    code = main(["fit", "smm", "--features", str(tmp_path / "x.npy"), "--counts",
                 str(tmp_path / "c.npy"), "-k", "3", "--n-init", "5", "--screen-iter", "3",
                 "--seed", "3", "--out", str(tmp_path / "m.softmix")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "best of 5 run(s) (every start screened by 3 iterations, the best 2 continued)" in out
    ref = _fit(x, counts, n_init=5, screen_iter=3)
    assert f"{ref.log_likelihood_:,.4f}" in out
    with pytest.raises(SystemExit):
        main(["fit", "smm", "--features", str(tmp_path / "x.npy"), "--counts",
              str(tmp_path / "c.npy"), "-k", "3", "--screen-iter", "0", "--out",
              str(tmp_path / "n.softmix")])
    assert "--screen-iter" in capsys.readouterr().err
