"""Write a table of named columns (predictions, posteriors) by the file's extension.

``.csv`` (header row; floats in their shortest round-trip form), ``.parquet`` (pyarrow, the
``softmix[io]`` extra), ``.npy`` (a 2-D float64 array when every column is numeric, else a
structured array with one field per column), ``.npz`` (one array per column).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from softmix.io.readers import FORMATS, PARQUET_EXTRA, InputError

__all__ = ["write_table"]


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def write_table(path: str | os.PathLike, columns: Mapping[str, np.ndarray], *,
                option: str = "--out") -> Path:
    """Write ``columns`` (name -> 1-D array, one length) to ``path``; returns the path.

    Raises
    ------
    InputError
        For an extension that is not one of ``.csv``, ``.parquet``, ``.npy``, ``.npz``, or
        Parquet without pyarrow.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise InputError(f"{path}: unknown file type {ext or '(no extension)'!r} for {option}; "
                         f"use one of {', '.join(FORMATS)}.")
    cols = {name: np.asarray(values) for name, values in columns.items()}
    if ext == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(list(cols))
            for row in zip(*cols.values()):
                writer.writerow([_cell(v) for v in row])
    elif ext == ".npz":
        np.savez(path, **cols)  # type: ignore[arg-type]
    elif ext == ".npy":
        if all(c.dtype.kind in "biuf" for c in cols.values()):
            np.save(path, np.column_stack([c.astype(float) for c in cols.values()]),
                    allow_pickle=False)
        else:
            out = np.empty(len(next(iter(cols.values()))),
                           dtype=[(name, c.dtype) for name, c in cols.items()])
            for name, c in cols.items():
                out[name] = c
            np.save(path, out, allow_pickle=False)
    else:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise InputError(f"{path}: writing Parquet needs pyarrow: pip install "
                             f"'{PARQUET_EXTRA}', or choose a .csv {option}.") from None
        pq.write_table(pa.table({name: c for name, c in cols.items()}), path)
    return path
