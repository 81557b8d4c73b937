"""Parity with PySCF over molecules H-Ar, closed and open shell, five functionals, two basis sets.

Default tier: ten first-row molecules (closed shell, cations, an anion, doublets and a triplet) with
LDA, GGA, meta-GGA, global and range-separated hybrids in def2-SVP, on dftjax's own grid (which is
PySCF's level-3 grid, ``basis/grids.py``), all in one reserved size class so the integral program
compiles once and each functional's SCF loop once per spin treatment: total energies within 2e-12 Ha
(measured <= 2.3e-13 Ha on 2026-12-07) and dipoles within 1e-6 au (measured <= 1.1e-7).

Slow tier: every one of 16 molecules (H-Ar, closed and open shell, a cation, an anion) with two
of the five functionals in def2-SVP, and five of them with two or three in def2-TZVP, so that
every functional meets closed and open shells in both bases (``PAIRS``); each case converges the same
calculation in dftjax and PySCF (tight thresholds) and compares the total energy on PySCF's own grid
(<= 1e-6 Ha), on dftjax's own grid of the same level (<= 5e-5 Ha) and the dipole moment (<= 1e-5
au). The full 16 x 5 + 5 x 5 matrix (103 cases) passed on 2026-12-07 (H2S/CAM-B3LYP on a rerun
after its worker crashed inside XLA) in 48 worker-minutes on 2 cores, mostly compilation; these 43
cases keep its coverage at a cost the CI budget of the slow tier allows.
"""
import numpy as np
import pytest
from pyscf import dft

from basis.molecule import make_molecule
from dftjax.scf import SCFOptions, run_scf
from dftjax.size_registry import release, reserve

# name: (atom (angstrom), charge, spin); approximate experimental geometries
MOLECULES = {
    "H2O": ("O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692", 0, 0),
    "NH3": ("N 0 0 0.1163; H 0 0.9377 -0.2713; H 0.8121 -0.4689 -0.2713; H -0.8121 -0.4689 -0.2713", 0, 0),
    "CH4": ("C 0 0 0; H 0.6276 0.6276 0.6276; H -0.6276 -0.6276 0.6276; H -0.6276 0.6276 -0.6276; "
            "H 0.6276 -0.6276 -0.6276", 0, 0),
    "HF": ("F 0 0 0; H 0 0 0.917", 0, 0),
    "LiH": ("Li 0 0 0; H 0 0 1.595", 0, 0),
    "N2": ("N 0 0 0; N 0 0 1.098", 0, 0),
    "CO": ("C 0 0 0; O 0 0 1.128", 0, 0),
    "H2S": ("S 0 0 0.1030; H 0 0.9616 -0.8239; H 0 -0.9616 -0.8239", 0, 0),
    "HCl": ("Cl 0 0 0; H 0 0 1.275", 0, 0),
    "SiH4": ("Si 0 0 0; H 0.8544 0.8544 0.8544; H -0.8544 -0.8544 0.8544; H -0.8544 0.8544 -0.8544; "
             "H 0.8544 -0.8544 -0.8544", 0, 0),
    "Ar": ("Ar 0 0 0", 0, 0),
    "O2": ("O 0 0 0; O 0 0 1.208", 0, 2),            # triplet
    "CH2": ("C 0 0 0.1031; H 0 0.9996 -0.3093; H 0 -0.9996 -0.3093", 0, 2),  # triplet methylene
    "OH": ("O 0 0 0; H 0 0 0.970", 0, 1),            # doublet radical
    "H2O+": ("O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692", 1, 1),  # radical cation
    "OH-": ("O 0 0 0; H 0 0 0.964", -1, 0),           # anion
}
FUNCTIONALS = ("lda,vwn", "pbe", "b3lyp", "r2scan", "camb3lyp")


# Two functionals per molecule (three for OH in def2-TZVP): each functional meets closed and open
# shells in each basis, at least two closed shells in def2-SVP. (OH/r2SCAN is left out: its half-filled degenerate pi shell leaves a near-flat
# orbital rotation that the grid makes slightly uneven for r2SCAN, and PySCF itself stops at points
# up to 2.3e-6 Ha apart from run to run, so there is no unique reference to compare with.)
PAIRS = {
    "def2-svp": {
        "H2O": ("lda,vwn", "r2scan"), "NH3": ("pbe", "camb3lyp"), "CH4": ("b3lyp", "lda,vwn"),
        "HF": ("r2scan", "pbe"), "LiH": ("camb3lyp", "b3lyp"), "N2": ("lda,vwn", "r2scan"),
        "CO": ("pbe", "camb3lyp"), "H2S": ("b3lyp", "lda,vwn"), "HCl": ("r2scan", "pbe"),
        "SiH4": ("camb3lyp", "b3lyp"), "Ar": ("pbe", "r2scan"), "O2": ("lda,vwn", "camb3lyp"),
        "CH2": ("r2scan", "b3lyp"), "OH": ("pbe", "camb3lyp"), "H2O+": ("b3lyp", "r2scan"),
        "OH-": ("lda,vwn", "pbe"),
    },
    "def2-tzvp": {
        "H2O": ("pbe", "camb3lyp"), "HF": ("lda,vwn", "r2scan"), "OH": ("b3lyp", "lda,vwn", "pbe"),
        "H2O+": ("camb3lyp", "r2scan"), "OH-": ("b3lyp", "pbe"),
    },
}


def _cases():
    # All slow (HF/PBE was the default case, 58 s): the default suite's PySCF parity is test_scf.py's
    # water (HF, PBE, B3LYP, CAM-B3LYP), its density-fitting case and the one-class set below.
    for basis, pairs in PAIRS.items():
        for name, functionals in pairs.items():
            for xc in functionals:
                yield pytest.param(name, xc, basis, marks=pytest.mark.slow, id=f"{name}-{xc}-{basis}")


def _pyscf(molecule, xc, basis, grid_level):
    mol = molecule.to_pyscf(basis=basis)
    mf = dft.UKS(mol) if molecule.spin else dft.RKS(mol)
    mf.xc = xc
    mf.grids.level = grid_level
    mf.conv_tol = 1e-11
    mf.verbose = 0
    energy = mf.kernel()
    if not mf.converged:
        # OH/PBE/def2-SVP: PySCF's DIIS oscillates at the 1e-9 Ha level around the degenerate pi hole;
        # its second-order solver from the last density converges (the reference, not dftjax, needs help).
        newton = mf.newton()
        energy = newton.kernel(mf.make_rdm1())
        mf = newton
    assert mf.converged
    return energy, mf.dip_moment(unit="au", verbose=0)


@pytest.mark.parametrize("name, xc, basis", list(_cases()))
def test_energy_and_dipole_match_pyscf(name, xc, basis):
    atom, charge, spin = MOLECULES[name]
    molecule = make_molecule(atom, charge=charge, spin=spin)
    energy_ref, dipole_ref = _pyscf(molecule, xc, basis, grid_level=3)
    # orbital gradient 5e-6 (PySCF: sqrt(1e-11) = 3.2e-6 on its ov-block norm, ours is the full
    # commutator, sqrt(2) larger); much tighter stalls on the slowly rotating degenerate pi hole of
    # OH with r2SCAN (|g| ~ 4.5e-6 while E drops by 7e-11 per cycle)
    options = SCFOptions(xc=xc, basis=basis, unrestricted=spin != 0, pyscf_grids=True,
                         conv_tol=1e-10, conv_tol_grad=5e-6)
    same_grid = run_scf(molecule, options)
    assert same_grid.converged
    assert same_grid.energy == pytest.approx(energy_ref, abs=1e-6)  # same grid, same integrals
    np.testing.assert_allclose(same_grid.dipole, dipole_ref, atol=1e-5)
    own_grid = run_scf(molecule, SCFOptions(xc=xc, basis=basis, unrestricted=spin != 0))
    assert own_grid.energy == pytest.approx(energy_ref, abs=5e-5)  # dftjax's grid of the same level


# name: (atom (angstrom), charge, spin, functional). Open shells without a degenerate SOMO (OH's
# half-filled pi pair lets the SCF land in either of two states, see _cases).
DEFAULT_SET = {
    "H2O": ("O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692", 0, 0, "pbe"),
    "NH3": (MOLECULES["NH3"][0], 0, 0, "lda,vwn"),
    "CH4": (MOLECULES["CH4"][0], 0, 0, "b3lyp"),
    "HF": ("F 0 0 0; H 0 0 0.917", 0, 0, "r2scan"),
    "OH-": ("O 0 0 0; H 0 0 0.964", -1, 0, "camb3lyp"),
    "H3O+": ("O 0 0 0.1; H 0 0.94 -0.27; H 0.81 -0.47 -0.27; H -0.81 -0.47 -0.27", 1, 0, "pbe"),
    "NH2": ("N 0 0 0.14; H 0 0.80 -0.50; H 0 -0.80 -0.50", 0, 1, "pbe"),
    "CH2": (MOLECULES["CH2"][0], 0, 2, "b3lyp"),
    "H2O+": (MOLECULES["H2O+"][0], 1, 1, "camb3lyp"),
    "CH3": ("C 0 0 0; H 0 1.079 0; H 0.9344 -0.5395 0; H -0.9344 -0.5395 0", 0, 1, "lda,vwn"),
}


def _default_options(name, **tight):
    _, _, spin, xc = DEFAULT_SET[name]
    return SCFOptions(xc=xc, basis="def2-svp", unrestricted=spin != 0, **tight)


@pytest.fixture(scope="module")
def one_size_class():
    """One size class for the whole default set (every option set of it), released afterwards."""
    molecules = [make_molecule(atom, charge=charge, spin=spin) for atom, charge, spin, _ in DEFAULT_SET.values()]
    option_sets = {_default_options(name) for name in DEFAULT_SET}
    for options in option_sets:
        reserve(molecules, options)
    yield
    for options in option_sets:
        release(options)


@pytest.mark.parametrize("name", list(DEFAULT_SET))
def test_default_set_matches_pyscf(name, one_size_class):
    atom, charge, spin, xc = DEFAULT_SET[name]
    molecule = make_molecule(atom, charge=charge, spin=spin)
    mf = (dft.UKS if spin else dft.RKS)(molecule.to_pyscf(basis="def2-svp"))
    mf.xc = xc
    mf.conv_tol = 1e-12
    mf.verbose = 0
    energy_ref = mf.kernel()
    assert mf.converged
    result = run_scf(molecule, _default_options(name, conv_tol=1e-11, conv_tol_grad=1e-7))
    assert result.converged
    assert result.size_class["nao"] > result.n_basis  # all run padded, in the class that covers the set
    assert abs(result.energy - energy_ref) < 2e-12  # same integrals, same grid; measured <= 2.3e-13 Ha
    np.testing.assert_allclose(result.dipole, mf.dip_moment(unit="au", verbose=0), atol=1e-6)  # measured 1.1e-7


def test_slow_pairs_cover_every_functional_in_both_spins_and_bases():
    """The reduced slow matrix keeps the full one's coverage (checked here, not just claimed)."""
    for basis, pairs in PAIRS.items():
        assert all(len(set(f)) == len(f) >= 2 and set(f) <= set(FUNCTIONALS) for f in pairs.values()), basis
        assert ("OH", "r2scan") not in {(n, xc) for n, f in pairs.items() for xc in f}
        for xc in FUNCTIONALS:
            spins = [MOLECULES[name][2] for name, f in pairs.items() if xc in f]
            closed = 2 if basis == "def2-svp" else 1
            assert sum(s == 0 for s in spins) >= closed and sum(s != 0 for s in spins) >= 1, (basis, xc, spins)
    assert set(PAIRS["def2-svp"]) == set(MOLECULES)
