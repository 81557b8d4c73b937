"""The arrays a Kohn-Sham calculation needs for one geometry: options, integrals, grid, AO values.

:func:`build_system` runs once per geometry and returns a :class:`KSSystem` pytree: overlap, core
Hamiltonian, orthogonaliser, exact or density-fitted (and long-range, for range-separated hybrids)
electron-repulsion integrals, the quadrature grid and the AO values on it. The grid arrays can be
split across devices (``SCFOptions.shard_grid``). Atomic units (bohr, hartree).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from basis.ao import ao_values
from basis.gto import Basis, make_auxbasis, make_basis
from basis.grids import make_grid, pyscf_grid
from basis.integrals import one_electron, two_electron
from basis.molecule import Molecule, nuclear_repulsion
from functionals import Functional, get_functional

LINDEP_THRESHOLD = 1e-8


@dataclasses.dataclass(frozen=True, kw_only=True)
class SCFOptions:
    """Options of a Kohn-Sham (or HF) calculation.

    Attributes:
      xc: functional name as PySCF/libxc (``"pbe"``, ``"b3lyp"``, ``"hf"``, ...).
      basis: orbital basis name.
      unrestricted: UKS/UHF instead of RKS/RHF (required when spin != 0).
      grid_level: 0-9 as PySCF (default 3).
      pyscf_grids: use PySCF's own grid (for exact parity tests) instead of dftjax's.
      density_fit: density-fitted J/K with PySCF's default auxiliary basis (or ``auxbasis``).
      auxbasis: auxiliary basis name; None for PySCF's default.
      max_cycle: maximum number of SCF iterations.
      conv_tol: convergence threshold on the energy change (Ha).
      conv_tol_grad: threshold on the orbital gradient (commutator) norm; None: sqrt(conv_tol).
      diis_space: number of DIIS vectors.
      level_shift: virtual-orbital level shift (Ha) for the first attempt.
      damping: density-matrix damping factor in [0, 1) for the first attempt.
      init_guess: the starting density, by PySCF's names (:data:`INIT_GUESSES`): ``"minao"``
        (superposition of minimal-basis atomic densities), ``"atom"`` (superposition of spherically
        averaged atomic HF densities), ``"huckel"`` (Huckel orbitals from those atomic HF
        orbitals), or ``"1e"`` (occupied orbitals of the core Hamiltonian; aliases ``"hcore"`` and
        ``"core"``). See :func:`dftjax.scf.initial_density`.
      break_symmetry: unrestricted only: mix the alpha HOMO and LUMO of the initial guess
        (HOMO +- LUMO over sqrt 2, opposite signs for the two spins) so that a singlet can relax to a
        broken-symmetry solution (stretched bonds, diradicals).
      size_classes: pad the basis, auxiliary basis, atoms and grid to a ladder of sizes
        (:mod:`basis.size_class`) so that every molecule of a size class shares one compiled
        program (padding contributes exact zeros); False compiles for the molecule's own sizes.
        ``pyscf_grids`` and nonlocal functionals always use the molecule's own sizes.
      shard_grid: split the grid points (AO values, XC) across all local JAX devices with
        ``jax.sharding`` when more than one is visible (CPU hosts: ``XLA_FLAGS=
        "--xla_force_host_platform_device_count=N --xla_cpu_multi_thread_eigen=false"``, the second
        flag keeping the collectives from starving on few cores); results equal the single-device ones.
    """

    xc: str = "pbe"
    basis: str = "def2-svp"
    unrestricted: bool = False
    grid_level: int = 3
    pyscf_grids: bool = False
    density_fit: bool = False
    auxbasis: str | None = None
    max_cycle: int = 100
    conv_tol: float = 1e-10
    conv_tol_grad: float | None = None
    diis_space: int = 8
    level_shift: float = 0.0
    damping: float = 0.0
    init_guess: str = "minao"
    break_symmetry: bool = False
    size_classes: bool = True
    shard_grid: bool = True


class KSSystem(NamedTuple):
    """Everything the SCF step needs, as arrays (a pytree).

    Attributes:
      overlap: (nao, nao) S.
      h_core: (nao, nao) kinetic + nuclear attraction.
      orthogonalizer: (nao, nmo) X with X^T S X = 1.
      e_nuc: () nuclear repulsion (Ha).
      eri: (nao, nao, nao, nao) exact ERIs, or a (0,) placeholder with density fitting.
      df_factor: (naux, nao, nao) B = L^-1 (P|mu nu), L L^T = (P|Q), or a (0,) placeholder.
      eri_lr: long-range ERIs of erf(omega r12)/r12 (range-separated hybrids, exact J/K), else (0,).
      df_factor_lr: the same B for erf(omega r12)/r12 (range-separated hybrids with density
        fitting, as PySCF's range-separated DF), else (0,).
      ao: (4, n_grid, nao) AO values and gradients on the grid (a (4, 0, nao) placeholder for HF).
      weights: (n_grid,) quadrature weights.
      dipole_ints: (3, nao, nao) <mu| r - origin |nu>, origin at 0.
      nelec: (2,) float numbers of alpha and beta electrons: data, not a shape, so one compiled SCF
        serves every charge and spin of its size class (occupations are ``arange(nmo) < nelec``).
      grid_coulomb: (n_grid, nao, nao) ``int phi_mu phi_nu / |r_g - r'|`` on the grid points, for
        functionals with ``needs_grid_coulomb`` (local hybrids read the exact-exchange energy
        density; set by their caller, e.g. ``dftjax.xc3d.train``), else a (0,) placeholder; for
        functionals that declare ``grid_coulomb_omegas`` (DM21: 0 and 0.4) one per kernel,
        (n_omega, n_grid, nao, nao), the kernel ``erf(omega r) / r`` (omega = 0: ``1 / r``).
    """

    overlap: jax.Array
    h_core: jax.Array
    orthogonalizer: jax.Array
    e_nuc: jax.Array
    eri: jax.Array
    df_factor: jax.Array
    eri_lr: jax.Array
    df_factor_lr: jax.Array
    ao: jax.Array
    weights: jax.Array
    dipole_ints: jax.Array
    nelec: jax.Array
    grid_coulomb: jax.Array = np.zeros((0,))  # numpy: no JAX backend start at import



_ao_values = jax.jit(ao_values, static_argnames="deriv")


@functools.lru_cache(maxsize=64)
def functional_by_name(xc: str) -> Functional:
    return get_functional(xc)


# SCFOptions.init_guess values: PySCF's names, plus "core" for "1e"; CORE_GUESSES diagonalise the core
# Hamiltonian (dftjax integrals), the others are computed by PySCF (dftjax.scf.initial_density)
CORE_GUESSES = ("1e", "hcore", "core")
INIT_GUESSES = ("minao", "atom", "huckel") + CORE_GUESSES


def check_options(molecule: Molecule, options: SCFOptions) -> Functional:
    """Validate before any heavy work; returns the functional."""
    functional = functional_by_name(options.xc)  # ValueError with close matches for unknown names
    if molecule.spin != 0 and not options.unrestricted:
        raise ValueError(
            f"restricted SCF with spin {molecule.spin}: {molecule.spin} unpaired electrons need unrestricted=True"
        )
    if options.init_guess not in INIT_GUESSES:
        raise ValueError(f"unknown init_guess {options.init_guess!r}: expected one of "
                         + ", ".join(repr(name) for name in INIT_GUESSES))
    if not 0.0 <= options.damping < 1.0:
        raise ValueError(f"damping {options.damping} must be in [0, 1)")
    if options.break_symmetry and not options.unrestricted:
        raise ValueError("break_symmetry needs an unrestricted calculation (unrestricted=True)")
    if options.max_cycle < 1:
        raise ValueError(f"max_cycle {options.max_cycle} must be at least 1")
    return functional


# Range-separated functionals with density fitting have energies but no derivatives here.
RANGE_SEPARATED_FIT = ("the fitted long-range Coulomb metric is numerically singular and its eigenvalue cut "
                       "is not differentiable")


def range_separated_fit(functional: Functional, density_fit: bool) -> bool:
    """Whether this is the combination with energies only: range separation and density fitting
    (the plain SCF takes the unpadded build; derivatives are refused)."""
    return bool(density_fit and functional.omega)


def check_position_derivatives(xc: str, what: str, density_fit: bool = False) -> None:
    """ValueError (before any heavy work) when ``xc`` cannot give derivatives in nuclear positions.

    Nonlocal functionals (``needs_grid_coulomb``, ``dftjax:nn-local-hybrid``) read grid Coulomb
    potentials from PySCF's ``int1e_grids``, which are not differentiable here (``dftjax.adjoint.system_at``
    refuses them); neither are range-separated functionals with ``density_fit``. ``what`` names the
    request in the message (``"--forces"``, ``"dftjax opt"``).
    """
    functional = functional_by_name(xc)
    if getattr(functional, "needs_grid_coulomb", False):
        raise ValueError(f"{what} is not available for {xc} (its exact-exchange energy density uses grid "
                         "Coulomb potentials that are not differentiable in nuclear positions here)")
    if range_separated_fit(functional, density_fit):
        raise ValueError(f"{what} is not available for {xc} with density fitting ({RANGE_SEPARATED_FIT}); "
                         "drop --density-fit")


# Orbital energy (Ha) given to padding AOs: they are orthonormal (S = 1 on their block), decoupled
# from every real AO (all their integrals vanish) and sit far above any real orbital, so they are
# never occupied and add nothing to any energy or density.
PAD_LEVEL = 1e4


@dataclasses.dataclass(frozen=True, eq=False)
class SizeClassLayout:
    """How one molecule sits in its size class (static NumPy), for results in PySCF's AO order.

    Attributes:
      orbital: the orbital basis in padded form (:class:`basis.size_class.PaddedBasis`).
      n_aux_pad: padded number of auxiliary functions (density fitting), else 0.
      n_atoms_pad: padded number of nuclei (dummy nuclei of charge 0).
      n_grid_pad: padded number of grid points (weight 0), 0 for Hartree-Fock.
    """

    orbital: Any
    n_aux_pad: int
    n_atoms_pad: int
    n_grid_pad: int

    def pad_matrix(self, m):
        return self.orbital.pad_matrix(m)

    def unpad_matrix(self, m):
        return self.orbital.unpad_matrix(m)

    def describe(self) -> dict:
        """The class as JSON-friendly sizes (what ``dftjax scf --json`` reports as ``size_class``)."""
        return {"nao": self.orbital.nao_pad, "naux": self.n_aux_pad, "n_atoms": self.n_atoms_pad,
                "n_grid": self.n_grid_pad, "shells": [list(g) for g in self.orbital.size_class.groups]}


def as_field(field) -> np.ndarray:
    """``field`` as a (3,) float64 array; ValueError unless it is three finite numbers."""
    try:
        f = np.asarray(field, dtype=np.float64)
    except (TypeError, ValueError):
        f = np.zeros(0)
    if f.shape != (3,) or not np.all(np.isfinite(f)):
        raise ValueError(f"field {field!r} must be three finite numbers (Ha / (e bohr))")
    return f


def with_field(system: KSSystem, field, molecule: Molecule) -> KSSystem:
    """``system`` in a uniform electric field ``F`` (3,), atomic units (Ha / (e bohr)).

    The electrons' potential energy ``+F . r`` adds ``sum_x F_x <mu|x|nu>`` to the core
    Hamiltonian and the nuclei's ``-F . sum_A Z_A R_A`` to the nuclear energy (origin at 0 bohr),
    so that ``dE/dF = -mu``: the convention of :func:`dftjax.adjoint.system_at`. Padded systems
    work unchanged (padding AOs have zero dipole integrals).

    Raises:
      ValueError: ``field`` is not three finite numbers.
    """
    f = as_field(field)
    nuclear_dipole = molecule.atomic_numbers.astype(np.float64) @ molecule.coords
    return system._replace(h_core=system.h_core + jnp.einsum("x,xij->ij", f, system.dipole_ints),
                           e_nuc=system.e_nuc - float(f @ nuclear_dipole))


def shard_grid(system: KSSystem) -> KSSystem:
    """``system`` with its grid arrays split across the local devices (unchanged with one device,
    or when the point count does not divide evenly); everything else replicated."""
    mesh = _grid_mesh()
    n_points = system.weights.shape[0]
    if mesh is None or n_points % mesh.devices.size:
        return system
    spec = jax.sharding.PartitionSpec
    replicated = jax.sharding.NamedSharding(mesh, spec())
    arrays = {name: jax.device_put(value, replicated) for name, value in system._asdict().items()}
    arrays["ao"] = jax.device_put(system.ao, jax.sharding.NamedSharding(mesh, spec(None, "grid", None)))
    arrays["weights"] = jax.device_put(system.weights, jax.sharding.NamedSharding(mesh, spec("grid")))
    return KSSystem(**arrays)


def build_system(molecule: Molecule, options: SCFOptions, basis: Basis | None = None, *,
                 functional: Functional | None = None) -> KSSystem:
    """Integrals, grid and AO values for one geometry, in PySCF's AO order (see :class:`KSSystem`).

    ``functional``: the functional the system is for (default: ``options.xc``'s). For a nonlocal
    one (``needs_grid_coulomb``, the neural local hybrid ``dftjax:nn-local-hybrid``) the Coulomb
    potentials of AO products on the grid points are added (``grid_coulomb``; PySCF
    ``int1e_grids``, so not differentiable in the nuclear positions) and the grid is not sharded.
    The size-class system of the same molecule is :func:`dftjax.adjoint.padded_system`.
    """
    by_name = check_options(molecule, options)
    functional = by_name if functional is None else functional
    nonlocal_xc = bool(getattr(functional, "needs_grid_coulomb", False))
    basis = make_basis(molecule, options.basis) if basis is None else basis
    coords = jnp.asarray(molecule.coords)
    charges = jnp.asarray(molecule.atomic_numbers, dtype=jnp.float64)
    core = one_electron.core_integrals(basis, coords, coords, charges)
    s = core.overlap
    h = core.kinetic + core.attraction
    x = canonical_orthogonalizer(np.asarray(s))
    omega = functional.omega
    eri = df = eri_lr = df_lr = jnp.zeros((0,))
    if options.density_fit:
        aux = make_auxbasis(molecule, options.basis, options.auxbasis,
                            exact_exchange=functional.kind == "hf" or functional.is_hybrid)
        df = _df_factor(basis, aux, coords, 0.0)
        if omega:
            df_lr = _df_factor(basis, aux, coords, omega)
    else:
        eri = two_electron.electron_repulsion(basis, coords)
        if omega:
            eri_lr = two_electron.electron_repulsion(basis, coords, omega=omega)
    mesh = _grid_mesh() if options.shard_grid and functional.kind != "hf" and not nonlocal_xc else None
    if functional.kind == "hf":
        ao = jnp.zeros((4, 0, basis.nao))
        weights = jnp.zeros((0,))
    else:
        grid = pyscf_grid(molecule, options.grid_level) if options.pyscf_grids else make_grid(molecule, options.grid_level)
        points, weights = _shard_points(mesh, np.asarray(grid.points), np.asarray(grid.weights))
        ao = _ao_values(basis, coords, points, deriv=1)
    grid_coulomb = np.zeros((0,))
    if nonlocal_xc:
        from dftjax.xc3d.exact_exchange import grid_coulomb_potentials  # PySCF, only for these functionals

        mol = molecule.to_pyscf(basis=options.basis)
        omegas = getattr(functional, "grid_coulomb_omegas", None)
        if omegas is None:  # one unattenuated kernel (the local hybrid): (n_grid, nao, nao)
            grid_coulomb = jnp.asarray(grid_coulomb_potentials(mol, np.asarray(points)))
        else:  # one per kernel (DM21: omega = 0 and 0.4): (n_omega, n_grid, nao, nao)
            grid_coulomb = jnp.asarray(np.stack([grid_coulomb_potentials(mol, np.asarray(points), omega=w)
                                                 for w in omegas]))
    system = KSSystem(
        overlap=s,
        h_core=h,
        orthogonalizer=jnp.asarray(x),
        e_nuc=nuclear_repulsion(molecule.atomic_numbers, coords),
        eri=eri,
        df_factor=df,
        eri_lr=eri_lr,
        df_factor_lr=df_lr,
        ao=ao,
        weights=weights,
        dipole_ints=core.dipole,
        nelec=jnp.asarray(molecule.nelec, dtype=jnp.float64),
        grid_coulomb=grid_coulomb,
    )
    if mesh is not None:
        # everything but the grid arrays is replicated, so one jitted step sees one device set
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        system = system._replace(**{
            name: jax.device_put(value, replicated)
            for name, value in system._asdict().items() if name not in ("ao", "weights")
        })
    return system


# Eigenvalues of the long-range (P|Q) below this are dropped (PySCF's df.incore.LINEAR_DEP_THR).
DF_LINDEP_THRESHOLD = 1e-7


def _df_factor(basis: Basis, aux: Basis, coords, omega: float) -> jax.Array:
    """(naux, nao, nao) B with sum_P B_P,mu nu B_P,la si = (mu nu|P) (P|Q)^-1 (Q|la si).

    For 1/r12, B = L^-1 (P|mu nu) with the Cholesky factor L L^T = (P|Q). The long-range
    erf(omega r12)/r12 metric of compact auxiliary functions is numerically singular (its smallest
    eigenvalues are ~1e-16, some negative), so there, as PySCF does when Cholesky fails,
    B = w^-1/2 U^T (P|mu nu) over the eigenpairs (w, U) of (P|Q) with w > DF_LINDEP_THRESHOLD.
    """
    j3 = two_electron.coulomb_3c(basis, aux, coords, omega=omega)  # (nao, nao, naux)
    j2 = two_electron.coulomb_2c(aux, coords, omega=omega)
    naux, nao = j2.shape[0], j3.shape[0]
    j3 = j3.reshape(-1, naux).T
    if not omega:
        low = jnp.linalg.cholesky(j2)
        return jax.scipy.linalg.solve_triangular(low, j3, lower=True).reshape(naux, nao, nao)
    w, u = jnp.linalg.eigh(j2)
    # dropped directions become zero rows, so the shape stays (naux, nao, nao) whatever the values
    keep = w > DF_LINDEP_THRESHOLD
    scale = jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, w, 1.0)), 0.0)
    return ((u.T @ j3) * scale[:, None]).reshape(-1, nao, nao)


def _grid_mesh() -> jax.sharding.Mesh | None:
    """A 1D mesh ``("grid",)`` over all local devices, or None with a single device."""
    devices = jax.local_devices()
    if len(devices) < 2:
        return None
    return jax.sharding.Mesh(np.array(devices), ("grid",))


def _shard_points(mesh, points: np.ndarray, weights: np.ndarray):
    """Grid points (n, 3) and weights (n,) as device arrays, split along n across ``mesh``.

    The grid is padded to a multiple of the device count with copies of its first point carrying
    zero weight, which add nothing to any integral (and keep the features finite). With
    ``mesh=None`` the arrays are returned unpadded on the default device. XLA's SPMD partitioner
    then splits the AO values and the XC evaluation by point and all-reduces the grid sums.
    """
    if mesh is None:
        return jnp.asarray(points), jnp.asarray(weights)
    n_devices = mesh.devices.size
    pad = (-len(weights)) % n_devices
    points = np.concatenate([points, np.repeat(points[:1], pad, axis=0)])
    weights = np.concatenate([weights, np.zeros(pad)])
    spec = jax.sharding.PartitionSpec
    return (jax.device_put(points, jax.sharding.NamedSharding(mesh, spec("grid", None))),
            jax.device_put(weights, jax.sharding.NamedSharding(mesh, spec("grid"))))


def canonical_orthogonalizer(s: np.ndarray, padded: bool = False) -> np.ndarray:
    """Canonical orthogonalisation X = U s^-1/2, dropping eigenvalues below LINDEP_THRESHOLD.

    (nao, nmo) with nmo the kept count; ``padded``: (nao, nao), the dropped directions as zero
    columns, so the shape does not depend on the values (the SCF puts them at PAD_LEVEL).
    """
    eigvals, eigvecs = np.linalg.eigh(s)
    keep = eigvals > LINDEP_THRESHOLD
    if padded:
        return np.where(keep, eigvecs / np.sqrt(np.where(keep, eigvals, 1.0)), 0.0)
    return eigvecs[:, keep] / np.sqrt(eigvals[keep])


