"""Orbital-free DFT with learned kinetic-energy functionals (issue 8): the 1D box and molecules.

* :mod:`dftjax.ofdft.box`: the hard-wall box grid, derivatives with wall reflections, spinless
  density features, the grid-consistent von Weizsaecker energy, the kinetic preconditioner.
* :mod:`dftjax.ofdft.data1d`: the Snyder et al. (PRL 108, 253002 (2012)) data set, exact densities,
  kinetic energies and functional derivatives from the finite-difference Schroedinger equation.
* :mod:`dftjax.ofdft.krr`: kernel ridge regression T[n] (cross-validated), local PCA of the data
  manifold.
* :mod:`dftjax.ofdft.neural`: Flax kinetic energy densities (local or convolutional) and a global
  MLP of the cosine coefficients of the density (``nn-global``), trained on
  energies and functional derivatives (Meyer et al., JCTC 16, 5685 (2020)).
* :mod:`dftjax.ofdft.solver`: direct minimisation at fixed N (sqrt parametrisation with optax
  L-BFGS; projected gradient descent on the KRR manifold).
* :mod:`dftjax.ofdft.benchmark`: the Brockherde et al. (2017) Table I benchmark.
* :mod:`dftjax.ofdft.molecular`: 3D OF-DFT of atoms and molecules on Becke/Lebedev grids: the
  density as the square of one Gaussian-basis amplitude per spin, analytic vW and nuclear terms,
  density-fitted Hartree, grid XC and TF / learned Pauli kinetic terms; dftjax Kohn-Sham next to it.
* :mod:`dftjax.ofdft.train3d`: the learned Pauli functional trained on dftjax Kohn-Sham kinetic
  energies and potentials (stationarity of the OF energy at the Kohn-Sham density).
* :mod:`dftjax.ofdft.cli`: ``dftjax ofdft train|solve``.

The analytic kinetic functionals (Thomas-Fermi, von Weizsaecker, TF + lambda vW, APBEK / PBE-TW)
live in :mod:`functionals.kinetic`.
"""
from dftjax.ofdft.data1d import BoxDataset, generate, load_paper_potentials, random_set
from dftjax.ofdft.krr import KernelRidgeModel, fit_cross_validated
from dftjax.ofdft.solver import OFResult, minimize_projected, minimize_sqrt

__all__ = ["BoxDataset", "generate", "load_paper_potentials", "random_set", "KernelRidgeModel",
           "fit_cross_validated", "OFResult", "minimize_projected", "minimize_sqrt"]
