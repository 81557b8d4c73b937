"""Command-line pieces for forces and geometry optimisation, for :mod:`dftjax.cli` to wire in.

* :func:`add_forces_argument` and :func:`add_forces_to_scf_result`: ``dftjax scf ... --forces``
  adds ``forces`` to the result, one ``[fx, fy, fz]`` per atom in Ha/bohr, input atom order.
* :func:`register`: the ``dftjax opt --atom ... --xc ... [--json]`` subcommand (SciPy BFGS to
  max |F| <= 4.5e-4 Ha/bohr, :mod:`dftjax.opt`).

Wiring in ``dftjax/cli.py`` (the lead's file)::

    from dftjax import properties_cli
    ...  # in build_parser, after the scf parser:
    properties_cli.add_forces_argument(scf)
    properties_cli.register(sub)
    ...  # in cmd_scf, before returning ``payload``:
    if args.forces:
        properties_cli.add_forces_to_scf_result(payload, molecule, options, result)
    ...  # in main: command "opt" prints ``result["table"]`` (the generic branch) without --json
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

BOHR_IN_ANGSTROM = 0.52917721092  # PySCF's param.BOHR


def _progress(message: str) -> None:
    print(f"[dftjax] {message}", file=sys.stderr, flush=True)


def add_forces_argument(parser: argparse.ArgumentParser) -> None:
    """``--forces`` on the ``scf`` parser."""
    parser.add_argument("--forces", action="store_true",
                        help="also compute forces -dE/dR (Ha/bohr), grid response included")


def add_forces_to_scf_result(payload: dict, molecule, options, result) -> dict:
    """Add ``forces`` (n_atoms lists [fx, fy, fz], Ha/bohr, input atom order) to a ``dftjax scf``
    result dict (in place, also returned); the SCF restarts from ``result.dm``."""
    from dftjax.properties import forces

    _progress("forces (implicit adjoint, grid response included)")
    f = forces(molecule, options, result=result)
    payload["forces"] = np.asarray(f).tolist()
    payload["max_force"] = float(np.abs(f).max())
    payload.setdefault("units", {})["forces"] = "hartree/bohr"
    return payload


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``opt`` to the ``dftjax`` subcommands; returns its parser."""
    from dftjax.cli import _add_molecule_args

    opt = subparsers.add_parser("opt", help="geometry optimisation (BFGS on dftjax forces)")
    _add_molecule_args(opt)
    opt.add_argument("--basis", default="def2-svp")
    opt.add_argument("--xc", default="pbe", help="functional name as PySCF/libxc, or 'hf'")
    opt.add_argument("--unrestricted", action="store_true")
    opt.add_argument("--grid-level", type=int, default=3)
    opt.add_argument("--density-fit", action="store_true")
    opt.add_argument("--max-force", type=float, default=4.5e-4, help="convergence threshold, Ha/bohr")
    opt.add_argument("--max-steps", type=int, default=100)
    opt.add_argument("--json", action="store_true")
    opt.set_defaults(func=cmd_opt)
    return opt


def cmd_opt(args) -> dict:
    """Optimise the geometry; the dict has the final geometry (angstrom and bohr), energy, forces."""
    from basis.molecule import make_molecule
    from dftjax.opt import optimize_geometry
    from dftjax.system import SCFOptions, check_position_derivatives

    check_position_derivatives(args.xc, "dftjax opt", density_fit=args.density_fit)
    if args.max_force <= 0:
        raise ValueError(f"--max-force {args.max_force} must be positive")
    if args.max_steps < 1:
        raise ValueError(f"--max-steps {args.max_steps} must be at least 1")
    molecule = make_molecule(args.atom, unit=args.unit, charge=args.charge, spin=args.spin)
    options = SCFOptions(xc=args.xc, basis=args.basis, unrestricted=args.unrestricted,
                         grid_level=args.grid_level, density_fit=args.density_fit)
    _progress(f"optimising {molecule.n_atoms} atoms with {options.xc}/{options.basis}")
    result = optimize_geometry(molecule, options, max_force=args.max_force, max_steps=args.max_steps, verbose=True)
    final = result.molecule
    coords_angstrom = final.coords * BOHR_IN_ANGSTROM
    xyz = "\n".join(f"{s} {x:.8f} {y:.8f} {z:.8f}" for s, (x, y, z) in zip(final.symbols, coords_angstrom))
    table = "\n".join([
        f"{options.xc}/{options.basis}: E = {result.energy:.10f} Ha, max|F| = {result.max_force:.2e} Ha/bohr, "
        f"converged={result.converged} after {result.iterations} steps ({result.evaluations} SCF+gradient)",
        "final geometry (angstrom):", xyz])
    return {
        "energy": result.energy,
        "converged": result.converged,
        "iterations": result.iterations,
        "evaluations": result.evaluations,
        "max_force": result.max_force,
        "symbols": list(final.symbols),
        "coords_angstrom": coords_angstrom.tolist(),
        "coords_bohr": final.coords.tolist(),
        "forces": result.forces.tolist(),
        "energies": list(result.energies),
        "xc": options.xc,
        "basis": options.basis,
        "units": {"energy": "hartree", "forces": "hartree/bohr"},
        "table": table,
    }
