"""Run a registered experiment and write its folder: config.json, results.csv, summary.md,
figures. Thin layer: the science lives in the experiment modules."""

from __future__ import annotations

import csv
import dataclasses
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from softmix.core.threads import blas_threads
from softmix.experiments import get_experiment

__all__ = ["run_experiment", "write_csv"]


def write_csv(rows: list[dict], path: Path) -> None:
    """Tidy rows -> CSV (columns in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def run_experiment(
    name: str,
    *,
    quick: bool = False,
    seed: int = 0,
    out: str | Path = "results",
    progress: Callable[[int, int], None] | None = None,
    plots: bool = True,
    overrides: dict | None = None,
) -> tuple[Path, list[dict], str]:
    """Run experiment ``name`` and write its outputs under ``out/name``.

    ``overrides`` replaces fields of the experiment's Config (e.g. ``{"idx_dir": "data/"}``
    from ``softmix reproduce NAME --idx-dir data/``); a field the Config does not have is a
    ValueError naming the experiment's fields.

    Returns ``(folder, rows, summary_markdown)``.
    """
    from softmix import __version__

    module = get_experiment(name)
    config = module.Config.quick() if quick else module.Config()
    if overrides:
        fields = {f.name for f in dataclasses.fields(config)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(
                f"experiment {name!r} has no setting {', '.join(unknown)}; its Config fields "
                f"are: {', '.join(sorted(fields))}."
            )
        config = dataclasses.replace(config, **overrides)
    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    with blas_threads(1):  # many skinny products: see softmix.core.threads
        rows = module.run(config, rng, progress=progress)
    seconds = time.perf_counter() - start
    meta = {
        "experiment": name,
        "seed": seed,
        "quick": quick,
        "softmix_version": __version__,
        "numpy_version": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "seconds": round(seconds, 3),
        "config": dataclasses.asdict(config),
    }
    (folder / "config.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    write_csv(rows, folder / "results.csv")
    summary = module.summarize(rows, config)
    (folder / "summary.md").write_text(summary + "\n")
    if plots:
        try:
            import matplotlib

            matplotlib.use("Agg")
        except ImportError:
            plots = False
    if plots:
        module.plot(rows, config, folder)
    return folder, rows, summary
