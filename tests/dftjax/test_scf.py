"""Kohn-Sham / Hartree-Fock SCF against PySCF on the same grid (dftjax.scf)."""

import numpy as np
import pytest
from pyscf import dft, scf

from basis.molecule import make_molecule
from dftjax.scf import SCFOptions, run_scf

WATER = make_molecule("O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692")
OH = make_molecule("O 0 0 0; H 0 0 0.97", spin=1)


def pyscf_energy(molecule, xc, basis="def2-svp", unrestricted=False, density_fit=False):
    mol = molecule.to_pyscf(basis=basis)
    if xc == "hf":
        mf = scf.UHF(mol) if unrestricted else scf.RHF(mol)
    else:
        mf = dft.UKS(mol, xc=xc) if unrestricted else dft.RKS(mol, xc=xc)
    if density_fit:
        mf = mf.density_fit()
    mf.conv_tol = 1e-11
    energy = mf.kernel()
    return energy, mf


# PBE by default (PySCF's grid arrays as data); the default set of test_parity.py covers the other
# functionals on dftjax's own grid, which equals PySCF's
@pytest.mark.parametrize("xc", [pytest.param(xc, marks=pytest.mark.slow) for xc in ("hf", "b3lyp", "camb3lyp")] + ["pbe"])
def test_restricted_water_matches_pyscf_on_the_same_grid(xc):
    result = run_scf(WATER, SCFOptions(xc=xc, pyscf_grids=True))
    energy, mf = pyscf_energy(WATER, xc)
    assert result.converged
    assert abs(result.energy - energy) < 1e-6  # issue bar; measured ~3e-13
    np.testing.assert_allclose(result.dipole, mf.dip_moment(unit="au", verbose=0), atol=1e-5)
    parts = result.energy_parts
    assert abs(sum(parts.values()) - result.energy) < 1e-10
    assert result.homo_lumo_gap > 0.1
    assert set(result.timings) == {"setup", "solve", "properties"} and min(result.timings.values()) >= 0
    assert sum(result.timings.values()) == pytest.approx(result.wall_time_s)


@pytest.mark.slow
def test_unrestricted_radical_matches_pyscf():
    result = run_scf(OH, SCFOptions(xc="pbe", unrestricted=True, pyscf_grids=True))
    energy, mf = pyscf_energy(OH, "pbe", unrestricted=True)
    assert result.converged
    assert abs(result.energy - energy) < 1e-6
    assert abs(result.s2 - mf.spin_square()[0]) < 1e-5


@pytest.mark.slow
def test_range_separated_density_fitted_radical_matches_pyscf():
    # long-range K from erf-attenuated 3c/2c integrals with PySCF's eigen-decomposed metric
    result = run_scf(OH, SCFOptions(xc="camb3lyp", unrestricted=True, density_fit=True, pyscf_grids=True))
    energy, _ = pyscf_energy(OH, "camb3lyp", unrestricted=True, density_fit=True)
    assert result.converged
    assert abs(result.energy - energy) < 1e-6  # measured 1e-8


def test_density_fitting_matches_pyscf_density_fit():
    result = run_scf(WATER, SCFOptions(xc="hf", density_fit=True))
    energy, _ = pyscf_energy(WATER, "hf", density_fit=True)
    assert abs(result.energy - energy) < 1e-6


def test_range_separated_density_fit_runs_and_refuses_derivatives():
    # the plain SCF takes the unpadded build (eigenvalue-cut long-range metric, as PySCF);
    # derivatives are refused up front with the reason
    options = SCFOptions(xc="camb3lyp", basis="sto-3g", density_fit=True, grid_level=0)
    result = run_scf(WATER, options)
    mol = WATER.to_pyscf(basis="sto-3g")
    mf = dft.RKS(mol, xc="camb3lyp").density_fit()
    mf.grids.level = 0
    mf.conv_tol = 1e-12
    mf.verbose = 0
    assert result.converged and abs(result.energy - mf.kernel()) < 1e-9  # measured 1.1e-13 Ha
    from dftjax.cli import main
    from dftjax.properties import forces

    with pytest.raises(ValueError, match="range-separated: with density fitting it has no derivatives"):
        forces(WATER, options)
    assert main(["scf", "--atom", "H 0 0 0; H 0 0 0.74", "--xc", "camb3lyp", "--density-fit", "--forces"]) == 2


@pytest.mark.parametrize(
    "molecule, options, message",
    [
        (OH, SCFOptions(xc="pbe"), "restricted SCF with spin 1"),
        (WATER, SCFOptions(xc="pbee"), "pbee"),
        (WATER, SCFOptions(init_guess="sad"), "unknown init_guess 'sad'"),
        (WATER, SCFOptions(damping=1.5), "damping 1.5"),
    ],
)
def test_bad_input_raises_before_work(molecule, options, message):
    with pytest.raises(ValueError, match=message):
        run_scf(molecule, options)
