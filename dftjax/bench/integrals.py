"""`dftjax bench integrals`: each integral class against libcint (through PySCF), same process.

For every (molecule, basis, integral class) it reports the dftjax cold time (first call: tracing,
compilation and run), the warm time (median of repeated jitted calls), PySCF's time for the same
matrix (``mol.intor`` / ``df.incore.aux_e2``, median), the ratio warm / PySCF, and the largest
absolute deviation between the two matrices, so speed is never reported for a wrong answer.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Callable

import jax.numpy as jnp
import numpy as np

from basis.gto import make_auxbasis, make_basis
from basis.integrals import one_electron, two_electron
from basis.molecule import make_molecule
from dftjax.bench._timing import time_cold_warm, time_reference
from dftjax.bench.molecules import MOLECULES

# Full 4-centre tensors grow as nao^4 (8 bytes each): skip them above this many AOs.
MAX_NAO_4C = 120


@dataclasses.dataclass(frozen=True)
class IntegralTiming:
    molecule: str
    basis: str
    integral: str
    nao: int
    cold_s: float
    warm_s: float
    pyscf_s: float
    max_abs_error: float

    @property
    def ratio(self) -> float:
        return self.warm_s / self.pyscf_s


def _cases(molecule, basis_name: str):
    """(name, dftjax thunk, PySCF thunk) for every integral class on one molecule and basis."""
    from pyscf.df import incore

    basis = make_basis(molecule, basis_name)
    auxbasis = make_auxbasis(molecule, basis_name)
    mol = molecule.to_pyscf(basis=basis_name)
    auxmol = molecule.to_pyscf(basis=auxbasis.name)
    coords = jnp.asarray(molecule.coords)
    charges = jnp.asarray(molecule.atomic_numbers, dtype=jnp.float64)
    cases: list[tuple[str, Callable, Callable]] = [
        ("overlap", lambda: one_electron.overlap(basis, coords), lambda: mol.intor("int1e_ovlp")),
        ("kinetic", lambda: one_electron.kinetic(basis, coords), lambda: mol.intor("int1e_kin")),
        ("nuclear", lambda: one_electron.nuclear_attraction(basis, coords, charges), lambda: mol.intor("int1e_nuc")),
        ("coulomb_2c", lambda: two_electron.coulomb_2c(auxbasis, coords), lambda: auxmol.intor("int2c2e")),
        (
            "coulomb_3c",
            lambda: two_electron.coulomb_3c(basis, auxbasis, coords),
            lambda: incore.aux_e2(mol, auxmol, "int3c2e", aosym="s1"),
        ),
    ]
    if basis.nao <= MAX_NAO_4C:
        cases.append(("eri_4c", lambda: two_electron.electron_repulsion(basis, coords), lambda: mol.intor("int2e")))
    return basis.nao, cases


def run(molecules=("water", "benzene", "hexane"), bases=("def2-svp", "def2-tzvp"), repeats=3, progress=True):
    """Time every integral class; returns a list of :class:`IntegralTiming`."""
    results = []
    for mol_name in molecules:
        molecule = make_molecule(MOLECULES[mol_name])
        for basis_name in bases:
            nao, cases = _cases(molecule, basis_name)
            for name, ours, theirs in cases:
                if progress:
                    print(f"[bench integrals] {mol_name} {basis_name} {name} (nao={nao})", file=sys.stderr, flush=True)
                cold, warm = time_cold_warm(ours, repeats)
                ref_time = time_reference(theirs, repeats)
                error = float(np.max(np.abs(np.asarray(ours()).reshape(-1) - np.asarray(theirs()).reshape(-1))))
                results.append(IntegralTiming(mol_name, basis_name, name, nao, cold, warm, ref_time, error))
    return results


def format_table(results) -> str:
    header = f"{'molecule':<9} {'basis':<10} {'integral':<11} {'nao':>4} {'cold s':>8} {'warm s':>9} {'pyscf s':>9} {'warm/pyscf':>10} {'max |err|':>9}"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.molecule:<9} {r.basis:<10} {r.integral:<11} {r.nao:>4} {r.cold_s:>8.2f} {r.warm_s:>9.4f} "
            f"{r.pyscf_s:>9.4f} {r.ratio:>10.2f} {r.max_abs_error:>9.1e}"
        )
    return "\n".join(lines)


def as_records(results) -> list[dict]:
    return [dict(dataclasses.asdict(r), ratio=r.ratio) for r in results]
