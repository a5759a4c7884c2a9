"""Data generators that return the truth, paper settings, and data loaders.

Every ``make_*`` takes ``random_state`` (None | int | Generator) and returns the ground truth
alongside the data.
"""

from __future__ import annotations

import numpy as np  # noqa: F401

from softmix._validation import check_int, check_random_state  # noqa: F401


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
    from softmix.moe.model import MoEParams, check_params, sample

    n_samples = check_int(n_samples, "n_samples", low=1)
    check_choice(x_distribution, "x_distribution", ("uniform", "grid"))
    params = paper_gaussian_moe_params() if params is None else params
    check_params(params, expert="gaussian", name="params")
    if not isinstance(params, MoEParams):  # pragma: no cover - check_params raises first
        raise TypeError("params must be a MoEParams")
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
