"""``vmc`` command: arguments, the JSON record, bad input."""
import argparse
import json

import pytest

from qmc.cli import register


def _parse(argv):
    parser = argparse.ArgumentParser(prog="dftjax")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_vmc_command_returns_the_documented_record(tmp_path):
    args = _parse([
        "vmc", "--atom", "H 0 0 0; H 0 0 1.4", "--unit", "bohr", "--iterations", "0", "--walkers", "8",
        "--pretrain-iterations", "0", "--eval-iterations", "4", "--checkpoint-dir", str(tmp_path), "--json",
    ])
    record = args.func(args)
    for key in ("energy", "energy_error", "variance", "iterations", "wall_time_s", "table"):
        assert key in record
    # 0 optimisation steps keep the test to one compilation (the evaluation); test_train covers the rest
    assert record["iterations"] == 0 and record["nelec"] == [1, 1]
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
