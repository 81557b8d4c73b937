"""Gaussian integrals in pure JAX (McMurchie-Davidson), differentiable in nuclear positions.

All functions take a :class:`basis.gto.Basis` (a pytree: exponents and coefficients are leaves)
and nuclear ``coords`` (n_atoms, 3) in bohr as traced arrays, so they ``jit`` once per basis
structure, ``vmap`` over geometries and differentiate with ``jax.grad``/``jax.jacfwd``. Matrices
come out in PySCF's AO order and normalisation (see :mod:`basis.gto`).
"""
