"""Size classes: padded bases, atoms and grids, so that one compiled program serves many molecules.

Every jitted integral, AO and grid function of :mod:`basis` compiles once per *static structure*:
for a :class:`~basis.gto.Basis` that is ``(shell_l, shell_atom, shell_nprim, shell_ao_start,
cartesian, name)`` (the pytree aux data), for a :class:`~basis.grids.GridSpec` the atomic numbers.
Two molecules never share a program, even water and H2S in STO-3G. This module maps a molecule to a
*size class*, a small hashable key of padded sizes, and builds padded inputs whose static structure
depends on the class alone. A compiled program then serves every molecule of its class; only the
data (exponents, coefficients, positions, which atom a shell sits on) differ.

The trick, for bases. The integral and AO functions read shell centres as
``coords[basis.shell_atom]``, a static gather. A padded basis has ``shell_atom = (0, 1, ...,
n_shells_pad - 1)`` (the identity) and is called with the *shell centres* (n_shells_pad, 3) as
``coords``; the atom of each shell becomes data, ``shell_coords = atom_coords[shell_atom]``, a
traced gather through which ``jax.grad`` with respect to the atom positions flows unchanged. The
rest of the structure is made canonical:

* shells are sorted by ``(l, nprim)`` (stable: original order within a group), in the spirit of
  GPU4PySCF's shell sorting (``gpu4pyscf.df.int3c2e.sort_mol``), where one kernel serves a class of
  shells and the molecule only decides how many there are;
* each ``(l, nprim)`` group's shell count is rounded up to the next value of the size ladder
  (:data:`LADDER`) with *padding shells*: coefficients 0, exponents 1.0, centred on atom 0. Their AO
  values and every integral involving them are exact zeros (each term carries a factor c_p = 0), so
  padding changes no real matrix element beyond rounding of reordered sums;
* ``shell_ao_start`` follows the canonical order and the name is ``"padded"``, so two padded bases
  of one class have equal pytree aux data, the jit cache key.

The size ladder 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (powers of two and 1.5 times them) bounds the
waste at 50 % per padded dimension while keeping the number of classes logarithmic in the size; it
is the idea of jraph's ``pad_with_graphs`` (pad every batch of graphs to the next power of two,
with masks that make the padding contribute nothing), on a finer ladder. The class key is
``SizeClass(groups=((l, nprim, padded_count), ...), cartesian)``; a group absent from the molecule
is absent from the key, unless a larger class is asked for (``pad_basis(..., at_least=...)``), so a
caller can reuse a program already compiled for a bigger class.

Atoms are padded to ``ladder_size(n_atoms)`` with dummy atoms of charge 0 placed on atom 0
(:func:`pad_atoms`). Grids become data too (:func:`pad_grid`, :class:`GridData`): atom index,
offsets and quadrature weights are arrays padded to ``ladder_size(n_points)`` with zero-weight
points, and :func:`padded_grid_points_weights` compiles once per (n_atoms_pad, n_points_pad).

Where padding lives in the pipeline. The molecule-sized quantities (``nao``, the AO index maps)
are not part of the class, so padding and unpadding (:meth:`PaddedBasis.pad`,
:meth:`PaddedBasis.unpad`) belong outside the jitted core, or in thin per-molecule wrappers. Inside
a jitted function, pass ``shell_atom`` as an argument (traced): a NumPy index closed over inside
``jit`` becomes a compile-time constant and makes the program molecule-specific again. Keep the
array types steady as well: jit's cache key includes whether an argument is a NumPy or a JAX array,
so ``overlap(basis, coords)`` with NumPy ``coords`` after JAX ``coords`` compiles a second time.

>>> from basis.molecule import make_molecule
>>> from basis.gto import make_basis
>>> from basis.integrals import one_electron
>>> mol = make_molecule("N 0 0 0; H 0 0 1.9; H 1.8 0 -0.6; H -0.9 1.5 -0.6")
>>> padded = pad_basis(make_basis(mol, "def2-svp"))
>>> padded.nao, padded.nao_pad
(29, 30)
>>> s_pad = one_electron.overlap(padded.basis, padded.shell_coords(mol.coords))
>>> padded.unpad_matrix(s_pad).shape
(29, 29)
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from basis.gto import Basis
from basis.grids import GridSpec, becke_cell_products

__all__ = [
    "LADDER", "ladder_size", "SizeClass", "basis_size_class", "PaddedBasis", "pad_basis", "padded_leaves",
    "three_centre_layout", "pad_atoms", "GridData", "pad_grid", "padded_grid_points_weights",
]

# Powers of two and 1.5 times them: consecutive values differ by at most 50 %.
LADDER: tuple[int, ...] = tuple(sorted({2**k for k in range(48)} | {3 * 2**k for k in range(47)}))

# Name of every padded basis: the name is pytree aux data, so it must not depend on the molecule.
PADDED_NAME = "padded"


def ladder_size(n: int, minimum: int = 1) -> int:
    """Smallest value of :data:`LADDER` that is >= max(n, minimum) (0 if both are <= 0).

    >>> [ladder_size(n) for n in (1, 2, 3, 5, 7, 9, 13, 17, 25, 33)]
    [1, 2, 3, 6, 8, 12, 16, 24, 32, 48]
    """
    target = max(int(n), int(minimum))
    if target <= 0:
        return 0
    if target > LADDER[-1]:
        raise ValueError(f"size {target} beyond the ladder (largest {LADDER[-1]})")
    return LADDER[bisect.bisect_left(LADDER, target)]


class SizeClass(NamedTuple):
    """Hashable key of a padded basis: equal keys mean equal static structure (one compilation).

    Attributes:
      groups: ``((l, nprim, padded_count), ...)`` sorted by (l, nprim): the padded number of shells
        with angular momentum l and nprim primitives.
      cartesian: cartesian (True) or spherical (False) functions.
    """

    groups: tuple[tuple[int, int, int], ...]
    cartesian: bool

    @property
    def max_nprim(self) -> int:
        """Columns of the padded exponent and coefficient arrays."""
        return max(nprim for _, nprim, _ in self.groups)

    @property
    def n_shells(self) -> int:
        return sum(count for _, _, count in self.groups)


def _group_counts(basis: Basis) -> dict[tuple[int, int], int]:
    counts: dict[tuple[int, int], int] = {}
    for l, nprim in zip(basis.shell_l, basis.shell_nprim):
        counts[(l, nprim)] = counts.get((l, nprim), 0) + 1
    return counts


def basis_size_class(basis: Basis, at_least: SizeClass | tuple | None = None) -> SizeClass:
    """The size class :func:`pad_basis` puts ``basis`` in (see there for ``at_least``)."""
    counts = {key: ladder_size(n) for key, n in _group_counts(basis).items()}
    if at_least is not None:
        at_least = SizeClass(*at_least)
        if bool(at_least.cartesian) != bool(basis.cartesian):
            raise ValueError(
                f"at_least is a {'cartesian' if at_least.cartesian else 'spherical'} class, the basis is "
                f"{'cartesian' if basis.cartesian else 'spherical'}: they cannot share a program"
            )
        for l, nprim, count in at_least.groups:
            counts[(int(l), int(nprim))] = max(counts.get((int(l), int(nprim)), 0), int(count))
    groups = tuple((l, nprim, count) for (l, nprim), count in sorted(counts.items()) if count > 0)
    return SizeClass(groups=groups, cartesian=bool(basis.cartesian))


@dataclasses.dataclass(frozen=True, eq=False)
class PaddedBasis:
    """A basis in canonical padded layout, and the maps between it and the original (PySCF) layout.

    Build it with :func:`pad_basis`. Not a pytree: its index maps have molecule-sized shapes, so
    jitted code takes ``basis`` (the padded :class:`~basis.gto.Basis`, static structure fixed by the
    class) and ``shell_atom`` (as a traced argument) separately.

    Attributes:
      basis: the padded :class:`~basis.gto.Basis`: identity ``shell_atom``, shells in canonical
        (l, nprim) order, exponents and coefficients (n_shells_pad, size_class.max_nprim).
      shell_atom: (n_shells_pad,) int32 atom of each padded shell (0 for padding shells).
      shell_index: (n_shells,) int position in the padded shell order of each original shell.
      ao_index: (nao,) int position in the padded AO order of each original AO (PySCF order).
      ao_mask: (nao_pad,) float 1.0 on real AOs, 0.0 on padding AOs.
      size_class: the :class:`SizeClass` key.
    """

    basis: Basis
    shell_atom: np.ndarray
    shell_index: np.ndarray
    ao_index: np.ndarray
    ao_mask: np.ndarray
    size_class: SizeClass

    @property
    def nao(self) -> int:
        """AOs of the original basis."""
        return int(self.ao_index.shape[0])

    @property
    def nao_pad(self) -> int:
        """AOs of the padded basis (real and padding)."""
        return int(self.ao_mask.shape[0])

    @property
    def n_shells(self) -> int:
        return int(self.shell_index.shape[0])

    @property
    def n_shells_pad(self) -> int:
        return int(self.shell_atom.shape[0])

    @property
    def ao_atom(self) -> np.ndarray:
        """(nao_pad,) int32 atom of each padded AO (0 on padding AOs): ``basis.shell_atom`` no longer says."""
        counts = [self.basis.n_functions(l) for l in self.basis.shell_l]
        return np.repeat(self.shell_atom, counts).astype(np.int32)

    def shell_coords(self, atom_coords):
        """(n_shells_pad, 3) shell centres in bohr, the ``coords`` argument of the padded basis.

        Args:
          atom_coords: (n_atoms, 3) or padded (n_atoms_pad, 3) nuclear positions in bohr (NumPy or
            traced; the gather is differentiable).
        """
        if isinstance(atom_coords, np.ndarray):
            return atom_coords[self.shell_atom]
        return jnp.take(jnp.asarray(atom_coords), jnp.asarray(self.shell_atom), axis=0)

    def pad(self, x, axes=(-1,)):
        """``x`` with each axis in ``axes`` taken from nao to nao_pad AOs, zeros on padding AOs.

        Args:
          x: NumPy or JAX array (traced OK) whose ``axes`` have length nao in PySCF's AO order.
          axes: the AO axes.

        Returns:
          Same type, those axes of length nao_pad in padded order.
        """
        xp = np if isinstance(x, np.ndarray) else jnp
        source = np.full(self.nao_pad, self.nao, dtype=np.int32)  # index nao: the appended zero
        source[self.ao_index] = np.arange(self.nao, dtype=np.int32)
        for axis in axes:
            axis = axis % x.ndim
            if x.shape[axis] != self.nao:
                raise ValueError(f"axis {axis} of shape {x.shape} has not nao = {self.nao} entries")
            widths = [(0, 0)] * x.ndim
            widths[axis] = (0, 1)
            x = xp.take(xp.pad(x, widths), source, axis=axis)
        return x

    def unpad(self, x, axes=(-1,)):
        """Inverse of :meth:`pad`: each axis in ``axes`` from nao_pad back to nao (PySCF order)."""
        xp = np if isinstance(x, np.ndarray) else jnp
        for axis in axes:
            axis = axis % x.ndim
            if x.shape[axis] != self.nao_pad:
                raise ValueError(f"axis {axis} of shape {x.shape} has not nao_pad = {self.nao_pad} entries")
            x = xp.take(x, self.ao_index, axis=axis)
        return x

    def pad_matrix(self, m):
        """(..., nao, nao) -> (..., nao_pad, nao_pad), zeros on padding rows and columns."""
        return self.pad(m, axes=(-2, -1))

    def unpad_matrix(self, m):
        """(..., nao_pad, nao_pad) -> (..., nao, nao) in PySCF's AO order."""
        return self.unpad(m, axes=(-2, -1))

    def unpad_rows(self, c):
        """Orbital coefficients (nao_pad, k) -> (nao, k) (the AO axis is -2)."""
        return self.unpad(c, axes=(-2,))

    def with_primitives(self, exponents, coefficients) -> Basis:
        """The padded basis with new primitives given in the *original* layout (traced OK).

        Args:
          exponents, coefficients: (n_shells, max_nprim) as ``basis.exponents`` of the original basis.
        """
        exp_pad, coef_pad = padded_leaves(self, exponents, coefficients)
        return dataclasses.replace(self.basis, exponents=exp_pad, coefficients=coef_pad)


def padded_leaves(padded: PaddedBasis, exponents, coefficients):
    """Original-layout primitives scattered into the padded layout by a static row gather.

    Rows of real shells are copied (extra columns: exponent 1, coefficient 0), padding shells get
    exponents 1 and coefficients 0. Differentiable and ``jit``-traceable; NumPy in, NumPy out.

    Args:
      padded: from :func:`pad_basis`.
      exponents: (n_shells, max_nprim) primitive exponents (bohr^-2), original shell order.
      coefficients: (n_shells, max_nprim) contraction coefficients, original shell order.

    Returns:
      ``(exponents_pad, coefficients_pad)``, each (n_shells_pad, size_class.max_nprim).
    """
    width = padded.size_class.max_nprim
    source = np.full(padded.n_shells_pad, padded.n_shells, dtype=np.int32)  # n_shells: the filler row
    source[padded.shell_index] = np.arange(padded.n_shells, dtype=np.int32)

    def scatter(x, fill: float):
        xp = np if isinstance(x, np.ndarray) else jnp
        if x.shape[0] != padded.n_shells:
            raise ValueError(f"primitives of shape {x.shape} do not fit {padded.n_shells} shells")
        # Columns beyond every shell's nprim are never read by the integrals: cut or fill them.
        x = x[:, :width]
        x = xp.pad(x, ((0, 1), (0, width - x.shape[1])), constant_values=fill)
        return xp.take(x, source, axis=0)

    exponents = exponents if isinstance(exponents, np.ndarray) else jnp.asarray(exponents)
    coefficients = coefficients if isinstance(coefficients, np.ndarray) else jnp.asarray(coefficients)
    return scatter(exponents, 1.0), scatter(coefficients, 0.0)


def pad_basis(basis: Basis, at_least: SizeClass | tuple | None = None) -> PaddedBasis:
    """The canonical padded form of ``basis`` (see the module docstring).

    Args:
      basis: a :class:`~basis.gto.Basis` with NumPy (concrete) primitives; for traced primitives
        pad once with the reference values, then use :meth:`PaddedBasis.with_primitives`.
      at_least: another :class:`SizeClass`: padded counts are the elementwise maximum with it,
        including its groups the basis lacks (then padding shells only), so the result can reuse a
        program compiled for that class. It must agree on ``cartesian``.

    Returns:
      A :class:`PaddedBasis` whose ``basis`` has the static structure of its ``size_class`` alone.
    """
    size_class = basis_size_class(basis, at_least)
    members: dict[tuple[int, int], list[int]] = {}
    for s, key in enumerate(zip(basis.shell_l, basis.shell_nprim)):
        members.setdefault(key, []).append(s)
    shell_l, shell_nprim, shell_atom, shell_index = [], [], [], np.zeros(basis.n_shells, dtype=np.int64)
    for l, nprim, count in size_class.groups:
        real = members.get((l, nprim), [])
        for s in real:
            shell_index[s] = len(shell_l)
            shell_l.append(l)
            shell_nprim.append(nprim)
            shell_atom.append(basis.shell_atom[s])
        for _ in range(count - len(real)):  # padding shells: on atom 0, zero coefficients
            shell_l.append(l)
            shell_nprim.append(nprim)
            shell_atom.append(0)
    n_functions = [basis.n_functions(l) for l in shell_l]
    shell_ao_start = tuple(int(x) for x in np.concatenate([[0], np.cumsum(n_functions)[:-1]]))
    nao_pad = int(sum(n_functions))

    ao_index = np.zeros(basis.nao, dtype=np.int64)
    for s in range(basis.n_shells):
        n = basis.n_functions(basis.shell_l[s])
        ao_index[basis.shell_ao_start[s] + np.arange(n)] = shell_ao_start[shell_index[s]] + np.arange(n)
    ao_mask = np.zeros(nao_pad)
    ao_mask[ao_index] = 1.0

    structure = Basis(
        exponents=None, coefficients=None, shell_l=tuple(shell_l), shell_atom=tuple(range(len(shell_l))),
        shell_nprim=tuple(shell_nprim), shell_ao_start=shell_ao_start, cartesian=size_class.cartesian,
        name=PADDED_NAME,
    )
    padded = PaddedBasis(
        basis=structure, shell_atom=np.asarray(shell_atom, dtype=np.int32), shell_index=shell_index,
        ao_index=ao_index, ao_mask=ao_mask, size_class=size_class,
    )
    exponents, coefficients = padded_leaves(padded, np.asarray(basis.exponents), np.asarray(basis.coefficients))
    for array in (padded.shell_atom, padded.shell_index, padded.ao_index, padded.ao_mask):
        array.flags.writeable = False
    return dataclasses.replace(padded, basis=dataclasses.replace(structure, exponents=exponents,
                                                                 coefficients=coefficients))


def three_centre_layout(padded: PaddedBasis, padded_aux: PaddedBasis) -> tuple[Basis, Basis, np.ndarray]:
    """Padded bases and shell-to-atom map for :func:`~basis.integrals.two_electron.coulomb_3c`.

    ``coulomb_3c(basis, auxbasis, coords)`` reads the centres of both bases from one ``coords``, so
    the two identity ``shell_atom`` maps must not overlap: the auxiliary shells are numbered after
    the orbital ones. The result still depends only on the two size classes.

    Args:
      padded, padded_aux: orbital and auxiliary bases from :func:`pad_basis`.

    Returns:
      ``(basis, auxbasis, shell_atom)``: ``padded.basis``; ``padded_aux.basis`` with ``shell_atom =
      (n, ..., n + n_aux - 1)``, n = padded.n_shells_pad, n_aux = padded_aux.n_shells_pad; and the
      (n + n_aux,) int32 atom of every shell of both, so that ``coulomb_3c(basis, auxbasis,
      atom_coords[shell_atom])`` is (ab|P), all three axes in padded order.
    """
    n = padded.n_shells_pad
    auxbasis = dataclasses.replace(padded_aux.basis, shell_atom=tuple(range(n, n + padded_aux.n_shells_pad)))
    shell_atom = np.concatenate([padded.shell_atom, padded_aux.shell_atom]).astype(np.int32)
    shell_atom.flags.writeable = False
    return padded.basis, auxbasis, shell_atom


def pad_atoms(coords, charges, n_atoms_pad: int | None = None):
    """Nuclei padded with dummy atoms of charge 0 on atom 0 (traceable, differentiable).

    A dummy atom adds nothing to a point-charge sum (its charge is 0) and, through
    :class:`GridData`'s ``atom_mask``, nothing to the Becke partition.

    Args:
      coords: (n_atoms, 3) nuclear positions in bohr.
      charges: (n_atoms,) nuclear charges.
      n_atoms_pad: padded count, >= n_atoms; default ``ladder_size(n_atoms)``.

    Returns:
      ``(coords_pad (n_atoms_pad, 3), charges_pad (n_atoms_pad,))``, same array type as the input.
    """
    xp = np if isinstance(coords, np.ndarray) else jnp
    n_atoms = coords.shape[0]
    n_atoms_pad = ladder_size(n_atoms) if n_atoms_pad is None else int(n_atoms_pad)
    if n_atoms_pad < n_atoms:
        raise ValueError(f"n_atoms_pad = {n_atoms_pad} < {n_atoms} atoms")
    extra = n_atoms_pad - n_atoms
    charges = xp.asarray(charges, dtype=coords.dtype)
    coords_pad = xp.concatenate([coords, xp.broadcast_to(coords[:1], (extra, 3))], axis=0)
    charges_pad = xp.concatenate([charges, xp.zeros((extra,), dtype=charges.dtype)])
    return coords_pad, charges_pad


# ---------------------------------------------------------------------------------------------------
# Grids as data.
# ---------------------------------------------------------------------------------------------------


class GridData(NamedTuple):
    """A :class:`~basis.grids.GridSpec` as padded arrays (a pytree of NumPy arrays: traced by jit).

    Real atoms and points come first, in the spec's order; padding follows.

    Attributes:
      atom_index: (n_points_pad,) int32 atom owning each point (0 for padding points).
      offsets: (n_points_pad, 3) point minus its nucleus, bohr (0 for padding points).
      quadrature_weights: (n_points_pad,) atomic-grid weights, bohr^3 (0 for padding points).
      size_adjustment: (n_atoms_pad, n_atoms_pad) Becke's a_AB, 0 where an atom is padding or the
        spec has no adjustment (nu = mu + 0 (1 - mu^2) = mu exactly).
      atom_mask: (n_atoms_pad,) 1.0 for real atoms, 0.0 for padding atoms.
    """

    atom_index: np.ndarray
    offsets: np.ndarray
    quadrature_weights: np.ndarray
    size_adjustment: np.ndarray
    atom_mask: np.ndarray


def pad_grid(spec: GridSpec, n_atoms_pad: int | None = None, n_points_pad: int | None = None) -> GridData:
    """The grid of ``spec`` as :class:`GridData` padded to (n_atoms_pad, n_points_pad).

    Args:
      spec: from :func:`basis.grids.make_grid_spec`; its ``options.becke_scheme`` must be passed to
        :func:`padded_grid_points_weights` (a static choice, not data).
      n_atoms_pad: >= spec.n_atoms; default ``ladder_size(spec.n_atoms)``.
      n_points_pad: >= spec.n_points; default ``ladder_size(spec.n_points)``.
    """
    n_atoms_pad = ladder_size(spec.n_atoms) if n_atoms_pad is None else int(n_atoms_pad)
    n_points_pad = ladder_size(spec.n_points) if n_points_pad is None else int(n_points_pad)
    if n_atoms_pad < spec.n_atoms or n_points_pad < spec.n_points:
        raise ValueError(f"padded sizes ({n_atoms_pad}, {n_points_pad}) below the grid's "
                         f"({spec.n_atoms}, {spec.n_points})")
    n_atoms, n_points = spec.n_atoms, spec.n_points
    atom_index = np.zeros(n_points_pad, dtype=np.int32)
    atom_index[:n_points] = spec.atom_index
    offsets = np.zeros((n_points_pad, 3))
    offsets[:n_points] = spec.offsets
    weights = np.zeros(n_points_pad)
    weights[:n_points] = spec.quadrature_weights
    adjustment = np.zeros((n_atoms_pad, n_atoms_pad))
    if spec.size_adjustment is not None:
        adjustment[:n_atoms, :n_atoms] = spec.size_adjustment
    mask = np.zeros(n_atoms_pad)
    mask[:n_atoms] = 1.0
    return GridData(atom_index, offsets, weights, adjustment, mask)


@functools.partial(jax.jit, static_argnames="becke_scheme")
def padded_grid_points_weights(grid: GridData, coords_pad, becke_scheme: str = "becke"):
    """Grid points and weights from padded data: :func:`basis.grids.grid_points_weights`, padded.

    Compiles once per (n_atoms_pad, n_points_pad, becke_scheme), whatever the elements. Pure
    ``jax.numpy``, differentiable in ``coords_pad`` (dummy atoms and padding points contribute
    exact zeros to values and gradients).

    Args:
      grid: from :func:`pad_grid`.
      coords_pad: (n_atoms_pad, 3) nuclear positions in bohr, dummy atoms e.g. on atom 0
        (:func:`pad_atoms`).
      becke_scheme: the spec's ``options.becke_scheme`` (``"becke"`` or ``"stratmann"``).

    Returns:
      points (n_points_pad, 3) bohr and weights (n_points_pad,) bohr^3; on the real points
      (the first spec.n_points) those of ``grid_points_weights(spec, coords)``, on padding points
      weight 0 and position atom 0.
    """
    coords_pad = jnp.asarray(coords_pad)
    atom_index = jnp.asarray(grid.atom_index)
    points = jnp.take(coords_pad, atom_index, axis=0) + grid.offsets
    product = becke_cell_products(points, coords_pad, jnp.asarray(grid.size_adjustment), becke_scheme=becke_scheme,
                                  atom_mask=jnp.asarray(grid.atom_mask))
    own = jnp.take_along_axis(product, atom_index[None, :], axis=0)[0]
    # Padding atoms' own products are excluded from the normalisation; the nearest real atom has
    # P > 0, so the denominator stays positive (also on padding points, which sit on atom 0).
    total = jnp.sum(product * grid.atom_mask[:, None], axis=0)
    weights = grid.quadrature_weights * own * (1.0 / total)
    return points, weights
