"""``dftjax vmc``: deep variational Monte Carlo from the command line.

``register(subparsers)`` adds the ``vmc`` command to the ``dftjax`` parser; its ``func(args)`` returns
a dict with ``energy``, ``energy_error``, ``variance``, ``iterations``, ``wall_time_s`` (and more) plus
a human-readable ``table``. Progress goes to stderr. Bad input raises ``ValueError`` with one line,
which ``dftjax.cli.main`` turns into exit status 2.

    dftjax vmc --atom "He 0 0 0" --iterations 400 --json
"""

from __future__ import annotations

import argparse

from qmc.ansatz import ANSATZES

DEFAULTS = {"iterations": 400, "walkers": 256, "seed": 0}


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``vmc`` to an ``argparse`` subparsers object; returns the new parser."""
    vmc = subparsers.add_parser("vmc", help="deep variational Monte Carlo (FermiNet, PauliNet)")
    vmc.add_argument("--atom", default="He 0 0 0", help="PySCF atom string or .xyz path (default: He)")
    vmc.add_argument("--unit", default="angstrom", help="angstrom (default) or bohr")
    vmc.add_argument("--ansatz", default="ferminet", choices=sorted(ANSATZES))
    vmc.add_argument("--charge", type=int, default=0)
    vmc.add_argument("--spin", type=int, default=0, help="2S, number of unpaired electrons")
    vmc.add_argument("--iterations", type=int, default=DEFAULTS["iterations"])
    vmc.add_argument("--walkers", type=int, default=DEFAULTS["walkers"])
    vmc.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    vmc.add_argument("--optimizer", default="spring", choices=["spring", "adam"])
    vmc.add_argument("--laplacian", default="forward", choices=["forward", "hessian"])
    vmc.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                     help="precision of walkers, network and optimiser (default float64)")
    vmc.add_argument("--pretrain-iterations", type=int, default=100)
    vmc.add_argument("--eval-iterations", type=int, default=100)
    vmc.add_argument("--checkpoint-dir", default=None, help="write checkpoints here; resume if one exists")
    vmc.add_argument("--checkpoint-every", type=int, default=100)
    vmc.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    vmc.set_defaults(func=cmd_vmc)
    return vmc


def cmd_vmc(args) -> dict:
    """Run :func:`qmc.train.run_vmc` for the parsed arguments; returns the result record."""
    from basis.molecule import make_molecule
    from qmc.train import VMCOptions, run_vmc

    molecule = make_molecule(args.atom, unit=args.unit, charge=args.charge, spin=args.spin)
    if args.walkers < 2:
        raise ValueError(f"--walkers {args.walkers} must be at least 2")
    if args.iterations < 0:
        raise ValueError(f"--iterations {args.iterations} must be non-negative")
    options = VMCOptions(
        ansatz=args.ansatz, optimizer=args.optimizer, iterations=args.iterations, walkers=args.walkers,
        seed=args.seed, laplacian=args.laplacian, pretrain_iterations=args.pretrain_iterations,
        eval_iterations=args.eval_iterations, checkpoint_every=args.checkpoint_every, dtype=args.dtype,
    )
    result = run_vmc(molecule, options, checkpoint_dir=args.checkpoint_dir)
    n_up, n_down = molecule.nelec
    record = {
        "energy": result.energy,
        "energy_error": result.energy_error,
        "variance": result.variance,
        "iterations": result.iterations,
        "wall_time_s": result.wall_time_s,
        "hf_energy": result.hf_energy,
        "acceptance": result.acceptance,
        "walkers": options.walkers,
        "ansatz": options.ansatz,
        "optimizer": options.optimizer,
        "laplacian": options.laplacian,
        "dtype": options.dtype,
        "seed": options.seed,
        "nelec": [n_up, n_down],
        "resumed_from": result.resumed_from,
        "molecule": repr(molecule),
        "units": {"energy": "hartree", "variance": "hartree^2"},
    }
    record["table"] = format_table(record)
    return record


def format_table(record: dict) -> str:
    lines = [
        f"{record['molecule']}",
        f"{record['ansatz']} / {record['optimizer']}, {record['walkers']} walkers, {record['iterations']} iterations, "
        f"{record['laplacian']} Laplacian, {record['dtype']}, seed {record['seed']}",
        f"energy        {record['energy']:.6f} +- {record['energy_error']:.6f} Ha",
        f"variance      {record['variance']:.6f} Ha^2",
        f"acceptance    {record['acceptance']:.3f}",
    ]
    if record["hf_energy"] is not None:
        lines.append(f"UHF (pretraining basis) {record['hf_energy']:.6f} Ha")
    lines.append(f"wall time     {record['wall_time_s']:.1f} s")
    return "\n".join(lines)
