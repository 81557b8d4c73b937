"""Kinetic-energy density functionals T_s[n] for orbital-free DFT (energy per volume, hartree/bohr^d).

Same signature as the exchange-correlation functionals: ``t(params, features) -> (n,)`` with
``T_s = sum(weights * t)``; the potential ``dT_s/dn`` is ``jax.grad`` of the integrated energy.

Spin: a kinetic functional obeys the exact spin-scaling relation (Oliver & Perdew, PRA 20, 397
(1979)) ``T_s[n_a, n_b] = (T_s[2 n_a] + T_s[2 n_b]) / 2``. Every functional here is written for the
unpolarised total density ``n`` (``T0[n]``) and applied per spin channel through that relation, so

* :class:`~functionals.features.RestrictedFeatures` (closed shell, total ``rho`` and ``sigma``)
  evaluate ``T0[n]`` directly, and
* :class:`~functionals.features.Features` evaluate ``(T0[2 rho_a] + T0[2 rho_b]) / 2`` with
  ``sigma_0 = 4 sigma_ss``; a *spinless* 1D system (Snyder et al.) is ``rho = (n, 0)``.

Functionals (the unpolarised formulas):

* :func:`thomas_fermi`: ``C_F n^(5/3)``, ``C_F = 3/10 (3 pi^2)^(2/3)`` (Thomas 1927, Fermi 1927).
* :func:`thomas_fermi_1d`: the 1D uniform gas, ``pi^2 n^3 / 24`` (two spin channels; per spinless
  channel ``pi^2 n^3 / 6``).
* :func:`von_weizsaecker`: ``|grad n|^2 / (8 n)`` (von Weizsaecker, Z. Phys. 96, 431 (1935)), exact
  for one orbital (any dimension).
* :func:`von_weizsaecker_laplacian`: ``|grad n|^2 / (8 n) - lapl n / 4``, the same integral; its
  integrand vanishes with the density (hard-wall boxes).
* :func:`thomas_fermi_von_weizsaecker` (3D) / :func:`thomas_fermi_von_weizsaecker_1d`:
  ``TF + lambda vW`` (``params = {"lambda": ...}``; 1/9 is the gradient expansion, 1/5 fits atoms).
* :func:`pbe_kinetic`: the PBE-form GGA ``C_F n^(5/3) F(s)``,
  ``F = 1 + kappa - kappa / (1 + mu s^2 / kappa)``, ``s = |grad n| / (2 (3 pi^2)^(1/3) n^(4/3))``,
  with :data:`APBEK_PARAMS` (Constantin, Fabiano, Laricchia & Della Sala, PRL 106, 186406 (2011);
  libxc ``GGA_K_APBE``) or :data:`PBE_TW_PARAMS` (Tran & Wesolowski, IJQC 89, 441 (2002); libxc
  ``GGA_K_TW2``).

Zero density gives zero energy density with finite gradients (double ``where``, see
:mod:`functionals.safe_math`).

>>> import jax.numpy as jnp
>>> from functionals.features import closed_shell_features
>>> f = closed_shell_features(jnp.array([1.0]), jnp.array([0.0]))
>>> round(float(thomas_fermi(None, f)[0]), 6)     # C_F
2.871234
"""
from __future__ import annotations

import math

import jax.numpy as jnp

from functionals.features import Features, RestrictedFeatures
from functionals.safe_math import DENSITY_THRESHOLD, nonnegative, safe_divide, safe_pow

Array = jnp.ndarray

#: Thomas-Fermi constant C_F = 3/10 (3 pi^2)^(2/3) (hartree bohr^2).
THOMAS_FERMI_CONSTANT = 0.3 * (3.0 * math.pi**2) ** (2.0 / 3.0)

#: APBEK (Constantin et al., PRL 106, 186406 (2011)): the PBE form with mu from the semiclassical
#: neutral-atom limit.
APBEK_PARAMS = {"kappa": 0.8040, "mu": 0.23889}

#: PBE-TW (Tran & Wesolowski, IJQC 89, 441 (2002)): kappa, mu fitted to the kinetic energies of
#: atoms (libxc GGA_K_TW3, their third set).
PBE_TW_PARAMS = {"kappa": 0.8438, "mu": 0.2319}

#: lambda of TF + lambda vW: 1/9 (the second-order gradient expansion, Kirzhnits 1957).
GRADIENT_EXPANSION_LAMBDA = 1.0 / 9.0


def _unpolarised_channels(features: Features | RestrictedFeatures):
    """[(n, sigma)] of the unpolarised densities to evaluate, and the weight of each (spin scaling)."""
    if isinstance(features, RestrictedFeatures):
        return [(nonnegative(features.rho), nonnegative(features.sigma))], 1.0
    rho, sigma = features.rho, features.sigma
    return [(2.0 * nonnegative(rho[0]), 4.0 * nonnegative(sigma[0])),
            (2.0 * nonnegative(rho[1]), 4.0 * nonnegative(sigma[2]))], 0.5


def _spin_scaled(t0, features: Features | RestrictedFeatures) -> Array:
    channels, weight = _unpolarised_channels(features)
    return weight * sum(t0(n, sigma) for n, sigma in channels)


def thomas_fermi(params, features: Features | RestrictedFeatures) -> Array:
    """(n,) 3D Thomas-Fermi kinetic energy density ``C_F n^(5/3)`` (hartree/bohr^3).

    ``params``: None, or ``{"c": C}`` to replace C_F (e.g. as a fitted constant).
    """
    c = THOMAS_FERMI_CONSTANT if params is None else params["c"]
    return _spin_scaled(lambda n, sigma: c * safe_pow(n, 5.0 / 3.0), features)


def thomas_fermi_1d(params, features: Features | RestrictedFeatures) -> Array:
    """(n,) 1D Thomas-Fermi kinetic energy density (hartree/bohr).

    The 1D uniform gas of spinless fermions with density n has ``k_F = pi n`` and kinetic energy
    density ``pi^2 n^3 / 6``; with two spin channels, ``pi^2 n^3 / 24``. ``params``: None.
    """
    del params
    return _spin_scaled(lambda n, sigma: (math.pi**2 / 24.0) * n**3, features)


def von_weizsaecker(params, features: Features | RestrictedFeatures) -> Array:
    """(n,) von Weizsaecker kinetic energy density ``|grad n|^2 / (8 n)`` (any dimension).

    Exact for a single orbital (``n = |phi|^2``). Where n is below the density threshold the
    energy density is 0: ``sigma / n`` would be ``0/0`` there, and its gradient ``nan`` without the
    double ``where`` of :func:`~functionals.safe_math.safe_divide`.
    """
    del params
    return _spin_scaled(lambda n, sigma: safe_divide(sigma, 8.0 * n, 8.0 * DENSITY_THRESHOLD), features)


def von_weizsaecker_laplacian(params, features: Features | RestrictedFeatures) -> Array:
    """(n,) von Weizsaecker in the Laplacian form ``|grad n|^2 / (8 n) - lapl n / 4`` (= ``-1/2
    sqrt(n) lapl sqrt(n)``); needs ``features.lapl``.

    Integrates to the same T_vW as :func:`von_weizsaecker` wherever the flux of ``grad n`` through
    the boundary vanishes (open systems; hard walls, where n is even about the wall). Its
    integrand vanishes where n does (like ``x^2`` at a hard wall, where the gradient form tends to
    ``n''/4 != 0``), so a rectangle-rule sum over the interior points of a box converges spectrally
    instead of with an O(dx) wall error.
    """
    del params
    if isinstance(features, RestrictedFeatures):
        lapl = features.lapl
    else:
        lapl = features.lapl[0] + features.lapl[1]
    return von_weizsaecker(None, features) - 0.25 * lapl


def thomas_fermi_von_weizsaecker(params, features: Features | RestrictedFeatures) -> Array:
    """(n,) 3D ``TF + lambda vW`` (``params = {"lambda": lam}``, None for lambda = 1/9)."""
    lam = GRADIENT_EXPANSION_LAMBDA if params is None else params["lambda"]
    return thomas_fermi(None, features) + lam * von_weizsaecker(None, features)


def thomas_fermi_von_weizsaecker_1d(params, features: Features | RestrictedFeatures) -> Array:
    """(n,) 1D ``TF + lambda vW`` (``params = {"lambda": lam}``, None for lambda = 1); vW in the
    Laplacian form (:func:`von_weizsaecker_laplacian`, needs ``features.lapl``) for box densities."""
    lam = 1.0 if params is None else params["lambda"]
    return thomas_fermi_1d(None, features) + lam * von_weizsaecker_laplacian(None, features)


def pbe_kinetic(params, features: Features | RestrictedFeatures) -> Array:
    """(n,) PBE-form GGA kinetic energy density ``C_F n^(5/3) F(s)`` (hartree/bohr^3), 3D.

    ``F(s) = 1 + kappa - kappa / (1 + mu s^2 / kappa)`` with the reduced gradient
    ``s^2 = |grad n|^2 / (4 (3 pi^2)^(2/3) n^(8/3))``. ``params``: ``{"kappa", "mu"}``;
    :data:`APBEK_PARAMS` (default, None) or :data:`PBE_TW_PARAMS`.
    """
    p = APBEK_PARAMS if params is None else params
    kappa, mu = p["kappa"], p["mu"]

    def t0(n, sigma):
        # s^2 ~ sigma n^(-8/3): finite only where n > threshold (safe_pow is 0 elsewhere, and so is
        # the prefactor n^(5/3), so the product is 0 with finite gradients).
        s2 = sigma * safe_pow(n, -8.0 / 3.0) / (4.0 * (3.0 * math.pi**2) ** (2.0 / 3.0))
        enhancement = 1.0 + kappa - kappa / (1.0 + mu * s2 / kappa)
        return THOMAS_FERMI_CONSTANT * safe_pow(n, 5.0 / 3.0) * enhancement

    return _spin_scaled(t0, features)


def pauli_enhancement_inputs(n: Array, sigma: Array) -> Array:
    """(2, n) bounded inputs of a learned Pauli enhancement factor of the unpolarised density:
    ``p / (1 + p)`` with ``p = s^2`` the squared reduced gradient (as in :func:`pbe_kinetic`), and
    ``n^(1/3) / (1 + n^(1/3))`` (a density scale, bohr^-1 units of k_F / (3 pi^2)^(1/3)). Both lie
    in [0, 1), so the network never extrapolates in the tails (s -> infinity) or at nuclei."""
    p = sigma * safe_pow(n, -8.0 / 3.0) / (4.0 * (3.0 * math.pi**2) ** (2.0 / 3.0))
    cube_root = safe_pow(n, 1.0 / 3.0)
    return jnp.stack([p / (1.0 + p), cube_root / (1.0 + cube_root)])


def pauli_mlp(params, features: Features | RestrictedFeatures) -> Array:
    """(n,) learned Pauli kinetic energy density ``C_F n^(5/3) G_theta(s, n)`` (hartree/bohr^3), 3D.

    The Pauli kinetic energy ``T_s - T_vW >= 0`` (Levy & Ou-Yang, PRA 38, 625 (1988)) is what an
    orbital-free functional built on von Weizsaecker must supply; here it is the Thomas-Fermi
    energy density times a non-negative enhancement ``G = softplus(MLP(x))`` of
    :func:`pauli_enhancement_inputs` (a semilocal, GGA-level Pauli functional, in the spirit of
    the learned kinetic functionals of M-OFDFT, Zhang et al., Nat. Comput. Sci. 4, 210 (2024),
    which are nonlocal). ``params = {"weights": [W_1, ..., W_L], "biases": [b_1, ..., b_L]}``
    with ``W_1`` (2, h_1), ..., ``W_L`` (h_{L-1}, 1); tanh hidden layers. Spin through
    :func:`_spin_scaled` like every functional here; 0 where the density is 0.
    """
    weights, biases = params["weights"], params["biases"]

    def t0(n, sigma):
        x = pauli_enhancement_inputs(n, sigma).T                 # (n, 2)
        for w, b in zip(weights[:-1], biases[:-1]):
            x = jnp.tanh(x @ w + b[None, :])
        enhancement = jnp.logaddexp(0.0, (x @ weights[-1] + biases[-1][None, :])[:, 0])   # softplus >= 0
        return THOMAS_FERMI_CONSTANT * safe_pow(n, 5.0 / 3.0) * enhancement

    return _spin_scaled(t0, features)
