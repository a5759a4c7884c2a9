"""Claim 4 of the softmax-mixture paper: an EM iteration costs O(p L K), whatever N is.

The counts ``n_j`` are sufficient, so the E-step and M-step touch p-vectors only: seconds per EM
iteration should be flat in N and linear in p and in L. We time a fixed number of EM iterations
(``tol = 0``) from the truth on simulated data (counts drawn in O(p K) memory, so N = 10^9 is
cheap), for the paper's first-order M-step (``m_step="gradient"``, O(p L K)) and our exact
Newton M-step (``"newton"``, O(p L^2) per Newton iteration and component). Each point is the
minimum over repeats (the machine is shared: the minimum is the least noisy estimate of cost).

BLAS is limited to one thread while timing (the runner runs every experiment under ``softmix.core.threads.blas_threads(1)``): on
our shared 2-core machine multi-threaded OpenBLAS made an iteration at p = 20,000 about 10x
slower than one thread did (oversubscription), which hides the O(p L K) scaling measured here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from softmix.core.restarts import spawn
from softmix.datasets import make_softmax_mixture
from softmix.experiments.runner import cell
from softmix.plotting import loglog_slope
from softmix.softmax_mixture.em import fit_em

NAME = "smm-cost"
DESCRIPTION = (
    "softmax mixture: seconds per EM iteration vs N (flat) and vs p and L (linear), gradient and "
    "Newton M-steps"
)


@dataclass
class Config:
    """Full run (about a minute): base p = 20,000, L = 10, K = 3, N = 10^6."""

    base_p: int = 20_000
    base_l: int = 10
    base_n: int = 1_000_000
    n_components: int = 3
    n_grid: tuple[int, ...] = (1_000, 100_000, 10_000_000, 1_000_000_000)
    p_grid: tuple[int, ...] = (5_000, 10_000, 20_000, 40_000, 80_000)
    l_grid: tuple[int, ...] = (5, 10, 20, 40, 80)
    m_steps: tuple[str, ...] = ("gradient", "newton")
    n_iter: int = 5
    n_repeats: int = 3

    @classmethod
    def quick(cls) -> Config:
        """CI grid: p = 2,000..8,000, L = 4..16, N = 10^3..10^9, 3 iterations, 2 repeats."""
        return cls(base_p=4_000, base_l=8, base_n=100_000, n_grid=(1_000, 1_000_000, 1_000_000_000),
                   p_grid=(2_000, 4_000, 8_000), l_grid=(4, 8, 16), n_iter=3, n_repeats=2)


def _time(p: int, big_l: int, n: int, config: Config, m_step: str, rng) -> float:
    data = make_softmax_mixture(n, p, big_l, config.n_components, return_choices=False,
                                random_state=rng)
    best = np.inf
    for _ in range(config.n_repeats):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_em(data.features, data.counts, data.params, m_step=m_step, tol=0.0,
                         max_iter=config.n_iter, warn=False)
        best = min(best, fit.seconds / max(fit.n_iter, 1))
    return best


def run(config: Config, rng: np.random.Generator, progress=None) -> list[dict]:
    jobs = (
        [("N", n, config.base_p, config.base_l, n) for n in config.n_grid]
        + [("p", p, p, config.base_l, config.base_n) for p in config.p_grid]
        + [("L", ell, config.base_p, ell, config.base_n) for ell in config.l_grid]
    )
    rows = []
    total = len(jobs) * len(config.m_steps)
    done = 0
    streams = iter(spawn(rng, total))  # one stream per cell: a resumed run skips cells safely
    for axis, value, p, big_l, n in jobs:
        for m_step in config.m_steps:
            sec = cell(("timing", axis, value, m_step), _time, p, big_l, n, config, m_step,
                       next(streams))
            rows.append({
                "axis": axis, "value": value, "n_alternatives": p, "n_features": big_l,
                "n_samples": n, "n_components": config.n_components, "m_step": m_step,
                "seconds_per_iter": sec, "blas_threads": 1,
            })
            done += 1
            if progress is not None:
                progress(done, total)
    return rows


def slopes(rows: list[dict]) -> dict[tuple[str, str], float]:
    """log-log slope of seconds/iteration on the varied axis, per (axis, m_step)."""
    out = {}
    for axis in ("N", "p", "L"):
        for m_step in sorted({r["m_step"] for r in rows}):
            sel = [r for r in rows if r["axis"] == axis and r["m_step"] == m_step]
            if sel:
                out[(axis, m_step)] = loglog_slope(
                    np.array([r["value"] for r in sel]), np.array([r["seconds_per_iter"] for r in sel])
                )
    return out


def summarize(rows: list[dict], config: Config) -> str:
    s = slopes(rows)
    m_steps = sorted({r["m_step"] for r in rows})
    lines = [
        (f"## smm-cost: seconds per EM iteration (K = {config.n_components}; base p = "
        f"{config.base_p:,}, L = {config.base_l}, N = {config.base_n:,})"),
        "",
        "| varied | value | " + " | ".join(f"{m} (ms/iter)" for m in m_steps) + " |",
        "|---|---|" + "---|" * len(m_steps),
    ]
    for axis in ("N", "p", "L"):
        values = sorted({r["value"] for r in rows if r["axis"] == axis})
        for v in values:
            cells = [
                f"{1e3 * next(r['seconds_per_iter'] for r in rows if r['axis'] == axis and r['value'] == v and r['m_step'] == m):.2f}"
                for m in m_steps
            ]
            lines.append(f"| {axis} | {v:,} | " + " | ".join(cells) + " |")
        lines.append(
            f"| {axis} | **log-log slope** | "
            + " | ".join(f"**{s[(axis, m)]:.2f}**" for m in m_steps) + " |"
        )
    lines += [
        "",
        ("Expected (paper: cost polynomial in L, counts sufficient): slope 0 in N, 1 in p, 1 in L "
        "for the gradient M-step; the Newton M-step forms L x L Hessians, so its L-slope can "
        "exceed 1. Timings on a shared 2-core machine: small values are noisy."),
    ]
    return "\n".join(lines)


def plot(rows: list[dict], config: Config, out_dir) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, axis in zip(axes, ("N", "p", "L")):
        for m_step in sorted({r["m_step"] for r in rows}):
            sel = sorted((r for r in rows if r["axis"] == axis and r["m_step"] == m_step),
                         key=lambda r: r["value"])
            ax.loglog([r["value"] for r in sel], [1e3 * r["seconds_per_iter"] for r in sel],
                      marker="o", label=m_step)
        ax.set_xlabel(axis)
        ax.set_ylabel("ms per EM iteration")
        ax.legend(fontsize=8)
    fig.suptitle(f"smm-cost (K={config.n_components})")
    fig.tight_layout()
    path = Path(out_dir) / "smm_cost.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
