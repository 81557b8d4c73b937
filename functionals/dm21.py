"""DM21 exchange-correlation energy density (hartree/bohr^3) from spin densities and local exact exchange.

The DM21 family of Kirkpatrick et al., "Pushing the frontiers of density functionals by solving the
fractional electron problem", Science 374, 1385 (2021) (DM21, DM21m, DM21mc, DM21mu; parameters
CC BY 4.0, converted from the original TensorFlow checkpoints by ``models/dm21/convert.py``, see
``models/dm21/README.md``), written here in JAX after the network of the original code
(github.com/google-deepmind/deepmind-research, ``density_functional_approximation_dm21``, commit
f5de0ed: the graph in the SavedModels and ``neural_numint.py``).

Per grid point, with ``s`` the spin and ``e_x,s^HF(omega)`` the local Hartree-Fock exchange energy
density of spin ``s`` with kernel ``erf(omega r) / r`` (omega = 0: the full ``1 / r``)::

    x   = (rho_a, rho_b, |grad rho|^2, |grad rho_a|^2, |grad rho_b|^2, tau_a, tau_b,
           e_x,a^HF(0), e_x,a^HF(0.4), e_x,b^HF(0), e_x,b^HF(0.4))                    (11 features)
    h_0 = tanh(W_in log(|x| + 1e-9 + 1e-4) + b_in)                                   (256)
    h_k = elu(layer_norm_k(W_k h_{k-1} + b_k + h_{k-1})),  k = 1..6                   (256)
    f   = 2 sigmoid((W_out h_6 + b_out) / 2)                                         (3, in (0, 2))
    e_xc = f_1 e_x^LSDA + f_2 sum_s e_x,s^HF(0) + f_3 sum_s e_x,s^HF(0.4)
    e_x^LSDA = -(3/4) (6/pi)^(1/3) (rho_a^(4/3) + rho_b^(4/3))

(the form the paper describes; the sizes and constants here are read from the SavedModel graph.
``|grad rho|^2`` is of the total density, ``tau_s = 1/2 sum_i
|grad phi_is|^2``; layer norm with epsilon 1e-5 and learned scale and offset). There is no separate
correlation term: the three factors in (0, 2) carry exchange and correlation together, and the
original's "system" (dispersion) contribution is identically zero for all four functionals.
``e_xc`` integrates to ``E_xc = sum_g w_g e_xc(r_g)``.

Conventions of the original that a Kohn-Sham solver must reproduce (its
``NeuralNumInt.construct_functional_inputs`` and ``compute_hfx_density.get_hf_density``):

* ``e_x,s^HF(omega; r) = -1/2 sum_{lambda sigma} G_s,lambda(r) G_s,sigma(r) A^omega_{lambda sigma}(r)``
  with ``G_s = phi(r) D_s`` and ``A^omega_{lambda sigma}(r) = int phi_lambda phi_sigma erf(omega |r -
  r'|) / |r - r'| dr'`` (PySCF ``int1e_grids`` inside ``mol.with_range_coulomb(omega)``: the
  *long-range* attenuated kernel, omega = 0.4 bohr^-1). Closed shells use ``D_a = D_b = D / 2``.
  :func:`exact_exchange_features` builds them from the grid Coulomb potentials of both kernels.
* Every input is cast to float32 and the network runs in float32 there; here everything is float64
  (the converted float32 weights are exact in float64). :func:`load_params` with ``dtype=float32``
  and float32 features give the original's precision (not its exact operation order).
* ``|x|`` has derivative ``sign(x)``, 0 at ``x = 0`` (TensorFlow's), so a vanishing spin channel
  gets no potential through its log features, as in the original; negative densities (grid noise)
  count as zero in ``rho^(4/3)``.
* The original hands PySCF ``exc = e_xc / (rho + 1e-12)`` (energy per electron), which PySCF
  multiplies back by ``rho``: points with ``rho`` near 1e-12 and below are damped there, not here.

In a Kohn-Sham solver: :func:`make_functional` (what ``get_functional("dm21")`` returns) is a
:class:`DM21Functional`, a nonlocal functional whose solver builds the grid Coulomb potentials of
both kernels; ``dftjax.scf.run_scf`` with ``SCFOptions(xc="dm21")`` and ``dftjax scf --xc dm21``
run it self-consistently (``models/dm21/README.md``: agreement with the original, limits).

>>> import jax.numpy as jnp
>>> params = load_params("dm21")
>>> n = 2
>>> e = energy_density_from_arrays(params, rho=jnp.full((2, n), 0.1), sigma=jnp.full((3, n), 0.01),
...                                tau=jnp.full((2, n), 0.05), exact_exchange=jnp.full((2, 2, n), -0.05))
>>> e.shape
(2,)
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from functionals.features import Features, NonlocalFeatures, RestrictedFeatures
from functionals.neural_xc import NonlocalFunctional
from functionals.registry import DM21_MODELS

Array = jnp.ndarray
Params = dict[str, Any]

#: Names of the four functionals (lower case, as dftjax and PySCF spell functional names).
FUNCTIONAL_NAMES = DM21_MODELS  # the registry's names, one list

#: Range-separation parameters (bohr^-1) of the two exact-exchange features, in feature order;
#: 0 is the unattenuated Coulomb kernel, 0.4 the long-range ``erf(0.4 r) / r``.
OMEGAS = (0.0, 0.4)

#: Number of residual blocks and their width.
N_BLOCKS = 6
WIDTH = 256

#: Spin-polarised LDA exchange: e_x = LSDA_X * sum_s rho_s^(4/3), LSDA_X = -(3/4)(6/pi)^(1/3)
#: (the original's float32 constant -0.9305257201194763 is this value rounded).
LSDA_X = -0.75 * (6.0 / np.pi) ** (1.0 / 3.0)

# The log-feature offsets of the original, added in this order: log(|x| + 1e-9 + 1e-4).
_LOG_EPS_1 = 1e-9
_LOG_EPS_2 = 1e-4
_LAYER_NORM_EPS = 1e-5

MODEL_DIR = os.path.join(os.path.dirname(__file__), "models", "dm21")


def load_params(name: str = "dm21", dtype=jnp.float64, directory: str | None = None) -> Params:
    """The converted parameters of one DM21 functional, as a pytree of arrays.

    Args:
        name: one of :data:`FUNCTIONAL_NAMES` (case-insensitive: ``"DM21mc"`` works).
        dtype: float64 (default; exact copies of the stored float32 values) or float32.
        directory: folder of the ``.npz`` files; default the shipped ``models/dm21``.

    Returns:
        ``{"input": {"w": (11, 256), "b": (256,)}, "blocks": [{"w": (256, 256), "b", "scale",
        "offset": (256,)}] * 6, "output": {"w": (256, 3), "b": (3,)}}``.
    """
    key = name.lower()
    if key not in FUNCTIONAL_NAMES:
        raise ValueError(f"unknown DM21 functional {name!r}; choose one of {', '.join(FUNCTIONAL_NAMES)}")
    path = os.path.join(directory or MODEL_DIR, f"{key}.npz")
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    cast = lambda a: jnp.asarray(a, dtype=dtype)
    return {
        "input": {"w": cast(arrays["input/w"]), "b": cast(arrays["input/b"])},
        "blocks": [{field: cast(arrays[f"block{i}/{field}"]) for field in ("w", "b", "scale", "offset")}
                   for i in range(N_BLOCKS)],
        "output": {"w": cast(arrays["output/w"]), "b": cast(arrays["output/b"])},
    }


def metadata(name: str = "dm21", directory: str | None = None) -> dict:
    """Provenance of the converted parameters (paper, license, source commit, checkpoint hashes)."""
    path = os.path.join(directory or MODEL_DIR, f"{name.lower()}.npz")
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["metadata"]))


def _abs(x: Array) -> Array:
    # TensorFlow's |x| has gradient sign(x), which is 0 at x = 0 (jnp.abs gives 1 there): keeps
    # the potential of an empty spin channel what the original computes.
    return jnp.sign(x) * x


def _positive_pow(x: Array, power: float) -> Array:
    # Double where: x^(4/3) of grid noise below zero would be nan; its discarded branch must be finite.
    ok = x > 0.0
    return jnp.where(ok, jnp.where(ok, x, 1.0) ** power, 0.0)


def network_inputs(rho: Array, sigma: Array, tau: Array, exact_exchange: Array) -> Array:
    """The 11 raw features per point, in the original network's order, shape (n, 11).

    Args:
        rho: (2, n) spin densities (bohr^-3).
        sigma: (3, n) ``grad rho_a.grad rho_a``, ``grad rho_a.grad rho_b``, ``grad rho_b.grad rho_b``.
        tau: (2, n) spin kinetic energy densities, ``1/2 sum_i |grad phi_is|^2``.
        exact_exchange: (2, 2, n) ``e_x,s^HF(omega)``, indexed [spin, omega in :data:`OMEGAS`].
    """
    sigma_total = sigma[0] + 2.0 * sigma[1] + sigma[2]
    columns = (rho[0], rho[1], sigma_total, sigma[0], sigma[2], tau[0], tau[1],
               exact_exchange[0, 0], exact_exchange[0, 1], exact_exchange[1, 0], exact_exchange[1, 1])
    return jnp.stack(columns, axis=-1)


def _layer_norm(h: Array, scale: Array, offset: Array) -> Array:
    mean = jnp.mean(h)
    variance = jnp.mean(jnp.square(h - mean))
    return (h - mean) * jax.lax.rsqrt(variance + _LAYER_NORM_EPS) * scale + offset


def _point_enhancement_factors(params: Params, x: Array) -> Array:
    """The network on one point: (11,) raw features -> (3,) factors."""
    h = jnp.tanh(jnp.log(_abs(x) + _LOG_EPS_1 + _LOG_EPS_2) @ params["input"]["w"] + params["input"]["b"])
    for block in params["blocks"]:
        h = jax.nn.elu(_layer_norm(h @ block["w"] + block["b"] + h, block["scale"], block["offset"]))
    return 2.0 * jax.nn.sigmoid((h @ params["output"]["w"] + params["output"]["b"]) / 2.0)


def enhancement_factors(params: Params, inputs: Array) -> Array:
    """The network's three weights ``f in (0, 2)`` of LSDA, HF and long-range HF exchange, (n, 3).

    Args:
        params: :func:`load_params`.
        inputs: (n, 11) :func:`network_inputs`.
    """
    return jax.vmap(_point_enhancement_factors, in_axes=(None, 0))(params, inputs)


def energy_density_from_arrays(params: Params, rho: Array, sigma: Array, tau: Array,
                               exact_exchange: Array) -> Array:
    """DM21's XC energy per volume (hartree/bohr^3) on n points, shape (n,).

    Args:
        params: :func:`load_params`.
        rho: (2, n) spin densities. sigma: (3, n) libxc's spin gradient invariants.
        tau: (2, n) spin kinetic energy densities (with the factor 1/2).
        exact_exchange: (2, 2, n) local HF exchange energy densities [spin, omega], omega in
            :data:`OMEGAS` (:func:`exact_exchange_features`).
    """
    f = enhancement_factors(params, network_inputs(rho, sigma, tau, exact_exchange))
    lsda_x = LSDA_X * (_positive_pow(rho[0], 4.0 / 3.0) + _positive_pow(rho[1], 4.0 / 3.0))
    hf = exact_exchange[0] + exact_exchange[1]  # (2 omegas, n)
    return f[:, 0] * lsda_x + f[:, 1] * hf[0] + f[:, 2] * hf[1]


def energy_density(params: Params, features: NonlocalFeatures) -> Array:
    """:func:`energy_density_from_arrays` with the signature of every dftjax functional, (n,).

    ``features.semilocal`` is :class:`Features` or :class:`RestrictedFeatures` (handed to the
    network as its two equal spin halves, as the original does for RKS); ``features.exact_exchange``
    is (2, 2, n) [spin, omega] here (:func:`exact_exchange_features`), not the (2, n) of a
    single-kernel local hybrid.
    """
    semilocal = features.semilocal
    if isinstance(semilocal, RestrictedFeatures):
        semilocal = semilocal.split()
    if not isinstance(semilocal, Features):
        raise TypeError(f"DM21 needs Features or RestrictedFeatures, got {type(semilocal).__name__}")
    if features.exact_exchange.ndim != 3 or features.exact_exchange.shape[:2] != (2, len(OMEGAS)):
        raise ValueError("DM21 reads e_x^HF per spin at omega = 0 and 0.4: exact_exchange must be "
                         f"(2, 2, n), got {features.exact_exchange.shape}")
    return energy_density_from_arrays(params, semilocal.rho, semilocal.sigma, semilocal.tau,
                                      features.exact_exchange)


def exact_exchange_features(ao: Array, dm: Array, grid_coulomb: Array, grid_coulomb_long_range: Array) -> Array:
    """Local HF exchange energy densities per spin at omega = 0 and 0.4, (2, 2, n) [spin, omega].

    ``e_x,s^HF(omega; r) = -1/2 sum G_s,lambda(r) G_s,sigma(r) A^omega_{lambda sigma}(r)``,
    ``G_s = phi(r) D_s``; differentiable in ``dm`` (its gradient is the Fock-matrix contribution).

    Args:
        ao: (n, nao) AO values (or (n_comp, n, nao); the first component is used).
        dm: (2, nao, nao) spin density matrices (closed shell: both ``D / 2``).
        grid_coulomb: (n, nao, nao) ``A^0(r_g) = int phi phi / |r_g - r'|`` (PySCF ``int1e_grids``).
        grid_coulomb_long_range: (n, nao, nao) the same with ``erf(0.4 |r_g - r'|) / |r_g - r'|``
            (``int1e_grids`` inside ``mol.with_range_coulomb(0.4)``).
    """
    phi = ao[0] if ao.ndim == 3 else ao
    g = jnp.einsum("gm,sml->sgl", phi, dm)
    per_kernel = [-0.5 * jnp.einsum("sgl,glk,sgk->sg", g, a, g) for a in (grid_coulomb, grid_coulomb_long_range)]
    return jnp.stack(per_kernel, axis=1)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class DM21Functional(NonlocalFunctional):
    """A DM21 functional as dftjax's SCF runs it: a :class:`~functionals.neural_xc.NonlocalFunctional`
    whose exact-exchange ingredient is read at the two kernels of :data:`OMEGAS`.

    ``grid_coulomb_omegas`` tells ``dftjax.system.build_system`` to store one grid Coulomb potential
    per kernel, ``KSSystem.grid_coulomb`` of shape (2, n_grid, nao, nao) (omega = 0, then the
    long-range omega = 0.4), instead of the single (n_grid, nao, nao) of a one-kernel local hybrid;
    :meth:`xc_energy` (called by ``dftjax.fock.xc_energy``) builds :func:`exact_exchange_features`
    from it. No global exact exchange (``exact_exchange = 0``): the network weights the local HF
    energy densities itself.
    """

    grid_coulomb_omegas: tuple[float, ...] = OMEGAS

    def xc_energy(self, params: Any, features, weights: Array, ao: Array, dm: Array, grid_coulomb: Array) -> Array:
        """``sum_g w_g e_xc`` (Ha) at spin density matrices ``dm`` (2, nao, nao).

        Args:
            params: :func:`load_params` (None: the functional's own).
            features: semilocal :class:`Features` or :class:`RestrictedFeatures` of ``dm`` (closed
                shell: the energy is a function of ``dm[0] + dm[1]`` only).
            weights: (n,) quadrature weights. ao: (n_comp, n, nao) AO values.
            grid_coulomb: (2, n, nao, nao) ``A^omega(r_g)`` for omega in :data:`OMEGAS`.
        """
        if grid_coulomb.ndim != 4 or grid_coulomb.shape[0] != len(OMEGAS):
            raise ValueError(f"{self.name} needs grid Coulomb potentials at omega = {OMEGAS}, shape "
                             f"({len(OMEGAS)}, n, nao, nao); got {grid_coulomb.shape}")
        if isinstance(features, RestrictedFeatures):
            # Closed shell (RKS): the network is not symmetric under exchange of the spins, so
            # dE/dD_a != dE/dD_b at D_a = D_b; both channels read D / 2 (as the semilocal features
            # already do), making the Fock matrix dE/dD = (dE/dD_a + dE/dD_b) / 2, the average the
            # original takes of its spin derivatives for RKS (vrho, vsigma, vtau, vhf).
            half = 0.5 * (dm[0] + dm[1])
            dm = jnp.stack([half, half])
        exact_exchange = exact_exchange_features(ao, dm, grid_coulomb[0], grid_coulomb[1])
        return jnp.sum(weights * self(NonlocalFeatures(features, exact_exchange), params))


def make_functional(name: str = "dm21") -> DM21Functional:
    """The DM21 functional ``name`` (:data:`FUNCTIONAL_NAMES`, case-insensitive) with its converted
    parameters, for ``dftjax.scf.run_scf`` (``SCFOptions(xc="dm21")``, ``dftjax scf --xc dm21``).

    Cached: the same object for the same name, so jitted SCF programs (the functional is a static
    argument, hashed by identity) are reused within a process.
    """
    return _functional(name.strip().lower())


@functools.lru_cache(maxsize=None)
def _functional(key: str) -> DM21Functional:
    return DM21Functional(name=key, kind="mgga", energy_density=energy_density, params=load_params(key),
                          supports_restricted=True)
