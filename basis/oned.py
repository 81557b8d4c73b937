"""Uniform one-dimensional grids: finite-difference kinetic operator and model interactions.

The 1D pieces shared by the 1D Kohn-Sham solver (KSR, Li et al., PRL 126, 036401 (2021)) and the
1D orbital-free benchmarks (Snyder et al., PRL 108, 253002 (2012)). Atomic units (bohr, hartree).

Wavefunctions live on the ``n`` interior points of a uniform grid and vanish outside it (Dirichlet
boundaries): a hard-wall box, or a box large enough that the wavefunction has decayed.

>>> import jax.numpy as jnp
>>> x = uniform_grid(-10.0, 10.0, 201)
>>> t = kinetic_matrix(x, accuracy=4)          # (201, 201), -1/2 d^2/dx^2
>>> v = 0.5 * x**2                             # harmonic oscillator: E_0 = 0.5
>>> round(float(jnp.linalg.eigvalsh(t + jnp.diag(v))[0]), 4)
0.5
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

Array = jnp.ndarray

# Central finite-difference weights of d^2/dx^2 (Fornberg, Math. Comp. 51, 699 (1988)),
# for the stencil offsets 0, 1, 2, ... (symmetric), keyed by the order of accuracy.
SECOND_DERIVATIVE_WEIGHTS = {
    2: (-2.0, 1.0),
    4: (-5.0 / 2.0, 4.0 / 3.0, -1.0 / 12.0),
    6: (-49.0 / 18.0, 3.0 / 2.0, -3.0 / 20.0, 1.0 / 90.0),
    8: (-205.0 / 72.0, 8.0 / 5.0, -1.0 / 5.0, 8.0 / 315.0, -1.0 / 560.0),
}

# Exponential Coulomb interaction of the 1D model molecules (Baker et al., PRB 91, 235141 (2015)),
# the constants of the KSR data set (../shared/data/ksr1d/README.md).
EXPONENTIAL_COULOMB_AMPLITUDE = 1.071295
EXPONENTIAL_COULOMB_KAPPA = 1.0 / 2.385345


def uniform_grid(x_min: float, x_max: float, n_points: int) -> Array:
    """(n_points,) equally spaced points from x_min to x_max inclusive (bohr)."""
    if not (math.isfinite(x_min) and math.isfinite(x_max)) or x_max <= x_min:
        raise ValueError(f"grid bounds must be finite with x_min < x_max; got [{x_min}, {x_max}]")
    if int(n_points) != n_points or n_points < 3:
        raise ValueError(f"n_points must be an integer >= 3; got {n_points!r}")
    return jnp.linspace(x_min, x_max, int(n_points))


def grid_spacing(grid: Array) -> float:
    """The spacing (bohr) of a uniform grid; ValueError if the grid is not uniform."""
    grid = np.asarray(grid)
    if grid.ndim != 1 or grid.size < 3:
        raise ValueError(f"grid must be a 1D array of at least 3 points; got shape {grid.shape}")
    steps = np.diff(grid)
    dx = float(steps.mean())
    if dx <= 0 or np.max(np.abs(steps - dx)) > 1e-4 * dx:  # float32 grids are uniform to ~1e-6
        raise ValueError("grid must be uniform and increasing")
    return dx


def second_derivative_matrix(n_points: int, dx: float, accuracy: int = 4, boundary: str = "zero") -> Array:
    """(n, n) central finite-difference d^2/dx^2 on ``n`` interior points of a uniform grid.

    Args:
        n_points: number of interior grid points.
        dx: grid spacing (bohr).
        accuracy: order of the truncation error, O(dx^accuracy); one of 2, 4, 6, 8.
        boundary: ``"zero"``: the function vanishes at and beyond the points next to the grid (an
            open system in a box large enough for it to have decayed); ``"hard_wall"``: infinite walls
            one spacing outside the first and last points, where the function changes sign by odd
            reflection (psi(x_wall - s) = -psi(x_wall + s)), which keeps the high-order stencils
            accurate next to the walls.
    """
    if accuracy not in SECOND_DERIVATIVE_WEIGHTS:
        raise ValueError(f"accuracy must be one of {sorted(SECOND_DERIVATIVE_WEIGHTS)}; got {accuracy!r}")
    if boundary not in ("zero", "hard_wall"):
        raise ValueError(f"boundary must be 'zero' or 'hard_wall'; got {boundary!r}")
    if not dx > 0:
        raise ValueError(f"dx must be positive; got {dx!r}")
    weights = SECOND_DERIVATIVE_WEIGHTS[accuracy]
    matrix = np.zeros((n_points, n_points))
    for row in range(n_points):
        for offset, weight in enumerate(weights):
            for column in {row - offset, row + offset}:
                if 0 <= column < n_points:
                    matrix[row, column] += weight
                elif boundary == "hard_wall":
                    # ghost points: the wall sits at index -1 (and n); index -1 - k mirrors to k - 1
                    mirrored = -2 - column if column < 0 else 2 * n_points - column
                    if 0 <= mirrored < n_points:
                        matrix[row, mirrored] -= weight
    return jnp.asarray(matrix / dx**2)


def kinetic_matrix(grid: Array, accuracy: int = 4, boundary: str = "zero") -> Array:
    """(n, n) kinetic-energy operator -1/2 d^2/dx^2 (hartree) on a uniform grid (see
    :func:`second_derivative_matrix` for ``accuracy`` and ``boundary``)."""
    return -0.5 * second_derivative_matrix(len(grid), grid_spacing(grid), accuracy, boundary)


def integrate(values: Array, dx: float, axis: int = -1) -> Array:
    """Rectangle-rule integral ``sum(values) * dx`` (exact for functions vanishing at the ends)."""
    return jnp.sum(values, axis=axis) * dx


def exponential_coulomb(distance: Array, amplitude: float = EXPONENTIAL_COULOMB_AMPLITUDE,
                        kappa: float = EXPONENTIAL_COULOMB_KAPPA) -> Array:
    """``A exp(-kappa |x|)``: the 1D exponential Coulomb interaction (Baker et al., PRB 91, 235141 (2015))."""
    return amplitude * jnp.exp(-kappa * jnp.abs(distance))


def soft_coulomb(distance: Array, softening: float = 1.0) -> Array:
    """``1 / sqrt(x^2 + a^2)``: the soft-Coulomb interaction (Eberly, Su & Javanainen, PRL 62, 881 (1989))."""
    return 1.0 / jnp.sqrt(distance**2 + softening**2)


def interaction_matrix(grid: Array, interaction=exponential_coulomb) -> Array:
    """(n, n) ``v(x_i - x_j)`` for a pair interaction ``v``."""
    return interaction(grid[:, None] - grid[None, :])


def hartree_potential(density: Array, grid: Array, interaction=exponential_coulomb) -> Array:
    """(n,) ``v_H(x) = integral n(x') v(x - x') dx'`` (hartree) of a density (n,) on a uniform grid."""
    return interaction_matrix(grid, interaction) @ density * grid_spacing(grid)


def external_potential(grid: Array, charges: Array, locations: Array,
                       interaction=exponential_coulomb) -> Array:
    """(n,) ``-sum_j Z_j v(x - X_j)`` (hartree): nuclei of charges (n_atoms,) at locations (n_atoms,) bohr."""
    charges = jnp.asarray(charges)
    locations = jnp.asarray(locations)
    return -jnp.sum(charges[:, None] * interaction(grid[None, :] - locations[:, None]), axis=0)


def nuclear_repulsion(charges: Array, locations: Array, interaction=exponential_coulomb) -> Array:
    """``sum_{i<j} Z_i Z_j v(X_i - X_j)`` (hartree)."""
    charges = jnp.asarray(charges)
    locations = jnp.asarray(locations)
    pair = charges[:, None] * charges[None, :] * interaction(locations[:, None] - locations[None, :])
    return 0.5 * (jnp.sum(pair) - jnp.sum(jnp.diagonal(pair)))
