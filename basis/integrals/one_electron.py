"""One-electron integrals over contracted Gaussians (McMurchie-Davidson), in pure JAX.

Overlap, kinetic energy, nuclear (or point-charge) attraction and dipole integrals, as
``(nao, nao)`` matrices in PySCF's AO order and normalisation (see :mod:`basis.gto`); they agree
with ``mol.intor("int1e_ovlp" / "int1e_kin" / "int1e_nuc" / "int1e_r")`` to ~1e-13.

Every function is jitted, takes the :class:`~basis.gto.Basis` pytree (exponents and coefficients
are differentiable leaves; the shell structure is static and keys the compilation cache) and the
nuclear positions ``coords`` (n_atoms, 3) in bohr as a traced array, so it compiles once per basis
structure, ``vmap``\\ s over geometries and differentiates with ``jax.grad``/``jax.jacfwd`` with
respect to ``coords``, ``basis.exponents`` and ``basis.coefficients``.

Equations (Helgaker, Jorgensen, Olsen, "Molecular Electronic-Structure Theory" (2000), HJO below),
for primitive cartesian Gaussians ``G_a = x_A^i y_A^k z_A^m exp(-a r_A^2)`` and ``G_b`` (exponent
b), p = a + b, P = (a A + b B) / p, K_AB = exp(-ab/p |A - B|^2) (section 9.2.3):

* Hermite expansion (section 9.5.2): with K_AB outside, ``x_A^i x_B^j exp(-p x_P^2) = sum_t
  E^{ij}_t Lambda_t``. Instead of the recursion (eq. 9.5.6) we use its closed form: expand
  x_A^i x_B^j binomially in powers of x_P and each power with ``x_P Lambda_t = Lambda_{t+1} / (2p)
  + t Lambda_{t-1}``, which gives ``x_P^m exp(-p x_P^2) = sum_t m! / (t! k! 2^m) p^{-(m+t)/2}
  Lambda_t`` (m = t + 2k), so ``E^{ij}_t = sum_{k<=i, l<=j} C(i,k) C(j,l) X_PA^{i-k} X_PB^{j-l}
  h_{k+l,t}``; the values of :func:`basis.integrals._hermite.hermite_e_1d`, to rounding.
* Overlap (section 9.5.1): ``S_ab = K_AB (pi/p)^{3/2} E^{ij}_0 E^{kl}_0 E^{mn}_0``.
* Kinetic energy (section 9.3.4, the differentiated-ket form): in one dimension
  ``T_ij = -1/2 <i| d^2/dx^2 |j> = -1/2 [j(j-1) S_{i,j-2} - 2b(2j+1) S_ij + 4b^2 S_{i,j+2}]`` and
  ``T_ab = T^x S^y S^z + S^x T^y S^z + S^x S^y T^z``.
* Dipole integrals (sections 9.3.3, 9.5.3): ``x_O = x_B + (B_x - O_x)``, so
  ``M^x_ij = S_{i,j+1} + (B_x - O_x) S_ij``.
* Coulomb attraction to a point C (section 9.9.3): ``<G_a| 1/r_C |G_b> = (2 pi / p) K_AB
  sum_{tuv} E^{ab}_{tuv} R_{tuv}(p, P - C)``. The Hermite integrals R (section 9.9.2) are the
  derivatives of g(s) = F_0(p s), s = |P - C|^2. Instead of the recursion (eq. 9.9.18-9.9.20) we
  use the chain rule for the square, ``d^t/dX^t g = sum_m t! / ((t-m)! (2m-t)!) (2X)^{2m-t}
  g^(m)`` with ``g^(m) = (-p)^m F_m``, which factorises over x, y, z: ``R_tuv = sum_{m1 m2 m3}
  W_{t m1}(X) W_{u m2}(Y) W_{v m3}(Z) (-p)^{m1+m2+m3} F_{m1+m2+m3}(p |P - C|^2)``, a fixed linear
  map of the products ``(-p)^N F_N (2X)^i (2Y)^j (2Z)^k``. The Boys function F_m (section 9.8)
  uses the table and Taylor scheme of :mod:`basis.integrals._boys`.

Layout. The operators are symmetric, so only one triangle of shell pairs is computed. Shells are
grouped by angular momentum only: for each class ``(la, lb)``, ``la <= lb`` (``A <= B`` within a
class of equal l), every primitive pair of every shell pair is laid out flat, so one compiled kernel
serves a class whatever the contraction lengths (grouping by (l, nprim) as in
``Basis.shell_groups()`` would multiply the kernels, and compile time, by the number of contraction
patterns). Primitive pairs of all classes share one gather of exponents, coefficients and centres
and one evaluation of the Gaussian products; a class then contracts its primitives by a padded
static gather and a sum, goes to AOs by ``kron(transform(la), transform(lb))``, and the matrix is
*one* static gather from the concatenated class blocks (which also fills the other triangle).

Performance notes for XLA on CPU, which shaped the code (float64, measured with jax 0.10):

* Each fused kernel costs ~20-30 ms to compile, so angular indices are array axes driven by static
  coefficient tables (E = matrix @ monomials; R = matrix @ products) rather than Python-unrolled
  recursions, which produce hundreds of small kernels per class.
* The batch (primitive pairs x charges) is the last axis, which XLA vectorises; jnp.sum is avoided
  (:func:`_sum`): its YNNPACK reductions run 4-70x slower than explicit adds for float64.
* XLA fuses cheap producers into every consumer and re-evaluates them per consumer element, so
  values read many times (Hermite tables, Boys function) are produced by matrix products or
  concatenations, whose operands XLA evaluates once.
* Static index maps are int32 constants fed to bare gathers (:func:`_take`): numpy-array indexing
  adds index normalisation that XLA constant-folds element by element (minutes at ~20 atoms).

>>> from basis.molecule import make_molecule
>>> from basis.gto import make_basis
>>> mol = make_molecule("O 0 0 0; H 0 0.757 0.587; H 0 -0.757 0.587")
>>> basis = make_basis(mol, "def2-svp")
>>> overlap(basis, mol.coords).shape
(24, 24)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from basis.gto import Basis, cartesian_powers, n_cartesian
from basis.integrals import _boys
from basis.integrals._hermite import hermite_indices

__all__ = ["overlap", "kinetic", "nuclear_attraction", "point_charge_attraction", "dipole", "CoreIntegrals",
           "core_integrals"]

# Point charges are processed in chunks of this many (a lax.scan over chunks beyond it), so memory
# stays O(n_primitive_pairs * chunk) for QM/MM-sized charge lists.
_CHARGE_CHUNK = 128


# ---------------------------------------------------------------------------------------------------
# Static plan: which primitive pairs are computed, how they contract, where the values go.
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class _ClassPlan:
    """All primitive pairs of the shell pairs of one angular-momentum class (la, lb), la <= lb.

    Attributes:
      la, lb: angular momenta of the bra and ket shells.
      start, stop: the class's primitive pairs are entries start:stop of the plan's pair arrays.
      contract_index: (n_shell_pairs, width) int32 primitive pairs (relative to start) of each shell
        pair, padded with 0; ``contract_mask`` (same shape, float, or None when nothing is padded)
        is 0 on padding.
    """

    la: int
    lb: int
    start: int
    stop: int
    contract_index: np.ndarray
    contract_mask: np.ndarray | None


@dataclasses.dataclass(frozen=True, eq=False)
class _Plan:
    """Classes, their primitive pairs (all classes concatenated) and the final AO gather.

    Attributes:
      classes: one :class:`_ClassPlan` per angular-momentum class.
      prim: (2, n_prim_pairs) int32 entries of the flattened (n_shells * max_nprim) exponents of
        the bra (row 0) and ket (row 1) primitive of every pair.
      atom: (2, n_prim_pairs) int32 atoms of the bra and ket shells.
      gather: (nao, nao) int32 position of each matrix element in the concatenated class blocks.
    """

    classes: tuple[_ClassPlan, ...]
    prim: np.ndarray
    atom: np.ndarray
    gather: np.ndarray


@functools.lru_cache(maxsize=64)
def _plan_cached(shell_l, shell_nprim, shell_atom, shell_ao_start, cartesian, max_nprim) -> _Plan:
    nfunc = [n_cartesian(l) if cartesian else 2 * l + 1 for l in shell_l]
    nao = sum(nfunc)
    gather = np.full((nao, nao), -1, dtype=np.int64)
    offset = 0
    classes = []
    all_prim, all_atom = [], []
    by_l = [[s for s, l in enumerate(shell_l) if l == ll] for ll in range(max(shell_l) + 1)]
    # Classes ordered by la + lb, so classes that share Hermite Coulomb sums are contiguous.
    l_pairs = sorted(((la, lb) for la in range(len(by_l)) for lb in range(la, len(by_l))), key=lambda x: (sum(x), x))
    for la, lb in l_pairs:
        pairs = [(sa, sb) for sa in by_l[la] for sb in by_l[lb] if la < lb or sa <= sb]
        if not pairs:
            continue
        a_prim, b_prim, a_atom, b_atom, members = [], [], [], [], []
        fa, fb = nfunc[pairs[0][0]], nfunc[pairs[0][1]]
        for s, (sa, sb) in enumerate(pairs):
            ia, ib = np.meshgrid(np.arange(shell_nprim[sa]), np.arange(shell_nprim[sb]), indexing="ij")
            members.append(len(a_prim) + np.arange(ia.size))
            a_prim.extend(sa * max_nprim + ia.ravel())
            b_prim.extend(sb * max_nprim + ib.ravel())
            a_atom.extend([shell_atom[sa]] * ia.size)
            b_atom.extend([shell_atom[sb]] * ia.size)
            # The class block is (fa * fb, n_shell_pairs), flattened: AO pair major.
            pos = offset + np.arange(fa * fb).reshape(fa, fb) * len(pairs) + s
            if sa == sb:  # read both triangles of a diagonal block from one, for exact symmetry
                pos = np.where(np.arange(fa)[:, None] <= np.arange(fb)[None, :], pos, pos.T)
            ao_a = shell_ao_start[sa] + np.arange(fa)
            ao_b = shell_ao_start[sb] + np.arange(fb)
            gather[np.ix_(ao_a, ao_b)] = pos
            gather[np.ix_(ao_b, ao_a)] = pos.T
        offset += fa * fb * len(pairs)
        width = max(len(m) for m in members)
        index = np.zeros((len(pairs), width), dtype=np.int32)
        mask = np.zeros((len(pairs), width))
        for s, m in enumerate(members):
            index[s, : len(m)] = m
            mask[s, : len(m)] = 1.0
        start = sum(len(x[0]) for x in all_prim)
        all_prim.append((a_prim, b_prim))
        all_atom.append((a_atom, b_atom))
        classes.append(
            _ClassPlan(
                la=la, lb=lb, start=start, stop=start + len(a_prim), contract_index=index,
                contract_mask=None if mask.all() else mask,
            )
        )
    assert (gather >= 0).all(), "internal error: AO pairs not covered"
    prim = np.array([np.concatenate([x[k] for x in all_prim]) for k in range(2)], dtype=np.int32)
    atom = np.array([np.concatenate([x[k] for x in all_atom]) for k in range(2)], dtype=np.int32)
    return _Plan(classes=tuple(classes), prim=prim, atom=atom, gather=gather.astype(np.int32))


def _plan(basis: Basis) -> _Plan:
    return _plan_cached(
        basis.shell_l, basis.shell_nprim, basis.shell_atom, basis.shell_ao_start, basis.cartesian,
        int(np.shape(basis.exponents)[1]),
    )


def _take(x, idx, axis: int = 0):
    """``x`` indexed by ``idx`` along ``axis``: shape x.shape[:axis] + idx.shape + x.shape[axis+1:].

    A bare gather with in-bounds promise. ``x[np_array]`` wraps static indices in select(idx < 0,
    idx + n, idx) and casts that XLA constant-folds element by element (minutes for the ~1e5-entry
    maps of a 20-atom molecule). Traced indices must be in bounds (callers clip them).
    """
    idx = np.asarray(idx, dtype=np.int32) if isinstance(idx, np.ndarray) else idx.astype(jnp.int32)
    axis = axis % x.ndim
    offset_dims = tuple(range(axis)) + tuple(range(axis + idx.ndim, idx.ndim + x.ndim - 1))
    dnums = jax.lax.GatherDimensionNumbers(
        offset_dims=offset_dims, collapsed_slice_dims=(axis,), start_index_map=(axis,)
    )
    slice_sizes = tuple(1 if d == axis else n for d, n in enumerate(x.shape))
    return jax.lax.gather(
        x, idx[..., None], dnums, slice_sizes=slice_sizes, mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS
    )


# ---------------------------------------------------------------------------------------------------
# Array building blocks: static axes lead, the batch (primitive pairs, charges) is the last axis.
# ---------------------------------------------------------------------------------------------------


def _col(table, n_trail: int = 1) -> np.ndarray:
    """A static table reshaped to broadcast against arrays with ``n_trail`` trailing batch axes."""
    table = np.asarray(table)
    return table.reshape(table.shape + (1,) * n_trail)


def _int_powers(x, n: int):
    """(n + 1, *x.shape) exact powers x^0 .. x^n (binary decomposition; jnp.power's gradient is NaN at 0^0)."""
    k = np.arange(n + 1)
    out = None
    square = x[None]
    for bit in range(max(1, int(n).bit_length())):
        factor = jnp.where(_col((k >> bit) & 1 == 1, x.ndim), square, 1.0)
        out = factor if out is None else out * factor
        square = square * square
    return out


def _sum(x, axis: int):
    """Sum over a short static axis as explicit adds of slices.

    XLA's CPU backend hands jnp.sum reductions to YNNPACK fusions that, for float64, run 4-70x
    slower than the equivalent elementwise adds (e.g. 30 ms vs 0.4 ms summing 9 x 2.6e6 over the
    leading axis).
    """
    parts = [jax.lax.index_in_dim(x, k, axis, keepdims=False) for k in range(x.shape[axis])]
    return functools.reduce(jnp.add, parts)


@dataclasses.dataclass(frozen=True)
class _Pair:
    """Gaussian-product quantities of a batch of n primitive pairs (HJO section 9.2.3), batch last.

    Attributes: ``p = a + b``, ``b``, ``inv_p = 1/p``, ``k_ab = exp(-ab/p |A-B|^2)`` and
    ``k_overlap = K_AB (pi/p)^{3/2}`` (n,); ``center_b``, ``center_p = (aA + bB)/p``,
    ``pa = P - A``, ``pb = P - B`` (3, n).
    """

    p: jax.Array
    b: jax.Array
    inv_p: jax.Array
    k_ab: jax.Array
    k_overlap: jax.Array
    center_b: jax.Array
    center_p: jax.Array
    pa: jax.Array
    pb: jax.Array

    @classmethod
    def make(cls, a, b, center_a, center_b) -> "_Pair":
        p = a + b
        inv_p = 1.0 / p
        center_p = (a[None] * center_a + b[None] * center_b) * inv_p[None]
        ab = center_a - center_b
        k_ab = jnp.exp(-(a * b * inv_p) * (ab[0] * ab[0] + ab[1] * ab[1] + ab[2] * ab[2]))
        pi_over_p = jnp.pi * inv_p
        k_overlap = k_ab * pi_over_p * jnp.sqrt(pi_over_p)
        return cls(p, b, inv_p, k_ab, k_overlap, center_b, center_p, center_p - center_a, center_p - center_b)

    def __getitem__(self, index: slice) -> "_Pair":
        """The pairs ``index`` (a slice along the batch axis)."""
        return _Pair(*(x[..., index] for x in dataclasses.astuple(self)))


@functools.lru_cache(maxsize=None)
def _hermite_e_matrix(la: int, lb: int, t_max: int):
    """E^{ij}_t (t <= t_max) as a fixed linear map of monomials X_PA^a X_PB^b p^-c.

    From the closed form (module docstring; HJO section 9.5.2)
    ``E^{ij}_t = sum_{k,l} C(i,k) C(j,l) X_PA^{i-k} X_PB^{j-l} h_{k+l,t}(p)``.

    Returns:
      ``(matrix, a, b, c)``: the ((la+1)(lb+1)(t_max+1), n_monomials) coefficients, rows in
      (i, j, t) order, and the int exponents of the monomials that occur.
    """
    rows = {}
    for i in range(la + 1):
        for j in range(lb + 1):
            for k in range(i + 1):
                for l in range(j + 1):
                    m = k + l
                    for t in range(m % 2, min(m, t_max) + 1, 2):
                        h = math.factorial(m) / (math.factorial(t) * math.factorial((m - t) // 2) * 2.0**m)
                        key = ((i * (lb + 1) + j) * (t_max + 1) + t, (i - k, j - l, (m + t) // 2))
                        rows[key] = rows.get(key, 0.0) + math.comb(i, k) * math.comb(j, l) * h
    monomials = sorted({mono for _, mono in rows})
    column = {mono: c for c, mono in enumerate(monomials)}
    matrix = np.zeros(((la + 1) * (lb + 1) * (t_max + 1), len(monomials)))
    for (row, mono), value in rows.items():
        matrix[row, column[mono]] = value
    a, b, c = (np.array(x, dtype=np.int32) for x in zip(*monomials))
    return matrix, a, b, c


def _hermite_e(la: int, lb: int, pair: _Pair, t_max: int):
    """Hermite coefficients E^{ij}_t of the three axes, (la + 1, lb + 1, t_max + 1, 3, n).

    Equal (K_AB outside, E^{00}_0 = 1) to :func:`basis.integrals._hermite.hermite_e_1d` to
    rounding. One broadcast product builds the monomials and one matrix product maps them to all
    (i, j, t): two kernels for any la, lb, and the result is materialised once for its consumers
    (gathers that read each entry many times, into which XLA would otherwise fuse the whole sum).
    """
    matrix, a, b, c = _hermite_e_matrix(la, lb, t_max)
    mono = _take(_int_powers(pair.pa, la), a) * _take(_int_powers(pair.pb, lb), b)  # (n_mono, 3, n)
    mono = mono * _take(_int_powers(pair.inv_p, int(c.max())), c)[:, None, :]
    n = pair.p.shape[0]
    e = jnp.asarray(matrix) @ mono.reshape(len(a), 3 * n)
    return e.reshape(la + 1, lb + 1, t_max + 1, 3, n)


@functools.lru_cache(maxsize=None)
def _axis_rows(la: int, lb: int, n_j: int, n_t: int, shift: int = 0, hermite: bool = False):
    """Rows of a (la + 1, n_j, n_t, 3, n) table, flattened to (-1, n), for each cartesian pair and axis.

    Entry (x, ab) is the row of (i, j, t, x) = (a_x, b_x + shift, 0, x); with ``hermite``, entry
    (x, ab, h) uses t = the x-component of Hermite index h (:func:`hermite_indices`). Rows with
    b_x + shift < 0 point at row 0 (callers give them zero weight). Cartesian pairs a major.
    """
    pa, pb = cartesian_powers(la), cartesian_powers(lb)
    ia = np.repeat(pa, len(pb), axis=0).T  # (3, cab)
    jb = np.maximum(np.tile(pb, (len(pa), 1)).T + shift, 0)
    x = np.arange(3)[:, None]
    if not hermite:
        return np.ravel_multi_index((ia, jb, np.zeros_like(ia), np.broadcast_to(x, ia.shape)), (la + 1, n_j, n_t, 3))
    tuv = hermite_indices(la + lb).T[:, None, :]  # (3, 1, n_hermite)
    shape = (3, ia.shape[1], tuv.shape[2])
    return np.ravel_multi_index(
        tuple(np.broadcast_to(v, shape) for v in (ia[:, :, None], jb[:, :, None], tuv, x[:, :, None])),
        (la + 1, n_j, n_t, 3),
    )


def _ket_powers(la: int, lb: int) -> np.ndarray:
    """(3, ncart(la) * ncart(lb), 1) power of x_B (y_B, z_B) in each cartesian pair, as floats."""
    pb = cartesian_powers(lb)
    return np.tile(pb, (len(cartesian_powers(la)), 1)).T[:, :, None].astype(np.float64)


def _product_over_axes(factors, mixed=None):
    """prod over the 3 axes of ``factors`` (3, cab, n); with ``mixed`` (3, cab, n), the sum over x of
    the products where axis x takes ``mixed`` instead (T^x S^y S^z + ..., or the 3 dipole components
    when ``mixed`` is returned per x). A select against a static identity, not a stack, so one kernel."""
    if mixed is None:
        return factors[0] * factors[1] * factors[2]
    choose = jnp.where(np.eye(3, dtype=bool)[:, :, None, None], mixed[None], factors[None])  # (x, axis, cab, n)
    return choose[:, 0] * choose[:, 1] * choose[:, 2]


# ---------------------------------------------------------------------------------------------------
# Primitive kernels: batch of n primitive pairs -> (n_comp, ncart(la) * ncart(lb), n), including
# K_AB and the Gaussian prefactor (not the contraction coefficients).
# ---------------------------------------------------------------------------------------------------


def _overlap_kernel(la: int, lb: int, pair: _Pair):
    n = pair.p.shape[0]
    e0 = _hermite_e(la, lb, pair, 0).reshape(-1, n)  # 1D overlaps / sqrt(pi/p)
    s = _take(e0, _axis_rows(la, lb, lb + 1, 1))  # (3, cab, n)
    return (_product_over_axes(s) * pair.k_overlap[None])[None]


def _kinetic_kernel(la: int, lb: int, pair: _Pair):
    n = pair.p.shape[0]
    e0 = _hermite_e(la, lb + 2, pair, 0).reshape(-1, n)
    s = _take(e0, _axis_rows(la, lb, lb + 3, 1))
    lower = _take(e0, _axis_rows(la, lb, lb + 3, 1, -2))
    upper = _take(e0, _axis_rows(la, lb, lb + 3, 1, +2))
    j = _ket_powers(la, lb)
    b = pair.b[None, None]
    # -1/2 d^2/dx^2 on x_B^j exp(-b x_B^2) = -1/2 [j(j-1) x_B^{j-2} - 2b(2j+1) x_B^j + 4b^2 x_B^{j+2}]
    t = (-0.5 * j * (j - 1)) * lower + b * (2.0 * j + 1.0) * s - 2.0 * b * b * upper
    out = _sum(_product_over_axes(s, t), axis=0)
    return (out * pair.k_overlap[None])[None]


def _dipole_kernel(la: int, lb: int, pair: _Pair, origin):
    n = pair.p.shape[0]
    e0 = _hermite_e(la, lb + 1, pair, 0).reshape(-1, n)
    s = _take(e0, _axis_rows(la, lb, lb + 2, 1))
    m = _take(e0, _axis_rows(la, lb, lb + 2, 1, +1)) + (pair.center_b - origin[:, None])[:, None, :] * s
    return _product_over_axes(s, m) * pair.k_overlap[None, None]  # x_O = x_B + (B - O)


def _core_kernel(la: int, lb: int, pair: _Pair, w, origin):
    """(6, cab, n): overlap, kinetic, point-charge attraction and the three dipole components at once.

    The kernels above, sharing one table of Hermite coefficients E^{ij}_t (j <= lb + 2 for the
    kinetic and dipole shifts, t <= la + lb for the Coulomb sum): one set of kernels per class where
    four separate programs would each build their own (fewer kernels for XLA to compile).
    """
    L = la + lb
    n = pair.p.shape[0]
    e = _hermite_e(la, lb + 2, pair, L).reshape(-1, n)
    rows = functools.partial(_axis_rows, la, lb, lb + 3, L + 1)
    s = _take(e, rows())  # (3, cab, n) 1D overlaps / sqrt(pi/p)
    lower, upper, raised = (_take(e, rows(shift)) for shift in (-2, 2, 1))
    j = _ket_powers(la, lb)
    b = pair.b[None, None]
    t = (-0.5 * j * (j - 1)) * lower + b * (2.0 * j + 1.0) * s - 2.0 * b * b * upper
    m = raised + (pair.center_b - origin[:, None])[:, None, :] * s
    # one select of the (S or T or M) factor per axis: rows overlap, kinetic x/y/z, dipole x/y/z
    factor = jnp.stack([s, t, m])  # (3 kinds, 3 axes, cab, n)
    kind = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [2, 0, 0], [0, 2, 0], [0, 0, 2]])
    axes = [_take(factor[:, x], kind[:, x]) for x in range(3)]  # 3 x (7, cab, n)
    products = axes[0] * axes[1] * axes[2] * pair.k_overlap[None, None]
    kinetic = products[1] + products[2] + products[3]
    coulomb = _coulomb_kernel(la, lb, pair, w, e=(e, lb + 3))[0]
    return jnp.stack([products[0], kinetic, coulomb, products[4], products[5], products[6]])


@functools.lru_cache(maxsize=None)
def _boys_table_flat() -> tuple[np.ndarray, int]:
    table = _boys._table()
    return np.ascontiguousarray(table).reshape(-1), table.shape[1]


@functools.lru_cache(maxsize=None)
def _boys_recursion_tables(m_max: int) -> tuple[np.ndarray, np.ndarray]:
    """F_0 .. F_m_max as fixed linear maps of the rows ``[H v^k (k = 0..m_max), e^-T v^k (k = 0..m_max)]``.

    Small T (H = F_m_max, v = 2T), the downward recursion F_m = (2T F_{m+1} + e^-T) / (2m+1)
    unrolled: F_m = (2T)^(M-m) F_M / prod_{i=m}^{M-1} (2i+1) + e^-T sum_j (2T)^j / prod_{i=m}^{m+j}
    (2i+1), all terms positive. Large T (H = F_0, v = u = 1/(2T)), the upward recursion
    F_{m+1} = ((2m+1) F_m - e^-T) u unrolled: F_m = (2m-1)!! u^m F_0 - e^-T sum_k c_mk u^k.

    Returns:
      ``(small, large)``, each (m_max + 1, 2 (m_max + 1)).
    """
    n = m_max + 1
    small = np.zeros((n, 2 * n))
    large = np.zeros((n, 2 * n))
    for m in range(n):
        small[m, m_max - m] = np.prod([1.0 / (2 * i + 1) for i in range(m, m_max)])
        for j in range(m_max - m):
            small[m, n + j] = np.prod([1.0 / (2 * i + 1) for i in range(m, m + j + 1)])
    large[0, 0] = 1.0
    for m in range(m_max):  # row m + 1 = (2m + 1) u * row m - u e^-T
        large[m + 1, 1:n] = (2 * m + 1) * large[m, : n - 1]
        large[m + 1, n + 1 :] = (2 * m + 1) * large[m, n : 2 * n - 1]
        large[m + 1, n + 1] -= 1.0
    return small, large


def _boys_head(m_max: int, t):
    """The Boys function F_0 .. F_{m_max}(T) (HJO section 9.8) as (small, head, v, exp_t).

    ``head`` is F_{m_max}(T) for T < 30 and F_0(T) for T >= 30 (``small`` says which); the orders
    follow from :func:`_boys_recursion_tables` with ``v`` = 2T or 1/(2T). The table and Taylor scheme
    are those of :func:`basis.integrals._boys.boys` (9 terms about the nearest grid point, spacing
    0.1); for T >= 30, F_0 = sqrt(pi/T)/2 - e^-T/(2T) (1 - 1/(2T) + 3/(4T^2) - 15/(8T^3)): erfc(sqrt
    T) by its asymptotic series, exact to rounding there (jax's float64 erf costs ~40 ns on CPU).
    Only one order is tabulated per point: 9 table reads, whatever m_max.
    """
    flat, n_col = _boys_table_flat()
    n_row = flat.size // n_col
    n_taylor = _boys.N_TAYLOR
    if m_max + n_taylor > n_col:
        raise ValueError(f"Boys order {m_max} too high: at most {n_col - n_taylor} supported")
    small = t < _boys.T_SWITCH
    exp_t = jnp.exp(-t)
    t_small = jnp.where(small, t, 0.0)
    idx = jnp.clip(jnp.floor(t_small * (1.0 / _boys.H) + 0.5).astype(jnp.int32), 0, n_row - 1)
    minus_d = idx.astype(t.dtype) * _boys.H - t_small
    table = jnp.asarray(flat)
    row = idx * n_col + m_max
    # One scalar gather per term, each fused into the Horner evaluation (one gather of a (9, ...)
    # block would be materialised by XLA and cost several times more).
    taylor = _take(table, row + (n_taylor - 1)) * (1.0 / math.factorial(n_taylor - 1))
    for k in range(n_taylor - 2, -1, -1):
        taylor = taylor * minus_d + _take(table, row + k) * (1.0 / math.factorial(k))
    root = jax.lax.rsqrt(jnp.where(small, _boys.T_SWITCH, t))
    inv_t = root * root
    series = 1.0 + inv_t * (-0.5 + inv_t * (0.75 + inv_t * (-1.875)))
    f0_large = (0.5 * math.sqrt(math.pi)) * root - 0.5 * exp_t * inv_t * series
    head = jnp.where(small, taylor, f0_large)
    v = jnp.where(small, 2.0 * t_small, 0.5 * inv_t)
    return small, head, v, exp_t


@functools.lru_cache(maxsize=None)
def _hermite_coulomb_tables(L: int):
    """R_tuv (t + u + v <= L) as a linear map of the distinct products (-p)^N F_N (2X)^i (2Y)^j (2Z)^k.

    From d^t/dX^t g(X^2) = sum_m t! / ((t-m)! (2m-t)!) (2X)^{2m-t} g^(m) per axis (module docstring).

    Returns:
      ``(order, px, py, pz, matrix)``: int (n_products,) N, i, j, k of each product, and the
      (n_hermite(L), n_products) coefficients, R = matrix @ products.
    """

    def axis_terms(t):
        return [(2 * m - t, m, math.factorial(t) / (math.factorial(t - m) * math.factorial(2 * m - t)))
                for m in range((t + 1) // 2, t + 1)]

    products: dict[tuple[int, int, int, int], int] = {}
    entries = []
    for h, (t, u, v) in enumerate(hermite_indices(L)):
        for px, mx, cx in axis_terms(t):
            for py, my, cy in axis_terms(u):
                for pz, mz, cz in axis_terms(v):
                    key = (mx + my + mz, px, py, pz)
                    entries.append((h, products.setdefault(key, len(products)), cx * cy * cz))
    matrix = np.zeros((len(hermite_indices(L)), len(products)))
    for h, j, c in entries:
        matrix[h, j] += c
    keys = np.array(list(products), dtype=np.int32).reshape(-1, 4)
    return keys[:, 0], keys[:, 1], keys[:, 2], keys[:, 3], matrix


def _hermite_coulomb_sum(L: int, p, center_p, positions, charges):
    """W_tuv = sum_C q_C R_tuv(p, P - C), t + u + v <= L (HJO section 9.9.2, closed form).

    Args:
      L: highest total order (static).
      p: (n,) exponents; center_p: (3, n); positions: (n_c, 3); charges: (n_c,).

    Returns:
      (n_hermite(L), n) in the order of :func:`basis.integrals._hermite.hermite_indices`.
    """
    n_c, n = positions.shape[0], p.shape[0]
    # (charge, pair) flattened to one batch axis: 1D index arithmetic keeps XLA's gathers fused.
    rpc = [(center_p[x][None, :] - positions[:, x][:, None]).reshape(-1) for x in range(3)]
    t = jnp.broadcast_to(p[None], (n_c, n)).reshape(-1) * (rpc[0] * rpc[0] + rpc[1] * rpc[1] + rpc[2] * rpc[2])
    small, head, v, exp_t = _boys_head(L, t)
    if L == 0:
        return charges[None] @ head.reshape(n_c, n)  # (1, n)
    order, px, py, pz, matrix = _hermite_coulomb_tables(L)
    # Matrix products do the linear algebra and also decide what XLA evaluates once: a dot's
    # operands are materialised, whereas elementwise producers are fused into, and repeated by,
    # every consumer (here: the Taylor series would be re-evaluated for every order and product).
    # (1) head and e^-T, once per point (the concatenation, unlike a select, reads each once).
    # (2) All orders F_N through the recursion maps, both branches at once. Then the products
    # (N, i, j, k) of (-p)^N F_N (2X)^i (2Y)^j (2Z)^k.
    base = jnp.eye(2) @ jnp.concatenate([head[None], exp_t[None]])
    v_pow = _int_powers(v, L)  # (L + 1, n_c n)
    rows = jnp.where(_col(np.arange(2 * L + 2) <= L), base[:1], base[1:]) * _take(v_pow, np.arange(2 * L + 2) % (L + 1))
    f = np.concatenate(_boys_recursion_tables(L)) @ rows  # (2 (L + 1), n_c n): both branches
    f = jnp.where(small[None], f[: L + 1], f[L + 1 :]).reshape(L + 1, n_c, n)
    g = _take(f * _int_powers(-p, L)[:, None, :], order)  # (-p)^N F_N for each product
    prod = g
    for x, power in enumerate((px, py, pz)):
        prod = prod * _take(_int_powers(2.0 * rpc[x], L), power).reshape(len(order), n_c, n)
    # (3) Sum over products j and charges c of matrix[h, j] q_c prod[j, c].
    weights = (jnp.asarray(matrix)[:, :, None] * charges[None, None, :]).reshape(matrix.shape[0], -1)
    return weights @ prod.reshape(-1, n)


def _coulomb_sums(L: int, pair: _Pair, positions, charges):
    """W_tuv(P) for a batch of pairs, in chunks of charges beyond _CHARGE_CHUNK: (n_hermite(L), n)."""
    n, n_c = pair.p.shape[0], positions.shape[0]
    if n_c <= _CHARGE_CHUNK:
        w = _hermite_coulomb_sum(L, pair.p, pair.center_p, positions, charges)
    else:
        n_chunks = -(-n_c // _CHARGE_CHUNK)
        pad = n_chunks * _CHARGE_CHUNK - n_c
        pos = jnp.concatenate([positions, jnp.zeros((pad, 3), positions.dtype)]).reshape(n_chunks, _CHARGE_CHUNK, 3)
        q = jnp.concatenate([charges, jnp.zeros((pad,), charges.dtype)]).reshape(n_chunks, _CHARGE_CHUNK)

        def body(acc, chunk):
            return acc + _hermite_coulomb_sum(L, pair.p, pair.center_p, *chunk), None

        w0 = jnp.zeros((len(hermite_indices(L)), n), pair.p.dtype)
        w, _ = jax.lax.scan(body, w0, (pos, q))
    return w


def _coulomb_kernel(la: int, lb: int, pair: _Pair, w, e=None):
    """-sum_C q_C <G_a| 1/|r - C| |G_b> (HJO section 9.9.3) from the sums W of :func:`_coulomb_sums`.

    ``e``: optionally ``(table, n_j)``, Hermite coefficients already computed for j < n_j (>= lb + 1)
    and t <= la + lb, flattened to (-1, n).
    """
    L = la + lb
    n = pair.p.shape[0]
    e, n_j = (_hermite_e(la, lb, pair, L).reshape(-1, n), lb + 1) if e is None else e
    # sum_tuv E^x_t E^y_u E^z_v W_tuv for every cartesian pair: rows of E picked by a static gather.
    picked = _take(e, _axis_rows(la, lb, n_j, L + 1, hermite=True))  # (3, cab, n_hermite, n)
    out = _sum(picked[0] * picked[1] * picked[2] * w[None], axis=1)  # (cab, n)
    return (out * ((-2.0 * jnp.pi) * pair.inv_p * pair.k_ab)[None])[None]


# ---------------------------------------------------------------------------------------------------
# Driver: kernel per class, contraction, cartesian -> AO, one gather.
# ---------------------------------------------------------------------------------------------------


def _symmetric_matrices(basis: Basis, coords, kernel, per_total_l=None):
    """(n_comp, nao, nao) symmetric one-electron matrices from a primitive-pair kernel.

    ``kernel(la, lb, pair)`` gives (n_comp, ncart(la) ncart(lb), n) primitive integrals. With
    ``per_total_l(L, pairs)``, that function is evaluated once for all classes with la + lb = L
    (contiguous in the plan) and ``kernel(la, lb, pair, shared)`` receives its columns.
    """
    plan = _plan(basis)
    n = plan.prim.shape[1]
    # All primitive pairs of all classes at once: two gathers and one set of Gaussian products
    # (each class then slices them), rather than a handful of small kernels per class.
    prim_data = jnp.stack([jnp.asarray(basis.exponents).reshape(-1), jnp.asarray(basis.coefficients).reshape(-1)])
    prim_data = _take(prim_data, plan.prim.reshape(-1), axis=1)  # (2, 2 n): exponent, coefficient
    centers = _take(jnp.asarray(coords).T, plan.atom.reshape(-1), axis=1)  # (3, 2 n)
    pairs = _Pair.make(prim_data[0, :n], prim_data[0, n:], centers[:, :n], centers[:, n:])
    weights = prim_data[1, :n] * prim_data[1, n:]
    blocks = []
    shared = {}
    if per_total_l is not None:
        for L in sorted({cp.la + cp.lb for cp in plan.classes}):
            group = [cp for cp in plan.classes if cp.la + cp.lb == L]
            start, stop = group[0].start, group[-1].stop
            shared[L] = (start, per_total_l(L, pairs[start:stop]))
    for cp in plan.classes:
        pair = pairs[cp.start : cp.stop]
        if per_total_l is None:
            prim = kernel(cp.la, cp.lb, pair)
        else:
            start, values = shared[cp.la + cp.lb]
            prim = kernel(cp.la, cp.lb, pair, values[..., cp.start - start : cp.stop - start])
        prim = prim * weights[None, None, cp.start : cp.stop]  # (n_comp, ca cb, n)
        picked = _take(prim, cp.contract_index, axis=2)  # (n_comp, ca cb, n_shell_pairs, width)
        if cp.contract_mask is not None:
            picked = picked * cp.contract_mask[None, None]
        cart = _sum(picked, axis=3)
        transform = np.kron(basis.transform(cp.la), basis.transform(cp.lb))  # (ca cb, fa fb)
        if transform.shape[0] == transform.shape[1] and np.array_equal(transform, np.diag(np.diag(transform))):
            ao = cart * np.diag(transform).reshape(1, -1, 1)
        else:
            ao = jnp.einsum("cf,kcs->kfs", transform, cart)
        blocks.append(ao.reshape(ao.shape[0], -1))
    values = blocks[0] if len(blocks) == 1 else jnp.concatenate(blocks, axis=1)  # (n_comp, n_values)
    return _take(values, plan.gather, axis=1)


@jax.jit
def overlap(basis: Basis, coords):
    """Overlap matrix S_mu,nu = <mu|nu> (dimensionless), as PySCF ``int1e_ovlp`` (``_cart``).

    Args:
      basis: the :class:`~basis.gto.Basis` (static structure, differentiable exponents/coefficients).
      coords: (n_atoms, 3) nuclear positions in bohr.

    Returns:
      (nao, nao) symmetric matrix in PySCF's AO order. HJO section 9.5.1.
    """
    return _symmetric_matrices(basis, coords, _overlap_kernel)[0]


@jax.jit
def kinetic(basis: Basis, coords):
    """Kinetic-energy matrix T_mu,nu = <mu| -1/2 nabla^2 |nu> (hartree), as PySCF ``int1e_kin``.

    Args:
      basis: the :class:`~basis.gto.Basis`.
      coords: (n_atoms, 3) nuclear positions in bohr.

    Returns:
      (nao, nao) symmetric matrix in PySCF's AO order. HJO section 9.3.4.
    """
    return _symmetric_matrices(basis, coords, _kinetic_kernel)[0]


@jax.jit
def point_charge_attraction(basis: Basis, coords, charge_positions, charges):
    """Attraction to point charges, V_mu,nu = -sum_C q_C <mu| 1/|r - R_C| |nu> (hartree).

    Equals ``-sum_C q_C mol.intor("int1e_rinv")`` with ``mol.set_rinv_orig(R_C)`` (an electron in
    the field of charges q_C, the sign of PySCF's QM/MM ``h1e``).

    Args:
      basis: the :class:`~basis.gto.Basis`.
      coords: (n_atoms, 3) nuclear positions (basis centres) in bohr.
      charge_positions: (n_charges, 3) positions R_C in bohr.
      charges: (n_charges,) charges q_C in units of e.

    Returns:
      (nao, nao) symmetric matrix in PySCF's AO order. HJO section 9.9.3.
    """
    coords = jnp.asarray(coords)
    charge_positions = jnp.asarray(charge_positions, dtype=coords.dtype).reshape(-1, 3)
    charges = jnp.asarray(charges, dtype=coords.dtype).reshape(-1)
    sums = functools.partial(_coulomb_sums, positions=charge_positions, charges=charges)
    return _symmetric_matrices(basis, coords, _coulomb_kernel, per_total_l=sums)[0]


@jax.jit
def nuclear_attraction(basis: Basis, coords, charges):
    """Electron-nuclear attraction V_mu,nu = -sum_A Z_A <mu| 1/|r - R_A| |nu> (hartree), ``int1e_nuc``.

    The nuclei sit at ``coords``, so ``jax.jacfwd`` with respect to ``coords`` gives the full
    derivative (basis-function and operator parts), as PySCF's ``hcore_generator`` assembles.

    Args:
      basis: the :class:`~basis.gto.Basis`.
      coords: (n_atoms, 3) nuclear positions in bohr.
      charges: (n_atoms,) nuclear charges Z_A (e.g. ``molecule.atomic_numbers``).

    Returns:
      (nao, nao) symmetric matrix in PySCF's AO order.
    """
    return point_charge_attraction(basis, coords, coords, charges)


@jax.jit
def dipole(basis: Basis, coords, origin=(0.0, 0.0, 0.0)):
    """Dipole integrals <mu| r - O |nu> (bohr), as PySCF ``int1e_r`` with ``mol.set_common_orig(O)``.

    The electronic dipole moment of a density matrix D is ``-einsum("xij,ji->x", dipole, D)``.

    Args:
      basis: the :class:`~basis.gto.Basis`.
      coords: (n_atoms, 3) nuclear positions in bohr.
      origin: (3,) gauge origin O in bohr.

    Returns:
      (3, nao, nao): x, y, z components, each symmetric. HJO sections 9.3.3 and 9.5.3.
    """
    coords = jnp.asarray(coords)
    origin = jnp.asarray(origin, dtype=coords.dtype).reshape(3)
    return _symmetric_matrices(basis, coords, functools.partial(_dipole_kernel, origin=origin))


class CoreIntegrals(NamedTuple):
    """The one-electron matrices of :func:`core_integrals` (PySCF AO order)."""

    overlap: jax.Array  # (nao, nao), as overlap()
    kinetic: jax.Array  # (nao, nao), hartree, as kinetic()
    attraction: jax.Array  # (nao, nao), hartree, as point_charge_attraction()
    dipole: jax.Array  # (3, nao, nao), bohr, as dipole()


@jax.jit
def core_integrals(basis: Basis, coords, charge_positions, charges, origin=(0.0, 0.0, 0.0)) -> CoreIntegrals:
    """Overlap, kinetic, point-charge attraction and dipole integrals in one pass.

    Equal to :func:`overlap`, :func:`kinetic`, :func:`point_charge_attraction` and :func:`dipole`
    (to rounding), sharing the Gaussian products, the Hermite coefficients, the contraction and the
    AO gather of every class: what a Kohn-Sham system build needs, in about a third of the compiled
    kernels of the four separate calls. Same arguments as those functions (bohr, units of e).
    """
    coords = jnp.asarray(coords)
    charge_positions = jnp.asarray(charge_positions, dtype=coords.dtype).reshape(-1, 3)
    charges = jnp.asarray(charges, dtype=coords.dtype).reshape(-1)
    origin = jnp.asarray(origin, dtype=coords.dtype).reshape(3)
    sums = functools.partial(_coulomb_sums, positions=charge_positions, charges=charges)
    kernel = functools.partial(_core_kernel, origin=origin)
    out = _symmetric_matrices(basis, coords, kernel, per_total_l=sums)
    return CoreIntegrals(out[0], out[1], out[2], out[3:])
