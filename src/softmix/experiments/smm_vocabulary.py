"""A real vocabulary: does a softmax mixture over token embeddings find the languages?

The spec's motivating case is an LLM's last layer: the alternatives are the tokens of a
vocabulary, the design their embedding matrix. Here the design is a real token-embedding matrix
(all-MiniLM-L6-v2's whole-word tokens by default, :func:`softmix.vocabulary.load_token_embeddings`)
projected on its top principal components, and the counts are N draws from a mixture of real
languages in known proportions: each draw picks language l with probability w_l, then a token
from l's word frequencies (``wordfreq``) restricted to the vocabulary
(:func:`softmix.vocabulary.sample_language_mixture`). For K = 1..6 we fit
:class:`softmix.SoftmaxMixture` from ``n_init`` random starts and record every run; K is chosen
by BIC among the K with a converged run (the rule of :func:`softmix.select_n_components`, which
the per-K cells follow so that an interrupted run resumes K by K); at K = number of languages
the classes are matched to the languages with :func:`softmix.metrics.align` against each
language's own one-class fit (its projection onto the softmax family), and we report the
confusion (for each language's draws, the mean posterior of each class) next to the true
model's (its posterior of the language given the token: what a perfect fit would show), and the weights against the true proportions. Besides these mean
posteriors, the hard version (share of draws whose most probable class is their language's)
is compared with the Bayes rule's accuracy, the best any token-level classifier can reach.

What to expect, and why it is not the paper's setting: real languages are not softmax classes
of an embedding (the model is misspecified, so with N = 10^6 BIC keeps adding classes, which
describe frequency bands and topics of the embedding space more than languages); languages that
share many tokens (French, Spanish, Italian: ``de``, ``la``, ``en``...) cannot be separated
token by token at all (the oracle's confusion says how far). ``source="synthetic"`` runs the
same pipeline on a tiny well-specified stand-in (:func:`softmix.vocabulary.make_synthetic_languages`),
where the languages are recovered.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import optimize

from softmix.core.restarts import spawn
from softmix.experiments.runner import cell
from softmix.metrics import align
from softmix.softmax_mixture.em import DEFAULT_TOL
from softmix.softmax_mixture.estimator import SoftmaxMixture
from softmix.softmax_mixture.model import SoftmaxMixtureParams, log_responsibilities
from softmix.vocabulary import (
    LanguageVocabulary,
    load_language_vocabulary,
    make_synthetic_languages,
    oracle_confusion,
    sample_language_mixture,
)
from softmix.vocabulary import (
    missing_requirements as _missing,
)

NAME = "smm-vocabulary"
DESCRIPTION = (
    "softmax mixture on a real vocabulary (MiniLM token embeddings, wordfreq frequencies of 5 "
    "languages mixed in known proportions): selected K, class-vs-language confusion, weights"
)

SOURCES = ("minilm", "glove", "synthetic")


@dataclass
class Config:
    """Full run (about 4 minutes on one core, measured): MiniLM's 21,713 whole-word tokens used by
    en/fr/de/es/it, projected on 16 principal components, N = 10^6, K = 1..6, 2 random starts
    per K, up to 1,000 SQUAREM cycles per start.

    ``m_step = "newton"``, not the estimator's ``"auto"``: on these designs ``"auto"`` may
    choose the gradient M-step (it does at p = 3,000, L = 8, the quick setting), which stalls
    there (K = 3..5: still ~40 nats of predicted gain after 1,000 SQUAREM cycles, not
    converged), while the Newton M-step converges in 30-70 cycles to a higher likelihood
    (measured; docs/experiments/smm-vocabulary.md). ``m_step="auto"`` runs the default fit.
    ``max_iter = 1000`` is the estimator's default. ``source="synthetic"`` ignores
    ``languages`` and uses ``len(weights)`` synthetic languages of ``n_tokens`` (default 400)
    tokens.
    """

    source: str = "minilm"
    languages: tuple[str, ...] = ("en", "fr", "de", "es", "it")
    weights: tuple[float, ...] = (0.3, 0.25, 0.2, 0.15, 0.1)
    n_samples: int = 1_000_000
    n_tokens: int | None = None
    n_features: int | None = 16
    k_grid: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    n_init: int = 2
    max_iter: int = 1000
    tol: float = DEFAULT_TOL
    m_step: str = "newton"
    separation: float = 3.0

    @classmethod
    def quick(cls) -> Config:
        """CI-sized: the 3,000 most frequent tokens, 8 components, N = 10^5, K = 1..5, one
        start each (about 20 s, half of it reading wordfreq; needs the MiniLM wheel and
        wordfreq)."""
        return cls(n_tokens=3_000, n_features=8, n_samples=100_000, k_grid=(1, 2, 3, 4, 5),
                   n_init=1)


def missing_requirements(config: Config | None = None) -> str | None:
    """None when the packages the run needs are installed, else how to install them."""
    source = (config or Config()).source
    return None if source == "synthetic" else _missing(source)


def _check(config: Config) -> None:
    if config.source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {config.source!r}.")
    w = np.asarray(config.weights, dtype=float)
    if config.source != "synthetic" and len(config.languages) != w.size:
        raise ValueError(f"weights must have one entry per language ({len(config.languages)}: "
                         f"{', '.join(config.languages)}), got {w.size}.")
    if np.any(w <= 0) or abs(w.sum() - 1) > 1e-9:
        raise ValueError(f"weights must be positive and sum to 1, got {list(config.weights)}.")


def vocabulary(config: Config, rng: np.random.Generator) -> LanguageVocabulary:
    """The design and the languages' frequencies the run uses (``rng`` only for synthetic)."""
    _check(config)
    if config.source == "synthetic":
        return make_synthetic_languages(
            config.n_tokens or 400, config.n_features or 4, len(config.weights),
            separation=config.separation, random_state=rng)
    return load_language_vocabulary(config.languages, source=config.source,
                                    n_tokens=config.n_tokens, n_features=config.n_features)


def _fit_k(features, counts, k: int, config: Config, rng: np.random.Generator) -> dict:
    """``n_init`` single-start fits at K = k; every run's outcome and the best converged one."""
    runs = []
    best: SoftmaxMixture | None = None
    for r, child in enumerate(spawn(rng, config.n_init)):
        model = SoftmaxMixture(k, m_step=config.m_step, max_iter=config.max_iter,
                               tol=config.tol, random_state=child)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-convergence is recorded, not warned
            model.fit(features, counts=counts)
        res = model.fit_result_
        runs.append({"run": r, "log_likelihood": model.log_likelihood_,
                     "converged": bool(model.converged_), "n_iter": model.n_iter_,
                     "stop_reason": model.stop_reason_,
                     "criterion_value": float(res.criterion_value),
                     "m_step": model.m_step_used_, "seconds": time.perf_counter() - t0})
        if best is None or (model.converged_, model.log_likelihood_) > (best.converged_,
                                                                         best.log_likelihood_):
            best = model
    assert best is not None  # n_init >= 1 (checked by SoftmaxMixture)
    return {"runs": runs, "best": {
        "converged": bool(best.converged_), "log_likelihood": best.log_likelihood_,
        "bic": best.bic(), "aic": best.aic(), "n_parameters": best.n_parameters_,
        "weights": best.weights_, "atoms": best.atoms_}}


def _language_atoms(features, counts_by_language) -> np.ndarray:
    """Each language's one-class fit (a concave problem): its softmax projection."""
    return np.stack([SoftmaxMixture(1, random_state=0).fit(features, counts=c).atoms_[0]
                     for c in counts_by_language])


def confusion(features, counts_by_language, params: SoftmaxMixtureParams, *,
              hard: bool = False) -> np.ndarray:
    """(n_languages, K): row l is the mean posterior of each class over language l's draws,
    ``sum_j n_lj P(class | token j) / N_l`` (rows sum to 1); ``hard=True``: the share of
    language l's draws whose most probable class is each class."""
    resp = np.exp(log_responsibilities(features, params))  # (p, K)
    if hard:
        resp = (np.arange(resp.shape[1]) == np.argmax(resp, axis=1)[:, None]).astype(float)
    counts = np.asarray(counts_by_language, dtype=np.float64)
    return counts @ resp / counts.sum(axis=1, keepdims=True)


def run(config: Config, rng: np.random.Generator, progress=None) -> list[dict]:
    data_rng, sample_rng, *k_rngs = spawn(rng, 2 + len(config.k_grid))
    vocab = vocabulary(config, data_rng)
    x = vocab.features
    by_language = sample_language_mixture(vocab.frequencies, config.weights, config.n_samples,
                                          sample_rng)
    counts = by_language.sum(axis=0)
    n_lang = len(vocab.languages)
    share = vocab.frequencies / vocab.frequencies.sum(axis=0, keepdims=True)
    dominant = share.max(axis=0)
    rows: list[dict] = [{
        "kind": "data", "source": vocab.source, "n_tokens": vocab.n_tokens,
        "n_features": x.shape[1], "n_samples": config.n_samples,
        "explained_variance": vocab.explained_variance,
        "languages": " ".join(vocab.languages),
        "coverage": " ".join(f"{c:.3f}" for c in vocab.coverage),
        # share of the draws on tokens one language holds >= 90% of (by frequency)
        "draws_on_dominated_tokens": float(counts[dominant >= 0.9].sum() / counts.sum()),
    }]
    oracle = oracle_confusion(vocab.frequencies, config.weights, by_language)
    oracle_hard = oracle_confusion(vocab.frequencies, config.weights, by_language, hard=True)
    for i, lang in enumerate(vocab.languages):
        for j, other in enumerate(vocab.languages):
            rows.append({"kind": "oracle", "language": lang, "class": other,
                         "value": float(oracle[i, j])})
    fits = {}
    total = len(config.k_grid) + 1
    for done, (k, k_rng) in enumerate(zip(config.k_grid, k_rngs)):
        fits[k] = cell(("fit", k), _fit_k, x, counts, k, config, k_rng)
        for r in fits[k]["runs"]:
            rows.append(dict(r, kind="run", n_components=k))
        if progress is not None:
            progress(done + 1, total)
    competing = {k: f["best"]["bic"] for k, f in fits.items() if f["best"]["converged"]}
    chosen = min(competing, key=lambda k: competing[k]) if competing else None
    for k, f in fits.items():
        b = f["best"]
        rows.append({"kind": "k", "n_components": k, "log_likelihood": b["log_likelihood"],
                     "converged": b["converged"], "bic": b["bic"], "aic": b["aic"],
                     "n_parameters": b["n_parameters"],
                     "n_converged": sum(r["converged"] for r in f["runs"]),
                     "n_init": config.n_init,
                     "seconds": sum(r["seconds"] for r in f["runs"]),
                     "selected": k == chosen})
    ref_atoms = np.asarray(cell(("language-atoms",), _language_atoms, x, by_language))
    truth = SoftmaxMixtureParams(np.asarray(config.weights, dtype=float), ref_atoms)
    for k, f in fits.items():
        params = SoftmaxMixtureParams(np.asarray(f["best"]["weights"]),
                                      np.asarray(f["best"]["atoms"]))
        if k == n_lang:
            params = align(params, truth)  # class i <-> language i
        conf = confusion(x, by_language, params)
        conf_hard = confusion(x, by_language, params, hard=True)
        for i, lang in enumerate(vocab.languages):
            for j in range(k):
                rows.append({"kind": "confusion", "n_components": k, "language": lang,
                             "class": j, "value": float(conf[i, j]),
                             "aligned": k == n_lang})
        if k == n_lang:
            # the matching most favourable to the fit: Hungarian on the hard confusion itself
            # (an upper bound on what any class <-> language labelling could show)
            _, best = optimize.linear_sum_assignment(-conf_hard)
            share = np.asarray(config.weights, dtype=float)  # as recovery() weighs them
            rows.append({"kind": "matching", "n_components": k,
                         "accuracy": float(share @ conf_hard[np.arange(n_lang), best]),
                         "recovered": float(share @ conf[np.arange(n_lang), best]),
                         "matches_align": bool(np.all(best == np.arange(n_lang)))})
            for i, lang in enumerate(vocab.languages):
                rows.append({"kind": "weights", "n_components": k, "language": lang,
                             "true_weight": float(config.weights[i]),
                             "fitted_weight": float(params.weights[i]),
                             "recovered": float(conf[i, i]),
                             "oracle": float(oracle[i, i]),
                             "accuracy": float(conf_hard[i, i]),
                             "bayes_accuracy": float(oracle_hard[i, i])})
    if progress is not None:
        progress(total, total)
    return rows


def _of(rows, kind):
    return [r for r in rows if r["kind"] == kind]


def recovery(rows: list[dict]) -> dict:
    """At K = number of languages (classes aligned to languages), averaged over the draws
    (language l weighted by its true proportion): ``recovered``, the mean posterior of the
    draw's own language's class, and ``oracle``, the same under the true model; ``accuracy``,
    the share of draws whose most probable class is their language's, and ``bayes_accuracy``,
    the Bayes rule's (the best any token-level classifier can do); ``weight_l1`` is
    ``||w_hat - w||_1``; ``best_matching_accuracy``, the accuracy under the class <-> language
    matching most favourable to the fit (Hungarian on the confusion itself, an upper bound on
    any labelling's), and ``matches_align``, whether that matching is align's. Empty when
    K = number of languages was not fitted."""
    w = _of(rows, "weights")
    if not w:
        return {}
    tw = np.array([r["true_weight"] for r in w])
    out = {key: float(tw @ [r[key] for r in w])
           for key in ("recovered", "oracle", "accuracy", "bayes_accuracy")}
    out["weight_l1"] = float(np.abs(tw - [r["fitted_weight"] for r in w]).sum())
    m = _of(rows, "matching")
    if m:
        out["best_matching_accuracy"] = m[0]["accuracy"]
        out["matches_align"] = m[0]["matches_align"]
    return out


def selected_k(rows: list[dict]) -> int | None:
    """The K chosen by BIC among the K with a converged run (None when none converged)."""
    ks = [r["n_components"] for r in _of(rows, "k") if r["selected"]]
    return ks[0] if ks else None


def summarize(rows: list[dict], config: Config) -> str:
    d = _of(rows, "data")[0]
    langs = d["languages"].split()
    ks = _of(rows, "k")
    k_sel = selected_k(rows)
    lines = [
        f"## smm-vocabulary: {d['source']} embeddings, {len(langs)} languages",
        "",
        (f"p = {d['n_tokens']:,} whole-word tokens, L = {d['n_features']} principal components "
         f"({d['explained_variance']:.0%} of the embeddings' variance), N = {d['n_samples']:,} "
         f"draws; languages {', '.join(langs)} with weights "
         f"{', '.join(f'{w:g}' for w in config.weights)}; share of each language's "
         f"frequency mass on these tokens: {d['coverage'].replace(' ', ', ')}; "
         f"{d['draws_on_dominated_tokens']:.0%} of the draws fall on tokens one language "
         "holds >= 90% of."),
        "",
        "| K | log-likelihood | BIC | converged runs | seconds |",
        "|---|---|---|---|---|",
    ]
    for r in ks:
        mark = " **selected**" if r["selected"] else ""
        conv = "" if r["converged"] else " (best run not converged)"
        lines.append(f"| {r['n_components']}{mark} | {r['log_likelihood']:,.1f}{conv} | "
                     f"{r['bic']:,.1f} | {r['n_converged']}/{r['n_init']} | "
                     f"{r['seconds']:.3g} |")
    lines += ["", f"Selected K (BIC, converged runs only): {k_sel}."]
    if k_sel is not None and len(ks) > 1 and k_sel == max(r["n_components"] for r in ks):
        lines.append("It is the largest K of the grid: the BIC optimum may lie beyond it.")
    sel_bic = next((r["bic"] for r in ks if r["selected"]), np.inf)
    excluded = [r["n_components"] for r in ks if not r["converged"] and r["bic"] < sel_bic]
    if excluded:
        lines.append(
            f"Not competing although their best run's BIC is lower: K = "
            f"{', '.join(map(str, excluded))} (no run converged within max_iter = "
            f"{config.max_iter}): the selected K is then a lower bound set by the optimiser, "
            "not by the data.")
    rec = recovery(rows)
    if rec:
        lines += [
            "",
            (f"At K = {len(langs)} (classes matched to languages by softmix.metrics.align "
             "against each language's one-class fit): mean posterior of the draw's own "
             f"language's class {rec['recovered']:.1%} (the true model: {rec['oracle']:.1%}); "
             f"draws whose most probable class is their language's {rec['accuracy']:.1%} "
             f"(Bayes rule, the best any token-level classifier can do: "
             f"{rec['bayes_accuracy']:.1%}); ||w_hat - w||_1 = {rec['weight_l1']:.3f}. "
             "Under the matching most favourable to the fit (Hungarian on the confusion "
             f"itself{', the same as align' if rec['matches_align'] else ''}) the accuracy "
             f"is {rec['best_matching_accuracy']:.1%}."),
            "",
            ("| language | true weight | fitted weight | own-class posterior (truth) | "
             "accuracy (Bayes) |"),
            "|---|---|---|---|---|",
        ]
        for r in _of(rows, "weights"):
            lines.append(f"| {r['language']} | {r['true_weight']:.3f} | "
                         f"{r['fitted_weight']:.3f} | {r['recovered']:.3f} "
                         f"({r['oracle']:.3f}) | {r['accuracy']:.3f} "
                         f"({r['bayes_accuracy']:.3f}) |")
    runs = _of(rows, "run")
    if runs:
        lines += ["", (f"{sum(r['converged'] for r in runs)} of {len(runs)} runs converged "
                       f"(max_iter = {config.max_iter}); {sum(r['seconds'] for r in runs):.0f} s "
                       "of fitting in all.")]
    return "\n".join(lines)


def _matrix(rows, kind, langs, k=None):
    sel = [r for r in _of(rows, kind) if k is None or r["n_components"] == k]
    cols = sorted({r["class"] for r in sel}, key=lambda c: (isinstance(c, str), c)) \
        if kind == "confusion" else langs
    m = np.full((len(langs), len(cols)), np.nan)
    for r in sel:
        m[langs.index(r["language"]), cols.index(r["class"])] = r["value"]
    return m, cols


def plot(rows: list[dict], config: Config, out_dir) -> list[Path]:
    import matplotlib.pyplot as plt

    from softmix.plotting import plot_selection

    out_dir = Path(out_dir)
    paths = []
    ks = _of(rows, "k")
    bic = [r["bic"] if r["converged"] else np.nan for r in ks]
    paths.append(plot_selection(
        [r["n_components"] for r in ks], bic, out_dir / "smm_vocabulary_selection.png",
        criterion="BIC", chosen=selected_k(rows),
        title="smm-vocabulary: BIC by K (converged fits)"))

    langs = _of(rows, "data")[0]["languages"].split()
    panels: list[tuple[str, int | None, str]] = [
        ("oracle", None, "true model: P(language | token)")]
    for kk in sorted({len(langs), selected_k(rows) or len(langs)}):
        if any(r["n_components"] == kk for r in _of(rows, "confusion")):
            panels.append(("confusion", kk, f"fitted classes, K = {kk}"
                           + (" (aligned)" if kk == len(langs) else "")))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.3), squeeze=False,
                             layout="constrained")
    for ax, (kind, k, title) in zip(axes[0], panels):
        m, cols = _matrix(rows, kind, langs, k)
        im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="w" if m[i, j] < 0.5 else "k")
        ax.set_yticks(range(len(langs)), langs)
        aligned = kind == "confusion" and k == len(langs)
        ax.set_xticks(range(len(cols)), [f"{c}\n({langs[c]})" if aligned else str(c)
                                         for c in cols])
        ax.set_xlabel("language" if kind == "oracle" else
                      "class (matched language)" if aligned else "class")
        if ax is axes[0][0]:
            ax.set_ylabel("language of the draw")
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="mean posterior")
    path = out_dir / "smm_vocabulary_confusion.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    paths.append(path)

    w = _of(rows, "weights")
    if w:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        pos = np.arange(len(w))
        ax.bar(pos - 0.2, [r["true_weight"] for r in w], 0.4, label="true proportion")
        ax.bar(pos + 0.2, [r["fitted_weight"] for r in w], 0.4, label="fitted weight (aligned)")
        ax.set_xticks(pos, [r["language"] for r in w])
        ax.set_ylabel("weight")
        ax.set_title(f"smm-vocabulary: weights at K = {len(w)}", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / "smm_vocabulary_weights.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths
