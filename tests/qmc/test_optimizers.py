"""Energy gradient, clipping, SPRING / minSR against dense stochastic reconfiguration, Adam."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from qmc.optimizers import (
    AdamOptions, SpringOptions, clip_local_energy, energy_gradient, make_optimizer,
)


def _toy():
    """log|psi| = -a |x| - b |x|^2 (params a, b) on 64 three-dimensional samples."""
    log_abs = lambda p, x: -p["a"] * jnp.linalg.norm(x) - p["b"] * jnp.sum(x**2)
    params = {"a": jnp.asarray(0.8), "b": jnp.asarray(0.1)}
    positions = jax.random.normal(jax.random.PRNGKey(0), (64, 3))
    energies = jax.random.normal(jax.random.PRNGKey(1), (64,)) - 1.0
    return log_abs, params, positions, energies


def test_clipping_uses_median_and_mean_absolute_deviation():
    e = jnp.concatenate([jnp.linspace(-1.1, -0.9, 19), jnp.array([500.0, -800.0])])
    median = float(jnp.median(e))
    mad = float(jnp.mean(jnp.abs(e - median)))
    clipped = clip_local_energy(e, 5.0)
    np.testing.assert_allclose(clipped[:19], e[:19])
    np.testing.assert_allclose(clipped[19:], [median + 5 * mad, median - 5 * mad])


def test_energy_gradient_matches_covariance_formula():
    log_abs, params, positions, energies = _toy()
    # jitted: eager dispatch compiles every primitive separately, several times slower on CPU
    grad = jax.jit(lambda p: energy_gradient(log_abs, p, positions, energies, clip_width=1e6))(params)
    o = jax.jit(jax.vmap(jax.grad(log_abs), (None, 0)))(params, positions)
    for name in ("a", "b"):
        expected = 2 * jnp.mean((energies - energies.mean()) * (o[name] - o[name].mean()))
        np.testing.assert_allclose(grad[name], expected, rtol=1e-12)


def test_minsr_direction_equals_damped_stochastic_reconfiguration():
    """mu = 0: phi = O^T (O O^T + lambda)^-1 e = (O^T O + lambda)^-1 O^T e (push-through identity)."""
    log_abs, params, positions, energies = _toy()
    options = SpringOptions(learning_rate=1e-3, decay_delay=1e9, damping=1e-2, momentum=0.0, max_norm=1e9, clip_width=1e6)
    optimizer = make_optimizer("spring", log_abs, options)
    new_params, state, _ = jax.jit(optimizer.update)(params, optimizer.init(params), positions, energies)
    flat, unravel = ravel_pytree(params)
    jac = jax.jit(jax.vmap(jax.grad(lambda t, x: log_abs(unravel(t), x)), (None, 0)))(flat, positions)
    n = positions.shape[0]
    o = (jac - jac.mean(0, keepdims=True)) / np.sqrt(n)
    e = (energies - energies.mean()) / np.sqrt(n)
    direction = np.linalg.solve(o.T @ o + 1e-2 * np.eye(flat.size), o.T @ e)
    np.testing.assert_allclose(state.direction, direction, rtol=1e-9)
    np.testing.assert_allclose(ravel_pytree(new_params)[0], flat - 1e-3 * direction, rtol=1e-12)


def test_spring_norm_constraint_bounds_the_step():
    log_abs, params, positions, energies = _toy()
    options = SpringOptions(learning_rate=10.0, damping=1e-3, max_norm=1e-4)
    optimizer = make_optimizer("spring", log_abs, options)
    new_params, state, _ = jax.jit(optimizer.update)(params, optimizer.init(params), positions, energies)
    flat, unravel = ravel_pytree(params)
    jac = jax.jit(jax.vmap(jax.grad(lambda t, x: log_abs(unravel(t), x)), (None, 0)))(flat, positions)
    o = (jac - jac.mean(0, keepdims=True)) / np.sqrt(positions.shape[0])
    step = ravel_pytree(new_params)[0] - flat
    np.testing.assert_allclose(np.sum((o @ step) ** 2), 1e-4, rtol=1e-8)  # Fisher norm at the bound


def test_adam_moves_against_gradient_and_unknown_name():
    log_abs, params, positions, energies = _toy()
    optimizer = make_optimizer("adam", log_abs, AdamOptions(learning_rate=1e-2))
    new_params, _, _ = jax.jit(optimizer.update)(params, optimizer.init(params), positions, energies)
    grad = jax.jit(lambda p: energy_gradient(log_abs, p, positions, energies))(params)
    for name in ("a", "b"):  # Adam's first step is -lr * sign(grad)
        np.testing.assert_allclose(new_params[name] - params[name], -1e-2 * np.sign(grad[name]), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("kfac", log_abs)


def test_spring_trajectory_is_pinned(lih):
    """Four VMC steps with SPRING (LiH, small FermiNet, 32 walkers, fixed seed) give the numbers of the
    implementation before the speed-ups of issue 9 (76858e6: J^T v, unravel inside the vmapped grad).
    rtol 1e-10: the products are summed in another order, nothing else may change."""
    from qmc.ansatz import FermiNetOptions, make_ansatz
    from qmc.hamiltonian import make_local_energy
    from qmc.mcmc import initial_positions, make_metropolis
    from qmc.train import VMCState, make_vmc_step

    molecule = lih[0]
    module = make_ansatz("ferminet", molecule, FermiNetOptions(hidden_one=(16, 16), hidden_two=(4, 4), determinants=2))
    key_positions, key_params, key_step = jax.random.split(jax.random.PRNGKey(7), 3)
    positions = initial_positions(key_positions, molecule, 32)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), jax.jit(module.init)(key_params, positions[0]))
    log_abs = lambda p, x: module.apply(p, x)[1]  # noqa: E731
    local_energy = make_local_energy(log_abs, jnp.asarray(molecule.coords), molecule.atomic_numbers, "forward")
    mcmc = make_metropolis(jax.vmap(log_abs, (None, 0)), steps=2)
    optimizer = make_optimizer("spring", log_abs)
    step = make_vmc_step(log_abs, local_energy, mcmc, optimizer)
    state = VMCState(params, optimizer.init(params), mcmc.init(params, positions), key_step, jnp.zeros((), jnp.int32))
    energies = []
    for _ in range(4):
        state, stats = step(state)
        energies.append(float(stats["energy"]))
    flat = ravel_pytree(state.params)[0]
    np.testing.assert_allclose(energies, [-4.125074770934645, -3.8800947565896693, -4.7741602709537965,
                                          -4.8260171230205335], rtol=1e-10)
    np.testing.assert_allclose([jnp.sum(flat), jnp.sum(flat**2), jnp.sum(state.opt_state.direction**2)],
                               [74.82668569342994, 117.71142131481146, 4.605818637063483], rtol=1e-10)
