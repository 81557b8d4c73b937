"""McMurchie-Davidson building blocks: Hermite expansion coefficients and Hermite Coulomb integrals.

Reference: L. E. McMurchie and E. R. Davidson, J. Comput. Phys. 26, 218 (1978); the notation
follows Helgaker, Jorgensen, Olsen, "Molecular Electronic-Structure Theory" (2000), sections
9.5 (E coefficients, eq. 9.5.6-9.5.7) and 9.9 (R integrals, eq. 9.9.18-9.9.20).

A product of two cartesian Gaussians is a sum of Hermite Gaussians centred at the Gaussian
product centre P = (a A + b B) / p, p = a + b:

    x_A^i x_B^j exp(-a x_A^2 - b x_B^2) = K_AB^x sum_t E^{ij}_t Lambda_t(x_P; p),

where we keep the exponential prefactor K_AB = exp(-mu |A - B|^2), mu = a b / p, *outside* the E
coefficients (E^{00}_0 = 1). Coulomb-type integrals over Hermite Gaussians reduce to

    R^n_{tuv}(alpha, X, Y, Z) = (d/dX)^t (d/dY)^u (d/dZ)^v [(-2 alpha)^n F_n(alpha R^2)],

built by the recursion of eq. 9.9.18-9.9.20. The recursions here are the plain, readable forms:
all loops run over *static* angular momenta and unroll into elementwise code. The production
kernels in :mod:`~basis.integrals.one_electron` and :mod:`~basis.integrals.two_electron` use
closed-form and level-vectorised equivalents (far less compile time); these recursions are their
reference (tests/basis/test_hermite.py checks integrals built from them against libcint).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from basis.gto import cartesian_powers
from basis.integrals._boys import boys


@functools.lru_cache(maxsize=None)
def hermite_indices(L: int) -> np.ndarray:
    """(n_hermite(L), 3) all (t, u, v) with t + u + v <= L, in a fixed order (by total, then t, u desc)."""
    return np.array(
        [(t, u, n - t - u) for n in range(L + 1) for t in range(n, -1, -1) for u in range(n - t, -1, -1)],
        dtype=np.int64,
    )


def hermite_e_1d(la: int, lb: int, p, xpa, xpb):
    """1D Hermite coefficients E^{ij}_t for i <= la, j <= lb, t <= i + j (eq. 9.5.6).

    Args:
      la, lb: highest powers (static).
      p: (...) total exponent a + b.
      xpa, xpb: (...) P - A and P - B along one axis.

    Returns:
      Array ``(..., la + 1, lb + 1, la + lb + 1)``, zero where t > i + j.
    """
    one_over_2p = 0.5 / p
    zero = jnp.zeros_like(p)
    # e[i][j] is a list over t = 0..i+j.
    e = [[None] * (lb + 1) for _ in range(la + 1)]
    e[0][0] = [jnp.ones_like(p)]

    def raise_index(prev, x):
        n = len(prev)  # t runs 0..n-1 in prev; new list runs 0..n
        out = []
        for t in range(n + 1):
            term = zero
            if t >= 1:
                term = term + one_over_2p * prev[t - 1]
            if t < n:
                term = term + x * prev[t]
            if t + 1 < n:
                term = term + (t + 1) * prev[t + 1]
            out.append(term)
        return out

    for i in range(la + 1):
        if i > 0:
            e[i][0] = raise_index(e[i - 1][0], xpa)
        for j in range(1, lb + 1):
            e[i][j] = raise_index(e[i][j - 1], xpb)

    n_t = la + lb + 1
    rows = []
    for i in range(la + 1):
        cols = []
        for j in range(lb + 1):
            values = e[i][j] + [zero] * (n_t - len(e[i][j]))
            cols.append(jnp.stack(values, axis=-1))
        rows.append(jnp.stack(cols, axis=-2))
    return jnp.stack(rows, axis=-3)


def hermite_e_3d(la: int, lb: int, ex, ey, ez):
    """Cartesian-pair Hermite coefficients E^{ab}_{tuv} = E^x_t E^y_u E^z_v.

    Args:
      la, lb: shell angular momenta (static).
      ex, ey, ez: outputs of :func:`hermite_e_1d` with at least (la, lb), shape (..., >la, >lb, >=la+lb+1).

    Returns:
      ``(..., n_cart(la), n_cart(lb), n_hermite(la + lb))`` with the Hermite index of
      :func:`hermite_indices`\\ ``(la + lb)`` and cartesian order of :func:`cartesian_powers`.
    """
    pa, pb = cartesian_powers(la), cartesian_powers(lb)
    tuv = hermite_indices(la + lb)
    out = None
    for axis, e in enumerate((ex, ey, ez)):
        factor = e[..., pa[:, axis][:, None, None], pb[:, axis][None, :, None], tuv[:, axis][None, None, :]]
        out = factor if out is None else out * factor
    return out


def hermite_coulomb(L: int, alpha, rpc):
    """Hermite Coulomb integrals R^0_{tuv}(alpha, R_PC) for t + u + v <= L (eq. 9.9.18-9.9.20).

    Args:
      L: highest total order (static).
      alpha: (...) exponent (p for nuclear attraction, pq / (p + q) for electron repulsion).
      rpc: (..., 3) vector P - C.

    Returns:
      ``(..., n_hermite(L))`` in the order of :func:`hermite_indices`\\ ``(L)``.
    """
    x, y, z = rpc[..., 0], rpc[..., 1], rpc[..., 2]
    t_arg = alpha * (x * x + y * y + z * z)
    f = boys(L, t_arg)
    # r[n] maps (t, u, v) -> R^n_{tuv}, for t + u + v <= L - n.
    scale = -2.0 * alpha
    power = jnp.ones_like(alpha)
    r_n = []
    for n in range(L + 1):
        r_n.append({(0, 0, 0): power * f[..., n]})
        power = power * scale
    for total in range(1, L + 1):
        for n in range(L - total + 1):
            nxt = r_n[n + 1]
            cur = r_n[n]
            for t in range(total, -1, -1):
                for u in range(total - t, -1, -1):
                    v = total - t - u
                    if t > 0:
                        val = x * nxt[(t - 1, u, v)]
                        if t > 1:
                            val = val + (t - 1) * nxt[(t - 2, u, v)]
                    elif u > 0:
                        val = y * nxt[(t, u - 1, v)]
                        if u > 1:
                            val = val + (u - 1) * nxt[(t, u - 2, v)]
                    else:
                        val = z * nxt[(t, u, v - 1)]
                        if v > 1:
                            val = val + (v - 1) * nxt[(t, u, v - 2)]
                    cur[(t, u, v)] = val
    r0 = r_n[0]
    return jnp.stack([r0[tuple(int(k) for k in tuv)] for tuv in hermite_indices(L)], axis=-1)


def gaussian_product(a, b, center_a, center_b):
    """Gaussian product quantities for primitive pairs.

    Args:
      a, b: (...) exponents.
      center_a, center_b: (..., 3) centres.

    Returns:
      ``(p, P, P - A, P - B, K_AB)`` with p = a + b, P = (a A + b B) / p and
      K_AB = exp(-a b / p |A - B|^2).
    """
    p = a + b
    center_p = (a[..., None] * center_a + b[..., None] * center_b) / p[..., None]
    ab = center_a - center_b
    k_ab = jnp.exp(-(a * b / p) * jnp.sum(ab * ab, axis=-1))
    return p, center_p, center_p - center_a, center_p - center_b, k_ab
