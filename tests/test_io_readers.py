"""softmix.io.readers / writers: every format in, every format out, one-line errors naming the
file, the column and the fix."""

import numpy as np
import pytest

from softmix.io.readers import InputError, read_matrix, read_table, read_vector
from softmix.io.writers import write_table


def _csv(path, text):
    path.write_text(text)
    return path


def test_csv_numeric_and_text_columns(tmp_path):
    t = read_table(_csv(tmp_path / "d.csv", "a, b ,label\n1,2.5,x\n3,-4e-1,y\n"))
    assert t.names == ["a", "b", "label"] and t.n_rows == 2
    np.testing.assert_array_equal(t.numeric(["a", "b"], "--x"), [[1, 2.5], [3, -0.4]])
    assert t.columns["label"].tolist() == ["x", "y"]


@pytest.mark.parametrize("text, match", [
    ("", "the file is empty"),
    ("a,b\n", "only a header row, no data rows"),
    ("1,2\n3,4\n", "is all numbers, but a CSV file needs a header row"),
    ("a,a\n1,2\n", r"names \['a'\] more than once"),
    ("a,\n1,2\n", "column 2 of the header row has no name"),
    ("a,b\n1,2\n3\n", "data row 2 has 1 fields but the header has 2 columns"),
])
def test_csv_structure_errors(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text) if text else path.touch()
    with pytest.raises(InputError, match=match) as info:
        read_table(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_csv_cell_errors_name_column_and_row(tmp_path):
    path = _csv(tmp_path / "d.csv", "a,b\n1,2\n3,oops\n")
    with pytest.raises(InputError, match=r"d\.csv: column 'b' holds text \('oops' in data row "
                                         r"2\) but covariates must be numbers"):
        read_table(path).numeric(None, "--x", what="covariates")
    path = _csv(tmp_path / "e.csv", "a,b\n1,2\n3,\n")
    with pytest.raises(InputError, match=r"column 'b' has a missing or non-finite value .* data "
                                         "row 2"):
        read_matrix(path, option="--features")
    with pytest.raises(InputError, match=r"no column 'c' \(given by -y\); the columns are 'a', "
                                         "'b'"):
        read_table(path).column("c", "-y")


def test_file_level_errors(tmp_path):
    with pytest.raises(InputError, match="nope.csv: no such file"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(InputError, match=r"unknown file type '.txt'; use one of .csv"):
        read_table(_csv(tmp_path / "d.txt", "a\n1\n"))
    with pytest.raises(InputError, match="--key 'X' selects an array of a .npz file"):
        read_table(_csv(tmp_path / "d.csv", "a\n1\n"), key="X")
    (tmp_path / "z.npy").touch()
    with pytest.raises(InputError, match="z.npy: the file is empty"):
        read_table(tmp_path / "z.npy")


def test_npy_shapes(tmp_path):
    np.save(tmp_path / "v.npy", np.arange(4))
    np.save(tmp_path / "m.npy", np.ones((3, 2)))
    np.save(tmp_path / "c.npy", np.ones((2, 2, 2)))
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    rec = np.array([(1.0, "u"), (2.0, "v")], dtype=[("x", float), ("lab", "U3")])
    np.save(tmp_path / "s.npy", rec)
    assert read_vector(tmp_path / "v.npy", option="--counts").tolist() == [0, 1, 2, 3]
    assert read_matrix(tmp_path / "m.npy", option="--features").shape == (3, 2)
    assert read_table(tmp_path / "m.npy").names == ["0", "1"]
    s = read_table(tmp_path / "s.npy")
    assert s.names == ["x", "lab"] and s.columns["lab"].tolist() == ["u", "v"]
    with pytest.raises(InputError, match=r"c.npy: expected a 1-D or 2-D array, got shape "
                                         r"\(2, 2, 2\)"):
        read_table(tmp_path / "c.npy")
    with pytest.raises(InputError, match="o.npy: cannot be read .* it holds Python objects"):
        read_table(tmp_path / "o.npy")


def test_npz_keys_and_tables(tmp_path):
    np.savez(tmp_path / "one.npz", X=np.ones((4, 2)))
    np.savez(tmp_path / "two.npz", X=np.ones((4, 2)), counts=np.arange(4))
    np.savez(tmp_path / "cols.npz", a=np.arange(3.0), b=np.array(["p", "q", "r"]))
    assert read_matrix(tmp_path / "one.npz", option="--features").shape == (4, 2)
    assert read_vector(tmp_path / "two.npz", option="--counts", key="counts").tolist() == [
        0, 1, 2, 3]
    t = read_table(tmp_path / "cols.npz")
    assert t.names == ["a", "b"] and t.columns["b"].tolist() == ["p", "q", "r"]
    with pytest.raises(InputError, match=r"two.npz: holds several arrays .* pass --key NAME"):
        read_table(tmp_path / "two.npz")
    with pytest.raises(InputError, match=r"no array 'Y' \(given by --key\); the arrays are "
                                         r"\['X', 'counts'\]"):
        read_table(tmp_path / "two.npz", key="Y")
    with pytest.raises(InputError, match="--counts needs one column but the file has 2"):
        read_vector(tmp_path / "one.npz", option="--counts")


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"x": [1.0, 2.0], "n": [3, 4], "s": ["a", "b"]}),
                   tmp_path / "d.parquet")
    t = read_table(tmp_path / "d.parquet")
    assert t.names == ["x", "n", "s"]
    np.testing.assert_array_equal(t.numeric(["x", "n"], "--x"), [[1, 3], [2, 4]])
    assert t.columns["s"].tolist() == ["a", "b"]
    pq.write_table(pa.table({"x": [1.0, None]}), tmp_path / "null.parquet")
    with pytest.raises(InputError, match=r"null.parquet: column 'x' has a missing value \(null\)"
                                         " in data row 2"):
        read_table(tmp_path / "null.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="junk.parquet: not a readable Parquet file"):
        read_table(tmp_path / "junk.parquet")


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    import sys

    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(InputError, match=r"needs pyarrow, which is not installed: pip install "
                                         r"'softmix\[io\]'"):
        read_table(tmp_path / "d.parquet")


@pytest.mark.parametrize("ext", [".csv", ".npz", ".npy", ".parquet"])
def test_writers_round_trip_through_the_readers(tmp_path, ext):
    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    cols = {"a": np.array([0.1, 1 / 3, -2e-300]), "k": np.array([0, 1, 2])}
    path = write_table(tmp_path / f"out{ext}", cols)
    t = read_table(path)
    names = ["0", "1"] if ext == ".npy" else ["a", "k"]
    assert t.names == names
    np.testing.assert_array_equal(t.numeric(None, "x")[:, 0], cols["a"])  # exact floats
    with_text = write_table(tmp_path / f"txt{ext}", {"p": np.array([1.0, 2.0]),
                                                     "label": np.array(["u", "v"])})
    assert read_table(with_text).columns["label"].tolist() == [
        "u", "v"]


def test_writer_unknown_extension(tmp_path):
    with pytest.raises(InputError, match=r"out.xlsx: unknown file type '.xlsx' for --out"):
        write_table(tmp_path / "out.xlsx", {"a": np.ones(2)})
