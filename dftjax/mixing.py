"""Fock-matrix mixing strategies as (init, update) pairs, optax style.

A mixer takes the current Fock matrices and their commutator errors and returns the Fock matrices
to diagonalise. All state is a pytree of fixed shape, so a mixer runs inside ``lax.while_loop``.

* :func:`diis`: Pulay's direct inversion in the iterative subspace, the commutator form (CDIIS):
  P. Pulay, Chem. Phys. Lett. 73, 393 (1980); J. Comput. Chem. 3, 556 (1982). The extrapolated
  Fock matrix is ``sum_i c_i F_i`` with ``c`` minimising ``|sum_i c_i e_i|^2`` subject to
  ``sum_i c_i = 1``, where ``e_i = X^T (F_i D_i S - S D_i F_i) X`` is the orthogonalised
  commutator of iteration i.
* :func:`no_mixing`: the plain Roothaan step.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax.numpy as jnp


class Mixer(NamedTuple):
    """``init(fock) -> state``; ``update(state, fock, error) -> (fock_to_diagonalise, state)``."""

    init: Callable
    update: Callable


class DIISState(NamedTuple):
    focks: jnp.ndarray  # (space, *fock.shape) ring buffer of Fock matrices
    errors: jnp.ndarray  # (space, *fock.shape) matching commutator errors
    count: jnp.ndarray  # () int, number of entries pushed so far


def diis(space: int = 8, start: int = 1) -> Mixer:
    """CDIIS over the last ``space`` iterations, extrapolating once ``start`` entries exist.

    Args:
      space: number of stored Fock/error pairs (PySCF's ``diis_space``, default 8).
      start: first iteration count at which extrapolation is used (PySCF's ``diis_start_cycle``).
    """
    if space < 1:
        raise ValueError(f"diis space {space} must be at least 1")

    def init(fock):
        zeros = jnp.zeros((space,) + fock.shape, fock.dtype)
        return DIISState(zeros, zeros, jnp.zeros((), jnp.int32))

    def update(state, fock, error):
        slot = state.count % space
        focks = state.focks.at[slot].set(fock)
        errors = state.errors.at[slot].set(error)
        count = state.count + 1
        used = jnp.arange(space) < count
        flat = errors.reshape(space, -1)
        overlap = flat @ flat.T
        # Scale to the largest used diagonal: the raw errors shrink to 1e-8 near convergence and
        # would make the bordered matrix singular in float64.
        scale = jnp.max(jnp.where(used, jnp.diagonal(overlap), 0.0))
        scale = jnp.where(scale > 0, scale, 1.0)
        both = used[:, None] & used[None, :]
        b = jnp.where(both, overlap / scale, 0.0) + jnp.diag(jnp.where(used, 0.0, 1.0))
        ones = used.astype(fock.dtype)
        bordered = jnp.block([[b, -ones[:, None]], [-ones[None, :], jnp.zeros((1, 1), fock.dtype)]])
        rhs = jnp.concatenate([jnp.zeros(space, fock.dtype), -jnp.ones(1, fock.dtype)])
        coeffs = jnp.linalg.solve(bordered, rhs)[:space]
        extrapolated = jnp.tensordot(coeffs, focks, axes=1)
        ok = jnp.all(jnp.isfinite(extrapolated)) & (count >= start)
        return jnp.where(ok, extrapolated, fock), DIISState(focks, errors, count)

    return Mixer(init, update)


def no_mixing() -> Mixer:
    """Plain Roothaan iterations (diagonalise the current Fock matrix)."""

    def init(fock):
        return ()

    def update(state, fock, error):
        del error
        return fock, state

    return Mixer(init, update)
