"""Forces -dE/dR against PySCF's analytic gradients with grid response (dftjax.properties).

PySCF's ``grid_response = True`` gradient is the exact derivative of its energy on a grid that
moves with the atoms, which is what dftjax differentiates (dftjax's grid equals PySCF's at the
same level), so the two agree to the SCF convergence (measured 3e-10 Ha/bohr for water).
"""

import jax.numpy as jnp
import numpy as np
import pytest

from basis.molecule import make_molecule
from dftjax.compilation import CompilationCounter
from dftjax.properties import force_function, forces
from dftjax.scf import run_scf
from dftjax.size_registry import release, reserve
from dftjax.system import SCFOptions

WATER = make_molecule("O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692")
TIGHT = dict(conv_tol=1e-12, conv_tol_grad=1e-8)


def pyscf_forces(molecule, options: SCFOptions, dm=None):
    """PySCF's analytic forces (grid response on); ``dm`` (2, nao, nao), e.g. dftjax's converged
    density, is PySCF's initial guess if given (PySCF then converges to its own fixed point)."""
    from pyscf import dft, scf

    mol = molecule.to_pyscf(basis=options.basis)
    if options.xc == "hf":
        mf = scf.UHF(mol) if options.unrestricted else scf.RHF(mol)
    else:
        mf = dft.UKS(mol, xc=options.xc) if options.unrestricted else dft.RKS(mol, xc=options.xc)
        mf.grids.level = options.grid_level
    if options.density_fit:
        mf = mf.density_fit()
    mf.conv_tol = 1e-11
    mf.conv_tol_grad = 1e-7
    mf.max_cycle = 200
    if dm is not None:
        dm = np.asarray(dm)
        dm = dm if options.unrestricted else dm[0] + dm[1]
    mf.kernel(dm0=dm)
    if not mf.converged:  # e.g. UKS OH/STO-3G stalls in DIIS at 1e-11; finish with Newton steps
        mf = mf.newton()
        mf.kernel(mf.make_rdm1())
    assert mf.converged
    gradient = mf.nuc_grad_method()
    if options.xc != "hf":
        gradient.grid_response = True
    return -gradient.kernel()


def _rotation(angles):
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _rotated(molecule, angles):
    rotation = _rotation(angles)
    centre = molecule.atomic_numbers @ molecule.coords / molecule.atomic_numbers.sum()
    return molecule.with_coords((molecule.coords - centre) @ rotation.T + centre), rotation


# Default tier: four molecules in one reserved size class, so the energy and force programs compile
# once (for the first) and the other three compile nothing.
SHARED_CLASS = {
    "water": "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692",
    "ammonia": "N 0 0 0.1163; H 0 0.9377 -0.2713; H 0.8121 -0.4689 -0.2713; H -0.8121 -0.4689 -0.2713",
    "hydrogen_fluoride": "F 0 0 0; H 0 0 0.917",
    "formaldehyde": "C 0 0 0; O 0 0 1.205; H 0 0.943 -0.587; H 0 -0.943 -0.587",
}


def test_dft_forces_of_four_molecules_match_pyscf_in_one_size_class():
    options = SCFOptions(xc="pbe", basis="6-31g", grid_level=1, **TIGHT)
    molecules = {name: make_molecule(atom) for name, atom in SHARED_CLASS.items()}
    reserve(molecules.values(), options)
    try:
        for k, (name, molecule) in enumerate(molecules.items()):
            with CompilationCounter() as counter:
                result = run_scf(molecule, options)
                f = forces(molecule, options, result=result)
            if k:  # electron counts, charges and positions are data: the first molecule's programs serve
                assert counter.compilations == 0, (name, counter.as_dict())
            error = float(np.abs(f - pyscf_forces(molecule, options)).max())
            print(f"\n[forces] {name} PBE/6-31G level 1: |F - F_PySCF| {error:.1e} Ha/bohr")
            assert error < 5e-8, name  # measured 2026-12-07: 6.0e-9 (water), 1.8e-9, 3.9e-10, 1.5e-9
            np.testing.assert_allclose(f.sum(axis=0), 0.0, atol=1e-8)  # translational invariance
    finally:
        release(options)


@pytest.mark.slow  # 70 s; default: the four molecules above, HF forces below, dftjax opt and the plugin tests
def test_water_forces_match_pyscf_and_sum_to_zero():
    options = SCFOptions(xc="pbe", basis="sto-3g", grid_level=1, **TIGHT)
    energy_forces, dm0 = force_function(WATER, options)
    # the input geometry and a rotated one: one compilation, PySCF at both. (A DFT grid is not
    # rotationally invariant, its Lebedev axes are fixed: at level 1 the forces of the rotated
    # molecule differ from the rotated forces by 2.6e-4 Ha/bohr, in PySCF as in dftjax.)
    rotated, _ = _rotated(WATER, (0.3, -0.7, 1.1))
    for molecule in (WATER, rotated):
        _, f, _ = energy_forces(jnp.asarray(molecule.coords), dm0)
        f = np.asarray(f)
        np.testing.assert_allclose(f, pyscf_forces(molecule, options), atol=1e-5)  # issue bar; measured 3e-10
        np.testing.assert_allclose(f.sum(axis=0), 0.0, atol=1e-8)  # translational invariance


def test_hartree_fock_forces_rotate_with_the_molecule():
    # without a grid the energy is exactly rotation invariant, so F(R x) = R F(x)
    molecule = make_molecule("H 0 0 0; H 0 0 0.9; H 0.75 0.1 0.45", charge=1)
    options = SCFOptions(xc="hf", basis="6-31g", **TIGHT)
    energy_forces, dm0 = force_function(molecule, options)
    _, f, _ = energy_forces(jnp.asarray(molecule.coords), dm0)
    rotated, rotation = _rotated(molecule, (0.3, -0.7, 1.1))
    _, f_rotated, _ = energy_forces(jnp.asarray(rotated.coords), dm0)
    np.testing.assert_allclose(np.asarray(f_rotated), np.asarray(f) @ rotation.T, atol=1e-8)
    np.testing.assert_allclose(np.asarray(f).sum(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(f), pyscf_forces(molecule, options), atol=1e-7)


MOLECULES = {
    "water": "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692",
    "ammonia": "N 0 0 0.1; H 0 0.94 -0.27; H 0.814 -0.47 -0.27; H -0.814 -0.47 -0.27",
    "formaldehyde": "C 0 0 -0.53; O 0 0 0.68; H 0 0.94 -1.12; H 0 -0.94 -1.12",
    "hydrogen_fluoride": "F 0 0 0; H 0 0 0.95",
    "methane": "C 0 0 0; H 0.63 0.63 0.63; H -0.63 -0.63 0.63; H -0.63 0.63 -0.63; H 0.63 -0.63 -0.6",
    "hydrogen_cyanide": "H 0 0 -1.6; C 0 0 -0.5; N 0 0 0.66",
    "carbon_monoxide": "C 0 0 0; O 0 0 1.15",
    "ethylene": "C 0 0 0.67; C 0 0 -0.67; H 0 0.92 1.24; H 0 -0.92 1.24; H 0 0.92 -1.24; H 0 -0.92 -1.24",
    "lithium_hydride": "Li 0 0 0; H 0 0 1.62",
    "hydroxyl": "O 0 0 0; H 0 0 0.99",
    "methylene": "C 0 0 0.1; H 0 0.99 -0.3; H 0 -0.99 -0.3",
}
SPIN = {"hydroxyl": 1, "methylene": 2}

# Point 2 of issue 5: thirteen calculations on eleven molecules, all def2-SVP; LDA, GGA, meta-GGA,
# global hybrids and HF; RKS and UKS; exact and density-fitted J/K. Measured max |F - F_PySCF|
# (Ha/bohr) at the input / rotated geometry, and max |F(R x) - R F(x)| (the grid's own rotational
# variance, PySCF's alike), measured 2026-11-28 on 2 idle cores (the slow tier, 12 min):
#   water PBE l2              4.7e-10 / 4.6e-10, covariance 7.7e-6
#   water B3LYP DF l2         1.6e-10 / 1.4e-10, covariance 8.6e-6
#   ammonia LDA l1            5.7e-9 / 4.9e-9, covariance 1.4e-4
#   formaldehyde PBE0 l1      7.4e-9 / 6.4e-9, covariance 1.4e-4
#   hydrogen_fluoride r2SCAN  6.0e-10 / 2.7e-10, covariance 4.2e-5
#   methane PBE DF l1         3.8e-9 / 5.0e-9, covariance 2.7e-5
#   hydrogen_cyanide BLYP l1  2.9e-9 / 1.6e-9, covariance 4.9e-5
#   carbon_monoxide HF        7.4e-10 / 1.8e-9, covariance 1.3e-9
#   ethylene B3LYP l1         1.9e-9 / 1.5e-9, covariance 5.2e-5
#   lithium_hydride PBE l1    1.1e-9 / 9.5e-10, covariance 3.0e-5
#   hydroxyl UKS PBE l2       3.2e-7 / 1.2e-6, covariance 1.5e-5 (degenerate pi hole)
#   methylene UKS r2SCAN l2   5.4e-10 / 5.3e-10, covariance 9.3e-6
SWEEP = [
    ("water", dict(xc="pbe", grid_level=2)),
    ("water", dict(xc="b3lyp", grid_level=2, density_fit=True)),
    ("ammonia", dict(xc="lda,vwn", grid_level=1)),
    ("formaldehyde", dict(xc="pbe0", grid_level=1)),
    ("hydrogen_fluoride", dict(xc="r2scan", grid_level=2)),
    ("methane", dict(xc="pbe", grid_level=1, density_fit=True)),
    ("hydrogen_cyanide", dict(xc="blyp", grid_level=1)),
    ("carbon_monoxide", dict(xc="hf")),
    ("ethylene", dict(xc="b3lyp", grid_level=1)),
    ("lithium_hydride", dict(xc="pbe", grid_level=1)),
    ("hydroxyl", dict(xc="pbe", grid_level=2, unrestricted=True)),
    ("hydroxyl", dict(xc="b3lyp", grid_level=1, unrestricted=True, density_fit=True)),
    ("methylene", dict(xc="r2scan", grid_level=2, unrestricted=True)),
]
ROTATION = (0.3, -0.7, 1.1)


@pytest.mark.slow
@pytest.mark.parametrize("name,settings", SWEEP, ids=[f"{n}-{'-'.join(str(v) for v in s.values())}" for n, s in SWEEP])
def test_forces_match_pyscf_grid_response(name, settings):
    molecule = make_molecule(MOLECULES[name], spin=SPIN.get(name, 0))
    options = SCFOptions(basis="def2-svp", **settings, **TIGHT)
    energy_forces, dm0 = force_function(molecule, options)
    rotated, rotation = _rotated(molecule, ROTATION)
    errors, results = [], []
    for geometry in (molecule, rotated):  # one compilation serves both geometries
        _, f, dm = energy_forces(jnp.asarray(geometry.coords), dm0)
        f = np.asarray(f)
        # PySCF starts from dftjax's density: from its own guess it does not converge UKS OH
        # B3LYP/DF (DIIS and Newton both stall on the degenerate pi hole)
        errors.append(float(np.abs(f - pyscf_forces(geometry, options, dm)).max()))
        results.append(f)
        np.testing.assert_allclose(f.sum(axis=0), 0.0, atol=1e-8)  # translational invariance
    covariance = float(np.abs(results[1] - results[0] @ rotation.T).max())
    print(f"\n[forces sweep] {name} {settings}: |F - F_PySCF| {errors[0]:.1e} (rotated {errors[1]:.1e}), "
          f"|F(Rx) - R F(x)| {covariance:.1e} Ha/bohr")
    assert max(errors) < 1e-5  # issue bar, at the input and the rotated geometry
    # Without a grid the energy is exactly rotation invariant; a Lebedev grid has fixed axes, so the
    # rotated forces differ from the rotated forces by the grid's own error (PySCF's likewise,
    # which the comparison above checks to 1e-5): bounded here by the grid-level's quadrature error.
    assert covariance < (1e-8 if settings["xc"] == "hf" else 2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("adjoint", ["implicit", "unrolled"])
def test_water_forces_match_central_differences(adjoint):
    options = SCFOptions(xc="pbe", basis="sto-3g", grid_level=1, **TIGHT)
    energy_forces, dm0 = force_function(WATER, options, adjoint=adjoint, n_steps=40)
    coords = jnp.asarray(WATER.coords)
    _, f, _ = energy_forces(coords, dm0)
    step = 1e-4
    for atom, axis in [(0, 2), (1, 1)]:
        shift = np.zeros_like(WATER.coords)
        shift[atom, axis] = step
        e_plus = energy_forces(coords + shift, dm0)[0]
        e_minus = energy_forces(coords - shift, dm0)[0]
        assert abs(-(e_plus - e_minus) / (2 * step) - f[atom, axis]) < 1e-7
