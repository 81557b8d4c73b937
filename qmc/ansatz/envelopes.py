"""Envelopes: the decay of neural orbitals far from the nuclei (bohr^-1 exponents).

A neural orbital phi_k(r_i) is multiplied by an envelope that enforces the exponential decay of a
bound state. The isotropic envelope of FermiNet (Pfau et al., Phys. Rev. Research 2, 033429 (2020),
eq. 5 with the anisotropic Sigma replaced by a scalar, as in Spencer et al., arXiv:2011.07125) is

    env_k(r_i) = sum_m pi_km exp(-sigma_km |r_i - R_m|).

The decay uses |sigma_km|, so it stays a decay whatever sign the optimiser gives the raw parameter;
pi and sigma start at 1.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


class IsotropicEnvelope(nn.Module):
    """Isotropic exponential envelope for ``n_orbitals`` orbitals.

    Call with ``distances``: (n_electrons, n_atoms) electron-nucleus distances |r_i - R_m| (bohr).
    Returns (n_electrons, n_orbitals) envelope values (dimensionless, positive for pi > 0).
    """

    n_orbitals: int

    @nn.compact
    def __call__(self, distances: jnp.ndarray) -> jnp.ndarray:
        n_atoms = distances.shape[-1]
        pi = self.param("pi", nn.initializers.ones, (n_atoms, self.n_orbitals), distances.dtype)
        sigma = self.param("sigma", nn.initializers.ones, (n_atoms, self.n_orbitals), distances.dtype)
        # |sigma| keeps the decay a decay whichever sign the optimiser pushes the raw parameter to.
        decay = jnp.exp(-distances[:, :, None] * jnp.abs(sigma)[None, :, :])  # (n_elec, n_atoms, n_orb)
        return jnp.sum(decay * pi[None, :, :], axis=1)
