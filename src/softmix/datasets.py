"""Data generators that return the truth, paper settings, and data loaders.

Every ``make_*`` takes ``random_state`` (None | int | Generator) and returns the ground truth
alongside the data.
"""

from __future__ import annotations

import numpy as np

from softmix._validation import check_float, check_int, check_random_state

# --- symmetric two-expert mixtures (Fruytier, Mokhtari & Sanghavi 2025) ---------------------


def _unit_vector(rng: np.random.Generator, d: int) -> np.ndarray:
    v = rng.standard_normal(d)
    return v / np.linalg.norm(v)


def make_sym_mixture_of_experts(
    n_samples: int,
    n_features: int,
    *,
    kind: str = "linear",
    beta_norm: float = 2.0,
    w_norm: float = 1.0,
    beta: np.ndarray | None = None,
    w: np.ndarray | None = None,
    random_state=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sample a symmetric two-expert mixture: SymMoLinE or SymMoLogE.

    Parameters
    ----------
    n_samples, n_features : int
    kind : {"linear", "logistic"}
        ``"linear"`` (SymMoLinE): y = s x'beta + N(0, 1); ``"logistic"`` (SymMoLogE):
        P(y = 1 | x, s) = sigmoid(s x'beta).
    beta_norm, w_norm : float
        Norms of the random true directions (uniform on the sphere) when ``beta`` / ``w`` are not
        given (the signal-to-noise ratio of the experts and the sharpness of the gate).
    beta, w : array-like of shape (n_features,), optional
        The true parameters (override the norms).
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        Rows x ~ N(0, I).
    y : ndarray of shape (n_samples,)
        Responses (float; 0/1 for ``kind="logistic"``).
    beta, w : ndarray of shape (n_features,)
        The truth.

    Notes
    -----
    P(z=1 | x) = sigmoid(x'w), s = +1 if z = 1 and -1 otherwise (beta_1 = -beta_2 = beta, one
    gating vector w). Model of Fruytier, Mokhtari & Sanghavi, ICML 2025 (arXiv:2411.06056).
    """
    from softmix._validation import check_array, check_choice, check_float
    from softmix.core.special import expit

    n_samples = check_int(n_samples, "n_samples", low=1)
    n_features = check_int(n_features, "n_features", low=1)
    kind = check_choice(kind, "kind", ("linear", "logistic"))
    rng = check_random_state(random_state)
    if beta is None:
        beta = check_float(beta_norm, "beta_norm", low=0.0) * _unit_vector(rng, n_features)
    if w is None:
        w = check_float(w_norm, "w_norm", low=0.0) * _unit_vector(rng, n_features)
    beta = check_array(beta, "beta", ndim=1)
    w = check_array(w, "w", ndim=1)
    for name, v in (("beta", beta), ("w", w)):
        if v.shape != (n_features,):
            raise ValueError(f"{name} must have shape (n_features,) = ({n_features},), got {v.shape}.")
    X = rng.standard_normal((n_samples, n_features))
    s = np.where(rng.random(n_samples) < expit(X @ w), 1.0, -1.0)
    mean = s * (X @ beta)
    if kind == "linear":
        y = mean + rng.standard_normal(n_samples)
    else:
        y = (rng.random(n_samples) < expit(mean)).astype(float)
    return X, y, beta.copy(), w.copy()


# --- IDX files (MNIST / Fashion-MNIST) and randomly colour-inverted images ------------------

_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def load_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST / Fashion-MNIST format), gzip-compressed or raw.

    Parameters
    ----------
    path : str or os.PathLike
        File such as ``train-images-idx3-ubyte.gz``. Compression is detected from the content
        (gzip magic bytes), not the name.

    Returns
    -------
    ndarray
        Shape given by the header (e.g. (60000, 28, 28) for images, (60000,) for labels), dtype
        from the header in native byte order.

    Raises
    ------
    ValueError
        Naming the file, when the magic number is wrong (not an IDX file), the gzip stream is
        corrupt, or the file is shorter or longer than its header says.

    Notes
    -----
    Format: two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions, one big-endian uint32 per dimension,
    then the data in row-major big-endian order.
    """
    import gzip
    import os

    path = os.fspath(path)
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError) as exc:
            raise ValueError(
                f"IDX file {path!r}: the gzip stream is truncated or corrupt ({exc}); "
                "download the file again."
            ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(
            f"IDX file {path!r} has a wrong magic number {raw[:4].hex() or '(empty file)'}: expected "
            "0x0000 followed by a type code in {08, 09, 0b, 0c, 0d, 0e} and the number of "
            "dimensions. Is it an MNIST/Fashion-MNIST IDX file?"
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"IDX file {path!r} is truncated: its header needs {header} bytes, the file has "
            f"{len(raw)}. Download the file again."
        )
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise ValueError(
            f"IDX file {path!r} is {what}: shape {shape} of {dtype.name} needs {expected} bytes, "
            f"the file has {len(raw)}. Download the file again."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


_MNIST_FILES = {
    "X_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "X_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def load_mnist_like(idx_dir) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load MNIST or Fashion-MNIST from the four standard IDX files in ``idx_dir``.

    Looks for ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each raw or with ``.gz``.

    Returns
    -------
    X_train : ndarray of shape (n_train, rows * cols), pixels scaled to [0, 1]
    y_train : ndarray of shape (n_train,), int labels
    X_test : ndarray of shape (n_test, rows * cols)
    y_test : ndarray of shape (n_test,)
    """
    from pathlib import Path

    folder = Path(idx_dir)
    if not folder.is_dir():
        raise ValueError(f"idx_dir must be an existing folder holding the IDX files, got {str(folder)!r}.")
    out = {}
    for key, stem in _MNIST_FILES.items():
        candidates = [folder / stem, folder / f"{stem}.gz"]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise ValueError(
                f"idx_dir {str(folder)!r} has no {stem} (or {stem}.gz); it must hold the four "
                f"MNIST/Fashion-MNIST files: {', '.join(_MNIST_FILES.values())}."
            )
        arr = load_idx(found)
        if key.startswith("X"):
            if arr.ndim != 3:
                raise ValueError(f"IDX file {str(found)!r} must hold images (3-D), got shape {arr.shape}.")
            arr = arr.reshape(arr.shape[0], -1).astype(float) / 255.0
        else:
            if arr.ndim != 1:
                raise ValueError(f"IDX file {str(found)!r} must hold labels (1-D), got shape {arr.shape}.")
            arr = arr.astype(np.int64)
        out[key] = arr
    for part in ("train", "test"):
        if out[f"X_{part}"].shape[0] != out[f"y_{part}"].shape[0]:
            raise ValueError(
                f"idx_dir {str(folder)!r}: {out[f'X_{part}'].shape[0]} {part} images but "
                f"{out[f'y_{part}'].shape[0]} {part} labels."
            )
    return out["X_train"], out["y_train"], out["X_test"], out["y_test"]


def make_inverted_digits(
    *,
    source: str = "digits",
    p_invert: float = 0.5,
    test_size: float = 0.25,
    n_train: int | None = None,
    n_test: int | None = None,
    random_state=None,
) -> dict[str, np.ndarray]:
    """Images of which a random fraction is colour-inverted (x -> 1 - x), train/test split.

    Parameters
    ----------
    source : str or os.PathLike
        ``"digits"``: scikit-learn's bundled 8x8 digits (offline; 1797 images, pixels / 16);
        otherwise a folder of MNIST / Fashion-MNIST IDX files (see :func:`load_mnist_like`),
        whose own train/test split is used.
    p_invert : float
        Fraction of images inverted in each split (a random subset of exactly
        ``round(p_invert * n)`` images).
    test_size : float
        Test fraction for ``source="digits"``.
    n_train, n_test : int, optional
        Random subsamples of each split (for a quick run on MNIST-sized data).
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    dict
        ``X_train`` (n_train, n_pixels) in [0, 1], ``y_train`` (n_train,) int,
        ``X_test``, ``y_test``, and boolean masks ``inverted_train``, ``inverted_test``.

    Notes
    -----
    The "random invert" data of Fruytier, Mokhtari & Sanghavi (ICML 2025), where a 2-expert
    mixture of multinomial logistic experts should learn to route inverted and normal images.
    """
    import os

    from softmix._validation import check_float

    rng = check_random_state(random_state)
    p_invert = check_float(p_invert, "p_invert", low=0.0, high=1.0)
    if isinstance(source, str) and source == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError as exc:
            raise ImportError(
                "make_inverted_digits(source='digits') needs scikit-learn's bundled digits: "
                "pip install 'softmix[experiments]', or pass source=<folder of IDX files>."
            ) from exc
        digits = load_digits()
        X, y = digits.data / 16.0, digits.target.astype(np.int64)
        test_size = check_float(test_size, "test_size", low=0.0, high=1.0, low_inclusive=False)
        order = rng.permutation(X.shape[0])
        n_te = round(test_size * X.shape[0])
        if not 0 < n_te < X.shape[0]:
            raise ValueError(f"test_size={test_size} leaves an empty train or test split.")
        X_train, y_train = X[order[n_te:]], y[order[n_te:]]
        X_test, y_test = X[order[:n_te]], y[order[:n_te]]
    elif isinstance(source, (str, os.PathLike)):
        X_train, y_train, X_test, y_test = load_mnist_like(source)
    else:
        raise TypeError(
            f"source must be 'digits' or a folder path of IDX files, got {type(source).__name__}."
        )
    splits = {}
    for part, X_p, y_p, n_keep in (("train", X_train, y_train, n_train),
                                   ("test", X_test, y_test, n_test)):
        if n_keep is not None:
            n_keep = check_int(n_keep, f"n_{part}", low=1, high=X_p.shape[0])
            keep = rng.choice(X_p.shape[0], size=n_keep, replace=False)
            X_p, y_p = X_p[keep], y_p[keep]
        inverted = np.zeros(X_p.shape[0], dtype=bool)
        inverted[rng.choice(X_p.shape[0], size=round(p_invert * X_p.shape[0]), replace=False)] = True
        X_p = np.where(inverted[:, None], 1.0 - X_p, X_p)
        splits.update({f"X_{part}": X_p, f"y_{part}": y_p, f"inverted_{part}": inverted})
    return splits


# --- softmax mixtures (Bing, Bunea, Niles-Weed & Wegkamp 2024) --------------------------------


from dataclasses import dataclass as _dataclass


@_dataclass(frozen=True)
class SoftmaxMixtureData:
    """A simulated softmax mixture and its truth (see :func:`make_softmax_mixture`).

    Attributes
    ----------
    features : ndarray of shape (n_alternatives, n_features)
        The design X, rows x_j ~ N(0, I_L).
    choices : ndarray of shape (n_samples,) or None
        The draws Y_i (None when made with ``return_choices=False``).
    counts : ndarray of shape (n_alternatives,)
        n_j = #{i : Y_i = j} (int64).
    weights : ndarray of shape (n_components,)
        True mixing weights alpha.
    atoms : ndarray of shape (n_components, n_features)
        True atoms theta_k.
    """

    features: np.ndarray
    choices: np.ndarray | None
    counts: np.ndarray
    weights: np.ndarray
    atoms: np.ndarray

    @property
    def params(self):
        """The truth as a :class:`softmix.softmax_mixture.SoftmaxMixtureParams`."""
        from softmix.softmax_mixture.model import SoftmaxMixtureParams

        return SoftmaxMixtureParams(self.weights, self.atoms)


def _spread_points(k: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """K > L distinct points of norm <= 1, pairwise at least 1 / K apart (see
    :func:`make_softmax_mixture`)."""
    if length == 1:
        return rng.permutation(np.linspace(-1.0, 1.0, k))[:, None]
    for _ in range(20):
        cand = rng.standard_normal((64 * k, length))
        cand /= np.linalg.norm(cand, axis=1, keepdims=True)
        chosen = [0]
        dist = np.linalg.norm(cand - cand[0], axis=1)
        for _ in range(k - 1):
            nxt = int(np.argmax(dist))
            chosen.append(nxt)
            dist = np.minimum(dist, np.linalg.norm(cand - cand[nxt], axis=1))
        points = cand[chosen]
        gaps = np.linalg.norm(points[:, None] - points[None], axis=2)[np.triu_indices(k, 1)]
        if gaps.min() >= 1.0 / k:
            return points
    raise RuntimeError(  # pragma: no cover - greedy selection on a sphere always spreads
        f"could not place {k} atoms at least 1/{k} apart in dimension {length}."
    )


def make_softmax_mixture(
    n_samples: int,
    n_alternatives: int,
    n_features: int,
    n_components: int,
    *,
    separation: float = 1.0,
    weights=None,
    return_choices: bool = True,
    random_state=None,
) -> SoftmaxMixtureData:
    """Simulate a softmax mixture with a Gaussian design, returning the truth.

    Parameters
    ----------
    n_samples : int
        N, the number of draws (>= 0). With ``return_choices=False`` the counts are drawn in
        O(p K) memory, so N = 10^9 is fine.
    n_alternatives : int
        p, the number of alternatives (>= 2).
    n_features : int
        L, the dimension of the features and atoms.
    n_components : int
        K, the number of classes.
    separation : float
        The scale of the atoms (> 0) [chosen]. When K <= L, every atom has norm
        ``separation`` with directions a random orthonormal set (so all pairwise distances are
        exactly ``separation * sqrt(2)``). When K > L the atoms are still K distinct points,
        at least ``separation / K`` apart (checked): for L = 1, equally spaced on
        ``[-separation, separation]`` (distance ``2 separation / (K - 1)``) in random order;
        for L >= 2, on the sphere of radius ``separation``, spread by greedy farthest-point
        selection among ``64 K`` uniform candidates (typically at least half the best
        packing's distance, e.g. ``>= separation / 2`` for L = 2, K = 6). (Before: i.i.d.
        directions, which for L = 1 duplicated atoms in 12 of 20 seeds.) With a N(0, I)
        design, the finite-p difficulty grows like ``exp(separation**2)`` (spec section 3):
        keep it <= ~1.5.
    weights : array-like of shape (n_components,), optional
        True weights. Default [chosen]: proportional to ``K, K+1, ..., 2K-1`` (distinct, so a
        table of matched components is readable, and ``min alpha >= 1/(3K)``).
    return_choices : bool
        Also draw the N individual choices (O(N) memory; the counts are then their bincount).
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    SoftmaxMixtureData
    """
    from softmix._validation import check_array, check_float
    from softmix.softmax_mixture.model import (
        MAX_SAMPLES,
        SoftmaxMixtureParams,
        sample_choices,
        sample_counts,
    )

    n_samples = check_int(n_samples, "n_samples", low=0, high=MAX_SAMPLES)
    n_alternatives = check_int(n_alternatives, "n_alternatives", low=2)
    n_features = check_int(n_features, "n_features", low=1)
    n_components = check_int(n_components, "n_components", low=1)
    separation = check_float(separation, "separation", low=0.0, low_inclusive=False)
    rng = check_random_state(random_state)
    if weights is None:
        weights = np.arange(n_components, 2 * n_components, dtype=float)
        weights /= weights.sum()
    else:
        weights = check_array(weights, "weights", ndim=1)
        if weights.shape != (n_components,):
            raise ValueError(
                f"weights must have shape (n_components,) = ({n_components},), got "
                f"{weights.shape}."
            )
    features = rng.standard_normal((n_alternatives, n_features))
    if n_components <= n_features:
        q, r = np.linalg.qr(rng.standard_normal((n_features, n_components)))
        directions = (q * np.sign(np.diag(r))).T
    else:
        directions = _spread_points(n_components, n_features, rng)
    params = SoftmaxMixtureParams(weights, separation * directions)
    if return_choices:
        choices = sample_choices(features, params, n_samples, rng)
        counts = np.bincount(choices, minlength=n_alternatives).astype(np.int64)
    else:
        choices = None
        counts = sample_counts(features, params, n_samples, rng)
    return SoftmaxMixtureData(features, choices, counts, params.weights.copy(),
                              params.atoms.copy())


# --- softmax-gated mixtures of experts (Nguyen, Nguyen, Ho 2023; general MoE for tests) --------


def paper_gaussian_moe_params():
    """True model of Nguyen, Nguyen, Ho (NeurIPS 2023), section 5: d = 1, k* = 2.

    ========  =====  =====  ====  ====  =====  ==========
    expert    beta0  beta1   b     a    sigma  nu=sigma^2
    ========  =====  =====  ====  ====  =====  ==========
    1          -8     25    15   -20    0.3     0.09
    2 (ref)     0      0    -5    20    0.4     0.16
    ========  =====  =====  ====  ====  =====  ==========

    Returns
    -------
    MoEParams
        Gaussian experts; gating rows ``[beta0, beta1]`` (the reference's is 0), expert rows
        ``[b, a]``, variances ``nu``.
    """
    from softmix.moe.model import MoEParams

    return MoEParams(
        gating=np.array([[-8.0, 25.0], [0.0, 0.0]]),
        expert_coef=np.array([[15.0, -20.0], [-5.0, 20.0]]),
        expert_variance=np.array([0.09, 0.16]),
        expert="gaussian",
    )


def make_gaussian_moe(
    n_samples: int,
    *,
    params=None,
    x_distribution: str = "uniform",
    random_state=None,
):
    """Sample a softmax-gated Gaussian mixture of experts with inputs on [0, 1]^d.

    Parameters
    ----------
    n_samples : int
    params : MoEParams, optional
        Gaussian-expert truth; default :func:`paper_gaussian_moe_params` (d = 1, k* = 2).
    x_distribution : {"uniform", "grid"}
        ``"uniform"``: X ~ U[0, 1]^d; ``"grid"``: the evenly spaced grid ``linspace(0, 1, n)``
        of the authors' code (d = 1 only).
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    X : ndarray of shape (n_samples, d)
    y : ndarray of shape (n_samples,)
    params : MoEParams
        The truth.
    """
    from softmix._validation import check_choice
    from softmix.moe.model import check_params, sample

    n_samples = check_int(n_samples, "n_samples", low=1)
    check_choice(x_distribution, "x_distribution", ("uniform", "grid"))
    params = paper_gaussian_moe_params() if params is None else params
    check_params(params, expert="gaussian", name="params")  # TypeError unless a MoEParams
    rng = check_random_state(random_state)
    d = params.n_features
    if x_distribution == "grid":
        if d != 1:
            raise ValueError(f"x_distribution='grid' needs d = 1 feature, the params have {d}.")
        X = np.linspace(0.0, 1.0, n_samples)[:, None]
    else:
        X = rng.random((n_samples, d))
    y, _ = sample(X, params, rng)
    return X, y, params


def make_moe(
    n_samples: int,
    n_features: int = 2,
    n_experts: int = 2,
    *,
    expert: str = "gaussian",
    n_classes: int = 3,
    gate_scale: float = 2.0,
    coef_scale: float = 2.0,
    random_state=None,
):
    """Sample a random softmax-gated mixture of experts (for tests and demos).

    X ~ N(0, I_d); gating rows and expert coefficients are N(0, scale^2) (gauge rows set to 0);
    Gaussian expert variances are U[0.1, 0.5].

    Parameters
    ----------
    n_samples, n_features, n_experts : int
    expert : {"gaussian", "logistic", "multinomial"}
    n_classes : int
        Classes of multinomial experts.
    gate_scale, coef_scale : float
        Scales of the random gating and expert coefficients.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Real (gaussian), 0/1 (logistic) or class indices 0..n_classes-1 (multinomial).
    params : MoEParams
    """
    from softmix.moe.experts import get_expert
    from softmix.moe.model import MoEParams, sample

    n_samples = check_int(n_samples, "n_samples", low=1)
    n_features = check_int(n_features, "n_features", low=1)
    n_experts = check_int(n_experts, "n_experts", low=1)
    gate_scale = check_float(gate_scale, "gate_scale", low=0.0)  # NaN gave NaN data silently
    coef_scale = check_float(coef_scale, "coef_scale", low=0.0)
    exp = get_expert(expert)
    rng = check_random_state(random_state)
    p = n_features + 1
    gating = gate_scale * rng.standard_normal((n_experts, p))
    gating[-1] = 0.0
    shape = exp.coef_shape(n_experts, n_features, check_int(n_classes, "n_classes", low=2))
    coef = coef_scale * rng.standard_normal(shape)
    if expert == "multinomial":
        coef[:, -1, :] = 0.0
    var = rng.uniform(0.1, 0.5, n_experts) if exp.has_variance else None
    params = MoEParams(gating, coef, var, expert)
    X = rng.standard_normal((n_samples, n_features))
    y, _ = sample(X, params, rng)
    return X, y, params


# --- panels and class-membership covariates for softmax mixtures (issue 12) -------------------

@_dataclass(frozen=True)
class PanelMixtureData:
    """A simulated panel softmax mixture and its truth (see :func:`make_panel_softmax_mixture`).

    Attributes
    ----------
    features : ndarray of shape (n_alternatives, n_features)
    counts : scipy.sparse.csr_matrix of shape (n_groups, n_alternatives)
        ``C_gj``, how often group g chose alternative j.
    choices, groups : ndarray of shape (n_samples,)
        The same data in long form: each choice and its group (0..n_groups-1, sorted).
    covariates : ndarray of shape (n_groups, n_covariates) or None
        Class-membership covariates ``Z_g ~ N(0, I)``.
    classes : ndarray of shape (n_groups,)
        The true latent class of each group.
    weights : ndarray of shape (n_components,)
        True weights (without covariates), else the mean of the true class probabilities.
    atoms : ndarray of shape (n_components, n_features)
    membership_coef : ndarray of shape (n_components, n_covariates + 1) or None
        True ``gamma`` (intercept in column 0, last row 0).
    """

    features: np.ndarray
    counts: object
    choices: np.ndarray
    groups: np.ndarray
    covariates: np.ndarray | None
    classes: np.ndarray
    weights: np.ndarray
    atoms: np.ndarray
    membership_coef: np.ndarray | None

    @property
    def params(self):
        """The truth: ``SoftmaxMixtureParams`` (no covariates) or ``MembershipParams``."""
        from softmix.softmax_mixture.model import SoftmaxMixtureParams
        from softmix.softmax_mixture.panel import MembershipParams

        if self.membership_coef is not None:
            return MembershipParams(self.membership_coef, self.atoms)
        return SoftmaxMixtureParams(self.weights, self.atoms)


def make_panel_softmax_mixture(
    n_groups: int,
    choices_per_group,
    n_alternatives: int,
    n_features: int,
    n_components: int,
    *,
    n_covariates: int = 0,
    separation: float = 1.0,
    membership_scale: float = 1.0,
    weights=None,
    random_state=None,
) -> PanelMixtureData:
    """Simulate a panel softmax mixture (optionally with class-membership covariates).

    Each group g draws a class ``z_g`` (from ``weights``, or from ``softmax(gamma [1, Z_g])``
    with covariates) and then ``T_g`` i.i.d. choices from ``pi(theta_{z_g})``. The design and
    atoms are those of :func:`make_softmax_mixture` (Gaussian design, atoms of norm
    ``separation``).

    Parameters
    ----------
    n_groups : int
        G >= 1.
    choices_per_group : int or array-like of int, shape (n_groups,)
        ``T_g >= 1`` choices per group.
    n_alternatives, n_features, n_components : int
        p, L, K.
    n_covariates : int
        q >= 0; with q > 0, ``Z ~ N(0, I_q)`` and ``gamma`` has N(0, membership_scale^2)
        slopes, intercepts ``log weights`` (last row 0).
    separation, weights, random_state
        As in :func:`make_softmax_mixture`.
    membership_scale : float
        Scale of the true membership slopes.

    Returns
    -------
    PanelMixtureData
    """
    import scipy.sparse

    from softmix.core.special import log_softmax

    n_groups = check_int(n_groups, "n_groups", low=1)
    n_covariates = check_int(n_covariates, "n_covariates", low=0)
    membership_scale = check_float(membership_scale, "membership_scale", low=0.0)
    per = np.asarray(choices_per_group)
    if per.ndim == 0:
        per = np.full(n_groups, check_int(int(per) if per.dtype.kind in "iu" else per,
                                          "choices_per_group", low=1))
    elif per.shape != (n_groups,) or per.dtype.kind not in "iu" or np.any(per < 1):
        raise ValueError(
            f"choices_per_group must be an int >= 1 or n_groups={n_groups} ints >= 1, got "
            f"{per if per.size < 6 else per.shape}."
        )
    rng = check_random_state(random_state)
    base = make_softmax_mixture(0, n_alternatives, n_features, n_components,
                                separation=separation, weights=weights, random_state=rng)
    features, atoms, w = base.features, base.atoms, base.weights
    covariates, coef = None, None
    if n_covariates:
        covariates = rng.standard_normal((n_groups, n_covariates))
        coef = np.zeros((n_components, n_covariates + 1))
        logw = np.log(w)
        coef[:, 0] = logw - logw[-1]
        coef[:-1, 1:] = membership_scale * rng.standard_normal((n_components - 1, n_covariates))
        prob = np.exp(log_softmax(np.column_stack([np.ones(n_groups), covariates]) @ coef.T,
                                  axis=1))
        cum = np.cumsum(prob, axis=1)
        classes = np.minimum((cum < rng.random(n_groups)[:, None]).sum(axis=1),
                             n_components - 1)
        w = prob.mean(axis=0)
    else:
        classes = rng.choice(n_components, size=n_groups, p=w)
    groups = np.repeat(np.arange(n_groups), per)
    choices = np.empty(groups.size, dtype=np.int64)
    cls_of_choice = classes[groups]
    pi = np.exp(log_softmax(features @ atoms.T, axis=0))  # (p, K)
    for k in range(n_components):
        idx = np.flatnonzero(cls_of_choice == k)
        if idx.size:
            choices[idx] = rng.choice(n_alternatives, size=idx.size, p=pi[:, k] / pi[:, k].sum())
    counts = scipy.sparse.csr_matrix((np.ones(groups.size), (groups, choices)),
                                     shape=(n_groups, n_alternatives))
    counts.sum_duplicates()
    return PanelMixtureData(features, counts, choices, groups, covariates, classes, w, atoms,
                            coef)


# --- mixtures of experts with flexmix's options (issue 12): constant gate, gate covariates ----

@_dataclass(frozen=True)
class MoEOptionsData:
    """A simulated constrained mixture of experts (see :func:`make_moe_options`).

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features)
        The experts' covariates.
    X_gate : ndarray of shape (n_samples, n_gate_features) or None
        The gate's own covariates (None: the gate uses X, or is constant).
    y : ndarray of shape (n_samples,)
    z : ndarray of shape (n_samples,)
        The true expert of each sample.
    params : MoEParams
        The truth on ``[1, X_gate, X]`` (or ``[1, X]``), zero where the options fix it, as
        :attr:`MixtureOfExperts.params_` holds it.
    layout : softmix.moe.options.Layout
    """

    X: np.ndarray
    X_gate: np.ndarray | None
    y: np.ndarray
    z: np.ndarray
    params: object
    layout: object


def make_moe_options(
    n_samples: int,
    n_features: int = 1,
    n_experts: int = 2,
    *,
    n_gate_features: int | None = None,
    gate: str = "softmax",
    fit_intercept: bool = True,
    variance: str = "free",
    expert: str = "gaussian",
    gate_scale: float = 1.5,
    coef_scale: float = 2.0,
    random_state=None,
) -> MoEOptionsData:
    """Simulate a mixture of experts with flexmix's options, returning the truth.

    ``X ~ N(0, I_d)`` and ``X_gate ~ N(0, I_q)``; gate coefficients N(0, gate_scale^2) on the
    gate's columns (intercepts only for ``gate="constant"``, last row 0); expert coefficients
    N(0, coef_scale^2) on the experts' columns (intercept 0 with ``fit_intercept=False``);
    Gaussian variances U[0.1, 0.5] (one shared value with ``variance="equal"``).

    Parameters
    ----------
    n_samples, n_features, n_experts : int
    n_gate_features : int, optional
        q: the gate gets its own covariates ``X_gate`` (flexmix's concomitant variables).
    gate, fit_intercept, variance
        As in :class:`softmix.MixtureOfExperts`.
    expert : {"gaussian", "logistic"}
    gate_scale, coef_scale : float
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    MoEOptionsData
    """
    from softmix.moe.model import MoEParams, sample
    from softmix.moe.options import Layout, check_options

    n_samples = check_int(n_samples, "n_samples", low=1)
    n_features = check_int(n_features, "n_features", low=1)
    n_experts = check_int(n_experts, "n_experts", low=1)
    if n_gate_features is not None:
        n_gate_features = check_int(n_gate_features, "n_gate_features", low=1)
    gate, fit_intercept, variance = check_options(gate, fit_intercept, variance)
    if expert not in ("gaussian", "logistic"):
        raise ValueError(f"expert must be 'gaussian' or 'logistic', got {expert!r}.")
    gate_scale = check_float(gate_scale, "gate_scale", low=0.0)
    coef_scale = check_float(coef_scale, "coef_scale", low=0.0)
    rng = check_random_state(random_state)
    layout = Layout(n_features, n_gate_features, gate, fit_intercept, variance)
    width = layout.width + 1
    gating = np.zeros((n_experts, width))
    gating[:, layout.gate_mask] = gate_scale * rng.standard_normal(
        (n_experts, int(layout.gate_mask.sum())))
    gating[-1] = 0.0
    coef = np.zeros((n_experts, width))
    coef[:, layout.expert_mask] = coef_scale * rng.standard_normal(
        (n_experts, int(layout.expert_mask.sum())))
    var = None
    if expert == "gaussian":
        var = (np.full(n_experts, rng.uniform(0.1, 0.5)) if variance == "equal"
               else rng.uniform(0.1, 0.5, n_experts))
    params = MoEParams(gating, coef, var, expert)
    X = rng.standard_normal((n_samples, n_features))
    X_gate = None if n_gate_features is None else rng.standard_normal((n_samples, n_gate_features))
    W = X if X_gate is None else np.hstack([X_gate, X])
    y, z = sample(W, params, rng)
    return MoEOptionsData(X, X_gate, y, z, params, layout)


from softmix.choice.datasets import make_latent_class_logit  # noqa: F401  (choice data)
