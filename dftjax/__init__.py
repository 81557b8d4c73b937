"""dftjax: differentiable electronic structure in JAX.

The solvers and everything built on them (SCF, adjoints, properties, trainers, CLI) live here;
molecules, basis sets, integrals and grids are in :mod:`basis`, functionals in :mod:`functionals`.
Importing dftjax turns on float64 in JAX: the SCF and its derivatives need it.
"""

import jax

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
