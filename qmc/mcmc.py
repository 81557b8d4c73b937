"""Metropolis-Hastings sampling of |psi|^2 over all walkers in parallel (bohr).

Every walker proposes an all-electron Gaussian move x' = x + s * N(0, 1) and accepts it with
probability min(1, |psi(x')|^2 / |psi(x)|^2) (Metropolis et al., J. Chem. Phys. 21, 1087 (1953);
Foulkes et al., Rev. Mod. Phys. 73, 33 (2001), sec. III). The step size s is shared by all walkers and
adapted after every update toward a target acceptance,

    s <- s * exp(rate * (acceptance - target)),

clipped to [min_step, max_step]; the proposal is symmetric, so the acceptance rule is exact for any s.
As optax transformations, the kernel is an ``(init, update)`` pair over an immutable state.

>>> import jax, jax.numpy as jnp
>>> log_abs = jax.vmap(lambda p, x: -jnp.linalg.norm(x), (None, 0))
>>> mcmc = make_metropolis(log_abs, steps=5)
>>> state = mcmc.init(None, jnp.ones((16, 3)))
>>> state, acceptance = mcmc.update(None, state, jax.random.PRNGKey(0))
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

BatchedLogPsi = Callable[[Any, jnp.ndarray], jnp.ndarray]  # (params, (W, n_elec * 3)) -> (W,) log|psi|


class MCMCState(NamedTuple):
    """Walkers and the current proposal width.

    Attributes:
      positions: (n_walkers, n_elec * 3) electron positions, bohr.
      log_abs_psi: (n_walkers,) log|psi| at ``positions`` for the parameters of the last update.
      step_size: () Gaussian proposal width, bohr.
    """

    positions: jnp.ndarray
    log_abs_psi: jnp.ndarray
    step_size: jnp.ndarray


class MCMC(NamedTuple):
    """``init(params, positions) -> state``; ``update(params, state, key) -> (state, mean acceptance)``."""

    init: Callable[..., MCMCState]
    update: Callable[..., tuple[MCMCState, jnp.ndarray]]


def make_metropolis(
    log_abs_psi: BatchedLogPsi,
    *,
    steps: int = 10,
    initial_step_size: float = 0.2,
    target_acceptance: float = 0.5,
    adapt_rate: float = 1.0,
    min_step: float = 1e-3,
    max_step: float = 5.0,
) -> MCMC:
    """Metropolis-Hastings kernel doing ``steps`` all-electron moves per update (static).

    Args:
      log_abs_psi: (params, (W, n_elec * 3)) -> (W,) log|psi| of every walker.
      steps: moves per update (decorrelation between optimisation steps).
      initial_step_size: proposal width at ``init``, bohr.
      target_acceptance: acceptance the step size is driven toward; ``adapt_rate`` = 0 turns
        adaptation off.
    """

    def init(params, positions) -> MCMCState:
        positions = jnp.asarray(positions)
        positions = jnp.reshape(positions, (positions.shape[0], -1))
        step = jnp.asarray(initial_step_size, dtype=positions.dtype)
        return MCMCState(positions, log_abs_psi(params, positions), step)

    def update(params, state: MCMCState, key) -> tuple[MCMCState, jnp.ndarray]:
        # log|psi| is recomputed for the current parameters: they changed since the last update.
        state = state._replace(log_abs_psi=log_abs_psi(params, state.positions))

        def move(carry, step_key):
            positions, log_abs, accepted = carry
            key_move, key_accept = jax.random.split(step_key)
            proposal = positions + state.step_size * jax.random.normal(key_move, positions.shape, positions.dtype)
            log_abs_proposal = log_abs_psi(params, proposal)
            log_ratio = 2.0 * (log_abs_proposal - log_abs)
            uniform = jax.random.uniform(key_accept, log_abs.shape, positions.dtype)
            accept = jnp.log(uniform) < log_ratio
            positions = jnp.where(accept[:, None], proposal, positions)
            log_abs = jnp.where(accept, log_abs_proposal, log_abs)
            return (positions, log_abs, accepted + jnp.mean(accept.astype(positions.dtype))), None

        zero = jnp.zeros((), state.positions.dtype)
        (positions, log_abs, accepted), _ = jax.lax.scan(
            move, (state.positions, state.log_abs_psi, zero), jax.random.split(key, steps)
        )
        acceptance = accepted / steps
        step = state.step_size * jnp.exp(adapt_rate * (acceptance - target_acceptance))
        step = jnp.clip(step, min_step, max_step)
        return MCMCState(positions, log_abs, step), acceptance

    return MCMC(init, update)


def initial_positions(key, molecule, n_walkers: int, *, width: float = 1.0) -> jnp.ndarray:
    """(n_walkers, n_elec * 3) starting positions: electrons Gaussian-distributed around the nuclei.

    Electrons are assigned to atoms in proportion to the nuclear charges (neutral atoms first), up
    and down alternating, so every walker starts near the right atomic densities; ``width`` in bohr.
    """
    n_up, n_down = molecule.nelec
    charges = np.asarray(molecule.atomic_numbers, dtype=int).copy()
    # Place electrons one at a time, alternately up and down, on the atom with most charge left.
    owner_up: list[int] = []
    owner_down: list[int] = []
    remaining = charges.astype(float)
    for i in range(n_up + n_down):
        want_up = len(owner_up) < n_up and (i % 2 == 0 or len(owner_down) >= n_down)
        atom = int(np.argmax(remaining))
        remaining[atom] -= 1.0
        (owner_up if want_up else owner_down).append(atom)
    owners = np.asarray(owner_up + owner_down, dtype=int)
    centres = jnp.asarray(np.asarray(molecule.coords)[owners])  # (n_elec, 3)
    noise = jax.random.normal(key, (n_walkers, owners.size, 3), dtype=centres.dtype)
    return jnp.reshape(centres[None, :, :] + width * noise, (n_walkers, -1))
