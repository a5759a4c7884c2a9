"""Save and load fitted estimators: one zip file of a JSON manifest and ``.npy`` arrays, no pickle.

Call it as ``model.save("model.softmix")`` and ``softmix.load("model.softmix")`` (or
:func:`save` / :func:`load` here). ``load(path, expected=SoftmaxMixture)`` also checks the class.
A loaded model predicts bit for bit as the saved one: every array is stored exactly (``.npy``)
and every float of the manifest is written by ``repr`` (shortest round-trip form).

File format (version 1)
-----------------------
A zip archive (entries stored, not compressed) with

``manifest.json``
    UTF-8 JSON object::

        {"format": "softmix-model", "format_version": 1,
         "softmix_version": "0.1.0", "numpy_version": "2.4.6", "created": "<ISO 8601 UTC>",
         "estimator": {"class": "SoftmaxMixture",
                       "module": "softmix.softmax_mixture.estimator"},
         "fitted": true,
         "hyperparameters": {...},      # get_params(), encoded as below
         "not_saved": ["callback"],     # hyperparameters that cannot be stored (restored as None)
         "diagnostics": {"log_likelihood": ..., "converged": ..., "n_iter": ...,
                         "stop_reason": ..., "criterion": ..., "criterion_value": ...,
                         "init_method": ..., "seconds": ..., "history": [...],
                         "all_objectives": [...]},   # plain JSON, for people and other tools
         "state": {...},                # the fitted attributes (names ending in "_"), encoded
         "metadata": {...},             # free JSON given to save(metadata=...) (the CLI keeps
                                        # column names, input files and sizes here)
         "arrays": {"arrays/atoms_.npy": {"shape": [3, 10], "dtype": "<f8",
                                          "sha256": "..."}, ...}}

``arrays/<name>.npy``
    One NumPy ``.npy`` file per array, written with ``numpy.save(allow_pickle=False)`` (numeric,
    boolean or fixed-width string dtypes only; object arrays are refused). Read them with
    ``numpy.load(file, allow_pickle=False)``.

Values in ``hyperparameters`` and ``state`` are plain JSON (null, booleans, numbers, strings,
lists, objects with string keys) or one of these tagged objects:

- ``{"$array": "arrays/NAME.npy"}``: the array in that entry;
- ``{"$float": "nan" | "inf" | "-inf"}``: a non-finite float (JSON has none);
- ``{"$dtype": "float32"}``: a NumPy dtype;
- ``{"$tuple": [...]}``; ``{"$dict": [[key, value], ...]}`` (a dict with non-string keys);
- ``{"$dataclass": "module:QualName", "fields": {...}}``: a softmix dataclass (parameter sets
  such as ``SoftmaxMixtureParams``, ``MoEParams``, and the ``FitResult``), rebuilt through its
  validating constructor, then given the stored arrays exactly;
- ``{"$same_as": "path"}``: the same object as the one stored earlier at ``path`` (e.g.
  ``params_`` is ``fit_result_.params``).

Reading a file without softmix::

    import json, zipfile, numpy as np
    with zipfile.ZipFile("model.softmix") as z:
        manifest = json.loads(z.read("manifest.json"))
        atoms = np.load(z.open("arrays/atoms_.npy"), allow_pickle=False)

Compatibility: a reader refuses a ``format_version`` newer than it knows (upgrade softmix);
later versions of softmix read every earlier version.

Extending to a new estimator
----------------------------
Any estimator class defined in a ``softmix.*`` module is saved without registration when it
follows the scikit-learn conventions: hyperparameters from ``get_params()`` accepted back by
``__init__``, fitted attributes ending in ``_`` holding arrays, scalars, strings, lists/dicts of
those, or dataclasses of those. A class whose fitted state is something else defines
``_persist_state(self) -> dict`` (name -> value of the kinds above) and
``_restore_state(self, state: dict) -> None``. Classes outside the ``softmix`` package must be
registered with :func:`register_estimator` before :func:`load` will import them.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib
import io
import json
import math
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from softmix.exceptions import SoftmixWarning

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ModelFileError",
    "load",
    "read_manifest",
    "register_estimator",
    "save",
]

#: Value of the manifest's ``"format"`` key.
FORMAT_NAME = "softmix-model"
#: The format version written by this softmix (and the newest one it reads).
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_ARRAY_DIR = "arrays/"
#: Array dtypes kinds stored: bool, signed/unsigned int, float, complex, bytes, unicode.
_ARRAY_KINDS = "biufcSU"

#: Estimator classes outside the ``softmix`` package that :func:`load` may import
#: ("module:QualName" -> class).
_REGISTRY: dict[str, type] = {}


class ModelFileError(ValueError):
    """A model file that cannot be read back: the message names the file and the remedy."""


def register_estimator(cls: type) -> type:
    """Allow :func:`load` to rebuild instances of ``cls`` (a class outside ``softmix``).

    Classes of ``softmix.*`` modules need no registration. Usable as a class decorator.
    """
    if not isinstance(cls, type) or not hasattr(cls, "get_params"):
        raise TypeError(
            f"register_estimator takes an estimator class with get_params(), got {cls!r}."
        )
    _REGISTRY[f"{cls.__module__}:{cls.__qualname__}"] = cls
    return cls


# ------------------------------------------------------------------------------------ encoding
class _Unsaveable(TypeError):
    pass


class _Encoder:
    """Turns values into JSON plus a dict of arrays (``entry name -> ndarray``)."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self._seen: dict[int, tuple[str, Any]] = {}  # id -> (path, object) (kept alive)

    def _array_name(self, path: str) -> str:
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", path) or "array"
        name, i = f"{_ARRAY_DIR}{stem}.npy", 1
        while name in self.arrays:
            i += 1
            name = f"{_ARRAY_DIR}{stem}-{i}.npy"
        return name

    def encode(self, value: Any, path: str) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            value = float(value)
            if math.isfinite(value):
                return value
            return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
        if isinstance(value, np.dtype) or (isinstance(value, type)
                                           and issubclass(value, np.generic)):
            return {"$dtype": np.dtype(value).name}
        if id(value) in self._seen:
            return {"$same_as": self._seen[id(value)][0]}
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in _ARRAY_KINDS or value.dtype.names is not None:
                raise _Unsaveable(
                    f"{path} is an array of dtype {value.dtype} (only numeric, boolean and "
                    "string arrays are stored, never pickled objects)"
                )
            name = self._array_name(path)
            self.arrays[name] = value
            self._seen[id(value)] = (path, value)
            return {"$array": name}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            cls = type(value)
            self._seen[id(value)] = (path, value)
            return {
                "$dataclass": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: self.encode(getattr(value, f.name), f"{path}.{f.name}")
                           for f in dataclasses.fields(value)},
            }
        if isinstance(value, list):
            return [self.encode(v, f"{path}.{i}") for i, v in enumerate(value)]
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(v, f"{path}.{i}") for i, v in enumerate(value)]}
        if isinstance(value, Mapping):
            if all(isinstance(k, str) and not k.startswith("$") for k in value):
                return {k: self.encode(v, f"{path}.{k}") for k, v in value.items()}
            return {"$dict": [[self.encode(k, f"{path}.key"), self.encode(v, f"{path}.{k}")]
                              for k, v in value.items()]}
        raise _Unsaveable(f"{path} is a {type(value).__module__}.{type(value).__qualname__}")


class _Decoder:
    def __init__(self, path: Path, archive: zipfile.ZipFile, index: Mapping) -> None:
        self.path, self.archive, self.index = path, archive, index
        self._seen: dict[str, Any] = {}

    def error(self, what: str) -> ModelFileError:
        return ModelFileError(
            f"{self.path}: {what}; the file is corrupted or was not written by softmix. Save the "
            "model again with model.save(path)."
        )

    def array(self, name: str) -> np.ndarray:
        if not isinstance(name, str) or name not in self.index:
            raise self.error(f"array {name!r} is not listed in the manifest")
        try:
            raw = self.archive.read(name)
        except KeyError:
            raise self.error(f"array {name!r} listed in the manifest is missing") from None
        except (zipfile.BadZipFile, OSError, EOFError) as exc:  # CRC mismatch, truncation
            raise self.error(f"array {name!r} cannot be read ({exc})") from None
        info = self.index[name]
        if hashlib.sha256(raw).hexdigest() != info.get("sha256"):
            raise self.error(f"array {name!r} does not match its checksum")
        try:
            arr = np.load(io.BytesIO(raw), allow_pickle=False)
        except ValueError as exc:
            raise self.error(f"array {name!r} is not a valid .npy file ({exc})") from None
        if list(arr.shape) != info.get("shape") or arr.dtype.str != info.get("dtype"):
            raise self.error(f"array {name!r} has shape {arr.shape} and dtype {arr.dtype.str}, "
                             f"the manifest says {info.get('shape')} and {info.get('dtype')}")
        return arr

    def decode(self, value: Any, path: str) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.decode(v, f"{path}.{i}") for i, v in enumerate(value)]
        if not isinstance(value, dict):
            raise self.error(f"unexpected value at {path}")
        if "$array" in value:
            out = self.array(value["$array"])
        elif "$float" in value:
            text = value["$float"]
            if text not in ("nan", "inf", "-inf"):
                raise self.error(f"bad float {text!r} at {path}")
            return float(text)
        elif "$dtype" in value:
            return str(value["$dtype"])
        elif "$same_as" in value:
            if value["$same_as"] not in self._seen:
                raise self.error(f"{path} refers to {value['$same_as']!r}, which is not stored")
            return self._seen[value["$same_as"]]
        elif "$tuple" in value:
            return tuple(self.decode(v, f"{path}.{i}") for i, v in enumerate(value["$tuple"]))
        elif "$dict" in value:
            return {self.decode(k, f"{path}.key"): self.decode(v, f"{path}.{k}")
                    for k, v in value["$dict"]}
        elif "$dataclass" in value:
            out = self._dataclass(value, path)
        else:
            return {k: self.decode(v, f"{path}.{k}") for k, v in value.items()}
        self._seen[path] = out
        return out

    def _dataclass(self, value: Mapping, path: str) -> Any:
        cls = _import(value["$dataclass"], self)
        if not dataclasses.is_dataclass(cls):
            raise self.error(f"{value['$dataclass']} at {path} is not a dataclass")
        stored = value.get("fields")
        if not isinstance(stored, dict):
            raise self.error(f"dataclass at {path} has no fields")
        fields = {k: self.decode(v, f"{path}.{k}") for k, v in stored.items()}
        init = {f.name for f in dataclasses.fields(cls) if f.init}
        try:
            obj = cls(**{k: v for k, v in fields.items() if k in init})
        except (TypeError, ValueError) as exc:
            raise self.error(f"the {cls.__name__} at {path} is invalid ({exc})") from None
        # the constructor may normalise (e.g. weights / sum): restore the stored values exactly
        for name, stored_value in fields.items():
            current = getattr(obj, name, None)
            if isinstance(stored_value, np.ndarray) and isinstance(current, np.ndarray):
                exact = stored_value.astype(current.dtype, copy=False)
                if not current.flags.writeable:
                    exact.setflags(write=False)
                object.__setattr__(obj, name, exact)
        return obj


def _import(qualified: Any, decoder: _Decoder) -> type:
    """The class ``module:QualName`` (only softmix modules or registered classes)."""
    if not isinstance(qualified, str) or ":" not in qualified:
        raise decoder.error(f"bad class name {qualified!r}")
    if qualified in _REGISTRY:
        return _REGISTRY[qualified]
    module, _, qualname = qualified.partition(":")
    if module != "softmix" and not module.startswith("softmix."):
        raise ModelFileError(
            f"{decoder.path}: refers to the class {qualified}, outside softmix; register it "
            "first with softmix.io.persistence.register_estimator(cls)."
        )
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise ModelFileError(
            f"{decoder.path}: refers to {qualified}, which this softmix does not have; it was "
            "probably written by another softmix version: install that one."
        ) from None
    return obj


# ------------------------------------------------------------------------------------ save
def _fitted_state(model: Any) -> dict[str, Any]:
    persist = getattr(model, "_persist_state", None)
    if callable(persist):
        return dict(persist())
    return {k: v for k, v in vars(model).items()
            if k.endswith("_") and not k.startswith("_")}


def _diagnostics(model: Any) -> dict[str, Any]:
    result = getattr(model, "fit_result_", None)
    out: dict[str, Any] = {}
    for name, attr in (("log_likelihood", "log_likelihood_"), ("converged", "converged_"),
                       ("n_iter", "n_iter_"), ("stop_reason", "stop_reason_")):
        value = getattr(model, attr, getattr(result, name, None))
        if value is not None:
            out[name] = value
    if result is not None:
        for name in ("stop_reason", "criterion", "criterion_value", "init_method", "seconds",
                     "n_decreases"):
            out.setdefault(name, getattr(result, name, None))
        for name in ("history", "all_objectives"):
            value = getattr(result, name, None)
            if value is not None:
                out[name] = np.asarray(value, dtype=float).tolist()
    # plain JSON (no $array references), for readers without softmix
    return {k: _Encoder().encode(v, k) for k, v in out.items()}


def save(model: Any, path: str | os.PathLike, *, metadata: Mapping | None = None) -> Path:
    """Write ``model`` (fitted or not) to ``path``; see the module docstring for the format.

    Parameters
    ----------
    model : estimator
        A softmix estimator (``SoftmaxMixture``, ``MixtureOfExperts``, ...).
    path : str or path-like
        File to write (replaced atomically if it exists). Any name; ``.softmix`` is customary.
    metadata : mapping, optional
        Extra JSON-serialisable information (strings, numbers, lists, dicts) stored in the
        manifest's ``"metadata"``; read it back with :func:`read_manifest`.

    Returns
    -------
    pathlib.Path
        The file written.

    Warns
    -----
    SoftmixWarning
        For a hyperparameter that cannot be stored (a ``callback``, a ``random_state`` given as
        a Generator): it is recorded in ``"not_saved"`` and restored as None.

    Raises
    ------
    TypeError
        If a fitted attribute is not an array, scalar, string, list/dict or dataclass of those
        (the estimator then needs ``_persist_state``), or ``metadata`` is not plain JSON.
    """
    if not hasattr(model, "get_params"):
        raise TypeError(f"save needs a softmix estimator, got {type(model).__name__}.")
    cls = type(model)
    encoder = _Encoder()
    hyper, not_saved = {}, []
    for name, value in model.get_params(deep=False).items():
        try:
            hyper[name] = encoder.encode(value, f"hyperparameters.{name}")
        except _Unsaveable:
            hyper[name] = None
            not_saved.append(name)
    if not_saved:
        warnings.warn(
            f"{cls.__name__}.save: hyperparameter(s) {not_saved} cannot be stored (e.g. a "
            "callback or a Generator random_state); the loaded model has them set to None.",
            SoftmixWarning, stacklevel=3,
        )
    try:
        state = {name: encoder.encode(value, name)
                 for name, value in _fitted_state(model).items()}
    except _Unsaveable as exc:
        raise TypeError(
            f"cannot save the fitted attribute {exc} of {cls.__name__}: only arrays, numbers, "
            "strings, lists/dicts and dataclasses of those are stored. Give the class "
            "_persist_state/_restore_state (see softmix.io.persistence)."
        ) from None
    try:
        meta_json = json.loads(json.dumps(dict(metadata or {}), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be plain JSON (finite numbers, strings, lists, dicts), "
                        f"got {exc}.") from None
    from softmix import __version__

    payloads = {}
    index = {}
    for name, arr in encoder.arrays.items():
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        payloads[name] = buf.getvalue()
        index[name] = {"shape": list(arr.shape), "dtype": arr.dtype.str,
                       "sha256": hashlib.sha256(payloads[name]).hexdigest()}
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "softmix_version": __version__,
        "numpy_version": np.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "estimator": {"class": cls.__qualname__, "module": cls.__module__},
        "fitted": bool(state),
        "hyperparameters": hyper,
        "not_saved": not_saved,
        "diagnostics": _diagnostics(model),
        "state": state,
        "metadata": meta_json,
        "arrays": index,
    }
    text = json.dumps(manifest, indent=1, allow_nan=False)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr(MANIFEST, text)
            for name, raw in payloads.items():
                archive.writestr(name, raw)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ------------------------------------------------------------------------------------ load
def _open(path: str | os.PathLike) -> tuple[Path, zipfile.ZipFile, dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such model file{' (it is a folder)' if path.is_dir() else ''}; "
            "check the path (a model is written by model.save(path) or `softmix fit`)."
        )
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ModelFileError(
            f"{path}: not a softmix model file, or truncated or corrupted (not a readable zip "
            f"archive: {exc}). Save the model again with model.save(path)."
        ) from None
    try:
        raw = archive.read(MANIFEST)
    except KeyError:
        archive.close()
        raise ModelFileError(f"{path}: not a softmix model file (the zip archive has no "
                             f"{MANIFEST}). Save the model with model.save(path).") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        archive.close()
        raise ModelFileError(f"{path}: {MANIFEST} cannot be read ({exc}); the file is corrupted."
                             " Save the model again with model.save(path).") from None
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        archive.close()
        raise ModelFileError(f"{path}: {MANIFEST} is not valid JSON ({exc}); the file is "
                             "corrupted. Save the model again with model.save(path).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        archive.close()
        raise ModelFileError(f"{path}: not a softmix model file (format is "
                             f"{manifest.get('format') if isinstance(manifest, dict) else None!r}"
                             f", expected {FORMAT_NAME!r}).")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        archive.close()
        raise ModelFileError(f"{path}: invalid format_version {version!r}; the file is "
                             "corrupted. Save the model again with model.save(path).")
    if version > FORMAT_VERSION:
        from softmix import __version__

        archive.close()
        raise ModelFileError(
            f"{path}: format version {version} was written by a newer softmix "
            f"({manifest.get('softmix_version', '?')}); this softmix ({__version__}) reads "
            f"versions up to {FORMAT_VERSION}. Upgrade softmix: pip install -U softmix."
        )
    return path, archive, manifest


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a model file as a dict (checks the format, reads no arrays).

    Useful for ``metadata``, ``diagnostics`` and the estimator's class without loading it.
    """
    _, archive, manifest = _open(path)
    archive.close()
    return manifest


def load(path: str | os.PathLike, expected: type | tuple[type, ...] | None = None) -> Any:
    """Read back an estimator written by :func:`save` (or ``model.save``).

    Parameters
    ----------
    path : str or path-like
    expected : class or tuple of classes, optional
        Raise if the file holds another estimator (e.g. ``expected=SoftmaxMixture``).

    Returns
    -------
    estimator
        Same class, hyperparameters and fitted attributes as the saved one; its predictions
        are bit for bit those of the saved model.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ModelFileError (a ValueError)
        Truncated or corrupted file, not a softmix model, an unknown (newer) format version,
        missing or altered arrays, or another estimator than ``expected``; the message names
        the file.
    """
    path, archive, manifest = _open(path)
    with archive:
        index = manifest.get("arrays")
        decoder = _Decoder(path, archive, index if isinstance(index, dict) else {})
        est = manifest.get("estimator")
        if not isinstance(est, dict):
            raise decoder.error("the manifest has no estimator")
        cls = _import(f"{est.get('module')}:{est.get('class')}", decoder)
        if expected is not None:
            wanted = expected if isinstance(expected, tuple) else (expected,)
            if not (isinstance(cls, type) and issubclass(cls, wanted)):
                names = " or ".join(c.__name__ for c in wanted)
                raise ModelFileError(
                    f"{path} holds a {est.get('class')}, not a {names}; load it with "
                    f"softmix.load(path) (or pass expected={est.get('class')})."
                )
        hyper = manifest.get("hyperparameters")
        state = manifest.get("state")
        if not isinstance(hyper, dict) or not isinstance(state, dict):
            raise decoder.error("the manifest lacks hyperparameters or state")
        try:
            params = {k: decoder.decode(v, f"hyperparameters.{k}") for k, v in hyper.items()}
            model = cls(**params)
        except ModelFileError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise decoder.error(f"its hyperparameters do not fit {cls.__name__} ({exc})") from None
        try:
            values = {k: decoder.decode(v, k) for k, v in state.items()}
        except ModelFileError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise decoder.error(f"its fitted state cannot be decoded ({exc!r})") from None
        restore = getattr(model, "_restore_state", None)
        if callable(restore):
            restore(values)
        else:
            for name, value in values.items():
                setattr(model, name, value)
    return model
