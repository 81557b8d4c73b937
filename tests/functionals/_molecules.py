"""Shared molecular test densities: PySCF molecules, grids, AO values and guess density matrices.

Built with PySCF only (the project's own AO/grid modules are tested elsewhere), cached per session.
"""
from __future__ import annotations

import functools

import numpy as np
from pyscf import dft, gto


@functools.lru_cache(maxsize=None)
def molecule_density(name: str, deriv: int = 1):
    """(mol, weights (n,), ao (4|10, n, nao), dm (nao,nao) or (2,nao,nao)) for a test system.

    "water": closed-shell H2O/6-31G*, "oh": doublet OH radical/6-31G* (spin densities both
    non-zero almost everywhere). Density matrices are PySCF's minao guess (realistic, no SCF).
    Level-1 grids keep the point count (and test time) small; accuracy tests need no quadrature
    accuracy, only realistic densities.
    """
    if name == "water":
        mol = gto.M(atom="O 0 0 0; H 0 0.757 0.587; H 0 -0.757 0.587", basis="6-31g*")
        mf = dft.RKS(mol)
    elif name == "oh":
        mol = gto.M(atom="O 0 0 0; H 0 0 0.97", basis="6-31g*", spin=1)
        mf = dft.UKS(mol)
    else:
        raise ValueError(name)
    grids = dft.gen_grid.Grids(mol)
    grids.level = 1
    grids.build()
    ao = mol.eval_gto("GTOval_sph_deriv1" if deriv == 1 else "GTOval_sph_deriv2", grids.coords)
    dm = np.asarray(mf.get_init_guess(key="minao"))
    return mol, grids, ao, dm
