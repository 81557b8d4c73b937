"""dftjax: differentiable electronic structure in JAX.

The solvers and everything built on them (SCF, adjoints, properties, trainers, CLI) live here;
molecules, basis sets, integrals and grids are in :mod:`basis`, functionals in :mod:`functionals`.
Importing dftjax turns on float64 in JAX (the project's policy, :mod:`basis`) and JAX's persistent
compilation cache (:mod:`dftjax.compilation`; ``DFTJAX_CACHE_DIR`` moves it, empty turns it off).
"""

import os
import warnings

import basis  # noqa: F401  (first: the project's float64 policy, see basis/__init__.py)

# Several virtual CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=N, how sharding is
# tested on one host) run their collectives inside Eigen's thread pool; with fewer cores than
# devices the all-reduces of a sharded SCF can starve and abort. Single-threaded Eigen avoids it;
# the flag must be set by whoever starts the process (an import does not rewrite the environment).
_xla_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" in _xla_flags and "xla_cpu_multi_thread_eigen" not in _xla_flags:
    warnings.warn("XLA_FLAGS asks for several host devices: add --xla_cpu_multi_thread_eigen=false, or sharded "
                  "SCF collectives may starve on a machine with fewer cores than devices", RuntimeWarning,
                  stacklevel=2)

from dftjax.compilation import enable_compilation_cache  # noqa: E402

# Compiled programs depend on size classes, so the next process reuses them from disk
# (DFTJAX_CACHE_DIR moves the cache, an empty value turns it off).
enable_compilation_cache()

__version__ = "0.1.0"
