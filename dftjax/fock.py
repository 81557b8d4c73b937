"""The Kohn-Sham Hamiltonian: Coulomb, exact exchange (full and long-range), XC from autodiff.

:func:`fock_and_energy` maps spin density matrices ``dm (2, nao, nao)`` to the spin Fock matrices
and the energy parts. The XC potential matrix is ``jax.grad`` of the XC energy with respect to the
density matrix, so LDA, GGA, meta-GGA and learned functionals share one path:
``V^xc_{s, mu nu} = d E_xc / d D^s_{mu nu}`` (Pople, Gill, Johnson, Chem. Phys. Lett. 199, 557
(1992) write out the same matrix elements by hand).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from dftjax.system import KSSystem
from functionals import Functional, features_from_density_matrices, restricted_features_from_density_matrix


def coulomb_exchange(system: KSSystem, dm, with_exchange: bool):
    """J[D_a + D_b] (nao, nao) and K[D_s] (2, nao, nao) (zeros if not with_exchange)."""
    total = dm[0] + dm[1]
    if system.eri.size:
        j = jnp.einsum("ijkl,kl->ij", system.eri, total)
    else:
        b = system.df_factor
        j = jnp.einsum("pij,p->ij", b, jnp.einsum("pkl,kl->p", b, total))
    k = _exchange(system.eri, system.df_factor, dm) if with_exchange else jnp.zeros_like(dm)
    return j, k


def _exchange(eri, df_factor, dm):
    """K[D_s] (2, nao, nao) from exact ERIs (nao^4) or, when those are empty, a DF factor."""
    if eri.size:
        return jnp.einsum("ikjl,skl->sij", eri, dm)
    return jnp.einsum("pik,skl,plj->sij", df_factor, dm, df_factor)


def exchange_coefficients(functional: Functional) -> tuple[float, float]:
    """(c_full, c_lr): the exact-exchange matrix is ``c_full K + c_lr K_lr(omega)``.

    PySCF's ``rsh_coeff`` (omega, alpha, beta) means ``alpha K + beta K_sr`` with
    ``K_sr = K - K_lr``, so ``c_full = alpha + beta`` and ``c_lr = -beta`` (CAM-B3LYP: 0.19 and
    0.46, i.e. 19 % short-range and 65 % long-range HF exchange; Yanai, Tew, Handy, CPL 393, 51
    (2004)). Hartree-Fock is ``(1, 0)``.
    """
    if functional.kind == "hf":
        return 1.0, 0.0
    if functional.omega:
        return functional.alpha + functional.beta, -functional.beta
    return functional.exact_exchange, 0.0


def xc_energy(functional: Functional, params, system: KSSystem, dm, closed_shell: bool = False):
    """Semilocal XC energy (Ha) of spin density matrices dm (2, nao, nao).

    With ``closed_shell`` (dm[0] == dm[1]) the functional sees total-density features and
    evaluates its unpolarised formulas (functionals without them receive equal spin halves);
    the energy is the same, the gradient with respect to each dm[s] is dE/dD_total = V_xc.
    """
    if closed_shell:
        features = restricted_features_from_density_matrix(system.ao, dm[0] + dm[1])
    else:
        features = features_from_density_matrices(system.ao, dm)
    if getattr(functional, "needs_grid_coulomb", False):  # a local hybrid: reads e_x^HF[dm](r)
        return functional.xc_energy(params, features, system.weights, system.ao, dm, system.grid_coulomb)
    return jnp.sum(system.weights * functional(features, params))


class EnergyParts(NamedTuple):
    one_electron: jax.Array
    coulomb: jax.Array
    exchange: jax.Array  # exact-exchange contribution (already scaled by the hybrid fraction)
    xc: jax.Array
    nuclear_repulsion: jax.Array

    @property
    def total(self):
        return self.one_electron + self.coulomb + self.exchange + self.xc + self.nuclear_repulsion


class HybridParams(NamedTuple):
    """Functional parameters with a differentiable fraction of exact exchange (a pytree).

    Pass as the functional parameters (e.g. ``parameter_gradient(..., params=HybridParams(f.params,
    jnp.asarray(f.exact_exchange)))``) to differentiate with respect to the exact-exchange
    coefficient ``a0`` of a global hybrid: ``E = E_KS[functional] - (a0 - a0_f) E_x^HF`` with
    ``E_x^HF = 1/2 sum_s tr(K[D_s] D_s)`` and ``a0_f`` the functional's own fraction, so the energy
    and Fock matrix (``F_s -= (a0 - a0_f) K[D_s]``) are exactly those of the functional with ``a0``
    (Becke, J. Chem. Phys. 98, 5648 (1993): B3LYP's ``a0 = 0.20``). Range-separated parts keep
    their fixed coefficients.

    Attributes:
      xc: the semilocal functional's parameters (``Functional.params``).
      exact_exchange: () fraction of full-range Hartree-Fock exchange.
    """

    xc: Any
    exact_exchange: jax.Array


def _split_params(functional: Functional, params):
    """(semilocal params, exact-exchange shift a0 - a0_f or None)."""
    if isinstance(params, HybridParams):
        return params.xc, params.exact_exchange - exchange_coefficients(functional)[0]
    return params, None


def _coulomb_and_exact_exchange(functional: Functional, params, system: KSSystem, dm):
    """``(semilocal params, J (nao, nao), K (2, nao, nao))``, K already scaled by its fractions
    (full-range ``a0`` plus any :class:`HybridParams` shift, and the long-range part)."""
    params, shift = _split_params(functional, params)
    hybrid, long_range = exchange_coefficients(functional)
    if shift is not None:
        hybrid = hybrid + shift
    j, k = coulomb_exchange(system, dm, with_exchange=shift is not None or hybrid != 0.0)
    k = hybrid * k
    if long_range:
        k = k + long_range * _exchange(system.eri_lr, system.df_factor_lr, dm)
    return params, j, k


def fock_and_energy(functional: Functional, params, system: KSSystem, dm, closed_shell: bool = False):
    """Spin Fock matrices (2, nao, nao) and :class:`EnergyParts` of density matrices dm.

    ``closed_shell`` (static): dm[0] == dm[1], use the functional's closed-shell formulas.
    ``params`` may be :class:`HybridParams` (a differentiable exact-exchange fraction).
    """
    params, j, k = _coulomb_and_exact_exchange(functional, params, system, dm)
    if functional.kind == "hf":
        e_xc, v_xc = jnp.zeros(()), jnp.zeros_like(dm)
    else:
        e_xc, v_xc = jax.value_and_grad(lambda d: xc_energy(functional, params, system, d, closed_shell))(dm)
        v_xc = 0.5 * (v_xc + jnp.swapaxes(v_xc, 1, 2))
    fock = system.h_core[None] + j[None] - k + v_xc
    parts = EnergyParts(
        one_electron=jnp.sum(system.h_core * (dm[0] + dm[1])),
        coulomb=0.5 * jnp.sum(j * (dm[0] + dm[1])),
        exchange=-0.5 * jnp.sum(k * dm),
        xc=e_xc,
        nuclear_repulsion=system.e_nuc,
    )
    return fock, parts


def total_energy(functional: Functional, params, system: KSSystem, dm, closed_shell: bool = False) -> jax.Array:
    """Kohn-Sham total energy (Ha) of spin density matrices dm (2, nao, nao), without the Fock build.

    Equal to ``fock_and_energy(...)[1].total``; cheaper (no XC potential), and what is differentiated.
    ``params`` may be :class:`HybridParams` (a differentiable exact-exchange fraction).
    """
    params, j, k = _coulomb_and_exact_exchange(functional, params, system, dm)
    total = dm[0] + dm[1]
    e_xc = jnp.zeros(()) if functional.kind == "hf" else xc_energy(functional, params, system, dm, closed_shell)
    return (jnp.sum(system.h_core * total) + 0.5 * jnp.sum(j * total) - 0.5 * jnp.sum(k * dm)
            + e_xc + system.e_nuc)
