"""The Snyder et al. 1D data set: spinless fermions in a hard-wall box with Gaussian wells.

Snyder, Rupp, Hansen, Mueller & Burke, "Finding density functionals with machine learning",
PRL 108, 253002 (2012): N = 1..4 non-interacting spinless fermions in the box [0, 1] bohr with

    v(x) = -sum_{k=1..3} a_k exp(-(x - b_k)^2 / (2 c_k^2)),
    a ~ U[1, 10] (hartree), b ~ U[0.4, 0.6], c ~ U[0.03, 0.1] (bohr),

exact densities, kinetic energies and functional derivatives from the finite-difference
Schroedinger equation on G = 500 points (walls included; :mod:`dftjax.ofdft.box`). The paper's 100
training potentials ship in ``data/snyder2012_potentials.txt`` (transcribed by
weichseltree/quantumflow, MIT; each triple there is depth, *width*, *centre*).

The functional derivative of the exact non-interacting kinetic energy at the ground-state density
follows from the Euler equation ``dT/dn(x) + v(x) = mu``; we store ``dT/dn = mu - v`` with ``mu``
the highest occupied eigenvalue (any constant is equivalent at fixed N).

>>> data = generate(load_paper_potentials()[:2], n_electrons=1)
>>> data.densities.shape, data.kinetic_energies.shape
((2, 500), (2,))
"""
from __future__ import annotations

import pathlib
from typing import NamedTuple

import numpy as np
import scipy.linalg

from dftjax.ofdft.box import ACCURACY, GRID_POINTS, box_grid, interior_kinetic_matrix

PAPER_POTENTIALS_FILE = pathlib.Path(__file__).parent / "data" / "snyder2012_potentials.txt"

#: Ranges of the well parameters (Snyder et al. 2012): depth a, centre b, width c.
DEPTH_RANGE = (1.0, 10.0)
CENTRE_RANGE = (0.4, 0.6)
WIDTH_RANGE = (0.03, 0.1)

HARTREE_TO_KCAL_PER_MOL = 627.509474


class BoxDataset(NamedTuple):
    """Exact ground states of ``M`` box systems with ``n_electrons`` spinless fermions (hartree, bohr).

    Attributes:
        wells: (M, 3, 3) rows (depth a, centre b, width c) of the three Gaussian wells.
        grid: (G,) points in [0, 1], walls included.
        potentials: (M, G) v(x).
        densities: (M, G) exact densities (0 at the walls), integrating to ``n_electrons``.
        kinetic_energies: (M,) exact non-interacting kinetic energies ``T_s``.
        energies: (M,) ground-state energies ``sum of occupied eigenvalues = T_s + int v n``.
        chemical_potentials: (M,) highest occupied eigenvalue ``mu``.
        kinetic_derivatives: (M, G) ``dT_s/dn = mu - v`` (0 at the walls).
        n_electrons: number of spinless fermions.
    """

    wells: np.ndarray
    grid: np.ndarray
    potentials: np.ndarray
    densities: np.ndarray
    kinetic_energies: np.ndarray
    energies: np.ndarray
    chemical_potentials: np.ndarray
    kinetic_derivatives: np.ndarray
    n_electrons: int

    def __len__(self) -> int:
        return len(self.kinetic_energies)

    def take(self, index) -> "BoxDataset":
        """The sub-dataset of the systems ``index`` (slice or integer array)."""
        fields = {k: (v if k in ("grid", "n_electrons") else v[index]) for k, v in self._asdict().items()}
        return BoxDataset(**fields)

    @property
    def dx(self) -> float:
        return float(self.grid[1] - self.grid[0])


def load_paper_potentials(path: str | pathlib.Path = PAPER_POTENTIALS_FILE) -> np.ndarray:
    """(100, 3, 3) the wells (a, b, c) of Snyder et al.'s 100 training potentials.

    The file's header says ``a b c`` but each triple is (depth, width, centre); we reorder to
    (depth a, centre b, width c).
    """
    table = np.loadtxt(path, skiprows=1)
    triples = table[:, 2:11].reshape(-1, 3, 3)       # (depth, width, centre)
    return triples[:, :, [0, 2, 1]]


def random_wells(n_systems: int, seed: int) -> np.ndarray:
    """(n_systems, 3, 3) wells (a, b, c) drawn from Snyder et al.'s uniform distribution."""
    rng = np.random.default_rng(seed)
    low = np.array([DEPTH_RANGE[0], CENTRE_RANGE[0], WIDTH_RANGE[0]])
    high = np.array([DEPTH_RANGE[1], CENTRE_RANGE[1], WIDTH_RANGE[1]])
    return rng.uniform(low, high, size=(n_systems, 3, 3))


def parse_wells(text: str) -> np.ndarray:
    """(k, 3) wells from ``"a,b,c;a,b,c;..."`` (depth, centre, width); ValueError on bad input."""
    try:
        wells = np.array([[float(x) for x in part.split(",")] for part in text.split(";") if part.strip()])
    except ValueError as err:
        raise ValueError(f"--potential must be 'a,b,c;a,b,c;...' numbers; got {text!r}") from err
    if wells.ndim != 2 or wells.shape[1] != 3 or len(wells) == 0:
        raise ValueError(f"--potential must be triples 'depth,centre,width' separated by ';'; got {text!r}")
    if np.any(wells[:, 2] <= 0) or not np.all(np.isfinite(wells)):
        raise ValueError(f"well widths must be positive and all values finite; got {text!r}")
    return wells


def potential(wells: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(..., G) ``v(x) = -sum_k a_k exp(-(x - b_k)^2 / (2 c_k^2))`` of wells (..., k, 3)."""
    wells = np.asarray(wells, dtype=np.float64)
    a, b, c = wells[..., 0:1], wells[..., 1:2], wells[..., 2:3]
    x = np.asarray(grid)[None, :]
    return -np.sum(a * np.exp(-((x - b) ** 2) / (2.0 * c**2)), axis=-2)


def solve_box(potentials: np.ndarray, n_electrons: int, n_points: int = GRID_POINTS,
              accuracy: int = ACCURACY, return_orbitals: bool = False):
    """Exact non-interacting ground states in the hard-wall box [0, 1].

    Args:
        potentials: (M, G) v on the box grid (walls included; the wall values are not used).
        n_electrons: spinless fermions per system.

    Returns:
        (eigenvalues (M, N), densities (M, G)) with densities normalised to N; with
        ``return_orbitals`` also orbitals (M, N, G) normalised to 1 (sum psi^2 dx = 1).
    """
    kinetic = np.asarray(interior_kinetic_matrix(n_points, 1.0, accuracy))
    half_band = accuracy // 2
    dx = 1.0 / (n_points - 1)
    # banded storage (upper form) of the kinetic matrix; the potential only changes the diagonal
    band = np.zeros((half_band + 1, n_points - 2))
    for k in range(half_band + 1):
        band[half_band - k, k:] = np.diagonal(kinetic, k)
    eigenvalues = np.zeros((len(potentials), n_electrons))
    densities = np.zeros((len(potentials), n_points))
    orbitals = np.zeros((len(potentials), n_electrons, n_points)) if return_orbitals else None
    for i, v in enumerate(np.asarray(potentials)):
        b = band.copy()
        b[half_band] += v[1:-1]
        w, u = scipy.linalg.eig_banded(b, lower=False, select="i", select_range=(0, n_electrons - 1))
        eigenvalues[i] = w
        densities[i, 1:-1] = np.sum(u**2, axis=1) / dx
        if return_orbitals:
            orbitals[i, :, 1:-1] = u.T / np.sqrt(dx)
    if return_orbitals:
        return eigenvalues, densities, orbitals
    return eigenvalues, densities


def generate(wells: np.ndarray, n_electrons: int, n_points: int = GRID_POINTS,
             accuracy: int = ACCURACY) -> BoxDataset:
    """The exact :class:`BoxDataset` of the potentials given by ``wells`` (M, k, 3)."""
    if n_electrons < 1:
        raise ValueError(f"n_electrons must be >= 1; got {n_electrons}")
    grid = np.asarray(box_grid(n_points))
    dx = grid[1] - grid[0]
    potentials = potential(wells, grid)
    eigenvalues, densities = solve_box(potentials, n_electrons, n_points, accuracy)
    energies = eigenvalues.sum(axis=1)
    kinetic = energies - np.sum(potentials * densities, axis=1) * dx
    mu = eigenvalues[:, -1]
    derivatives = mu[:, None] - potentials
    derivatives[:, [0, -1]] = 0.0
    return BoxDataset(wells=np.asarray(wells), grid=grid, potentials=potentials, densities=densities,
                      kinetic_energies=kinetic, energies=energies, chemical_potentials=mu,
                      kinetic_derivatives=derivatives, n_electrons=int(n_electrons))


def paper_training_set(n_electrons: int, n_points: int = GRID_POINTS) -> BoxDataset:
    """The 100 training systems of Snyder et al. (2012) with ``n_electrons`` fermions."""
    return generate(load_paper_potentials(), n_electrons, n_points)


def random_set(n_systems: int, n_electrons: int, seed: int, n_points: int = GRID_POINTS) -> BoxDataset:
    """``n_systems`` fresh random systems (Snyder et al.'s distribution, numpy seed ``seed``)."""
    return generate(random_wells(n_systems, seed), n_electrons, n_points)
