"""softmix.count_choices: counts of token streams (NumPy, Dask arrays/DataFrames, Parquet) and
SoftmaxMixture.fit from Dask choices. The Dask tests run on a 2-worker LocalCluster started and
closed here; they skip without Dask (``pip install "softmix[dask]"``)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse

from softmix import SoftmaxMixture, count_choices
from softmix.counting import SPLIT_EVERY, GroupedCounts
from softmix.datasets import make_softmax_mixture

DASK_REASON = 'needs Dask: pip install "softmix[dask]"'


def _dense_reference(choices, groups, p):
    """Naive per-group counts: a loop over the tokens into a dict of rows."""
    ids = sorted(set(groups))
    row = {g: i for i, g in enumerate(ids)}
    out = np.zeros((len(ids), p), dtype=np.int64)
    for c, g in zip(choices, groups):
        out[row[g], c] += 1
    return out, np.array(ids)


# --------------------------------------------------------------------- NumPy (no Dask needed)

def test_numpy_counts_equal_bincount():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 37, size=5000)
    out = count_choices(x, 40)
    assert out.dtype == np.int64 and out.shape == (40,)
    np.testing.assert_array_equal(out, np.bincount(x, minlength=40))
    np.testing.assert_array_equal(count_choices(x.tolist(), 40), out)
    np.testing.assert_array_equal(count_choices(x.astype(float), 40), out)  # integral floats
    np.testing.assert_array_equal(count_choices([], 3), [0, 0, 0])


def test_numpy_grouped_counts_equal_dense_reference():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 6, size=400)
    g = rng.choice(np.array(["doc-b", "doc-a", "doc-c", "doc-z"]), size=400)
    out = count_choices(x, 6, groups=g)
    assert isinstance(out, GroupedCounts) and scipy.sparse.issparse(out.counts)
    ref, ids = _dense_reference(x, g, 6)
    np.testing.assert_array_equal(out.group_ids, ids)  # sorted labels
    np.testing.assert_array_equal(out.counts.toarray(), ref)
    assert out.counts.dtype == np.int64


@pytest.mark.parametrize("bad, exc, match", [
    ([0, 1, 5], ValueError, r"choices must be alternative indices in \[0, 5\).*got 5"),
    ([0, -1, 2], ValueError, r"alternative indices.*got -1"),
    ([0.0, 1.5], ValueError, r"choices must hold integers.*1.5"),
    ([0.0, np.nan], ValueError, r"choices contains 1 NaN"),
    ([True, False], TypeError, r"choices must hold integers.*booleans"),
    (["a", "b"], TypeError, r"choices must hold real numbers"),
    ([[0, 1]], ValueError, r"choices must be 1-D"),
])
def test_numpy_errors_name_the_argument(bad, exc, match):
    with pytest.raises(exc, match=match):
        count_choices(bad, 5)


def test_numpy_argument_errors():
    with pytest.raises(ValueError, match="n_alternatives"):
        count_choices([0, 1], 0)
    with pytest.raises(ValueError, match="groups must hold one label per token"):
        count_choices([0, 1], 2, groups=[0])
    with pytest.raises(ValueError, match="groups contains NaN"):
        count_choices([0, 1], 2, groups=[0.0, np.nan])
    with pytest.raises(ValueError, match="column= and group_column= name columns"):
        count_choices([0, 1], 2, column="token")


def test_parquet_path_without_dask_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "dask", None)  # `import dask` now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "softmix\[dask\]"'):
        count_choices(tmp_path / "tokens", 10, column="token")
    # NumPy input works exactly as without Dask
    np.testing.assert_array_equal(count_choices([1, 1, 0], 2), [1, 2])
    features = np.random.default_rng(0).normal(size=(4, 2))
    SoftmaxMixture(1, max_iter=2, tol=0).fit(features, np.array([0, 1, 2, 3, 3]))


# --------------------------------------------------------------------- Dask, on a LocalCluster

@pytest.fixture(scope="module")
def client():
    pytest.importorskip("dask.array", reason=DASK_REASON)
    distributed = pytest.importorskip("dask.distributed", reason=DASK_REASON)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", memory_limit="1GiB")
    cl = distributed.Client(cluster)
    try:
        yield cl
    finally:
        cl.close()
        cluster.close()


def test_dask_array_counts_equal_bincount(client):
    import dask.array as da

    rng = np.random.default_rng(2)
    x = rng.integers(0, 300, size=20_011)
    for chunks in (997, 20_011, 50):  # many chunks (a deep tree), one chunk, > SPLIT_EVERY^2
        dx = da.from_array(x, chunks=chunks)
        assert dx.numblocks[0] > SPLIT_EVERY ** 2 or chunks != 50
        out = count_choices(dx, 301)
        assert out.dtype == np.int64
        np.testing.assert_array_equal(out, np.bincount(x, minlength=301))
    np.testing.assert_array_equal(count_choices(da.zeros(0, dtype=int, chunks=5), 4),
                                  np.zeros(4))


def test_dask_grouped_counts_equal_dense_reference(client):
    import dask.array as da

    rng = np.random.default_rng(3)
    x = rng.integers(0, 7, size=3000)
    g = rng.integers(-40, 40, size=3000)
    out = count_choices(da.from_array(x, chunks=400), 7, groups=da.from_array(g, chunks=333))
    ref, ids = _dense_reference(x, g, 7)
    np.testing.assert_array_equal(out.group_ids, ids)
    np.testing.assert_array_equal(out.counts.toarray(), ref)
    # NumPy groups with Dask choices: rechunked to match
    out2 = count_choices(da.from_array(x, chunks=400), 7, groups=g)
    np.testing.assert_array_equal(out2.counts.toarray(), ref)


def test_dask_many_groups_stay_sparse(client):
    import dask.array as da

    rng = np.random.default_rng(4)
    n, p, n_groups = 400_000, 2000, 150_000  # a dense G x p array would be 2.4 GB
    x = rng.integers(0, p, size=n)
    g = rng.integers(0, n_groups, size=n) * 7 + 3  # labels not 0..G-1
    out = count_choices(da.from_array(x, chunks=50_000), p, groups=da.from_array(g, chunks=50_000))
    ids, rows = np.unique(g, return_inverse=True)
    ref = scipy.sparse.csr_matrix((np.ones(n, dtype=np.int64), (rows, x)), shape=(ids.size, p))
    assert scipy.sparse.isspmatrix_csr(out.counts) and out.counts.shape == (ids.size, p)
    np.testing.assert_array_equal(out.group_ids, ids)
    assert (out.counts != ref).nnz == 0
    assert out.counts.nnz == ref.nnz


def test_dask_dataframe_columns(client):
    dd = pytest.importorskip("dask.dataframe", reason=DASK_REASON)
    import pandas as pd

    rng = np.random.default_rng(5)
    x = rng.integers(0, 9, size=2000)
    g = rng.choice(np.array(["u1", "u2", "u3"]), size=2000)
    frame = dd.from_pandas(pd.DataFrame({"token": x, "user": g}), npartitions=5)
    np.testing.assert_array_equal(count_choices(frame, 9, column="token"),
                                  np.bincount(x, minlength=9))
    np.testing.assert_array_equal(count_choices(frame["token"], 9), np.bincount(x, minlength=9))
    out = count_choices(frame, 9, column="token", group_column="user")
    ref, ids = _dense_reference(x, g, 9)
    np.testing.assert_array_equal(out.group_ids.astype(str), ids)
    np.testing.assert_array_equal(out.counts.toarray(), ref)
    with pytest.raises(ValueError, match="name the column of token ids with column="):
        count_choices(frame, 9)
    with pytest.raises(ValueError, match="group_column='doc' is not a column"):
        count_choices(frame, 9, column="token", group_column="doc")


@pytest.fixture()
def parquet_dataset(tmp_path):
    pa = pytest.importorskip("pyarrow", reason='needs pyarrow: pip install "softmix[io]"')
    import pyarrow.parquet as pq

    rng = np.random.default_rng(6)
    folder = tmp_path / "tokens"
    folder.mkdir()
    xs, gs = [], []
    for i in range(4):  # a multi-file dataset, one file per "shard"
        x = rng.integers(0, 11, size=700 + 50 * i)
        g = np.array([f"doc{j:03d}" for j in rng.integers(0, 60, size=x.size)])
        pq.write_table(pa.table({"token": x, "doc": g}), folder / f"part-{i}.parquet")
        xs.append(x)
        gs.append(g)
    return folder, np.concatenate(xs), np.concatenate(gs)


def test_parquet_dataset(client, parquet_dataset):
    pytest.importorskip("dask.dataframe", reason=DASK_REASON)
    folder, x, g = parquet_dataset
    ref = np.bincount(x, minlength=11)
    np.testing.assert_array_equal(count_choices(folder, 11, column="token"), ref)
    np.testing.assert_array_equal(count_choices(str(folder / "*.parquet"), 11, column="token"),
                                  ref)
    out = count_choices(folder, 11, column="token", group_column="doc")
    dense, ids = _dense_reference(x, g, 11)
    np.testing.assert_array_equal(out.group_ids.astype(str), ids)
    np.testing.assert_array_equal(out.counts.toarray(), dense)
    with pytest.raises(ValueError, match="name its column of token ids with column="):
        count_choices(folder, 11)


def test_parquet_bad_tokens_raise_clear_errors(client, tmp_path):
    pytest.importorskip("dask.dataframe", reason=DASK_REASON)
    pa = pytest.importorskip("pyarrow", reason='needs pyarrow: pip install "softmix[io]"')
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"token": [0.0, 1.0, None]}), tmp_path / "missing.parquet")
    with pytest.raises(ValueError, match=r"choices column 'token' contains (missing|1 NaN)"):
        count_choices(tmp_path / "missing.parquet", 3, column="token")
    pq.write_table(pa.table({"token": [0, 1, 7]}), tmp_path / "range.parquet")
    with pytest.raises(ValueError, match=r"choices column 'token' must be alternative indices "
                                         r"in \[0, 3\).*got 7.*in chunk 0"):
        count_choices(tmp_path / "range.parquet", 3, column="token")


@pytest.mark.parametrize("bad, exc, match", [
    (np.r_[np.arange(100), 100], ValueError, r"alternative indices in \[0, 100\).*got 100.*chunk"),
    (np.r_[np.arange(100), -3], ValueError, r"alternative indices.*got -3.*in chunk 3"),
    (np.r_[np.arange(100.0), np.nan], ValueError, r"choices contains 1 NaN.*in chunk 3"),
    (np.r_[np.arange(100.0), 2.5], ValueError, r"must hold integers.*2.5.*in chunk 3"),
    (np.ones(10, dtype=bool), TypeError, r"choices must hold integer token ids, got dtype bool"),
])
def test_dask_errors_are_clear(client, bad, exc, match):
    import dask.array as da

    with pytest.raises(exc, match=match):
        count_choices(da.from_array(bad, chunks=30), 100)


def test_fit_from_dask_choices_equals_numpy_fit(client):
    import dask.array as da

    rng = np.random.default_rng(7)
    data = make_softmax_mixture(6000, 60, 3, 2, random_state=rng)
    features, x = data.features, data.choices
    dx = da.from_array(x, chunks=1000)
    a = SoftmaxMixture(2, random_state=0).fit(features, x)
    b = SoftmaxMixture(2, random_state=0).fit(features, dx)
    np.testing.assert_array_equal(a.atoms_, b.atoms_)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    assert a.log_likelihood_ == b.log_likelihood_ and b.n_samples_ == 6000
    assert b.score(features, dx) == a.score(features, x)
    assert b.bic(features, dx) == a.bic(features, x)
    # panel: Dask choices and Dask groups
    g = rng.integers(0, 500, size=x.size)
    a = SoftmaxMixture(2, random_state=0).fit(features, x, groups=g)
    b = SoftmaxMixture(2, random_state=0).fit(features, dx, groups=da.from_array(g, chunks=700))
    np.testing.assert_allclose(b.atoms_, a.atoms_, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(b.group_ids_, a.group_ids_)
    assert b.n_groups_ == a.n_groups_ and b.n_samples_ == a.n_samples_
    np.testing.assert_allclose(b.log_likelihood_, a.log_likelihood_, rtol=1e-12)
    with pytest.raises(ValueError, match="choices must be alternative indices in \\[0, 60\\)"):
        SoftmaxMixture(2).fit(features, da.from_array(np.r_[x, 60], chunks=1000))
    with pytest.raises(ValueError, match="Dask choices without groups and with covariates"):
        SoftmaxMixture(2).fit(features, dx, covariates=np.zeros((x.size, 1)))


def test_cli_fit_smm_from_a_parquet_token_dataset(client, parquet_dataset, tmp_path, capsys):
    pytest.importorskip("dask.dataframe", reason=DASK_REASON)
    import json

    from softmix.cli import main

    folder, x, _g = parquet_dataset
    features = np.random.default_rng(8).normal(size=(11, 2))
    np.save(tmp_path / "features.npy", features)
    argv = ["fit", "smm", "--features", str(tmp_path / "features.npy"), "--choices",
            str(folder), "--column", "token", "-k", "2", "--seed", "1", "--json",
            "--out", str(tmp_path / "m.softmix")]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    ref = SoftmaxMixture(2, random_state=1).fit(features, x)
    assert report["n_samples"] == x.size and report["log_likelihood"] == ref.log_likelihood_
    assert main(argv[:6] + argv[8:]) == 2  # no --column: exit 2, one line naming the fix
    assert "needs --column NAME" in capsys.readouterr().err
