"""McMurchie-Davidson Hermite Coulomb integrals R_{tuv}, vectorised: 1/r12, erf(w r12)/r12, erfc.

The kernel of :mod:`basis.integrals.two_electron`: the Boys function on prefixes of a batch of
arguments (:func:`boys_prefixes`), the seeds R^m_{000} = s (-2 alpha)^m F_m(alpha R_PQ^2) of the
plain or range-separated operator (:func:`coulomb_seeds`), and the recursion of HJO
(Helgaker, Jorgensen, Olsen, "Molecular Electronic-Structure Theory" (2000)) eq. 9.9.18-9.9.20 on
arrays stacked over Hermite indices and over quartets of mixed total order
(:func:`hermite_coulomb_sorted`).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from basis.integrals._boys import H, N_TAYLOR, T_SWITCH
from basis.integrals._boys import _table as _boys_table
from basis.integrals._hermite import hermite_indices


def boys_prefixes(t, active):
    """Boys function F_m(T) (HJO 9.8) of order m on the first ``active[m]`` entries of ``t``.

    The method of :func:`basis.integrals._boys.boys` (same table, switch point and recursions) for
    entries that need different highest orders: entry i needs orders up to M_i, non-increasing in
    i. Below ``T_SWITCH`` each entry gets one Taylor series about the nearest table point, at its
    own M_i, ``F_M(T_i + d) = sum_k F_{M+k}(T_i) (-d)^k / k!`` (9 terms, |d| <= 0.05), summed by
    Horner's rule (XLA runs the stacked (N, 9) sum an order of magnitude slower), then the stable
    downward recursion ``F_m = (2T F_{m+1} + exp(-T)) / (2m + 1)``. Above it,
    ``F_0 = sqrt(pi / T) erf(sqrt(T)) / 2`` and the upward recursion.

    Args:
      t: (N,) arguments T >= 0.
      active: non-increasing static lengths, one per order 0..len(active) - 1.

    Returns:
      List of (active[m],) arrays.
    """
    table = _boys_table()
    top = len(active) - 1
    small = t < T_SWITCH
    t_small = jnp.where(small, t, 0.0)
    exp_small = jnp.exp(-t_small)
    index = jnp.round(t_small / H).astype(jnp.int32)
    minus_d = index * H - t_small
    downward: list = [None] * (top + 1)
    for m in range(top, -1, -1):
        n, start = active[m], active[m + 1] if m < top else 0  # entries [start, n) have M_i = m
        parts = []
        if start:
            parts.append((2.0 * t_small[:start] * downward[m + 1] + exp_small[:start]) * (1.0 / (2 * m + 1)))
        if n > start:
            x = minus_d[start:n]
            coeffs = jnp.take(table[:, m : m + N_TAYLOR], index[start:n], axis=0, mode="clip")  # (., N_TAYLOR)
            taylor = coeffs[:, N_TAYLOR - 1]
            for k in range(N_TAYLOR - 2, -1, -1):
                taylor = coeffs[:, k] + taylor * x * (1.0 / (k + 1))
            parts.append(taylor)
        downward[m] = concat(parts, axis=0)
    # Large T; T_SWITCH where unused so that neither branch makes inf or NaN (nor their gradients).
    # erf(sqrt(T)) = 1 - exp(-T) / sqrt(pi T) (1 - 1/(2T) + ...): truncated after its first
    # correction, good to 2e-16 for T >= 30, and no erf for every quartet.
    t_large = jnp.where(small, T_SWITCH, t)
    exp_large = jnp.exp(-t_large)
    upward = 0.5 * jnp.sqrt(jnp.pi / t_large) - 0.5 * exp_large / t_large
    out = []
    for m, n in enumerate(active):
        if m:
            upward = ((2 * m - 1) * upward[:n] - exp_large[:n]) / (2.0 * t_large[:n])
        out.append(jnp.where(small[:n], downward[m], upward))
    return out


@functools.lru_cache(maxsize=None)
def recursion_level(m: int):
    """Static plan of level m of the R recursion (HJO eq. 9.9.18-9.9.20).

    Level m holds R^n_{tuv} for all t + u + v <= m (for some n) in a row order of our own:
    (0,0,0) first, then the rows with two terms, then those with one. A row is raised along its
    first nonzero axis, for x ``R^n_{tuv} = X R^{n+1}_{t-1,u,v} + (t - 1) R^{n+1}_{t-2,u,v}``
    from level m - 1 (at n + 1), the second term only where t >= 2.

    Returns:
      ``(axis, idx1, idx2, count, position)``: per raised row, the axis it is raised along and the
      level m - 1 row of its first term; idx2 and count[:, None] = t - 1 for the leading rows that
      have a second term (``len(idx2)`` of them); position maps (t, u, v) to its row of level m.
    """
    if m == 0:
        return None, None, None, None, {(0, 0, 0): 0}
    prev = recursion_level(m - 1)[4]
    first_axis = lambda h: next(i for i in range(3) if h[i])  # noqa: E731
    targets = [tuple(int(x) for x in h) for h in hermite_indices(m)[1:]]
    rows = sorted(targets, key=lambda h: (h[first_axis(h)] < 2, first_axis(h)))  # two terms first
    axis = np.array([first_axis(h) for h in rows])
    idx1 = np.array([prev[tuple(x - (i == a) for i, x in enumerate(h))] for h, a in zip(rows, axis)])
    second = [(h, a) for h, a in zip(rows, axis) if h[a] >= 2]
    idx2 = np.array([prev[tuple(x - 2 * (i == a) for i, x in enumerate(h))] for h, a in second], dtype=np.int64)
    count = np.array([h[a] - 1 for h, a in second], dtype=np.float64)[:, None]
    return axis, idx1, idx2, count, {h: i for i, h in enumerate([(0, 0, 0)] + rows)}


def n_hermite(L: int) -> int:
    return (L + 1) * (L + 2) * (L + 3) // 6


def gather_rows(x, idx):
    """x[idx] along axis 0 for a static in-bounds index array (a row gather)."""
    return jnp.take(x, idx, axis=0, mode="clip", indices_are_sorted=bool(np.all(np.diff(idx) >= 0)))


def hermite_coulomb_sorted(runs, alpha, scale, rpq, omega: float = 0.0):
    """Scaled Hermite Coulomb integrals s R_{tuv}(alpha, R_PQ), t + u + v <= L, for mixed L.

    The recursion of HJO eq. 9.9.18-9.9.20 (that of :func:`basis.integrals._hermite.hermite_coulomb`),
    run on arrays stacked over (t, u, v) and over quartets of every order at once: with quartets
    sorted by decreasing L, depth d builds R^{L-d}_{tuv}, t + u + v <= d, for the quartets with
    L >= d (a prefix) from depth d - 1 and R^{L-d}_{000} = s (-2 alpha)^{L-d} F_{L-d}(alpha R_PQ^2);
    a quartet's R = R^0 is done at depth L. R is linear in the seeds, so any per-quartet factor s
    (Coulomb prefactor, auxiliary weights) is applied to the seeds for free. The compiled size
    grows like max L, whatever the mix of orders.

    For the attenuated operators (``omega`` != 0) only the seeds change (:func:`coulomb_seeds`):
    the recursion's coefficients are the components of P - Q, whatever the operator.

    Args:
      runs: static ``[(L, n), ...]``, L non-increasing: the quartets come in runs of n of order L.
      alpha: (N,) exponents p q / (p + q); scale: (N,) seed factors s; rpq: three (N,) arrays, the
        components of P - Q.
      omega: static range-separation parameter: 0 for 1/r12, > 0 for erf(omega r12)/r12, < 0 for
        erfc(|omega| r12)/r12.

    Returns:
      ``{d: (n_hermite(d), n_d)}``, n_d the number of quartets with L >= d; a quartet with L = d
      finds its R in column (its position) of entry d, rows in the order of ``recursion_level(d)[4]``.
    """
    top = runs[0][0]
    active = [sum(n for L, n in runs if L >= m) for m in range(top + 1)]
    groups = [(L, active[L + 1] if L < top else 0, active[L]) for L in range(top, -1, -1)]
    groups = [(L, start, stop) for L, start, stop in groups if stop > start]  # equal-L column ranges
    scaled = coulomb_seeds(active, alpha, scale, rpq[0] * rpq[0] + rpq[1] * rpq[1] + rpq[2] * rpq[2], omega)

    def seed(depth):
        pieces = [scaled[L - depth][start:stop] for L, start, stop in groups if L >= depth]
        return concat(pieces, axis=0)[None, :]

    r = seed(0)
    depths = {0: r}
    for depth in range(1, top + 1):
        n = active[depth]
        prev = r[:, :n] if r.shape[1] > n else r
        axis, idx1, idx2, count, _ = recursion_level(depth)
        raised = gather_rows(jnp.stack([x[:n] for x in rpq]), axis) * gather_rows(prev, idx1)
        k = len(idx2)
        pieces = [seed(depth), raised[:k] + count * gather_rows(prev, idx2)] if k else [seed(depth)]
        r = jnp.concatenate(pieces + [raised[k:]], axis=0)
        depths[depth] = r
    return depths


def _seeds(active, alpha, scale, r2):
    """s (-2 alpha)^m F_m(alpha R_PQ^2) on the quartets with L >= m (the first active[m]), per m."""
    boys = boys_prefixes(alpha * r2, active)
    scaled, power, factor = [], scale, -2.0 * alpha
    for m, n in enumerate(active):
        if m:
            power = power[:n] * factor[:n]
        scaled.append(power * boys[m])
    return scaled


def _attenuated(alpha, scale, omega: float):
    """alpha and seed factor of erf(omega r12)/r12: alpha w^2 / (alpha + w^2), s sqrt(w^2 / (alpha + w^2))."""
    ratio = omega * omega / (alpha + omega * omega)
    return alpha * ratio, scale * jnp.sqrt(ratio)


def coulomb_seeds(active, alpha, scale, r2, omega: float):
    """Seeds R^m_{000} of the R recursion for 1/r12 (omega = 0) or its range-separated parts.

    erf(w r)/r is the potential of a normalised Gaussian charge of exponent w^2, so its integral
    over two Hermite Gaussians (exponents p, q) is the Coulomb integral with one of them convolved
    with that charge: q -> q w^2 / (q + w^2), hence 1/alpha -> 1/alpha + 1/w^2 and
    ``alpha_w = alpha w^2 / (alpha + w^2)`` in F_m and in (-2 alpha)^m, times
    ``sqrt(alpha_w / alpha)`` from the prefactor 2 pi^{5/2} / (p q sqrt(p + q)), proportional to
    sqrt(alpha) (Gill and Adamson, Chem. Phys. Lett. 261, 105 (1996); Ahlrichs, Phys. Chem. Chem.
    Phys. 8, 3072 (2006)). erfc(w r)/r = 1/r - erf(w r)/r: the difference of the seeds, as the
    recursion is linear in them and its coefficients (P - Q) do not depend on alpha. Static
    branches: omega = 0 compiles to the plain Coulomb seeds.

    Args:
      active: non-increasing static lengths, one per order m (as :func:`boys_prefixes`).
      alpha: (N,) p q / (p + q); scale: (N,) seed factors s; r2: (N,) |P - Q|^2 in bohr^2.
      omega: static: 0 for 1/r12, w > 0 for erf(w r12)/r12, -w < 0 for erfc(w r12)/r12.

    Returns:
      List over m of (active[m],) arrays R^m_{000}.
    """
    if omega == 0.0:
        return _seeds(active, alpha, scale, r2)
    long_range = _seeds(active, *_attenuated(alpha, scale, abs(omega)), r2)
    if omega > 0.0:
        return long_range
    return [full - lr for full, lr in zip(_seeds(active, alpha, scale, r2), long_range)]


def recursion_cost(L: int) -> int:
    """Elements of all recursion levels of one quartet of order L."""
    return sum(n_hermite(d) for d in range(L + 1))


def concat(arrays, axis):
    return arrays[0] if len(arrays) == 1 else jnp.concatenate(arrays, axis=axis)
