"""1D grid pieces against exact solutions: particle in a box, harmonic oscillator."""
import jax.numpy as jnp
import numpy as np
import pytest

from basis import oned


@pytest.mark.parametrize("accuracy, tol", [(2, 2e-3), (4, 2e-6), (6, 1e-8), (8, 1e-10)])
def test_harmonic_oscillator_levels(accuracy, tol):
    x = oned.uniform_grid(-10.0, 10.0, 401)
    h = oned.kinetic_matrix(x, accuracy) + jnp.diag(0.5 * x**2)
    levels = np.linalg.eigvalsh(np.asarray(h))[:4]
    np.testing.assert_allclose(levels, [0.5, 1.5, 2.5, 3.5], atol=tol * 4)  # error grows with level


@pytest.mark.parametrize("accuracy, rtol", [(2, 4e-5), (4, 3e-9), (6, 3e-11), (8, 1e-11)])
def test_particle_in_a_box(accuracy, rtol):
    # hard walls at 0 and 1 one spacing outside the interior points
    n = 499
    x = oned.uniform_grid(1 / (n + 1), n / (n + 1), n)
    t = oned.kinetic_matrix(x, accuracy=accuracy, boundary="hard_wall")
    levels = np.linalg.eigvalsh(np.asarray(t))[:3]
    exact = 0.5 * (np.pi * np.arange(1, 4)) ** 2
    np.testing.assert_allclose(levels, exact, rtol=rtol)


def test_interactions_and_hartree():
    x = oned.uniform_grid(-20.48, 20.48, 513)
    dx = oned.grid_spacing(x)
    assert dx == pytest.approx(0.08)
    assert float(oned.exponential_coulomb(0.0)) == pytest.approx(1.071295)
    # a delta-like density of one electron at 0 gives v_H = v(x)
    density = jnp.zeros(513).at[256].set(1.0 / dx)
    np.testing.assert_allclose(oned.hartree_potential(density, x), oned.exponential_coulomb(x), atol=1e-14)
    v = oned.external_potential(x, jnp.array([1.0, 1.0]), jnp.array([-0.7, 0.7]))
    assert float(v[256]) == pytest.approx(-2 * 1.071295 * np.exp(-0.7 / 2.385345))
    e_nn = oned.nuclear_repulsion(jnp.array([1.0, 2.0]), jnp.array([0.0, 1.0]))
    assert float(e_nn) == pytest.approx(2 * 1.071295 * np.exp(-1 / 2.385345))
    assert float(oned.soft_coulomb(jnp.array(0.0))) == 1.0


@pytest.mark.parametrize("bad", [
    lambda: oned.uniform_grid(1.0, 0.0, 10),
    lambda: oned.uniform_grid(0.0, 1.0, 2),
    lambda: oned.second_derivative_matrix(10, 0.1, accuracy=3),
    lambda: oned.grid_spacing(jnp.array([0.0, 1.0, 3.0])),
    lambda: oned.second_derivative_matrix(10, 0.1, boundary="periodic"),
])
def test_bad_input(bad):
    with pytest.raises(ValueError):
        bad()
