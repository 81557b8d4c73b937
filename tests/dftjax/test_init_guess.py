"""SCFOptions.init_guess: every documented guess (PySCF's names) and its starting density."""

import numpy as np
import pytest
from pyscf.scf import hf, uhf

from basis.molecule import make_molecule
from dftjax.cli import main
from dftjax.scf import SCFOptions, initial_density, run_scf
from dftjax.system import INIT_GUESSES, build_system

WATER = make_molecule("O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692")
# a doublet with a nondegenerate SOMO (2B1): OH's 2Pi has several PBE/grid-level-0 UKS solutions
# (the coarse angular grid breaks the degeneracy of the pi hole's orientations) that different
# guesses reach (measured spread 3e-5 Ha)
NH2 = make_molecule("N 0 0 0.1493; H 0 0.8018 -0.5226; H 0 -0.8018 -0.5226", spin=1)
CASES = {"water": (WATER, False), "nh2": (NH2, True)}  # RKS closed shell, UKS doublet


def options(unrestricted, init_guess="minao"):
    return SCFOptions(xc="pbe", basis="sto-3g", grid_level=0, unrestricted=unrestricted, init_guess=init_guess)


def test_documented_names_are_accepted():
    assert set(INIT_GUESSES) == {"minao", "atom", "huckel", "1e", "hcore", "core"}


@pytest.fixture(scope="module")
def minao_energies():
    energies = {}
    for name, (molecule, unrestricted) in CASES.items():
        result = run_scf(molecule, options(unrestricted))
        assert result.converged
        energies[name] = result.energy
    return energies


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("guess", [g for g in INIT_GUESSES if g != "minao"])
def test_every_guess_converges_to_the_minao_energy(case, guess, minao_energies):
    molecule, unrestricted = CASES[case]
    result = run_scf(molecule, options(unrestricted, guess))
    assert result.converged
    assert abs(result.energy - minao_energies[case]) < 1e-8


@pytest.mark.parametrize("case", CASES)
def test_atom_and_huckel_densities_are_pyscfs(case):
    molecule, unrestricted = CASES[case]
    mol = molecule.to_pyscf(basis="sto-3g")
    overlap = mol.intor("int1e_ovlp")
    n_alpha, n_beta = molecule.nelec
    # the PySCF guesses need no dftjax integrals: system None, PySCF's AO order (layout None)
    atom = np.asarray(initial_density(molecule, None, options(unrestricted, "atom")))
    np.testing.assert_allclose(atom[0] + atom[1], hf.init_guess_by_atom(mol), rtol=0, atol=1e-12)
    np.testing.assert_allclose(atom[0] * n_beta, atom[1] * n_alpha, rtol=0, atol=1e-12)  # split as nelec
    huckel = np.asarray(initial_density(molecule, None, options(unrestricted, "huckel")))
    if molecule.spin == 0:
        np.testing.assert_allclose(huckel[0] + huckel[1], hf.init_guess_by_huckel(mol), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(huckel[0], huckel[1])
    else:
        # hf.init_guess_by_huckel occupies nelectron // 2 orbitals (8 of NH2's 9 electrons): the spin pair
        expected = uhf.UHF(mol).init_guess_by_huckel(mol, breaksym=False)
        np.testing.assert_allclose(huckel, expected, rtol=0, atol=1e-12)
    for dm in (atom, huckel):
        np.testing.assert_allclose(np.einsum("sij,ji->s", dm, overlap), [n_alpha, n_beta], atol=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_core_and_hcore_are_1e(case):
    molecule, unrestricted = CASES[case]
    system = build_system(molecule, options(unrestricted, "1e"))
    one_e = np.asarray(initial_density(molecule, system, options(unrestricted, "1e")))
    for alias in ("core", "hcore"):
        np.testing.assert_array_equal(np.asarray(initial_density(molecule, system, options(unrestricted, alias))),
                                      one_e)


def test_unknown_guess_raises_listing_the_allowed_names():
    with pytest.raises(ValueError, match="unknown init_guess 'sad'") as err:
        run_scf(WATER, SCFOptions(init_guess="sad"))
    for name in INIT_GUESSES:
        assert repr(name) in str(err.value)


def test_cli_init_guess(capsys, monkeypatch):
    monkeypatch.setenv("DFTJAX_CACHE_DIR", "")
    assert main(["scf", "--basis", "sto-3g", "--init-guess", "sad"]) == 2
    assert "unknown init_guess 'sad'" in capsys.readouterr().err.strip().splitlines()[-1]
