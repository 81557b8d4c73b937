"""Hartree-Fock orbitals in JAX against PySCF, and orbital pretraining."""
import jax
import numpy as np
import pytest
from pyscf import scf
from pyscf.dft import numint

from basis.molecule import make_molecule
from qmc.ansatz import make_ansatz
from qmc.mcmc import initial_positions
from qmc.pretrain import hartree_fock, pretrain
from tests.qmc.conftest import SMALL


def test_hartree_fock_orbitals_match_pyscf():
    molecule = make_molecule("Li 0 0 0; H 0 0 3.015", unit="bohr")
    hf = hartree_fock(molecule, "sto-3g")
    mol = molecule.to_pyscf(basis="sto-3g")
    mf = scf.UHF(mol).run(verbose=0)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (12,))).reshape(4, 3)
    ao = numint.eval_ao(mol, x)
    up = ao[:2] @ mf.mo_coeff[0][:, :2]
    down = ao[2:] @ mf.mo_coeff[1][:, :2]
    target = np.zeros((4, 4))
    target[:2, :2], target[2:, 2:] = up, down
    np.testing.assert_allclose(jax.jit(hf.orbitals)(x.ravel()), target, rtol=0, atol=1e-10)  # same AOs, same MOs
    np.testing.assert_allclose(hf.energy, mf.e_tot, rtol=0, atol=1e-8)


@pytest.mark.slow  # 30 training steps of a FermiNet: ~10 s of CPU, mostly compilation
def test_pretraining_fits_hartree_fock_orbitals():
    molecule = make_molecule("He 0 0 0")
    module = make_ansatz("ferminet", molecule, SMALL)
    positions = initial_positions(jax.random.PRNGKey(0), molecule, 32)
    params = jax.jit(module.init)(jax.random.PRNGKey(1), positions[0])
    _, walkers, losses = pretrain(module, params, molecule, positions, jax.random.PRNGKey(2), iterations=30, basis="sto-3g")
    assert losses[-5:].mean() < 0.2 * losses[:3].mean()  # ~10x drop seen in 30 steps
    assert walkers.shape == positions.shape
