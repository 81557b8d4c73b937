"""Pretraining the neural orbitals on Hartree-Fock orbitals (supervised, before VMC).

FermiNet (Pfau et al., Phys. Rev. Research 2, 033429 (2020), sec. "Pretraining") first fits every
determinant's orbital matrix to the occupied Hartree-Fock orbitals evaluated at sampled electron
positions,

    L = < sum_k sum_ij (phi^k_j(r_i) - phi^HF_j(r_i))^2 >,

which puts the network near a sensible nodal structure and avoids the unstable early VMC steps of a
random network. With full determinants the target is block diagonal: up electrons occupy the up
orbitals (first n_up columns), down electrons the down orbitals, zeros elsewhere.

The Hartree-Fock orbitals come from PySCF's UHF in a small basis and are evaluated in JAX through
:func:`basis.ao.ao_values`, so sampling from |Psi_HF|^2 (a product of spin determinants) is one jitted
Metropolis kernel of :mod:`qmc.mcmc`, like the VMC sampler. Positions are in bohr.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from basis.ao import ao_values
from basis.gto import make_basis
from qmc.linalg import slogdet
from qmc.mcmc import MCMCState, make_metropolis


class HartreeFock(NamedTuple):
    """Occupied UHF orbitals of a molecule, evaluable in JAX.

    Attributes:
      orbitals: (n_elec * 3,) positions -> (n_elec, n_elec) block-diagonal target matrix
        [phi^up_j(r_i) | 0 ; 0 | phi^down_j(r_i)] (rows: electrons, up first).
      log_abs_psi: (n_elec * 3,) -> log|det up| + log|det down| of the UHF Slater determinant.
      energy: the UHF total energy (hartree).
      mo_coeff: occupied UHF coefficients, (nao, n_up) and (nao, n_down), PySCF's AO order.
      atomic_orbitals: (n_points, 3) bohr -> (n_points, nao) AO values, computed in the points' dtype.
      mol: the built ``pyscf.gto.Mole`` in the HF basis (for derived constants such as cusp corrections).
    """

    orbitals: Callable[[jnp.ndarray], jnp.ndarray]
    log_abs_psi: Callable[[jnp.ndarray], jnp.ndarray]
    energy: float
    mo_coeff: tuple[np.ndarray, np.ndarray]
    atomic_orbitals: Callable[[jnp.ndarray], jnp.ndarray]
    mol: Any


def hartree_fock(molecule, basis: str = "cc-pvdz") -> HartreeFock:
    """UHF (PySCF) occupied orbitals of ``molecule`` in ``basis``, as JAX functions of positions."""
    from pyscf import scf

    n_up, n_down = molecule.nelec
    mol = molecule.to_pyscf(basis=basis)
    mf = scf.UHF(mol)
    mf.verbose = 0
    energy = float(mf.kernel())
    mo_up = np.asarray(mf.mo_coeff[0][:, :n_up])
    mo_down = np.asarray(mf.mo_coeff[1][:, :n_down])
    ao_basis = make_basis(molecule, basis)
    n = n_up + n_down

    def atomic_orbitals(points):
        # constants follow the points' dtype, so a float32 VMC evaluates the baseline in float32
        dtype = points.dtype
        cast = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), ao_basis)
        return ao_values(cast, jnp.asarray(molecule.coords, dtype), points)[0]

    def orbitals(positions):
        x = jnp.reshape(positions, (n, 3))
        ao = atomic_orbitals(x)  # (n_elec, nao)
        up = ao[:n_up] @ jnp.asarray(mo_up, x.dtype)  # (n_up, n_up)
        down = ao[n_up:] @ jnp.asarray(mo_down, x.dtype)  # (n_down, n_down)
        return spin_block_diagonal(up, down)

    def log_abs_psi(positions):
        return slogdet(orbitals(positions))[1]

    return HartreeFock(orbitals, log_abs_psi, energy, (mo_up, mo_down), atomic_orbitals, mol)


def spin_block_diagonal(up: jnp.ndarray, down: jnp.ndarray) -> jnp.ndarray:
    """[up | 0 ; 0 | down] from (n_up, n_up) and (n_down, n_down) orbital blocks (rows: electrons)."""
    n_up, n_down = up.shape[0], down.shape[0]
    top = jnp.concatenate([up, jnp.zeros((n_up, n_down), up.dtype)], axis=1)
    bottom = jnp.concatenate([jnp.zeros((n_down, n_up), up.dtype), down], axis=1)
    return jnp.concatenate([top, bottom], axis=0)


class PretrainState(NamedTuple):
    """Parameters, Adam state and the walkers sampling |Psi_HF|^2."""

    params: Any
    opt_state: Any
    mcmc: MCMCState


def make_pretrain_step(module, hf: HartreeFock, *, learning_rate: float = 3e-3, mcmc_steps: int = 5):
    """(init, step) for orbital pretraining; ``step(state, key) -> (state, loss)`` is jitted.

    ``module`` is an ansatz with an ``orbitals`` method returning (determinants, n_elec, n_elec).
    """
    optimizer = optax.adam(learning_rate)
    mcmc = make_metropolis(jax.vmap(lambda p, x: hf.log_abs_psi(x), (None, 0)), steps=mcmc_steps)

    def loss_fn(params, positions):
        orbitals = jax.vmap(lambda x: module.apply(params, x, method="orbitals"))(positions)  # (W, K, n, n)
        target = jax.vmap(hf.orbitals)(positions)  # (W, n, n)
        return jnp.mean(jnp.sum((orbitals - target[:, None, :, :]) ** 2, axis=(-1, -2)))

    def init(params, positions) -> PretrainState:
        return PretrainState(params, optimizer.init(params), mcmc.init(None, positions))

    @jax.jit
    def step(state: PretrainState, key):
        walkers, _ = mcmc.update(None, state.mcmc, key)
        loss, grad = jax.value_and_grad(loss_fn)(state.params, walkers.positions)
        updates, opt_state = optimizer.update(grad, state.opt_state, state.params)
        return PretrainState(optax.apply_updates(state.params, updates), opt_state, walkers), loss

    return init, step


def pretrain(module, params, molecule, positions, key, *, iterations: int = 200, basis: str = "cc-pvdz",
             learning_rate: float = 3e-3, hf: HartreeFock | None = None,
             progress: Callable[[int, float], None] | None = None):
    """Fit ``params`` to UHF orbitals (``hf``, or computed in ``basis``) for ``iterations`` Adam steps.

    Returns:
      (params, positions, losses): fitted parameters, (W, n_elec * 3) walkers distributed as
      |Psi_HF|^2 (a good start for VMC burn-in), and the (iterations,) loss history.
    """
    hf = hf or hartree_fock(molecule, basis)
    init, step = make_pretrain_step(module, hf, learning_rate=learning_rate)
    state = init(params, positions)
    losses = np.zeros(iterations)
    for i, subkey in enumerate(jax.random.split(key, iterations)):
        state, loss = step(state, subkey)
        losses[i] = float(loss)
        if progress is not None:
            progress(i, losses[i])
    return state.params, state.mcmc.positions, losses
