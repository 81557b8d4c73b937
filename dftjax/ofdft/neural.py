"""Neural kinetic-energy functionals for the 1D box, trained on energies and functional derivatives.

Meyer, Weichselbaum & Hauser, "Machine learning approaches toward orbital-free density functional
theory: simultaneous training on the kinetic energy density functional and its functional
derivative", JCTC 16, 5685 (2020): a network maps the density to a kinetic energy *density*
``t(x)``, ``T = sum t dx``, and the loss fits both T and ``dT/dn(x) = (dT/dn_i)/dx`` (``jax.grad``
through the network); fitting the derivative is what makes the functional usable in a
self-consistent OF minimisation, whose only input is the derivative.

:class:`KineticNet` (Flax):

* ``kernel_size=1``: a *local* (semilocal, GGA-like) functional,
  ``t(x) = f(sqrt n(x), (sqrt n)'(x))``, an MLP applied point by point;
* ``kernel_size>1``: a *nonlocal* convolutional functional, each layer a 1D convolution over the
  grid (receptive field ``layers * (kernel_size - 1) + 1`` points).

:class:`ProjectedKineticNet` (Flax): a *global* functional, an MLP of the first K cosine
coefficients ``c_k = integral n(x) cos(k pi x) dx`` of the whole density, the way kernel ridge
regression on the whole density is global (Snyder et al., PRL 108, 253002 (2012); Brockherde et al.,
Nat. Commun. 8, 872 (2017) learn the same map through a basis of the density). Its functional
derivative ``sum_k dT/dc_k cos(k pi x)`` lives in the span of K smooth modes: for N >= 2 the
exact Pauli potential ``mu - v - dT_vW/dn`` is not a local function of n (a local network
plateaus at dT/dn rms 2.9 Ha), but it is smooth and global, and 40 cosine modes hold it to 1e-6
Ha rms (N = 2) and 1e-3 Ha (N = 4) on the paper's densities; 20 PCA components of the training
densities leave 2.7 and 11 Ha. The derivative is defined for every density (no projection onto
the data manifold), so the square-root L-BFGS solver minimises it as it does the local ones.

Either can be a correction on a physical base (``base="vw"``: von Weizsaecker in the grid-consistent
operator form, :func:`~dftjax.ofdft.box.von_weizsaecker_energy`; ``base="tfvw"``: 1D Thomas-Fermi
+ von Weizsaecker), so that the network learns ``T - T_base``. For N = 1 the von Weizsaecker base is
already exact; results labelled "scratch" use no base.

The derivative target is ``mu - v`` (:mod:`dftjax.ofdft.data1d`), defined up to a constant at fixed
N: the loss compares derivatives after removing their mean over the interior points.
"""
from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dftjax.ofdft import box
from dftjax import atomic
from functionals.kinetic import thomas_fermi_1d

Array = jnp.ndarray


class KineticNet(nn.Module):
    """t(x) (hartree/bohr) on the G box points (walls included) from the density (G,); T is its
    trapezoid integral (:func:`~dftjax.ofdft.box.trapezoid`).

    Attributes:
        channels: hidden widths (one layer each).
        kernel_size: 1 for a local functional, > 1 for a convolutional (nonlocal) one.
        density_scale: n is fed as n / density_scale (e.g. N, the box being 1 bohr).
        energy_scale: the output is multiplied by this (hartree/bohr).
    """

    channels: Sequence[int] = (32, 32, 32)
    kernel_size: int = 1
    density_scale: float = 1.0
    energy_scale: float = 1.0

    @nn.compact
    def __call__(self, density: Array, dx: float) -> Array:
        # inputs sqrt(n) and d sqrt(n)/dx: smooth where n -> 0 at the walls, where n and n'^2/n are
        # a 0/0 limit a network cannot learn (measured: 12 kcal/mol T MAE at M = 100 with (n, n'));
        # 1/2 (d sqrt(n)/dx)^2 is von Weizsaecker's energy density
        scale = jnp.sqrt(self.density_scale)
        amplitude = box.safe_sqrt(density) / scale
        slope = box.amplitude_gradient(density, dx) / (jnp.pi * scale)
        x = jnp.stack([amplitude, slope], axis=-1)             # (G, 2)
        for width in self.channels:
            # a point-wise layer is a Dense (cheaper than a width-1 Conv, notably for 2nd derivatives)
            layer = nn.Dense(width) if self.kernel_size == 1 else nn.Conv(width, (self.kernel_size,), padding="SAME")
            x = nn.softplus(layer(x))
        return self.energy_scale * nn.Dense(1)(x)[:, 0]

    def kinetic_energy(self, density: Array, dx: float) -> Array:
        """() the learned T (hartree): the trapezoid integral of t(x)."""
        return box.trapezoid(self(density, dx), dx)


def cosine_modes(n_points: int, n_modes: int) -> np.ndarray:
    """(K, G) ``cos(k pi x)``, k = 1..K, on the G box points of [0, 1] (walls included)."""
    x = np.linspace(0.0, 1.0, n_points)
    return np.cos(np.pi * np.arange(1, n_modes + 1)[:, None] * x[None, :])


def cosine_coefficients(density: Array, n_modes: int, dx: float) -> Array:
    """(..., K) ``c_k = integral n(x) cos(k pi x) dx`` (k = 1..K; trapezoid) of box densities (..., G).
    ``c_0 = N``; the density is ``N + 2 sum_k c_k cos(k pi x)``."""
    modes = jnp.asarray(cosine_modes(density.shape[-1], n_modes))
    modes = modes.at[:, jnp.array([0, -1])].multiply(0.5)        # the trapezoid's half end weights
    return jnp.einsum("...g,kg->...k", density, modes) * dx


class ProjectedKineticNet(nn.Module):
    """A global kinetic functional: ``T = offset + scale * MLP((c - c_mean) / c_scale)`` (hartree)
    of the cosine coefficients c (K,) of the whole density (:func:`cosine_coefficients`).

    Snyder et al., PRL 108, 253002 (2012) and Brockherde et al., Nat. Commun. 8, 872 (2017): a
    learned map from the whole density to T; trained on T and on its functional derivative,
    ``dT/dn(x) = sum_k dT/dc_k cos(k pi x)`` (Meyer et al., JCTC 16, 5685 (2020)).

    Attributes:
        n_modes: K cosine modes.
        channels: hidden widths of the MLP (softplus).
        coefficient_mean, coefficient_scale: (K,) standardisation of c (the training set's).
        energy_offset, energy_scale: the output is ``offset + scale * MLP`` (hartree).
    """

    n_modes: int = 40
    channels: Sequence[int] = (32, 32)
    coefficient_mean: tuple = ()
    coefficient_scale: tuple = ()
    energy_offset: float = 0.0
    energy_scale: float = 1.0

    @nn.compact
    def __call__(self, density: Array, dx: float) -> Array:
        c = cosine_coefficients(density, self.n_modes, dx)
        x = (c - jnp.asarray(self.coefficient_mean)) / jnp.asarray(self.coefficient_scale)
        for width in self.channels:
            x = nn.softplus(nn.Dense(width)(x))
        return self.energy_offset + self.energy_scale * nn.Dense(1)(x)[0]

    def kinetic_energy(self, density: Array, dx: float) -> Array:
        """() the learned T (hartree)."""
        return self(density, dx)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NeuralOptions:
    """Architecture and training of a neural kinetic functional.

    Attributes:
        channels, kernel_size: see :class:`KineticNet`.
        n_modes: 0 for a :class:`KineticNet` (local or convolutional); K > 0 for the global
            :class:`ProjectedKineticNet` on K cosine modes (``kernel_size`` is then unused).
        base: None, ``"vw"`` or ``"tfvw"`` (the network learns ``T - T_base``).
        derivative_weight: weight w of the derivative term in the loss.
        steps: Adam steps (full batch).
        learning_rate: peak learning rate (cosine decay to 1% of it).
        seed: parameter initialisation.
    """

    channels: tuple[int, ...] = (32, 32, 32)
    kernel_size: int = 1
    n_modes: int = 0
    base: str | None = None
    derivative_weight: float = 1.0
    steps: int = 3000
    learning_rate: float = 3e-3
    seed: int = 0


class NeuralModel(NamedTuple):
    """A trained neural kinetic functional: :func:`kinetic_energy` evaluates it."""

    params: Any
    module: KineticNet | ProjectedKineticNet
    base: str | None
    dx: float


def base_energy(base: str | None, density: Array, dx: float) -> Array:
    """() T_base[n]: 0, von Weizsaecker (operator form) or Thomas-Fermi + von Weizsaecker."""
    if base is None:
        return jnp.zeros((), density.dtype)
    vw = box.von_weizsaecker_energy(density, dx)
    if base == "vw":
        return vw
    if base == "tfvw":
        return vw + jnp.sum(thomas_fermi_1d(None, box.spinless_features(density, dx))) * dx
    raise ValueError(f"base must be None, 'vw' or 'tfvw'; got {base!r}")


def kinetic_energy(model: NeuralModel, density: Array) -> Array:
    """() T[n] (hartree) of one box density (G,)."""
    learned = model.module.apply(model.params, density, model.dx, method="kinetic_energy")
    return base_energy(model.base, density, model.dx) + learned


def kinetic_energy_density(model: NeuralModel, density: Array) -> Array | None:
    """(G,) the learned part t(x) (hartree/bohr; the base is not included); None for a global
    model, which has no energy density."""
    if isinstance(model.module, ProjectedKineticNet):
        return None
    return model.module.apply(model.params, density, model.dx)


def base_values_and_derivatives(base: str | None, densities: Array, dx: float) -> tuple[Array, Array]:
    """((M,), (M, G)) T_base and dT_base/dn_i (not divided by dx) of densities (M, G)."""
    return jax.vmap(jax.value_and_grad(lambda n: base_energy(base, n, dx)))(jnp.asarray(densities))


def _loss(params, module, base, dx, densities, energies, derivatives, weight, base_terms=None):
    # base_terms: the base's (T, dT/dn_i) of the densities, which do not depend on params; the
    # trainer computes them once (a dense (G, G) matvec per density and step otherwise)
    if base_terms is None:
        base_terms = base_values_and_derivatives(base, densities, dx)
    learned, grads = jax.vmap(jax.value_and_grad(
        lambda n: module.apply(params, n, dx, method="kinetic_energy")))(densities)
    predicted, grads = base_terms[0] + learned, base_terms[1] + grads
    error_d = (grads / dx - derivatives)[:, 1:-1]
    error_d = error_d - jnp.mean(error_d, axis=1, keepdims=True)
    energy_term = jnp.mean((predicted - energies) ** 2)
    derivative_term = jnp.mean(jnp.sum(error_d**2, axis=1) * dx)
    return energy_term + weight * derivative_term, (energy_term, derivative_term)


class TrainingCheckpoint(NamedTuple):
    """What :func:`train` needs to continue exactly where it stopped (written atomically).

    Attributes:
        step: the number of Adam steps already taken.
        params_leaves, state_leaves: the parameters and the Adam state, flattened (NumPy arrays).
        fingerprint: architecture, options and a digest of the data; a checkpoint of another run is
            refused.
    """

    step: int
    params_leaves: list
    state_leaves: list
    fingerprint: str


def _fingerprint(options: NeuralOptions, n_electrons: int, dx: float, *arrays) -> str:
    import hashlib

    digest = hashlib.sha256(repr((dataclasses.asdict(options), n_electrons, float(dx))).encode())
    for a in arrays:
        digest.update(np.ascontiguousarray(np.asarray(a, np.float64)).tobytes())
    return digest.hexdigest()


def _load_checkpoint(path, fingerprint: str) -> TrainingCheckpoint | None:
    import os
    import pickle

    if path is None or not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        checkpoint = pickle.load(f)
    if not isinstance(checkpoint, TrainingCheckpoint) or checkpoint.fingerprint != fingerprint:
        raise ValueError(f"checkpoint {str(path)!r} belongs to another training run (different data, "
                         "architecture or options); remove it or choose another checkpoint path")
    return checkpoint


def _optimizer(learning_rate: float, steps: int):
    return optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.01))


@functools.lru_cache(maxsize=8)
def _adam_step(module: KineticNet, base, dx: float, weight: float, learning_rate: float, steps: int):
    """The jitted Adam step, one per architecture and options (calls that differ only in data,
    or a resumed run, reuse its compilation)."""
    optimizer = _optimizer(learning_rate, steps)

    # the data are arguments, not closed-over constants, or XLA constant-folds through them
    @jax.jit
    def step(params, state, densities, energies, derivatives, base_terms):
        (loss, parts), grads = jax.value_and_grad(_loss, has_aux=True)(
            params, module, base, dx, densities, energies, derivatives, weight, base_terms)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss, parts

    return step


def train(densities, kinetic_energies, kinetic_derivatives, dx: float, n_electrons: int,
          options: NeuralOptions = NeuralOptions(), verbose: bool = False,
          callback=None, checkpoint_path=None, checkpoint_every: int | None = None) -> NeuralModel:
    """Fit a :class:`KineticNet` or (``options.n_modes > 0``) a :class:`ProjectedKineticNet`
    (plus base) to T (M,) and dT/dn (M, G) of densities (M, G).

    Full-batch Adam with a cosine learning-rate decay; the loss (hartree^2)
    ``mean (T_pred - T)^2 + w mean integral (dT_pred/dn - dT/dn - const)^2 dx``.
    ``callback(i, model)``, if given, is called after steps i = 0, k, 2k, ... (k =
    ``checkpoint_every``, default ``steps // 10``) and after the last one.

    With ``checkpoint_path``, the parameters, the Adam state and the step count are written there
    (atomically, :mod:`dftjax.atomic`) at the same cadence, before the callback; a call that finds
    the file continues from it and ends with the same parameters, bit for bit, as a run that was
    never interrupted (same data and options; otherwise it raises ``ValueError``).
    """
    densities = jnp.asarray(densities)
    energies = jnp.asarray(kinetic_energies)
    derivatives = jnp.asarray(kinetic_derivatives)
    if densities.ndim != 2 or energies.shape != densities.shape[:1] or derivatives.shape != densities.shape:
        raise ValueError(f"densities (M, G), energies (M,) and derivatives (M, G) expected; got "
                         f"{densities.shape}, {energies.shape}, {derivatives.shape}")
    if options.steps < 1:
        raise ValueError(f"steps must be >= 1; got {options.steps}")
    every = max(1, options.steps // 10) if checkpoint_every is None else int(checkpoint_every)
    if every < 1:
        raise ValueError(f"checkpoint_every must be >= 1; got {checkpoint_every}")
    base_terms = base_values_and_derivatives(options.base, densities, dx)
    residual = energies - base_terms[0]
    if options.n_modes > 0:
        module = _projected_module(options, densities, residual, dx)
    else:
        residual_scale = float(jnp.maximum(jnp.mean(jnp.abs(residual)), 1e-3))
        module = KineticNet(channels=tuple(options.channels), kernel_size=options.kernel_size,
                            density_scale=float(n_electrons), energy_scale=residual_scale)
    params = module.init(jax.random.PRNGKey(options.seed), densities[0], dx)
    state = _optimizer(options.learning_rate, options.steps).init(params)
    fingerprint = _fingerprint(options, n_electrons, dx, densities, energies, derivatives)
    first = 0
    checkpoint = _load_checkpoint(checkpoint_path, fingerprint)
    if checkpoint is not None:
        first = checkpoint.step
        params = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params),
                                              [jnp.asarray(x) for x in checkpoint.params_leaves])
        state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(state),
                                             [jnp.asarray(x) for x in checkpoint.state_leaves])
        if verbose:
            print(f"[ofdft] resuming from {checkpoint_path} at step {first}", file=sys.stderr, flush=True)

    step = _adam_step(module, options.base, float(dx), float(options.derivative_weight),
                      float(options.learning_rate), int(options.steps))

    for i in range(first, options.steps):
        params, state, loss, parts = step(params, state, densities, energies, derivatives, base_terms)
        report = i % every == 0 or i == options.steps - 1
        if report and checkpoint_path is not None:
            atomic.write_pickle(checkpoint_path, TrainingCheckpoint(
                i + 1, [np.asarray(x) for x in jax.tree_util.tree_leaves(params)],
                [np.asarray(x) for x in jax.tree_util.tree_leaves(state)], fingerprint))
        if callback is not None and report:
            callback(i, NeuralModel(params, module, options.base, float(dx)))
        if verbose and (report or i == first):
            print(f"[ofdft] step {i:5d}  loss {float(loss):.3e}  T-rmse {float(jnp.sqrt(parts[0])):.2e} Ha"
                  f"  dT/dn-rms {float(jnp.sqrt(parts[1])):.2e} Ha", file=sys.stderr, flush=True)
    return NeuralModel(params, module, options.base, float(dx))


def _projected_module(options: NeuralOptions, densities: Array, residual: Array, dx: float) -> ProjectedKineticNet:
    """The global network with inputs and output standardised on the training set."""
    c = np.asarray(cosine_coefficients(densities, options.n_modes, dx))
    # one scale for all modes (the largest spread), not per mode: standardising the high modes,
    # which barely vary, made the initial derivative 30x the exact one (344 vs 12 Ha rms, N = 2)
    scale = np.full(options.n_modes, max(float(c.std(axis=0).max()), 1e-12))
    residual = np.asarray(residual)
    return ProjectedKineticNet(n_modes=options.n_modes, channels=tuple(options.channels),
                               coefficient_mean=tuple(float(x) for x in c.mean(axis=0)),
                               coefficient_scale=tuple(float(x) for x in scale),
                               energy_offset=float(residual.mean()),
                               energy_scale=float(max(residual.std(), 1e-3)))


def save(model: NeuralModel, path, **metadata) -> None:
    """Write parameters, architecture and metadata to an ``.npz`` file."""
    leaves, _ = jax.tree_util.tree_flatten(model.params)
    module = model.module
    if isinstance(module, ProjectedKineticNet):
        architecture = dict(architecture="projected", n_modes=module.n_modes,
                            coefficient_mean=np.asarray(module.coefficient_mean),
                            coefficient_scale=np.asarray(module.coefficient_scale),
                            energy_offset=module.energy_offset)
    else:
        architecture = dict(kernel_size=module.kernel_size, density_scale=module.density_scale)
    atomic.savez(path, kind="neural", channels=np.asarray(module.channels), energy_scale=module.energy_scale,
             base="" if model.base is None else model.base, **architecture,
             dx=model.dx, n_leaves=len(leaves), **{f"leaf_{i}": np.asarray(x) for i, x in enumerate(leaves)},
             **{f"meta_{k}": np.asarray(v) for k, v in metadata.items()})


def load(path) -> tuple[NeuralModel, dict]:
    """(model, metadata) from :func:`save`'s file."""
    with np.load(path) as f:
        channels = tuple(int(c) for c in f["channels"])
        if "architecture" in f.files and str(f["architecture"]) == "projected":
            module = ProjectedKineticNet(
                n_modes=int(f["n_modes"]), channels=channels,
                coefficient_mean=tuple(float(x) for x in f["coefficient_mean"]),
                coefficient_scale=tuple(float(x) for x in f["coefficient_scale"]),
                energy_offset=float(f["energy_offset"]), energy_scale=float(f["energy_scale"]))
        else:
            module = KineticNet(channels=channels, kernel_size=int(f["kernel_size"]),
                                density_scale=float(f["density_scale"]), energy_scale=float(f["energy_scale"]))
        dx = float(f["dx"])
        template = module.init(jax.random.PRNGKey(0), jnp.zeros(round(1.0 / dx) + 1), dx)
        treedef = jax.tree_util.tree_structure(template)
        leaves = [jnp.asarray(f[f"leaf_{i}"]) for i in range(int(f["n_leaves"]))]
        base = str(f["base"]) or None
        metadata = {k[5:]: f[k].item() for k in f.files if k.startswith("meta_")}
    return NeuralModel(jax.tree_util.tree_unflatten(treedef, leaves), module, base, dx), metadata
