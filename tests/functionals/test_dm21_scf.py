"""DM21 self-consistent in dftjax's SCF against the original implementation on the same grids.

Oracle: ``functionals/models/dm21/reference_energies.json``, total energies of the original code
(deepmind-research f5de0ed, ``NeuralNumInt`` with its float32 TensorFlow network) run
self-consistently in today's PySCF by ``functionals/models/dm21/reference.py`` (PySCF's default
grid, level 3; conv_tol 1e-9; minao guess). dftjax runs on the same grid
(``SCFOptions(pyscf_grids=True, grid_level=3)``), so the remaining differences are the original's
float32 network (energy densities ~1e-6 relative, ``test_dm21.py``), its ``e_xc / (rho + 1e-12)``
hand-over to PySCF, and convergence.

The default tier checks the plumbing (registry, the two grid Coulomb kernels, the XC energy inside
the SCF's ``xc_energy``) on a coarse grid; the SCF comparisons are slow (one core, persistent compilation
cache warm: Ne 7-12 s, C 24-53 s, the def2-SVP molecules 22-65 s each; Ne cold about 45 s).
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from basis.molecule import make_molecule
from functionals import dm21
from functionals.registry import get_functional

REFERENCE = os.path.join(os.path.dirname(dm21.__file__), "models", "dm21", "reference_energies.json")

# Issue 21's bar: the original evaluates its network in float32, whose energy densities carry ~1e-6
# relative errors; measured differences are far below it (see models/dm21/README.md).
ENERGY_ATOL = 3e-4


def _reference() -> dict:
    with open(REFERENCE) as f:
        return json.load(f)


def test_registry_names_dm21_family_case_insensitively():
    for name in dm21.FUNCTIONAL_NAMES:
        functional = get_functional(name.upper())
        assert isinstance(functional, dm21.DM21Functional)
        assert functional.name == name
        assert functional.needs_grid_coulomb and functional.grid_coulomb_omegas == (0.0, 0.4)
        assert not functional.is_hybrid  # the network mixes exact exchange in locally
        assert get_functional(name) is functional  # cached: one compiled SCF per functional and shape


@pytest.mark.slow  # compiles its own (unpadded) programs, 24 s: keeps the default tier under 10 minutes
def test_dm21_system_and_xc_energy_on_coarse_grid():
    from dftjax.fock import xc_energy
    from dftjax.scf import SCFOptions
    from dftjax.system import build_system
    from dftjax.xc3d.exact_exchange import grid_coulomb_potentials

    molecule = make_molecule("O 0 0 0; H 0 0 0.97", spin=1)
    options = SCFOptions(xc="dm21", basis="sto-3g", unrestricted=True, pyscf_grids=True, grid_level=0)
    system = build_system(molecule, options)
    n_grid, nao = system.weights.shape[0], system.overlap.shape[0]
    assert system.grid_coulomb.shape == (2, n_grid, nao, nao)

    # Each kernel is PySCF's int1e_grids (omega = 0.4 inside with_range_coulomb): the same numbers.
    mol = molecule.to_pyscf(basis="sto-3g")
    points = _grid_points(molecule, 0)  # what build_system used (pyscf_grids=True)
    np.testing.assert_allclose(system.grid_coulomb[0], grid_coulomb_potentials(mol, points), rtol=0, atol=0)
    with mol.with_range_coulomb(0.4):
        long_range = mol.intor("int1e_grids", grids=points)
    np.testing.assert_allclose(system.grid_coulomb[1], long_range, rtol=0, atol=0)

    # xc_energy of the SCF equals the energy density on features computed independently.
    rng = np.random.default_rng(0)
    c = np.linalg.qr(rng.normal(size=(nao, nao)))[0]
    dm = jnp.asarray(np.stack([c[:, :5] @ c[:, :5].T, c[:, :4] @ c[:, :4].T]))
    functional = get_functional("dm21")
    energy = xc_energy(functional, functional.params, system, dm)
    phi, grad = system.ao[0], system.ao[1:4]
    rho = jnp.einsum("gm,smn,gn->sg", phi, dm, phi)
    nabla = 2.0 * jnp.einsum("xgm,smn,gn->sxg", grad, dm, phi)
    sigma = jnp.stack([jnp.sum(nabla[0] * nabla[0], 0), jnp.sum(nabla[0] * nabla[1], 0), jnp.sum(nabla[1] * nabla[1], 0)])
    tau = 0.5 * jnp.einsum("xgm,smn,xgn->sg", grad, dm, grad)
    exact_exchange = dm21.exact_exchange_features(system.ao, dm, system.grid_coulomb[0], system.grid_coulomb[1])
    expected = jnp.sum(system.weights * dm21.energy_density_from_arrays(functional.params, rho, sigma, tau,
                                                                       exact_exchange))
    np.testing.assert_allclose(energy, expected, rtol=1e-12)  # same formula, float64 roundoff only

    # Closed-shell path (restricted features, equal halves): the same energy, and (the network is not
    # symmetric under spin exchange) the Fock matrix is the average of the two spin derivatives,
    # as the original's RKS averages vrho, vsigma, vtau and vhf; without it the RKS SCF stalls.
    dm_closed = jnp.stack([dm[0], dm[0]])
    closed = lambda d: xc_energy(functional, functional.params, system, d, closed_shell=True)
    spin = lambda d: xc_energy(functional, functional.params, system, d)
    np.testing.assert_allclose(closed(dm_closed), spin(dm_closed), rtol=1e-12)
    fock_closed, fock_spin = jax.grad(closed)(dm_closed), jax.grad(spin)(dm_closed)
    np.testing.assert_allclose(fock_closed[0], fock_closed[1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(fock_closed[0], 0.5 * (fock_spin[0] + fock_spin[1]), rtol=1e-9, atol=1e-12)


def _grid_points(molecule, level):
    from basis.grids import pyscf_grid

    return np.asarray(pyscf_grid(molecule, level).points)


def _reference_cases():
    try:
        systems = _reference()["systems"]
    except FileNotFoundError:
        return []
    return sorted(systems)


@pytest.mark.slow
@pytest.mark.parametrize("key", _reference_cases())
def test_dm21_scf_matches_original_on_same_grid(key):
    from dftjax.scf import SCFOptions, run_scf

    reference = _reference()
    case = reference["systems"][key]
    assert case["converged"]
    molecule = make_molecule(case["atom"], spin=case["spin"], charge=case["charge"])
    options = SCFOptions(xc=case["functional"], basis=case["basis"], unrestricted=case["spin"] != 0,
                         pyscf_grids=True, grid_level=reference["grid"]["level"],
                         conv_tol=reference["conv_tol"], init_guess=reference["init_guess"])
    result = run_scf(molecule, options)
    assert result.converged
    assert result.size_class["n_grid"] == case["n_grid"]  # the same grid as the original's
    np.testing.assert_allclose(result.energy, case["energy"], rtol=0, atol=ENERGY_ATOL)
