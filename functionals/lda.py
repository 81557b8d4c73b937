"""Local density approximations: Slater exchange; VWN5, VWN-RPA, PW92 and PZ81 correlation.

Every function has the functional signature ``e(params, features) -> (n,)``, returning the energy
per volume ``rho * eps_xc`` in hartree/bohr^3 for spin-resolved :class:`~functionals.features.Features`
or, with the unpolarised (zeta = 0) formulas, closed-shell
:class:`~functionals.features.RestrictedFeatures`;
``params`` is a dict of the paper's constants (the ``*_PARAMS`` defaults), so they can be refitted
by gradient descent. Names and definitions follow libxc as called by PySCF:

=====================  ==============================  =============================
function               libxc                           PySCF xc names
=====================  ==============================  =============================
:func:`slater_x`       LDA_X (1)                       ``lda``, ``slater``
:func:`vwn5_c`         LDA_C_VWN (7)                   ``vwn``, ``vwn5``
:func:`vwn_rpa_c`      LDA_C_VWN_RPA (8)               ``vwn3``, ``vwnrpa`` (in ``b3lyp``)
:func:`pw92_c`         LDA_C_PW (12), LDA_C_PW_MOD(13) ``pw``, ``pw_mod``
:func:`pz81_c`         LDA_C_PZ (9)                    ``pz`` (the LDA inside P86)
=====================  ==============================  =============================
"""
from __future__ import annotations

import copy
import math

import jax.numpy as jnp

from functionals.features import Features, RestrictedFeatures
from functionals.functional import Functional
from functionals.safe_math import (DENSITY_THRESHOLD, FZETA_PP0, masked_density, nonnegative,
                                   safe_pow, spin_fractions, spin_interpolation_f,
                                   wigner_seitz_radius)

Array = jnp.ndarray

# (3/4) (6/pi)^{1/3}: per-spin Slater coefficient, e_x = -C sum_s rho_s^{4/3}.
_SLATER_SPIN = 0.75 * (6.0 / math.pi) ** (1.0 / 3.0)
# (3/4) (3/pi)^{1/3}: unpolarised Slater coefficient, e_x = -C rho^{4/3} = -2 C_spin (rho/2)^{4/3}.
_SLATER = 0.75 * (3.0 / math.pi) ** (1.0 / 3.0)


def slater_x(params: None, features: Features) -> Array:
    """Slater (Dirac) exchange energy per volume, hartree/bohr^3.

    ``e_x = -(3/4) (6/pi)^{1/3} (rho_a^{4/3} + rho_b^{4/3})``, the exchange of the uniform gas with
    the exact spin scaling ``E_x[rho_a, rho_b] = (E_x[2 rho_a] + E_x[2 rho_b]) / 2``.

    P. A. M. Dirac, Proc. Cambridge Philos. Soc. 26, 376 (1930); J. C. Slater, Phys. Rev. 81, 385
    (1951).

    Args:
        params: unused (None).
        features: Features on n points.
    Returns:
        (n,) exchange energy density.
    """
    del params
    if isinstance(features, RestrictedFeatures):
        # each spin half rho/2 must exceed the threshold, as on the split path
        d = masked_density(features.rho, 2.0 * DENSITY_THRESHOLD)
        return jnp.where(d.ok, -_SLATER * d.rho * d.cbrt, 0.0)
    rho = nonnegative(features.rho)
    return -_SLATER_SPIN * jnp.sum(safe_pow(rho, 4.0 / 3.0), axis=0)


def slater_x_spin_density(rho_s: Array) -> Array:
    """Slater exchange energy per volume of one spin channel, ``-(3/4)(6/pi)^{1/3} rho_s^{4/3}``."""
    return -_SLATER_SPIN * safe_pow(rho_s, 4.0 / 3.0)


# --------------------------------------------------------------------------------------------
# VWN
# --------------------------------------------------------------------------------------------

#: VWN fits (A, x0, b, c) in hartree: Table 5 of Vosko, Wilk, Nusair (1980); A halved from Rydberg.
#: "para"/"ferro": Ceperley-Alder based fits (VWN5); "alpha": spin stiffness, A = -1/(6 pi^2).
VWN5_PARAMS = {
    "para": (0.0310907, -0.10498, 3.72744, 12.9352),
    "ferro": (0.01554535, -0.32500, 7.06042, 18.0578),
    "alpha": (-1.0 / (6.0 * math.pi**2), -0.0047584, 1.13107, 13.0045),
}

#: VWN fits to the RPA correlation energies (VWN Table 5, "RPA" column), used by libxc's
#: LDA_C_VWN_RPA and hence by PySCF's ``b3lyp``.
VWN_RPA_PARAMS = {
    "para": (0.0310907, -0.409286, 13.0720, 42.7198),
    "ferro": (0.01554535, -0.743294, 20.1231, 101.578),
}


def _vwn_fit(x: Array, fit) -> Array:
    """VWN Pade-interpolation formula (VWN eq. 4.4) at ``x = sqrt(r_s)``, hartree per electron.

    ``eps(x) = A [ ln(x^2/X) + 2b/Q atan(Q/(2x+b))
                  - b x0/X(x0) ( ln((x-x0)^2/X) + 2(b+2x0)/Q atan(Q/(2x+b)) ) ]``,
    ``X(x) = x^2 + b x + c``, ``Q = sqrt(4c - b^2)``.
    """
    a, x0, b, c = fit
    big_x = x * x + b * x + c
    big_x0 = x0 * x0 + b * x0 + c
    q = jnp.sqrt(4.0 * c - b * b)
    atan_term = jnp.arctan(q / (2.0 * x + b))
    return a * (jnp.log(x * x / big_x) + 2.0 * b / q * atan_term
                - b * x0 / big_x0 * (jnp.log((x - x0) ** 2 / big_x)
                                     + 2.0 * (b + 2.0 * x0) / q * atan_term))


def _masked_lda_c(features: Features | RestrictedFeatures, eps_of_rs_spin,
                  eps_of_rs_unpolarised) -> Array:
    """rho * eps(r_s, 1+zeta, 1-zeta, zeta), zero (with finite derivatives) below the threshold.

    Closed-shell features use ``eps_of_rs_unpolarised(r_s)``, the zeta = 0 value.
    """
    if isinstance(features, RestrictedFeatures):
        d = masked_density(features.rho)
        return jnp.where(d.ok, d.rho * eps_of_rs_unpolarised(d.rs), 0.0)
    rho_a = nonnegative(features.rho[0])
    rho_b = nonnegative(features.rho[1])
    rho = rho_a + rho_b
    ok = rho > DENSITY_THRESHOLD
    rs = wigner_seitz_radius(rho)  # 1 where masked: the discarded branch stays finite
    opz, omz, zeta = spin_fractions(rho_a, rho_b)
    eps = eps_of_rs_spin(rs, opz, omz, zeta)
    return jnp.where(ok, rho * eps, 0.0)


def vwn5_eps(params: dict, rs: Array, opz: Array, omz: Array, zeta: Array) -> Array:
    """VWN5 correlation energy per electron (hartree) with VWN's spin interpolation (VWN eq. 3.2).

    ``eps = eps_P + alpha_c f(zeta)/f''(0) (1 - zeta^4) + (eps_F - eps_P) f(zeta) zeta^4``.
    """
    x = jnp.sqrt(rs)
    e_p = _vwn_fit(x, params["para"])
    e_f = _vwn_fit(x, params["ferro"])
    alpha_c = _vwn_fit(x, params["alpha"])
    f = spin_interpolation_f(opz, omz)
    z4 = zeta**4
    return e_p + alpha_c * f / FZETA_PP0 * (1.0 - z4) + (e_f - e_p) * f * z4


def vwn5_c(params: dict, features: Features) -> Array:
    """VWN5 correlation energy per volume (libxc LDA_C_VWN; PySCF ``vwn``/``vwn5``), hartree/bohr^3.

    S. H. Vosko, L. Wilk, M. Nusair, Can. J. Phys. 58, 1200 (1980), fits to Ceperley-Alder,
    interpolated in spin with the spin stiffness (their eq. 3.2 with the "alpha_c" fit).

    Args:
        params: dict like :data:`VWN5_PARAMS`.
        features: Features on n points.
    Returns:
        (n,) correlation energy density.
    """
    return _masked_lda_c(features, lambda rs, opz, omz, z: vwn5_eps(params, rs, opz, omz, z),
                         lambda rs: _vwn_fit(jnp.sqrt(rs), params["para"]))


def vwn_rpa_eps(params: dict, rs: Array, opz: Array, omz: Array, zeta: Array) -> Array:
    """VWN-RPA correlation per electron, von Barth-Hedin interpolation ``eps_P + f(zeta)(eps_F - eps_P)``."""
    x = jnp.sqrt(rs)
    e_p = _vwn_fit(x, params["para"])
    e_f = _vwn_fit(x, params["ferro"])
    return e_p + spin_interpolation_f(opz, omz) * (e_f - e_p)


def vwn_rpa_c(params: dict, features: Features) -> Array:
    """VWN fit to RPA correlation, per volume (libxc LDA_C_VWN_RPA; PySCF ``vwn3``, in ``b3lyp``).

    S. H. Vosko, L. Wilk, M. Nusair, Can. J. Phys. 58, 1200 (1980) (RPA parameters), spin
    dependence by the von Barth-Hedin f(zeta) (J. Phys. C 5, 1629 (1972)).

    Args:
        params: dict like :data:`VWN_RPA_PARAMS`.
        features: Features on n points.
    Returns:
        (n,) correlation energy density.
    """
    return _masked_lda_c(features, lambda rs, opz, omz, z: vwn_rpa_eps(params, rs, opz, omz, z),
                         lambda rs: _vwn_fit(jnp.sqrt(rs), params["para"]))


# --------------------------------------------------------------------------------------------
# PW92
# --------------------------------------------------------------------------------------------

#: Perdew-Wang 1992 Table I: rows (A, alpha1, beta1, beta2, beta3, beta4, p) for eps_c(rs, 0),
#: eps_c(rs, 1) and -alpha_c(rs); ``fpp0`` is the f''(0) the paper rounds to 1.709921.
PW92_PARAMS = {
    "para": (0.031091, 0.21370, 7.5957, 3.5876, 1.6382, 0.49294, 1.0),
    "ferro": (0.015545, 0.20548, 14.1189, 6.1977, 3.3662, 0.62517, 1.0),
    "alpha": (0.016887, 0.11125, 10.357, 3.6231, 0.88026, 0.49671, 1.0),
    "fpp0": 1.709921,
}

#: PW92 with the more precise A values and exact f''(0) used by the PBE reference code
#: (libxc LDA_C_PW_MOD; the LDA inside PBE correlation).
PW92_MOD_PARAMS = {
    "para": (0.0310907, 0.21370, 7.5957, 3.5876, 1.6382, 0.49294, 1.0),
    "ferro": (0.01554535, 0.20548, 14.1189, 6.1977, 3.3662, 0.62517, 1.0),
    "alpha": (0.0168869, 0.11125, 10.357, 3.6231, 0.88026, 0.49671, 1.0),
    "fpp0": FZETA_PP0,
}


def _pw92_g(rs: Array, fit) -> Array:
    """PW92 eq. 10: ``G = -2A (1 + alpha1 rs) ln(1 + 1 / (2A (b1 rs^1/2 + b2 rs + b3 rs^3/2 + b4 rs^(p+1))))``."""
    a, alpha1, b1, b2, b3, b4, p = fit
    srs = jnp.sqrt(rs)
    den = 2.0 * a * (b1 * srs + b2 * rs + b3 * rs * srs + b4 * rs ** (p + 1.0))
    return -2.0 * a * (1.0 + alpha1 * rs) * jnp.log1p(1.0 / den)


def pw92_eps(params: dict, rs: Array, opz: Array, omz: Array, zeta: Array) -> Array:
    """PW92 correlation energy per electron (hartree), PW92 eq. 8.

    ``eps = eps_0 + alpha_c f(zeta)/f''(0) (1 - zeta^4) + (eps_1 - eps_0) f(zeta) zeta^4``.
    """
    e0 = _pw92_g(rs, params["para"])
    e1 = _pw92_g(rs, params["ferro"])
    minus_alpha = _pw92_g(rs, params["alpha"])
    f = spin_interpolation_f(opz, omz)
    z4 = zeta**4
    return e0 - minus_alpha * f / params["fpp0"] * (1.0 - z4) + (e1 - e0) * f * z4


def pw92_c(params: dict, features: Features) -> Array:
    """Perdew-Wang 1992 correlation energy per volume (libxc LDA_C_PW / LDA_C_PW_MOD), hartree/bohr^3.

    J. P. Perdew and Y. Wang, Phys. Rev. B 45, 13244 (1992).

    Args:
        params: :data:`PW92_PARAMS` (libxc LDA_C_PW, PySCF ``pw``) or :data:`PW92_MOD_PARAMS`
            (LDA_C_PW_MOD, ``pw_mod``).
        features: Features on n points.
    Returns:
        (n,) correlation energy density.
    """
    return _masked_lda_c(features, lambda rs, opz, omz, z: pw92_eps(params, rs, opz, omz, z),
                         lambda rs: _pw92_g(rs, params["para"]))


# --------------------------------------------------------------------------------------------
# PZ81
# --------------------------------------------------------------------------------------------

#: Perdew-Zunger 1981, Table XII (hartree): (gamma, beta1, beta2, A, B, C, D) for the
#: paramagnetic and ferromagnetic gases (rs >= 1 Pade, rs < 1 high-density expansion).
PZ81_PARAMS = {
    "para": (-0.1423, 1.0529, 0.3334, 0.0311, -0.048, 0.0020, -0.0116),
    "ferro": (-0.0843, 1.3981, 0.2611, 0.01555, -0.0269, 0.0007, -0.0048),
}


def _pz81_fit(rs: Array, fit) -> Array:
    gamma, beta1, beta2, a, b, c, d = fit
    high = rs < 1.0
    # Both branches are evaluated: clamp rs so neither sees a log of a large argument or a
    # division that would produce inf in the discarded branch's cotangent.
    rs_lo = jnp.where(high, rs, 0.5)
    rs_hi = jnp.where(high, 2.0, rs)
    ln_rs = jnp.log(rs_lo)
    e_high = a * ln_rs + b + c * rs_lo * ln_rs + d * rs_lo
    e_low = gamma / (1.0 + beta1 * jnp.sqrt(rs_hi) + beta2 * rs_hi)
    return jnp.where(high, e_high, e_low)


def pz81_eps(params: dict, rs: Array, opz: Array, omz: Array, zeta: Array) -> Array:
    """PZ81 correlation per electron, von Barth-Hedin interpolation ``eps_P + f(zeta)(eps_F - eps_P)``."""
    e_p = _pz81_fit(rs, params["para"])
    e_f = _pz81_fit(rs, params["ferro"])
    return e_p + spin_interpolation_f(opz, omz) * (e_f - e_p)


def pz81_c(params: dict, features: Features) -> Array:
    """Perdew-Zunger 1981 correlation energy per volume (libxc LDA_C_PZ), hartree/bohr^3.

    J. P. Perdew and A. Zunger, Phys. Rev. B 23, 5048 (1981), Appendix C; the parametrisation
    of Ceperley-Alder with a (tiny) discontinuity at r_s = 1, as in the paper.

    Args:
        params: dict like :data:`PZ81_PARAMS`.
        features: Features on n points.
    Returns:
        (n,) correlation energy density.
    """
    return _masked_lda_c(features, lambda rs, opz, omz, z: pz81_eps(params, rs, opz, omz, z),
                         lambda rs: _pz81_fit(rs, params["para"]))


# --------------------------------------------------------------------------------------------
# Functional records (fresh copies of the default params, so callers may modify them)
# --------------------------------------------------------------------------------------------

def make_slater_x() -> Functional:
    """Slater exchange, libxc LDA_X (PySCF ``lda``, ``slater``)."""
    return Functional(name="slater", kind="lda", energy_density=slater_x, params=None,
                      supports_restricted=True)


def make_vwn5_c() -> Functional:
    """VWN5 correlation, libxc LDA_C_VWN (PySCF ``vwn``, ``vwn5``)."""
    return Functional(name="vwn5", kind="lda", energy_density=vwn5_c,
                      params=copy.deepcopy(VWN5_PARAMS), supports_restricted=True)


def make_vwn_rpa_c() -> Functional:
    """VWN-RPA correlation, libxc LDA_C_VWN_RPA (PySCF ``vwn3``, ``vwnrpa``; used by ``b3lyp``)."""
    return Functional(name="vwn_rpa", kind="lda", energy_density=vwn_rpa_c,
                      params=copy.deepcopy(VWN_RPA_PARAMS), supports_restricted=True)


def make_pw92_c(modified: bool = False) -> Functional:
    """PW92 correlation: libxc LDA_C_PW (``pw``), or LDA_C_PW_MOD (``pw_mod``) if ``modified``."""
    params = PW92_MOD_PARAMS if modified else PW92_PARAMS
    return Functional(name="pw_mod" if modified else "pw", kind="lda", energy_density=pw92_c,
                      params=copy.deepcopy(params), supports_restricted=True)


def make_pz81_c() -> Functional:
    """Perdew-Zunger 81 correlation, libxc LDA_C_PZ (PySCF ``pz``)."""
    return Functional(name="pz81", kind="lda", energy_density=pz81_c,
                      params=copy.deepcopy(PZ81_PARAMS), supports_restricted=True)
