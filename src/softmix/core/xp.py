"""Array namespaces (NumPy, PyTorch, CuPy, any array-API library) for the design-sized work.

softmix keeps two kinds of arrays apart:

- **design-sized** arrays (the (p, L) features, the (K, p) scores and responsibilities of an
  E-step): they stay in the namespace and on the device of the user's ``features`` (a CUDA
  tensor keeps the work on its GPU), handled through the array API standard via
  ``array-api-compat`` (``pip install softmix[array-api]``);
- **small** arrays (weights (K,), atoms (K, L), L x L curvature, Newton solves, the EM driver's
  bookkeeping): always NumPy float64 on the host. They cross the boundary once or twice per
  design product (:func:`to_host`, :func:`from_host`): K x L numbers, cheap next to the K p L
  product they feed.

NumPy inputs never go through array-api-compat (:func:`is_numpy` is checked first): their code
path is plain NumPy, so the extra is only needed for other array types.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "dot",
    "dtype_name",
    "from_host",
    "host",
    "is_numpy",
    "logsumexp",
    "namespace",
    "to_host",
]

_INSTALL = "pip install 'softmix[array-api]'"

#: Bytes moved by :func:`to_host` and :func:`from_host` since import (or the last reset): how
#: ``benchmarks/gpu.py`` measures the host <-> device traffic per EM iteration.
TRANSFERRED = {"to_host": 0, "from_host": 0}


def is_numpy(x: Any) -> bool:
    """True for a NumPy array or anything :func:`numpy.asarray` takes as is (lists, scalars,
    pandas objects): the plain-NumPy path. False for an object of another array library that
    implements the array API (``__array_namespace__``) or is a torch/CuPy/JAX array."""
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return True
    if hasattr(x, "__array_namespace__"):
        return False
    module = type(x).__module__.split(".")[0]
    return module not in ("torch", "cupy", "jax", "jaxlib", "array_api_strict", "dask")


def namespace(x: Any):
    """The array-API namespace of a non-NumPy array (``array_api_compat.array_namespace``).

    Raises
    ------
    ImportError
        When ``array-api-compat`` is not installed (naming the install command).
    TypeError
        When ``x`` is not an array of a library the array API knows.
    """
    try:
        import array_api_compat
    except ImportError as exc:  # pragma: no cover - the extra is installed in the dev set-up
        raise ImportError(
            f"features is a {type(x).__module__}.{type(x).__name__}: fitting on arrays other "
            f"than NumPy needs array-api-compat ({_INSTALL})."
        ) from exc
    try:
        return array_api_compat.array_namespace(x)
    except TypeError as exc:
        raise TypeError(
            f"features of type {type(x).__module__}.{type(x).__name__} is neither a NumPy "
            "array nor an array of a library implementing the array API (PyTorch, CuPy, "
            f"array-api-strict, ...): {exc}. Pass numpy.asarray(features)."
        ) from exc


def dtype_name(x: Any) -> str:
    """``"float32"``, ``"float64"`` (or another name) of an array of any namespace."""
    if is_numpy(x):
        return np.asarray(x).dtype.name
    xp = namespace(x)
    for name in ("float32", "float64", "float16", "bfloat16"):
        if hasattr(xp, name) and x.dtype == getattr(xp, name):
            return name
    return str(x.dtype).rsplit(".", 1)[-1]


def to_host(x: Any, dtype: Any = np.float64) -> np.ndarray:
    """A NumPy copy (on the host) of an array of any namespace and device, as ``dtype``
    (None keeps the array's own); a NumPy array is returned as is when already of that dtype.

    This is the one way small results (K x L products, (K,) sums) come back from a device.
    """
    if is_numpy(x):
        return np.asarray(x, dtype=dtype)
    module = type(x).__module__.split(".")[0]
    if module == "torch":
        out = x.detach().cpu().numpy()
    elif module == "cupy":
        out = x.get()
    else:
        import array_api_compat

        try:
            out = np.asarray(array_api_compat.to_device(x, "cpu"))
        except (ValueError, TypeError, AttributeError, NotImplementedError):
            out = np.from_dlpack(x)
    TRANSFERRED["to_host"] += int(out.nbytes)
    return out if dtype is None else out.astype(dtype, copy=False)


def from_host(a: Any, like: Any, dtype: Any = None):
    """``a`` (NumPy, small) as an array of ``like``'s namespace, on ``like``'s device, in
    ``like``'s dtype (or the namespace's ``dtype``, e.g. ``xp.float64``)."""
    xp = namespace(like)
    import array_api_compat

    target = like.dtype if dtype is None else dtype
    a = np.asarray(a)
    if not a.flags.writeable:  # torch warns on read-only buffers (frozen parameters)
        a = a.copy()
    TRANSFERRED["from_host"] += int(a.nbytes)
    return xp.asarray(a, dtype=target, device=array_api_compat.device(like))


def logsumexp(a: Any, axis: int, keepdims: bool = False):
    """``log sum exp(a)`` along ``axis`` of an array-API array, max-shifted (an all ``-inf``
    slice gives ``-inf``, never NaN); in ``a``'s namespace and device."""
    xp = namespace(a)
    top = xp.max(a, axis=axis, keepdims=True)
    top = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
    out = top + xp.log(xp.sum(xp.exp(a - top), axis=axis, keepdims=True))
    return out if keepdims else xp.squeeze(out, axis=axis)


def dot(a: Any, b: Any):
    """``a @ b`` when either operand lives in another namespace than NumPy: the NumPy operand is
    moved to the other's device; the product runs in float32 when either operand is float32
    (the design's precision, as :func:`softmix.softmax_mixture.em._dot` does on the host) and
    the result is widened to float64, on the device."""
    like = b if is_numpy(a) else a
    xp = namespace(like)
    if is_numpy(a):
        a = from_host(a, like, xp.float32 if dtype_name(b) == "float32" else xp.float64)
    if is_numpy(b):
        b = from_host(b, like, xp.float32 if dtype_name(a) == "float32" else xp.float64)
    if "float32" in (dtype_name(a), dtype_name(b)):
        a, b = xp.astype(a, xp.float32), xp.astype(b, xp.float32)
    return xp.astype(xp.matmul(a, b), xp.float64)


def host(x: Any) -> Any:
    """``x`` itself when it is NumPy, else :func:`to_host` (float64): for small results."""
    return x if is_numpy(x) else to_host(x)
