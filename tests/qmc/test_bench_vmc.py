"""``dftjax bench vmc``: records and table (timings themselves: tests/qmc slow tier and the bench run)."""
import json

import pytest

from dftjax.bench import vmc


def _row(system, n_elec, hessian, forward):
    return vmc.VMCTiming(system=system, n_elec=n_elec, n_params=100, walkers=8, dtype="float64", hessian_s=hessian,
                         forward_s=forward, step_s=0.5, hessian_cold_s=1.0, forward_cold_s=2.0, step_cold_s=3.0)


def test_records_and_table():
    rows = [_row("He", 2, 0.004, 0.002), _row("CH4", 10, 1.2, 0.3)]
    records = vmc.as_records(rows)
    json.dumps(records)
    assert records[1]["ratio_forward_hessian"] == pytest.approx(0.25)
    table = vmc.format_table(rows)
    assert "CH4" in table and "0.25" in table and "goal <= 0.5" in table


def test_breakdown_table_and_peer_record(monkeypatch):
    import dataclasses
    import subprocess

    row = dataclasses.replace(_row("LiH", 4, 0.04, 0.02), mcmc_s=0.03, log_psi_s=0.003, gradient_s=0.005,
                              jacobian_s=0.01, gram_s=0.02, solve_s=0.001, ferminet_mcmc_s=0.025)
    table = vmc.format_table([row])
    assert "step pieces" in table and "FN MCMC" in table and "30.00" in table and "25.00" in table

    def fake_run(command, **kwargs):  # the peer's last stdout line is its JSON record
        assert "--breakdown" in command
        record = {"per_step_s": 0.1, "mcmc_s": 0.02, "local_energy_s": 0.05, "iterations": 25}
        return subprocess.CompletedProcess(command, 0, stdout="log\n" + json.dumps(record), stderr="")

    monkeypatch.setattr(vmc.subprocess, "run", fake_run)
    from basis.molecule import make_molecule
    from qmc.ansatz import FermiNetOptions

    record = vmc.ferminet_step_time("python", make_molecule("He 0 0 0"), FermiNetOptions(), walkers=8, mcmc_steps=2,
                                    optimizer="adam", breakdown=True)
    assert record == {"per_step_s": 0.1, "mcmc_s": 0.02, "local_energy_s": 0.05}


def test_unknown_system():
    with pytest.raises(ValueError, match="unknown VMC benchmark system"):
        vmc.run(("He", "Xe2"), progress=False)


@pytest.mark.slow
def test_helium_timings_are_positive():
    from qmc.ansatz import FermiNetOptions

    rows = vmc.run(("He",), options=FermiNetOptions(hidden_one=(8,), hidden_two=(4,), determinants=1), walkers=4,
                   repeats=1, progress=False, breakdown=True)
    assert rows[0].n_elec == 2 and rows[0].hessian_s > 0 and rows[0].forward_s > 0 and rows[0].step_s > 0
    assert all(getattr(rows[0], name) > 0 for name in ("mcmc_s", "log_psi_s", "gradient_s", "jacobian_s", "gram_s",
                                                       "solve_s"))
