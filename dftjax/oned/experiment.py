"""The H2 experiment of Li et al., PRL 126, 036401 (2021): train a neural XC functional by KSR on two
bond lengths (R = 1.28 and 3.84 bohr) and test it on the 32 test bond lengths against DMRG, with the
1D LDA as the baseline."""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import numpy as np

from dftjax import ksr
from dftjax.oned import data, ks, lda
from functionals.ksr import init_params, make_ksr_functional

CHEMICAL_ACCURACY = 1.6e-3  # hartree, the paper's threshold


def _density_errors(predicted, problems):
    """int |n - n_DMRG| dx per problem."""
    return np.array([np.sum(np.abs(n - p.density)) * float(p.discretization.dx)
                     for n, p in zip(predicted, problems)])


def _grouped(problems, ks_options):
    """Groups and the problems of each group in the same order."""
    groups = ksr.make_groups(problems, ks_options)
    members = []
    for group in groups:
        members.append([p for p in problems if p.discretization is group.discretization])
    return groups, members


def lda_energies(problems, ks_options: ks.KohnShamOptions, tolerance: float = 1e-8):
    """Converged LDA (Baker et al. 2015) electronic energies (m,) and densities of problems."""
    energies, densities = [], []
    cache = {}
    ks_options = dataclasses.replace(ks_options, mixing_decay=1.0)
    for problem in problems:
        key = id(problem.discretization)
        if key not in cache:
            cache[key] = jax.jit(lambda s, d=problem.discretization: ks.kohn_sham_converged(
                s, d, lda.lsda, None, ks_options, tolerance=tolerance, max_iterations=300))
        state = cache[key](problem.system)
        energies.append(float(state.total_energy))
        densities.append(np.asarray(state.density))
    return np.array(energies), densities


def h2_experiment(model: str = "global", options: ksr.KSROptions | None = None, *,
                  half_width: float = 12.0, checkpoint_dir: str | None = None,
                  progress: Callable[[str], None] = ksr._progress, train_x100=data.H2_TRAIN_DISTANCES_X100,
                  test_x100=data.TEST_DISTANCES_X100["h2"], validation_x100=data.H2_VALIDATION_DISTANCES_X100,
                  with_lda: bool = True) -> dict:
    """Train on ``train_x100``, validate on ``validation_x100``, test on ``test_x100`` (distances x 100,
    bohr); return metrics (mHa, including nuclear repulsion in total energies) and per-geometry rows."""
    options = options or ksr.KSROptions()
    start = time.perf_counter()
    dataset = data.load_dataset("h2")
    make = lambda r: data.make_problem(dataset, r, half_width=half_width)  # noqa: E731
    train_problems = [make(r) for r in train_x100]
    validation_problems = [make(r) for r in validation_x100]
    test_problems = [make(r) for r in test_x100]
    ks_options = ks.KohnShamOptions(num_electrons=dataset.num_electrons, mixing=options.mixing,
                                    mixing_decay=options.mixing_decay)
    module, xc = make_ksr_functional(model, dx=float(train_problems[0].discretization.dx))
    params = init_params(module, jax.random.PRNGKey(options.seed), train_problems[0].density.size)
    train_groups = ksr.make_groups(train_problems, ks_options)
    validation_groups = ksr.make_groups(validation_problems, ks_options) if validation_problems else []
    progress(f"KSR {model}: training on R = {[r / 100 for r in train_x100]} bohr, "
             f"{options.steps} {options.optimizer} steps, {options.num_iterations} KS iterations")
    train_start = time.perf_counter()
    state, history = ksr.train(params, xc, train_groups, options, validation_groups=validation_groups,
                               checkpoint_dir=checkpoint_dir, progress=progress)
    train_time = time.perf_counter() - train_start
    steps_run = len(history["loss"])

    progress(f"testing on {len(test_problems)} bond lengths")
    test_groups, members = _grouped(test_problems, ks_options)
    energies, densities = ksr.evaluate(test_groups, xc, state.best_params, options.num_iterations)
    ordered = [p for group in members for p in group]
    model_e = np.concatenate(energies)
    model_n = [n for group in densities for n in group]
    nuclear = np.array([float(p.system.nuclear_energy) for p in ordered])
    reference = np.array([p.energy for p in ordered])
    errors = model_e - reference
    density_errors = _density_errors(model_n, ordered)
    result = {
        "model": model, "optimizer": options.optimizer, "steps": int(state.step),
        "best_step": int(state.best_step), "num_iterations": options.num_iterations,
        "final_loss": float(state.loss),
        "mae_mha": float(np.mean(np.abs(errors)) * 1e3), "max_error_mha": float(np.max(np.abs(errors)) * 1e3),
        "mean_density_error": float(np.mean(density_errors)),
        "train_time_s": train_time, "seconds_per_step": train_time / steps_run if steps_run else None,
        "train_cpu_s": history["cpu_s"][-1] if steps_run else 0.0,
    }
    if steps_run > 1:  # after the first step, which includes compilation
        result["seconds_per_step_after_first"] = (history["time_s"][-1] - history["time_s"][0]) / (steps_run - 1)
        result["cpu_seconds_per_step_after_first"] = (history["cpu_s"][-1] - history["cpu_s"][0]) / (steps_run - 1)
    rows = [{"distance": p.distance, "energy": float(e + z), "dmrg_energy": float(r + z),
             "density_error": float(d)}
            for p, e, r, z, d in zip(ordered, model_e, reference, nuclear, density_errors)]
    if with_lda:
        progress("LDA baseline")
        lda_e, lda_n = lda_energies(ordered, ks_options)
        lda_errors = lda_e - reference
        result.update(lda_mae_mha=float(np.mean(np.abs(lda_errors)) * 1e3),
                      lda_max_error_mha=float(np.max(np.abs(lda_errors)) * 1e3),
                      lda_mean_density_error=float(np.mean(_density_errors(lda_n, ordered))))
        for row, e, z in zip(rows, lda_e, nuclear):
            row["lda_energy"] = float(e + z)
    order = np.argsort([row["distance"] for row in rows])
    result["test"] = [rows[i] for i in order]
    result["history"] = history
    result["wall_time_s"] = time.perf_counter() - start
    return result
