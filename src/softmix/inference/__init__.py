"""Inference at a fitted model: observed information, covariance options, reports.

- :mod:`~softmix.inference.information`: the exact Hessian of a mixture log-likelihood from the
  families' per-component derivatives, and the positive-definiteness check.
- :mod:`~softmix.inference.covariance`: ``"observed"``, ``"sandwich"`` (cluster-robust with
  ``groups``) and ``"bootstrap"`` covariances, mapped to reported parameters by the delta method.
- :mod:`~softmix.inference.report`: :class:`InferenceResult` and the summary text.

The families' likelihood protocols live in :mod:`softmix.softmax_mixture.likelihood`
(``SoftmaxMixtureLikelihood``; ``PanelLikelihood`` for panels and membership covariates),
:mod:`softmix.moe.likelihood` (``MoELikelihood``; ``OptionsMoELikelihood`` for the flexmix-style
options) and :mod:`softmix.choice.inference` (``ChoiceLikelihood``, the latent class logit); this
package does not know which family it serves.
"""

from softmix.inference.information import InformationWarning, check_information, mixture_hessian
from softmix.inference.report import InferenceResult

__all__ = ["InferenceResult", "InformationWarning", "check_information", "mixture_hessian"]
