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
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from basis.molecule import make_molecule
from dftjax.bench._timing import time_cold_warm

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

    @property
    def ratio(self) -> float:
        """forward / Hessian time per local-energy evaluation (< 1: the forward Laplacian is faster)."""
        return self.forward_s / self.hessian_s


def time_system(name: str, *, options=None, walkers: int = 64, repeats: int = 3, mcmc_steps: int = 10,
                dtype: str = "float64", seed: int = 0) -> VMCTiming:
    """Time the local energy (both Laplacians) and one optimisation step for ``SYSTEMS[name]``."""
    from qmc.ansatz import FermiNetOptions, make_ansatz
    from qmc.hamiltonian import make_local_energy
    from qmc.mcmc import initial_positions, make_metropolis
    from qmc.optimizers import make_optimizer
    from qmc.train import VMCState, make_vmc_step

    if name not in SYSTEMS:
        raise ValueError(f"unknown VMC benchmark system {name!r}: expected one of {sorted(SYSTEMS)}")
    molecule = make_molecule(SYSTEMS[name], unit="bohr")
    module = make_ansatz("ferminet", molecule, options or FermiNetOptions())
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
    return VMCTiming(
        system=name, n_elec=int(sum(molecule.nelec)), n_params=int(ravel_pytree(params)[0].size), walkers=walkers,
        dtype=dtype, hessian_s=times["hessian"][1], forward_s=times["forward"][1], step_s=times["step"][1],
        hessian_cold_s=times["hessian"][0], forward_cold_s=times["forward"][0], step_cold_s=times["step"][0],
    )


def run(systems=("He", "LiH", "N2", "CH4"), *, options=None, walkers: int = 64, repeats: int = 3,
        mcmc_steps: int = 10, dtype: str = "float64", progress: bool = True) -> list[VMCTiming]:
    """Time every system in ``systems`` (names of :data:`SYSTEMS`); progress lines on stderr."""
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown VMC benchmark system {unknown[0]!r}: expected one of {sorted(SYSTEMS)}")
    results = []
    for name in systems:
        row = time_system(name, options=options, walkers=walkers, repeats=repeats, mcmc_steps=mcmc_steps, dtype=dtype)
        results.append(row)
        if progress:
            print(f"[bench vmc] {name}: E_L hessian {row.hessian_s * 1e3:.1f} ms, forward {row.forward_s * 1e3:.1f} ms "
                  f"(ratio {row.ratio:.2f}); step {row.step_s * 1e3:.1f} ms", file=sys.stderr, flush=True)
    return results


def as_records(results: list[VMCTiming]) -> list[dict]:
    return [dict(dataclasses.asdict(r), ratio_forward_hessian=r.ratio) for r in results]


def format_table(results: list[VMCTiming]) -> str:
    header = (f"{'system':<7} {'n_e':>4} {'params':>8} {'walkers':>7} {'dtype':<8} {'E_L hess ms':>11} "
              f"{'E_L fwd ms':>10} {'fwd/hess':>8} {'step ms':>9} {'cold h/f/step s':>17}")
    lines = [header]
    for r in results:
        cold = f"{r.hessian_cold_s:.1f}/{r.forward_cold_s:.1f}/{r.step_cold_s:.1f}"
        lines.append(
            f"{r.system:<7} {r.n_elec:>4} {r.n_params:>8} {r.walkers:>7} {r.dtype:<8} {r.hessian_s * 1e3:>11.2f} "
            f"{r.forward_s * 1e3:>10.2f} {r.ratio:>8.2f} {r.step_s * 1e3:>9.2f} {cold:>17}")
    big = [r.ratio for r in results if r.n_elec >= 10]
    if big:
        lines.append(f"forward/Hessian at >= 10 electrons: {', '.join(f'{x:.2f}' for x in big)} (goal <= 0.5)")
    return "\n".join(lines)
