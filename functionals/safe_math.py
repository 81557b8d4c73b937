"""Numerically safe building blocks shared by the functionals (finite values, gradients, Hessians).

Semilocal functionals contain powers such as ``rho**(4/3)``, ``rho**(-1/3)`` and ``sqrt(sigma)``
whose derivatives are infinite (or whose evaluation is ``0 * inf``) at zero density, zero gradient
or full spin polarisation. Every such power goes through the *double-where* pattern::

    ok = x > threshold
    x_safe = jnp.where(ok, x, 1.0)      # the discarded branch must itself be finite ...
    value = jnp.where(ok, f(x_safe), 0.0)  # ... or its NaN/inf cotangent poisons jax.grad

because ``jnp.where`` propagates the cotangent of *both* branches (multiplied by 0 for the
discarded one, and ``0 * inf = nan``). Below the threshold a functional contributes exactly zero
energy; the thresholds are far below any density that matters on a molecular grid.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

Array = jnp.ndarray

#: Densities (per spin or total, bohr^-3) below which a functional's energy density is zero.
#: Much smaller than libxc's own thresholds (1e-15 to 1e-12), so every point libxc evaluates we
#: evaluate too; large enough that rho**(-11/3) (LYP) and second derivatives stay finite in float64.
DENSITY_THRESHOLD = 1e-20

#: (3 / (4 pi))^{1/3}: r_s = _RS_COEFF rho^{-1/3}.
_RS_COEFF = (3.0 / (4.0 * 3.141592653589793)) ** (1.0 / 3.0)

#: Threshold on the relative spin densities 1 +- zeta in [0, 2] (libxc uses DBL_EPSILON likewise).
ZETA_THRESHOLD = 1e-15


def nonnegative(x: Array) -> Array:
    """Clamp negative values (grid noise in rho or sigma) to zero, keeping d/dx = 1 at x = 0.

    ``jnp.maximum`` would split the gradient 1/2-1/2 at exactly zero; the potential of a vanishing
    spin channel (e.g. d e_c / d rho_b at rho_b = 0) must stay the one-sided derivative.
    """
    return jnp.where(x < 0.0, 0.0, x)


def safe_pow(x: Array, power: float, threshold: float = DENSITY_THRESHOLD) -> Array:
    """``x**power`` for ``x > threshold``, 0 otherwise; finite gradients and Hessians everywhere."""
    ok = x > threshold
    # x_safe: x**power with negative powers would be inf at 0, whose cotangent is nan even though
    # the where below discards it.
    x_safe = jnp.where(ok, x, 1.0)
    # exp(power log x): on CPU XLA's vectorised exp and log cost half of its pow, and the log is
    # shared (common subexpression) by every power of the same x; relative error
    # (1 + |power ln x|) ulp.
    return jnp.where(ok, jnp.exp(power * jnp.log(x_safe)), 0.0)


def safe_divide(num: Array, den: Array, threshold: float = DENSITY_THRESHOLD) -> Array:
    """``num / den`` where ``den > threshold``, 0 otherwise (double where, see module doc)."""
    ok = den > threshold
    den_safe = jnp.where(ok, den, 1.0)
    return jnp.where(ok, num / den_safe, 0.0)


def wigner_seitz_radius(rho: Array) -> Array:
    """``r_s = (3 / (4 pi rho))**(1/3)`` in bohr; 1 where rho is below the threshold (caller masks)."""
    rho_safe = jnp.where(rho > DENSITY_THRESHOLD, rho, 1.0)
    return _RS_COEFF / cube_root(rho_safe)


def spin_fractions(rho_a: Array, rho_b: Array) -> tuple[Array, Array, Array]:
    """``(1 + zeta, 1 - zeta, zeta)`` computed as ``2 rho_a / rho`` and ``2 rho_b / rho``.

    Computing ``1 - zeta`` as ``2 rho_b / rho`` (rather than ``1 - (rho_a - rho_b)/rho``) keeps it
    exactly zero for a fully polarised point, so the zero branch of ``safe_pow`` is taken.
    Returns (1, 1, 0) where the total density is below the threshold (caller masks).
    """
    rho = rho_a + rho_b
    ok = rho > DENSITY_THRESHOLD
    rho_safe = jnp.where(ok, rho, 1.0)
    # Masked points get the unpolarised values: phi(zeta) etc. stay away from 0 in the discarded
    # branch, whose cotangent would otherwise be nan.
    opz = jnp.where(ok, 2.0 * rho_a / rho_safe, 1.0)
    omz = jnp.where(ok, 2.0 * rho_b / rho_safe, 1.0)
    zeta = jnp.where(ok, (rho_a - rho_b) / rho_safe, 0.0)
    return opz, omz, zeta


def spin_interpolation_f(opz: Array, omz: Array) -> Array:
    """von Barth-Hedin ``f(zeta) = ((1+zeta)^{4/3} + (1-zeta)^{4/3} - 2) / (2^{4/3} - 2)``.

    U. von Barth and L. Hedin, J. Phys. C 5, 1629 (1972).
    """
    return (safe_pow(opz, 4.0 / 3.0, ZETA_THRESHOLD) + safe_pow(omz, 4.0 / 3.0, ZETA_THRESHOLD)
            - 2.0) / (2.0 ** (4.0 / 3.0) - 2.0)


#: f''(0) of :func:`spin_interpolation_f`, ``4 / (9 (2^{1/3} - 1))``.
FZETA_PP0 = 4.0 / (9.0 * (2.0 ** (1.0 / 3.0) - 1.0))


class MaskedDensity(NamedTuple):
    """A closed-shell density made safe for the double-where pattern, with its cube root.

    Attributes:
        ok: (n,) bool, ``rho > DENSITY_THRESHOLD`` (negative grid noise included in "not ok").
        rho: (n,) the density where ``ok``, 1 elsewhere (so every formula stays finite there).
        cbrt: (n,) ``rho**(1/3)`` of the safe density.
        rs: (n,) Wigner-Seitz radius ``(3 / (4 pi rho))**(1/3)`` of the safe density, bohr.
    """

    ok: Array
    rho: Array
    cbrt: Array
    rs: Array



def cube_root(x: Array) -> Array:
    """``x**(1/3)`` for ``x > 0`` as ``exp(log(x) / 3)``.

    On CPU, XLA's vectorised exp and log together cost about half of its ``cbrt`` or ``pow``;
    the relative error is at most ``(1 + |ln x| / 3)`` ulp (< 4e-15 for densities in
    [1e-20, 1e20]).
    """
    return jnp.exp(jnp.log(x) * (1.0 / 3.0))


def masked_density(rho: Array, threshold: float = DENSITY_THRESHOLD) -> MaskedDensity:
    """Safe closed-shell density, its cube root and r_s (double where, see module doc).

    Every other power a functional needs is a product of ``rho`` and ``cbrt`` (``rho^{4/3} =
    rho * cbrt``, ``rho^{-8/3} = 1 / (rho cbrt)^2``), so one exp and one log serve them all.
    """
    ok = rho > threshold
    rho_safe = jnp.where(ok, rho, 1.0)
    cbrt = cube_root(rho_safe)
    return MaskedDensity(ok=ok, rho=rho_safe, cbrt=cbrt, rs=_RS_COEFF / cbrt)
