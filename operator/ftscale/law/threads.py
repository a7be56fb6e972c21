"""Run the engine's many tiny linear-algebra calls on one BLAS thread.

L-BFGS-B calls BLAS on vectors of 4–10 numbers thousands of times per fit. A multi-threaded
OpenBLAS wakes its thread pool for each call; on a busy 2-core machine that made one polish
take 150 ms instead of 2 ms (measured, docs/law.md). threadpoolctl limits the pool for the
duration of a fit only, leaving the caller's setting alone afterwards.
"""

from __future__ import annotations

import contextlib

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - the lock file carries threadpoolctl
    threadpool_limits = None


def single_threaded_blas():
    """Context manager: BLAS/OpenMP pools limited to one thread inside, restored after."""
    if threadpool_limits is None:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)
