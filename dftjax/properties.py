"""Derivative properties of a converged SCF: forces, dipole, polarizability, Hessian, frequencies,
parameter and basis-exponent gradients. Atomic units (hartree, bohr, e bohr).

Every property is a derivative of the differentiable SCF of :mod:`dftjax.adjoint`:

* forces ``-dE/dR`` (Ha/bohr), including the grid-weight response (the grid moves with the atoms
  and the Becke weights are differentiated) and, with density fitting, the auxiliary-basis
  response; the analogue of PySCF's ``nuc_grad_method()`` with ``grid_response = True``;
* dipole ``mu = -dE/dF`` and static polarizability ``alpha = -d2E/dF2`` in a uniform field F
  (finite-field definitions; the field adds ``F . r`` to h and ``-F . sum Z R`` to E_nn);
* Hessian ``d2E/dR dR`` by ``jax.jacfwd`` of the gradient (coupled-perturbed KS through the
  implicit adjoint), and harmonic frequencies from it with PySCF's ``thermo.harmonic_analysis``;
* gradients of the energy with respect to functional parameters or basis-set exponents.

>>> from basis.molecule import make_molecule
>>> from dftjax.system import SCFOptions
>>> forces(make_molecule("H 0 0 0; H 0 0 0.74"), SCFOptions(xc="lda,vwn", basis="sto-3g")).shape
(2, 3)
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from basis.molecule import Molecule
from dftjax.adjoint import DifferentiableSCF, make_scf_function
from dftjax.system import SCFOptions

__all__ = [
    "force_function", "forces", "dipole_moment", "polarizability", "hessian", "harmonic_frequencies",
    "parameter_gradient", "exponent_gradient",
]


def _scf(molecule: Molecule, options: SCFOptions | None, adjoint: str, n_steps: int | None, **kwargs) -> DifferentiableSCF:
    return make_scf_function(molecule, options, adjoint=adjoint, n_steps=n_steps, **kwargs)


def force_function(molecule: Molecule, options: SCFOptions | None = None, *, adjoint: str = "implicit",
                   n_steps: int | None = None, params=None) -> tuple[Callable, jax.Array]:
    """A jitted ``(coords, start) -> (energy, forces, dm)`` for this molecule's atoms and options.

    One compilation serves every geometry and starting density (geometry optimisation, scans).

    Returns:
      ``(function, dm0)``: coords (n_atoms, 3) bohr and a starting density (2, nao, nao) in;
      energy () Ha, forces (n_atoms, 3) Ha/bohr and the density (2, nao, nao) out; ``dm0`` is the
      initial guess at ``molecule``'s geometry.
    """
    scf = _scf(molecule, options, adjoint, n_steps)
    inputs = scf.inputs if params is None else scf.inputs._replace(params=params)

    @jax.jit
    def energy_forces(coords, start):
        (energy, dm), gradient = jax.value_and_grad(
            lambda c: scf.energy_and_density(inputs._replace(coords=c), start), has_aux=True)(coords)
        return energy, -gradient, dm

    return energy_forces, scf.dm0


def forces(molecule: Molecule, options: SCFOptions | None = None, *, result=None, adjoint: str = "implicit",
           n_steps: int | None = None, params=None) -> np.ndarray:
    """Forces ``-dE/dR`` (n_atoms, 3) in Ha/bohr, atoms in input order.

    Args:
      molecule: the molecule (positions in bohr inside).
      options: :class:`SCFOptions` of the calculation (dftjax's differentiable grid at
        ``grid_level``).
      result: an :class:`~dftjax.scf.SCFResult` of this molecule and options, whose density starts
        the SCF (converging in a few iterations); None starts from the initial guess.
      adjoint: ``"implicit"`` (converged SCF, variational energy derivative) or ``"unrolled"``
        (``n_steps`` iterations).
      params: functional parameters (default: the functional's own).
    """
    energy_forces, dm0 = force_function(molecule, options, adjoint=adjoint, n_steps=n_steps, params=params)
    start = dm0 if result is None else jnp.asarray(result.dm)
    _, f, _ = energy_forces(jnp.asarray(molecule.coords), start)
    return np.asarray(f)


def dipole_moment(molecule: Molecule, options: SCFOptions | None = None, *, adjoint: str = "implicit",
                  n_steps: int | None = None) -> np.ndarray:
    """Dipole moment (3,) in e bohr as ``-dE/dF`` at zero field (origin at 0 bohr)."""
    scf = _scf(molecule, options, adjoint, n_steps)
    grad = jax.jit(jax.grad(lambda f: scf.energy(scf.inputs._replace(field=f))))
    return -np.asarray(grad(jnp.zeros(3)))


def polarizability(molecule: Molecule, options: SCFOptions | None = None, *, adjoint: str = "implicit",
                   n_steps: int | None = None) -> np.ndarray:
    """Static dipole polarizability (3, 3) in atomic units (e^2 bohr^2 / Ha) as ``-d2E/dF2``.

    Computed as ``d mu / dF`` with ``mu`` from the field-dependent density (forward mode through the
    linear response): the same number as the Hessian of the energy, at a third of the cost.
    """
    scf = _scf(molecule, options, adjoint, n_steps)
    jacobian = jax.jit(jax.jacfwd(lambda f: scf.apply(scf.inputs._replace(field=f)).dipole))
    alpha = np.asarray(jacobian(jnp.zeros(3)))
    return 0.5 * (alpha + alpha.T)


def hessian(molecule: Molecule, options: SCFOptions | None = None, *, adjoint: str = "implicit",
            n_steps: int | None = None) -> np.ndarray:
    """Nuclear Hessian ``d2E / dR_Ai dR_Bj`` (n_atoms, 3, n_atoms, 3) in Ha/bohr^2.

    ``jax.jacfwd`` of ``jax.grad`` of the energy: with the implicit adjoint, each forward direction
    solves one coupled-perturbed KS equation (GMRES) for the orbital response.
    """
    scf = _scf(molecule, options, adjoint, n_steps)
    energy = lambda c: scf.energy(scf.inputs._replace(coords=c))  # noqa: E731
    h = np.asarray(jax.jit(jax.jacfwd(jax.grad(energy)))(jnp.asarray(molecule.coords)))
    n = 3 * molecule.n_atoms
    flat = h.reshape(n, n)
    return (0.5 * (flat + flat.T)).reshape(h.shape)


def harmonic_frequencies(molecule: Molecule, hessian_matrix: np.ndarray) -> np.ndarray:
    """Harmonic frequencies (cm^-1) of a Hessian (n_atoms, 3, n_atoms, 3), translations and
    rotations projected out, by PySCF's ``pyscf.hessian.thermo.harmonic_analysis`` (standard
    isotope masses); imaginary modes come out negative."""
    from pyscf.hessian import thermo

    mol = molecule.to_pyscf(basis="sto-3g")
    h = np.transpose(np.asarray(hessian_matrix), (0, 2, 1, 3))  # PySCF's (atom, atom, xyz, xyz)
    freq = thermo.harmonic_analysis(mol, h)["freq_wavenumber"]
    return np.where(np.iscomplex(freq), -np.abs(freq), np.real(freq)).astype(float)


def parameter_gradient(molecule: Molecule, options: SCFOptions | None = None, *,
                       quantity: Callable | None = None, adjoint: str = "implicit", n_steps: int | None = None,
                       params=None, functional=None):
    """Gradient of a scalar of the SCF result with respect to the functional parameters.

    Args:
      quantity: ``(SCFOutput, SCFInputs) -> ()``; default the total energy.
      params: the parameters to differentiate at (default the functional's own).
      functional: a custom :class:`~functionals.Functional` (e.g. a neural one) instead of
        ``options.xc``.

    Returns:
      ``(value, gradient)``: the scalar and a pytree shaped like ``params``.
    """
    scf = _scf(molecule, options, adjoint, n_steps, functional=functional)
    params = scf.inputs.params if params is None else params

    def value(p):
        inputs = scf.inputs._replace(params=p)
        if quantity is None:
            return scf.energy(inputs)
        return quantity(scf.apply(inputs), inputs)

    return jax.jit(jax.value_and_grad(value))(params)


def exponent_gradient(molecule: Molecule, options: SCFOptions | None = None, *, shell: int | None = None,
                      adjoint: str = "implicit", n_steps: int | None = None):
    """``dE / d a_p`` (Ha bohr^2) for the primitive exponents of the orbital basis.

    Contraction coefficients of normalised primitives are held fixed and each shell stays
    normalised (:func:`dftjax.adjoint.renormalised_coefficients`).

    Returns:
      (n_shells, max_nprim) gradient (zero in the padding), or that row for ``shell``.
    """
    scf = _scf(molecule, options, adjoint, n_steps)
    g = np.asarray(jax.jit(jax.grad(lambda a: scf.energy(scf.inputs._replace(exponents=a))))(scf.inputs.exponents))
    return g if shell is None else g[shell]
