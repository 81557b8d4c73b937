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

The SCF itself is the engine of :mod:`dftjax.scf` (``converge``, ``iterate``, ``scf_map``); this
module only chooses how derivatives pass through it. It runs on the molecule's *size class*
(:mod:`basis.size_class`): padded basis, auxiliary basis, nuclei and grid, with everything that
tells two molecules of a class apart passed as traced :class:`SCFData`, so the module-level kernels
:func:`energy_forces_padded` and :func:`hessian_padded` compile once per class.

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
from basis.gto import Basis, make_basis
from basis.integrals import one_electron, two_electron
from basis.molecule import Molecule
from basis.size_class import (PaddedBasis, pad_atoms, pad_basis, pad_grid, padded_grid_points_weights,
                              padded_leaves, three_centre_layout)
from dftjax.exported import class_program
from dftjax.fock import HybridParams, fock_and_energy, total_energy
from dftjax.scf import (SCFProblem, SCFState, converge, eigh_safe, initial_density, iterate, occupations,
                        orbitals, scf_map)
from dftjax.system import (CORE_GUESSES, PAD_LEVEL, RANGE_SEPARATED_FIT, KSSystem, SCFOptions, SizeClassLayout,
                           canonical_orthogonalizer, check_options, range_separated_fit, shard_grid)
from dftjax.size_registry import ClassSizes, family_key, registry, unpadded_parts
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


class SCFData(NamedTuple):
    """One molecule inside its size class, as arrays (a pytree: traced arguments, never constants).

    Everything that distinguishes two molecules of one size class lives here, so a program
    compiled for the class serves both (:mod:`basis.size_class`).

    Attributes:
      shell_atom: (n_shells_pad [+ n_aux_shells_pad],) int32 nucleus of each padded orbital shell
        (then auxiliary shell, with density fitting); padding shells sit on nucleus 0.
      charges: (n_atoms_pad,) nuclear charges, 0 on dummy nuclei.
      nelec: (2,) alpha and beta electron counts (float).
      ao_mask: (nao_pad,) 1 on real AOs, 0 on padding AOs.
      reference_exponents, reference_coefficients: (n_shells_pad, max_nprim) the basis set's own
        primitives in padded layout (padding: exponent 1, coefficient 0); coefficients for other
        exponents are renormalised against them.
      aux_mask: (naux_pad,) 1 on real auxiliary functions (density fitting), else (0,).
      aux_exponents, aux_coefficients: padded auxiliary primitives, else (0,).
      grid: :class:`basis.size_class.GridData` (None for Hartree-Fock).
    """

    shell_atom: jax.Array
    charges: jax.Array
    nelec: jax.Array
    ao_mask: jax.Array
    reference_exponents: jax.Array
    reference_coefficients: jax.Array
    aux_mask: jax.Array
    aux_exponents: jax.Array
    aux_coefficients: jax.Array
    grid: Any


@dataclasses.dataclass(frozen=True, eq=False)
class _Static:
    """Everything about the calculation that is neither differentiated nor data: a size class.

    Equal (and equally hashed) for every molecule of one size class with the same functional and
    options, so module-level jitted functions taking it as a static argument compile once per
    class. ``problem`` is the engine's :class:`~dftjax.scf.SCFProblem`; ``basis`` and
    ``auxbasis`` are the padded structures (their arrays are replaced from the inputs and
    :class:`SCFData`); the rest says how the grid is built and the linear response is solved.
    """

    problem: SCFProblem
    basis: Basis
    auxbasis: Basis | None
    n_atoms_pad: int
    becke_scheme: str = "becke"
    response_tol: float = 1e-10
    grid_response: bool = True
    response_restart: int = 40
    response_maxiter: int = 10

    def _key(self):
        structure = jax.tree_util.tree_structure
        return (self.problem, structure(self.basis), None if self.auxbasis is None else structure(self.auxbasis),
                self.n_atoms_pad, self.becke_scheme, self.response_tol, self.grid_response,
                self.response_restart, self.response_maxiter)

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other) -> bool:
        return isinstance(other, _Static) and self._key() == other._key()

    @property
    def functional(self) -> Functional:
        return self.problem.functional

    @property
    def unrestricted(self) -> bool:
        return self.problem.unrestricted

    @property
    def density_fit(self) -> bool:
        return self.auxbasis is not None


def _renormalised(shell_l, a0, c0, exponents) -> jax.Array:
    """Coefficients (n_shells, nprim) for ``exponents``, shells kept normalised against (a0, c0).

    Shells whose reference coefficients are all zero (size-class padding) stay zero; the double
    ``where`` keeps their 0/0 out of values and gradients.
    """
    l = np.asarray(shell_l, dtype=np.float64)[:, None]
    power = (2.0 * l + 3.0) / 4.0  # (n_shells, 1)
    d = c0 / a0**power

    def self_overlap(a):  # (n_shells,) sum_pq d_p d_q <g_p|g_q>, d_p ~ c0_p / N(a0_p)
        ratio = 2.0 * jnp.sqrt(a[:, :, None] * a[:, None, :]) / (a[:, :, None] + a[:, None, :])
        return jnp.einsum("sp,sq,spq->s", d, d, ratio ** (l[:, :, None] + 1.5))

    exponents = jnp.asarray(exponents)
    reference, moved = self_overlap(jnp.asarray(a0)), self_overlap(exponents)
    real = reference > 0
    scale = jnp.where(real, jnp.sqrt(jnp.where(real, reference, 1.0) / jnp.where(real, moved, 1.0)), 0.0)
    return c0 * (exponents / a0) ** power * scale[:, None]


def renormalised_coefficients(basis: Basis, exponents) -> jax.Array:
    """Contraction coefficients (n_shells, max_nprim) for new exponents, shells kept normalised.

    The basis-set convention fixes the coefficients ``d_p`` of *normalised* primitives
    ``N(a) r^l exp(-a r^2)``, ``N ~ a^((2l+3)/4)``; the contracted function is then normalised
    with ``<g_p|g_q> = (2 sqrt(a_p a_q) / (a_p + a_q))^(l + 3/2)``. At ``basis.exponents`` the
    stored coefficients are returned unchanged.
    """
    return _renormalised(basis.shell_l, np.asarray(basis.exponents), np.asarray(basis.coefficients), exponents)


def nuclear_repulsion_padded(charges, coords) -> jax.Array:
    """() sum_{A<B} Z_A Z_B / |R_A - R_B| (Ha) over nuclei with nonzero charge.

    Dummy nuclei (charge 0) may coincide with real ones: those pairs are masked out of the value
    and, by a double ``where``, out of the gradient.
    """
    n = coords.shape[0]
    zz = charges[:, None] * charges[None, :]
    pair = (zz != 0.0) & np.triu(np.ones((n, n), dtype=bool), k=1)
    diff = coords[:, None, :] - coords[None, :, :]
    r2 = jnp.sum(diff * diff, axis=-1)
    return jnp.sum(jnp.where(pair, zz / jnp.sqrt(jnp.where(pair, r2, 1.0)), 0.0))


def system_at(static: _Static, coords, field, exponents, data: SCFData) -> KSSystem:
    """The :class:`KSSystem` of a size class at padded nuclear positions, a pure JAX function.

    As :func:`dftjax.system.build_system` with ``padded=True``, differentiable in ``coords``
    (integrals, grid points and Becke weights, AO values), the field (3,) and the orbital exponents.
    The orthogonaliser is ``X = L^-T`` with ``S = L L^T`` (smooth in the geometry, unlike a canonical
    one built from eigenvectors of S); no linear dependencies are removed. With
    ``static.grid_response`` False the grid points and weights are those of ``coords`` but carry no
    derivative (a space-fixed grid).

    Args:
      static: the size class and options.
      coords: (n_atoms_pad, 3) nuclear positions, bohr (dummy nuclei anywhere, e.g. on nucleus 0).
      field: (3,) uniform electric field, atomic units.
      exponents: (n_shells_pad, max_nprim) orbital exponents in padded layout.
      data: the molecule (:class:`SCFData`).
    """
    functional = static.functional
    if getattr(functional, "needs_grid_coulomb", False):
        raise NotImplementedError(
            f"{functional.name} reads the exact-exchange energy density through grid Coulomb potentials "
            "(PySCF int1e_grids), which are not differentiable in nuclear positions here: no forces, "
            "field or exponent derivatives, and no unrolled adjoint; use dftjax.xc3d.train.converge / "
            "the implicit-adjoint trainer for parameter gradients")
    coefficients = _renormalised(static.basis.shell_l, data.reference_exponents, data.reference_coefficients,
                                 exponents)
    basis = dataclasses.replace(static.basis, exponents=exponents, coefficients=coefficients)
    centres = jnp.take(coords, data.shell_atom, axis=0)  # shell centres: data, not structure
    padding = 1.0 - data.ao_mask
    core = one_electron.core_integrals(basis, centres, coords, data.charges)
    s = core.overlap + jnp.diag(padding)
    dipole_ints = core.dipole
    h = (core.kinetic + core.attraction + jnp.einsum("x,xij->ij", field, dipole_ints)
         + PAD_LEVEL * jnp.diag(padding))
    e_nuc = nuclear_repulsion_padded(data.charges, coords) - field @ (data.charges @ coords)
    low = jnp.linalg.cholesky(s)
    x = jax.scipy.linalg.solve_triangular(low, jnp.eye(s.shape[0]), lower=True).T
    omega = functional.omega
    eri = df = eri_lr = df_lr = jnp.zeros((0,))
    if static.density_fit:
        aux = dataclasses.replace(static.auxbasis, exponents=data.aux_exponents, coefficients=data.aux_coefficients)
        df = _df_factor(basis, aux, centres, 0.0, data.aux_mask)
        if omega:
            df_lr = _df_factor(basis, aux, centres, omega, data.aux_mask)
    else:
        eri = two_electron.electron_repulsion(basis, centres)
        if omega:
            eri_lr = two_electron.electron_repulsion(basis, centres, omega=omega)
    if functional.kind == "hf":
        ao = jnp.zeros((4, 0, basis.nao))
        weights = jnp.zeros((0,))
    else:
        grid_coords = coords if static.grid_response else jax.lax.stop_gradient(coords)
        points, weights = padded_grid_points_weights(data.grid, grid_coords, becke_scheme=static.becke_scheme)
        ao = ao_values(basis, centres, points, deriv=1)
    return KSSystem(overlap=s, h_core=h, orthogonalizer=x, e_nuc=e_nuc, eri=eri, df_factor=df,
                    eri_lr=eri_lr, df_factor_lr=df_lr, ao=ao, weights=weights, dipole_ints=dipole_ints,
                    nelec=data.nelec)


def _df_factor(basis: Basis, aux: Basis, coords, omega: float, aux_mask):
    """B = L^-1 (P|mu nu) with L L^T = (P|Q) (differentiable version of system._df_factor).

    Padding auxiliary functions get a unit metric diagonal; their rows of (P|mu nu), hence of B,
    vanish.
    """
    j3 = two_electron.coulomb_3c(basis, aux, coords, omega=omega)
    j2 = two_electron.coulomb_2c(aux, coords, omega=omega) + jnp.diag(1.0 - aux_mask)
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
    derivative. Inputs and outputs are in the molecule's own layout (PySCF's AO order); inside,
    the SCF runs in the padded layout of the molecule's size class.

    Attributes:
      apply: ``SCFInputs -> SCFOutput``.
      energy: ``SCFInputs -> ()`` total energy only (cheapest derivatives).
      energy_and_density: ``SCFInputs -> ((), (2, nao, nao))``, for ``value_and_grad(has_aux=True)``.
      inputs: the :class:`SCFInputs` of the molecule as given (zero field, default params).
      system: ``SCFInputs -> KSSystem``, the integrals and grid at those inputs (padded layout).
      dm0: (2, nao, nao) the default starting density.
      static, adjoint, data, layout: the size class (a static, hashable value), the adjoint
        strategy, the molecule's :class:`SCFData` and its padded basis, for the module-level
        jitted kernels (:func:`energy_forces_padded`, :func:`hessian_padded`) that compile once
        per size class; :meth:`padded_arguments` prepares their arguments.
    """

    apply: Callable[..., SCFOutput]
    energy: Callable[..., jax.Array]
    energy_and_density: Callable[..., tuple]
    inputs: SCFInputs
    system: Callable[[SCFInputs], KSSystem]
    dm0: jax.Array
    static: Any = None
    adjoint: Any = None
    data: Any = None
    layout: Any = None

    @property
    def size_class(self) -> dict:
        """The size class as ``dftjax scf --json`` reports it (:meth:`SizeClassLayout.describe`)."""
        n_grid = 0 if self.data.grid is None else int(np.shape(self.data.grid.atom_index)[0])
        return SizeClassLayout(orbital=self.layout, n_aux_pad=int(np.shape(self.data.aux_mask)[0]),
                               n_atoms_pad=self.static.n_atoms_pad, n_grid_pad=n_grid).describe()

    def padded_arguments(self, inputs: SCFInputs | None = None, start=None) -> tuple:
        """``(coords_pad, field, params, exponents_pad, start_pad, data)`` as concrete arrays.

        The trailing arguments of :func:`energy_forces_padded` and :func:`hessian_padded`;
        dummy nuclei sit on nucleus 0, padding AOs of ``start`` are zero.
        """
        inputs = self.inputs if inputs is None else inputs
        start = self.dm0 if start is None else start
        coords_pad, exponents_pad = _padded_inputs(self.static, self.layout, np.asarray(inputs.coords, np.float64),
                                                   np.asarray(inputs.exponents))
        start_pad = self.layout.pad_matrix(np.asarray(start))
        put = jax.device_put
        return (put(coords_pad), put(np.asarray(inputs.field)), inputs.params, put(exponents_pad), put(start_pad),
                self.data)


def _padded_inputs(static: _Static, layout: PaddedBasis, coords, exponents):
    """``(coords (n_atoms_pad, 3), exponents (n_shells_pad, max_nprim))`` in the size-class layout:
    dummy nuclei on nucleus 0, padding shells' exponents 1. NumPy stays NumPy (arguments of the
    module-level kernels); traced arrays stay traced and differentiable (the closures)."""
    coords_pad, _ = pad_atoms(coords, np.zeros(coords.shape[0]), static.n_atoms_pad)
    exponents_pad, _ = padded_leaves(layout, exponents, exponents)
    return coords_pad, exponents_pad


@dataclasses.dataclass(frozen=True)
class _Adjoint:
    """How derivatives pass through the SCF (hashable): ``"implicit"``, or ``"unrolled"`` with
    ``n_steps`` iterations of CDIIS (``mixing="diis"``) or of linear mixing at damping ``mixing``."""

    kind: str = "implicit"
    n_steps: int = 0
    mixing: str | float = 0.3

    def problem(self, problem: SCFProblem) -> SCFProblem:
        if self.mixing == "diis":
            return dataclasses.replace(problem, level_shift=0.0, damping=0.0)
        return dataclasses.replace(problem, diis_space=0, level_shift=0.0, damping=float(self.mixing))


def _density(static: _Static, adjoint: _Adjoint, params, system: KSSystem, start):
    if adjoint.kind == "implicit":
        return converged_density(static, params, system, start)
    state, _ = iterate(adjoint.problem(static.problem), params, system, jax.lax.stop_gradient(start),
                       adjoint.n_steps)
    return state.dm


def _energy(static: _Static, adjoint: _Adjoint, params, system: KSSystem, dm):
    if adjoint.kind == "implicit":
        return converged_energy(static, params, system, dm)
    return total_energy(static.functional, params, system, dm, static.problem.closed_shell)


def padded_energy_and_density(static: _Static, adjoint: _Adjoint, coords, field, params, exponents, start,
                              data: SCFData):
    """``(energy (), dm (2, nao_pad, nao_pad))`` of the size-class SCF at padded inputs (pure JAX)."""
    system = system_at(static, coords, field, exponents, data)
    dm = _density(static, adjoint, params, system, start)
    return _energy(static, adjoint, params, system, dm), dm


def _energy_forces_padded(static: _Static, adjoint: _Adjoint, coords, field, params, exponents, start,
                         data: SCFData):
    """``(energy (), forces (n_atoms_pad, 3) Ha/bohr, dm (2, nao_pad, nao_pad))``, jitted once per size class.

    Forces on dummy nuclei are zero (they carry no charge, basis function or grid weight).
    """
    (energy, dm), gradient = jax.value_and_grad(
        lambda c: padded_energy_and_density(static, adjoint, c, field, params, exponents, start, data),
        has_aux=True)(coords)
    return energy, -gradient, dm


def _hessian_padded(static: _Static, adjoint: _Adjoint, coords, field, params, exponents, start, data: SCFData):
    """(n_atoms_pad, 3, n_atoms_pad, 3) nuclear Hessian (Ha/bohr^2), jitted once per size class.

    Forward mode over the gradient, one Cartesian direction at a time (``lax.map`` of ``jax.jvp``):
    the arithmetic of ``jax.jacfwd(jax.grad(energy))``, with the memory of one tangent instead of
    all 3 n_atoms_pad at once (the vmapped grid-response tangents asked for a 34 GB buffer for
    formaldehyde in def2-SVP, 4 padded atoms).
    """
    energy = lambda c: padded_energy_and_density(static, adjoint, c, field, params, exponents, start, data)[0]  # noqa: E731
    gradient = jax.grad(energy)
    directions = jnp.eye(coords.size, dtype=coords.dtype).reshape((coords.size,) + coords.shape)
    columns = jax.lax.map(lambda t: jax.jvp(gradient, (coords,), (t,))[1], directions)  # [j] = dG / dx_j
    return jnp.moveaxis(columns.reshape(coords.shape + coords.shape), (0, 1), (2, 3))


# Jitted once per size class, and kept on disk as lowered modules (dftjax.exported)
energy_forces_padded = class_program(_energy_forces_padded, static_argnums=(0, 1), name="energy_forces")
hessian_padded = class_program(_hessian_padded, static_argnums=(0, 1), name="hessian")


def _to_arrays(tree):
    # device_put, not jnp.asarray: the latter compiles a small program per shape in this JAX
    return jax.tree_util.tree_map(lambda x: jax.device_put(x) if isinstance(x, np.ndarray) else x, tree)


def size_class_setup(molecule: Molecule, options: SCFOptions, functional: Functional, *,
                     response_tol: float = 1e-10, grid_response: bool = True) -> tuple[_Static, SCFData, PaddedBasis]:
    """The size class of ``molecule`` (static), its :class:`SCFData` and its padded orbital basis.

    ``options`` must already be checked (``check_options``). The grid is dftjax's differentiable
    one at ``options.grid_level`` (``pyscf_grids`` is ignored).
    """
    basis, unpadded_aux, spec = unpadded_parts(molecule, options, functional)
    own = ClassSizes.of(basis, unpadded_aux, molecule.n_atoms, 0 if spec is None else spec.n_points)
    sizes = registry().choose(family_key(options, functional), own)  # own, or a known larger class
    orbital = pad_basis(basis, at_least=sizes.orbital)
    n_atoms_pad = sizes.n_atoms
    charges = np.zeros(n_atoms_pad)
    charges[:molecule.n_atoms] = molecule.atomic_numbers
    auxbasis = None
    shell_atom = orbital.shell_atom
    aux_mask = aux_exponents = aux_coefficients = np.zeros((0,))
    if options.density_fit:
        aux = pad_basis(unpadded_aux, at_least=sizes.aux)
        _, auxbasis, shell_atom = three_centre_layout(orbital, aux)
        aux_mask, aux_exponents, aux_coefficients = aux.ao_mask, aux.basis.exponents, aux.basis.coefficients
        auxbasis = dataclasses.replace(auxbasis, exponents=None, coefficients=None)
    grid = None
    becke_scheme = "becke"
    if spec is not None:
        grid = pad_grid(spec, n_atoms_pad, sizes.n_points)
        becke_scheme = spec.options.becke_scheme
    data = SCFData(
        shell_atom=np.asarray(shell_atom, dtype=np.int32), charges=charges,
        nelec=np.asarray(molecule.nelec, dtype=np.float64), ao_mask=orbital.ao_mask,
        reference_exponents=np.asarray(orbital.basis.exponents),
        reference_coefficients=np.asarray(orbital.basis.coefficients),
        aux_mask=aux_mask, aux_exponents=np.asarray(aux_exponents), aux_coefficients=np.asarray(aux_coefficients),
        grid=grid,
    )
    static = _Static(
        problem=SCFProblem.from_options(options, functional),
        basis=dataclasses.replace(orbital.basis, exponents=None, coefficients=None), auxbasis=auxbasis,
        n_atoms_pad=n_atoms_pad, becke_scheme=becke_scheme, response_tol=response_tol,
        grid_response=bool(grid_response),
    )
    return static, _to_arrays(data), orbital


_system_at = class_program(system_at, static_argnums=(0,), name="system_at")


@dataclasses.dataclass(frozen=True)
class _IntegralNeeds:
    """All :func:`system_at` reads of a functional: whether it needs a grid (not Hartree-Fock) and its
    range-separation parameter. Standing in for the functional in :func:`_integral_static`, it lets
    one compiled integral program serve every functional of a size class."""

    kind: str
    omega: float


def _integral_static(static: _Static) -> _Static:
    """``static`` with only what the plain system build depends on (not the functional, thresholds
    or response settings), so :func:`padded_system` compiles once per class, omega and grid or not."""
    functional = static.functional
    needs = _IntegralNeeds(kind="hf" if functional.kind == "hf" else "dft", omega=float(functional.omega or 0.0))
    return dataclasses.replace(static, problem=SCFProblem(functional=needs), response_tol=0.0, grid_response=True,
                               response_restart=0, response_maxiter=0)


def padded_system(molecule: Molecule, options: SCFOptions, functional: Functional):
    """``(system, layout)``: the size-class :class:`KSSystem` of ``molecule`` for the plain SCF.

    One jitted :func:`system_at` (integrals, grid, AO values in one program per size class, so a
    molecule of a known class compiles nothing), then the canonical orthogonaliser of
    :func:`dftjax.system.canonical_orthogonalizer` (linear dependencies dropped as zero columns)
    in place of the Cholesky one, and the grid split across devices when several are visible.
    """
    static, data, orbital = size_class_setup(molecule, options, functional)
    coords, _ = pad_atoms(np.asarray(molecule.coords, dtype=np.float64), np.zeros(molecule.n_atoms),
                          static.n_atoms_pad)
    system = _system_at(_integral_static(static), jax.device_put(coords), jnp.zeros(3), data.reference_exponents,
                        data)
    x = canonical_orthogonalizer(np.asarray(system.overlap), padded=True)
    system = system._replace(orthogonalizer=jax.device_put(x))
    if options.shard_grid and functional.kind != "hf":
        system = shard_grid(system)
    layout = SizeClassLayout(orbital=orbital, n_aux_pad=int(data.aux_mask.shape[0]),
                             n_atoms_pad=static.n_atoms_pad, n_grid_pad=int(system.weights.shape[0]))
    return system, layout


def scf_static(molecule, options: SCFOptions, functional, *, response_tol: float,
               grid_response: bool = True) -> _Static:
    """The hashable description (size class and options) that the kernels of this module take.

    ``response_tol`` and ``grid_response`` as in :func:`make_scf_function`. ``options`` must
    already be checked (``check_options``).
    """
    return size_class_setup(molecule, options, functional, response_tol=response_tol,
                            grid_response=grid_response)[0]


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
      ValueError: unknown adjoint, missing ``n_steps``, bad options (as ``run_scf``), or a
        range-separated functional with density fitting (not differentiable here).
    """
    options = SCFOptions() if options is None else options
    if adjoint not in ADJOINTS:
        raise ValueError(f"unknown adjoint {adjoint!r}: expected one of {ADJOINTS}")
    if adjoint == "unrolled" and (n_steps is None or n_steps < 1):
        raise ValueError("adjoint='unrolled' needs n_steps >= 1 SCF iterations")
    if adjoint == "unrolled" and mixing != "diis" and not 0.0 <= float(mixing) < 1.0:
        raise ValueError(f"mixing {mixing!r}: expected 'diis' or a damping factor in [0, 1)")
    named = check_options(molecule, options)
    functional = named if functional is None else functional
    if range_separated_fit(functional, options.density_fit):
        raise ValueError(
            f"{functional.name} is range-separated: with density fitting it has no derivatives here "
            f"({RANGE_SEPARATED_FIT}); use exact J/K (density_fit=False) for forces, Hessians and field or "
            "parameter derivatives")
    static, data, layout = size_class_setup(molecule, options, functional, response_tol=response_tol,
                                            grid_response=grid_response)
    strategy = _Adjoint() if adjoint == "implicit" else _Adjoint("unrolled", int(n_steps),
                                                                  mixing if mixing == "diis" else float(mixing))
    basis = make_basis(molecule, options.basis)
    inputs = SCFInputs(coords=jax.device_put(np.asarray(molecule.coords, dtype=np.float64)), field=jnp.zeros(3),
                       params=functional.params, exponents=jax.device_put(np.asarray(basis.exponents)))
    nao = basis.nao

    def padded(inp: SCFInputs):
        return _padded_inputs(static, layout, inp.coords, inp.exponents)

    def system_fn(inp: SCFInputs) -> KSSystem:
        coords, exponents = padded(inp)
        return system_at(static, coords, inp.field, exponents, data)

    if dm0 is None:
        system0 = None  # the PySCF guesses (minao, atom, huckel) need no integrals
        if options.init_guess in CORE_GUESSES or options.break_symmetry:
            system0 = system_fn(inputs)
        dm0 = initial_density(molecule, system0, options, None if system0 is None else layout)
        if system0 is not None:
            dm0 = layout.unpad_matrix(dm0)
    dm0 = jax.device_put(dm0)

    def energy_and_density(inp: SCFInputs, start=None):
        coords, exponents = padded(inp)
        start = layout.pad_matrix(dm0 if start is None else start)
        energy, dm = padded_energy_and_density(static, strategy, coords, inp.field, inp.params, exponents,
                                               start, data)
        return energy, layout.unpad_matrix(dm)

    def energy_fn(inp: SCFInputs, start=None):
        return energy_and_density(inp, start)[0]

    def apply(inp: SCFInputs, start=None) -> SCFOutput:
        coords, exponents = padded(inp)
        system = system_at(static, coords, inp.field, exponents, data)
        dm = _density(static, strategy, inp.params, system, layout.pad_matrix(dm0 if start is None else start))
        energy = _energy(static, strategy, inp.params, system, dm)
        fock, _ = fock_and_energy(functional, inp.params, system, dm, static.problem.closed_shell)
        mo_energy, mo_coeff = orbitals(static.problem, system, fock)
        # padding AOs are orbitals at PAD_LEVEL, the top nao_pad - nao of the spectrum
        mo_energy, mo_coeff = mo_energy[:, :nao], layout.unpad_rows(mo_coeff)[:, :, :nao]
        dipole = -jnp.einsum("xij,ji->x", system.dipole_ints, dm[0] + dm[1]) + data.charges @ coords
        return SCFOutput(energy=energy, dm=layout.unpad_matrix(dm), mo_energy=mo_energy, mo_coeff=mo_coeff,
                         dipole=dipole)

    return DifferentiableSCF(apply=apply, energy=energy_fn, energy_and_density=energy_and_density,
                             inputs=inputs, system=system_fn, dm0=dm0, static=static, adjoint=strategy,
                             data=data, layout=layout)
