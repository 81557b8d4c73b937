"""Atomic-orbital values and their cartesian derivatives on points, in pure JAX, in PySCF's order.

An AO is a fixed combination (``basis.transform(l)``) of the cartesian components of a contracted
shell on atom A (conventions in :mod:`basis.gto`),

    phi_{ijk}(r) = x^i y^j z^k sum_p c_p exp(-a_p r^2),        (x, y, z) = r - A.

Each primitive factorises into one-dimensional Gaussians, so a derivative of order (n_x, n_y, n_z)
is a product of one-dimensional derivatives, each given by the product rule (the same ladder as
for differentiating Cartesian Gaussians in Helgaker, Jorgensen & Olsen, *Molecular
Electronic-Structure Theory*, Wiley 2000, ch. 9)

    d/dx [x^q (-2a)^K exp(-a x^2)] = q x^{q-1} (-2a)^K exp(-a x^2) + x^{q+1} (-2a)^{K+1} exp(-a x^2).

So every derivative of every component is a short static sum of terms
``coef * x^qx y^qy z^qz * (-2 a_p)^K exp(-a_p r^2)`` with ``K <= n_x + n_y + n_z``. The exponent
enters only through (-2a)^K, so the primitives are contracted *first*, into the radial factors

    R_K(r^2) = sum_p c_p (-2 a_p)^K exp(-a_p r^2),        K = 0 .. deriv,            (1)

and each AO derivative is ``sum_t coef_t x^qx_t y^qy_t z^qz_t R_{K_t}`` with the recurrence
coefficients and the cartesian -> spherical transform folded into ``coef_t`` at trace time.
Example: ``d/dx phi_{100} = R_0 + x^2 R_1``. Nothing is screened: far from its centre a function
underflows to zero.

Implementation notes (choices measured with XLA on CPU against alternatives): the radial factors
(1) are contracted per ``basis.shell_groups()`` group (same l, same number of primitives) as a small
batched matrix product over (n_shells, n_points) arrays, points on the minor axis; XLA keeps a
product in memory, so the exponentials are evaluated once instead of inside every output element.
The polynomial stage then runs once per l over all its shells (its code size, and so the compile
time, grows with the number of l values and ``deriv``, not with the number of atoms); its sums are
elementwise and fuse into the loop that writes the output, columns put in PySCF's AO order by one
static permutation. Alternatives measured slower on CPU: one dense (terms x table) matrix product
per group (the table is ~90% zeros), gathers of the terms, and in-place updates per component.

Derivative components follow PySCF's ``mol.eval_gto("GTOval_sph_deriv<n>")``: order 0 (the value),
then for each order 1..n the exponent triples of that order in :func:`basis.gto.cartesian_powers`
order: ``x, y, z``; ``xx, xy, xz, yy, yz, zz``; ``xxx, xxy, xxz, xyy, xyz, xzz, yyy, yyz, yzz, zzz``.

``coords`` is an ordinary (traced) argument, so ``jax.grad``/``jax.jacfwd`` with respect to the
nuclear positions and ``jax.vmap`` over geometries work; the basis is a pytree whose static
structure fixes the program, so a jitted caller compiles once per basis structure and ``deriv``.

>>> import jax, numpy as np
>>> from basis.molecule import make_molecule
>>> from basis.gto import make_basis
>>> mol = make_molecule("O 0 0 0; H 0 0.757 0.587; H 0 -0.757 0.587")
>>> basis = make_basis(mol, "def2-svp")
>>> evaluate = jax.jit(ao_values, static_argnames="deriv")
>>> evaluate(basis, mol.coords, np.zeros((5, 3)), deriv=1).shape
(4, 5, 24)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from basis.gto import Basis, cartesian_powers

# A term of a derivative: ((K, qx, qy, qz), coef) for coef * x^qx y^qy z^qz * R_K.
_Term = tuple[tuple[int, int, int, int], float]


def n_components(deriv: int) -> int:
    """Number of derivative components up to order ``deriv``: (deriv+1)(deriv+2)(deriv+3)/6."""
    return (deriv + 1) * (deriv + 2) * (deriv + 3) // 6


def derivative_orders(deriv: int) -> np.ndarray:
    """(n_components(deriv), 3) orders (n_x, n_y, n_z) of the derivative components, PySCF's order."""
    return np.concatenate([cartesian_powers(n) for n in range(deriv + 1)], axis=0)


def _derivative_1d(power: int, order: int) -> dict[tuple[int, int], float]:
    """d^order/dx^order [x^power exp(-a x^2)] as {(q, K): coef}: sum coef x^q (-2a)^K exp(-a x^2)."""
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
def _cartesian_terms(l: int, deriv: int) -> tuple[tuple[dict[tuple[int, int, int, int], float], ...], ...]:
    """[d][c] -> {(K, qx, qy, qz): coef}: derivative d of cartesian component c, as sums over (1)."""
    table = []
    for nx, ny, nz in derivative_orders(deriv):
        row = []
        for i, j, k in cartesian_powers(l):
            terms: dict[tuple[int, int, int, int], float] = {}
            for (qx, kx), cx in _derivative_1d(int(i), int(nx)).items():
                for (qy, ky), cy in _derivative_1d(int(j), int(ny)).items():
                    for (qz, kz), cz in _derivative_1d(int(k), int(nz)).items():
                        key = (kx + ky + kz, qx, qy, qz)
                        terms[key] = terms.get(key, 0.0) + cx * cy * cz
            row.append(terms)
        table.append(tuple(row))
    return tuple(table)


def _ao_terms(l: int, deriv: int, transform: np.ndarray) -> list[list[list[_Term]]]:
    """[d][f] -> terms of derivative d of AO f: the cartesian table folded with the AO transform."""
    cartesian = _cartesian_terms(l, deriv)
    table = []
    for row in cartesian:
        ao_row = []
        for f in range(transform.shape[1]):
            terms: dict[tuple[int, int, int, int], float] = {}
            for c in np.flatnonzero(transform[:, f]):
                for key, coef in row[c].items():
                    terms[key] = terms.get(key, 0.0) + coef * float(transform[c, f])
            ao_row.append([(key, coef) for key, coef in sorted(terms.items()) if coef != 0.0])
        table.append(ao_row)
    return table


def _radial_factors(basis: Basis, shells: np.ndarray, nprim: int, r2, deriv: int):
    """(S, deriv + 1, P) radial factors R_K of eq. (1) for shells of ``nprim`` primitives; r2 (S, P)."""
    exponents = jnp.asarray(basis.exponents)[shells, :nprim]  # (S, n)
    coefficients = jnp.asarray(basis.coefficients)[shells, :nprim]  # (S, n)
    weights = jnp.stack([coefficients * (-2.0 * exponents) ** k for k in range(deriv + 1)], axis=1)
    gaussians = jnp.exp(-exponents[:, :, None] * r2[:, None, :])  # (S, n, P)
    # A matrix product, which XLA materialises: the exponentials are evaluated once, not once per
    # output element of the fused polynomial stage.
    return jnp.einsum("skn,snp->skp", weights, gaussians, precision=jax.lax.Precision.HIGHEST)


def _shell_block(l: int, groups, basis: Basis, coords, points, deriv: int):
    """AOs of all shells of angular momentum l.

    Args:
      groups: this l's ``(nprim, shell_indices)`` from ``basis.shell_groups()``: the radial factors
        are contracted per primitive count, the polynomial stage runs once for the whole l.

    Returns:
      ``(block, shells)``: block (n_components(deriv), S * n_functions(l), n_points), rows
      shell-major in the order of ``shells`` (the concatenated groups), function-minor.
    """
    shells = np.concatenate([group_shells for _, group_shells in groups])
    centres = basis.shell_centers(coords)[shells]  # (S, 3)
    rel = [points[None, :, axis] - centres[:, axis, None] for axis in range(3)]  # 3 x (S, P)
    r2 = rel[0] * rel[0] + rel[1] * rel[1] + rel[2] * rel[2]
    radial, start = [], 0
    for nprim, group_shells in groups:
        stop = start + len(group_shells)
        radial.append(_radial_factors(basis, group_shells, nprim, r2[start:stop], deriv))
        start = stop
    radial = radial[0] if len(radial) == 1 else jnp.concatenate(radial, axis=0)  # (S, K, P)

    # x^0 .. x^(l + deriv) by repeated products: exact for negative x, unlike a float power.
    powers = []
    for v in rel:
        power = [None, v]
        for _ in range(l + deriv - 1):
            power.append(power[-1] * v)
        powers.append(power)

    def term_value(key):
        k, *q = key
        value = radial[:, k]
        for axis in range(3):
            if q[axis]:
                value = value * powers[axis][q[axis]]
        return value

    components = []
    for row in _ao_terms(l, deriv, basis.transform(l)):
        functions = []
        for terms in row:
            value = jnp.zeros_like(r2)
            for key, coef in terms:
                value = value + (term_value(key) if coef == 1.0 else coef * term_value(key))
            functions.append(value)
        components.append(jnp.stack(functions, axis=1))  # (S, F, P)
    block = jnp.stack(components)  # (D, S, F, P)
    return block.reshape(block.shape[0], -1, block.shape[-1]), shells


def _shells_by_l(basis: Basis) -> dict[int, list[tuple[int, np.ndarray]]]:
    """{l: [(nprim, shell_indices), ...]} from ``basis.shell_groups()`` (static)."""
    by_l: dict[int, list[tuple[int, np.ndarray]]] = {}
    for l, nprim, shells in basis.shell_groups():
        by_l.setdefault(l, []).append((nprim, shells))
    return by_l


def ao_values(basis: Basis, coords, points, deriv: int = 0):
    """AO values and cartesian derivatives on points (AO units bohr^-3/2, per bohr^order).

    Args:
      basis: the :class:`~basis.gto.Basis` (a pytree; exponents and coefficients may be traced).
      coords: (n_atoms, 3) nuclear positions in bohr; may be traced (``jax.grad``, ``jax.vmap``).
      points: (n_points, 3) evaluation points in bohr.
      deriv: highest derivative order, static; any non-negative integer (PySCF stops at 4).

    Returns:
      (n_components(deriv), n_points, nao) array laid out as PySCF's
      ``mol.eval_gto("GTOval_sph_deriv<deriv>", points)`` (``GTOval_cart...`` for a cartesian basis;
      for ``deriv=0`` PySCF drops the leading axis): value; d/dx, d/dy, d/dz; xx, xy, xz, yy, yz,
      zz; xxx, xxy, ..., zzz (1, 4, 10, 20 components for deriv = 0, 1, 2, 3). AOs in PySCF order.
    """
    if isinstance(deriv, bool) or int(deriv) != deriv or deriv < 0:
        raise ValueError(f"deriv {deriv!r} must be a non-negative integer")
    deriv = int(deriv)
    coords, points = jnp.asarray(coords), jnp.asarray(points)
    if coords.ndim != 2 or coords.shape[-1] != 3:
        raise ValueError(f"coords must have shape (n_atoms, 3), got {coords.shape}")
    if points.ndim != 2 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape (n_points, 3), got {points.shape}")
    return _ao_values(deriv, basis, coords, points)


def _evaluate(deriv: int, basis: Basis, coords, points):
    """:func:`ao_values` without the custom derivative rule (plain JAX, differentiated by JAX)."""
    blocks, rows = [], []
    for l, groups in sorted(_shells_by_l(basis).items()):
        block, shells = _shell_block(l, groups, basis, coords, points, deriv)
        blocks.append(block)
        rows.append(basis.ao_indices(shells).ravel())
    ao = blocks[0] if len(blocks) == 1 else jnp.concatenate(blocks, axis=1)  # (D, nao, P), block order
    rows = np.concatenate(rows)
    if not np.array_equal(rows, np.arange(rows.size)):
        ao = ao[:, np.argsort(rows), :]  # one static permutation to PySCF's AO order
    return jnp.transpose(ao, (0, 2, 1))


@functools.lru_cache(maxsize=None)
def _raised(deriv: int) -> np.ndarray:
    """(n_components(deriv), 3) index, in the components of order deriv + 1, of each component's d/dx, d/dy, d/dz."""
    position = {tuple(int(v) for v in orders): c for c, orders in enumerate(derivative_orders(deriv + 1))}
    return np.array([[position[tuple(int(v) for v in orders + np.eye(3, dtype=np.int64)[x])] for x in range(3)]
                     for orders in derivative_orders(deriv)], dtype=np.int64)


def _ao_atoms(basis: Basis) -> np.ndarray:
    """(nao,) the atom of each AO, in PySCF's AO order (``shell_ao_start``, not shell order)."""
    atoms = np.empty(basis.nao, dtype=np.int64)
    for shell, atom in enumerate(basis.shell_atom):
        atoms[basis.ao_indices(np.array([shell]))] = atom
    return atoms


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _ao_values(deriv: int, basis: Basis, coords, points):
    return _evaluate(deriv, basis, coords, points)


@functools.partial(_ao_values.defjvp, symbolic_zeros=True)
def _ao_values_jvp(deriv, primals, tangents):
    """Derivatives in the positions from one more derivative order, not by differentiating the code.

    An AO depends on the point r and its centre A only through r - A, so for every component
    ``d phi^(n) = sum_x phi^(n + e_x) (dr_x - dA_x)``: the tangent is a linear map of the components
    of order deriv + 1 (:func:`_raised`), which reverse mode transposes into plain contractions.
    Exponent and coefficient tangents (:func:`dftjax.properties.exponent_gradient`) go through the
    code. Under a second derivative the rule is applied again (order deriv + 2), so Hessians and
    Hessian-vector products use the same analytic ladder.
    """
    basis, coords, points = primals
    d_basis, d_coords, d_points = tangents
    zero = lambda t: isinstance(t, jax.custom_derivatives.SymbolicZero)  # noqa: E731
    if zero(d_coords) and zero(d_points):
        value = _ao_values(deriv, basis, coords, points)
        tangent = jnp.zeros_like(value)
    else:
        raised = _ao_values(deriv + 1, basis, coords, points)  # (n_components(deriv + 1), P, nao)
        value = raised[:n_components(deriv)]
        index = _raised(deriv)
        shift = None
        if not zero(d_points):
            shift = jnp.asarray(d_points).T[:, :, None]  # (3, P, 1)
        if not zero(d_coords):
            ao_atom = _ao_atoms(basis)
            moved = -jnp.take(jnp.asarray(d_coords), ao_atom, axis=0).T[:, None, :]  # (3, 1, nao)
            shift = moved if shift is None else shift + moved
        # static rows (slices, not gathers): elementwise, and a multiply-and-reduce when transposed
        tangent = jnp.stack([sum(raised[int(index[c, x])] * shift[x] for x in range(3)) for c in range(index.shape[0])])
    leaves = jax.tree_util.tree_leaves(d_basis, is_leaf=zero)
    if not all(zero(t) for t in leaves):
        structure = jax.tree_util.tree_structure(basis)
        d_leaves = [jnp.zeros_like(p) if zero(t) else t
                    for p, t in zip(jax.tree_util.tree_leaves(basis), leaves)]
        _, from_basis = jax.jvp(lambda b: _evaluate(deriv, b, coords, points), (basis,),
                                (jax.tree_util.tree_unflatten(structure, d_leaves),))
        tangent = tangent + from_basis
    return value, tangent


def ao_values_blocked(basis: Basis, coords, points, deriv: int = 0, block_size: int = 8192):
    """:func:`ao_values` evaluated ``block_size`` points at a time, to bound intermediate memory.

    Same result as :func:`ao_values`, (n_components(deriv), n_points, nao). The blocks run in a
    ``lax.map`` (one compiled block, executed sequentially) under ``jax.checkpoint``, so the
    temporaries of one block are what scales with ``block_size``, also under ``jax.grad`` (the
    backward pass recomputes each block instead of storing its intermediates). The points are padded
    to whole blocks with copies of the first point; the padding is dropped. ``block_size`` is static.
    On CPU this is slower than :func:`ao_values` (extra copies), use it where memory is the limit.
    """
    points = jnp.asarray(points)
    n_points = points.shape[0]
    if n_points <= block_size:
        return ao_values(basis, coords, points, deriv)
    n_blocks = -(-n_points // block_size)
    pad = n_blocks * block_size - n_points
    padded = jnp.concatenate([points, jnp.broadcast_to(points[:1], (pad, 3))], axis=0) if pad else points
    evaluate_block = jax.checkpoint(lambda block: ao_values(basis, coords, block, deriv))
    blocks = jax.lax.map(evaluate_block, padded.reshape(n_blocks, block_size, 3))  # (n_blocks, D, B, nao)
    ao = jnp.transpose(blocks, (1, 0, 2, 3)).reshape(blocks.shape[1], n_blocks * block_size, -1)
    return ao[:, :n_points]
