"""`softmix select smm|moe` end to end on files the tests write: the table, the chosen K, --json,
--out (the best estimator, loadable), --plot (selection.png), progress per K, bad input."""

import io
import json

import numpy as np
import pytest

from softmix import MixtureOfExperts, SoftmaxMixture, load, select_n_components
from softmix.cli import main
from softmix.datasets import make_moe, make_softmax_mixture
from softmix.io.progress import Progress
from softmix.io.workflow import parse_grid, select_smm_files

PNG = b"\x89PNG\r\n\x1a\n"


def _write_csv(path, columns):
    names = list(columns)
    with open(path, "w") as fh:
        fh.write(",".join(names) + "\n")
        fh.writelines(",".join(repr(float(v)) for v in row) + "\n"
                      for row in zip(*(columns[n] for n in names)))
    return path


@pytest.fixture(scope="module")
def smm_files(tmp_path_factory):
    # two well-separated atoms, N = 3000 draws over p = 60 alternatives
    d = make_softmax_mixture(3000, 60, 2, 2, random_state=0)
    root = tmp_path_factory.mktemp("select_smm")
    np.save(root / "features.npy", d.features)
    with open(root / "counts.csv", "w") as fh:
        fh.write("count\n")
        fh.writelines(f"{int(v)}\n" for v in d.counts)
    return root, d


@pytest.fixture(scope="module")
def moe_csv(tmp_path_factory):
    X, y, _ = make_moe(300, 2, 2, expert="gaussian", random_state=0)
    root = tmp_path_factory.mktemp("select_moe")
    _write_csv(root / "reg.csv", {"age": X[:, 0], "income": X[:, 1], "y": y})
    return root / "reg.csv", X, y


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_select_smm_npy_csv_chooses_two_json_out_plot(tmp_path, smm_files, capsys):
    root, d = smm_files
    model_path, figs = tmp_path / "best.softmix", tmp_path / "figs"
    code, out, err = _run(["select", "smm", "--features", root / "features.npy", "--counts",
                           root / "counts.csv", "-k", "1-3", "--n-init", "2", "--seed", "1",
                           "--out", model_path, "--plot", figs, "--json"], capsys)
    assert code == 0, err
    assert err == ""  # no warning (K = 2 is inside the grid), no progress off a terminal
    report = json.loads(out)  # one JSON object
    assert report["grid"] == [1, 2, 3] and report["criterion"] == "bic"
    assert report["best_n_components"] == 2
    assert report["table"]["n_components"] == [1, 2, 3]
    assert report["table"]["heldout"] == [None, None, None]  # NaN -> null
    assert report["table"]["n_converged"] == [2, 2, 2]
    bic = report["table"]["bic"]
    assert bic[1] == min(bic)
    assert set(report["seconds"]) >= {"read", "select", "save", "plot", "total"}
    # the CLI sweep is the library sweep with the same settings
    ref = select_n_components(SoftmaxMixture(1, n_init=2), [1, 2, 3], d.features,
                              counts=d.counts.astype(float), n_init=2, random_state=1)
    assert bic == [float(v) for v in ref.table["bic"]]
    model = load(model_path, expected=SoftmaxMixture)
    assert report["model"] == str(model_path)
    assert model.n_components == 2
    assert model.log_likelihood_ == ref.best_estimator_.log_likelihood_
    assert model.log_likelihood_ == report["log_likelihood"]
    np.testing.assert_array_equal(model.atoms_, ref.best_estimator_.atoms_)
    png = figs / "selection.png"
    assert report["plots"] == [str(png)]
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == PNG


def test_select_smm_text_and_edge_warning(smm_files, capsys):
    root, _ = smm_files
    code, out, err = _run(["select", "smm", "--features", root / "features.npy", "--counts",
                           root / "counts.csv", "-k", "1,2", "--criterion", "aic"], capsys)
    assert code == 0, err
    assert "chosen K = 2 by aic over [1, 2]" in out
    assert out.splitlines()[0].split()[:3] == ["K", "loglik", "params"]
    assert " *" in out.splitlines()[2]  # the chosen row is marked
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("softmix: warning: SoftmixWarning")
    assert "end of the grid" in lines[0]


def test_select_moe_csv_heldout(tmp_path, moe_csv, capsys):
    path = moe_csv[0]
    code, out, err = _run(["select", "moe", "--data", path, "-y", "y", "--x", "age,income",
                           "-k", "1-3", "--criterion", "heldout", "--folds", "3",
                           "--n-init", "2",
                           "--out", tmp_path / "moe.softmix", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["best_n_components"] == 2 and report["criterion"] == "heldout"
    assert all(v is not None for v in report["table"]["heldout"])
    model = load(tmp_path / "moe.softmix", expected=MixtureOfExperts)
    assert model.n_experts == 2
    assert model.log_likelihood_ == report["log_likelihood"]
    # the saved model keeps the table's columns: summary/predict read it like a `fit` model
    assert main(["summary", str(tmp_path / "moe.softmix"), "--data", str(path)]) == 0


def test_progress_one_line_per_k_on_a_terminal(smm_files):
    root, _ = smm_files
    stream = io.StringIO()
    report = select_smm_files(root / "features.npy", counts=root / "counts.csv", grid=[1, 2],
                              progress=Progress(stream, enabled=True, use_rich=False))
    assert report["best_n_components"] == 2
    shown = stream.getvalue()
    assert "select smm" in shown and "0/2" in shown and "1/2" in shown and "2/2" in shown


@pytest.mark.parametrize("text, grid", [("1-6", [1, 2, 3, 4, 5, 6]), ("2,3,5", [2, 3, 5]),
                                        (" 4 ", [4]), ("3,1", [1, 3])])
def test_parse_grid(text, grid):
    assert parse_grid(text) == grid


@pytest.mark.parametrize("k", ["0-3", "4-2", "a", "1-", "2,2", "1-2-3", "1.5"])
def test_bad_k_exits_2_with_one_line(smm_files, capsys, k):
    root, _ = smm_files
    code, out, err = _run(["select", "smm", "--features", root / "features.npy", "--counts",
                           root / "counts.csv", "-k", k], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("softmix: error: -k ")
    assert "1-6" in lines[0]


def test_missing_file_and_bad_folds_exit_2_with_one_line(tmp_path, smm_files, moe_csv, capsys):
    root, _ = smm_files
    for argv, needle in [
        (["select", "smm", "--features", tmp_path / "nope.npy", "--counts", root / "counts.csv",
          "-k", "1-3"], "nope.npy"),
        (["select", "moe", "--data", tmp_path / "none.csv", "-y", "y", "-k", "1-2"],
         "none.csv"),
        (["select", "moe", "--data", moe_csv[0], "-y", "nothere", "-k", "1-2"], "nothere"),
        (["select", "moe", "--data", moe_csv[0], "-y", "y", "-k", "1-2", "--criterion",
          "heldout", "--folds", "1"], "--folds"),
    ]:
        code, out, err = _run(argv, capsys)
        assert code == 2 and out == "", (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("softmix: error:") and needle in lines[0]
        assert "Traceback" not in err
