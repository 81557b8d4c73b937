"""KSR experiments of Li et al., PRL 126, 036401 (2021) on the 1D DMRG data set.

* :func:`h2_experiment` (the paper's Fig. 3): train a neural XC functional by KSR on two H2 bond
  lengths (R = 1.28 and 3.84 bohr) and test it on the 32 test bond lengths (0.40-6.00 bohr) against
  DMRG, with the 1D LDA as the baseline.
* :func:`ksr_experiment`: the same with any training molecules and test curves, e.g.
  :data:`H2_H4_TRAIN` (H2 and H4, a few geometries each) tested on H2-H2, H3 (spin-polarised) and
  H2+ (:func:`transfer_tests`).

Total energies in the results include the nuclear repulsion; errors are in mHa against DMRG.
Spin-polarised molecules (H3, H2+) are solved with separate up/down Kohn-Sham Hamiltonians, the
functional seeing the total density (a non-spin-resolved model) unless it was built with
``spin_resolved=True``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from dftjax import ksr
from dftjax.oned import data, ks, lda
from dftjax.oned.blas import single_threaded_blas
from functionals.ksr import init_params, make_ksr_functional

CHEMICAL_ACCURACY = 1.6e-3  # hartree, the paper's threshold

# H2 and H4, a few geometries each, none of them in the H2 or H4 test lists (data README)
H2_H4_TRAIN = {"h2": (128, 256, 384), "h4": (144, 264)}
H2_H4_VALIDATION = {"h2": (168, 440), "h4": (184,)}


def transfer_tests() -> dict[str, tuple[int, ...]]:
    """Test curves of the H2 + H4 experiment: the H2 and H2-H2 test lists of the data README, and
    every other geometry of H3 and H2+ (which have no test list), distances x 100 (bohr)."""
    every_other = lambda name: tuple(int(d) for d in data.load_dataset(name).distances_x100[::2])  # noqa: E731
    return {"h2": data.TEST_DISTANCES_X100["h2"], "h2_h2": data.TEST_DISTANCES_X100["h2_h2"],
            "h3": every_other("h3"), "h2_plus": every_other("h2_plus")}


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


def kohn_sham_options(dataset: data.Dataset, options: ksr.KSROptions) -> ks.KohnShamOptions:
    """The KS settings of a molecule: spin-polarised iff it has unpaired electrons."""
    polarized = dataset.num_unpaired_electrons > 0
    return ks.KohnShamOptions(num_electrons=dataset.num_electrons,
                              num_unpaired_electrons=dataset.num_unpaired_electrons if polarized else 0,
                              spin_polarized=polarized, mixing=options.mixing,
                              mixing_decay=options.mixing_decay, decaying_weight=options.decaying_weight)


def lda_energies(problems, ks_options: ks.KohnShamOptions, tolerance: float = 1e-8):
    """Converged LDA (Baker et al. 2015) electronic energies (m,) and densities of problems."""
    energies, densities = [], []
    cache = {}
    ks_options = dataclasses.replace(ks_options, mixing_decay=1.0, decaying_weight="input")
    for problem in problems:
        key = id(problem.discretization)
        if key not in cache:
            cache[key] = jax.jit(lambda s, d=problem.discretization: ks.kohn_sham_converged(
                s, d, lda.lsda, None, ks_options, tolerance=tolerance, max_iterations=300))
        with single_threaded_blas():
            state = cache[key](problem.system)
        energies.append(float(state.total_energy))
        densities.append(np.asarray(state.density))
    return np.array(energies), densities


def _problems(name: str, distances_x100: Sequence[int], half_width: float):
    dataset = data.load_dataset(name)
    return dataset, [data.make_problem(dataset, r, half_width=half_width) for r in distances_x100]


def evaluate_curve(name: str, distances_x100: Sequence[int], xc, params, options: ksr.KSROptions, *,
                   half_width: float = 12.0, with_lda: bool = True) -> tuple[list[dict], dict]:
    """Run the trained functional (``options.num_iterations`` KS iterations, as in training) on one
    curve of the data set; returns per-geometry rows (sorted by distance) and the curve's metrics."""
    dataset, problems = _problems(name, distances_x100, half_width)
    ks_options = kohn_sham_options(dataset, options)
    groups, members = _grouped(problems, ks_options)
    energies, densities = ksr.evaluate(groups, xc, params, options.num_iterations)
    ordered = [p for group in members for p in group]
    model_e = np.concatenate(energies)
    model_n = [n for group in densities for n in group]
    nuclear = np.array([float(p.system.nuclear_energy) for p in ordered])
    reference = np.array([p.energy for p in ordered])
    errors = model_e - reference
    density_errors = _density_errors(model_n, ordered)
    if not np.all(np.isfinite(model_e)):
        raise FloatingPointError(f"{name}: non-finite KSR energies (a diverged model?)")
    metrics = {"count": len(ordered), "mae_mha": float(np.mean(np.abs(errors)) * 1e3),
               "max_error_mha": float(np.max(np.abs(errors)) * 1e3),
               "max_error_distance": float(ordered[int(np.argmax(np.abs(errors)))].distance),
               "mean_density_error": float(np.mean(density_errors))}
    rows = [{"molecule": name, "distance": p.distance, "energy": float(e + z), "dmrg_energy": float(r + z),
             "density_error": float(d)}
            for p, e, r, z, d in zip(ordered, model_e, reference, nuclear, density_errors)]
    if with_lda:
        lda_e, lda_n = lda_energies(ordered, ks_options)
        lda_errors = lda_e - reference
        metrics.update(lda_mae_mha=float(np.mean(np.abs(lda_errors)) * 1e3),
                       lda_max_error_mha=float(np.max(np.abs(lda_errors)) * 1e3),
                       lda_mean_density_error=float(np.mean(_density_errors(lda_n, ordered))))
        for row, e, z in zip(rows, lda_e, nuclear):
            row["lda_energy"] = float(e + z)
    order = np.argsort([row["distance"] for row in rows])
    return [rows[i] for i in order], metrics


def test_mae_mha(name: str, distances_x100: Sequence[int], xc, options: ksr.KSROptions, *,
                 half_width: float = 12.0) -> Callable[[Any], float]:
    """``params -> MAE (mHa)`` of total energies on one curve, compiled once (learning curves)."""
    dataset, problems = _problems(name, distances_x100, half_width)
    groups = ksr.make_groups(problems, kohn_sham_options(dataset, options))
    reference = np.concatenate([np.asarray(g.energies) for g in groups])
    runs = [jax.jit(lambda p, g=g: ksr.run_group(g, xc, p, options.num_iterations)[0].total_energy)
            for g in groups]

    def mae(params) -> float:
        with single_threaded_blas():
            energies = np.concatenate([np.asarray(run(params)) for run in runs])
        return float(np.mean(np.abs(energies - reference)) * 1e3)

    return mae


def ksr_experiment(train: Mapping[str, Sequence[int]], tests: Mapping[str, Sequence[int]], *,
                   model: str = "global", options: ksr.KSROptions | None = None,
                   validation: Mapping[str, Sequence[int]] | None = None,
                   model_options: Mapping[str, Any] | None = None, params=None,
                   half_width: float = 12.0, checkpoint_dir: str | None = None, with_lda: bool = True,
                   learning_curve: str | None = None, keep_params: bool = False,
                   progress: Callable[[str], None] = ksr._progress) -> dict:
    """Train by KSR on ``train`` ({molecule: distances x 100}), validate on ``validation``, test on
    every curve of ``tests``.

    Args:
        model, model_options: :func:`functionals.ksr.make_ksr_functional` arguments.
        params: start from these parameters instead of a random initialisation (``options.seed``);
            with ``options.steps == 0`` this evaluates a trained functional.
        learning_curve: a curve of ``tests`` on which to evaluate the MAE of the parameters of every
            ``options.validate_every``-th step after training (outside the timed training): gives
            the step and training time at which it first drops below chemical accuracy.
        keep_params: also return the selected parameters under ``"_params"`` (not JSON).

    Returns:
        a JSON-serialisable dict: training settings and timings, ``curves`` ({molecule: metrics}),
        ``test`` (one row per test geometry: ``molecule``, ``distance`` (bohr), ``energy``,
        ``dmrg_energy``, ``lda_energy`` (hartree, with nuclear repulsion), ``density_error``),
        ``mae_mha``/``max_error_mha``/``mean_density_error`` (and ``lda_*``) over all test rows,
        and ``history`` (per-step loss, validation (NaN where not computed), wall and CPU times).
    """
    options = options or ksr.KSROptions()
    if not train and options.steps:
        raise ValueError("no training molecules")
    unknown = set(model_options or {}) - {"use_bias", "negativity", "spin_resolved", "features",
                                          "num_global", "kernel_size", "self_interaction_gate"}
    if unknown:
        raise ValueError(f"unknown model options {sorted(unknown)}")
    if learning_curve is not None and learning_curve not in tests:
        raise ValueError(f"learning_curve {learning_curve!r} is not a test curve")
    start = time.perf_counter()
    with single_threaded_blas():
        train_problems, train_options, validation_problems, validation_options = [], [], [], []
        for name, distances in train.items():
            dataset, problems = _problems(name, distances, half_width)
            train_problems += problems
            train_options += [kohn_sham_options(dataset, options)] * len(problems)
        for name, distances in (validation or {}).items():
            dataset, problems = _problems(name, distances, half_width)
            validation_problems += problems
            validation_options += [kohn_sham_options(dataset, options)] * len(problems)
        first = (train_problems or validation_problems or [None])[0]
        if first is None:
            first = _problems(next(iter(tests)), tests[next(iter(tests))][:1], half_width)[1][0]
        dx = float(first.discretization.dx)
        module, xc = make_ksr_functional(model, dx=dx, **dict(model_options or {}))
        if params is None:
            params = init_params(module, jax.random.PRNGKey(options.seed), first.density.size)
        train_groups = ksr.make_groups(train_problems, train_options) if train_problems else []
        validation_groups = ksr.make_groups(validation_problems, validation_options) \
            if validation_problems else []
        progress(f"KSR {model}: training on {dict(train)} (x100 bohr), {options.steps} "
                 f"{options.optimizer} steps, {options.num_iterations} KS iterations")
        snapshots = {}

        def keep(step, p):
            if learning_curve is not None and (step % options.validate_every == 0 or step == options.steps):
                snapshots[step] = p

        train_start = time.perf_counter()
        if options.steps:
            state, history = ksr.train(params, xc, train_groups, options, validation_groups=validation_groups,
                                       checkpoint_dir=checkpoint_dir, progress=progress, on_step=keep)
            best_params, steps, best_step, final_loss = (state.best_params, int(state.step),
                                                         int(state.best_step), float(state.loss))
        else:
            history = {"loss": [], "validation": [], "time_s": [], "cpu_s": []}
            best_params, steps, best_step, final_loss = params, 0, 0, float("nan")
        train_time = time.perf_counter() - train_start
        steps_run = len(history["loss"])
        result = {
            "model": model, "model_options": dict(model_options or {}), "dx": dx, "optimizer": options.optimizer,
            "steps": steps, "best_step": best_step, "num_iterations": options.num_iterations,
            "options": dataclasses.asdict(options), "final_loss": final_loss,
            "train": {k: [d / 100 for d in v] for k, v in train.items()},
            "train_time_s": train_time, "seconds_per_step": train_time / steps_run if steps_run else None,
            "train_cpu_s": history["cpu_s"][-1] if steps_run else 0.0,
        }
        if steps_run > 1:  # after the first step, which includes compilation
            result["seconds_per_step_after_first"] = (history["time_s"][-1] - history["time_s"][0]) / (steps_run - 1)
            result["cpu_seconds_per_step_after_first"] = (history["cpu_s"][-1] - history["cpu_s"][0]) / (steps_run - 1)
            result["first_step_s"] = history["time_s"][0]

        rows, curves = [], {}
        for name, distances in tests.items():
            progress(f"testing on {name} ({len(distances)} geometries)")
            curve_rows, curves[name] = evaluate_curve(name, distances, xc, best_params, options,
                                                      half_width=half_width, with_lda=with_lda)
            rows += curve_rows
        errors = np.array([row["energy"] - row["dmrg_energy"] for row in rows])
        result.update(mae_mha=float(np.mean(np.abs(errors)) * 1e3),
                      max_error_mha=float(np.max(np.abs(errors)) * 1e3),
                      mean_density_error=float(np.mean([row["density_error"] for row in rows])))
        if with_lda:
            lda_errors = np.array([row["lda_energy"] - row["dmrg_energy"] for row in rows])
            result.update(lda_mae_mha=float(np.mean(np.abs(lda_errors)) * 1e3),
                          lda_max_error_mha=float(np.max(np.abs(lda_errors)) * 1e3),
                          lda_mean_density_error=float(np.mean([c["lda_mean_density_error"]
                                                                for c in curves.values()])))
        result["curves"] = curves
        result["test"] = rows
        if learning_curve is not None and snapshots:
            mae = test_mae_mha(learning_curve, tests[learning_curve], xc, options, half_width=half_width)
            curve = [(step, mae(p)) for step, p in sorted(snapshots.items())]
            result["learning_curve"] = [{"step": s, "mae_mha": m, "time_s": history["time_s"][s - 1]}
                                        for s, m in curve]
            reached = [point for point in result["learning_curve"] if point["mae_mha"] < CHEMICAL_ACCURACY * 1e3]
            result["chemical_accuracy_step"] = reached[0]["step"] if reached else None
            result["chemical_accuracy_time_s"] = reached[0]["time_s"] if reached else None
    result["history"] = history
    if keep_params:
        result["_params"] = best_params
    result["wall_time_s"] = time.perf_counter() - start
    return result


def h2_experiment(model: str = "global", options: ksr.KSROptions | None = None, *,
                  half_width: float = 12.0, checkpoint_dir: str | None = None,
                  progress: Callable[[str], None] = ksr._progress, train_x100=data.H2_TRAIN_DISTANCES_X100,
                  test_x100=data.TEST_DISTANCES_X100["h2"], validation_x100=data.H2_VALIDATION_DISTANCES_X100,
                  with_lda: bool = True, model_options: Mapping[str, Any] | None = None, params=None,
                  learning_curve: bool = False) -> dict:
    """Train on ``train_x100``, validate on ``validation_x100``, test on ``test_x100`` (distances x 100,
    bohr) of H2; return metrics (mHa, including nuclear repulsion in total energies) and per-geometry
    rows (``test``). See :func:`ksr_experiment`."""
    return ksr_experiment({"h2": tuple(train_x100)}, {"h2": tuple(test_x100)}, model=model, options=options,
                          validation={"h2": tuple(validation_x100)} if validation_x100 else None,
                          model_options=model_options, params=params, half_width=half_width,
                          checkpoint_dir=checkpoint_dir, with_lda=with_lda,
                          learning_curve="h2" if learning_curve else None, progress=progress)
