"""Variational Monte Carlo: the optimisation loop, composed of small step factories.

One VMC iteration (Pfau et al., Phys. Rev. Research 2, 033429 (2020); Hermann et al., Nat. Chem. 12,
891 (2020)):

1. move the walkers ``mcmc_steps`` Metropolis steps under |psi_theta|^2 (:mod:`qmc.mcmc`);
2. evaluate the local energies E_L (:mod:`qmc.hamiltonian`);
3. update theta with the clipped energy gradient, natural-gradient preconditioned or Adam
   (:mod:`qmc.optimizers`).

Before it: orbital pretraining on Hartree-Fock (:mod:`qmc.pretrain`) and MCMC burn-in. After it: an
evaluation phase at fixed parameters whose per-iteration mean energies give the reported energy with
a blocking error bar (:mod:`qmc.statistics`).

The whole state (parameters, optimiser state, walkers, PRNG key, iteration) is one pytree; it is
checkpointed atomically (:mod:`dftjax.atomic`) every ``checkpoint_every`` iterations and at
the end, and a run started on a directory holding a checkpoint resumes from it bit for bit: an
interrupted and resumed run equals the uninterrupted run with the same seed.

With several local devices the walkers are split along the batch axis over a 1D mesh ``("walkers",)``
(``jax.sharding.NamedSharding``; parameters, optimiser state and keys replicated). The jitted steps
are unchanged: XLA's SPMD partitioner runs the per-walker network, Laplacian and Metropolis moves on
each device's walkers and all-reduces the walker means and SPRING's W x W Gram matrix. Random
proposals are drawn for the global walker array, so a run gives the single-device numbers up to the
summation order of those reductions (``tests/qmc/test_sharding.py``).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dftjax import atomic
from dftjax.oned.blas import single_threaded_blas
from qmc.ansatz import make_ansatz
from qmc.hamiltonian import make_local_energy
from qmc.mcmc import MCMC, MCMCState, initial_positions, make_metropolis
from qmc.optimizers import Optimizer, make_optimizer
from qmc.pretrain import hartree_fock, pretrain
from qmc.statistics import blocking_error

CHECKPOINT_NAME = "vmc_checkpoint.pkl"
DTYPES = {"float32": jnp.float32, "float64": jnp.float64}


@dataclasses.dataclass(frozen=True, kw_only=True)
class VMCOptions:
    """Everything that defines a VMC run (atomic units).

    Attributes:
      ansatz, ansatz_options: name in :data:`qmc.ansatz.ANSATZES` and its options (None: defaults).
      optimizer, optimizer_options: name in :data:`qmc.optimizers.OPTIMIZERS` and its options.
      iterations: optimisation iterations. walkers: number of MCMC walkers. seed: PRNG seed.
      laplacian: ``"forward"`` or ``"hessian"``.
      pretrain_iterations, pretrain_basis: Hartree-Fock pretraining (0 iterations: none). Ansatzes
        built on a Hartree-Fock baseline (PauliNet, whose module has ``hf_energy``) skip it.
      burn_in: MCMC updates (each of ``mcmc_steps`` moves) before the first optimisation step.
      mcmc_steps: Metropolis moves per iteration.
      eval_iterations: iterations at fixed parameters for the reported energy (0: use the last
        fifth of the optimisation instead).
      checkpoint_every: iterations between checkpoints (when a directory is given).
      progress_every: iterations between progress lines on stderr (0: silent).
      dtype: ``"float64"`` or ``"float32"``: walkers, parameters, local energies and optimiser
        arithmetic in this precision (the SCF behind pretraining and PauliNet's baseline runs in
        float64 in PySCF; its constants are cast). float64 needs ``jax_enable_x64`` (dftjax's CLI sets it).
    """

    ansatz: str = "ferminet"
    ansatz_options: Any = None
    optimizer: str = "spring"
    optimizer_options: Any = None
    iterations: int = 1000
    walkers: int = 256
    seed: int = 0
    laplacian: str = "forward"
    pretrain_iterations: int = 100
    pretrain_basis: str = "cc-pvdz"
    burn_in: int = 20
    mcmc_steps: int = 10
    eval_iterations: int = 200
    checkpoint_every: int = 100
    progress_every: int = 10
    dtype: str = "float64"

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r}: expected one of {sorted(DTYPES)}")
        for name in ("iterations", "walkers", "pretrain_iterations", "burn_in", "eval_iterations"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} {getattr(self, name)} must be non-negative")
        if self.walkers < 2 or self.mcmc_steps < 1 or self.checkpoint_every < 1:
            raise ValueError(
                f"need walkers >= 2 (got {self.walkers}), mcmc_steps >= 1 (got {self.mcmc_steps}), "
                f"checkpoint_every >= 1 (got {self.checkpoint_every})"
            )


class VMCState(NamedTuple):
    """The complete state of a run between two iterations (a pytree)."""

    params: Any
    opt_state: Any
    mcmc: MCMCState
    key: jnp.ndarray
    step: jnp.ndarray


class History(NamedTuple):
    """Per-iteration statistics, (iterations,) numpy arrays."""

    energy: np.ndarray
    variance: np.ndarray
    acceptance: np.ndarray


@dataclasses.dataclass(frozen=True)
class VMCResult:
    """Outcome of :func:`run_vmc` (hartree).

    Attributes:
      energy, energy_error: evaluation-phase mean energy and its blocking standard error.
      variance: mean walker variance of E_L in the evaluation phase (hartree^2).
      iterations: optimisation iterations done. wall_time_s: seconds of this call.
      hf_energy: UHF energy of the pretraining or of PauliNet's baseline (None without either, or when resumed).
      history: per-iteration optimisation statistics. acceptance: final mean acceptance.
      state: the final :class:`VMCState`. resumed_from: iteration of the loaded checkpoint or None.
    """

    energy: float
    energy_error: float
    variance: float
    iterations: int
    wall_time_s: float
    hf_energy: float | None
    history: History
    acceptance: float
    state: VMCState
    resumed_from: int | None


def make_vmc_step(log_abs_psi, local_energy, mcmc: MCMC, optimizer: Optimizer):
    """Jitted ``step(state) -> (state, stats)``: MCMC moves, local energies, one optimiser update."""
    batched_energy = jax.vmap(local_energy, (None, 0))

    @jax.jit
    def step(state: VMCState):
        key, key_mcmc = jax.random.split(state.key)
        walkers, acceptance = mcmc.update(state.params, state.mcmc, key_mcmc)
        energies = batched_energy(state.params, walkers.positions)
        params, opt_state, opt_stats = optimizer.update(state.params, state.opt_state, walkers.positions, energies)
        stats = {
            "energy": jnp.mean(energies),
            "variance": jnp.var(energies),
            "acceptance": acceptance,
            "step_size": walkers.step_size,
            **opt_stats,
        }
        return VMCState(params, opt_state, walkers, key, state.step + 1), stats

    return step


def make_eval_step(local_energy, mcmc: MCMC):
    """Jitted ``step(params, walkers, key) -> (walkers, stats)`` at fixed parameters."""
    batched_energy = jax.vmap(local_energy, (None, 0))

    @jax.jit
    def step(params, walkers: MCMCState, key):
        walkers, acceptance = mcmc.update(params, walkers, key)
        energies = batched_energy(params, walkers.positions)
        return walkers, {"energy": jnp.mean(energies), "variance": jnp.var(energies), "acceptance": acceptance}

    return step


def make_burn_in(mcmc: MCMC, updates: int):
    """Jitted ``burn_in(params, walkers, key) -> walkers``: ``updates`` MCMC updates, step size adapting."""

    @jax.jit
    def burn_in(params, walkers: MCMCState, key):
        def body(walkers, k):
            return mcmc.update(params, walkers, k)[0], None

        return jax.lax.scan(body, walkers, jax.random.split(key, updates))[0]

    return burn_in


def walker_mesh(n_walkers: int) -> jax.sharding.Mesh | None:
    """A 1D mesh ``("walkers",)`` over the local devices, or None on a single device.

    Uses the largest number of local devices that divides ``n_walkers``, so every device holds the
    same number of walkers.
    """
    devices = jax.local_devices()
    n = max(d for d in range(1, len(devices) + 1) if n_walkers % d == 0)
    if n < 2:
        return None
    return jax.sharding.Mesh(np.array(devices[:n]), ("walkers",))


def shard_walkers(mesh: jax.sharding.Mesh | None, state: VMCState) -> VMCState:
    """``state`` with its walker arrays split along axis 0 over ``mesh`` and the rest replicated."""
    if mesh is None:
        return state
    spec = jax.sharding.PartitionSpec
    replicated = jax.sharding.NamedSharding(mesh, spec())

    def batch(x):
        return jax.device_put(x, jax.sharding.NamedSharding(mesh, spec("walkers", *([None] * (x.ndim - 1)))))

    mcmc = state.mcmc
    mcmc = MCMCState(batch(mcmc.positions), batch(mcmc.log_abs_psi), jax.device_put(mcmc.step_size, replicated))
    rest = jax.device_put((state.params, state.opt_state, state.key, state.step), replicated)
    return VMCState(rest[0], rest[1], mcmc, rest[2], rest[3])


def _fingerprint(molecule, options: VMCOptions) -> str:
    """What must match for a checkpoint to be resumable (not the iteration count or printing)."""
    kept = dataclasses.replace(options, iterations=0, eval_iterations=0, checkpoint_every=1, progress_every=0)
    return f"{molecule!r} {kept!r}"


def save_checkpoint(directory: str, state: VMCState, history: History, fingerprint: str) -> str:
    """Write the state atomically to ``directory/vmc_checkpoint.pkl``; returns the path."""
    payload = {"state": jax.device_get(state), "history": history, "fingerprint": fingerprint}
    # a reader sees the old or the new checkpoint, never half of one
    return atomic.write_pickle(os.path.join(directory, CHECKPOINT_NAME), payload)


def load_checkpoint(directory: str, fingerprint: str):
    """(state, history) from ``directory``, or None when there is no checkpoint."""
    path = os.path.join(directory, CHECKPOINT_NAME)
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        payload = pickle.load(f)
    if payload["fingerprint"] != fingerprint:
        raise ValueError(f"checkpoint {path} belongs to another molecule or settings; use another --checkpoint-dir")
    state = jax.tree_util.tree_map(jnp.asarray, payload["state"])
    return state, payload["history"]


def _progress_line(step: int, total: int, history: History, elapsed: float, window: int = 20) -> str:
    lo = max(0, step - window)
    energy = history.energy[lo:step]
    width = 24
    filled = int(width * step / max(total, 1))
    bar = "#" * filled + "-" * (width - filled)
    return (
        f"[vmc] [{bar}] {step}/{total}  E = {energy.mean():.5f}  var = {history.variance[lo:step].mean():.4f}"
        f"  acc = {history.acceptance[step - 1]:.2f}  {elapsed:.1f} s"
    )


_BUILT: dict[str, tuple] = {}  # fingerprint -> jitted pieces, so a resumed run in the same process reuses compilations


def _build(molecule, options: VMCOptions, fingerprint: str):
    """(module, mcmc, optimizer, vmc_step, burn_in, eval_step) for a run; cached by fingerprint."""
    if fingerprint in _BUILT:
        return _BUILT[fingerprint]
    module = make_ansatz(options.ansatz, molecule, options.ansatz_options)

    def log_abs_psi(params, x):
        return module.apply(params, x)[1]

    local_energy = make_local_energy(log_abs_psi, molecule.coords, molecule.atomic_numbers, options.laplacian)
    mcmc = make_metropolis(jax.vmap(log_abs_psi, (None, 0)), steps=options.mcmc_steps)
    optimizer = make_optimizer(options.optimizer, log_abs_psi, options.optimizer_options)
    built = (
        module, mcmc, optimizer, make_vmc_step(log_abs_psi, local_energy, mcmc, optimizer),
        make_burn_in(mcmc, options.burn_in), make_eval_step(local_energy, mcmc),
    )
    if len(_BUILT) >= 4:
        _BUILT.pop(next(iter(_BUILT)))
    _BUILT[fingerprint] = built
    return built


@single_threaded_blas()
def run_vmc(
    molecule,
    options: VMCOptions | None = None,
    *,
    checkpoint_dir: str | None = None,
    callback: Callable[[int, dict], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> VMCResult:
    """Optimise ``options.ansatz`` for ``molecule`` by VMC; resume from ``checkpoint_dir`` if it holds one.

    Args:
      molecule: a :class:`basis.molecule.Molecule`.
      options: see :class:`VMCOptions`.
      checkpoint_dir: where checkpoints go (None: none written or read).
      callback: called as ``callback(iteration, stats)`` after every optimisation iteration (after a
        checkpoint due at that iteration is written), e.g. to stop early by raising.
      log: progress sink (default: lines on stderr).

    The run holds OpenBLAS (XLA's LAPACK on CPU: SPRING's Cholesky factorisation and solves) at one
    thread: its worker threads compete with XLA's own pool, and a 256 x 256 ``potrf`` took 4 ms
    (median; 0.8 ms at best) with one thread against 380 ms with the default two on a loaded 2-core
    machine (:mod:`dftjax.oned.blas`); the He SPRING step went from 97 to 67 ms (medians, loaded).
    """
    options = options or VMCOptions()
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    start = time.perf_counter()
    fingerprint = _fingerprint(molecule, options)
    module, mcmc, optimizer, vmc_step, burn_in, eval_step = _build(molecule, options, fingerprint)

    mesh = walker_mesh(options.walkers)
    loaded = load_checkpoint(checkpoint_dir, fingerprint) if checkpoint_dir else None
    hf_energy = None
    if loaded is not None:
        state, old = loaded
        done = int(state.step)
        log(f"[vmc] resuming from iteration {done} in {checkpoint_dir}")
        history = History(*(np.zeros(options.iterations) for _ in History._fields))
        keep = min(done, options.iterations)
        for new, prev in zip(history, old):
            new[:keep] = prev[:keep]
        resumed_from = done
    else:
        resumed_from = None
        key = jax.random.PRNGKey(options.seed)
        key, key_init, key_params, key_pretrain, key_burn = jax.random.split(key, 5)
        dtype = DTYPES[options.dtype]
        if dtype == jnp.float64 and not jax.config.jax_enable_x64:
            raise ValueError("dtype float64 needs jax_enable_x64 (jax.config.update('jax_enable_x64', True))")
        positions = initial_positions(key_init, molecule, options.walkers).astype(dtype)
        # Flax creates Dense kernels in float32 whatever the input: cast every parameter to the run's dtype
        params = jax.tree_util.tree_map(lambda a: a.astype(dtype), jax.jit(module.init)(key_params, positions[0]))
        baseline_energy = getattr(module, "hf_energy", None)
        if baseline_energy is not None:
            # PauliNet starts as its (cusp-corrected) UHF determinant: fitting its orbitals to the
            # uncorrected UHF ones would only undo the cusp correction, so there is nothing to pretrain.
            hf_energy = baseline_energy
            log(f"[vmc] {options.ansatz} starts at its UHF baseline, E_UHF = {hf_energy:.6f}; no pretraining")
        elif options.pretrain_iterations:
            log(f"[vmc] pretraining on UHF/{options.pretrain_basis} orbitals, {options.pretrain_iterations} iterations")
            hf = hartree_fock(molecule, options.pretrain_basis)
            hf_energy = hf.energy
            params, positions, losses = pretrain(
                module, params, molecule, positions, key_pretrain, iterations=options.pretrain_iterations, hf=hf,
            )
            log(f"[vmc] pretraining loss {losses[0]:.4f} -> {losses[-1]:.4f}; E_UHF = {hf_energy:.6f}")
        if mesh is not None:  # burn-in already runs sharded
            positions = jax.device_put(positions, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("walkers", None)))
        walkers = jax.jit(mcmc.init)(params, positions)  # eager, the vmapped network dispatches op by op
        if options.burn_in:
            walkers = burn_in(params, walkers, key_burn)
        state = VMCState(params, optimizer.init(params), walkers, key, jnp.zeros((), jnp.int32))
        history = History(*(np.zeros(options.iterations) for _ in History._fields))
    state = shard_walkers(mesh, state)

    first = int(state.step)
    stats = None
    for step in range(first, options.iterations):
        state, stats = vmc_step(state)
        stats = jax.device_get(stats)
        history.energy[step] = stats["energy"]
        history.variance[step] = stats["variance"]
        history.acceptance[step] = stats["acceptance"]
        if not np.isfinite(stats["energy"]):
            raise FloatingPointError(f"non-finite energy at iteration {step + 1}")
        done = step + 1
        if checkpoint_dir and done % options.checkpoint_every == 0:
            save_checkpoint(checkpoint_dir, state, history, fingerprint)
        if options.progress_every and (done % options.progress_every == 0 or done == options.iterations):
            log(_progress_line(done, options.iterations, history, time.perf_counter() - start))
        if callback is not None:
            callback(done, stats)
    if checkpoint_dir:
        save_checkpoint(checkpoint_dir, state, history, fingerprint)

    energy_series, variance_series, acceptance = _evaluate(state, eval_step, options, history, log)
    energy, error = blocking_error(energy_series)
    return VMCResult(
        energy=energy, energy_error=error, variance=float(np.mean(variance_series)),
        iterations=int(state.step), wall_time_s=time.perf_counter() - start, hf_energy=hf_energy,
        history=history, acceptance=acceptance, state=state, resumed_from=resumed_from,
    )


def _evaluate(state: VMCState, eval_step, options: VMCOptions, history: History, log):
    """Per-iteration energies and variances at fixed parameters (or the tail of the optimisation)."""
    if options.eval_iterations == 0:
        n = int(state.step)
        tail = slice(n - max(n // 5, min(n, 2)), n)
        acceptance = float(history.acceptance[n - 1]) if n else float("nan")
        return history.energy[tail], history.variance[tail], acceptance
    walkers = state.mcmc
    energies = np.zeros(options.eval_iterations)
    variances = np.zeros(options.eval_iterations)
    acceptance = 0.0
    # A key of its own, derived from the final state: evaluating never changes the saved state.
    key = jax.random.fold_in(state.key, 1)
    for i in range(options.eval_iterations):
        key, subkey = jax.random.split(key)
        walkers, stats = eval_step(state.params, walkers, subkey)
        stats = jax.device_get(stats)
        energies[i], variances[i], acceptance = stats["energy"], stats["variance"], float(stats["acceptance"])
    mean, error = blocking_error(energies)
    log(f"[vmc] evaluation: E = {mean:.6f} +- {error:.6f} over {options.eval_iterations} iterations")
    return energies, variances, acceptance
