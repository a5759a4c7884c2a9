"""`softmix demo`: the table, the figure, the CLI entry point."""

import numpy as np
import pytest

from softmix.cli import main
from softmix.demo import run_demo


def test_run_demo_prints_matched_table_and_saves_figure(tmp_path):
    report = run_demo(n_samples=50_000, n_alternatives=2_000, n_features=3, n_components=2,
                      seed=0, out=tmp_path)
    assert "p = 2,000 alternatives, L = 3 features, K = 2 components, N = 50,000" in report
    rows = [line.split() for line in report.splitlines()
            if line[:2].strip() in {"0", "1"} and len(line.split()) == 4]
    assert len(rows) == 2
    true_w = np.array([float(r[1]) for r in rows])
    est_w = np.array([float(r[2]) for r in rows])
    np.testing.assert_allclose(true_w, [0.4, 0.6], atol=1e-3)
    assert np.all(np.abs(est_w - true_w) < 0.1)
    assert "atom error  max" in report and "converged=True" in report
    assert "init=" in report and "seconds:" in report
    assert (tmp_path / "demo_loglik.png").stat().st_size > 1000


def test_cli_demo(tmp_path, capsys):
    code = main(["demo", "--n-samples", "20000", "--n-alternatives", "500", "--n-features", "2",
                 "--n-components", "2", "--out", str(tmp_path)])
    assert code == 0
    assert "atom error" in capsys.readouterr().out


def test_cli_demo_bad_input(capsys):
    assert main(["demo", "--n-components", "0", "--n-samples", "100",
                 "--n-alternatives", "50"]) == 2
    assert "n_components must be >= 1" in capsys.readouterr().err


def test_cli_out_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["demo", "--n-samples", "1000", "--n-alternatives", "50", "--n-features", "1",
                 "--n-components", "1", "--out", str(afile)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("softmix: error: cannot write the outputs") and "--out" in err
    assert "Traceback" not in err


def test_cli_negative_seed_names_the_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "smm-cost", "--seed", "-1"])
    assert exc.value.code == 2
    assert "argument --seed: must be a non-negative integer, got '-1'" in capsys.readouterr().err


def test_demo_reports_the_start_actually_used_when_mom_falls_back():
    # p = 300 is too small for the moment method here: "auto" picks "mom", which falls back
    report = run_demo(n_samples=1_000, n_alternatives=300, n_features=1, n_components=1, seed=0,
                      out=None)
    assert "falling back to init='subspace'" in report
    assert "start: subspace (init='mom' fell back to it" in report
    assert "start: mom" not in report


def test_cli_version(capsys):
    from softmix import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"softmix {__version__}"


def test_cli_missing_optional_extra_is_a_one_line_error(monkeypatch, capsys):
    import softmix.demo

    def no_cvxpy(**kwargs):
        raise ImportError("init='mom' needs cvxpy: pip install 'softmix[mom]'")

    monkeypatch.setattr(softmix.demo, "run_demo", no_cvxpy)
    assert main(["demo"]) == 2
    assert capsys.readouterr().err == (
        "softmix: error: init='mom' needs cvxpy: pip install 'softmix[mom]'\n")


def test_cli_ctrl_c_exits_130_without_traceback(monkeypatch, capsys):
    import softmix.demo

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(softmix.demo, "run_demo", interrupted)
    assert main(["demo"]) == 130
    assert capsys.readouterr().err.strip() == "softmix: interrupted"


def test_cli_demo_counts_accept_the_help_notation(monkeypatch):
    import softmix.demo

    seen = {}
    monkeypatch.setattr(softmix.demo, "run_demo", lambda **kw: seen.update(kw) or "report")
    assert main(["demo", "--n-samples", "1e6", "--n-alternatives", "20_000"]) == 0
    assert seen["n_samples"] == 1_000_000 and seen["n_alternatives"] == 20_000
    assert isinstance(seen["n_samples"], int)


def test_cli_demo_non_integer_count_names_the_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--n-samples", "2.5"])
    assert exc.value.code == 2
    assert "argument --n-samples: must be an integer (e.g. 1000000 or 1e6), got '2.5'" in (
        capsys.readouterr().err)
