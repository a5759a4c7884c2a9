"""Latent class logit for long-format choice data: varying choice sets (availability), panels
(a person keeps one class) and class-membership covariates.

- :mod:`~softmix.choice.data`: validation and the (group, situation)-sorted layout.
- :mod:`~softmix.choice.model`: parameters, segment-sum log-likelihood, E-step, M-step, EM map.
- :mod:`~softmix.choice.likelihood`: the likelihood protocol (vector, loglik, score, Hessian).
- :mod:`~softmix.choice.estimator`: :class:`LatentClassLogit`.
- :mod:`~softmix.choice.inference`: the glue to ``softmix.inference`` and ``select_n_components``.
- :mod:`~softmix.choice.datasets`: simulator with the truth, the Swissmetro loader.
"""

from softmix.choice.estimator import LatentClassLogit
from softmix.choice.model import LatentClassLogitParams

__all__ = ["LatentClassLogit", "LatentClassLogitParams"]
