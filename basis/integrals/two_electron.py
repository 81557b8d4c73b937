"""Electron-repulsion integrals over contracted Gaussians (McMurchie-Davidson), in pure JAX.

Three functions, in PySCF's AO order and normalisation (see :mod:`basis.gto`), chemists' notation:

* :func:`electron_repulsion` ``(ab|cd)``, ``(nao, nao, nao, nao)``: PySCF ``mol.intor("int2e")``;
* :func:`coulomb_2c` ``(P|Q)``, ``(naux, naux)``: ``auxmol.intor("int2c2e")``;
* :func:`coulomb_3c` ``(ab|P)``, ``(nao, nao, naux)``: ``pyscf.df.incore.aux_e2(mol, auxmol)``.

Every function is jitted and takes :class:`~basis.gto.Basis` pytrees (exponents and coefficients are
differentiable leaves, the shell structure is static and keys the compilation cache) and nuclear
``coords`` (n_atoms, 3) in bohr, so it compiles once per basis structure, ``vmap``\\ s over
geometries and differentiates with ``jax.jacfwd``/``jax.grad`` w.r.t. ``coords`` and the exponents.

Equations (Helgaker, Jorgensen, Olsen, "Molecular Electronic-Structure Theory" (2000), HJO below).
A product of primitives on A and B (exponents a, b; p = a + b, P = (aA + bB)/p) is a sum of Hermite
Gaussians, ``G_a G_b = K_AB sum_{tuv} E^{ab}_{tuv} Lambda_{tuv}(r_P; p)`` (HJO eq. 9.5.6-9.5.7, with
K_AB = exp(-ab/p |A - B|^2) kept outside E). Two Hermite distributions interact as (HJO eq. 9.9.33)

    (ab|cd) = 2 pi^{5/2} / (p q sqrt(p + q)) K_AB K_CD
              sum_{tuv} E^{ab}_{tuv} sum_{tau nu phi} (-1)^{tau + nu + phi} E^{cd}_{tau nu phi}
              R_{t + tau, u + nu, v + phi}(alpha, P - Q),          alpha = p q / (p + q),

with the Hermite Coulomb integrals R of HJO eq. 9.9.18-9.9.20 and the Boys function (HJO 9.8). A
three-centre integral (ab|P) has a single Gaussian on the ket (q = c, Q = C, the E coefficients of
a one-centre "product"), and (P|Q) has single Gaussians on both sides. For a *spherical*
single-centre function only the Hermite terms of order exactly l survive (Hobson's theorem,
``S_lm(r_C) exp(-c r_C^2) = (2c)^{-l} S_lm(d/dC) exp(-c r_C^2)``), so the auxiliary functions' E
coefficients are a static matrix times ``(2c)^{-l}``.

Range separation (``omega``, a static float, for range-separated hybrids such as CAM-B3LYP and
wB97X): the long-range operator erf(w r12)/r12 (w > 0) is the potential of a normalised Gaussian
charge of exponent w^2, so its integrals are Coulomb integrals with alpha replaced by
``alpha_w = alpha w^2 / (alpha + w^2)`` (in F_n and in the factors (-2 alpha)^n of the R recursion)
and the result multiplied by ``sqrt(alpha_w / alpha)`` (P. M. W. Gill and R. D. Adamson, Chem.
Phys. Lett. 261, 105 (1996); R. Ahlrichs, Phys. Chem. Chem. Phys. 8, 3072 (2006)). The short-range
erfc(w r12)/r12 (omega = -w < 0, PySCF's convention) is 1/r12 minus it, subtracted on the seeds of
the recursion (:func:`~basis.integrals._md_coulomb.coulomb_seeds`). omega = 0 compiles to the
plain Coulomb program.

Vectorisation (all static, decided once per basis structure). XLA's compile time grows with the
number of distinct array operations, not with their size, so the program is organised by angular
momentum only, never by shell or by contraction length:

* a *kind* is all unique shell pairs (a >= b) with angular momenta (la, lb), every primitive pair
  laid out flat (no padding). Its E coefficients come from a closed form (a static linear map of
  the monomials X_PA^a X_PB^b (2p)^-m, ``_eri_plans.pair_hermite_tables``), already multiplied by
  the primitive coefficients and K_AB and transformed to AOs (``basis.transform``), so primitives
  are summed early: right after the Hermite contraction, by one sorted segment sum per kind;
* auxiliary shells of one l form one kind too; their primitives are summed directly on the R
  integrals (runs of equal contraction length: reshape + sum), their Hermite sum is a product with
  a static matrix;
* a *block* couples a bra kind with a ket kind; the primitive quartets of all blocks are sorted by
  total order L and share one vectorised R recursion (``_md_coulomb.hermite_coulomb_sorted``,
  batched to bound memory), the Coulomb prefactor and auxiliary weights riding on its seeds. The ket half of
  eq. 9.9.33 is a row gather of R and one matrix product per block, the bra half one batched
  product for all kets of a bra kind; blocks run one after the other (:func:`_after`) so that
  their intermediates do not coexist;
* four-centre blocks are computed for bra kind >= ket kind only and filled by
  (ab|cd) = (cd|ab) = (ba|cd) = ... (exactly symmetric results); outputs are assembled by
  concatenation and one static row gather per axis into PySCF's order, not by scatters.

Cost (2 CPU cores, warm, against libcint via PySCF in the same process): (ab|P) 1.2-1.9x libcint's
time for water, benzene and n-hexane in def2-SVP/TZVP (0.23 s vs 0.12 s for benzene def2-SVP), (P|Q)
and (ab|cd) on par; compiling takes 2-9 s per basis structure for (ab|P), 3-17 s for (ab|cd).

>>> from basis.molecule import make_molecule
>>> from basis.gto import make_auxbasis, make_basis
>>> mol = make_molecule("O 0 0 0; H 0 0.757 0.587; H 0 -0.757 0.587")
>>> basis, aux = make_basis(mol, "def2-svp"), make_auxbasis(mol, "def2-svp")
>>> coulomb_3c(basis, aux, mol.coords).shape
(24, 24, 113)
>>> k_long_range_eri = electron_repulsion(basis, mol.coords, omega=0.33)  # erf(0.33 r12) / r12

Modules: static plans (shell-pair kinds, AO order, Hermite tables) in
:mod:`basis.integrals._eri_plans`, the Boys function and R recursion in
:mod:`basis.integrals._md_coulomb`; the densities, contractions and public functions here.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from basis.gto import Basis
from basis.integrals._eri_plans import (
    AuxPlan,
    CentreKind,
    OrbitalPlan,
    function_order,
    make_aux_plan,
    make_orbital_plan,
    pair_hermite_tables,
)
from basis.integrals._hermite import gaussian_product, hermite_indices
from basis.integrals._md_coulomb import (
    concat,
    gather_rows,
    hermite_coulomb_sorted,
    n_hermite,
    recursion_cost,
    recursion_level,
)

__all__ = ["electron_repulsion", "coulomb_2c", "coulomb_3c"]

# Largest intermediate of one block (float64 elements); bigger blocks are split along bra shells.
_BLOCK_ELEMENTS = 1 << 25
# Largest batch of one vectorised R recursion (sum over quartets of its intermediate sizes).
_BATCH_ELEMENTS = 1 << 26
# Per-quartet arrays besides the recursion levels (geometry, Boys function, seeds).
_PER_QUARTET = 24

_COULOMB_PREFACTOR = 2.0 * math.pi**2.5


# ---------------------------------------------------------------------------------------------------
# Hermite densities: the charge distributions on either side of 1/r12, per primitive.
# ---------------------------------------------------------------------------------------------------


class _Density(NamedTuple):
    """Primitive Hermite distributions with explicit coefficients (bra or ket of a block).

    exponent: (n,) total exponent p of each primitive distribution.
    center: (n, 3) centre P (bohr).
    coeffs: (n, H, F) Hermite coefficients times primitive coefficients, K_AB and the AO transform;
      F functions per distribution (fa * fb for a pair, ordered fa major).
    hermite: static (H, 3) Hermite indices (t, u, v) of the rows of ``coeffs``.
    segment: static (n,) sorted index of the contracted distribution (shell pair or shell).
    n_segments: static number of contracted distributions.
    """

    exponent: jax.Array
    center: jax.Array
    coeffs: jax.Array
    hermite: np.ndarray
    segment: np.ndarray
    n_segments: int


class _CentreDensity(NamedTuple):
    """Primitive single Gaussians of one auxiliary kind, with factorised Hermite coefficients.

    exponent: (n,); center: (n, 3); weights: per entry of ``kind.levels``, (n,) factors
    c_p (2 exponent)^{-(l + lam)/2} (primitive coefficient c_p); kind: the static :class:`CentreKind`.
    """

    exponent: jax.Array
    center: jax.Array
    weights: tuple
    kind: CentreKind


def _powers(x, n: int):
    """(..., n + 1) powers x^0 .. x^n."""
    out = [jnp.ones_like(x)]
    for _ in range(n):
        out.append(out[-1] * x)
    return jnp.stack(out, axis=-1)


def _pair_densities(basis: Basis, plan: OrbitalPlan, coords) -> list[_Density]:
    """Hermite distributions of the primitive pairs of every unique shell pair, one per kind.

    ``coeffs[n, h, (fa, fb)] = c_a c_b K_AB sum_{ca, cb} E^{ca cb}_h T^a_{ca fa} T^b_{cb fb}`` with the
    AO transforms T (``basis.transform``; a scalar for l <= 1).
    """
    params = jnp.stack([jnp.asarray(basis.exponents), jnp.asarray(basis.coefficients)], axis=-1)
    centers = basis.shell_centers(jnp.asarray(coords))
    out = []
    for kind in plan.kinds:
        la, lb = kind.la, kind.lb
        a = kind.a_shell[kind.segment]
        b = kind.b_shell[kind.segment]
        param_a, param_b = params[a, kind.a_prim], params[b, kind.b_prim]
        p, center_p, pa, pb, k_ab = gaussian_product(param_a[:, 0], param_b[:, 0], centers[a], centers[b])
        table, index = pair_hermite_tables(la, lb)
        n = p.shape[0]
        monomials = (
            _powers(pa, la)[:, :, :, None, None]
            * _powers(pb, lb)[:, :, None, :, None]
            * _powers(0.5 / p, la + lb)[:, None, None, None, :]
        ).reshape(n, 3, -1)
        e1 = monomials @ table  # (n, 3, (la+1)(lb+1)nt): E^{ij}_t per axis
        weight = param_a[:, 1] * param_b[:, 1] * k_ab
        ta, tb = basis.transform(la), basis.transform(lb)
        scalar = la <= 1 and lb <= 1  # transforms are multiples of the identity
        if scalar:
            weight = weight * (ta[0, 0] * tb[0, 0])
        e3 = weight[:, None, None, None] * e1[:, 0, index[0]] * e1[:, 1, index[1]] * e1[:, 2, index[2]]
        if scalar:
            coeffs = e3.reshape(n, index.shape[1], -1)
        else:
            transform = np.einsum("xf,yg->xyfg", ta, tb).reshape(ta.shape[0] * tb.shape[0], -1)
            coeffs = e3.reshape(n, index.shape[1], -1) @ transform
        out.append(_Density(p, center_p, coeffs, hermite_indices(la + lb), kind.segment, len(kind.a_shell)))
    return out


def _centre_densities(basis: Basis, plan: AuxPlan, coords) -> list[_CentreDensity]:
    """Primitive single Gaussians of every auxiliary kind."""
    exponents = jnp.asarray(basis.exponents)
    coefficients = jnp.asarray(basis.coefficients)
    centers = basis.shell_centers(jnp.asarray(coords))
    out = []
    for kind in plan.kinds:
        exponent = exponents[kind.prim_shell, kind.prim]
        coefficient = coefficients[kind.prim_shell, kind.prim]
        half_inv = 0.5 / exponent
        weights = tuple(coefficient * half_inv ** ((kind.l + lam) // 2) for lam, _, _ in kind.levels)
        out.append(_CentreDensity(exponent, centers[kind.prim_shell], weights, kind))
    return out


def _split(density: _Density, max_items: int) -> list[_Density]:
    """Pieces of at most ~max_items primitives, cut between contracted distributions."""
    n = density.exponent.shape[0]
    if n <= max_items:
        return [density]
    seg = density.segment
    starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])  # first primitive of each segment
    ends = np.r_[starts[1:], n]
    cuts = []
    for start, end in zip(starts, ends):
        if end - (cuts[-1] if cuts else 0) > max_items and start > (cuts[-1] if cuts else 0):
            cuts.append(int(start))
    pieces, begin = [], 0
    for end in cuts + [n]:
        s0, s1 = int(seg[begin]), int(seg[end - 1]) + 1
        pieces.append(
            _Density(
                density.exponent[begin:end], density.center[begin:end], density.coeffs[begin:end],
                density.hermite, seg[begin:end] - s0, s1 - s0,
            )
        )
        begin = end
    return pieces


def _quartet_inputs(bra, kets):
    """alpha = pq / (p + q), the seed factor and P - Q of all primitive quartets, ket major.

    The seed factor is the prefactor 2 pi^{5/2} / (p q sqrt(p + q)) of eq. 9.9.33 times the
    weights of single-Gaussian distributions (:func:`_folded`). Returns five flat
    (n_ket_total * n_bra,) arrays: alpha, factor, and the x, y, z components of P - Q.
    """
    q = concat([k.exponent for k in kets], axis=0)[:, None]
    center_q = concat([k.center for k in kets], axis=0)
    p = bra.exponent[None, :]
    pq, total = p * q, p + q
    scale = _COULOMB_PREFACTOR / (pq * jnp.sqrt(total))
    if _folded(bra) is not None:
        scale = scale * _folded(bra)[None, :]
    folded = [_folded(k) for k in kets]
    if any(w is not None for w in folded):
        w = concat([jnp.ones_like(k.exponent) if f is None else f for k, f in zip(kets, folded)], axis=0)
        scale = scale * w[:, None]
    rpq = [(bra.center[None, :, x] - center_q[:, None, x]).reshape(-1) for x in range(3)]
    return ((pq / total).reshape(-1), scale.reshape(-1), *rpq)


# ---------------------------------------------------------------------------------------------------
# Contractions: the Hermite sums of eq. 9.9.33 for one bra kind and one ket kind.
# ---------------------------------------------------------------------------------------------------


def _folded(density):
    """The weights folded into the R seeds: a single-level one-centre density's, else None."""
    if isinstance(density, _CentreDensity) and len(density.kind.levels) == 1:
        return density.weights[0]
    return None


def _order(density) -> int:
    if isinstance(density, _CentreDensity):
        return max(lam for lam, _, _ in density.kind.levels)
    return int(density.hermite.sum(axis=1).max())


def _reduce_runs(x, runs, axis: int):
    """Sum primitives into shells along ``axis``, for runs ``(n_shells, nprim)`` of equal length."""
    if all(nprim == 1 for _, nprim in runs):
        return x
    pieces, start = [], 0
    for n_shells, nprim in runs:
        piece = jax.lax.slice_in_dim(x, start, start + n_shells * nprim, axis=axis)
        if nprim > 1:
            shape = piece.shape[:axis] + (n_shells, nprim) + piece.shape[axis + 1 :]
            piece = piece.reshape(shape).sum(axis=axis + 1)
        pieces.append(piece)
        start += n_shells * nprim
    return concat(pieces, axis=axis)


def _level_weights(density, level: int):
    """Weights to apply after R: None when they were folded into the seeds."""
    return None if _folded(density) is not None else density.weights[level]


def _contract_pair_centre(r, L: int, bra: _Density, ket: _CentreDensity):
    """(n_i, H1, G * T): the ket half of eq. 9.9.33 for contracted auxiliary shells of one l.

    ``W_{h1, (g, T)} = sum_{h2} (-1)^{|h2|} M_{h2 g} sum_{j in T} w_j R_{h1 + h2}``: the auxiliary
    primitives are summed on R itself (their Hermite coefficients are w_j times a static matrix M),
    then one product with M. The bra half is :func:`_contracted_rows`.
    """
    n_i, n_j = bra.exponent.shape[0], ket.exponent.shape[0]
    position = recursion_level(L)[4]
    r = r.reshape(r.shape[0], n_j, n_i)
    x = 0.0
    for level, (lam, herm2, matrix) in enumerate(ket.kind.levels):
        weight = _level_weights(ket, level)
        rw = _reduce_runs(r if weight is None else r * weight[None, :, None], ket.kind.runs, axis=1)
        idx = np.array([[position[tuple(int(a) for a in h2 + h1)] for h1 in bra.hermite] for h2 in herm2])
        rg = gather_rows(rw, idx.ravel()).reshape(idx.shape + rw.shape[1:])  # (h2, H1, T, n_i)
        x = x + jnp.einsum("hg,hitn->nigt", matrix * (-1.0) ** lam, rg)
    return x.reshape(n_i, x.shape[1], -1)


def _contract_pair_pair(r, L: int, bra: _Density, ket: _Density):
    """(n_i, H1, T * G): the ket half of eq. 9.9.33 for contracted ket pair distributions.

    ``W_{h1, (T, g)} = sum_{j in T} sum_{h2} (-1)^{|h2|} E^{cd}_{j h2 g} R_{h1 + h2}``: R is laid
    out quartet-major so that the product is batched over ket primitives without a transpose of the
    (larger) gathered R, then ket primitives are summed into shell pairs.
    """
    n_i, n_h1, _ = bra.coeffs.shape
    n_j, n_h2, _ = ket.coeffs.shape
    position = recursion_level(L)[4]
    idx = np.array([[position[tuple(int(a) for a in h1 + h2)] for h2 in ket.hermite] for h1 in bra.hermite])
    rg = jnp.take(r.T.reshape(n_j, n_i, -1), idx.ravel(), axis=2, mode="clip").reshape(n_j, n_i, n_h1, n_h2)
    sign = (-1.0) ** ket.hermite.sum(axis=1)
    x = jnp.einsum("mnih,mhg->mnig", rg, ket.coeffs * sign[None, :, None])  # (n_j, n_i, H1, G)
    x = _segment_sum(x, ket)  # (T, n_i, H1, G)
    return jnp.transpose(x, (1, 2, 0, 3)).reshape(n_i, n_h1, -1)


def _contract_centre_centre(r, L: int, bra: _CentreDensity, ket: _CentreDensity):
    """(T1, F, T2, G): contracted auxiliary shells x contracted auxiliary shells.

    Both sides have static Hermite coefficients M (times weights), so the whole Hermite sum is one
    product with the static matrix A[r, f, g] = sum_{h1 + h2 = r} M1_{h1 f} (-1)^{|h2|} M2_{h2 g}.
    """
    n_i, n_j = bra.exponent.shape[0], ket.exponent.shape[0]
    position = recursion_level(L)[4]
    r = r.reshape(r.shape[0], n_j, n_i)
    out = 0.0
    for level1, (_, herm1, matrix1) in enumerate(bra.kind.levels):
        for level2, (lam2, herm2, matrix2) in enumerate(ket.kind.levels):
            w1, w2 = _level_weights(bra, level1), _level_weights(ket, level2)
            rw = r if w1 is None else r * w1[None, None, :]
            rw = rw if w2 is None else rw * w2[None, :, None]
            rw = _reduce_runs(_reduce_runs(rw, bra.kind.runs, axis=2), ket.kind.runs, axis=1)
            a = np.zeros((r.shape[0], matrix1.shape[1], matrix2.shape[1]))
            for h1, row1 in zip(herm1, matrix1):
                for h2, row2 in zip(herm2, matrix2):
                    a[position[tuple(int(v) for v in h1 + h2)]] += np.outer(row1, row2) * (-1.0) ** lam2
            out = out + jnp.einsum("rfg,rts->sftg", a, rw)
    return out


def _segment_sum(x, density: _Density):
    return jax.ops.segment_sum(x, density.segment, density.n_segments, indices_are_sorted=True)


_CONTRACTIONS = {
    (_Density, _CentreDensity): _contract_pair_centre,
    (_Density, _Density): _contract_pair_pair,
    (_CentreDensity, _CentreDensity): _contract_centre_centre,
}


def _per_bra_item(bra, ket) -> int:
    """Elements of the largest intermediate of a block, per bra primitive."""
    n_j = ket.exponent.shape[0]
    L = _order(bra) + _order(ket)
    if isinstance(ket, _CentreDensity):
        n_h2 = sum(len(h) for _, h, _ in ket.kind.levels)
        return n_j * max(n_hermite(L), len(bra.hermite) * n_h2 if isinstance(bra, _Density) else 0)
    return n_j * len(bra.hermite) * max(len(ket.hermite), ket.coeffs.shape[2])


def _evaluate(jobs, finish, omega: float):
    """Integrals for ``jobs = [(bra, [ket, ...]), ...]``.

    Bras that are :class:`_Density` are split (between contracted distributions) so that no block's
    intermediates exceed ``_BLOCK_ELEMENTS``. The quartets of whole pieces are batched (up to
    ``_BATCH_ELEMENTS`` of recursion intermediates), sorted by L with one static gather (each
    (piece, ket) block is a run of equal L, so the sort moves runs), and share one R recursion per
    batch (:func:`~basis.integrals._md_coulomb.hermite_coulomb_sorted`). Batches, and the blocks
    of a batch, run one after the other (:func:`_after`), so that memory holds the R integrals of
    one batch and the intermediates of one block at a time.

    Args:
      jobs: ``[(bra, [ket, ...]), ...]``.
      finish: ``finish(bra_piece, [per-ket contraction, ...]) -> array``, applied per piece as
        soon as its batch is done.
      omega: static range-separation parameter (:func:`~basis.integrals._md_coulomb.hermite_coulomb_sorted`).

    Returns:
      Per job, the list of ``finish`` results of its pieces (in order).
    """
    pieces = []
    for j, (bra, kets) in enumerate(jobs):
        if isinstance(bra, _Density):
            per_item = sum(_per_bra_item(bra, ket) for ket in kets)
            for piece in _split(bra, max(1, _BLOCK_ELEMENTS // per_item)):
                pieces.append((j, piece, kets))
        else:
            pieces.append((j, bra, kets))
    runs = []  # per piece: (L, n_quartets) of each ket, in the (ket major) order of the quartets
    for _, bra, kets in pieces:
        runs.append([(_order(bra) + _order(ket), ket.exponent.shape[0] * bra.exponent.shape[0]) for ket in kets])
    batches, current, cost = [], [], 0
    for p, piece_runs in enumerate(runs):
        extra = sum(n * (recursion_cost(L) + _PER_QUARTET) for L, n in piece_runs)
        if current and cost + extra > _BATCH_ELEMENTS:
            batches.append(current)
            current, cost = [], 0
        current.append(p)
        cost += extra
    batches.append(current)
    finished: list = [None] * len(pieces)
    done = None  # results of the previous batch
    for batch in batches:
        inputs = [_quartet_inputs(pieces[p][1], pieces[p][2]) for p in batch]
        arrays = [concat([x[c] for x in inputs], axis=0) for c in range(5)]
        if done is not None:
            arrays = [_after(x, done) for x in arrays]
        batch_runs = [(L, n, p, k) for p in batch for k, (L, n) in enumerate(runs[p])]
        starts = np.cumsum([0] + [n for _, n, _, _ in batch_runs])
        order = sorted(range(len(batch_runs)), key=lambda i: -batch_runs[i][0])  # stable
        if order != sorted(order):  # sort the quartets by L with one static gather
            perm = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in order])
            arrays = [jnp.take(x, perm, mode="clip") for x in arrays]
        depths = hermite_coulomb_sorted([batch_runs[i][:2] for i in order], arrays[0], arrays[1], arrays[2:], omega)
        column = dict(zip(order, np.cumsum([0] + [batch_runs[i][1] for i in order])))  # first column
        for i, (L, n, p, k) in enumerate(batch_runs):
            _, bra, kets = pieces[p]
            r = depths[L][:, column[i] : column[i] + n]
            if done is not None:  # one block after the other: their intermediates never coexist
                r = _after(r, done)
            done = _CONTRACTIONS[(type(bra), type(kets[k]))](r, L, bra, kets[k])
            if k == 0:
                halves = []
            halves.append(done)
            if k == len(kets) - 1:
                finished[p] = done = finish(bra, halves)
    out: list[list] = [[] for _ in jobs]
    for (j, _, _), result in zip(pieces, finished):
        out[j].append(result)
    return out


def _after(x, previous):
    """x, made to depend on ``previous``: XLA then schedules everything reading x after it.

    XLA drops optimization barriers on CPU before scheduling and its scheduler may otherwise start
    all blocks at once, keeping all their intermediates alive; ``0 * v`` is not simplified for
    floats (it is NaN for v = inf), so this data dependence survives, at the cost of a fused add.
    """
    return x + 0.0 * previous.reshape(-1)[0]


def _contracted_rows(jobs, omega: float):
    """Integrals of jobs with :class:`_Density` bras: per job, (S, F, columns of all its kets).

    The bra half of eq. 9.9.33, ``sum_{h1} E^{ab}_{n h1 f} W_{n h1 c}``, is one product batched over
    bra primitives n for all kets of a piece at once, then bra primitives are summed into shell
    pairs (one sorted segment sum).
    """

    def finish(bra, halves):
        return _segment_sum(jnp.einsum("nif,nic->nfc", bra.coeffs, concat(halves, axis=2)), bra)

    return [concat(r, axis=0) for r in _evaluate(jobs, finish, omega)]


def _symmetric_from_rows(rows, widths):
    """Exactly symmetric matrix from its block-lower-triangular rows.

    ``rows[i]`` is (n_i, sum_{j <= i} widths[j]) holding blocks (i, j), j <= i; block (i, j) for
    j > i is block (j, i) transposed.
    """
    offsets = np.concatenate([[0], np.cumsum(widths)])
    full = []
    for i, row in enumerate(rows):
        upper = [rows[j][:, offsets[i] : offsets[i + 1]].T for j in range(i + 1, len(rows))]
        full.append(concat([row] + upper, axis=1))
    full = concat(full, axis=0)
    # Diagonal blocks hold both (x|y) and (y|x), equal up to rounding: keep one, so that the
    # result is exactly symmetric.
    n = full.shape[0]
    lower = jax.lax.broadcasted_iota(jnp.int32, (n, n), 0) >= jax.lax.broadcasted_iota(jnp.int32, (n, n), 1)
    return jnp.where(lower, full, full.T)


# ---------------------------------------------------------------------------------------------------
# Public functions.
# ---------------------------------------------------------------------------------------------------


def _check_omega(omega) -> float:
    """omega as a Python float; ValueError unless it is a finite real number."""
    try:
        value = float(omega)
    except (TypeError, ValueError):
        raise ValueError(f"omega must be a finite real number (0 for 1/r12), got {omega!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"omega must be a finite real number (0 for 1/r12), got {omega!r}")
    return value


@functools.partial(jax.jit, static_argnames="omega")
def electron_repulsion(basis: Basis, coords, *, omega: float = 0.0) -> jax.Array:
    """Four-centre electron-repulsion integrals (ab|cd) in hartree (PySCF ``int2e``).

    ``(ab|cd) = int int phi_a(r1) phi_b(r1) phi_c(r2) phi_d(r2) / |r1 - r2| dr1 dr2`` (chemists'
    notation) by HJO eq. 9.9.33, for unique shell pairs and pair kinds (bra kind >= ket kind); the
    full tensor follows from the 8-fold permutational symmetry. Memory: the result has nao^4
    float64 elements (1.35 GB for nao = 114, benzene def2-SVP); intermediates peak at about as much
    again (1.3 GB there). With ``omega``, the same for erf(omega r12)/r12 (erfc for omega < 0).

    Args:
      basis: orbital :class:`~basis.gto.Basis`.
      coords: (n_atoms, 3) nuclear positions in bohr.
      omega: range-separation parameter in 1/bohr (a static Python float; each value compiles
        once): 0 for the full Coulomb operator 1/r12, omega > 0 for the long-range part
        erf(omega r12)/r12, omega < 0 for the short-range part erfc(|omega| r12)/r12, as PySCF's
        ``mol.with_range_coulomb(omega)``.

    Returns:
      (nao, nao, nao, nao) array in PySCF's AO order.
    """
    omega = _check_omega(omega)
    plan = make_orbital_plan(basis)
    densities = _pair_densities(basis, plan, coords)
    rows = _contracted_rows([(bra, densities[: i + 1]) for i, bra in enumerate(densities)], omega)
    rows = [r.reshape(r.shape[0] * r.shape[1], -1) for r in rows]
    unique = _symmetric_from_rows(rows, [r.shape[0] for r in rows])  # (n_rows, n_rows), pair functions
    full = jnp.take(gather_rows(unique, plan.row_map), plan.row_map, axis=1, mode="clip")
    nao = plan.nao
    return full.reshape(nao, nao, nao, nao)


@functools.partial(jax.jit, static_argnames="omega")
def coulomb_3c(basis: Basis, auxbasis: Basis, coords, *, omega: float = 0.0) -> jax.Array:
    """Three-centre Coulomb integrals (ab|P) in hartree (PySCF ``int3c2e``, ``df.incore.aux_e2``).

    ``(ab|P) = int int phi_a(r1) phi_b(r1) chi_P(r2) / |r1 - r2| dr1 dr2``: HJO eq. 9.9.33 with a single
    Gaussian as ket, computed for unique shell pairs a >= b. Intermediates peak at 1.5-3 times the
    output (0.7 GB for n-hexane def2-TZVP, 270 x 270 x 702).

    Args:
      basis: orbital :class:`~basis.gto.Basis`.
      auxbasis: auxiliary (fitting) basis on the same atoms, e.g. from
        :func:`basis.gto.make_auxbasis`.
      coords: (n_atoms, 3) nuclear positions in bohr.
      omega: range-separation parameter in 1/bohr (a static Python float; each value compiles
        once): 0 for the full Coulomb operator 1/r12, omega > 0 for the long-range part
        erf(omega r12)/r12, omega < 0 for the short-range part erfc(|omega| r12)/r12, as PySCF's
        ``mol.with_range_coulomb(omega)``.

    Returns:
      (nao, nao, naux) array in PySCF's AO order.
    """
    omega = _check_omega(omega)
    plan, aux_plan = make_orbital_plan(basis), make_aux_plan(auxbasis)
    pairs = _pair_densities(basis, plan, coords)
    centres = _centre_densities(auxbasis, aux_plan, coords)
    rows = _contracted_rows([(bra, centres) for bra in pairs], omega)  # (S, F, naux) each
    unique = concat([r.reshape(r.shape[0] * r.shape[1], -1) for r in rows], axis=0)
    # columns are (aux kind, function, shell); PySCF's order by one static permutation
    order = np.concatenate([function_order(auxbasis, k, shell_major=False) for k in aux_plan.kinds])
    unique = jnp.take(unique, np.argsort(order), axis=1, mode="clip")
    nao = plan.nao
    return gather_rows(unique, plan.row_map).reshape(nao, nao, aux_plan.naux)


@functools.partial(jax.jit, static_argnames="omega")
def coulomb_2c(auxbasis: Basis, coords, *, omega: float = 0.0) -> jax.Array:
    """Two-centre Coulomb integrals (P|Q) in hartree (PySCF ``int2c2e``), the density-fitting metric.

    ``(P|Q) = int int chi_P(r1) chi_Q(r2) / |r1 - r2| dr1 dr2``: HJO eq. 9.9.33 with single Gaussians
    on both sides, for kind pairs l_P >= l_Q, the rest by symmetry.

    Args:
      auxbasis: auxiliary :class:`~basis.gto.Basis`.
      coords: (n_atoms, 3) nuclear positions in bohr.
      omega: range-separation parameter in 1/bohr (a static Python float; each value compiles
        once): 0 for the full Coulomb operator 1/r12, omega > 0 for the long-range part
        erf(omega r12)/r12, omega < 0 for the short-range part erfc(|omega| r12)/r12, as PySCF's
        ``mol.with_range_coulomb(omega)``.

    Returns:
      (naux, naux) array in PySCF's AO order.
    """
    omega = _check_omega(omega)
    aux_plan = make_aux_plan(auxbasis)
    centres = _centre_densities(auxbasis, aux_plan, coords)

    def finish(bra, blocks):  # (T1, F, T2, G) per ket kind
        return concat([b.reshape(b.shape[0] * b.shape[1], -1) for b in blocks], axis=1)

    rows = [r[0] for r in _evaluate([(bra, centres[: i + 1]) for i, bra in enumerate(centres)], finish, omega)]
    grouped = _symmetric_from_rows(rows, [r.shape[0] for r in rows])
    inverse = np.argsort(np.concatenate([function_order(auxbasis, k, shell_major=True) for k in aux_plan.kinds]))
    return jnp.take(gather_rows(grouped, inverse), inverse, axis=1, mode="clip")
