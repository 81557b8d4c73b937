"""``dftjax data make`` (CCSD(T) reference data) and ``dftjax train xc3d`` (neural XC through the SCF).

Wiring: ``dftjax/cli.py`` calls :func:`register` with its top-level subparsers (adds ``data`` with
the ``make`` subcommand) and :func:`add_xc3d` with the subparsers of ``train``. ``func(args)``
returns a dict: JSON fields plus a human ``table``; bad input raises ValueError (one-line message,
exit status 2) before any heavy work.
"""
from __future__ import annotations

import argparse
import dataclasses
import os


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``data`` (with ``make``) to the top-level subparsers; returns the ``data`` parser."""
    from dftjax.xc3d.data import DATA_DIR, DEFAULT_BASIS

    data = subparsers.add_parser("data", help="reference data for training functionals")
    sub = data.add_subparsers(dest="data_command", required=True)
    p = sub.add_parser("make", help="CCSD(T) energies and CCSD densities (PySCF) of the xc3d sets")
    p.add_argument("--set", dest="subset", choices=["train", "heldout", "all"], default="all")
    p.add_argument("--only", default=None, help="comma-separated system names (default: the whole set)")
    p.add_argument("--basis", default=DEFAULT_BASIS, help=f"orbital basis (default {DEFAULT_BASIS})")
    p.add_argument("--out", default=DATA_DIR, help="cache directory (default: the packaged data folder)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_data_make)
    return data


def cmd_data_make(args) -> dict:
    from dftjax.xc3d.data import ALL_SYSTEMS, make_reference_data, systems_of

    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in ALL_SYSTEMS]
        if unknown:
            raise ValueError(f"unknown reference system {unknown[0]!r}; known: {', '.join(sorted(ALL_SYSTEMS))}")
    else:
        names = [s.name for s in systems_of(args.subset)]
    payload = make_reference_data(names, basis=args.basis, out_dir=args.out)
    systems = {n: payload["systems"][n] for n in names}
    lines = [f"CCSD(T)/{payload['basis']} reference in {args.out}",
             f"{'system':<8} {'set':<8} {'E_CCSD(T) (Ha)':>16} {'atomization (Ha)':>17}"]
    for name, entry in systems.items():
        ae = entry.get("atomization_energy")
        lines.append(f"{name:<8} {entry['subset']:<8} {entry['e_ccsd_t']:16.8f} "
                     f"{'' if ae is None else f'{ae:17.6f}'}")
    return {"basis": payload["basis"], "out": args.out, "systems": systems, "table": "\n".join(lines)}


#: ``--model`` choices of ``dftjax train xc3d``.
MODELS = ("nn-mgga", "nn-local-hybrid")


def add_xc3d(train_subparsers) -> None:
    """Add the ``xc3d`` subcommand to the subparsers of ``train``."""
    from dftjax.xc3d.data import DATA_DIR, TRAINING, TRAINING_ATOMS

    p = train_subparsers.add_parser("xc3d", help="neural XC functional trained through the 3D SCF on CCSD(T) data")
    p.add_argument("--model", choices=list(MODELS), default="nn-mgga",
                   help="nn-mgga: neural meta-GGA (default); nn-local-hybrid: the neural meta-GGA with a learned "
                        "local fraction of exact exchange (nonlocal ingredient, implicit adjoint only)")
    p.add_argument("--train", default=",".join([s.name for s in TRAINING] + list(TRAINING_ATOMS)),
                   help="comma-separated training systems (molecules and the atoms of their atomization energies)")
    p.add_argument("--validation", default="N2,CO",
                   help="comma-separated validation systems (their atoms are added); '' for none")
    p.add_argument("--data-dir", default=DATA_DIR, help="reference data written by 'dftjax data make'")
    p.add_argument("--adjoint", choices=["implicit", "unrolled"], default="implicit")
    p.add_argument("--unrolled-steps", type=int, default=25, help="SCF iterations of the unrolled adjoint")
    p.add_argument("--steps", type=int, default=10, help="Adam steps (default 10)")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--energy-weight", type=float, default=1.0)
    p.add_argument("--atomization-weight", type=float, default=1.0)
    p.add_argument("--density-weight", type=float, default=1.0)
    p.add_argument("--grid-level", type=int, default=1)
    p.add_argument("--hidden", default="16,16", help="hidden widths of the MLPs (default 16,16)")
    p.add_argument("--bound", type=float, default=0.5, help="bound b on the enhancement corrections")
    p.add_argument("--mixing-hidden", default="8", help="nn-local-hybrid: hidden widths of the mixing MLP (default 8)")
    p.add_argument("--max-fraction", type=float, default=0.5,
                   help="nn-local-hybrid: upper bound of the local exact-exchange fraction (default 0.5)")
    p.add_argument("--initial-logit", type=float, default=-3.0,
                   help="nn-local-hybrid: initial mixing logit, fraction max_fraction*sigmoid(logit) (default -3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", default=None,
                   help="start from these weights: a shipped name (dftjax:nn-mgga) or a .npz written by --out; "
                        "its architecture replaces --hidden/--bound (default: untrained, = PBE). With "
                        "--model nn-local-hybrid a meta-GGA initialises the semilocal part (mixing MLP fresh)")
    p.add_argument("--validate-every", type=int, default=5)
    p.add_argument("--checkpoint-dir", default=None, help="checkpoint every --checkpoint-every steps; resume")
    p.add_argument("--checkpoint-every", type=int, default=1)
    p.add_argument("--devices", type=int, default=0,
                   help="split the systems over this many local devices (0: all)")
    p.add_argument("--out", default=None, help="write the selected weights (.npz, functionals.neural_xc format)")
    p.add_argument("--export-only", action="store_true",
                   help="write --out from the checkpoint in --checkpoint-dir (best validation parameters so far) "
                        "without training or building any SCF, e.g. after an interrupted run")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_train_xc3d)


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _with_atoms(names: list[str], known: dict) -> list[str]:
    from dftjax.xc3d.data import ALL_SYSTEMS, atom_key

    out = list(names)
    for name in names:
        for symbol in ALL_SYSTEMS[name].elements:
            if ALL_SYSTEMS[name].subset != "atom" and atom_key(symbol) not in out:
                out.append(atom_key(symbol))
    return out


def cmd_train_xc3d(args) -> dict:
    import jax
    import numpy as np

    from dftjax.xc3d.data import ALL_SYSTEMS, load_reference
    from dftjax.xc3d.train import XC3DOptions, train
    from functionals.neural_xc import (MODELS_DIR, PRETRAINED, NeuralLocalHybridConfig, NeuralMGGAConfig, load_model,
                                       make_neural_local_hybrid, make_neural_mgga, save_model)

    train_names = _names(args.train)
    validation_names = _names(args.validation)
    for name in train_names + validation_names:
        if name not in ALL_SYSTEMS:
            raise ValueError(f"unknown system {name!r}; known: {', '.join(sorted(ALL_SYSTEMS))}")
    if not train_names:
        raise ValueError("--train is empty")
    overlap = set(train_names) & {n for n in validation_names if ALL_SYSTEMS[n].subset != "atom"}
    if overlap:
        raise ValueError(f"{sorted(overlap)} both in --train and --validation")
    try:
        hidden = tuple(int(h) for h in _names(args.hidden))
    except ValueError as err:
        raise ValueError(f"--hidden must be comma-separated integers; got {args.hidden!r}") from err
    config = NeuralMGGAConfig(hidden=hidden, bound=args.bound)
    init_params = None
    if args.init:
        path = args.init
        if args.init.strip().lower() in PRETRAINED:
            path = os.path.join(MODELS_DIR, PRETRAINED[args.init.strip().lower()])
        elif not args.init.endswith(".npz"):
            raise ValueError(f"--init must be one of {sorted(PRETRAINED)} or a .npz file; got {args.init!r}")
        init_params, config, _ = load_model(path)
    config, init_params = _model_config(args, config, init_params)
    if args.out and not args.out.endswith(".npz"):
        raise ValueError(f"--out must be a .npz file; got {args.out!r}")
    if args.devices < 0:
        raise ValueError("--devices must be >= 0")
    validation_names = _with_atoms(validation_names, ALL_SYSTEMS) if validation_names else []
    validation_names = [n for n in validation_names if n not in train_names]
    if args.export_only:
        return _export(args, config, train_names, validation_names)
    refs, basis = load_reference(args.data_dir, train_names + validation_names)
    options = XC3DOptions(basis=basis, grid_level=args.grid_level, adjoint=args.adjoint,
                          unrolled_steps=args.unrolled_steps, steps=args.steps,
                          learning_rate=args.learning_rate, energy_weight=args.energy_weight,
                          atomization_weight=args.atomization_weight, density_weight=args.density_weight,
                          validate_every=args.validate_every, checkpoint_every=args.checkpoint_every,
                          seed=args.seed)
    devices = jax.local_devices()
    if args.devices:
        if args.devices > len(devices):
            raise ValueError(f"--devices {args.devices} but only {len(devices)} local devices")
        devices = devices[:args.devices]
    if isinstance(config, NeuralLocalHybridConfig):
        functional = make_neural_local_hybrid(jax.random.PRNGKey(args.seed), config, params=init_params)
    else:
        functional = make_neural_mgga(jax.random.PRNGKey(args.seed), config, params=init_params)
    state, history = train(functional.params, functional, {n: refs[n] for n in train_names}, options,
                           validation_refs={n: refs[n] for n in validation_names},
                           checkpoint_dir=args.checkpoint_dir, devices=devices)
    history["validation"] = [None if v != v else v for v in history["validation"]]  # NaN -> null
    best_validation = float(state.best_validation)
    result = {
        "basis": basis, "adjoint": args.adjoint, "steps": int(state.step), "best_step": int(state.best_step),
        "best_validation": best_validation if np.isfinite(best_validation) else None, "final_loss": float(state.loss),
        "train": train_names, "validation": validation_names, "devices": len(devices),
        "history": history, "model": args.model, "config": dataclasses.asdict(config), "init": args.init,
    }
    if args.out:
        metadata = {k: result[k] for k in ("basis", "adjoint", "steps", "best_step", "best_validation", "train",
                                           "validation")}
        metadata["model"] = args.model
        metadata["grid_level"] = args.grid_level
        metadata["init"] = args.init
        metadata["learning_rate"] = args.learning_rate
        metadata["loss_weights"] = {"energy": args.energy_weight, "atomization": args.atomization_weight,
                                    "density": args.density_weight}
        save_model(args.out, state.best_params, config, metadata)
        result["out"] = os.path.abspath(args.out)
    lines = [f"xc3d {args.model}: {result['steps']} Adam steps ({args.adjoint} adjoint, {basis}), best step "
             f"{result['best_step']} (validation loss {best_validation:.4e})",
             f"{'step':>5} {'loss':>12} {'validation':>12} {'time s':>8}"]
    for i, (loss, val, t) in enumerate(zip(history["loss"], history["validation"], history["time_s"])):
        lines.append(f"{i + 1:5d} {loss:12.4e} {float('nan') if val is None else val:12.4e} {t:8.1f}")
    if args.out:
        lines.append(f"weights: {result['out']}")
    result["table"] = "\n".join(lines)
    return result


def _model_config(args, config, init_params):
    """``(config, init_params)`` of ``--model`` from the meta-GGA or stored config of ``--init``.

    nn-mgga: a local-hybrid ``--init`` is an error. nn-local-hybrid: a meta-GGA ``--init`` (or
    none) gives the semilocal part (its architecture, its weights) and a fresh mixing MLP from
    ``--mixing-hidden``/``--max-fraction``/``--initial-logit``/``--seed``; a local-hybrid
    ``--init`` is taken whole.
    """
    import jax

    from functionals.neural_xc import NeuralLocalHybridConfig, local_hybrid_params_from_mgga

    if args.model == "nn-mgga":
        if isinstance(config, NeuralLocalHybridConfig):
            raise ValueError(f"--init {args.init!r} is a local hybrid; use --model nn-local-hybrid")
        return config, init_params
    if args.adjoint != "implicit":
        raise ValueError("--model nn-local-hybrid needs --adjoint implicit (the unrolled adjoint rebuilds the "
                         "system without the grid Coulomb potentials of its exact-exchange energy density)")
    if isinstance(config, NeuralLocalHybridConfig):
        return config, init_params
    try:
        mixing_hidden = tuple(int(h) for h in _names(args.mixing_hidden))
    except ValueError as err:
        raise ValueError(f"--mixing-hidden must be comma-separated integers; got {args.mixing_hidden!r}") from err
    hybrid = NeuralLocalHybridConfig(semilocal=dataclasses.replace(config, name="dftjax:nn-local-hybrid"),
                                     hidden=mixing_hidden, max_fraction=args.max_fraction,
                                     initial_logit=args.initial_logit)
    if init_params is not None:
        init_params = local_hybrid_params_from_mgga(init_params, jax.random.PRNGKey(args.seed), hybrid)
    return hybrid, init_params


def _export(args, config, train_names, validation_names) -> dict:
    """``--export-only``: the checkpoint's best parameters to ``--out`` with their metadata."""
    import numpy as np

    from dftjax.xc3d.data import load_reference
    from dftjax.xc3d.train import load_checkpoint
    from functionals.neural_xc import save_model

    if not args.checkpoint_dir or not args.out:
        raise ValueError("--export-only needs --checkpoint-dir and --out")
    state = load_checkpoint(args.checkpoint_dir)
    if state is None:
        raise ValueError(f"no checkpoint in {args.checkpoint_dir!r}")
    _, basis = load_reference(args.data_dir, train_names[:1])
    best_validation = float(state.best_validation)
    metadata = {"model": args.model, "basis": basis, "adjoint": args.adjoint, "steps": int(state.step), "best_step": int(state.best_step),
                "best_validation": best_validation if np.isfinite(best_validation) else None,
                "train": train_names, "validation": validation_names, "grid_level": args.grid_level,
                "init": args.init, "learning_rate": args.learning_rate,
                "loss_weights": {"energy": args.energy_weight, "atomization": args.atomization_weight,
                                 "density": args.density_weight}}
    save_model(args.out, state.best_params, config, metadata)
    return {**metadata, "out": os.path.abspath(args.out),
            "table": f"exported step {metadata['best_step']} of {metadata['steps']} (validation loss "
                     f"{best_validation:.4e}) to {os.path.abspath(args.out)}"}
