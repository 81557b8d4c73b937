"""KSR training (dftjax.ksr): the loss goes down, checkpoints resume exactly."""
import jax
import numpy as np
import pytest

from dftjax import ksr
from dftjax.oned import data, ks
from functionals.ksr import init_params, make_ksr_functional


@pytest.fixture(scope="module")
def setup():
    dataset = data.load_dataset("h2")
    problems = [data.make_problem(dataset, r, half_width=3.2) for r in (128, 384)]
    groups = ksr.make_groups(problems, ks.KohnShamOptions(num_electrons=2))
    module, xc = make_ksr_functional("local", dx=0.08, features=(4,))
    params = init_params(module, jax.random.PRNGKey(0), problems[0].density.size)
    return groups, xc, params


def test_adam_lowers_loss_and_resume_is_exact(setup, tmp_path):
    groups, xc, params = setup
    options = ksr.KSROptions(steps=4, num_iterations=4, optimizer="adam", learning_rate=1e-2,
                             checkpoint_every=1)
    full, history = ksr.train(params, xc, groups, options, progress=lambda m: None)
    assert history["loss"][-1] < history["loss"][0]
    # interrupted after 2 steps, resumed from the checkpoint: the same parameters
    ksr.train(params, xc, groups, options, checkpoint_dir=str(tmp_path), stop_after=2, progress=lambda m: None)
    assert int(ksr.load_checkpoint(str(tmp_path)).step) == 2
    resumed, rest = ksr.train(params, xc, groups, options, checkpoint_dir=str(tmp_path), progress=lambda m: None)
    assert len(rest["loss"]) == 2
    for a, b in zip(jax.tree_util.tree_leaves(full.params), jax.tree_util.tree_leaves(resumed.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_lbfgs_lowers_loss_and_keeps_best_validation(setup):
    groups, xc, params = setup
    options = ksr.KSROptions(steps=3, num_iterations=4, validate_every=1)
    state, history = ksr.train(params, xc, groups, options, validation_groups=groups, progress=lambda m: None)
    assert history["loss"][-1] < history["loss"][0]
    best = int(np.nanargmin(history["validation"])) + 1
    assert int(state.best_step) == best


def _ksr1d_parser():
    import argparse

    from dftjax.oned import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_parses_and_rejects_bad_input(monkeypatch):
    import sys

    parser = _ksr1d_parser()
    args = parser.parse_args(["train", "ksr1d", "--model", "local", "--steps", "-1", "--json"])
    assert args.model == "local" and args.json
    with pytest.raises(ValueError, match="--steps"):
        args.func(args)
    # without matplotlib (here: its import fails, installed or not) --plot is refused before training
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    args = parser.parse_args(["train", "ksr1d", "--plot", "curves.png"])
    with pytest.raises(ValueError, match="--plot needs matplotlib"):
        args.func(args)


def test_cli_plot_writes_the_test_curves_as_png(monkeypatch, tmp_path):
    """``--plot`` draws the rows the experiment returned into a PNG, one column per molecule. The
    experiment is replaced by a fixed result (the real run with --plot is the slow
    test_paper_h2_experiment_with_cli_defaults)."""
    pytest.importorskip("matplotlib", reason="--plot draws with matplotlib")
    import struct

    from dftjax.oned import cli, experiment

    parser = _ksr1d_parser()
    args = parser.parse_args(["train", "ksr1d", "--plot", str(tmp_path / "missing" / "curves.png")])
    with pytest.raises(ValueError, match="no directory"):
        args.func(args)

    rows = [{"molecule": name, "distance": r, "energy": -1.0 - 0.1 * r, "dmrg_energy": -1.001 - 0.1 * r,
             "lda_energy": -0.95 - 0.1 * r} for name in ("h2", "h4") for r in (1.0, 2.0, 3.0)]
    result = {"model": "global", "optimizer": "lbfgs", "steps": 0, "best_step": 0, "train_time_s": 0.0,
              "seconds_per_step": None, "mae_mha": 1.0, "max_error_mha": 1.0, "mean_density_error": 0.0,
              "history": {"loss": [], "validation": [], "time_s": [], "cpu_s": []}, "test": rows}
    monkeypatch.setattr(experiment, "ksr_experiment", lambda *a, **k: dict(result))
    drawn, plot_curves = [], cli.plot_curves
    monkeypatch.setattr(cli, "plot_curves", lambda res, path: (drawn.append((res["test"], path)),
                                                               plot_curves(res, path)))
    plot = tmp_path / "curves.png"
    args = parser.parse_args(["train", "ksr1d", "--steps", "0", "--plot", str(plot)])
    assert args.func(args)["plot"] == str(plot)
    assert drawn == [(rows, str(plot))]
    png = plot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    # two molecules: figsize (2 x 4.5, 7) inches at 110 dpi
    assert struct.unpack(">II", png[16:24]) == (990, 770)
    assert len(png) > 10_000  # axes, three curves and the error band per molecule (measured 74 kB)


def test_output_fraction_decay_is_li_et_al_mixing():
    # decaying_weight="output": n_next = n_in + a_k (n_out - n_in), a_k = 0.5 * 0.9^k (Li et al. 2021)
    from dftjax.oned import lda

    dataset = data.load_dataset("h2")
    problem = data.make_problem(dataset, 128, half_width=3.2)
    options = ks.KohnShamOptions(num_electrons=2, decaying_weight="output")
    state = ks.initial_state(problem.system, problem.discretization, options)
    step = jax.jit(lambda s: ks.kohn_sham_step(s, problem.system, problem.discretization, lda.lsda, None, options))
    for k in range(3):
        new = step(state)
        alpha = 0.5 * 0.9**k
        expected = state.spin_density + alpha * (new.output_density - state.spin_density)
        np.testing.assert_allclose(new.spin_density, expected, rtol=0, atol=1e-14)
        state = new
    with pytest.raises(ValueError, match="decaying_weight"):
        ks.KohnShamOptions(num_electrons=2, decaying_weight="both")
    with pytest.raises(ValueError, match="skip_iterations"):
        ksr.KSROptions(num_iterations=5, skip_iterations=5)


def test_skipped_iterations_do_not_enter_the_energy_loss(setup):
    groups, xc, params = setup
    options = ksr.KSROptions(num_iterations=4, skip_iterations=3, density_weight=0.0)
    loss, energies = jax.jit(lambda p: (ksr.make_loss(groups, xc, options)(p),
                                        ksr.run_group(groups[0], xc, p, 4)[1].total_energy))(params)
    # only the last iteration is left: the mean over molecules of its squared error
    last = energies[:, -1] - groups[0].energies
    assert float(loss) == pytest.approx(float(np.mean(np.asarray(last) ** 2)), rel=1e-12)


def test_params_round_trip(tmp_path, setup):
    _, xc, params = setup
    path = ksr.save_params(str(tmp_path / "p.npz"), params, model="local", steps=3)
    loaded, metadata = ksr.load_params(path)
    assert metadata == {"model": "local", "steps": 3}
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(loaded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="no parameter file"):
        ksr.load_params(str(tmp_path / "missing.npz"))


def test_single_threaded_blas_restores_thread_counts():
    from dftjax.oned import blas

    libraries = blas._openblas_libraries()
    counts = lambda: [int(getattr(lib, f"{p}_get_num_threads{s}")()) for lib, (p, s) in blas._openblas_libraries()]  # noqa: E731
    before = counts()
    with blas.single_threaded_blas():
        assert all(c == 1 for c in counts())
    assert counts() == before
    assert libraries or not before  # on Linux wheels, NumPy/SciPy's OpenBLAS is found
    with pytest.raises(ValueError):
        with blas.single_threaded_blas(0):
            pass


def test_cli_json_end_to_end(capsys):
    """``dftjax train ksr1d --json``: one row per test bond length with distance, energy, lda_energy
    (total energies: DMRG electronic energy + nuclear repulsion), tiny settings."""
    import json

    from basis import oned
    from dftjax import cli

    status = cli.main(["train", "ksr1d", "--model", "local", "--optimizer", "adam", "--steps", "2",
                       "--iterations", "2", "--half-width", "3.2", "--json"])
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 2 and result["experiment"] == "h2"
    rows = result["test"]
    assert [round(row["distance"] * 100) for row in rows] == list(data.TEST_DISTANCES_X100["h2"])
    dataset = data.load_dataset("h2")
    for row in rows:
        assert {"distance", "energy", "lda_energy", "dmrg_energy"} <= set(row)
        assert all(np.isfinite(row[k]) for k in ("energy", "lda_energy", "dmrg_energy"))
        i = dataset.index(round(row["distance"] * 100))
        nuclear = float(oned.nuclear_repulsion(dataset.charges[i], dataset.locations[i], oned.exponential_coulomb))
        assert row["dmrg_energy"] == pytest.approx(dataset.energies[i] + nuclear, abs=1e-12)
    errors = [abs(row["energy"] - row["dmrg_energy"]) * 1e3 for row in rows]
    assert result["mae_mha"] == pytest.approx(np.mean(errors), rel=1e-9)
    assert result["max_error_mha"] == pytest.approx(np.max(errors), rel=1e-9)


def _shipped():
    from dftjax.bench.ksr1d import PRETRAINED

    return ksr.load_params(PRETRAINED)


def test_shipped_h2_params_meet_the_goal_at_both_ends_of_the_curve():
    """The packaged parameters (``dftjax train ksr1d --save-params``) on the shortest, a middle and
    the longest test bond length: each within the max-error goal (3 mHa) against DMRG."""
    from dftjax.oned import experiment

    params, metadata = _shipped()
    options = ksr.KSROptions(steps=0, **{k: metadata["options"][k] for k in (
        "num_iterations", "decaying_weight", "mixing", "mixing_decay")})
    result = experiment.h2_experiment("global", options, params=params, model_options=metadata["model_options"],
                                      test_x100=(40, 392, 600), validation_x100=(), with_lda=False,
                                      progress=lambda m: None)
    errors = [abs(row["energy"] - row["dmrg_energy"]) * 1e3 for row in result["test"]]
    assert max(errors) < 3.0, errors


def test_shipped_global_model_reproduces_its_recorded_errors():
    """The README's 0.61 / 1.47 mHa (Li et al. 2021, Fig. 3 setting: trained on R = 1.28 and 3.84 bohr,
    tested on 32 bond lengths against DMRG) are the errors of the shipped parameters. Evaluating fixed
    parameters is reproducible across machines to ~1e-11 mHa (measured 4e-12 between the machine that
    wrote the file's metadata and ours), unlike training itself (next test)."""
    from dftjax.bench.ksr1d import PRETRAINED
    from dftjax.oned.experiment import h2_experiment

    params, metadata = ksr.load_params(PRETRAINED)
    result = h2_experiment("global", ksr.KSROptions(**{**metadata["options"], "steps": 0}), params=params,
                           model_options=metadata["model_options"], with_lda=False, progress=lambda message: None)
    assert len(result["test"]) == 32
    assert result["mae_mha"] == pytest.approx(metadata["mae_mha"], abs=1e-6)  # 0.6049 mHa
    assert result["max_error_mha"] == pytest.approx(metadata["max_error_mha"], abs=1e-6)  # 1.4668 mHa
    assert result["max_error_mha"] < 3.0  # the paper's experiment, within chemical accuracy everywhere


@pytest.mark.slow
def test_paper_h2_experiment_with_cli_defaults(capsys, tmp_path):
    """Issue 6 point 5 (Li et al. 2021, Fig. 3), trained from scratch with the CLI's defaults.

    150 L-BFGS steps through 15 unrolled KS iterations amplify last-digit rounding differences between
    CPUs into different models: the run that wrote the shipped parameters reached 0.605 / 1.467 mHa;
    on our 2-core AVX2 development machine (2026-12-07) the same settings give 1.264 / 3.275 mHa,
    bit-for-bit from run to run, and 0.711 / 1.987 with XLA limited to AVX; seeds 1-3 give MAE
    1.557 / 0.866 / 0.608 and max 7.00 / 2.02 / 1.74 mHa, the maximum always at R >= 5.68 bohr, beyond
    the last training geometry. So the mean error is held to the paper's chemical accuracy (met by
    every run above) and the maximum to 10 mHa (the spread), not to the shipped model's 3 mHa (that
    is the test above); LDA is tens of mHa off. Minutes on two cores."""
    import json

    from dftjax import cli

    plot = tmp_path / "curves.png"
    assert cli.main(["train", "ksr1d", "--json", "--plot", str(plot)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["test"]) == 32
    assert result["mae_mha"] < 1.6 and result["max_error_mha"] < 10.0, (result["mae_mha"], result["max_error_mha"])
    assert result["lda_mae_mha"] > 20.0
    assert plot.stat().st_size > 10_000


def test_loss_over_several_groups_equals_one_group(setup):
    """Groups are chained by a zero-valued data dependency (a 2-core LAPACK deadlock workaround):
    splitting the molecules into two groups changes neither the loss nor its gradient."""
    groups, xc, params = setup
    (group,) = groups
    options = ksr.KSROptions(num_iterations=4, skip_iterations=1)
    split = [group._replace(systems=jax.tree_util.tree_map(lambda x, i=i: x[i:i + 1], group.systems),
                            energies=group.energies[i:i + 1], densities=group.densities[i:i + 1])
             for i in range(2)]
    one = jax.jit(jax.value_and_grad(ksr.make_loss(groups, xc, options)))(params)
    two = jax.jit(jax.value_and_grad(ksr.make_loss(split, xc, options)))(params)
    assert float(two[0]) == pytest.approx(float(one[0]), rel=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(one[1]), jax.tree_util.tree_leaves(two[1])):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-10, atol=1e-14)
