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
from dftjax.fock import HybridParams, fock_and_energy, total_energy
from dftjax.scf import (SCFProblem, SCFState, converge, eigh_safe, initial_density, iterate, occupations,
                        orbitals, scf_map)
from dftjax.system import KSSystem, SCFOptions, check_options
from functionals import Functional

__all__ = [
    "ADJOINTS", "HybridParams", "SCFInputs", "SCFOutput", "DifferentiableSCF", "make_scf_function", "system_at",
    "eigh_safe", "renormalised_coefficients", "total_energy", "converge_state", "converged_density",
    "converged_energy", "scf_static",
]

ADJOINTS = ("implicit", "unrolled")


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
    """Everything about the calculation that is not differentiated (hashable by identity).

    ``problem`` is the engine's :class:`~dftjax.scf.SCFProblem` (how the SCF iterates); the rest
    says how the :class:`KSSystem` is built from the differentiable inputs and how the implicit
    adjoint's linear response is solved.
    """

    problem: SCFProblem
    basis: Basis
    auxbasis: Basis | None
    grid_spec: Any
    atomic_numbers: np.ndarray
    nelec: tuple[int, int]
    options: SCFOptions
    response_tol: float = 1e-10
    grid_response: bool = True
    response_restart: int = 40
    response_maxiter: int = 10

    @property
    def functional(self) -> Functional:
        return self.problem.functional

    @property
    def unrestricted(self) -> bool:
        return self.problem.unrestricted


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
                    eri_lr=eri_lr, df_factor_lr=df_lr, ao=ao, weights=weights, dipole_ints=dipole_ints,
                    nelec=jnp.asarray(static.nelec, dtype=jnp.float64))


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


def converge_state(static: _Static, params, system: KSSystem, dm0) -> SCFState:
    """SCF to ``options.conv_tol`` / ``conv_tol_grad``: the engine's :func:`dftjax.scf.converge`."""
    return converge(static.problem, params, system, dm0)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def converged_density(static: _Static, params, system: KSSystem, dm0):
    """(2, nao, nao) self-consistent density matrices; derivatives by the implicit function theorem.

    JVP: ``(1 - d_D Phi) dD = d_theta Phi [dtheta]`` at the fixed point, solved by GMRES inside
    ``lax.custom_linear_solve`` (whose transpose gives the adjoint equation for reverse mode). The
    starting density ``dm0`` gets no derivative.
    """
    return converge(static.problem, params, system, dm0).dm


@converged_density.defjvp
def _converged_density_jvp(static, primals, tangents):
    params, system, dm0 = primals
    d_params, d_system, _ = tangents
    dm = converged_density(static, params, system, dm0)
    problem = static.problem
    _, rhs = jax.jvp(lambda p, s: scf_map(problem, p, s, dm), (params, system), (d_params, d_system))

    def matvec(v):
        return v - jax.jvp(lambda d: scf_map(problem, params, system, d), (dm,), (v,))[1]

    def solve(linear, b):
        x, _ = jax.scipy.sparse.linalg.gmres(linear, b, tol=static.response_tol, atol=0.0,
                                             restart=static.response_restart,
                                             maxiter=static.response_maxiter, solve_method="batched")
        return x

    d_dm = jax.lax.custom_linear_solve(matvec, rhs, solve=solve, transpose_solve=solve)
    return dm, d_dm


def _projected_density(overlap, coeffs, occ):
    """D = C (C^T S C)^-1 C^T per spin over the occupied orbitals: their span, normalised in S.

    ``coeffs`` (2, nao, nmo) and occupations ``occ`` (2, nmo) 0/1 (data, not a slice): the
    virtual columns are zeroed and their block of ``C^T S C`` replaced by the identity, which is
    the occupied-only formula exactly, values and derivatives.
    """
    c = coeffs * occ[:, None, :]
    m = jnp.einsum("sia,ij,sjb->sab", c, overlap, c) + jax.vmap(jnp.diag)(1.0 - occ)
    return jnp.einsum("sia,sab->sib", c, jnp.linalg.solve(m, jnp.swapaxes(c, 1, 2)))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def converged_energy(static: _Static, params, system: KSSystem, dm):
    """Total energy (Ha) at the converged density ``dm``; first derivatives without orbital response.

    JVP: ``dE = partial_theta E_KS[C0 (C0^T S(theta) C0)^-1 C0^T, theta] [dtheta]`` with ``C0`` the
    occupied orbitals of the Fock matrix of ``dm``, held fixed (the energy is stationary in them).
    The tangent of ``dm`` is not used to first order; under a second differentiation ``C0`` follows
    ``dm`` (the implicit response), which gives the correct Hessian.
    """
    return total_energy(static.functional, params, system, dm, static.problem.closed_shell)


@converged_energy.defjvp
def _converged_energy_jvp(static, primals, tangents):
    params, system, dm = primals
    d_params, d_system, _ = tangents
    problem = static.problem
    fock, _ = fock_and_energy(problem.functional, params, system, dm, problem.closed_shell)
    _, coeffs = orbitals(problem, system, fock)
    occ = occupations(system, coeffs.shape[-1])

    def energy(p, s):
        return total_energy(problem.functional, p, s, _projected_density(s.overlap, coeffs, occ),
                            problem.closed_shell)

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
        problem=SCFProblem.from_options(options, functional), basis=basis, auxbasis=auxbasis,
        grid_spec=make_grid_spec(molecule.atomic_numbers, options.grid_level),
        atomic_numbers=np.asarray(molecule.atomic_numbers), nelec=tuple(molecule.nelec),
        options=options, response_tol=response_tol, grid_response=bool(grid_response),
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
        fock, _ = fock_and_energy(functional, inp.params, system, dm, static.problem.closed_shell)
        mo_energy, mo_coeff = orbitals(static.problem, system, fock)
        dipole = -jnp.einsum("xij,ji->x", system.dipole_ints, dm[0] + dm[1]) + nuclear_charges @ inp.coords
        return SCFOutput(energy=energy, dm=dm, mo_energy=mo_energy, mo_coeff=mo_coeff, dipole=dipole)

    if adjoint == "implicit":
        def density(inp: SCFInputs, system: KSSystem, start):
            return converged_density(static, inp.params, system, start)

        def energy_at(inp, system, dm):
            return converged_energy(static, inp.params, system, dm)
    else:
        # the same engine step, with CDIIS or with linear mixing (no history) at damping beta
        if mixing == "diis":
            problem = dataclasses.replace(static.problem, level_shift=0.0, damping=0.0)
        else:
            beta = float(mixing)
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"mixing {mixing!r}: expected 'diis' or a damping factor in [0, 1)")
            problem = dataclasses.replace(static.problem, diis_space=0, level_shift=0.0, damping=beta)

        def density(inp: SCFInputs, system: KSSystem, start):
            state, _ = iterate(problem, inp.params, system, jax.lax.stop_gradient(start), n_steps)
            return state.dm

        def energy_at(inp, system, dm):
            return total_energy(functional, inp.params, system, dm, problem.closed_shell)

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
