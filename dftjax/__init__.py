"""dftjax: differentiable electronic structure in JAX.

The solvers and everything built on them (SCF, adjoints, properties, trainers, CLI) live here;
molecules, basis sets, integrals and grids are in :mod:`basis`, functionals in :mod:`functionals`.
Importing dftjax turns on float64 in JAX (the SCF and its derivatives need it) and JAX's persistent
compilation cache (:mod:`dftjax.compilation`; ``DFTJAX_CACHE_DIR`` moves it, empty turns it off).
"""

import os

# Several virtual CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=N, how sharding is
# tested on one host) run their collectives inside Eigen's thread pool; with fewer cores than
# devices the all-reduces of a sharded SCF can starve and abort. Single-threaded Eigen avoids it.
# Only effective before JAX's CPU backend starts.
_xla_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" in _xla_flags and "xla_cpu_multi_thread_eigen" not in _xla_flags:
    os.environ["XLA_FLAGS"] = _xla_flags + " --xla_cpu_multi_thread_eigen=false"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from dftjax.compilation import enable_compilation_cache  # noqa: E402

# Compiled programs depend on size classes, so the next process reuses them from disk
# (DFTJAX_CACHE_DIR moves the cache, an empty value turns it off).
enable_compilation_cache()

__version__ = "0.1.0"
