"""The 1D KSR data set (DMRG references of Li et al., PRL 126, 036401 (2021)) and the Kohn-Sham
problems built from it.

Folders of ``.npy`` arrays (../shared/data/ksr1d/README.md): one entry per geometry; energies are
electronic (no nuclear repulsion), grids uniform on [-20.48, 20.48] bohr with spacing 0.08.

A :class:`Problem` is one geometry ready for :mod:`dftjax.oned.ks`: for reflection-symmetric
molecules (every H2 of the set) the grid is cut to a window symmetric about the molecule's centre
(``half_width`` bohr each side, so the density there has decayed below ~1e-9) and the orbitals are
found per parity block (:func:`dftjax.oned.ks.make_discretization` with ``parity=True``).
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from dftjax.oned import ks

# The ions and the H2, H4, H2-H2, H2+ and H3 curves ship with the package (ksr1d_data/, Apache-2.0,
# see its LICENSE and README); DFTJAX_KSR1D_DATA points at a full copy of the data set instead.
DEFAULT_ROOT = os.environ.get("DFTJAX_KSR1D_DATA", os.path.join(os.path.dirname(__file__), "ksr1d_data"))

# distance x 100 (bohr) of the paper's test geometries (data README)
TEST_DISTANCES_X100 = {
    "h2": (40, 56, 72, 88, 104, 120, 136, 152, 184, 200, 216, 232, 248, 264, 280, 312, 328, 344, 360,
           376, 392, 408, 424, 456, 472, 488, 504, 520, 536, 568, 584, 600),
    "h4": (104, 120, 136, 152, 168, 200, 216, 232, 248, 280, 296, 312, 344, 360, 376, 392, 408, 424,
           440, 456, 472, 488, 520, 536, 552, 568, 584, 600),
    "h2_h2": tuple(range(16, 977, 32)),
}
H2_TRAIN_DISTANCES_X100 = (128, 384)
H2_VALIDATION_DISTANCES_X100 = (168, 440)  # in neither the training nor the test list


class Dataset(NamedTuple):
    """Geometries of one molecule along its curve (m geometries, a atoms, n grid points)."""

    name: str
    grid: np.ndarray             # (n,)
    distances_x100: np.ndarray   # (m,) int
    locations: np.ndarray        # (m, a) bohr
    charges: np.ndarray          # (m, a)
    num_electrons: int
    num_unpaired_electrons: int
    energies: np.ndarray         # (m,) electronic (hartree)
    densities: np.ndarray        # (m, n)

    def index(self, distance_x100: int) -> int:
        matches = np.flatnonzero(self.distances_x100 == distance_x100)
        if matches.size == 0:
            raise ValueError(f"{self.name}: no geometry at distance {distance_x100 / 100} bohr")
        return int(matches[0])


def load_dataset(name: str, root: str = DEFAULT_ROOT) -> Dataset:
    """Load ``molecules/<name>`` (e.g. ``"h2"``, ``"h4"``, ``"h2_plus"``) of the KSR data set."""
    folder = os.path.join(root, "molecules", name)
    if not os.path.isdir(folder):
        raise ValueError(f"no KSR data set {name!r} under {root}")
    load = lambda key: np.load(os.path.join(folder, f"{key}.npy"))  # noqa: E731
    num_electrons = np.unique(load("num_electrons"))
    unpaired = np.unique(load("num_unpaired_electrons"))
    if num_electrons.size != 1 or unpaired.size != 1:
        raise ValueError(f"{name}: electron numbers vary along the curve")
    return Dataset(name=name, grid=load("grids").astype(np.float64),
                   distances_x100=load("distances_x100").astype(int),
                   locations=load("locations").astype(np.float64),
                   charges=load("nuclear_charges").astype(np.float64),
                   num_electrons=int(num_electrons[0]), num_unpaired_electrons=int(unpaired[0]),
                   energies=load("total_energies").astype(np.float64),
                   densities=load("densities").astype(np.float64))


class Problem(NamedTuple):
    """One geometry as a Kohn-Sham problem.

    Attributes:
        system: :class:`dftjax.oned.ks.System` on the window grid.
        discretization: shared by every problem with the same window length.
        window: slice of the data grid the calculation uses.
        energy: () DMRG electronic energy (hartree).
        density: (n_window,) DMRG density on the window.
        distance: bond length (bohr).
    """

    system: ks.System
    discretization: ks.Discretization
    window: slice
    energy: float
    density: np.ndarray
    distance: float


@functools.lru_cache(maxsize=16)
def _discretization(x0: float, dx: float, n: int, accuracy: int, parity: bool) -> ks.Discretization:
    return ks.make_discretization(np.linspace(x0, x0 + dx * (n - 1), n), accuracy=accuracy, parity=parity)


def make_problem(dataset: Dataset, distance_x100: int, *, half_width: float = 12.0,
                 symmetric: bool = True, accuracy: int = 4) -> Problem:
    """The :class:`Problem` of one geometry (``symmetric``: window + parity blocks; otherwise the
    full grid)."""
    i = dataset.index(distance_x100)
    grid = dataset.grid
    if symmetric:
        window = ks.symmetric_window(grid, float(np.mean(dataset.locations[i])), half_width)
    else:
        window = slice(0, grid.size)
    sub = grid[window]
    # grids are built from (start, spacing, size) so that equal windows share one discretization
    discretization = _discretization(float(sub[0]), float(np.mean(np.diff(sub))), sub.size, accuracy,
                                     symmetric)
    system = ks.make_system(discretization.grid, dataset.charges[i], dataset.locations[i])
    return Problem(system=system, discretization=discretization, window=window,
                   energy=float(dataset.energies[i]), density=dataset.densities[i][window],
                   distance=distance_x100 / 100.0)


def stack_systems(problems) -> ks.System:
    """One :class:`ks.System` with a leading batch axis (problems of equal window length)."""
    return ks.System(*(jnp.stack(list(field)) for field in zip(*(p.system for p in problems))))
