"""softmix: softmax mixtures and softmax-gated mixtures of experts.

Public API re-exports and ``__version__`` only.
"""

from softmix.choice.estimator import LatentClassLogit
from softmix.counting import count_choices
from softmix.exceptions import (
    ConvergenceWarning,
    DegenerateComponentWarning,
    NotFittedError,
    SoftmixWarning,
)
from softmix.inference.report import InferenceResult
from softmix.io.persistence import load
from softmix.moe.estimator import MixtureOfExperts
from softmix.selection import SelectionResult, select_n_components
from softmix.softmax_mixture.estimator import SoftmaxMixture

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "DegenerateComponentWarning",
    "InferenceResult",
    "LatentClassLogit",
    "MixtureOfExperts",
    "NotFittedError",
    "SelectionResult",
    "SoftmaxMixture",
    "SoftmixWarning",
    "__version__",
    "count_choices",
    "load",
    "select_n_components",
]
