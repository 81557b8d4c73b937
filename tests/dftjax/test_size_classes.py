"""Size classes in the SCF engine: padding changes nothing, and one compilation serves a class."""

import numpy as np
import pytest

from basis.molecule import make_molecule
from dftjax.compilation import CompilationCounter
from dftjax.scf import SCFOptions, run_scf

WATER = make_molecule("O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692")
# singlet CH2: C and O have the same def2-SVP contraction pattern, so it shares water's size class
METHYLENE = make_molecule("C 0 0 0.17; H 0 0.86 -0.51; H 0 -0.86 -0.51")
AMIDOGEN = make_molecule("N 0 0 0.14; H 0 0.80 -0.50; H 0 -0.80 -0.50", spin=1)  # no degenerate SOMO
AMMONIA = make_molecule("N 0 0 0.1; H 0 0.94 -0.27; H 0.81 -0.47 -0.27; H -0.81 -0.47 -0.27")


# Small bases and grids keep the compilations of both paths short (tests/basis/test_size_class.py
# checks the padded integrals with d shells).
@pytest.mark.parametrize("molecule, options", [
    (WATER, SCFOptions(xc="pbe", basis="sto-3g", grid_level=1)),
    (AMIDOGEN, SCFOptions(xc="lda,vwn", basis="sto-3g", unrestricted=True, grid_level=0)),
    # 64 s cold (both paths compile a DF hybrid); by default the padded DF path is checked against
    # PySCF's density fitting (tests/dftjax/test_scf.py, HF exchange from the fitted integrals)
    pytest.param(AMMONIA, SCFOptions(xc="b3lyp", basis="sto-3g", density_fit=True, grid_level=0),
                 marks=pytest.mark.slow),
], ids=["rks-gga", "uks-lda", "rks-hybrid-df"])
def test_padded_scf_equals_unpadded(molecule, options):
    import dataclasses

    padded = run_scf(molecule, options)
    plain = run_scf(molecule, dataclasses.replace(options, size_classes=False))
    assert padded.converged and plain.converged
    # same integrals and grid points, padding contributes exact zeros: only rounding differs
    # (measured 6e-14 Ha, density 2e-14)
    assert abs(padded.energy - plain.energy) < 1e-10
    np.testing.assert_allclose(padded.dm, plain.dm, atol=1e-8)
    np.testing.assert_allclose(padded.mo_energy, plain.mo_energy, atol=1e-8)
    np.testing.assert_allclose(padded.dipole, plain.dipole, atol=1e-8)
    assert padded.mo_coeff.shape == plain.mo_coeff.shape
    assert padded.size_class["nao"] >= plain.n_basis == padded.n_basis


def test_one_compilation_serves_a_size_class():
    options = SCFOptions(xc="pbe", basis="sto-3g", grid_level=1)
    first = run_scf(WATER, options)
    # CH2 has 8 electrons, water 10: electron counts are data, so the same programs run
    with CompilationCounter() as counter:
        second = run_scf(METHYLENE, options)
    assert first.size_class == second.size_class
    assert counter.compilations == 0, counter.as_dict()
    assert second.converged and -39.0 < second.energy < -38.0


# The force program's sharing (0 compilations for the next molecules of a class) and its PySCF parity:
# tests/dftjax/test_forces.py::test_dft_forces_of_four_molecules_match_pyscf_in_one_size_class.
