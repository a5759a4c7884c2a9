"""Smoke test of examples/latent_class_swissmetro.py on the real Swissmetro data (skips without
biogeme's copy of the file: `pip install biogeme`)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from softmix import LatentClassLogit
from softmix.choice.datasets import find_swissmetro, load_swissmetro

try:
    find_swissmetro()
    HAVE_DATA = True
except FileNotFoundError:
    HAVE_DATA = False

pytestmark = pytest.mark.skipif(
    not HAVE_DATA, reason="Swissmetro ships with biogeme: pip install biogeme")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "latent_class_swissmetro.py"


def test_one_class_matches_biogeme_b01logit():
    # biogeme's example b01logit on the same 6,768 choices: final log-likelihood -5331.252
    d = load_swissmetro()
    assert d["X"].shape == (19143, 4) and np.unique(d["id"]).size == 752
    m = LatentClassLogit(1).fit(d["X"], d["chosen"], d["situation"], groups=d["id"])
    assert m.log_likelihood_ == pytest.approx(-5331.252, abs=1e-3)
    assert np.allclose(m.coef_[0], [-0.7012, -0.1546, -1.2779, -1.0838], atol=1e-3)


def test_example_runs(capsys):
    spec = importlib.util.spec_from_file_location("latent_class_swissmetro", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.main(["--n-init", "1"])
    out = capsys.readouterr().out
    assert "752 respondents" in out and "membership" in out
    assert model.converged_ and model.log_likelihood_ > -4300.0  # 1 class: -5331.25
