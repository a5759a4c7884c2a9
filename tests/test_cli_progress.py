"""softmix.io.progress: restarts x iterations of a fit and grid steps, on a terminal only."""

import io

import numpy as np
import pytest

from softmix import SoftmaxMixture
from softmix.datasets import make_softmax_mixture
from softmix.io.progress import Progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(scope="module")
def data():
    return make_softmax_mixture(2000, 40, 2, 2, return_choices=False, random_state=0)


def test_nothing_when_not_a_terminal(data):
    stream = io.StringIO()
    progress = Progress(stream)
    assert not progress.enabled
    with progress.fit("fit", n_init=2, max_iter=10) as callback:
        assert callback is None
    assert progress.steps("grid") is None
    assert stream.getvalue() == ""


@pytest.mark.parametrize("use_rich", [False, None])
def test_fit_progress_counts_restarts(data, use_rich):
    if use_rich is None:
        pytest.importorskip("rich")
    stream = _Tty()
    progress = Progress(stream, use_rich=use_rich)
    assert progress.enabled
    model = SoftmaxMixture(2, n_init=3, max_iter=5, tol=0, random_state=0)
    with progress.fit("fit smm", n_init=3, max_iter=5) as callback:
        model.set_params(callback=callback).fit(data.features, counts=data.counts)
    ref = SoftmaxMixture(2, n_init=3, max_iter=5, tol=0, random_state=0).fit(
        data.features, counts=data.counts)
    assert model.log_likelihood_ == ref.log_likelihood_  # the callback never changes a fit
    text = stream.getvalue()
    if use_rich is False:
        assert "fit smm restart 3/3 iteration 5/5" in text
        assert "restart 4/3" not in text and text.endswith("\n")


def test_grid_steps_plain():
    stream = _Tty()
    report = Progress(stream, use_rich=False).steps("smm-cost")
    for done in range(4):
        report(done, 3)
    assert "smm-cost [" in stream.getvalue() and "3/3" in stream.getvalue()
    assert np.char.count(stream.getvalue(), "\n") == 1
