"""The VMC loop: exact resume from checkpoints, and He below Hartree-Fock."""
import os

import jax
import numpy as np
import pytest

from basis.molecule import make_molecule
from qmc.optimizers import SpringOptions
from qmc.train import CHECKPOINT_NAME, VMCOptions, load_checkpoint, run_vmc
from tests.qmc.conftest import SMALL, TINY

HE_HF_LIMIT = -2.86168  # Hartree-Fock limit of He (Clementi & Roetti), hartree



class _Interrupt(Exception):
    pass


def _stop_at(step_to_stop):
    def callback(step, stats):
        if step == step_to_stop:
            raise _Interrupt
    return callback


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    molecule = make_molecule("He 0 0 0")
    straight = run_vmc(molecule, TINY, checkpoint_dir=str(tmp_path / "a"))
    with pytest.raises(_Interrupt):
        run_vmc(molecule, TINY, checkpoint_dir=str(tmp_path / "b"), callback=_stop_at(4))  # checkpoint at 4 written
    resumed = run_vmc(molecule, TINY, checkpoint_dir=str(tmp_path / "b"))
    assert resumed.resumed_from == 4 and straight.resumed_from is None
    leaves_a = jax.tree_util.tree_leaves(straight.state)
    leaves_b = jax.tree_util.tree_leaves(resumed.state)
    for a, b in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # bit for bit
    for a, b in zip(straight.history, resumed.history):
        np.testing.assert_array_equal(a, b)
    assert straight.energy == resumed.energy and straight.energy_error == resumed.energy_error
    # the final checkpoint is written and holds the last iteration
    state, _ = load_checkpoint(str(tmp_path / "a"), _fingerprint_of(molecule))
    assert int(state.step) == TINY.iterations
    assert sorted(os.listdir(tmp_path / "a")) == [CHECKPOINT_NAME]  # no temporary files left behind


def test_run_holds_openblas_at_one_thread(tmp_path):
    """XLA's LAPACK (SPRING's Cholesky) on one OpenBLAS thread during the run, restored after it."""
    from dftjax.oned import blas

    def counts():
        return [int(getattr(lib, f"{p}_get_num_threads{s}")()) for lib, (p, s) in blas._openblas_libraries()]

    before = counts()
    seen = []
    run_vmc(make_molecule("He 0 0 0"), TINY, callback=lambda step, stats: seen.append(counts()))
    assert seen and all(c == 1 for step_counts in seen for c in step_counts)
    assert counts() == before


def _fingerprint_of(molecule):
    from qmc.train import _fingerprint

    return _fingerprint(molecule, TINY)


def test_checkpoint_of_other_settings_is_refused(tmp_path):
    molecule = make_molecule("He 0 0 0")
    run_vmc(molecule, TINY, checkpoint_dir=str(tmp_path))
    other = make_molecule("He 0 0 0.1")
    with pytest.raises(ValueError, match="another molecule"):
        run_vmc(other, TINY, checkpoint_dir=str(tmp_path))


def test_energy_falls_from_a_random_network():
    """300 SPRING steps of the tiny network from random parameters (no pretraining) lower the He energy
    by more than 1 Ha and stay above the exact energy. Reuses the compiled step of the resume test
    (iterations are no part of the compiled settings), so it costs ~1 s; the stronger check, below
    Hartree-Fock, is the slow test below. Measured: -0.88 Ha (first 20 steps) -> -2.27 Ha (last 60).
    """
    import dataclasses

    result = run_vmc(make_molecule("He 0 0 0"), dataclasses.replace(TINY, iterations=300))
    energy = result.history.energy
    assert energy[-60:].mean() < energy[:20].mean() - 1.0, (energy[:20].mean(), energy[-60:].mean())
    assert energy[-60:].mean() > -2.9037 - 0.05  # 60 x 16 samples of E_L: ~0.02 Ha noise
    assert 0.35 < result.acceptance < 0.75


@pytest.mark.slow
def test_helium_goes_below_hartree_fock():
    """A small FermiNet with SPRING beats the HF limit of He within 200 short iterations.

    ~20 s of CPU (a bigger network, pretraining, 64 walkers): slow tier. Compilation dominates, so the energy is taken from the last fifth of the optimisation
    (``eval_iterations=0``), which saves compiling the evaluation step.
    """
    options = VMCOptions(
        ansatz_options=SMALL, iterations=200, walkers=64, seed=0, pretrain_iterations=20,
        pretrain_basis="sto-3g", burn_in=10, mcmc_steps=5, eval_iterations=0, progress_every=0,
        optimizer_options=SpringOptions(learning_rate=0.05),
    )
    result = run_vmc(make_molecule("He 0 0 0"), options)
    assert result.energy + 3 * result.energy_error < HE_HF_LIMIT, (result.energy, result.energy_error)
    assert result.energy > -2.9037 - 5 * result.energy_error - 1e-3  # variational: not below the exact energy
    assert 0.35 < result.acceptance < 0.65


@pytest.mark.slow
@pytest.mark.parametrize(
    "atom, exact",
    [("He 0 0 0", -2.903724), ("H 0 0 0; H 0 0 1.4", -1.174475)],
    ids=["He", "H2"],
)
def test_default_settings_reach_near_exact_energies(atom, exact):
    """CLI defaults (400 SPRING iterations, 256 walkers): within 1 mHa of the exact energy (issue 9 asks
    0.3 mHa in <= 5 min; see the report for the measured value). Several minutes on 2 cores."""
    molecule = make_molecule(atom, unit="bohr")
    result = run_vmc(molecule, VMCOptions(progress_every=0))
    assert abs(result.energy - exact) < 1e-3 + 3 * result.energy_error, (result.energy, result.energy_error)
    assert result.energy > exact - 5 * result.energy_error  # variational


def test_float32_run_stays_float32_and_matches_float64_local_energies():
    """``dtype="float32"``: walkers, parameters and optimiser state stay float32 through a short run,
    the energy is finite, and the float32 local energies of the final state equal the float64 ones
    (parameters and walkers cast up) to 1e-4 relative: float32 rounding (eps 1.2e-7) amplified by the
    Laplacian's cancellations, not a different ansatz. Measured: 300 steps give -2.06 Ha (float64
    from the same seed: -2.27; the tiny network's trajectory from random parameters is chaotic, and
    float32 draws other random numbers); over seeds 3-5 the per-walker differences used at most 1% of
    the tolerance and the means agreed to 8e-8 relative."""
    import dataclasses

    import jax.numpy as jnp

    from qmc.ansatz import make_ansatz
    from qmc.hamiltonian import make_local_energy

    molecule = make_molecule("He 0 0 0")
    options = dataclasses.replace(TINY, iterations=40, dtype="float32")
    result = run_vmc(molecule, options)
    kinds = {a.dtype for a in jax.tree_util.tree_leaves(result.state) if jnp.issubdtype(a.dtype, jnp.floating)}
    assert kinds == {np.dtype(np.float32)}, kinds
    assert np.all(np.isfinite(result.history.energy)) and np.isfinite(result.energy)
    module = make_ansatz("ferminet", molecule, TINY.ansatz_options)
    e_l = make_local_energy(lambda p, x: module.apply(p, x)[1], molecule.coords, molecule.atomic_numbers)
    batched = jax.jit(jax.vmap(e_l, (None, 0)))
    params, walkers = result.state.params, result.state.mcmc.positions
    e32 = batched(params, walkers)
    e64 = batched(jax.tree_util.tree_map(lambda a: a.astype(np.float64), params), walkers.astype(np.float64))
    assert e32.dtype == np.float32
    np.testing.assert_allclose(e32, e64, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.mean(e32), np.mean(e64), rtol=1e-5)


def test_bad_dtype_is_refused_before_any_work():
    with pytest.raises(ValueError, match="dtype"):
        VMCOptions(dtype="float16")
