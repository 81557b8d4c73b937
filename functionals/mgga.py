"""Meta-GGA exchange and correlation: SCAN and r2SCAN, energy per volume (hartree/bohr^3).

Every function has the functional signature ``e(params, features) -> (n,)`` for spin-resolved
:class:`~functionals.features.Features` or closed-shell
:class:`~functionals.features.RestrictedFeatures` (unpolarised formulas: exchange of the total
density, correlation at zeta = 0) (``rho``, ``sigma`` and ``tau`` are read, ``tau_s = 1/2
sum_i |grad phi_is|^2`` as libxc; neither functional needs the Laplacian). ``params`` is ``None``
(the published constants, the ``*_PARAMS`` dicts) or a dict overriding any subset of them, possibly
with JAX arrays as values so the constants can be refitted by gradient descent. Constants the
papers *derive* (SCAN's ``b1, b2, b4``; r2SCAN's ``C_2x``, ``C_eta``, ``Delta f_c2``) are derived
inside from the primary ones. Definitions match libxc as called by PySCF:

=====================  ==========================  ===========================
function               libxc                       PySCF xc names
=====================  ==========================  ===========================
:func:`scan_x`         MGGA_X_SCAN (263)           ``scan,`` (exchange)
:func:`scan_c`         MGGA_C_SCAN (267)           ``,scan`` (correlation)
:func:`r2scan_x`       MGGA_X_R2SCAN (497)         ``r2scan,``
:func:`r2scan_c`       MGGA_C_R2SCAN (498)         ``,r2scan``
=====================  ==========================  ===========================

Exchange uses the exact spin scaling ``E_x[rho_a, rho_b] = (E_x[2 rho_a] + E_x[2 rho_b]) / 2``;
correlation is written in ``r_s``, ``zeta``, ``p = s^2`` and ``alpha`` of the total density.

Numerical safety: values, gradients *and Hessians* are finite at zero density, zero gradient,
zero tau and full spin polarisation.

* Densities below :data:`~functionals.safe_math.DENSITY_THRESHOLD` contribute exactly zero
  (double ``jnp.where``: the formula is evaluated at a harmless density there, see
  :mod:`functionals.safe_math`); powers of ``1 +- zeta`` use ``safe_pow`` (zero below
  ``ZETA_THRESHOLD``, whose derivative is the one-sided 0).
* SCAN's switching function ``exp(-c1 a/(1-a))`` / ``-d exp(c2/(1-a))`` vanishes with all its
  derivatives at ``a = 1`` but its exponent diverges there; within ``|1 - a| <= 1e-3`` both are
  below ``exp(-640)`` and are replaced by their limit 0, and each branch is evaluated at a
  harmless ``a`` where the other applies.
* ``g_x = 1 - exp(-a1 p^(-1/4))`` is taken as exactly 1 for ``p < 1e-10`` (there the exponential is
  ``exp(-1565)``, zero in double precision) because ``d/dp`` is ``0 * inf`` at ``p = 0``.

Where libxc (like the authors' reference codes) carries more digits than the papers print, we
follow it, so that the two agree to ~1e-14 (tests/functionals/test_mgga.py): PW92 as in the PBE
code (:data:`functionals.lda.PW92_MOD_PARAMS`), ``beta = 0.06672455060314922`` (0.066725 in the
papers), ``chi_inf = 0.12802585262625815`` (0.128026; definition at :data:`SCAN_C_PARAMS`). The
spin factor of ``G_c(zeta)`` is 2.363 as in libxc, where the SCAN Supplemental Material prints
2.3631 (``eps_c^0`` differs by < 4e-5 relative, not at all for closed shells); pass
``{"gc": 2.3631}`` for the printed value.

References:
    SCAN: J. Sun, A. Ruzsinszky, J. P. Perdew, Phys. Rev. Lett. 115, 036402 (2015), and its
    Supplemental Material.
    r2SCAN: J. W. Furness, A. D. Kaplan, J. Ning, J. P. Perdew, J. Sun, J. Phys. Chem. Lett. 11,
    8208 (2020); erratum J. Phys. Chem. Lett. 11, 9248 (2020).
    The interpolation polynomials of r2SCAN come from rSCAN: A. P. Bartok, J. R. Yates, J. Chem.
    Phys. 150, 161101 (2019).
    PW92: J. P. Perdew, Y. Wang, Phys. Rev. B 45, 13244 (1992) (:mod:`functionals.lda`).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from functionals import lda
from functionals.features import Features, RestrictedFeatures
from functionals.safe_math import (DENSITY_THRESHOLD, ZETA_THRESHOLD, cube_root, nonnegative,
                                   safe_pow, spin_fractions)

Array = jnp.ndarray

_KF2 = (3.0 * math.pi**2) ** (2.0 / 3.0)  # k_F^2 / n^(2/3)
_EX_UNIF = -0.75 * (3.0 / math.pi) ** (1.0 / 3.0)  # e_x^unif = _EX_UNIF n^(4/3) (unpolarised)
_TAU_UNIF = 0.3 * _KF2  # tau_unif = (3/10) (3 pi^2)^(2/3) n^(5/3)
_RS = (3.0 / (4.0 * math.pi)) ** (1.0 / 3.0)  # r_s = _RS n^(-1/3)
_T2 = (3.0 * math.pi**2 / 16.0) ** (2.0 / 3.0)  # t^2 = _T2 p / (phi^2 r_s)
_GAMMA = (1.0 - math.log(2.0)) / math.pi**2
# Low-density limits (r_s -> infinity) in the definition of chi_inf (SCAN Supplemental Material):
# r_s eps_x^unif -> -(3/4)(9/(4 pi^2))^(1/3) = -0.458165 and r_s eps_xc -> f0 = -0.9.
_RS_EX = 0.75 * (9.0 / (4.0 * math.pi**2)) ** (1.0 / 3.0)

# |1 - alpha| below which SCAN's switching function is its limit 0 (see module docstring).
_ALPHA_ONE_WINDOW = 1e-3
# p below which exp(-a1 p^(-1/4)) = exp(-1565) or less is exactly 0 in double precision.
_P_SMALL = 1e-10
# r2SCAN switches from the polynomial to the exponential form of f(alpha) here.
_ALPHA_POLY_MAX = 2.5


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------

#: SCAN exchange (Sun et al. 2015): ``h1x`` with ``k1, mu_ak, b3`` (b1, b2, b4 derived), ``h0x``,
#: ``g_x = 1 - exp(-a1 / s^(1/2))``, switching function ``f_x`` with ``c1x, c2x, dx``.
SCAN_X_PARAMS = {"k1": 0.065, "mu_ak": 10.0 / 81.0, "h0x": 1.174, "a1": 4.9479, "b3": 0.5,
                 "c1x": 0.667, "c2x": 0.8, "dx": 1.24}

#: SCAN correlation: ``eps_c^0`` (b1c, b2c, b3c, chi_inf, gc), ``eps_c^1`` (PBE-like with
#: ``beta(r_s) = beta (1 + beta_a r_s) / (1 + beta_b r_s)`` and PW92), switching function
#: ``f_c`` (c1c, c2c, dc). ``chi_inf = (3 pi^2/16)^(2/3) beta(inf) / (0.9 - 0.458165)`` with the
#: papers' rounded ``beta(inf) = 0.066725 * 0.1 / 0.1778``, as in libxc.
SCAN_C_PARAMS = {
    "b1c": 0.0285764, "b2c": 0.0889, "b3c": 0.125541,
    "chi_inf": _T2 * (0.066725 * 0.1 / 0.1778) / (0.9 - _RS_EX),
    "gc": 2.363,
    "beta": 0.06672455060314922, "beta_a": 0.1, "beta_b": 0.1778,
    "c1c": 0.64, "c2c": 1.5, "dc": 0.7,
    "pw92": lda.PW92_MOD_PARAMS,
}

#: r2SCAN exchange (Furness et al. 2020): SCAN's ``k1, mu_ak, h0x, a1``; ``f_x`` is the
#: polynomial ``sum_i fx[i] a^i`` for ``a <= 2.5`` (rSCAN's coefficients) and ``-dx exp(c2x/(1-a))``
#: beyond; ``a = (tau - tau_W) / (tau_unif + eta tau_W)``; ``dp2`` damps the gradient-expansion
#: correction of ``x(p)``.
R2SCAN_X_PARAMS = {
    "k1": 0.065, "mu_ak": 10.0 / 81.0, "h0x": 1.174, "a1": 4.9479, "c2x": 0.8, "dx": 1.24,
    "eta": 1e-3, "dp2": 0.361,
    "fx": (1.0, -0.667, -0.4445555, -0.663086601049, 1.451297044490, -0.887998041597,
           0.234528941479, -0.023185843322),
}

#: r2SCAN correlation: SCAN's ``eps_c^0`` and ``eps_c^1`` (plus the gradient-expansion correction
#: ``Delta y``), ``f_c`` the polynomial ``fc`` for ``a <= 2.5`` and ``-dc exp(c2c/(1-a))`` beyond,
#: ``a = (tau - tau_W) / (tau_unif d_s(zeta) + eta tau_W)``.
R2SCAN_C_PARAMS = {
    **{k: v for k, v in SCAN_C_PARAMS.items() if k != "c1c"},  # f_c(a < 1) is the polynomial
    "eta": 1e-3, "dp2": 0.361,
    "fc": (1.0, -0.64, -0.4352, -1.535685604549, 3.061560252175, -1.915710236206,
           0.516884468372, -0.051848879792),
}


def _with_defaults(defaults: dict, params: dict | None) -> dict:
    if params is None:
        return defaults
    unknown = set(params) - set(defaults)
    if unknown:
        raise ValueError(f"unknown parameters {sorted(unknown)}; known: {sorted(defaults)}")
    return {**defaults, **params}


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------

def _g_x(p: Array, a1) -> Array:
    """``g_x = 1 - exp(-a1 / p^(1/4))``; 1 for ``p < 1e-10`` where the exponential underflows."""
    ok = p > _P_SMALL
    # d/dp exp(-a1 p^(-1/4)) is 0 * inf at p = 0: evaluate at p = 1 there (double where).
    p_safe = jnp.where(ok, p, 1.0)
    return jnp.where(ok, -jnp.expm1(-a1 / jnp.sqrt(jnp.sqrt(p_safe))), 1.0)


def _h1x(x: Array, k1) -> Array:
    """``h1x = 1 + k1 - k1 / (1 + x / k1)``, the PBE-like form bounded by ``1 + k1``."""
    return 1.0 + k1 - k1 / (1.0 + x / k1)


def _scan_switch(alpha: Array, c1, c2, d) -> Array:
    """SCAN's ``f(a) = exp(-c1 a/(1-a)) theta(1-a) - d exp(c2/(1-a)) theta(a-1)``.

    Both exponentials vanish with all derivatives at ``a = 1`` while their exponents diverge;
    within ``|1 - a| <= 1e-3`` the function is its limit 0 (for the published c1, c2 >= 0.64 the
    neglected terms are below ``exp(-640)``), and each exponential sees a harmless ``a`` (0 or 2)
    outside its own branch, so neither its value nor its cotangent is inf/nan (double where).
    """
    below = alpha < 1.0 - _ALPHA_ONE_WINDOW
    above = alpha > 1.0 + _ALPHA_ONE_WINDOW
    a_below = jnp.where(below, alpha, 0.0)
    a_above = jnp.where(above, alpha, 2.0)
    f_below = jnp.exp(-c1 * a_below / (1.0 - a_below))
    f_above = -d * jnp.exp(c2 / (1.0 - a_above))
    return jnp.where(below, f_below, jnp.where(above, f_above, 0.0))


def _r2scan_switch(alpha: Array, coefficients, c2, d) -> Array:
    """r2SCAN's ``f(a) = sum_i c_i a^i`` for ``a <= 2.5``, ``-d exp(c2/(1-a))`` for ``a > 2.5``.

    Double where: the polynomial sees ``a = 0`` in the exponential's region (its a^7 would
    overflow for the huge alphas of density tails) and the exponential sees ``a = 3`` in the
    polynomial's region (``exp(c2/(1-a))`` diverges at ``a -> 1+``).
    """
    poly_region = alpha <= _ALPHA_POLY_MAX
    a_poly = jnp.where(poly_region, alpha, 0.0)
    a_exp = jnp.where(poly_region, 3.0, alpha)
    poly = jnp.zeros_like(alpha) + coefficients[-1]
    for c in reversed(coefficients[:-1]):  # Horner
        poly = poly * a_poly + c
    return jnp.where(poly_region, poly, -d * jnp.exp(c2 / (1.0 - a_exp)))


def _polynomial_slope_at_one(coefficients) -> Any:
    """``f'(1) = sum_i i c_i`` of the interpolation polynomial (r2SCAN's ``Delta f_2``)."""
    return sum(i * coefficients[i] for i in range(1, len(coefficients)))


# --------------------------------------------------------------------------------------------
# Exchange
# --------------------------------------------------------------------------------------------

EnhancementFactor = Callable[[dict, Array, Array, Array], Array]


def _spin_scaled_exchange(enhancement: EnhancementFactor, params: dict,
                          features: Features) -> Array:
    """``sum_s e_x^unif(2 rho_s) F_x(p, tau_W/tau_unif, tau/tau_unif) / 2`` in hartree/bohr^3.

    ``enhancement(params, p, z_w, z_tau)`` is the unpolarised enhancement factor of the density
    ``n = 2 rho_s`` (``|grad n|^2 = 4 sigma_ss``, ``tau = 2 tau_s``): ``p = s^2``,
    ``z_w = tau_W / tau_unif = 5p/3`` and ``z_tau = tau / tau_unif``.
    """
    if isinstance(features, RestrictedFeatures):
        # e_x[n] of the total density itself; masked where the spin halves n/2 are below the
        # threshold, as on the spin-resolved path
        ok = features.rho > 2.0 * DENSITY_THRESHOLD
        n = jnp.where(ok, features.rho, 1.0)
        sigma = jnp.where(ok, nonnegative(features.sigma), 0.0)
        tau = jnp.where(ok, nonnegative(features.tau), 0.0)
        n13 = cube_root(n)
        n53 = n * n13 * n13
        tau_unif = _TAU_UNIF * n53
        e = _EX_UNIF * n * n13 * enhancement(params, sigma / (4.0 * _KF2 * n53 * n),
                                             sigma / (8.0 * n * tau_unif), tau / tau_unif)
        return jnp.where(ok, e, 0.0)
    rho = nonnegative(features.rho)
    ok = rho > DENSITY_THRESHOLD
    n = 2.0 * jnp.where(ok, rho, 1.0)  # harmless density where masked (double where)
    sigma = 4.0 * jnp.where(ok, nonnegative(jnp.stack([features.sigma[0], features.sigma[2]])), 0.0)
    tau = 2.0 * jnp.where(ok, nonnegative(features.tau), 0.0)
    n13 = cube_root(n)
    n53 = n * n13 * n13
    p = sigma / (4.0 * _KF2 * n53 * n)
    tau_unif = _TAU_UNIF * n53
    z_w = sigma / (8.0 * n * tau_unif)
    z_tau = tau / tau_unif
    e = _EX_UNIF * n * n13 * enhancement(params, p, z_w, z_tau)
    return 0.5 * jnp.sum(jnp.where(ok, e, 0.0), axis=0)


def _scan_fx(params: dict, p: Array, z_w: Array, z_tau: Array) -> Array:
    """SCAN ``F_x(s, alpha) = [h1x + f_x(alpha) (h0x - h1x)] g_x(s)``, Sun et al. 2015.

    ``x = mu p [1 + (b4 p/mu) exp(-|b4| p/mu)] + [b1 p + b2 (1 - alpha) exp(-b3 (1-alpha)^2)]^2``
    with ``b2 = sqrt(5913/405000)``, ``b1 = (511/13500) / (2 b2)``,
    ``b4 = mu^2/k1 - 1606/18225 - b1^2`` (the fourth-order gradient expansion).
    """
    mu, k1 = params["mu_ak"], params["k1"]
    b2 = math.sqrt(5913.0 / 405000.0)
    b1 = (511.0 / 13500.0) / (2.0 * b2)
    b4 = mu**2 / k1 - 1606.0 / 18225.0 - b1**2
    alpha = z_tau - z_w
    one_m_alpha = 1.0 - alpha
    x = (mu * p
         + b4 * p**2 * jnp.exp(-jnp.abs(b4) * p / mu)
         + (b1 * p + b2 * one_m_alpha * jnp.exp(-params["b3"] * one_m_alpha**2)) ** 2)
    h1 = _h1x(x, k1)
    f = _scan_switch(alpha, params["c1x"], params["c2x"], params["dx"])
    return (h1 + f * (params["h0x"] - h1)) * _g_x(p, params["a1"])


def _r2scan_fx(params: dict, p: Array, z_w: Array, z_tau: Array) -> Array:
    """r2SCAN ``F_x(p, alpha_bar) = [h1x(p) + f_x(alpha_bar) (h0x - h1x(p))] g_x(p)``.

    Furness et al. 2020: ``alpha_bar = (tau - tau_W) / (tau_unif + eta tau_W)``,
    ``x(p) = (C_eta C_2x exp(-p^2/dp2^4) + mu_AK) p`` with ``C_eta = 20/27 + 5 eta/3`` (the
    gradient expansion ``alpha_bar ~ 1 - C_eta p``) and ``C_2x = (h0x - 1) f_x'(1) = -0.162742``,
    which cancels the ``O(p)`` term of ``f_x(alpha_bar) (h0x - 1)`` so that ``F_x -> 1 + mu_AK p``.
    """
    mu, k1, eta, coefficients = params["mu_ak"], params["k1"], params["eta"], params["fx"]
    alpha = (z_tau - z_w) / (1.0 + eta * z_w)
    c_2x = (params["h0x"] - 1.0) * _polynomial_slope_at_one(coefficients)
    c_eta = 20.0 / 27.0 + eta * 5.0 / 3.0
    x = (c_eta * c_2x * jnp.exp(-(p**2) / params["dp2"] ** 4) + mu) * p
    h1 = _h1x(x, k1)
    f = _r2scan_switch(alpha, coefficients, params["c2x"], params["dx"])
    return (h1 + f * (params["h0x"] - h1)) * _g_x(p, params["a1"])


def scan_x(params: dict | None, features: Features) -> Array:
    """SCAN exchange energy per volume (libxc MGGA_X_SCAN; PySCF ``scan,``), hartree/bohr^3.

    ``e_x = sum_s e_x^unif(2 rho_s) F_x(s, alpha) / 2``, ``alpha = (tau - tau_W) / tau_unif``,
    ``s = |grad n| / (2 (3 pi^2)^(1/3) n^(4/3))``. J. Sun, A. Ruzsinszky, J. P. Perdew, Phys. Rev.
    Lett. 115, 036402 (2015).

    Args:
        params: None (:data:`SCAN_X_PARAMS`) or a dict overriding some of them.
        features: Features on n points.
    Returns:
        (n,) exchange energy density.
    """
    return _spin_scaled_exchange(_scan_fx, _with_defaults(SCAN_X_PARAMS, params), features)


def r2scan_x(params: dict | None, features: Features) -> Array:
    """r2SCAN exchange energy per volume (libxc MGGA_X_R2SCAN; PySCF ``r2scan,``), hartree/bohr^3.

    J. W. Furness, A. D. Kaplan, J. Ning, J. P. Perdew, J. Sun, J. Phys. Chem. Lett. 11, 8208
    (2020); erratum 11, 9248 (2020).

    >>> from functionals.features import restricted_features
    >>> f = restricted_features(jnp.array([1.0]), jnp.array([0.5]), jnp.array([2.0]))
    >>> round(float(r2scan_x(None, f)[0]), 5)  # F_x = 1.0594 at p = 0.013, alpha = 0.67
    -0.78242

    Args:
        params: None (:data:`R2SCAN_X_PARAMS`) or a dict overriding some of them.
        features: Features on n points.
    Returns:
        (n,) exchange energy density.
    """
    return _spin_scaled_exchange(_r2scan_fx, _with_defaults(R2SCAN_X_PARAMS, params), features)


# --------------------------------------------------------------------------------------------
# Correlation
# --------------------------------------------------------------------------------------------

class _Density:
    """Total-density variables on n points; harmless values where ``ok`` is False.

    For closed-shell features the spin factors are the Python floats of zeta = 0 (``phi = d_x =
    d_s = 1``), so the spin interpolations drop out at trace time.
    """

    def __init__(self, features: Features | RestrictedFeatures):
        self.closed_shell = isinstance(features, RestrictedFeatures)
        if self.closed_shell:
            self.ok = features.rho > DENSITY_THRESHOLD
            self.n = jnp.where(self.ok, features.rho, 1.0)
            sigma = jnp.where(self.ok, nonnegative(features.sigma), 0.0)
            tau = jnp.where(self.ok, nonnegative(features.tau), 0.0)
            self.opz = self.omz = 1.0
            self.zeta = 0.0
            self.phi = self.d_x = self.d_s = 1.0
            self._set_reduced_variables(sigma, tau)
            return
        rho_a = nonnegative(features.rho[0])
        rho_b = nonnegative(features.rho[1])
        rho = rho_a + rho_b
        self.ok = rho > DENSITY_THRESHOLD
        self.n = jnp.where(self.ok, rho, 1.0)  # double where: finite formulas where masked
        sigma = features.sigma[0] + 2.0 * features.sigma[1] + features.sigma[2]
        sigma = jnp.where(self.ok, nonnegative(sigma), 0.0)
        tau = jnp.where(self.ok, nonnegative(features.tau[0] + features.tau[1]), 0.0)
        # zeta = 0 where masked: spin_fractions would give 1 +- zeta = 0 there, hence phi = 0
        # and inf/nan cotangents through the discarded branch.
        self.opz, self.omz, self.zeta = spin_fractions(jnp.where(self.ok, rho_a, 0.5),
                                                       jnp.where(self.ok, rho_b, 0.5))
        self._set_reduced_variables(sigma, tau)
        # Spin-scaling factors; safe_pow gives the vanishing spin a finite one-sided derivative.
        self.phi = 0.5 * (safe_pow(self.opz, 2.0 / 3.0, ZETA_THRESHOLD)
                          + safe_pow(self.omz, 2.0 / 3.0, ZETA_THRESHOLD))
        self.d_x = 0.5 * (safe_pow(self.opz, 4.0 / 3.0, ZETA_THRESHOLD)
                          + safe_pow(self.omz, 4.0 / 3.0, ZETA_THRESHOLD))
        self.d_s = 0.5 * (safe_pow(self.opz, 5.0 / 3.0, ZETA_THRESHOLD)
                          + safe_pow(self.omz, 5.0 / 3.0, ZETA_THRESHOLD))

    def _set_reduced_variables(self, sigma: Array, tau: Array) -> None:
        n13 = cube_root(self.n)
        n53 = self.n * n13 * n13
        self.rs = _RS / n13
        self.p = sigma / (4.0 * _KF2 * n53 * self.n)
        tau_unif = _TAU_UNIF * n53
        self.z_w = sigma / (8.0 * self.n * tau_unif)  # tau_W / tau_unif
        self.z_tau = tau / tau_unif

    def eps_pw92(self, params: dict, rs: Array) -> Array:
        if self.closed_shell:
            return lda._pw92_g(rs, params["pw92"]["para"])
        return lda.pw92_eps(params["pw92"], rs, self.opz, self.omz, self.zeta)


def _eps_lda0(params: dict, rs: Array) -> Array:
    """SCAN's single-orbital correlation ``eps_c^LDA0 = -b1c / (1 + b2c r_s^(1/2) + b3c r_s)``."""
    return -params["b1c"] / (1.0 + params["b2c"] * jnp.sqrt(rs) + params["b3c"] * rs)


def _g_c(params: dict, d: _Density) -> Array:
    """``G_c(zeta) = [1 - gc (d_x - 1)] (1 - zeta^12)``, ``d_x = ((1+z)^(4/3) + (1-z)^(4/3))/2``."""
    if d.closed_shell:
        return 1.0
    return (1.0 - params["gc"] * (d.d_x - 1.0)) * (1.0 - d.zeta**12)


def _eps_c0(params: dict, d: _Density) -> Array:
    """``eps_c^0 = (eps_c^LDA0 + H0) G_c(zeta)``, ``H0 = b1c ln(1 + w0 (1 - g_inf(p)))``.

    ``w0 = exp(-eps_c^LDA0 / b1c) - 1``, ``g_inf = (1 + 4 chi_inf p)^(-1/4)`` (SCAN).
    """
    e_lda0 = _eps_lda0(params, d.rs)
    w0 = jnp.expm1(-e_lda0 / params["b1c"])
    g_inf = 1.0 / jnp.sqrt(jnp.sqrt(1.0 + 4.0 * params["chi_inf"] * d.p))
    h0 = params["b1c"] * jnp.log1p(w0 * (1.0 - g_inf))
    return (e_lda0 + h0) * _g_c(params, d)


def _eps_c1(params: dict, d: _Density, delta_y: Callable[[Array], Array] | None) -> Array:
    """``eps_c^1 = eps_c^PW92 + H1``, ``H1 = gamma phi^3 ln(1 + w1 (1 - g(y)))``, ``g(y) =
    (1 + 4y)^(-1/4)``.

    ``w1 = exp(-eps_c^PW92 / (gamma phi^3)) - 1``, ``y = beta(r_s) t^2 / (gamma w1) - Delta y``
    (``Delta y = 0`` for SCAN; ``delta_y(w1)`` for r2SCAN), ``t^2 = (3 pi^2/16)^(2/3) p /
    (phi^2 r_s)``.
    """
    e_lsda1 = d.eps_pw92(params, d.rs)
    phi3 = d.phi**3
    w1 = jnp.expm1(-e_lsda1 / (_GAMMA * phi3))
    beta = params["beta"] * (1.0 + params["beta_a"] * d.rs) / (1.0 + params["beta_b"] * d.rs)
    t2 = _T2 * d.p / (d.phi**2 * d.rs)
    y = beta / (_GAMMA * w1) * t2
    if delta_y is not None:
        y = y - delta_y(w1)
    g = 1.0 / jnp.sqrt(jnp.sqrt(1.0 + 4.0 * y))
    return e_lsda1 + _GAMMA * phi3 * jnp.log1p(w1 * (1.0 - g))


def scan_c(params: dict | None, features: Features) -> Array:
    """SCAN correlation energy per volume (libxc MGGA_C_SCAN; PySCF ``,scan``), hartree/bohr^3.

    ``eps_c = eps_c^1 + f_c(alpha) (eps_c^0 - eps_c^1)``, ``alpha = (tau - tau_W) / (tau_unif
    d_s(zeta))``, ``d_s = ((1+zeta)^(5/3) + (1-zeta)^(5/3)) / 2``, ``tau_W = |grad n|^2 / (8n)``.
    J. Sun, A. Ruzsinszky, J. P. Perdew, Phys. Rev. Lett. 115, 036402 (2015).

    Args:
        params: None (:data:`SCAN_C_PARAMS`) or a dict overriding some of them.
        features: Features on n points.
    Returns:
        (n,) correlation energy density.
    """
    params = _with_defaults(SCAN_C_PARAMS, params)
    d = _Density(features)
    alpha = (d.z_tau - d.z_w) / d.d_s
    e1 = _eps_c1(params, d, None)
    e0 = _eps_c0(params, d)
    f = _scan_switch(alpha, params["c1c"], params["c2c"], params["dc"])
    return jnp.where(d.ok, d.n * (e1 + f * (e0 - e1)), 0.0)


def _r2scan_delta_y(params: dict, d: _Density, w1: Array) -> Array:
    """r2SCAN's ``Delta y`` (Furness et al. 2020 and erratum; agrees with libxc to 1e-12).

    ``Delta y = Delta f_c2 / (27 gamma d_s phi^3 w1) {20 r_s (d eps_LSDA0/d r_s - d eps_LSDA1/d r_s)
    - 45 eta (eps_LSDA0 - eps_LSDA1)} p exp(-p^2/dp2^4)``, ``Delta f_c2 = f_c'(1)``,
    ``eps_LSDA0 = eps_c^LDA0 G_c(zeta)``, ``eps_LSDA1 = eps_c^PW92``. To first order in p,
    ``f_c(alpha_bar) (eps_c^0 - eps_c^1)`` adds ``gamma phi^3 w1 Delta y`` to eps_c (the
    gradient expansion of tau, integrated by parts, gives the r_s derivative); subtracting
    ``Delta y`` from y restores eps_c^1's PBE gradient expansion. The r_s derivatives at fixed
    zeta come from forward-mode autodiff, so the energy stays differentiable to any order.
    """
    g_c = _g_c(params, d)

    def eps_difference(rs):
        return _eps_lda0(params, rs) * g_c - d.eps_pw92(params, rs)

    diff, ddiff_drs = jax.jvp(eps_difference, (d.rs,), (jnp.ones_like(d.rs),))
    bracket = 20.0 * d.rs * ddiff_drs - 45.0 * params["eta"] * diff
    damping = jnp.exp(-(d.p**2) / params["dp2"] ** 4)
    slope = _polynomial_slope_at_one(params["fc"])
    return slope / (27.0 * _GAMMA * d.d_s * d.phi**3 * w1) * bracket * d.p * damping


def r2scan_c(params: dict | None, features: Features) -> Array:
    """r2SCAN correlation energy per volume (libxc MGGA_C_R2SCAN; PySCF ``,r2scan``), Ha/bohr^3.

    ``eps_c = eps_c^1 + f_c(alpha_bar) (eps_c^0 - eps_c^1)``, ``alpha_bar = (tau - tau_W) /
    (tau_unif d_s(zeta) + eta tau_W)``; ``eps_c^1`` carries the ``Delta y`` correction. J. W.
    Furness, A. D. Kaplan, J. Ning, J. P. Perdew, J. Sun, J. Phys. Chem. Lett. 11, 8208 (2020);
    erratum 11, 9248 (2020).

    Args:
        params: None (:data:`R2SCAN_C_PARAMS`) or a dict overriding some of them.
        features: Features on n points.
    Returns:
        (n,) correlation energy density.
    """
    params = _with_defaults(R2SCAN_C_PARAMS, params)
    d = _Density(features)
    alpha = (d.z_tau - d.z_w) / (d.d_s + params["eta"] * d.z_w)
    e1 = _eps_c1(params, d, lambda w1: _r2scan_delta_y(params, d, w1))
    e0 = _eps_c0(params, d)
    f = _r2scan_switch(alpha, params["fc"], params["c2c"], params["dc"])
    return jnp.where(d.ok, d.n * (e1 + f * (e0 - e1)), 0.0)
