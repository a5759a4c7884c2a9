"""Softmax-gated mixtures of experts (papers 2 and 3): one core for every expert type.

- :mod:`~softmix.moe.model`: :class:`MoEParams`, log-likelihood, posteriors, gradient, sampler;
- :mod:`~softmix.moe.gating`: the softmax gate and its M-step;
- :mod:`~softmix.moe.experts`: Gaussian, logistic and multinomial experts (:data:`EXPERTS`);
- :mod:`~softmix.moe.init`: the initialisations (random soft start, k-means, near truth);
- :mod:`~softmix.moe.em`: EM on the shared driver and the scale-free stationarity criterion
  (:func:`~softmix.moe.em.score_gain`, the predicted remaining gain in nats);
- :mod:`~softmix.moe.gradient`: gradient descent and gradient EM on the same objective;
- :mod:`~softmix.moe.mirror`: the symmetric models, their mirror maps and the
  missing-information diagnostic (EM as mirror descent);
- :mod:`~softmix.moe.options`: flexmix's options (constant gate, gate covariates, intercept-free
  experts, equal variances, sample weights) as constraints on the same model;
- :mod:`~softmix.moe.standardize`: the estimator's internal coordinates (centred, scaled,
  identified columns), so fits are equivariant to the units of X and y;
- :mod:`~softmix.moe.diagnostics`: separation (glm's "fitted probabilities numerically 0 or
  1") and experts thinner than their parameters;
- :mod:`~softmix.moe.estimator`: the scikit-learn-style :class:`MixtureOfExperts`.
"""

from softmix.moe.model import MoEParams

__all__ = ["MoEParams"]
