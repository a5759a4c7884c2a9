"""`softmix fit smm|moe`, `summary`, `predict` end to end on files the tests write (CSV, Parquet,
NPY, NPZ), including bad files: exit code 2 and one line naming the file and the fix."""

import json
import subprocess
import sys

import numpy as np
import pytest

from softmix import MixtureOfExperts, SoftmaxMixture, load
from softmix.cli import main
from softmix.datasets import make_moe, make_softmax_mixture
from softmix.io.readers import read_table

PNG = b"\x89PNG\r\n\x1a\n"


def _write_csv(path, columns):
    names = list(columns)
    rows = zip(*(columns[n] for n in names))
    with open(path, "w") as fh:
        fh.write(",".join(names) + "\n")
        fh.writelines(",".join(repr(float(v)) if isinstance(v, (float, np.floating)) else str(v)
                              for v in row) + "\n" for row in rows)
    return path


def _parquet(path, columns):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


@pytest.fixture(scope="module")
def smm_files(tmp_path_factory):
    d = make_softmax_mixture(3000, 60, 2, 2, return_choices=True, random_state=0)
    root = tmp_path_factory.mktemp("smm")
    np.save(root / "features.npy", d.features)
    _write_csv(root / "features.csv", {"f0": d.features[:, 0], "f1": d.features[:, 1]})
    _write_csv(root / "counts.csv", {"count": d.counts.astype(int)})
    np.savez(root / "data.npz", features=d.features, choices=d.choices)
    return root, d


@pytest.fixture(scope="module")
def moe_table(tmp_path_factory):
    X, y, _ = make_moe(300, 2, 2, expert="gaussian", random_state=0)
    root = tmp_path_factory.mktemp("moe")
    cols = {"age": X[:, 0], "income": X[:, 1], "y": y}
    _write_csv(root / "reg.csv", cols)
    return root, X, y


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_smm_npy_features_csv_counts(tmp_path, smm_files, capsys):
    root, d = smm_files
    code, out, err = _run(["fit", "smm", "--features", root / "features.npy", "--counts",
                           root / "counts.csv", "-k", "2", "--out", tmp_path / "m.softmix",
                           "--n-init", "2", "--seed", "3", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)  # one JSON object
    assert report["model"] == str(tmp_path / "m.softmix")
    assert report["n_samples"] == 3000 and report["n_alternatives"] == 60
    assert report["converged"] is True and report["n_init"] == 2
    assert len(report["all_log_likelihoods"]) == 2
    assert set(report["seconds"]) >= {"read", "fit", "save", "total"}
    model = load(tmp_path / "m.softmix", expected=SoftmaxMixture)
    # the CLI fit is the library fit with the same hyperparameters
    ref = SoftmaxMixture(2, n_init=2, random_state=3).fit(d.features, counts=d.counts)
    assert model.log_likelihood_ == ref.log_likelihood_ == report["log_likelihood"]
    assert report["bic"] == ref.bic()
    assert err == ""  # no progress on a non-terminal stderr


def test_fit_smm_csv_features_npz_choices_with_options(tmp_path, smm_files, capsys):
    root, _d = smm_files
    code, out, err = _run(["fit", "smm", "--features", root / "features.csv", "--choices",
                           root / "data.npz", "--counts-key", "choices", "-k", "2",
                           "--max-iter", "7", "--tol", "0", "--dtype", "float32",
                           "--init", "random", "--out", tmp_path / "m.softmix"], capsys)
    assert code == 0, err
    assert "fitted SoftmaxMixture (K = 2, p = 60, L = 2) on 3,000 observations" in out
    model = load(tmp_path / "m.softmix")
    assert model.n_iter_ == 7 and model.dtype == "float32" and model.tol == 0


def test_fit_smm_npz_features_and_parquet(tmp_path, smm_files, capsys):
    root, d = smm_files
    _parquet(tmp_path / "f.parquet", {"a": d.features[:, 0], "b": d.features[:, 1]})
    _parquet(tmp_path / "c.parquet", {"n": d.counts.astype(np.int64)})
    code, out, err = _run(["fit", "smm", "--features", tmp_path / "f.parquet", "--counts",
                           tmp_path / "c.parquet", "-k", "2", "--out", tmp_path / "p.softmix",
                           "--json"], capsys)
    assert code == 0, err
    code2, out2, err2 = _run(["fit", "smm", "--features", root / "data.npz", "--features-key",
                              "features", "--choices", root / "data.npz", "--counts-key",
                              "choices", "-k", "2", "--out", tmp_path / "z.softmix", "--json"],
                             capsys)
    assert code2 == 0, err2
    # same data in two formats: the same fit
    assert json.loads(out)["log_likelihood"] == json.loads(out2)["log_likelihood"]


def test_summary_and_predict_smm(tmp_path, smm_files, capsys):
    root, _d = smm_files
    model_path = tmp_path / "m.softmix"
    assert _run(["fit", "smm", "--features", root / "features.npy", "--counts",
                 root / "counts.csv", "-k", "2", "--out", model_path], capsys)[0] == 0
    code, out, _ = _run(["summary", model_path], capsys)
    assert code == 0
    for text in ("SoftmaxMixture(", "K = 2 components, p = 60 alternatives", "BIC", "AIC",
                 "converged=True", "weights:", "atoms (one row per component):"):
        assert text in out
    code, out, _ = _run(["summary", model_path, "--features", root / "features.npy",
                         "--choices", root / "data.npz", "--counts-key", "choices", "--json"],
                        capsys)
    report = json.loads(out)
    model = load(model_path)
    assert report["log_likelihood"] == pytest.approx(model.log_likelihood_, rel=1e-12)
    assert report["bic"] == pytest.approx(model.bic(), rel=1e-12)
    for ext in (".csv", ".npz"):
        code, out, err = _run(["predict", model_path, "--out", tmp_path / f"post{ext}"], capsys)
        assert code == 0, err
        table = read_table(tmp_path / f"post{ext}")
        assert table.names == ["alternative", "choice_probability", "class_0", "class_1",
                               "predicted_class"]
        post = table.numeric(["class_0", "class_1"], "x")
        np.testing.assert_array_equal(post, model.predict_proba(np.arange(60)))
    code, out, err = _run(["predict", model_path, "--data", root / "features.csv", "--out",
                           tmp_path / "p.npy"], capsys)
    assert code == 0 and np.load(tmp_path / "p.npy").shape == (60, 5)


def test_fit_moe_csv_and_predict(tmp_path, moe_table, capsys):
    root, X, y = moe_table
    code, out, err = _run(["fit", "moe", "--data", root / "reg.csv", "-y", "y", "-k", "2",
                           "--out", tmp_path / "moe.softmix", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["inputs"]["features"] == ["age", "income"] and report["n_samples"] == 300
    model = load(tmp_path / "moe.softmix", expected=MixtureOfExperts)
    ref = MixtureOfExperts(2, random_state=0).fit(X, y)
    assert model.log_likelihood_ == ref.log_likelihood_
    code, out, err = _run(["predict", tmp_path / "moe.softmix", "--data", root / "reg.csv",
                           "--out", tmp_path / "pred.csv"], capsys)
    assert code == 0, err
    table = read_table(tmp_path / "pred.csv")
    assert table.names == ["prediction", "gate_0", "gate_1"]
    np.testing.assert_array_equal(table.columns["prediction"], ref.predict(X))
    code, out, _ = _run(["summary", tmp_path / "moe.softmix"], capsys)
    assert "2 gaussian experts, d = 2 covariates ['age', 'income']" in out
    assert "observations: 300" in out and "expert variances:" in out
    code, out, _ = _run(["summary", tmp_path / "moe.softmix", "--data", root / "reg.csv",
                         "--json"], capsys)
    assert json.loads(out)["bic"] == pytest.approx(ref.bic(X, y), rel=1e-12)


def test_fit_moe_subset_of_columns_npy_and_parquet(tmp_path, moe_table, capsys):
    _root, X, y = moe_table
    np.save(tmp_path / "reg.npy", np.column_stack([X, y]))
    code, out, err = _run(["fit", "moe", "--data", tmp_path / "reg.npy", "-y", "2", "--x",
                           "0", "-k", "2", "--out", tmp_path / "a.softmix", "--json"], capsys)
    assert code == 0, err
    ref = MixtureOfExperts(2, random_state=0).fit(X[:, :1], y)
    assert json.loads(out)["log_likelihood"] == ref.log_likelihood_
    _parquet(tmp_path / "reg.parquet", {"age": X[:, 0], "income": X[:, 1], "y": y})
    code, out, err = _run(["fit", "moe", "--data", tmp_path / "reg.parquet", "-y", "y", "--x",
                           "age", "-k", "2", "--out", tmp_path / "b.softmix", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["log_likelihood"] == ref.log_likelihood_


def test_fit_moe_classification_with_text_labels_npz(tmp_path, capsys):
    X, y, _ = make_moe(300, 1, 2, expert="multinomial", n_classes=3, random_state=1)
    labels = np.array(["low", "mid", "high"])[y.astype(int)]
    np.savez(tmp_path / "cls.npz", x=X[:, 0], label=labels)
    code, out, err = _run(["fit", "moe", "--data", tmp_path / "cls.npz", "-y", "label", "-k",
                           "2", "--expert", "multinomial", "--max-iter", "20", "--tol", "0",
                           "--out", tmp_path / "c.softmix"], capsys)
    assert code == 0, err
    model = load(tmp_path / "c.softmix")
    assert model.classes_.tolist() == ["high", "low", "mid"]
    code, out, err = _run(["predict", tmp_path / "c.softmix", "--data", tmp_path / "cls.npz",
                           "--out", tmp_path / "p.csv"], capsys)
    assert code == 0, err
    assert out.startswith("wrote 300 rows (prediction, proba_high")
    table = read_table(tmp_path / "p.csv")
    assert table.names[:4] == ["prediction", "proba_high", "proba_low", "proba_mid"]
    assert set(table.columns["prediction"]) <= {"low", "mid", "high"}
    # logistic experts with 0/1 integer labels in a CSV: classes stay integers
    Xl, yl, _ = make_moe(300, 1, 2, expert="logistic", random_state=2)
    _write_csv(tmp_path / "bin.csv", {"x": Xl[:, 0], "y": yl.astype(int)})
    code, _out, err = _run(["fit", "moe", "--data", tmp_path / "bin.csv", "-y", "y", "-k", "2",
                           "--expert", "logistic", "--max-iter", "20", "--tol", "0", "--out",
                           tmp_path / "l.softmix"], capsys)
    assert code == 0, err
    assert load(tmp_path / "l.softmix").classes_.dtype.kind == "i"


def test_fit_plot_writes_pngs(tmp_path, smm_files, moe_table, capsys):
    root, _ = smm_files
    code, out, err = _run(["fit", "smm", "--features", root / "features.npy", "--counts",
                           root / "counts.csv", "-k", "2", "--out", tmp_path / "m.softmix",
                           "--plot", tmp_path / "smm", "--json"], capsys)
    assert code == 0, err
    names = sorted(p.rsplit("/", 1)[-1] for p in json.loads(out)["plots"])
    assert names == ["atoms.png", "convergence.png", "membership.png"]
    mroot, _, _ = moe_table
    code, out, err = _run(["fit", "moe", "--data", mroot / "reg.csv", "-y", "y", "-k", "2",
                           "--out", tmp_path / "moe.softmix", "--plot", tmp_path / "moe"],
                          capsys)
    assert code == 0, err
    for folder, expected in ((tmp_path / "smm", 3), (tmp_path / "moe", 4)):
        files = sorted(folder.glob("*.png"))
        assert len(files) == expected
        for f in files:
            assert f.read_bytes()[:8] == PNG and f.stat().st_size > 5000


# ------------------------------------------------------------------------------ bad input
def _bad(argv, capsys, *needles):
    code, _out, err = _run(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, never a traceback
    assert lines[0].startswith("softmix: error: ") and "Traceback" not in err
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


def test_bad_smm_inputs(tmp_path, smm_files, capsys):
    root, _d = smm_files
    fit = ["fit", "smm", "-k", "2", "--out", tmp_path / "m.softmix"]
    _bad(fit + ["--features", tmp_path / "missing.npy", "--counts", root / "counts.csv"],
         capsys, "missing.npy: no such file")
    _write_csv(tmp_path / "short.csv", {"count": np.ones(10, dtype=int)})
    _bad(fit + ["--features", root / "features.npy", "--counts", tmp_path / "short.csv"],
         capsys, "short.csv: 10 counts but", "features.npy has 60 rows",
         "one count per alternative")
    (tmp_path / "text.csv").write_text("count\n" + "1\n" * 59 + "many\n")
    _bad(fit + ["--features", root / "features.npy", "--counts", tmp_path / "text.csv"],
         capsys, "text.csv", "--counts must hold numbers", "'many'")
    (tmp_path / "neg.csv").write_text("count\n" + "1\n" * 59 + "-2\n")
    _bad(fit + ["--features", root / "features.npy", "--counts", tmp_path / "neg.csv"],
         capsys, "neg.csv", "data row 60", "not an integer >= 0")
    (tmp_path / "empty.csv").touch()
    _bad(fit + ["--features", tmp_path / "empty.csv", "--counts", root / "counts.csv"],
         capsys, "empty.csv: the file is empty")
    (tmp_path / "feat.csv").write_text("a,b\n" + "1,2\n" * 59 + "1,x\n")
    _bad(fit + ["--features", tmp_path / "feat.csv", "--counts", root / "counts.csv"],
         capsys, "feat.csv", "column 'b'", "'x' in data row 60", "fix that cell")
    np.save(tmp_path / "cube.npy", np.ones((2, 2, 2)))
    _bad(fit + ["--features", tmp_path / "cube.npy", "--counts", root / "counts.csv"],
         capsys, "cube.npy: expected a 1-D or 2-D array")
    _bad(fit + ["--features", root / "features.npy", "--choices", root / "data.npz"],
         capsys, "data.npz: holds several arrays", "--key")
    np.save(tmp_path / "far.npy", np.array([0, 5, 600]))
    _bad(fit + ["--features", root / "features.npy", "--choices", tmp_path / "far.npy"],
         capsys, "far.npy", "600", "data row 3", "[0, 60)")
    # an estimator error is prefixed with the files
    _bad(["fit", "smm", "-k", "61", "--out", tmp_path / "m.softmix", "--features",
          root / "features.npy", "--counts", root / "counts.csv"],
         capsys, "features.npy, ", "counts.csv: n_components must be <= the number of "
         "alternatives (60)")


def test_bad_moe_inputs(tmp_path, moe_table, capsys):
    root, _X, _y = moe_table
    fit = ["fit", "moe", "-k", "2", "--out", tmp_path / "m.softmix"]
    _bad(fit + ["--data", root / "reg.csv", "-y", "target"], capsys,
         "reg.csv: no column 'target' (given by -y); the columns are 'age', 'income', 'y'")
    _bad(fit + ["--data", root / "reg.csv", "-y", "y", "--x", "age,height"], capsys,
         "no column 'height' (given by --x)")
    _bad(fit + ["--data", root / "reg.csv", "-y", "y", "--x", "age,y"], capsys,
         "column 'y' is both -y")
    (tmp_path / "t.csv").write_text("x,y\n1,2\n2,abc\n3,4\n")
    _bad(fit + ["--data", tmp_path / "t.csv", "-y", "y"], capsys,
         "t.csv", "column 'y' holds text ('abc' in data row 2)",
         "responses of gaussian experts must be numbers")
    _bad(fit + ["--data", root / "reg.csv", "-y", "y", "--expert", "logistic"], capsys,
         "reg.csv: y must hold integer class labels")
    _bad(fit + ["--data", root / "reg.csv", "-y", "y", "--plot", tmp_path / "f", "--key", "a"],
         capsys, "--key 'a' selects an array of a .npz file")


def test_bad_model_files(tmp_path, capsys):
    (tmp_path / "junk.softmix").write_bytes(b"junk")
    _bad(["summary", tmp_path / "junk.softmix"], capsys, "junk.softmix: not a softmix model")
    _bad(["predict", tmp_path / "nope.softmix", "--out", tmp_path / "p.csv"], capsys,
         "nope.softmix: no such model file")
    MixtureOfExperts(2).save(tmp_path / "unfitted.softmix")
    _bad(["summary", tmp_path / "unfitted.softmix"], capsys, "never fitted")


def test_json_error_object(tmp_path, capsys):
    code, out, err = _run(["summary", tmp_path / "nope.softmix", "--json"], capsys)
    assert code == 2 and json.loads(out) == {"error": err.strip()[len("softmix: error: "):],
                                             "exit_code": 2}


def test_argparse_rejects_bad_options(capsys):
    for argv in (["fit", "smm", "--features", "f.npy", "--counts", "c.csv", "-k", "0",
                  "--out", "m"],
                 ["fit", "moe", "--data", "d.csv", "-y", "y", "-k", "2", "--out", "m",
                  "--expert", "poisson"],
                 ["fit", "smm", "--features", "f.npy", "--counts", "c.csv", "--choices", "c",
                  "-k", "2", "--out", "m"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    assert "select" not in capsys.readouterr().out


def test_python_m_softmix_subprocess_no_traceback(tmp_path, smm_files):
    root, _ = smm_files
    (tmp_path / "bad.csv").write_text("count\n1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "softmix", "fit", "smm", "--features", str(root / "features.npy"),
         "--counts", str(tmp_path / "bad.csv"), "-k", "2", "--out", str(tmp_path / "m")],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("softmix: error: ") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_summary_uses_the_estimators_summary_method_when_it_exists(tmp_path, smm_files, capsys,
                                                                    monkeypatch):
    root, _ = smm_files
    model_path = tmp_path / "m.softmix"
    assert _run(["fit", "smm", "--features", root / "features.npy", "--counts",
                 root / "counts.csv", "-k", "2", "--out", model_path], capsys)[0] == 0
    calls = []

    def summary(self, *data, **kw):
        calls.append((len(data), sorted(kw)))
        return f"summary of a {type(self).__name__}"

    monkeypatch.setattr(SoftmaxMixture, "summary", summary, raising=False)
    # without data: the stored fit is described (standard errors need the data)
    code, out, _ = _run(["summary", model_path], capsys)
    assert code == 0 and "log-likelihood on the training data" in out and calls == []
    code, out, _ = _run(["summary", model_path, "--features", root / "features.npy",
                         "--counts", root / "counts.csv"], capsys)
    # with the data, as for bic(): features, choices (None) and counts=...
    assert code == 0 and out.strip() == "summary of a SoftmaxMixture"
    assert calls == [(2, ["counts"])]
