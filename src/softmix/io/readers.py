"""Read user data files into arrays, with one-line errors naming the file, the column and the fix.

Formats, chosen by the file's extension:

``.csv``
    Comma-separated, a header row of column names, then one row per record. Numeric columns
    become float64; a column with text (e.g. class labels) stays text.
``.parquet``
    Read with pyarrow (the optional extra: ``pip install 'softmix[io]'``). Missing values
    (nulls) are errors.
``.npy``
    One array: 1-D (a single column named ``"0"``), 2-D (columns named ``"0"``, ``"1"``, ...) or
    structured (columns named by its fields). Read with ``allow_pickle=False``.
``.npz``
    Several arrays: ``key`` picks one (read as a ``.npy``); without it, a file with a single
    array gives that one, and a file of 1-D arrays of one length is a table whose columns are
    the array names.

Call :func:`read_table` for a :class:`Table` (columns by name), or :func:`read_matrix` and
:func:`read_vector` for the numeric arrays the estimators take. Every failure is an
:class:`InputError` (a ValueError) whose message is one line.
"""

from __future__ import annotations

import csv
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "FORMATS",
    "PARQUET_EXTRA",
    "InputError",
    "Table",
    "read_matrix",
    "read_table",
    "read_vector",
]

#: Extensions read (and written by :mod:`softmix.io.writers`).
FORMATS = (".csv", ".parquet", ".npy", ".npz")
#: The optional extra that brings pyarrow.
PARQUET_EXTRA = "softmix[io]"


class InputError(ValueError):
    """A data file that cannot be used; the message names the file, the column and the fix."""


@dataclass
class Table:
    """Columns of a data file: ``columns[name]`` is a 1-D float64 or text array (one length).

    ``path`` is the file (for messages); ``source`` says where in it (e.g. ``"key 'X'"``).
    """

    path: Path
    columns: dict[str, np.ndarray]
    source: str = ""

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def _where(self) -> str:
        return f"{self.path}{' (' + self.source + ')' if self.source else ''}"

    def _missing(self, name: str, option: str) -> InputError:
        shown = ", ".join(repr(n) for n in self.names[:20])
        more = f" and {len(self.names) - 20} more" if len(self.names) > 20 else ""
        return InputError(
            f"{self._where()}: no column {name!r} (given by {option}); the columns are {shown}"
            f"{more}. Use one of them."
        )

    def column(self, name: str, option: str) -> np.ndarray:
        """The column ``name`` (``option`` is the command-line option or argument naming it)."""
        if name not in self.columns:
            raise self._missing(name, option)
        return self.columns[name]

    def numeric(self, names: Sequence[str] | None, option: str, *,
                what: str = "the values") -> np.ndarray:
        """The float64 matrix of columns ``names`` (all when None), shape (n_rows, len(names)).

        Raises InputError for a missing column, a text cell or a non-finite value, naming the
        column and the row.
        """
        names = self.names if names is None else list(names)
        if not names:
            raise InputError(f"{self._where()}: no columns selected by {option}; name at least "
                             "one column.")
        cols = []
        for name in names:
            col = self.column(name, option)
            if col.dtype.kind not in "biuf":
                bad = _first_non_numeric(col)
                row, cell = bad if bad is not None else (0, col[0])
                raise InputError(
                    f"{self._where()}: column {name!r} holds text ({cell!r} in data row "
                    f"{row + 1}) but {what} must be numbers; fix that cell or leave the column "
                    "out."
                )
            col = col.astype(float, copy=False)
            finite = np.isfinite(col)
            if not finite.all():
                row = int(np.flatnonzero(~finite)[0])
                raise InputError(
                    f"{self._where()}: column {name!r} has a missing or non-finite value "
                    f"({col[row]!r}) in data row {row + 1}; {what} must be finite numbers: fill "
                    "or drop that row."
                )
            cols.append(col)
        return np.column_stack(cols)


def _first_non_numeric(col: np.ndarray) -> tuple[int, str] | None:
    for i, cell in enumerate(col):
        try:
            float(cell)
        except (TypeError, ValueError):
            return i, str(cell)
    return None


def _numeric_or_text(cells: list[str]) -> np.ndarray:
    try:
        return np.array([float(c) if c.strip() else np.nan for c in cells], dtype=float)
    except ValueError:
        return np.array([c.strip() for c in cells], dtype=str)


# ------------------------------------------------------------------------------------ formats
def _read_csv(path: Path) -> Table:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start}); "
                         "save it as UTF-8 CSV.") from None
    lines = [line for line in text.splitlines() if line.strip(" \t,")]
    if not lines:
        raise InputError(f"{path}: the file is empty; expected a header row of column names and "
                         "one row per record.")
    header = [h.strip() for h in next(csv.reader(lines[:1]))]
    if any(header) and all(_first_non_numeric(np.array([h])) is None for h in header if h):
        raise InputError(
            f"{path}: the first row ({','.join(header[:5])}{',...' if len(header) > 5 else ''})"
            " is all numbers, but a CSV file needs a header row of column names; add one (e.g. "
            "x0,x1,...) or save the array as .npy."
        )
    if any(not h for h in header):
        i = header.index("")
        raise InputError(f"{path}: column {i + 1} of the header row has no name; give every "
                         "column a name.")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise InputError(f"{path}: the header names {dup} more than once; give each column a "
                         "distinct name.")
    if len(lines) == 1:
        raise InputError(f"{path}: only a header row, no data rows; add one row per record.")
    fast = _all_numeric(lines[1:], len(header))
    if fast is not None and fast.shape[0] == len(lines) - 1:
        return Table(path, {name: fast[:, j].copy() for j, name in enumerate(header)})
    data = list(csv.reader(lines[1:]))
    for i, row in enumerate(data):
        if len(row) != len(header):
            raise InputError(
                f"{path}: data row {i + 1} has {len(row)} fields but the header has "
                f"{len(header)} columns; fix that row (a stray or missing comma?)."
            )
    columns = {}
    for j, name in enumerate(header):
        cells = [row[j] for row in data]
        col = _numeric_or_text(cells)
        if col.dtype.kind == "U":
            empty = [i for i, c in enumerate(cells) if not c.strip()]
            if empty:
                raise InputError(f"{path}: column {name!r} has an empty cell in data row "
                                 f"{empty[0] + 1}; fill or drop that row.")
        columns[name] = col
    return Table(path, columns)


def _all_numeric(lines: list[str], n_columns: int) -> np.ndarray | None:
    """Fast path: the data rows as a float matrix when every cell is a number (else None;
    the cell-by-cell reader then finds and reports the first bad cell)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = np.loadtxt(lines, delimiter=",", dtype=float, ndmin=2, comments=None)
    except (ValueError, UserWarning):
        return None
    return out if out.ndim == 2 and out.shape[1] == n_columns else None


def _array_table(path: Path, arr: np.ndarray, source: str = "") -> Table:
    where = f"{path}{' (' + source + ')' if source else ''}"
    if arr.dtype.names is not None:
        if arr.ndim != 1:
            raise InputError(f"{where}: a structured array must be 1-D, got shape {arr.shape}.")
        return Table(path, {name: _plain(arr[name], where, name) for name in arr.dtype.names},
                     source)
    if arr.ndim == 1:
        return Table(path, {"0": _plain(arr, where, "0")}, source)
    if arr.ndim == 2:
        return Table(path, {str(j): _plain(arr[:, j], where, str(j))
                            for j in range(arr.shape[1])}, source)
    raise InputError(f"{where}: expected a 1-D or 2-D array, got shape {arr.shape}; reshape it "
                     "(rows = records, columns = variables) before saving.")


def _plain(col: np.ndarray, where: str, name: str) -> np.ndarray:
    if col.ndim != 1:
        raise InputError(f"{where}: column {name!r} has shape {col.shape}; every column must "
                         "be 1-D.")
    if col.dtype.kind in "biuf":
        return col.astype(float)
    if col.dtype.kind in "US":
        return col.astype(str)
    raise InputError(f"{where}: column {name!r} has dtype {col.dtype}; use numbers or text.")


def _load_npy(raw, path: Path, source: str = "") -> np.ndarray:
    try:
        return np.load(raw, allow_pickle=False)
    except ValueError as exc:
        where = f"{path}{' (' + source + ')' if source else ''}"
        hint = (" it holds Python objects: save plain numeric or string arrays"
                if "pickle" in str(exc) else " it is not a valid .npy array")
        raise InputError(f"{where}: cannot be read ({exc});{hint}.") from None


def _read_npz(path: Path, key: str | None) -> Table:
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{path}: not a valid .npz file ({exc}); write it with "
                         "numpy.savez.") from None
    with archive:
        keys = list(archive.files)
        if not keys:
            raise InputError(f"{path}: the .npz file holds no arrays.")
        if key is not None:
            if key not in keys:
                raise InputError(f"{path}: no array {key!r} (given by --key); the arrays are "
                                 f"{keys}. Use one of them.")
            return _array_table(path, _load_npy_member(archive, key, path), f"key {key!r}")
        if len(keys) == 1:
            return _array_table(path, _load_npy_member(archive, keys[0], path),
                                f"key {keys[0]!r}")
        arrays = {k: _load_npy_member(archive, k, path) for k in keys}
    lengths = {a.shape[0] if a.ndim == 1 else None for a in arrays.values()}
    if None in lengths or len(lengths) != 1:
        shapes = {k: a.shape for k, a in arrays.items()}
        raise InputError(f"{path}: holds several arrays {shapes}; pass --key NAME to choose "
                         "one (or store 1-D arrays of one length, read as columns).")
    return Table(path, {k: _plain(a, str(path), k) for k, a in arrays.items()})


def _load_npy_member(archive, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as exc:
        raise InputError(f"{path} (key {key!r}): cannot be read ({exc}); store plain numeric "
                         "or string arrays.") from None


def _read_parquet(path: Path) -> Table:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(
            f"{path}: reading Parquet needs pyarrow, which is not installed: pip install "
            f"'{PARQUET_EXTRA}' (or pip install pyarrow), or save the table as .csv."
        ) from None
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:  # ArrowInvalid... for a broken file
        raise InputError(f"{path}: not a readable Parquet file ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); write it again "
                         "(e.g. pandas.DataFrame.to_parquet).") from None
    if table.num_columns == 0 or table.num_rows == 0:
        raise InputError(f"{path}: the table is empty ({table.num_rows} rows, "
                         f"{table.num_columns} columns); expected one row per record.")
    columns = {}
    for name in table.column_names:
        chunked = table.column(name)
        if chunked.null_count:
            # (np.asarray, not ChunkedArray.to_numpy: it takes no keywords before pyarrow 13)
            mask = np.asarray(chunked.is_null())
            raise InputError(f"{path}: column {name!r} has a missing value (null) in data row "
                             f"{int(np.flatnonzero(mask)[0]) + 1}; fill or drop that row.")
        values = np.asarray(chunked)
        if values.dtype.kind == "O":
            try:
                values = values.astype(str) if all(isinstance(v, str) for v in values) else values
            except (TypeError, ValueError):
                pass
        columns[str(name)] = _plain(values, str(path), str(name))
    return Table(path, columns)


def read_table(path: str | os.PathLike, *, key: str | None = None) -> Table:
    """Read a ``.csv``, ``.parquet``, ``.npy`` or ``.npz`` file into a :class:`Table`.

    Parameters
    ----------
    path : str or path-like
    key : str, optional
        The array of a ``.npz`` file (see the module docstring); an error for other formats.

    Raises
    ------
    InputError
        Missing file, unknown extension, empty file, malformed content; the message names the
        file and the fix.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise InputError(f"{path}: unknown file type {ext or '(no extension)'!r}; use one of "
                         f"{', '.join(FORMATS)}.")
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path.")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a data file.")
    if key is not None and ext != ".npz":
        raise InputError(f"{path}: --key {key!r} selects an array of a .npz file, but this is "
                         f"a {ext} file; drop --key.")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes).")
    try:
        if ext == ".csv":
            return _read_csv(path)
        if ext == ".parquet":
            return _read_parquet(path)
        if ext == ".npz":
            return _read_npz(path, key)
        with open(path, "rb") as fh:
            return _array_table(path, _load_npy(fh, path))
    except PermissionError:
        raise InputError(f"{path}: permission denied; make the file readable.") from None


def read_matrix(path: str | os.PathLike, *, option: str, key: str | None = None,
                columns: Sequence[str] | None = None, what: str = "the values") -> np.ndarray:
    """A float64 matrix (n_rows, n_columns) from a file: all columns, or those named.

    ``option`` is the command-line option that gave the file (named in errors).
    """
    return read_table(path, key=key).numeric(columns, option, what=what)


def read_vector(path: str | os.PathLike, *, option: str, key: str | None = None,
                column: str | None = None) -> np.ndarray:
    """One column of a file (float64 or text): the named one, or the file's only column."""
    table = read_table(path, key=key)
    if column is None:
        if len(table.columns) != 1:
            raise InputError(
                f"{table._where()}: {option} needs one column but the file has "
                f"{len(table.columns)} ({', '.join(map(repr, table.names[:10]))}); name one "
                "with --column."
            )
        column = table.names[0]
    return table.column(column, "--column")
