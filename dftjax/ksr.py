"""Kohn-Sham-regularizer (KSR) training of neural XC functionals through unrolled 1D KS iterations.

Li, Hoyer, Pederson, Sun, Cubuk, Riley & Burke, "Kohn-Sham equations as regularizer: building prior
knowledge into machine-learned physics", PRL 126, 036401 (2021): the functional is trained on the
*output* of a fixed number K of damped Kohn-Sham iterations (:func:`dftjax.oned.ks.kohn_sham`,
``lax.scan``), differentiating through every iteration (``adjoint="unrolled"``). The loss over the
training molecules m is

    L = mean_m sum_k w_k (E_k,m - E_m^ref)^2 / sum_k w_k  +  density_weight mean_m int (n_K,m - n_m^ref)^2 dx,
    w_k = discount^(K - 1 - k) for k >= skip_iterations, else 0

(the discounted energy trajectory rewards reaching the right energy early and staying there; the
final density is fitted too). The paper's settings (their jax_dft code) are K = 15 iterations with
mixing 0.5 whose *output* fraction decays by 0.9 per iteration (``decaying_weight="output"``), the
first 10 iterations left out of the energy loss (``skip_iterations=10``) and the density loss
weighted as 1/4 of the normalised energy loss (``density_weight=0.25``); ``dftjax train ksr1d``
uses them. Parameters are saved and loaded as ``.npz`` (:func:`save_params`, :func:`load_params`).

The trainer (:func:`train`) runs optax L-BFGS (default, as the paper's L-BFGS) or Adam, keeps the
parameters of the lowest validation loss, writes an atomic checkpoint every ``checkpoint_every``
steps (a pickle written by :mod:`dftjax.atomic`) and resumes from it exactly: an interrupted
and resumed run ends with the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dftjax import atomic
from dftjax.oned import ks
from dftjax.oned.blas import single_threaded_blas
from dftjax.oned.data import Problem, stack_systems

CHECKPOINT_NAME = "ksr_checkpoint.pkl"


@dataclasses.dataclass(frozen=True, kw_only=True)
class KSROptions:
    """Settings of KSR training.

    Attributes:
        num_iterations: K, Kohn-Sham iterations unrolled per molecule.
        discount: weight ratio of successive iterations in the energy-trajectory loss.
        density_weight: weight of the density loss.
        skip_iterations: the first iterations left out of the energy loss (their energies are far
            from converged whatever the functional; Li et al.'s code skips 10 of 15).
        mixing, mixing_decay, decaying_weight: density mixing of the KS iterations
            (:class:`ks.KohnShamOptions`).
        optimizer: ``"lbfgs"`` or ``"adam"``.
        learning_rate: Adam's step size (L-BFGS uses its line search).
        steps: optimiser steps.
        validate_every: steps between validation losses (the best one's params are kept).
        checkpoint_every: steps between checkpoints (0: none).
        seed: PRNG seed of the initial parameters.
    """

    num_iterations: int = 15
    discount: float = 0.9
    density_weight: float = 1.0
    mixing: float = 0.5
    mixing_decay: float = 0.9
    skip_iterations: int = 0
    decaying_weight: str = "input"
    optimizer: str = "lbfgs"
    learning_rate: float = 1e-3
    steps: int = 100
    validate_every: int = 5
    checkpoint_every: int = 10
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in ("lbfgs", "adam"):
            raise ValueError(f"optimizer must be 'lbfgs' or 'adam'; got {self.optimizer!r}")
        if self.num_iterations < 1 or self.steps < 0:
            raise ValueError("num_iterations must be >= 1 and steps >= 0")
        if not 0 <= self.skip_iterations < self.num_iterations:
            raise ValueError(f"skip_iterations must be in [0, num_iterations); got {self.skip_iterations}")
        if self.decaying_weight not in ("input", "output"):
            raise ValueError(f"decaying_weight must be 'input' or 'output'; got {self.decaying_weight!r}")


class Group(NamedTuple):
    """Problems sharing a discretization and electron numbers, batched for ``vmap``."""

    discretization: ks.Discretization
    systems: ks.System                  # leading axis m
    energies: jnp.ndarray               # (m,)
    densities: jnp.ndarray              # (m, n)
    ks_options: ks.KohnShamOptions


def make_groups(problems: Sequence[Problem], ks_options: ks.KohnShamOptions | Sequence) -> list[Group]:
    """Batch problems by discretization (and KS options, one per problem if a sequence)."""
    if isinstance(ks_options, ks.KohnShamOptions):
        ks_options = [ks_options] * len(problems)
    groups: dict = {}
    for problem, opts in zip(problems, ks_options):
        groups.setdefault((id(problem.discretization), opts), []).append(problem)
    return [Group(discretization=members[0].discretization, systems=stack_systems(members),
                  energies=jnp.asarray([p.energy for p in members]),
                  densities=jnp.asarray(np.stack([p.density for p in members])), ks_options=opts)
            for (_, opts), members in groups.items()]


def run_group(group: Group, xc, params, num_iterations: int):
    """Final states and trajectories of every molecule in a group (vmapped :func:`ks.kohn_sham`)."""
    return jax.vmap(lambda s: ks.kohn_sham(s, group.discretization, xc, params, group.ks_options,
                                           num_iterations))(group.systems)


def _after(tree, zero):
    """``tree`` with ``zero`` (a computed 0.0) added to every floating leaf: a data dependency."""
    def add(leaf):
        leaf = jnp.asarray(leaf)
        return leaf + zero.astype(leaf.dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf

    return jax.tree_util.tree_map(add, tree)


def make_loss(groups: Sequence[Group], xc, options: KSROptions) -> Callable[[Any], jnp.ndarray]:
    """``loss(params) -> ()`` of the module docstring over the molecules of ``groups``."""
    k = options.num_iterations
    weights = options.discount ** jnp.arange(k - 1, -1, -1, dtype=jnp.float64)
    weights = jnp.where(jnp.arange(k) >= options.skip_iterations, weights, 0.0)
    weights = weights / jnp.sum(weights)
    count = sum(int(g.energies.shape[0]) for g in groups)

    def loss(params):
        total = jnp.zeros(())
        for index, group in enumerate(groups):
            if index:
                # the groups run one after another: XLA's CPU runtime may otherwise run two groups'
                # batched eigh kernels concurrently, and both then wait on sub-tasks queued in the
                # same intra-op thread pool; with 2 cores that deadlocked (jaxlib 0.10.2, H2 + H4).
                # A real data dependency of every input orders them (XLA keeps x * 0.0 for
                # floats; an optimization_barrier did not order the CPU runtime's thunks, and the
                # initial non-interacting eigh depends on the systems only); values and gradients
                # are unchanged.
                after = 0.0 * jax.lax.stop_gradient(total)
                params, systems = _after((params, group.systems), after)
                group = group._replace(systems=systems)
            _, trajectory = run_group(group, xc, params, k)
            errors = trajectory.total_energy - group.energies[:, None]           # (m, K)
            energy_loss = jnp.sum(errors**2 * weights[None, :])
            final_density = jnp.sum(trajectory.output_density[:, -1], axis=1)   # (m, n)
            density_loss = jnp.sum((final_density - group.densities) ** 2) * group.discretization.dx
            total = total + energy_loss + options.density_weight * density_loss
        return total / count

    return loss


class TrainState(NamedTuple):
    """Everything a resumed run needs (a pytree; saved whole in checkpoints)."""

    step: jnp.ndarray
    params: Any
    opt_state: Any
    best_params: Any
    best_validation: jnp.ndarray
    best_step: jnp.ndarray
    loss: jnp.ndarray


def _optimizer(options: KSROptions) -> optax.GradientTransformationExtraArgs:
    if options.optimizer == "lbfgs":
        return optax.lbfgs()
    return optax.adam(options.learning_rate)


def save_checkpoint(directory: str, state, name: str = CHECKPOINT_NAME) -> str:
    """Write the pytree ``state`` atomically (:func:`dftjax.atomic.write_pickle`) as ``directory/name``;
    returns the path. Shared by the 1D and 3D (:mod:`dftjax.xc3d.train`) trainers."""
    return atomic.write_pickle(os.path.join(directory, name), jax.tree_util.tree_map(np.asarray, state))


def load_checkpoint(directory: str, name: str = CHECKPOINT_NAME):
    """The checkpoint ``directory/name`` (None if there is none)."""
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        return None
    with open(path, "rb") as handle:
        return jax.tree_util.tree_map(jnp.asarray, pickle.load(handle))


def _progress(message: str) -> None:
    print(f"[ksr] {message}", file=sys.stderr, flush=True)


def train(init_params, xc, train_groups: Sequence[Group], options: KSROptions, *,
          validation_groups: Sequence[Group] = (), checkpoint_dir: str | None = None,
          stop_after: int | None = None, progress: Callable[[str], None] = _progress,
          on_step: Callable[[int, Any], None] | None = None):
    """Train ``params`` of ``xc(params, spin_density)`` through the unrolled KS iterations.

    Args:
        init_params: initial parameters pytree (ignored when resuming from a checkpoint).
        xc: the 1D energy density ``(params, spin_density (2, n)) -> (n,)``.
        train_groups, validation_groups: from :func:`make_groups`.
        options: :class:`KSROptions`.
        checkpoint_dir: resume from its checkpoint if present; write one every
            ``options.checkpoint_every`` steps and at the end.
        stop_after: stop (as if interrupted) after this step number; for tests of resuming.
        on_step: called as ``on_step(step, params)`` after every step (e.g. to keep snapshots for
            a learning curve on test geometries, outside the timed training).

    Returns:
        ``(state, history)``: the :class:`TrainState` (``best_params`` chosen by validation loss,
        or the last params without validation) and a dict of per-step ``loss``, ``validation``
        (NaN where not computed), ``time_s`` (wall) and ``cpu_s`` (process CPU time, all threads;
        the first step includes compilation) lists, cumulative over the steps run in this call.
    """
    with single_threaded_blas():  # ~150-point eigh: OpenBLAS threads only add overhead (oned.blas)
        return _train(init_params, xc, train_groups, options, validation_groups=validation_groups,
                      checkpoint_dir=checkpoint_dir, stop_after=stop_after, progress=progress,
                      on_step=on_step)


def _train(init_params, xc, train_groups, options, *, validation_groups, checkpoint_dir, stop_after,
           progress, on_step):
    """See :func:`train`."""
    loss_fn = make_loss(train_groups, xc, options)
    validation_fn = jax.jit(make_loss(validation_groups, xc, options)) if validation_groups else None
    optimizer = _optimizer(options)
    value_and_grad = optax.value_and_grad_from_state(loss_fn) if options.optimizer == "lbfgs" \
        else jax.value_and_grad(loss_fn)

    @jax.jit
    def step_fn(params, opt_state):
        value, grad = value_and_grad(params, state=opt_state) if options.optimizer == "lbfgs" \
            else value_and_grad(params)
        if options.optimizer == "lbfgs":
            updates, opt_state = optimizer.update(grad, opt_state, params, value=value, grad=grad,
                                                  value_fn=loss_fn)
        else:
            updates, opt_state = optimizer.update(grad, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    state = load_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if state is None:
        state = TrainState(step=jnp.asarray(0), params=init_params, opt_state=optimizer.init(init_params),
                           best_params=init_params, best_validation=jnp.asarray(jnp.inf),
                           best_step=jnp.asarray(-1), loss=jnp.asarray(jnp.nan))
    else:
        progress(f"resuming from step {int(state.step)} ({checkpoint_dir})")
    # fresh optimiser states hold weakly typed scalars that the first update makes strong: cast to
    # the step's output types once so that step 2 (and a resumed run) reuse step 1's compilation
    shapes = jax.eval_shape(step_fn, state.params, state.opt_state)
    params, opt_state = jax.tree_util.tree_map(lambda a, s: jnp.asarray(a, dtype=s.dtype),
                                               (state.params, state.opt_state), shapes[:2])
    state = state._replace(params=params, opt_state=opt_state)
    history = {"loss": [], "validation": [], "time_s": [], "cpu_s": []}
    start, cpu_start = time.perf_counter(), time.process_time()
    last = options.steps if stop_after is None else min(options.steps, stop_after)
    while int(state.step) < last:
        params, opt_state, value = step_fn(state.params, state.opt_state)
        step = int(state.step) + 1
        validation = float("nan")
        best = (state.best_params, state.best_validation, state.best_step)
        if validation_fn is not None and (step % options.validate_every == 0 or step == options.steps):
            validation = float(validation_fn(params))
            if validation < float(state.best_validation):
                best = (params, jnp.asarray(validation), jnp.asarray(step))
        elif validation_fn is None:
            best = (params, state.best_validation, jnp.asarray(step))
        state = TrainState(step=jnp.asarray(step), params=params, opt_state=opt_state, best_params=best[0],
                           best_validation=best[1], best_step=best[2], loss=value)
        elapsed = time.perf_counter() - start
        history["loss"].append(float(value))
        history["validation"].append(validation)
        history["time_s"].append(elapsed)
        history["cpu_s"].append(time.process_time() - cpu_start)
        progress(f"step {step}/{options.steps} loss {float(value):.3e}"
                 + ("" if np.isnan(validation) else f" validation {validation:.3e}")
                 + f" ({elapsed:.1f} s)")
        if checkpoint_dir and options.checkpoint_every and step % options.checkpoint_every == 0:
            save_checkpoint(checkpoint_dir, state)
        if on_step is not None:
            on_step(step, params)
    if checkpoint_dir:
        save_checkpoint(checkpoint_dir, state)
    return state, history


def evaluate(groups: Sequence[Group], xc, params, num_iterations: int):
    """Final electronic energies (m,) and densities (m, n) per group, as lists (jitted per group)."""
    energies, densities = [], []
    for group in groups:
        with single_threaded_blas():
            final, _ = jax.jit(lambda p, g=group: run_group(g, xc, p, num_iterations))(params)
        energies.append(np.asarray(final.total_energy))
        densities.append(np.asarray(jnp.sum(final.output_density, axis=1)))
    return energies, densities


def save_params(path: str, params, **metadata) -> str:
    """Write a parameters pytree of nested dicts (Flax) to ``path`` (.npz appended if missing,
    atomically: :func:`dftjax.atomic.savez`), keys joined by ``/``; ``metadata`` (JSON-serialisable)
    goes along. Returns the path written."""
    import json

    flat = {}

    def walk(prefix, node):
        if isinstance(node, dict) or hasattr(node, "items"):
            for key, value in node.items():
                if "/" in str(key):
                    raise ValueError(f"parameter name {key!r} contains '/'")
                walk(f"{prefix}/{key}" if prefix else str(key), value)
        else:
            flat[prefix] = np.asarray(node, dtype=np.float64)

    walk("", params)
    return atomic.savez(path, __metadata__=np.asarray(json.dumps(metadata)), **flat)


def load_params(path: str):
    """``(params, metadata)`` written by :func:`save_params` (float64 JAX arrays in nested dicts)."""
    import json

    if not os.path.exists(path):
        raise ValueError(f"no parameter file {path}")
    params: dict = {}
    with np.load(path, allow_pickle=False) as archive:
        metadata = json.loads(str(archive["__metadata__"])) if "__metadata__" in archive.files else {}
        for key in archive.files:
            if key == "__metadata__":
                continue
            node = params
            *parents, leaf = key.split("/")
            for parent in parents:
                node = node.setdefault(parent, {})
            node[leaf] = jnp.asarray(archive[key], dtype=jnp.float64)
    return params, metadata
