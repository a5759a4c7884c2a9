"""Choice data: a simulator of latent class logits returning the truth, and the Swissmetro loader.

``make_latent_class_logit`` draws long-format panel data with varying choice sets (each
alternative available with a given probability, at least two per situation) and membership
covariates. ``load_swissmetro`` reads the Swissmetro stated-preference survey (Bierlaire,
Axhausen & Abay 2001; 10,728 choices of 1,192 respondents among train, Swissmetro and car)
from the copy that the ``biogeme`` package ships on PyPI, without importing biogeme, and returns
it in long format.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from softmix._validation import check_float, check_int, check_random_state

__all__ = [
    "SWISSMETRO_ATTRIBUTES",
    "LatentClassLogitData",
    "find_swissmetro",
    "load_swissmetro",
    "make_latent_class_logit",
    "read_swissmetro",
]


@dataclass(frozen=True)
class LatentClassLogitData:
    """Simulated long-format choice data and its truth (see :func:`make_latent_class_logit`).

    Attributes
    ----------
    X : ndarray of shape (n_rows, n_features)
        Attributes of each available alternative of each situation.
    chosen : ndarray of int, shape (n_rows,)
        1 on the chosen row of each situation.
    situations : ndarray of int, shape (n_rows,)
        Situation ids.
    groups : ndarray of int, shape (n_rows,)
        Person ids (each person answers ``n_situations`` situations and keeps one class).
    covariates : ndarray of shape (n_rows, n_covariates) or None
        Person-level membership covariates, repeated on each of the person's rows.
    alternatives : ndarray of int, shape (n_rows,)
        Which of the ``n_alternatives`` alternatives the row is.
    classes : ndarray of int, shape (n_groups,)
        The true class of each person.
    coef : ndarray of shape (n_classes, n_features)
    membership_coef : ndarray of shape (n_classes, n_covariates + 1)
        True parameters (the last row zeros: the reference class; column 0 the intercept).
    """

    X: np.ndarray
    chosen: np.ndarray
    situations: np.ndarray
    groups: np.ndarray
    covariates: np.ndarray | None
    alternatives: np.ndarray
    classes: np.ndarray
    coef: np.ndarray
    membership_coef: np.ndarray

    @property
    def params(self):
        """The truth as :class:`softmix.choice.model.LatentClassLogitParams`."""
        from softmix.choice.model import LatentClassLogitParams

        return LatentClassLogitParams(self.coef, self.membership_coef)


def make_latent_class_logit(
    n_groups: int,
    n_situations: int = 5,
    n_alternatives: int = 4,
    n_features: int = 3,
    n_classes: int = 2,
    *,
    n_covariates: int = 0,
    availability: float = 0.8,
    separation: float = 2.0,
    coef=None,
    membership_coef=None,
    random_state=None,
) -> LatentClassLogitData:
    """Simulate a latent class logit on panel data with varying choice sets.

    Each of ``n_groups`` persons draws covariates ``z ~ N(0, I_q)`` and a class from
    ``softmax(gamma_0 + z' gamma)``, then answers ``n_situations`` situations; in each, every
    alternative is available with probability ``availability`` (at least two are), its
    attributes are ``N(0, I_L)`` and the choice follows the class's conditional logit.

    Parameters
    ----------
    n_groups, n_situations, n_alternatives, n_features, n_classes : int
    n_covariates : int, default=0
        q, membership covariates (0: constant class weights).
    availability : float in (0, 1], default=0.8
    separation : float, default=2.0
        Norm of each class's coefficient vector (random directions) when ``coef`` is None.
    coef : array-like of shape (n_classes, n_features), optional
    membership_coef : array-like of shape (n_classes, n_covariates + 1), optional
        The last row must be zero. Default: intercepts 0 and slopes ``N(0, 1)``.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    LatentClassLogitData
    """
    from softmix._validation import check_array
    from softmix.choice.model import LatentClassLogitParams
    from softmix.core.membership import membership_log_weights

    n_groups = check_int(n_groups, "n_groups", low=1)
    n_situations = check_int(n_situations, "n_situations", low=1)
    n_alternatives = check_int(n_alternatives, "n_alternatives", low=2)
    n_features = check_int(n_features, "n_features", low=1)
    n_classes = check_int(n_classes, "n_classes", low=1)
    q = check_int(n_covariates, "n_covariates", low=0)
    availability = check_float(availability, "availability", low=0.0, high=1.0,
                               low_inclusive=False)
    separation = check_float(separation, "separation", low=0.0)
    rng = check_random_state(random_state)
    if coef is None:
        d = rng.standard_normal((n_classes, n_features))
        coef = separation * d / np.linalg.norm(d, axis=1, keepdims=True)
    coef = check_array(coef, "coef", ndim=2)
    if membership_coef is None:
        membership_coef = np.zeros((n_classes, q + 1))
        membership_coef[:-1, 1:] = rng.standard_normal((n_classes - 1, q))
    params = LatentClassLogitParams(coef, membership_coef)
    if params.coef.shape != (n_classes, n_features) or \
            params.membership_coef.shape != (n_classes, q + 1):
        raise ValueError(
            f"coef must have shape ({n_classes}, {n_features}) and membership_coef "
            f"({n_classes}, {q + 1}); got {params.coef.shape} and "
            f"{params.membership_coef.shape}."
        )
    Zg = rng.standard_normal((n_groups, q)) if q else None
    w = np.exp(membership_log_weights(params.membership_coef, Zg, n_groups))
    classes = (rng.random(n_groups)[:, None] > np.cumsum(w, axis=1)).sum(axis=1)
    classes = np.minimum(classes, n_classes - 1)

    n_sit = n_groups * n_situations
    avail = rng.random((n_sit, n_alternatives)) < availability
    # at least two available alternatives: force two random ones on where needed
    few = avail.sum(axis=1) < 2
    if np.any(few):
        pick = np.argsort(rng.random((int(few.sum()), n_alternatives)), axis=1)[:, :2]
        rows = np.flatnonzero(few)
        avail[rows[:, None], pick] = True
    sit_of = np.repeat(np.arange(n_sit), n_alternatives)[avail.ravel()]
    alt_of = np.tile(np.arange(n_alternatives), n_sit)[avail.ravel()]
    X = rng.standard_normal((sit_of.shape[0], n_features))
    group_of = sit_of // n_situations
    eta = np.einsum("rl,rl->r", X, params.coef[classes[group_of]])
    # Gumbel-max within each situation = a draw from its conditional logit
    util = eta + rng.gumbel(size=eta.shape)
    starts = np.flatnonzero(np.r_[True, np.diff(sit_of) != 0])
    best = np.maximum.reduceat(util, starts)
    chosen = (util == best[sit_of]).astype(np.int64)
    cov = None if Zg is None else Zg[group_of]
    return LatentClassLogitData(X, chosen, sit_of, group_of, cov, alt_of, classes,
                                params.coef.copy(), params.membership_coef.copy())


# --- Swissmetro -----------------------------------------------------------------------------

#: The columns :func:`load_swissmetro` builds per row (the specification of biogeme's example
#: ``b01logit``: alternative-specific constants with Swissmetro the reference, travel time and
#: cost in 100 minutes / 100 CHF, cost 0 for annual-pass (GA) holders on train and Swissmetro).
SWISSMETRO_ATTRIBUTES = ("asc_train", "asc_car", "time", "cost")

_ALTERNATIVES = ("train", "sm", "car")


def find_swissmetro() -> Path:
    """Path of ``swissmetro.dat`` inside the installed ``biogeme`` package (not imported).

    Raises
    ------
    FileNotFoundError
        Naming the remedy (``pip install biogeme``) when no copy is found. The environment
        variable ``SOFTMIX_SWISSMETRO`` may point at the file instead.
    """
    env = os.environ.get("SOFTMIX_SWISSMETRO")
    if env:
        path = Path(env)
        if not path.is_file():
            raise FileNotFoundError(f"SOFTMIX_SWISSMETRO={env!r} is not a file.")
        return path
    try:
        spec = importlib.util.find_spec("biogeme")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            path = Path(root) / "data" / "data" / "swissmetro.dat"
            if path.is_file():
                return path
    raise FileNotFoundError(
        "the Swissmetro data ships with the biogeme package: `pip install biogeme` (the file "
        "is read directly; biogeme is not imported), or set SOFTMIX_SWISSMETRO to the path of "
        "swissmetro.dat."
    )


def read_swissmetro(path) -> dict[str, np.ndarray]:
    """Read a Swissmetro file (tab-separated with a header row) into columns of floats."""
    path = Path(path)
    with path.open() as fh:
        header = fh.readline().strip().split("\t")
    values = np.loadtxt(path, delimiter="\t", skiprows=1, ndmin=2)
    if values.shape[1] != len(header):
        raise ValueError(f"{path}: {values.shape[1]} columns but {len(header)} header names.")
    needed = {"ID", "PURPOSE", "CHOICE", "GA", "SP", "MALE", "INCOME", "AGE", "FIRST",
              "TRAIN_AV", "SM_AV", "CAR_AV", "TRAIN_TT", "TRAIN_CO", "SM_TT", "SM_CO",
              "CAR_TT", "CAR_CO"}
    missing = sorted(needed - set(header))
    if missing:
        raise ValueError(f"{path} is not the Swissmetro file: missing columns {missing}.")
    return {name: values[:, j] for j, name in enumerate(header)}


def load_swissmetro(path=None, *, purposes=(1, 3)) -> dict[str, np.ndarray]:
    """Swissmetro in long format: one row per available alternative of each choice.

    Keeps the choices with ``PURPOSE`` in ``purposes`` (commuting and business, as in
    biogeme's examples; ``None`` keeps all) and a recorded choice (``CHOICE != 0``): 6,768
    choices by 752 respondents. Availability: train and Swissmetro as recorded, car only for
    respondents with a car (``CAR_AV``); 'sm' is the reference of the constants.

    Parameters
    ----------
    path : str or Path, optional
        A ``swissmetro.dat`` file; default :func:`find_swissmetro`.
    purposes : tuple of int or None

    Returns
    -------
    dict of str to ndarray
        ``X`` (n_rows, 4) with columns :data:`SWISSMETRO_ATTRIBUTES`; ``chosen`` (n_rows,) 0/1;
        ``situation`` and ``id`` (respondent) per row; ``alternative`` (0 train, 1 sm, 2 car);
        person-level covariates per row ``ga``, ``male``, ``income`` (1-3 from the survey's
        0-4 coding, with 4 'unknown' -> NaN dropped: see Notes), ``first_class``, ``age``;
        and ``attributes`` (the column names).

    Notes
    -----
    Travel time / 100 (minutes) and cost / 100 (CHF); cost 0 on train and Swissmetro for GA
    (annual pass) holders. Covariates are returned as given; ``ga`` and ``male`` are
    constant within a respondent.
    """
    cols = read_swissmetro(find_swissmetro() if path is None else path)
    keep = cols["CHOICE"] != 0
    if purposes is not None:
        keep &= np.isin(cols["PURPOSE"], np.asarray(purposes, dtype=float))
    c = {k: v[keep] for k, v in cols.items()}
    n = c["CHOICE"].shape[0]
    ga = c["GA"]
    tt = np.column_stack([c["TRAIN_TT"], c["SM_TT"], c["CAR_TT"]]) / 100.0
    co = np.column_stack([c["TRAIN_CO"] * (ga == 0), c["SM_CO"] * (ga == 0), c["CAR_CO"]]) / 100.0
    av = np.column_stack([c["TRAIN_AV"], c["SM_AV"], c["CAR_AV"] * (c["SP"] != 0)]) > 0
    choice = c["CHOICE"].astype(int) - 1  # 1 train, 2 sm, 3 car -> 0, 1, 2
    asc_train = np.tile([1.0, 0.0, 0.0], (n, 1))
    asc_car = np.tile([0.0, 0.0, 1.0], (n, 1))
    X = np.stack([asc_train, asc_car, tt, co], axis=2)  # (n, 3, 4)
    mask = av.ravel()
    sit = np.repeat(np.arange(n), 3)[mask]
    alt = np.tile(np.arange(3), n)[mask]
    chosen = (alt == choice[sit]).astype(np.int64)
    if not np.all(av[np.arange(n), choice]):
        raise ValueError("a chosen alternative is marked unavailable in the Swissmetro file.")
    out = {
        "X": X.reshape(n * 3, 4)[mask],
        "chosen": chosen,
        "situation": sit,
        "id": c["ID"][sit].astype(np.int64),
        "alternative": alt,
        "ga": ga[sit],
        "male": c["MALE"][sit],
        "income": c["INCOME"][sit],
        "first_class": c["FIRST"][sit],
        "age": c["AGE"][sit],
        "attributes": np.array(SWISSMETRO_ATTRIBUTES),
    }
    return out
