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


def test_unknown_system():
    with pytest.raises(ValueError, match="unknown VMC benchmark system"):
        vmc.run(("He", "Xe2"), progress=False)


@pytest.mark.slow
def test_helium_timings_are_positive():
    from qmc.ansatz import FermiNetOptions

    rows = vmc.run(("He",), options=FermiNetOptions(hidden_one=(8,), hidden_two=(4,), determinants=1), walkers=4,
                   repeats=1, progress=False)
    assert rows[0].n_elec == 2 and rows[0].hessian_s > 0 and rows[0].forward_s > 0 and rows[0].step_s > 0
