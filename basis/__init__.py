"""Molecules, Gaussian basis sets, integrals, integration grids and orbitals on grids.

Everything here is pure JAX (integrals, grids, AO values) or plain Python/NumPy (molecule
parsing and validation, basis-set bookkeeping read through PySCF's basis library). Atomic units
throughout: bohr and hartree.

The float64 policy of the whole project lives here, in the lowest layer: importing any of its
packages (``basis``, ``functionals``, ``dftjax``, ``qmc``; each imports this one) turns on JAX's
64-bit mode, because SCF energies, their derivatives and the functional checks are stated in
float64. Arrays keep the dtype they are created with, so float32 work stays float32 where it is
asked for explicitly (``dftjax vmc --dtype float32``). No import changes environment variables.
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)
