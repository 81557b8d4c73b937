"""``dftjax ofdft train`` and ``dftjax ofdft solve``: learned kinetic functionals in the 1D box.

The lead wires :func:`register` into ``dftjax/cli.py``: ``register(subparsers)`` adds the ``ofdft``
command; each subcommand's ``func(args)`` returns a dict (JSON fields) with a human ``"table"``.

    dftjax ofdft train --electrons 1 --size 100 --model krr --out krr.npz --json
    dftjax ofdft solve --potential "5,0.5,0.05;3,0.45,0.08;2,0.6,0.04" --electrons 1 --json

Models for ``solve --model``: a shipped name (trained with M = 100: ``krr`` and the global neural
``nn-global`` for N = 1..4, ``nn-local`` for N = 1; a local network does not learn N >= 2, see
README), the analytic ``vw``,
``tfvw`` (lambda = 1), ``exact`` (the finite-difference Schroedinger equation), or a path to a file
written by ``train`` (``nn-local``/``nn-conv``/``nn-global``, optionally on a ``-vw``/``-tfvw`` base;
``nn-global`` is an MLP of ``--modes`` cosine coefficients of the whole density, see
:class:`dftjax.ofdft.neural.ProjectedKineticNet`).

``train --checkpoint-dir D`` keeps the resumable training state in D (written atomically); the
same command rerun after an interruption continues from it and ends with the same model, bit for
bit. ``train --self-consistent`` also solves the test potentials with the trained model.
"""
from __future__ import annotations

import functools
import pathlib
import sys
import time

MODELS_DIR = pathlib.Path(__file__).parent / "models"
ANALYTIC = ("vw", "tfvw", "exact")


class _Usage(ValueError):
    """Bad input (the top-level CLI reports ValueError as one line, exit status 2)."""


def _progress(message: str) -> None:
    print(f"[dftjax ofdft] {message}", file=sys.stderr, flush=True)


def _shipped_models() -> list[str]:
    if not MODELS_DIR.is_dir():
        return []
    return sorted({p.name.rsplit("_n", 1)[0] for p in MODELS_DIR.glob("*_n*_m100.npz")})


def _load_model(name: str, n_electrons: int):
    """(kind, model, metadata) for a shipped name or a path."""
    import numpy as np

    from dftjax.ofdft import krr, neural

    path = pathlib.Path(name)
    if not path.suffix:
        path = MODELS_DIR / f"{name}_n{n_electrons}_m100.npz"
        if not path.exists():
            raise _Usage(f"no shipped model {name!r} for N = {n_electrons}: expected one of "
                         f"{sorted(_shipped_models()) + list(ANALYTIC)} or a path to a .npz file")
    if not path.exists():
        raise _Usage(f"model file {str(path)!r} does not exist")
    with np.load(path) as f:
        kind = str(f["kind"])
    if kind == "krr":
        model, meta = krr.load(path)
    else:
        model, meta = neural.load(path)
    if int(meta.get("n_electrons", n_electrons)) != n_electrons:
        raise _Usage(f"model {str(path)!r} was trained for N = {meta['n_electrons']}, not {n_electrons}")
    return kind, model, meta


def _channels(text: str) -> tuple[int, ...]:
    try:
        channels = tuple(int(c) for c in text.split(","))
    except ValueError:
        channels = ()
    if not channels or any(c < 1 for c in channels):
        raise _Usage(f"--channels must be positive integers separated by commas; got {text!r}")
    return channels


def cmd_solve(args) -> dict:
    """One OF-DFT ground state of the box with the given wells, next to the exact one."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dftjax.ofdft import benchmark, box, data1d, krr, neural, solver
    from functionals import kinetic

    if args.electrons < 1:
        raise _Usage(f"--electrons must be >= 1; got {args.electrons}")
    wells = data1d.parse_wells(args.potential)
    exact = data1d.generate(wells[None], args.electrons)
    grid, dx = exact.grid, exact.dx
    v = jnp.asarray(exact.potentials[0])
    n = float(args.electrons)
    start = time.perf_counter()
    if args.model == "exact":
        density, energy, t = exact.densities[0], exact.energies[0], exact.kinetic_energies[0]
        info = {"method": "finite-difference Schroedinger equation"}
    else:
        precond = solver.default_preconditioner(len(grid))
        initial = jnp.asarray(n * 2.0 * np.sin(np.pi * grid) ** 2)
        if args.model in ("vw", "tfvw"):
            if args.model == "vw":
                kinetic_fn = functools.partial(box.von_weizsaecker_energy, dx=dx)
            else:
                def kinetic_fn(density):
                    tf = jnp.sum(kinetic.thomas_fermi_1d(None, box.spinless_features(density, dx))) * dx
                    return tf + box.von_weizsaecker_energy(density, dx)
            result = jax.jit(lambda v: solver.minimize_sqrt(kinetic_fn, v, initial, n, dx, max_iterations=1000,
                                                            preconditioner=precond))(v)
            info = {"method": f"{args.model}, L-BFGS in sqrt(n)"}
        else:
            kind, model, meta = _load_model(args.model, args.electrons)
            if kind == "krr":
                kinetic_fn = functools.partial(krr.predict, model)
                m, q = int(meta.get("pca_neighbours", 30)), int(meta.get("pca_components", 4))
                max_distance = 2.0 * benchmark.manifold_spacing(model)

                @jax.jit
                def run(v):
                    start_density = solver.lowest_energy_density(kinetic_fn, v, model.densities, dx)
                    return solver.minimize_projected(kinetic_fn, v, start_density, model.densities, dx,
                                                     m, q, 0.02 / n, 100, max_distance)
                result = run(v)
                info = {"method": f"KRR, projected gradient descent (local PCA m={m}, q={q})"}
            else:
                kinetic_fn = functools.partial(neural.kinetic_energy, model)
                result = jax.jit(lambda v: solver.minimize_sqrt(kinetic_fn, v, initial, n, dx, max_iterations=300,
                                                                tolerance=1e-7, preconditioner=precond))(v)
                kind_text = (f"global, {model.module.n_modes} cosine modes" if isinstance(model.module, neural.ProjectedKineticNet)
                             else f"kernel size {model.module.kernel_size}")
                info = {"method": f"neural ({kind_text}), L-BFGS in sqrt(n)"}
        density, energy, t = result.density, result.energy, result.kinetic_energy
        info["iterations"] = int(result.iterations)
    elapsed = time.perf_counter() - start
    density = np.asarray(density)
    out = {
        "model": args.model, "n_electrons": args.electrons, "wells": wells.tolist(),
        "energy": float(energy), "kinetic_energy": float(t), "density": density.tolist(),
        "exact_energy": float(exact.energies[0]), "exact_kinetic_energy": float(exact.kinetic_energies[0]),
        "energy_error_kcal_per_mol": float((energy - exact.energies[0]) * data1d.HARTREE_TO_KCAL_PER_MOL),
        "density_l2_error": float(np.sqrt(np.sum((density - exact.densities[0]) ** 2) * dx)),
        "seconds": elapsed, **info,
    }
    if args.plot:
        out["plot"] = _plot(args.plot, grid, density, exact, args.electrons, out)
    out["table"] = (f"{'':<16}{'OF (' + args.model + ')':>18}{'exact':>18}\n"
                    f"{'energy (Ha)':<16}{out['energy']:>18.8f}{out['exact_energy']:>18.8f}\n"
                    f"{'kinetic (Ha)':<16}{out['kinetic_energy']:>18.8f}{out['exact_kinetic_energy']:>18.8f}\n"
                    f"energy error {out['energy_error_kcal_per_mol']:.3f} kcal/mol, "
                    f"density L2 error {out['density_l2_error']:.2e}, {elapsed:.2f} s ({info['method']})")
    return out


def _plot(path, grid, density, exact, n_electrons, out, learned_density=None) -> str | None:
    """Densities and kinetic energy densities (exact: 1/2 sum |psi_i'|^2) to a PNG; None without
    matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _progress("matplotlib is not importable: no plot")
        return None
    import numpy as np

    from dftjax.ofdft import box, data1d

    _, _, orbitals = data1d.solve_box(exact.potentials, n_electrons, len(grid), return_orbitals=True)
    dx = exact.dx
    t_exact = sum(0.5 * np.asarray(box.density_gradient(np.asarray(o), dx)) ** 2 for o in orbitals[0])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(grid, exact.densities[0], "k-", label="exact")
    axes[0].plot(grid, density, "r--", label=f"OF ({out['model']})")
    axes[0].set_xlabel("x (bohr)")
    axes[0].set_ylabel("n(x) (1/bohr)")
    axes[0].legend()
    axes[1].plot(grid, t_exact, "k-", label="exact 1/2 sum |psi'|^2")
    if learned_density is not None:
        axes[1].plot(grid, learned_density, "r--", label="learned t(x)")
    axes[1].plot(grid, exact.kinetic_derivatives[0], "b:", label="exact dT/dn = mu - v")
    axes[1].set_xlabel("x (bohr)")
    axes[1].set_ylabel("hartree/bohr, hartree")
    axes[1].legend()
    fig.suptitle(f"N = {n_electrons}: E = {out.get('energy', float('nan')):.6f} Ha "
                 f"(exact {exact.energies[0]:.6f})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def cmd_train(args) -> dict:
    """Train a KRR or neural kinetic functional on the Snyder data set and test it on exact densities."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dftjax.ofdft import benchmark, data1d, krr, neural

    if args.size < 2 or args.electrons < 1 or args.test < 1:
        raise _Usage("--size must be >= 2, --electrons >= 1 and --test >= 1")
    model_name = args.model
    if not (model_name == "krr" or model_name.split("-")[0] == "nn"):
        raise _Usage(f"--model must be 'krr' or 'nn-local'/'nn-conv'/'nn-global' with optional '-vw'/'-tfvw'; "
                     f"got {model_name!r}")
    if model_name != "krr":
        parts = model_name.split("-")
        if (len(parts) < 2 or parts[1] not in ("local", "conv", "global")
                or (len(parts) > 2 and parts[2] not in ("vw", "tfvw")) or len(parts) > 3):
            raise _Usage(f"neural model names are nn-local|nn-conv|nn-global[-vw|-tfvw]; got {model_name!r}")
        kernel = 9 if parts[1] == "conv" else 1
        n_modes = args.modes if parts[1] == "global" else 0
        if parts[1] == "global" and n_modes < 1:
            raise _Usage(f"--modes must be >= 1; got {args.modes}")
        default_channels = {"local": (32, 32, 32), "conv": (16, 16, 16), "global": (32, 32)}[parts[1]]
        channels = _channels(args.channels) if args.channels else default_channels
        if args.steps < 1:
            raise _Usage(f"--steps must be >= 1; got {args.steps}")
    checkpoint_dir = pathlib.Path(args.checkpoint_dir) if args.checkpoint_dir else None
    if checkpoint_dir is not None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    out_path = pathlib.Path(args.out) if args.out else (
        (checkpoint_dir or pathlib.Path(".")) / f"{model_name}_n{args.electrons}_m{args.size}.npz")
    _progress(f"generating M = {args.size} training densities (N = {args.electrons})")
    train = benchmark.training_set(args.electrons, args.size)
    test = data1d.random_set(args.test, args.electrons, benchmark.TEST_SEED)
    start = time.perf_counter()
    if model_name == "krr":
        model = krr.fit_cross_validated(train.densities, train.kinetic_energies, train.dx)
        predict = functools.partial(krr.predict, model)
        hyper = {"length_scale": float(model.length_scale), "regularization": float(model.regularization)}
        _progress(f"cross-validated sigma = {hyper['length_scale']:.4g}, lambda = {hyper['regularization']:.1e}")
        validation = data1d.random_set(50, args.electrons, benchmark.VALIDATION_SEED)
        m, q = benchmark.choose_pca(model, validation)
        hyper.update(pca_neighbours=m, pca_components=q)
        krr.save(model, out_path, n_electrons=args.electrons, pca_neighbours=m, pca_components=q)
    else:
        options = neural.NeuralOptions(kernel_size=kernel, n_modes=n_modes, base=parts[2] if len(parts) > 2 else None,
                                       steps=args.steps, channels=channels, seed=args.seed)
        stem = f"{model_name}_n{args.electrons}_m{args.size}"
        state_path = checkpoint_dir / f"{stem}.state.pkl" if checkpoint_dir is not None else None
        resumed_from = 0
        if state_path is not None and state_path.exists():
            import pickle
            with open(state_path, "rb") as f:
                resumed_from = int(pickle.load(f).step)
            _progress(f"resuming from {state_path} (step {resumed_from} of {args.steps})")

        def checkpoint(step, model):
            if checkpoint_dir is not None:
                neural.save(model, checkpoint_dir / f"{stem}_step{step}.npz", n_electrons=args.electrons, step=step)

        model = neural.train(train.densities, train.kinetic_energies, train.kinetic_derivatives, train.dx,
                             args.electrons, options, verbose=True, callback=checkpoint,
                             checkpoint_path=state_path)
        predict = functools.partial(neural.kinetic_energy, model)
        hyper = {"kernel_size": kernel, "n_modes": n_modes, "channels": list(options.channels), "base": options.base,
                 "steps": args.steps, "resumed_from_step": resumed_from}
        neural.save(model, out_path, n_electrons=args.electrons, steps=args.steps, seed=args.seed)
    train_seconds = time.perf_counter() - start
    predicted = jax.jit(jax.vmap(predict))(jnp.asarray(test.densities))
    t_mae, t_max = benchmark.errors(predicted, test.kinetic_energies)
    out = {"model": model_name, "n_electrons": args.electrons, "M": args.size, "path": str(out_path),
           "n_test": args.test, "kinetic_mae_kcal_per_mol": t_mae, "kinetic_max_kcal_per_mol": t_max,
           "train_seconds": train_seconds, **hyper}
    sc_line = ""
    if args.self_consistent:
        _progress(f"self-consistent OF solves of the {args.test} test potentials")
        start = time.perf_counter()
        if model_name == "krr":
            result = benchmark.krr_solve(model, test.potentials, hyper["pca_neighbours"], hyper["pca_components"])
        else:
            result = benchmark.neural_solve(model, test.potentials, args.electrons, test.densities.mean(axis=0))
        sc_mae, sc_max = benchmark.errors(result.energy, test.energies)
        out.update(self_consistent_mae_kcal_per_mol=sc_mae, self_consistent_max_kcal_per_mol=sc_max,
                   density_l2_error_mean=float(np.mean(np.sqrt(
                       np.sum((np.asarray(result.density) - test.densities) ** 2, 1) * test.dx))),
                   self_consistent_seconds=time.perf_counter() - start)
        sc_line = (f"\nself-consistent energy on {args.test} test potentials: MAE {sc_mae:.3f} kcal/mol, "
                   f"max {sc_max:.3f} kcal/mol ({out['self_consistent_seconds']:.1f} s)")
    if args.plot:
        exact = test.take(slice(0, 1))
        learned = None
        if model_name != "krr":
            learned = neural.kinetic_energy_density(model, jnp.asarray(exact.densities[0]))
            learned = None if learned is None else np.asarray(learned)   # a global model has no t(x)
        out["plot"] = _plot(args.plot, test.grid, exact.densities[0], exact, args.electrons,
                            {"model": model_name, "energy": float(exact.energies[0])}, learned)
    out["table"] = (f"{model_name} N = {args.electrons}, M = {args.size} -> {out_path}\n"
                    f"kinetic energy on {args.test} exact test densities: MAE {t_mae:.3f} kcal/mol, "
                    f"max {t_max:.3f} kcal/mol ({train_seconds:.1f} s training){sc_line}")
    return out


def register(subparsers) -> None:
    """Add ``ofdft`` with the subcommands ``train`` and ``solve`` to an argparse subparsers object."""
    ofdft = subparsers.add_parser("ofdft", help="orbital-free DFT in the 1D box (learned kinetic functionals)")
    sub = ofdft.add_subparsers(dest="ofdft_command", required=True)

    train = sub.add_parser("train", help="train a KRR or neural kinetic functional (Snyder et al. data)")
    train.add_argument("--electrons", type=int, default=1, help="spinless fermions N (1..4)")
    train.add_argument("--size", type=int, default=100, help="training densities M")
    train.add_argument("--model", default="krr", help="krr | nn-local | nn-conv | nn-global [-vw | -tfvw]")
    train.add_argument("--steps", type=int, default=2000, help="Adam steps (neural)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--test", type=int, default=200, help="fresh test potentials")
    train.add_argument("--out", default=None, help="model file (.npz)")
    train.add_argument("--channels", default=None, help="hidden widths of the neural net, e.g. '16,16' "
                       "(default 32,32,32 local, 16,16,16 convolutional, 32,32 global)")
    train.add_argument("--modes", type=int, default=40,
                       help="cosine modes of the density fed to nn-global (its derivative lives in their span)")
    train.add_argument("--self-consistent", action="store_true",
                       help="also solve the test potentials self-consistently and report those errors")
    train.add_argument("--checkpoint-dir", default=None,
                       help="directory for the model, snapshots and the resumable training state: a rerun "
                            "with the same arguments continues from it and ends bit-identical")
    train.add_argument("--plot", default=None, metavar="PNG")
    train.add_argument("--json", action="store_true")
    train.set_defaults(func=cmd_train)

    solve = sub.add_parser("solve", help="OF-DFT ground state of one box potential")
    solve.add_argument("--potential", required=True, help="'a,b,c;a,b,c;...' depth, centre, width of each well")
    solve.add_argument("--electrons", type=int, default=1)
    solve.add_argument("--model", default="krr", help="krr | nn-global | nn-local | vw | tfvw | exact | PATH")
    solve.add_argument("--plot", default=None, metavar="PNG")
    solve.add_argument("--json", action="store_true")
    solve.set_defaults(func=cmd_solve)
