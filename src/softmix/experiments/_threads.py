"""Run an experiment's numerics on one BLAS thread.

OpenBLAS starts one thread per core for every matrix product. On a loaded machine (several
processes on 2 cores) the many small dense products of the EM M-steps then slowed down about
100x (a 65-column multinomial Hessian: 3.5 s against 0.028 s with one thread, measured back to
back). The experiments are many small problems, so one thread is also the right choice on an
idle machine. Uses threadpoolctl (installed with scikit-learn, the ``experiments`` extra); a
no-op without it.
"""

from __future__ import annotations

import contextlib


def single_blas_thread():
    """Context manager limiting BLAS to one thread (or doing nothing without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
