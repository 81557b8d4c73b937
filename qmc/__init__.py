"""Deep variational Monte Carlo (FermiNet and PauliNet neural wavefunctions), atomic units.

Modules, one physical piece each:

* :mod:`qmc.ansatz` -- antisymmetric wavefunctions by name (``make_ansatz("ferminet", molecule)``);
  :mod:`qmc.ansatz.ferminet`, :mod:`qmc.ansatz.envelopes`, :mod:`qmc.ansatz.paulinet`,
  :mod:`qmc.ansatz.cusp` (nuclear cusp correction of PauliNet's Gaussian baseline orbitals).
* :mod:`qmc.laplacian` -- Laplacian + gradient of log|psi|: Hessian trace or forward Laplacian (folx).
* :mod:`qmc.hamiltonian` -- local energy (kinetic + Coulomb).
* :mod:`qmc.mcmc` -- Metropolis-Hastings over all walkers, adaptive step size.
* :mod:`qmc.optimizers` -- SPRING / minSR natural gradient and Adam, local-energy clipping.
* :mod:`qmc.pretrain` -- fitting the orbitals to UHF orbitals.
* :mod:`qmc.statistics` -- blocking analysis error bars.
* :mod:`qmc.train` -- the VMC loop, checkpoints and exact resume (``run_vmc``), float64 or float32.
* :mod:`qmc.cli` -- the ``dftjax vmc`` command (``register(subparsers)``).

>>> from basis.molecule import make_molecule
>>> from qmc import VMCOptions, run_vmc
>>> result = run_vmc(make_molecule("He 0 0 0"), VMCOptions(iterations=400))  # doctest: +SKIP
"""

import basis  # noqa: F401  (first: the project's float64 policy, see basis/__init__.py)
from qmc.ansatz import ANSATZES, FermiNetOptions, PauliNetOptions, make_ansatz
from qmc.hamiltonian import make_local_energy, potential_energy
from qmc.laplacian import LAPLACIANS, forward_laplacian, hessian_laplacian
from qmc.mcmc import MCMCState, initial_positions, make_metropolis
from qmc.optimizers import OPTIMIZERS, AdamOptions, SpringOptions, clip_local_energy, make_optimizer
from qmc.statistics import blocking_error
from qmc.train import VMCOptions, VMCResult, run_vmc

__all__ = [
    "ANSATZES", "AdamOptions", "FermiNetOptions", "LAPLACIANS", "MCMCState", "OPTIMIZERS", "PauliNetOptions", "SpringOptions",
    "VMCOptions", "VMCResult", "blocking_error", "clip_local_energy", "forward_laplacian", "hessian_laplacian",
    "initial_positions", "make_ansatz", "make_local_energy", "make_metropolis", "make_optimizer",
    "potential_energy", "run_vmc",
]
