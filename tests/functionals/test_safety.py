"""Finite values, gradients and Hessians at zero density, zero gradient and full polarisation.

Every registered functional is a linear combination of the components below (plus exact exchange),
so their safety covers all of them; a few mixtures are checked directly as well.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functionals import gga, lda
from functionals.features import unrestricted_features
from functionals.registry import get_functional

COMPONENTS = {
    "slater": lda.make_slater_x, "vwn5": lda.make_vwn5_c, "vwn_rpa": lda.make_vwn_rpa_c,
    "pw92": lda.make_pw92_c, "pz81": lda.make_pz81_c, "b88": gga.make_b88_x,
    "pbe_x": gga.make_pbe_x, "b88_sr": gga.make_b88_short_range_x, "pbe_c": gga.make_pbe_c,
    "lyp": gga.make_lyp_c, "p86": gga.make_p86_c,
}


def edge_points():
    """(rho (2, n), sigma (3, n)): zeros, tiny and ordinary densities, zero gradients, polarised."""
    rows = [  # rho_a, rho_b, sigma_aa, sigma_ab, sigma_bb
        (0.0, 0.0, 0.0, 0.0, 0.0),        # vacuum
        (0.0, 0.0, 1e-30, 0.0, 1e-30),    # vacuum with grid-noise gradient
        (1e-30, 1e-30, 0.0, 0.0, 0.0),    # below every threshold
        (1e-18, 1e-18, 1e-40, 1e-40, 1e-40),  # just above our threshold
        (0.3, 0.3, 0.0, 0.0, 0.0),        # zero gradient
        (0.3, 0.0, 0.2, 0.0, 0.0),        # fully polarised (alpha)
        (0.0, 0.3, 0.0, 0.0, 0.2),        # fully polarised (beta)
        (0.3, 0.0, 0.0, 0.0, 0.0),        # fully polarised, zero gradient
        (1e-12, 0.0, 1e-30, 0.0, 0.0),    # tiny and polarised
        (2.0, 1e-19, 3.0, 0.0, 0.0),      # minority spin below threshold
        (0.2, 0.1, 0.05, -0.02, 0.03),    # ordinary point
        (1e4, 1e4, 1e10, 1e10, 1e10),     # high density
    ]
    a = np.array(rows).T
    return jnp.asarray(a[:2]), jnp.asarray(a[2:])


def _check(functional):
    """e, jax.grad and Hessian-vector products finite; a Hessian entry that is inf or nan makes
    H v non-finite for a direction v with no zero entry, so two such products check the Hessian.
    Run eagerly: compiling second derivatives of every functional costs more than running them.
    """
    rho, sigma = edge_points()

    def energy(r, s):
        return jnp.sum(functional(unrestricted_features(r, s)))

    e = functional(unrestricted_features(rho, sigma))
    assert np.all(np.isfinite(e)), e
    np.testing.assert_array_equal(np.asarray(e)[:3], 0.0)  # nothing below the threshold
    gradient = jax.grad(energy, argnums=(0, 1))
    for g in gradient(rho, sigma):
        assert np.all(np.isfinite(g)), g
    rng = np.random.default_rng(0)
    for _ in range(2):
        direction = (jnp.asarray(rng.uniform(0.5, 1.5, rho.shape)),
                     jnp.asarray(rng.uniform(0.5, 1.5, sigma.shape)))
        hv = jax.jvp(gradient, (rho, sigma), direction)[1]
        for block in hv:
            assert np.all(np.isfinite(block)), block


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_component_values_gradients_hessians_finite(name):
    _check(COMPONENTS[name]())


@pytest.mark.slow
def test_full_hessian_finite_for_one_gga():
    """The complete Hessian (not only products) of PBE, as a check of the product argument."""
    rho, sigma = edge_points()
    xc = get_functional("pbe")
    hessian = jax.hessian(lambda r, s: jnp.sum(xc(unrestricted_features(r, s))), argnums=(0, 1))
    for block in jax.tree_util.tree_leaves(hessian(rho, sigma)):
        assert np.all(np.isfinite(block))


@pytest.mark.parametrize("name", ["b3lyp", "camb3lyp"])
def test_mixture_values_gradients_hessians_finite(name):
    _check(get_functional(name))


def test_vanishing_spin_potential_of_lda_correlation_is_the_one_sided_limit():
    """d e_c / d rho_b at rho_b = 0 is finite and equals the limit from rho_b > 0 (VWN5)."""
    xc = lda.make_vwn5_c()

    def v_beta(rb):
        rho = jnp.array([[0.5], [rb]])
        return jax.grad(lambda r: jnp.sum(xc(unrestricted_features(r))))(rho)[1, 0]

    # the potential varies like rho_b^{1/3} near 0: 1e-14 is 2e-5 away in relative terms
    np.testing.assert_allclose(v_beta(0.0), v_beta(1e-14), rtol=1e-4)
