"""Orbital-free DFT solver: direct minimisation of E[n] = T[n] + integral v n at fixed N (1D box).

Two minimisers:

* :func:`minimize_sqrt`: the square-root parametrisation ``n = N phi^2 / integral phi^2`` (phi on
  the interior points, unconstrained; n >= 0 and integral n = N by construction; Levy, Perdew &
  Sahni, PRA 30, 2745 (1984)), minimised with optax's L-BFGS (zoom line search). For any
  functional smooth off the data manifold (TF, vW, TF + lambda vW, neural functionals trained on
  derivatives).
* :func:`minimize_projected`: Snyder et al.'s nonlinear gradient descent for KRR functionals
  (PRL 108, 253002 (2012)), ``n <- n - eps P(n) dE/dn`` with ``P(n)`` the projector onto the local
  principal components of the training densities nearest to ``n`` (the functional derivative of a
  KRR model is meaningless off the manifold, its projection onto the manifold's tangent is not).

Both are pure JAX (``lax.while_loop``/``fori_loop``), ``jit``-able and ``vmap``-able over
potentials. ``kinetic(density) -> ()`` is any kinetic energy functional of a box density (G,),
e.g. ``functools.partial(box.kinetic_energy, kinetic.von_weizsaecker_laplacian, None, dx=dx)`` or
``functools.partial(krr.predict, model)``.
"""
from __future__ import annotations

import functools

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from basis.oned import SECOND_DERIVATIVE_WEIGHTS, integrate
from dftjax.ofdft import box
from dftjax.ofdft.krr import local_pca_basis

Array = jnp.ndarray
KineticFunctional = Callable[[Array], Array]


class OFResult(NamedTuple):
    """An OF-DFT ground state (hartree, bohr).

    Attributes:
        density: (G,) the minimising density (0 at the walls).
        energy: () E[n] = T[n] + integral v n.
        kinetic_energy: () T[n].
        iterations: () steps taken.
        gradient_norm: () final norm of the (projected) energy gradient (hartree).
    """

    density: Array
    energy: Array
    kinetic_energy: Array
    iterations: Array
    gradient_norm: Array


def _pad(interior: Array) -> Array:
    return jnp.pad(interior, (1, 1))


def density_from_sqrt(phi: Array, n_electrons: float, dx: float) -> Array:
    """(G,) ``N phi^2 / integral phi^2`` of interior amplitudes phi (G-2,), zero at the walls."""
    squared = phi**2
    return _pad(n_electrons * squared / (jnp.sum(squared) * dx))


def energy(kinetic: KineticFunctional, potential: Array, density: Array, dx: float) -> Array:
    """() E[n] = T[n] + sum v n dx (hartree)."""
    return kinetic(density) + integrate(potential * density, dx)


def minimize_sqrt(kinetic: KineticFunctional, potential: Array, initial_density: Array,
                  n_electrons: float, dx: float, max_iterations: int = 500,
                  tolerance: float = 1e-9, memory_size: int = 20,
                  preconditioner: tuple[Array, Array] | None = None) -> OFResult:
    """Minimise E[n] over n = N phi^2 / integral phi^2 with optax L-BFGS.

    Args:
        kinetic: T[n] of a box density (G,).
        potential: (G,) v (the wall values are not used).
        initial_density: (G,) start (positive inside the box).
        n_electrons: N.
        dx: grid spacing.
        max_iterations: L-BFGS steps at most.
        tolerance: stop when the gradient norm w.r.t. the variables (phi, or c) is below this.
        memory_size: L-BFGS history.
        preconditioner: ``(P, P^-1)``, (G-2, G-2) matrices or functions of a (G-2,) vector; the
            minimisation runs over c with phi = P c (:func:`default_preconditioner`: 100x fewer
            steps than phi itself; :func:`sine_preconditioner`: the same without the dense
            setup); None for phi.
    """
    if preconditioner is None:
        preconditioner = (lambda c: c, lambda c: c)
    preconditioner, inverse = (p if callable(p) else functools.partial(jnp.matmul, p) for p in preconditioner)

    def objective(c):
        return energy(kinetic, potential, density_from_sqrt(preconditioner(c), n_electrons, dx), dx)

    phi0 = jnp.sqrt(jnp.maximum(initial_density[1:-1], 1e-12))
    # phi is scale free; normalise so that sum(phi^2) dx = N (keeps the line search well scaled)
    phi0 = phi0 * jnp.sqrt(n_electrons / (jnp.sum(phi0**2) * dx))
    c, grad_norm, iterations = minimize_lbfgs(objective, inverse(phi0), max_iterations, tolerance,
                                              memory_size)
    density = density_from_sqrt(preconditioner(c), n_electrons, dx)
    t = kinetic(density)
    return OFResult(density, t + jnp.sum(potential * density) * dx, t, iterations, grad_norm)


def minimize_lbfgs(objective: Callable[[Array], Array], x0: Array, max_iterations: int = 500,
                   tolerance: float = 1e-9, memory_size: int = 20) -> tuple[Array, Array, Array]:
    """Minimise a smooth scalar ``objective(x)`` with optax L-BFGS (zoom line search) in a
    ``lax.while_loop``; shared by the 1D box and the molecular (3D) OF solvers.

    Returns:
        (x, gradient norm at the last evaluated step, iterations); stops when the gradient norm
        is below ``tolerance`` or after ``max_iterations`` steps.
    """
    optimizer = optax.lbfgs(memory_size=memory_size)
    value_and_grad = optax.value_and_grad_from_state(objective)

    def step(carry):
        x, state, _, iteration = carry
        value, grad = value_and_grad(x, state=state)
        updates, state = optimizer.update(grad, state, x, value=value, grad=grad, value_fn=objective)
        return optax.apply_updates(x, updates), state, jnp.sqrt(jnp.sum(grad**2)), iteration + 1

    def not_converged(carry):
        _, _, grad_norm, iteration = carry
        return (iteration < max_iterations) & (grad_norm > tolerance)

    init = (x0, optimizer.init(x0), jnp.asarray(jnp.inf, x0.dtype), jnp.asarray(0))
    x, _, grad_norm, iterations = jax.lax.while_loop(not_converged, step, init)
    return x, grad_norm, iterations


def default_preconditioner(n_points: int, shift: float = 10.0) -> tuple[Array, Array]:
    """``((T + shift)^-1/2, (T + shift)^1/2)`` of the box's kinetic matrix, for :func:`minimize_sqrt`."""
    return (box.kinetic_preconditioner(n_points, shift=shift),
            box.kinetic_preconditioner(n_points, shift=shift, power=0.5))


def dst1(x: Array) -> Array:
    """Orthonormal type-I discrete sine transform of (n,) (its own inverse), through one FFT of the
    odd extension [0, x, 0, -reversed(x)] of length 2 (n + 1)."""
    n = x.shape[-1]
    zero = jnp.zeros(1, x.dtype)
    extended = jnp.concatenate([zero, x, zero, -x[::-1]])
    return -0.5 * jnp.imag(jnp.fft.rfft(extended)[1:n + 1]) * jnp.sqrt(2.0 / (n + 1))


def sine_kinetic_eigenvalues(n_interior: int, dx: float) -> Array:
    """(n,) eigenvalues (hartree) of the box's kinetic matrix, whose eigenvectors are the sine modes.

    The hard-wall operator (:func:`basis.oned.kinetic_matrix`, 8th order, odd images of phi beyond
    the walls) is Toeplitz minus Hankel, which the type-I sine transform diagonalises exactly
    (:func:`dst1`); the eigenvalue of mode k is the stencil's symbol
    ``-1/(2 dx^2) (c_0 + 2 sum_m c_m cos(m theta_k))``, ``theta_k = pi k / (n + 1)``.
    """
    weights = SECOND_DERIVATIVE_WEIGHTS[8]
    theta = np.pi * np.arange(1, n_interior + 1) / (n_interior + 1)
    symbol = weights[0] + 2.0 * sum(c * np.cos(m * theta) for m, c in enumerate(weights) if m > 0)
    return jnp.asarray(-0.5 * symbol / float(dx) ** 2)


def sine_preconditioner(n_interior: int, dx: float, shift: float = 10.0) -> tuple[Callable, Callable]:
    """``(P, P^-1)`` as functions of an (n,) vector, ``P = (T + shift)^(-1/2)``: the same operator as
    :func:`default_preconditioner`, applied in the sine basis (:func:`sine_kinetic_eigenvalues`):
    O(G log G) per application and no O(G^3) eigendecomposition of T to set it up."""
    scale = (sine_kinetic_eigenvalues(n_interior, dx) + shift) ** -0.5

    def apply(c):
        return dst1(dst1(c) * scale)

    def apply_inverse(phi):
        return dst1(dst1(phi) / scale)

    return apply, apply_inverse


def minimize_projected(kinetic: KineticFunctional, potential: Array, initial_density: Array,
                       training_densities: Array, dx: float, n_neighbours: int = 30,
                       n_components: int = 4, step_size: float = 0.02,
                       iterations: int = 300, max_distance: float | None = None) -> OFResult:
    """Snyder et al.'s projected gradient descent on the KRR density manifold.

    ``n <- n - eps U^T U dE/dn`` with ``U`` (q, G) the local PCA basis of the ``n_neighbours``
    training densities nearest to n (:func:`~dftjax.ofdft.krr.local_pca_basis`); every direction in U
    integrates to zero, so N is conserved. ``dE/dn`` is the functional derivative
    ``(dT/dn_i)/dx + v``.

    Args:
        step_size: eps (bohr^... : density per hartree per point).
        iterations: fixed number of steps.
        max_distance: a step that would take n farther than this (``||n - n_j||``, bohr^-1/2)
            from every training density is rejected and the descent stops there: off the
            manifold a KRR model tends to Tbar and E[n] to minus infinity (measured at M = 100,
            1000 test systems, without it: self-consistent MAE 27 kcal/mol from a few diverging
            systems, max 2.7e4). None: no check.
    """
    def gradient(density):
        return jax.grad(lambda n: energy(kinetic, potential, n, dx))(density) / dx

    def step(_, carry):
        density, _ = carry
        basis = local_pca_basis(training_densities, density, n_neighbours, n_components, dx)
        projected = basis.T @ (basis @ gradient(density))
        new = density - step_size * projected
        if max_distance is not None:
            nearest = jnp.min(jnp.sum((training_densities - new[None, :]) ** 2, axis=1)) * dx
            new = jnp.where(nearest <= max_distance**2, new, density)
        return new, jnp.sqrt(jnp.sum(projected**2) * dx)

    density, grad_norm = jax.lax.fori_loop(
        0, iterations, step, (initial_density, jnp.asarray(jnp.inf, initial_density.dtype)))
    t = kinetic(density)
    return OFResult(density, t + jnp.sum(potential * density) * dx, t, jnp.asarray(iterations), grad_norm)


def lowest_energy_density(kinetic: KineticFunctional, potential: Array, candidates: Array,
                          dx: float) -> Array:
    """(G,) the candidate density (e.g. a training density) with the lowest E[n]: a start for the
    minimisers that is already on the data manifold."""
    energies = jax.vmap(lambda n: energy(kinetic, potential, n, dx))(candidates)
    return candidates[jnp.argmin(energies)]
