"""The size-class registry: a molecule runs in a known larger class when that is cheap, exactly."""

import json

import numpy as np
import pytest

from basis.molecule import make_molecule
from basis.size_class import SizeClass
from dftjax.compilation import CompilationCounter
from dftjax.scf import SCFOptions, run_scf
from dftjax.size_registry import (ClassSizes, SizeRegistry, covering, dominates, estimated_cost, own_class,
                                  registry, reserve)
from dftjax.system import functional_by_name

WATER = make_molecule("O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692")
HYDROGEN_FLUORIDE = make_molecule("F 0 0 0; H 0 0 0.917")
METHANE = make_molecule("C 0 0 0; H 0.629 0.629 0.629; H -0.629 -0.629 0.629; H -0.629 0.629 -0.629; "
                        "H 0.629 -0.629 -0.629")


def _sizes(groups, n_atoms=3, n_points=1000, aux=None):
    return ClassSizes(SizeClass(tuple(groups), False), aux, n_atoms, n_points)


SMALL = _sizes([(0, 3, 3), (1, 3, 1)], n_atoms=2)
LARGE = _sizes([(0, 3, 4), (1, 3, 1)], n_atoms=3)
HUGE = _sizes([(0, 3, 48), (1, 3, 16), (2, 1, 8)], n_atoms=24, n_points=200000)


def test_dominance_and_covering():
    assert dominates(LARGE, SMALL) and not dominates(SMALL, LARGE)
    assert dominates(LARGE, LARGE)
    other = _sizes([(0, 3, 2), (2, 1, 1)], n_atoms=4)
    assert not dominates(LARGE, other) and not dominates(other, LARGE)
    both = covering([LARGE, other])
    assert both == _sizes([(0, 3, 4), (1, 3, 1), (2, 1, 1)], n_atoms=4)
    assert dominates(both, LARGE) and dominates(both, other)
    cartesian = ClassSizes(SizeClass(((0, 3, 4),), True), None, 3, 1000)
    assert not dominates(cartesian, _sizes([(0, 3, 1)]))
    with pytest.raises(ValueError, match="cartesian and spherical"):
        covering([cartesian, SMALL])
    fitted = _sizes([(0, 3, 4)], aux=SizeClass(((0, 1, 8),), False))
    assert not dominates(fitted, SMALL) and not dominates(LARGE, fitted)  # DF and exact never share


def test_choice_order(tmp_path):
    path = str(tmp_path / "classes.json")
    reg = SizeRegistry(path)
    assert reg.choose("f", LARGE) == LARGE  # nothing known: its own class, recorded
    assert reg.choose("f", SMALL) == LARGE  # dominated and within the cost ratio
    assert reg.choose("g", SMALL) == SMALL  # another family shares nothing
    # a class far costlier than the molecule's own is not imposed ...
    reg.choose("f", HUGE)
    tiny = _sizes([(0, 3, 2), (1, 3, 1)], n_atoms=2)
    assert estimated_cost(HUGE) > 4 * estimated_cost(tiny)
    assert reg.choose("f", tiny) == LARGE  # the cheapest dominating class that qualifies
    # ... unless it is reserved
    reg.reserve("f", HUGE)
    assert reg.choose("f", tiny) == HUGE
    # a new process (new registry, same file) finds the recorded classes
    fresh = SizeRegistry(path)
    assert fresh.choose("f", SMALL) == LARGE
    recorded = json.load(open(path))
    assert {r["family"] for r in recorded["classes"]} == {"f", "g"}
    assert ClassSizes.from_json(recorded["classes"][0]["sizes"]) == LARGE


def test_damaged_file_costs_only_a_compilation(tmp_path):
    path = tmp_path / "classes.json"
    path.write_text("{not json")
    reg = SizeRegistry(str(path))
    assert reg.choose("f", SMALL) == SMALL
    assert json.loads(path.read_text())["version"] == 1  # rewritten


def test_molecule_runs_exactly_in_a_larger_known_class():
    options = SCFOptions(xc="pbe", basis="sto-3g", grid_level=1)
    functional = functional_by_name("pbe")
    assert dominates(own_class(WATER, options, functional), own_class(HYDROGEN_FLUORIDE, options, functional))
    water = run_scf(WATER, options)
    with CompilationCounter() as counter:
        shared = run_scf(HYDROGEN_FLUORIDE, options)
    assert counter.compilations == 0, counter.as_dict()
    assert shared.size_class["nao"] >= water.size_class["nao"] > shared.n_basis
    plain = run_scf(HYDROGEN_FLUORIDE, SCFOptions(xc="pbe", basis="sto-3g", grid_level=1, size_classes=False))
    assert shared.converged and abs(shared.energy - plain.energy) < 1e-10  # measured 2e-14 Ha
    np.testing.assert_allclose(shared.dm, plain.dm, atol=1e-8)


def test_reserve_covers_a_data_set():
    options = SCFOptions(xc="lda,vwn", basis="sto-3g", grid_level=0)
    functional = functional_by_name("lda,vwn")
    sizes = reserve([HYDROGEN_FLUORIDE, METHANE, WATER], options)
    for molecule in (HYDROGEN_FLUORIDE, METHANE, WATER):
        assert dominates(sizes, own_class(molecule, options, functional))
    assert registry().choose('["lda,vwn", "sto-3g", false, 0, null]', own_class(WATER, options, functional)) == sizes
    with pytest.raises(ValueError, match="at least one molecule"):
        reserve([], options)
    with pytest.raises(ValueError, match="nosuchxc"):
        reserve([WATER], SCFOptions(xc="nosuchxc", basis="sto-3g"))
