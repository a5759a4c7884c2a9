"""Run a registered experiment and write its folder: config.json, results.csv, summary.md,
figures. Thin layer: the science lives in the experiment modules.

Long runs lose nothing: each experiment's ``run`` computes its cells (one replication, one
instance, one timed setting) through :func:`cell`. Under :func:`run_experiment` every finished
cell is written atomically to ``OUT/NAME/cells/<hash>.json`` (the hash of the experiment, seed,
Config and the cell's own key), so a run that was interrupted (Ctrl-C, a killed process) and is
started again with the same ``--out`` reads its finished cells back instead of recomputing them,
and ends with the same table as an uninterrupted run. Every cell's result goes through JSON
whether it was computed now or read back, so the two are identical. Delete ``cells/`` (or use
another ``--out``) to recompute. Every file of the folder is written to a temporary file first
and moved into place with :func:`os.replace`: a killed run never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import dataclasses
import hashlib
import io
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from softmix.core.threads import blas_threads
from softmix.experiments import get_experiment

__all__ = ["CellCache", "atomic_write_text", "cell", "run_experiment", "write_csv"]


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temporary file in the same folder, flushed to
    disk, then :func:`os.replace` (readers see the old file or the new one, never a part)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_csv(rows: list[dict], path: Path) -> None:
    """Tidy rows -> CSV (columns in first-seen order), written atomically."""
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays -> Python numbers and lists (JSON's ``default``)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cell results must be JSON-like, got {type(value).__name__}")


def _dumps(value: Any, **kw) -> str:
    return json.dumps(value, default=_plain, allow_nan=True, **kw)


class CellCache:
    """Finished cells of one experiment run, one JSON file each under ``folder``.

    A cell's file name is the SHA-256 of ``identity`` (experiment, seed, Config) and the cell's
    key; the file holds both, and a file whose stored key differs (or that cannot be read) is
    recomputed. ``reused`` and ``computed`` count the cells of this run.
    """

    def __init__(self, folder: Path, identity: dict) -> None:
        self.folder = Path(folder)
        self.identity = json.loads(_dumps(identity, sort_keys=True))
        self.reused = 0
        self.computed = 0

    def _path(self, key: Any) -> tuple[Path, Any]:
        plain_key = json.loads(_dumps(key))
        text = _dumps({"identity": self.identity, "key": plain_key}, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()[:24]
        return self.folder / f"{digest}.json", plain_key

    def get_or_compute(self, key: Any, compute: Callable[[], Any]) -> Any:
        """The stored result of cell ``key``, or ``compute()`` stored atomically and returned
        as read back from JSON (so a reused and a fresh cell are the same objects)."""
        path, plain_key = self._path(key)
        if path.exists():
            try:
                stored = json.loads(path.read_text())
                if stored.get("key") == plain_key and stored.get("identity") == self.identity:
                    self.reused += 1
                    return stored["value"]
            except (OSError, ValueError, AttributeError):
                pass  # unreadable or foreign: recompute below
        value = compute()
        text = _dumps({"identity": self.identity, "key": plain_key, "value": value},
                      sort_keys=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text + "\n")
        self.computed += 1
        return json.loads(text)["value"]


_ACTIVE: contextvars.ContextVar[CellCache | None] = contextvars.ContextVar(
    "softmix_cell_cache", default=None
)


@contextlib.contextmanager
def _cells(cache: CellCache) -> Iterator[CellCache]:
    token = _ACTIVE.set(cache)
    try:
        yield cache
    finally:
        _ACTIVE.reset(token)


def cell(key: Any, compute: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Compute one cell of an experiment, or read it back when a resumed run finished it.

    Parameters
    ----------
    key : JSON-like
        What identifies the cell within its run, e.g. ``("rep", n, rep)``; the experiment,
        seed and Config are added by :func:`run_experiment`. Cells must be independent: each
        draws only from its own spawned generator, so skipping a finished one changes nothing.
    compute : callable
        ``compute(*args, **kwargs)`` returns the cell's result (rows: dicts of numbers,
        strings, bools; NumPy scalars are turned into Python numbers).

    Returns
    -------
    The result. Outside :func:`run_experiment` (a direct ``module.run(config, rng)``) this is
    ``compute(*args, **kwargs)`` itself; inside it, the JSON round trip of the stored result.

    Examples
    --------
    >>> rows.extend(cell(("replication", n, rep), replicate, n_samples=n, rng=child))
    """
    cache = _ACTIVE.get()
    if cache is None:
        return compute(*args, **kwargs)
    return cache.get_or_compute(key, lambda: compute(*args, **kwargs))


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

    Finished cells are kept in ``out/name/cells/``: running the same experiment with the same
    ``seed``, Config and ``out`` again (after an interruption) reuses them (see the module
    docstring); ``config.json`` records ``cells_reused`` and ``cells_computed``.

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
    cache = CellCache(folder / "cells", {
        "experiment": name, "seed": seed, "softmix_version": __version__,
        "config": dataclasses.asdict(config),
    })
    with blas_threads(1), _cells(cache):  # many skinny products: see softmix.core.threads
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
        "cells_reused": cache.reused,
        "cells_computed": cache.computed,
        "config": dataclasses.asdict(config),
    }
    atomic_write_text(folder / "config.json", json.dumps(meta, indent=2, default=str) + "\n")
    write_csv(rows, folder / "results.csv")
    summary = module.summarize(rows, config)
    atomic_write_text(folder / "summary.md", summary + "\n")
    if plots:
        try:
            import matplotlib

            matplotlib.use("Agg")
        except ImportError:
            plots = False
    if plots:
        module.plot(rows, config, folder)
    return folder, rows, summary
