"""Molecules, Gaussian basis sets, integrals, integration grids and orbitals on grids.

Everything here is pure JAX (integrals, grids, AO values) or plain Python/NumPy (molecule
parsing and validation, basis-set bookkeeping read through PySCF's basis library). Atomic units
throughout: bohr and hartree.
"""
