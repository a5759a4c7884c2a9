"""Mixtures of experts on Dask arrays (softmix.moe.dask) on a dask.distributed LocalCluster:
the Dask fit equals the in-memory fit from the same data and start, for every expert type."""

import subprocess
import sys

import numpy as np
import pytest

from softmix import MixtureOfExperts
from softmix.datasets import make_moe
from softmix.moe.experts import EXPERTS

da = pytest.importorskip("dask.array", reason='needs dask: pip install "softmix[dask]"')
distributed = pytest.importorskip("dask.distributed",
                                  reason='needs dask.distributed: pip install "softmix[dask]"')

#: Uneven row chunks (sum 2000).
CHUNKS = (500, 730, 270, 500)
RTOL = 1e-8


@pytest.fixture(scope="module")
def client():
    """Two workers of one thread each. In-process workers (processes=False): measured on the
    shared 2-core machine, startup 0.15 s and ~60 ms per pass against 7.3 s and 120-190 ms
    with worker processes; the tasks are the same (test_job_pickles checks they travel)."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _data(expert, n=2000, seed=1):
    X, y, _ = make_moe(n, 2, 2, expert=expert, random_state=seed)
    chunks = CHUNKS if n == sum(CHUNKS) else n // 3
    return X, y, da.from_array(X, chunks=(chunks, 2)), da.from_array(y, chunks=(chunks,))


def _assert_same_fit(m, md):
    for name in ("gating_coef_", "expert_coef_", "expert_variance_"):
        a, b = getattr(m, name), getattr(md, name)
        if a is None:
            assert b is None
            continue
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=1e-12, err_msg=name)
    assert md.n_iter_ == m.n_iter_
    assert md.converged_ == m.converged_
    assert md.fit_result_.stop_reason == m.fit_result_.stop_reason
    np.testing.assert_allclose(md.history_, m.history_, rtol=1e-10)
    np.testing.assert_allclose(md.log_likelihood_, m.log_likelihood_, rtol=1e-10)
    np.testing.assert_allclose(md.fit_result_.criterion_value, m.fit_result_.criterion_value,
                               rtol=1e-6, atol=1e-9)  # nats; ~1e-28 at a fixed point
    np.testing.assert_array_equal(md.dropped_features_, m.dropped_features_)


@pytest.mark.parametrize("expert", sorted(EXPERTS))
def test_dask_fit_equals_in_memory(client, expert):
    X, y, Xd, yd = _data(expert)
    kw = {"max_iter": 8, "tol": 0.0}
    m = MixtureOfExperts(2, expert=expert, random_state=0, **kw).fit(X, y)
    md = MixtureOfExperts(2, expert=expert, random_state=0, **kw).fit(Xd, yd)
    _assert_same_fit(m, md)
    assert md.fit_result_.extra["n_chunks"] == len(CHUNKS)
    # predictions on Dask arrays are lazy Dask arrays equal to the in-memory ones
    pred = md.predict(Xd)
    assert isinstance(pred, da.Array)
    np.testing.assert_allclose(np.asarray(pred.compute(), dtype=float),
                               np.asarray(m.predict(X), dtype=float), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(md.score_samples(Xd, yd).compute(), m.score_samples(X, y),
                               rtol=1e-7)
    score = md.score(Xd, yd)
    assert isinstance(score, da.Array)
    np.testing.assert_allclose(float(score.compute()), m.score(X, y), rtol=1e-8)
    if expert != "gaussian":
        np.testing.assert_allclose(md.predict_proba(Xd).compute(), m.predict_proba(X),
                                   rtol=1e-7, atol=1e-10)


def test_tolerance_stop_threaded_scheduler(client):
    """The stop rule and criterion as in memory, on dask's threaded scheduler (the active
    scheduler is used: here it overrides the cluster's client)."""
    import dask

    X, y, Xd, yd = _data("gaussian")
    m = MixtureOfExperts(2, random_state=0).fit(X, y)
    with dask.config.set(scheduler="threads"):
        md = MixtureOfExperts(2, random_state=0).fit(Xd, yd)
    assert m.converged_ and m.fit_result_.stop_reason == "tol"
    _assert_same_fit(m, md)


def test_given_start_restarts_and_numpy_y(client):
    """A MoEParams start and n_init restarts (spawned streams, best kept) as in memory; a
    NumPy y with a Dask X is chunked like X."""
    X, y, Xd, _ = _data("gaussian", seed=3)
    kw = {"n_init": 2, "max_iter": 3, "tol": 0.0, "random_state": 5}
    m = MixtureOfExperts(2, **kw).fit(X, y)
    md = MixtureOfExperts(2, **kw).fit(Xd, y)
    _assert_same_fit(m, md)
    np.testing.assert_allclose(md.fit_result_.all_objectives, m.fit_result_.all_objectives,
                               rtol=1e-10)
    start = m.params_
    g = MixtureOfExperts(2, init=start, max_iter=3, tol=0.0).fit(X, y)
    gd = MixtureOfExperts(2, init=start, max_iter=3, tol=0.0).fit(Xd, y)
    _assert_same_fit(g, gd)


def test_pruning_and_warnings_as_in_memory(client):
    """min_weight pruning removes the same expert and warns the same way."""
    X, y, Xd, yd = _data("gaussian", seed=2)
    kw = {"min_weight": 0.3, "max_iter": 4, "tol": 0.0, "random_state": 0}
    with pytest.warns(Warning) as mem:
        m = MixtureOfExperts(3, **kw).fit(X, y)
    with pytest.warns(Warning) as dsk:
        md = MixtureOfExperts(3, **kw).fit(Xd, yd)
    assert [str(w.message) for w in dsk] == [str(w.message) for w in mem]
    assert m.n_experts_ < 3
    _assert_same_fit(m, md)


def test_bad_inputs_have_clear_errors(client):
    X, y, Xd, yd = _data("gaussian", n=2000)
    model = MixtureOfExperts(2, max_iter=2)
    with pytest.raises(ValueError, match=r"chunked by rows only.*rechunk"):
        model.fit(da.from_array(X, chunks=(500, 1)), yd)
    with pytest.raises(ValueError, match=r"same row chunks.*rechunk"):
        model.fit(Xd, da.from_array(y, chunks=(1000,)))
    bad = X.copy()
    bad[1300, 1] = np.nan  # row 1300 lies in the third chunk (rows 1230-1499)
    with pytest.raises(ValueError, match=r"X contains 1 NaN.*row chunk 2 \(rows 1230-1499\)"):
        model.fit(da.from_array(bad, chunks=(CHUNKS, 2)), yd)
    ybad = y.copy()
    ybad[0] = np.inf
    with pytest.raises(ValueError, match=r"y contains 1 NaN.*row chunk 0"):
        model.fit(Xd, da.from_array(ybad, chunks=(CHUNKS,)))
    with pytest.raises(ValueError, match="one entry per row"):
        model.fit(Xd, y[:10])
    for options in ({"init": "kmeans"}, {"solver": "gd"}, {"gate": "constant"}):
        with pytest.raises(ValueError, match="not supported with Dask arrays"):
            MixtureOfExperts(2, max_iter=2, **options).fit(Xd, yd)
    with pytest.raises(ValueError, match="sample_weight is not supported with Dask"):
        model.fit(Xd, yd, sample_weight=np.ones(len(y)))


def test_job_pickles():
    """A pass's task (block function + job) survives cloudpickle, as it must to travel to
    worker processes, and gives the same statistics after the trip."""
    cloudpickle = pytest.importorskip("cloudpickle")
    from softmix.moe import dask as mdask
    from softmix.moe.standardize import fit_standardizer

    X, y, _, _ = _data("logistic", n=300)
    std = fit_standardizer(X, y, False)
    prep = mdask._Prep(std, "logistic", np.array([0.0, 1.0]))
    params = MixtureOfExperts(2, expert="logistic", max_iter=0, random_state=0).fit(
        X, y).fit_result_.extra["internal_params"]
    job = mdask._Job(prep, params, (("mass",), ("gate", "gate", params.gating, 2)))
    direct = mdask._block_stats(X, y, job)
    fn, job2 = cloudpickle.loads(cloudpickle.dumps((mdask._block_stats, job)))
    again = fn(X, y, job2)
    np.testing.assert_array_equal(again["gate"][2], direct["gate"][2])
    assert again["loglik"] == direct["loglik"]


def test_softmix_imports_without_dask():
    """softmix (and its MoE with NumPy arrays) works when dask cannot be imported."""
    code = (
        "import sys; sys.modules['dask'] = None; sys.modules['dask.array'] = None\n"
        "import numpy as np, softmix\n"
        "from softmix.datasets import make_moe\n"
        "X, y, _ = make_moe(200, 1, 2, random_state=0)\n"
        "softmix.MixtureOfExperts(2, max_iter=3, tol=0, random_state=0).fit(X, y)\n"
        "from softmix.moe.dask import RowBlocks\n"
        "try:\n    RowBlocks(X, y)\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert 'pip install "softmix[dask]"' in out.stdout
