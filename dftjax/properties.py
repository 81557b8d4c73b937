"""Derivative properties of a converged SCF: forces, dipole, polarizability, Hessian, frequencies,
parameter and basis-exponent gradients. Atomic units (hartree, bohr, e bohr).

Every property is a derivative of the differentiable SCF of :mod:`dftjax.adjoint`:

* forces ``-dE/dR`` (Ha/bohr), including the grid-weight response (the grid moves with the atoms
  and the Becke weights are differentiated) and, with density fitting, the auxiliary-basis
  response; the analogue of PySCF's ``nuc_grad_method()`` with ``grid_response = True``;
* dipole ``mu = -dE/dF`` and static polarizability ``alpha = -d2E/dF2`` in a uniform field F
  (finite-field definitions; the field adds ``F . r`` to h and ``-F . sum Z R`` to E_nn);
* Hessian ``d2E/dR dR`` by forward mode over the gradient, one direction at a time (coupled-perturbed KS through the
  implicit adjoint), and harmonic frequencies from it with PySCF's ``thermo.harmonic_analysis``;
* gradients of the energy with respect to functional parameters or basis-set exponents; the
  mixing coefficients of a hybrid (B3LYP's 0.20 HF, 0.08 Slater, 0.72 B88, 0.19 VWN, 0.81 LYP) become
  parameters with :func:`with_mixing_coefficients` and :class:`~dftjax.adjoint.HybridParams`.

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
from dftjax.adjoint import (DifferentiableSCF, HybridParams, energy_forces_padded, hessian_padded,
                            make_scf_function)
from dftjax.system import SCFOptions
from functionals import Functional

__all__ = [
    "force_function", "forces", "dipole_moment", "polarizability", "hessian", "harmonic_frequencies",
    "parameter_gradient", "exponent_gradient", "with_mixing_coefficients", "HybridParams",
]


def _scf(molecule: Molecule, options: SCFOptions | None, adjoint: str, n_steps: int | None, **kwargs) -> DifferentiableSCF:
    return make_scf_function(molecule, options, adjoint=adjoint, n_steps=n_steps, **kwargs)


def force_function(molecule: Molecule, options: SCFOptions | None = None, *, adjoint: str = "implicit",
                   n_steps: int | None = None, params=None, grid_response: bool = True) -> tuple[Callable, jax.Array]:
    """A jitted ``(coords, start) -> (energy, forces, dm)`` for this molecule's atoms and options.

    One compilation serves every geometry and starting density (geometry optimisation, scans).
    ``grid_response=False`` differentiates on a space-fixed grid (PySCF's default gradients).

    Returns:
      ``(function, dm0)``: coords (n_atoms, 3) bohr and a starting density (2, nao, nao) in;
      energy () Ha, forces (n_atoms, 3) Ha/bohr and the density (2, nao, nao) out; ``dm0`` is the
      initial guess at ``molecule``'s geometry.
    """
    scf = _scf(molecule, options, adjoint, n_steps, grid_response=grid_response)
    inputs = scf.inputs if params is None else scf.inputs._replace(params=params)
    n_atoms = molecule.n_atoms

    def energy_forces(coords, start):
        # one program per size class (energy_forces_padded is module-level, its static argument
        # the class): molecules of a class share it, in this process and through the disk cache
        arguments = scf.padded_arguments(inputs._replace(coords=coords), start)
        energy, f, dm = energy_forces_padded(scf.static, scf.adjoint, *arguments)
        if not isinstance(f, jax.core.Tracer):  # concrete: cut the padding in NumPy (no per-molecule programs)
            f, dm = np.asarray(f), np.asarray(dm)
        return energy, f[:n_atoms], scf.layout.unpad_matrix(dm)

    energy_forces.size_class = scf.size_class  # what the bench reports
    return energy_forces, scf.dm0


def forces(molecule: Molecule, options: SCFOptions | None = None, *, result=None, adjoint: str = "implicit",
           n_steps: int | None = None, params=None, grid_response: bool = True) -> np.ndarray:
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
      grid_response: include the grid-weight response (default; PySCF ``grid_response = True``)
        or differentiate on a grid fixed in space (PySCF's default).
    """
    energy_forces, dm0 = force_function(molecule, options, adjoint=adjoint, n_steps=n_steps, params=params,
                                        grid_response=grid_response)
    start = dm0 if result is None else np.asarray(result.dm)
    _, f, _ = energy_forces(np.asarray(molecule.coords), start)
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
            n_steps: int | None = None, grid_response: bool = True) -> np.ndarray:
    """Nuclear Hessian ``d2E / dR_Ai dR_Bj`` (n_atoms, 3, n_atoms, 3) in Ha/bohr^2.

    Forward mode over ``jax.grad`` of the energy, one direction at a time: with the implicit
    adjoint, each direction solves one coupled-perturbed KS equation (GMRES) for the orbital response.

    Args:
      grid_response: True (default) differentiates the grid points and Becke weights twice with
        the atoms, the exact Hessian of the energy on a moving grid; False keeps the grid fixed in
        space, the convention of PySCF's RKS ``Hessian()`` (``grid_response = False``, which omits
        the weight derivatives; Johnson, Gill, Pople, J. Chem. Phys. 98, 5612 (1993) discuss both).
        The two differ by the grid's quadrature error, which shrinks as ``grid_level`` grows.
    """
    scf = _scf(molecule, options, adjoint, n_steps, grid_response=grid_response)
    n = molecule.n_atoms
    h = np.asarray(hessian_padded(scf.static, scf.adjoint, *scf.padded_arguments()))[:n, :, :n, :]
    n = 3 * molecule.n_atoms
    flat = h.reshape(n, n)
    return (0.5 * (flat + flat.T)).reshape(h.shape)


def harmonic_frequencies(molecule: Molecule, hessian_matrix: np.ndarray) -> np.ndarray:
    """Harmonic frequencies (cm^-1) of a Hessian (n_atoms, 3, n_atoms, 3), translations and
    rotations projected out, by PySCF's ``pyscf.hessian.thermo.harmonic_analysis`` (standard
    isotope masses); imaginary modes come out negative."""
    from pyscf.hessian import thermo

    n = molecule.n_atoms
    if np.shape(hessian_matrix) != (n, 3, n, 3):
        raise ValueError(f"hessian_matrix has shape {np.shape(hessian_matrix)}: expected ({n}, 3, {n}, 3)")
    if not np.all(np.isfinite(hessian_matrix)):
        raise ValueError("hessian_matrix has non-finite entries")
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


def with_mixing_coefficients(functional: Functional) -> Functional:
    """The same mixture with its linear coefficients as parameters: ``e = sum_i c_i e_i(p_i)``.

    For a functional built by :func:`functionals.functional.linear_combination` (B3LYP, PBE0, ...),
    returns an equal-valued :class:`~functionals.Functional` whose ``params`` are
    ``{"coefficients": (n_terms,) c_i, "components": (p_i, ...)}``, so that
    :func:`parameter_gradient` differentiates the mixing coefficients together with the
    components' own parameters. Combine with :class:`~dftjax.adjoint.HybridParams` for the
    exact-exchange fraction::

        f = with_mixing_coefficients(get_functional("b3lyp"))
        params = HybridParams(f.params, jnp.asarray(f.exact_exchange))
        value, grad = parameter_gradient(molecule, options, functional=f, params=params)

    Raises:
      ValueError: the functional is not a linear combination of components.
    """
    if not functional.components:
        raise ValueError(f"functional {functional.name!r} is not a mixture: it has no components to weight")
    components = tuple(f for _, f in functional.components)

    def energy_density(params, features):
        total = None
        for i, (f, p) in enumerate(zip(components, params["components"])):
            term = params["coefficients"][i] * f(features, p)
            total = term if total is None else total + term
        return total

    return Functional(
        name=f"{functional.name} (mixing coefficients as parameters)", kind=functional.kind,
        energy_density=energy_density,
        params={"coefficients": jnp.asarray([c for c, _ in functional.components], dtype=jnp.float64),
                "components": tuple(f.params for f in components)},
        exact_exchange=functional.exact_exchange, omega=functional.omega, alpha=functional.alpha,
        beta=functional.beta, needs_laplacian=functional.needs_laplacian,
        supports_restricted=all(f.supports_restricted for f in components),
    )
