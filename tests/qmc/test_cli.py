"""``vmc`` command: arguments, the JSON record, bad input."""
import argparse
import json

import pytest

from qmc.cli import register


def _parse(argv):
    parser = argparse.ArgumentParser(prog="dftjax")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_vmc_command_returns_the_documented_record(tmp_path, monkeypatch):
    """Flags reach VMCOptions; the record has the documented keys. The network is swapped for the tests'
    tiny one (the CLI's default network costs ~7 s of compilation), after checking the options the
    flags produced, so the run shares compiled steps with tests/qmc/test_train.py."""
    import dataclasses

    import qmc.train
    from tests.qmc.conftest import TINY

    seen = {}
    real_run_vmc = qmc.train.run_vmc

    def run_vmc(molecule, options, **kwargs):
        seen["options"] = options
        tiny = dataclasses.replace(TINY, iterations=options.iterations, eval_iterations=options.eval_iterations,
                                   checkpoint_every=options.checkpoint_every)
        return real_run_vmc(molecule, tiny, **kwargs)

    monkeypatch.setattr(qmc.train, "run_vmc", run_vmc)
    args = _parse([
        "vmc", "--atom", "He 0 0 0", "--iterations", "4", "--walkers", "16", "--seed", "3",
        "--pretrain-iterations", "0", "--eval-iterations", "0", "--checkpoint-dir", str(tmp_path), "--json",
    ])
    record = args.func(args)
    options = seen["options"]
    assert (options.walkers, options.seed, options.iterations, options.eval_iterations) == (16, 3, 4, 0)
    assert (options.ansatz, options.optimizer, options.laplacian, options.pretrain_iterations, options.dtype) == (
        "ferminet", "spring", "forward", 0, "float64")
    for key in ("energy", "energy_error", "variance", "iterations", "wall_time_s", "table"):
        assert key in record
    # energy from the optimisation tail (eval_iterations 0): no evaluation step to compile
    assert record["iterations"] == 4 and record["nelec"] == [1, 1]
    assert record["energy_error"] > 0 and record["energy"] < 0
    json.dumps({k: v for k, v in record.items() if k != "table"})  # serialisable as the CLI prints it
    assert "Ha" in record["table"]
    assert (tmp_path / "vmc_checkpoint.pkl").exists()


def test_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="walkers"):
        args = _parse(["vmc", "--walkers", "1"])
        args.func(args)
    with pytest.raises(ValueError):
        args = _parse(["vmc", "--atom", "Xx 0 0 0"])
        args.func(args)


def test_paulinet_is_selectable(monkeypatch):
    """``--ansatz paulinet`` reaches VMCOptions (the network itself: tests/qmc/test_paulinet.py)."""
    import qmc.train

    class _Stop(Exception):
        pass

    def run_vmc(molecule, options, **kwargs):
        raise _Stop(options.ansatz)

    monkeypatch.setattr(qmc.train, "run_vmc", run_vmc)
    args = _parse(["vmc", "--atom", "He 0 0 0", "--ansatz", "paulinet"])
    with pytest.raises(_Stop, match="paulinet"):
        args.func(args)


def test_dtype_flag():
    assert _parse(["vmc", "--dtype", "float32"]).dtype == "float32"
    with pytest.raises(SystemExit):  # argparse refuses other precisions before any work
        _parse(["vmc", "--dtype", "float16"])
