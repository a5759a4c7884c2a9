"""Drive the peer implementations (R flexmix, mixtools) from Python, and small timing helpers.

Everything the benchmark scripts share lives here, once:

* finding ``Rscript`` and the R packages, installing them from Debian packages when running as
  root (``apt-get``), otherwise raising :class:`PeerUnavailable` whose message is the exact
  command to run;
* :func:`run_r`: run one R script from ``benchmarks/r/`` with its inputs written to a fresh
  temporary folder (matrices as CSV with 17 significant digits, scalars as ``params.json``) and
  its output read back from ``out.json``. The R scripts time themselves with ``proc.time()``
  around the fit only, so R start-up, package loading and reading the data are excluded;
* :func:`time_to_target`: seconds until an objective trace first reaches a target value;
* :func:`median_time`: the median of repeated timings of a callable;
* :func:`machine_info`: what RESULTS.md says about the machine.

Nothing here imports softmix: the harness can report a missing peer before anything else runs.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEBIAN_PACKAGES",
    "INSTALL_COMMAND",
    "R_DIR",
    "PeerUnavailable",
    "ensure_r",
    "find_rscript",
    "machine_info",
    "median_time",
    "missing_r_packages",
    "run_r",
    "time_to_target",
    "write_inputs",
]

#: Folder of the R scripts (each reads ``commandArgs()[1]`` = the exchange folder).
R_DIR = Path(__file__).resolve().parent / "r"

#: R package -> Debian package that provides it (bookworm names).
DEBIAN_PACKAGES = {
    "flexmix": "r-cran-flexmix",
    "survival": "r-cran-survival",
    "mixtools": "r-cran-mixtools",
    "jsonlite": "r-cran-jsonlite",
}

#: The command that installs every peer on Debian/Ubuntu (run as root).
INSTALL_COMMAND = (
    "apt-get update && apt-get install -y --no-install-recommends r-base-core "
    + " ".join(DEBIAN_PACKAGES.values())
)


class PeerUnavailable(RuntimeError):
    """R or an R package is missing and could not be installed; the message says how to."""


def find_rscript() -> str | None:
    """Path of ``Rscript``: ``$SOFTMIX_RSCRIPT`` if set, else the first one on ``PATH``."""
    env = os.environ.get("SOFTMIX_RSCRIPT")
    if env:
        return env if Path(env).is_file() else None
    return shutil.which("Rscript")


def missing_r_packages(packages: Sequence[str], rscript: str | None = None) -> list[str]:
    """The subset of ``packages`` that ``library()`` cannot load (all of them if no R)."""
    rscript = rscript or find_rscript()
    if rscript is None:
        return list(packages)
    code = (
        "p <- commandArgs(TRUE); ok <- vapply(p, requireNamespace, logical(1), quietly = TRUE);"
        " cat(p[!ok], sep = '\\n')"
    )
    out = subprocess.run(
        [rscript, "--vanilla", "-e", code, *packages],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if out.returncode != 0:
        return list(packages)
    return [line for line in out.stdout.split() if line]


def _install_command(packages: Sequence[str]) -> list[str]:
    debs = ["r-base-core"] + [DEBIAN_PACKAGES[p] for p in packages if p in DEBIAN_PACKAGES]
    return ["apt-get", "install", "-y", "--no-install-recommends", *debs]


def ensure_r(
    packages: Sequence[str] = ("flexmix", "survival", "mixtools", "jsonlite"),
    *,
    install: bool | None = None,
) -> str:
    """Return the ``Rscript`` path once R and ``packages`` load; install them if allowed.

    Parameters
    ----------
    packages : sequence of str
        R packages the caller needs.
    install : bool or None
        Try ``apt-get install`` when something is missing. ``None`` (default) means: only when
        running as root with ``apt-get`` on PATH and ``$SOFTMIX_NO_INSTALL`` unset.

    Raises
    ------
    PeerUnavailable
        Still missing after the attempt (or no attempt allowed); the message gives the exact
        install command.
    """
    missing = missing_r_packages(packages)
    if not missing:
        return find_rscript()  # type: ignore[return-value]
    if install is None:
        install = (
            hasattr(os, "geteuid")
            and os.geteuid() == 0
            and shutil.which("apt-get") is not None
            and not os.environ.get("SOFTMIX_NO_INSTALL")
        )
    attempt = ""
    if install:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        upd = subprocess.run(
            ["apt-get", "update"], capture_output=True, text=True, env=env, check=False
        )
        res = subprocess.run(
            _install_command(missing), capture_output=True, text=True, env=env, check=False
        )
        attempt = (
            f" An automatic install was attempted (apt-get update exit {upd.returncode}, "
            f"apt-get install exit {res.returncode}: {res.stderr.strip()[-300:]!r})."
        )
        missing = missing_r_packages(packages)
        if not missing:
            return find_rscript()  # type: ignore[return-value]
    what = "Rscript" if find_rscript() is None else "the R package(s) " + ", ".join(missing)
    raise PeerUnavailable(
        f"{what} not available.{attempt} Install as root with:\n  {INSTALL_COMMAND}\n"
        "(or point $SOFTMIX_RSCRIPT at an Rscript that has them)."
    )


def write_inputs(folder: Path, inputs: Mapping[str, Any]) -> None:
    """Write ``inputs`` for an R script into ``folder``.

    Arrays (ndim 1 or 2) go to ``<name>.csv`` without header, 17 significant digits (exact
    round trip of float64); integer arrays are written as integers. Everything else (scalars,
    strings, lists) goes to ``params.json``.
    """
    folder = Path(folder)
    scalars: dict[str, Any] = {}
    for name, value in inputs.items():
        if isinstance(value, np.ndarray):
            if value.ndim not in (1, 2):
                raise ValueError(f"input {name!r} must be 1-D or 2-D, got shape {value.shape}")
            arr = value.reshape(len(value), -1)
            fmt = "%d" if np.issubdtype(arr.dtype, np.integer) else "%.17g"
            np.savetxt(folder / f"{name}.csv", arr, fmt=fmt, delimiter=",")
        else:
            scalars[name] = value
    (folder / "params.json").write_text(json.dumps(scalars))


def run_r(
    script: str | Path,
    inputs: Mapping[str, Any],
    *,
    timeout: float = 3600.0,
    rscript: str | None = None,
    keep: str | Path | None = None,
) -> dict[str, Any]:
    """Run an R script of ``benchmarks/r/`` on ``inputs`` and return its ``out.json``.

    Parameters
    ----------
    script : str or Path
        File name inside :data:`R_DIR` (or a path).
    inputs : mapping
        See :func:`write_inputs`.
    timeout : float
        Seconds before the R process is killed (raises ``subprocess.TimeoutExpired``).
    rscript : str, optional
        ``Rscript`` to use (default :func:`find_rscript`).
    keep : path, optional
        Exchange folder to use and keep (for debugging); default a temporary folder.

    Returns
    -------
    dict
        The JSON object the script wrote; vectors of length 1 come back as scalars.

    Raises
    ------
    RuntimeError
        The script failed; the message carries the tail of R's stderr.
    """
    rscript = rscript or find_rscript()
    if rscript is None:
        raise PeerUnavailable(f"Rscript not found. Install as root with:\n  {INSTALL_COMMAND}")
    path = Path(script)
    if not path.is_absolute():
        path = R_DIR / path
    with tempfile.TemporaryDirectory(prefix="softmix-r-") as tmp:
        folder = Path(keep) if keep is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        write_inputs(folder, inputs)
        proc = subprocess.run(
            [rscript, "--vanilla", str(path), str(folder)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        out_file = folder / "out.json"
        if proc.returncode != 0 or not out_file.is_file():
            raise RuntimeError(
                f"R script {path.name} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
            )
        out = json.loads(out_file.read_text())
    return {k: (v[0] if isinstance(v, list) and len(v) == 1 else v) for k, v in out.items()}


def time_to_target(
    seconds: Sequence[float], values: Sequence[float], target: float, rtol: float = 1e-6
) -> float:
    """First time at which ``values`` reaches ``target`` up to a relative ``rtol``.

    ``seconds[t]`` is when ``values[t]`` became known (a maximisation objective). Returns
    ``inf`` if the trace never gets within ``rtol * max(1, |target|)`` of ``target``.
    """
    s = np.asarray(seconds, dtype=float)
    v = np.asarray(values, dtype=float)
    if s.shape != v.shape:
        raise ValueError(f"seconds and values must have the same shape, got {s.shape}, {v.shape}")
    ok = np.flatnonzero(v >= target - rtol * max(1.0, abs(target)))
    return float(s[ok[0]]) if ok.size else float("inf")


def median_time(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def machine_info() -> dict[str, str]:
    """CPU, cores, Python/NumPy/SciPy versions, BLAS and its thread count, R version."""
    info = {
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import scipy

        info["scipy"] = scipy.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        from threadpoolctl import threadpool_info

        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if blas:
            info["blas"] = ", ".join(
                f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads)"
                for p in blas
            )
    except ImportError:
        info["blas"] = "unknown (threadpoolctl not installed)"
    rscript = find_rscript()
    if rscript:
        out = subprocess.run(
            [rscript, "--vanilla", "-e", "cat(R.version.string)"],
            capture_output=True,
            text=True,
            check=False,
        )
        info["R"] = out.stdout.strip() or "unknown"
    return info
