"""Kohn-Sham DFT on a uniform 1D grid (exponential Coulomb model of Baker et al., PRB 91, 235141 (2015)).

The solver of the Kohn-Sham-regularizer experiments (Li, Hoyer, Pederson, Sun, Cubuk, Riley & Burke,
"Kohn-Sham equations as regularizer", PRL 126, 036401 (2021)): a fixed number of damped
Kohn-Sham iterations written as a pure step function, so the whole trajectory can be differentiated
with respect to the parameters of a (neural) exchange-correlation functional.

The XC functional has the functional signature of :mod:`functionals` with the spin densities as
features: ``energy_density(params, spin_density (2, n)) -> (n,)``, energy per length
(hartree/bohr), ``E_xc = dx * sum(e)``. Spin-restricted calculations pass ``(n/2, n/2)``. Global
(non-local) models may use the whole grid. The XC potential is ``jax.grad`` of ``sum(e)`` (the
``dx`` of the quadrature cancels the ``1/dx`` of the functional derivative on the grid).

One iteration (:func:`kohn_sham_step`) maps the input spin densities to::

    v_s,sigma = v_ext + v_H[n] + v_xc,sigma[n_up, n_dn]
    (T + v_s,sigma) phi_i,sigma = eps_i,sigma phi_i,sigma          (dense eigh on the grid)
    n_sigma_out = sum_i f_i,sigma |phi_i,sigma|^2
    E = T_s + int v_ext n_out + E_H[n_out] + E_xc[n_out],  T_s = sum f eps - sum_sigma int v_s,sigma n_sigma_out
    n_next = w n_in + (1 - w) n_out,   w = mixing * mixing_decay^k            (decaying_weight="input")
    n_next = n_in + a (n_out - n_in),  a = mixing * mixing_decay^k            (decaying_weight="output")

With ``"input"`` the damping fades and the iterations become plain KS iterations; with ``"output"``
(Li et al. 2021 and their jax_dft code: linear mixing with alpha = 0.5 decaying by 0.9 per iteration)
the density is increasingly frozen, so a fixed number of iterations always ends on a slowly moving
density, which is what the KSR trajectory loss rewards.

Loops: :func:`kohn_sham` (``lax.scan`` over a fixed number of iterations, returning the whole
trajectory of states, as KSR training needs) and :func:`kohn_sham_converged` (``lax.while_loop``
to a density tolerance).

>>> import jax.numpy as jnp
>>> from basis.oned import uniform_grid
>>> from dftjax.oned import lda
>>> grid = uniform_grid(-10.24, 10.24, 257)
>>> system = make_system(grid, charges=[1.0, 1.0], locations=[-0.64, 0.64])
>>> options = KohnShamOptions(num_electrons=2)
>>> final, trajectory = kohn_sham(system, make_discretization(grid), lda.lsda, None, options, 20)
>>> trajectory.total_energy.shape
(20,)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from basis import oned

Array = jnp.ndarray
EnergyDensity = Callable[[Any, Array], Array]  # (params, spin_density (2, n)) -> (n,)


class Discretization(NamedTuple):
    """Grid operators shared by every system on one grid.

    Attributes:
        grid: (n,) points (bohr).
        dx: () spacing (bohr).
        kinetic: (n, n) finite-difference ``-1/2 d^2/dx^2`` (hartree).
        interaction: (n, n) ``v(x_i - x_j)`` electron-electron interaction (hartree).
        even, odd: None, or (n, m_even) and (n, m_odd) orthonormal bases of the functions even and
            odd under reflection through the grid's middle (``parity=True``): the Hamiltonian of a
            reflection-symmetric system is block diagonal in them, so two eigenproblems of half the
            size (a quarter of the cost each) replace one, and one suffices when only the lowest
            orbital (always even: nodeless) is occupied.
    """

    grid: Array
    dx: Array
    kinetic: Array
    interaction: Array
    even: Array | None = None
    odd: Array | None = None
    kinetic_even: Array | None = None
    kinetic_odd: Array | None = None


def parity_bases(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, ceil(n/2)) even and (n, floor(n/2)) odd orthonormal bases under ``i -> n - 1 - i``."""
    half = n // 2
    even = np.zeros((n, n - half))
    odd = np.zeros((n, half))
    for j in range(half):
        even[j, j] = even[n - 1 - j, j] = np.sqrt(0.5)
        odd[j, j], odd[n - 1 - j, j] = np.sqrt(0.5), -np.sqrt(0.5)
    if n % 2:
        even[half, half] = 1.0
    return even, odd


def make_discretization(grid: Array, accuracy: int = 4, interaction=oned.exponential_coulomb,
                        parity: bool = False) -> Discretization:
    """The :class:`Discretization` of a uniform grid (finite differences of order ``accuracy``).

    ``parity=True``: every system solved on it must be symmetric under reflection through the
    grid's middle (see :func:`symmetric_window`); the orbitals are then found per parity block.
    """
    grid = jnp.asarray(grid, dtype=jnp.float64)
    dx = oned.grid_spacing(grid)
    kinetic = oned.kinetic_matrix(grid, accuracy)
    blocks = {}
    if parity:
        even, odd = parity_bases(grid.size)
        blocks = dict(even=jnp.asarray(even), odd=jnp.asarray(odd),
                      kinetic_even=jnp.asarray(even.T @ np.asarray(kinetic) @ even),
                      kinetic_odd=jnp.asarray(odd.T @ np.asarray(kinetic) @ odd))
    return Discretization(grid=grid, dx=jnp.asarray(dx), kinetic=kinetic,
                          interaction=oned.interaction_matrix(grid, interaction), **blocks)


def symmetric_window(grid: Array, center: float, half_width: float) -> slice:
    """The slice of ``grid`` symmetric about ``center`` (a grid point or a midpoint) reaching at most
    ``half_width`` bohr from it: the box of a parity-blocked calculation of a symmetric molecule."""
    grid = np.asarray(grid)
    mirror = mirror_indices(grid, center)
    inside = np.flatnonzero((mirror != np.arange(grid.size)) | (np.abs(grid - center) < 1e-9))
    inside = inside[np.abs(grid[inside] - center) <= half_width + 1e-9]
    return slice(int(inside[0]), int(inside[-1]) + 1)


class System(NamedTuple):
    """One 1D molecule on a grid (a pytree of arrays: systems with the same electron counts vmap).

    Attributes:
        external_potential: (n,) ``-sum_j Z_j v(x - X_j)`` (hartree).
        nuclear_energy: () nuclear repulsion (hartree).
        mirror: (n,) int index of each point's mirror image through the molecule's centre, or of
            itself where the image is off the grid or no reflection symmetry is imposed.
    """

    external_potential: Array
    nuclear_energy: Array
    mirror: Array


def mirror_indices(grid: Array, center: float | None) -> np.ndarray:
    """(n,) index of the reflection of each grid point through ``center`` (itself if off-grid/None)."""
    grid = np.asarray(grid)
    n = grid.size
    identity = np.arange(n)
    if center is None:
        return identity
    dx = oned.grid_spacing(grid)
    twice_center = 2.0 * (center - grid[0]) / dx  # i + mirror(i), an integer if the centre is on
    pair_sum = int(round(twice_center))            # a grid point or half-way between two
    if abs(twice_center - pair_sum) > 1e-6:
        raise ValueError(f"reflection centre {center} is neither a grid point nor a midpoint")
    mirror = pair_sum - identity
    return np.where((mirror >= 0) & (mirror < n), mirror, identity)


def make_system(grid: Array, charges, locations, *, symmetric: bool = False,
                interaction=oned.exponential_coulomb) -> System:
    """A :class:`System` of nuclei (charges, locations in bohr) on ``grid``.

    ``symmetric``: impose reflection symmetry through the nuclei's mean position (for molecules such
    as H2 that have it; it removes symmetry-broken solutions and speeds up convergence).
    """
    charges = jnp.asarray(charges, dtype=jnp.float64)
    locations = jnp.asarray(locations, dtype=jnp.float64)
    center = float(np.mean(np.asarray(locations))) if symmetric else None
    return System(external_potential=oned.external_potential(grid, charges, locations, interaction),
                  nuclear_energy=oned.nuclear_repulsion(charges, locations, interaction),
                  mirror=jnp.asarray(mirror_indices(grid, center)))


@dataclasses.dataclass(frozen=True, kw_only=True)
class KohnShamOptions:
    """Static settings of a 1D Kohn-Sham calculation.

    Attributes:
        num_electrons: total number of electrons.
        num_unpaired_electrons: N_up - N_dn (spin-polarised only).
        spin_polarized: separate up/down Hamiltonians (LSDA-type); otherwise spin-restricted with
            doubly occupied orbitals (the last singly occupied for odd N) and n_up = n_dn = n/2.
        mixing: weight of the input density (``decaying_weight="input"``) or fraction of the output
            density (``"output"``) in the damped update at the first iteration.
        mixing_decay: that weight is multiplied by this after each iteration.
        decaying_weight: ``"input"`` (default; the input density's weight decays, the iterations
            become undamped) or ``"output"`` (the output density's fraction decays, the density
            freezes: Li et al., PRL 126, 036401 (2021), used for KSR training).
        stop_gradient_step: iterations before this one are not differentiated (memory for long
            trajectories); -1 differentiates all.
    """

    num_electrons: int
    num_unpaired_electrons: int = 0
    spin_polarized: bool = False
    mixing: float = 0.5
    mixing_decay: float = 0.9
    stop_gradient_step: int = -1
    decaying_weight: str = "input"

    def __post_init__(self):
        if self.num_electrons < 1:
            raise ValueError(f"num_electrons must be >= 1; got {self.num_electrons}")
        if self.spin_polarized and ((self.num_electrons - self.num_unpaired_electrons) % 2 or not (
                0 <= self.num_unpaired_electrons <= self.num_electrons)):
            raise ValueError(f"{self.num_unpaired_electrons} unpaired electrons impossible with "
                             f"{self.num_electrons} electrons")
        if not 0.0 <= self.mixing < 1.0:
            raise ValueError(f"mixing must be in [0, 1); got {self.mixing}")
        if self.decaying_weight not in ("input", "output"):
            raise ValueError(f"decaying_weight must be 'input' or 'output'; got {self.decaying_weight!r}")
        if self.decaying_weight == "output" and not 0.0 < self.mixing:
            raise ValueError("decaying_weight='output' needs mixing > 0 (the output fraction)")
        if not 0.0 < self.mixing_decay <= 1.0:
            raise ValueError(f"mixing_decay must be in (0, 1]; got {self.mixing_decay}")

    def occupations(self) -> np.ndarray:
        """(2, k) occupation numbers of the lowest k orbitals of each spin channel's Hamiltonian
        (restricted: both rows describe the one Hamiltonian; row 0 holds the occupations)."""
        if self.spin_polarized:
            up = (self.num_electrons + self.num_unpaired_electrons) // 2
            down = self.num_electrons - up
            k = max(up, 1)
            occupations = np.zeros((2, k))
            occupations[0, :up] = 1.0
            occupations[1, :down] = 1.0
            return occupations
        k = (self.num_electrons + 1) // 2
        occupations = np.zeros((2, k))
        occupations[0, :] = 2.0
        if self.num_electrons % 2:
            occupations[0, -1] = 1.0
        return occupations


class KohnShamState(NamedTuple):
    """The state after one Kohn-Sham iteration (all energies in hartree, electronic only).

    Attributes:
        spin_density: (2, n) the (mixed) input density of the next iteration (bohr^-1).
        output_density: (2, n) the density built from this iteration's orbitals; the energies are
            its energies.
        total_energy: () ``T_s + E_ext + E_H + E_xc`` of ``output_density``.
        kinetic_energy, external_energy, hartree_energy, xc_energy: () its parts.
        eigenvalues: (2, k) lowest orbital energies of each spin channel.
        density_change: () ``int |n_out - n_in| dx``.
        iteration: () number of iterations done.
    """

    spin_density: Array
    output_density: Array
    total_energy: Array
    kinetic_energy: Array
    external_energy: Array
    hartree_energy: Array
    xc_energy: Array
    eigenvalues: Array
    density_change: Array
    iteration: Array

    @property
    def density(self) -> Array:
        """(n,) total output density."""
        return jnp.sum(self.output_density, axis=-2)


def _energy_density_fn(xc) -> EnergyDensity:
    """Accept a plain ``(params, spin_density) -> (n,)`` or a :class:`functionals.Functional`."""
    return getattr(xc, "energy_density", xc)


def symmetrize(density: Array, mirror: Array) -> Array:
    """``(n(x) + n(mirror(x))) / 2`` along the last axis."""
    return 0.5 * (density + jnp.take(density, mirror, axis=-1))


def xc_energy_and_potential(xc: EnergyDensity, params, spin_density: Array, dx: Array):
    """``E_xc = dx sum e`` (hartree) and ``v_xc,sigma = dE_xc/dn_sigma`` (2, n) by ``jax.grad``."""
    total_e, potential = jax.value_and_grad(lambda n: jnp.sum(xc(params, n)))(spin_density)
    return total_e * dx, potential


def _lowest_eigenpairs(potentials: Array, k: int, discretization: Discretization):
    """Lowest k eigenvalues (c, k) and eigenvectors (c, n, k) of ``T + diag(v)`` for potentials (c, n).

    With parity blocks, the even and odd Hamiltonians go to LAPACK as one batch (the smaller block
    padded by a decoupled level above the Gershgorin bound of the spectrum): two independent batched
    ``eigh`` calls in one executable can be run concurrently by XLA's CPU runtime, and each then
    waits on sub-tasks in the same intra-op thread pool; on a 2-core machine that deadlocked
    (jaxlib 0.10.2, spin-polarised H3 with parity).
    """
    if discretization.even is None:
        hamiltonians = discretization.kinetic[None, :, :] + jax.vmap(jnp.diag)(potentials)
        eigenvalues, vectors = jnp.linalg.eigh(hamiltonians)
        return eigenvalues[:, :k], vectors[:, :, :k]
    blocks = [(discretization.even, discretization.kinetic_even)]
    if k > 1:
        blocks.append((discretization.odd, discretization.kinetic_odd))
    size = max(basis.shape[1] for basis, _ in blocks)
    hamiltonians = []
    for basis, kinetic in blocks:
        # basis functions have disjoint supports: U^T diag(v) U = diag(U^2^T v)
        block = kinetic[None, :, :] + jax.vmap(jnp.diag)(potentials @ basis**2)
        pad = size - basis.shape[1]
        if pad:
            level = jax.lax.stop_gradient(2.0 * jnp.max(jnp.sum(jnp.abs(block), axis=2)) + 1.0)
            block = jnp.pad(block, ((0, 0), (0, pad), (0, pad)))
            block = block + jnp.diag(jnp.concatenate([jnp.zeros(basis.shape[1]), jnp.full(pad, level)]))
        hamiltonians.append(block)
    channels = potentials.shape[0]
    e, u = jnp.linalg.eigh(jnp.concatenate(hamiltonians, axis=0))
    values, vectors = [], []
    for index, (basis, _) in enumerate(blocks):
        rows = slice(index * channels, (index + 1) * channels)
        values.append(e[rows, :k])
        vectors.append(jnp.einsum("na,cak->cnk", basis, u[rows, :basis.shape[1], :k]))
    values, vectors = jnp.concatenate(values, axis=1), jnp.concatenate(vectors, axis=2)
    order = jnp.argsort(values, axis=1)[:, :k]
    return (jnp.take_along_axis(values, order, axis=1),
            jnp.take_along_axis(vectors, order[:, None, :], axis=2))


def _solve_orbitals(potentials: Array, occupations: np.ndarray, dx: Array,
                    discretization: Discretization):
    """Densities (c, n), occupied sum of eigenvalues and lowest eigenvalues (c, k) of the
    Kohn-Sham Hamiltonians ``T + diag(v)`` of potentials (c, n) (c spin channels)."""
    k = occupations.shape[1]
    eigenvalues, vectors = _lowest_eigenpairs(potentials, k, discretization)
    occ = jnp.asarray(occupations[: potentials.shape[0]])
    # grid orbitals normalised as int |phi|^2 dx = 1: eigenvector / sqrt(dx)
    density = jnp.einsum("ck,cnk->cn", occ, vectors**2) / dx
    return density, jnp.sum(occ * eigenvalues), eigenvalues


def kohn_sham_step(state: KohnShamState, system: System, discretization: Discretization, xc, params,
                   options: KohnShamOptions) -> KohnShamState:
    """One damped Kohn-Sham iteration (see the module docstring); pure, jit/vmap/grad-able."""
    xc = _energy_density_fn(xc)
    dx = discretization.dx
    spin_density_in = state.spin_density
    total_in = jnp.sum(spin_density_in, axis=0)
    v_hartree = discretization.interaction @ total_in * dx
    _, v_xc = xc_energy_and_potential(xc, params, spin_density_in, dx)
    v_common = system.external_potential + v_hartree
    occupations = options.occupations()
    if options.spin_polarized:
        v_s = v_common[None, :] + v_xc                                    # (2, n)
    else:
        v_s = (v_common + 0.5 * (v_xc[0] + v_xc[1]))[None, :]              # (1, n), v_up = v_dn
    density_out, eigenvalue_sum, eigenvalues = _solve_orbitals(v_s, occupations, dx, discretization)
    if options.spin_polarized:
        spin_out = density_out
    else:
        spin_out = jnp.concatenate([0.5 * density_out, 0.5 * density_out], axis=0)
        eigenvalues = jnp.concatenate([eigenvalues, eigenvalues], axis=0)
    spin_out = symmetrize(spin_out, system.mirror)
    total_out = jnp.sum(spin_out, axis=0)
    # T_s of the orbitals: their eigenvalue sum minus the potential energy in the input potential
    kinetic = eigenvalue_sum - jnp.sum(v_s * (spin_out if options.spin_polarized else total_out[None])) * dx
    external = jnp.sum(system.external_potential * total_out) * dx
    hartree = 0.5 * total_out @ discretization.interaction @ total_out * dx**2
    xc_energy, _ = xc_energy_and_potential(xc, params, spin_out, dx)
    weight = options.mixing * options.mixing_decay ** state.iteration
    if options.decaying_weight == "output":
        weight = 1.0 - weight  # weight of the input density
    mixed = weight * spin_density_in + (1.0 - weight) * spin_out
    return KohnShamState(
        spin_density=mixed, output_density=spin_out,
        total_energy=kinetic + external + hartree + xc_energy, kinetic_energy=kinetic,
        external_energy=external, hartree_energy=hartree, xc_energy=xc_energy,
        eigenvalues=eigenvalues, density_change=jnp.sum(jnp.abs(spin_out - spin_density_in)) * dx,
        iteration=state.iteration + 1)


def initial_state(system: System, discretization: Discretization, options: KohnShamOptions,
                  spin_density: Array | None = None) -> KohnShamState:
    """Start from ``spin_density`` (2, n) or the non-interacting electrons in ``v_ext``."""
    if spin_density is None:
        occupations = options.occupations()
        channels = 2 if options.spin_polarized else 1
        potentials = jnp.broadcast_to(system.external_potential, (channels,) + system.external_potential.shape)
        density, _, _ = _solve_orbitals(potentials, occupations, discretization.dx, discretization)
        if not options.spin_polarized:
            density = jnp.concatenate([0.5 * density, 0.5 * density], axis=0)
        spin_density = symmetrize(density, system.mirror)
    k = options.occupations().shape[1]
    zero = jnp.zeros((), dtype=spin_density.dtype)
    return KohnShamState(spin_density=spin_density, output_density=spin_density, total_energy=zero,
                         kinetic_energy=zero, external_energy=zero, hartree_energy=zero,
                         xc_energy=zero, eigenvalues=jnp.zeros((2, k), spin_density.dtype),
                         density_change=jnp.asarray(jnp.inf, spin_density.dtype),
                         iteration=jnp.zeros((), jnp.int32))


def kohn_sham(system: System, discretization: Discretization, xc, params, options: KohnShamOptions,
              num_iterations: int, spin_density: Array | None = None):
    """``num_iterations`` Kohn-Sham iterations by ``lax.scan``.

    Returns:
        ``(final, trajectory)``: the last :class:`KohnShamState` and the states of every iteration
        stacked along a leading axis of length ``num_iterations`` (``trajectory.total_energy`` is
        (num_iterations,), ``trajectory.output_density`` (num_iterations, 2, n)).
    """
    state = initial_state(system, discretization, options, spin_density)

    def body(state, _):
        if options.stop_gradient_step > 0:
            frozen = state.iteration < options.stop_gradient_step
            state = jax.tree_util.tree_map(
                lambda a: jnp.where(frozen, jax.lax.stop_gradient(a), a), state)
        state = kohn_sham_step(state, system, discretization, xc, params, options)
        return state, state

    return jax.lax.scan(body, state, None, length=num_iterations)


def kohn_sham_converged(system: System, discretization: Discretization, xc, params,
                        options: KohnShamOptions, tolerance: float = 1e-8, max_iterations: int = 200,
                        spin_density: Array | None = None) -> KohnShamState:
    """Iterate until ``int |n_out - n_in| dx < tolerance`` or ``max_iterations`` (``lax.while_loop``).

    Not reverse-differentiable (a while loop); use :func:`kohn_sham` for gradients.
    """
    state = initial_state(system, discretization, options, spin_density)

    def running(state):
        return (state.density_change > tolerance) & (state.iteration < max_iterations)

    return jax.lax.while_loop(
        running, lambda s: kohn_sham_step(s, system, discretization, xc, params, options), state)
