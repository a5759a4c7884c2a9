"""BLAS thread control, in one place.

softmix never changes the BLAS thread count behind the user's back: the estimators respect
whatever the process uses (``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``
or threadpoolctl). The demo and the experiments run their numerics under
:func:`blas_threads` ``(1)``: their products are skinny (K x L x p, or many small dense
Hessians), and multi-threaded OpenBLAS made them 10-100x slower on a loaded 2-core machine
(a 65-column multinomial Hessian: 3.5 s against 0.028 s with one thread, measured back to
back), while one thread was never measurably slower on an idle one.
"""

from __future__ import annotations

import contextlib

__all__ = ["blas_threads"]


def blas_threads(limit: int | None = 1):
    """Context manager limiting BLAS to ``limit`` threads (``None``: leave it alone).

    Uses threadpoolctl (installed with the ``experiments`` extra); a no-op without it.

    Examples
    --------
    >>> from softmix.core.threads import blas_threads
    >>> with blas_threads(1):
    ...     pass  # fit here
    """
    if limit is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=limit, user_api="blas")
