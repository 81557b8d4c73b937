"""PauliNet: Hartree-Fock orbitals dressed by a graph network, with Jastrow factor and cusps (atomic units).

Hermann, Schaetzle, Noe, "Deep-neural-network solution of the electronic Schroedinger equation",
Nat. Chem. 12, 891 (2020). For one configuration of electrons r_i (up electrons first):

    psi(r) = exp(J(r)) * sum_k det[ phi^HF_mu(r_i) * (1 + kappa^k_mu(x_i)) ]

* phi^HF: occupied UHF orbitals from PySCF in a Gaussian basis, cusp-corrected (below), evaluated in
  JAX (through :func:`qmc.pretrain.hartree_fock`); the matrix is block diagonal in spin (up electrons fill up
  orbitals), so each determinant is det_up * det_down.
* x_i: electron embeddings from a SchNet-like graph network over electrons and nuclei (paper, eq. 4):
  x_i^0 = Y_spin(i);  x_i^{l+1} = x_i^l + sum_{j != i} w^l(e_ij) * h^l(x_j^l) + sum_m w'^l(e_im) * Y_m,
  with edge features e = radial basis functions exp(-|r|^2 / s_q) of squared distances. Functions of
  squared distances are smooth where particles meet, so the network never spoils the cusps below.
* kappa^k: multiplicative backflow, a dense layer from x_i (zero at initialisation: psi starts as HF).
* J = sum_i eta(x_i) + sum_{i<j} a_ij r_ij / (1 + r_ij): a permutation-invariant network term plus the
  fixed electron-electron cusp (Kato: a = 1/2 for opposite spins, 1/4 for like spins).
* nuclear cusps: Gaussian orbitals have zero radial slope at a nucleus; inside a sphere of radius
  ``cusp_radius`` around each nucleus every baseline orbital gets a polynomial that gives it Kato's
  cusp and keeps it C^2 at the sphere (:mod:`qmc.ansatz.cusp`, after Ma, Towler, Drummond, Needs,
  J. Chem. Phys. 122, 224322 (2005), as in the paper). The network features are smooth functions of
  squared distances and so add no slope at a nucleus: the cusp of the baseline is the cusp of psi.

At initialisation the backflow and Jastrow weights are zero, so psi is exactly the cusp-corrected
UHF determinant times the fixed electron-electron cusp factor (the "HF baseline"); training starts
from the Hartree-Fock energy and only improves on it (Hermann et al., Methods).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from qmc.ansatz.ferminet import signed_logsumexp
from qmc.linalg import slogdet


@dataclasses.dataclass(frozen=True, kw_only=True)
class PauliNetOptions:
    """Size and baseline of a PauliNet.

    Attributes:
      basis: Gaussian basis of the UHF baseline (PySCF name).
      embedding: width of the electron embeddings x_i. layers: graph-convolution layers.
      radial: number of radial basis functions of squared distances (widths 0.1 ... 10 bohr^2).
      determinants: backflow determinants summed in psi.
      cusp_radius: largest r_c (bohr) of the nuclear cusp correction of the baseline orbitals (the
        radius is chosen per orbital and nucleus up to it, :mod:`qmc.ansatz.cusp`); must stay below
        half the shortest internuclear distance. None: 0.5 bohr, or 0.4 times the shortest
        internuclear distance if that is less. 0 switches the correction off.
    """

    basis: str = "cc-pvdz"
    embedding: int = 32
    layers: int = 2
    radial: int = 8
    determinants: int = 1
    cusp_radius: float | None = None

    def __post_init__(self):
        if self.embedding < 1 or self.layers < 0 or self.radial < 1 or self.determinants < 1:
            raise ValueError(f"PauliNet sizes must be positive: {self}")
        if self.cusp_radius is not None and self.cusp_radius < 0:
            raise ValueError(f"cusp_radius {self.cusp_radius} must be non-negative")


def radial_features(squared_distances: jnp.ndarray, n: int) -> jnp.ndarray:
    """(...,) squared distances (bohr^2) -> (..., n) Gaussians exp(-d^2 / s_q), s_q log-spaced 0.1..10."""
    widths = jnp.asarray(np.logspace(-1.0, 1.0, n), dtype=squared_distances.dtype)
    return jnp.exp(-squared_distances[..., None] / widths[(None,) * squared_distances.ndim])


def electron_cusp_jastrow(x: jnp.ndarray, n_up: int) -> jnp.ndarray:
    """sum_{i<j} a_ij r_ij / (1 + r_ij), a = 1/2 (opposite spins) or 1/4 (like spins); x (n_elec, 3)."""
    n = x.shape[0]
    if n < 2:
        return jnp.zeros((), x.dtype)
    i, j = np.triu_indices(n, k=1)
    r = jnp.linalg.norm(x[i] - x[j], axis=-1)  # i < j: never zero away from coalescence
    same = (i < n_up) == (j < n_up)
    a = jnp.asarray(np.where(same, 0.25, 0.5), dtype=x.dtype)
    return jnp.sum(a * r / (1.0 + r))


class PauliNet(nn.Module):
    """PauliNet for one configuration; ``__call__(positions) -> (sign, log|psi|)``.

    Attributes:
      nuclei: nuclear positions (bohr), tuple of (x, y, z). charges: nuclear charges.
      n_up, n_down: electrons per spin (up first). options: sizes.
      hf_orbitals: (n_elec * 3,) -> (n_elec, n_elec) block-diagonal matrix of the cusp-corrected
        occupied UHF orbitals (:func:`baseline_orbitals`).
      hf_energy: the UHF energy of the baseline (hartree); tells :func:`qmc.train.run_vmc` that this
        ansatz starts at Hartree-Fock and needs no orbital pretraining.
    """

    nuclei: tuple[tuple[float, float, float], ...]
    charges: tuple[float, ...]
    n_up: int
    n_down: int
    options: PauliNetOptions
    hf_orbitals: Callable[[jnp.ndarray], jnp.ndarray]
    hf_energy: float | None = None

    def setup(self):
        options, n = self.options, self.n_up + self.n_down
        self.spin_embedding = nn.Embed(2, options.embedding)
        self.nuclear_embedding = nn.Embed(len(self.nuclei), options.embedding)
        self.w_ee = [nn.Dense(options.embedding) for _ in range(options.layers)]
        self.w_ae = [nn.Dense(options.embedding) for _ in range(options.layers)]
        self.messages = [nn.Dense(options.embedding) for _ in range(options.layers)]
        # zero-initialised backflow and Jastrow: the network starts as the Hartree-Fock determinant
        self.backflow = nn.Dense(options.determinants * n, kernel_init=nn.initializers.zeros)
        self.jastrow = nn.Dense(1, kernel_init=nn.initializers.zeros)

    def _embeddings(self, x: jnp.ndarray, nuclei: jnp.ndarray) -> jnp.ndarray:
        """(n_elec, embedding) electron embeddings x_i of the graph network; x (n_elec, 3)."""
        n = x.shape[0]
        options = self.options
        spins = jnp.asarray(np.arange(n) >= self.n_up, dtype=jnp.int32)
        h = self.spin_embedding(spins).astype(x.dtype)
        ee = x[:, None, :] - x[None, :, :]
        e_ee = radial_features(jnp.sum(ee**2, axis=-1), options.radial)  # (n, n, Q), smooth at r_ij = 0
        ae = x[:, None, :] - nuclei[None, :, :]
        e_ae = radial_features(jnp.sum(ae**2, axis=-1), options.radial)  # (n, M, Q)
        not_self = jnp.asarray(1.0 - np.eye(n), dtype=x.dtype)[:, :, None]
        nuclear = self.nuclear_embedding(jnp.arange(nuclei.shape[0])).astype(x.dtype)  # Y_m, (M, E)
        for w_ee, w_ae, message in zip(self.w_ee, self.w_ae, self.messages):
            from_electrons = jnp.sum(w_ee(e_ee) * not_self * message(h)[None, :, :], axis=1)
            from_nuclei = jnp.sum(w_ae(e_ae) * nuclear[None, :, :], axis=1)
            h = h + jnp.tanh(from_electrons + from_nuclei)
        return h

    def _orbitals(self, x: jnp.ndarray, h: jnp.ndarray) -> jnp.ndarray:
        n, k = x.shape[0], self.options.determinants
        kappa = jnp.transpose(jnp.reshape(self.backflow(h), (n, k, n)), (1, 0, 2))  # (K, n, n)
        return self.hf_orbitals(jnp.reshape(x, (-1,)))[None, :, :] * (1.0 + kappa)

    def orbitals(self, positions: jnp.ndarray) -> jnp.ndarray:
        """(determinants, n_elec, n_elec) matrices phi^HF_mu(r_i) (1 + kappa^k_mu(x_i)), rows electrons."""
        x = jnp.reshape(positions, (self.n_up + self.n_down, 3))
        nuclei = jnp.asarray(np.asarray(self.nuclei), dtype=x.dtype)
        return self._orbitals(x, self._embeddings(x, nuclei))

    def __call__(self, positions: jnp.ndarray):
        x = jnp.reshape(positions, (self.n_up + self.n_down, 3))
        nuclei = jnp.asarray(np.asarray(self.nuclei), dtype=x.dtype)
        h = self._embeddings(x, nuclei)
        signs, logdets = slogdet(self._orbitals(x, h))
        sign, log_abs = signed_logsumexp(signs, logdets)
        log_abs = log_abs + jnp.sum(self.jastrow(h)) + electron_cusp_jastrow(x, self.n_up)
        return sign, log_abs


def baseline_orbitals(molecule, hf, cusp_radius: float, nelec: Sequence[int]) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """(n_elec * 3,) -> (n_elec, n_elec) block-diagonal matrix of the occupied UHF orbitals of ``hf``
    (:class:`qmc.pretrain.HartreeFock`), cusp-corrected within ``cusp_radius`` bohr of each nucleus
    (0: uncorrected); evaluated in the positions' dtype."""
    from qmc.ansatz.cusp import cusp_coefficients, cusp_correction
    from qmc.pretrain import spin_block_diagonal

    if cusp_radius <= 0:
        return hf.orbitals
    n_up, n_down = nelec
    mo_up, mo_down = hf.mo_coeff
    cusps = [cusp_coefficients(molecule, hf.mol, mo, cusp_radius) for mo in (mo_up, mo_down)]
    coords = np.asarray(molecule.coords)

    def orbitals(positions):
        x = jnp.reshape(positions, (n_up + n_down, 3))
        ao = hf.atomic_orbitals(x)
        up = ao[:n_up] @ jnp.asarray(mo_up, x.dtype)
        down = ao[n_up:] @ jnp.asarray(mo_down, x.dtype)
        r_ae = jnp.linalg.norm(x[:, None, :] - jnp.asarray(coords, x.dtype)[None, :, :], axis=-1)
        up = up + cusp_correction(r_ae[:n_up], ao[:n_up], cusps[0])
        down = down + cusp_correction(r_ae[n_up:], ao[n_up:], cusps[1])
        return spin_block_diagonal(up, down)

    return orbitals


def make_paulinet(molecule, options: PauliNetOptions | None = None, *, nelec: Sequence[int] | None = None) -> PauliNet:
    """A :class:`PauliNet` for ``molecule``; runs PySCF's UHF in ``options.basis`` for the baseline."""
    from qmc.pretrain import hartree_fock

    options = options or PauliNetOptions()
    n_up, n_down = molecule.nelec if nelec is None else nelec
    hf = hartree_fock(molecule, options.basis)
    if (n_up, n_down) != tuple(molecule.nelec):
        raise ValueError(f"nelec {(n_up, n_down)} differs from the molecule's {molecule.nelec}: the UHF baseline has the latter")
    nuclei = tuple(tuple(float(c) for c in row) for row in np.asarray(molecule.coords))
    charges = tuple(float(z) for z in np.asarray(molecule.atomic_numbers))
    return PauliNet(nuclei=nuclei, charges=charges, n_up=int(n_up), n_down=int(n_down), options=options,
                    hf_orbitals=baseline_orbitals(molecule, hf, default_cusp_radius(molecule, options.cusp_radius),
                                                  (n_up, n_down)), hf_energy=hf.energy)


def default_cusp_radius(molecule, cusp_radius: float | None) -> float:
    """``cusp_radius``, or for None 0.5 bohr capped at 0.4 times the shortest internuclear distance."""
    if cusp_radius is not None:
        return float(cusp_radius)
    coords = np.asarray(molecule.coords)
    if len(coords) < 2:
        return 0.5
    distances = np.linalg.norm(coords[:, None] - coords[None], axis=-1)[np.triu_indices(len(coords), 1)]
    return float(min(0.5, 0.4 * distances.min()))
