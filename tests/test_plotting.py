"""softmix.plotting: every figure renders to a non-empty PNG with the Agg backend; bad inputs
are clear errors; ``import softmix`` imports neither matplotlib nor softmix.plotting."""

import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from softmix import plotting

PNG = b"\x89PNG\r\n\x1a\n"


def _png(path):
    data = path.read_bytes()
    assert data[:8] == PNG, path
    assert len(data) > 5000, (path, len(data))  # a drawn figure, not an empty canvas
    return data


def test_convergence_gap_on_log_axis(tmp_path):
    history = -100 - 50 * 0.5 ** np.arange(30)  # linear convergence to -100
    title = "EM convergence on a long and descriptive title " * 3
    path = plotting.plot_convergence(history, tmp_path / "c.png", title=title)
    assert path == tmp_path / "c.png"
    _png(path)
    fig = plotting.plot_convergence(history, title=title)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    (line,) = [ln for ln in ax.get_lines() if len(ln.get_xdata())]
    gap = line.get_ydata()
    # the gap to the final value, the zero at the end left out
    np.testing.assert_allclose(gap, (history.max() - history)[:-1])
    assert len(ax.get_title().splitlines()) > 1  # a long title is wrapped, not cut off
    matplotlib.pyplot.close(fig)
    # several runs, and a history with no iteration
    fig = plotting.plot_convergence([history, history[:10] - 1], labels=["a", "b"])
    assert len([ln for ln in fig.axes[0].get_lines() if len(ln.get_xdata())]) == 2
    matplotlib.pyplot.close(fig)
    _png(plotting.plot_convergence(np.array([-5.0]), tmp_path / "flat.png"))


def test_selection_curve_marks_the_chosen_k(tmp_path):
    ks, bic = [1, 2, 3, 4], [130.0, 100.0, 104.0, float("nan")]
    fig = plotting.plot_selection(ks, bic)
    star = [ln for ln in fig.axes[0].get_lines() if ln.get_marker() == "*"]
    assert star and star[0].get_xdata()[0] == 2  # smallest BIC
    matplotlib.pyplot.close(fig)
    _png(plotting.plot_selection(ks, bic, tmp_path / "s.png", chosen=3))
    # a table (rows or columns), as SelectionResult.plot() may pass it
    rows = [{"n_components": k, "AIC": v} for k, v in zip(ks, bic)]
    for table, kw, best in ((rows, {"criterion": "AIC"}, 2),
                            ({"n_components": ks, "loglik": [-5, -3, -2, -1.9]},
                             {"criterion": "loglik", "lower_is_better": False}, 4)):
        fig = plotting.plot_selection(table, **kw)
        star = [ln for ln in fig.axes[0].get_lines() if ln.get_marker() == "*"]
        assert star[0].get_xdata()[0] == best
        matplotlib.pyplot.close(fig)
    with pytest.raises(ValueError, match="one entry each"):
        plotting.plot_selection([1, 2], [1.0])
    with pytest.raises(ValueError, match="needs 'n_components' and 'BIC' columns"):
        plotting.plot_selection({"k": [1]})


def test_parameters_against_truth_with_intervals(tmp_path):
    rng = np.random.default_rng(0)
    true = rng.normal(size=(3, 4))
    fitted = true + 0.05 * rng.normal(size=true.shape)
    _png(plotting.plot_parameters(fitted, true, tmp_path / "p.png", lower=fitted - 0.1,
                                  upper=fitted + 0.1))
    _png(plotting.plot_parameters(fitted, path=tmp_path / "q.png"))
    matplotlib.pyplot.close(plotting.plot_parameters(fitted[0]))
    with pytest.raises(ValueError, match="true must have the shape of fitted"):
        plotting.plot_parameters(fitted, true[:2])
    with pytest.raises(ValueError, match="give both lower and upper"):
        plotting.plot_parameters(fitted, lower=fitted)


def test_gate_probabilities_and_membership(tmp_path):
    x = np.linspace(-2, 2, 50)
    p1 = 1 / (1 + np.exp(-3 * x))
    proba = np.column_stack([p1, 1 - p1])
    _png(plotting.plot_gate_probabilities(x, proba, tmp_path / "g.png", covariate_name="age"))
    _png(plotting.plot_membership(proba, tmp_path / "m.png"))
    _png(plotting.plot_membership(np.ones((5, 1)), tmp_path / "one.png"))
    with pytest.raises(ValueError, match=r"proba must have shape \(50, n_experts\)"):
        plotting.plot_gate_probabilities(x, proba[:3])
    with pytest.raises(ValueError, match=r"proba must have shape \(n, K\)"):
        plotting.plot_membership(np.ones(3))


def test_demo_figure_is_the_gap_plot(tmp_path, monkeypatch):
    from softmix import demo

    monkeypatch.setattr(demo, "DEMO_INIT", "random")  # the figure, not the (slower) SDP start
    report = demo.run_demo(n_samples=2000, n_alternatives=100, n_features=2, n_components=2,
                      seed=0, out=tmp_path)
    assert "gap to the final log-likelihood, log scale" in report
    _png(tmp_path / "demo_loglik.png")


def test_import_softmix_stays_light():
    code = ("import sys, softmix; bad = [m for m in ('matplotlib', 'softmix.plotting', "
            "'pyarrow', 'rich') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"
