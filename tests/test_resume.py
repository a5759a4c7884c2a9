"""Long runs lose nothing: an experiment interrupted after some cells and run again with the
same ``out`` reuses its finished cells and ends with the table of an uninterrupted run; every
file is written atomically."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from softmix.experiments import runner
from softmix.experiments.runner import CellCache, atomic_write_text, cell, run_experiment

# a small smm-rates grid: 2 sizes x 2 replications = 4 cells of one EM fit each (no SDP)
SMALL = {"n_grid": (1_000, 3_000), "n_reps": 2, "n_alternatives": 300, "methods": ("em_random",),
         "max_iter": 50}


def _table(folder):
    """results.csv without the wall-clock columns (the only ones two runs may differ in)."""
    with open(folder / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]


class _Stop(KeyboardInterrupt):
    pass


def _interrupt_after(n_cells):
    def progress(done, total):
        if done >= n_cells:
            raise _Stop  # what Ctrl-C raises, after the n-th cell was stored
    return progress


def _counting_replicate(monkeypatch):
    from softmix.experiments import smm_rates

    calls = []
    original = smm_rates.replicate

    def counted(**kw):
        calls.append(kw["n_samples"])
        return original(**kw)

    monkeypatch.setattr(smm_rates, "replicate", counted)
    return calls


def test_interrupted_run_resumes_from_finished_cells(tmp_path, monkeypatch):
    calls = _counting_replicate(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("smm-rates", quick=True, seed=3, out=tmp_path / "a", plots=False,
                       overrides=SMALL, progress=_interrupt_after(2))
    folder = tmp_path / "a" / "smm-rates"
    assert len(list((folder / "cells").glob("*.json"))) == 2 and len(calls) == 2
    assert not (folder / "results.csv").exists()  # nothing half-finished is presented as done

    calls.clear()
    run_experiment("smm-rates", quick=True, seed=3, out=tmp_path / "a", plots=False,
                   overrides=SMALL)
    assert len(calls) == 2  # only the two unfinished cells were computed
    meta = json.loads((folder / "config.json").read_text())
    assert (meta["cells_reused"], meta["cells_computed"]) == (2, 2)

    calls.clear()
    run_experiment("smm-rates", quick=True, seed=3, out=tmp_path / "b", plots=False,
                   overrides=SMALL)
    assert len(calls) == 4
    assert _table(folder) == _table(tmp_path / "b" / "smm-rates")
    assert (folder / "summary.md").read_text() == (
        tmp_path / "b" / "smm-rates" / "summary.md").read_text()


def test_cells_are_keyed_by_seed_and_config(tmp_path, monkeypatch):
    calls = _counting_replicate(monkeypatch)
    run_experiment("smm-rates", quick=True, seed=3, out=tmp_path, plots=False, overrides=SMALL)
    calls.clear()
    run_experiment("smm-rates", quick=True, seed=4, out=tmp_path, plots=False, overrides=SMALL)
    assert len(calls) == 4  # another seed: nothing reused
    calls.clear()
    run_experiment("smm-rates", quick=True, seed=3, out=tmp_path, plots=False,
                   overrides=dict(SMALL, max_iter=7))
    assert len(calls) == 4  # another Config: nothing reused
    calls.clear()
    run_experiment("smm-rates", quick=True, seed=3, out=tmp_path, plots=False, overrides=SMALL)
    assert calls == []  # the first run's cells are all still there


def test_unreadable_cell_is_recomputed(tmp_path):
    cache = CellCache(tmp_path, {"experiment": "x", "seed": 0})
    assert cache.get_or_compute(("a", 1), lambda: [{"v": 1.5}]) == [{"v": 1.5}]
    (path,) = tmp_path.glob("*.json")
    path.write_text('{"identity": ')  # a truncated file (not written by softmix, which is atomic)
    assert cache.get_or_compute(("a", 1), lambda: [{"v": 2.5}]) == [{"v": 2.5}]
    assert (cache.reused, cache.computed) == (0, 2)
    assert cache.get_or_compute(("a", 1), lambda: pytest.fail("recomputed")) == [{"v": 2.5}]


def test_cell_results_round_trip_json_and_numpy_scalars(tmp_path):
    import numpy as np

    value = [{"a": np.float64(0.1), "b": np.int64(3), "c": np.bool_(True), "d": float("nan"),
              "e": float("inf"), "f": (1, 2), "g": "text"}]
    cache = CellCache(tmp_path, {"seed": 0})
    with runner._cells(cache):
        fresh = cell(("k",), lambda: value)
        again = cell(("k",), lambda: pytest.fail("recomputed"))
    assert json.dumps(fresh) == json.dumps(again)
    assert fresh[0]["a"] == 0.1 and type(fresh[0]["b"]) is int and fresh[0]["c"] is True
    assert fresh[0]["d"] != fresh[0]["d"] and fresh[0]["e"] == float("inf")
    assert cell(("k",), lambda: value) is value  # outside run_experiment: no cache at all


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "results.csv"
    atomic_write_text(target, "old\n")

    def boom(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new\n" * 1000)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary file left


def test_killed_process_resumes(tmp_path):
    """SIGKILL a real `softmix reproduce` mid-run; the rerun reuses what was stored."""
    out = tmp_path / "out"
    cells = out / "smm-cost" / "cells"
    cmd = [sys.executable, "-m", "softmix", "reproduce", "smm-cost", "--quick", "--out", str(out)]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(cells.glob("*.json"))) >= 2:
                break
            time.sleep(0.05)
        if proc.poll() is not None:
            pytest.skip("smm-cost --quick finished before it could be killed")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    stored = list(cells.glob("*.json"))
    assert len(stored) >= 2
    for path in stored:  # every stored cell is complete JSON
        assert "value" in json.loads(path.read_text())
    done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    meta = json.loads((out / "smm-cost" / "config.json").read_text())
    assert meta["cells_reused"] >= len(stored) and meta["cells_computed"] >= 0
    assert meta["cells_reused"] + meta["cells_computed"] == len(list(cells.glob("*.json")))
