"""Neural exchange-correlation functionals for 3D Kohn-Sham: a constrained meta-GGA correction.

:func:`make_neural_mgga` builds a :class:`~functionals.functional.Functional` whose energy density
is PBE exchange-correlation times learned, bounded enhancement factors,

    e_xc = sum_s 1/2 e_x^PBE[2 rho_s] (1 + F_x(x_s))  +  e_c^PBE[rho_a, rho_b] (1 + F_c(x_c)),

    F(x) = b tanh(MLP(x) - MLP(x_ueg)),

in the spirit of the physically constrained neural meta-GGAs of Nagai, Akashi & Sugino,
npj Comput. Mater. 6, 43 (2020) (an MLP of semilocal descriptors multiplying a known functional)
and of the bounded, constraint-respecting design of DM21 (Kirkpatrick et al., Science 374, 1385
(2021)). What the architecture enforces, exactly and for every parameter value:

* **Uniform-gas limit.** ``x_ueg`` is the input at zero reduced gradient ``s = 0`` and the
  uniform-gas value of the iso-orbital indicator (``beta = 1/2``, below) at the *same* ``r_s`` and
  ``zeta``; the difference ``MLP(x) - MLP(x_ueg)`` vanishes there, so the functional reduces to PBE,
  i.e. to the uniform electron gas (PW92), at every density and spin polarisation.
* **Exact spin scaling of exchange** ``E_x[rho_a, rho_b] = (E_x[2 rho_a] + E_x[2 rho_b]) / 2``:
  the exchange part (PBE and its correction) is a function of one spin channel scaled to the
  closed-shell density ``n = 2 rho_s`` (``|grad n|^2 = 4 sigma_ss``, ``tau = 2 tau_s``).
* **Bounded correction.** ``|F| <= b`` (``bound``, default 0.5): the learned factor cannot turn
  exchange positive or blow up in density tails where the network extrapolates.
* **Untrained model = PBE.** The output layer is initialised to zero.
* **Zero density.** Inputs are bounded transforms of the safe (double-``where``) density, so values
  and gradients are finite at zero density, zero gradient and full spin polarisation; below
  :data:`~functionals.safe_math.DENSITY_THRESHOLD` the energy density is exactly zero.
* **Spin-swap symmetry of correlation**: the correlation inputs use ``zeta^2`` and symmetric sums.

Inputs (all in [0, 1] or [-1, 1]):

* exchange (per spin, density ``n = 2 rho_s``): ``s^2 / (1 + s^2)`` with
  ``s = |grad n| / (2 (3 pi^2)^(1/3) n^(4/3))``, and the bounded iso-orbital indicator
  ``beta = (tau - tau_W) / (tau + tau_unif)`` (J. W. Furness, J. Sun, Phys. Rev. B 99, 041119
  (2019)), 0 for one-orbital regions, 1/2 for the uniform gas, -> 1 between shells;
* correlation (total density): ``r_s / (1 + r_s)``, ``zeta^2``, ``s^2 / (1 + s^2)``, ``beta`` with
  the spin-polarised ``tau_unif d_s(zeta)`` (1/2 for the uniform gas at any zeta).

Parameters are ``{"exchange": variables, "correlation": variables}`` of two Flax MLPs (float64).
:func:`save_model` / :func:`load_model` store them with their :class:`NeuralMGGAConfig` in one
``.npz`` (no pickles); the pretrained model ships in ``functionals/models`` and is registered as
``"dftjax:nn-mgga"`` (:func:`functionals.get_functional`).

The second model, :func:`make_neural_local_hybrid` (bottom of this module), adds a nonlocal
ingredient: a learned local fraction of the exact-exchange energy density (DM21-style feature). It
is a :class:`NonlocalFunctional`, evaluated only inside dftjax's SCF (which builds the grid Coulomb
potentials it needs), shipped as ``"dftjax:nn-local-hybrid"`` and stored by the same
:func:`save_model` / :func:`load_model` (config :class:`NeuralLocalHybridConfig`, which nests the
semilocal :class:`NeuralMGGAConfig`).

>>> import jax, jax.numpy as jnp
>>> from functionals.features import restricted_features
>>> xc = make_neural_mgga(jax.random.PRNGKey(0))
>>> f = restricted_features(jnp.array([0.0, 1.0]), jnp.array([0.0, 0.1]), jnp.array([0.0, 3.0]))
>>> xc(f).shape
(2,)
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from functionals import gga
from functionals.features import Features, NonlocalFeatures, RestrictedFeatures
from functionals.functional import Functional
from functionals.safe_math import DENSITY_THRESHOLD, ZETA_THRESHOLD, nonnegative, safe_pow, spin_fractions

Array = jnp.ndarray

_KF2 = (3.0 * math.pi**2) ** (2.0 / 3.0)  # k_F^2 / n^(2/3)
_TAU_UNIF = 0.3 * _KF2  # tau_unif = (3/10) (3 pi^2)^(2/3) n^(5/3)
_RS = (3.0 / (4.0 * math.pi)) ** (1.0 / 3.0)  # r_s = _RS n^(-1/3)

#: Uniform-gas values of the bounded inputs: s^2/(1+s^2) = 0 and beta = 1/2.
UEG_GRADIENT = 0.0
UEG_BETA = 0.5


@dataclasses.dataclass(frozen=True, kw_only=True)
class NeuralMGGAConfig:
    """Architecture of :func:`make_neural_mgga`.

    Attributes:
        hidden: widths of the hidden layers of each MLP (exchange and correlation).
        bound: ``b``, the bound on the enhancement corrections ``|F| <= b``.
        name: the Functional's name.
    """

    hidden: tuple[int, ...] = (16, 16)
    bound: float = 0.5
    name: str = "dftjax:nn-mgga"

    def __post_init__(self):
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be positive integers; got {self.hidden!r}")
        if not 0.0 < self.bound < 1.0:
            raise ValueError(f"bound must be in (0, 1) so that 1 + F stays positive; got {self.bound}")


class CorrectionMLP(nn.Module):
    """``(n, d) -> (n,)`` tanh MLP in float64 whose last layer starts at zero (untrained = 0)."""

    hidden: Sequence[int]

    @nn.compact
    def __call__(self, x: Array) -> Array:
        for width in self.hidden:
            x = jnp.tanh(nn.Dense(int(width), param_dtype=jnp.float64, dtype=jnp.float64)(x))
        out = nn.Dense(1, param_dtype=jnp.float64, dtype=jnp.float64,
                       kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros)(x)
        return out[..., 0]


def _bounded_correction(model: CorrectionMLP, variables, x: Array, x_ueg: Array, bound: float) -> Array:
    """``b tanh(MLP(x) - MLP(x_ueg))`` (n,): exactly 0 at the uniform-gas inputs."""
    both = model.apply(variables, jnp.concatenate([x, x_ueg], axis=0))
    n = x.shape[0]
    return bound * jnp.tanh(both[:n] - both[n:])


def _gradient_and_indicator(ok: Array, n: Array, sigma: Array, tau: Array,
                            spin_factor: Array | float = 1.0) -> tuple[Array, Array]:
    """``s^2/(1+s^2)`` and ``beta = (tau - tau_W)/(tau + d_s tau_unif)`` of a safe density ``n``.

    ``n`` is 1 where ``ok`` is False (double where); there the uniform-gas values are returned.
    ``spin_factor`` ``d_s = ((1+zeta)^(5/3) + (1-zeta)^(5/3))/2`` makes ``tau_unif`` that of the
    spin-polarised uniform gas, so ``beta = 1/2`` for it at every zeta (as r2SCAN's correlation).
    ``tau_W <= tau`` holds for exact orbitals; grid noise can violate it, so ``tau - tau_W`` is
    clamped at zero (beta in [0, 1)).
    """
    n13 = jnp.exp(jnp.log(n) / 3.0)
    n83 = n * n * n13 * n13
    s2 = sigma / (4.0 * _KF2 * n83)
    tau_unif = _TAU_UNIF * n * n13 * n13 * spin_factor
    tau_w = sigma / (8.0 * n)
    beta = nonnegative(tau - tau_w) / (tau + tau_unif)
    return (jnp.where(ok, s2 / (1.0 + s2), UEG_GRADIENT), jnp.where(ok, beta, UEG_BETA))


def _exchange_channel(exchange_model, variables, bound: float, rho_s: Array, sigma_ss: Array,
                      tau_s: Array) -> Array:
    """``1/2 e_x^PBE[2 rho_s] (1 + F_x)`` (n,), the exact spin scaling of one channel."""
    rho_s = nonnegative(rho_s)
    ok = rho_s > DENSITY_THRESHOLD
    n = 2.0 * jnp.where(ok, rho_s, 0.5)  # harmless density where masked (double where)
    sigma = 4.0 * jnp.where(ok, nonnegative(sigma_ss), 0.0)
    tau = 2.0 * jnp.where(ok, nonnegative(tau_s), 0.0)
    base = 0.5 * gga.pbe_x(gga.PBE_X_PARAMS, RestrictedFeatures(rho=n, sigma=sigma, tau=tau,
                                                                 lapl=jnp.zeros_like(n)))
    grad, beta = _gradient_and_indicator(ok, n, sigma, tau)
    x = jnp.stack([grad, beta], axis=-1)
    x_ueg = jnp.stack([jnp.full_like(grad, UEG_GRADIENT), jnp.full_like(beta, UEG_BETA)], axis=-1)
    factor = 1.0 + _bounded_correction(exchange_model, variables, x, x_ueg, bound)
    return jnp.where(ok, base * factor, 0.0)


def _correlation(correlation_model, variables, bound: float, features: Features) -> Array:
    """``e_c^PBE (1 + F_c(r_s, zeta^2, s, beta))`` (n,) of the total density."""
    rho_a = nonnegative(features.rho[0])
    rho_b = nonnegative(features.rho[1])
    rho = rho_a + rho_b
    ok = rho > DENSITY_THRESHOLD
    n = jnp.where(ok, rho, 1.0)
    sigma = jnp.where(ok, nonnegative(features.sigma[0] + 2.0 * features.sigma[1] + features.sigma[2]), 0.0)
    tau = jnp.where(ok, nonnegative(features.tau[0] + features.tau[1]), 0.0)
    base = gga.pbe_c(gga.PBE_C_PARAMS, features)
    rs = _RS * jnp.exp(-jnp.log(n) / 3.0)
    opz, omz, zeta = spin_fractions(jnp.where(ok, rho_a, 0.5), jnp.where(ok, rho_b, 0.5))
    d_s = 0.5 * (safe_pow(opz, 5.0 / 3.0, ZETA_THRESHOLD) + safe_pow(omz, 5.0 / 3.0, ZETA_THRESHOLD))
    zeta2 = zeta * zeta
    grad, beta = _gradient_and_indicator(ok, n, sigma, tau, d_s)
    x_rs = rs / (1.0 + rs)
    x = jnp.stack([x_rs, zeta2, grad, beta], axis=-1)
    x_ueg = jnp.stack([x_rs, zeta2, jnp.full_like(grad, UEG_GRADIENT), jnp.full_like(beta, UEG_BETA)],
                      axis=-1)
    factor = 1.0 + _bounded_correction(correlation_model, variables, x, x_ueg, bound)
    return jnp.where(ok, base * factor, 0.0)


def neural_exchange_energy_density(config: NeuralMGGAConfig):
    """Exchange part ``(params, features) -> (n,)``: ``sum_s 1/2 e_x^PBE[2 rho_s] (1 + F_x)``.

    ``params`` is the full ``{"exchange", "correlation"}`` dict; only ``"exchange"`` is read.
    """
    model = CorrectionMLP(hidden=tuple(config.hidden))
    bound = float(config.bound)

    def energy_density(params: Any, features: Features) -> Array:
        if isinstance(features, RestrictedFeatures):
            features = features.split()
        return sum(_exchange_channel(model, params["exchange"], bound, features.rho[s],
                                     features.sigma[2 * s], features.tau[s]) for s in (0, 1))

    return energy_density


def neural_mgga_energy_density(config: NeuralMGGAConfig):
    """The energy density ``(params, features) -> (n,)`` (hartree/bohr^3) of the module docstring.

    Args:
        config: the architecture.
    Returns:
        A function of ``params = {"exchange": ..., "correlation": ...}`` and spin-resolved
        :class:`~functionals.features.Features` on n points (closed-shell
        :class:`~functionals.features.RestrictedFeatures` are passed as equal halves by the
        Functional).
    """
    exchange = neural_exchange_energy_density(config)
    correlation_model = CorrectionMLP(hidden=tuple(config.hidden))
    bound = float(config.bound)

    def energy_density(params: Any, features: Features) -> Array:
        if isinstance(features, RestrictedFeatures):
            features = features.split()
        return exchange(params, features) + _correlation(correlation_model, params["correlation"], bound,
                                                         features)

    return energy_density


def init_params(key: Array, config: NeuralMGGAConfig = NeuralMGGAConfig()) -> dict:
    """Initial float64 parameters ``{"exchange", "correlation"}`` (output layers zero: PBE)."""
    k_x, k_c = jax.random.split(key)
    model = CorrectionMLP(hidden=tuple(config.hidden))
    return {"exchange": model.init(k_x, jnp.zeros((1, 2))),
            "correlation": model.init(k_c, jnp.zeros((1, 4)))}


def make_neural_mgga(key: Array | None = None, config: NeuralMGGAConfig = NeuralMGGAConfig(),
                     params: Any = None) -> Functional:
    """A neural meta-GGA :class:`~functionals.functional.Functional` (``kind="mgga"``, no exact exchange).

    Args:
        key: PRNG key of the initial parameters (ignored when ``params`` is given).
        config: the architecture (:class:`NeuralMGGAConfig`).
        params: parameters (e.g. trained ones); default :func:`init_params` (equal to PBE).
    """
    if params is None:
        params = init_params(jax.random.PRNGKey(0) if key is None else key, config)
    return Functional(name=config.name, kind="mgga", energy_density=neural_mgga_energy_density(config),
                      params=params)


# ---------------------------------------------------------------------------------------------
# Storage: one .npz with flat "exchange/params/Dense_0/kernel"-style keys and a JSON config.


def _flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict) or hasattr(value, "items"):
            out.update(_flatten(value, path))
        else:
            out[path] = np.asarray(value, dtype=np.float64)
    return out


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = jnp.asarray(value, dtype=jnp.float64)
    return tree


def _config_to_json(config) -> str:
    """JSON of a config with the architecture recorded (``"architecture"``: ``"mgga"`` or ``"local_hybrid"``)."""
    if isinstance(config, NeuralLocalHybridConfig):
        return json.dumps({"architecture": "local_hybrid", **dataclasses.asdict(config)})
    if isinstance(config, NeuralMGGAConfig):
        return json.dumps(dataclasses.asdict(config))  # no key: files written before local hybrids
    raise TypeError(f"config must be a NeuralMGGAConfig or NeuralLocalHybridConfig; got {type(config).__name__}")


def _config_from_dict(config_dict: dict):
    """Inverse of :func:`_config_to_json` (a dict without ``"architecture"`` is a meta-GGA config)."""
    config_dict = dict(config_dict)
    architecture = config_dict.pop("architecture", "mgga")
    if architecture == "mgga":
        config_dict["hidden"] = tuple(config_dict["hidden"])
        return NeuralMGGAConfig(**config_dict)
    if architecture == "local_hybrid":
        semilocal = _config_from_dict(config_dict.pop("semilocal"))
        config_dict["hidden"] = tuple(config_dict["hidden"])
        return NeuralLocalHybridConfig(semilocal=semilocal, **config_dict)
    raise ValueError(f"unknown neural-functional architecture {architecture!r}")


#: Parameter groups of each architecture.
_PARAM_GROUPS = {"mgga": {"exchange", "correlation"}, "local_hybrid": {"exchange", "correlation", "mixing"}}


def save_model(path: str, params: Any, config: "NeuralMGGAConfig | NeuralLocalHybridConfig",
               metadata: dict | None = None) -> str:
    """Write ``params`` and ``config`` (and JSON ``metadata``) to ``path`` (.npz) atomically.

    ``config`` is a :class:`NeuralMGGAConfig` or a :class:`NeuralLocalHybridConfig` (its nested
    semilocal config included); the architecture is recorded in the ``config`` JSON, so
    :func:`load_model` returns the same type.
    """
    config_json = _config_to_json(config)
    arrays = {f"params/{k}": v for k, v in _flatten(params).items()}
    arrays["config"] = np.asarray(config_json)
    arrays["metadata"] = np.asarray(json.dumps(metadata or {}))
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp.{os.getpid()}.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path


def load_model(path: str) -> tuple[dict, "NeuralMGGAConfig | NeuralLocalHybridConfig", dict]:
    """``(params, config, metadata)`` from a file written by :func:`save_model`.

    ``config`` is a :class:`NeuralMGGAConfig` (meta-GGA) or a :class:`NeuralLocalHybridConfig`.

    Raises:
        ValueError: missing file, or a file without the expected entries / with non-finite weights.
    """
    if not os.path.isfile(path):
        raise ValueError(f"neural functional weights {path!r} not found")
    with np.load(path, allow_pickle=False) as data:
        if "config" not in data.files:
            raise ValueError(f"{path!r} is not a neural-functional file (no 'config' entry)")
        config_dict = json.loads(str(data["config"]))
        metadata = json.loads(str(data["metadata"])) if "metadata" in data.files else {}
        flat = {k[len("params/"):]: data[k] for k in data.files if k.startswith("params/")}
    for key, value in flat.items():
        if not np.all(np.isfinite(value)):
            raise ValueError(f"non-finite weights {key!r} in {path!r}")
    config = _config_from_dict(config_dict)
    params = _unflatten(flat)
    groups = _PARAM_GROUPS["local_hybrid" if isinstance(config, NeuralLocalHybridConfig) else "mgga"]
    if set(params) != groups:
        raise ValueError(f"{path!r} must hold {sorted(groups)} parameters; got {sorted(params)}")
    return params, config, metadata


#: Directory of the shipped (pretrained) models.
MODELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")

#: Registered names -> shipped weight files in :data:`MODELS_DIR`.
PRETRAINED = {"dftjax:nn-mgga": "nn_mgga.npz", "dftjax:nn-mgga-density": "nn_mgga_density.npz",
              "dftjax:nn-local-hybrid": "nn_local_hybrid.npz"}


def load_pretrained(name: str = "dftjax:nn-mgga") -> Functional:
    """The shipped pretrained functional ``name`` (see ``functionals/models/README.md``).

    ``"dftjax:nn-mgga"`` is a plain :class:`~functionals.functional.Functional`;
    ``"dftjax:nn-local-hybrid"`` a :class:`NonlocalFunctional` (it reads the exact-exchange energy
    density of the density matrix, so only a Kohn-Sham solver that builds the grid Coulomb
    potentials, dftjax's, can evaluate it).
    """
    key = name.strip().lower()
    if key not in PRETRAINED:
        raise ValueError(f"unknown pretrained functional {name!r}; available: {sorted(PRETRAINED)}")
    return model_from_file(os.path.join(MODELS_DIR, PRETRAINED[key]), name=key)


def model_from_file(path: str, name: str | None = None) -> Functional:
    """The functional stored in ``path`` by :func:`save_model` (either architecture), named ``name``."""
    params, config, _ = load_model(path)
    if isinstance(config, NeuralLocalHybridConfig):
        semilocal = config.semilocal if name is None else dataclasses.replace(config.semilocal, name=name)
        return make_neural_local_hybrid(config=dataclasses.replace(config, semilocal=semilocal), params=params)
    return make_neural_mgga(config=config if name is None else dataclasses.replace(config, name=name), params=params)


# ---------------------------------------------------------------------------------------------
# A model with a nonlocal ingredient: a neural local hybrid on the exact-exchange energy density


def exact_exchange_energy_density(ao: Array, dm: Array, coulomb_potentials: Array) -> Array:
    """Per-spin Hartree-Fock exchange energy density ``e_x,s^HF(r)`` (2, n), hartree/bohr^3.

    ``e_x,s(r) = -1/2 sum_{lambda sigma} G_s,lambda(r) G_s,sigma(r) A_{lambda sigma}(r)`` with
    ``G_s,lambda(r) = sum_mu phi_mu(r) D^s_{mu lambda}`` and ``A_{lambda sigma}(r) = int
    phi_lambda(r') phi_sigma(r') / |r - r'| dr'``, so that ``sum_s int e_x,s = -1/2 sum_s
    tr(D_s K[D_s])``, the HF exchange energy. The ingredient of DM21 (Kirkpatrick et al., Science
    374, 1385 (2021)) and of local hybrids; nonlocal in the density matrix, hence outside
    :class:`~functionals.features.Features`. Differentiable in ``dm`` (its gradient is the
    corresponding Fock-matrix contribution).

    Args:
        ao: (n, nao) AO values on the grid (or (n_comp, n, nao); the first component is used).
        dm: (2, nao, nao) spin density matrices.
        coulomb_potentials: (n, nao, nao) ``A(r_g)``, e.g. PySCF's ``int1e_grids``.
    """
    phi = ao[0] if ao.ndim == 3 else ao
    g = jnp.einsum("gm,sml->sgl", phi, dm)
    return -0.5 * jnp.einsum("sgl,glk,sgk->sg", g, coulomb_potentials, g)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NeuralLocalHybridConfig:
    """A neural local hybrid: the neural meta-GGA with a learned local fraction of exact exchange.

    Attributes:
        semilocal: the :class:`NeuralMGGAConfig` of the semilocal part.
        hidden: hidden widths of the mixing-fraction MLP.
        max_fraction: upper bound of the local exact-exchange fraction ``a(r)``.
        initial_logit: output bias of the mixing MLP at initialisation (``a = max_fraction *
            sigmoid(initial_logit)`` everywhere before training).
    """

    semilocal: NeuralMGGAConfig = NeuralMGGAConfig(name="dftjax:nn-local-hybrid")
    hidden: tuple[int, ...] = (8,)
    max_fraction: float = 0.5
    initial_logit: float = -3.0

    def __post_init__(self):
        if not isinstance(self.semilocal, NeuralMGGAConfig):
            raise TypeError(f"semilocal must be a NeuralMGGAConfig; got {type(self.semilocal).__name__}")
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be positive integers; got {self.hidden!r}")
        if not 0.0 < self.max_fraction <= 1.0:
            raise ValueError(f"max_fraction must be in (0, 1]; got {self.max_fraction}")


def init_local_hybrid_params(key: Array, config: NeuralLocalHybridConfig = NeuralLocalHybridConfig()) -> dict:
    """``{"exchange", "correlation", "mixing"}`` float64 parameters."""
    k_semi, k_mix = jax.random.split(key)
    params = init_params(k_semi, config.semilocal)
    mixing = CorrectionMLP(hidden=tuple(config.hidden)).init(k_mix, jnp.zeros((1, 3)))
    bias = mixing["params"][f"Dense_{len(config.hidden)}"]["bias"]
    mixing["params"][f"Dense_{len(config.hidden)}"]["bias"] = bias + config.initial_logit
    return {**params, "mixing": mixing}


def local_hybrid_params_from_mgga(mgga_params: dict, key: Array,
                                  config: NeuralLocalHybridConfig = NeuralLocalHybridConfig()) -> dict:
    """Local-hybrid parameters whose semilocal part is a trained meta-GGA's (e.g. ``dftjax:nn-mgga``)
    and whose mixing MLP is freshly initialised (``a = max_fraction sigmoid(initial_logit)``
    everywhere). ``config.semilocal`` must be the meta-GGA's architecture."""
    if set(mgga_params) != _PARAM_GROUPS["mgga"]:
        raise ValueError(f"expected meta-GGA parameters {sorted(_PARAM_GROUPS['mgga'])}; got {sorted(mgga_params)}")
    mixing = init_local_hybrid_params(key, config)["mixing"]
    return {"exchange": mgga_params["exchange"], "correlation": mgga_params["correlation"], "mixing": mixing}


def neural_local_hybrid_energy_density(config: NeuralLocalHybridConfig = NeuralLocalHybridConfig()):
    """``(params, features: NonlocalFeatures) -> (n,)``: a local hybrid on the neural meta-GGA.

    ``e = sum_s [(1 - a_s) e_x,s^NN + a_s e_x,s^HF] + e_c^NN``, ``a_s = a_max sigmoid(MLP(s^2/(1+s^2),
    beta, e_x,s^HF / e_x,s^LDA))`` per spin channel (evaluated on ``2 rho_s``, so exchange keeps the
    exact spin scaling); ``features.exact_exchange`` (2, n) from :func:`exact_exchange_energy_density`. The
    exact-exchange energy density enters as a DM21-style feature (its ratio to LDA exchange,
    bounded by ``x / (1 + |x|)``) and as the mixed-in energy. The SCF needs, per grid point, the
    Coulomb potentials ``A(r)`` of AO products (``(n, nao, nao)``; PySCF ``int1e_grids``), and
    the functional must receive ``exact_exchange`` computed from the current density matrix
    (:class:`NonlocalFunctional`; ``dftjax.system.build_system`` and ``dftjax.fock.xc_energy`` do both).
    """
    exchange = _exchange_channel
    semilocal = neural_mgga_energy_density(config.semilocal)
    x_model = CorrectionMLP(hidden=tuple(config.semilocal.hidden))
    mixing_model = CorrectionMLP(hidden=tuple(config.hidden))
    bound = float(config.semilocal.bound)

    def energy_density(params: Any, nonlocal_features: NonlocalFeatures) -> Array:
        if not isinstance(nonlocal_features, NonlocalFeatures):
            raise ValueError("the neural local hybrid reads the exact-exchange energy density: pass "
                             "functionals.features.NonlocalFeatures(features, exact_exchange), not semilocal features")
        features, exact_exchange = nonlocal_features
        if isinstance(features, RestrictedFeatures):
            features = features.split()
        total = semilocal(params, features)
        for s in (0, 1):
            rho_s = nonnegative(features.rho[s])
            ok = rho_s > DENSITY_THRESHOLD
            n = 2.0 * jnp.where(ok, rho_s, 0.5)
            sigma = 4.0 * jnp.where(ok, nonnegative(features.sigma[2 * s]), 0.0)
            tau = 2.0 * jnp.where(ok, nonnegative(features.tau[s]), 0.0)
            e_sl = exchange(x_model, params["exchange"], bound, rho_s, features.sigma[2 * s], features.tau[s])
            e_lda = 0.5 * -0.75 * (3.0 / math.pi) ** (1.0 / 3.0) * n * jnp.exp(jnp.log(n) / 3.0)
            ratio = jnp.where(ok, exact_exchange[s] / e_lda, 1.0)
            grad, beta = _gradient_and_indicator(ok, n, sigma, tau)
            x = jnp.stack([grad, beta, ratio / (1.0 + jnp.abs(ratio))], axis=-1)
            a = config.max_fraction * jax.nn.sigmoid(mixing_model.apply(params["mixing"], x))
            total = total + jnp.where(ok, a * (exact_exchange[s] - e_sl), 0.0)
        return total

    return energy_density


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class NonlocalFunctional(Functional):
    """A :class:`~functionals.functional.Functional` whose energy density also reads the per-spin
    exact-exchange energy density (a local hybrid, DM21-style).

    Same signature as every functional: ``energy_density(params, features)`` and
    ``functional(features, params)``, with :class:`~functionals.features.NonlocalFeatures`
    (semilocal features plus the (2, n) :func:`exact_exchange_energy_density` of the current
    density matrix). A Kohn-Sham solver sees ``needs_grid_coulomb``, builds the (n_grid, nao, nao)
    Coulomb potentials of AO products on its grid (``dftjax.system.build_system``), and
    ``dftjax.fock.xc_energy`` calls :meth:`xc_energy` with the density matrix; the XC Fock matrix
    is its ``jax.grad``, as for semilocal functionals. Semilocal features alone (PySCF's
    ``eval_xc``) are refused with a clear error.
    """

    needs_grid_coulomb: bool = True

    def __call__(self, features, params: Any = None):
        if not isinstance(features, NonlocalFeatures):
            raise ValueError(f"{self.name} is nonlocal (it reads the exact-exchange energy density of the "
                             "density matrix): evaluate it on NonlocalFeatures or with xc_energy(...) inside a "
                             "dftjax SCF, not on semilocal features")
        return self.energy_density(self.params if params is None else params, features)

    def xc_energy(self, params: Any, features, weights: Array, ao: Array, dm: Array, grid_coulomb: Array) -> Array:
        """``sum_g w_g e(params, features + e_x^HF[dm])`` (Ha); ``params`` None: the functional's own."""
        exact_exchange = exact_exchange_energy_density(ao, dm, grid_coulomb)
        return jnp.sum(weights * self(NonlocalFeatures(features, exact_exchange), params))


def make_neural_local_hybrid(key: Array | None = None,
                             config: NeuralLocalHybridConfig = NeuralLocalHybridConfig(),
                             params: Any = None) -> NonlocalFunctional:
    """The neural local hybrid of :func:`neural_local_hybrid_energy_density` as a
    :class:`NonlocalFunctional` (``kind="mgga"``; no global exact exchange: it is mixed in locally).

    Untrained (zero output layers of the semilocal MLPs) it is PBE with a constant fraction
    ``a = max_fraction * sigmoid(initial_logit)`` of exact exchange replacing PBE exchange: with
    ``initial_logit = 0`` and ``max_fraction = 0.5``, ``a = 1/4``, i.e. PBE0 (Adamo & Barone,
    J. Chem. Phys. 110, 6158 (1999)) up to the quadrature of the exchange energy density.
    """
    if params is None:
        params = init_local_hybrid_params(jax.random.PRNGKey(0) if key is None else key, config)
    return NonlocalFunctional(name=config.semilocal.name, kind="mgga",
                              energy_density=neural_local_hybrid_energy_density(config), params=params)
