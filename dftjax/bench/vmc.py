"""`dftjax bench vmc`: the cost of deep VMC, per local-energy evaluation and per optimisation step.

For each system (He, LiH, N2, CH4: 2, 4, 14 and 10 electrons) a FermiNet of the given size
(:class:`qmc.ansatz.FermiNetOptions`, default the CLI's network) is built, walkers are placed
around the nuclei, and three jitted functions are timed, cold (first call: tracing and compilation)
and warm (median of ``repeats`` calls):

* one local-energy evaluation of all walkers with the Laplacian as a Hessian trace
  (forward-over-reverse autodiff) and as a forward Laplacian (folx; Li et al., Nat. Mach. Intell.
  6, 209 (2024)), and their ratio forward / Hessian (issue 9's goal: <= 0.5 from 10 electrons on CPU);
* one VMC optimisation step as :func:`qmc.train.run_vmc` runs it: ``mcmc_steps`` Metropolis moves,
  local energies with the forward Laplacian, one SPRING natural-gradient update.

The numbers are wall times on whatever JAX sees (CPU cores, or the first GPU); in float64 unless
``dtype="float32"``.

With ``ferminet_python`` (``dftjax bench vmc --ferminet-python PYTHON``), FermiNet's own code
(Pfau et al., Phys. Rev. Research 2, 033429 (2020); google-deepmind/ferminet) is timed side by side:
an interpreter where FermiNet and kfac-jax are installed runs :mod:`dftjax.bench.ferminet_peer`
with the same network size, walkers and Metropolis moves, once with KFAC (FermiNet's default; set
against our SPRING step) and once with Adam (set against our Adam step, the same work apart from
the optimiser). FermiNet needs its own interpreter because it does not run on the JAX that dftjax
pins (see that module).

With it, the pieces of a step are timed on both sides too (``breakdown``; see :func:`time_system`).

Measured 2026-11-28 (2 idle cores; float64, 256 walkers, 10 moves, the CLI's network), ms per
step, ours / FermiNet's: SPRING / KFAC He 25.3 / 27.2, LiH 59.1 / 71.8, CH4 385 / 431, N2 691 / 933;
Adam / Adam He 13.8 / 19.9, LiH 38.2 / 58.8, CH4 349 / 407, N2 701 / 843. Earlier that day SPRING
was 1.2-1.6x KFAC at He and LiH (see the README's VMC section for what changed).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from basis.molecule import make_molecule
from dftjax.bench._timing import time_cold_warm
from dftjax.oned.blas import single_threaded_blas

# Geometries in bohr: LiH at its equilibrium 3.015, N2 at 2.068 (FermiNet's), CH4 tetrahedral with
# C-H 2.052 (1.086 A).
_CH = 2.052 / np.sqrt(3.0)
SYSTEMS = {
    "He": "He 0 0 0",
    "LiH": "Li 0 0 0; H 0 0 3.015",
    "N2": "N 0 0 0; N 0 0 2.068",
    "CH4": "C 0 0 0; " + "; ".join(
        f"H {a * _CH:.6f} {b * _CH:.6f} {c * _CH:.6f}" for a, b, c in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1))
    ),
}


@dataclasses.dataclass(frozen=True)
class VMCTiming:
    """Timings of one system (seconds, all walkers at once)."""

    system: str
    n_elec: int
    n_params: int
    walkers: int
    dtype: str
    hessian_s: float
    forward_s: float
    step_s: float
    hessian_cold_s: float
    forward_cold_s: float
    step_cold_s: float
    step_adam_s: float = math.nan
    ferminet_kfac_step_s: float = math.nan
    ferminet_adam_step_s: float = math.nan
    # breakdown of a step (with ``breakdown``): ours, then FermiNet's (with the peer)
    log_psi_s: float = math.nan
    mcmc_s: float = math.nan
    gradient_s: float = math.nan
    jacobian_s: float = math.nan
    gram_s: float = math.nan
    solve_s: float = math.nan
    ferminet_log_psi_s: float = math.nan
    ferminet_mcmc_s: float = math.nan
    ferminet_local_energy_s: float = math.nan
    ferminet_loss_grad_s: float = math.nan

    @property
    def ratio(self) -> float:
        """forward / Hessian time per local-energy evaluation (< 1: the forward Laplacian is faster)."""
        return self.forward_s / self.hessian_s

    @property
    def ratio_ferminet(self) -> float:
        """Our SPRING step / FermiNet's KFAC step (NaN without the peer)."""
        return self.step_s / self.ferminet_kfac_step_s

    @property
    def ratio_ferminet_adam(self) -> float:
        """Our Adam step / FermiNet's Adam step (NaN without the peer)."""
        return self.step_adam_s / self.ferminet_adam_step_s


PEER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ferminet_peer.py")


def check_ferminet_python(python: str) -> None:
    """Raise ValueError unless ``python`` runs and imports ferminet and kfac_jax (seconds)."""
    try:
        done = subprocess.run([python, "-c", "import ferminet.train, kfac_jax"], capture_output=True, text=True,
                              timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ValueError(f"--ferminet-python {python!r} cannot be run: {err}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ValueError(f"--ferminet-python {python!r} cannot import FermiNet and kfac-jax: {last}")


def ferminet_step_time(python: str, molecule, options, *, walkers: int, mcmc_steps: int, optimizer: str,
                       dtype: str = "float64", iterations: int = 25, breakdown: bool = False) -> dict:
    """``{"per_step_s": seconds per optimisation step}`` of FermiNet's own code for ``molecule``.

    With ``breakdown``, also ``log_psi_s``, ``mcmc_s``, ``local_energy_s`` and ``loss_grad_s``
    (see ferminet_peer.py).
    """
    atoms = [[symbol, [float(c) for c in xyz]] for symbol, xyz in zip(molecule.symbols, molecule.coords)]
    command = [python, PEER_SCRIPT, "--atoms", json.dumps(atoms), "--electrons", ",".join(map(str, molecule.nelec)),
               "--walkers", str(walkers), "--optimizer", optimizer, "--mcmc-steps", str(mcmc_steps),
               "--hidden-one", ",".join(map(str, options.hidden_one)),
               "--hidden-two", ",".join(map(str, options.hidden_two)),
               "--determinants", str(options.determinants), "--iterations", str(iterations), "--dtype", dtype]
    if breakdown:
        command.append("--breakdown")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"FermiNet peer failed ({optimizer}): {done.stderr.strip()[-2000:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    return {k: float(v) for k, v in record.items() if k.endswith("_s")}


def time_system(name: str, *, options=None, walkers: int = 64, repeats: int = 3, mcmc_steps: int = 10,
                dtype: str = "float64", seed: int = 0, ferminet_python: str | None = None,
                breakdown: bool | None = None) -> VMCTiming:
    """Time the local energy (both Laplacians) and one optimisation step for ``SYSTEMS[name]``.

    With ``ferminet_python``, also our Adam step and FermiNet's KFAC and Adam steps (same sizes).
    With ``breakdown`` (default: when ``ferminet_python`` is given), also the pieces of a step, each
    jitted alone: log|psi| of all walkers, the MCMC update, the energy gradient (Adam's), SPRING's
    per-walker Jacobian, its Gram matrix and its damped solve; and FermiNet's log|psi|, MCMC step,
    local energy and loss gradient; pieces are the least time of ``repeats`` warm calls (on a shared
    machine, the least disturbed one), steps the median. As :func:`qmc.train.run_vmc`, with
    OpenBLAS on one thread.
    """
    with single_threaded_blas():
        return _time_system(name, options=options, walkers=walkers, repeats=repeats, mcmc_steps=mcmc_steps,
                            dtype=dtype, seed=seed, ferminet_python=ferminet_python,
                            breakdown=ferminet_python is not None if breakdown is None else breakdown)


def _time_system(name, *, options, walkers, repeats, mcmc_steps, dtype, seed, ferminet_python, breakdown):
    from qmc.ansatz import FermiNetOptions, make_ansatz
    from qmc.hamiltonian import make_local_energy
    from qmc.mcmc import initial_positions, make_metropolis
    from qmc.optimizers import SpringOptions, centred_gram, energy_gradient, make_optimizer, walker_jacobian_blocks
    from qmc.train import VMCState, make_vmc_step

    if name not in SYSTEMS:
        raise ValueError(f"unknown VMC benchmark system {name!r}: expected one of {sorted(SYSTEMS)}")
    molecule = make_molecule(SYSTEMS[name], unit="bohr")
    options = options or FermiNetOptions()
    module = make_ansatz("ferminet", molecule, options)
    key_positions, key_params, key_step = jax.random.split(jax.random.PRNGKey(seed), 3)
    positions = initial_positions(key_positions, molecule, walkers).astype(dtype)
    params = jax.jit(module.init)(key_params, positions[0])
    params = jax.tree_util.tree_map(lambda a: a.astype(dtype), params)

    def log_abs_psi(p, x):
        return module.apply(p, x)[1]

    nuclei = jnp.asarray(molecule.coords, dtype=dtype)
    times = {}
    for method in ("hessian", "forward"):
        local_energy = make_local_energy(log_abs_psi, nuclei, molecule.atomic_numbers, method)
        batched = jax.jit(jax.vmap(local_energy, (None, 0)))
        times[method] = time_cold_warm(lambda: batched(params, positions), repeats)

    mcmc = make_metropolis(jax.vmap(log_abs_psi, (None, 0)), steps=mcmc_steps)
    optimizer = make_optimizer("spring", log_abs_psi)
    local_energy = make_local_energy(log_abs_psi, nuclei, molecule.atomic_numbers, "forward")
    step = make_vmc_step(log_abs_psi, local_energy, mcmc, optimizer)
    state = VMCState(params, optimizer.init(params), mcmc.init(params, positions), key_step, jnp.zeros((), jnp.int32))
    times["step"] = time_cold_warm(lambda: step(state), repeats)
    peer = {}
    if breakdown:
        def warm(fn, *args):  # least of the warm calls, as the peer's pieces: the least disturbed call
            return time_cold_warm(lambda: fn(*args), max(repeats, 1), statistic=min)[1]

        energies = jax.jit(jax.vmap(local_energy, (None, 0)))(params, positions)
        jacobian = jax.jit(walker_jacobian_blocks, static_argnums=0)(log_abs_psi, params, positions)
        gram = jax.jit(centred_gram)(jacobian)
        spring_options = SpringOptions()

        @jax.jit
        def solve(gram, residual):  # SPRING's damped kernel, factorised and solved
            n = gram.shape[0]
            kernel = gram + spring_options.damping * jnp.eye(n, dtype=gram.dtype) + jnp.ones_like(gram) / n
            return jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(kernel), residual)

        peer.update(
            log_psi_s=warm(jax.jit(jax.vmap(log_abs_psi, (None, 0))), params, positions),
            mcmc_s=warm(jax.jit(mcmc.update), params, state.mcmc, key_step),
            gradient_s=warm(jax.jit(lambda p, x, e: energy_gradient(log_abs_psi, p, x, e)), params, positions,
                            energies),
            jacobian_s=warm(jax.jit(walker_jacobian_blocks, static_argnums=0), log_abs_psi, params, positions),
            gram_s=warm(jax.jit(centred_gram), jacobian),
            solve_s=warm(solve, gram, energies),
        )
    if ferminet_python:
        adam = make_optimizer("adam", log_abs_psi)
        adam_step = make_vmc_step(log_abs_psi, local_energy, mcmc, adam)
        adam_state = state._replace(opt_state=adam.init(params))
        peer["step_adam_s"] = time_cold_warm(lambda: adam_step(adam_state), repeats)[1]
        for optimizer_name in ("kfac", "adam"):
            record = ferminet_step_time(
                ferminet_python, molecule, options, walkers=walkers, mcmc_steps=mcmc_steps,
                optimizer=optimizer_name, dtype=dtype, breakdown=breakdown and optimizer_name == "adam")
            peer[f"ferminet_{optimizer_name}_step_s"] = record.pop("per_step_s")
            peer.update({f"ferminet_{k}": v for k, v in record.items()})
    return VMCTiming(
        system=name, n_elec=int(sum(molecule.nelec)), n_params=int(ravel_pytree(params)[0].size), walkers=walkers,
        dtype=dtype, hessian_s=times["hessian"][1], forward_s=times["forward"][1], step_s=times["step"][1],
        hessian_cold_s=times["hessian"][0], forward_cold_s=times["forward"][0], step_cold_s=times["step"][0],
        **peer,
    )


def run(systems=("He", "LiH", "N2", "CH4"), *, options=None, walkers: int = 64, repeats: int = 3,
        mcmc_steps: int = 10, dtype: str = "float64", progress: bool = True,
        ferminet_python: str | None = None, breakdown: bool | None = None) -> list[VMCTiming]:
    """Time every system in ``systems`` (names of :data:`SYSTEMS`); progress lines on stderr.

    ``ferminet_python``: an interpreter with FermiNet and kfac-jax, to time FermiNet's own step too.
    ``breakdown``: also time the pieces of a step (default: with ``ferminet_python``).
    """
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown VMC benchmark system {unknown[0]!r}: expected one of {sorted(SYSTEMS)}")
    if ferminet_python:
        check_ferminet_python(ferminet_python)
    results = []
    for name in systems:
        row = time_system(name, options=options, walkers=walkers, repeats=repeats, mcmc_steps=mcmc_steps, dtype=dtype,
                          ferminet_python=ferminet_python, breakdown=breakdown)
        results.append(row)
        if progress:
            peer = ""
            if not math.isnan(row.ferminet_kfac_step_s):
                peer = (f"; FermiNet KFAC {row.ferminet_kfac_step_s * 1e3:.1f} ms (ours/FermiNet "
                        f"{row.ratio_ferminet:.2f}), Adam {row.step_adam_s * 1e3:.1f} vs "
                        f"{row.ferminet_adam_step_s * 1e3:.1f} ms ({row.ratio_ferminet_adam:.2f})")
            print(f"[bench vmc] {name}: E_L hessian {row.hessian_s * 1e3:.1f} ms, forward {row.forward_s * 1e3:.1f} ms "
                  f"(ratio {row.ratio:.2f}); step {row.step_s * 1e3:.1f} ms{peer}", file=sys.stderr, flush=True)
    return results


def as_records(results: list[VMCTiming]) -> list[dict]:
    return [dict(dataclasses.asdict(r), ratio_forward_hessian=r.ratio, ratio_step_ferminet=r.ratio_ferminet,
                 ratio_adam_step_ferminet=r.ratio_ferminet_adam) for r in results]


def format_table(results: list[VMCTiming]) -> str:
    header = (f"{'system':<7} {'n_e':>4} {'params':>8} {'walkers':>7} {'dtype':<8} {'E_L hess ms':>11} "
              f"{'E_L fwd ms':>10} {'fwd/hess':>8} {'step ms':>9} {'cold h/f/step s':>17}")
    lines = [header]
    for r in results:
        cold = f"{r.hessian_cold_s:.1f}/{r.forward_cold_s:.1f}/{r.step_cold_s:.1f}"
        lines.append(
            f"{r.system:<7} {r.n_elec:>4} {r.n_params:>8} {r.walkers:>7} {r.dtype:<8} {r.hessian_s * 1e3:>11.2f} "
            f"{r.forward_s * 1e3:>10.2f} {r.ratio:>8.2f} {r.step_s * 1e3:>9.2f} {cold:>17}")
    peers = [r for r in results if not math.isnan(r.ferminet_kfac_step_s)]
    if peers:
        lines.append(f"{'system':<7} {'SPRING ms':>9} {'FermiNet KFAC ms':>16} {'ratio':>6} {'Adam ms':>8} "
                     f"{'FermiNet Adam ms':>16} {'ratio':>6}")
        for r in peers:
            lines.append(f"{r.system:<7} {r.step_s * 1e3:>9.2f} {r.ferminet_kfac_step_s * 1e3:>16.2f} "
                         f"{r.ratio_ferminet:>6.2f} {r.step_adam_s * 1e3:>8.2f} {r.ferminet_adam_step_s * 1e3:>16.2f} "
                         f"{r.ratio_ferminet_adam:>6.2f}")
    pieces = [r for r in results if not math.isnan(r.mcmc_s)]
    if pieces:
        lines.append("step pieces, ms (ours: log|psi|, MCMC update, E_L forward, energy gradient, SPRING Jacobian, "
                     "Gram, solve; FermiNet: log|psi|, MCMC, E_L, loss gradient incl. E_L)")
        columns = {"log_psi_s": "log|psi|", "mcmc_s": "MCMC", "forward_s": "E_L", "gradient_s": "gradient",
                   "jacobian_s": "Jacobian", "gram_s": "Gram", "solve_s": "solve",
                   "ferminet_log_psi_s": "FN log|psi|", "ferminet_mcmc_s": "FN MCMC",
                   "ferminet_local_energy_s": "FN E_L", "ferminet_loss_grad_s": "FN loss grad"}
        lines.append(f"{'system':<7} " + " ".join(f"{label:>12}" for label in columns.values()))
        for r in pieces:
            lines.append(f"{r.system:<7} " + " ".join(f"{getattr(r, n) * 1e3:>12.2f}" for n in columns))
    big = [r.ratio for r in results if r.n_elec >= 10]
    if big:
        lines.append(f"forward/Hessian at >= 10 electrons: {', '.join(f'{x:.2f}' for x in big)} (goal <= 0.5)")
    return "\n".join(lines)
