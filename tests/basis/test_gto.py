"""Basis-set bookkeeping (basis.gto): shells, AO order, pytree structure."""

import jax
import numpy as np
import pytest

from basis.gto import cartesian_powers, make_auxbasis, make_basis
from basis.molecule import make_molecule

WATER = make_molecule("O 0 0 0; H 0 0.757 0.587; H 0 -0.757 0.587")


@pytest.mark.parametrize("name", ["def2-svp", "def2-tzvp", "cc-pvdz", "6-31g*", "sto-3g"])
@pytest.mark.parametrize("cartesian", [False, True])
def test_shells_match_pyscf_ao_layout(name, cartesian):
    basis = make_basis(WATER, name, cartesian=cartesian)
    mol = WATER.to_pyscf(basis=name, cartesian=cartesian)
    assert basis.nao == mol.nao
    # Every AO index is covered exactly once.
    covered = np.concatenate([basis.ao_indices([s]).ravel() for s in range(basis.n_shells)])
    np.testing.assert_array_equal(np.sort(covered), np.arange(mol.nao))
    # Shell l per AO agrees with PySCF's AO labels (split general contractions included).
    labels = mol.ao_labels(fmt=False)
    for s in range(basis.n_shells):
        for ao in basis.ao_indices([s]).ravel():
            assert "spdfghi"[basis.shell_l[s]] in labels[ao][2]
            assert labels[ao][0] == basis.shell_atom[s]


def test_general_contractions_are_split():
    basis = make_basis(WATER, "cc-pvdz")
    mol = WATER.to_pyscf(basis="cc-pvdz")
    assert basis.n_shells == sum(mol.bas_nctr(i) for i in range(mol.nbas))


def test_per_element_dict_and_errors():
    basis = make_basis(WATER, {"O": "cc-pvdz", "H": "sto-3g"})
    assert basis.nao == 14 + 2
    with pytest.raises(ValueError, match="no entry for elements \\['H'\\]"):
        make_basis(WATER, {"O": "cc-pvdz"})
    with pytest.raises(ValueError, match="basis 'no-such-basis' is not available"):
        make_basis(WATER, "no-such-basis")


def test_basis_is_a_pytree_with_array_leaves():
    basis = make_basis(WATER, "def2-svp")
    leaves, treedef = jax.tree_util.tree_flatten(basis)
    assert len(leaves) == 2 and leaves[0].shape == leaves[1].shape
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    assert rebuilt.shell_ao_start == basis.shell_ao_start


def test_default_auxbasis_is_pyscf_default():
    aux = make_auxbasis(WATER, "def2-svp")
    from pyscf.df import addons

    mol = WATER.to_pyscf(basis="def2-svp")
    auxmol = addons.make_auxmol(mol)
    assert aux.nao == auxmol.nao
    assert aux.max_l == 4  # def2-universal-jkfit carries g functions on O


def test_cartesian_powers_order():
    np.testing.assert_array_equal(cartesian_powers(2), [[2, 0, 0], [1, 1, 0], [1, 0, 1], [0, 2, 0], [0, 1, 1], [0, 0, 2]])


def test_bases_made_for_core_potentials_are_refused_before_any_integral():
    iodide = make_molecule("H 0 0 0; I 0 0 1.61")
    with pytest.raises(ValueError, match="'def2-svp' uses an effective core potential for I, and dftjax has no ECPs"):
        make_basis(iodide, "def2-svp")
    with pytest.raises(ValueError, match="core potential for I"):
        make_basis(iodide, {"H": "def2-svp", "I": "def2-tzvp"})
    assert make_basis(make_molecule("H 0 0 0; Br 0 0 1.41"), "def2-svp").nao == 5 + 32  # all-electron up to Kr
