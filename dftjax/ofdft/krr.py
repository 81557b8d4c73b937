"""Kernel ridge regression kinetic-energy functional (Snyder et al., PRL 108, 253002 (2012)).

    T^ML[n] = Tbar + sum_j alpha_j k(n, n_j),   k(n, n') = exp(-||n - n'||^2 / (2 sigma^2)),
    ||n - n'||^2 = integral (n - n')^2 dx,   alpha = (K + lambda I)^-1 (T - Tbar),

on the M training densities ``n_j`` (G points of the box grid), with the length scale ``sigma`` and
the regularisation ``lambda`` chosen by cross-validation (here leave-one-out, in closed form from
one eigendecomposition of K per sigma). The functional derivative
``dT/dn(x) = (dT/dn_i) / dx`` is ``jax.grad`` of :func:`predict`; it is accurate only *along* the
manifold of densities the model was trained on, hence the projection onto the local principal
components of the training densities (:func:`local_pca_basis`, Snyder et al.'s "nonlinear gradient
descent") that the OF solver applies for KRR models.

>>> from dftjax.ofdft import data1d
>>> train = data1d.generate(data1d.load_paper_potentials()[:20], 1)
>>> model = fit_cross_validated(train.densities, train.kinetic_energies, train.dx)
>>> abs(float(predict(model, train.densities[0])) - train.kinetic_energies[0]) < 1e-3
True
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dftjax import atomic

Array = jnp.ndarray


class KernelRidgeModel(NamedTuple):
    """A fitted KRR kinetic functional (a pytree: jit/grad through :func:`predict`).

    Attributes:
        densities: (M, G) training densities.
        weights: (M,) alpha.
        offset: () mean training kinetic energy Tbar (hartree).
        length_scale: () sigma (units of ||n|| = bohr^-1/2).
        regularization: () lambda.
        dx: () grid spacing (bohr).
    """

    densities: Array
    weights: Array
    offset: Array
    length_scale: Array
    regularization: Array
    dx: Array


def squared_distances(a: Array, b: Array, dx: float) -> Array:
    """(Ma, Mb) ``integral (a_i - b_j)^2 dx`` between density sets (Ma, G) and (Mb, G)."""
    sq = (jnp.sum(a**2, axis=1)[:, None] + jnp.sum(b**2, axis=1)[None, :] - 2.0 * a @ b.T) * dx
    return jnp.maximum(sq, 0.0)   # roundoff can make the expansion slightly negative


def fit(densities: Array, kinetic_energies: Array, dx: float, length_scale: float,
        regularization: float) -> KernelRidgeModel:
    """KRR weights for given hyperparameters (closed form)."""
    densities = jnp.asarray(densities)
    targets = jnp.asarray(kinetic_energies)
    offset = jnp.mean(targets)
    kernel = jnp.exp(-squared_distances(densities, densities, dx) / (2.0 * length_scale**2))
    weights = jnp.linalg.solve(kernel + regularization * jnp.eye(len(targets)), targets - offset)
    return KernelRidgeModel(densities, weights, offset, jnp.asarray(length_scale, jnp.float64),
                            jnp.asarray(regularization, jnp.float64), jnp.asarray(dx, jnp.float64))


def predict(model: KernelRidgeModel, density: Array) -> Array:
    """() T^ML[n] (hartree) of one density (G,); vmap for a batch, jax.grad for dT/dn_i."""
    distance2 = jnp.sum((model.densities - density[None, :]) ** 2, axis=1) * model.dx
    return model.offset + jnp.exp(-distance2 / (2.0 * model.length_scale**2)) @ model.weights


def functional_derivative(model: KernelRidgeModel, density: Array) -> Array:
    """(G,) dT/dn(x) = (d T / d n_i) / dx (hartree)."""
    return jax.grad(predict, argnums=1)(model, density) / model.dx


def leave_one_out_errors(densities: np.ndarray, kinetic_energies: np.ndarray, dx: float,
                         length_scales, regularizations) -> np.ndarray:
    """(n_sigma, n_lambda) leave-one-out mean absolute errors (hartree) of the KRR model.

    For ridge regression the held-out residual is ``alpha_i / [(K + lambda I)^-1]_ii`` (Rifkin &
    Lippert, MIT-CSAIL-TR-2007-025), so one eigendecomposition of K per sigma serves every lambda.
    The mean Tbar is taken over all M points (its LOO change is O(1/M) and ignored).
    """
    densities = np.asarray(densities)
    targets = np.asarray(kinetic_energies) - np.mean(kinetic_energies)
    sq = np.asarray(squared_distances(jnp.asarray(densities), jnp.asarray(densities), dx))
    errors = np.zeros((len(length_scales), len(regularizations)))
    for i, sigma in enumerate(length_scales):
        eigenvalues, vectors = np.linalg.eigh(np.exp(-sq / (2.0 * sigma**2)))
        projected = vectors.T @ targets
        for j, lam in enumerate(regularizations):
            inverse_eigs = 1.0 / (eigenvalues + lam)
            alpha = vectors @ (inverse_eigs * projected)
            h_diag = np.einsum("ij,j,ij->i", vectors, inverse_eigs, vectors)
            errors[i, j] = np.mean(np.abs(alpha / h_diag))
    return errors


def fit_cross_validated(densities, kinetic_energies, dx: float, length_scales=None,
                        regularizations=None) -> KernelRidgeModel:
    """KRR with (sigma, lambda) minimising the leave-one-out MAE on a logarithmic grid.

    Default grids: sigma from 0.05 to 20 times the median nearest-neighbour distance, lambda from
    1e-14 to 1e-2 (both 25 points, logarithmic).
    """
    densities = np.asarray(densities)
    if length_scales is None:
        sq = np.array(squared_distances(jnp.asarray(densities), jnp.asarray(densities), dx))
        np.fill_diagonal(sq, np.inf)
        scale = float(np.median(np.sqrt(sq.min(axis=1))))
        length_scales = scale * np.logspace(np.log10(0.05), np.log10(20.0), 25)
    if regularizations is None:
        regularizations = np.logspace(-14, -2, 25)
    errors = leave_one_out_errors(densities, kinetic_energies, dx, length_scales, regularizations)
    i, j = np.unravel_index(np.argmin(errors), errors.shape)
    return fit(densities, kinetic_energies, dx, float(length_scales[i]), float(regularizations[j]))


def local_pca_basis(training_densities: Array, density: Array, n_neighbours: int, n_components: int,
                    dx: float) -> Array:
    """(q, G) orthonormal (in the grid inner product sum(.)) principal directions of the
    ``n_neighbours`` training densities nearest to ``density``: the local tangent space of the
    density manifold (Snyder et al. 2012, "NLGD").

    Differences of densities with the same N integrate to zero, so steps in this space keep N.
    """
    distance2 = jnp.sum((training_densities - density[None, :]) ** 2, axis=1) * dx
    _, nearest = jax.lax.top_k(-distance2, n_neighbours)
    neighbours = training_densities[nearest]
    centred = neighbours - jnp.mean(neighbours, axis=0, keepdims=True)
    # principal directions from the small (m, m) Gram matrix rather than an SVD of (m, G)
    eigenvalues, vectors = jnp.linalg.eigh(centred @ centred.T)
    top_values = eigenvalues[::-1][:n_components]
    top_vectors = vectors[:, ::-1][:, :n_components]
    directions = top_vectors.T @ centred
    return directions / jnp.sqrt(jnp.maximum(top_values, 1e-300))[:, None]


def save(model: KernelRidgeModel, path, **metadata) -> None:
    """Write the model (and JSON-able metadata such as n_electrons) to an ``.npz`` file."""
    atomic.savez(path, kind="krr", **{k: np.asarray(v) for k, v in model._asdict().items()},
             **{f"meta_{k}": np.asarray(v) for k, v in metadata.items()})


def load(path) -> tuple[KernelRidgeModel, dict]:
    """(model, metadata) from :func:`save`'s file."""
    with np.load(path) as f:
        model = KernelRidgeModel(*(jnp.asarray(f[name]) for name in KernelRidgeModel._fields))
        metadata = {k[5:]: f[k].item() for k in f.files if k.startswith("meta_")}
    return model, metadata
