"""Local energy: exact hydrogenic wavefunctions, cusp conditions, Coulomb terms."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qmc.hamiltonian import make_local_energy, potential_energy

METHODS = ["hessian", "forward"]


def _hydrogenic(centre, exponent):
    """log psi of exp(-exponent |r - centre|): a trivial 'ansatz' through the same local-energy code."""
    centre = jnp.asarray(centre)
    return lambda params, x: -exponent * jnp.linalg.norm(jnp.reshape(x, (3,)) - centre)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("charge", [1.0, 2.0, 3.0])
def test_exact_hydrogenic_ion_has_constant_local_energy(method, charge):
    """psi = exp(-Z r) is the exact 1s state of a one-electron ion: E_L = -Z^2/2 everywhere."""
    centre = np.array([[0.3, -0.2, 0.5]])
    local_energy = jax.jit(jax.vmap(make_local_energy(_hydrogenic(centre[0], charge), centre, [charge], method), (None, 0)))
    points = centre + jax.random.normal(jax.random.PRNGKey(0), (256, 3)) * 2.0
    energies = local_energy(None, points)
    np.testing.assert_allclose(energies, -0.5 * charge**2, rtol=0, atol=1e-10)  # exact identity, rounding only
    assert float(jnp.var(energies)) < 1e-20


@pytest.mark.parametrize("method", METHODS)
def test_electron_nucleus_cusp(method):
    """Kato's cusp d log psi / dr = -Z at the nucleus cancels the -Z/r divergence of E_L.

    With the right cusp (exponent Z) E_L stays -Z^2/2 at r = 1e-7 bohr; with a wrong one (exponent a)
    E_L = -a^2/2 + (a - Z)/r blows up as (a - Z)/r.
    """
    z = 2.0
    centre = np.zeros((1, 3))
    r = 1e-7
    point = jnp.array([r, 0.0, 0.0])
    good = make_local_energy(_hydrogenic(centre[0], z), centre, [z], method)
    assert abs(float(good(None, point)) + 0.5 * z**2) < 1e-6
    a = 1.6875  # the variational exponent of He: no cusp for one electron of Z = 2
    bad = make_local_energy(_hydrogenic(centre[0], a), centre, [z], method)
    np.testing.assert_allclose(float(bad(None, point)), -0.5 * a**2 + (a - z) / r, rtol=1e-8)


def test_potential_energy_terms():
    """Two electrons and two nuclei, every Coulomb term by hand."""
    x = jnp.array([0.0, 0.0, 1.0, 0.0, 2.0, 0.0])
    nuclei = jnp.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    charges = jnp.array([1.0, 2.0])
    r1 = np.array([0.0, 0.0, 1.0])
    r2 = np.array([0.0, 2.0, 0.0])
    expected = 1 / np.linalg.norm(r1 - r2) + 1 * 2 / 3.0
    for r in (r1, r2):
        expected -= 1 / np.linalg.norm(r - nuclei[0]) + 2 / np.linalg.norm(r - nuclei[1])
    np.testing.assert_allclose(float(potential_energy(x, nuclei, charges)), expected, rtol=1e-14)


def test_unknown_laplacian_method():
    with pytest.raises(ValueError, match="unknown Laplacian"):
        make_local_energy(_hydrogenic(np.zeros(3), 1.0), np.zeros((1, 3)), [1.0], "jet")(None, jnp.ones(3))
