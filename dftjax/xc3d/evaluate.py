"""Held-out evaluation of XC functionals against the same-basis CCSD(T)/CCSD reference.

For every functional (the neural one and LDA, PBE, B3LYP, r2SCAN, all run by dftjax's
:func:`~dftjax.scf.run_scf`) and every held-out molecule and the atoms it needs:

* the atomization energy ``A = sum_atoms E_a - E_mol`` (no zero-point energy) and its error
  against CCSD(T) in the same basis, summarised as the mean absolute error (kcal/mol);
* the density error ``int |rho_DFT - rho_CCSD| dr`` (electrons) of the total density, evaluated
  from the AO density matrices on PySCF's grid (level 3), and its mean over molecules (free
  open-shell p atoms and the degenerate pi radicals CH, OH, NO are left out, see
  :data:`~dftjax.xc3d.data.ORIENTATION_DEGENERATE`);
* whether the SCF converged (open-shell systems run unrestricted).

Results are cached per (functional, system) in a JSON file written atomically after each SCF, so
an interrupted evaluation resumes where it stopped; the SCF density matrices go to a float32
sidecar (``<cache>.dm.npz``), so that when the reference densities change (``Reference.density``,
e.g. unrelaxed -> relaxed CCSD) only the density errors are recomputed, not the SCFs.
"""
from __future__ import annotations

import json
import os
import sys
import time
import warnings
from typing import Callable, Iterable

import numpy as np

from dftjax import atomic
from dftjax.xc3d.data import ORIENTATION_DEGENERATE, Reference, atom_key

KCAL_PER_HARTREE = 627.509474
BASELINES = ("lda,vwn", "pbe", "b3lyp", "r2scan")
DENSITY_ERROR_GRID_LEVEL = 3


def _progress(message: str) -> None:
    print(f"[xc3d eval] {message}", file=sys.stderr, flush=True)


def density_error(reference: Reference, dm: np.ndarray, basis: str,
                  level: int = DENSITY_ERROR_GRID_LEVEL) -> float:
    """``int |rho - rho_ref| dr`` (electrons) of total densities from (2, nao, nao) AO matrices."""
    from pyscf import dft, gto

    mol = gto.M(atom=reference.atom, basis=basis, spin=reference.spin, charge=reference.charge, verbose=0)
    grids = dft.gen_grid.Grids(mol)
    grids.level = level
    grids.build()
    delta = (dm[0] + dm[1]) - (reference.dm[0] + reference.dm[1])
    total = 0.0
    for start in range(0, len(grids.weights), 8192):
        ao = dft.numint.eval_ao(mol, grids.coords[start:start + 8192])
        rho = np.einsum("gi,ij,gj->g", ao, delta, ao)
        total += float(np.sum(grids.weights[start:start + 8192] * np.abs(rho)))
    return total


def _pyscf_scf(xc, reference: Reference, basis: str, grid_level: int) -> dict:
    """PySCF's SCF driver with the dftjax functional ``xc`` (:func:`dftjax.pyscf_plugin.apply`).

    Every pointwise functional value and potential comes from dftjax; PySCF supplies the SCF loop
    (DIIS, then second-order Newton if DIIS fails), J/K and its own integration grid. The plugin
    evaluates the functional in fixed-size jitted chunks, so one compilation per functional (and
    spin case) serves every molecule, unlike ``dftjax scf``, which compiles per molecule.
    """
    from pyscf import dft, gto

    from dftjax import pyscf_plugin

    mol = gto.M(atom=reference.atom, basis=basis, spin=reference.spin, charge=reference.charge, verbose=0)
    mf = dft.UKS(mol) if reference.spin else dft.RKS(mol)
    pyscf_plugin.apply(mf, xc)
    mf.grids.level = grid_level
    mf.conv_tol = 1e-9
    mf.max_cycle = 100
    mf.kernel()
    attempts = ["diis"]
    if not mf.converged:
        mf = mf.newton()
        mf.kernel(mf.make_rdm1())
        attempts.append("newton")
    dm = np.asarray(mf.make_rdm1())
    if dm.ndim == 2:
        dm = np.stack([0.5 * dm, 0.5 * dm])
    s2 = float(mf.spin_square()[0]) if reference.spin else 0.0
    return {"energy": float(mf.e_tot), "converged": bool(mf.converged), "iterations": None,
            "attempts": attempts, "s2": s2, "dm": dm}


def run_functional(xc, references: dict[str, Reference], basis: str, *, grid_level: int = 1,
                   params=None, cache_path: str | None = None, label: str | None = None,
                   driver: str = "dftjax", progress: Callable[[str], None] = _progress) -> dict:
    """SCF energies, convergence and density errors of ``xc`` for every reference system.

    Args:
        xc: functional name for :func:`dftjax.scf.run_scf` (``"dftjax:nn-mgga"`` too).
        references: name -> :class:`Reference`.
        params: functional parameters (e.g. a trained model's) instead of the registered ones.
        driver: ``"dftjax"`` (:func:`dftjax.scf.run_scf`, dftjax's grid of ``grid_level``) or
            ``"pyscf"`` (PySCF's SCF and grid of ``grid_level`` with the dftjax functional,
            :func:`_pyscf_scf`; ``xc`` may then also be a Functional object).
        cache_path: JSON file of finished results (read, extended, written atomically).
        label: the key of this functional in the cache (default ``xc``).
    Returns:
        name -> {"energy", "converged", "iterations", "attempts", "density_error",
        "density_reference", "wall_time_s"}.
    """
    from dftjax.scf import SCFOptions, run_scf

    label = label or xc
    cache = {}
    if cache_path and os.path.exists(cache_path):
        with open(cache_path) as handle:
            cache = json.load(handle)
    if driver not in ("dftjax", "pyscf"):
        raise ValueError(f"driver must be 'dftjax' or 'pyscf'; got {driver!r}")
    if (cache.get("_basis", basis) != basis or cache.get("_grid_level", grid_level) != grid_level
            or cache.get("_driver", "dftjax" if cache else driver) != driver):
        raise ValueError(f"{cache_path} holds results for another basis, grid level or SCF driver")
    cache.update({"_basis": basis, "_grid_level": grid_level, "_driver": driver})
    results = cache.setdefault(label, {})
    sidecar = None if cache_path is None else cache_path.removesuffix(".json") + ".dm.npz"
    matrices = {}
    if sidecar and os.path.exists(sidecar):
        with np.load(sidecar) as stored:
            matrices = {k: stored[k] for k in stored.files}
    for name, reference in references.items():
        cached = results.get(name)
        if cached is not None and cached.get("density_reference") == reference.density:
            continue
        if cached is not None and name in matrices:  # new reference densities, same SCF
            cached["density_error"] = density_error(reference, matrices[name].astype(np.float64), basis)
            cached["density_reference"] = reference.density
            progress(f"{label} {name}: int|drho| = {cached['density_error']:.4f} against the {reference.density} reference")
            if cache_path:
                atomic.write_json(cache_path, cache, indent=1, sort_keys=True)
            continue
        start = time.perf_counter()
        if driver == "pyscf":
            out = _pyscf_scf(xc, reference, basis, grid_level)
        else:
            options = SCFOptions(xc=xc, basis=basis, unrestricted=reference.spin != 0, grid_level=grid_level,
                                 max_cycle=100, conv_tol=1e-9)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = run_scf(reference.molecule(), options, params=params)
            out = {"energy": result.energy, "converged": bool(result.converged), "iterations": result.iterations,
                   "attempts": list(result.attempts), "s2": result.s2, "dm": np.asarray(result.dm)}
        dm = out.pop("dm")
        results[name] = {**out, "density_error": density_error(reference, dm, basis),
                         "density_reference": reference.density,
                         "wall_time_s": round(time.perf_counter() - start, 2)}
        progress(f"{label} {name}: E = {out['energy']:.8f} (ref {reference.energy:.8f}), converged="
                 f"{out['converged']}, int|drho| = {results[name]['density_error']:.4f}")
        if cache_path:
            matrices[name] = dm.astype(np.float32)
            atomic.savez(sidecar, compressed=True, **matrices)
            atomic.write_json(cache_path, cache, indent=1, sort_keys=True)
    return {name: results[name] for name in references}


def summarise(results: dict, references: dict[str, Reference], molecules: Iterable[str],
              selection: Iterable[str] = ()) -> dict:
    """Atomization-energy errors (kcal/mol) and density errors over ``molecules`` of one functional.

    ``selection``: molecules used to select the trained model (validation set); the AE MAE is also
    reported without them (``atomization_mae_kcal_unseen``), the strictly held-out number.
    """
    selection = set(selection)
    rows = []
    for name in molecules:
        ref = references[name]
        energy = results[name]["energy"]
        atoms = sum(c * results[atom_key(s)]["energy"] for s, c in ref.elements.items())
        ref_atoms = sum(c * references[atom_key(s)].energy for s, c in ref.elements.items())
        ae = (atoms - energy) * KCAL_PER_HARTREE
        ae_ref = (ref_atoms - ref.energy) * KCAL_PER_HARTREE
        rows.append({"molecule": name, "atomization_kcal": ae, "reference_kcal": ae_ref,
                     "error_kcal": ae - ae_ref, "total_energy_error_mha": (energy - ref.energy) * 1e3,
                     "density_error": results[name]["density_error"],
                     "converged": results[name]["converged"]})
    errors = np.array([r["error_kcal"] for r in rows])
    density_rows = [r for r in rows if r["molecule"] not in ORIENTATION_DEGENERATE]
    systems = set(molecules) | {atom_key(s) for m in molecules for s in references[m].elements}
    return {
        "atomization_mae_kcal": float(np.mean(np.abs(errors))) if len(rows) else float("nan"),
        "atomization_max_kcal": float(np.max(np.abs(errors))) if len(rows) else float("nan"),
        "atomization_mae_kcal_unseen": float(np.mean([abs(r["error_kcal"]) for r in rows
                                                      if r["molecule"] not in selection] or [float("nan")])),
        "selection_molecules": sorted(selection & {r["molecule"] for r in rows}),
        "density_error_mean": (float(np.mean([r["density_error"] for r in density_rows])) if density_rows
                               else float("nan")),
        "density_error_molecules": [r["molecule"] for r in density_rows],
        "total_energy_mae_mha": float(np.mean([abs(r["total_energy_error_mha"]) for r in rows])) if rows else float("nan"),
        "all_converged": all(results[n]["converged"] for n in systems),
        "not_converged": sorted(n for n in systems if not results[n]["converged"]),
        "molecules": rows,
    }


def format_table(summaries: dict[str, dict]) -> str:
    """Human-readable comparison of :func:`summarise` outputs keyed by functional label."""
    labels = list(summaries)
    lines = [f"{'functional':<16} {'AE MAE':>10} {'AE MAE':>10} {'AE max':>10} {'mean int|drho|':>15} {'converged':>10}",
             f"{'':<16} {'kcal/mol':>10} {'unseen':>10} {'kcal/mol':>10} {'electrons':>15}"]
    for label in labels:
        s = summaries[label]
        lines.append(f"{label:<16} {s['atomization_mae_kcal']:10.2f} {s['atomization_mae_kcal_unseen']:10.2f} "
                     f"{s['atomization_max_kcal']:10.2f} {s['density_error_mean']:15.4f} {str(s['all_converged']):>10}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python -m dftjax.xc3d.evaluate``: the held-out comparison table (or --json)."""
    import argparse

    from dftjax.xc3d.data import DATA_DIR, HELD_OUT, load_reference

    parser = argparse.ArgumentParser(prog="python -m dftjax.xc3d.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--xc", default="dftjax:nn-mgga," + ",".join(f.replace(",", "_") for f in BASELINES),
                        help="functionals, comma-separated ('lda_vwn' stands for 'lda,vwn')")
    parser.add_argument("--molecules", default=",".join(s.name for s in HELD_OUT) if HELD_OUT else "")
    parser.add_argument("--data-dir", default=DATA_DIR)
    parser.add_argument("--grid-level", type=int, default=1)
    parser.add_argument("--driver", choices=["dftjax", "pyscf"], default="dftjax",
                        help="SCF driver: dftjax's run_scf, or PySCF's with the dftjax functional (plugin)")
    parser.add_argument("--cache", default=None, help="JSON cache of finished SCFs (resume)")
    parser.add_argument("--selection", default="N2,CO",
                        help="held-out molecules used for model selection (validation) of the trained functional; "
                             "the table also gives the AE MAE without them")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import dftjax  # noqa: F401  (float64; the persistent compilation cache serves reruns)

    try:
        molecules = [m for m in args.molecules.split(",") if m]
        refs, basis = load_reference(args.data_dir, molecules)
        atoms = sorted({atom_key(s) for m in molecules for s in refs[m].elements})
        refs.update(load_reference(args.data_dir, atoms)[0])
        summaries = {}
        for label in [x for x in args.xc.split(",") if x]:
            xc = label.replace("_", ",")
            suffix = "" if args.driver == "dftjax" else f".{args.driver}"
            cache = None if args.cache is None else f"{args.cache}.{label.replace(':', '_')}{suffix}.json"
            results = run_functional(xc, refs, basis, grid_level=args.grid_level, cache_path=cache, label=label,
                                     driver=args.driver)
            summaries[label] = summarise(results, refs, molecules, [m for m in args.selection.split(",") if m])
    except ValueError as err:
        print(f"xc3d evaluate: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"basis": basis, "grid_level": args.grid_level, "driver": args.driver,
                          "summaries": summaries}))
    else:
        print(format_table(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
