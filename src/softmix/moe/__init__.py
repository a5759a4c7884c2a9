"""Softmax-gated mixtures of experts (papers 2 and 3): one core for every expert type.

- :mod:`~softmix.moe.model`: :class:`MoEParams`, log-likelihood, posteriors, gradient, sampler;
- :mod:`~softmix.moe.gating`: the softmax gate and its M-step;
- :mod:`~softmix.moe.experts`: Gaussian, logistic and multinomial experts (:data:`EXPERTS`);
- :mod:`~softmix.moe.init`: the initialisations (random soft start, k-means, near truth);
- :mod:`~softmix.moe.em`: EM on the shared driver;
- :mod:`~softmix.moe.gradient`: gradient descent and gradient EM on the same objective;
- :mod:`~softmix.moe.mirror`: the symmetric models, their mirror maps and the
  missing-information diagnostic (EM as mirror descent);
- :mod:`~softmix.moe.options`: flexmix's options (constant gate, gate covariates, intercept-free
  experts, equal variances, sample weights) as constraints on the same model;
- :mod:`~softmix.moe.estimator`: the scikit-learn-style :class:`MixtureOfExperts`.
"""

from softmix.moe.model import MoEParams

__all__ = ["MoEParams"]
