"""Tables of the benchmark scripts: one :class:`Table` per script, written as CSV and Markdown."""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Table", "Trace", "fmt", "markdown", "write_csv"]


@dataclass
class Table:
    """Rows of one benchmark, with the words that go around them in RESULTS.md."""

    name: str  # file stem of the CSV under benchmarks/results/
    title: str
    rows: list[dict[str, Any]]
    columns: list[str] | None = None  # columns shown in Markdown (default: all)
    notes: list[str] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)  # one-line results for the summary
    seconds: float = 0.0  # wall time of the whole script


class Trace:
    """EM-driver callback recording (seconds since :meth:`start`, objective) every iteration.

    ``callback(iteration, params, value)`` is called by :func:`softmix.core.em.run_em` right
    after the EM map at ``params`` returned, i.e. when ``value`` (the objective at ``params``)
    is known; the recorded time therefore includes the M-step that followed (conservative).
    """

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.seconds: list[float] = []
        self.values: list[float] = []

    def __call__(self, iteration: int, params: Any, value: float) -> bool:
        self.seconds.append(time.perf_counter() - self.t0)
        self.values.append(float(value))
        return False


def fmt(value: Any) -> str:
    """Compact cell text: 4 significant digits for floats, '-' for None/NaN."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "never" if value > 0 else "-inf"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.4g}"
        return f"{value:.4g}"
    return str(value)


def markdown(table: Table) -> str:
    """The table as a Markdown section (title, table, notes)."""
    cols = table.columns or (list(table.rows[0]) if table.rows else [])
    lines = [f"## {table.title}", ""]
    if table.rows:
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "---|" * len(cols))
        for row in table.rows:
            lines.append("| " + " | ".join(fmt(row.get(c)) for c in cols) + " |")
        lines.append("")
    lines.extend(f"- {note}" for note in table.notes)
    if table.notes:
        lines.append("")
    lines.append(f"_Script wall time: {table.seconds:.0f} s; CSV: `benchmarks/results/{table.name}.csv`._")
    lines.append("")
    return "\n".join(lines)


def write_csv(table: Table, folder: Path) -> Path:
    """All columns of ``table.rows`` to ``folder/<name>.csv``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{table.name}.csv"
    cols: list[str] = []
    for row in table.rows:
        cols.extend(c for c in row if c not in cols)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        for row in table.rows:
            writer.writerow({c: row.get(c, "") for c in cols})
    return path
