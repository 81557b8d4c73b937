"""Generalised gradient approximations: B88, PBE, short-range B88 (ITYH) exchange; PBE, LYP, P86 correlation.

Every function has the functional signature ``e(params, features) -> (n,)`` (energy per volume,
hartree/bohr^3, for spin-resolved :class:`~functionals.features.Features`, or with the
unpolarised formulas for closed-shell :class:`~functionals.features.RestrictedFeatures`; exchange
by the exact spin scaling, correlation at zeta = 0); ``params`` is a dict of
the paper's constants (the ``*_PARAMS`` defaults). As in libxc, GGA exchange functionals include
their LDA part. Definitions match libxc as called by PySCF:

=========================  ==========================  ======================
function                   libxc                       PySCF xc names
=========================  ==========================  ======================
:func:`b88_x`              GGA_X_B88 (106)             ``b88``
:func:`pbe_x`              GGA_X_PBE (101)             ``pbe,`` (exchange)
:func:`b88_short_range_x`  GGA_X_ITYH (529)            (in ``camb3lyp``)
:func:`pbe_c`              GGA_C_PBE (130)             ``,pbe`` (correlation)
:func:`lyp_c`              GGA_C_LYP (131)             ``lyp``
:func:`p86_c`              GGA_C_P86 (132)             ``p86``
=========================  ==========================  ======================
"""
from __future__ import annotations

import copy
import math

import jax.numpy as jnp
import jax.scipy.special as jsp

from functionals import lda
from functionals.features import Features, RestrictedFeatures
from functionals.functional import Functional
from functionals.safe_math import (DENSITY_THRESHOLD, ZETA_THRESHOLD, MaskedDensity,
                                   masked_density, nonnegative, safe_pow, spin_fractions,
                                   wigner_seitz_radius)

Array = jnp.ndarray

# (3/2) (3/(4 pi))^{1/3}: e_x^LDA = -C rho_s^{4/3} per spin channel.
_LDA_X_SPIN = 1.5 * (3.0 / (4.0 * math.pi)) ** (1.0 / 3.0)


def _closed_shell(features: RestrictedFeatures, per_spin: bool) -> tuple[MaskedDensity, Array]:
    """Masked total density and non-negative sigma of closed-shell features.

    ``per_spin``: mask where the spin halves ``rho/2`` are below the threshold (exchange, whose
    spin-resolved form masks each channel), else where the total density is.
    """
    threshold = 2.0 * DENSITY_THRESHOLD if per_spin else DENSITY_THRESHOLD
    return masked_density(features.rho, threshold), nonnegative(features.sigma)


def _spin_channels(features: Features):
    """Non-negative (rho_s, sigma_ss) per spin: ((rho_a, sigma_aa), (rho_b, sigma_bb))."""
    rho = nonnegative(features.rho)
    sigma = nonnegative(features.sigma)
    return ((rho[0], sigma[0]), (rho[1], sigma[2]))


def _reduced_gradient_sq(rho_s: Array, sigma_s: Array) -> Array:
    """``x_s^2 = sigma_ss / rho_s^{8/3}`` (0 below the density threshold)."""
    return sigma_s * safe_pow(rho_s, -8.0 / 3.0)


def _x_asinh_x(x2: Array) -> Array:
    """``x asinh(x)`` as a function of ``x^2``, smooth at ``x = 0``.

    ``sqrt`` has an infinite derivative at 0; below ``x^2 = 1e-8`` the Taylor series
    ``x^2 - x^4/6 + 3 x^6/40`` (next term ``x^8 5/112``, relative 1e-24) replaces it exactly to
    double precision, and the double where keeps the discarded branch's cotangent finite.
    """
    small = x2 < 1e-8
    x = jnp.sqrt(jnp.where(small, 1.0, x2))
    series = x2 * (1.0 - x2 / 6.0 + 3.0 * x2 * x2 / 40.0)
    return jnp.where(small, series, x * jnp.arcsinh(x))


# --------------------------------------------------------------------------------------------
# Exchange
# --------------------------------------------------------------------------------------------

#: Becke 1988: beta = 0.0042 (fit to HF exchange of noble gases), gamma = 6 (from the asymptote).
B88_PARAMS = {"beta": 0.0042, "gamma": 6.0}


def _b88_k(params: dict, x2: Array) -> Array:
    """``C + beta x^2 / (1 + gamma beta x asinh x)``, so that ``e_x,s = -rho_s^{4/3} (...)``."""
    beta = params["beta"]
    return _LDA_X_SPIN + beta * x2 / (1.0 + params["gamma"] * beta * _x_asinh_x(x2))


def b88_x(params: dict, features: Features) -> Array:
    """Becke 88 exchange energy per volume (LDA included), hartree/bohr^3.

    ``e_x = -sum_s rho_s^{4/3} [ (3/2)(3/(4 pi))^{1/3} + beta x_s^2 / (1 + 6 beta x_s asinh x_s) ]``,
    ``x_s = |grad rho_s| / rho_s^{4/3}``.

    A. D. Becke, Phys. Rev. A 38, 3098 (1988), eq. 8.

    Args:
        params: dict like :data:`B88_PARAMS`.
        features: Features on n points.
    Returns:
        (n,) exchange energy density.
    """
    if isinstance(features, RestrictedFeatures):
        # 2 e_s(rho/2, sigma/4): x_s^2 = 2^{2/3} sigma / rho^{8/3}, 2 (rho/2)^{4/3} = 2^{-1/3} rho^{4/3}
        d, sigma = _closed_shell(features, per_spin=True)
        rho43 = d.rho * d.cbrt
        x2 = 2.0 ** (2.0 / 3.0) * sigma / (rho43 * rho43)
        return jnp.where(d.ok, -(2.0 ** (-1.0 / 3.0)) * rho43 * _b88_k(params, x2), 0.0)
    e = 0.0
    for rho_s, sigma_s in _spin_channels(features):
        x2 = _reduced_gradient_sq(rho_s, sigma_s)
        e = e - safe_pow(rho_s, 4.0 / 3.0) * _b88_k(params, x2)
    return e


#: PBE: kappa = 0.804 (Lieb-Oxford), mu = beta pi^2 / 3 with the PBE beta = 0.06672455060314922.
PBE_X_PARAMS = {"kappa": 0.804, "mu": 0.06672455060314922 * math.pi**2 / 3.0}


def pbe_x(params: dict, features: Features) -> Array:
    """PBE exchange energy per volume (LDA included), hartree/bohr^3.

    ``F_x(s) = 1 + kappa - kappa / (1 + mu s^2 / kappa)`` with
    ``s = |grad n| / (2 (3 pi^2)^{1/3} n^{4/3})``, applied per spin through the exact spin scaling
    ``E_x[rho_a, rho_b] = (E_x[2 rho_a] + E_x[2 rho_b]) / 2``.

    J. P. Perdew, K. Burke, M. Ernzerhof, Phys. Rev. Lett. 77, 3865 (1996), eq. 14.

    Args:
        params: dict like :data:`PBE_X_PARAMS`.
        features: Features on n points.
    Returns:
        (n,) exchange energy density.
    """
    kappa, mu = params["kappa"], params["mu"]
    if isinstance(features, RestrictedFeatures):
        # s^2 = sigma / (4 (3 pi^2)^{2/3} rho^{8/3}); e = e_x^LDA(rho) F_x(s)
        d, sigma = _closed_shell(features, per_spin=True)
        rho43 = d.rho * d.cbrt
        s2 = sigma / (4.0 * (3.0 * math.pi**2) ** (2.0 / 3.0) * rho43 * rho43)
        f_x = 1.0 + kappa - kappa / (1.0 + mu * s2 / kappa)
        return jnp.where(d.ok, -lda._SLATER * rho43 * f_x, 0.0)
    # s^2 of the spin-scaled density 2 rho_s: sigma_ss / ((3 pi^2)^{2/3} 2^{8/3} rho_s^{8/3})
    s2_factor = 1.0 / ((3.0 * math.pi**2) ** (2.0 / 3.0) * 2.0 ** (8.0 / 3.0))
    e = 0.0
    for rho_s, sigma_s in _spin_channels(features):
        s2 = s2_factor * _reduced_gradient_sq(rho_s, sigma_s)
        f_x = 1.0 + kappa - kappa / (1.0 + mu * s2 / kappa)
        e = e + lda.slater_x_spin_density(rho_s) * f_x
    return e


#: ITYH short-range B88: the B88 constants and the range-separation parameter omega (bohr^-1) of
#: CAM-B3LYP.
B88_SHORT_RANGE_PARAMS = {"beta": 0.0042, "gamma": 6.0, "omega": 0.33}


def _attenuation_series_coefficients(n_terms: int = 13) -> list[float]:
    """Taylor coefficients c_k of the erf attenuation F(a) = sum_{k>=1} c_k b^{2k}, b = 1/a.

    Expanding erf and exp in :func:`erf_attenuation`'s closed form gives
    ``c_k = -(8/3) (-1/4)^k [1/(k! (2k+1)) - 1/(2 (k+1)!) - 1/(4 (k+2)!)]`` (c_1 = 1/36); 13 terms
    are exact to 1e-18 relative for b <= 1.
    """
    coeffs = []
    for k in range(1, n_terms + 1):
        bracket = (1.0 / (math.factorial(k) * (2 * k + 1)) - 1.0 / (2.0 * math.factorial(k + 1))
                   - 1.0 / (4.0 * math.factorial(k + 2)))
        coeffs.append(-(8.0 / 3.0) * (-0.25) ** k * bracket)
    return coeffs


_ATTENUATION_SERIES = _attenuation_series_coefficients()


def _attenuation_series_tail(b2: Array) -> Array:
    """``F(a) - b^2/36 = sum_{k>=2} c_k b^{2k}`` by Horner's rule."""
    acc = 0.0
    for c in reversed(_ATTENUATION_SERIES[1:]):
        acc = acc * b2 + c
    return acc * b2 * b2


def _erf_attenuation_closed(a: Array) -> Array:
    """Closed form of F(a) for 0.05 <= a < 1 (see :func:`erf_attenuation`)."""
    return 1.0 - (8.0 / 3.0) * a * (
        math.sqrt(math.pi) * jsp.erf(0.5 / a) + (2.0 * a - 4.0 * a**3) * jnp.exp(-0.25 / a**2)
        - 3.0 * a + 4.0 * a**3)


def _erf_attenuation_small(a: Array) -> Array:
    """F(a) for a < 0.05, where exp(-1/(4a^2)) < 4e-44 and 1 - erf(1/(2a)) < 2e-45 vanish."""
    return 1.0 - (8.0 / 3.0) * a * (math.sqrt(math.pi) - 3.0 * a + 4.0 * a**3)


def erf_attenuation(a: Array) -> Array:
    """Short-range fraction of LDA-like exchange for the erfc-screened Coulomb interaction.

    ``F(a) = 1 - (8/3) a [ sqrt(pi) erf(1/(2a)) + (2a - 4a^3) exp(-1/(4a^2)) - 3a + 4a^3 ]``,
    ``a = omega / (2 k)``; Savin's attenuation as written by Iikura et al., JCP 115, 3540 (2001),
    eq. 10. Three branches keep it exact and differentiable: ``a < 0.05`` (a polynomial, finite at
    a = 0), ``a >= 1`` (the closed form cancels catastrophically, ``F ~ 1/(36 a^2)``: the Taylor
    series in 1/a^2), the closed form between.
    """
    small = a < 0.05
    large = a >= 1.0
    # Each branch sees a harmless argument where it is discarded, so its cotangent stays finite.
    a_mid = jnp.where(small | large, 0.5, a)
    a_small = jnp.where(small, a, 0.0)
    b2 = 1.0 / jnp.where(large, a, 2.0) ** 2
    series = b2 / 36.0 + _attenuation_series_tail(b2)
    return jnp.where(small, _erf_attenuation_small(a_small),
                     jnp.where(large, series, _erf_attenuation_closed(a_mid)))


def b88_short_range_x(params: dict, features: Features) -> Array:
    """Short-range (erfc-attenuated) B88 exchange by the ITYH scheme, hartree/bohr^3.

    Each spin channel's B88 exchange ``e_s = -(1/2) rho_s^{4/3} K_s`` is multiplied by
    :func:`erf_attenuation` at ``a_s = omega / (2 k_s)`` with the GGA Fermi momentum
    ``k_s = sqrt(9 pi / K_s) rho_s^{1/3}`` (which is (6 pi^2 rho_s)^{1/3} for the LDA ``K``).

    At low density (``a_s >= 1``, where ``F ~ b^2/36``, ``b = 1/a_s``) the leading term
    ``(K_s/2) b^2/36 = pi rho_s^{2/3} / (2 omega^2)`` does not depend on ``K_s``; it is written
    without ``K_s`` so that ``d/dsigma`` (carried by the small remaining terms) is not a difference
    of large equal numbers.

    H. Iikura, T. Tsuneda, T. Yanai, K. Hirao, J. Chem. Phys. 115, 3540 (2001), eqs. 9-11;
    used for CAM-B3LYP by T. Yanai, D. P. Tew, N. C. Handy, Chem. Phys. Lett. 393, 51 (2004).

    Args:
        params: dict like :data:`B88_SHORT_RANGE_PARAMS` (beta, gamma of B88; omega in bohr^-1).
        features: Features on n points.
    Returns:
        (n,) short-range exchange energy density.
    """
    if isinstance(features, RestrictedFeatures):
        # exact spin scaling: twice the channel of rho/2 (this functional is not performance
        # critical, so the spin-resolved channel formula serves both)
        rho = nonnegative(features.rho)
        return 2.0 * _b88_short_range_channel(params, 0.5 * rho, 0.25 * nonnegative(features.sigma))
    e = 0.0
    for rho_s, sigma_s in _spin_channels(features):
        e = e + _b88_short_range_channel(params, rho_s, sigma_s)
    return e


def _b88_short_range_channel(params: dict, rho_s: Array, sigma_s: Array) -> Array:
    """One spin channel of :func:`b88_short_range_x` (non-negative rho_s, sigma_ss)."""
    omega = params["omega"]
    omega_safe = jnp.where(omega > 0.0, omega, 1.0)  # large-a branch is never taken at omega = 0
    x2 = _reduced_gradient_sq(rho_s, sigma_s)
    k_half = _b88_k(params, x2)  # K_s / 2
    rho_23 = safe_pow(rho_s, 2.0 / 3.0)
    # a_s = omega / (2 k_s) = omega sqrt(K_s / (36 pi)) rho_s^{-1/3}
    a = omega * jnp.sqrt(k_half / (18.0 * math.pi)) * safe_pow(rho_s, -1.0 / 3.0)
    small = a < 0.05
    large = a >= 1.0
    a_mid = jnp.where(small | large, 0.5, a)
    a_small = jnp.where(small, a, 0.0)
    b2 = 1.0 / jnp.where(large, a, 2.0) ** 2
    k_series = 0.5 * math.pi * rho_23 / omega_safe**2 + k_half * _attenuation_series_tail(b2)
    k_attenuated = jnp.where(
        small, k_half * _erf_attenuation_small(a_small),
        jnp.where(large, k_series, k_half * _erf_attenuation_closed(a_mid)))
    return -safe_pow(rho_s, 4.0 / 3.0) * k_attenuated


# --------------------------------------------------------------------------------------------
# Correlation
# --------------------------------------------------------------------------------------------

#: PBE correlation: beta = 0.06672455060314922, gamma = (1 - ln 2)/pi^2; the uniform-gas part is
#: PW92 with the PBE code's precise constants (libxc LDA_C_PW_MOD).
PBE_C_PARAMS = {"beta": 0.06672455060314922, "gamma": (1.0 - math.log(2.0)) / math.pi**2,
                "pw92": lda.PW92_MOD_PARAMS}


def pbe_c(params: dict, features: Features) -> Array:
    """PBE correlation energy per volume (PW92 included), hartree/bohr^3.

    ``e = rho [eps_c^PW92(r_s, zeta) + H]``, ``H = gamma phi^3 ln(1 + beta/gamma t^2
    (1 + A t^2) / (1 + A t^2 + A^2 t^4))``, ``A = beta/gamma / (exp(-eps_c/(gamma phi^3)) - 1)``,
    ``t = |grad n| / (2 phi k_s n)``, ``k_s = sqrt(4 k_F / pi)``,
    ``phi = ((1+zeta)^{2/3} + (1-zeta)^{2/3}) / 2``.

    J. P. Perdew, K. Burke, M. Ernzerhof, Phys. Rev. Lett. 77, 3865 (1996), eqs. 3, 7, 8.

    Evaluated as the algebraically identical ``eps_c + H = gamma phi^3 ln(1 - u / ((1 + u)
    (1 + y + y^2)))``, ``u = exp(-eps_c/(gamma phi^3)) - 1``, ``y = A t^2``, which does not cancel
    when ``H -> -eps_c`` at large t (the textbook sum, as in libxc, loses up to 1e-8 there).

    At a fully polarised point ``d phi / d zeta`` is infinite; the zero branch of the safe power
    gives the vanishing spin a finite (one-sided, 0 for that term) derivative instead.

    Args:
        params: dict like :data:`PBE_C_PARAMS`.
        features: Features on n points.
    Returns:
        (n,) correlation energy density.
    """
    beta, gamma = params["beta"], params["gamma"]
    if isinstance(features, RestrictedFeatures):
        # zeta = 0: phi = 1, eps_unif the paramagnetic PW92
        d, sigma = _closed_shell(features, per_spin=False)
        eps_unif = lda._pw92_g(d.rs, params["pw92"]["para"])
        ks2 = 4.0 * (3.0 * math.pi**2) ** (1.0 / 3.0) / math.pi * d.cbrt
        t2 = sigma / (4.0 * ks2 * d.rho * d.rho)
        u = jnp.expm1(-eps_unif / gamma)
        y = beta / gamma * t2 / u
        eps_c = gamma * jnp.log1p(-u / ((1.0 + u) * (1.0 + y * (1.0 + y))))
        return jnp.where(d.ok, d.rho * eps_c, 0.0)
    rho_a = nonnegative(features.rho[0])
    rho_b = nonnegative(features.rho[1])
    rho = rho_a + rho_b
    ok = rho > DENSITY_THRESHOLD
    rho_safe = jnp.where(ok, rho, 1.0)
    sigma = features.sigma
    sigma_total = nonnegative(sigma[0] + 2.0 * sigma[1] + sigma[2])
    rs = wigner_seitz_radius(rho)
    opz, omz, zeta = spin_fractions(rho_a, rho_b)
    eps_unif = lda.pw92_eps(params["pw92"], rs, opz, omz, zeta)
    phi = 0.5 * (safe_pow(opz, 2.0 / 3.0, ZETA_THRESHOLD) + safe_pow(omz, 2.0 / 3.0, ZETA_THRESHOLD))
    k_fermi = (3.0 * math.pi**2 * rho_safe) ** (1.0 / 3.0)
    ks2 = 4.0 * k_fermi / math.pi
    t2 = sigma_total / (4.0 * phi**2 * ks2 * rho_safe**2)
    phi3 = phi**3
    # With u = beta/(gamma A) = exp(-eps_unif/(gamma phi^3)) - 1 and y = A t^2, the identity
    # eps_unif = -gamma phi^3 ln(1 + u) gives eps_unif + H = gamma phi^3 ln(1 - u / ((1 + u)
    # (1 + y + y^2))) exactly; the textbook sum cancels catastrophically for large t (H -> -eps).
    u = jnp.expm1(-eps_unif / (gamma * phi3))
    y = beta / gamma * t2 / u
    eps_c = gamma * phi3 * jnp.log1p(-u / ((1.0 + u) * (1.0 + y * (1.0 + y))))
    return jnp.where(ok, rho * eps_c, 0.0)


#: Lee-Yang-Parr constants a, b, c, d (Colle-Salvetti fit to the helium atom).
LYP_PARAMS = {"a": 0.04918, "b": 0.132, "c": 0.2533, "d": 0.349}


def lyp_c(params: dict, features: Features) -> Array:
    """Lee-Yang-Parr correlation energy per volume, in the Laplacian-free form, hartree/bohr^3.

    ``e = -4a/(1 + d rho^{-1/3}) rho_a rho_b / rho - a b omega { rho_a rho_b [2^{11/3} C_F
    (rho_a^{8/3} + rho_b^{8/3}) + (47/18 - 7 delta/18) |grad rho|^2 - (5/2 - delta/18)
    (sigma_aa + sigma_bb) - (delta - 11)/9 (rho_a/rho sigma_aa + rho_b/rho sigma_bb)]
    - 2/3 rho^2 |grad rho|^2 + (2/3 rho^2 - rho_a^2) sigma_bb + (2/3 rho^2 - rho_b^2) sigma_aa }``,
    ``omega = exp(-c rho^{-1/3}) / (1 + d rho^{-1/3}) rho^{-11/3}``,
    ``delta = c rho^{-1/3} + d rho^{-1/3} / (1 + d rho^{-1/3})``, ``C_F = (3/10)(3 pi^2)^{2/3}``.

    C. Lee, W. Yang, R. G. Parr, Phys. Rev. B 37, 785 (1988); form after integration by parts:
    B. Miehlich, A. Savin, H. Stoll, H. Preuss, Chem. Phys. Lett. 157, 200 (1989), eq. 2.

    Args:
        params: dict like :data:`LYP_PARAMS`.
        features: Features on n points.
    Returns:
        (n,) correlation energy density.
    """
    a, b, c, d = params["a"], params["b"], params["c"], params["d"]
    c_f = 0.3 * (3.0 * math.pi**2) ** (2.0 / 3.0)
    if isinstance(features, RestrictedFeatures):
        # rho_a = rho_b = rho/2, sigma_ss' = sigma/4: the braces reduce to
        # C_F rho^{14/3} - (3 + 7 delta)/72 rho^2 |grad rho|^2.
        dens, sigma = _closed_shell(features, per_spin=False)
        r13 = 1.0 / dens.cbrt
        den = 1.0 + d * r13
        delta = c * r13 + d * r13 / den
        # omega times the braces, with rho^{-11/3} rho^{14/3} = rho and rho^{-11/3} rho^2 = r13^5
        omega_braces = jnp.exp(-c * r13) / den * (
            c_f * dens.rho - (3.0 + 7.0 * delta) / 72.0 * sigma * r13 * r13 * r13 * r13 * r13)
        return jnp.where(dens.ok, -a * dens.rho / den - a * b * omega_braces, 0.0)
    rho_a = nonnegative(features.rho[0])
    rho_b = nonnegative(features.rho[1])
    s_aa = nonnegative(features.sigma[0])
    s_bb = nonnegative(features.sigma[2])
    s_ab = features.sigma[1]
    rho = rho_a + rho_b
    ok = rho > DENSITY_THRESHOLD
    rho_safe = jnp.where(ok, rho, 1.0)
    r13 = rho_safe ** (-1.0 / 3.0)
    den = 1.0 + d * r13
    # exp(-c rho^{-1/3}) underflows to 0 before rho^{-11/3} can overflow: omega stays finite.
    omega = jnp.exp(-c * r13) / den * rho_safe ** (-11.0 / 3.0)
    delta = c * r13 + d * r13 / den
    s_tot = s_aa + 2.0 * s_ab + s_bb
    rab = rho_a * rho_b
    bracket = rab * (2.0 ** (11.0 / 3.0) * c_f * (safe_pow(rho_a, 8.0 / 3.0) + safe_pow(rho_b, 8.0 / 3.0))
                     + (47.0 / 18.0 - 7.0 * delta / 18.0) * s_tot
                     - (2.5 - delta / 18.0) * (s_aa + s_bb)
                     - (delta - 11.0) / 9.0 * (rho_a * s_aa + rho_b * s_bb) / rho_safe)
    bracket = (bracket - 2.0 / 3.0 * rho_safe**2 * s_tot
               + (2.0 / 3.0 * rho_safe**2 - rho_a**2) * s_bb
               + (2.0 / 3.0 * rho_safe**2 - rho_b**2) * s_aa)
    e = -4.0 * a / den * rab / rho_safe - a * b * omega * bracket
    return jnp.where(ok, e, 0.0)


#: Perdew 86: C(n) = c_inf_low + (c1 + alpha rs + beta rs^2)/(1 + gamma rs + delta rs^2 + 1e4 beta rs^3)
#: (Rasolt-Geldart fit), ``ftilde`` = 0.11 and the 1.745 of Phi; LDA part PZ81.
P86_PARAMS = {"c0": 0.001667, "c1": 0.002568, "alpha": 0.023266, "beta": 7.389e-6,
              "gamma": 8.723, "delta": 0.472, "ftilde": 0.11, "pz81": lda.PZ81_PARAMS}


def p86_c(params: dict, features: Features) -> Array:
    """Perdew 86 correlation energy per volume (PZ81 LDA included), hartree/bohr^3.

    ``e = rho eps_c^PZ81 + exp(-Phi) C(n) |grad n|^2 / (d n^{4/3})``,
    ``Phi = 1.745 ftilde (C(inf)/C(n)) |grad n| / n^{7/6}``,
    ``d = 2^{1/3} sqrt(((1+zeta)/2)^{5/3} + ((1-zeta)/2)^{5/3})``, ``C(inf) = c0 + c1``.

    J. P. Perdew, Phys. Rev. B 33, 8822 (1986), eqs. 6, 9, 10 (erratum 34, 7406).

    ``d/dsigma`` of ``exp(-k sqrt(sigma)) sigma`` is finite at sigma = 0 but its second derivative
    is not; where ``Phi < 1e-16`` (``exp(-Phi) = 1`` in double precision) the factor is set to 1,
    which is exact in value and first derivative and keeps the Hessian finite.

    Args:
        params: dict like :data:`P86_PARAMS`.
        features: Features on n points.
    Returns:
        (n,) correlation energy density.
    """
    p = params
    if isinstance(features, RestrictedFeatures):
        dens, sigma_total = _closed_shell(features, per_spin=False)
        ok, rho_safe, rs = dens.ok, dens.rho, dens.rs
        e_lda = rho_safe * lda._pz81_fit(rs, p["pz81"]["para"])
        d = 1.0  # 2^{1/3} sqrt(2 (1/2)^{5/3}) at zeta = 0
    else:
        rho_a = nonnegative(features.rho[0])
        rho_b = nonnegative(features.rho[1])
        rho = rho_a + rho_b
        ok = rho > DENSITY_THRESHOLD
        rho_safe = jnp.where(ok, rho, 1.0)
        rs = wigner_seitz_radius(rho)
        opz, omz, zeta = spin_fractions(rho_a, rho_b)
        e_lda = rho * lda.pz81_eps(p["pz81"], rs, opz, omz, zeta)
        sigma = features.sigma
        sigma_total = nonnegative(sigma[0] + 2.0 * sigma[1] + sigma[2])
        d = 2.0 ** (1.0 / 3.0) * jnp.sqrt(safe_pow(0.5 * opz, 5.0 / 3.0, ZETA_THRESHOLD)
                                          + safe_pow(0.5 * omz, 5.0 / 3.0, ZETA_THRESHOLD))
    c_n = p["c0"] + (p["c1"] + p["alpha"] * rs + p["beta"] * rs**2) / (
        1.0 + p["gamma"] * rs + p["delta"] * rs**2 + 1.0e4 * p["beta"] * rs**3)
    c_inf = p["c0"] + p["c1"]
    phi_coeff = 1.745 * p["ftilde"] * c_inf / c_n * rho_safe ** (-7.0 / 6.0)
    phi2 = phi_coeff**2 * sigma_total
    small = phi2 < 1e-32
    phi = jnp.sqrt(jnp.where(small, 1.0, phi2))
    damping = jnp.where(small, 1.0, jnp.exp(-phi))
    e_grad = damping * c_n * sigma_total / (d * rho_safe ** (4.0 / 3.0))
    return jnp.where(ok, e_lda + e_grad, 0.0)


# --------------------------------------------------------------------------------------------
# Functional records (fresh copies of the default params, so callers may modify them)
# --------------------------------------------------------------------------------------------

def make_b88_x() -> Functional:
    """Becke 88 exchange, libxc GGA_X_B88 (PySCF ``b88``)."""
    return Functional(name="b88", kind="gga", energy_density=b88_x, params=copy.deepcopy(B88_PARAMS),
                      supports_restricted=True)


def make_pbe_x() -> Functional:
    """PBE exchange, libxc GGA_X_PBE (PySCF ``pbe,``)."""
    return Functional(name="pbe_x", kind="gga", energy_density=pbe_x,
                      params=copy.deepcopy(PBE_X_PARAMS),
                      supports_restricted=True)


def make_b88_short_range_x(omega: float = 0.33) -> Functional:
    """Short-range B88 exchange (ITYH), libxc GGA_X_ITYH with ``omega`` (bohr^-1).

    The record carries ``omega`` (as PySCF's ``rsh_coeff('gga_x_ityh,')`` does) but no exact
    exchange; the long-range remainder is the caller's business (see :func:`hybrid.make_camb3lyp`).
    """
    params = dict(copy.deepcopy(B88_SHORT_RANGE_PARAMS), omega=omega)
    return Functional(name="b88_sr", kind="gga", energy_density=b88_short_range_x, params=params,
                      omega=omega, supports_restricted=True)


def make_pbe_c() -> Functional:
    """PBE correlation, libxc GGA_C_PBE (PySCF ``,pbe``)."""
    return Functional(name="pbe_c", kind="gga", energy_density=pbe_c,
                      params=copy.deepcopy(PBE_C_PARAMS),
                      supports_restricted=True)


def make_lyp_c() -> Functional:
    """Lee-Yang-Parr correlation, libxc GGA_C_LYP (PySCF ``lyp``)."""
    return Functional(name="lyp", kind="gga", energy_density=lyp_c, params=copy.deepcopy(LYP_PARAMS),
                      supports_restricted=True)


def make_p86_c() -> Functional:
    """Perdew 86 correlation, libxc GGA_C_P86 (PySCF ``p86``)."""
    return Functional(name="p86", kind="gga", energy_density=p86_c, params=copy.deepcopy(P86_PARAMS),
                      supports_restricted=True)
