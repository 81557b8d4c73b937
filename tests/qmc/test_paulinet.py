"""PauliNet: antisymmetry, the Hartree-Fock baseline, electron-nucleus and electron-electron cusps."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from basis.molecule import make_molecule
from qmc.ansatz import PauliNetOptions, make_ansatz
from qmc.ansatz.paulinet import electron_cusp_jastrow, nuclear_cusp
from qmc.hamiltonian import make_local_energy
from qmc.pretrain import hartree_fock

SMALL = PauliNetOptions(basis="sto-3g", embedding=8, layers=1, radial=4, determinants=2)
LIH = "Li 0 0 0; H 0 0 3.015"


@pytest.fixture(scope="module")
def paulinet():
    """LiH (2 up + 2 down), a small PauliNet: module, initial parameters (zero backflow and Jastrow)
    and perturbed ones (every weight nonzero), and the jitted batched ``apply``."""
    molecule = make_molecule(LIH, unit="bohr")
    module = make_ansatz("paulinet", molecule, SMALL)
    x = jax.random.normal(jax.random.PRNGKey(0), (12,))
    initial = jax.jit(module.init)(jax.random.PRNGKey(1), x)
    leaves, tree = jax.tree_util.tree_flatten(initial)
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    params = jax.tree_util.tree_unflatten(tree, [a + 0.3 * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys)])
    return molecule, module, initial, params, jax.jit(jax.vmap(module.apply, (None, 0)))


def _swap(x, i, j):
    x = np.array(x).reshape(-1, 3)
    x[[i, j]] = x[[j, i]]
    return jnp.asarray(x.ravel())


def test_antisymmetric_under_same_spin_exchange(paulinet):
    _, _, _, params, apply = paulinet
    x = jax.random.normal(jax.random.PRNGKey(7), (12,)) * 1.5
    signs, logs = apply(params, jnp.stack([x, _swap(x, 0, 1), _swap(x, 2, 3), _swap(x, 0, 2)]))
    assert float(signs[1]) == -float(signs[0]) and float(signs[2]) == -float(signs[0])
    np.testing.assert_allclose(logs[1:3], logs[0], rtol=0, atol=1e-12)  # same numbers, permuted rows
    assert abs(float(logs[3] - logs[0])) > 1e-6  # up <-> down is no symmetry


def test_initial_network_is_hartree_fock_times_cusp_factors(paulinet):
    """Zero-initialised backflow and Jastrow: log|psi| = log|K det_HF| + electron-electron Jastrow +
    nuclear cusp factors, with the UHF orbitals PySCF gives (those are tested in test_pretrain)."""
    molecule, _, initial, _, apply = paulinet
    xs = jax.random.normal(jax.random.PRNGKey(3), (4, 12)) * 1.5
    _, log_abs = apply(initial, xs)
    hf = hartree_fock(molecule, "sto-3g")
    nuclei = np.asarray(molecule.coords)
    charges = np.asarray(molecule.atomic_numbers, dtype=float)
    hf_log_abs = np.asarray(jax.jit(jax.vmap(hf.log_abs_psi))(xs))
    for x, value, log_det in zip(np.asarray(xs), np.asarray(log_abs), hf_log_abs):
        r_ae = np.linalg.norm(x.reshape(4, 1, 3) - nuclei[None], axis=-1)
        r_c = SMALL.cusp_radius / charges
        cusp = -np.sum(charges * r_c * (1 - np.exp(-r_ae / r_c)))
        # K identical determinants at initialisation: psi = K det_HF
        expected = log_det + np.log(SMALL.determinants) + float(electron_cusp_jastrow(x.reshape(4, 3), 2)) + cusp
        np.testing.assert_allclose(value, expected, rtol=0, atol=1e-10)  # same orbitals, same algebra


def test_nuclear_cusp_factor_has_kato_slope():
    """d/dr log c(r) at r = 0 is -Z (Kato), and c is flat far away (no long-range distortion)."""
    slope = jax.grad(lambda r: nuclear_cusp(jnp.reshape(r, (1, 1)), jnp.array([3.0]), 0.5))
    np.testing.assert_allclose(float(slope(0.0)), -3.0, rtol=1e-14)
    assert abs(float(slope(5.0))) < 1e-10


def _approaching(base, electron, target, distances):
    """(len(distances), 12) configurations: ``electron`` at ``distances`` from ``target``, the rest at ``base``."""
    direction = np.array([0.48, -0.6, 0.64])
    points = []
    for r in distances:
        x = np.array(base).reshape(-1, 3)
        x[electron] = target + r * direction
        points.append(x.ravel())
    return np.array(points)


DISTANCES = [1e-3, 1e-5, 1e-7]


def _local_energies(module, molecule, params, points):
    e_l = make_local_energy(lambda p, x: module.apply(p, x)[1], molecule.coords, molecule.atomic_numbers, "forward")
    return np.asarray(jax.jit(jax.vmap(e_l, (None, 0)))(params, jnp.asarray(points)))


def test_cusps_keep_local_energy_finite(paulinet):
    """Kato's cusps. Electron 0 (up) approaches the Li nucleus (Z = 3), then the first down electron:
    the nuclear cusp factor cancels -Z / r and the electron-electron Jastrow cancels 1 / r_12, so
    E_L(r) = E_L(0) + O(r) stays finite. Without the nuclear correction Gaussian orbitals have no cusp
    and E_L diverges as -Z / r (slow tier: one more compilation)."""
    molecule, module, _, params, _ = paulinet
    base = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (12,))) * 1.2 + np.array([0, 0, 1.0] * 4)
    points = np.concatenate([_approaching(base, 0, np.zeros(3), DISTANCES),
                             _approaching(base, 0, base.reshape(4, 3)[2], DISTANCES)])
    energies = _local_energies(module, molecule, params, points)
    nucleus, electron = energies[:3], energies[3:]
    # differences over r <= 1e-3 bohr are O(r) next to the Z / r = 3e7 that a missing cusp gives at 1e-7
    assert np.all(np.isfinite(energies)) and np.ptp(nucleus) < 1.0 and np.ptp(electron) < 1.0, energies


@pytest.mark.slow
def test_without_nuclear_cusp_local_energy_diverges(paulinet):
    molecule, _, _, params, _ = paulinet
    base = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (12,))) * 1.2 + np.array([0, 0, 1.0] * 4)
    points = _approaching(base, 0, np.zeros(3), DISTANCES)
    no_cusp = make_ansatz("paulinet", molecule, dataclasses.replace(SMALL, cusp_radius=0.0))
    energies = _local_energies(no_cusp, molecule, params, points)
    np.testing.assert_allclose(energies[-1] * DISTANCES[-1], -3.0, rtol=1e-3)  # -Z / r dominates
