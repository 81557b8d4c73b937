"""Metropolis-Hastings: step-size adaptation and the sampled distribution."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from basis.molecule import make_molecule
from qmc.mcmc import initial_positions, make_metropolis

# |psi|^2 of the hydrogen 1s state, exp(-2r): <r> = 3/2 bohr exactly.
HYDROGEN = jax.vmap(lambda params, x: -jnp.linalg.norm(x), (None, 0))


def _run(mcmc, state, updates, seed=0):
    update = jax.jit(mcmc.update)
    acceptances = []
    for key in jax.random.split(jax.random.PRNGKey(seed), updates):
        state, acceptance = update(None, state, key)
        acceptances.append(float(acceptance))
    return state, np.array(acceptances)


@pytest.mark.parametrize("initial_step", [0.01, 4.0], ids=["too-small", "too-large"])
def test_step_size_adapts_to_target_acceptance(initial_step):
    mcmc = make_metropolis(HYDROGEN, steps=5, initial_step_size=initial_step, target_acceptance=0.5)
    state = mcmc.init(None, jax.random.normal(jax.random.PRNGKey(1), (512, 3)))
    state, acceptance = _run(mcmc, state, 60)
    first = acceptance[0]
    assert (first > 0.9) if initial_step < 0.1 else (first < 0.3)  # the starting point is off target
    # 512 walkers x 5 moves: the mean acceptance of the last 20 updates is within a few % of 0.5
    assert abs(acceptance[-20:].mean() - 0.5) < 0.06
    assert 0.3 < float(state.step_size) < 3.0


def test_samples_hydrogen_density():
    mcmc = make_metropolis(HYDROGEN, steps=10, initial_step_size=0.5)
    state = mcmc.init(None, jax.random.normal(jax.random.PRNGKey(2), (1024, 3)))
    state, _ = _run(mcmc, state, 20)  # burn-in
    radii = []
    for seed in range(10):
        state, _ = _run(mcmc, state, 1, seed=100 + seed)
        radii.append(np.linalg.norm(np.asarray(state.positions), axis=-1))
    radii = np.concatenate(radii)
    # std of r is sqrt(3)/2; ~10k correlated samples: a 5-sigma band of ~0.03 bohr
    assert abs(radii.mean() - 1.5) < 0.05
    np.testing.assert_allclose(state.log_abs_psi, -np.linalg.norm(np.asarray(state.positions), axis=-1), rtol=1e-14)


def test_adaptation_off_keeps_step_size():
    mcmc = make_metropolis(HYDROGEN, steps=2, initial_step_size=0.7, adapt_rate=0.0)
    state, _ = _run(mcmc, mcmc.init(None, jnp.ones((16, 3))), 3)
    assert float(state.step_size) == 0.7


def test_initial_positions_follow_nuclear_charges():
    molecule = make_molecule("Li 0 0 0; H 0 0 3.015", unit="bohr")
    positions = initial_positions(jax.random.PRNGKey(0), molecule, 4000, width=0.3)
    centres = np.asarray(positions).reshape(4000, 4, 3).mean(axis=0)
    # three electrons start at Li, one at H: up electrons Li, Li; down electrons Li, H (ordering rule)
    near_h = np.linalg.norm(centres - np.array([0, 0, 3.015]), axis=-1) < 0.1
    assert near_h.sum() == 1 and positions.shape == (4000, 12)
