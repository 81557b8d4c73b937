"""Both SCF adjoints against central finite differences (dftjax.adjoint).

H3+ (two electrons, s functions only) keeps compilation short; every path of issue 5 is checked:
nuclear coordinates (energy, density matrix, orbital energies, dipole), the external field,
functional parameters and basis exponents.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from basis.molecule import make_molecule
from dftjax.adjoint import eigh_safe, make_scf_function, renormalised_coefficients
from dftjax.system import SCFOptions

H3 = make_molecule("H 0 0 0; H 0 0 0.9; H 0.75 0.1 0.45", charge=1)
OPTIONS = SCFOptions(xc="lda,vwn", basis="6-31g", grid_level=1, conv_tol=1e-14, conv_tol_grad=1e-12, max_cycle=200)
# Central differences with one Richardson step, (4 D(h/2) - D(h)) / 3, error O(h^4): plain central
# differences at h = 1e-4 are off by 1.4e-6 in the virtual orbital energies (f''' ~ 1e3), and
# smaller steps meet the SCF convergence error (1e-12 / h).
STEP = 2e-4


def _central(function, x, direction, step=STEP):
    def difference(h):
        plus, minus = function(x + h * direction), function(x - h * direction)
        return jax.tree.map(lambda a, b: (np.asarray(a) - np.asarray(b)) / (2 * h), plus, minus)

    coarse, fine = difference(step), difference(step / 2)
    return jax.tree.map(lambda c, f: (4 * f - c) / 3, coarse, fine)


def _direction(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


def test_eigh_safe_is_finite_for_degenerate_eigenvalues():
    # two equal eigenvalues: jnp.linalg.eigh's derivative divides by zero, the projector's does not
    a = jnp.diag(jnp.array([-1.0, -1.0, 2.0]))
    da = jnp.array([[0.0, 0.3, 0.1], [0.3, 0.0, 0.2], [0.1, 0.2, 0.5]])

    def projector(m):
        _, u = eigh_safe(m)
        return u[:, :2] @ u[:, :2].T

    _, tangent = jax.jvp(projector, (a,), (da,))
    expected = _central(projector, a, da, 1e-4)
    np.testing.assert_allclose(tangent, expected, atol=1e-8)


@pytest.mark.slow  # ~55 s of compilation; forces in test_forces.py exercise the implicit path by default
@pytest.mark.parametrize("adjoint", ["implicit", "unrolled"])
def test_coordinate_derivatives_match_finite_differences(adjoint):
    scf = make_scf_function(H3, OPTIONS, adjoint=adjoint, n_steps=40)
    apply = jax.jit(lambda c: scf.apply(scf.inputs._replace(coords=c)))
    direction = _direction(scf.inputs.coords.shape)
    _, tangent = jax.jit(lambda c, v: jax.jvp(lambda x: scf.apply(scf.inputs._replace(coords=x)), (c,), (v,)))(
        scf.inputs.coords, direction)
    expected = _central(apply, scf.inputs.coords, direction)
    # energy, density matrix, orbital energies, dipole: forward mode through the response
    np.testing.assert_allclose(tangent.energy, expected.energy, atol=1e-8)
    np.testing.assert_allclose(tangent.dm, expected.dm, atol=1e-7)
    np.testing.assert_allclose(tangent.mo_energy, expected.mo_energy, atol=1e-7)
    np.testing.assert_allclose(tangent.dipole, expected.dipole, atol=1e-7)
    # reverse mode (the transposed linear solve) agrees with forward mode
    grad_dipole_x = jax.jit(jax.grad(lambda c: scf.apply(scf.inputs._replace(coords=c)).dipole[0]))(scf.inputs.coords)
    np.testing.assert_allclose(jnp.sum(grad_dipole_x * direction), tangent.dipole[0], atol=1e-9)


@pytest.mark.slow
def test_field_and_exponent_derivatives_match_finite_differences():
    scf = make_scf_function(H3, OPTIONS, adjoint="implicit")
    # polarizability column: d mu / dF_x by forward mode vs finite field
    dipole = jax.jit(lambda f: scf.apply(scf.inputs._replace(field=f)).dipole)
    e_x = jnp.array([1.0, 0.0, 0.0])
    _, column = jax.jvp(dipole, (jnp.zeros(3),), (e_x,))
    np.testing.assert_allclose(column, _central(dipole, jnp.zeros(3), e_x), atol=1e-7)
    # mu = -dE/dF equals the expectation value of the dipole operator (Hellmann-Feynman)
    grad_field = jax.grad(lambda f: scf.energy(scf.inputs._replace(field=f)))(jnp.zeros(3))
    np.testing.assert_allclose(-grad_field, dipole(jnp.zeros(3)), atol=1e-8)
    # dE/d exponents (coefficients renormalised)
    energy = jax.jit(lambda a: scf.energy(scf.inputs._replace(exponents=a)))
    grad = jax.grad(energy)(scf.inputs.exponents)
    direction = jnp.zeros_like(scf.inputs.exponents).at[0, 1].set(1.0).at[1, 0].set(0.5)
    expected = _central(energy, scf.inputs.exponents, direction * scf.inputs.exponents)
    np.testing.assert_allclose(jnp.sum(grad * direction * scf.inputs.exponents), expected, rtol=1e-6)


def test_renormalised_coefficients_keep_shells_normalised():
    from basis.gto import make_basis
    from basis.integrals import one_electron

    basis = make_basis(make_molecule("O 0 0 0; H 0 0 0.97", spin=1), "def2-svp")
    np.testing.assert_array_equal(renormalised_coefficients(basis, basis.exponents), basis.coefficients)
    scaled = basis.exponents * np.where(np.arange(basis.exponents.shape[1])[None, :] == 0, 1.3, 0.9)
    moved = type(basis)(scaled, renormalised_coefficients(basis, scaled), *basis.tree_flatten()[1])
    s = one_electron.overlap(moved, jnp.asarray([[0.0, 0.0, 0.0], [0.0, 0.0, 1.83]]))
    np.testing.assert_allclose(np.diag(s), 1.0, atol=1e-12)
