"""The :class:`Functional` record: an energy density, its parameters and its exact-exchange recipe.

A functional is a pure function of density features,

    ``energy_density(params, features) -> (n,)``, the energy per volume (hartree/bohr^3), so that
    ``E_xc = sum(weights * energy_density(params, features))``,

described by a frozen :class:`Functional` that also carries what the semilocal part cannot: the
fractions of Hartree-Fock exchange. Potentials are never written by hand; they are ``jax.grad`` of
the integrated energy with respect to the features (or the density matrix upstream).

Exact-exchange conventions are PySCF's (``pyscf.dft.libxc.hybrid_coeff`` / ``rsh_coeff``):

* ``exact_exchange`` = ``hybrid_coeff(xc)``: the fraction of full-range HF exchange of a global
  hybrid (0.2 for B3LYP, 0.25 for PBE0, 1 for HF).
* ``(omega, alpha, beta)`` = ``rsh_coeff(xc)``. The exchange matrix to add is
  ``K = alpha * K_full + beta * K_sr(omega)`` with ``K_sr`` built from ``erfc(omega r)/r``
  (equivalently ``(alpha + beta) K_sr + alpha K_lr``). For CAM-B3LYP ``(0.33, 0.65, -0.46)``:
  19% short-range and 65% long-range HF exchange. For global hybrids ``omega = beta = 0`` and
  ``alpha = exact_exchange``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import jax.numpy as jnp

from functionals.features import Features

Array = jnp.ndarray

KINDS = ("hf", "lda", "gga", "mgga")


class EnergyDensity(Protocol):
    """``(params, features) -> (n,)`` energy per volume on the n points of ``features``."""

    def __call__(self, params: Any, features: Features) -> Array: ...


@dataclass(frozen=True, kw_only=True, eq=False)
class Functional:
    """An exchange-correlation (or any density) functional.

    Compared and hashed by identity (``eq=False``), so a Functional can be a static argument of
    ``jax.jit`` although its ``params`` may be a dict.

    Attributes:
        name: PySCF/libxc-style name (``"b3lyp"``, ``"pbe"``, ...).
        kind: ``"hf"`` (no semilocal part), ``"lda"``, ``"gga"`` (needs sigma) or ``"mgga"``
            (needs tau; and lapl if ``needs_laplacian``); a solver evaluates the features it needs.
        energy_density: ``(params, features) -> (n,)`` energy per volume (hartree/bohr^3).
        params: default parameters pytree passed to ``energy_density`` (None for fixed formulas).
        exact_exchange: fraction of full-range HF exchange, PySCF's ``hybrid_coeff``.
        omega: range-separation parameter (bohr^-1) of ``erf(omega r)/r``, PySCF ``rsh_coeff[0]``.
        alpha: coefficient of full-range HF exchange, ``rsh_coeff[1]``.
        beta: coefficient of short-range (erfc) HF exchange, ``rsh_coeff[2]``.
        needs_laplacian: whether ``features.lapl`` must be computed.
        components: for a mixture built by :func:`linear_combination`, its ``(coefficient,
            Functional)`` terms (the energy density is their weighted sum); empty otherwise.
    """

    name: str
    kind: str
    energy_density: EnergyDensity
    params: Any = None
    exact_exchange: float = 0.0
    omega: float = 0.0
    alpha: float = 0.0
    beta: float = 0.0
    needs_laplacian: bool = False
    components: tuple[tuple[float, "Functional"], ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {self.kind!r}")

    def __call__(self, features: Features, params: Any = None) -> Array:
        """Energy per volume (n,) with ``params`` (default: ``self.params``)."""
        return self.energy_density(self.params if params is None else params, features)

    @property
    def is_hybrid(self) -> bool:
        return self.exact_exchange != 0.0 or self.alpha != 0.0 or self.beta != 0.0

    @property
    def is_range_separated(self) -> bool:
        return self.omega != 0.0

    def rsh_coeff(self) -> tuple[float, float, float]:
        """``(omega, alpha, beta)`` as PySCF's ``numint.rsh_coeff``."""
        return (self.omega, self.alpha, self.beta)

    def replace(self, **changes) -> "Functional":
        return dataclasses.replace(self, **changes)


def exchange_correlation_energy(functional: Functional, features: Features, weights: Array,
                                params: Any = None) -> Array:
    """Semilocal energy ``sum_g w_g e(params, features)_g`` (hartree); exact exchange not included.

    Args:
        functional: the functional.
        features: Features on n points.
        weights: (n,) quadrature weights.
        params: parameters (default ``functional.params``).
    """
    return jnp.sum(weights * functional(features, params))


def _zero_energy_density(params: Any, features: Features) -> Array:
    del params
    return jnp.zeros_like(features.rho[0])


def _kind_of(kinds: Sequence[str]) -> str:
    return max(kinds, key=KINDS.index, default="hf")


def linear_combination(terms: Sequence[tuple[float, Functional]], name: str, *,
                       hf: float = 0.0, lr_hf: float = 0.0, omega: float = 0.0) -> Functional:
    """``sum_i c_i f_i`` plus explicit HF terms, with PySCF's rules for the exchange coefficients.

    The energy density is ``e(params, features) = sum_i c_i e_i(params[i], features)`` with
    ``params`` the tuple of the components' params. HF coefficients follow
    ``pyscf.dft.libxc.parse_xc``/``rsh_coeff``: ``hf`` is the total short-range HF coefficient and
    ``lr_hf`` the long-range one of the explicitly written terms (``"HF"`` adds to both,
    ``"SR_HF(w)"`` to ``hf``, ``"LR_HF(w)"`` to ``lr_hf``); then ``alpha = lr_hf``,
    ``beta = hf - lr_hf`` (0 unless omega is set), and each component adds ``c_i`` times its own
    coefficients.

    Args:
        terms: (coefficient, Functional) pairs.
        name: name of the result.
        hf, lr_hf, omega: explicit exact-exchange terms (see above).
    Returns:
        The combined Functional.
    """
    terms = tuple((float(c), f) for c, f in terms)
    energy_densities = tuple(f.energy_density for _, f in terms)
    coefficients = tuple(c for c, _ in terms)

    def energy_density(params, features: Features) -> Array:
        e = jnp.zeros_like(features.rho[0])
        for c, fn, p in zip(coefficients, energy_densities, params):
            e = e + c * fn(p, features)
        return e

    alpha = lr_hf
    beta = hf - lr_hf if omega else 0.0
    exact_exchange = hf
    for c, f in terms:
        if f.omega:
            if omega and f.omega != omega:
                raise ValueError(f"different range-separation omegas: {omega} and {f.omega}")
            omega = f.omega
        exact_exchange += c * f.exact_exchange
        alpha += c * f.alpha
        beta += c * f.beta
    if not terms:
        energy_density = _zero_energy_density
    return Functional(
        name=name,
        kind=_kind_of([f.kind for _, f in terms]),
        energy_density=energy_density,
        params=tuple(f.params for _, f in terms),
        exact_exchange=exact_exchange,
        omega=omega,
        alpha=alpha,
        beta=beta,
        needs_laplacian=any(f.needs_laplacian for _, f in terms),
        components=terms,
    )


def from_energy_density(name: str, energy_density: Callable[[Any, Features], Array], params: Any,
                        *, kind: str = "mgga", **coefficients) -> Functional:
    """Wrap any ``(params, features) -> (n,)`` function (e.g. a Flax ``apply``) as a Functional.

    ::

        model = MyEnergyDensity()                      # any flax.linen.Module on Features
        variables = model.init(key, features)
        neural = from_energy_density("my-nn", model.apply, variables, kind="gga",
                                     exact_exchange=0.2)
        grads = jax.grad(lambda v: jnp.sum(w * neural(features, v)))(variables)  # dE/dweights

    (full example: tests/functionals/test_neural.py).

    Args:
        name: a label.
        energy_density: the function.
        params: its (trainable) parameters pytree.
        kind: which features it reads (``"lda"``/``"gga"``/``"mgga"``).
        **coefficients: exact_exchange, omega, alpha, beta, needs_laplacian.
    """
    return Functional(name=name, kind=kind, energy_density=energy_density, params=params,
                      **coefficients)
