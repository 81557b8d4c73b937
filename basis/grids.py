"""Molecular integration grids for DFT (bohr): radial x Lebedev atomic grids, Becke partition.

An integral over all space is a weighted sum over grid points, ``int f(r) dr ~ sum_g w_g f(r_g)``.
Each atom A carries an atomic grid (radial shells x Lebedev sphere points) centred on its nucleus
``R_A``; Becke's fuzzy-cell partition ``w_A(r) = P_A(r) / sum_B P_B(r)`` glues them together:

    r_g = R_A + r_k u_l,        w_g = 4 pi r_k^2 dr_k * omega_l * P_A(r_g) / sum_B P_B(r_g)

    P_A(r) = prod_{B != A} s(nu_AB(r)),   s(nu) = (1 - f(f(f(nu)))) / 2,   f(x) = 3x/2 - x^3/2
    nu_AB = mu_AB + a_AB (1 - mu_AB^2),   mu_AB = (|r - R_A| - |r - R_B|) / |R_A - R_B|

The defaults are PySCF's (``pyscf.dft.gen_grid.Grids``, PySCF 2.14), so the same points and weights
come out: points to ~4e-15 bohr, weights to ~1e-14 of the atomic-grid weight of each point (the
tests require 1e-12; ``tests/basis/test_grids.py``). The ingredients:

* radial quadrature: Treutler-Ahlrichs M4 mapping of Gauss-Chebyshev (second kind) nodes with the
  element-specific scale ``xi`` of Treutler & Ahlrichs (H-Kr; heavier elements as in Psi4/PySCF);
  ``radi_method="becke"``, ``"mura_knowles"`` and ``"gauss_chebyshev"`` are the alternatives;
* radial and Lebedev point counts per element row and ``level`` 0..9 (default 3), PySCF's
  ``RAD_GRIDS`` / ``ANG_ORDER`` tables, e.g. level 3: (50, 302) for H, He; (75, 302) for Li-Ne;
  (80, 434) for Na-Ar;
* angular pruning: NWChem's scheme (``prune="nwchem"``, i.e. ``prune=True``), or Treutler's
  (``"treutler"``), or none (``False``);
* partition: Becke's cell function (``becke_scheme="becke"``) or Stratmann-Scuseria-Frisch's
  polynomial (``"stratmann"``), with Treutler's atomic-size adjustment ``a_AB`` built from square
  roots of the Bragg radii (``radii_adjust="treutler"``; ``"becke"`` uses the radii themselves,
  ``None`` switches it off): ``a_AB = (chi_BA - chi_AB) / 4``, ``chi_AB = rad_A / rad_B``, clipped
  to [-1/2, 1/2];
* Lebedev-Laikov points and weights are PySCF's tables (``pyscf.dft.LebedevGrid``), read once per
  order and cached: numbers, like basis sets.

Split into a static and a differentiable part: :func:`make_grid_spec` builds, in NumPy, everything
that depends only on the elements and options (atomic grids relative to their centre, quadrature
weights, the size-adjustment table); :func:`grid_points_weights` is a pure ``jax.numpy`` function of
the nuclear coordinates, so ``jax.grad``, ``jax.jacfwd``, ``jax.jit`` and ``jax.vmap`` over
geometries all apply. Points move rigidly with their atom (PySCF's "grid response" convention for
nuclear gradients); the Becke weights carry the rest of the geometry dependence.

Where dftjax's grid differs from ``Grids(mol).build()`` (all deliberate, none changes an integral):

* **Order.** ``Grids.build(sort_grids=True)`` (the default) permutes the points into spatial boxes
  (``arg_group_grids``) for cache locality. That permutation depends on the geometry and jumps when
  atoms move, so dftjax keeps the unsorted order: atom by atom, and within an atom PySCF's
  ``gen_atomic_grids`` order (Lebedev sets by increasing size, radial shells in blocks of 12,
  sphere points outer, shells inner). With ``build(sort_grids=False)`` the arrays agree element by
  element; with sorting they agree as sets (:func:`pyscf_grid` gives PySCF's own order).
* **Padding.** PySCF appends zero-weight points at (1e-4, 1e-4, 1e-4) bohr until the count is a
  multiple of ``Grids.alignment`` (8). dftjax does not pad.
* **Small weights.** ``Grids.build`` in PySCF 2.14 drops no point: ``Grids.cutoff`` (1e-15) is only
  the AO-screening threshold of ``make_mask`` (``non0tab``), not a weight cutoff, and points whose
  Becke weight underflows to zero are kept. Density-based pruning (``Grids.prune_by_density_``,
  used by ``RKS`` only when ``small_rho_cutoff > 0``; it is 0 by default in PySCF 2.14)
  depends on the density; dftjax's grid never does, so it stays differentiable and fixed-size.
* (Not a difference, a warning.) Some weights are negative, in PySCF too: the 74-, 230- and
  266-point Lebedev rules have negative weights, and NWChem pruning uses the 74-point rule at level
  0 (H-Ne) and the 266-point rule wherever the full rule has 302 points (e.g. level 3, H-Ne).
* **Treutler's xi.** PySCF >= 2.7 uses the element-specific xi (``ATOM_SPECIFIC_TREUTLER_GRIDS``,
  default on), as here; PySCF <= 2.6 used xi = 1 for every element, which moves energies by ~1e-6
  hartree per atom.

References:
  A. D. Becke, J. Chem. Phys. 88, 2547 (1988), doi:10.1063/1.454033 (fuzzy cells, radial map).
  O. Treutler and R. Ahlrichs, J. Chem. Phys. 102, 346 (1995), doi:10.1063/1.469408 (M4 radial
  grid, xi, atomic-size adjustment, pruning).
  V. I. Lebedev and D. N. Laikov, Dokl. Math. 59, 477 (1999) (angular grids).
  R. E. Stratmann, G. E. Scuseria and M. J. Frisch, Chem. Phys. Lett. 257, 213 (1996),
  doi:10.1016/0009-2614(96)00600-8 (partition polynomial).
  M. E. Mura and P. J. Knowles, J. Chem. Phys. 104, 9848 (1996), doi:10.1063/1.471749.
  M. Krack and A. M. Koster, J. Chem. Phys. 108, 3226 (1998), doi:10.1063/1.475719.
  NWChem pruning: E. Apra et al., J. Chem. Phys. 152, 184102 (2020) and the NWChem source; the
  same region boundaries as SG-1, P. M. W. Gill, B. G. Johnson and J. A. Pople, Chem. Phys. Lett.
  209, 506 (1993).
  Q. Sun et al., J. Chem. Phys. 153, 024109 (2020) (PySCF, whose defaults are reproduced).

>>> from basis.molecule import make_molecule
>>> mol = make_molecule("O 0 0 0; H 0 0.757 0.587; H 0 -0.757 0.587")
>>> grid = make_grid(mol, level=3)
>>> grid.points.shape, grid.weights.shape
((33698, 3), (33698,))
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

LEVELS = tuple(range(10))
DEFAULT_LEVEL = 3

# Last atomic number of each row of the periodic table: row index = number of entries below Z.
_ROW_ENDS = np.array((2, 10, 18, 36, 54, 86, 118))

# Radial shells per level (rows) and element row (columns), PySCF's gen_grid.RAD_GRIDS.
_RADIAL_COUNTS = np.array((
    (10, 15, 20, 30, 35, 40, 50),
    (30, 40, 50, 60, 65, 70, 75),
    (40, 60, 65, 75, 80, 85, 90),
    (50, 75, 80, 90, 95, 100, 105),
    (60, 90, 95, 105, 110, 115, 120),
    (70, 105, 110, 120, 125, 130, 135),
    (80, 120, 125, 135, 140, 145, 150),
    (90, 135, 140, 150, 155, 160, 165),
    (100, 150, 155, 165, 170, 175, 180),
    (200, 200, 200, 200, 200, 200, 200),
))

# Lebedev points per level and row: PySCF's gen_grid.ANG_ORDER (Lebedev orders 11, 15, 17, 23, 29,
# 35, 41, 47, 53, 59, 65) written as point counts.
_ANGULAR_COUNTS = np.array((
    (50, 86, 110, 110, 110, 110, 110),
    (110, 194, 194, 194, 194, 194, 194),
    (194, 302, 302, 302, 302, 302, 302),
    (302, 302, 434, 434, 434, 434, 434),
    (434, 590, 590, 590, 590, 590, 590),
    (590, 770, 770, 770, 770, 770, 770),
    (770, 974, 974, 974, 974, 974, 974),
    (974, 1202, 1202, 1202, 1202, 1202, 1202),
    (1202, 1202, 1202, 1202, 1202, 1202, 1202),
    (1454, 1454, 1454, 1454, 1454, 1454, 1454),
))

# Number of points of every Lebedev-Laikov rule PySCF tabulates (algebraic orders 3 to 131).
LEBEDEV_SIZES = (
    6, 14, 26, 38, 50, 74, 86, 110, 146, 170, 194, 230, 266, 302, 350, 434, 590, 770, 974, 1202,
    1454, 1730, 2030, 2354, 2702, 3074, 3470, 3890, 4334, 4802, 5294, 5810,
)

# Treutler-Ahlrichs radial scale xi, indexed by Z (index 0 unused). H-Kr from Treutler & Ahlrichs
# (1995); Rb-Rn as in Psi4 and PySCF.
_TREUTLER_XI = np.array((
    1.0,
    0.8, 0.9,
    1.8, 1.4, 1.3, 1.1, 0.9, 0.9, 0.9, 0.9,
    1.4, 1.3, 1.3, 1.2, 1.1, 1.0, 1.0, 1.0,
    1.5, 1.4, 1.3, 1.2, 1.2, 1.2, 1.2, 1.2, 1.2, 1.1, 1.1, 1.1, 1.1, 1.0, 0.9, 0.9, 0.9, 0.9,
    2.0, 1.7, 1.5, 1.5, 1.35, 1.35, 1.25, 1.2, 1.25, 1.3, 1.5, 1.5, 1.3, 1.2, 1.2, 1.15, 1.15, 1.15,
    2.5, 2.2, 2.5, *([1.5] * 29),
))
MAX_ATOMIC_NUMBER = len(_TREUTLER_XI) - 1  # 86, Rn: the elements basis.molecule knows

# NWChem / SG-1 region boundaries in units of the Bragg radius, for H-He, Li-Ne and beyond.
_PRUNE_ALPHAS = np.array((
    (0.25, 0.5, 1.0, 4.5),
    (0.1667, 0.5, 0.9, 3.5),
    (0.1, 0.4, 0.8, 2.5),
))

# PySCF's atomic grids are assembled in blocks of this many radial shells (reproduced for order).
_SHELL_BLOCK = 12

RADIAL_METHODS = ("treutler", "becke", "mura_knowles", "gauss_chebyshev")
PRUNE_SCHEMES = ("nwchem", "treutler")
BECKE_SCHEMES = ("becke", "stratmann")
RADII_ADJUSTMENTS = ("treutler", "becke")
_ALIASES = {"treutler_ahlrichs": "treutler", "original_becke": "becke", "nwchem_prune": "nwchem",
            "treutler_prune": "treutler"}


class Grid(NamedTuple):
    """Integration grid: ``int f dr ~ sum(weights * f(points))``.

    Attributes:
      points: (n_points, 3) positions in bohr.
      weights: (n_points,) weights in bohr^3.
    """

    points: jnp.ndarray
    weights: jnp.ndarray


class AtomicGrid(NamedTuple):
    """Quadrature for one atom, relative to its nucleus (NumPy, read-only).

    Attributes:
      offsets: (n, 3) point positions minus the nuclear position, bohr.
      weights: (n,) ``4 pi r^2 dr * omega`` (radial times Lebedev weight), bohr^3.
      n_radial: number of radial shells.
      n_angular: (n_radial,) Lebedev points on each shell (after pruning), in shell order.
    """

    offsets: np.ndarray
    weights: np.ndarray
    n_radial: int
    n_angular: np.ndarray


def _choice(name: str, value, allowed: Sequence[str], *, optional: bool = False):
    if value is None and optional:
        return None
    key = _ALIASES.get(value, value) if isinstance(value, str) else value
    if key in allowed:
        return key
    options = ", ".join(repr(a) for a in allowed) + (", None" if optional else "")
    raise ValueError(f"unknown {name} {value!r}: expected one of {options}")


def _check_level(level) -> int:
    is_integer = isinstance(level, (int, np.integer)) and not isinstance(level, (bool, np.bool_))
    if not is_integer or int(level) not in LEVELS:
        raise ValueError(
            f"grid level {level!r} not allowed: expected an integer 0..9 (PySCF's grid levels; default 3)"
        )
    return int(level)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GridOptions:
    """How the grid is built (PySCF's ``Grids`` attributes); validated and normalised on creation.

    Attributes:
      level: 0..9, PySCF's ``Grids.level`` (radial and Lebedev counts per element row).
      prune: ``"nwchem"`` (default, also ``True``), ``"treutler"``, or ``None`` (also ``False``).
      radi_method: ``"treutler"`` (default), ``"becke"``, ``"mura_knowles"``, ``"gauss_chebyshev"``.
      becke_scheme: ``"becke"`` (default, Becke's iterated cell function) or ``"stratmann"``.
      radii_adjust: ``"treutler"`` (default), ``"becke"`` or ``None``; radii are Bragg's.
    """

    level: int = DEFAULT_LEVEL
    prune: str | bool | None = "nwchem"
    radi_method: str = "treutler"
    becke_scheme: str = "becke"
    radii_adjust: str | None = "treutler"

    def __post_init__(self):
        prune = self.prune
        if prune is True:
            prune = "nwchem"
        elif prune is False:
            prune = None
        set_ = functools.partial(object.__setattr__, self)
        set_("level", _check_level(self.level))
        set_("prune", _choice("prune scheme", prune, PRUNE_SCHEMES, optional=True))
        set_("radi_method", _choice("radi_method", self.radi_method, RADIAL_METHODS))
        set_("becke_scheme", _choice("becke_scheme", self.becke_scheme, BECKE_SCHEMES))
        set_("radii_adjust", _choice("radii_adjust", self.radii_adjust, RADII_ADJUSTMENTS, optional=True))


_OPTION_NAMES = tuple(f.name for f in dataclasses.fields(GridOptions) if f.name != "level")


def _check_option_names(options) -> None:
    for name in options:
        if name not in _OPTION_NAMES:
            close = difflib.get_close_matches(name, _OPTION_NAMES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown grid option {name!r}: expected one of {', '.join(_OPTION_NAMES)}{hint}")


# ---------------------------------------------------------------------------------------------
# Static part: NumPy, depends only on the element and the options.


@functools.lru_cache(maxsize=None)
def _bragg_radii() -> np.ndarray:
    """Bragg-Slater radii in bohr indexed by Z (PySCF's ``pyscf.data.radii.BRAGG``; data)."""
    from pyscf.data import radii

    table = np.array(radii.BRAGG, dtype=np.float64)
    table.flags.writeable = False
    return table


def _row(z: int) -> int:
    return int(np.sum(z > _ROW_ENDS))


def default_counts(z: int, level: int = DEFAULT_LEVEL) -> tuple[int, int]:
    """(radial shells, Lebedev points) for element ``z`` at ``level``, PySCF's defaults."""
    level = _check_level(level)
    row = _row(z)
    return int(_RADIAL_COUNTS[level, row]), int(_ANGULAR_COUNTS[level, row])


@functools.lru_cache(maxsize=None)
def lebedev_grid(n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Lebedev-Laikov rule with ``n_points`` points on the unit sphere (read-only, cached).

    Returns:
      (n_points, 3) unit vectors and (n_points,) weights summing to 1 (the 4 pi lives in the
      radial weights, as in PySCF). Numbers from ``pyscf.dft.LebedevGrid``.
    """
    if n_points not in LEBEDEV_SIZES:
        raise ValueError(f"no Lebedev rule with {n_points!r} points: expected one of {LEBEDEV_SIZES}")
    from pyscf.dft import LebedevGrid

    table = np.array(LebedevGrid.MakeAngularGrid(n_points), dtype=np.float64)
    directions, weights = np.ascontiguousarray(table[:, :3]), np.ascontiguousarray(table[:, 3])
    directions.flags.writeable = False
    weights.flags.writeable = False
    return directions, weights


def _treutler_ahlrichs(n: int, z: int) -> tuple[np.ndarray, np.ndarray]:
    # M4: r(x) = xi / ln 2 (1 + x)^0.6 ln(2 / (1 - x)) at Chebyshev-II nodes x_k = cos(k pi/(n+1));
    # int_{-1}^{1} g(x) dx ~ pi/(n+1) sum_k sin(theta_k) g(x_k). k runs down so r increases.
    theta = np.arange(n, 0, -1) * (np.pi / (n + 1))
    x = np.cos(theta)
    scale = _TREUTLER_XI[z] / np.log(2.0)
    log_term = -np.log((1.0 - x) / 2.0)  # PySCF's rounding; the innermost r differs ~1e-12 otherwise
    r = scale * (1.0 + x) ** 0.6 * log_term
    dr_dx = scale * (1.0 + x) ** 0.6 * (0.6 / (1.0 + x) * log_term + 1.0 / (1.0 - x))
    return r, np.pi / (n + 1) * np.sin(theta) * dr_dx


def _becke_radial(n: int, z: int) -> tuple[np.ndarray, np.ndarray]:
    # Becke (1988): r = r_m (1 + x)/(1 - x), r_m half the Bragg radius (the full one for H).
    r_m = _bragg_radii()[z] * (1.0 if z == 1 else 0.5)
    theta = np.pi * np.arange(1, n + 1) / (n + 1)
    x = np.cos(theta)
    return r_m * (1.0 + x) / (1.0 - x), np.pi / (n + 1) * np.sin(theta) * 2.0 * r_m / (1.0 - x) ** 2


def _mura_knowles(n: int, z: int) -> tuple[np.ndarray, np.ndarray]:
    # Mura-Knowles log3: r = -alpha ln(1 - x^3), midpoint rule in x; alpha = 7 for alkali and
    # alkaline-earth atoms, 5.2 otherwise (PySCF's choice; the paper uses 5).
    alpha = 7.0 if z in (3, 4, 11, 12, 19, 20) else 5.2
    x = (np.arange(n) + 0.5) / n
    return -alpha * np.log(1.0 - x**3), alpha * 3.0 * x**2 / ((1.0 - x**3) * n)


def _gauss_chebyshev(n: int, z: int) -> tuple[np.ndarray, np.ndarray]:
    # Krack-Koster: Perez-Jorda's transformed Chebyshev-II rule on [-1, 1], r = 1 - log2(1 + x).
    theta = np.pi * np.arange(1, n + 1) / (n + 1)
    x = (n + 1 - 2.0 * np.arange(1, n + 1)) / (n + 1)
    x = x + (1.0 + 2.0 / 3.0 * np.sin(theta) ** 2) * np.sin(2 * theta) / np.pi
    x = 0.5 * (x - x[::-1])  # exact antisymmetry of the nodes
    inv_ln2 = 1.0 / np.log(2.0)  # multiply as PySCF does: r ~ 2e-7 at the first node cancels badly
    r = 1.0 - np.log(1.0 + x) * inv_ln2
    return r, 16.0 / (3.0 * (n + 1)) * np.sin(theta) ** 4 * inv_ln2 / (1.0 + x)


_RADIAL_RULES = {
    "treutler": _treutler_ahlrichs,
    "becke": _becke_radial,
    "mura_knowles": _mura_knowles,
    "gauss_chebyshev": _gauss_chebyshev,
}


def radial_grid(n: int, z: int, radi_method: str = "treutler") -> tuple[np.ndarray, np.ndarray]:
    """Radial quadrature with ``n`` shells for element ``z``: ``int_0^inf g(r) dr ~ sum w_k g(r_k)``.

    Returns:
      (n,) radii in bohr and (n,) weights ``dr_k`` (no ``4 pi r^2``), in PySCF's order.
    """
    method = _choice("radi_method", radi_method, RADIAL_METHODS)
    return _RADIAL_RULES[method](int(n), int(z))


def _nwchem_prune(z: int, radii: np.ndarray, n_angular: int) -> np.ndarray:
    # NWChem: five regions split at alpha * Bragg radius; inner regions get smaller Lebedev rules.
    if n_angular < 50:
        return np.full(radii.shape, n_angular)
    sizes = LEBEDEV_SIZES[3:]  # 38, 50, 74, 86, 110, ...
    if n_angular == 50:
        regions = (50, 74, 74, 74, 50)
    else:
        i = sizes.index(n_angular)
        regions = (sizes[1], sizes[3], sizes[i - 1], n_angular, sizes[i - 1])
    alphas = _PRUNE_ALPHAS[0 if z <= 2 else 1 if z <= 10 else 2]
    region = np.sum(radii[:, None] / _bragg_radii()[z] > alphas[None, :], axis=1)
    return np.asarray(regions)[region]


def _treutler_prune(z: int, radii: np.ndarray, n_angular: int) -> np.ndarray:
    # Treutler-Ahlrichs: first third of the shells 14 points, up to half 50, the rest full.
    n = len(radii)
    counts = np.full(n, n_angular)
    counts[: n // 2] = 50
    counts[: n // 3] = 14
    return counts


_PRUNE_RULES = {"nwchem": _nwchem_prune, "treutler": _treutler_prune}


@functools.lru_cache(maxsize=None)
def atomic_grid(
    z: int, level: int = DEFAULT_LEVEL, *, radi_method: str = "treutler", prune: str | bool | None = "nwchem"
) -> AtomicGrid:
    """Atomic grid of element ``z`` centred at the origin, in PySCF's point order (cached).

    Shells with the same Lebedev rule are grouped (rules by increasing size), then taken in blocks
    of 12 shells; inside a block the sphere point is the outer index and the shell the inner one.
    """
    options = GridOptions(level=level, radi_method=radi_method, prune=prune)
    n_radial, n_angular = default_counts(z, options.level)
    radii, dr = radial_grid(n_radial, z, options.radi_method)
    radial_weights = 4.0 * np.pi * radii**2 * dr
    if options.prune is None:
        counts = np.full(n_radial, n_angular)
    else:
        counts = _PRUNE_RULES[options.prune](z, radii, n_angular)

    offsets, weights = [], []
    for n_points in sorted(set(counts.tolist())):
        directions, omega = lebedev_grid(n_points)
        shells = np.flatnonzero(counts == n_points)
        for start in range(0, len(shells), _SHELL_BLOCK):
            block = shells[start : start + _SHELL_BLOCK]
            offsets.append((directions[:, None, :] * radii[block][None, :, None]).reshape(-1, 3))
            weights.append((omega[:, None] * radial_weights[block][None, :]).reshape(-1))
    grid = AtomicGrid(np.concatenate(offsets), np.concatenate(weights), n_radial, counts)
    for array in (grid.offsets, grid.weights, grid.n_angular):
        array.flags.writeable = False
    return grid


def _size_adjustment(atomic_numbers: Sequence[int], radii_adjust: str | None) -> np.ndarray | None:
    """(n_atoms, n_atoms) antisymmetric a_AB of nu = mu + a (1 - mu^2); None when switched off."""
    if radii_adjust is None:
        return None
    radius = _bragg_radii()[np.asarray(atomic_numbers)]
    if radii_adjust == "treutler":
        radius = np.sqrt(radius)  # Treutler-Ahlrichs: ratios of square roots of the radii
    ratio = radius[:, None] / radius[None, :]  # chi_AB = rad_A / rad_B
    a = 0.25 * (ratio.T - ratio)
    return np.clip(a, -0.5, 0.5)  # |a| <= 1/2 keeps nu(mu) monotonic on [-1, 1]


@dataclasses.dataclass(frozen=True, eq=False)
class GridSpec:
    """Everything about a molecular grid that does not depend on the nuclear positions.

    Build it with :func:`make_grid_spec`. Equality and hash go by ``(atomic_numbers, options)``,
    which determine everything else, so it is a static argument of ``jax.jit`` and equal specs
    share one compilation.

    Attributes:
      atomic_numbers: nuclear charge of each atom.
      options: the validated :class:`GridOptions` (level, pruning, radial rule, partition).
      atom_grids: one :class:`AtomicGrid` per atom (shared between atoms of one element).
      size_adjustment: (n_atoms, n_atoms) a_AB, or None without atomic-size adjustment.
      atom_index: (n_points,) atom that owns each point.
      offsets: (n_points, 3) point minus the owning nucleus, bohr.
      quadrature_weights: (n_points,) atomic-grid weights before partition, bohr^3.
    """

    atomic_numbers: tuple[int, ...]
    options: GridOptions
    atom_grids: tuple[AtomicGrid, ...]
    size_adjustment: np.ndarray | None
    atom_index: np.ndarray
    offsets: np.ndarray
    quadrature_weights: np.ndarray

    def _key(self):
        return self.atomic_numbers, self.options

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other) -> bool:
        return isinstance(other, GridSpec) and self._key() == other._key()

    @property
    def level(self) -> int:
        return self.options.level

    @property
    def n_atoms(self) -> int:
        return len(self.atomic_numbers)

    @property
    def n_points(self) -> int:
        return int(self.quadrature_weights.shape[0])


def make_grid_spec(
    atomic_numbers: Sequence[int],
    level: int = DEFAULT_LEVEL,
    *,
    prune: str | bool | None = True,
    radi_method: str = "treutler",
    becke_scheme: str = "becke",
    radii_adjust: str | None = "treutler",
) -> GridSpec:
    """Static grid description for atoms with these nuclear charges (see :class:`GridOptions`).

    Raises:
      ValueError: level not an integer 0..9, an unknown option value, or Z outside 1..86.
    """
    options = GridOptions(
        level=level, prune=prune, radi_method=radi_method, becke_scheme=becke_scheme, radii_adjust=radii_adjust
    )
    numbers = tuple(int(z) for z in np.asarray(atomic_numbers).reshape(-1))
    if not numbers:
        raise ValueError("no atoms: a grid needs at least one atomic number")
    for z in numbers:
        if not 1 <= z <= MAX_ATOMIC_NUMBER:
            raise ValueError(f"atomic number {z} not supported: expected 1..{MAX_ATOMIC_NUMBER} (H..Rn)")
    atom_grids = tuple(
        atomic_grid(z, options.level, radi_method=options.radi_method, prune=options.prune) for z in numbers
    )
    arrays = dict(
        size_adjustment=_size_adjustment(numbers, options.radii_adjust),
        atom_index=np.concatenate([np.full(len(g.weights), a) for a, g in enumerate(atom_grids)]),
        offsets=np.concatenate([g.offsets for g in atom_grids]),
        quadrature_weights=np.concatenate([g.weights for g in atom_grids]),
    )
    for array in arrays.values():
        if array is not None:
            array.flags.writeable = False
    return GridSpec(atomic_numbers=numbers, options=options, atom_grids=atom_grids, **arrays)


# ---------------------------------------------------------------------------------------------
# Differentiable part: pure jax.numpy in the nuclear coordinates.


def _safe_norm(vectors):
    """|v| over the last axis with a finite gradient at v = 0 (where it returns 0 and gradient 0)."""
    r2 = jnp.sum(vectors * vectors, axis=-1)
    nonzero = r2 > 0
    # d|v|/dv = v/|v| is 0/0 at v = 0 (a grid point on another nucleus, or |R_A - R_A|). Both
    # wheres are needed: the inner one keeps sqrt away from 0, otherwise the untaken branch still
    # sends NaN into the gradient.
    return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, r2, 1.0)), 0.0)


def _becke_switch(nu):
    # Becke (1988) eq. 19-21: three iterations of f(x) = x (3 - x^2) / 2, s = (1 - f3) / 2.
    f = nu
    for _ in range(3):
        f = (3.0 - f * f) * f * 0.5
    return 0.5 * (1.0 - f)


def _stratmann_switch(nu):
    # Stratmann-Scuseria-Frisch (1996) eq. 14, a = 0.64; s = (1 - g) / 2.
    a = 0.64
    m = nu / a
    m2 = m * m
    g = (1.0 / 16.0) * (m * (35.0 + m2 * (-35.0 + m2 * (21.0 - 5.0 * m2))))
    g = jnp.where(nu <= -a, -1.0, jnp.where(nu >= a, 1.0, g))
    return 0.5 * (1.0 - g)


_SWITCHES = {"becke": _becke_switch, "stratmann": _stratmann_switch}


@functools.partial(jax.jit, static_argnames="becke_scheme")
def becke_cell_products(points, coords, size_adjustment=None, becke_scheme: str = "becke", atom_mask=None):
    """Unnormalised Becke cell functions ``P_A(r) = prod_{B != A} s(nu_AB(r))``.

    Args:
      points: (n_points, 3) bohr.
      coords: (n_atoms, 3) nuclear positions, bohr.
      size_adjustment: (n_atoms, n_atoms) antisymmetric a_AB (NumPy or JAX), or None.
      becke_scheme: ``"becke"`` or ``"stratmann"``.
      atom_mask: (n_atoms,) 1 for real atoms, 0 for size-class padding (dummy) atoms, or None
        (all real). A dummy atom takes part as ``s_AB = 1``, so the real atoms' products are
        bitwise those without it; dummy atoms may coincide with real ones.

    Returns:
      (n_atoms, n_points) P_A(r_g); the partition is ``P_A / sum_B P_B`` over real B.

    Memory is O(n_atoms^2 n_points) (all pairs at once): fine for the small molecules dftjax
    differentiates through; a scan over atoms would be the way to larger ones.
    """
    switch = _SWITCHES[_choice("becke_scheme", becke_scheme, BECKE_SCHEMES)]
    points, coords = jnp.asarray(points), jnp.asarray(coords)
    n_atoms = coords.shape[0]
    if n_atoms == 1:
        return jnp.ones((1, points.shape[0]), dtype=points.dtype)
    distance = _safe_norm(points[None, :, :] - coords[:, None, :])  # (n_atoms, n_points)
    pair = ~np.eye(n_atoms, dtype=bool)
    if atom_mask is not None:
        real = jnp.asarray(atom_mask) > 0
        pair = pair & real[:, None] & real[None, :]
    # zero separation on the diagonal (and between a dummy atom and the real atom it sits on):
    # two wheres keep 1/separation out of the values and gradients of unused pairs
    separation = _safe_norm(coords[:, None, :] - coords[None, :, :])
    inverse_separation = jnp.where(pair, 1.0 / jnp.where(pair, separation, 1.0), 0.0)
    mu = (distance[:, None, :] - distance[None, :, :]) * inverse_separation[:, :, None]
    if size_adjustment is not None:
        mu = mu + jnp.asarray(size_adjustment)[:, :, None] * (1.0 - mu * mu)
    s = jnp.where(pair[:, :, None], switch(mu), 1.0)  # (A, B, n_points), s_AA = 1
    # An explicit running product (not jnp.prod): its gradient is plain chain rule, safe where some
    # s_AB is exactly 0, and it multiplies in PySCF's order (B ascending).
    product = s[:, 0, :]
    for b in range(1, n_atoms):
        product = product * s[:, b, :]
    return product


def becke_partition(
    points, coords, atomic_numbers, *, becke_scheme: str = "becke", radii_adjust: str | None = "treutler"
):
    """Becke's fuzzy-cell weights ``w_A(r) = P_A(r) / sum_B P_B(r)`` (sum to 1 over atoms).

    Args:
      points: (n_points, 3) bohr.
      coords: (n_atoms, 3) bohr.
      atomic_numbers: (n_atoms,) nuclear charges (for the atomic-size adjustment).

    Returns:
      (n_atoms, n_points) partition of unity; differentiable in ``points`` and ``coords``.
    """
    a = _size_adjustment([int(z) for z in np.asarray(atomic_numbers).reshape(-1)],
                         _choice("radii_adjust", radii_adjust, RADII_ADJUSTMENTS, optional=True))
    product = becke_cell_products(points, coords, a, becke_scheme=becke_scheme)
    return product / jnp.sum(product, axis=0, keepdims=True)


@functools.partial(jax.jit, static_argnums=0)
def grid_points_weights(spec: GridSpec, coords):
    """Grid points and weights of the molecule ``spec`` describes, at nuclear positions ``coords``.

    Pure ``jax.numpy``, jitted with ``spec`` static (one compilation per molecule and options):
    differentiable (``grad``, ``jacfwd``) and ``vmap``-able over geometries.

    Args:
      spec: from :func:`make_grid_spec`.
      coords: (n_atoms, 3) nuclear positions in bohr.

    Returns:
      points (n_points, 3) bohr and weights (n_points,) bohr^3, atom by atom.
    """
    coords = jnp.asarray(coords)
    if coords.shape != (spec.n_atoms, 3):
        raise ValueError(f"coords of shape {coords.shape} do not fit the grid: expected ({spec.n_atoms}, 3)")
    points = coords[spec.atom_index] + spec.offsets
    product = becke_cell_products(points, coords, spec.size_adjustment, becke_scheme=spec.options.becke_scheme)
    own = product[spec.atom_index, np.arange(spec.n_points)]
    # The owning atom is not always the nearest, but the nearest atom always has P > 0 (nu < 1 for
    # all its partners), so the denominator never vanishes.
    weights = spec.quadrature_weights * own * (1.0 / jnp.sum(product, axis=0))
    return points, weights


def make_grid(molecule, level: int = DEFAULT_LEVEL, **options) -> Grid:
    """dftjax's grid for ``molecule`` (``.atomic_numbers``, ``.coords`` in bohr), PySCF defaults.

    Args:
      molecule: a :class:`basis.molecule.Molecule` or anything with those two attributes.
      level: 0..9 as PySCF's ``Grids.level``.
      **options: ``prune``, ``radi_method``, ``becke_scheme``, ``radii_adjust`` (:class:`GridOptions`).

    Raises:
      ValueError: bad level, unknown option name or value.
    """
    _check_option_names(options)
    spec = make_grid_spec(molecule.atomic_numbers, level, **options)
    return Grid(*grid_points_weights(spec, jnp.asarray(molecule.coords)))


def pyscf_grid(
    molecule, level: int = DEFAULT_LEVEL, *, sort_grids: bool = True, alignment: int | None = None
) -> Grid:
    """PySCF's own grid, ``Grids(mol).build()`` with ``level`` (not differentiable).

    Args:
      molecule: a :class:`basis.molecule.Molecule`.
      level: 0..9.
      sort_grids: PySCF's spatial sorting of points (its default, True).
      alignment: pad with zero-weight points to a multiple of this; None keeps PySCF's 8.
    """
    from pyscf.dft import gen_grid

    level = _check_level(level)
    # Grids do not depend on the basis; one s function per element keeps Mole.build quiet for
    # every element (STO-3G stops at Xe).
    mol = molecule.to_pyscf(basis={s: [[0, [1.0, 1.0]]] for s in set(molecule.symbols)})
    grids = gen_grid.Grids(mol)
    grids.level = level
    if alignment is not None:
        grids.alignment = int(alignment)
    grids.build(with_non0tab=False, sort_grids=sort_grids)
    return Grid(jnp.asarray(grids.coords), jnp.asarray(grids.weights))
