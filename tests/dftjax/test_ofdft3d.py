"""Orbital-free DFT of molecules (dftjax.ofdft.molecular, dftjax.ofdft.train3d)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from basis.molecule import make_molecule
from dftjax.ofdft import molecular, train3d

H2 = "H 0 0 0; H 0 0 0.74"


@pytest.mark.parametrize("kwargs,match", [
    (dict(kinetic="tf"), "kinetic must be"),
    (dict(xc="b3lyp"), "density functional"),
    (dict(kinetic="learned"), "kinetic_params"),
    (dict(vw_lambda=-1.0), "vw_lambda"),
    (dict(max_iterations=0), "max_iterations"),
])
def test_bad_options_raise_before_any_integral(kwargs, match):
    with pytest.raises(ValueError, match=match):
        molecular.solve(make_molecule(H2), molecular.MolecularOFOptions(**kwargs))


def test_missing_pauli_model_file_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        train3d.load_pauli(str(tmp_path / "none.npz"))


def test_pauli_model_roundtrip_is_atomic_and_exact(tmp_path):
    params = train3d.init_params(jax.random.PRNGKey(3), (4,))
    path = tmp_path / "p.npz"
    train3d.save_pauli(params, str(path), basis="sto-3g")
    loaded, meta = train3d.load_pauli(str(path))
    assert meta == {"basis": "sto-3g"}
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(loaded)):
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]     # no temporary file left behind


def _synthetic_samples(n_samples=3, n_points=40, n_coefficients=5):
    # label-shaped random arrays: the optimiser and its checkpoint are tested, not the physics
    rng = np.random.default_rng(0)
    return [train3d.PauliSample(
        weights=rng.uniform(0.01, 0.1, n_points), rho=rng.uniform(0.01, 2.0, n_points),
        sigma=rng.uniform(0.0, 1.0, n_points), jac_rho=rng.normal(size=(n_points, n_coefficients)),
        jac_sigma=rng.normal(size=(n_points, n_coefficients)), pauli_target=float(rng.uniform(0.1, 1.0)),
        gradient_rest=rng.normal(size=n_coefficients), kinetic_energy=1.0) for _ in range(n_samples)]


def test_pauli_training_resumes_exactly_from_a_checkpoint(tmp_path, monkeypatch):
    samples = _synthetic_samples()
    options = train3d.PauliTrainingOptions(steps=10, hidden=(4,), learning_rate=1e-2)
    reference, reference_history = train3d.train(samples, options)
    path = str(tmp_path / "state.pkl")
    # killed right after the checkpoint of step 6 (of 10) is on disk
    real_write = train3d.atomic.write_pickle

    def write_then_die(target, payload):
        real_write(target, payload)
        if payload["step"] == 6:
            raise KeyboardInterrupt

    monkeypatch.setattr(train3d.atomic, "write_pickle", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        train3d.train(samples, options, checkpoint_path=path, checkpoint_every=3)
    monkeypatch.setattr(train3d.atomic, "write_pickle", real_write)
    params, history = train3d.train(samples, options, checkpoint_path=path, checkpoint_every=3)
    for a, b in zip(jax.tree_util.tree_leaves(reference), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b)
    assert history == reference_history
    with pytest.raises(ValueError, match="another training run"):
        train3d.train(samples, dataclasses.replace(options, seed=1), checkpoint_path=path)


@pytest.fixture(scope="module")
def h2_minimal():
    molecule = make_molecule(H2)
    options = molecular.MolecularOFOptions(kinetic="vw", basis="sto-3g", auxbasis="weigend", grid_level=1)
    return molecule, options, molecular.build(molecule, options)


def test_von_weizsaecker_two_electrons_equals_pyscf_kohn_sham(h2_minimal):
    # one doubly occupied orbital: vW is the exact kinetic energy and phi the KS orbital, so the OF
    # minimum is the LDA Kohn-Sham energy of the same basis, grid and J fit (PySCF, same grid
    # construction as dftjax's)
    from pyscf import dft

    molecule, options, system = h2_minimal
    result = molecular.solve(molecule, options, system=system)
    mf = dft.RKS(molecule.to_pyscf(basis="sto-3g")).density_fit(auxbasis="weigend")
    mf.xc, mf.grids.level, mf.conv_tol = "lda,vwn", 1, 1e-12
    reference = mf.kernel()
    assert bool(result.converged)
    assert abs(float(result.energy) - reference) < 1e-9   # same grid construction and fit: measured 2e-14
    np.testing.assert_allclose(np.trace(np.asarray(result.density_matrix[0] + result.density_matrix[1])
                                        @ molecule.to_pyscf(basis="sto-3g").intor("int1e_ovlp")), 2.0, atol=1e-12)


@pytest.mark.slow   # eager grid evaluations: ~100 s on a loaded 2-core machine
def test_energy_gradient_matches_finite_differences(h2_minimal):
    molecule, options, system = h2_minimal
    options = dataclasses.replace(options, kinetic="tfvw")

    def energy(u):
        dm = molecular.density_matrices(system, molecular._amplitudes(system, u, True))
        return molecular.energy_terms(options, None, system, dm, True).total

    u = jnp.asarray([[0.9, 0.3]])
    direction = jnp.asarray([[0.2, -0.7]])
    h = 1e-5
    fd = (energy(u + h * direction) - energy(u - h * direction)) / (2 * h)
    np.testing.assert_allclose(jnp.sum(jax.grad(energy)(u) * direction), fd, rtol=1e-7)  # O(h^2)


@pytest.mark.slow
@pytest.mark.parametrize("atoms,charge,spin", [("He 0 0 0", 0, 0), ("H 0 0 0; H 0.873 0 0; H 0.4365 0.756 0", 1, 0),
                                               ("H 0 0 0", 0, 1)])
def test_von_weizsaecker_equals_dftjax_kohn_sham_for_one_orbital(atoms, charge, spin):
    # He, H3+ (restricted) and the H atom (unrestricted, empty beta channel): OF-vW is Kohn-Sham
    molecule = make_molecule(atoms, charge=charge, spin=spin)
    options = molecular.MolecularOFOptions(kinetic="vw", basis="6-31g", tolerance=1e-9)
    system = molecular.build(molecule, options)
    result = molecular.solve(molecule, options, system=system)
    reference = molecular.kohn_sham(molecule, options, system)
    assert abs(float(result.energy) - reference.energy) < 1e-9       # same integrals, grid and fit
    assert abs(float(result.terms.kinetic) - reference.kinetic_energy) < 1e-6
    assert float(molecular.density_difference(system, result.density_matrix,
                                              jnp.asarray(reference.density_matrix))) < 1e-5


@pytest.mark.slow
def test_training_sample_labels_vanish_for_two_electrons():
    # He: the amplitude fit recovers sqrt(2)|phi_1s| exactly, so the Pauli label is 0 and the
    # Kohn-Sham density is stationary for vW + the rest (gradient label 0)
    options = molecular.MolecularOFOptions(kinetic="learned")
    sample = train3d.make_sample(make_molecule("He 0 0 0"), options)
    assert abs(sample.pauli_target) < 1e-6
    assert np.linalg.norm(sample.gradient_rest) < 1e-4
