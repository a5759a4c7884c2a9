"""IDX loader (MNIST / Fashion-MNIST format) on files the tests write, and inverted digits."""

import gzip
import struct

import numpy as np
import pytest

from softmix.datasets import load_idx, load_mnist_like, make_inverted_digits


def write_idx(path, array, code=0x08, compress=False):
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[code]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.asarray(array, dtype=dtype).tobytes()
    if compress:
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_reads_images_and_labels_it_wrote(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7).astype(np.uint8)
    got = load_idx(write_idx(tmp_path / "img", images, compress=compress))
    assert got.shape == (7, 5, 4) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(load_idx(write_idx(tmp_path / "lab", labels)), labels)


def test_reads_big_endian_multibyte_types(tmp_path):
    values = np.array([[-300, 2], [7, 32000]], dtype=np.int16)
    np.testing.assert_array_equal(load_idx(write_idx(tmp_path / "a", values, code=0x0B)), values)
    floats = np.array([1.5, -2.25, 1e-3], dtype=np.float32)
    np.testing.assert_array_equal(load_idx(write_idx(tmp_path / "b", floats, code=0x0D)), floats)


def test_truncated_file_is_rejected_naming_it(tmp_path):
    path = write_idx(tmp_path / "short-idx3-ubyte", np.zeros((3, 4, 4), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"short-idx3-ubyte.*truncated"):
        load_idx(path)
    header_only = tmp_path / "header"
    header_only.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(ValueError, match="header.*truncated"):
        load_idx(header_only)


def test_truncated_gzip_is_rejected_naming_it(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.zeros((30, 4, 4), dtype=np.uint8), compress=True)
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(ValueError, match=r"x\.gz.*(truncated|corrupt)"):
        load_idx(path)


def test_wrong_magic_is_rejected_naming_it(tmp_path):
    bad = tmp_path / "not-idx.bin"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    with pytest.raises(ValueError, match=r"not-idx\.bin.*magic"):
        load_idx(bad)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.*magic"):
        load_idx(empty)


def write_mnist_like(folder, n_train=12, n_test=6, compress=True):
    rng = np.random.default_rng(1)
    data = {}
    for stem, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 4, 4), dtype=np.uint8)
        labels = (np.arange(n) % 3).astype(np.uint8)
        suffix = ".gz" if compress else ""
        write_idx(folder / f"{stem}-images-idx3-ubyte{suffix}", images, compress=compress)
        write_idx(folder / f"{stem}-labels-idx1-ubyte{suffix}", labels, compress=compress)
        data[stem] = (images, labels)
    return data


def test_load_mnist_like_scales_and_flattens(tmp_path):
    data = write_mnist_like(tmp_path)
    X_train, _, X_test, y_test = load_mnist_like(tmp_path)
    assert X_train.shape == (12, 16) and X_test.shape == (6, 16)
    np.testing.assert_allclose(X_train, data["train"][0].reshape(12, 16) / 255.0)
    np.testing.assert_array_equal(y_test, data["t10k"][1])
    assert X_train.min() >= 0 and X_train.max() <= 1


def test_load_mnist_like_missing_file_and_count_mismatch(tmp_path):
    write_mnist_like(tmp_path, compress=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        load_mnist_like(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8))
    with pytest.raises(ValueError, match="6 test images but 5 test labels"):
        load_mnist_like(tmp_path)
    with pytest.raises(ValueError, match="idx_dir"):
        load_mnist_like(tmp_path / "nowhere")


def test_inverted_digits_inverts_a_random_half():
    data = make_inverted_digits(random_state=0)
    n_train, n_test = len(data["y_train"]), len(data["y_test"])
    assert n_train + n_test == 1797 and data["X_train"].shape == (n_train, 64)
    assert abs(data["inverted_train"].sum() - n_train / 2) <= 1
    X = data["X_train"]
    assert X.min() >= 0 and X.max() <= 1
    # digits are mostly dark background: inverted images are mostly bright
    assert X[data["inverted_train"]].mean() > 0.6
    assert X[~data["inverted_train"]].mean() < 0.4
    again = make_inverted_digits(random_state=0)
    np.testing.assert_array_equal(again["X_test"], data["X_test"])


def test_inverted_images_from_idx_dir(tmp_path):
    data = write_mnist_like(tmp_path)
    out = make_inverted_digits(source=tmp_path, n_train=10, random_state=0)
    assert out["X_train"].shape == (10, 16) and out["X_test"].shape == (6, 16)
    inv = out["inverted_test"]
    assert inv.sum() == 3
    original = data["t10k"][0].reshape(6, 16) / 255.0
    np.testing.assert_allclose(out["X_test"][inv], 1.0 - original[inv])
    np.testing.assert_allclose(out["X_test"][~inv], original[~inv])
    with pytest.raises(TypeError, match="source"):
        make_inverted_digits(source=3)


def test_digits_without_scikit_learn_is_a_clear_import_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"softmix\[experiments\]"):
        make_inverted_digits(random_state=0)


def test_bad_p_invert_and_subsample_sizes(tmp_path):
    with pytest.raises(ValueError, match="p_invert"):
        make_inverted_digits(p_invert=1.5)
    write_mnist_like(tmp_path)
    with pytest.raises(ValueError, match="n_train"):
        make_inverted_digits(source=tmp_path, n_train=100)
