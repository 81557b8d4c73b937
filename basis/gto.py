"""Contracted Gaussian basis sets, read from PySCF's basis library, in PySCF's AO order.

A :class:`Basis` is a JAX pytree. Its leaves are the primitive ``exponents`` and ``coefficients``
(so energies can be differentiated with respect to them); everything else (angular momentum, the
atom of each shell, where its functions go in the AO list) is static and hashable, so a jitted
integral function compiles once per basis *structure* and is reused across geometries.

Conventions (identical to PySCF/libcint, so matrices compare element by element):

* A contracted shell of angular momentum ``l`` on atom A has cartesian components
  ``phi_{ijk}(r) = sum_p c_p x^i y^j z^k exp(-a_p |r - A|^2)`` with ``i + j + k = l``, ordered
  ``x^l, x^{l-1} y, x^{l-1} z, x^{l-2} y^2, ...`` (i descending, then j descending). The
  coefficients ``c_p`` include the radial normalisation of ``r^l exp(-a r^2)`` and the contraction
  normalisation, exactly as stored in ``mol._env``.
* The AOs of the shell are ``phi_cart @ basis.transform(l)``: PySCF's ``cart2sph(l)`` for
  spherical harmonics (the default), the identity (scaled by libcint's s/p factors
  1/(2 sqrt(pi)) and sqrt(3/(4 pi)) for l = 0, 1) for cartesian functions.
* General contractions (one set of exponents, several contracted functions) are split into one
  shell per contracted function; their AOs are consecutive, as in PySCF.

>>> from basis.molecule import make_molecule
>>> mol = make_molecule("O 0 0 0; H 0 0.757 0.587; H 0 -0.757 0.587")
>>> make_basis(mol, "def2-svp").nao
24
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import numpy as np

from basis.molecule import Molecule

# libcint multiplies s and p cartesian functions by the Y_lm normalisation (CINTcommon_fac_sp).
_COMMON_FAC_SP = {0: 0.282094791773878143, 1: 0.488602511902919921}


def n_cartesian(l: int) -> int:
    """Number of cartesian components of angular momentum l: (l + 1)(l + 2) / 2."""
    return (l + 1) * (l + 2) // 2


def cartesian_powers(l: int) -> np.ndarray:
    """(n_cartesian(l), 3) exponents (i, j, k) of x, y, z in PySCF's order."""
    return np.array([(i, j, l - i - j) for i in range(l, -1, -1) for j in range(l - i, -1, -1)], dtype=np.int64)


@functools.lru_cache(maxsize=None)
def _transform(l: int, cartesian: bool) -> np.ndarray:
    from pyscf import gto

    if cartesian:
        return np.eye(n_cartesian(l)) * _COMMON_FAC_SP.get(l, 1.0)
    return np.asarray(gto.cart2sph(l), dtype=np.float64)


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class Basis:
    """A contracted Gaussian basis on a molecule's atoms.

    Attributes:
      exponents: (n_shells, max_nprim) primitive exponents a_p (bohr^-2); padding entries are 1.
      coefficients: (n_shells, max_nprim) contraction coefficients c_p; padding entries are 0.
      shell_l: static, angular momentum of each shell.
      shell_atom: static, index of the atom each shell sits on.
      shell_nprim: static, number of primitives of each shell (the rest of the row is padding).
      shell_ao_start: static, index of the shell's first AO in PySCF's AO order.
      cartesian: static, cartesian (True) or spherical (False) functions.
      name: static, the basis name(s) as given, for reports.
    """

    exponents: Any
    coefficients: Any
    shell_l: tuple[int, ...]
    shell_atom: tuple[int, ...]
    shell_nprim: tuple[int, ...]
    shell_ao_start: tuple[int, ...]
    cartesian: bool = False
    name: str = ""

    # -- pytree protocol: arrays are leaves, the rest is static structure --------------------------
    def tree_flatten(self):
        static = (self.shell_l, self.shell_atom, self.shell_nprim, self.shell_ao_start, self.cartesian, self.name)
        return (self.exponents, self.coefficients), static

    @classmethod
    def tree_unflatten(cls, static, children):
        return cls(*children, *static)

    # -- derived static information ------------------------------------------------------------------
    @property
    def n_shells(self) -> int:
        return len(self.shell_l)

    def n_functions(self, l: int) -> int:
        """Number of AOs per shell of angular momentum l (2l+1 spherical, (l+1)(l+2)/2 cartesian)."""
        return n_cartesian(l) if self.cartesian else 2 * l + 1

    @property
    def nao(self) -> int:
        return sum(self.n_functions(l) for l in self.shell_l)

    @property
    def max_l(self) -> int:
        return max(self.shell_l)

    def transform(self, l: int) -> np.ndarray:
        """(n_cartesian(l), n_functions(l)) matrix taking raw cartesian components to AOs."""
        return _transform(l, self.cartesian)

    def shell_groups(self, by_nprim: bool = True) -> list[tuple[int, int, np.ndarray]]:
        """Shells grouped for vectorised evaluation.

        Returns:
          A list of ``(l, nprim, shell_indices)``: all shells with angular momentum ``l`` (and, with
          ``by_nprim``, exactly ``nprim`` primitives; otherwise ``nprim`` is the largest in the group,
          the others padded with zero coefficients).
        """
        keys: dict[tuple[int, int], list[int]] = {}
        for s, (l, nprim) in enumerate(zip(self.shell_l, self.shell_nprim)):
            keys.setdefault((l, nprim if by_nprim else 0), []).append(s)
        groups = []
        for (l, _), shells in sorted(keys.items()):
            idx = np.array(shells, dtype=np.int64)
            groups.append((l, max(self.shell_nprim[s] for s in shells), idx))
        return groups

    def ao_indices(self, shells: np.ndarray) -> np.ndarray:
        """(len(shells), n_functions(l)) AO indices of the given shells, all of one l."""
        shells = np.asarray(shells)
        l = self.shell_l[int(shells[0])]
        start = np.array([self.shell_ao_start[s] for s in shells], dtype=np.int64)
        return start[:, None] + np.arange(self.n_functions(l))[None, :]

    def shell_centers(self, coords):
        """(n_shells, 3) centre of each shell, gathered from (n_atoms, 3) coords (traced OK)."""
        return coords[np.asarray(self.shell_atom, dtype=np.int64)]

    def __repr__(self) -> str:
        kind = "cartesian" if self.cartesian else "spherical"
        return f"Basis({self.name!r}, {self.n_shells} shells, {self.nao} {kind} AOs, max l = {self.max_l})"


def basis_from_pyscf(mol, name: str = "") -> Basis:
    """The :class:`Basis` of a built ``pyscf.gto.Mole`` (same AO order and normalisation)."""
    cartesian = bool(mol.cart)
    ao_loc = mol.ao_loc_nr(cart=cartesian)
    shells = []
    for ib in range(mol.nbas):
        l = int(mol.bas_angular(ib))
        atom = int(mol.bas_atom(ib))
        exps = np.asarray(mol.bas_exp(ib), dtype=np.float64)
        coeffs = np.asarray(mol._libcint_ctr_coeff(ib), dtype=np.float64)  # (nprim, nctr)
        nfunc = n_cartesian(l) if cartesian else 2 * l + 1
        for k in range(coeffs.shape[1]):
            shells.append((l, atom, exps, coeffs[:, k], int(ao_loc[ib]) + k * nfunc))
    if not shells:
        raise ValueError("the basis has no functions on this molecule")
    max_nprim = max(len(s[2]) for s in shells)
    exponents = np.ones((len(shells), max_nprim))
    coefficients = np.zeros((len(shells), max_nprim))
    for s, (_, _, exps, coeffs, _) in enumerate(shells):
        exponents[s, : len(exps)] = exps
        coefficients[s, : len(exps)] = coeffs
    return Basis(
        exponents=exponents,
        coefficients=coefficients,
        shell_l=tuple(s[0] for s in shells),
        shell_atom=tuple(s[1] for s in shells),
        shell_nprim=tuple(len(s[2]) for s in shells),
        shell_ao_start=tuple(s[4] for s in shells),
        cartesian=cartesian,
        name=name or (mol.basis if isinstance(mol.basis, str) else "custom"),
    )


def _pyscf_mole(molecule: Molecule, basis, cartesian: bool):
    try:
        return molecule.to_pyscf(basis=basis, cartesian=cartesian)
    except (KeyError, RuntimeError, ValueError, OSError) as err:
        raise ValueError(
            f"basis {basis!r} is not available for elements {sorted(set(molecule.symbols))}: "
            f"expected a name from PySCF's basis library (e.g. 'def2-svp', 'cc-pvdz', '6-31g*'), "
            f"or a dict element -> name ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None


def make_basis(molecule: Molecule, basis="def2-svp", *, cartesian: bool = False) -> Basis:
    """Basis functions on a molecule, read through PySCF's basis library.

    Args:
      molecule: a validated :class:`~basis.molecule.Molecule`.
      basis: a basis name known to PySCF (``"def2-svp"``, ``"cc-pvdz"``, ``"6-31g*"``, ...) or a
        dict from element symbol to name (or to PySCF basis data).
      cartesian: cartesian instead of spherical-harmonic functions.
    """
    if not isinstance(basis, (str, dict)):
        raise ValueError(f"basis {basis!r} must be a basis name or a dict element -> basis name")
    if isinstance(basis, dict):
        missing = sorted(set(molecule.symbols) - set(basis) - {"default"})
        if missing:
            raise ValueError(f"basis dict {sorted(basis)} has no entry for elements {missing}")
    _refuse_core_potentials(molecule, basis)
    mol = _pyscf_mole(molecule, basis, cartesian)
    return basis_from_pyscf(mol, name=basis if isinstance(basis, str) else "custom")


def _refuse_core_potentials(molecule: Molecule, basis) -> None:
    """ValueError when ``basis`` is made for an effective core potential on an element here (def2
    beyond Kr): dftjax has no ECPs, and its valence functions alone would give a wrong energy."""
    from pyscf.gto.basis import load_ecp

    for symbol in sorted(set(molecule.symbols)):
        name = basis.get(symbol, basis.get("default")) if isinstance(basis, dict) else basis
        if not isinstance(name, str):
            continue
        try:
            ecp = load_ecp(name, symbol)
        except (KeyError, RuntimeError, ValueError, OSError):
            continue  # no ECP table of that name: an all-electron basis (or an unknown one, refused later)
        if ecp:
            raise ValueError(f"basis {name!r} uses an effective core potential for {symbol}, and dftjax has no "
                             f"ECPs: use an all-electron basis for {symbol}")


def make_auxbasis(molecule: Molecule, orbital_basis="def2-svp", auxbasis=None, *,
                  exact_exchange: bool = True) -> Basis:
    """Auxiliary (density-fitting) basis, PySCF's default for ``orbital_basis`` unless given.

    PySCF picks the fitting basis with ``pyscf.df.addons.make_auxbasis``: where one is tabulated,
    the matching JK-fit basis when exact exchange is fitted too (HF, hybrids: def2-universal-jkfit
    for the def2 family) and the J-fit basis for pure functionals (def2-universal-jfit), otherwise
    an even-tempered basis generated from the orbital basis. We call the same function so both
    codes fit with the same functions. Auxiliary bases are always spherical, as in PySCF.
    """
    from pyscf.df import addons

    if auxbasis is None:
        mol = _pyscf_mole(molecule, orbital_basis, cartesian=False)
        auxbasis = addons.make_auxbasis(mol, xc="HF" if exact_exchange else "LDA")
    auxmol = _pyscf_mole(molecule, auxbasis, cartesian=False)
    if isinstance(auxbasis, dict) and len(set(map(str, auxbasis.values()))) == 1:
        name = str(next(iter(auxbasis.values())))
    else:
        name = auxbasis if isinstance(auxbasis, str) else "custom-auxbasis"
    return basis_from_pyscf(auxmol, name=name)
