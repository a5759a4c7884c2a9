"""Softmax mixtures (Bing, Bunea, Niles-Weed, Wegkamp, arXiv 2409.09903): model, EM on counts,
initialisations and the :class:`SoftmaxMixture` estimator."""

from softmix.softmax_mixture.em import fit_em, make_em_map, prepare_design
from softmix.softmax_mixture.estimator import SoftmaxMixture
from softmix.softmax_mixture.init import INITIALISERS, greedy_init, random_init, resolve_init
from softmix.softmax_mixture.model import (
    SoftmaxMixtureParams,
    log_class_probabilities,
    log_likelihood,
    log_mixture_probabilities,
    log_responsibilities,
    params_from_vector,
    params_to_vector,
    sample_choices,
    sample_counts,
    unidentified_directions,
)
from softmix.softmax_mixture.panel import MembershipParams

__all__ = [
    "INITIALISERS",
    "MembershipParams",
    "SoftmaxMixture",
    "SoftmaxMixtureParams",
    "fit_em",
    "greedy_init",
    "log_class_probabilities",
    "log_likelihood",
    "log_mixture_probabilities",
    "log_responsibilities",
    "make_em_map",
    "params_from_vector",
    "params_to_vector",
    "prepare_design",
    "random_init",
    "resolve_init",
    "sample_choices",
    "sample_counts",
    "unidentified_directions",
]
