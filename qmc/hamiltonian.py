"""Local energy of the molecular Hamiltonian in the Born-Oppenheimer approximation (hartree).

    E_L(x) = (H psi)(x) / psi(x)
           = -1/2 sum_i [ lap_i log|psi| + |grad_i log|psi||^2 ]               (kinetic)
             - sum_{i,m} Z_m / |r_i - R_m| + sum_{i<j} 1 / |r_i - r_j|            (electron-nucleus, e-e)
             + sum_{m<n} Z_m Z_n / |R_m - R_n|                                    (nuclear repulsion)

(Foulkes, Mitas, Needs, Rajagopal, Rev. Mod. Phys. 73, 33 (2001), eq. 28). Working with log|psi|
avoids overflow; the Laplacian comes from :mod:`qmc.laplacian` (Hessian trace or forward Laplacian).
"""

from __future__ import annotations

from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from qmc.laplacian import make_laplacian

LogPsiFn = Callable[[Any, jnp.ndarray], jnp.ndarray]  # (params, (n_elec * 3,)) -> log|psi|
LocalEnergyFn = Callable[[Any, jnp.ndarray], jnp.ndarray]  # (params, (n_elec * 3,)) -> E_L (hartree)


def potential_energy(positions: jnp.ndarray, nuclei: jnp.ndarray, charges: jnp.ndarray) -> jnp.ndarray:
    """Coulomb energy (hartree) of one configuration.

    Args:
      positions: (n_elec * 3,) or (n_elec, 3) electron positions, bohr.
      nuclei: (n_atoms, 3) nuclear positions, bohr.
      charges: (n_atoms,) nuclear charges.
    """
    x = jnp.reshape(positions, (-1, 3))
    n = x.shape[0]
    r_ae = jnp.linalg.norm(x[:, None, :] - nuclei[None, :, :], axis=-1)
    v = -jnp.sum(charges[None, :] / r_ae)
    if n > 1:
        i, j = np.triu_indices(n, k=1)
        v = v + jnp.sum(1.0 / jnp.linalg.norm(x[i] - x[j], axis=-1))
    n_atoms = nuclei.shape[0]
    if n_atoms > 1:
        a, b = np.triu_indices(n_atoms, k=1)
        v = v + jnp.sum(charges[a] * charges[b] / jnp.linalg.norm(nuclei[a] - nuclei[b], axis=-1))
    return v


def make_kinetic_energy(log_abs_psi: LogPsiFn, laplacian: str = "forward") -> LocalEnergyFn:
    """(params, x) -> -1/2 (lap log|psi| + |grad log|psi||^2) for one configuration x (n_elec * 3,)."""

    def kinetic(params, x):
        lap, grad = make_laplacian(lambda y: log_abs_psi(params, y), laplacian)(x)
        return -0.5 * (lap + jnp.sum(grad**2))

    return kinetic


def make_local_energy(log_abs_psi: LogPsiFn, nuclei, charges, laplacian: str = "forward") -> LocalEnergyFn:
    """Local energy E_L(params, x) (hartree) of one configuration x of shape (n_elec * 3,).

    Args:
      log_abs_psi: (params, (n_elec * 3,)) -> log|psi|.
      nuclei: (n_atoms, 3) bohr. charges: (n_atoms,).
      laplacian: ``"forward"`` or ``"hessian"`` (see :mod:`qmc.laplacian`).

    >>> import jax.numpy as jnp
    >>> e_l = make_local_energy(lambda p, x: -jnp.linalg.norm(x), jnp.zeros((1, 3)), jnp.ones(1), "hessian")
    >>> round(float(e_l(None, jnp.array([0.3, -0.2, 0.9]))), 12)  # exact hydrogen 1s
    -0.5
    """
    nuclei = jnp.asarray(nuclei)
    charges = jnp.asarray(charges, dtype=nuclei.dtype)
    kinetic = make_kinetic_energy(log_abs_psi, laplacian)

    def local_energy(params, x):
        x = jnp.reshape(x, (-1,))
        # constants in the walkers' precision, so a float32 run stays float32
        return kinetic(params, x) + potential_energy(x, nuclei.astype(x.dtype), charges.astype(x.dtype))

    return local_energy
