"""The SCF engine: Kohn-Sham and Hartree-Fock self-consistent field, restricted and unrestricted.

One module owns the iteration, and every driver uses it: :func:`run_scf` (``dftjax scf``), both
adjoints of :mod:`dftjax.adjoint` (forces, Hessians, properties, training), the PySCF plugin and the
ASE calculator. The layers:

1. :func:`~dftjax.system.build_system` (once per geometry; :func:`dftjax.adjoint.system_at` is its
   differentiable twin): integrals, grid, AO values on the grid, the orthogonaliser X and the
   electron counts, a :class:`KSSystem` of arrays.
2. :func:`~dftjax.fock.fock_and_energy` (pure): from spin density matrices ``dm (2, nao, nao)`` to the
   spin Fock matrices and the energy parts; ``V_xc`` is ``jax.grad`` of the XC energy.
3. The iteration, pure functions of an immutable :class:`SCFState` and a hashable
   :class:`SCFProblem` (functional, restricted or not, CDIIS space, level shift, damping,
   thresholds): :func:`step` (mix, shift, diagonalise, occupy, damp, rebuild), :func:`converge`
   (``lax.while_loop``), :func:`iterate` (``lax.scan``, a fixed number of steps with the trajectory),
   :func:`scf_map` (the fixed-point map the implicit adjoint differentiates). Diagonalisation is
   :func:`eigh_safe` (finite derivatives with degenerate orbitals); occupations are data
   (``arange(nmo) < KSSystem.nelec``), so one compiled loop serves every charge and spin.

How derivatives pass through the loop is the adjoint strategy (:mod:`dftjax.adjoint`): none here
(``converge`` is wrapped in ``stop_gradient``), the implicit function theorem at the fixed point, or
differentiation of :func:`iterate` step by step. Energies in hartree, lengths in bohr.

Restricted calculations carry two equal spin blocks; the Fock matrices then coincide and the
closed-shell energy expression is recovered exactly.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from basis.gto import make_basis
from basis.molecule import Molecule
from dftjax.compilation import CompilationCounter
from dftjax.exported import class_program
from dftjax.fock import EnergyParts, coulomb_exchange, exchange_coefficients, fock_and_energy, xc_energy
from dftjax.mixing import diis, no_mixing
from dftjax.system import (CORE_GUESSES, PAD_LEVEL, KSSystem, SCFOptions, as_field, build_system, check_options,
                           functional_by_name, range_separated_fit, with_field)
from functionals import Functional

__all__ = [
    "SCFOptions", "KSSystem", "SCFState", "SCFResult", "EnergyParts", "build_system", "fock_and_energy",
    "coulomb_exchange", "exchange_coefficients", "xc_energy", "initial_density", "run_scf", "scf_scan",
    "SCFProblem", "eigh_safe", "orbitals", "occupations", "aufbau_density", "scf_map", "commutator",
    "initial_state", "step", "is_converged", "converge", "iterate",
]


class SCFState(NamedTuple):
    """The immutable state advanced by one SCF step."""

    dm: jax.Array  # (2, nao, nao) spin density matrices used to build the current Fock matrix
    fock: jax.Array  # (2, nao, nao) Fock matrices of dm
    parts: EnergyParts  # energy parts of dm (hartree)
    delta_energy: jax.Array  # () energy change from the previous step
    gradient_norm: jax.Array  # () norm of the orthogonalised commutator X^T (F D S - S D F) X
    mixer: Any  # mixer state (DIIS history)
    iteration: jax.Array  # () int

    @property
    def energy(self) -> jax.Array:
        """() total energy of dm."""
        return self.parts.total


@dataclasses.dataclass(frozen=True, kw_only=True)
class SCFProblem:
    """How the SCF iterates: the hashable (jit-static) description every driver shares.

    Everything about the molecule (integrals, grid, electron counts) is data in the
    :class:`KSSystem`; this holds only what shapes the iteration, so one compiled loop serves
    every molecule of a size class. The functional is compared by identity (``functional_by_name``
    caches them).

    Attributes:
      functional: the exchange-correlation functional (or Hartree-Fock).
      unrestricted: two independent spin blocks; otherwise both spins share the orbitals of
        ``fock[0]`` and the functional's closed-shell formulas are used.
      diis_space: CDIIS vectors (:func:`dftjax.mixing.diis`); 0 for plain Roothaan steps.
      level_shift: virtual-orbital level shift (Ha), ``F + b (S - S D_s S)`` before diagonalising.
      damping: linear density mixing ``D <- (1 - beta) D_new + beta D``, beta in [0, 1).
      max_cycle, conv_tol, conv_tol_grad: the loop stops when ``|dE| < conv_tol`` (Ha) and the
        orbital-gradient norm ``< conv_tol_grad``, or after ``max_cycle`` steps.
      verbose: one stderr line per iteration (a host callback).
    """

    functional: Functional
    unrestricted: bool = False
    diis_space: int = 8
    level_shift: float = 0.0
    damping: float = 0.0
    max_cycle: int = 100
    conv_tol: float = 1e-10
    conv_tol_grad: float = 1e-5
    verbose: bool = False

    @classmethod
    def from_options(cls, options: SCFOptions, functional: Functional | None = None, **changes) -> "SCFProblem":
        """The problem ``options`` describe (``functional`` overrides ``options.xc``)."""
        tol_grad = options.conv_tol_grad if options.conv_tol_grad is not None else float(np.sqrt(options.conv_tol))
        fields = dict(
            functional=functional_by_name(options.xc) if functional is None else functional,
            unrestricted=options.unrestricted, diis_space=options.diis_space,
            level_shift=float(options.level_shift), damping=float(options.damping),
            max_cycle=options.max_cycle, conv_tol=options.conv_tol, conv_tol_grad=tol_grad,
        )
        return cls(**(fields | changes))

    @property
    def closed_shell(self) -> bool:
        return not self.unrestricted

    def mixer(self):
        return diis(self.diis_space) if self.diis_space else no_mixing()


# Eigenvalue splittings below this (Ha) count as degenerate in eigh_safe's derivative.
DEGENERACY_THRESHOLD = 1e-9


@jax.custom_jvp
def eigh_safe(a):
    """Eigenvalues (n,) ascending and eigenvectors (n, n) of a symmetric matrix (n, n).

    The same values as ``jnp.linalg.eigh``; the derivative is first-order perturbation theory,
    ``dU = U (G * f)``, ``G = U^T dA U``, ``f_ij = 1 / (e_j - e_i)``, with ``f_ij = 0`` where
    ``|e_j - e_i| < DEGENERACY_THRESHOLD``: a rotation inside a degenerate subspace is a gauge
    choice that projectors onto whole subspaces (density matrices, energies) do not see, so
    degenerate occupied orbitals (NH3, benzene) leave derivatives finite where ``eigh``'s are NaN.
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


def orbitals(problem: SCFProblem, system: KSSystem, fock):
    """Orbital energies (2, nmo) (Ha) and coefficients (2, nao, nmo) of spin Fock matrices (2, nao, nao).

    Roothaan-Hall ``F C = S C e`` solved in the orthogonal basis: ``(X^T F X) U = U e``, ``C = X U``.
    Restricted problems diagonalise ``fock[0]`` once and share the orbitals between the spins.
    Zero columns of X (linear dependencies dropped from a size-class-padded orthogonaliser) are
    directions with no orbital: they are put at :data:`~dftjax.system.PAD_LEVEL` so they are never
    occupied (with no zero column this adds exact zeros).
    """
    x = system.orthogonalizer
    empty = jnp.where(jnp.sum(x * x, axis=0) == 0.0, PAD_LEVEL, 0.0)
    energies, coeffs = [], []
    for spin in range(2 if problem.unrestricted else 1):
        e, u = eigh_safe(x.T @ fock[spin] @ x + jnp.diag(empty))
        energies.append(e)
        coeffs.append(x @ u)
    if not problem.unrestricted:
        energies, coeffs = energies * 2, coeffs * 2
    return jnp.stack(energies), jnp.stack(coeffs)


def occupations(system: KSSystem, nmo: int) -> jax.Array:
    """(2, nmo) aufbau occupations 0/1: the lowest ``nelec[s]`` orbitals of each spin (data, not shapes)."""
    return (jnp.arange(nmo)[None, :] < system.nelec[:, None]).astype(system.overlap.dtype)


def aufbau_density(system: KSSystem, coeffs) -> jax.Array:
    """(2, nao, nao) density matrices ``D_s = C_s n_s C_s^T`` of orbitals (2, nao, nmo)."""
    occ = occupations(system, coeffs.shape[-1])
    return jnp.einsum("sik,sk,sjk->sij", coeffs, occ, coeffs)


def scf_map(problem: SCFProblem, params, system: KSSystem, dm) -> jax.Array:
    """Phi(D): the aufbau density of the Fock matrix of ``dm`` (the SCF fixed-point map)."""
    fock, _ = fock_and_energy(problem.functional, params, system, dm, problem.closed_shell)
    return aufbau_density(system, orbitals(problem, system, fock)[1])


def commutator(system: KSSystem, fock, dm) -> jax.Array:
    """(2, nmo, nmo) orthogonalised orbital gradient ``X^T (F D S - S D F) X`` per spin."""
    fds = fock @ dm @ system.overlap
    return jnp.einsum("ia,sij,jb->sab", system.orthogonalizer, fds - jnp.swapaxes(fds, 1, 2),
                      system.orthogonalizer)


def initial_state(problem: SCFProblem, params, system: KSSystem, dm0) -> SCFState:
    """The state of the starting density ``dm0`` (2, nao, nao): its Fock matrix, energy and gradient."""
    fock, parts = fock_and_energy(problem.functional, params, system, dm0, problem.closed_shell)
    gradient_norm = jnp.linalg.norm(commutator(system, fock, dm0))
    return SCFState(dm0, fock, parts, jnp.asarray(jnp.inf), gradient_norm, problem.mixer().init(fock),
                    jnp.zeros((), jnp.int32))


def step(problem: SCFProblem, params, system: KSSystem, state: SCFState) -> SCFState:
    """One SCF iteration: mix the Fock matrices, shift, diagonalise, damp, build the new Fock matrix.

    CDIIS (Pulay, J. Comput. Chem. 3, 556 (1982)) extrapolates the Fock matrix from the history of
    commutator errors; the level shift ``b (S - S D S)`` raises the virtual orbitals (Saunders,
    Hillier, Int. J. Quantum Chem. 7, 699 (1973)); damping mixes in the previous density.
    """
    error = commutator(system, state.fock, state.dm)
    fock_mixed, mixer_state = problem.mixer().update(state.mixer, state.fock, error)
    if problem.level_shift:
        s = system.overlap
        fock_mixed = fock_mixed + problem.level_shift * (s[None] - s @ state.dm @ s)
    dm = aufbau_density(system, orbitals(problem, system, fock_mixed)[1])
    if problem.damping:
        dm = (1.0 - problem.damping) * dm + problem.damping * state.dm
    fock, parts = fock_and_energy(problem.functional, params, system, dm, problem.closed_shell)
    energy = parts.total
    gradient_norm = jnp.linalg.norm(commutator(system, fock, dm))
    if problem.verbose:
        jax.debug.callback(_report_iteration, state.iteration + 1, energy, energy - state.energy, gradient_norm)
    return SCFState(dm, fock, parts, energy - state.energy, gradient_norm, mixer_state, state.iteration + 1)


def _report_iteration(iteration, energy, delta, gradient_norm):
    print(f"[scf] cycle {int(iteration):3d}  E = {float(energy):.10f}  dE = {float(delta):+.3e}  |g| = {float(gradient_norm):.3e}",
          file=sys.stderr, flush=True)


def is_converged(problem: SCFProblem, state: SCFState) -> jax.Array:
    """() bool: energy change and orbital gradient both below their thresholds."""
    return (jnp.abs(state.delta_energy) < problem.conv_tol) & (state.gradient_norm < problem.conv_tol_grad)


def converge(problem: SCFProblem, params, system: KSSystem, dm0) -> SCFState:
    """Iterate from ``dm0`` to convergence (``lax.while_loop``, at most ``max_cycle`` steps).

    Not differentiated (inputs are ``stop_gradient``-ed): derivatives of the converged density
    come from an adjoint strategy (:mod:`dftjax.adjoint`), never from the loop.
    """
    params, system, dm0 = jax.lax.stop_gradient((params, system, dm0))

    def cond(state):
        return (~is_converged(problem, state)) & (state.iteration < problem.max_cycle)

    return jax.lax.while_loop(cond, lambda state: step(problem, params, system, state),
                              initial_state(problem, params, system, dm0))


def iterate(problem: SCFProblem, params, system: KSSystem, dm0, n_steps: int, *, checkpoint: bool = True):
    """``n_steps`` SCF iterations from ``dm0`` as a ``lax.scan``, differentiable step by step.

    Returns ``(final SCFState, (energies (n_steps,), dms (n_steps, 2, nao, nao)))``; each step is
    rematerialised under ``jax.checkpoint`` in reverse mode (memory of one step, not n_steps).
    """
    one = (lambda st: step(problem, params, system, st))
    one = jax.checkpoint(one) if checkpoint else one

    def body(state, _):
        state = one(state)
        return state, (state.energy, state.dm)

    return jax.lax.scan(body, initial_state(problem, params, system, dm0), None, length=n_steps)


# Size-class programs: jitted, and kept on disk as lowered modules so a new process skips tracing
_solve = class_program(converge, static_argnums=(0,), name="converge")
_iterate = class_program(iterate, static_argnums=(0, 4), name="iterate")


@dataclasses.dataclass(frozen=True)
class SCFResult:
    """Result of :func:`run_scf` (hartree, bohr; atomic units for the dipole)."""

    energy: float
    energy_parts: dict
    converged: bool
    iterations: int
    mo_energy: np.ndarray  # (2, nmo) (both rows equal for restricted)
    mo_coeff: np.ndarray  # (2, nao, nmo)
    mo_occ: np.ndarray  # (2, nmo) occupations 0/1 per spin
    dm: np.ndarray  # (2, nao, nao)
    mulliken_charges: np.ndarray  # (n_atoms,)
    dipole: np.ndarray  # (3,) e*bohr (atomic units)
    homo_lumo_gap: float  # Ha (smallest over spins)
    s2: float  # <S^2>
    wall_time_s: float
    attempts: tuple[str, ...]
    n_basis: int
    xc: str
    basis: str
    unrestricted: bool
    #: wall seconds per phase: ``setup`` (basis, integrals, grid, AO values, initial guess; first
    #: call includes their compilation), ``solve`` (the SCF loop(s)), ``properties`` (orbitals
    #: from the last Fock matrix, Mulliken charges, dipole, <S^2>)
    timings: dict = dataclasses.field(default_factory=dict)
    #: XLA compilations during the call (:class:`dftjax.compilation.CompilationCounter`):
    #: ``compilations``, ``compile_seconds``, ``cache_hits`` (persistent-cache reads)
    compilations: dict = dataclasses.field(default_factory=dict)
    #: the array sizes the compiled programs depend on (their size class)
    size_class: dict = dataclasses.field(default_factory=dict)


def initial_density(molecule: Molecule, system: KSSystem | None, options: SCFOptions, layout=None) -> jax.Array:
    """(2, nao, nao) starting spin density matrices (in ``layout``'s padded AO order when given).

    Guesses (``options.init_guess``, PySCF's names; :data:`dftjax.system.INIT_GUESSES`):

    * ``"minao"``: PySCF's superposition of minimal-basis atomic densities projected onto the basis
      (``pyscf.scf.hf.init_guess_by_minao``).
    * ``"atom"``: PySCF's superposition of spherically (occupation) averaged atomic HF densities
      (``pyscf.scf.hf.init_guess_by_atom``).
    * ``"huckel"``: PySCF's Huckel guess from those atomic HF orbitals (doi:10.1021/acs.jctc.8b01089):
      ``pyscf.scf.hf.init_guess_by_huckel`` for spin 0; with unpaired electrons the alpha and beta
      aufbau densities of the same orbitals (``pyscf.scf.uhf.UHF(mol).init_guess_by_huckel(mol,
      breaksym=False)``), since the restricted version occupies only ``nelectron // 2`` orbitals.
    * ``"1e"`` (aliases ``"hcore"``, ``"core"``): occupied orbitals of the core Hamiltonian.

    A total density (minao, atom, closed-shell huckel) is split into spins in proportion to
    ``molecule.nelec``. The PySCF guesses need no integrals (``system`` may be None when
    ``break_symmetry`` is off); ``"1e"`` and ``break_symmetry`` read ``system``.
    """
    if options.init_guess in CORE_GUESSES:
        fock = jnp.stack([system.h_core, system.h_core])
        dm = aufbau_density(system, orbitals(SCFProblem.from_options(options), system, fock)[1])
    else:
        spins = _pyscf_guess(molecule, options.basis, options.init_guess)
        if layout is not None:
            spins = layout.pad_matrix(spins)
        dm = jax.device_put(spins)  # no per-shape program
    if options.break_symmetry:
        dm = _broken_symmetry(molecule, options, system, dm)
    return dm


def _pyscf_guess(molecule: Molecule, basis: str, name: str) -> np.ndarray:
    """(2, nao, nao) numpy spin densities of PySCF's ``name`` guess in the molecule's own AO order."""
    from pyscf.scf import hf, uhf

    mol = molecule.to_pyscf(basis=basis)
    if name == "huckel" and molecule.spin != 0:
        return np.asarray(uhf.UHF(mol).init_guess_by_huckel(mol, breaksym=False))
    guesses = {"minao": hf.init_guess_by_minao, "atom": hf.init_guess_by_atom, "huckel": hf.init_guess_by_huckel}
    total = np.asarray(guesses[name](mol))
    n_alpha, n_beta = molecule.nelec
    n = n_alpha + n_beta
    return np.stack([total * n_alpha / n, total * n_beta / n])


def _broken_symmetry(molecule: Molecule, options: SCFOptions, system: KSSystem, dm) -> jax.Array:
    """Rotate the alpha and beta HOMO/LUMO of the guess's orbitals by +-45 degrees.

    The orbitals are those of the Fock matrix of the guess density. For stretched H2 this turns
    sigma_g / sigma_u into left- and right-localised orbitals of opposite spin, the usual start
    towards the broken-symmetry UKS solution (Noodleman, J. Chem. Phys. 74, 5737 (1981)).
    """
    problem = SCFProblem.from_options(options)
    fock, _ = fock_and_energy(problem.functional, problem.functional.params, system, dm)
    _, coeffs = orbitals(problem, system, fock)
    dms = []
    for spin, n_occ in enumerate(molecule.nelec):
        c = np.array(coeffs[spin])
        if 0 < n_occ < c.shape[1]:
            homo, lumo = c[:, n_occ - 1].copy(), c[:, n_occ].copy()
            sign = 1.0 if spin == 0 else -1.0
            c[:, n_occ - 1] = (homo + sign * lumo) / np.sqrt(2.0)
        occupied = c[:, :n_occ]
        dms.append(occupied @ occupied.T)
    return jnp.asarray(np.stack(dms))


def run_scf(molecule: Molecule, options: SCFOptions | None = None, *, params=None, field=None,
            verbose: bool = False) -> SCFResult:
    """Converge a Kohn-Sham (or HF) calculation.

    DIIS first; if that does not converge within ``max_cycle``, the calculation restarts from the
    last density with a level shift of 0.3 Ha and damping 0.3 (the attempts are reported in
    ``SCFResult.attempts``). A calculation that still does not converge is returned with
    ``converged=False`` and a warning.

    Args:
      molecule: a validated molecule.
      options: :class:`SCFOptions` (defaults: PBE/def2-SVP, restricted).
      params: functional parameters (default: the functional's own).
      field: (3,) uniform electric field in atomic units (Ha / (e bohr)), or None; the energy
        includes ``+F . r`` of the electrons and ``-F . sum Z R`` of the nuclei (origin at 0 bohr,
        ``dE/dF = -mu``; :func:`dftjax.system.with_field`).
      verbose: print one line per iteration (energy, its change, orbital-gradient norm) on stderr.

    Raises:
      ValueError: unknown functional, restricted calculation with unpaired electrons, bad option.
    """
    options = SCFOptions() if options is None else options
    field = None if field is None else as_field(field)
    with CompilationCounter() as counter:
        result = _run_scf(molecule, options, params, verbose, field)
    return dataclasses.replace(result, compilations=counter.as_dict())


def _run_scf(molecule: Molecule, options: SCFOptions, params, verbose: bool, field=None) -> SCFResult:
    start = time.perf_counter()
    functional = check_options(molecule, options)
    params = functional.params if params is None else params
    basis = make_basis(molecule, options.basis)
    layout = None
    if uses_size_classes(options, functional):
        from dftjax.adjoint import padded_system  # the differentiable system builder, jitted per class

        system, layout = padded_system(molecule, options, functional)
    else:
        system = build_system(molecule, options, basis)
    if field is not None:
        system = with_field(system, field, molecule)
    dm = jax.block_until_ready(initial_density(molecule, system, options, layout))
    jax.block_until_ready(system)
    timings = {"setup": time.perf_counter() - start}
    attempts = []
    recipes = [(options.level_shift, options.damping, "diis"), (0.3, 0.3, "diis+level_shift=0.3+damping=0.3")]
    for level_shift, damping, label in recipes:
        problem = SCFProblem.from_options(options, functional, level_shift=float(level_shift),
                                          damping=float(damping), verbose=verbose)
        state = jax.block_until_ready(_solve(problem, params, system, dm))
        attempts.append(label)
        converged = bool(is_converged(problem, state))
        if verbose:
            print(f"[scf] {label}: E = {float(state.energy):.10f} after {int(state.iteration)} iterations, "
                  f"|g| = {float(state.gradient_norm):.2e}, converged={converged}", file=sys.stderr, flush=True)
        if converged:
            break
        dm = state.dm
    timings["solve"] = time.perf_counter() - start - timings["setup"]
    if not converged:
        warnings.warn(
            f"SCF not converged after {len(attempts)} attempts ({', '.join(attempts)}): "
            f"E = {float(state.energy):.10f}, dE = {float(state.delta_energy):.2e}, |g| = {float(state.gradient_norm):.2e}",
            stacklevel=3,
        )
    return _result(molecule, options, basis, system, layout, problem, state, converged, attempts, start, timings)


_orbitals = class_program(orbitals, static_argnums=(0,), name="orbitals")


def _result(molecule, options, basis, system, layout, problem, state, converged, attempts, start,
            timings) -> SCFResult:
    # the last SCF step built the Fock matrices and energy parts of state.dm: no rebuild here
    parts = state.parts
    mo_energy, mo_coeff = (np.asarray(x) for x in _orbitals(problem, system, state.fock))
    # padding AOs and dropped linear dependencies are orbitals at PAD_LEVEL: the top of the list
    nmo = int(np.sum(mo_energy[0] < 0.5 * PAD_LEVEL))
    mo_energy, mo_coeff = mo_energy[:, :nmo], mo_coeff[:, :, :nmo]
    dm, overlap, dipole_ints = np.asarray(state.dm), np.asarray(system.overlap), np.asarray(system.dipole_ints)
    if layout is not None:
        mo_coeff = layout.orbital.unpad_rows(mo_coeff)
        dm, overlap, dipole_ints = (layout.unpad_matrix(a) for a in (dm, overlap, dipole_ints))
    mo_occ = np.zeros((2, nmo))
    for s, n in enumerate(molecule.nelec):
        mo_occ[s, :n] = 1.0
    s = overlap
    # Mulliken populations per AO, summed per atom.
    population = np.einsum("sij,ji->i", dm, s)
    atom_of_ao = np.empty(basis.nao, dtype=np.int64)
    for shell in range(basis.n_shells):
        atom_of_ao[basis.ao_indices([shell]).ravel()] = basis.shell_atom[shell]
    charges = molecule.atomic_numbers.astype(float) - np.bincount(atom_of_ao, population, minlength=molecule.n_atoms)
    electronic_dipole = -np.einsum("xij,ji->x", dipole_ints, dm[0] + dm[1])
    nuclear_dipole = molecule.atomic_numbers @ molecule.coords
    gaps = []
    for spin, n in enumerate(molecule.nelec):
        if 0 < n < nmo:
            gaps.append(mo_energy[spin, n] - mo_energy[spin, n - 1])
    # <S^2> = S_z(S_z + 1) + n_beta - sum_ij |<i_a|j_b>|^2 over occupied orbitals (Szabo-Ostlund 2.271).
    n_alpha, n_beta = molecule.nelec
    ca, cb = mo_coeff[0][:, :n_alpha], mo_coeff[1][:, :n_beta]
    sz = 0.5 * (n_alpha - n_beta)
    s2 = sz * (sz + 1) + n_beta - float(np.sum((ca.T @ s @ cb) ** 2))
    elapsed = time.perf_counter() - start
    timings = dict(timings, properties=elapsed - timings["setup"] - timings["solve"])
    return SCFResult(
        energy=float(parts.total),
        energy_parts={k: float(v) for k, v in parts._asdict().items()},
        converged=converged,
        iterations=int(state.iteration),
        mo_energy=mo_energy,
        mo_coeff=mo_coeff,
        mo_occ=mo_occ,
        dm=dm,
        mulliken_charges=charges,
        dipole=electronic_dipole + nuclear_dipole,
        homo_lumo_gap=float(min(gaps)) if gaps else float("nan"),
        s2=s2,
        wall_time_s=elapsed,
        attempts=tuple(attempts),
        n_basis=basis.nao,
        xc=options.xc,
        basis=options.basis,
        unrestricted=options.unrestricted,
        timings=timings,
        size_class=layout.describe() if layout is not None else size_class(system),
    )


def uses_size_classes(options: SCFOptions, functional: Functional) -> bool:
    """Whether ``run_scf`` pads to a size class: asked for, on dftjax's own grid, a functional that
    reads only the density (nonlocal ones take PySCF's grid Coulomb potentials), and not range
    separation with density fitting."""
    return (options.size_classes and not options.pyscf_grids
            and not getattr(functional, "needs_grid_coulomb", False)
            # range separation with density fitting needs the eigenvalue-cut long-range metric of
            # the unpadded build (system._df_factor); the padded one is a Cholesky factor
            and not range_separated_fit(functional, options.density_fit))


def size_class(system: KSSystem) -> dict:
    """The sizes the compiled SCF programs depend on: AOs, MOs, auxiliary functions, grid points."""
    return {"nao": int(system.overlap.shape[-1]), "nmo": int(system.orthogonalizer.shape[-1]),
            "naux": int(system.df_factor.shape[0]) if system.df_factor.ndim == 3 else 0,
            "n_grid": int(system.weights.shape[0])}


def scf_scan(molecule: Molecule, options: SCFOptions, n_steps: int, *, params=None):
    """A fixed number of SCF steps as ``lax.scan``: returns (final SCFState, (energies, dms)) trajectory."""
    functional = check_options(molecule, options)
    params = functional.params if params is None else params
    system = build_system(molecule, options)
    dm = initial_density(molecule, system, options)
    return _iterate(SCFProblem.from_options(options, functional), params, system, dm, n_steps)
