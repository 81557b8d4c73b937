"""Static plans of the two-electron integrals: kinds of shell pairs and auxiliary shells.

Everything here is NumPy on the static shell structure of a :class:`~basis.gto.Basis` (angular
momenta, contraction lengths, AO offsets), cached per structure: which primitive pairs form each
kind (:class:`PairKind`, :class:`CentreKind`), where each computed AO pair or auxiliary function
goes in PySCF's order, and the static Hermite-expansion tables (HJO eq. 9.5.6-9.5.7, see
:mod:`basis.integrals.two_electron`) that turn primitive geometry into E coefficients.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from basis.gto import Basis, cartesian_powers
from basis.integrals._hermite import hermite_indices


@dataclasses.dataclass(frozen=True, eq=False)
class PairKind:
    """All unique shell pairs with angular momenta (la, lb), la >= lb, and their primitive pairs.

    Attributes:
      a_shell, b_shell: (n_pairs,) shell indices (a >= b in basis order when la == lb).
      a_prim, b_prim: (n_prim_pairs,) primitive indices; primitive pairs are grouped by shell pair.
      segment: (n_prim_pairs,) index of the shell pair of each primitive pair (sorted).
    """

    la: int
    lb: int
    a_shell: np.ndarray
    b_shell: np.ndarray
    a_prim: np.ndarray
    b_prim: np.ndarray
    segment: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class OrbitalPlan:
    """Pair kinds, and where each AO pair lives in the list of unique pair functions.

    Unique pair functions are the (pair, fa, fb) of every pair of every kind, in kind order;
    ``row_map[mu * nao + nu]`` is the row holding AO pair (mu, nu) or, by symmetry, (nu, mu).
    """

    kinds: tuple[PairKind, ...]
    row_map: np.ndarray
    nao: int


@dataclasses.dataclass(frozen=True, eq=False)
class CentreKind:
    """Auxiliary shells of one angular momentum l.

    Attributes:
      shells: (n_shells,) shell indices, ordered by contraction length.
      runs: ``(n_shells, nprim)`` runs of consecutive shells of equal contraction length.
      prim_shell, prim: (n_prims,) shell and primitive index of every primitive, shell-major.
      segment: (n_prims,) position in ``shells`` of each primitive's shell.
      levels: per Hermite order lam present, ``(lam, hermite (h, 3), matrix (h, n_functions))``;
        the coefficients at exponent c are ``matrix * (2c)^{-(l + lam)/2}`` (:func:`one_centre_levels`).
    """

    l: int
    shells: np.ndarray
    runs: tuple[tuple[int, int], ...]
    prim_shell: np.ndarray
    prim: np.ndarray
    segment: np.ndarray
    levels: tuple[tuple[int, np.ndarray, np.ndarray], ...]


@dataclasses.dataclass(frozen=True, eq=False)
class AuxPlan:
    kinds: tuple[CentreKind, ...]
    naux: int


def _structure(basis: Basis) -> tuple:
    return (basis.shell_l, basis.shell_nprim, basis.shell_ao_start, basis.cartesian)


def _static_basis(structure) -> Basis:
    """A Basis with the given static structure and no arrays, for planning (never holds tracers)."""
    shell_l, shell_nprim, shell_ao_start, cartesian = structure
    return Basis(None, None, shell_l, (0,) * len(shell_l), shell_nprim, shell_ao_start, cartesian)


def make_orbital_plan(basis: Basis) -> OrbitalPlan:
    return _orbital_plan_cached(_structure(basis))


@functools.lru_cache(maxsize=32)
def _orbital_plan_cached(structure) -> OrbitalPlan:
    basis = _static_basis(structure)
    nprim = basis.shell_nprim
    nao = basis.nao
    by_l = {l: shells for l, _, shells in basis.shell_groups(by_nprim=False)}
    kinds, rows = [], []
    for la in sorted(by_l):
        for lb in sorted(by_l):
            if lb > la:
                continue
            if la == lb:
                i, j = np.tril_indices(len(by_l[la]))
                a_shell, b_shell = by_l[la][i], by_l[la][j]
            else:
                a_shell = np.repeat(by_l[la], len(by_l[lb]))
                b_shell = np.tile(by_l[lb], len(by_l[la]))
            a_prim, b_prim, segment = [], [], []
            for s, (a, b) in enumerate(zip(a_shell, b_shell)):
                ia, ib = np.meshgrid(np.arange(nprim[a]), np.arange(nprim[b]), indexing="ij")
                a_prim.append(ia.ravel())
                b_prim.append(ib.ravel())
                segment.append(np.full(ia.size, s))
                mu = basis.shell_ao_start[a] + np.arange(basis.n_functions(la))
                nu = basis.shell_ao_start[b] + np.arange(basis.n_functions(lb))
                pair = mu[:, None] * nao + nu[None, :]
                if a == b:  # (fa, fb) and (fb, fa) are both computed: use one, for exact symmetry
                    pair = np.where(mu[:, None] >= nu[None, :], pair, -1)
                rows.append(pair.ravel())
            a_prim, b_prim, segment = (np.concatenate(x) for x in (a_prim, b_prim, segment))
            kinds.append(PairKind(la, lb, a_shell, b_shell, a_prim, b_prim, segment))
    pair_ao = np.concatenate(rows)
    used = np.flatnonzero(pair_ao >= 0)
    pair_ao = pair_ao[used]
    row_map = np.full(nao * nao, -1, dtype=np.int64)
    row_map[pair_ao] = used
    swapped = (pair_ao % nao) * nao + pair_ao // nao
    missing = row_map[swapped] < 0
    row_map[swapped[missing]] = used[missing]
    assert (row_map >= 0).all(), "internal error: AO pairs not covered"
    return OrbitalPlan(kinds=tuple(kinds), row_map=row_map, nao=nao)


def make_aux_plan(basis: Basis) -> AuxPlan:
    return _aux_plan_cached(_structure(basis))


@functools.lru_cache(maxsize=32)
def _aux_plan_cached(structure) -> AuxPlan:
    basis = _static_basis(structure)
    kinds = []
    for l, _, shells in basis.shell_groups(by_nprim=False):
        shells = np.array(sorted(shells, key=lambda s: (basis.shell_nprim[s], s)))
        counts = [basis.shell_nprim[s] for s in shells]
        runs = []
        for n in counts:
            if runs and runs[-1][1] == n:
                runs[-1][0] += 1
            else:
                runs.append([1, n])
        prim_shell = np.repeat(shells, counts)
        prim = np.concatenate([np.arange(n) for n in counts])
        segment = np.repeat(np.arange(len(shells)), counts)
        levels = one_centre_levels(l, basis.transform(l))
        kinds.append(CentreKind(l, shells, tuple(map(tuple, runs)), prim_shell, prim, segment, levels))
    return AuxPlan(kinds=tuple(kinds), naux=basis.nao)


def function_order(basis: Basis, kind: CentreKind, shell_major: bool) -> np.ndarray:
    """PySCF indices of the kind's functions, ordered (shell, function) or (function, shell)."""
    idx = basis.ao_indices(kind.shells)  # (n_shells, n_functions)
    return (idx if shell_major else idx.T).ravel()


def one_centre_numbers(n_max: int) -> list[list[float]]:
    """e^n_t with x^n exp(-p x^2) = sum_t e^n_t (2p)^{-(n + t)/2} Lambda_t(x; p), n <= n_max.

    From the recursion of HJO eq. 9.5.6 at X_PA = 0: E^{n+1}_t = E^n_{t-1} / (2p) + (t + 1) E^n_{t+1}.
    """
    e = [[1.0]]
    for n in range(1, n_max + 1):
        prev = e[-1] + [0.0, 0.0]
        e.append([(prev[t - 1] if t else 0.0) + (t + 1) * prev[t + 1] for t in range(n + 1)])
    return e


def one_centre_levels(l: int, transform: np.ndarray):
    """Hermite expansion of one-centre functions, grouped by Hermite order (HJO eq. 9.5.6 at P = A).

    With the numbers e^i_t of :func:`one_centre_numbers`, a cartesian component x^i y^j z^k has
    E_{tuv} = (2c)^{-(l + t + u + v)/2} e^i_t e^j_u e^k_v. Rows that vanish
    for every exponent after the AO transform (all orders below l for spherical functions) are
    dropped.
    """
    e = one_centre_numbers(l)
    herm = hermite_indices(l)
    cart = cartesian_powers(l)
    e3 = np.zeros((len(cart), len(herm)))
    for c, (i, j, k) in enumerate(cart):
        for h, (t, u, v) in enumerate(herm):
            if t <= i and u <= j and v <= k:
                e3[c, h] = e[i][t] * e[j][u] * e[k][v]
    matrix = e3.T @ transform  # (n_hermite(l), n_functions)
    keep = np.abs(matrix).max(axis=1) > 1e-12 * np.abs(matrix).max()
    order = herm.sum(axis=1)
    levels = []
    for lam in range(l + 1):
        rows = keep & (order == lam)
        if rows.any():
            levels.append((lam, herm[rows], matrix[rows]))
    return tuple(levels)


@functools.lru_cache(maxsize=None)
def pair_hermite_tables(la: int, lb: int):
    """Static tables for the pair coefficients E^{ij}_t (HJO eq. 9.5.6-9.5.7) in closed form.

    With x_A = x_P + X_PA, x_B = x_P + X_PB and the one-centre expansion of x_P^n,
    ``E^{ij}_t = sum_{k<=i, l<=j} C(i,k) C(j,l) X_PA^{i-k} X_PB^{j-l} e^{k+l}_t (2p)^{-(k+l+t)/2}``:
    a fixed linear map ``table`` from the monomials X_PA^a X_PB^b (2p)^{-m} (flattened (a, b, m))
    to the coefficients (flattened (i, j, t)), the values of ``_hermite.hermite_e_1d`` in a few
    array operations instead of an unrolled recursion.

    Returns:
      ``(table, index)``: table (n, n) with n = (la + 1)(lb + 1)(la + lb + 1); index (3, H, ca, cb),
      the flattened (i, j, t) position of each cartesian pair and Hermite index (t, u, v) of
      :func:`hermite_indices`\\ (la + lb) along x, y, z.
    """
    nt = la + lb + 1
    e = one_centre_numbers(la + lb)

    def flat(i, j, t):
        return (i * (lb + 1) + j) * nt + t

    table = np.zeros(((la + 1) * (lb + 1) * nt,) * 2)
    for i in range(la + 1):
        for j in range(lb + 1):
            for k in range(i + 1):
                for l in range(j + 1):
                    for t in range(k + l + 1):
                        if (k + l + t) % 2 == 0:
                            weight = math.comb(i, k) * math.comb(j, l) * e[k + l][t]
                            table[flat(i - k, j - l, (k + l + t) // 2), flat(i, j, t)] += weight
    herm, pa, pb = hermite_indices(la + lb), cartesian_powers(la), cartesian_powers(lb)
    index = np.zeros((3, len(herm), len(pa), len(pb)), dtype=np.int64)
    for x in range(3):
        index[x] = flat(pa[None, :, None, x], pb[None, None, :, x], herm[:, None, None, x])
    return table, index
