"""Mixture-of-experts regression: two linear regimes switched by a softmax gate.

Simulates ``y = 1 + 2 x + noise`` for small x and ``y = 4 - x + noise`` for large x, with a
smooth switch, fits a two-expert Gaussian :class:`softmix.MixtureOfExperts`, and compares its
prediction error with one least-squares line.

Run::

    python examples/moe_regression.py            # n = 20,000
    python examples/moe_regression.py --quick    # n = 2,000
"""

from __future__ import annotations

import argparse

import numpy as np

from softmix import MixtureOfExperts


def simulate(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``X`` (n, 1) uniform on [0, 2] and ``y`` (n,) from the two regimes."""
    x = rng.uniform(0.0, 2.0, n)
    gate = 1.0 / (1.0 + np.exp(-8.0 * (x - 1.0)))       # P(second regime | x)
    second = rng.random(n) < gate
    mean = np.where(second, 4.0 - x, 1.0 + 2.0 * x)
    return x[:, None], mean + 0.2 * rng.standard_normal(n)


def main(argv: list[str] | None = None) -> dict:
    """Run the example; returns the model and both test mean squared errors."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small setting (seconds)")
    parser.add_argument("--n", type=int, default=None, help="training size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n = args.n or (2_000 if args.quick else 20_000)
    rng = np.random.default_rng(args.seed)
    X, y = simulate(n, rng)
    X_test, y_test = simulate(n, rng)

    model = MixtureOfExperts(2, expert="gaussian", n_init=3, random_state=args.seed).fit(X, y)
    mse_moe = float(np.mean((model.predict(X_test) - y_test) ** 2))
    design = np.column_stack([np.ones(n), X[:, 0]])
    line = np.linalg.lstsq(design, y, rcond=None)[0]
    mse_line = float(np.mean((line[0] + line[1] * X_test[:, 0] - y_test) ** 2))

    print(f"n = {n}: {model.n_iter_} EM iterations, converged={model.converged_}")
    for i, (b, a) in enumerate(model.expert_coef_):
        sd = np.sqrt(model.expert_variance_[i])
        print(f"expert {i}: y = {b:.2f} + {a:.2f} x  (noise sd {sd:.2f})")
    print("gate rows [beta0, beta1]:", np.round(model.gating_coef_, 2).tolist())
    print(f"test mean squared error: mixture of experts {mse_moe:.3f}, one line {mse_line:.3f}")
    print(f"test mean log-likelihood per observation: {model.score(X_test, y_test):.3f}")
    return {"model": model, "mse_moe": mse_moe, "mse_line": mse_line}


if __name__ == "__main__":
    main()
