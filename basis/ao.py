"""Atomic-orbital values and their derivatives on points, in pure JAX, in PySCF's order.

An AO is a fixed combination (``basis.transform(l)``) of the cartesian components of a contracted
shell on atom A (see :mod:`basis.gto`),

    phi_{ijk}(r) = x^i y^j z^k sum_p c_p exp(-a_p r^2),    (x, y, z) = r - A.

Each primitive factorises into three one-dimensional Gaussians, so a derivative of order
(n_x, n_y, n_z) is a product of one-dimensional derivatives. With the recurrence

    d/dx [x^q (-2a)^K exp(-a x^2)] = q x^{q-1} (-2a)^K exp(-a x^2) + x^{q+1} (-2a)^{K+1} exp(-a x^2),

every derivative of every component is a short, static sum of terms ``coef * x^p y^q z^s *
(-2a_p)^K exp(-a_p r^2)`` with ``K <= n_x + n_y + n_z``. The exponent enters only through
(-2a)^K, so the primitives are contracted *first*, into the radial factors

    R_K(r^2) = sum_p c_p (-2 a_p)^K exp(-a_p r^2),    K = 0 .. deriv,

and the whole derivative table of a shell group is one small matrix product: the products
``R_K * monomial`` (a handful per shell) times a static matrix that already holds the recurrence
coefficients and the cartesian -> spherical transform. Nothing is screened: functions far from
their centre underflow to zero.

Derivative components follow PySCF's ``eval_gto("GTOval_sph_deriv<n>")``: order 0 (the value),
then for each order 1..n the cartesian exponents of that order in :func:`basis.gto.cartesian_powers`
order: ``x, y, z``; ``xx, xy, xz, yy, yz, zz``; ``xxx, xxy, xxz, xyy, xyz, xzz, yyy, yyz, yzz, zzz``.

The nuclear positions ``coords`` are an ordinary (traced) argument, so ``jax.grad``/``jacfwd``
with respect to them and ``vmap`` over geometries work; the basis is a pytree whose static
structure fixes the compiled program, so a jitted caller compiles once per basis structure.

>>> import jax, numpy as np
>>> from basis.molecule import make_molecule
>>> from basis.gto import make_basis
>>> mol = make_molecule("O 0 0 0; H 0 0.757 0.587; H 0 -0.757 0.587")
>>> basis = make_basis(mol, "def2-svp")
>>> ao = jax.jit(ao_values, static_argnames="deriv")(basis, mol.coords, np.zeros((5, 3)), deriv=1)
>>> ao.shape
(4, 5, 24)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from basis.gto import Basis, cartesian_powers, n_cartesian

_HIGHEST = jax.lax.Precision.HIGHEST


def n_components(deriv: int) -> int:
    """Number of derivative components up to order ``deriv``: (deriv+1)(deriv+2)(deriv+3)/6."""
    return (deriv + 1) * (deriv + 2) * (deriv + 3) // 6


def derivative_orders(deriv: int) -> np.ndarray:
    """(n_components(deriv), 3) derivative orders (n_x, n_y, n_z) of each component, PySCF's order."""
    return np.concatenate([cartesian_powers(n) for n in range(deriv + 1)], axis=0)


def _derivative_1d(power: int, order: int) -> dict[tuple[int, int], float]:
    """d^order/dx^order [x^power exp(-a x^2)] as {(q, K): coef} for sum coef x^q (-2a)^K exp(-a x^2)."""
    terms = {(power, 0): 1.0}
    for _ in range(order):
        new: dict[tuple[int, int], float] = {}
        for (q, k), coef in terms.items():
            if q > 0:
                new[(q - 1, k)] = new.get((q - 1, k), 0.0) + coef * q
            new[(q + 1, k + 1)] = new.get((q + 1, k + 1), 0.0) + coef
        terms = new
    return terms


@functools.lru_cache(maxsize=None)
def _derivative_table(l: int, deriv: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Static recurrence table of the cartesian components of one angular momentum.

    Returns:
      radial_order: (Q,) int, the K of each term R_K x^p y^q z^s that occurs.
      monomial: (Q, 3) int, its exponents (p, q, s).
      coefficient: (Q, n_components(deriv), n_cartesian(l)) float64 such that derivative d of
        cartesian component c is ``sum_t coefficient[t, d, c] R_{K_t} x^{p_t} y^{q_t} z^{s_t}``.
    """
    orders = derivative_orders(deriv)
    table: dict[tuple[int, int, int, int], np.ndarray] = {}
    for d, (nx, ny, nz) in enumerate(orders):
        for c, (i, j, k) in enumerate(cartesian_powers(l)):
            for (px, kx), cx in _derivative_1d(int(i), int(nx)).items():
                for (py, ky), cy in _derivative_1d(int(j), int(ny)).items():
                    for (pz, kz), cz in _derivative_1d(int(k), int(nz)).items():
                        key = (kx + ky + kz, px, py, pz)
                        if key not in table:
                            table[key] = np.zeros((len(orders), n_cartesian(l)))
                        table[key][d, c] += cx * cy * cz
    keys = sorted(table)
    radial_order = np.array([key[0] for key in keys], dtype=np.int64)
    monomial = np.array([key[1:] for key in keys], dtype=np.int64).reshape(-1, 3)
    return radial_order, monomial, np.stack([table[key] for key in keys])


def _assembly(basis: Basis) -> tuple[list[tuple[int, int, np.ndarray]], np.ndarray | None]:
    """Shell groups and the static column permutation from concatenated group blocks to PySCF order."""
    groups = basis.shell_groups()
    columns = np.concatenate([basis.ao_indices(shells).ravel() for _, _, shells in groups])
    if np.array_equal(columns, np.arange(columns.size)):
        return groups, None
    return groups, np.argsort(columns)


def _group_values(l, nprim, shells, basis: Basis, coords, points, deriv: int):
    """(n_components, n_points, n_shells_in_group * n_functions) AO block of one shell group."""
    radial_order, monomial, coefficient = _derivative_table(l, deriv)
    n_comp, n_func = n_components(deriv), basis.n_functions(l)
    # Fold the cartesian -> AO transform into the table: (Q, D, C) @ (C, F) -> (Q, D * F).
    matrix = (coefficient @ basis.transform(l)).reshape(len(radial_order), n_comp * n_func)
    exponents = jnp.asarray(basis.exponents)[shells, :nprim]  # (S, n)
    coefficients = jnp.asarray(basis.coefficients)[shells, :nprim]  # (S, n)
    centres = coords[np.asarray(basis.shell_atom, dtype=np.int64)[shells]]  # (S, 3)

    rel = points[:, None, :] - centres[None, :, :]  # (P, S, 3)
    r2 = jnp.sum(rel * rel, axis=-1)  # (P, S)
    gaussians = jnp.exp(-r2[:, :, None] * exponents[None, :, :])  # (P, S, n)
    # weights[s, n, K] = c_n (-2 a_n)^K; radial[p, s, K] = R_K(r_ps^2)
    n_radial = int(radial_order.max()) + 1
    weights = jnp.stack([coefficients * (-2.0 * exponents) ** k for k in range(n_radial)], axis=-1)
    radial = jnp.einsum("psn,snk->psk", gaussians, weights, precision=_HIGHEST)  # (P, S, K)

    # Powers x^0 .. x^max of each cartesian coordinate, by repeated products (no pow of negatives).
    max_power = int(monomial.max()) if monomial.size else 0
    power = [jnp.ones_like(rel)]
    for _ in range(max_power):
        power.append(power[-1] * rel)
    power = jnp.stack(power, axis=-1)  # (P, S, 3, max_power + 1)
    terms = radial[:, :, radial_order]  # (P, S, Q)
    for axis in range(3):
        if monomial[:, axis].any():
            terms = terms * power[:, :, axis, monomial[:, axis]]

    block = jnp.matmul(terms, jnp.asarray(matrix, dtype=terms.dtype), precision=_HIGHEST)  # (P, S, D*F)
    n_points, n_shells = block.shape[:2]
    block = block.reshape(n_points, n_shells, n_comp, n_func)
    return jnp.transpose(block, (2, 0, 1, 3)).reshape(n_comp, n_points, n_shells * n_func)


def ao_values(basis: Basis, coords, points, deriv: int = 0):
    """AO values and cartesian derivatives (bohr^-3/2 per bohr^order) on points.

    Args:
      basis: the :class:`~basis.gto.Basis` (a pytree; exponents and coefficients may be traced).
      coords: (n_atoms, 3) nuclear positions in bohr; may be traced (``jax.grad``, ``vmap``).
      points: (n_points, 3) evaluation points in bohr.
      deriv: static highest derivative order (any non-negative integer; PySCF goes up to 4).

    Returns:
      (n_components(deriv), n_points, nao) array, component order as PySCF's
      ``mol.eval_gto("GTOval_sph_deriv<deriv>")`` (``_cart_`` for a cartesian basis): value;
      d/dx, d/dy, d/dz; xx, xy, xz, yy, yz, zz; xxx, xxy, ..., zzz (1, 4, 10, 20 components for
      deriv = 0, 1, 2, 3). AO columns in PySCF's AO order.
    """
    if int(deriv) != deriv or deriv < 0:
        raise ValueError(f"deriv {deriv!r} must be a non-negative integer")
    deriv = int(deriv)
    coords = jnp.asarray(coords)
    points = jnp.asarray(points)
    if points.ndim != 2 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape (n_points, 3), got {points.shape}")
    if coords.ndim != 2 or coords.shape[-1] != 3:
        raise ValueError(f"coords must have shape (n_atoms, 3), got {coords.shape}")
    groups, permutation = _assembly(basis)
    blocks = [_group_values(l, nprim, shells, basis, coords, points, deriv) for l, nprim, shells in groups]
    ao = blocks[0] if len(blocks) == 1 else jnp.concatenate(blocks, axis=-1)
    if permutation is not None:
        ao = ao[:, :, permutation]
    return ao


def ao_values_blocked(basis: Basis, coords, points, deriv: int = 0, block_size: int = 4096):
    """:func:`ao_values` evaluated ``block_size`` points at a time (``lax.map``) to bound memory.

    Intermediates then scale with ``block_size`` rather than ``n_points``; the result (the same
    array as :func:`ao_values`) is still (n_components(deriv), n_points, nao). The points are padded
    to a whole number of blocks with copies of the first point, and the padding is dropped.
    ``block_size`` is static.
    """
    points = jnp.asarray(points)
    n_points = points.shape[0]
    if n_points <= block_size:
        return ao_values(basis, coords, points, deriv)
    n_blocks = -(-n_points // block_size)
    pad = n_blocks * block_size - n_points
    padded = jnp.concatenate([points, jnp.broadcast_to(points[:1], (pad, 3))], axis=0) if pad else points
    blocks = jax.lax.map(
        lambda block: ao_values(basis, coords, block, deriv), padded.reshape(n_blocks, block_size, 3)
    )  # (n_blocks, D, block_size, nao)
    ao = jnp.transpose(blocks, (1, 0, 2, 3)).reshape(blocks.shape[1], n_blocks * block_size, -1)
    return ao[:, :n_points]
