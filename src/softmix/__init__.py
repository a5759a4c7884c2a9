"""softmix: softmax mixtures and softmax-gated mixtures of experts.

Public API re-exports and ``__version__`` only.
"""

from softmix.choice.estimator import LatentClassLogit
from softmix.exceptions import (
    ConvergenceWarning,
    DegenerateComponentWarning,
    NotFittedError,
    SoftmixWarning,
)
from softmix.moe.estimator import MixtureOfExperts
from softmix.softmax_mixture.estimator import SoftmaxMixture

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "DegenerateComponentWarning",
    "LatentClassLogit",
    "MixtureOfExperts",
    "NotFittedError",
    "SoftmaxMixture",
    "SoftmixWarning",
    "__version__",
]
