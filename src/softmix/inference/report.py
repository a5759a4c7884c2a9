"""``InferenceResult``: estimates, standard errors, covariance, intervals and the summary text."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["InferenceResult", "format_summary"]


def _check_level(level: Any) -> float:
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise TypeError(f"level must be a number in (0, 1), got {level!r}.") from None
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1) (e.g. 0.95 for 95% intervals), got {level}.")
    return level


@dataclass
class InferenceResult:
    """Standard errors and intervals of a fitted model's reported parameters.

    Attributes
    ----------
    names : list of str
        Parameter names: ``weight[k]``, ``atom[k,l]`` (softmax mixture; with class-membership
        covariates ``membership[k,j]``, k < K-1, j = 0 the intercept); ``gate[k,j]`` (or
        ``weight[k]`` for ``gate="constant"``), ``coef[k,j]`` / ``coef[k,c,j]``,
        ``variance[k]`` (or one ``variance`` with ``variance="equal"``) (mixture of experts);
        ``coef[k,l]`` and ``membership[k,j]`` (k < K-1) or ``weight[k]`` (latent class logit).
    estimates : ndarray of shape (P,)
    std_errors : ndarray of shape (P,)
        ``inf`` for parameters about which the information is zero (see
        :class:`~softmix.inference.information.InformationWarning`).
    cov : ndarray of shape (P, P)
        Covariance of the estimates (delta method from the unconstrained parametrisation for
        ``"observed"`` and ``"sandwich"``; the replicates' covariance for ``"bootstrap"``).
    method : str
        ``"observed"``, ``"sandwich"`` or ``"bootstrap"``.
    level : float
        Default level of :meth:`conf_int` and of the summary's intervals.
    model : dict
        What the summary header shows: model name, sizes, log-likelihood, AIC, BIC, ICL,
        convergence criterion and value...
    extra : dict
        Method-specific details: for the bootstrap ``n_boot``, ``n_used``, ``n_failed``,
        ``n_not_converged``, ``kind`` and the aligned ``replicates`` (n_used, P); for the
        sandwich ``n_groups``; ``flagged`` names without information.
    """

    names: list[str]
    estimates: np.ndarray
    std_errors: np.ndarray
    cov: np.ndarray
    method: str = "observed"
    level: float = 0.95
    model: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def z_values(self) -> np.ndarray:
        """``estimate / std_error`` (Wald statistics against 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.std_errors > 0, self.estimates / self.std_errors, np.nan)

    @property
    def p_values(self) -> np.ndarray:
        """Two-sided normal p-values of :attr:`z_values`."""
        z = self.z_values
        return np.where(np.isnan(z), np.nan, 2.0 * stats.norm.sf(np.abs(np.nan_to_num(z))))

    def conf_int(self, level: float | None = None) -> np.ndarray:
        """Wald intervals ``estimate -/+ z_{(1+level)/2} std_error``, shape (P, 2).

        For ``method="bootstrap"`` these are normal intervals with the bootstrap standard errors;
        percentile intervals are ``numpy.quantile(result.extra["replicates"], ..., axis=0)``.
        """
        level = self.level if level is None else _check_level(level)
        q = stats.norm.ppf(0.5 + level / 2.0)
        half = q * self.std_errors
        return np.column_stack([self.estimates - half, self.estimates + half])

    def summary(self, level: float | None = None) -> str:
        """A statsmodels-like text report (header, then one row per parameter)."""
        return format_summary(self, level)

    def __str__(self) -> str:
        return self.summary()

    def to_frame(self, level: float | None = None):
        """The parameter table as a ``pandas.DataFrame`` indexed by name.

        Columns: ``estimate``, ``std_error``, ``z``, ``p_value``, ``ci_lower``, ``ci_upper``.

        Raises
        ------
        ImportError
            When pandas is not installed (``pip install pandas``).
        """
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is in the dev extras
            raise ImportError(
                "InferenceResult.to_frame needs pandas, which is not installed: pip install "
                "pandas (or use result.names, result.estimates, result.std_errors)."
            ) from exc
        ci = self.conf_int(level)
        return pd.DataFrame(
            {"estimate": self.estimates, "std_error": self.std_errors, "z": self.z_values,
             "p_value": self.p_values, "ci_lower": ci[:, 0], "ci_upper": ci[:, 1]},
            index=pd.Index(self.names, name="parameter"),
        )


def _fmt(value: Any, width: int = 12) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.6g}" if abs(v) >= 1e-4 or v == 0 else f"{v:.3e}"
    return str(value)


def format_summary(result: InferenceResult, level: float | None = None) -> str:
    """The text of :meth:`InferenceResult.summary`."""
    level = result.level if level is None else _check_level(level)
    header = dict(result.model)
    header["covariance"] = result.method
    if result.method == "bootstrap":
        e = result.extra
        header["bootstrap"] = (f"{e.get('kind')}, {e.get('n_used')} of {e.get('n_boot')} used "
                               f"({e.get('n_failed')} failed, {e.get('n_not_converged')} not "
                               "converged)")
    width = 78
    lines = ["=" * width, f"{header.pop('title', 'Model results'):^{width}}", "=" * width]
    items = [(k, _fmt(v)) for k, v in header.items()]
    half = (len(items) + 1) // 2
    left, right = items[:half], items[half:]
    for i in range(half):
        a = f"{left[i][0] + ':':<22}{left[i][1]:>16}"
        b = f"{right[i][0] + ':':<22}{right[i][1]:>16}" if i < len(right) else ""
        lines.append(f"{a}  {b}".rstrip())
    lines.append("-" * width)
    lo, hi = f"[{(1 - level) / 2:.3g}", f"{(1 + level) / 2:.3g}]"
    name_w = max(14, max((len(n) for n in result.names), default=0) + 1)
    lines.append(f"{'':<{name_w}}{'estimate':>11}{'std err':>11}{'z':>9}{'P>|z|':>8}"
                 f"{lo:>11}{hi:>11}")
    lines.append("-" * width)
    ci = result.conf_int(level)
    z, pv = result.z_values, result.p_values
    for i, name in enumerate(result.names):
        zs = "nan" if np.isnan(z[i]) else f"{z[i]:.3f}"
        ps = "nan" if np.isnan(pv[i]) else f"{pv[i]:.3f}"
        lines.append(f"{name:<{name_w}}{_fmt(result.estimates[i]):>11}"
                     f"{_fmt(result.std_errors[i]):>11}{zs:>9}{ps:>8}"
                     f"{_fmt(ci[i, 0]):>11}{_fmt(ci[i, 1]):>11}")
    lines.append("=" * width)
    notes = result.extra.get("notes", [])
    lines += [f"[{i + 1}] {note}" for i, note in enumerate(notes)]
    return "\n".join(lines)
