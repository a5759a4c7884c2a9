"""moe-inverted-images: the per-iteration trace stays aligned with the history on every stop."""

import numpy as np

from softmix.experiments import moe_inverted_images as mii


def _tiny(rng):
    X = rng.random((60, 4))
    y = (X[:, 0] > 0.5).astype(int) + (X[:, 1] > 0.5).astype(int)
    return {"X_train": X, "y_train": y}


def test_trace_matches_history_after_a_non_finite_stop():
    rng = np.random.default_rng(0)
    config = mii.Config(n_iter=40, ridge=0.0)
    data = _tiny(rng)
    params0 = mii._start(config, 4, 3, rng)
    # a step of 1e307 overflows the objective: stop_reason "non_finite"
    fit, trace = mii.fit_with_trace("gd", data, params0, config, {"gd": 1e307})
    assert fit.stop_reason == "non_finite"
    assert len(trace) == len(fit.history)
    assert trace[-1] is fit.params
    for t, params in enumerate(trace):  # every row's objective is the one of its parameters
        value = mii.fit_em(data["X_train"], data["y_train"], params, max_iter=0,
                           warn=False).objective
        assert np.isclose(value, fit.history[t])


def test_trace_matches_history_after_max_iter():
    rng = np.random.default_rng(1)
    config = mii.Config(n_iter=3, ridge=1.0)
    data = _tiny(rng)
    params0 = mii._start(config, 4, 3, rng)
    fit, trace = mii.fit_with_trace("em", data, params0, config, {})
    assert fit.stop_reason == "max_iter" and len(trace) == len(fit.history) == 4
    assert trace[0] is params0
