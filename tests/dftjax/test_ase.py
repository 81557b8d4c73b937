"""The ASE calculator (dftjax.ase.DftjaxCalculator).

Default tests check the calculator's own logic (parameters, units, reuse of the compiled function)
with a stand-in analytic energy in place of the SCF (compiling a real SCF and its gradient costs
~17 s of CPU, beyond this file's share of the default suite); the slow tests run the real SCF:
equality with dftjax's force function in hartree, a BFGS optimisation of water against PySCF's
geometry, and energy conservation in velocity-Verlet dynamics.
"""
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import Atoms, units
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

from basis.molecule import BOHR_IN_ANGSTROM
from dftjax.ase import DftjaxCalculator

WATER = [(0.0, 0.0, 0.1173), (0.0, 0.7572, -0.4692), (0.0, -0.7572, -0.4692)]


def _water():
    return Atoms("OH2", positions=WATER)


# ---------------------------------------------------------------------------------------------
# Calculator logic with a stand-in energy (a sum of Morse pairs, hartree and bohr)


def _morse_build(calculator):
    """Replaces DftjaxCalculator._build: a jitted (coords, start) -> (E, F, start), counted like the SCF."""

    def build(molecule, options):
        def energy_forces(coords, start):
            calculator.traces += 1

            def energy(c):
                i, j = np.triu_indices(len(c), 1)
                r = jnp.linalg.norm(c[i] - c[j], axis=-1)
                return jnp.sum(0.17 * (1.0 - jnp.exp(-1.2 * (r - 1.8))) ** 2)

            e, g = jax.value_and_grad(energy)(coords)
            return e, -g, start + 1.0  # the "density" advances each call

        return jax.jit(energy_forces), jnp.zeros((2, 1, 1))

    return build


@pytest.fixture
def morse_calculator(monkeypatch):
    calculator = DftjaxCalculator(xc="lda,vwn", basis="sto-3g")
    monkeypatch.setattr(calculator, "_build", _morse_build(calculator))
    return calculator


def test_forces_are_minus_the_energy_gradient_in_ase_units(morse_calculator):
    atoms = _water()
    atoms.calc = morse_calculator
    forces = atoms.get_forces()
    h = 1e-5  # angstrom; central differences of a smooth function, error ~1e-10 eV/A
    for atom, axis in [(0, 2), (1, 1), (2, 2)]:
        energies = []
        for sign in (1.0, -1.0):
            displaced = atoms.copy()
            displaced.calc = morse_calculator
            displaced.positions[atom, axis] += sign * h
            energies.append(displaced.get_potential_energy())
        assert forces[atom, axis] == pytest.approx(-(energies[0] - energies[1]) / (2 * h), abs=1e-7)
    # hartree -> eV with ase.units.Hartree; angstrom -> bohr with dftjax's (PySCF's) bohr
    bohr = atoms.positions / BOHR_IN_ANGSTROM
    r = [np.linalg.norm(bohr[i] - bohr[j]) for i, j in [(0, 1), (0, 2), (1, 2)]]
    expected = sum(0.17 * (1.0 - np.exp(-1.2 * (x - 1.8))) ** 2 for x in r)
    assert atoms.get_potential_energy() == pytest.approx(expected * units.Hartree, rel=1e-12)


def test_geometry_steps_reuse_the_compiled_function_and_the_last_density(morse_calculator):
    atoms = _water()
    atoms.calc = morse_calculator
    for step in range(3):
        atoms.positions[1, 1] += 0.01
        atoms.get_potential_energy()
    assert morse_calculator.traces == 1  # one compilation for every geometry
    assert float(morse_calculator.dm[0, 0, 0]) == 3.0  # each SCF started from the previous density
    other = Atoms("CH2", positions=WATER)  # new elements: new molecule, new function
    other.calc = morse_calculator
    other.get_potential_energy()
    assert morse_calculator.traces == 2 and float(morse_calculator.dm[0, 0, 0]) == 1.0
    morse_calculator.set(grid_level=2)  # new options: rebuilt on the next call
    other.get_potential_energy()
    assert morse_calculator.traces == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"xcc": "pbe"}, "unknown DftjaxCalculator parameter.*xcc"),
    ({"functional": "pbe"}, "functional must be a functionals.Functional"),
    ({"damping": 0.5}, "unknown DftjaxCalculator parameter.*damping"),
    ({"xc": "pbee"}, "unknown functional 'pbee'.*'pbe'"),
])
def test_bad_parameters_raise_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DftjaxCalculator(**kwargs)


@pytest.mark.parametrize("atoms, kwargs, message", [
    (Atoms("H2", positions=[(0, 0, 0), (0, 0, 0.74)], pbc=True, cell=[5, 5, 5]), {}, "periodic"),
    (Atoms("OH", positions=[(0, 0, 0), (0, 0, 0.97)]), {"spin": 0}, "spin 0 does not match 9 electrons"),
    (Atoms("OH", positions=[(0, 0, 0), (0, 0, 0.97)]), {"spin": 1, "unrestricted": False},
     "restricted SCF with spin 1"),
])
def test_bad_input_raises_before_any_scf(atoms, kwargs, message):
    calculator = DftjaxCalculator(basis="sto-3g", **kwargs)
    calculator._build = lambda *a: pytest.fail("SCF built despite bad input")  # noqa: E731
    atoms.calc = calculator
    with pytest.raises(ValueError, match=message):
        atoms.get_potential_energy()


# ---------------------------------------------------------------------------------------------
# The real SCF (slow)


@pytest.mark.slow
def test_energy_and_forces_equal_dftjax_in_hartree():
    from basis.molecule import make_molecule
    from dftjax.properties import force_function
    from dftjax.system import SCFOptions

    atoms = _water()
    atoms.calc = DftjaxCalculator(xc="pbe", basis="sto-3g", grid_level=1)
    energy_ev, forces_ev = atoms.get_potential_energy(), atoms.get_forces()
    molecule = make_molecule("O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692")
    energy_forces, dm0 = force_function(molecule, SCFOptions(xc="pbe", basis="sto-3g", grid_level=1))
    energy, forces, _ = energy_forces(jnp.asarray(molecule.coords), dm0)
    assert energy_ev / units.Hartree == pytest.approx(float(energy), abs=1e-9)  # same SCF, conv_tol 1e-10
    np.testing.assert_allclose(forces_ev / units.Hartree * BOHR_IN_ANGSTROM, np.asarray(forces), atol=1e-7)


@pytest.mark.slow
def test_bfgs_optimises_water_like_pyscf():
    from pyscf import dft, gto
    from pyscf.geomopt.geometric_solver import optimize

    atoms = _water()
    calculator = DftjaxCalculator(xc="pbe", basis="def2-svp")
    atoms.calc = calculator
    optimizer = BFGS(atoms, logfile=None)
    start = time.perf_counter()
    atoms.get_forces()
    first = time.perf_counter() - start
    start = time.perf_counter()
    assert optimizer.run(fmax=0.01, steps=40)
    per_step = (time.perf_counter() - start) / max(optimizer.nsteps, 1)
    assert calculator.traces == 1
    print(f"\nBFGS steps {optimizer.nsteps}; first call {first:.1f} s, then {per_step:.2f} s/step; "
          f"d(OH) {atoms.get_distance(0, 1):.5f} A, angle {atoms.get_angle(1, 0, 2):.3f} deg")
    mol = gto.M(atom=[("O", WATER[0]), ("H", WATER[1]), ("H", WATER[2])], basis="def2-svp", verbose=0)
    reference = optimize(dft.RKS(mol, xc="pbe"), maxsteps=50).atom_coords(unit="angstrom")
    bond = np.linalg.norm(reference[1] - reference[0])
    # different grids (dftjax's vs PySCF's level 3) and thresholds (0.01 eV/A vs geomeTRIC's 4.5e-4 Ha/bohr)
    assert atoms.get_distance(0, 1) == pytest.approx(bond, abs=2e-3)
    assert atoms.get_distance(0, 2) == pytest.approx(bond, abs=2e-3)
    angle = np.degrees(np.arccos(np.dot(reference[1] - reference[0], reference[2] - reference[0])
                                 / bond / np.linalg.norm(reference[2] - reference[0])))
    assert atoms.get_angle(1, 0, 2) == pytest.approx(angle, abs=0.3)


@pytest.mark.slow
def test_velocity_verlet_conserves_energy():
    atoms = _water()
    atoms.positions[1, 1] += 0.05  # start away from the minimum so the atoms move
    atoms.calc = DftjaxCalculator(xc="lda,vwn", basis="sto-3g", grid_level=1, conv_tol=1e-12)
    dynamics = VelocityVerlet(atoms, timestep=0.25 * units.fs)
    totals = []
    dynamics.attach(lambda: totals.append(atoms.get_potential_energy() + atoms.get_kinetic_energy()))
    dynamics.run(40)  # 10 fs
    drift = max(totals) - min(totals)
    kinetic = atoms.get_kinetic_energy()
    print(f"\nVelocity Verlet 40 x 0.25 fs: total-energy spread {drift:.2e} eV, final kinetic {kinetic:.3f} eV")
    assert kinetic > 0.01  # the molecule vibrates
    # Verlet conserves a shadow energy; the true one oscillates by ~(omega dt)^2 / 8 of the
    # vibrational energy (O-H stretch: omega dt ~ 0.15, so ~0.3 % of the ~0.5 eV put in by the
    # 0.05 A displacement). Measured spread 1.2e-3 eV; a force inconsistent with the energy (or an
    # unconverged SCF) drifts by far more.
    assert drift < 3e-3
