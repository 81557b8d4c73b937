"""Density features (functionals.features) against PySCF's numint.eval_rho."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf.dft import numint

from functionals.features import (Features, features_from_density_matrices, from_libxc_input,
                                  restricted_features, unrestricted_features)
from tests.functionals._molecules import molecule_density

# Same AO values and density matrix as PySCF: only summation order differs.
RTOL, ATOL = 1e-12, 1e-14


def _sigma(g1, g2):
    return np.einsum("xg,xg->g", g1, g2)


def test_closed_shell_matches_eval_rho():
    mol, grids, ao, dm = molecule_density("water", deriv=2)
    ref = numint.eval_rho(mol, ao, dm, xctype="MGGA", with_lapl=True)  # rho, dx, dy, dz, lapl, tau
    f = features_from_density_matrices(ao, dm)
    np.testing.assert_allclose(f.rho[0], ref[0] / 2, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(f.rho[1], ref[0] / 2, rtol=RTOL, atol=ATOL)
    sigma_total = _sigma(ref[1:4], ref[1:4])
    for k in range(3):
        np.testing.assert_allclose(f.sigma[k], sigma_total / 4, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(f.lapl.sum(0), ref[4], rtol=RTOL, atol=1e-10)
    np.testing.assert_allclose(f.tau.sum(0), ref[5], rtol=RTOL, atol=ATOL)
    # Integrated electron count = tr(D S) as a physics check; the coarse level-1 grid
    # integrates to 1.5e-3.
    n_ref = np.einsum("ij,ji->", dm, mol.intor("int1e_ovlp"))
    np.testing.assert_allclose(np.sum(grids.weights * f.total_density), n_ref, rtol=3e-3)


def test_open_shell_matches_eval_rho_per_spin():
    mol, grids, ao, dm = molecule_density("oh", deriv=2)
    ref_a = numint.eval_rho(mol, ao, dm[0], xctype="MGGA", with_lapl=True)
    ref_b = numint.eval_rho(mol, ao, dm[1], xctype="MGGA", with_lapl=True)
    f = features_from_density_matrices(ao, dm)
    np.testing.assert_allclose(f.rho, np.stack([ref_a[0], ref_b[0]]), rtol=RTOL, atol=ATOL)
    sigma = np.stack([_sigma(ref_a[1:4], ref_a[1:4]), _sigma(ref_a[1:4], ref_b[1:4]),
                      _sigma(ref_b[1:4], ref_b[1:4])])
    np.testing.assert_allclose(f.sigma, sigma, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(f.lapl, np.stack([ref_a[4], ref_b[4]]), rtol=RTOL, atol=1e-10)
    np.testing.assert_allclose(f.tau, np.stack([ref_a[5], ref_b[5]]), rtol=RTOL, atol=ATOL)
    # from_libxc_input reads the same arrays into the same Features.
    g = from_libxc_input(np.stack([ref_a, ref_b]), spin=1)
    for a, b in zip(f, g):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-10)


def test_first_derivative_ao_gives_zero_laplacian_and_gga_features():
    mol, grids, ao, dm = molecule_density("water", deriv=1)
    f = features_from_density_matrices(ao, dm)
    assert f.lapl.shape == f.rho.shape and not np.any(np.asarray(f.lapl))
    ref = numint.eval_rho(mol, ao, dm, xctype="GGA")
    np.testing.assert_allclose(f.total_density, ref[0], rtol=RTOL, atol=ATOL)


def test_restricted_features_split_and_chain_rule():
    rho = jnp.array([0.3, 2.0])
    sigma = jnp.array([0.1, 0.7])
    f = restricted_features(rho, sigma, tau=jnp.array([0.2, 1.0]))
    np.testing.assert_allclose(f.rho, np.stack([rho / 2, rho / 2]))
    np.testing.assert_allclose(f.sigma, np.stack([sigma / 4] * 3))
    np.testing.assert_allclose(f.tau, np.stack([[0.1, 0.5]] * 2))
    # sigma_total = sigma_aa + 2 sigma_ab + sigma_bb holds for the halves.
    np.testing.assert_allclose(f.sigma[0] + 2 * f.sigma[1] + f.sigma[2], sigma)

    # d/d(total) through restricted_features = (d/drho_a + d/drho_b)/2 etc.
    def energy_spin(feat: Features):
        return jnp.sum(feat.rho[0] ** 2 * feat.sigma[0] + feat.rho[1] * feat.sigma[1] ** 2
                       + feat.sigma[2] * feat.rho[0])

    g_total = jax.grad(lambda r, s: energy_spin(restricted_features(r, s)), argnums=(0, 1))(rho, sigma)
    g_spin = jax.grad(energy_spin)(f)
    np.testing.assert_allclose(g_total[0], (g_spin.rho[0] + g_spin.rho[1]) / 2, rtol=1e-14)
    np.testing.assert_allclose(g_total[1], g_spin.sigma.sum(0) / 4, rtol=1e-14)


def test_unrestricted_features_defaults_and_libxc_input_shapes():
    f = unrestricted_features(jnp.ones((2, 3)))
    assert f.sigma.shape == (3, 3) and f.tau.shape == (2, 3) and f.lapl.shape == (2, 3)
    lda = from_libxc_input(np.array([1.0, 2.0]), spin=0)
    np.testing.assert_allclose(lda.rho, [[0.5, 1.0], [0.5, 1.0]])
    mgga5 = from_libxc_input(np.arange(10.0).reshape(5, 2) + 1, spin=0)  # rho, grad, tau
    np.testing.assert_allclose(mgga5.tau[0], [4.5, 5.0])
    with pytest.raises(ValueError):
        from_libxc_input(np.ones((3, 4, 5)), spin=1)
    with pytest.raises(ValueError):
        features_from_density_matrices(np.ones((1, 5, 2)), np.eye(2))
