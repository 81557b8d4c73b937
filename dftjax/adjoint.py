"""Differentiating through the SCF: implicit (fixed-point) and unrolled adjoints.

:func:`make_scf_function` turns a molecule and :class:`~dftjax.system.SCFOptions` into a pure
function of the quantities a researcher varies, :class:`SCFInputs` ``(coords, field, params,
exponents)``, returning :class:`SCFOutput` (energy, spin density matrices, orbitals, dipole).
``jax.grad``, ``jax.jacfwd``, ``jax.jacrev`` and ``jax.hessian`` apply to it. How derivatives pass
through the SCF is an explicit choice:

* ``adjoint="implicit"``: the SCF is converged (``lax.while_loop``, CDIIS, not differentiated) and
  derivatives come from the implicit function theorem at the fixed point ``D* = Phi(D*, theta)``,
  where ``Phi`` builds the Fock matrix of ``D`` and returns its aufbau density matrix:
  ``dD* = (1 - d_D Phi)^-1 d_theta Phi dtheta``. The linear response is solved by GMRES inside
  ``lax.custom_linear_solve``, so reverse mode (the transposed solve), forward mode and their
  compositions (Hessians) all work, and memory does not depend on the number of SCF iterations.
  Energies use the variational shortcut: at a converged SCF the energy is stationary in the
  orbitals, so with ``C(theta)`` the converged occupied orbitals re-orthonormalised in the overlap
  ``S(theta)``, ``D(theta) = C0 (C0^T S(theta) C0)^-1 C0^T`` and ``dE/dtheta = partial_theta
  E_KS[D(theta), theta]`` with no orbital response: the Pulay / energy-weighted-density term comes
  from differentiating ``(C0^T S C0)^-1`` (Pople, Krishnan, Schlegel, Binkley, Int. J. Quantum Chem.
  Symp. 13, 225 (1979); for the grid-weight term, Johnson, Gill, Pople, J. Chem. Phys. 98, 5612
  (1993)). Second derivatives differentiate that rule once more and pick up the response of ``C0``
  through the implicit density (coupled-perturbed KS).
* ``adjoint="unrolled"``: ``n_steps`` SCF iterations (CDIIS included) as a ``lax.scan`` from the
  initial guess, differentiated step by step (each step under ``jax.checkpoint``): the derivative of
  what the truncated SCF computes, which is what Kohn-Sham-regulariser training (Li et al., PRL
  126, 036401 (2021)) needs.

Everything geometry-dependent is rebuilt from ``coords`` inside the function (:func:`system_at`):
overlap, core Hamiltonian, ERIs or density-fitting factors, the grid points and Becke weights
(so forces include the grid-weight response) and the AO values on the grid. ``grid_response=False``
freezes the grid in space instead (derivatives of its points and weights are dropped): the
convention of PySCF's gradients with ``grid_response = False`` and of its RKS Hessian, which omits
the grid-weight terms. An external uniform
electric field ``F`` adds ``F . r`` to the one-electron Hamiltonian and ``-F . sum_A Z_A R_A`` to
the nuclear energy, so that the dipole is ``mu = -dE/dF`` and the polarizability
``alpha = -d2E/dF2``.

Diagonalisation uses :func:`eigh_safe`, whose derivative ignores couplings between (near-)degenerate
eigenvectors: the density matrix only depends on the occupied subspace, so degenerate occupied
orbitals (NH3, benzene) leave its derivative finite where ``jnp.linalg.eigh``'s would be NaN.

>>> from basis.molecule import make_molecule
>>> from dftjax.system import SCFOptions
>>> scf = make_scf_function(make_molecule("H 0 0 0; H 0 0 0.74"), SCFOptions(xc="lda,vwn", basis="sto-3g"))
>>> forces = -jax.grad(lambda c: scf.energy(scf.inputs._replace(coords=c)))(scf.inputs.coords)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from basis.ao import ao_values
from basis.grids import grid_points_weights, make_grid_spec
from basis.gto import Basis, make_auxbasis, make_basis
from basis.integrals import one_electron, two_electron
from basis.molecule import Molecule, nuclear_repulsion
from dftjax.fock import coulomb_exchange, exchange_coefficients, fock_and_energy, xc_energy, _exchange
from dftjax.mixing import diis, no_mixing
from dftjax.scf import SCFState, initial_density
from dftjax.system import KSSystem, SCFOptions, check_options
from functionals import Functional

__all__ = [
    "ADJOINTS", "HybridParams", "SCFInputs", "SCFOutput", "DifferentiableSCF", "make_scf_function", "system_at",
    "eigh_safe", "renormalised_coefficients", "total_energy",
]

ADJOINTS = ("implicit", "unrolled")

# Eigenvalue splittings below this (Ha) count as degenerate in eigh_safe's derivative.
DEGENERACY_THRESHOLD = 1e-9


# ---------------------------------------------------------------------------------------------
# Diagonalisation with a derivative that tolerates degenerate eigenvalues


@jax.custom_jvp
def eigh_safe(a):
    """Eigenvalues (n,) ascending and eigenvectors (n, n) of a symmetric matrix (n, n).

    The same values as ``jnp.linalg.eigh``; the derivative is first-order perturbation theory,
    ``dU = U (G * f)``, ``G = U^T dA U``, ``f_ij = 1 / (e_j - e_i)``, with ``f_ij = 0`` where
    ``|e_j - e_i| < DEGENERACY_THRESHOLD``: a rotation inside a degenerate subspace is a gauge
    choice that projectors onto whole subspaces (density matrices, energies) do not see.
    """
    e, u = jnp.linalg.eigh(a)
    return e, u


@eigh_safe.defjvp
def _eigh_safe_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    e, u = eigh_safe(a)
    g = u.T @ (0.5 * (da + da.T)) @ u
    gap = e[None, :] - e[:, None]
    degenerate = jnp.abs(gap) < DEGENERACY_THRESHOLD
    f = jnp.where(degenerate, 0.0, 1.0 / jnp.where(degenerate, 1.0, gap))
    return (e, u), (jnp.diagonal(g), u @ (f * g))


# ---------------------------------------------------------------------------------------------
# Inputs, outputs and the differentiable system


class SCFInputs(NamedTuple):
    """The differentiable inputs of an SCF (a pytree).

    Attributes:
      coords: (n_atoms, 3) nuclear positions, bohr.
      field: (3,) uniform external electric field, atomic units (Ha / (e bohr)).
      params: functional parameters pytree (``Functional.params`` by default).
      exponents: (n_shells, max_nprim) orbital-basis primitive exponents, bohr^-2; contraction
        coefficients are renormalised (:func:`renormalised_coefficients`).
    """

    coords: jax.Array
    field: jax.Array
    params: Any
    exponents: jax.Array


class SCFOutput(NamedTuple):
    """What the differentiable SCF returns (atomic units).

    Attributes:
      energy: () total energy, Ha (including the field terms).
      dm: (2, nao, nao) spin density matrices.
      mo_energy: (2, nao) orbital energies of the Fock matrix of ``dm``, Ha.
      mo_coeff: (2, nao, nao) orbital coefficients (columns), S-orthonormal.
      dipole: (3,) total dipole moment, e bohr (electronic ``-tr(D r)`` plus nuclear ``sum Z R``).
    """

    energy: jax.Array
    dm: jax.Array
    mo_energy: jax.Array
    mo_coeff: jax.Array
    dipole: jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class _Static:
    """Everything about the calculation that is not differentiated (hashable by identity)."""

    functional: Functional
    basis: Basis
    auxbasis: Basis | None
    grid_spec: Any
    atomic_numbers: np.ndarray
    nelec: tuple[int, int]
    unrestricted: bool
    options: SCFOptions
    response_tol: float = 1e-10
    grid_response: bool = True
    response_restart: int = 40
    response_maxiter: int = 10


def renormalised_coefficients(basis: Basis, exponents) -> jax.Array:
    """Contraction coefficients (n_shells, max_nprim) for new exponents, shells kept normalised.

    The basis-set convention fixes the coefficients ``d_p`` of *normalised* primitives
    ``N(a) r^l exp(-a r^2)``, ``N ~ a^((2l+3)/4)``; the contracted function is then normalised
    with ``<g_p|g_q> = (2 sqrt(a_p a_q) / (a_p + a_q))^(l + 3/2)``. At ``basis.exponents`` the
    stored coefficients are returned unchanged.
    """
    a0 = np.asarray(basis.exponents)
    c0 = np.asarray(basis.coefficients)
    l = np.asarray(basis.shell_l, dtype=np.float64)[:, None]
    power = (2.0 * l + 3.0) / 4.0  # (n_shells, 1)

    def self_overlap(a):  # (n_shells,) sum_pq d_p d_q <g_p|g_q>, d_p ~ c0_p / N(a0_p)
        d = c0 / a0**power
        ratio = 2.0 * jnp.sqrt(a[:, :, None] * a[:, None, :]) / (a[:, :, None] + a[:, None, :])
        return jnp.einsum("sp,sq,spq->s", d, d, ratio ** (l[:, :, None] + 1.5))

    exponents = jnp.asarray(exponents)
    scale = jnp.sqrt(self_overlap(jnp.asarray(a0)) / self_overlap(exponents))
    return c0 * (exponents / a0) ** power * scale[:, None]


def _with_exponents(basis: Basis, exponents) -> Basis:
    return dataclasses.replace(basis, exponents=exponents, coefficients=renormalised_coefficients(basis, exponents))


def system_at(static: _Static, coords, field, exponents) -> KSSystem:
    """The :class:`KSSystem` at nuclear positions ``coords`` (bohr), a pure JAX function.

    As :func:`dftjax.system.build_system`, differentiable in ``coords`` (integrals, grid points
    and Becke weights, AO values), the field (3,) and the orbital exponents. The orthogonaliser is
    ``X = L^-T`` with ``S = L L^T`` (smooth in the geometry, unlike a canonical one built from
    eigenvectors of S); no linear dependencies are removed. With ``static.grid_response`` False the
    grid points and weights are those of ``coords`` but carry no derivative (a space-fixed grid).
    """
    functional = static.functional
    if getattr(functional, "needs_grid_coulomb", False):
        raise NotImplementedError(
            f"{functional.name} reads the exact-exchange energy density through grid Coulomb potentials "
            "(PySCF int1e_grids), which are not differentiable in nuclear positions here: no forces, "
            "field or exponent derivatives, and no unrolled adjoint; use dftjax.xc3d.train.converge / "
            "the implicit-adjoint trainer for parameter gradients")
    basis = _with_exponents(static.basis, exponents)
    charges = jnp.asarray(static.atomic_numbers, dtype=jnp.float64)
    s = one_electron.overlap(basis, coords)
    dipole_ints = one_electron.dipole(basis, coords)
    h = (one_electron.kinetic(basis, coords) + one_electron.nuclear_attraction(basis, coords, charges)
         + jnp.einsum("x,xij->ij", field, dipole_ints))
    e_nuc = nuclear_repulsion(static.atomic_numbers, coords) - field @ (charges @ coords)
    low = jnp.linalg.cholesky(s)
    x = jax.scipy.linalg.solve_triangular(low, jnp.eye(s.shape[0]), lower=True).T
    omega = functional.omega
    eri = df = eri_lr = df_lr = jnp.zeros((0,))
    if static.options.density_fit:
        df = _df_factor(basis, static.auxbasis, coords, 0.0)
        if omega:
            df_lr = _df_factor(basis, static.auxbasis, coords, omega)
    else:
        eri = two_electron.electron_repulsion(basis, coords)
        if omega:
            eri_lr = two_electron.electron_repulsion(basis, coords, omega=omega)
    if functional.kind == "hf":
        ao = jnp.zeros((4, 0, basis.nao))
        weights = jnp.zeros((0,))
    else:
        grid_coords = coords if static.grid_response else jax.lax.stop_gradient(coords)
        points, weights = grid_points_weights(static.grid_spec, grid_coords)
        ao = ao_values(basis, coords, points, deriv=1)
    return KSSystem(overlap=s, h_core=h, orthogonalizer=x, e_nuc=e_nuc, eri=eri, df_factor=df,
                    eri_lr=eri_lr, df_factor_lr=df_lr, ao=ao, weights=weights, dipole_ints=dipole_ints)


def _df_factor(basis: Basis, aux: Basis, coords, omega: float):
    """B = L^-1 (P|mu nu) with L L^T = (P|Q) (differentiable version of system._df_factor)."""
    j3 = two_electron.coulomb_3c(basis, aux, coords, omega=omega)
    j2 = two_electron.coulomb_2c(aux, coords, omega=omega)
    naux, nao = j2.shape[0], j3.shape[0]
    j3 = j3.reshape(-1, naux).T
    if omega:
        # The long-range metric is numerically singular (system._df_factor drops eigenvalues by a
        # value-dependent count, which cannot be traced); a differentiable variant is future work.
        raise NotImplementedError("range-separated hybrids with density fitting are not differentiable yet")
    low = jnp.linalg.cholesky(j2)
    return jax.scipy.linalg.solve_triangular(low, j3, lower=True).reshape(naux, nao, nao)


# ---------------------------------------------------------------------------------------------
# The SCF map and its drivers


class HybridParams(NamedTuple):
    """Functional parameters with a differentiable fraction of exact exchange (a pytree).

    Pass as ``SCFInputs.params`` (e.g. ``parameter_gradient(..., params=HybridParams(f.params,
    jnp.asarray(f.exact_exchange)))``) to differentiate with respect to the exact-exchange
    coefficient ``a0`` of a global hybrid: ``E = E_KS[functional] - (a0 - a0_f) E_x^HF`` with
    ``E_x^HF = 1/2 sum_s tr(K[D_s] D_s)`` and ``a0_f`` the functional's own fraction, so the energy
    and Fock matrix (``F_s -= (a0 - a0_f) K[D_s]``) are exactly those of the functional with ``a0``
    (Becke, J. Chem. Phys. 98, 5648 (1993): B3LYP's ``a0 = 0.20``). Range-separated parts keep
    their fixed coefficients.

    Attributes:
      xc: the semilocal functional's parameters (``Functional.params``).
      exact_exchange: () fraction of full-range Hartree-Fock exchange.
    """

    xc: Any
    exact_exchange: jax.Array


def _split_params(functional: Functional, params):
    """(semilocal params, exact-exchange shift a0 - a0_f or None)."""
    if isinstance(params, HybridParams):
        return params.xc, params.exact_exchange - exchange_coefficients(functional)[0]
    return params, None


def _fock_and_energy(functional: Functional, params, system: KSSystem, dm):
    """:func:`dftjax.fock.fock_and_energy` with :class:`HybridParams` honoured."""
    params, shift = _split_params(functional, params)
    fock, parts = fock_and_energy(functional, params, system, dm)
    if shift is None:
        return fock, parts
    k = _exchange(system.eri, system.df_factor, dm)
    return fock - shift * k, parts._replace(exchange=parts.exchange - 0.5 * shift * jnp.sum(k * dm))


def total_energy(functional: Functional, params, system: KSSystem, dm) -> jax.Array:
    """Kohn-Sham total energy (Ha) of spin density matrices dm (2, nao, nao), without the Fock build.

    Equal to ``fock_and_energy(...)[1].total``; cheaper (no XC potential), and what is differentiated.
    ``params`` may be :class:`HybridParams` (a differentiable exact-exchange fraction).
    """
    params, shift = _split_params(functional, params)
    hybrid, long_range = exchange_coefficients(functional)
    if shift is not None:
        hybrid = hybrid + shift
    total = dm[0] + dm[1]
    j, k = coulomb_exchange(system, dm, with_exchange=shift is not None or hybrid != 0.0)
    k = hybrid * k
    if long_range:
        k = k + long_range * _exchange(system.eri_lr, system.df_factor_lr, dm)
    e_xc = jnp.zeros(()) if functional.kind == "hf" else xc_energy(functional, params, system, dm)
    return (jnp.sum(system.h_core * total) + 0.5 * jnp.sum(j * total) - 0.5 * jnp.sum(k * dm)
            + e_xc + system.e_nuc)


def _orbitals(static: _Static, system: KSSystem, fock):
    """Orbital energies (2, nmo) and coefficients (2, nao, nmo) of spin Fock matrices (2, nao, nao)."""
    x = system.orthogonalizer
    energies, coeffs = [], []
    for spin in range(2 if static.unrestricted else 1):
        e, c = eigh_safe(x.T @ fock[spin] @ x)
        energies.append(e)
        coeffs.append(x @ c)
    if not static.unrestricted:
        energies, coeffs = energies * 2, coeffs * 2
    return jnp.stack(energies), jnp.stack(coeffs)


def _aufbau(static: _Static, coeffs):
    """(2, nao, nao) density matrices occupying the lowest nelec[s] orbitals of each spin."""
    return jnp.stack([c[:, :n] @ c[:, :n].T for c, n in zip(coeffs, static.nelec)])


def _scf_map(static: _Static, params, system: KSSystem, dm):
    """Phi(D): the aufbau density of the Fock matrix of ``dm`` (the SCF fixed-point map)."""
    fock, _ = _fock_and_energy(static.functional, params, system, dm)
    return _aufbau(static, _orbitals(static, system, fock)[1])


def _commutator(system: KSSystem, fock, dm):
    fds = fock @ dm @ system.overlap
    return jnp.einsum("ia,sij,jb->sab", system.orthogonalizer, fds - jnp.swapaxes(fds, 1, 2),
                      system.orthogonalizer)


def _initial_state(static, mixer, params, system, dm0) -> SCFState:
    fock, parts = _fock_and_energy(static.functional, params, system, dm0)
    gradient_norm = jnp.linalg.norm(_commutator(system, fock, dm0))
    return SCFState(dm0, fock, parts, jnp.asarray(jnp.inf), gradient_norm, mixer.init(fock),
                    jnp.zeros((), jnp.int32))


def _step(static: _Static, mixer, params, system: KSSystem, state: SCFState) -> SCFState:
    """One CDIIS-extrapolated Roothaan step (as :func:`dftjax.scf._step`, with eigh_safe)."""
    fock_mixed, mixer_state = mixer.update(state.mixer, state.fock, _commutator(system, state.fock, state.dm))
    dm = _aufbau(static, _orbitals(static, system, fock_mixed)[1])
    fock, parts = _fock_and_energy(static.functional, params, system, dm)
    gradient_norm = jnp.linalg.norm(_commutator(system, fock, dm))
    return SCFState(dm, fock, parts, parts.total - state.energy, gradient_norm, mixer_state, state.iteration + 1)


def _damped_step(static: _Static, beta: float, params, system: KSSystem, state: SCFState) -> SCFState:
    """One linearly mixed step, ``D <- (1 - beta) Phi(D) + beta D`` (the KSR trainers' choice)."""
    dm = (1.0 - beta) * _aufbau(static, _orbitals(static, system, state.fock)[1]) + beta * state.dm
    fock, parts = _fock_and_energy(static.functional, params, system, dm)
    gradient_norm = jnp.linalg.norm(_commutator(system, fock, dm))
    return SCFState(dm, fock, parts, parts.total - state.energy, gradient_norm, state.mixer, state.iteration + 1)


def converge_state(static: _Static, params, system: KSSystem, dm0) -> SCFState:
    """SCF to ``options.conv_tol`` / ``conv_tol_grad`` in a ``lax.while_loop`` (not differentiated)."""
    options = static.options
    conv_tol_grad = options.conv_tol_grad if options.conv_tol_grad is not None else float(np.sqrt(options.conv_tol))
    mixer = diis(options.diis_space)
    params, system, dm0 = jax.lax.stop_gradient((params, system, dm0))

    def cond(state):
        converged = (jnp.abs(state.delta_energy) < options.conv_tol) & (state.gradient_norm < conv_tol_grad)
        return (~converged) & (state.iteration < options.max_cycle)

    return jax.lax.while_loop(cond, lambda state: _step(static, mixer, params, system, state),
                              _initial_state(static, mixer, params, system, dm0))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def converged_density(static: _Static, params, system: KSSystem, dm0):
    """(2, nao, nao) self-consistent density matrices; derivatives by the implicit function theorem.

    JVP: ``(1 - d_D Phi) dD = d_theta Phi [dtheta]`` at the fixed point, solved by GMRES inside
    ``lax.custom_linear_solve`` (whose transpose gives the adjoint equation for reverse mode). The
    starting density ``dm0`` gets no derivative.
    """
    return converge_state(static, params, system, dm0).dm


@converged_density.defjvp
def _converged_density_jvp(static, primals, tangents):
    params, system, dm0 = primals
    d_params, d_system, _ = tangents
    dm = converged_density(static, params, system, dm0)
    _, rhs = jax.jvp(lambda p, s: _scf_map(static, p, s, dm), (params, system), (d_params, d_system))

    def matvec(v):
        return v - jax.jvp(lambda d: _scf_map(static, params, system, d), (dm,), (v,))[1]

    def solve(linear, b):
        x, _ = jax.scipy.sparse.linalg.gmres(linear, b, tol=static.response_tol, atol=0.0,
                                             restart=static.response_restart,
                                             maxiter=static.response_maxiter, solve_method="batched")
        return x

    d_dm = jax.lax.custom_linear_solve(matvec, rhs, solve=solve, transpose_solve=solve)
    return dm, d_dm


def _projected_density(static: _Static, overlap, occupied):
    """D = C (C^T S C)^-1 C^T per spin: the span of C, normalised in the metric S."""
    dms = []
    for c in occupied:
        m = c.T @ overlap @ c
        dms.append(c @ jnp.linalg.solve(m, c.T))
    return jnp.stack(dms)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def converged_energy(static: _Static, params, system: KSSystem, dm):
    """Total energy (Ha) at the converged density ``dm``; first derivatives without orbital response.

    JVP: ``dE = partial_theta E_KS[C0 (C0^T S(theta) C0)^-1 C0^T, theta] [dtheta]`` with ``C0`` the
    occupied orbitals of the Fock matrix of ``dm``, held fixed (the energy is stationary in them).
    The tangent of ``dm`` is not used to first order; under a second differentiation ``C0`` follows
    ``dm`` (the implicit response), which gives the correct Hessian.
    """
    return total_energy(static.functional, params, system, dm)


@converged_energy.defjvp
def _converged_energy_jvp(static, primals, tangents):
    params, system, dm = primals
    d_params, d_system, _ = tangents
    fock, _ = _fock_and_energy(static.functional, params, system, dm)
    _, coeffs = _orbitals(static, system, fock)
    occupied = [c[:, :n] for c, n in zip(coeffs, static.nelec)]

    def energy(p, s):
        return total_energy(static.functional, p, s, _projected_density(static, s.overlap, occupied))

    return jax.jvp(energy, (params, system), (d_params, d_system))


# ---------------------------------------------------------------------------------------------
# The public function


class DifferentiableSCF(NamedTuple):
    """A differentiable SCF (see :func:`make_scf_function`).

    Each function takes ``(inputs, start=None)``: ``start`` (2, nao, nao) is the density the SCF
    starts from (default ``dm0``; e.g. the previous geometry's density in an optimisation). It is
    an argument, not a constant, so one jitted function serves every starting point; it gets no
    derivative.

    Attributes:
      apply: ``SCFInputs -> SCFOutput``.
      energy: ``SCFInputs -> ()`` total energy only (cheapest derivatives).
      energy_and_density: ``SCFInputs -> ((), (2, nao, nao))``, for ``value_and_grad(has_aux=True)``.
      inputs: the :class:`SCFInputs` of the molecule as given (zero field, default params).
      system: ``SCFInputs -> KSSystem``, the integrals and grid at those inputs.
      dm0: (2, nao, nao) the default starting density.
    """

    apply: Callable[..., SCFOutput]
    energy: Callable[..., jax.Array]
    energy_and_density: Callable[..., tuple]
    inputs: SCFInputs
    system: Callable[[SCFInputs], KSSystem]
    dm0: jax.Array


def scf_static(molecule, options: SCFOptions, functional, *, response_tol: float,
               grid_response: bool = True) -> _Static:
    """The hashable description of one SCF problem that the kernels of this module take.

    Orbital basis, auxiliary basis when ``options.density_fit``, grid specification and
    electron counts for ``molecule``; ``response_tol`` and ``grid_response`` as in
    :func:`make_scf_function`. ``options`` must already be checked (``check_options``).
    """
    basis = make_basis(molecule, options.basis)
    auxbasis = None
    if options.density_fit:
        auxbasis = make_auxbasis(molecule, options.basis, options.auxbasis,
                                 exact_exchange=functional.kind == "hf" or functional.is_hybrid)
    return _Static(
        functional=functional, basis=basis, auxbasis=auxbasis,
        grid_spec=make_grid_spec(molecule.atomic_numbers, options.grid_level),
        atomic_numbers=np.asarray(molecule.atomic_numbers), nelec=tuple(molecule.nelec),
        unrestricted=options.unrestricted, options=options, response_tol=response_tol,
        grid_response=bool(grid_response),
    )


def make_scf_function(molecule: Molecule, options: SCFOptions | None = None, *, adjoint: str = "implicit",
                      n_steps: int | None = None, functional: Functional | None = None,
                      dm0=None, response_tol: float = 1e-10, mixing: str | float = 0.3,
                      grid_response: bool = True) -> DifferentiableSCF:
    """A differentiable SCF of ``molecule``: energy, densities, orbitals and dipole of (coords, field,
    functional params, basis exponents).

    Args:
      molecule: the molecule (its coords are the default ``inputs.coords``; the atoms, charge, spin
        and basis structure are fixed).
      options: :class:`SCFOptions`; ``xc``, ``basis``, ``unrestricted``, ``grid_level`` (dftjax's
        differentiable grid; ``pyscf_grids`` is ignored), ``density_fit``/``auxbasis``,
        ``conv_tol``/``conv_tol_grad``/``max_cycle``/``diis_space`` (implicit adjoint) are used.
      adjoint: ``"implicit"`` or ``"unrolled"`` (see the module docstring).
      n_steps: number of SCF iterations of the unrolled adjoint (required there).
      functional: a :class:`~functionals.Functional` to use instead of ``options.xc`` (e.g. a
        neural one); its ``params`` are the default ``inputs.params``.
      dm0: (2, nao, nao) starting density (default: ``initial_density``, PySCF's minao guess).
      response_tol: relative tolerance of the GMRES linear-response solve (implicit adjoint).
      mixing: unrolled adjoint only: a damping factor ``beta`` in [0, 1) for linear density mixing
        ``D <- (1 - beta) Phi(D) + beta D`` (default 0.3), or ``"diis"`` (CDIIS). Once
        CDIIS has converged its error vectors are nearly linearly dependent and the derivative of
        its coefficients amplifies rounding (water/STO-3G/LDA: dD/dR off central differences by 1e-4
        after 10 CDIIS steps, by 5e-10 after 40 linearly mixed steps); linear mixing stays well
        conditioned for as many steps as it takes.
      grid_response: differentiate the grid points and Becke weights with the atoms (default: the
        exact derivative of the energy on a grid that moves with the atoms, as PySCF's gradients
        with ``grid_response = True``); False keeps the grid fixed in space (PySCF's RKS Hessian,
        and its gradients by default). The energy itself is the same.

    Returns:
      A :class:`DifferentiableSCF`; its functions are pure and can be jitted.

    Raises:
      ValueError: unknown adjoint, missing ``n_steps``, bad options (as ``run_scf``).
    """
    options = SCFOptions() if options is None else options
    if adjoint not in ADJOINTS:
        raise ValueError(f"unknown adjoint {adjoint!r}: expected one of {ADJOINTS}")
    if adjoint == "unrolled" and (n_steps is None or n_steps < 1):
        raise ValueError("adjoint='unrolled' needs n_steps >= 1 SCF iterations")
    named = check_options(molecule, options)
    functional = named if functional is None else functional
    static = scf_static(molecule, options, functional, response_tol=response_tol, grid_response=grid_response)
    basis = static.basis
    inputs = SCFInputs(coords=jnp.asarray(molecule.coords, dtype=jnp.float64), field=jnp.zeros(3),
                       params=functional.params, exponents=jnp.asarray(basis.exponents))
    system_fn = lambda inp: system_at(static, inp.coords, inp.field, inp.exponents)  # noqa: E731
    if dm0 is None:
        system0 = None  # the minao guess needs no integrals
        if options.init_guess != "minao" or options.break_symmetry:
            system0 = system_at(static, inputs.coords, inputs.field, inputs.exponents)
        dm0 = initial_density(molecule, system0, options)
    dm0 = jnp.asarray(dm0)
    nuclear_charges = jnp.asarray(molecule.atomic_numbers, dtype=jnp.float64)

    def outputs(inp: SCFInputs, system: KSSystem, dm, energy) -> SCFOutput:
        fock, _ = _fock_and_energy(functional, inp.params, system, dm)
        mo_energy, mo_coeff = _orbitals(static, system, fock)
        dipole = -jnp.einsum("xij,ji->x", system.dipole_ints, dm[0] + dm[1]) + nuclear_charges @ inp.coords
        return SCFOutput(energy=energy, dm=dm, mo_energy=mo_energy, mo_coeff=mo_coeff, dipole=dipole)

    if adjoint == "implicit":
        def density(inp: SCFInputs, system: KSSystem, start):
            return converged_density(static, inp.params, system, start)

        def energy_at(inp, system, dm):
            return converged_energy(static, inp.params, system, dm)
    else:
        if mixing == "diis":
            mixer = diis(options.diis_space)
            step = jax.checkpoint(lambda params, system, state: _step(static, mixer, params, system, state))
        else:
            mixer = no_mixing()
            beta = float(mixing)
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"mixing {mixing!r}: expected 'diis' or a damping factor in [0, 1)")
            step = jax.checkpoint(lambda params, system, state: _damped_step(static, beta, params, system, state))

        def density(inp: SCFInputs, system: KSSystem, start):
            state = _initial_state(static, mixer, inp.params, system, jax.lax.stop_gradient(start))
            state, _ = jax.lax.scan(lambda st, _: (step(inp.params, system, st), None), state, None, length=n_steps)
            return state.dm

        def energy_at(inp, system, dm):
            return total_energy(functional, inp.params, system, dm)

    def energy_and_density(inp: SCFInputs, start=None):
        system = system_fn(inp)
        dm = density(inp, system, dm0 if start is None else start)
        return energy_at(inp, system, dm), dm

    def energy_fn(inp: SCFInputs, start=None):
        return energy_and_density(inp, start)[0]

    def apply(inp: SCFInputs, start=None) -> SCFOutput:
        system = system_fn(inp)
        dm = density(inp, system, dm0 if start is None else start)
        return outputs(inp, system, dm, energy_at(inp, system, dm))

    return DifferentiableSCF(apply=apply, energy=energy_fn, energy_and_density=energy_and_density,
                             inputs=inputs, system=system_fn, dm0=dm0)
