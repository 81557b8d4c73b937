"""Neural exchange-correlation functionals of 1D densities for Kohn-Sham-regularizer training.

The models of Li et al., "Kohn-Sham equations as regularizer: building prior knowledge into
machine-learned physics", PRL 126, 036401 (2021), written as Flax modules and wrapped into the
functional signature ``energy_density(params, spin_density (2, n)) -> (n,)`` (energy per length,
hartree/bohr, on a uniform grid of spacing ``dx``; ``E_xc = dx * sum(e)``):

* ``"local"``: an LDA-like MLP ``eps(n(x))``; ``e = n eps``.
* ``"semilocal"``: 1D convolutions over a sliding window of the density (a learned GGA-like
  functional of the neighbourhood); ``e = n eps``.
* ``"global"``: the paper's global model: global exponential convolutions
  ``g_k(x) = int n(x') exp(-|x - x'| / xi_k) / (2 xi_k) dx'`` with learned widths ``xi_k``, then local
  convolutions with SiLU, giving ``eps_nn(x)``; then the **self-interaction gate**
  ``eps = w(N) (-v_H(x) / 2) + (1 - w(N)) eps_nn`` with ``w = exp(-((N - 1) / width)^2)``, which makes
  the functional cancel the Hartree self-interaction exactly for one electron (N = int n).
  ``use_bias=False, negativity=True`` is the paper's network (jax_dft's bias-free convolutions,
  He-normal initialisation, ``eps_nn = -silu(.)``): eps_nn then vanishes where the density and its
  global averages vanish, which keeps the stretched-bond limit right (H2 at R = 6 bohr: -0.07 mHa
  against DMRG with it, -15 mHa with biases, same training). The global convolutions are FFT
  convolutions (:func:`exponential_convolution`).

Spin-resolved variants (``spin_resolved=True``) also see the squared polarisation
``m^2 / n`` (``m = n_up - n_dn``; even in m, so spin-flip symmetric).

Grid-dependent models store only ``dx`` (static), so a model is independent of the grid's length and
position. Example::

    model, energy_density = make_ksr_functional("global", dx=0.08)
    params = init_params(model, jax.random.PRNGKey(0), 101)
    e = energy_density(params, spin_density)          # (n,)
    xc = as_functional("ksr-global", energy_density, params)   # a functionals.Functional
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from functionals.functional import Functional, from_energy_density

Array = jnp.ndarray

# the exponential Coulomb interaction of the 1D data set (basis.oned; repeated here because
# functionals imports nothing from the project)
_AMPLITUDE = 1.071295
_KAPPA = 1.0 / 2.385345


def _inputs(spin_density: Array, spin_resolved: bool) -> tuple[Array, Array]:
    """Total density (n,) and the per-point input channels (n, c)."""
    total = jnp.sum(spin_density, axis=0)
    channels = [total]
    if spin_resolved:
        empty = total <= 0.0
        safe = jnp.where(empty, 1.0, total)
        channels.append(jnp.where(empty, 0.0, (spin_density[0] - spin_density[1])**2 / safe))
    return total, jnp.stack(channels, axis=-1)


class LocalXC(nn.Module):
    """``eps(n)`` by a per-point MLP (LDA-like); returns e = n eps (n,)."""

    features: Sequence[int] = (16, 16)
    spin_resolved: bool = False

    @nn.compact
    def __call__(self, spin_density: Array) -> Array:
        total, x = _inputs(spin_density, self.spin_resolved)
        for width in self.features:
            x = nn.silu(nn.Dense(width)(x))
        return total * nn.Dense(1)(x)[:, 0]


class SemilocalXC(nn.Module):
    """``eps`` from 1D convolutions of the density over a window of ``kernel_size`` points per
    layer (receptive field grows with depth); returns e = n eps (n,)."""

    features: Sequence[int] = (16, 16)
    kernel_size: int = 3
    spin_resolved: bool = False

    @nn.compact
    def __call__(self, spin_density: Array) -> Array:
        total, x = _inputs(spin_density, self.spin_resolved)
        for width in self.features:
            x = nn.silu(nn.Conv(width, (self.kernel_size,), padding="SAME")(x))
        return total * nn.Dense(1)(x)[:, 0]


def exponential_convolution(density: Array, decay_lengths: Array, dx: float) -> Array:
    """``dx sum_j n_j exp(-|x_i - x_j| / l_k)`` (n, k) of a density (n,) on a uniform grid, for
    decay lengths ``l`` (k,) in bohr.

    A linear convolution computed as a circular one by FFT on a zero-padded grid of L >= 2n - 1
    points (cost O(k L log L) instead of the O(k n^2) of the dense kernel matrices, and no (k, n, n)
    intermediate kept for the backward pass of every Kohn-Sham iteration); exact up to FFT round-off
    (~1e-16 relative in float64).
    """
    n = density.shape[0]
    length = 1 << int(np.ceil(np.log2(2 * n - 1)))
    offset = np.arange(length)
    # circular distance: offsets 0..n-1 and L-n+1..L-1 are the only ones two points of the grid have
    distance = jnp.asarray(np.minimum(offset, length - offset) * dx)
    kernels = jnp.exp(-distance[None, :] / decay_lengths[:, None])                 # (k, L)
    spectrum = jnp.fft.rfft(kernels, axis=-1) * jnp.fft.rfft(density, n=length)[None, :]
    return jnp.fft.irfft(spectrum, n=length, axis=-1)[:, :n].T * dx


class GlobalExponentialConvolution(nn.Module):
    """Channels ``int n(x') exp(-|x - x'| / xi_k) / (2 xi_k) dx'`` (n, num_channels) of a density (n,),
    widths ``xi_k = min + (max - min) sigmoid(theta_k)`` learned (bohr)."""

    num_channels: int
    dx: float
    min_width: float = 0.1
    max_width: float = 1.0 / _KAPPA

    @nn.compact
    def __call__(self, density: Array) -> Array:
        theta = self.param("theta", nn.initializers.normal(1.0), (self.num_channels,))
        widths = self.min_width + (self.max_width - self.min_width) * jax.nn.sigmoid(theta)
        return exponential_convolution(density, widths, self.dx) / (2.0 * widths[None, :])


class GlobalXC(nn.Module):
    """The KSR global functional: exponential global convolutions + local convolutions + the
    self-interaction gate (Li et al. 2021); returns e (n,)."""

    dx: float
    num_global: int = 16
    features: Sequence[int] = (16, 16)
    kernel_size: int = 3
    spin_resolved: bool = False
    self_interaction_gate: bool = True
    use_bias: bool = True
    negativity: bool = False

    @nn.compact
    def __call__(self, spin_density: Array) -> Array:
        total, local = _inputs(spin_density, self.spin_resolved)
        x = jnp.concatenate([local, GlobalExponentialConvolution(self.num_global, self.dx)(total)], axis=-1)
        init = nn.initializers.lecun_normal() if self.use_bias else nn.initializers.he_normal()
        for width in self.features:
            x = nn.silu(nn.Conv(width, (self.kernel_size,), padding="SAME", use_bias=self.use_bias,
                                kernel_init=init)(x))
        epsilon = nn.Dense(1, use_bias=self.use_bias)(x)[:, 0]
        if self.negativity:
            # -silu: eps_xc <= 0.278 (soft version of the exact condition eps_xc <= 0; Li et al.)
            epsilon = -nn.silu(epsilon)
        if self.self_interaction_gate:
            width = self.param("gate_width", nn.initializers.constant(1.0), ())
            epsilon = self_interaction_gate(total, epsilon, self.dx, width)
        return total * epsilon


def self_interaction_gate(density: Array, epsilon: Array, dx: float, width: Array) -> Array:
    """``w (-v_H / 2) + (1 - w) eps`` per particle, ``w = exp(-((N - 1)/width)^2)``, ``N = int n``:
    for one electron E_xc = -E_H exactly (Li et al., PRL 126, 036401 (2021), self-interaction gate).

    ``v_H`` uses the exponential Coulomb interaction of the 1D data set.
    """
    v_hartree = _AMPLITUDE * exponential_convolution(density, jnp.asarray([1.0 / _KAPPA]), dx)[:, 0]
    num_electrons = jnp.sum(density) * dx
    weight = jnp.exp(-(((num_electrons - 1.0) / width) ** 2))
    return weight * (-0.5 * v_hartree) + (1.0 - weight) * epsilon


MODELS: dict[str, Callable[..., nn.Module]] = {
    "local": lambda dx, **kw: LocalXC(**kw),
    "semilocal": lambda dx, **kw: SemilocalXC(**kw),
    "global": lambda dx, **kw: GlobalXC(dx=dx, **kw),
}


def make_ksr_functional(model: str, dx: float, **options):
    """``(module, energy_density)`` of a named KSR model (``"local"``, ``"semilocal"``, ``"global"``).

    ``energy_density(params, spin_density (2, n)) -> (n,)`` (hartree/bohr) is the functional
    signature; ``options`` go to the module (e.g. ``spin_resolved=True``, ``features=(32, 32)``).
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}; got {model!r}")
    module = MODELS[model](float(dx), **options)

    def energy_density(params, spin_density: Array) -> Array:
        return module.apply(params, spin_density)

    return module, energy_density


def init_params(module: nn.Module, key: jax.Array, num_points: int):
    """float64 parameters of a KSR module for densities of ``num_points`` points (Flax initialises
    in float32; KSR trains in float64)."""
    params = module.init(key, jnp.zeros((2, num_points), dtype=jnp.float64))
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=jnp.float64), params)


def as_functional(name: str, energy_density, params) -> Functional:
    """A :class:`functionals.Functional` record of a 1D neural energy density (features: the
    spin densities (2, n))."""
    return from_energy_density(name, energy_density, params, kind="lda")
