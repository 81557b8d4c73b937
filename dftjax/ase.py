"""ASE calculator: dftjax Kohn-Sham energies and forces for ASE optimisers and dynamics.

::

    from ase.build import molecule
    from ase.optimize import BFGS
    from dftjax.ase import DftjaxCalculator
    water = molecule("H2O"); water.calc = DftjaxCalculator(xc="pbe", basis="def2-svp")
    BFGS(water).run(fmax=0.01)                       # eV/angstrom

Energies and forces are those of :func:`dftjax.properties.force_function`: the implicit-adjoint SCF
on dftjax's differentiable grid (Becke weights moving with the atoms, so forces are exact
derivatives of the energy, grid response included), ``F = -dE/dR``. ASE works in eV and angstrom:
``E[eV] = E[Ha] * ase.units.Hartree`` and ``F[eV/A] = F[Ha/bohr] * Hartree / a0`` with
``a0 = basis.molecule.BOHR_IN_ANGSTROM``, the same constant that converts the positions to bohr
(so the forces are exactly minus the gradient of the reported energy in ASE's units).

One jitted ``(coords, starting density) -> (energy, forces, density)`` function is built per
molecule (atoms, charge, spin) and parameter set, and reused for every later geometry: an
optimisation or MD step costs an SCF (started from the previous step's density) and its
gradient, no recompilation (:attr:`DftjaxCalculator.traces` counts the traces, 1 per molecule).
Changing the atoms' elements, or any parameter, builds a new function.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.units import Hartree

from basis.molecule import BOHR_IN_ANGSTROM, Molecule, make_molecule
from dftjax.adjoint import make_scf_function
from dftjax.system import SCFOptions, check_options, functional_by_name
from functionals import Functional

__all__ = ["DftjaxCalculator"]

#: SCFOptions fields the calculator accepts as parameters (plus charge, spin and functional).
_OPTION_NAMES = ("xc", "basis", "unrestricted", "grid_level", "density_fit", "auxbasis", "max_cycle",
                 "conv_tol", "conv_tol_grad", "diis_space", "init_guess")
_OTHER_NAMES = ("charge", "spin", "functional")


class DftjaxCalculator(Calculator):
    """Kohn-Sham DFT (or HF) energy and forces from dftjax, for molecules (no periodic cells).

    Parameters (keyword arguments, ASE's ``calc.set`` too):
      xc: functional name as PySCF (default ``"pbe"``).
      functional: a :class:`~functionals.Functional` (e.g. a neural one) used instead of ``xc``
        (``xc`` still names it in the options); default None.
      basis: orbital basis (default ``"def2-svp"``).
      charge: total charge (default 0).
      spin: 2S, the number of unpaired electrons (default 0).
      unrestricted: UKS; default None means ``spin != 0``.
      grid_level: dftjax grid level 0-9 (default 3).
      density_fit, auxbasis: density-fitted J/K (default False, PySCF's auxiliary basis).
      max_cycle, conv_tol, conv_tol_grad, diis_space, init_guess: SCF options as
        :class:`~dftjax.system.SCFOptions` (conv_tol default 1e-10 Ha).

    Attributes:
      traces: how many times the energy-and-forces function was traced (compiled): one per molecule
        and parameter set; geometry steps do not add to it.
      dm: (2, nao, nao) the last converged spin density matrices (start of the next SCF).
    """

    implemented_properties = ["energy", "forces"]
    default_parameters = {
        "xc": "pbe", "functional": None, "basis": "def2-svp", "charge": 0, "spin": 0,
        "unrestricted": None, "grid_level": 3, "density_fit": False, "auxbasis": None,
        "max_cycle": 100, "conv_tol": 1e-10, "conv_tol_grad": None, "diis_space": 8,
        "init_guess": "minao",
    }

    def __init__(self, restart=None, label=None, atoms=None, directory=".", **kwargs):
        self._check_names(kwargs)
        self.traces = 0
        self.dm = None
        self._energy_forces = None
        self._key = None
        super().__init__(restart=restart, label=label, atoms=atoms, directory=directory, **kwargs)
        self._options()  # validate option values before any work

    @staticmethod
    def _check_names(parameters: dict) -> None:
        allowed = _OPTION_NAMES + _OTHER_NAMES
        unknown = sorted(set(parameters) - set(allowed))
        if unknown:
            raise ValueError(f"unknown DftjaxCalculator parameter(s) {unknown}; allowed: {sorted(allowed)}")

    def set(self, **kwargs):
        self._check_names(kwargs)
        changed = super().set(**kwargs)
        if changed:
            self.reset()  # every parameter changes the energy: drop the results
            self._energy_forces = None  # and build (and compile) a new function
            self.dm = None
            self._options()
        return changed

    def _options(self) -> SCFOptions:
        p = self.parameters
        functional = p.get("functional")
        if functional is not None and not isinstance(functional, Functional):
            raise ValueError(f"functional must be a functionals.Functional or None; got {type(functional).__name__}")
        if functional is None:
            functional_by_name(p["xc"])  # ValueError naming close matches for an unknown name
        unrestricted = p["unrestricted"] if p["unrestricted"] is not None else int(p["spin"]) != 0
        try:
            return SCFOptions(**{k: p[k] for k in _OPTION_NAMES if k != "unrestricted"},
                              unrestricted=bool(unrestricted), shard_grid=False)
        except TypeError as error:
            raise ValueError(f"bad DftjaxCalculator parameter: {error}") from error

    def _molecule(self, atoms) -> Molecule:
        if atoms is None:
            raise ValueError("DftjaxCalculator needs atoms (calc.calculate(atoms) or atoms.calc = calc)")
        if np.any(atoms.pbc):
            raise ValueError(f"DftjaxCalculator computes molecules; got periodic boundary conditions "
                             f"pbc={atoms.pbc.tolist()} (use atoms.pbc = False)")
        atom = [(s, tuple(map(float, x))) for s, x in zip(atoms.get_chemical_symbols(), atoms.positions)]
        return make_molecule(atom, unit="angstrom", charge=int(self.parameters["charge"]),
                             spin=int(self.parameters["spin"]))

    def _build(self, molecule: Molecule, options: SCFOptions):
        """A jitted ``(coords (n, 3) bohr, start dm) -> (E Ha, F Ha/bohr, dm)`` and the first guess."""
        scf = make_scf_function(molecule, options, functional=self.parameters.get("functional"))

        def energy_forces(coords, start):
            self.traces += 1  # runs once per trace (compilation), not per call
            (energy, dm), gradient = jax.value_and_grad(
                lambda c: scf.energy_and_density(scf.inputs._replace(coords=c), start), has_aux=True)(coords)
            return energy, -gradient, dm

        return jax.jit(energy_forces), scf.dm0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Energy (eV) and forces (eV/angstrom) at ``atoms``' positions (see the module docstring)."""
        super().calculate(atoms, properties, system_changes)
        molecule = self._molecule(self.atoms)
        options = self._options()
        key = (tuple(molecule.symbols), int(self.parameters["charge"]), int(self.parameters["spin"]))
        if self._energy_forces is None or key != self._key:
            check_options(molecule, options)  # ValueError before any integral
            self._energy_forces, self.dm = self._build(molecule, options)
            self._key = key
        energy, forces, dm = self._energy_forces(jnp.asarray(molecule.coords), self.dm)
        energy, forces = float(energy), np.asarray(forces)
        if not np.isfinite(energy) or not np.all(np.isfinite(forces)):
            raise FloatingPointError(f"dftjax SCF gave a non-finite energy {energy} or forces at "
                                     f"{molecule!r}")
        self.dm = dm
        self.results["energy"] = energy * Hartree
        self.results["free_energy"] = energy * Hartree
        self.results["forces"] = forces * (Hartree / BOHR_IN_ANGSTROM)

