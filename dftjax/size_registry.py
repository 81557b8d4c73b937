"""Which size class a molecule runs in: its own, or a larger one that is already compiled.

A size class (:mod:`basis.size_class`) fixes every shape a compiled SCF program depends on:
shells per (l, nprim) group of the orbital and auxiliary bases, atoms and grid points. Each
molecule has its *own* class (its counts rounded up the ladder), but any class that *dominates*
it (every count at least as large) computes the same energy, forces and orbitals to rounding,
because padding contributes exact zeros. Compiling a new class costs tens of seconds on a CPU;
running a molecule in a somewhat larger class costs milliseconds to seconds. So before a new
class is compiled, this registry looks for one that is already known, in this order:

1. a class :func:`reserve`\\ d for this family of calculations, if it dominates the molecule
   (whatever its cost: the caller asked for it);
2. the cheapest class used earlier in this process that dominates the molecule and whose
   estimated cost (:func:`estimated_cost`) is at most ``reuse_cost_ratio`` (default 4) times that
   of the molecule's own class;
3. the same among classes used by earlier processes (recorded next to the persistent compilation
   cache, whose executables they have), so a second run of a script finds the first run's classes.

Otherwise the molecule's own class is used and recorded. A *family* is everything else the compiled
programs depend on (functional, basis and auxiliary basis names, grid level, restricted or not):
classes are shared only within one.

>>> reserve(molecules, SCFOptions(xc="pbe"))       # doctest: +SKIP
... # every later run_scf / forces of these molecules with these options shares one class
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from typing import Iterable, NamedTuple

import jax

from basis.size_class import SizeClass, basis_size_class, ladder_size

__all__ = ["ClassSizes", "dominates", "covering", "estimated_cost", "family_key", "SizeRegistry", "registry",
           "reserve", "release"]

REGISTRY_FILE = "size_classes.json"
_VERSION = 1


class ClassSizes(NamedTuple):
    """Every padded size of one compiled class (hashable, JSON-able).

    Attributes:
      orbital: the orbital basis :class:`~basis.size_class.SizeClass`.
      aux: the auxiliary basis class (density fitting), else None.
      n_atoms: padded number of atoms.
      n_points: padded number of grid points (0 for Hartree-Fock, which has no grid).
    """

    orbital: SizeClass
    aux: SizeClass | None
    n_atoms: int
    n_points: int

    @classmethod
    def of(cls, basis, auxbasis, n_atoms: int, n_grid_points: int) -> "ClassSizes":
        """The own class of a molecule with these (unpadded) bases, atoms and grid points."""
        aux = None if auxbasis is None else basis_size_class(auxbasis)
        return cls(basis_size_class(basis), aux, ladder_size(n_atoms), ladder_size(n_grid_points))

    def to_json(self) -> dict:
        def groups(c):
            return None if c is None else {"groups": [list(g) for g in c.groups], "cartesian": bool(c.cartesian)}
        return {"orbital": groups(self.orbital), "aux": groups(self.aux), "n_atoms": int(self.n_atoms),
                "n_points": int(self.n_points)}

    @classmethod
    def from_json(cls, record: dict) -> "ClassSizes":
        def groups(c):
            if c is None:
                return None
            return SizeClass(groups=tuple(tuple(int(v) for v in g) for g in c["groups"]), cartesian=bool(c["cartesian"]))
        return cls(groups(record["orbital"]), groups(record["aux"]), int(record["n_atoms"]), int(record["n_points"]))


def _n_functions(size_class: SizeClass | None) -> int:
    if size_class is None:
        return 0
    per_l = (lambda l: (l + 1) * (l + 2) // 2) if size_class.cartesian else (lambda l: 2 * l + 1)
    return sum(count * per_l(l) for l, _, count in size_class.groups)


def _class_dominates(big: SizeClass | None, small: SizeClass | None) -> bool:
    if small is None:
        return True
    if big is None or bool(big.cartesian) != bool(small.cartesian):
        return False
    counts = {(l, nprim): count for l, nprim, count in big.groups}
    return all(counts.get((l, nprim), 0) >= count for l, nprim, count in small.groups)


def dominates(big: ClassSizes, small: ClassSizes) -> bool:
    """Whether a molecule of class ``small`` fits in class ``big`` (every padded size at least as large)."""
    return ((big.aux is None) == (small.aux is None) and _class_dominates(big.orbital, small.orbital)
            and _class_dominates(big.aux, small.aux) and big.n_atoms >= small.n_atoms
            and big.n_points >= small.n_points)


def covering(classes: Iterable[ClassSizes]) -> ClassSizes:
    """The smallest class that dominates all of ``classes`` (counts are already ladder values)."""
    classes = list(classes)
    if not classes:
        raise ValueError("covering() needs at least one class")

    def union(parts):
        parts = [p for p in parts if p is not None]
        if not parts:
            return None
        if len({bool(p.cartesian) for p in parts}) > 1:
            raise ValueError("cartesian and spherical bases cannot share a size class")
        counts: dict[tuple[int, int], int] = {}
        for p in parts:
            for l, nprim, count in p.groups:
                counts[(l, nprim)] = max(counts.get((l, nprim), 0), count)
        return SizeClass(tuple((l, n, c) for (l, n), c in sorted(counts.items())), bool(parts[0].cartesian))

    if len({c.aux is None for c in classes}) > 1:
        raise ValueError("density-fitted and exact-integral calculations cannot share a size class")
    return ClassSizes(union(c.orbital for c in classes), union(c.aux for c in classes),
                      max(c.n_atoms for c in classes), max(c.n_points for c in classes))


def estimated_cost(sizes: ClassSizes) -> float:
    """Relative cost of one SCF in a class (arbitrary units, for comparing classes).

    The dominant terms: exact J/K contract nao^4 integrals (density fitting: naux nao^2), the XC
    term evaluates AO values and their gradients on every grid point (4 n_points nao).
    """
    nao = _n_functions(sizes.orbital)
    naux = _n_functions(sizes.aux)
    coulomb = naux * nao**2 if sizes.aux is not None else nao**4
    return float(coulomb + 4 * sizes.n_points * nao)


def family_key(options, functional) -> str:
    """What the compiled programs depend on besides sizes (classes are shared within one family)."""
    aux = (options.auxbasis or "default") if options.density_fit else None
    return json.dumps([getattr(functional, "name", str(functional)), str(options.basis).lower(),
                       bool(options.unrestricted), int(options.grid_level), aux])


@dataclasses.dataclass
class _Entry:
    family: str
    sizes: ClassSizes


class SizeRegistry:
    """Known size classes per family: reserved, used in this process, and recorded on disk.

    Args:
      path: JSON file of classes used by earlier processes; None keeps everything in memory.
      reuse_cost_ratio: a known class serves a molecule when its :func:`estimated_cost` is at most
        this multiple of the molecule's own class's.
    """

    def __init__(self, path: str | None = None, reuse_cost_ratio: float = 4.0):
        self.path = path
        self.reuse_cost_ratio = float(reuse_cost_ratio)
        self._reserved: dict[str, list[ClassSizes]] = {}
        self._used: dict[str, list[ClassSizes]] = {}
        self._lock = threading.Lock()

    # -- persistence --------------------------------------------------------------------------------

    def _recorded(self) -> dict[str, list[ClassSizes]]:
        if not self.path or not os.path.exists(self.path):
            return {}
        try:
            with open(self.path) as handle:
                payload = json.load(handle)
            if payload.get("version") != _VERSION:
                return {}
            out: dict[str, list[ClassSizes]] = {}
            for record in payload["classes"]:
                out.setdefault(record["family"], []).append(ClassSizes.from_json(record["sizes"]))
            return out
        except (OSError, ValueError, KeyError, TypeError):
            return {}  # a damaged or foreign file only costs a compilation; it is rewritten below

    def _record(self, family: str, sizes: ClassSizes) -> None:
        if not self.path:
            return
        from dftjax.atomic import write_json

        recorded = self._recorded()
        if sizes in recorded.get(family, []):
            return
        recorded.setdefault(family, []).append(sizes)
        classes = [{"family": f, "sizes": s.to_json()} for f, known in recorded.items() for s in known]
        try:
            write_json(self.path, {"version": _VERSION, "classes": classes}, indent=1)
        except OSError:
            pass  # a read-only cache directory: classes are still shared within the process

    # -- choice ------------------------------------------------------------------------------------

    def reserve(self, family: str, sizes: ClassSizes) -> None:
        """Make ``sizes`` the first choice of ``family`` for every molecule it dominates."""
        with self._lock:
            known = self._reserved.setdefault(family, [])
            if sizes not in known:
                known.append(sizes)

    def release(self, family: str) -> None:
        """Drop the reservations of ``family`` (its classes stay known as used in this process)."""
        with self._lock:
            self._reserved.pop(family, None)

    def choose(self, family: str, own: ClassSizes) -> ClassSizes:
        """The class a molecule whose own class is ``own`` runs in (recorded as used)."""
        with self._lock:
            reserved = [c for c in self._reserved.get(family, []) if dominates(c, own)]
            if reserved:
                chosen = min(reserved, key=estimated_cost)
            else:
                limit = self.reuse_cost_ratio * estimated_cost(own)
                chosen = None
                tiers = (lambda: self._used.get(family, []), lambda: self._recorded().get(family, []))
                for tier in tiers:  # the file is read only when this process knows no fitting class
                    fitting = [c for c in tier() if dominates(c, own) and estimated_cost(c) <= limit]
                    if fitting:
                        chosen = min(fitting, key=estimated_cost)
                        break
                chosen = own if chosen is None else chosen
            used = self._used.setdefault(family, [])
            if chosen not in used:
                used.append(chosen)
                self._record(family, chosen)
            return chosen

    def clear(self) -> None:
        """Forget the reserved and in-process classes (the file stays)."""
        with self._lock:
            self._reserved.clear()
            self._used.clear()


_registry: SizeRegistry | None = None


def registry() -> SizeRegistry:
    """The process-wide registry; its file sits in the persistent compilation cache directory
    (none when the cache is off, ``DFTJAX_CACHE_DIR=``)."""
    global _registry
    if _registry is None:
        cache = jax.config.jax_compilation_cache_dir
        _registry = SizeRegistry(os.path.join(cache, REGISTRY_FILE) if cache else None)
    return _registry


def unpadded_parts(molecule, options, functional):
    """``(basis, auxbasis or None, grid spec or None)`` of the molecule under ``options``: what its
    own class is measured from and what :func:`dftjax.adjoint.size_class_setup` pads."""
    from basis.grids import make_grid_spec
    from basis.gto import make_auxbasis, make_basis

    aux = None
    if options.density_fit:
        aux = make_auxbasis(molecule, options.basis, options.auxbasis,
                            exact_exchange=functional.kind == "hf" or functional.is_hybrid)
    spec = make_grid_spec(molecule.atomic_numbers, options.grid_level) if functional.kind != "hf" else None
    return make_basis(molecule, options.basis), aux, spec


def own_class(molecule, options, functional) -> ClassSizes:
    """The molecule's own size class under ``options`` (counts rounded up the ladder)."""
    basis, aux, spec = unpadded_parts(molecule, options, functional)
    return ClassSizes.of(basis, aux, molecule.n_atoms, 0 if spec is None else spec.n_points)


def reserve(molecules, options, functional=None) -> ClassSizes:
    """Reserve one size class covering ``molecules`` under ``options``: every later ``run_scf``,
    ``forces`` or ``hessian`` of any of them (same options) runs in it and shares its programs.

    What a script looping over a data set calls first: one compilation per program for the whole
    loop, at the price of running small molecules padded to the largest one's sizes. The class
    depends on the basis, auxiliary basis, grid level and whether the functional has a grid, not
    on the functional or spin: reserving it for several option sets lets them share the integral
    program.

    Returns:
      The reserved :class:`ClassSizes`.
    """
    from dftjax.system import functional_by_name

    molecules = list(molecules)
    if not molecules:
        raise ValueError("reserve() needs at least one molecule")
    functional = functional_by_name(options.xc) if functional is None else functional  # unknown names raise
    sizes = covering(own_class(m, options, functional) for m in molecules)
    registry().reserve(family_key(options, functional), sizes)
    return sizes


def release(options, functional=None) -> None:
    """Undo :func:`reserve` for ``options``: later molecules choose their class as usual."""
    from dftjax.system import functional_by_name

    functional = functional_by_name(options.xc) if functional is None else functional
    registry().release(family_key(options, functional))
