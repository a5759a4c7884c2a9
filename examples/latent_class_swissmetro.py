"""Latent class logit on Swissmetro: panels, varying choice sets and class-membership covariates.

752 respondents each answered 9 stated-preference choices among train, Swissmetro and car (car
only for car owners: the choice sets vary). Each respondent keeps one latent class over his 9
choices; the class weights depend on whether he is male and holds an annual pass (GA).

Needs the data file that ships with biogeme (``pip install biogeme``; it is read directly,
biogeme is not imported). Run::

    python examples/latent_class_swissmetro.py [--classes 3] [--n-init 5]
"""

from __future__ import annotations

import argparse

import numpy as np

from softmix import LatentClassLogit
from softmix.choice.datasets import SWISSMETRO_ATTRIBUTES, load_swissmetro


def main(argv: list[str] | None = None) -> LatentClassLogit:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--n-init", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    data = load_swissmetro()
    covariates = np.column_stack([data["male"], data["ga"]])
    print(f"{data['X'].shape[0]} rows, {np.unique(data['situation']).size} choices, "
          f"{np.unique(data['id']).size} respondents")

    one = LatentClassLogit(1).fit(data["X"], data["chosen"], data["situation"],
                                  groups=data["id"])
    model = LatentClassLogit(args.classes, n_init=args.n_init, random_state=args.seed)
    model.fit(data["X"], data["chosen"], data["situation"], groups=data["id"],
              covariates=covariates)

    print(f"1 class : log-likelihood {one.log_likelihood_:.3f}  BIC {one.bic():.1f}")
    print(f"{args.classes} classes: log-likelihood {model.log_likelihood_:.3f}  "
          f"BIC {model.bic():.1f}  ({model.n_iter_} iterations, converged {model.converged_}, "
          f"Newton decrement {model.fit_result_.criterion_value:.1e} nats)")
    header = "class  share  " + "  ".join(f"{a:>9}" for a in SWISSMETRO_ATTRIBUTES)
    print(header)
    for k in range(args.classes):
        row = "  ".join(f"{v:9.3f}" for v in model.coef_[k])
        print(f"{k:5d}  {model.weights_[k]:5.2f}  {row}")
    print("membership (intercept, male, ga), the last class the reference:")
    print(np.array2string(model.membership_coef_, precision=3))
    return model


if __name__ == "__main__":
    main()
