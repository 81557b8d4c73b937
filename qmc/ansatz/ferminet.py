"""FermiNet: a permutation-equivariant neural network of full determinants (atomic units).

Pfau, Spencer, Matthews, Foulkes, "Ab initio solution of the many-electron Schroedinger equation
with deep neural networks", Phys. Rev. Research 2, 033429 (2020). The network is written for one
configuration of electrons and ``vmap``ped by the caller:

* one-electron stream h_i from (r_i - R_m, |r_i - R_m|) for every nucleus m;
* two-electron stream h_ij from (r_i - r_j, |r_i - r_j|);
* each layer feeds electron i the concatenation [h_i, <h_j>_up, <h_j>_down, <h_ij>_j up, <h_ij>_j down]
  (means over same- and opposite-spin electrons, which keeps the network equivariant under
  permutations of same-spin electrons), followed by a dense layer, tanh and a residual connection;
* orbitals phi^k_j(r_i) = (w^k_j . h_i + b) * env^k_j(r_i), separate weights for up and down electrons,
  ``determinants`` full n x n determinants (Spencer et al., arXiv:2011.07125: full determinants, with
  the up electrons in the first n_up rows), and psi = sum_k det[phi^k].

The output is (sign psi, log|psi|), with the sum of determinants taken as a signed log-sum-exp so it
neither overflows nor underflows.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from qmc.ansatz.envelopes import IsotropicEnvelope
from qmc.linalg import slogdet


@dataclasses.dataclass(frozen=True, kw_only=True)
class FermiNetOptions:
    """Size of a FermiNet.

    Attributes:
      hidden_one: widths of the one-electron stream, one entry per layer.
      hidden_two: widths of the two-electron stream, same number of layers as ``hidden_one``.
      determinants: number of full determinants summed in psi.
    """

    hidden_one: tuple[int, ...] = (32, 32, 32)
    hidden_two: tuple[int, ...] = (8, 8, 8)
    determinants: int = 4

    def __post_init__(self):
        if len(self.hidden_one) != len(self.hidden_two) or not self.hidden_one:
            raise ValueError(
                f"hidden_one {self.hidden_one} and hidden_two {self.hidden_two} must be non-empty and of equal length"
            )
        if self.determinants < 1:
            raise ValueError(f"determinants {self.determinants} must be at least 1")


def electron_features(positions: jnp.ndarray, nuclei: jnp.ndarray):
    """Input features of one configuration.

    Args:
      positions: (n_elec, 3) electron positions, bohr.
      nuclei: (n_atoms, 3) nuclear positions, bohr.

    Returns:
      ae: (n_elec, n_atoms, 3) r_i - R_m; r_ae: (n_elec, n_atoms) |r_i - R_m|;
      ee: (n_elec, n_elec, 3) r_i - r_j; r_ee: (n_elec, n_elec) |r_i - r_j| with a zero diagonal.
    """
    n = positions.shape[0]
    ae = positions[:, None, :] - nuclei[None, :, :]
    r_ae = jnp.linalg.norm(ae, axis=-1)
    ee = positions[:, None, :] - positions[None, :, :]
    eye = jnp.eye(n, dtype=positions.dtype)
    # |0| has an infinite derivative: shift the (identically zero) diagonal away from 0 before the
    # norm and mask it after, so every derivative of r_ee stays finite.
    r_ee = jnp.linalg.norm(ee + eye[..., None], axis=-1) * (1.0 - eye)
    return ae, r_ae, ee, r_ee


def signed_logsumexp(signs: jnp.ndarray, logs: jnp.ndarray):
    """(sign, log|sum_k signs_k exp(logs_k)|) without overflow; shapes (n,) -> ((), ())."""
    shift = jax.lax.stop_gradient(jnp.max(logs))
    total = jnp.sum(signs * jnp.exp(logs - shift))
    return jnp.sign(total), jnp.log(jnp.abs(total)) + shift


def _spin_means(h: jnp.ndarray, n_up: int, axis: int) -> list[jnp.ndarray]:
    """Means of ``h`` over up and over down electrons along ``axis`` (empty spin channels dropped)."""
    n = h.shape[axis]
    groups = [(0, n_up), (n_up, n)]
    return [jnp.mean(jax.lax.slice_in_dim(h, a, b, axis=axis), axis=axis, keepdims=True) for a, b in groups if b > a]


class FermiNet(nn.Module):
    """FermiNet for one configuration; ``__call__(positions) -> (sign, log|psi|)``.

    Attributes:
      nuclei: nuclear positions in bohr, a tuple of (x, y, z) tuples (static).
      n_up, n_down: numbers of spin-up and spin-down electrons (up electrons come first).
      options: network sizes.
    """

    nuclei: tuple[tuple[float, float, float], ...]
    n_up: int
    n_down: int
    options: FermiNetOptions

    @nn.compact
    def orbitals(self, positions: jnp.ndarray) -> jnp.ndarray:
        """(determinants, n_elec, n_elec) orbital matrices phi^k_j(r_i) (rows: electrons)."""
        n = self.n_up + self.n_down
        x = jnp.reshape(positions, (n, 3))
        nuclei = jnp.asarray(np.asarray(self.nuclei), dtype=x.dtype)
        ae, r_ae, ee, r_ee = electron_features(x, nuclei)
        h_one = jnp.concatenate([jnp.reshape(ae, (n, -1)), r_ae], axis=-1)
        h_two = jnp.concatenate([ee, r_ee[..., None]], axis=-1)
        n_layers = len(self.options.hidden_one)
        for layer, (width_one, width_two) in enumerate(zip(self.options.hidden_one, self.options.hidden_two)):
            means_one = [jnp.broadcast_to(g, (n, g.shape[-1])) for g in _spin_means(h_one, self.n_up, axis=0)]
            means_two = [t[:, 0, :] for t in _spin_means(h_two, self.n_up, axis=1)]
            features = jnp.concatenate([h_one, *means_one, *means_two], axis=-1)
            new_one = jnp.tanh(nn.Dense(width_one, name=f"one_{layer}")(features))
            h_one = new_one + h_one if new_one.shape == h_one.shape else new_one
            if layer < n_layers - 1:  # the last two-electron layer would feed nothing
                new_two = jnp.tanh(nn.Dense(width_two, name=f"two_{layer}")(h_two))
                h_two = new_two + h_two if new_two.shape == h_two.shape else new_two
        k = self.options.determinants
        blocks = []
        for spin, (start, stop) in enumerate([(0, self.n_up), (self.n_up, n)]):
            if stop == start:
                continue
            linear = nn.Dense(k * n, name=f"orbital_{spin}")(h_one[start:stop])
            envelope = IsotropicEnvelope(k * n, name=f"envelope_{spin}")(r_ae[start:stop])
            blocks.append(linear * envelope)
        phi = jnp.concatenate(blocks, axis=0)  # (n_elec, k * n)
        return jnp.transpose(jnp.reshape(phi, (n, k, n)), (1, 0, 2))

    def __call__(self, positions: jnp.ndarray):
        signs, logdets = slogdet(self.orbitals(positions))
        return signed_logsumexp(signs, logdets)


def make_ferminet(molecule, options: FermiNetOptions | None = None, *, nelec: Sequence[int] | None = None) -> FermiNet:
    """A :class:`FermiNet` module for ``molecule`` (a :class:`basis.molecule.Molecule`)."""
    n_up, n_down = molecule.nelec if nelec is None else nelec
    nuclei = tuple(tuple(float(c) for c in row) for row in np.asarray(molecule.coords))
    return FermiNet(nuclei=nuclei, n_up=int(n_up), n_down=int(n_down), options=options or FermiNetOptions())
