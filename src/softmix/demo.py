"""The main job (``softmix demo`` / ``make demo``): simulate a softmax mixture, fit it, report.

Returns the report as a string; the CLI prints it (the library never prints).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from softmix.core.threads import blas_threads
from softmix.datasets import make_softmax_mixture
from softmix.metrics import atom_error, match_components, wasserstein1, weight_error
from softmix.softmax_mixture.estimator import SoftmaxMixture
from softmix.softmax_mixture.model import log_likelihood
from softmix.softmax_mixture.warm_start import auto_choice

__all__ = ["DEMO_BLAS_THREADS", "DEMO_INIT", "DEMO_N_INIT", "run_demo"]

#: The demo's initialisation: the paper's warm start, ``init="auto"`` (method of moments for
#: K <= 3 on a Gaussian-looking design, else random starts in the estimated subspace; see
#: softmix.softmax_mixture.warm_start). The report says which start "auto" took and why.
DEMO_INIT = "auto"
#: Runs of the demo (the best log-likelihood is kept); one warm start is enough.
DEMO_N_INIT = 1
#: BLAS threads during the fit (scoped to the demo; see softmix.core.threads).
DEMO_BLAS_THREADS = 1



def _vector(v: np.ndarray, width: int = 6) -> str:
    return " ".join(f"{x:{width}.2f}" for x in v)


def run_demo(
    n_samples: int = 1_000_000,
    n_alternatives: int = 20_000,
    n_features: int = 10,
    n_components: int = 3,
    seed: int = 0,
    out: str | Path | None = "results",
) -> str:
    """Simulate, fit with :class:`SoftmaxMixture`, and return a table of truth vs estimate.

    Parameters
    ----------
    n_samples, n_alternatives, n_features, n_components : int
        N, p, L, K of the simulated mixture (Gaussian design, atoms of norm 1, weights
        proportional to K..2K-1; see :func:`softmix.datasets.make_softmax_mixture`).
    seed : int
        Seeds the data (``seed``) and the fit (``seed + 1``).
    out : str or Path or None
        Folder for ``demo_loglik.png`` (EM's convergence: the gap to the final log-likelihood
        per iteration on a log axis), written when matplotlib is importable; None writes
        nothing.

    Returns
    -------
    str
        The report: setting, per-component table (matched), errors, iterations, seconds.
    """
    t0 = time.perf_counter()
    data = make_softmax_mixture(n_samples, n_alternatives, n_features, n_components,
                                return_choices=False, random_state=seed)
    t_data = time.perf_counter() - t0
    model = SoftmaxMixture(n_components, init=DEMO_INIT, n_init=DEMO_N_INIT,
                           random_state=seed + 1)
    with warnings.catch_warnings(record=True) as caught, blas_threads(DEMO_BLAS_THREADS):
        warnings.simplefilter("always")
        t1 = time.perf_counter()
        model.fit(data.features, counts=data.counts)
        t_fit = time.perf_counter() - t1
    start_used, start_why = (
        auto_choice(data.features, data.counts, n_components) if DEMO_INIT == "auto"
        else (DEMO_INIT, "chosen in DEMO_INIT")
    )
    if start_used == "mom" and any("falling back to init='subspace'" in str(w.message)
                                   or "Using init='subspace'" in str(w.message) for w in caught):
        start_used, start_why = "subspace", "init='mom' fell back to it: see the warning below"
    perm = match_components(model.atoms_, data.atoms)
    est_w, est_a = model.weights_[perm], model.atoms_[perm]
    errors = np.linalg.norm(est_a - data.atoms, axis=1)
    truth_ll = log_likelihood(data.features, data.counts.astype(float), data.params)

    lines = [
        (f"softmix demo: softmax mixture with p = {n_alternatives:,} alternatives, "
         f"L = {n_features} features, K = {n_components} components, N = {n_samples:,} draws "
         f"(seed {seed})"),
        (f"fit: SoftmaxMixture(init={DEMO_INIT!r}, n_init={DEMO_N_INIT}, "
         f"m_step={model.m_step!r}: used {model.m_step_used_!r}) on the counts"),
        f"start: {start_used} ({start_why})",
        "",
        f"{'k':>2} {'alpha':>7} {'alpha_hat':>9} {'|theta_hat - theta|':>20}",
    ]
    for k in range(n_components):
        lines.append(f"{k:>2} {data.weights[k]:7.3f} {est_w[k]:9.3f} {errors[k]:20.4f}")
    lines.append("")
    lines.append("atoms (first 10 coordinates), true / estimated:")
    for k in range(n_components):
        lines.append(f"{k:>2} true {_vector(data.atoms[k, :10])}")
        lines.append(f"{'':>2} est  {_vector(est_a[k, :10])}")
    lines += [
        "",
        (f"atom error  max {atom_error(model.atoms_, data.atoms):.4f}  mean "
         f"{atom_error(model.atoms_, data.atoms, reduce='mean'):.4f}"),
        (f"weight error (L1) {weight_error(est_w, est_a, data.weights, data.atoms):.4f}"
         f"   W1(mixing measures) "
         f"{wasserstein1(model.weights_, model.atoms_, data.weights, data.atoms):.4f}"),
        f"log-likelihood: fitted {model.log_likelihood_:,.2f}  at the truth {truth_ll:,.2f}",
        (f"EM: {model.n_iter_} iterations (best of {DEMO_N_INIT} runs; final log-likelihoods "
         f"{', '.join(f'{v:,.2f}' for v in model.fit_result_.all_objectives)}), "
         f"converged={model.converged_} ({model.stop_reason_}), init={model.init_method_!r}"),
        f"seconds: simulate {t_data:.2f}, fit {t_fit:.2f} (all runs)",
    ]
    for w in caught:
        lines.append(f"warning: {w.category.__name__}: {w.message}")
    if out is not None:
        from softmix.plotting import plot_convergence

        try:
            folder = Path(out)
            folder.mkdir(parents=True, exist_ok=True)
            path = plot_convergence(
                model.history_, folder / "demo_loglik.png",
                title=(f"EM convergence: p = {n_alternatives:,}, L = {n_features}, "
                       f"K = {n_components}, N = {n_samples:.0e}"),
            )
            lines.append(f"figure: {path} (gap to the final log-likelihood, log scale)")
        except ImportError:
            lines.append("figure: skipped (matplotlib is not installed: pip install "
                         "'softmix[plot]')")
    return "\n".join(lines)
