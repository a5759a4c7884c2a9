"""Two multinomial-logistic experts on randomly colour-inverted images: EM vs gradient EM vs GD
(Fruytier, Mokhtari & Sanghavi, ICML 2025, Figure 3 and Table 2).

Data: scikit-learn's bundled 8x8 digits (offline; pixels scaled to [0, 1]) by default, or
MNIST / Fashion-MNIST from the four IDX files in ``idx_dir``
(``softmix reproduce moe-inverted-images --idx-dir DIR``). In every split a random half of the
images is inverted (x -> 1 - x), so a good gate routes inverted and normal images to different
experts. Model: a 2-expert mixture of multinomial logistic experts (10 classes) with a softmax
gate, all on [1, pixels].

Per instance (a fresh split, inversion and start): the same start for the three methods, small
random coefficients (N(0, init_scale^2); cross-entropy ~ ln 10 = 2.30 and accuracy ~0.1 at
iteration 0 as in the paper's figure), ``n_iter`` iterations of

- EM (:func:`softmix.moe.em.fit_em`: Newton M-steps for the gate and the experts),
- gradient EM (:func:`softmix.moe.gradient.fit_gradient_em`, ``n_inner`` inner steps),
- GD (:func:`softmix.moe.gradient.fit_gd`),

all maximising the same objective (log-likelihood minus ``ridge/2 ||coefficients||^2``; the
small ridge keeps the multinomial M-steps finite on separable data). GD's step and gradient EM's
(gate, expert) steps are tuned once on a separate tuning instance over ``step_grid`` by the
training objective after ``n_iter`` iterations (never on test data).

Per iteration we record the test accuracy, the test cross-entropy
``-(1/n_test) sum log p(y | x)``, the training objective per sample and how well the gate routes
inverted images (the larger of the two label assignments).
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from softmix.core.restarts import spawn
from softmix.core.special import logsumexp
from softmix.datasets import make_inverted_digits
from softmix.experiments.runner import cell
from softmix.moe.em import fit_em
from softmix.moe.experts import EXPERTS
from softmix.moe.gating import add_intercept, gate_log_proba_design
from softmix.moe.gradient import fit_gd, fit_gradient_em, step_size_grid
from softmix.moe.model import MoEParams

NAME = "moe-inverted-images"
DESCRIPTION = ("2 multinomial-logistic experts on randomly inverted digits (or MNIST/Fashion-"
               "MNIST IDX via --idx-dir): EM vs gradient EM vs GD (Fruytier et al. 2025, Table 2)")

METHODS = ("em", "gradient_em", "gd")
LABELS = {"em": "EM", "gradient_em": "gradient EM", "gd": "GD"}

#: Paper's Table 2 (Fashion-MNIST, 25 instances, 100 iterations): test accuracy and
#: cross-entropy; and the accuracy read off its figure at iterations 10, 20, 50.
PAPER = {
    "em": {"accuracy": 0.785, "cross_entropy": 0.827, "acc_10": 0.57, "acc_20": 0.68,
           "acc_50": 0.74},
    "gradient_em": {"accuracy": 0.660, "cross_entropy": 1.29, "acc_10": 0.20, "acc_20": 0.33,
                    "acc_50": 0.56},
    "gd": {"accuracy": 0.624, "cross_entropy": 1.30, "acc_10": 0.15, "acc_20": 0.23,
           "acc_50": 0.48},
}


@dataclass
class Config:
    """Paper: Fashion-MNIST, 25 instances, 100 iterations. Ours by default: bundled digits and
    10 instances (EM's exact Newton M-steps cost ~0.3 s per iteration on 2 cores)."""

    idx_dir: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    n_instances: int = 10
    n_iter: int = 100
    n_experts: int = 2
    p_invert: float = 0.5
    ridge: float = 1.0
    init_scale: float = 0.01
    n_inner: int = 5
    inner_max_iter: int = 20
    inner_method: str = "auto"
    step_grid: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)

    @classmethod
    def quick(cls) -> Config:
        return cls(n_instances=2, n_iter=15, step_grid=(1.0, 4.0, 16.0), inner_max_iter=10)


def _data(config: Config, rng: np.random.Generator) -> dict:
    return make_inverted_digits(
        source="digits" if config.idx_dir is None else config.idx_dir,
        p_invert=config.p_invert, n_train=config.n_train, n_test=config.n_test,
        random_state=rng,
    )


def _start(config: Config, n_features: int, n_classes: int, rng) -> MoEParams:
    k, p = config.n_experts, n_features + 1
    gating = np.vstack([rng.normal(scale=config.init_scale, size=(k - 1, p)), np.zeros((1, p))])
    coef = rng.normal(scale=config.init_scale, size=(k, n_classes, p))
    coef[:, -1, :] = 0.0
    return MoEParams(gating, coef, None, "multinomial")


def class_log_proba(X: np.ndarray, params: MoEParams) -> np.ndarray:
    """log p(y = c | x) = logsumexp_i [log P(z=i | x) + log P(y=c | x, z=i)], shape (n, C)."""
    X1 = add_intercept(X)
    return logsumexp(gate_log_proba_design(X1, params.gating)[:, :, None]
                     + EXPERTS["multinomial"].class_log_proba(X1, params.expert_coef), axis=1)


def _inner_method(config: Config, n_features: int, n_classes: int) -> str:
    if config.inner_method != "auto":
        return config.inner_method
    return "newton" if (n_classes - 1) * (n_features + 1) <= 1500 else "lbfgs"


def _fit(method, data, params0, config, steps, callback=None):
    X, y = data["X_train"], data["y_train"]
    common = {"max_iter": config.n_iter, "tol": 0.0, "ridge": config.ridge, "warn": False,
              "callback": callback}
    if method == "em":
        n_classes = params0.expert_coef.shape[1]
        return fit_em(X, y, params0, inner_max_iter=config.inner_max_iter,
                      inner_method=_inner_method(config, X.shape[1], n_classes), **common)
    if method == "gd":
        return fit_gd(X, y, params0, step_size=steps["gd"], **common)
    return fit_gradient_em(X, y, params0, step_gate=steps["gradient_em"][0],
                           step_expert=steps["gradient_em"][1], n_inner=config.n_inner, **common)


def fit_with_trace(method, data, params0, config, steps) -> tuple:
    """Run ``method`` and return ``(fit, trace)``: ``trace[t]`` are the parameters whose
    objective is ``fit.history[t]`` (``len(trace) == len(fit.history)`` whatever the stop).

    The callback sees the iterate before each step; on a ``non_finite`` stop the driver drops
    the last (non-finite) value from ``history`` and returns the last finite iterate, which the
    callback has already recorded, so it is not appended again (it was, and the rows of the
    table then ran one past ``history``: an IndexError).
    """
    trace: list[MoEParams] = []
    fit = _fit(method, data, params0, config, steps,
               callback=lambda it, params, value: trace.append(params))
    trace = trace[:len(fit.history) - 1] + [fit.params]
    return fit, trace


def tune_steps(config: Config, rng: np.random.Generator) -> dict:
    """GD step and gradient-EM (gate, expert) steps with the best training objective after
    ``n_iter`` iterations on one tuning instance."""
    data = _data(config, rng)
    n_classes = int(data["y_train"].max()) + 1
    params0 = _start(config, data["X_train"].shape[1], n_classes, rng)
    gd = step_size_grid(lambda s: _fit("gd", data, params0, config, {"gd": s}),
                        config.step_grid)
    best, best_value = None, -np.inf
    for pair in itertools.product(config.step_grid, repeat=2):
        res = _fit("gradient_em", data, params0, config, {"gradient_em": pair})
        if res.stop_reason != "non_finite" and res.objective > best_value:
            best, best_value = pair, res.objective
    if best is None:
        raise ValueError(f"every gradient-EM step pair of {config.step_grid} diverged.")
    return {"gd": gd.best, "gradient_em": best}


def run(config: Config, rng: np.random.Generator, progress=None) -> list[dict]:
    """Tidy rows, one per (instance, method, iteration): test accuracy, test cross-entropy,
    training objective per sample, gate routing accuracy of the inverted images."""
    tune_rng, *inst_rngs = spawn(rng, config.n_instances + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's overflow in diverged GD runs
        steps = cell(("tune",), tune_steps, config, tune_rng)
    rows: list[dict] = []
    total = config.n_instances * len(METHODS)
    done = 0
    for inst, inst_rng in enumerate(inst_rngs):
        rows.extend(cell(("instance", inst), _instance_rows, config, inst, inst_rng, steps))
        done += len(METHODS)
        if progress is not None:
            progress(done, total)
    return rows


def _instance_rows(config: Config, inst: int, inst_rng, steps: dict) -> list[dict]:
    """The rows of one instance, every method and iteration (one cell of :func:`run`)."""
    rows: list[dict] = []
    data = _data(config, inst_rng)
    n_classes = int(max(data["y_train"].max(), data["y_test"].max())) + 1
    params0 = _start(config, data["X_train"].shape[1], n_classes, inst_rng)
    n_train = data["X_train"].shape[0]
    for method in METHODS:
        fit, trace = fit_with_trace(method, data, params0, config, steps)
        for t, params in enumerate(trace):
            logp = class_log_proba(data["X_test"], params)
            y_test = data["y_test"]
            gate = gate_log_proba_design(add_intercept(data["X_test"]), params.gating)
            routed = np.mean(np.argmax(gate, axis=1) == data["inverted_test"])
            rows.append({
                "instance": inst, "method": method, "iteration": t,
                "test_accuracy": float(np.mean(np.argmax(logp, axis=1) == y_test)),
                "test_cross_entropy": float(-np.mean(logp[np.arange(len(y_test)), y_test])),
                "train_objective": float(-fit.history[t] / n_train),
                "gate_routing": float(max(routed, 1.0 - routed)),
                "step_gd": steps["gd"], "step_gate_gem": steps["gradient_em"][0],
                "step_expert_gem": steps["gradient_em"][1],
                "stop_reason": fit.stop_reason,
            })
    return rows


def _at(rows, method, iteration, key):
    return np.array([r[key] for r in rows if r["method"] == method
                     and r["iteration"] == iteration], float)


def final_table(rows: list[dict], config: Config) -> dict:
    """method -> mean and std over instances of the final test accuracy / cross-entropy."""
    last = max(r["iteration"] for r in rows)
    out = {}
    for m in METHODS:
        acc, ce = _at(rows, m, last, "test_accuracy"), _at(rows, m, last, "test_cross_entropy")
        route = _at(rows, m, last, "gate_routing")
        out[m] = {"accuracy": acc.mean(), "accuracy_sd": acc.std(), "cross_entropy": ce.mean(),
                  "cross_entropy_sd": ce.std(), "gate_routing": route.mean(),
                  "train_objective": _at(rows, m, last, "train_objective").mean()}
    return out


def summarize(rows: list[dict], config: Config) -> str:
    last = max(r["iteration"] for r in rows)
    n_inst = len({r["instance"] for r in rows})
    source = "scikit-learn digits (8x8)" if config.idx_dir is None else f"IDX files in {config.idx_dir}"
    table = final_table(rows, config)
    r0 = rows[0]
    lines = [
        f"## {NAME}: {source}, {n_inst} instances, {last} iterations",
        (f"Steps tuned on a separate instance (training objective): GD {r0['step_gd']}, gradient "
        f"EM (gate, expert) = ({r0['step_gate_gem']}, {r0['step_expert_gem']}) with "
        f"{config.n_inner} inner steps; ridge {config.ridge}."),
        "",
        (f"| method | test accuracy at {last} (mean +- sd) | paper (FMNIST) | test cross-entropy "
        "| paper | train objective | gate routes inverted images |"),
        "|---|---|---|---|---|---|---|",
    ]
    for m in METHODS:
        t = table[m]
        lines.append(
            f"| {LABELS[m]} | {t['accuracy']:.3f} +- {t['accuracy_sd']:.3f} | "
            f"{PAPER[m]['accuracy']:.3f} | {t['cross_entropy']:.3f} +- "
            f"{t['cross_entropy_sd']:.3f} | {PAPER[m]['cross_entropy']:.3f} | "
            f"{t['train_objective']:.3f} | {t['gate_routing']:.3f} |"
        )
    checkpoints = [t for t in (10, 20, 50) if t <= last]
    if checkpoints:
        lines += ["", "Test accuracy along the way (ours / paper's figure):", "",
                  "| method | " + " | ".join(f"iteration {t}" for t in checkpoints) + " |",
                  "|---|" + "---|" * len(checkpoints)]
        for m in METHODS:
            cells = [f"{_at(rows, m, t, 'test_accuracy').mean():.3f} / {PAPER[m][f'acc_{t}']}"
                     for t in checkpoints]
            lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    em_beats_gd = table["em"]["accuracy"] > table["gd"]["accuracy"]
    lines += ["", (f"EM's test accuracy above GD's at iteration {last}: "
              f"{'yes' if em_beats_gd else 'no'}.")]
    return "\n".join(lines)


def plot(rows: list[dict], config: Config, out_dir) -> list[Path]:
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    colors = {"em": "C0", "gradient_em": "C1", "gd": "C2"}
    for ax, key, label in zip(axes, ("test_accuracy", "test_cross_entropy", "gate_routing"),
                              ("test accuracy", "test cross-entropy",
                               "gate routing accuracy (inverted vs normal)"), strict=True):
        for m in METHODS:
            sel = [r for r in rows if r["method"] == m]
            n_inst = len({r["instance"] for r in sel})
            values = np.array([r[key] for r in sel], float).reshape(n_inst, -1)
            t = np.arange(values.shape[1])
            mean, sd = values.mean(axis=0), values.std(axis=0)
            ax.plot(t, mean, color=colors[m], label=LABELS[m])
            ax.fill_between(t, mean - sd, mean + sd, color=colors[m], alpha=0.2)
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
    axes[0].legend()
    fig.suptitle("2 multinomial-logistic experts on randomly inverted images (mean +- sd)")
    fig.tight_layout()
    path = out_dir / "inverted_images.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
