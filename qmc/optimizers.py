"""Optimisers of the variational energy: Adam (baseline) and SPRING / minSR natural gradient.

The energy gradient of a real wavefunction from samples x_i ~ |psi|^2 is

    g = 2 <(E_L - <E_L>) d log|psi| / d theta>        (e.g. Pfau et al., PRR 2, 033429 (2020), eq. 9)

evaluated with local energies clipped around their median (FermiNet: median +- 5 * mean absolute
deviation), which removes the heavy tails near nodes without biasing the energy itself.

Natural gradient (stochastic reconfiguration, Sorella, PRL 80, 4558 (1998)) preconditions g with the
Fisher matrix S = O^T O of centred per-walker log-derivatives O (n_walkers x n_params, divided by
sqrt(n_walkers)). With far fewer walkers than parameters, minSR (Chen & Heyl, Nat. Phys. 20, 1476
(2024)) solves in walker space, phi = O^T (O O^T + lambda)^-1 e, with e = (E_L - <E_L>)/sqrt(n).
SPRING (Goldshlager, Abrahamsen, Lin, "A Kaczmarz-inspired approach to accelerate the optimization
of neural network wavefunctions", J. Comput. Phys. 516, 113351 (2024), arXiv:2401.10190) warm-starts
from the previous direction:

    phi_k = mu phi_{k-1} + O^T (O O^T + lambda I + 1 1^T / n)^-1 (e - mu O phi_{k-1}),

which is the minimiser of |O phi - e|^2 + lambda |phi - mu phi_{k-1}|^2 (the 1 1^T / n term fixes the
null direction of the centred kernel). mu = 0 is minSR. Parameters move by -eta_k phi_k with
eta_k = eta / (1 + k / delay), and the step is shrunk when its Fisher norm eta^2 |O phi|^2 exceeds
``max_norm`` (the norm constraint of KFAC, Martens & Grosse 2015, used by FermiNet).

Each optimiser is an ``(init, update)`` pair: ``init(params) -> state``;
``update(params, state, positions, local_energies) -> (params, state, stats)``, jittable.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

LogPsiFn = Callable[[Any, jnp.ndarray], jnp.ndarray]  # (params, (n_elec * 3,)) -> log|psi|


def clip_local_energy(local_energies: jnp.ndarray, width: float = 5.0) -> jnp.ndarray:
    """E_L clipped to median +- width * mean |E_L - median| (FermiNet's rule); (W,) -> (W,)."""
    median = jnp.median(local_energies)
    deviation = jnp.mean(jnp.abs(local_energies - median))
    return jnp.clip(local_energies, median - width * deviation, median + width * deviation)


def energy_gradient(log_abs_psi: LogPsiFn, params, positions, local_energies, clip_width: float = 5.0):
    """g = 2 <(E_L - <E_L>) grad_theta log|psi|> over walkers, E_L clipped (a params pytree)."""
    clipped = clip_local_energy(local_energies, clip_width)
    weights = jax.lax.stop_gradient(2.0 * (clipped - jnp.mean(clipped)) / clipped.shape[0])

    def surrogate(p):
        return jnp.sum(weights * jax.vmap(log_abs_psi, (None, 0))(p, positions))

    return jax.grad(surrogate)(params)


class Optimizer(NamedTuple):
    """``init(params) -> state``; ``update(params, state, positions, local_energies) -> (params, state, stats)``."""

    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any, dict]]


def learning_rate_schedule(rate: float, delay: float) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """eta_k = rate / (1 + k / delay), FermiNet's inverse-time decay."""
    return lambda step: rate / (1.0 + step / delay)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdamOptions:
    learning_rate: float = 3e-3
    decay_delay: float = 1000.0
    clip_width: float = 5.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpringOptions:
    """SPRING hyper-parameters (mu = 0 gives minSR); defaults after Goldshlager et al. 2024."""

    learning_rate: float = 0.02
    decay_delay: float = 1000.0
    damping: float = 1e-3
    momentum: float = 0.99
    max_norm: float = 1e-3
    clip_width: float = 5.0


def make_adam(log_abs_psi: LogPsiFn, options: AdamOptions | None = None) -> Optimizer:
    """Adam (optax) on the clipped energy gradient."""
    options = options or AdamOptions()
    transform = optax.adam(learning_rate_schedule(options.learning_rate, options.decay_delay))

    def update(params, state, positions, local_energies):
        grad = energy_gradient(log_abs_psi, params, positions, local_energies, options.clip_width)
        updates, state = transform.update(grad, state, params)
        return optax.apply_updates(params, updates), state, {"grad_norm": optax.tree.norm(grad)}

    return Optimizer(transform.init, update)


def walker_jacobian_blocks(log_abs_psi: LogPsiFn, params, positions) -> list[jnp.ndarray]:
    """J_wp = d log|psi(x_w)| / d theta_p one parameter leaf at a time: [(W, P_leaf), ...], leaves in
    ``ravel_pytree(params)`` order. The blocks are never concatenated into one (W, P) array: see
    :func:`make_spring`."""
    n = positions.shape[0]
    grads = jax.vmap(jax.grad(log_abs_psi), (None, 0))(params, positions)
    return [jnp.reshape(leaf, (n, -1)) for leaf in jax.tree_util.tree_leaves(grads)]


def centred_gram(blocks: list[jnp.ndarray]) -> jnp.ndarray:
    """O O^T with O = (J - <J>_walkers) / sqrt(W): the doubly centred J J^T / W from the blocks of J."""
    gram = sum(block @ block.T for block in blocks)
    gram = gram - jnp.mean(gram, axis=0, keepdims=True)
    return (gram - jnp.mean(gram, axis=1, keepdims=True)) / gram.shape[0]


class SpringState(NamedTuple):
    """Previous direction phi_{k-1} (flat, n_params) and step counter k."""

    direction: jnp.ndarray
    step: jnp.ndarray


def make_spring(log_abs_psi: LogPsiFn, options: SpringOptions | None = None) -> Optimizer:
    """SPRING natural gradient (minSR when ``momentum=0``), dense in walker space, pure jnp.

    The Jacobian is kept as one (W, P_leaf) block per parameter leaf, and J J^T, J d and v^T J are
    sums and concatenations over the blocks. Concatenating the blocks into one (W, P) array cost a
    copy of J (5.9 ms at He) and slowed the per-walker gradient products that wrote into it ~3x:
    the update took 29 ms at He and 40 ms at LiH, against 14 and 21 ms on the blocks (256
    walkers, float64, 2 idle CPU cores, medians).
    """
    options = options or SpringOptions()
    schedule = learning_rate_schedule(options.learning_rate, options.decay_delay)

    def init(params):
        flat, _ = ravel_pytree(params)
        return SpringState(jnp.zeros_like(flat), jnp.zeros((), jnp.int32))

    def update(params, state: SpringState, positions, local_energies):
        flat, unravel = ravel_pytree(params)
        n = positions.shape[0]
        blocks = walker_jacobian_blocks(log_abs_psi, params, positions)  # [(W, P_leaf)]
        # O = (J - mean_walkers J) / sqrt(W), never materialised: products with O are centred
        # products with J, and O O^T is the doubly centred J J^T (no copy of J).

        def centre(v):
            return (v - jnp.mean(v, axis=0, keepdims=True)) / jnp.sqrt(n)

        def o_times(direction):  # O @ direction, (W,)
            leaves = jax.tree_util.tree_leaves(unravel(direction))
            return centre(sum(block @ jnp.ravel(leaf) for block, leaf in zip(blocks, leaves)))

        def o_transpose_times(v):  # O^T @ v, (P,)
            # v^T J, not J^T v: XLA on CPU would copy the transpose of J (W x P) first, ~10x the product
            v = centre(v)
            return jnp.concatenate([v @ block for block in blocks])

        gram = centred_gram(blocks)
        clipped = clip_local_energy(local_energies, options.clip_width)
        e_bar = centre(clipped)
        mu = options.momentum
        o_previous = o_times(state.direction)
        residual = e_bar - mu * o_previous
        kernel = gram + options.damping * jnp.eye(n, dtype=flat.dtype) + jnp.ones((n, n), flat.dtype) / n
        chol = jax.scipy.linalg.cho_factor(kernel)
        solution = jax.scipy.linalg.cho_solve(chol, residual)
        direction = mu * state.direction + o_transpose_times(solution)
        # O phi = mu O phi_{k-1} + (O O^T) solution and |O^T e|^2 = e^T (O O^T) e: walker-space
        # products with the Gram matrix instead of two more passes over the (W, P) Jacobian
        o_direction = mu * o_previous + gram @ solution
        eta = schedule(state.step.astype(flat.dtype))
        fisher_norm = eta**2 * jnp.sum(o_direction**2)
        scale = jnp.minimum(1.0, jnp.sqrt(options.max_norm / jnp.maximum(fisher_norm, jnp.finfo(flat.dtype).tiny)))
        new_params = unravel(flat - scale * eta * direction)
        grad_norm = 2.0 * jnp.sqrt(jnp.maximum(e_bar @ (gram @ e_bar), 0.0))
        stats = {"grad_norm": grad_norm, "step_norm": scale * eta * jnp.linalg.norm(direction)}
        return new_params, SpringState(direction, state.step + 1), stats

    return Optimizer(init, update)


OPTIMIZERS: dict[str, tuple[Callable[..., Optimizer], type]] = {
    "adam": (make_adam, AdamOptions),
    "spring": (make_spring, SpringOptions),
}


def make_optimizer(name: str, log_abs_psi: LogPsiFn, options=None) -> Optimizer:
    """``OPTIMIZERS[name]`` built for ``log_abs_psi``; ``options`` of that optimiser's options type."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: expected one of {sorted(OPTIMIZERS)}")
    builder, options_type = OPTIMIZERS[name]
    if options is not None and not isinstance(options, options_type):
        raise ValueError(f"optimizer {name!r} takes {options_type.__name__}, got {type(options).__name__}")
    return builder(log_abs_psi, options)
