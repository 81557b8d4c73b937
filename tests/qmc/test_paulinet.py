"""PauliNet: antisymmetry, the Hartree-Fock baseline, electron-nucleus and electron-electron cusps."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from basis.molecule import make_molecule
from qmc.ansatz import PauliNetOptions, make_ansatz
from qmc.ansatz.cusp import cusp_coefficients, cusp_correction
from qmc.ansatz.paulinet import baseline_orbitals, electron_cusp_jastrow
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


def test_initial_network_is_the_hartree_fock_baseline(paulinet):
    """Zero-initialised backflow and Jastrow: psi = K det[phi~_HF] times the fixed electron-electron
    cusp factor, and the orbital matrices are the cusp-corrected UHF ones (PauliNet starts at HF)."""
    molecule, module, initial, _, apply = paulinet
    xs = jax.random.normal(jax.random.PRNGKey(3), (4, 12)) * 1.5
    _, log_abs = apply(initial, xs)
    hf = hartree_fock(molecule, "sto-3g")
    baseline = jax.jit(jax.vmap(baseline_orbitals(molecule, hf, 0.5, molecule.nelec)))(xs)
    orbitals = jax.jit(jax.vmap(lambda x: module.apply(initial, x, method="orbitals")))(xs)
    # same algebra compiled in two programs: XLA may sum the O(1) AO terms in another order (seen: 1.6e-14)
    np.testing.assert_allclose(orbitals, np.broadcast_to(baseline[:, None], orbitals.shape), rtol=0, atol=1e-12)
    log_det = np.linalg.slogdet(np.asarray(baseline))[1]
    jastrow = np.array([float(electron_cusp_jastrow(x.reshape(4, 3), 2)) for x in np.asarray(xs)])
    # K identical determinants at initialisation: psi = K det; same orbitals, same algebra
    np.testing.assert_allclose(log_abs, log_det + np.log(SMALL.determinants) + jastrow, rtol=0, atol=1e-10)
    # away from the nuclei the baseline is PySCF's UHF determinant itself (test_pretrain checks those)
    far = np.all(np.linalg.norm(np.asarray(xs).reshape(4, 4, 1, 3) - np.asarray(molecule.coords), axis=-1)
                 > 0.5, axis=(1, 2))
    assert far.sum() >= 2, far
    np.testing.assert_allclose(baseline[far], jax.vmap(hf.orbitals)(xs)[far], rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def corrected_orbital():
    """LiH sto-3g: the cusp-corrected up orbitals as a function of one electron's position (3,) -> (2,)."""
    molecule = make_molecule(LIH, unit="bohr")
    hf = hartree_fock(molecule, "sto-3g")
    coefficients = cusp_coefficients(molecule, hf.mol, hf.mo_coeff[0], 0.5)
    nuclei = jnp.asarray(molecule.coords)

    def orbital(x):
        ao = hf.atomic_orbitals(x[None])
        r_ae = jnp.linalg.norm(x[None, None, :] - nuclei[None], axis=-1)
        return (ao @ hf.mo_coeff[0] + cusp_correction(r_ae, ao, coefficients))[0]

    return molecule, orbital, coefficients


def test_cusp_corrected_orbitals_obey_kato(corrected_orbital):
    """Spherically averaged slope at each nucleus: d<phi~>/dr (0) = -Z phi~(R) (Kato), from the
    average over a 50-point Lebedev sphere of radius h: (<phi~>(h) - phi~(R)) / h = -Z phi~(R) + O(h)."""
    from basis.grids import lebedev_grid

    molecule, orbital, coefficients = corrected_orbital
    directions, weights = lebedev_grid(50)
    h = 1e-6
    for centre, z in zip(np.asarray(molecule.coords), molecule.atomic_numbers):
        at_nucleus = np.asarray(orbital(jnp.asarray(centre)))
        shell = np.asarray(jax.vmap(orbital)(jnp.asarray(centre + h * directions)))
        slope = (weights @ shell - at_nucleus) / h
        # O(h) = 1e-6 relative truncation; rounding ~ eps / h = 2e-10
        np.testing.assert_allclose(slope, -z * at_nucleus, rtol=1e-4, atol=1e-6)
    assert np.all(coefficients.sign[0] != 0)  # both LiH orbitals have an s part on Li: corrected there


def test_cusp_correction_is_twice_differentiable_at_the_sphere(corrected_orbital):
    """Value, gradient and Laplacian just inside and just outside r_c agree: the kinetic energy is
    continuous, so the correction adds no surface term to the energy."""
    molecule, orbital, coefficients = corrected_orbital
    direction = np.array([0.48, -0.6, 0.64])
    delta = 1e-7
    laplacian = jax.jit(jax.vmap(lambda x: jnp.trace(jax.hessian(orbital)(x), axis1=-2, axis2=-1)))
    gradient = jax.jit(jax.vmap(jax.jacfwd(orbital)))
    for m, centre in enumerate(np.asarray(molecule.coords)):
        for k, rc in enumerate(coefficients.radius[m]):
            points = jnp.asarray([centre + (rc + s) * direction for s in (-delta, delta)])
            values, gradients, laplacians = jax.vmap(orbital)(points), gradient(points), laplacian(points)
            # derivatives of the pieces are O(1-100) per bohr: the values may differ by O(delta * 100)
            np.testing.assert_allclose(values[0, k], values[1, k], rtol=0, atol=1e-5)
            np.testing.assert_allclose(gradients[0, k], gradients[1, k], rtol=0, atol=1e-4)
            np.testing.assert_allclose(laplacians[0, k], laplacians[1, k], rtol=0, atol=1e-3)


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
    the cusp-corrected orbitals cancel -Z / r and the electron-electron Jastrow cancels 1 / r_12, so
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


@pytest.mark.slow
def test_paulinet_helium_trains_below_hartree_fock():
    """A short PauliNet run on He (CLI optimiser defaults, a small network, 128 walkers, 200 SPRING
    steps) ends below the Hartree-Fock limit and below its own starting point, the cusp-corrected UHF
    determinant times the electron-electron cusp factor (-2.8852(16) Ha measured at initialisation),
    and not below the exact energy. Three compilations of PauliNet steps: slow tier (~3-4 min on a
    loaded 2-core machine). The energy comes from 40 iterations at fixed parameters: the optimisation
    tail's blocking error is too wide to separate the result from the start (measured -2.8958(38) Ha
    with 64 walkers x 150 steps, -2.9045(71) with 128 x 200)."""
    from qmc.train import VMCOptions, run_vmc

    options = VMCOptions(
        ansatz="paulinet", ansatz_options=PauliNetOptions(embedding=16, layers=1, radial=8), iterations=200,
        walkers=128, seed=0, burn_in=10, mcmc_steps=5, eval_iterations=40, progress_every=0,
    )
    result = run_vmc(make_molecule("He 0 0 0"), options)
    energy, error = result.energy, result.energy_error
    # the reported baseline is PySCF's UHF in the ansatz's basis (cc-pVDZ), -2.855160477 Ha: the
    # baseline's energy differs from this tightly converged one by 4e-16 Ha (measured)
    from pyscf import gto, scf

    uhf = scf.UHF(gto.M(atom="He 0 0 0", basis=options.ansatz_options.basis, verbose=0))
    uhf.conv_tol = 1e-12
    reference = uhf.kernel()
    assert uhf.converged
    assert result.hf_energy == pytest.approx(reference, abs=1e-9), result.hf_energy - reference
    assert energy + 3 * error < -2.8617 - 0.02, (energy, error)  # HF limit (Clementi & Roetti) minus 20 mHa
    assert energy + 3 * error < -2.8852, (energy, error)  # below the initial ansatz
    assert energy > -2.903724 - 5 * error - 1e-3, (energy, error)  # variational
    assert np.all(np.isfinite(result.history.energy)) and np.max(result.history.variance[-30:]) < 0.1
