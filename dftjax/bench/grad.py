"""`dftjax bench grad`: forces (SCF + gradient) in dftjax against PySCF in the same process.

For each molecule (water and benzene, def2-SVP by default; PBE, grid level 3, conv_tol 1e-10)
reported: dftjax's cold time (first call: integrals, grid, tracing, compiling the SCF and its
gradient, the SCF from the minao guess and the gradient), its warm time (the same call again,
compiled: SCF from the guess plus gradient), PySCF's time for ``mf.kernel()`` plus
``nuc_grad_method().kernel()`` with ``grid_response = True``, the largest force difference, and
the compiled memory (XLA's temporary buffers, ``compiled.memory_analysis()``) of the energy
gradient for the implicit adjoint and for the unrolled one (``UNROLLED_STEPS`` iterations).
Benzene runs with density fitting (its exact ERI tensor alone is 1.35 GB).
"""

from __future__ import annotations

import dataclasses
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from basis.molecule import make_molecule
from dftjax.adjoint import make_scf_function
from dftjax.bench.molecules import MOLECULES
from dftjax.properties import force_function
from dftjax.system import SCFOptions

UNROLLED_STEPS = 30
DENSITY_FIT = {"water": False, "benzene": True}


@dataclasses.dataclass(frozen=True)
class GradTiming:
    molecule: str
    basis: str
    xc: str
    density_fit: bool
    nao: int
    max_force_difference: float
    cold_s: float
    warm_s: float
    pyscf_s: float
    memory_implicit_mb: float
    memory_unrolled_mb: float

    @property
    def ratio_warm(self) -> float:
        return self.warm_s / self.pyscf_s


def _pyscf(molecule, options: SCFOptions):
    from pyscf import dft

    mol = molecule.to_pyscf(basis=options.basis)
    mf = dft.RKS(mol, xc=options.xc)
    mf.grids.level = options.grid_level
    mf.conv_tol = options.conv_tol
    mf.verbose = 0
    if options.density_fit:
        mf = mf.density_fit()
    start = time.perf_counter()
    mf.kernel()
    gradient = mf.nuc_grad_method()
    gradient.grid_response = True
    gradient.verbose = 0
    forces = -gradient.kernel()
    return forces, time.perf_counter() - start, mol.nao_nr()


def _gradient_memory_mb(molecule, options, adjoint: str) -> float:
    scf = make_scf_function(molecule, options, adjoint=adjoint, n_steps=UNROLLED_STEPS)
    grad = jax.jit(jax.grad(lambda c: scf.energy(scf.inputs._replace(coords=c))))
    analysis = grad.lower(scf.inputs.coords).compile().memory_analysis()
    if analysis is None:
        return float("nan")
    return (analysis.temp_size_in_bytes + analysis.argument_size_in_bytes + analysis.output_size_in_bytes) / 2**20


def run(molecules=("water", "benzene"), xc: str = "pbe", basis: str = "def2-svp", memory: bool = True,
        progress: bool = True) -> list[GradTiming]:
    results = []
    for name in molecules:
        molecule = make_molecule(MOLECULES[name])
        options = SCFOptions(xc=xc, basis=basis, grid_level=3, conv_tol=1e-10,
                             density_fit=DENSITY_FIT.get(name, True))
        reference, pyscf_s, nao = _pyscf(molecule, options)
        coords = jnp.asarray(molecule.coords)
        start = time.perf_counter()
        energy_forces, dm0 = force_function(molecule, options)
        forces = jax.block_until_ready(energy_forces(coords, dm0))[1]
        cold = time.perf_counter() - start
        start = time.perf_counter()
        jax.block_until_ready(energy_forces(coords, dm0))
        warm = time.perf_counter() - start
        mem_implicit = _gradient_memory_mb(molecule, options, "implicit") if memory else float("nan")
        mem_unrolled = _gradient_memory_mb(molecule, options, "unrolled") if memory else float("nan")
        row = GradTiming(name, basis, xc, options.density_fit, nao,
                         float(np.abs(np.asarray(forces) - reference).max()), cold, warm, pyscf_s,
                         mem_implicit, mem_unrolled)
        results.append(row)
        if progress:
            print(f"[bench grad] {name}: |dF|max {row.max_force_difference:.1e} cold {cold:.1f}s warm {warm:.2f}s "
                  f"pyscf {pyscf_s:.2f}s", file=sys.stderr, flush=True)
    return results


def as_records(results: list[GradTiming]) -> list[dict]:
    return [dict(dataclasses.asdict(r), ratio_warm=r.ratio_warm) for r in results]


def format_table(results: list[GradTiming]) -> str:
    header = (f"{'molecule':<9} {'xc':<6} {'J/K':<5} {'nao':>4} {'|F - F_PySCF|':>13} {'cold s':>8} {'warm s':>8} "
              f"{'PySCF s':>8} {'warm/PySCF':>10} {'mem impl MB':>11} {'mem unr MB':>10}")
    lines = [header]
    for r in results:
        lines.append(f"{r.molecule:<9} {r.xc:<6} {'DF' if r.density_fit else 'exact':<5} {r.nao:>4} "
                     f"{r.max_force_difference:>13.2e} {r.cold_s:>8.2f} {r.warm_s:>8.2f} {r.pyscf_s:>8.2f} "
                     f"{r.ratio_warm:>10.2f} {r.memory_implicit_mb:>11.1f} {r.memory_unrolled_mb:>10.1f}")
    return "\n".join(lines)
