"""``dftjax bench``: suite selection, option checks, JSON/CSV/table/figure plumbing.

The suites' own numbers are checked where they are computed (tests of each suite module) and by
running the benchmark; here a two-row fake suite stands in so the plumbing is tested in milliseconds.
"""

import csv
import dataclasses
import json
import types

import pytest

from dftjax import cli
from dftjax.bench import runner


@dataclasses.dataclass(frozen=True)
class _Row:
    system: str
    time_s: float
    peer_s: float
    error_mha: float

    @property
    def ratio(self):
        return self.time_s / self.peer_s


def _fake_module(fail=False):
    def run(*, quick=False, progress=True):
        if fail:
            raise RuntimeError("broken suite")
        return [_Row("a", 1.0, 2.0, -0.3), _Row("b", 3.0, 2.0, 0.1)] if not quick else [_Row("a", 1.0, 2.0, -0.3)]

    return types.SimpleNamespace(
        run=run,
        as_records=lambda rows: [dict(dataclasses.asdict(r), ratio=r.ratio) for r in rows],
        format_table=lambda rows: "\n".join(f"{r.system} {r.ratio:.2f}" for r in rows),
    )


@pytest.fixture
def fake_suites(monkeypatch):
    suites = {
        "good": runner.Suite("good", "peer A", lambda: _fake_module(), runner._quick_only),
        "bad": runner.Suite("bad", "peer B", lambda: _fake_module(fail=True), runner._quick_only),
    }
    monkeypatch.setattr(runner, "SUITES", suites)
    return suites


def test_every_issue_suite_is_registered():
    assert list(runner.SUITES) == ["integrals", "functionals", "scf", "grad", "compile", "ksr1d", "ofdft", "vmc"]
    assert runner.parse_suites(None) == [name for name in runner.SUITES if name != "compile"]
    assert runner.parse_suites("compile") == ["compile"]
    assert runner.parse_suites("scf,grad") == ["scf", "grad"]
    with pytest.raises(ValueError, match="unknown benchmark suite 'scff'"):
        runner.parse_suites("scf,scff")


def test_quick_options_choose_the_small_systems():
    quick = runner.BenchOptions(quick=True)
    assert runner.SUITES["scf"].kwargs(quick)["molecules"] == ("water",)
    assert runner.SUITES["integrals"].kwargs(quick)["bases"] == ("def2-svp",)
    assert runner.SUITES["vmc"].kwargs(quick)["systems"] == ("He",)
    assert runner.SUITES["ksr1d"].kwargs(quick) == {"quick": True, "progress": True}
    assert runner.SUITES["compile"].kwargs(quick)["forces"] is False
    full = runner.BenchOptions()
    assert runner.SUITES["scf"].kwargs(full)["molecules"] == ("water", "benzene", "hexane")
    with pytest.raises(ValueError, match="unknown benchmark molecule 'wter'"):
        runner.SUITES["scf"].kwargs(runner.BenchOptions(molecules=("wter",)))
    with pytest.raises(ValueError, match="unknown VMC benchmark system 'Xe'"):
        runner.SUITES["vmc"].kwargs(runner.BenchOptions(molecules=("Xe",)))


def test_failed_suite_is_reported_and_the_others_still_run(fake_suites, tmp_path):
    runs = runner.run_suites(["bad", "good"], runner.BenchOptions(progress=False))
    assert runs[0].error == "RuntimeError: broken suite" and runs[0].records == []
    assert [r["system"] for r in runs[1].records] == ["a", "b"]
    summary = runner.format_summary(runs)
    assert "FAILED" in summary and "ratio largest 1.5" in summary and "error_mha largest -0.3" in summary
    document = runner.as_json(runs, quick=False)
    assert "compilation_cache" in document  # says whether "cold" times include compilation
    assert json.loads(json.dumps(document))["suites"]["good"]["results"][1]["ratio"] == 1.5
    runner.write_csv(runs, tmp_path / "bench.csv")
    rows = list(csv.DictReader(open(tmp_path / "bench.csv")))
    assert [(r["suite"], r["system"], float(r["ratio"])) for r in rows] == [("good", "a", 0.5), ("good", "b", 1.5)]
    paths = runner.plot(runs, str(tmp_path / "figures"))
    assert [p.rsplit("/", 1)[1] for p in paths] == ["bench_good.png"]
    assert (tmp_path / "figures" / "bench_good.png").stat().st_size > 1000


def test_cli_quick_json_and_exit_status(fake_suites, capsys):
    assert cli.main(["bench", "good", "--quick", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["quick"] is True and len(document["suites"]["good"]["results"]) == 1
    assert cli.main(["bench", "--suite", "good,bad"]) == 1  # a failed suite: non-zero exit, table still printed
    assert "good" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "nope"], "unknown benchmark suite 'nope'"),
        (["bench", "scf", "--suite", "vmc"], "suite given twice"),
        (["bench", "functionals", "--points", "0"], "--points 0 must be positive"),
        (["bench", "scf", "--xc", "pbx"], "unknown functional 'pbx'"),
        (["bench", "scf", "--ferminet-python", "python"], "--ferminet-python is an option of the vmc suite"),
        (["bench", "vmc", "--ferminet-python", "/no/such/python"], "cannot be run"),
    ],
)
def test_bad_input_is_one_line_before_any_work(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def _fake_interpreter(tmp_path, body: str) -> str:
    """An executable standing in for another Python: ``body`` is its shell script."""
    path = tmp_path / "python"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_ferminet_peer_without_ferminet_is_a_usage_error(tmp_path, capsys):
    python = _fake_interpreter(tmp_path, 'echo "ModuleNotFoundError: No module named ferminet" >&2; exit 1\n')
    assert cli.main(["bench", "vmc", "--ferminet-python", python]) == 2
    assert "cannot import FermiNet and kfac-jax: ModuleNotFoundError" in capsys.readouterr().err


def test_ferminet_peer_command_and_its_answer(tmp_path):
    """The peer gets the molecule, spins and network size, and its last JSON line is read."""
    from basis.molecule import make_molecule
    from dftjax.bench import vmc
    from qmc.ansatz import FermiNetOptions

    log = tmp_path / "argv"
    python = _fake_interpreter(tmp_path, f'printf "%s\\n" "$@" > {log}\necho noise\necho \'{{"per_step_s": 0.25}}\'\n')
    molecule = make_molecule(vmc.SYSTEMS["LiH"], unit="bohr")
    record = vmc.ferminet_step_time(python, molecule, FermiNetOptions(hidden_one=(16, 16), hidden_two=(4, 4)),
                                    walkers=32, mcmc_steps=7, optimizer="kfac")
    assert record == {"per_step_s": 0.25}
    argv = log.read_text().splitlines()
    assert argv[0].endswith("ferminet_peer.py")
    options = dict(zip(argv[1::2], argv[2::2]))
    assert options["--electrons"] == "2,2" and options["--walkers"] == "32" and options["--mcmc-steps"] == "7"
    assert options["--hidden-one"] == "16,16" and options["--hidden-two"] == "4,4" and options["--optimizer"] == "kfac"
    with pytest.raises(RuntimeError, match="FermiNet peer failed"):
        vmc.ferminet_step_time(_fake_interpreter(tmp_path, "echo boom >&2; exit 3\n"), molecule, FermiNetOptions(),
                               walkers=4, mcmc_steps=1, optimizer="adam")


def test_ferminet_peer_columns_in_records_and_table():
    from dftjax.bench import vmc

    row = vmc.VMCTiming(system="He", n_elec=2, n_params=100, walkers=8, dtype="float64", hessian_s=0.004,
                        forward_s=0.002, step_s=0.05, hessian_cold_s=1.0, forward_cold_s=1.0, step_cold_s=1.0,
                        step_adam_s=0.01, ferminet_kfac_step_s=0.1, ferminet_adam_step_s=0.02)
    record = vmc.as_records([row])[0]
    assert record["ratio_step_ferminet"] == pytest.approx(0.5) and record["ratio_adam_step_ferminet"] == pytest.approx(0.5)
    assert "FermiNet KFAC ms" in vmc.format_table([row])
    plain = dataclasses.replace(row, step_adam_s=float("nan"), ferminet_kfac_step_s=float("nan"),
                                ferminet_adam_step_s=float("nan"))
    assert "FermiNet" not in vmc.format_table([plain])
