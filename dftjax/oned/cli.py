"""``dftjax train ksr1d``: the Kohn-Sham-regularizer H2 experiment (Li et al., PRL 126, 036401 (2021)).

Wiring: ``dftjax/cli.py`` calls :func:`register` with its subparsers (adds ``train`` with the
``ksr1d`` subcommand), or :func:`add_ksr1d` with the subparsers of an existing ``train`` command.
``func(args)`` returns a dict: JSON fields plus a human ``table``.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``train`` (with ``ksr1d``) to the top-level subparsers; returns the ``train`` parser."""
    train = subparsers.add_parser("train", help="train functionals")
    add_ksr1d(train.add_subparsers(dest="train_command", required=True))
    return train


def add_ksr1d(train_subparsers) -> None:
    """Add the ``ksr1d`` subcommand to the subparsers of ``train``."""
    p = train_subparsers.add_parser("ksr1d", help="KSR neural XC on the 1D H2 curve (Li et al. 2021)")
    p.add_argument("--model", choices=["global", "local", "semilocal"], default="global")
    p.add_argument("--steps", type=int, default=100, help="optimiser steps (default 100)")
    p.add_argument("--optimizer", choices=["lbfgs", "adam"], default="lbfgs")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="Adam only")
    p.add_argument("--iterations", type=int, default=15, help="unrolled KS iterations (default 15)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--half-width", type=float, default=12.0,
                   help="box half width around each molecule, bohr (default 12)")
    p.add_argument("--checkpoint-dir", default=None, help="checkpoint every --checkpoint-every steps; resume")
    p.add_argument("--checkpoint-every", type=int, default=10)
    p.add_argument("--no-lda", action="store_true", help="skip the LDA baseline")
    p.add_argument("--plot", default=None, help="save the curves (KSR, LDA, DMRG) as this PNG")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_train_ksr1d)


def _table(result: dict) -> str:
    speed = "" if result["seconds_per_step"] is None else f", {result['seconds_per_step']:.2f} s/step"
    lines = [f"KSR {result['model']} ({result['optimizer']}, {result['steps']} steps, best at step "
             f"{result['best_step']}; {result['train_time_s']:.1f} s in this run{speed})",
             f"{'R (bohr)':>9} {'KSR':>12} {'LDA':>12} {'DMRG':>12} {'KSR-DMRG (mHa)':>15}"]
    for row in result["test"]:
        lda = row.get("lda_energy", float("nan"))
        lines.append(f"{row['distance']:9.2f} {row['energy']:12.6f} {lda:12.6f} {row['dmrg_energy']:12.6f} "
                     f"{(row['energy'] - row['dmrg_energy']) * 1e3:15.3f}")
    lines.append(f"KSR: MAE {result['mae_mha']:.3f} mHa, max {result['max_error_mha']:.3f} mHa, "
                 f"mean int|dn| {result['mean_density_error']:.2e}")
    if "lda_mae_mha" in result:
        lines.append(f"LDA: MAE {result['lda_mae_mha']:.3f} mHa, max {result['lda_max_error_mha']:.3f} mHa, "
                     f"mean int|dn| {result['lda_mean_density_error']:.2e}")
    return "\n".join(lines)


def plot_curves(result: dict, path: str) -> None:
    """Save the dissociation curves (KSR, LDA, DMRG) and the KSR error as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["test"]
    r = [row["distance"] for row in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 7), sharex=True)
    top.plot(r, [row["dmrg_energy"] for row in rows], "k-", label="DMRG")
    top.plot(r, [row["energy"] for row in rows], "o", label=f"KSR ({result['model']})")
    if "lda_energy" in rows[0]:
        top.plot(r, [row["lda_energy"] for row in rows], "--", label="LDA")
    top.set_ylabel("E + V_nn (hartree)")
    top.legend()
    bottom.plot(r, [(row["energy"] - row["dmrg_energy"]) * 1e3 for row in rows], "o-")
    bottom.axhspan(-1.6, 1.6, color="0.9")
    bottom.set_xlabel("R (bohr)")
    bottom.set_ylabel("KSR - DMRG (mHa)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cmd_train_ksr1d(args) -> dict:
    from dftjax.ksr import KSROptions
    from dftjax.oned.experiment import h2_experiment

    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError as err:
            raise ValueError("--plot needs matplotlib (pip install matplotlib)") from err
    if args.steps < 0 or args.iterations < 1:
        raise ValueError("--steps must be >= 0 and --iterations >= 1")
    options = KSROptions(steps=args.steps, optimizer=args.optimizer, learning_rate=args.learning_rate,
                         num_iterations=args.iterations, seed=args.seed,
                         checkpoint_every=args.checkpoint_every)
    result = h2_experiment(args.model, options, half_width=args.half_width,
                           checkpoint_dir=args.checkpoint_dir, with_lda=not args.no_lda)
    if args.plot:
        plot_curves(result, args.plot)
        result["plot"] = args.plot
    result["table"] = _table(result)
    return result
