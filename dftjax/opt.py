"""Geometry optimisation on the dftjax energy surface with SciPy's BFGS (bohr, hartree).

Energy and forces come from one jitted function (:func:`dftjax.properties.force_function`,
compiled once for all geometries); each evaluation starts its SCF from the previous density.
The optimiser is ``scipy.optimize.minimize(method="BFGS")`` in Cartesian coordinates with its own
line search (Nocedal & Wright, "Numerical Optimization", 2nd ed., algorithm 6.1 with the strong
Wolfe conditions), stopped when the largest force component is below ``max_force`` (the
default 4.5e-4 Ha/bohr is Gaussian's and geomeTRIC's ``gmax``). geomeTRIC (internal coordinates)
would need fewer steps; it is not a dependency of this project.

>>> from basis.molecule import make_molecule
>>> from dftjax.system import SCFOptions
>>> result = optimize_geometry(make_molecule("H 0 0 0; H 0 0 0.8"), SCFOptions(xc="lda,vwn", basis="sto-3g"))
>>> result.converged
True
"""

from __future__ import annotations

import dataclasses
import sys

import jax.numpy as jnp
import numpy as np
import scipy.optimize

from basis.molecule import Molecule
from dftjax.properties import force_function
from dftjax.system import SCFOptions

__all__ = ["OptimizationResult", "optimize_geometry", "MAX_FORCE"]

MAX_FORCE = 4.5e-4  # Ha/bohr


@dataclasses.dataclass(frozen=True)
class OptimizationResult:
    """Outcome of :func:`optimize_geometry` (hartree, bohr).

    Attributes:
      molecule: the molecule at the final geometry (input atom order).
      energy: final total energy, Ha.
      forces: (n_atoms, 3) final forces, Ha/bohr.
      max_force: largest |force component|, Ha/bohr.
      converged: ``max_force <= `` the threshold.
      iterations: BFGS iterations.
      evaluations: energy + force evaluations (SCF + gradient each).
      energies: energy after each iteration, Ha.
    """

    molecule: Molecule
    energy: float
    forces: np.ndarray
    max_force: float
    converged: bool
    iterations: int
    evaluations: int
    energies: tuple[float, ...]


def optimize_geometry(molecule: Molecule, options: SCFOptions | None = None, *, max_force: float = MAX_FORCE,
                      max_steps: int = 100, adjoint: str = "implicit", verbose: bool = False) -> OptimizationResult:
    """Minimise the SCF energy over nuclear positions until the largest force is <= ``max_force``.

    Args:
      molecule: starting geometry.
      options: :class:`SCFOptions` of the energy (dftjax's differentiable grid).
      max_force: convergence threshold on max |F_Ai|, Ha/bohr.
      max_steps: maximum number of BFGS iterations.
      adjoint: how forces are differentiated (``"implicit"``; ``"unrolled"`` needs n_steps and is
        not offered here).
      verbose: one line per iteration on stderr.
    """
    options = SCFOptions() if options is None else options
    energy_forces, dm0 = force_function(molecule, options, adjoint=adjoint)
    shape = molecule.coords.shape
    last = {"dm": dm0, "x": None, "energy": None, "forces": None}
    counts = {"evaluations": 0}

    def fun(x):
        energy, forces, dm = energy_forces(jnp.asarray(x.reshape(shape)), last["dm"])
        counts["evaluations"] += 1
        last.update(dm=dm, x=x.copy(), energy=float(energy), forces=np.asarray(forces))
        return last["energy"], -last["forces"].ravel()

    energies = []

    def callback(intermediate_result):  # SciPy passes an OptimizeResult to a parameter of this name
        energies.append(float(intermediate_result.fun))
        if verbose:
            largest = float(np.abs(last["forces"]).max())
            print(f"[opt] step {len(energies):3d}  E = {intermediate_result.fun:.10f}  max|F| (last evaluation) = "
                  f"{largest:.2e}", file=sys.stderr, flush=True)

    x0 = np.asarray(molecule.coords, dtype=np.float64).ravel()
    # gtol applies to the infinity norm of the gradient (norm=inf): exactly max |F_Ai|.
    result = scipy.optimize.minimize(fun, x0, jac=True, method="BFGS", callback=callback,
                                     options=dict(gtol=max_force, norm=np.inf, maxiter=max_steps))
    if last["x"] is None or not np.array_equal(last["x"], result.x):
        fun(result.x)
    forces = last["forces"]
    largest = float(np.abs(forces).max())
    return OptimizationResult(
        molecule=molecule.with_coords(result.x.reshape(shape)),
        energy=last["energy"],
        forces=forces,
        max_force=largest,
        converged=largest <= max_force,
        iterations=int(result.nit),
        evaluations=counts["evaluations"],
        energies=tuple(energies),
    )
