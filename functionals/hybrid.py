"""Hybrid functionals: semilocal mixtures plus exact-exchange fractions (B3LYP, PBE0, CAM-B3LYP).

A hybrid is a :class:`~functionals.functional.Functional` whose ``energy_density`` is the
semilocal part and whose ``exact_exchange`` / ``(omega, alpha, beta)`` tell the solver which HF
exchange matrices to add (conventions in :mod:`functionals.functional`). Definitions are PySCF's:

=================  ==============================================================  ==============
builder            semilocal part                                                  HF exchange
=================  ==============================================================  ==============
:func:`make_b3lyp`   .08 Slater + .72 B88, .81 LYP + .19 VWN-RPA (libxc 402)         0.20
:func:`make_b3lyp5`  .08 Slater + .72 B88, .81 LYP + .19 VWN5 (PySCF ``b3lyp5``)     0.20
:func:`make_pbe0`    .75 PBE_X + PBE_C (libxc 406)                                   0.25
:func:`make_camb3lyp` .35 B88 + .46 B88_SR(0.33), .81 LYP + .19 VWN5 (libxc 433)     rsh (0.33, 0.65, -0.46)
=================  ==============================================================  ==============

Note that PySCF's ``b3lyp`` is libxc's HYB_GGA_XC_B3LYP with the VWN fit to RPA (``vwn3``/
``vwnrpa`` in PySCF's names), whereas the string ``".2*HF + .08*LDA + .72*B88, .81*LYP + .19*VWN"``
means VWN5 (``b3lyp5``), because ``VWN`` alone is VWN5 in PySCF.
"""
from __future__ import annotations

from functionals import gga, lda
from functionals.functional import Functional, linear_combination


def make_b3lyp() -> Functional:
    """B3LYP as PySCF's ``b3lyp`` (libxc HYB_GGA_XC_B3LYP, VWN-RPA), 20% HF exchange.

    ``E_xc = 0.2 E_x^HF + 0.08 E_x^Slater + 0.72 E_x^B88 + 0.81 E_c^LYP + 0.19 E_c^VWN-RPA``
    (B88 including its LDA part, as in libxc).

    A. D. Becke, J. Chem. Phys. 98, 5648 (1993); P. J. Stephens, F. J. Devlin, C. F. Chabalowski,
    M. J. Frisch, J. Phys. Chem. 98, 11623 (1994).
    """
    return linear_combination(
        [(0.08, lda.make_slater_x()), (0.72, gga.make_b88_x()), (0.81, gga.make_lyp_c()),
         (0.19, lda.make_vwn_rpa_c())],
        "b3lyp", hf=0.2, lr_hf=0.2)


def make_b3lyp5() -> Functional:
    """B3LYP with VWN5, PySCF's ``b3lyp5`` (``.2*HF + .08*SLATER + .72*B88, .81*LYP + .19*VWN``)."""
    return linear_combination(
        [(0.08, lda.make_slater_x()), (0.72, gga.make_b88_x()), (0.81, gga.make_lyp_c()),
         (0.19, lda.make_vwn5_c())],
        "b3lyp5", hf=0.2, lr_hf=0.2)


def make_pbe0() -> Functional:
    """PBE0 (PBE1PBE), libxc HYB_GGA_XC_PBEH: ``0.25 E_x^HF + 0.75 E_x^PBE + E_c^PBE``.

    C. Adamo and V. Barone, J. Chem. Phys. 110, 6158 (1999); M. Ernzerhof and G. E. Scuseria,
    J. Chem. Phys. 110, 5029 (1999).
    """
    return linear_combination([(0.75, gga.make_pbe_x()), (1.0, gga.make_pbe_c())], "pbe0",
                              hf=0.25, lr_hf=0.25)


#: CAM-B3LYP: 1/r = [1 - (alpha + beta erf(mu r))]/r + [alpha + beta erf(mu r)]/r with
#: alpha = 0.19, beta = 0.46, mu = 0.33 in Yanai's notation (not PySCF's alpha/beta).
CAMB3LYP_YANAI = {"alpha": 0.19, "beta": 0.46, "mu": 0.33}


def make_camb3lyp() -> Functional:
    """CAM-B3LYP (libxc HYB_GGA_XC_CAM_B3LYP, PySCF ``camb3lyp``).

    Exchange: HF with ``alpha + beta erf(mu r)`` (19% short range, 65% long range) and B88 with the
    complement, ``(1 - alpha - beta) E_x^B88 + beta E_x^B88,SR(mu) = 0.35 E_x^B88 +
    0.46 E_x^B88,SR(0.33)``, the short-range part by the ITYH scheme (:func:`gga.b88_short_range_x`).
    Correlation ``0.81 LYP + 0.19 VWN5``. In PySCF's ``rsh_coeff`` convention
    ``(omega, alpha, beta) = (0.33, 0.65, -0.46)``: ``K = 0.65 K_full - 0.46 K_sr``; and
    ``exact_exchange`` is PySCF's ``hybrid_coeff('camb3lyp') = 0.65`` (libxc's cam_alpha).

    T. Yanai, D. P. Tew, N. C. Handy, Chem. Phys. Lett. 393, 51 (2004).
    """
    alpha, beta, mu = (CAMB3LYP_YANAI[k] for k in ("alpha", "beta", "mu"))
    combined = linear_combination(
        [(1.0 - alpha - beta, gga.make_b88_x()), (beta, gga.make_b88_short_range_x(mu)),
         (0.81, gga.make_lyp_c()), (0.19, lda.make_vwn5_c())],
        "camb3lyp", hf=alpha, lr_hf=alpha + beta, omega=mu)
    return combined.replace(exact_exchange=alpha + beta)
