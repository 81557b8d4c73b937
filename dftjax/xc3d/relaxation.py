"""How much orbital relaxation changes the CCSD density: the dipole test.

The reference densities (``dftjax/xc3d/data``) are *unrelaxed* CCSD one-particle densities. For a
one-electron operator the *relaxed* density gives the energy derivative exactly, so for the dipole
operator ``mu_relaxed = -dE_CCSD/dF`` (Hellmann-Feynman for the fully variational Lagrangian; e.g.
Salter, Trucks, Bartlett, J. Chem. Phys. 90, 1752 (1989)). :func:`dipole_relaxation` compares the
unrelaxed dipole of the stored density with a central finite-field derivative of the CCSD energy
(HF re-solved in the field, so orbital relaxation is included). ``python -m
dftjax.xc3d.relaxation H2O HF`` prints the numbers quoted in the data README.

Field convention as :mod:`dftjax.adjoint`: ``h -> h + F . r`` and ``E_nuc -> E_nuc - F . sum_A Z_A R_A``,
so ``mu = -dE/dF`` (atomic units).
"""
from __future__ import annotations

import json
import sys

import numpy as np


def dipole_relaxation(name: str, *, field: float = 1e-3, data_dir: str | None = None) -> dict:
    """Unrelaxed (stored density) and relaxed (finite-field CCSD) dipoles (au) of a closed-shell system."""
    from pyscf import cc, gto, scf

    from dftjax.xc3d.data import ALL_SYSTEMS, DATA_DIR, load_reference

    system = ALL_SYSTEMS[name]
    if system.spin != 0:
        raise ValueError(f"{name}: closed shells only (RHF/RCCSD in the field)")
    refs, basis = load_reference(data_dir or DATA_DIR, [name])
    mol = gto.M(atom=system.atom, basis=basis, spin=0, charge=system.charge, verbose=0)
    r = mol.intor("int1e_r")
    nuclear = mol.atom_charges() @ mol.atom_coords()
    dm = refs[name].dm[0] + refs[name].dm[1]
    unrelaxed = nuclear - np.einsum("xij,ji->x", r, dm)
    h0 = mol.intor("int1e_kin") + mol.intor("int1e_nuc")

    def energy(f):
        mf = scf.RHF(mol)
        mf.conv_tol = 1e-12
        mf.get_hcore = lambda *args: h0 + np.einsum("x,xij->ij", f, r)
        mf.kernel()
        solver = cc.CCSD(mf)
        solver.conv_tol = 1e-11
        solver.kernel()
        return solver.e_tot - f @ nuclear

    relaxed = np.zeros(3)
    for axis in range(3):
        if abs(unrelaxed[axis]) < 1e-8:  # zero by symmetry (geometries built in a symmetric frame)
            continue
        step = np.eye(3)[axis] * field
        relaxed[axis] = -(energy(step) - energy(-step)) / (2 * field)
    return {"name": name, "basis": basis, "unrelaxed_au": float(np.linalg.norm(unrelaxed)),
            "relaxed_au": float(np.linalg.norm(relaxed))}


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["H2O", "HF"]:
        print(json.dumps(dipole_relaxation(arg)), flush=True)
