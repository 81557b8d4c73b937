"""`dftjax bench compile`: a research loop over many molecules, from an empty and a warm compilation cache.

What a script that computes energies and forces of a data set pays: the 12 small molecules of
issue 19 (H2O ... H2O2, PBE/def2-SVP), one after the other in *one* process, dftjax
(``run_scf`` + ``properties.forces`` from its density) against PySCF (``RKS.kernel`` +
``nuc_grad_method().kernel()`` with ``grid_response = True``) in the same process. The loop runs
in fresh subprocesses sharing one new cache directory: ``cold`` starts from an empty persistent
compilation cache, ``warm`` finds the first run's executables (and size classes) on disk. Both
passes run twice: as written (each molecule in its own size class, or in a known larger one that
:mod:`dftjax.size_registry` finds cheap enough), and with one class reserved for all twelve first
(:func:`dftjax.size_registry.reserve`). Reported per pass: totals of both codes, their ratio, the
XLA compilations dftjax did (energy and force calls separately) and the number of classes used.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

# Geometries (angstrom): experimental-like structures, rounded; any reasonable geometry serves
# the timing, and both codes compute the same one.
LOOP_MOLECULES = {
    "H2O": "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692",
    "NH3": "N 0 0 0.1; H 0 0.94 -0.27; H 0.81 -0.47 -0.27; H -0.81 -0.47 -0.27",
    "CH4": "C 0 0 0; H 0.629 0.629 0.629; H -0.629 -0.629 0.629; H -0.629 0.629 -0.629; H 0.629 -0.629 -0.629",
    "HF": "F 0 0 0; H 0 0 0.917",
    "CO": "C 0 0 0; O 0 0 1.128",
    "N2": "N 0 0 0; N 0 0 1.098",
    "C2H2": "C 0 0 0.601; C 0 0 -0.601; H 0 0 1.663; H 0 0 -1.663",
    "HCN": "H 0 0 -1.064; C 0 0 0; N 0 0 1.156",
    "H2CO": "C 0 0 0; O 0 0 1.205; H 0 0.943 -0.587; H 0 -0.943 -0.587",
    "CH3OH": "C -0.047 0.664 0; O -0.047 -0.758 0; H -1.086 0.969 0; H 0.434 1.080 0.891; "
             "H 0.434 1.080 -0.891; H 0.865 -1.086 0",
    "C2H4": "C 0 0 0.667; C 0 0 -0.667; H 0 0.923 1.232; H 0 -0.923 1.232; H 0 0.923 -1.232; H 0 -0.923 -1.232",
    "H2O2": "O 0 0.7 -0.05; O 0 -0.7 -0.05; H 0.8 0.9 0.4; H -0.8 -0.9 0.4",
}
QUICK = ("H2O", "HF")  # --quick: energies only


@dataclasses.dataclass(frozen=True)
class LoopPass:
    """One pass of the loop in a fresh process (``cache``: ``"cold"`` empty, ``"warm"`` filled)."""

    cache: str
    reserved: bool
    molecules: tuple[str, ...]
    forces: bool
    dftjax_s: float
    pyscf_s: float
    energy_compilations: int
    force_compilations: int
    cache_hits: int
    size_classes: int
    max_energy_difference: float
    max_force_difference: float

    @property
    def ratio(self) -> float:
        return self.dftjax_s / self.pyscf_s


def _loop(names, xc: str, basis: str, forces: bool, reserved: bool = False) -> dict:
    """The loop itself (runs in the worker process); returns totals as a dict.

    ``reserved``: the script first reserves one size class for all its molecules
    (:func:`dftjax.size_registry.reserve`); otherwise each molecule runs in its own class or in a
    known larger one that the registry finds cheap enough.
    """
    import dftjax  # noqa: F401  (float64, cache from DFTJAX_CACHE_DIR)
    from pyscf import dft

    from basis.molecule import make_molecule
    from dftjax.compilation import CompilationCounter
    from dftjax.properties import forces as dftjax_forces
    from dftjax.scf import SCFOptions, run_scf

    totals = dict(dftjax_s=0.0, pyscf_s=0.0, energy_compilations=0, force_compilations=0, cache_hits=0,
                  max_energy_difference=0.0, max_force_difference=0.0)
    classes = set()
    options = SCFOptions(xc=xc, basis=basis)
    if reserved:
        from dftjax.size_registry import reserve

        reserve([make_molecule(LOOP_MOLECULES[name]) for name in names], options)
    for name in names:
        molecule = make_molecule(LOOP_MOLECULES[name])
        start = time.perf_counter()
        with CompilationCounter() as energy_counter:
            result = run_scf(molecule, options)
        with CompilationCounter() as force_counter:
            f = dftjax_forces(molecule, options, result=result) if forces else None
        dftjax_s = time.perf_counter() - start
        start = time.perf_counter()
        mf = dft.RKS(molecule.to_pyscf(basis=basis), xc=xc)
        mf.verbose = 0
        mf.conv_tol = options.conv_tol
        energy = mf.kernel()
        if forces:
            gradient = mf.nuc_grad_method()
            gradient.grid_response = True
            gradient.verbose = 0
            reference = -gradient.kernel()
        pyscf_s = time.perf_counter() - start
        totals["dftjax_s"] += dftjax_s
        totals["pyscf_s"] += pyscf_s
        totals["energy_compilations"] += energy_counter.compilations
        totals["force_compilations"] += force_counter.compilations
        totals["cache_hits"] += energy_counter.cache_hits + force_counter.cache_hits
        totals["max_energy_difference"] = max(totals["max_energy_difference"], abs(result.energy - energy))
        if forces:
            totals["max_force_difference"] = max(totals["max_force_difference"], float(np.abs(f - reference).max()))
        classes.add(json.dumps(result.size_class, sort_keys=True))
        print(f"[bench compile] {name}: dftjax {dftjax_s:.1f} s ({energy_counter.compilations} + "
              f"{force_counter.compilations} compilations), PySCF {pyscf_s:.1f} s", file=sys.stderr, flush=True)
    totals["size_classes"] = len(classes)
    return totals


def _pass(cache: str, directory: str, names, xc: str, basis: str, forces: bool, reserved: bool) -> LoopPass:
    environment = dict(os.environ, DFTJAX_CACHE_DIR=directory)
    command = [sys.executable, "-m", "dftjax.bench.compile", "--worker", ",".join(names), xc, basis, str(int(forces)),
               str(int(reserved))]
    # the worker's progress lines (one per molecule) go straight to our stderr
    completed = subprocess.run(command, env=environment, stdout=subprocess.PIPE, text=True, check=False)
    if completed.returncode:
        raise RuntimeError(f"bench compile worker failed ({cache} cache, exit status {completed.returncode}); "
                           "its error is above")
    totals = json.loads(completed.stdout.strip().splitlines()[-1])
    return LoopPass(cache=cache, reserved=reserved, molecules=tuple(names), forces=forces, **totals)


def run(molecules=tuple(LOOP_MOLECULES), xc: str = "pbe", basis: str = "def2-svp", forces: bool = True,
        progress: bool = True) -> list[LoopPass]:
    """The loop from an empty cache, then again with the cache the first pass filled; then both again
    (in a new cache) with one size class reserved for all the molecules first."""
    unknown = [m for m in molecules if m not in LOOP_MOLECULES]
    if unknown:
        raise ValueError(f"unknown loop molecule {unknown[0]!r}: expected some of {list(LOOP_MOLECULES)}")
    passes = []
    for reserved in (False, True):
        with tempfile.TemporaryDirectory(prefix="dftjax-bench-cache-") as directory:
            for cache in ("cold", "warm"):
                if progress:
                    print(f"[bench compile] {len(molecules)} molecules, {cache} cache"
                          f"{', one reserved class' if reserved else ''}", file=sys.stderr, flush=True)
                passes.append(_pass(cache, directory, molecules, xc, basis, forces, reserved))
    return passes


def as_records(passes: list[LoopPass]) -> list[dict]:
    return [dict(dataclasses.asdict(p), ratio=p.ratio) for p in passes]


def format_table(passes: list[LoopPass]) -> str:
    lines = [f"{'cache':<6} {'reserved':>8} {'molecules':>9} {'forces':>6} {'dftjax s':>9} {'PySCF s':>8} {'ratio':>6} "
             f"{'compilations E/F':>17} {'cache hits':>10} {'classes':>7} {'max |dE| Ha':>11} {'max |dF|':>9}"]
    for p in passes:
        lines.append(f"{p.cache:<6} {str(p.reserved):>8} {len(p.molecules):>9} {str(p.forces):>6} {p.dftjax_s:>9.1f} {p.pyscf_s:>8.1f} "
                     f"{p.ratio:>6.2f} {f'{p.energy_compilations}/{p.force_compilations}':>17} {p.cache_hits:>10} "
                     f"{p.size_classes:>7} {p.max_energy_difference:>11.1e} {p.max_force_difference:>9.1e}")
    lines.append("goals (issue 19): cold <= 1.0x PySCF, warm <= 0.3x")
    return "\n".join(lines)


if __name__ == "__main__" and len(sys.argv) == 7 and sys.argv[1] == "--worker":
    _, _, names, xc, basis, forces, reserved = sys.argv
    print(json.dumps(_loop(names.split(","), xc, basis, bool(int(forces)), bool(int(reserved)))))
