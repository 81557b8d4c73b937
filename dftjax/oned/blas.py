"""Run small dense linear algebra on one OpenBLAS thread.

The 1D Kohn-Sham iterations diagonalise ~150 x 150 Hamiltonians (``jnp.linalg.eigh``, which XLA's
CPU backend hands to LAPACK from SciPy's bundled OpenBLAS) some thirty times per KSR loss. At that
size OpenBLAS's worker threads cost more in hand-offs and spin-waiting than they save; on a loaded
2-core machine (load average 20) one eigh took 155 ms of CPU time with the default threads and 2 ms
with one thread (the same as ``OPENBLAS_NUM_THREADS=1``, which only works if set before NumPy is
imported). :func:`single_threaded_blas` sets the thread count of every OpenBLAS already loaded into
the process through OpenBLAS's own ``openblas_set_num_threads`` (exported as
``scipy_openblas_set_num_threads[64_]`` by the NumPy/SciPy wheels) and restores it on exit.
Linux only (it reads ``/proc/self/maps``); elsewhere it does nothing. VMC uses it too
(:func:`qmc.train.run_vmc`: SPRING's 256 x 256 Cholesky solve, median 380 ms with two OpenBLAS
threads on a loaded 2-core machine against 4 ms with one).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from typing import Iterator

_PREFIXES = ("scipy_openblas", "openblas")
_SUFFIXES = ("64_", "_64_", "")


def _openblas_libraries() -> list[tuple[ctypes.CDLL, str]]:
    """(library, symbol prefix) of every OpenBLAS mapped into this process."""
    try:
        with open("/proc/self/maps") as handle:
            paths = {line.split()[-1] for line in handle if "openblas" in line.rsplit("/", 1)[-1].lower()}
    except OSError:
        return []
    libraries = []
    for path in sorted(p for p in paths if os.path.isfile(p)):
        try:
            library = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                if hasattr(library, f"{prefix}_get_num_threads{suffix}") and hasattr(
                        library, f"{prefix}_set_num_threads{suffix}"):
                    libraries.append((library, (prefix, suffix)))
                    break
            else:
                continue
            break
    return libraries


@contextlib.contextmanager
def single_threaded_blas(threads: int = 1) -> Iterator[None]:
    """Within the block, every loaded OpenBLAS uses ``threads`` threads (restored afterwards)."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1; got {threads}")
    # XLA's CPU LAPACK kernels come from SciPy's cython_lapack: load it (and its OpenBLAS) first
    import numpy  # noqa: F401
    import scipy.linalg.cython_lapack  # noqa: F401

    saved = []
    for library, (prefix, suffix) in _openblas_libraries():
        get = getattr(library, f"{prefix}_get_num_threads{suffix}")
        set_ = getattr(library, f"{prefix}_set_num_threads{suffix}")
        get.restype = ctypes.c_int
        saved.append((set_, int(get())))
        set_(ctypes.c_int(threads))
    try:
        yield
    finally:
        for set_, count in saved:
            set_(ctypes.c_int(count))
