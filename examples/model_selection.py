"""Choosing the number of classes of a softmax mixture by BIC.

Simulates a softmax mixture with K = 3 classes, fits K = 1..K_max with
:class:`softmix.SoftmaxMixture` and picks the K of smallest :meth:`~softmix.SoftmaxMixture.bic`
(``-2 loglik + n_params log N``; ``n_params = K - 1 + K L``).

Run::

    python examples/model_selection.py            # p = 5,000, L = 4, N = 1e6, K = 1..5
    python examples/model_selection.py --quick    # p = 1,000, L = 3, N = 1e5, K = 1..4
"""

from __future__ import annotations

import argparse

from softmix import SoftmaxMixture
from softmix.datasets import make_softmax_mixture


def main(argv: list[str] | None = None) -> dict:
    """Run the example; returns the BIC per K and the chosen K."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small setting (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    p, length, n, k_max = (1_000, 3, 100_000, 4) if args.quick else (5_000, 4, 1_000_000, 5)
    true_k = 3
    data = make_softmax_mixture(n_samples=n, n_alternatives=p, n_features=length,
                                n_components=true_k, separation=1.5, return_choices=False,
                                random_state=args.seed)
    bic = {}
    print(f"data: p = {p}, L = {length}, N = {n:,}, true K = {true_k}")
    print(" K   log-likelihood            BIC")
    for k in range(1, k_max + 1):
        model = SoftmaxMixture(k, n_init=2, random_state=args.seed).fit(data.features,
                                                                       counts=data.counts)
        bic[k] = model.bic()
        print(f"{k:2d}  {model.log_likelihood_:15,.1f}  {bic[k]:15,.1f}")
    chosen = min(bic, key=bic.get)
    print(f"BIC chooses K = {chosen}")
    return {"bic": bic, "chosen": chosen, "true_k": true_k}


if __name__ == "__main__":
    main()
