"""The dftjax command line: JSON output and one-line errors with exit status 2."""

import json

from dftjax.cli import main


def test_demo_json_matches_pyscf(capsys, monkeypatch):
    monkeypatch.setenv("DFTJAX_CACHE_DIR", "")
    assert main(["demo", "--atom", "H 0 0 0; H 0 0 0.74", "--basis", "sto-3g", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_basis"] == 2
    assert abs(result["nuclear_repulsion"] - result["nuclear_repulsion_pyscf"]) < 1e-12
    for name, row in result["integrals"].items():
        assert row["max_abs_diff_vs_pyscf"] < 1e-10, name


def test_bad_input_exits_2_with_one_line(capsys, monkeypatch):
    monkeypatch.setenv("DFTJAX_CACHE_DIR", "")
    for argv, message in [
        (["scf", "--atom", "H 0 0 0"], "spin 0 does not match 1 electrons"),
        (["scf", "--atom", "H 0 0 0", "--spin", "1"], "restricted SCF with spin 1"),
        (["scf", "--atom", "Qq 0 0 0"], "unknown element 'Qq'"),
        (["scf", "--xc", "pbx"], "unknown functional 'pbx'"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1], (argv, err)
