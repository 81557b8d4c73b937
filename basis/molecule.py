"""Molecules: atoms, nuclear charges, coordinates (bohr), charge and spin, validated up front.

A :class:`Molecule` is built from a PySCF-style atom string (``"O 0 0 0; H 0 0.757 0.587"``), a
list of ``(symbol, (x, y, z))`` pairs, or the path of an ``.xyz`` file. Coordinates are given in
``unit="angstrom"`` (default, as PySCF) or ``"bohr"`` and stored in bohr. ``spin`` is 2S, the
number of unpaired electrons, as in PySCF.

Every check happens in :func:`make_molecule`, before any integral or grid is touched, and raises
``ValueError`` with a one-line message that names the offending value and what is allowed.

>>> mol = make_molecule("H 0 0 0; H 0 0 0.74")
>>> mol.n_electrons, mol.nelec
(2, (1, 1))
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from typing import Sequence

import numpy as np

# CODATA 2018, the value PySCF uses (pyscf.data.nist.BOHR).
BOHR_IN_ANGSTROM = 0.52917721092
ANGSTROM_TO_BOHR = 1.0 / BOHR_IN_ANGSTROM

# Smallest allowed distance between two nuclei, bohr.
MIN_NUCLEAR_DISTANCE = 0.1

ELEMENTS = (
    "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne",
    "Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ar", "K", "Ca",
    "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",
    "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr",
    "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn",
    "Sb", "Te", "I", "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd",
    "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb",
    "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg",
    "Tl", "Pb", "Bi", "Po", "At", "Rn",
)
ATOMIC_NUMBER = {symbol.upper(): z for z, symbol in enumerate(ELEMENTS, start=1)}


@dataclasses.dataclass(frozen=True, eq=False)
class Molecule:
    """A validated molecule in atomic units.

    Attributes:
      symbols: element symbol of each atom, in input order, e.g. ``("O", "H", "H")``.
      atomic_numbers: (n_atoms,) int nuclear charges.
      coords: (n_atoms, 3) float64 nuclear positions in bohr.
      charge: total charge in units of e.
      spin: 2S = n_alpha - n_beta.
    """

    symbols: tuple[str, ...]
    atomic_numbers: np.ndarray
    coords: np.ndarray
    charge: int = 0
    spin: int = 0

    @property
    def n_atoms(self) -> int:
        return len(self.symbols)

    @property
    def n_electrons(self) -> int:
        return int(self.atomic_numbers.sum()) - self.charge

    @property
    def nelec(self) -> tuple[int, int]:
        """(n_alpha, n_beta) electrons."""
        n_alpha = (self.n_electrons + self.spin) // 2
        return n_alpha, self.n_electrons - n_alpha

    def nuclear_repulsion(self) -> float:
        """Nuclear repulsion energy sum_{A<B} Z_A Z_B / R_AB in hartree."""
        return float(nuclear_repulsion(self.atomic_numbers, self.coords))

    def pyscf_atom(self) -> list[tuple[str, tuple[float, float, float]]]:
        """Atoms in PySCF's list format, coordinates in bohr (use with ``unit="bohr"``)."""
        return [(s, tuple(float(x) for x in xyz)) for s, xyz in zip(self.symbols, self.coords)]

    def to_pyscf(self, basis="sto-3g", cartesian: bool = False, **kwargs):
        """The equivalent ``pyscf.gto.Mole`` (built), for oracles and interoperability."""
        from pyscf import gto

        return gto.M(
            atom=self.pyscf_atom(), unit="bohr", basis=basis, charge=self.charge, spin=self.spin,
            cart=cartesian, verbose=0, **kwargs,
        )

    def with_coords(self, coords) -> "Molecule":
        """The same molecule at new positions (bohr)."""
        return dataclasses.replace(self, coords=np.asarray(coords, dtype=np.float64).reshape(-1, 3))

    def __repr__(self) -> str:
        atoms = "; ".join(f"{s} {x:.6f} {y:.6f} {z:.6f}" for s, (x, y, z) in zip(self.symbols, self.coords))
        return f"Molecule('{atoms}', unit='bohr', charge={self.charge}, spin={self.spin})"


def nuclear_repulsion(atomic_numbers, coords):
    """E_nn = sum_{A<B} Z_A Z_B / |R_A - R_B| (hartree); differentiable in ``coords`` (bohr)."""
    import jax.numpy as jnp

    z = jnp.asarray(atomic_numbers, dtype=jnp.float64)
    coords = jnp.asarray(coords)
    n = z.shape[0]
    if n < 2:
        return jnp.zeros((), dtype=coords.dtype)
    i, j = np.triu_indices(n, k=1)
    r = jnp.linalg.norm(coords[i] - coords[j], axis=-1)
    return jnp.sum(z[i] * z[j] / r)


def _element(label: str) -> str:
    """Element symbol of an atom label: 'O', 'o', 'O1', 'H@2', 'GHOST' are not all accepted."""
    symbol = "".join(ch for ch in label if ch.isalpha())
    if symbol.upper() not in ATOMIC_NUMBER:
        close = difflib.get_close_matches(symbol.capitalize(), ELEMENTS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown element {label!r}: expected an element symbol H..Rn{hint}")
    return ELEMENTS[ATOMIC_NUMBER[symbol.upper()] - 1]


def _parse_atom_lines(lines: Sequence[str]) -> list[tuple[str, list[float]]]:
    atoms = []
    for line in lines:
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        if len(fields) != 4:
            raise ValueError(f"bad atom entry {line.strip()!r}: expected 'SYMBOL x y z'")
        try:
            xyz = [float(v) for v in fields[1:]]
        except ValueError:
            raise ValueError(f"bad coordinate in atom entry {line.strip()!r}: expected three numbers") from None
        atoms.append((fields[0], xyz))
    return atoms


def _read_xyz(path: str) -> list[tuple[str, list[float]]]:
    with open(path) as f:
        lines = f.read().splitlines()
    if not lines:
        raise ValueError(f"empty molecule: file {path!r} is empty")
    try:
        n_atoms = int(lines[0].strip())
    except ValueError:
        raise ValueError(f"bad .xyz file {path!r}: first line must be the number of atoms, got {lines[0]!r}") from None
    atom_lines = [ln for ln in lines[2:] if ln.strip()]
    if len(atom_lines) != n_atoms:
        raise ValueError(f"bad .xyz file {path!r}: header says {n_atoms} atoms, found {len(atom_lines)}")
    return _parse_atom_lines(atom_lines)


def make_molecule(
    atom, *, unit: str = "angstrom", charge: int = 0, spin: int = 0
) -> Molecule:
    """Parse and validate a molecule.

    Args:
      atom: PySCF atom string (atoms separated by ';' or newlines), path to an ``.xyz`` file, or a
        sequence of ``(symbol, (x, y, z))``.
      unit: ``"angstrom"`` (default) or ``"bohr"`` (also PySCF's ``"A"``, ``"B"``, ``"au"``).
      charge: total charge.
      spin: 2S, number of unpaired electrons.

    Returns:
      A :class:`Molecule` with coordinates in bohr.

    Raises:
      ValueError: unknown element, empty molecule, non-finite coordinates, nuclei closer than
        0.1 bohr, electron count impossible for the charge, spin parity not matching the electron
        count, or an unknown unit.
    """
    unit_key = str(unit).strip().lower()
    if unit_key in ("angstrom", "a", "ang"):
        scale = ANGSTROM_TO_BOHR
    elif unit_key in ("bohr", "b", "au", "a.u."):
        scale = 1.0
    else:
        raise ValueError(f"unknown unit {unit!r}: expected 'angstrom' or 'bohr'")

    if isinstance(atom, (str, os.PathLike)) and str(atom).strip().lower().endswith(".xyz"):
        if not os.path.isfile(atom):
            raise ValueError(f"xyz file {str(atom)!r} not found")
        entries = _read_xyz(str(atom))
    elif isinstance(atom, str):
        entries = _parse_atom_lines(atom.replace(";", "\n").splitlines())
    else:
        entries = []
        for item in atom:
            try:
                symbol, xyz = item
                xyz = [float(v) for v in xyz]
            except (TypeError, ValueError):
                raise ValueError(f"bad atom entry {item!r}: expected (symbol, (x, y, z))") from None
            if len(xyz) != 3:
                raise ValueError(f"bad atom entry {item!r}: expected three coordinates")
            entries.append((str(symbol), xyz))

    if not entries:
        raise ValueError("empty molecule: no atoms given")

    symbols = tuple(_element(label) for label, _ in entries)
    coords = np.array([xyz for _, xyz in entries], dtype=np.float64)
    bad = ~np.isfinite(coords).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"non-finite coordinates {entries[i][1]} for atom {i} ({symbols[i]}): coordinates must be finite")
    coords = coords * scale
    numbers = np.array([ATOMIC_NUMBER[s.upper()] for s in symbols], dtype=np.int64)

    if len(symbols) > 1:
        diff = coords[:, None, :] - coords[None, :, :]
        dist = np.sqrt((diff**2).sum(-1))
        np.fill_diagonal(dist, np.inf)
        i, j = np.unravel_index(np.argmin(dist), dist.shape)
        if dist[i, j] < MIN_NUCLEAR_DISTANCE:
            raise ValueError(
                f"atoms {min(i, j)} ({symbols[min(i, j)]}) and {max(i, j)} ({symbols[max(i, j)]}) are "
                f"{dist[i, j]:.4g} bohr apart: nuclei must be at least {MIN_NUCLEAR_DISTANCE} bohr apart"
            )

    if int(charge) != charge:
        raise ValueError(f"charge {charge!r} must be an integer")
    if int(spin) != spin:
        raise ValueError(f"spin {spin!r} must be an integer (2S, the number of unpaired electrons)")
    charge, spin = int(charge), int(spin)
    n_electrons = int(numbers.sum()) - charge
    if n_electrons < 0:
        raise ValueError(
            f"charge {charge} leaves {n_electrons} electrons: charge must be at most {int(numbers.sum())} "
            "(the total nuclear charge)"
        )
    if n_electrons == 0:
        raise ValueError(f"charge {charge} leaves no electrons: charge must be below {int(numbers.sum())}")
    if spin < 0 or spin > n_electrons:
        raise ValueError(f"spin {spin} impossible for {n_electrons} electrons: expected 0 <= spin <= {n_electrons}")
    if (n_electrons - spin) % 2:
        allowed = "even" if n_electrons % 2 == 0 else "odd"
        raise ValueError(
            f"spin {spin} does not match {n_electrons} electrons: spin (2S) must be {allowed} "
            f"for an {'even' if n_electrons % 2 == 0 else 'odd'} electron count"
        )
    return Molecule(symbols=symbols, atomic_numbers=numbers, coords=coords, charge=charge, spin=spin)

