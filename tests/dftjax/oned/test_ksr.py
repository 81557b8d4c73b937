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


def test_cli_parses_and_rejects_bad_input():
    import argparse

    from dftjax.oned import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "ksr1d", "--model", "local", "--steps", "-1", "--json"])
    assert args.model == "local" and args.json
    with pytest.raises(ValueError, match="--steps"):
        args.func(args)
    args = parser.parse_args(["train", "ksr1d", "--plot", "curves.png"])
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="matplotlib"):
            args.func(args)
