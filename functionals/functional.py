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

from functionals.features import Features, RestrictedFeatures

Array = jnp.ndarray

KINDS = ("hf", "lda", "gga", "mgga")


class EnergyDensity(Protocol):
    """``(params, features) -> (n,)`` energy per volume on the n points of ``features``."""

    def __call__(self, params: Any, features: Features) -> Array: ...


def _evaluate(energy_density: EnergyDensity, supports_restricted: bool, params: Any,
              features: Features | RestrictedFeatures) -> Array:
    """``energy_density(params, features)``, splitting closed-shell features into equal spin halves
    for an energy density that only knows spin-resolved :class:`Features`."""
    if isinstance(features, RestrictedFeatures) and not supports_restricted:
        features = features.split()
    return energy_density(params, features)


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
        supports_restricted: whether ``energy_density`` accepts closed-shell
            :class:`~functionals.features.RestrictedFeatures` (and evaluates its unpolarised
            formulas on them). If False, calling the Functional with RestrictedFeatures passes the
            equal spin halves instead; either way the result is the same energy density.
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
    supports_restricted: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {self.kind!r}")

    def __call__(self, features: Features | RestrictedFeatures, params: Any = None) -> Array:
        """Energy per volume (n,) with ``params`` (default: ``self.params``).

        ``features`` may be spin-resolved :class:`Features` or closed-shell
        :class:`RestrictedFeatures` (total-density quantities; see ``supports_restricted``).
        """
        return _evaluate(self.energy_density, self.supports_restricted,
                         self.params if params is None else params, features)

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


def _zero_energy_density(params: Any, features: Features | RestrictedFeatures) -> Array:
    del params
    return jnp.zeros_like(features.total_density)


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
    supports = tuple(f.supports_restricted for _, f in terms)
    coefficients = tuple(c for c, _ in terms)

    def energy_density(params, features: Features | RestrictedFeatures) -> Array:
        e = None
        for c, fn, ok, p in zip(coefficients, energy_densities, supports, params):
            term = c * _evaluate(fn, ok, p, features)
            e = term if e is None else e + term
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
        supports_restricted=True,  # splits for the components that need it
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
        **coefficients: exact_exchange, omega, alpha, beta, needs_laplacian, and
            ``supports_restricted=True`` if the function also accepts closed-shell
            :class:`~functionals.features.RestrictedFeatures` (otherwise it is given the
            equal spin halves).
    """
    return Functional(name=name, kind=kind, energy_density=energy_density, params=params,
                      **coefficients)


#: Features each kind of functional reads (the potentials :func:`energy_and_potentials` returns).
FIELDS_READ = {"hf": (), "lda": ("rho",), "gga": ("rho", "sigma"), "mgga": ("rho", "sigma", "tau")}


def fields_read(functional: Functional) -> tuple[str, ...]:
    """Names of the feature arrays ``functional`` reads, from its kind (plus ``lapl`` if needed)."""
    return FIELDS_READ[functional.kind] + (("lapl",) if functional.needs_laplacian else ())


def energy_and_potentials(functional: Functional, features: Features | RestrictedFeatures,
                          params: Any = None, *, chunk_size: int = 2048
                          ) -> tuple[Array, dict[str, Array]]:
    """Energy density and its pointwise derivatives, by ``jax.vjp`` over chunks of grid points.

    Because ``e_g`` depends on the features at point ``g`` only, the VJP of ``e`` with a cotangent
    of ones is the pointwise derivative ``de_g / dx_g`` of every feature array ``x``: the
    potentials of libxc's ``eval_xc(..., deriv=1)`` (``vrho, vsigma, vtau, vlapl``; of the total
    density for :class:`RestrictedFeatures`, per spin channel for :class:`Features`).

    The points are processed ``chunk_size`` at a time (``lax.fori_loop``): on CPU, XLA splits a
    functional's reverse pass into many loops over the points, and on whole 1e6-point arrays
    every intermediate goes through main memory; per chunk they stay in cache (3x faster for
    r2SCAN, 2x for PBE, measured; see ``dftjax bench functionals``). The result is the same
    and stays differentiable (to any order) like any JAX function.

    A solver gets its XC matrix by the chain rule through the features of the density matrix::

        features, pullback = jax.vjp(lambda d: restricted_features_from_density_matrix(ao, d), dm)
        e, v = energy_and_potentials(xc, features)
        e_xc = jnp.sum(weights * e)
        v_xc = pullback(potential_cotangent(features, v, weights))[0]   # dE_xc/dD

    Args:
        functional: the functional.
        features: Features or RestrictedFeatures on n points (arrays with the points last).
        params: parameters (default ``functional.params``).
        chunk_size: points per chunk; n <= chunk_size is evaluated in one piece.
    Returns:
        ``(e, potentials)``: e (n,) energy per volume; potentials a dict from the names in
        :func:`fields_read` to arrays shaped like those features (``rho`` (n,) or (2, n), ...).
    """
    import jax  # local: this module otherwise needs jax.numpy only

    params = functional.params if params is None else params
    names = fields_read(functional)

    def one(chunk):
        inputs = {k: getattr(chunk, k) for k in names}
        e, pullback = jax.vjp(lambda x: functional(chunk._replace(**x), params), inputs)
        return e, pullback(jnp.ones_like(e))[0]

    n = features.rho.shape[-1]
    if n <= chunk_size:
        return one(features)
    n_chunks = -(-n // chunk_size)
    # Only the features read are sliced (the others are zeros the functional ignores), in place
    # along the last axis: no padded or transposed copies of the inputs and outputs. The last
    # chunk starts at n - chunk_size and recomputes a few points of the previous one.
    zeros = {k: jnp.zeros(getattr(features, k).shape[:-1] + (chunk_size,), features.rho.dtype)
             for k in features._fields if k not in names}

    def body(i, out):
        start = jnp.minimum(i * chunk_size, n - chunk_size)
        chunk = features._replace(**{k: jax.lax.dynamic_slice_in_dim(getattr(features, k), start,
                                                                      chunk_size, axis=-1)
                                     for k in names}, **zeros)
        e, v = one(chunk)
        return jax.tree_util.tree_map(
            lambda acc, x: jax.lax.dynamic_update_slice_in_dim(acc, x, start, axis=-1),
            out, (e, v))

    out = (jnp.zeros(n, features.rho.dtype),
           {k: jnp.zeros_like(getattr(features, k)) for k in names})
    return jax.lax.fori_loop(0, n_chunks, body, out)


def potential_cotangent(features: Features | RestrictedFeatures, potentials: dict[str, Array],
                        weights: Array) -> Features | RestrictedFeatures:
    """``weights * potentials`` as a features pytree (zeros for features not read): the cotangent
    that pulls ``E = sum(weights * e)`` back through the features (see
    :func:`energy_and_potentials`)."""
    return type(features)(**{k: weights * potentials[k] if k in potentials
                             else jnp.zeros_like(getattr(features, k)) for k in features._fields})
