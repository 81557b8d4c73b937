"""Orbital-free DFT of atoms and molecules on molecular grids (3D), next to Kohn-Sham.

The density is the square of one amplitude per spin, expanded in the Gaussian orbital basis:

    rho_s(r) = N_s phi_s(r)^2 / <phi_s|phi_s>,   phi_s = sum_mu c_{s,mu} chi_mu(r),

the square-root parametrisation of Levy, Perdew & Sahni (PRA 30, 2745 (1984)) that the 1D solver
uses too (:func:`dftjax.ofdft.solver.minimize_sqrt`): rho >= 0 and integral rho = N for any c, so the
minimisation is unconstrained. In this form every term but the Pauli kinetic energy is an
integral the Kohn-Sham code already has, with the rank-one "density matrix"
``D_s = N_s c_s c_s^T / (c_s^T S c_s)``:

* von Weizsaecker, exact for one orbital: ``T_vW = sum_s tr(D_s T)`` with the analytic kinetic
  integrals ``T`` (``|grad sqrt(rho_s)|^2 / 2 = N_s |grad phi_s|^2 / (2 <phi|phi>)``);
* nuclear attraction ``tr(D V)``;
* Hartree with density fitting in the auxiliary basis, ``J = 1/2 sum_P (sum_mn B_Pmn D_mn)^2``
  (:func:`dftjax.system._df_factor`, the same fit as ``SCFOptions(density_fit=True)``; M-OFDFT,
  Zhang et al., Nat. Comput. Sci. 4, 210 (2024), likewise works with auxiliary-basis densities);
* exchange-correlation on the Becke/Lebedev grid (:func:`dftjax.fock.xc_energy`);
* the rest of the kinetic energy on the same grid: Thomas-Fermi (TF + lambda vW) or a learned
  Pauli term ``C_F rho^(5/3) G_theta(s, rho)`` (:func:`functionals.kinetic.pauli_mlp`,
  trained by :mod:`dftjax.ofdft.train3d` on Kohn-Sham kinetic energies and potentials).

With ``kinetic="vw"`` a one- or two-electron closed shell (H2, He, HeH+, H3+, Li+) is solved
*exactly* within the basis: phi is the occupied Kohn-Sham orbital and the OF energy equals the
Kohn-Sham energy of the same basis, grid and fit (tested). For more electrons the Pauli term
carries the whole shell structure; a semilocal one cannot (the OF density has no shells), which is
the accuracy limit measured in :mod:`dftjax.ofdft.train3d`.

>>> from basis.molecule import make_molecule
>>> result = solve(make_molecule("He 0 0 0"), MolecularOFOptions(kinetic="vw", basis="6-31g"))
>>> round(float(result.energy), 4)          # = LDA Kohn-Sham in the same basis
-2.8267
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from basis.gto import make_basis
from basis.integrals import one_electron
from basis.molecule import Molecule
from dftjax.fock import xc_energy
from dftjax.ofdft.solver import minimize_lbfgs
from dftjax.system import KSSystem, SCFOptions, build_system, functional_by_name
from functionals import kinetic as kinetic_functionals
from functionals.features import restricted_features_from_density_matrix, features_from_density_matrices

Array = jnp.ndarray

#: Kinetic models of :func:`solve`: name -> von Weizsaecker coefficient and grid energy density.
KINETIC_MODELS = ("vw", "tfvw", "learned")


@dataclasses.dataclass(frozen=True, kw_only=True)
class MolecularOFOptions:
    """Options of a molecular orbital-free calculation (and of its Kohn-Sham reference).

    Attributes:
        kinetic: ``"vw"`` (von Weizsaecker only; exact for one orbital), ``"tfvw"``
            (Thomas-Fermi + lambda vW) or ``"learned"`` (vW + learned Pauli term).
        vw_lambda: lambda of ``"tfvw"`` (1/9: gradient expansion; 1/5 fits atoms).
        xc: exchange-correlation functional (semilocal; PySCF names).
        basis: Gaussian basis of the amplitude phi (and of the Kohn-Sham reference).
        auxbasis: density-fitting basis of the Hartree energy; None: PySCF's J-fit default.
        grid_level: 0-9 as PySCF.
        max_iterations, tolerance: L-BFGS steps and gradient-norm threshold (hartree, in the
            orthonormalised amplitude coordinates).
    """

    kinetic: str = "tfvw"
    vw_lambda: float = 1.0 / 9.0
    xc: str = "lda,vwn"
    basis: str = "def2-svp"
    auxbasis: str | None = None
    grid_level: int = 3
    max_iterations: int = 2000
    tolerance: float = 1e-7

    def scf_options(self, unrestricted: bool, conv_tol: float = 1e-10) -> SCFOptions:
        """The Kohn-Sham options with the same functional, basis, fit and grid."""
        return SCFOptions(xc=self.xc, basis=self.basis, auxbasis=self.auxbasis, density_fit=True,
                          grid_level=self.grid_level, unrestricted=unrestricted, conv_tol=conv_tol,
                          shard_grid=False)


def check_options(options: MolecularOFOptions, molecule: Molecule | None = None, kinetic_params=None) -> None:
    """ValueError on bad options, before any integral is computed."""
    if options.kinetic not in KINETIC_MODELS:
        raise ValueError(f"kinetic must be one of {KINETIC_MODELS}; got {options.kinetic!r}")
    if options.kinetic == "learned" and kinetic_params is None:
        raise ValueError("kinetic='learned' needs kinetic_params (see dftjax.ofdft.train3d.load_pauli)")
    if not (np.isfinite(options.vw_lambda) and options.vw_lambda > 0):
        raise ValueError(f"vw_lambda must be positive; got {options.vw_lambda!r}")
    functional = functional_by_name(options.xc)
    if functional.kind in ("hf", "mgga") or functional.exact_exchange or functional.omega:
        raise ValueError(f"orbital-free DFT needs a density functional (LDA/GGA) for xc; got {options.xc!r}")
    if options.max_iterations < 1 or not options.tolerance > 0:
        raise ValueError("max_iterations must be >= 1 and tolerance > 0")
    if molecule is not None and molecule.n_electrons < 1:
        raise ValueError(f"the molecule has no electrons (charge {molecule.charge})")


class MolecularOFSystem(NamedTuple):
    """The arrays of one geometry (a pytree): the Kohn-Sham system plus what OF needs.

    Attributes:
        ks: :class:`~dftjax.system.KSSystem` (overlap, h_core, DF factor, AO values and weights).
        kinetic: (nao, nao) kinetic-energy integrals T.
        nuclear: (nao, nao) nuclear attraction V (= h_core - T).
        coordinates: (nao, nmo) C with C^T S C = 1 and C^T T C diagonal: phi = C u, the
            coordinates the minimiser works in (kinetic eigenbasis, scaled by
            (t + 1)^-1/2 so that the vW Hessian is well conditioned).
        n_electrons: (2,) alpha and beta electron counts (floats).
    """

    ks: KSSystem
    kinetic: Array
    nuclear: Array
    coordinates: Array
    n_electrons: Array


def build(molecule: Molecule, options: MolecularOFOptions) -> MolecularOFSystem:
    """Integrals, grid, AO values and DF factor of ``molecule`` (see :class:`MolecularOFSystem`)."""
    check_options(options, molecule, kinetic_params=0)
    basis = make_basis(molecule, options.basis)
    ks = build_system(molecule, options.scf_options(unrestricted=molecule.spin != 0), basis)
    coords = jnp.asarray(molecule.coords)
    t = one_electron.kinetic(basis, coords)
    x = ks.orthogonalizer
    eigenvalues, vectors = np.linalg.eigh(np.asarray(x.T @ t @ x))
    coordinates = np.asarray(x) @ vectors / np.sqrt(eigenvalues + 1.0)
    return MolecularOFSystem(ks, t, ks.h_core - t, jnp.asarray(coordinates),
                             jnp.asarray(molecule.nelec, dtype=jnp.float64))


def density_matrices(system: MolecularOFSystem, amplitudes: Array) -> Array:
    """(2, nao, nao) rank-one spin density matrices ``N_s c_s c_s^T / c_s^T S c_s`` of the AO
    amplitudes (2, nao) (alpha, beta; a closed shell has equal rows)."""
    norms = jnp.einsum("si,ij,sj->s", amplitudes, system.ks.overlap, amplitudes)
    # an empty spin channel (the H atom's beta) has N_s = 0 and an arbitrary amplitude: scale 0,
    # with a double where so that neither 0/0 nor its gradient appears
    occupied = system.n_electrons > 0
    scale = jnp.where(occupied, system.n_electrons / jnp.where(occupied, norms, 1.0), 0.0)
    return scale[:, None, None] * amplitudes[:, :, None] * amplitudes[:, None, :]


class EnergyTerms(NamedTuple):
    """OF energy terms (hartree)."""

    von_weizsaecker: Array
    grid_kinetic: Array     # TF or learned Pauli part (without the vW coefficient's share)
    kinetic: Array          # lambda T_vW + grid part
    external: Array
    hartree: Array
    xc: Array
    nuclear_repulsion: Array

    @property
    def total(self) -> Array:
        return self.kinetic + self.external + self.hartree + self.xc + self.nuclear_repulsion


def grid_kinetic_model(options: MolecularOFOptions) -> tuple[float, Callable | None]:
    """(vW coefficient, grid kinetic energy density ``t(params, features)`` or None)."""
    if options.kinetic == "vw":
        return 1.0, None
    if options.kinetic == "tfvw":
        return options.vw_lambda, lambda params, f: kinetic_functionals.thomas_fermi(None, f)
    return 1.0, kinetic_functionals.pauli_mlp


def features(system: MolecularOFSystem, dm: Array, closed_shell: bool):
    """Grid features of spin density matrices (2, nao, nao)."""
    if closed_shell:
        return restricted_features_from_density_matrix(system.ks.ao, dm[0] + dm[1])
    return features_from_density_matrices(system.ks.ao, dm)


def energy_terms(options: MolecularOFOptions, kinetic_params, system: MolecularOFSystem, dm: Array,
                 closed_shell: bool) -> EnergyTerms:
    """:class:`EnergyTerms` of spin density matrices (2, nao, nao) built from amplitudes."""
    vw_coefficient, energy_density = grid_kinetic_model(options)
    total = dm[0] + dm[1]
    vw = jnp.sum(system.kinetic * total)
    grid = jnp.zeros(())
    if energy_density is not None:
        grid = jnp.sum(system.ks.weights * energy_density(kinetic_params, features(system, dm, closed_shell)))
    fitted = jnp.einsum("pij,ij->p", system.ks.df_factor, total)
    functional = functional_by_name(options.xc)
    e_xc = xc_energy(functional, functional.params, system.ks, dm, closed_shell)
    return EnergyTerms(vw, grid, vw_coefficient * vw + grid, jnp.sum(system.nuclear * total),
                       0.5 * jnp.sum(fitted**2), e_xc, system.ks.e_nuc)


class MolecularOFResult(NamedTuple):
    """An OF ground state: energies in hartree, the density as AO density matrices.

    Attributes:
        energy: () total energy.
        terms: :class:`EnergyTerms`.
        density_matrix: (2, nao, nao) spin density matrices (rank one each).
        amplitudes: (2, nao) AO coefficients of phi_alpha, phi_beta (normalised, c^T S c = 1).
        iterations: () L-BFGS steps.
        gradient_norm: () final gradient norm.
        converged: () gradient norm below the tolerance.
        seconds: wall time of the minimisation (compilation included on a first call).
    """

    energy: Array
    terms: EnergyTerms
    density_matrix: Array
    amplitudes: Array
    iterations: Array
    gradient_norm: Array
    converged: Array
    seconds: float


def _amplitudes(system: MolecularOFSystem, u: Array, closed_shell: bool) -> Array:
    c = u @ system.coordinates.T                      # (channels, nao)
    return jnp.concatenate([c, c]) if closed_shell else c


@functools.partial(jax.jit, static_argnames=("options", "closed_shell"))
def _minimise(options: MolecularOFOptions, closed_shell: bool, kinetic_params, system: MolecularOFSystem,
              u0: Array):
    def objective(u):
        dm = density_matrices(system, _amplitudes(system, u, closed_shell))
        return energy_terms(options, kinetic_params, system, dm, closed_shell).total

    u, grad_norm, iterations = minimize_lbfgs(objective, u0, options.max_iterations, options.tolerance)
    u = u / jnp.linalg.norm(u, axis=1, keepdims=True)
    c = _amplitudes(system, u, closed_shell)
    dm = density_matrices(system, c)
    return u, c, dm, energy_terms(options, kinetic_params, system, dm, closed_shell), iterations, grad_norm


def initial_amplitudes(system: MolecularOFSystem, dm: Array) -> Array:
    """(2, nmo) coordinates u of the least-squares amplitude ``phi_s ~ sqrt(rho_s)`` of spin
    density matrices (2, nao, nao) on the grid (a superposition of atomic densities, or a
    Kohn-Sham density): ``u = C^T integral chi sqrt(rho) dr`` (C^T S C = 1 up to the scaling)."""
    ao = system.ks.ao[0]
    rho = jnp.einsum("gi,sij,gj->sg", ao, dm, ao)
    root = jnp.sqrt(jnp.maximum(rho, 0.0))
    projection = jnp.einsum("g,gi,sg->si", system.ks.weights, ao, root)
    # least squares on the grid (the grid overlap, not the analytic S: then an amplitude that lies
    # in the basis, e.g. sqrt(2)|phi_1s| of a two-electron closed shell, is recovered exactly)
    grid_overlap = jnp.einsum("g,gi,gj->ij", system.ks.weights, ao, ao)
    c = jnp.linalg.solve(grid_overlap, projection.T).T
    u = c @ jnp.linalg.pinv(system.coordinates).T
    norms = jnp.linalg.norm(u, axis=1, keepdims=True)
    # an empty channel (no density to fit) gets the first coordinate: any amplitude will do
    first = jnp.zeros_like(u).at[:, 0].set(1.0)
    return jnp.where(norms > 0, u / jnp.where(norms > 0, norms, 1.0), first)


def solve(molecule: Molecule, options: MolecularOFOptions = MolecularOFOptions(), kinetic_params=None,
          system: MolecularOFSystem | None = None, initial_dm: Array | None = None) -> MolecularOFResult:
    """Minimise the OF energy of ``molecule`` over the amplitudes phi_s (L-BFGS).

    Args:
        molecule: the molecule (closed shells are restricted: one amplitude for both spins).
        options: :class:`MolecularOFOptions`.
        kinetic_params: parameters of the learned Pauli term (``kinetic="learned"``).
        system: a prebuilt :func:`build` of the same molecule and options (e.g. to time the
            minimisation alone).
        initial_dm: (2, nao, nao) spin density matrices to start from; default: PySCF's
            superposition of atomic densities (minao), as the Kohn-Sham guess.
    """
    check_options(options, molecule, kinetic_params)
    closed_shell = molecule.spin == 0
    if system is None:
        system = build(molecule, options)
    if initial_dm is None:
        from dftjax.scf import initial_density

        initial_dm = initial_density(molecule, system.ks, options.scf_options(not closed_shell))
    u0 = initial_amplitudes(system, jnp.asarray(initial_dm))
    if closed_shell:
        u0 = u0[:1]
    start = time.perf_counter()
    u, c, dm, terms, iterations, grad_norm = jax.block_until_ready(
        _minimise(options, closed_shell, kinetic_params, system, u0))
    seconds = time.perf_counter() - start
    if not np.isfinite(float(terms.total)):
        raise FloatingPointError(f"OF minimisation of {molecule!r} gave a non-finite energy")
    return MolecularOFResult(terms.total, terms, dm, c, iterations, grad_norm,
                             grad_norm <= options.tolerance, seconds)


def density_difference(system: MolecularOFSystem, dm_a: Array, dm_b: Array) -> Array:
    """() ``integral |rho_a - rho_b| dr`` (electrons) of two sets of spin density matrices
    (2, nao, nao) on the system's grid."""
    ao = system.ks.ao[0]
    diff = dm_a[0] + dm_a[1] - dm_b[0] - dm_b[1]
    return jnp.sum(system.ks.weights * jnp.abs(jnp.einsum("gi,ij,gj->g", ao, diff, ao)))


class KohnShamReference(NamedTuple):
    """A Kohn-Sham solution in the OF options' basis, grid and fit (hartree).

    Attributes:
        energy: () total energy.
        kinetic_energy: () T_s = tr(D T).
        density_matrix: (2, nao, nao).
        orbital_energies: (2, nmo).
        seconds: wall time of ``run_scf``.
    """

    energy: float
    kinetic_energy: float
    density_matrix: np.ndarray
    orbital_energies: np.ndarray
    seconds: float


def kohn_sham(molecule: Molecule, options: MolecularOFOptions, system: MolecularOFSystem | None = None,
              conv_tol: float = 1e-10) -> KohnShamReference:
    """The Kohn-Sham reference (``dftjax.scf.run_scf``) with the same functional, basis, grid and
    density fitting as the OF calculation."""
    from dftjax.scf import run_scf

    check_options(options, molecule, kinetic_params=0)
    result = run_scf(molecule, options.scf_options(molecule.spin != 0, conv_tol))
    if not result.converged:
        raise RuntimeError(f"Kohn-Sham reference of {molecule!r} did not converge")
    if system is None:
        system = build(molecule, options)
    dm = np.asarray(result.dm)
    t = float(np.sum(np.asarray(system.kinetic) * (dm[0] + dm[1])))
    return KohnShamReference(float(result.energy), t, dm, np.asarray(result.mo_energy), float(result.wall_time_s))


__all__ = ["KINETIC_MODELS", "MolecularOFOptions", "MolecularOFSystem", "MolecularOFResult", "EnergyTerms",
           "KohnShamReference", "build", "check_options", "density_difference", "density_matrices",
           "energy_terms", "features", "initial_amplitudes", "kohn_sham", "solve"]
