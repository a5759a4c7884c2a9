"""The softmax mixture model: parameters, (log-)probabilities, log-likelihood on counts, sampler.

Model (Bing, Bunea, Niles-Weed and Wegkamp, "Learning large softmax mixtures with warm start EM",
arXiv 2409.09903): p alternatives with known features ``x_j`` in R^L (the rows of the design
``features``, shape (p, L)), K latent classes with weights ``alpha`` (a point of the simplex) and
atoms ``theta_k`` in R^L::

    pi_j(theta) = exp(x_j' theta) / sum_l exp(x_l' theta)          (class choice probabilities)
    P(Y = j)    = sum_k alpha_k pi_j(theta_k)                      (mixture)

The counts ``n_j = #{i : Y_i = j}`` are sufficient: every function here takes the p-vector of
counts, so the cost is O(p L K) whatever the number of observations N is. Everything is computed
in log space (column log-softmax, logsumexp over components).

Identifiability: atoms are identified up to a permutation of the components and, when some
``c != 0`` has ``x_j' c`` constant over j (a constant column, collinear columns), only up to
adding multiples of such ``c``: :func:`unidentified_directions` finds them once (eigen-decomposition
of the centred Gram matrix), and the EM of :mod:`softmix.softmax_mixture.em` fits in the
identified subspace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from softmix._validation import check_array, check_int, check_random_state, check_scale
from softmix.core import xp as _xp
from softmix.core.special import log_softmax, logsumexp

__all__ = [
    "MAX_SAMPLES",
    "SIMPLEX_ATOL",
    "UNIDENTIFIED_RTOL",
    "SoftmaxMixtureParams",
    "check_choices",
    "check_counts",
    "check_features",
    "column_range",
    "design_spectrum",
    "log_class_probabilities",
    "log_likelihood",
    "log_mixture_probabilities",
    "log_responsibilities",
    "n_parameters",
    "params_from_vector",
    "params_to_vector",
    "sample_choices",
    "sample_counts",
    "to_counts",
    "unidentified_directions",
    "weighted_covariance",
]

#: Largest number of draws the samplers take (NumPy's multinomial counts are int64).
MAX_SAMPLES = int(np.iinfo(np.int64).max)

#: Tolerance on ``|sum(weights) - 1|`` accepted by :class:`SoftmaxMixtureParams`.
SIMPLEX_ATOL = 1e-8

#: [chosen] A direction is called unidentified when the design's *correlation* matrix (columns
#: standardised, so units do not matter) has an eigenvalue below ``UNIDENTIFIED_RTOL`` times its
#: largest along it, i.e. the standardised design has a singular value below
#: ``sqrt(1e-10) = 1e-5`` times its largest (columns collinear to 1 - R^2 ~ 1e-10).
UNIDENTIFIED_RTOL = 1e-10

#: Rows per block when forming L x L Gram matrices, so no (p, L) temporary is ever allocated.
_CHUNK_ROWS = 8192


@dataclass(frozen=True, eq=False)
class SoftmaxMixtureParams:
    """Parameters of a K-component softmax mixture.

    Immutable (arrays are read-only copies). ``==`` is identity (arrays have no single truth
    value); compare ``canonical()`` forms with ``numpy.allclose`` for equality of mixtures.

    Parameters
    ----------
    weights : ndarray of shape (n_components,)
        Mixing weights ``alpha``: non-negative, summing to one (within ``SIMPLEX_ATOL``; they
        are renormalised to sum exactly to one).
    atoms : ndarray of shape (n_components, n_features)
        Atoms ``theta_k``, one row per component.

    Raises
    ------
    ValueError
        Non-finite values, wrong shapes, negative weights or weights not summing to one.
    """

    weights: np.ndarray
    atoms: np.ndarray

    def __post_init__(self) -> None:
        weights = check_array(self.weights, "weights", ndim=1)
        atoms = check_array(self.atoms, "atoms", ndim=2)
        if atoms.shape[0] != weights.shape[0]:
            raise ValueError(
                f"weights and atoms must describe the same number of components: weights has "
                f"shape {weights.shape}, atoms has shape {atoms.shape} (expected (K,) and (K, L))."
            )
        if atoms.shape[1] < 1:
            raise ValueError(f"atoms must have at least one column, got shape {atoms.shape}.")
        if np.any(weights < 0):
            raise ValueError(
                f"weights must be non-negative, got {weights}. Give a point of the simplex."
            )
        total = float(weights.sum())
        if abs(total - 1.0) > SIMPLEX_ATOL:
            raise ValueError(
                f"weights must sum to 1, got sum {total!r}. Normalise them (weights / sum)."
            )
        weights = weights / total
        weights.setflags(write=False)
        atoms = atoms.copy() if atoms is self.atoms else atoms
        atoms.setflags(write=False)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "atoms", atoms)

    @classmethod
    def _from_em(cls, weights: np.ndarray, atoms: np.ndarray) -> SoftmaxMixtureParams:
        """Internal fast path for EM's hot loop (no ``check_array`` round trip).

        For arrays the EM map has just computed and owns: float (K,) weights from ``c_k / N``
        and float (K, L) atoms. Falls back to the validated constructor unless both are finite
        and the weights non-negative; renormalised and made read-only like it. [measured] The
        validation was ~20% of a fit at p = 200 (the Python overhead per EM map dominates there).
        """
        if not (np.isfinite(atoms).all() and np.isfinite(weights).all() and weights.min() >= 0
                and atoms.ndim == 2 and weights.shape == atoms.shape[:1]):
            return cls(weights, atoms)
        obj = object.__new__(cls)
        weights = weights / weights.sum()
        weights.setflags(write=False)
        atoms.setflags(write=False)
        object.__setattr__(obj, "weights", weights)
        object.__setattr__(obj, "atoms", atoms)
        return obj

    @property
    def n_components(self) -> int:
        """K, the number of components."""
        return int(self.weights.shape[0])

    @property
    def n_features(self) -> int:
        """L, the dimension of the atoms (number of columns of the design)."""
        return int(self.atoms.shape[1])

    def canonical(self) -> SoftmaxMixtureParams:
        """The same mixture with components in a fixed order.

        Order: decreasing weight, ties broken by increasing first, then second... atom coordinate.
        Two parameter sets describing the same mixing measure have equal canonical forms.
        """
        order = self.canonical_order()
        return SoftmaxMixtureParams(self.weights[order], self.atoms[order])

    def canonical_order(self) -> np.ndarray:
        """The permutation :meth:`canonical` applies: component ``order[i]`` becomes ``i``."""
        keys = [self.atoms[:, i] for i in range(self.n_features - 1, -1, -1)] + [-self.weights]
        return np.lexsort(keys)

    def n_free_parameters(self, features: np.ndarray | None = None) -> int:
        """Number of identified free parameters, for BIC/AIC.

        ``K - 1`` weights plus ``K * (L - r)`` atom coordinates, where ``r`` is the number of
        unidentified directions of ``features`` (0 when ``features`` is None), but never more
        than ``p - 1``: the model is a distribution over the p alternatives, which has only
        ``p - 1`` free probabilities, so beyond that count the parameters are not identified
        (e.g. p = 3, L = 2, K = 2: 5 parameters, at most 2 identified; see
        :func:`n_parameters`).

        Parameters
        ----------
        features : ndarray of shape (p, L), optional
            The design; without it, the count ignores ``r`` and the ``p - 1`` cap.
        """
        if features is None:
            return self.n_components - 1 + self.n_components * self.n_features
        return n_parameters(check_features(features), self.n_components)[0]


# -- input checks at the public boundary (the estimator, fit_em, method_of_moments) --------


def check_features(features: Any, *, return_range: bool = False):
    """The design as a finite float (p, L) array with p >= 2 alternatives, of a magnitude whose
    sums of squares over the alternatives do not overflow (:func:`softmix._validation.
    check_scale`: a ValueError naming ``features`` asks to rescale it).

    A float32 or float64 array is returned as is (never copied: a float32 vocabulary stays
    float32); other numeric input is converted to float64. The finiteness and scale checks are
    one blocked pass (:func:`column_range`), with no design-sized temporary.
    A PyTorch, CuPy or other array-API array is checked where it lives (one pass on its device)
    and returned as is, in its own floating dtype (integers become float64 there):
    :mod:`softmix.core.xp`.

    Parameters
    ----------
    features : array-like of shape (p, L)
    return_range : bool
        Also return ``(colmax, colmin, mean)`` of that pass (for :func:`~softmix.
        softmax_mixture.design.prepare_design`, which then does not repeat it).
    """
    if not _xp.is_numpy(features):
        arr = _check_features_xp(features)
        return (arr, column_range(arr, with_mean=True)) if return_range else arr
    arr = check_array(features, "features", ndim=2, dtype=None, finite=False)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.shape[0] < 2:
        raise ValueError(
            f"features must have one row per alternative and at least 2 alternatives, got shape "
            f"{arr.shape}."
        )
    if arr.shape[1] < 1:
        raise ValueError(f"features must have at least one column, got shape {arr.shape}.")
    stats = column_range(arr, with_mean=True)
    colmax, colmin = stats[0], stats[1]
    if not (np.all(np.isfinite(colmax)) and np.all(np.isfinite(colmin))):
        bad = int(arr.size - sum(int(np.count_nonzero(np.isfinite(arr[i : i + _CHUNK_ROWS])))
                                 for i in range(0, arr.shape[0], _CHUNK_ROWS)))
        raise ValueError(
            f"features contains {bad} NaN or infinite value(s). Remove or impute them before "
            "fitting."
        )
    check_scale(arr, "features",
                magnitude=float(max(np.max(np.abs(colmax)), np.max(np.abs(colmin)))))
    return (arr, stats) if return_range else arr


def column_range(features: np.ndarray, *, with_mean: bool = False):
    """Column maxima and minima (and means) of a (p, L) array in one blocked pass, float64.

    NaN propagates into the maxima/minima (so one pass also checks finiteness); no temporary
    larger than 1024 rows is made, whatever the design's size or dtype.

    Returns
    -------
    colmax, colmin : ndarray of shape (L,)
    mean : ndarray of shape (L,)
        Only with ``with_mean=True`` (accumulated in float64).
    """
    if not _xp.is_numpy(features):  # one pass on the device (softmix.core.xp), (L,) back
        xp = _xp.namespace(features)
        colmax = _xp.to_host(xp.max(features, axis=0))
        colmin = _xp.to_host(xp.min(features, axis=0))
        if with_mean:
            mean = _xp.to_host(xp.sum(features, axis=0, dtype=xp.float64)) / features.shape[0]
            return colmax, colmin, mean
        return colmax, colmin
    length = features.shape[1]
    colmax = np.full(length, -np.inf)
    colmin = np.full(length, np.inf)
    total = np.zeros(length)
    for start in range(0, features.shape[0], 1024):
        block = features[start : start + 1024]
        colmax = np.maximum(colmax, block.max(axis=0))
        colmin = np.minimum(colmin, block.min(axis=0))
        if with_mean:
            total += block.sum(axis=0, dtype=np.float64)
    if with_mean:
        return colmax, colmin, total / features.shape[0]
    return colmax, colmin


def _check_features_xp(features: Any) -> Any:
    """:func:`check_features` for an array of another namespace (no host copy)."""
    xp = _xp.namespace(features)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D, got an array of shape {tuple(features.shape)}.")
    if _xp.dtype_name(features) not in ("float32", "float64"):
        if not (xp.isdtype(features.dtype, "integral") or features.dtype == xp.bool):
            raise TypeError(f"features must hold real numbers, got dtype {features.dtype}.")
        features = xp.astype(features, xp.float64)
    shape = tuple(features.shape)
    if shape[0] < 2:
        raise ValueError(
            f"features must have one row per alternative and at least 2 alternatives, got shape "
            f"{shape}.")
    if shape[1] < 1:
        raise ValueError(f"features must have at least one column, got shape {shape}.")
    finite = xp.isfinite(features)
    if not bool(xp.all(finite)):
        bad = int(xp.sum(xp.astype(~finite, xp.int64)))
        raise ValueError(
            f"features contains {bad} NaN or infinite value(s). Remove or impute them before "
            "fitting.")
    limit = np.sqrt(np.finfo(float).max / shape[0]) * 1e-3
    big = float(xp.max(xp.abs(features)))
    if big > limit:
        raise ValueError(
            f"features holds values up to {big:.3g} in absolute value: the fit's sums of squares "
            f"over {shape[0]} samples would overflow (limit about {limit:.3g}). Rescale "
            "features (e.g. standardise it) before fitting.")
    return features


def _integral(arr: np.ndarray, name: str, what: str) -> np.ndarray:
    if arr.dtype.kind == "b":
        raise TypeError(f"{name} must hold integers ({what}), got booleans.")
    if arr.dtype.kind == "f":
        bad = arr != np.round(arr)
        if np.any(bad):
            first = arr[bad].ravel()[0]
            raise ValueError(
                f"{name} must hold integers ({what}); got non-integer value(s) such as {first}."
            )
    if arr.dtype.kind in "uf" and arr.size and np.max(np.abs(arr)) >= 2.0**63:
        return arr.astype(float)  # integers beyond int64 (a cast would wrap): keep them as floats
    return arr.astype(np.int64) if arr.dtype.kind in "iuf" else arr


def check_choices(choices: Any, n_alternatives: int) -> np.ndarray:
    """Choices as a 1-D int64 array with values in ``[0, n_alternatives)``."""
    arr = check_array(choices, "choices", ndim=1, dtype=None, min_rows=0)
    arr = _integral(arr, "choices", f"alternative indices in [0, {n_alternatives})")
    if arr.size and (arr.min() < 0 or arr.max() >= n_alternatives):
        bad = arr[(arr < 0) | (arr >= n_alternatives)][0]
        raise ValueError(
            f"choices must be alternative indices in [0, {n_alternatives}) (one per row of "
            f"features); got {bad}. Re-index the choices or pass the full features matrix."
        )
    return arr


def check_counts(counts: Any, n_alternatives: int, *, allow_zero_total: bool = False) -> np.ndarray:
    """Counts as a float (p,) array of non-negative integers, not all zero."""
    arr = check_array(counts, "counts", ndim=1, dtype=None, min_rows=0)
    arr = _integral(arr, "counts", "how many times each alternative was chosen")
    if arr.shape != (n_alternatives,):
        raise ValueError(
            f"counts must have one entry per alternative, shape ({n_alternatives},) like the rows "
            f"of features; got shape {arr.shape}."
        )
    if np.any(arr < 0):
        raise ValueError(f"counts must be non-negative, got {arr[arr < 0][0]} at index "
                         f"{int(np.flatnonzero(arr < 0)[0])}.")
    if not allow_zero_total and arr.sum() == 0:
        raise ValueError("counts are all zero: there is no observation to fit. Give at least one "
                         "choice.")
    return arr.astype(float)


def to_counts(features: np.ndarray, choices: Any = None, counts: Any = None,
              *, allow_zero_total: bool = False) -> np.ndarray:
    """Exactly one of ``choices`` / ``counts`` -> the (p,) float count vector (validated)."""
    p = features.shape[0]
    if (choices is None) == (counts is None):
        raise ValueError(
            "give exactly one of choices (the N chosen alternatives) or counts (how often each "
            f"of the {p} alternatives was chosen); got "
            f"{'both' if choices is not None else 'neither'}."
        )
    if choices is not None:
        from softmix.counting import count_choices, is_dask_collection

        if is_dask_collection(choices):  # a token stream: a distributed bincount
            n = np.asarray(count_choices(choices, p), dtype=float)
            if n.sum() == 0 and not allow_zero_total:
                raise ValueError("choices is empty: there is no observation to fit.")
            return n
        choices = check_choices(choices, p)
        if choices.size == 0 and not allow_zero_total:
            raise ValueError("choices is empty: there is no observation to fit.")
        return np.bincount(choices, minlength=p).astype(float)
    return check_counts(counts, p, allow_zero_total=allow_zero_total)


def log_class_probabilities(features: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    """Per-class log choice probabilities ``log pi_j(theta_k)``.

    Parameters
    ----------
    features : ndarray of shape (n_alternatives, n_features)
    atoms : ndarray of shape (n_components, n_features)

    Returns
    -------
    ndarray of shape (n_alternatives, n_components)
        Column k is the log-softmax of ``features @ atoms[k]`` over the p alternatives.
    """
    if not _xp.is_numpy(features):  # an array of another namespace: computed on its device
        if features.ndim != 2 or np.ndim(atoms) != 2 or features.shape[1] != np.shape(atoms)[1]:
            raise ValueError(
                f"features (p, L) and atoms (K, L) must have the same number of columns L, got "
                f"shapes {tuple(features.shape)} and {np.shape(atoms)}.")
        scores = _xp.dot(features, np.asarray(atoms, dtype=float).T)
        if not bool(_xp.namespace(scores).all(_xp.namespace(scores).isfinite(scores))):
            _check_features_xp(features)  # names NaN/inf in features (else the atoms overflow)
        return scores - _xp.logsumexp(scores, axis=0, keepdims=True)
    if np.ndim(features) != 2 or np.ndim(atoms) != 2 or np.shape(features)[1] != np.shape(atoms)[1]:
        raise ValueError(
            f"features (p, L) and atoms (K, L) must have the same number of columns L, got shapes "
            f"{np.shape(features)} and {np.shape(atoms)}. Use the design the parameters were fit "
            "on."
        )
    features = np.asarray(features)
    atoms = np.asarray(atoms, dtype=float)
    if features.dtype == np.float32:  # the product in the design's precision: no float64 copy
        scores = (features @ atoms.T.astype(np.float32)).astype(np.float64)
    else:
        scores = features @ atoms.T
    if not np.all(np.isfinite(scores)):
        colmax, colmin = column_range(features)
        if not (np.all(np.isfinite(colmax)) and np.all(np.isfinite(colmin))):
            raise ValueError("features contains NaN or infinite values; every alternative needs "
                             "finite features (drop or impute the rows).")
    return log_softmax(scores, axis=0)


def _check_params_type(params: Any) -> None:
    if not isinstance(params, SoftmaxMixtureParams):
        raise TypeError(f"params must be a SoftmaxMixtureParams, got {type(params).__name__}. "
                        "Build one with SoftmaxMixtureParams(weights, atoms).")


def _log_weights(weights: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):  # a zero weight is a legitimate -inf log-weight
        return np.log(weights)


def log_mixture_probabilities(features: np.ndarray, params: SoftmaxMixtureParams) -> np.ndarray:
    """Mixture log choice probabilities ``log P(Y = j) = log sum_k alpha_k pi_j(theta_k)``.

    Parameters
    ----------
    features : ndarray of shape (n_alternatives, n_features)
    params : SoftmaxMixtureParams

    Returns
    -------
    ndarray of shape (n_alternatives,)
    """
    _check_params_type(params)
    joint = log_class_probabilities(features, params.atoms)
    if not _xp.is_numpy(joint):
        return _xp.logsumexp(joint + _xp.from_host(_log_weights(params.weights), joint), axis=1)
    joint = joint + _log_weights(params.weights)
    return logsumexp(joint, axis=1)


def log_responsibilities(features: np.ndarray, params: SoftmaxMixtureParams) -> np.ndarray:
    """Posterior log class probabilities given each alternative, ``log P(Z = k | Y = j)``.

    Returns
    -------
    ndarray of shape (n_alternatives, n_components)
        Rows sum (in probability) to one. A row whose mixture probability underflows to zero
        for every component (an alternative the model considers impossible) is uniform.
    """
    _check_params_type(params)
    joint = log_class_probabilities(features, params.atoms)
    if not _xp.is_numpy(joint):
        xp = _xp.namespace(joint)
        joint = joint + _xp.from_host(_log_weights(params.weights), joint)
        log_mix = _xp.logsumexp(joint, axis=1, keepdims=True)
        uniform = xp.full_like(joint, -float(np.log(joint.shape[1])))
        return xp.where(xp.isfinite(log_mix), joint - log_mix, uniform)
    joint = joint + _log_weights(params.weights)
    log_mix = logsumexp(joint, axis=1, keepdims=True)
    impossible = ~np.isfinite(log_mix[:, 0])
    if np.any(impossible):
        out = np.empty_like(joint)
        out[~impossible] = joint[~impossible] - log_mix[~impossible]
        out[impossible] = -np.log(joint.shape[1])
        return out
    return joint - log_mix


def _dot_counts(counts: np.ndarray, log_probs: np.ndarray) -> float:
    """sum_j n_j log_probs_j with 0 * (-inf) = 0 (the xlogy convention, in log space)."""
    if not _xp.is_numpy(log_probs):
        xp = _xp.namespace(log_probs)
        n = _xp.from_host(counts, log_probs)
        return float(xp.sum(xp.where(n > 0, n * log_probs, xp.zeros_like(log_probs))))
    return float(counts @ np.where(counts > 0, log_probs, 0.0))


def log_likelihood(features: np.ndarray, counts: np.ndarray, params: SoftmaxMixtureParams) -> float:
    """Observed log-likelihood ``sum_j n_j log P(Y = j)`` from counts.

    Parameters
    ----------
    features : ndarray of shape (n_alternatives, n_features)
    counts : ndarray of shape (n_alternatives,)
        ``n_j``, how many observations chose alternative j.
    params : SoftmaxMixtureParams

    Returns
    -------
    float
        Zero counts contribute nothing, even where ``P(Y = j)`` underflows to 0; a positive count
        on an alternative of probability 0 gives ``-inf``. The multinomial coefficient is omitted
        (the likelihood of the ordered sample ``Y_1..Y_N``).
    """
    if np.shape(counts) != tuple(features.shape)[:1]:
        raise ValueError(
            f"counts must have one entry per alternative, shape {tuple(features.shape)[:1]} like "
            f"the rows of features; got shape {np.shape(counts)}."
        )
    return _dot_counts(counts, log_mixture_probabilities(features, params))


def _class_probabilities(features: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    probs = np.exp(_xp.host(log_class_probabilities(features, atoms)))  # (p, K) on the host
    return probs / probs.sum(axis=0, keepdims=True)  # exact normalisation for the samplers


def sample_counts(
    features: np.ndarray,
    params: SoftmaxMixtureParams,
    n_samples: int,
    random_state: None | int | np.random.Generator = None,
) -> np.ndarray:
    """Counts of ``n_samples`` i.i.d. draws from the mixture, in O(p K) memory.

    ``N_k ~ Multinomial(N, alpha)`` draws per class, then ``counts = sum_k Multinomial(N_k,
    pi(theta_k))``: exactly the distribution of the counts of N draws, without ever holding N
    numbers (N = 10^9 costs the same memory as N = 10).

    Parameters
    ----------
    features : ndarray of shape (n_alternatives, n_features)
    params : SoftmaxMixtureParams
    n_samples : int
        N >= 0.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    ndarray of shape (n_alternatives,), dtype int64
    """
    n_samples = check_int(n_samples, "n_samples", low=0, high=MAX_SAMPLES)
    rng = check_random_state(random_state)
    per_class = rng.multinomial(n_samples, params.weights)
    probs = _class_probabilities(features, params.atoms)
    counts = np.zeros(features.shape[0], dtype=np.int64)
    for k, n_k in enumerate(per_class):
        if n_k:
            counts += rng.multinomial(n_k, probs[:, k])
    return counts


def sample_choices(
    features: np.ndarray,
    params: SoftmaxMixtureParams,
    n_samples: int,
    random_state: None | int | np.random.Generator = None,
    *,
    return_labels: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """``n_samples`` i.i.d. choices from the mixture, in random order.

    Parameters
    ----------
    features : ndarray of shape (n_alternatives, n_features)
    params : SoftmaxMixtureParams
    n_samples : int
        N >= 0 (O(N) memory: use :func:`sample_counts` for large N).
    random_state : None, int or numpy.random.Generator
    return_labels : bool
        Also return the latent class of each draw.

    Returns
    -------
    choices : ndarray of shape (n_samples,), dtype int64
        Alternatives in ``[0, n_alternatives)``.
    labels : ndarray of shape (n_samples,), dtype int64
        The latent class of each draw (only when ``return_labels=True``).
    """
    n_samples = check_int(n_samples, "n_samples", low=0, high=MAX_SAMPLES)
    rng = check_random_state(random_state)
    labels = rng.choice(params.n_components, size=n_samples, p=params.weights)
    probs = _class_probabilities(features, params.atoms)
    choices = np.empty(n_samples, dtype=np.int64)
    for k in range(params.n_components):
        idx = np.flatnonzero(labels == k)
        if idx.size:
            choices[idx] = rng.choice(features.shape[0], size=idx.size, p=probs[:, k])
    labels = labels.astype(np.int64)
    return (choices, labels) if return_labels else choices


def params_to_vector(params: SoftmaxMixtureParams) -> np.ndarray:
    """Pack parameters into an unconstrained vector (for SQUAREM, L-BFGS...).

    Layout: ``[log(alpha_1/alpha_K), ..., log(alpha_{K-1}/alpha_K), atoms.ravel()]``, length
    ``K - 1 + K * L``. Inverse: :func:`params_from_vector`.

    Raises
    ------
    ValueError
        When a weight is zero (its log-ratio would be infinite).
    """
    if np.any(params.weights <= 0):
        raise ValueError(
            f"params.weights must be positive to be packed into log-ratios, got "
            f"{params.weights}. Drop the empty component or give it a small positive weight."
        )
    logw = np.log(params.weights)
    return np.concatenate([logw[:-1] - logw[-1], params.atoms.ravel()])


def params_from_vector(
    vector: np.ndarray, n_components: int, n_features: int
) -> SoftmaxMixtureParams:
    """Inverse of :func:`params_to_vector` (weights by a softmax of ``[log-ratios, 0]``)."""
    vector = np.asarray(vector, dtype=float)
    k, length = n_components, n_features
    if vector.shape != (k - 1 + k * length,):
        raise ValueError(
            f"vector must have shape ({k - 1 + k * length},) for n_components={k}, "
            f"n_features={length}; got {vector.shape}."
        )
    logits = np.concatenate([vector[: k - 1], [0.0]])
    weights = np.exp(log_softmax(logits))
    return SoftmaxMixtureParams(weights / weights.sum(), vector[k - 1 :].reshape(k, length))


def weighted_covariance(
    features: np.ndarray, weights: np.ndarray | None = None, mean: np.ndarray | None = None
) -> np.ndarray:
    """``sum_j w_j (x_j - mean)(x_j - mean)'`` computed in row blocks (no (p, L) temporary).

    Parameters
    ----------
    features : ndarray of shape (p, L)
    weights : ndarray of shape (p,), optional
        Non-negative row weights (all ones when None).
    mean : ndarray of shape (L,), optional
        Centre (the weighted mean ``sum_j w_j x_j / sum_j w_j`` when None).

    Returns
    -------
    ndarray of shape (L, L)
        Symmetric positive semi-definite. With ``weights = pi(theta)`` this is
        ``Cov_{pi(theta)}(x)``, minus the Hessian of the log-partition function.
    """
    if not _xp.is_numpy(features):
        return _weighted_covariance_xp(features, weights, mean)
    p, length = features.shape
    if mean is None:
        mean = (features.T @ weights / weights.sum()) if weights is not None else features.mean(0)
    out = np.zeros((length, length))
    if features.flags.f_contiguous and not features.flags.c_contiguous:
        # (L, p) storage (EM's working design): blocks of columns of the C-ordered transpose
        cols = features.T
        for start in range(0, p, _CHUNK_ROWS):
            block = cols[:, start : start + _CHUNK_ROWS] - mean[:, None]
            right = block if weights is None else block * weights[start : start + _CHUNK_ROWS]
            out += right @ block.T
    else:
        for start in range(0, p, _CHUNK_ROWS):
            block = features[start : start + _CHUNK_ROWS] - mean
            right = block if weights is None else block * weights[start : start + _CHUNK_ROWS, None]
            out += block.T @ right
    return (out + out.T) / 2.0


def _weighted_covariance_xp(features: Any, weights: Any = None, mean: Any = None) -> np.ndarray:
    """:func:`weighted_covariance` of a (p, L) array of another namespace, on its device, in
    row blocks; the (L, L) result is NumPy float64. ``weights`` and ``mean`` may be NumPy or on
    the device."""
    xp = _xp.namespace(features)
    p, length = features.shape
    w = None if weights is None else (
        _xp.from_host(weights, features, xp.float64) if _xp.is_numpy(weights) else weights)
    if mean is None:
        mean = (_xp.host(_xp.dot(w, features)) / float(xp.sum(w)) if w is not None
                else _xp.to_host(xp.sum(features, axis=0, dtype=xp.float64)) / p)
    centre = _xp.from_host(_xp.host(mean), features, xp.float64)
    if w is not None:
        w = xp.astype(w, xp.float64)
    out = np.zeros((length, length))
    for start in range(0, p, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, p)  # the array API has no out-of-range slice stops
        # float64 blocks, as on the host: identification thresholds eigenvalues at 1e-10 of the
        # largest, beyond float32's resolution (a float32 Gram matrix changed r at L = 4096)
        block = xp.astype(features[start:stop, :], xp.float64) - centre
        right = block if w is None else block * w[start:stop, None]
        out += _xp.to_host(xp.matmul(block.T, right))
    return (out + out.T) / 2.0


def design_spectrum(
    features: np.ndarray, rtol: float = UNIDENTIFIED_RTOL
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scale-free spectrum of the design: the eigen-decomposition of its *correlation* matrix.

    Each column is centred and divided by its standard deviation over the alternatives
    (``scale``); the eigenvalues of the resulting correlation matrix ``R = D^{-1} Sigma D^{-1}``
    (``D = diag(scale)``) do not change when a column is rescaled, so which directions count as
    unidentified does not depend on the units of the columns (the test on ``Sigma`` itself did:
    a column with 1e-6 the spread of another was projected out). A column constant up to
    round-off (range ``<= 1e3 * eps * max |x|`` of the column) is standardised to exactly zero,
    so it is an exact null direction.

    Returns
    -------
    mean : ndarray of shape (L,)
    scale : ndarray of shape (L,)
        Standard deviation of each column (1 for a constant column).
    values : ndarray of shape (L,)
        Eigenvalues of ``R`` (ascending; they sum to the number of non-constant columns).
    vectors : ndarray of shape (L, L)
        Orthonormal eigenvectors of ``R`` (columns), in standardised coordinates: the direction
        ``v`` of ``R`` is the atom direction ``D^{-1} v`` of the design.
    null : ndarray of shape (L,), bool
        Eigenvalues ``<= rtol * largest``: the unidentified directions.
    """
    colmax, colmin, mean = column_range(features, with_mean=True)
    magnitude = np.maximum(np.abs(colmax), np.abs(colmin))
    constant = (colmax - colmin) <= 1e3 * np.finfo(float).eps * magnitude
    cov = weighted_covariance(features, mean=mean) / features.shape[0]
    scale = np.sqrt(np.maximum(np.diag(cov), 0.0))
    scale = np.where(constant | (scale == 0), 1.0, scale)
    corr = cov / np.outer(scale, scale)
    corr[constant, :] = 0.0
    corr[:, constant] = 0.0
    values, vectors = np.linalg.eigh(corr)
    top = max(float(values[-1]), 0.0)
    null = values <= rtol * top if top > 0 else np.ones(values.shape, dtype=bool)
    return mean, scale, values, vectors, null


def n_parameters(features: np.ndarray, n_components: int) -> tuple[int, int]:
    """Identified and nominal parameter counts of a K-component mixture on ``features``.

    Returns
    -------
    identified : int
        ``min(K - 1 + K (L - r), p - 1)`` with ``r`` the unidentified directions of the design
        (:func:`unidentified_directions`): what BIC/AIC count.
    nominal : int
        ``K - 1 + K (L - r)``; ``nominal > identified`` means the model is over-parametrised
        (more parameters than the ``p - 1`` free choice probabilities: different parameters
        give the same distribution, e.g. a different fit per seed at the same likelihood).
    """
    p, length = features.shape
    r = unidentified_directions(features).shape[1]
    nominal = n_components - 1 + n_components * (length - r)
    return min(nominal, p - 1), nominal


def unidentified_directions(features: np.ndarray, rtol: float = UNIDENTIFIED_RTOL) -> np.ndarray:
    """Orthonormal basis of the directions ``c`` along which ``x_j' c`` is constant over j.

    Adding such a ``c`` to an atom leaves every ``pi_j`` unchanged (softmax is shift-invariant),
    so the atoms are not identified along them: a constant column, or columns that are affine
    combinations of each other, create them. Decided on the scale-free correlation spectrum of
    :func:`design_spectrum`, so rescaling a column never changes the answer.

    Parameters
    ----------
    features : ndarray of shape (p, L)
    rtol : float
        Eigenvalues of the design's correlation matrix below ``rtol * largest`` count as zero.

    Returns
    -------
    ndarray of shape (L, r)
        ``r = 0`` (an (L, 0) array) for an identified design.
    """
    _, scale, _, vectors, null = design_spectrum(features, rtol)
    if not np.any(null):
        return vectors[:, null]
    q, _ = np.linalg.qr(vectors[:, null] / scale[:, None])
    return q
