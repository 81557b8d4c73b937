"""Reaction data sets: molecules (charge, spin, external field) and reactions built from them.

A *reaction* is a stoichiometric combination ``sum_i c_i E(molecule_i)`` of total energies with a
reference value in hartree: reaction energies, barrier heights (``TS - reactants``), atomization
energies (``atoms - molecule``), and finite-field dipoles and polarizabilities (energy differences
of the same molecule in small uniform fields). Any directory in the layout of GSCDB138 (Liang and
Head-Gordon, arXiv:2508.13468 (2025); ``../shared/data/gscdb138/README.md``) can be read:

* ``references.csv`` (required): ``reaction,set,reference_hartree,stoichiometry`` with
  ``stoichiometry = "c_1,name_1,c_2,name_2,..."``;
* ``molecules.xyz`` (required): one extended-XYZ frame per molecule, geometry in angstrom, the
  comment line ``name=... charge=... multiplicity=... [reference_basis=...] [field_x=...]
  [field_y=...] [field_z=...]`` (multiplicity 2S+1; fields in atomic units, Ha / (e bohr));
* ``sets.csv`` (optional): ``set,type,description,reference_level,...``;
* ``functional_mae_kcal.csv`` (optional): ``set,<functional>,...``, published mean absolute errors
  (kcal/mol) per set, shown beside computed ones.

Field sign. In the files (GSCDB138 keeps Q-Chem's convention) a field ``F`` changes the energy
by ``+mu . F`` to first order; dftjax's field (:mod:`dftjax.adjoint`, ``run_scf(field=...)``) is
the physical one, ``h -> h + F . r`` for electrons, so ``dE = -mu . F``. :class:`DataMolecule`
stores the field in dftjax's convention (``field = -F_file``); checked against PySCF's dipoles on
GSCDB138's Dip146 set (``tests/dftjax/test_datasets.py``).

Every file is read before any calculation and every problem raises ``ValueError`` naming the file
and line: a malformed frame, an unknown element, a charge or multiplicity impossible for the
electron count, a reaction that names a molecule the xyz file lacks, a duplicate name.

>>> data = load_reactions("../shared/data/gscdb138", sets=["G21IP"])   # doctest: +SKIP
>>> len(data.reactions), len(data.molecules)                              # doctest: +SKIP
(36, 72)
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import functools
import hashlib
import os
from typing import Iterable, Mapping

import numpy as np

from basis.molecule import ATOMIC_NUMBER, Molecule, make_molecule

__all__ = ["HARTREE_TO_KCAL", "DataMolecule", "Reaction", "SetInfo", "ReactionData", "load_reactions"]

#: kcal/mol per hartree (CODATA 2018: 4.3597447222071e-18 J * 6.02214076e23 / 4184 J/kcal).
HARTREE_TO_KCAL = 627.5094740631

_REQUIRED = ("references.csv", "molecules.xyz")


@dataclasses.dataclass(frozen=True)
class DataMolecule:
    """One molecule of a data set, as read (angstrom), with where it came from.

    Attributes:
      name: unique name within the data set.
      symbols: element symbols.
      coords: (n_atoms, 3) positions in angstrom.
      charge: total charge (e).
      multiplicity: 2S + 1.
      field: (3,) uniform electric field in dftjax's convention (atomic units, energy change
        ``-mu . F``), or None for no field.
      reference_basis: the basis of the data set's own DFT analysis, if given.
      line: 1-based line of the frame's comment line in ``molecules.xyz``.
    """

    name: str
    symbols: tuple[str, ...]
    coords: np.ndarray
    charge: int
    multiplicity: int
    field: tuple[float, float, float] | None = None
    reference_basis: str | None = None
    line: int = 0

    @property
    def spin(self) -> int:
        """2S, PySCF's and dftjax's ``spin``."""
        return self.multiplicity - 1

    @property
    def n_electrons(self) -> int:
        return sum(ATOMIC_NUMBER[s.upper()] for s in self.symbols) - self.charge

    def molecule(self) -> Molecule:
        """The validated :class:`basis.molecule.Molecule` (bohr inside)."""
        return make_molecule(list(zip(self.symbols, self.coords.tolist())), unit="angstrom",
                             charge=self.charge, spin=self.spin)

    def fingerprint(self) -> str:
        """A hash of everything that defines the calculation (elements, geometry to 1e-8 A, charge,
        multiplicity, field), so stored energies are reused only for the same molecule."""
        return self._fingerprint

    @functools.cached_property
    def _fingerprint(self) -> str:  # computed once per molecule
        text = ";".join([
            ",".join(self.symbols), ",".join(f"{x:.8f}" for x in np.asarray(self.coords).ravel()),
            str(self.charge), str(self.multiplicity),
            "none" if self.field is None else ",".join(f"{f:.10e}" for f in self.field),
        ])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Reaction:
    """``value = sum_i c_i E(molecule_i)``, reference in hartree.

    Attributes:
      name: unique reaction name; set: the set it belongs to; reference: reference value (Ha).
      terms: ``((c_1, molecule_1), ...)``.
      line: 1-based line in ``references.csv``.
    """

    name: str
    set: str
    reference: float
    terms: tuple[tuple[float, str], ...]
    line: int = 0

    def value(self, energies: Mapping[str, float]) -> float:
        """``sum_i c_i energies[molecule_i]`` (Ha)."""
        return float(sum(c * energies[m] for c, m in self.terms))

    @property
    def molecules(self) -> tuple[str, ...]:
        return tuple(m for _, m in self.terms)


@dataclasses.dataclass(frozen=True)
class SetInfo:
    """A set's description from ``sets.csv`` (empty strings where the file is absent)."""

    name: str
    type: str = ""
    description: str = ""
    reference_level: str = ""


@dataclasses.dataclass(frozen=True)
class ReactionData:
    """Reactions, the molecules they use, set descriptions and published errors of one directory.

    Attributes:
      directory: where it was read.
      molecules: name -> :class:`DataMolecule`, only those the reactions use.
      reactions: in file order.
      sets: set name -> :class:`SetInfo`, in order of first appearance in the reactions.
      published_mae: set name -> {functional: MAE in kcal/mol} from ``functional_mae_kcal.csv``.
    """

    directory: str
    molecules: dict[str, DataMolecule]
    reactions: tuple[Reaction, ...]
    sets: dict[str, SetInfo]
    published_mae: dict[str, dict[str, float]]

    @property
    def set_names(self) -> tuple[str, ...]:
        return tuple(self.sets)

    def subset(self, sets: Iterable[str]) -> "ReactionData":
        """The reactions of ``sets`` (and only the molecules they use); unknown names raise."""
        wanted = []
        for name in sets:
            name = name.strip()
            if name not in self.sets:
                raise _unknown_set(name, list(self.sets), self.directory)
            if name not in wanted:
                wanted.append(name)
        reactions = tuple(r for r in self.reactions if r.set in wanted)
        used = {m for r in reactions for m in r.molecules}
        return ReactionData(
            directory=self.directory,
            molecules={k: v for k, v in self.molecules.items() if k in used},
            reactions=reactions,
            sets={k: self.sets[k] for k in wanted},
            published_mae={k: v for k, v in self.published_mae.items() if k in wanted},
        )


def load_reactions(directory: str | os.PathLike, sets: Iterable[str] | None = None) -> ReactionData:
    """Read a data set directory (layout in the module docstring); ``sets`` selects set names.

    Raises:
      ValueError: a missing file, a malformed line (file and line named), an unknown set.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ValueError(f"data directory {directory!r} not found")
    for name in _REQUIRED:
        if not os.path.isfile(os.path.join(directory, name)):
            raise ValueError(f"{directory!r} has no {name}: a reaction data set needs {' and '.join(_REQUIRED)}")
    reactions = _read_references(os.path.join(directory, "references.csv"))
    wanted = None if sets is None else {s.strip() for s in sets}
    set_order = list(dict.fromkeys(r.set for r in reactions))
    if wanted is not None:
        for name in wanted:
            if name not in set_order:
                raise _unknown_set(name, set_order, directory)
        reactions = [r for r in reactions if r.set in wanted]
        set_order = [s for s in set_order if s in wanted]
    needed = {m for r in reactions for m in r.molecules}
    xyz = os.path.join(directory, "molecules.xyz")
    molecules = _read_xyz(xyz, needed)
    missing = [(r, m) for r in reactions for m in r.molecules if m not in molecules]
    if missing:
        reaction, name = missing[0]
        raise ValueError(f"references.csv line {reaction.line}: reaction {reaction.name!r} uses molecule "
                         f"{name!r}, which {xyz} does not contain ({len(missing)} such references)")
    info = _read_sets(os.path.join(directory, "sets.csv"))
    published = _read_published(os.path.join(directory, "functional_mae_kcal.csv"))
    return ReactionData(
        directory=directory,
        molecules=molecules,  # file order, only the needed ones
        reactions=tuple(reactions),
        sets={s: info.get(s, SetInfo(s)) for s in set_order},
        published_mae={s: published[s] for s in set_order if s in published},
    )


def _unknown_set(name: str, known: list[str], directory: str) -> ValueError:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ValueError(f"unknown set {name!r} in {directory}{hint} ({len(known)} sets there)")


def _read_references(path: str) -> list[Reaction]:
    reactions, seen = [], {}
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None or [h.strip() for h in header[:4]] != ["reaction", "set", "reference_hartree", "stoichiometry"]:
            raise ValueError(f"{path} line 1: expected the header reaction,set,reference_hartree,stoichiometry; got {header}")
        for row in rows:
            line = rows.line_num
            if not row or all(not x.strip() for x in row):
                continue
            if len(row) < 4:
                raise ValueError(f"{path} line {line}: expected 4 columns (reaction,set,reference_hartree,stoichiometry); got {len(row)}")
            name, set_name, reference, stoichiometry = (x.strip() for x in row[:4])
            if not name or not set_name:
                raise ValueError(f"{path} line {line}: empty reaction or set name")
            if name in seen:
                raise ValueError(f"{path} line {line}: reaction {name!r} already defined on line {seen[name]}")
            try:
                reference_value = float(reference)
            except ValueError:
                raise ValueError(f"{path} line {line}: reference_hartree {reference!r} is not a number") from None
            if not np.isfinite(reference_value):
                raise ValueError(f"{path} line {line}: reference_hartree {reference!r} is not finite")
            items = [x.strip() for x in stoichiometry.split(",")]
            if len(items) < 2 or len(items) % 2:
                raise ValueError(f"{path} line {line}: stoichiometry {stoichiometry!r} must be pairs c_1,name_1,c_2,name_2,...")
            terms = []
            for c, m in zip(items[::2], items[1::2]):
                try:
                    coefficient = float(c)
                except ValueError:
                    raise ValueError(f"{path} line {line}: stoichiometric coefficient {c!r} (before {m!r}) is not a number") from None
                if not m:
                    raise ValueError(f"{path} line {line}: empty molecule name in {stoichiometry!r}")
                terms.append((coefficient, m))
            seen[name] = line
            reactions.append(Reaction(name, set_name, reference_value, tuple(terms), line))
    if not reactions:
        raise ValueError(f"{path}: no reactions")
    return reactions


def _parse_comment(text: str, path: str, line: int) -> dict[str, str]:
    fields = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"{path} line {line}: expected key=value items in the comment line; got {item!r}")
        fields[key] = value
    return fields


def _read_xyz(path: str, needed: set[str]) -> dict[str, DataMolecule]:
    """Frames of ``path`` whose names are in ``needed`` (every frame's header is still checked)."""
    with open(path) as f:
        lines = f.read().splitlines()
    molecules: dict[str, DataMolecule] = {}
    seen: dict[str, int] = {}
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        count_line = i + 1
        try:
            n_atoms = int(lines[i].strip())
        except ValueError:
            raise ValueError(f"{path} line {count_line}: expected the number of atoms of a frame; got {lines[i].strip()[:60]!r}") from None
        if n_atoms < 1:
            raise ValueError(f"{path} line {count_line}: a frame needs at least one atom; got {n_atoms}")
        if i + 1 + n_atoms >= len(lines) + 1 or i + 1 >= len(lines):
            raise ValueError(f"{path} line {count_line}: frame of {n_atoms} atoms runs past the end of the file")
        comment = _parse_comment(lines[i + 1], path, count_line + 1)
        name = comment.get("name")
        if not name:
            raise ValueError(f"{path} line {count_line + 1}: comment line has no name=...")
        if name in seen:
            raise ValueError(f"{path} line {count_line + 1}: molecule {name!r} already defined on line {seen[name]}")
        seen[name] = count_line + 1
        if name in needed:
            molecules[name] = _frame(path, count_line + 1, comment, lines[i + 2:i + 2 + n_atoms], n_atoms)
        i += 2 + n_atoms
    return molecules


def _frame(path: str, line: int, comment: dict[str, str], atom_lines: list[str], n_atoms: int) -> DataMolecule:
    name = comment["name"]
    if len(atom_lines) < n_atoms:
        raise ValueError(f"{path} line {line}: molecule {name!r} has {len(atom_lines)} atom lines, expected {n_atoms}")
    symbols, coords = [], []
    for k, text in enumerate(atom_lines):
        parts = text.split()
        where = f"{path} line {line + 1 + k}"
        if len(parts) < 4:
            raise ValueError(f"{where}: expected 'symbol x y z' for atom {k} of {name!r}; got {text.strip()!r}")
        symbol = parts[0].capitalize()
        if symbol.upper() not in ATOMIC_NUMBER:
            raise ValueError(f"{where}: unknown element {parts[0]!r} in {name!r}")
        try:
            xyz = [float(v) for v in parts[1:4]]
        except ValueError:
            raise ValueError(f"{where}: coordinates {parts[1:4]} of {name!r} are not numbers") from None
        if not np.all(np.isfinite(xyz)):
            raise ValueError(f"{where}: non-finite coordinates {parts[1:4]} in {name!r}")
        symbols.append(symbol)
        coords.append(xyz)

    def integer(key, default):
        value = comment.get(key, default)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{path} line {line}: {key}={value!r} of {name!r} must be an integer") from None

    charge, multiplicity = integer("charge", 0), integer("multiplicity", 1)
    n_electrons = sum(ATOMIC_NUMBER[s.upper()] for s in symbols) - charge
    if multiplicity < 1 or n_electrons < multiplicity - 1 or (n_electrons - multiplicity + 1) % 2:
        raise ValueError(f"{path} line {line}: multiplicity {multiplicity} is impossible for {n_electrons} electrons "
                         f"in {name!r} (charge {charge}): 2S+1 >= 1 with 2S of the parity of the electron count")
    field = None
    if any(f"field_{a}" in comment for a in "xyz"):
        try:
            file_field = [float(comment.get(f"field_{a}", 0.0)) for a in "xyz"]
        except ValueError:
            raise ValueError(f"{path} line {line}: field components of {name!r} must be numbers") from None
        field = tuple(0.0 - f for f in file_field)  # file: dE = +mu.F (Q-Chem); dftjax: dE = -mu.F
    return DataMolecule(name=name, symbols=tuple(symbols), coords=np.asarray(coords, dtype=np.float64),
                        charge=charge, multiplicity=multiplicity, field=field,
                        reference_basis=comment.get("reference_basis"), line=line)


def _read_sets(path: str) -> dict[str, SetInfo]:
    if not os.path.isfile(path):
        return {}
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("set"):
                out[row["set"].strip()] = SetInfo(row["set"].strip(), (row.get("type") or "").strip(),
                                                  (row.get("description") or "").strip(),
                                                  (row.get("reference_level") or "").strip())
    return out


def _read_published(path: str) -> dict[str, dict[str, float]]:
    if not os.path.isfile(path):
        return {}
    out = {}
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None) or []
        for row in rows:
            if not row or not row[0].strip():
                continue
            values = {}
            for functional, text in zip(header[1:], row[1:]):
                try:
                    values[functional.strip()] = float(text)
                except ValueError:
                    continue  # empty cell: no published value
            out[row[0].strip()] = values
    return out
