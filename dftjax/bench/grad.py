"""`dftjax bench grad`: forces (SCF + gradient) in dftjax against PySCF in the same process.

For each molecule (water and benzene, def2-SVP by default; PBE, grid level 3, conv_tol 1e-10) the
row reports:

* dftjax's cold time: the first call of :func:`dftjax.properties.force_function` (integrals,
  grid, tracing and compiling the SCF and its gradient, the SCF from the minao guess, the
  gradient);
* its warm time: the same compiled call again (SCF from the guess plus gradient), the median of
  ``repeats`` calls;
* PySCF's time for ``mf.kernel()`` plus ``nuc_grad_method().kernel()`` with
  ``grid_response = True`` (the same derivative), the median of ``repeats`` runs, and the
  largest force difference between the two;
* the memory XLA plans for the energy gradient (``compiled.memory_analysis()``: arguments,
  outputs and temporaries) with the implicit adjoint and with the unrolled one
  (``UNROLLED_STEPS`` iterations under ``jax.checkpoint``), which is what the choice of adjoint
  changes; NaN when not measured.

Benzene runs with density fitting (its exact ERI tensor alone is 1.35 GB). ``quick=True`` times
water in STO-3G at grid level 1 without memory analysis (under a minute on two idle cores).

Measured 2026-11-28, 2 CPU cores (JSON of ``dftjax bench grad --json``): water |dF| 1.3e-8 Ha/bohr,
cold 208.6 s, warm 1.89 s, PySCF 5.31 s (0.36x), memory 247 MB implicit / 421 MB unrolled; benzene
(DF) |dF| 3.5e-7, cold 152.7 s, warm 21.1 s, PySCF 40.0 s (0.53x), 5.8 GB implicit / 8.0 GB unrolled.

>>> rows = run(quick=True, progress=False)
>>> print(format_table(rows))  # doctest: +SKIP
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
from dftjax.bench._timing import time_reference
from dftjax.bench.molecules import MOLECULES
from dftjax.compilation import CompilationCounter
from dftjax.properties import force_function
from dftjax.system import SCFOptions

__all__ = ["GradTiming", "run", "as_records", "format_table", "UNROLLED_STEPS"]

UNROLLED_STEPS = 30
DENSITY_FIT = {"water": False, "benzene": True}


@dataclasses.dataclass(frozen=True)
class GradTiming:
    """One row of the benchmark (seconds, Ha/bohr, MiB)."""

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
    compilations: int = 0  # XLA compilations of the cold call (the warm calls compile nothing)
    size_class: dict | None = None

    @property
    def ratio_warm(self) -> float:
        """dftjax warm (SCF + forces) over PySCF's SCF + analytic gradient time."""
        return self.warm_s / self.pyscf_s


def _pyscf_forces(molecule, options: SCFOptions):
    """PySCF's SCF + analytic gradient (grid response included): forces (n_atoms, 3), nao."""
    from pyscf import dft

    mol = molecule.to_pyscf(basis=options.basis)
    mf = dft.RKS(mol, xc=options.xc)
    mf.grids.level = options.grid_level
    mf.conv_tol = options.conv_tol
    mf.verbose = 0
    if options.density_fit:
        mf = mf.density_fit()
    mf.kernel()
    gradient = mf.nuc_grad_method()
    gradient.grid_response = True
    gradient.verbose = 0
    return -gradient.kernel(), mol.nao_nr()


def _gradient_memory_mb(molecule, options: SCFOptions, adjoint: str) -> float:
    """MiB XLA allocates for ``jax.grad`` of the energy (arguments + outputs + temporaries)."""
    scf = make_scf_function(molecule, options, adjoint=adjoint, n_steps=UNROLLED_STEPS)
    grad = jax.jit(jax.grad(lambda c: scf.energy(scf.inputs._replace(coords=c))))
    analysis = grad.lower(scf.inputs.coords).compile().memory_analysis()
    if analysis is None:  # backends without the analysis
        return float("nan")
    return (analysis.temp_size_in_bytes + analysis.argument_size_in_bytes + analysis.output_size_in_bytes) / 2**20


def run(*, quick: bool = False, progress: bool = True, molecules: tuple[str, ...] | None = None,
        xc: str = "pbe", basis: str | None = None, grid_level: int | None = None, repeats: int | None = None,
        memory: bool | None = None) -> list[GradTiming]:
    """Time forces in dftjax and PySCF for each molecule (see the module docstring).

    Args:
      quick: water only, STO-3G, grid level 1, one warm repeat, no memory analysis (each
        overridable by the arguments below).
      progress: one line per molecule on stderr.
      molecules: names in :data:`dftjax.bench.molecules.MOLECULES` (default water and benzene).
      xc: functional (PySCF name).
      basis: orbital basis (default def2-SVP; quick STO-3G).
      grid_level: PySCF grid level (default 3; quick 1).
      repeats: warm timings are the median of this many calls (default 3; quick 1).
      memory: compile both adjoints' gradients for their memory analysis (default: not quick).

    Raises:
      ValueError: unknown molecule names or a non-positive ``repeats`` (before any work).
    """
    molecules = tuple(molecules) if molecules else (("water",) if quick else ("water", "benzene"))
    unknown = [name for name in molecules if name not in MOLECULES]
    if unknown:
        raise ValueError(f"unknown benchmark molecules {unknown}: expected some of {sorted(MOLECULES)}")
    basis = basis or ("sto-3g" if quick else "def2-svp")
    grid_level = (1 if quick else 3) if grid_level is None else grid_level
    repeats = (1 if quick else 3) if repeats is None else repeats
    if repeats < 1:
        raise ValueError(f"repeats {repeats} must be at least 1")
    memory = (not quick) if memory is None else memory
    results = []
    for name in molecules:
        molecule = make_molecule(MOLECULES[name])
        options = SCFOptions(xc=xc, basis=basis, grid_level=grid_level, conv_tol=1e-10,
                             density_fit=DENSITY_FIT.get(name, True))
        reference, nao = _pyscf_forces(molecule, options)
        pyscf_s = time_reference(lambda: _pyscf_forces(molecule, options), repeats)
        coords = jnp.asarray(molecule.coords)
        start = time.perf_counter()
        with CompilationCounter() as counter:
            energy_forces, dm0 = force_function(molecule, options)
            forces = jax.block_until_ready(energy_forces(coords, dm0))[1]
        cold = time.perf_counter() - start
        warm = time_reference(lambda: jax.block_until_ready(energy_forces(coords, dm0)), repeats)
        mem_implicit = _gradient_memory_mb(molecule, options, "implicit") if memory else float("nan")
        mem_unrolled = _gradient_memory_mb(molecule, options, "unrolled") if memory else float("nan")
        row = GradTiming(name, basis, xc, options.density_fit, nao,
                         float(np.abs(np.asarray(forces) - reference).max()), cold, warm, pyscf_s,
                         mem_implicit, mem_unrolled, counter.compilations, getattr(energy_forces, "size_class", None))
        results.append(row)
        if progress:
            print(f"[bench grad] {name}/{basis}: |dF|max {row.max_force_difference:.1e} Ha/bohr, cold {cold:.1f} s, "
                  f"warm {warm:.2f} s, PySCF {pyscf_s:.2f} s (warm/PySCF {row.ratio_warm:.2f})",
                  file=sys.stderr, flush=True)
    return results


def as_records(results: list[GradTiming]) -> list[dict]:
    """One JSON-ready dict per row (NaN memory when not measured)."""
    return [dict(dataclasses.asdict(r), ratio_warm=r.ratio_warm) for r in results]


def format_table(results: list[GradTiming]) -> str:
    """A fixed-width table of the rows."""
    header = (f"{'molecule':<9} {'basis':<9} {'xc':<6} {'J/K':<5} {'nao':>4} {'|F - F_PySCF|':>13} {'cold s':>8} "
              f"{'warm s':>8} {'PySCF s':>8} {'warm/PySCF':>10} {'mem impl MB':>11} {'mem unr MB':>10} {'compil.':>7}")
    lines = [header]
    for r in results:
        lines.append(f"{r.molecule:<9} {r.basis:<9} {r.xc:<6} {'DF' if r.density_fit else 'exact':<5} {r.nao:>4} "
                     f"{r.max_force_difference:>13.2e} {r.cold_s:>8.2f} {r.warm_s:>8.2f} {r.pyscf_s:>8.2f} "
                     f"{r.ratio_warm:>10.2f} {r.memory_implicit_mb:>11.1f} {r.memory_unrolled_mb:>10.1f} {r.compilations:>7}")
    return "\n".join(lines)
