"""Experiment contract (every registered experiment) and the smm-rates claims on its quick grid."""

import json

import numpy as np
import pytest

from softmix import __version__
from softmix.experiments import REGISTRY, get_experiment
from softmix.experiments.runner import run_experiment

_CACHE: dict[str, tuple] = {}


def _quick(name, tmp_path_factory):
    """Each experiment's quick run, once per test process."""
    if name not in _CACHE:
        out = tmp_path_factory.mktemp(name.replace("-", "_"))
        _CACHE[name] = run_experiment(name, quick=True, seed=0, out=out)
    return _CACHE[name]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_experiment_quick_run_writes_its_folder(name, tmp_path_factory):
    module = get_experiment(name)
    needs = getattr(module, "missing_requirements", None)  # data from optional packages
    if needs is not None and needs(module.Config.quick()):
        pytest.skip(needs(module.Config.quick()))
    assert isinstance(module.NAME, str) and module.NAME == name and module.DESCRIPTION
    folder, rows, summary = _quick(name, tmp_path_factory)
    meta = json.loads((folder / "config.json").read_text())
    assert meta["seed"] == 0 and meta["softmix_version"] == __version__ and meta["quick"]
    assert (folder / "results.csv").read_text().count("\n") == len(rows) + 1 and rows
    assert (folder / "summary.md").read_text().strip() == summary.strip() and summary
    assert list(folder.glob("*.png"))


def test_smm_rates_quick_em_slope_and_mom_plateau(tmp_path_factory):
    from softmix.experiments.smm_rates import median_errors, slopes

    _, rows, _ = _quick("smm-rates", tmp_path_factory)
    s = slopes(rows)
    assert -0.75 <= s["em_mom"] <= -0.3
    _, mom = median_errors(rows, "mom")
    _, em = median_errors(rows, "em_mom")
    assert mom[-1] > em[-1]
    assert all(np.isfinite(r["atom_error"]) for r in rows)
