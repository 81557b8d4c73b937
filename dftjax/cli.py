"""The ``dftjax`` command line.

Commands (see ../shared/ARCHITECTURE.md, "Command line"):

* ``dftjax demo``: basis and integrals of a molecule (water by default) computed by dftjax in pure
  JAX and checked element by element against PySCF/libcint in the same run.
* ``dftjax scf``: a Kohn-Sham or Hartree-Fock calculation.
* ``dftjax bench [SUITES] [--quick]``: every benchmark suite (integrals, functionals, scf, grad,
  ksr1d, ofdft, vmc) against its peer in the same run; see :mod:`dftjax.bench.runner`.
* ``dftjax train ksr1d``, ``dftjax ofdft train|solve``, ``dftjax vmc``: registered by their packages.

Every command takes ``--json`` (one JSON object on stdout; a human-readable table otherwise),
reports progress on stderr, and exits with status 2 and a one-line message on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

DEFAULT_ATOM = "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692"


class UsageError(Exception):
    """Bad input: reported as one line on stderr, exit status 2."""


def _progress(message: str) -> None:
    print(f"[dftjax] {message}", file=sys.stderr, flush=True)


def _load_molecule(args):
    from basis.molecule import make_molecule

    return make_molecule(args.atom, unit=args.unit, charge=args.charge, spin=args.spin)


def cmd_demo(args) -> dict:
    """Integrals of one molecule, dftjax vs PySCF, plus the core-Hamiltonian orbital energies."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import scipy.linalg
    from pyscf.df import incore

    from basis.gto import make_auxbasis, make_basis
    from basis.integrals import one_electron, two_electron

    molecule = _load_molecule(args)
    basis = make_basis(molecule, args.basis, cartesian=args.cartesian)
    auxbasis = make_auxbasis(molecule, args.basis)
    mol = molecule.to_pyscf(basis=args.basis, cartesian=args.cartesian)
    auxmol = molecule.to_pyscf(basis=auxbasis.name)
    coords = jnp.asarray(molecule.coords)
    charges = jnp.asarray(molecule.atomic_numbers, dtype=jnp.float64)
    _progress(f"{molecule.n_atoms} atoms, {basis.nao} AOs ({args.basis}), {auxbasis.nao} auxiliary ({auxbasis.name})")

    checks = {
        "overlap": (lambda: one_electron.overlap(basis, coords), lambda: mol.intor("int1e_ovlp")),
        "kinetic": (lambda: one_electron.kinetic(basis, coords), lambda: mol.intor("int1e_kin")),
        "nuclear": (lambda: one_electron.nuclear_attraction(basis, coords, charges), lambda: mol.intor("int1e_nuc")),
        "coulomb_2c": (lambda: two_electron.coulomb_2c(auxbasis, coords), lambda: auxmol.intor("int2c2e")),
        "coulomb_3c": (
            lambda: two_electron.coulomb_3c(basis, auxbasis, coords),
            lambda: incore.aux_e2(mol, auxmol, "int3c2e", aosym="s1"),
        ),
    }
    if basis.nao <= 60:
        checks["eri_4c"] = (lambda: two_electron.electron_repulsion(basis, coords), lambda: mol.intor("int2e"))
    rows = {}
    matrices = {}
    for name, (ours, theirs) in checks.items():
        _progress(f"computing {name}")
        start = time.perf_counter()
        value = np.asarray(jax.block_until_ready(ours()))
        elapsed = time.perf_counter() - start
        ref = np.asarray(theirs()).reshape(value.shape)
        matrices[name] = value
        rows[name] = {"shape": list(value.shape), "max_abs_diff_vs_pyscf": float(np.abs(value - ref).max()), "time_s": elapsed}

    h_core = matrices["kinetic"] + matrices["nuclear"]
    orbital_energies = scipy.linalg.eigh(h_core, matrices["overlap"], eigvals_only=True)
    overlap_eigs = np.linalg.eigvalsh(matrices["overlap"])
    return {
        "molecule": repr(molecule),
        "basis": args.basis,
        "n_basis": basis.nao,
        "auxbasis": auxbasis.name,
        "n_aux": auxbasis.nao,
        "nuclear_repulsion": molecule.nuclear_repulsion(),
        "nuclear_repulsion_pyscf": float(mol.energy_nuc()),
        "overlap_min_eigenvalue": float(overlap_eigs[0]),
        "core_orbital_energies": [float(e) for e in orbital_energies[: min(8, len(orbital_energies))]],
        "integrals": rows,
    }


def _print_demo(result: dict) -> None:
    print(f"{result['molecule']}")
    print(f"basis {result['basis']}: {result['n_basis']} AOs; auxiliary {result['auxbasis']}: {result['n_aux']} functions")
    print(f"nuclear repulsion  {result['nuclear_repulsion']:.10f} Ha  (PySCF {result['nuclear_repulsion_pyscf']:.10f})")
    print(f"smallest overlap eigenvalue {result['overlap_min_eigenvalue']:.6e}")
    print("core-Hamiltonian orbital energies (Ha): " + " ".join(f"{e:.5f}" for e in result["core_orbital_energies"]))
    print(f"\n{'integral':<12} {'shape':<22} {'max |dftjax - PySCF|':>22} {'time s':>8}")
    for name, row in result["integrals"].items():
        print(f"{name:<12} {str(tuple(row['shape'])):<22} {row['max_abs_diff_vs_pyscf']:>22.2e} {row['time_s']:>8.2f}")


def cmd_scf(args) -> dict:
    """One SCF calculation; see :func:`dftjax.scf.run_scf`."""
    from dftjax.scf import SCFOptions, run_scf

    molecule = _load_molecule(args)
    if args.forces:
        from dftjax.system import check_position_derivatives

        check_position_derivatives(args.xc, "--forces", density_fit=args.density_fit)
    options = SCFOptions(
        xc=args.xc, basis=args.basis, unrestricted=args.unrestricted,
        grid_level=args.grid_level, density_fit=args.density_fit, max_cycle=args.max_cycle,
        break_symmetry=args.break_symmetry, init_guess=args.init_guess,
    )
    _progress(f"{options.xc}/{options.basis} on {molecule.n_atoms} atoms ({'UKS' if options.unrestricted else 'RKS'})")
    result = run_scf(molecule, options, verbose=True)
    _progress(f"E = {result.energy:.10f} Ha, converged={result.converged} after {result.iterations} iterations")
    payload = {
        "energy": result.energy,
        "energy_parts": result.energy_parts,
        "converged": result.converged,
        "iterations": result.iterations,
        "attempts": list(result.attempts),
        "wall_time_s": result.wall_time_s,
        "timings_s": result.timings,
        # XLA compilations of the whole run (the SCF's details under "compilation")
        "compilations": result.compilations["compilations"],
        "compilation": dict(result.compilations),
        "size_class": result.size_class,
        "n_basis": result.n_basis,
        "xc": result.xc,
        "basis": result.basis,
        "unrestricted": result.unrestricted,
        "orbital_energies": result.mo_energy.tolist() if result.unrestricted else result.mo_energy[0].tolist(),
        "homo_lumo_gap": result.homo_lumo_gap,
        "s2": result.s2,
        "dipole": result.dipole.tolist(),
        "mulliken_charges": result.mulliken_charges.tolist(),
        "units": {"energy": "hartree", "dipole": "e*bohr", "orbital_energies": "hartree"},
    }
    if args.forces:
        from dftjax import properties_cli
        from dftjax.compilation import CompilationCounter

        with CompilationCounter() as counter:
            properties_cli.add_forces_to_scf_result(payload, molecule, options, result)
        payload["compilation"]["forces"] = counter.as_dict()
        payload["compilations"] += counter.compilations
    return payload


def _print_scf(result: dict) -> None:
    print(f"{result['xc']}/{result['basis']}  ({result['n_basis']} basis functions, "
          f"{'unrestricted' if result['unrestricted'] else 'restricted'})")
    print(f"total energy      {result['energy']:.10f} Ha   converged={result['converged']} "
          f"in {result['iterations']} iterations ({result['wall_time_s']:.1f} s)")
    for name, value in result["energy_parts"].items():
        print(f"  {name:<18} {value:.10f}")
    print(f"HOMO-LUMO gap     {result['homo_lumo_gap']:.6f} Ha;  <S^2> = {result['s2']:.6f}")
    print("dipole (au)       " + " ".join(f"{d:.6f}" for d in result["dipole"]))
    for atom, force in enumerate(result.get("forces", [])):
        print(f"force atom {atom:<3}    " + " ".join(f"{f:+.6f}" for f in force) + "  Ha/bohr")


def cmd_bench(args) -> dict:
    """Run the chosen suites (all by default) against their peers; see :mod:`dftjax.bench.runner`."""
    from dftjax.bench import runner

    if args.suite and args.suites and args.suite != args.suites:
        raise UsageError(f"suite given twice: {args.suite!r} and --suite {args.suites!r}")
    if (args.suite or args.suites or "").strip().lower() == "reactions":
        return _bench_reactions(args)
    reaction_options = [flag for flag, value in (("--data", args.data), ("--sets", args.sets), ("--basis", args.basis),
                                                 ("--store", args.store), ("--workers", args.workers))
                        if value is not None]
    if reaction_options:
        raise UsageError(f"{', '.join(reaction_options)}: options of 'dftjax bench reactions' only")
    names = runner.parse_suites(args.suite or args.suites)

    def split(text):
        return tuple(x.strip() for x in text.split(",") if x.strip()) if text else None

    for name, value in (("--points", args.points), ("--walkers", args.walkers), ("--repeats", args.repeats)):
        if value is not None and value < 1:
            raise UsageError(f"{name} {value} must be positive")
    for xc in split(args.xc) or ():
        _functional_or_usage_error(xc)
    if args.ferminet_python:
        if "vmc" not in names:
            raise UsageError("--ferminet-python is an option of the vmc suite; add vmc to the suites")
        from dftjax.bench.vmc import check_ferminet_python

        try:
            check_ferminet_python(args.ferminet_python)
        except ValueError as err:
            raise UsageError(str(err)) from None
    options = runner.BenchOptions(quick=args.quick, molecules=split(args.molecules), basis_sets=split(args.basis_sets),
                                  xc=split(args.xc), points=args.points, walkers=args.walkers, repeats=args.repeats,
                                  ferminet_python=args.ferminet_python)
    runs = runner.run_suites(names, options)
    result = runner.as_json(runs, args.quick)
    if args.csv:
        runner.write_csv(runs, args.csv)
        _progress(f"CSV written to {args.csv}")
    if args.plot:
        for path in runner.plot(runs, args.plot):
            _progress(f"figure written to {path}")
    result["table"] = runner.format_summary(runs)
    result["exit_status"] = 1 if any(r.error for r in runs) else 0
    return result


def _bench_reactions(args) -> dict:
    """``dftjax bench reactions``: errors of a functional on a reaction data set; see :mod:`dftjax.bench.reactions`."""
    from dftjax.bench import reactions

    if not args.data:
        raise UsageError("bench reactions needs --data DIR (a directory with references.csv and molecules.xyz, "
                         "e.g. GSCDB138's)")
    xcs = [x.strip() for x in (args.xc or "").split(",") if x.strip()]
    if len(xcs) != 1:
        raise UsageError(f"bench reactions takes one functional per run (--xc NAME); got {args.xc!r} "
                         "(the energy store keeps every functional: run again for the next one)")
    ignored = [flag for flag, value in (("--quick", args.quick), ("--molecules", args.molecules),
                                        ("--basis-sets", args.basis_sets), ("--points", args.points),
                                        ("--walkers", args.walkers), ("--repeats", args.repeats)) if value]
    if ignored:
        raise UsageError(f"{', '.join(ignored)}: not an option of bench reactions (use --sets, --basis)")
    sets = [s.strip() for s in args.sets.split(",") if s.strip()] if args.sets else None
    return reactions.main(args.data, sets=sets, xc=xcs[0], basis=args.basis, store_path=args.store,
                          workers=args.workers, grid_level=args.grid_level, retry_failed=args.retry_failed)


def _functional_or_usage_error(xc: str):
    from functionals import get_functional

    return get_functional(xc)  # ValueError with close matches


def _add_molecule_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--atom", default=DEFAULT_ATOM, help="PySCF atom string or .xyz path (default: water)")
    parser.add_argument("--unit", default="angstrom", help="angstrom (default) or bohr")
    parser.add_argument("--charge", type=int, default=0)
    parser.add_argument("--spin", type=int, default=0, help="2S, number of unpaired electrons")


def build_parser() -> argparse.ArgumentParser:
    from dftjax import properties_cli

    parser = argparse.ArgumentParser(prog="dftjax", description="Differentiable electronic structure in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="integrals of a molecule checked against PySCF")
    _add_molecule_args(demo)
    demo.add_argument("--basis", default="def2-svp")
    demo.add_argument("--cartesian", action="store_true")
    demo.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    demo.set_defaults(func=cmd_demo)

    scf = sub.add_parser("scf", help="Kohn-Sham / Hartree-Fock SCF")
    _add_molecule_args(scf)
    scf.add_argument("--basis", default="def2-svp")
    scf.add_argument("--xc", default="pbe", help="functional name as PySCF/libxc, or 'hf'")
    scf.add_argument("--unrestricted", action="store_true")
    scf.add_argument("--break-symmetry", action="store_true",
                     help="unrestricted: mix HOMO and LUMO of the guess (stretched bonds, diradicals)")
    scf.add_argument("--init-guess", default="minao",
                     help="starting density, PySCF's names: minao (default), atom, huckel, 1e (= hcore, core)")
    scf.add_argument("--grid-level", type=int, default=3)
    scf.add_argument("--density-fit", action="store_true")
    scf.add_argument("--max-cycle", type=int, default=100)
    scf.add_argument("--json", action="store_true")
    scf.set_defaults(func=cmd_scf)
    properties_cli.add_forces_argument(scf)

    bench = sub.add_parser("bench", help="benchmarks against the peers (PySCF, libxc, DMRG, ...) in the same run",
                           description="Run benchmark suites; each compares against its peer in the same process.")
    suites = "integrals, functionals, scf, grad, ksr1d, ofdft, vmc; or reactions (with --data)"
    bench.add_argument("suite", nargs="?", help=f"one suite or a comma-separated list ({suites}); default: all")
    bench.add_argument("--suite", dest="suites", help="same as the positional argument")
    bench.add_argument("--quick", action="store_true", help="smallest systems of every suite (minutes on a laptop)")
    bench.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    bench.add_argument("--csv", metavar="PATH", help="also write every suite's rows to one CSV file")
    bench.add_argument("--plot", metavar="DIR", help="write one PNG figure per suite into DIR")
    bench.add_argument("--molecules", help="integrals/scf/grad: benchmark molecules; vmc: systems (comma-separated)")
    bench.add_argument("--basis-sets", help="integrals: comma-separated list; scf: the first one (default def2-svp)")
    bench.add_argument("--xc", help="scf/functionals/grad: comma-separated functionals")
    bench.add_argument("--points", type=int, help="functionals: grid points (default 1e6, quick 1e5)")
    bench.add_argument("--walkers", type=int, help="vmc: walkers per evaluation (default 64, quick 16)")
    bench.add_argument("--ferminet-python", metavar="PYTHON",
                       help="vmc: an interpreter with FermiNet and kfac-jax installed; times FermiNet's own "
                            "optimisation step side by side (same network, walkers and moves)")
    bench.add_argument("--repeats", type=int, help="warm timings: median of this many calls (default 3, quick 1)")
    reactions = bench.add_argument_group("reactions", "dftjax bench reactions --data DIR --xc NAME: errors "
                                         "(kcal/mol) of reaction energies, barriers, atomization energies")
    reactions.add_argument("--data", metavar="DIR", help="data set directory (references.csv, molecules.xyz; "
                           "GSCDB138's layout)")
    reactions.add_argument("--sets", help="comma-separated set names (default: every set)")
    reactions.add_argument("--basis", help="orbital basis (default: the functional's training basis, else def2-svp)")
    reactions.add_argument("--store", metavar="PATH", help="JSON-lines energy store, reused and extended "
                           "(default ./dftjax_reactions/<data dir name>.jsonl)")
    reactions.add_argument("--workers", type=int, help="molecules computed in parallel (default: CPU cores)")
    reactions.add_argument("--grid-level", type=int, default=3, help="integration grid level 0-9 (default 3)")
    reactions.add_argument("--retry-failed", action="store_true", help="recompute molecules stored as failed")
    bench.set_defaults(func=cmd_bench)
    for register in _command_modules():
        register(sub)
    return parser


def _command_modules():
    """``register(subparsers)`` of the commands that live with their packages (imported lazily)."""
    from dftjax.ofdft.cli import register as ofdft
    from dftjax.properties_cli import register as opt
    from dftjax.xc3d.cli import register as xc3d_data
    from qmc.cli import register as vmc

    return [opt, _register_train, ofdft, vmc, xc3d_data]


def _register_train(subparsers) -> None:
    """``dftjax train <what>``: each trainer adds its own subcommand."""
    from dftjax.oned.cli import add_ksr1d
    from dftjax.xc3d.cli import add_xc3d

    train = subparsers.add_parser("train", help="train functionals")
    train_subparsers = train.add_subparsers(dest="train_command", required=True)
    for add in (add_ksr1d, add_xc3d):
        add(train_subparsers)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import dftjax  # noqa: F401  (float64 on, persistent compilation cache on)

    try:
        result = args.func(args)
    except (UsageError, ValueError) as err:
        print(f"dftjax {args.command}: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    status = result.pop("exit_status", 0)
    if args.json:
        result = {k: v for k, v in result.items() if k != "table"}
        print(json.dumps(result))
    elif args.command == "demo":
        _print_demo(result)
    elif args.command == "scf":
        _print_scf(result)
    else:
        print(result["table"])
    return status


if __name__ == "__main__":
    sys.exit(main())
