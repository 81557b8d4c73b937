"""Kohn-Sham and Hartree-Fock self-consistent field, restricted and unrestricted.

The SCF is three layers:

1. :func:`~dftjax.system.build_system` (once per geometry): integrals, grid, AO values on the grid, the
   orthogonaliser X (S^-1/2 with linear dependencies removed): a :class:`KSSystem` of arrays.
2. :func:`~dftjax.fock.fock_and_energy` (pure): from spin density matrices ``dm (2, nao, nao)`` to the spin Fock
   matrices and the total energy. The XC potential matrix is ``jax.grad`` of the XC energy with
   respect to the density matrix, so LDA, GGA, meta-GGA and learned functionals share one path:
   ``V^xc_{s, mu nu} = d E_xc / d D^s_{mu nu}`` (Pople, Gill, Johnson, Chem. Phys. Lett. 199, 557
   (1992) write out the same matrix elements by hand).
3. :func:`run_scf`: the loop, a ``lax.while_loop`` over an immutable :class:`SCFState` with CDIIS
   (:mod:`dftjax.mixing`), or :func:`scf_scan`, a fixed number of steps as ``lax.scan`` returning the
   trajectory. Energies in hartree, lengths in bohr.

Restricted calculations carry two equal spin blocks; the Fock matrices then coincide and the
closed-shell energy expression is recovered exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from basis.gto import make_basis
from basis.molecule import Molecule
from dftjax.fock import EnergyParts, coulomb_exchange, exchange_coefficients, fock_and_energy, xc_energy
from dftjax.mixing import diis
from dftjax.system import KSSystem, SCFOptions, build_system, check_options, functional_by_name
from functionals import Functional

__all__ = [
    "SCFOptions", "KSSystem", "SCFState", "SCFResult", "EnergyParts", "build_system", "fock_and_energy",
    "coulomb_exchange", "exchange_coefficients", "xc_energy", "initial_density", "run_scf", "scf_scan",
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


@dataclasses.dataclass(frozen=True)
class _Static:
    """Hashable description of the calculation (jit static argument)."""

    xc: str
    nelec: tuple[int, int]
    unrestricted: bool
    density_fit: bool
    level_shift: float
    damping: float
    diis_space: int
    max_cycle: int
    conv_tol: float
    conv_tol_grad: float
    verbose: bool = False


# The integral functions are jitted where they are defined; AO values are jitted here.

def _occupied_dm(system: KSSystem, fock, nelec, level_shift_dm=None, level_shift=0.0):
    """Diagonalise each spin Fock matrix in the orthogonal basis; aufbau density matrices."""
    x = system.orthogonalizer
    dms, energies, coeffs = [], [], []
    for s in range(2):
        f = fock[s]
        if level_shift:
            sds = system.overlap @ level_shift_dm[s] @ system.overlap
            f = f + level_shift * (system.overlap - sds)
        e, c = jnp.linalg.eigh(x.T @ f @ x)
        c = x @ c
        occ = c[:, : nelec[s]]
        dms.append(occ @ occ.T)
        energies.append(e)
        coeffs.append(c)
    return jnp.stack(dms), jnp.stack(energies), jnp.stack(coeffs)


def _commutator(system: KSSystem, fock, dm):
    s = system.overlap
    x = system.orthogonalizer
    fds = fock @ dm @ s
    return jnp.einsum("ia,sij,jb->sab", x, fds - jnp.swapaxes(fds, 1, 2), x)


def _step(static: _Static, functional: Functional, mixer, params, system: KSSystem, state: SCFState):
    """One SCF iteration: mix, diagonalise, build the new density and its Fock matrix."""
    error = _commutator(system, state.fock, state.dm)
    fock_mixed, mixer_state = mixer.update(state.mixer, state.fock, error)
    dm_new, _, _ = _occupied_dm(system, fock_mixed, static.nelec, state.dm, static.level_shift)
    if static.damping:
        dm_new = (1.0 - static.damping) * dm_new + static.damping * state.dm
    if not static.unrestricted:
        dm_new = jnp.stack([dm_new[0], dm_new[0]])
    fock, parts = fock_and_energy(functional, params, system, dm_new, not static.unrestricted)
    energy = parts.total
    gradient_norm = jnp.linalg.norm(_commutator(system, fock, dm_new))
    if static.verbose:
        jax.debug.callback(_report_iteration, state.iteration + 1, energy, energy - state.energy, gradient_norm)
    return SCFState(dm_new, fock, parts, energy - state.energy, gradient_norm, mixer_state, state.iteration + 1)


def _report_iteration(iteration, energy, delta, gradient_norm):
    print(f"[scf] cycle {int(iteration):3d}  E = {float(energy):.10f}  dE = {float(delta):+.3e}  |g| = {float(gradient_norm):.3e}",
          file=sys.stderr, flush=True)


def _initial_state(static, functional, mixer, params, system, dm0):
    fock, parts = fock_and_energy(functional, params, system, dm0, not static.unrestricted)
    gradient_norm = jnp.linalg.norm(_commutator(system, fock, dm0))
    return SCFState(dm0, fock, parts, jnp.asarray(jnp.inf), gradient_norm, mixer.init(fock), jnp.zeros((), jnp.int32))


def _converged(static: _Static, state: SCFState):
    return (jnp.abs(state.delta_energy) < static.conv_tol) & (state.gradient_norm < static.conv_tol_grad)


@functools.partial(jax.jit, static_argnums=(0,))
def _solve(static: _Static, params, system: KSSystem, dm0):
    functional = functional_by_name(static.xc)
    mixer = diis(static.diis_space)
    state = _initial_state(static, functional, mixer, params, system, dm0)

    def cond(state):
        return (~_converged(static, state)) & (state.iteration < static.max_cycle)

    def body(state):
        return _step(static, functional, mixer, params, system, state)

    return jax.lax.while_loop(cond, body, state)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _scan(static: _Static, params, system: KSSystem, dm0, n_steps: int):
    functional = functional_by_name(static.xc)
    mixer = diis(static.diis_space)
    state = _initial_state(static, functional, mixer, params, system, dm0)

    def body(state, _):
        state = _step(static, functional, mixer, params, system, state)
        return state, (state.energy, state.dm)

    return jax.lax.scan(body, state, None, length=n_steps)


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


def _static(molecule: Molecule, options: SCFOptions, level_shift: float, damping: float, verbose: bool = False) -> _Static:
    return _Static(
        xc=options.xc,
        nelec=molecule.nelec,
        unrestricted=options.unrestricted,
        density_fit=options.density_fit,
        level_shift=float(level_shift),
        damping=float(damping),
        diis_space=options.diis_space,
        max_cycle=options.max_cycle,
        conv_tol=options.conv_tol,
        conv_tol_grad=options.conv_tol_grad if options.conv_tol_grad is not None else float(np.sqrt(options.conv_tol)),
        verbose=verbose,
    )


def initial_density(molecule: Molecule, system: KSSystem, options: SCFOptions) -> jax.Array:
    """(2, nao, nao) starting spin density matrices.

    ``"minao"``: PySCF's superposition of minimal-basis atomic densities projected onto the basis
    (``pyscf.scf.hf.init_guess_by_minao``), halved into spins. ``"1e"``: occupied orbitals of the
    core Hamiltonian.
    """
    if options.init_guess == "1e":
        fock = jnp.stack([system.h_core, system.h_core])
        dm, _, _ = _occupied_dm(system, fock, molecule.nelec)
    else:
        from pyscf.scf import hf

        mol = molecule.to_pyscf(basis=options.basis)
        total = np.asarray(hf.init_guess_by_minao(mol))
        n_alpha, n_beta = molecule.nelec
        n = n_alpha + n_beta
        dm = jnp.asarray(np.stack([total * n_alpha / n, total * n_beta / n]))
    if options.break_symmetry:
        dm = _broken_symmetry(molecule, options, system, dm)
    return dm


def _broken_symmetry(molecule: Molecule, options: SCFOptions, system: KSSystem, dm) -> jax.Array:
    """Rotate the alpha and beta HOMO/LUMO of the guess's orbitals by +-45 degrees.

    The orbitals are those of the Fock matrix of the guess density. For stretched H2 this turns
    sigma_g / sigma_u into left- and right-localised orbitals of opposite spin, the usual start
    towards the broken-symmetry UKS solution (Noodleman, J. Chem. Phys. 74, 5737 (1981)).
    """
    functional = functional_by_name(options.xc)
    fock, _ = fock_and_energy(functional, functional.params, system, dm)
    _, _, coeffs = _occupied_dm(system, fock, molecule.nelec)
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


def run_scf(molecule: Molecule, options: SCFOptions | None = None, *, params=None, verbose: bool = False) -> SCFResult:
    """Converge a Kohn-Sham (or HF) calculation.

    DIIS first; if that does not converge within ``max_cycle``, the calculation restarts from the
    last density with a level shift of 0.3 Ha and damping 0.3 (the attempts are reported in
    ``SCFResult.attempts``). A calculation that still does not converge is returned with
    ``converged=False`` and a warning.

    Args:
      molecule: a validated molecule.
      options: :class:`SCFOptions` (defaults: PBE/def2-SVP, restricted).
      params: functional parameters (default: the functional's own).
      verbose: print one line per iteration (energy, its change, orbital-gradient norm) on stderr.

    Raises:
      ValueError: unknown functional, restricted calculation with unpaired electrons, bad option.
    """
    options = SCFOptions() if options is None else options
    start = time.perf_counter()
    functional = check_options(molecule, options)
    params = functional.params if params is None else params
    basis = make_basis(molecule, options.basis)
    system = build_system(molecule, options, basis)
    dm = jax.block_until_ready(initial_density(molecule, system, options))
    jax.block_until_ready(system)
    timings = {"setup": time.perf_counter() - start}
    attempts = []
    recipes = [(options.level_shift, options.damping, "diis"), (0.3, 0.3, "diis+level_shift=0.3+damping=0.3")]
    for level_shift, damping, label in recipes:
        static = _static(molecule, options, level_shift, damping, verbose)
        state = jax.block_until_ready(_solve(static, params, system, dm))
        attempts.append(label)
        converged = bool(_converged(static, state))
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
            stacklevel=2,
        )
    return _result(molecule, options, basis, system, state, converged, attempts, start, timings)


def _result(molecule, options, basis, system, state, converged, attempts, start, timings) -> SCFResult:
    # the last SCF step built the Fock matrices and energy parts of state.dm: no rebuild here
    fock, parts = state.fock, state.parts
    _, mo_energy, mo_coeff = _occupied_dm(system, fock, molecule.nelec)
    mo_energy, mo_coeff = np.asarray(mo_energy), np.asarray(mo_coeff)
    nmo = mo_energy.shape[1]
    mo_occ = np.zeros((2, nmo))
    for s, n in enumerate(molecule.nelec):
        mo_occ[s, :n] = 1.0
    dm = np.asarray(state.dm)
    s = np.asarray(system.overlap)
    # Mulliken populations per AO, summed per atom.
    population = np.einsum("sij,ji->i", dm, s)
    atom_of_ao = np.empty(basis.nao, dtype=np.int64)
    for shell in range(basis.n_shells):
        atom_of_ao[basis.ao_indices([shell]).ravel()] = basis.shell_atom[shell]
    charges = molecule.atomic_numbers.astype(float) - np.bincount(atom_of_ao, population, minlength=molecule.n_atoms)
    electronic_dipole = -np.einsum("xij,ji->x", np.asarray(system.dipole_ints), dm[0] + dm[1])
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
    )


def scf_scan(molecule: Molecule, options: SCFOptions, n_steps: int, *, params=None):
    """A fixed number of SCF steps as ``lax.scan``: returns (final SCFState, (energies, dms)) trajectory."""
    functional = check_options(molecule, options)
    params = functional.params if params is None else params
    system = build_system(molecule, options)
    dm = initial_density(molecule, system, options)
    return _scan(_static(molecule, options, options.level_shift, options.damping), params, system, dm, n_steps)
