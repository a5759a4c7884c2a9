"""Random against greedy starts on heavy-tailed designs: the final log-likelihood of each.

Designs: p alternatives with i.i.d. Student-t(df) features (heavy tails, like real embedding
matrices; the default fit resolves to the Newton M-step on all of them), K classes of equal
weight with atoms ``N(0, 1.5^2 I / L)``, N = 200,000 draws (data seeds 0 and 1). Per design:
``SoftmaxMixture(K, random_state=s)`` (the default, ``init="random"``) for s = 0..4, and
``SoftmaxMixture(K, init="greedy")`` once (it is deterministic), and the screened search
``SoftmaxMixture(K, n_init=10, screen_iter=10, random_state=0)`` (``--search N T``). Reported:
each fit's gap to the best log-likelihood found on that design (nats; 0 = the best) and the
(median) wall seconds.

Run (one BLAS thread, ~2 minutes)::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_smm_starts.py
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from softmix import SoftmaxMixture

DESIGNS = ((2000, 5, 3, 3.0), (5000, 20, 4, 3.0), (3000, 10, 3, 2.5), (2000, 8, 5, 4.0))


def make(p: int, big_l: int, k: int, df: float, seed: int, n: int = 200_000):
    """Features ``t(df)`` of shape (p, L) and counts of N draws from a K-class mixture."""
    rng = np.random.default_rng(seed)
    x = rng.standard_t(df, (p, big_l))
    atoms = rng.standard_normal((k, big_l)) * 1.5 / np.sqrt(big_l)
    s = x @ atoms.T
    s -= s.max(axis=0)
    pi = np.exp(s)
    pi /= pi.sum(axis=0)
    return x, rng.multinomial(n, pi @ np.full(k, 1.0 / k))


def fit(x, counts, k: int, init: str, seed: int, **options) -> tuple[float, float]:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = SoftmaxMixture(k, init=init, random_state=seed, **options).fit(x, counts=counts)
    return model.log_likelihood_, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="random starts per design")
    parser.add_argument("--search", type=int, nargs=2, default=(10, 10), metavar=("N", "T"),
                        help="the screened search: n_init=N, screen_iter=T (default 10 10)")
    args = parser.parse_args(argv)
    n_search, t_search = args.search
    print("| p | L | K | df | data seed | random: gap per seed (nats) | random: median s | "
          f"greedy: gap (nats) | greedy: s | n_init={n_search}, screen_iter={t_search}: gap "
          "(nats) | its s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for p, big_l, k, df in DESIGNS:
        for data_seed in (0, 1):
            x, counts = make(p, big_l, k, df, data_seed)
            rand = [fit(x, counts, k, "random", s) for s in range(args.seeds)]
            greedy = fit(x, counts, k, "greedy", 0)
            search = fit(x, counts, k, "random", 0, n_init=n_search, screen_iter=t_search)
            best = max([ll for ll, _ in rand] + [greedy[0], search[0]])
            gaps = ", ".join(f"{best - ll:,.1f}" for ll, _ in rand)
            print(f"| {p} | {big_l} | {k} | {df:g} | {data_seed} | {gaps} | "
                  f"{np.median([t for _, t in rand]):.2f} | {best - greedy[0]:,.1f} | "
                  f"{greedy[1]:.2f} | {best - search[0]:,.1f} | {search[1]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
