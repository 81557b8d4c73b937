"""`dftjax bench scf`: whole Kohn-Sham calculations, dftjax against PySCF in the same process.

For each (molecule, functional, exact or density-fitted J/K) the same restricted calculation
(def2-SVP by default, grid level 3, conv_tol 1e-9) runs in dftjax and in PySCF. Reported: both
energies and their difference (dftjax on its own grid, which matches PySCF's construction), the
dftjax cold time (first call in the process: integrals, grid, tracing, compilation, SCF), the warm
time (a second full ``run_scf`` with everything compiled: integrals, grid, AO values and the SCF
loop are recomputed, only compilation is reused), PySCF's time for ``mf.kernel()`` (from
building its grids to convergence), and the ratios warm / PySCF and cold / PySCF. Both dftjax
times are split into setup (basis, integrals, grid, AO values, initial guess) and solve (the SCF
loop), each including its compilation when cold. A persistent compilation cache (``DFTJAX_CACHE_DIR``,
on by default in the CLI) turns "cold" into "first call with cached executables": set
``DFTJAX_CACHE_DIR=`` for a true cold start.

Exact four-centre J/K is skipped above ``MAX_NAO_EXACT`` basis functions (the ERI tensor is
stored in memory, nao^4 x 8 bytes).
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np

from basis.molecule import make_molecule
from dftjax.bench.molecules import MOLECULES
from dftjax.scf import SCFOptions, run_scf

MAX_NAO_EXACT = 120
FUNCTIONALS = ("pbe", "b3lyp")


@dataclasses.dataclass(frozen=True)
class SCFTiming:
    molecule: str
    basis: str
    xc: str
    density_fit: bool
    nao: int
    energy: float
    energy_pyscf: float
    iterations: int
    iterations_pyscf: int
    cold_s: float
    warm_s: float
    pyscf_s: float
    # where the time goes (SCFResult.timings): setup = basis, integrals, grid, AO values, guess
    # (+ their compilation when cold); solve = the SCF loop (+ its compilation when cold)
    cold_setup_s: float
    cold_solve_s: float
    warm_setup_s: float
    warm_solve_s: float
    # XLA compilations of the cold and the warm run, and the size class both ran in
    compilations: int = 0
    warm_compilations: int = 0
    size_class: dict | None = None

    @property
    def ratio_warm(self) -> float:
        return self.warm_s / self.pyscf_s

    @property
    def ratio_cold(self) -> float:
        return self.cold_s / self.pyscf_s


def _pyscf(molecule, options: SCFOptions):
    from pyscf import dft

    mol = molecule.to_pyscf(basis=options.basis)
    mf = dft.RKS(mol)
    mf.xc = options.xc
    mf.grids.level = options.grid_level
    mf.conv_tol = options.conv_tol
    mf.verbose = 0
    if options.density_fit:
        mf = mf.density_fit()
    start = time.perf_counter()
    energy = mf.kernel()
    return energy, mf.cycles, time.perf_counter() - start, mol.nao_nr()


def run(molecules=("water", "benzene", "hexane"), functionals=FUNCTIONALS, density_fit=(False, True),
        basis: str = "def2-svp", progress=True) -> list[SCFTiming]:
    """Time each combination; progress lines on stderr."""
    results = []
    for name in molecules:
        molecule = make_molecule(MOLECULES[name])
        for xc in functionals:
            for df in density_fit:
                options = SCFOptions(xc=xc, basis=basis, density_fit=df, conv_tol=1e-9)
                energy_ref, cycles_ref, pyscf_s, nao = _pyscf(molecule, options)
                if not df and nao > MAX_NAO_EXACT:
                    if progress:
                        print(f"[bench scf] {name} {xc} exact J/K skipped: {nao} AOs > {MAX_NAO_EXACT}",
                              file=sys.stderr, flush=True)
                    continue
                cold = run_scf(molecule, options)
                warm = run_scf(molecule, options)
                row = SCFTiming(name, basis, xc, df, nao, warm.energy, float(energy_ref), warm.iterations,
                                int(cycles_ref), cold.wall_time_s, warm.wall_time_s, pyscf_s,
                                cold.timings["setup"], cold.timings["solve"], warm.timings["setup"],
                                warm.timings["solve"], cold.compilations["compilations"],
                                warm.compilations["compilations"], cold.size_class)
                results.append(row)
                if progress:
                    print(f"[bench scf] {name} {xc} df={df}: dE={row.energy - row.energy_pyscf:.1e} "
                          f"cold {row.cold_s:.1f}s warm {row.warm_s:.2f}s pyscf {row.pyscf_s:.2f}s",
                          file=sys.stderr, flush=True)
    return results


def as_records(results: list[SCFTiming]) -> list[dict]:
    return [dict(dataclasses.asdict(r), ratio_warm=r.ratio_warm, ratio_cold=r.ratio_cold,
                 energy_difference=r.energy - r.energy_pyscf) for r in results]


def format_table(results: list[SCFTiming]) -> str:
    header = (f"{'molecule':<9} {'xc':<6} {'J/K':<5} {'nao':>4} {'E dftjax (Ha)':>16} {'E - E_PySCF':>12} "
              f"{'iter':>9} {'cold s':>8} {'warm s':>8} {'PySCF s':>8} {'warm/PySCF':>10} {'cold/PySCF':>10} "
              f"{'cold set/scf':>13} {'warm set/scf':>13} {'compil.':>7}")
    lines = [header]
    for r in results:
        lines.append(
            f"{r.molecule:<9} {r.xc:<6} {'DF' if r.density_fit else 'exact':<5} {r.nao:>4} {r.energy:>16.9f} "
            f"{r.energy - r.energy_pyscf:>12.2e} {f'{r.iterations}/{r.iterations_pyscf}':>9} {r.cold_s:>8.2f} "
            f"{r.warm_s:>8.2f} {r.pyscf_s:>8.2f} {r.ratio_warm:>10.2f} {r.ratio_cold:>10.2f} "
            f"{f'{r.cold_setup_s:.1f}/{r.cold_solve_s:.1f}':>13} {f'{r.warm_setup_s:.2f}/{r.warm_solve_s:.2f}':>13} "
            f"{r.compilations:>7}")
    if results:
        lines.append(f"warm/PySCF: median {np.median([r.ratio_warm for r in results]):.2f} "
                     f"(goal <= 0.5); cold/PySCF: median {np.median([r.ratio_cold for r in results]):.2f} (goal <= 2)")
    return "\n".join(lines)
