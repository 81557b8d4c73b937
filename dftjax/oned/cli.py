"""``dftjax train ksr1d``: Kohn-Sham-regularizer experiments (Li et al., PRL 126, 036401 (2021)).

``--experiment h2`` (default) is the paper's H2 experiment (train R = 1.28, 3.84 bohr; test on the 32
test bond lengths); ``--experiment h2h4`` trains on H2 and H4 and tests on H2, H2-H2, H3
(spin-polarised) and H2+ (:data:`dftjax.oned.experiment.H2_H4_TRAIN`, :func:`~dftjax.oned.experiment.transfer_tests`).

Wiring: ``dftjax/cli.py`` calls :func:`register` with its subparsers (adds ``train`` with the
``ksr1d`` subcommand), or :func:`add_ksr1d` with the subparsers of an existing ``train`` command.
``func(args)`` returns a dict: JSON fields plus a human ``table``.
"""

from __future__ import annotations

import argparse
import os

# The defaults reproduce the paper's H2 result (Li et al. 2021 and their jax_dft code: 15 KS
# iterations, linear mixing 0.5 whose output fraction decays by 0.9 per iteration, energies of the
# last 5 iterations discounted by 0.9, density loss weighted 1/4 of the energy trajectory's mean,
# global model with bias-free convolutions and the negativity transform -silu).
DEFAULT_STEPS = 150
DEFAULT_MODEL_OPTIONS = {"global": {"use_bias": False, "negativity": True}}
DEFAULT_TRAINING = dict(decaying_weight="output", skip_iterations=10, density_weight=0.25)


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``train`` (with ``ksr1d``) to the top-level subparsers; returns the ``train`` parser."""
    train = subparsers.add_parser("train", help="train functionals")
    add_ksr1d(train.add_subparsers(dest="train_command", required=True))
    return train


def add_ksr1d(train_subparsers) -> None:
    """Add the ``ksr1d`` subcommand to the subparsers of ``train``."""
    p = train_subparsers.add_parser("ksr1d", help="KSR neural XC on 1D molecules (Li et al. 2021)")
    p.add_argument("--experiment", choices=["h2", "h2h4"], default="h2",
                   help="h2: the paper's H2 curve; h2h4: train on H2 + H4, test on H2, H2-H2, H3, H2+")
    p.add_argument("--model", choices=["global", "local", "semilocal"], default="global")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"optimiser steps (default {DEFAULT_STEPS})")
    p.add_argument("--optimizer", choices=["lbfgs", "adam"], default="lbfgs")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="Adam only")
    p.add_argument("--iterations", type=int, default=15, help="unrolled KS iterations (default 15)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--half-width", type=float, default=12.0,
                   help="box half width around each molecule, bohr (default 12)")
    p.add_argument("--checkpoint-dir", default=None, help="checkpoint every --checkpoint-every steps; resume")
    p.add_argument("--checkpoint-every", type=int, default=10)
    p.add_argument("--params", default=None,
                   help="start from these parameters (.npz of --save-params; with --steps 0: evaluate them)")
    p.add_argument("--save-params", default=None, help="write the selected parameters to this .npz")
    p.add_argument("--learning-curve", action="store_true",
                   help="after training, test MAE of every 5th step: step and time to chemical accuracy")
    p.add_argument("--no-lda", action="store_true", help="skip the LDA baseline")
    p.add_argument("--plot", default=None, help="save every test curve (KSR, LDA, DMRG) as this PNG")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_train_ksr1d)


def _table(result: dict) -> str:
    speed = "" if result["seconds_per_step"] is None else f", {result['seconds_per_step']:.2f} s/step"
    lines = [f"KSR {result['model']} ({result['optimizer']}, {result['steps']} steps, best at step "
             f"{result['best_step']}; {result['train_time_s']:.1f} s in this run{speed})",
             f"{'molecule':>8} {'R (bohr)':>9} {'KSR':>12} {'LDA':>12} {'DMRG':>12} {'KSR-DMRG (mHa)':>15}"]
    for row in result["test"]:
        lda = row.get("lda_energy", float("nan"))
        lines.append(f"{row.get('molecule', 'h2'):>8} {row['distance']:9.2f} {row['energy']:12.6f} {lda:12.6f} "
                     f"{row['dmrg_energy']:12.6f} {(row['energy'] - row['dmrg_energy']) * 1e3:15.3f}")
    for name, curve in result.get("curves", {}).items():
        line = (f"{name}: KSR MAE {curve['mae_mha']:.3f} mHa, max {curve['max_error_mha']:.3f} mHa "
                f"(R = {curve['max_error_distance']:.2f}), mean int|dn| {curve['mean_density_error']:.2e}")
        if "lda_mae_mha" in curve:
            line += f"; LDA MAE {curve['lda_mae_mha']:.3f}, max {curve['lda_max_error_mha']:.3f} mHa"
        lines.append(line)
    lines.append(f"all: KSR MAE {result['mae_mha']:.3f} mHa, max {result['max_error_mha']:.3f} mHa, "
                 f"mean int|dn| {result['mean_density_error']:.2e}")
    if "lda_mae_mha" in result:
        lines.append(f"all: LDA MAE {result['lda_mae_mha']:.3f} mHa, max {result['lda_max_error_mha']:.3f} mHa, "
                     f"mean int|dn| {result['lda_mean_density_error']:.2e}")
    if "chemical_accuracy_step" in result:
        step = result["chemical_accuracy_step"]
        lines.append("chemical accuracy (test MAE < 1.6 mHa): " + (
            "not reached" if step is None else f"step {step}, {result['chemical_accuracy_time_s']:.1f} s of training"))
    return "\n".join(lines)


CURVE_TITLES = {"h2": "H$_2$", "h4": "H$_4$", "h2_h2": "H$_2$-H$_2$", "h3": "H$_3$ (spin-polarised)",
                "h2_plus": "H$_2^+$"}


def plot_curves(result: dict, path: str) -> None:
    """Save every test curve (KSR, LDA, DMRG; top) and the KSR error (bottom) as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(row.get("molecule", "h2") for row in result["test"]))
    fig, axes = plt.subplots(2, len(names), figsize=(4.5 * len(names), 7), sharex="col", squeeze=False)
    for column, name in enumerate(names):
        rows = [row for row in result["test"] if row.get("molecule", "h2") == name]
        top, bottom = axes[0, column], axes[1, column]
        r = [row["distance"] for row in rows]
        top.plot(r, [row["dmrg_energy"] for row in rows], "k-", label="DMRG")
        top.plot(r, [row["energy"] for row in rows], "o", ms=4, label=f"KSR ({result['model']})")
        if "lda_energy" in rows[0]:
            top.plot(r, [row["lda_energy"] for row in rows], "--", label="LDA")
        top.set_title(CURVE_TITLES.get(name, name))
        top.set_ylabel("E + V_nn (hartree)")
        top.legend()
        bottom.plot(r, [(row["energy"] - row["dmrg_energy"]) * 1e3 for row in rows], "o-", ms=4)
        bottom.axhspan(-1.6, 1.6, color="0.9", label="chemical accuracy")
        bottom.set_xlabel("R (bohr)")
        bottom.set_ylabel("KSR - DMRG (mHa)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_train_ksr1d(args) -> dict:
    from dftjax import ksr
    from dftjax.oned import data, experiment

    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError as err:
            raise ValueError("--plot needs matplotlib (pip install matplotlib)") from err
        if not os.path.isdir(os.path.dirname(os.path.abspath(args.plot))):
            raise ValueError(f"--plot: no directory for {args.plot}")
    if args.steps < 0 or args.iterations < 1:
        raise ValueError("--steps must be >= 0 and --iterations >= 1")
    if args.half_width <= 0:
        raise ValueError("--half-width must be positive")
    params, model_options = None, dict(DEFAULT_MODEL_OPTIONS.get(args.model, {}))
    if args.params:
        params, metadata = ksr.load_params(args.params)
        if metadata.get("model", args.model) != args.model:
            raise ValueError(f"--params holds a {metadata['model']!r} model, not {args.model!r}")
        model_options = metadata.get("model_options", model_options)
    options = ksr.KSROptions(steps=args.steps, optimizer=args.optimizer, learning_rate=args.learning_rate,
                             num_iterations=args.iterations, seed=args.seed,
                             checkpoint_every=args.checkpoint_every,
                             skip_iterations=min(DEFAULT_TRAINING["skip_iterations"], args.iterations - 1),
                             decaying_weight=DEFAULT_TRAINING["decaying_weight"],
                             density_weight=DEFAULT_TRAINING["density_weight"])
    if args.experiment == "h2":
        train, validation, tests = ({"h2": (128, 384)}, {"h2": (168, 440)},
                                    {"h2": data.TEST_DISTANCES_X100["h2"]})
    else:
        train, validation, tests = (experiment.H2_H4_TRAIN, experiment.H2_H4_VALIDATION,
                                    experiment.transfer_tests())
    result = experiment.ksr_experiment(
        train, tests, model=args.model, options=options, validation=validation, model_options=model_options,
        params=params, half_width=args.half_width, checkpoint_dir=args.checkpoint_dir,
        with_lda=not args.no_lda, learning_curve="h2" if args.learning_curve else None,
        keep_params=bool(args.save_params))
    result["experiment"] = args.experiment
    # strict JSON has no NaN: steps without a validation loss are null
    history = result["history"]
    result["history"] = dict(history, validation=[None if v != v else v for v in history["validation"]])
    if args.save_params:
        from dftjax.ksr import save_params

        state_params = result.pop("_params", None)
        if state_params is not None:
            result["saved_params"] = save_params(
                args.save_params, state_params, model=args.model, model_options=model_options,
                experiment=args.experiment, steps=result["steps"], best_step=result["best_step"],
                dx=result["dx"], mae_mha=result["mae_mha"], max_error_mha=result["max_error_mha"],
                options=result["options"])
    result.pop("_params", None)
    if args.plot:
        plot_curves(result, args.plot)
        result["plot"] = args.plot
    result["table"] = _table(result)
    return result
