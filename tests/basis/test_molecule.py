"""Molecule parsing and validation (basis.molecule)."""

import numpy as np
import pytest
from pyscf import gto

from basis.molecule import ANGSTROM_TO_BOHR, make_molecule

WATER = "O 0 0 0; H 0 0.757 0.587; H 0 -0.757 0.587"


def test_atom_string_matches_pyscf_coordinates_in_bohr():
    mol = make_molecule(WATER)
    ref = gto.M(atom=WATER, basis="sto-3g")
    assert mol.symbols == ("O", "H", "H")
    np.testing.assert_array_equal(mol.atomic_numbers, [8, 1, 1])
    np.testing.assert_allclose(mol.coords, ref.atom_coords(), atol=1e-14)  # same bohr constant
    np.testing.assert_allclose(mol.nuclear_repulsion(), ref.energy_nuc(), rtol=1e-14)
    assert mol.nelec == (5, 5)


def test_units_newlines_and_lists_agree():
    a = make_molecule(WATER)
    b = make_molecule("O 0 0 0\nH 0 0.757 0.587\n\nH 0 -0.757 0.587")
    c = make_molecule([(s, xyz) for s, xyz in zip(a.symbols, a.coords)], unit="bohr")
    for m in (b, c):
        np.testing.assert_allclose(m.coords, a.coords, atol=1e-14)
    h2 = make_molecule("H 0 0 0; H 0 0 1.4", unit="bohr")
    np.testing.assert_allclose(h2.coords[1, 2], 1.4)
    assert make_molecule("H 0 0 0; H 0 0 0.74", unit="A").coords[1, 2] == pytest.approx(0.74 * ANGSTROM_TO_BOHR)


def test_xyz_file(tmp_path):
    path = tmp_path / "water.xyz"
    path.write_text("3\nwater, angstrom\nO 0 0 0\nH 0 0.757 0.587\nH 0 -0.757 0.587\n")
    np.testing.assert_allclose(make_molecule(str(path)).coords, make_molecule(WATER).coords)


def test_charge_and_spin():
    oh = make_molecule("O 0 0 0; H 0 0 0.97", charge=-1)
    assert oh.n_electrons == 10 and oh.nelec == (5, 5)
    o2 = make_molecule("O 0 0 0; O 0 0 1.21", spin=2)
    assert o2.nelec == (9, 7)
    nh3p = make_molecule("N 0 0 0; H 0 0.94 0.38; H 0.81 -0.47 0.38; H -0.81 -0.47 0.38", charge=1, spin=1)
    assert nh3p.nelec == (5, 4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(atom="Xx 0 0 0"), "unknown element 'Xx'"),
        (dict(atom=""), "empty molecule"),
        (dict(atom="  ;  "), "empty molecule"),
        (dict(atom="H 0 0 nan; H 0 0 1"), "non-finite coordinates"),
        (dict(atom="H 0 0 inf; H 0 0 1"), "non-finite coordinates"),
        (dict(atom="H 0 0 0; H 0 0 0.02"), "nuclei must be at least 0.1 bohr apart"),
        (dict(atom="H 0 0 0; H 0 0 0.05", unit="bohr"), "0.05 bohr apart"),
        (dict(atom="H 0 0 0; H 0 0 0.74", charge=3), "charge 3 leaves -1 electrons"),
        (dict(atom="H 0 0 0; H 0 0 0.74", charge=2), "charge 2 leaves no electrons"),
        (dict(atom="H 0 0 0", spin=0), "spin 0 does not match 1 electrons"),
        (dict(atom="O 0 0 0", spin=1), "spin 1 does not match 8 electrons"),
        (dict(atom="H 0 0 0", spin=3), "spin 3 impossible for 1 electrons"),
        (dict(atom="H 0 0 0", unit="furlong"), "unknown unit 'furlong'"),
        (dict(atom="H 0 0"), "bad atom entry"),
        (dict(atom="missing.xyz"), "not found"),
    ],
)
def test_bad_input_is_one_line_value_error(kwargs, message):
    atom = kwargs.pop("atom")
    with pytest.raises(ValueError, match=message) as info:
        make_molecule(atom, **kwargs)
    assert "\n" not in str(info.value)
