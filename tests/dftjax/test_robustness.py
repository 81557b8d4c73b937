"""SCF robustness: broken-symmetry singlets, triplets, radical cations, a 20-atom molecule.

Each converged energy is checked against PySCF started from our converged density (the same
solution, so the comparison is of energies, not of which minimum each code finds).
"""
import warnings

import numpy as np
import pytest
from pyscf import dft

from basis.molecule import make_molecule
from dftjax.bench.molecules import HEXANE
from dftjax.scf import SCFOptions, run_scf


def _pyscf_from(molecule, options, dm):
    mf = dft.UKS(molecule.to_pyscf(basis=options.basis)) if options.unrestricted else dft.RKS(
        molecule.to_pyscf(basis=options.basis))
    mf.xc = options.xc
    mf.grids.level = options.grid_level
    mf.conv_tol = 1e-11
    if options.density_fit:
        mf = mf.density_fit()
    energy = mf.kernel(dm0=dm if options.unrestricted else dm[0] + dm[1])
    return energy, mf


@pytest.mark.slow  # default-suite budget (2026-11-28); the physics is covered by cheaper default tests
def test_stretched_h2_broken_symmetry():
    molecule = make_molecule("H 0 0 0; H 0 0 3.0")  # R = 3 angstrom
    restricted = run_scf(molecule, SCFOptions(xc="pbe"))
    options = SCFOptions(xc="pbe", unrestricted=True, break_symmetry=True, pyscf_grids=True)
    broken = run_scf(molecule, options)
    assert broken.converged
    # the broken-symmetry solution lies well below the restricted one and is half singlet, half triplet
    assert broken.energy < restricted.energy - 0.05
    assert broken.s2 == pytest.approx(1.0, abs=0.02)
    assert abs(broken.mulliken_charges).max() < 1e-6  # spin, not charge, separates
    energy, _ = _pyscf_from(molecule, options, broken.dm)
    assert broken.energy == pytest.approx(energy, abs=1e-8)  # same grid, same solution


def test_break_symmetry_needs_unrestricted():
    with pytest.raises(ValueError, match="unrestricted"):
        run_scf(make_molecule("H 0 0 0; H 0 0 3.0"), SCFOptions(break_symmetry=True))


def test_not_converged_says_so():
    molecule = make_molecule("O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692")
    with pytest.warns(UserWarning, match="not converged after 2 attempts"):
        result = run_scf(molecule, SCFOptions(xc="hf", basis="sto-3g", max_cycle=1))
    assert not result.converged
    assert result.attempts == ("diis", "diis+level_shift=0.3+damping=0.3")


@pytest.mark.slow
@pytest.mark.parametrize("atom, charge, spin, xc", [
    ("O 0 0 0; O 0 0 1.208", 0, 2, "pbe"),                                        # O2 triplet
    ("O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692", 1, 1, "b3lyp"),     # water radical cation
    ("N 0 0 0.1; H 0 0.94 -0.27; H 0.81 -0.47 -0.27; H -0.81 -0.47 -0.27", 1, 1, "pbe"),  # NH3+
])
def test_open_shell_matches_pyscf(atom, charge, spin, xc):
    molecule = make_molecule(atom, charge=charge, spin=spin)
    options = SCFOptions(xc=xc, unrestricted=True, pyscf_grids=True)
    result = run_scf(molecule, options)
    assert result.converged
    energy, mf = _pyscf_from(molecule, options, result.dm)
    assert result.energy == pytest.approx(energy, abs=1e-7)
    assert result.s2 == pytest.approx(mf.spin_square()[0], abs=1e-5)


@pytest.mark.slow
def test_twenty_atoms_density_fitted():
    molecule = make_molecule(HEXANE)
    assert molecule.n_atoms == 20
    options = SCFOptions(xc="pbe", density_fit=True, pyscf_grids=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # must converge without falling back silently
        result = run_scf(molecule, options)
    assert result.converged
    energy, _ = _pyscf_from(molecule, options, result.dm)
    assert result.energy == pytest.approx(energy, abs=1e-7)
    assert np.isfinite(result.dipole).all() and result.homo_lumo_gap > 0.1
