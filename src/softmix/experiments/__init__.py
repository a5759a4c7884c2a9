"""Reproduced claims of the three papers, one module per claim, found by name.

Every experiment module defines

- ``NAME`` (str) and ``DESCRIPTION`` (one line);
- ``Config``: a dataclass whose defaults are the paper-scale settings, with a classmethod
  ``quick()`` returning a small grid for CI;
- ``run(config, rng, progress=None) -> list[dict]``: a tidy table (one dict per row);
  ``progress(done, total)`` is an optional callback;
- ``summarize(rows, config) -> str``: markdown with our numbers next to the paper's;
- ``plot(rows, config, out_dir) -> list[pathlib.Path]``: figures (matplotlib).

:func:`softmix.experiments.runner.run_experiment` writes config.json (seed, version, config),
results.csv, summary.md and the figures into the experiment's own folder.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["REGISTRY", "get_experiment", "names"]

#: experiment name -> module (relative to this package). One line per reproduced claim.
REGISTRY: dict[str, str] = {
    "smm-rates": "smm_rates",
    "smm-components": "smm_components",
    "smm-cost": "smm_cost",
    "smm-vocabulary": "smm_vocabulary",
    "moe-em-vs-gd": "moe_em_vs_gd",
    "moe-inverted-images": "moe_inverted_images",
    "moe-voronoi": "moe_voronoi",
}


def names() -> list[str]:
    """Registered experiment names, sorted."""
    return sorted(REGISTRY)


def get_experiment(name: str) -> ModuleType:
    """The experiment module registered as ``name`` (ValueError listing the names otherwise)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; choose one of: {', '.join(names())}.")
    return importlib.import_module(f"softmix.experiments.{REGISTRY[name]}")
