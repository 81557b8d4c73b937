"""The 1D hard-wall box of the Snyder et al. benchmark: grid, derivatives, density features.

Densities live on the ``G`` points of ``uniform_grid(0, 1, G)`` *including* the walls, where they
vanish (G = 500 as in Snyder et al., PRL 108, 253002 (2012) and the papers that follow it); the
Schroedinger equation is solved on the ``G - 2`` interior points with hard walls one spacing
outside them (:func:`basis.oned.kinetic_matrix` with ``boundary="hard_wall"``).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from basis.oned import grid_spacing, integrate, kinetic_matrix, second_derivative_matrix, uniform_grid
from functionals.features import Features

Array = jnp.ndarray

#: Grid points of the benchmark box (walls included).
GRID_POINTS = 500
#: Order of the finite-difference stencils (kinetic operator and density gradient).
ACCURACY = 8

# Central first-derivative weights for offsets 1, 2, ... (antisymmetric), Fornberg,
# Math. Comp. 51, 699 (1988). (basis.oned has no first-derivative operator; the second-derivative
# stencils come from basis.oned.second_derivative_matrix.)
_FIRST_DERIVATIVE = {
    2: (0.0, 1.0 / 2.0),
    4: (0.0, 2.0 / 3.0, -1.0 / 12.0),
    6: (0.0, 3.0 / 4.0, -3.0 / 20.0, 1.0 / 60.0),
    8: (0.0, 4.0 / 5.0, -1.0 / 5.0, 4.0 / 105.0, -1.0 / 280.0),
}


def box_grid(n_points: int = GRID_POINTS, length: float = 1.0) -> Array:
    """(n_points,) uniform grid on [0, length] bohr, walls included."""
    return uniform_grid(0.0, length, n_points)


@functools.lru_cache(maxsize=8)
def _interior_kinetic(n_points: int, length: float, accuracy: int) -> np.ndarray:
    # built eagerly even when first needed inside a jit trace
    with jax.ensure_compile_time_eval():
        grid = np.linspace(0.0, length, n_points)
        return np.asarray(kinetic_matrix(jnp.asarray(grid[1:-1]), accuracy, boundary="hard_wall"))


def interior_kinetic_matrix(n_points: int = GRID_POINTS, length: float = 1.0,
                            accuracy: int = ACCURACY) -> Array:
    """(G-2, G-2) ``-1/2 d^2/dx^2`` (hartree) on the interior points, hard walls at 0 and length."""
    return jnp.asarray(_interior_kinetic(int(n_points), round(float(length), 10), int(accuracy)))


@functools.lru_cache(maxsize=16)
def _even_derivative(n_points: int, order: int, accuracy: int, parity: float = 1.0) -> np.ndarray:
    """(n, n) d^order/dx^order (dx = 1) on the interior points of a function even (parity 1) or
    odd (parity -1) about the walls, which sit one spacing outside the first and last points.

    Second derivative: :func:`basis.oned.second_derivative_matrix` with ``boundary="zero"`` is the
    stencil without ghost points, ``"hard_wall"`` adds the odd mirror images; the even reflection
    adds them with the other sign, ``M_even = M_zero + (M_zero - M_odd)``.
    """
    if order == 2:
        with jax.ensure_compile_time_eval():
            zero = np.asarray(second_derivative_matrix(n_points, 1.0, accuracy, boundary="zero"))
            odd = np.asarray(second_derivative_matrix(n_points, 1.0, accuracy, boundary="hard_wall"))
        return zero if parity == 0.0 else zero + parity * (zero - odd)
    if order != 1:
        raise ValueError(f"order must be 1 or 2; got {order!r}")
    if accuracy not in _FIRST_DERIVATIVE:
        raise ValueError(f"accuracy must be one of {sorted(_FIRST_DERIVATIVE)}; got {accuracy!r}")
    weights = _FIRST_DERIVATIVE[accuracy]
    matrix = np.zeros((n_points, n_points))
    for row in range(n_points):
        for offset, weight in enumerate(weights[1:], start=1):
            for sign, column in ((1.0, row + offset), (-1.0, row - offset)):
                if 0 <= column < n_points:
                    matrix[row, column] += sign * weight
                else:
                    # the wall sits at index -1 (and n) where the function is 0; beyond it the
                    # function is the mirror image (times parity), f(x_wall - s) = +-f(x_wall + s)
                    mirrored = -2 - column if column < 0 else 2 * n_points - column
                    if 0 <= mirrored < n_points:
                        matrix[row, mirrored] += parity * sign * weight
    return matrix


def _box_derivative(density: Array, dx: float, order: int, accuracy: int, parity: float = 1.0) -> Array:
    interior = density[..., 1:-1]
    matrix = jnp.asarray(_even_derivative(interior.shape[-1], order, accuracy, parity)) / dx**order
    derivative = interior @ matrix.T
    zero = jnp.zeros(density.shape[:-1] + (1,), density.dtype)
    return jnp.concatenate([zero, derivative, zero], axis=-1)


def density_gradient(density: Array, dx: float, accuracy: int = ACCURACY) -> Array:
    """(G,) dn/dx of a box density (G,) that vanishes at both walls (first and last points).

    A density in a hard-wall box is ``sum |psi|^2`` with every orbital odd about the wall, so it
    is even about the wall: the stencil reflects it there, which keeps the high order at the walls.
    The wall values are set to 0.
    """
    return _box_derivative(density, dx, 1, accuracy)


def amplitude_gradient(density: Array, dx: float, accuracy: int = ACCURACY) -> Array:
    """(G,) d sqrt(n)/dx of a box density (G,): sqrt(n) behaves like |psi|, odd about the walls
    (one orbital: exactly psi), so the stencil reflects it with a sign change. ``1/2 (d sqrt(n)/dx)^2``
    is the von Weizsaecker energy density, smooth where n -> 0 (unlike ``n'^2 / 8n``).

    Unlike the other box derivatives the wall values are computed too (an odd function has
    ``f'(wall) = 2 sum_k w_k f(k dx) / dx``): the integrand does not vanish there, so the
    trapezoid rule (:func:`trapezoid`) needs them.
    """
    amplitude = safe_sqrt(density)
    slope = _box_derivative(amplitude, dx, 1, accuracy, parity=-1.0)
    weights = jnp.asarray(_FIRST_DERIVATIVE[accuracy][1:])
    k = len(weights)
    left = 2.0 * jnp.sum(weights * amplitude[..., 1:k + 1], axis=-1) / dx
    right = -2.0 * jnp.sum(weights * amplitude[..., -2:-k - 2:-1], axis=-1) / dx
    return slope.at[..., 0].set(left).at[..., -1].set(right)


def trapezoid(values: Array, dx: float) -> Array:
    """Trapezoid rule over the box grid, walls included with weight 1/2. For integrands even
    about the walls (densities, kinetic energy densities) the error is spectrally small."""
    return (jnp.sum(values, axis=-1) - 0.5 * (values[..., 0] + values[..., -1])) * dx


def density_laplacian(density: Array, dx: float, accuracy: int = ACCURACY) -> Array:
    """(G,) d^2n/dx^2 of a box density (G,) (even reflection at the walls; wall values set to 0)."""
    return _box_derivative(density, dx, 2, accuracy)


def spinless_features(density: Array, dx: float, accuracy: int = ACCURACY) -> Features:
    """:class:`Features` of spinless fermions with box density (G,): ``rho = (n, 0)``, ``sigma =
    (n'^2, 0, 0)``, ``lapl = (n'', 0)``; with the spin scaling of :mod:`functionals.kinetic` this gives the spinless
    formulas (``pi^2 n^3 / 6`` for Thomas-Fermi)."""
    grad = density_gradient(density, dx, accuracy)
    lapl = density_laplacian(density, dx, accuracy)
    zeros = jnp.zeros_like(density)
    return Features(rho=jnp.stack([density, zeros]), sigma=jnp.stack([grad**2, zeros, zeros]),
                    tau=jnp.stack([zeros, zeros]), lapl=jnp.stack([lapl, zeros]))


def kinetic_energy(energy_density, params, density: Array, dx: float) -> Array:
    """``T[n] = sum_i t(x_i) dx`` (hartree) of a semilocal kinetic functional on a box density (G,)."""
    return integrate(energy_density(params, spinless_features(density, dx)), dx)


@functools.lru_cache(maxsize=8)
def _kinetic_eigensystem(n_points: int, length: float, accuracy: int):
    return np.linalg.eigh(_interior_kinetic(n_points, length, accuracy))


def kinetic_preconditioner(n_points: int = GRID_POINTS, length: float = 1.0, accuracy: int = ACCURACY,
                           shift: float = 10.0, power: float = -0.5) -> Array:
    """(G-2, G-2) ``(T + shift)^(-1/2)`` of the interior kinetic matrix (hartree^-1/2): the change
    of variables ``phi = P c`` that makes the kinetic Hessian of a sqrt-parametrised OF energy
    well conditioned (eigenvalues of T span 5 to 2e6 hartree on 500 points); ``power=0.5`` gives
    its inverse."""
    eigenvalues, vectors = _kinetic_eigensystem(int(n_points), round(float(length), 10), int(accuracy))
    return jnp.asarray((vectors * (eigenvalues + shift) ** power) @ vectors.T)


def safe_sqrt(density: Array) -> Array:
    """sqrt(n) with a finite (zero) gradient where n <= 0 (double where)."""
    positive = density > 0.0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, density, 1.0)), 0.0)


def von_weizsaecker_energy(density: Array, dx: float, accuracy: int = ACCURACY) -> Array:
    """() T_vW[n] = <sqrt n| -1/2 d^2/dx^2 |sqrt n> (hartree) with the box's finite-difference
    kinetic operator (:func:`interior_kinetic_matrix`).

    The same number as the Laplacian form of :func:`functionals.kinetic.von_weizsaecker_laplacian`
    for smooth densities, but *discretely* consistent with the Schroedinger equation on the grid:
    for N = 1 it is the exact kinetic energy of the grid eigenstate, and bounded below by the
    lowest eigenvalue of the operator for any density, so an OF minimisation cannot exploit
    stencil artefacts at the walls.
    """
    phi = safe_sqrt(density[1:-1])
    matrix = interior_kinetic_matrix(density.shape[-1], (density.shape[-1] - 1) * dx, accuracy)
    return phi @ (matrix @ phi) * dx


__all__ = ["amplitude_gradient", "kinetic_preconditioner", "safe_sqrt", "von_weizsaecker_energy", "GRID_POINTS", "ACCURACY", "box_grid", "interior_kinetic_matrix", "density_gradient", "density_laplacian",
           "spinless_features", "kinetic_energy", "grid_spacing"]
