"""The 1D benchmark of Snyder et al. (2012) / Brockherde et al. (2017): learned kinetic functionals,
errors on exact densities and self-consistent errors from the OF solver, in kcal/mol.

Training sets (M densities): the first M of Snyder et al.'s 100 paper potentials for M <= 100;
for M = 200, those 100 plus 100 fresh ones (seed 2012). Validation (choosing the local-PCA
neighbours m and components q of the projected minimisation): 50 fresh potentials (seed 7). Test:
``n_test`` fresh potentials (seed 2017). All fresh potentials come from the paper's distribution.

    python -m dftjax.ofdft.benchmark --electrons 1 --sizes 20,50,100,200 --out results.json
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from dftjax import atomic
from dftjax.ofdft import data1d, krr, neural, solver

KCAL = data1d.HARTREE_TO_KCAL_PER_MOL
TEST_SEED, VALIDATION_SEED, EXTRA_TRAINING_SEED = 2017, 7, 2012

#: Brockherde et al., Nat. Commun. 8, 872 (2017), Table I, N = 1 (kcal/mol): M -> (self-consistent
#: MAE, max, kinetic-energy MAE, max).
PAPER_TABLE = {20: (7.7, 47, 7.7, 60), 50: (1.6, 30, 1.3, 7.3), 100: (0.74, 17, 0.2, 2.6),
               200: (0.17, 2.9, 0.039, 0.6)}

#: (neighbours m, components q) tried for the projected minimisation of KRR models.
PCA_GRID = ((10, 2), (20, 2), (10, 3), (20, 4), (30, 4), (40, 4))


def _progress(message: str) -> None:
    print(f"[ofdft] {message}", file=sys.stderr, flush=True)


def training_set(n_electrons: int, size: int) -> data1d.BoxDataset:
    """The M = ``size`` training set (see the module docstring)."""
    wells = data1d.load_paper_potentials()
    if size > len(wells):
        wells = np.concatenate([wells, data1d.random_wells(size - len(wells), EXTRA_TRAINING_SEED)])
    return data1d.generate(wells[:size], n_electrons)


def krr_solve(model: krr.KernelRidgeModel, potentials, n_neighbours: int, n_components: int,
              step_size: float = 0.02, iterations: int = 100, batch: int = 250) -> solver.OFResult:
    """Self-consistent OF solutions (batched over potentials (P, G)) with a KRR model: start from
    the training density of lowest model energy, then projected gradient descent."""
    kinetic_fn = functools.partial(krr.predict, model)
    dx = float(model.dx)
    n_neighbours = min(n_neighbours, model.densities.shape[0])
    max_distance = 2.0 * manifold_spacing(model)

    @jax.jit
    @jax.vmap
    def one(v):
        start = solver.lowest_energy_density(kinetic_fn, v, model.densities, dx)
        return solver.minimize_projected(kinetic_fn, v, start, model.densities, dx, n_neighbours,
                                         n_components, step_size / model.densities[0].sum() / dx,
                                         iterations, max_distance)

    potentials = jnp.asarray(potentials)
    parts = [one(potentials[i:i + batch]) for i in range(0, len(potentials), batch)]
    return jax.tree_util.tree_map(lambda *x: jnp.concatenate(x), *parts)


def neural_solve(model: neural.NeuralModel, potentials, n_electrons: int, start_density,
                 preconditioner=None, batch: int = 250) -> solver.OFResult:
    """Self-consistent OF solutions (batched over potentials (P, G)) with a neural functional:
    L-BFGS in sqrt(n) from ``start_density`` (G,) (the benchmark: the mean test density), at most
    300 iterations, |grad| < 1e-7, the box preconditioner."""
    kinetic_fn = functools.partial(neural.kinetic_energy, model)
    dx = float(model.dx)
    if preconditioner is None:
        preconditioner = solver.default_preconditioner(len(start_density))
    start_density = jnp.asarray(start_density)
    solve = jax.jit(jax.vmap(lambda v: solver.minimize_sqrt(
        kinetic_fn, v, start_density, float(n_electrons), dx, max_iterations=300, tolerance=1e-7,
        preconditioner=preconditioner)))
    potentials = jnp.asarray(potentials)
    parts = [solve(potentials[i:i + batch]) for i in range(0, len(potentials), batch)]
    return jax.tree_util.tree_map(lambda *x: jnp.concatenate(x), *parts)


def manifold_spacing(model: krr.KernelRidgeModel) -> float:
    """The largest distance from a training density to its nearest other training density."""
    sq = np.array(krr.squared_distances(model.densities, model.densities, float(model.dx)))
    np.fill_diagonal(sq, np.inf)
    return float(np.sqrt(sq.min(axis=1).max()))


def errors(predicted, exact) -> tuple[float, float]:
    """(MAE, max) of |predicted - exact| in kcal/mol."""
    e = np.abs(np.asarray(predicted) - np.asarray(exact)) * KCAL
    return float(e.mean()), float(e.max())


def choose_pca(model, validation: data1d.BoxDataset, grid=PCA_GRID):
    """(m, q) with the lowest self-consistent energy MAE on the validation set."""
    best = None
    for m, q in grid:
        if m > model.densities.shape[0] or q >= m:
            continue
        result = krr_solve(model, validation.potentials, m, q)
        mae = errors(result.energy, validation.energies)[0]
        mae = mae if np.isfinite(mae) else np.inf
        _progress(f"  validation m={m} q={q}: self-consistent MAE {mae:.3f} kcal/mol")
        if best is None or mae < best[0]:
            best = (mae, m, q)
    return best[1], best[2]


def run_krr(n_electrons: int, sizes, test: data1d.BoxDataset, validation: data1d.BoxDataset,
            save_dir=None) -> list[dict]:
    rows = []
    for size in sizes:
        start = time.perf_counter()
        train = training_set(n_electrons, size)
        model = krr.fit_cross_validated(train.densities, train.kinetic_energies, train.dx)
        predicted = jax.jit(jax.vmap(functools.partial(krr.predict, model)))(jnp.asarray(test.densities))
        t_mae, t_max = errors(predicted, test.kinetic_energies)
        m, q = choose_pca(model, validation)
        result = krr_solve(model, test.potentials, m, q)
        sc_mae, sc_max = errors(result.energy, test.energies)
        density_error = float(np.mean(np.sqrt(np.sum((np.asarray(result.density) - test.densities) ** 2, 1)
                                              * test.dx)))
        row = {"model": "krr", "n_electrons": n_electrons, "M": size,
               "length_scale": float(model.length_scale), "regularization": float(model.regularization),
               "pca_neighbours": m, "pca_components": q,
               "kinetic_mae": t_mae, "kinetic_max": t_max, "self_consistent_mae": sc_mae,
               "self_consistent_max": sc_max, "density_l2_error_mean": density_error,
               "seconds": time.perf_counter() - start}
        if n_electrons == 1 and size in PAPER_TABLE:
            row["paper"] = dict(zip(("self_consistent_mae", "self_consistent_max", "kinetic_mae", "kinetic_max"),
                                    PAPER_TABLE[size]))
        _progress(json.dumps(row))
        rows.append(row)
        if save_dir is not None:
            krr.save(model, f"{save_dir}/krr_n{n_electrons}_m{size}.npz", n_electrons=n_electrons,
                     pca_neighbours=m, pca_components=q)
    return rows


def run_neural(n_electrons: int, sizes, test: data1d.BoxDataset, options: neural.NeuralOptions,
               label: str, save_dir=None, projected_with=None) -> list[dict]:
    rows = []
    dx = test.dx
    start_density = jnp.asarray(test.densities.mean(axis=0))
    precond = solver.default_preconditioner(len(test.grid))
    for size in sizes:
        start = time.perf_counter()
        train = training_set(n_electrons, size)
        model = neural.train(train.densities, train.kinetic_energies, train.kinetic_derivatives, dx,
                             n_electrons, options, verbose=True)
        kinetic_fn = functools.partial(neural.kinetic_energy, model)
        predicted = jax.jit(jax.vmap(kinetic_fn))(jnp.asarray(test.densities))
        t_mae, t_max = errors(predicted, test.kinetic_energies)
        result = neural_solve(model, test.potentials, n_electrons, start_density, precond)
        sc_mae, sc_max = errors(result.energy, test.energies)
        density_error = float(np.mean(np.sqrt(np.sum((np.asarray(result.density) - test.densities) ** 2, 1)
                                              * test.dx)))
        row = {"model": label, "n_electrons": n_electrons, "M": size, "kinetic_mae": t_mae,
               "kinetic_max": t_max, "self_consistent_mae": sc_mae, "self_consistent_max": sc_max,
               "density_l2_error_mean": density_error,
               "median_iterations": float(np.median(np.asarray(result.iterations))),
               "seconds": time.perf_counter() - start}
        _progress(json.dumps(row))
        rows.append(row)
        if save_dir is not None:
            neural.save(model, f"{save_dir}/{label}_n{n_electrons}_m{size}.npz", n_electrons=n_electrons)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--electrons", type=int, default=1)
    parser.add_argument("--sizes", default="20,50,100,200")
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--models", default="krr")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--modes", type=int, default=40)
    parser.add_argument("--save-dir", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    sizes = [int(s) for s in args.sizes.split(",")]
    _progress(f"generating {args.test} test and 50 validation systems, N = {args.electrons}")
    test = data1d.random_set(args.test, args.electrons, TEST_SEED)
    validation = data1d.random_set(50, args.electrons, VALIDATION_SEED)
    rows = []
    for name in args.models.split(","):
        if name == "krr":
            rows += run_krr(args.electrons, sizes, test, validation, args.save_dir)
        elif name.startswith("nn"):
            # nn-local, nn-conv, nn-local-vw, nn-conv-tfvw, ...
            # nn-global[-vw]: the MLP of args.modes cosine coefficients of the density
            parts = name.split("-")
            kernel = 9 if parts[1] == "conv" else 1
            base = parts[2] if len(parts) > 2 else None
            channels = {"local": (32, 32, 32), "conv": (16, 16, 16), "global": (32, 32)}[parts[1]]
            options = neural.NeuralOptions(kernel_size=kernel, base=base, steps=args.steps, channels=channels,
                                           n_modes=args.modes if parts[1] == "global" else 0)
            rows += run_neural(args.electrons, sizes, test, options, name, args.save_dir)
        if args.out:
            atomic.write_json(args.out, rows, indent=1)
    return rows


if __name__ == "__main__":
    main()
