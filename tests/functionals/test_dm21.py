"""DM21 in JAX against the original TensorFlow implementation (``functionals/dm21.py``).

Oracle: ``data/dm21/dm21_parity.npz``, written by ``data/dm21/make_fixture.py`` with the original
code (deepmind-research f5de0ed, ``NeuralNumInt`` around the TF-Hub checkpoints, float32) on 200
grid points: water (RKS, def2-SVP), triplet carbon (UKS, def2-SVP), tiny densities, one empty spin
channel, zero density. Its features are the original's own (PySCF rows, ``compute_hfx_density``);
its outputs the original graph's energy density and ``tf.gradients``.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functionals import dm21
from functionals.features import NonlocalFeatures, closed_shell_features, unrestricted_features

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "dm21", "dm21_parity.npz")
ORIGINAL_NAMES = {"dm21": "DM21", "dm21m": "DM21m", "dm21mc": "DM21mc", "dm21mu": "DM21mu"}
WATER, CARBON, EDGE = 0, 1, 2

# The original casts its inputs to float32 and runs the network in float32 (unit roundoff 6e-8);
# through seven 256-wide layers its energy densities carry relative errors of ~1e-6 (measured
# against this float64 code: at most 2.4e-6 over the 4 x 200 points, tiny densities included).
ENERGY_RTOL = 1e-5
# Below float32's smallest normal number (1.2e-38) TensorFlow flushes to zero; this code does not
# (far-tail points of the carbon atom give -5e-44 here, 0 there).
ENERGY_ATOL = 1e-37
# Its gradients are small sums of O(1) terms of opposite sign (e.g. d e / d e_x^HF = f_HF + ...),
# so float32 leaves relative errors up to a few 1e-3 where they nearly cancel: the original
# deviates from this float64 code by at most 3.6e-3 (rtol, with atol 1e-4 of the largest value of
# each potential), the same size as this code's own float32 run deviates from its float64 run
# (3.1e-3 on the same point).
GRADIENT_RTOL, GRADIENT_ATOL_FRACTION = 1e-2, 1e-4


@pytest.fixture(scope="module")
def fixture():
    with np.load(FIXTURE, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _arrays(fixture, dtype=np.float64):
    """rho (2, n), sigma (3, n), tau (2, n), exact exchange (2, 2, n) from the original's inputs."""
    rho_a, rho_b = fixture["input/rho_a"].astype(dtype), fixture["input/rho_b"].astype(dtype)
    grad_a, grad_b = rho_a[1:4], rho_b[1:4]
    rho = np.stack([rho_a[0], rho_b[0]])
    sigma = np.stack([np.sum(grad_a * grad_a, 0), np.sum(grad_a * grad_b, 0), np.sum(grad_b * grad_b, 0)])
    tau = np.stack([rho_a[5], rho_b[5]])
    exact_exchange = np.stack([fixture["input/hfx_a"].T, fixture["input/hfx_b"].T]).astype(dtype)
    return tuple(jnp.asarray(a) for a in (rho, sigma, tau, exact_exchange))


_energy_density = jax.jit(dm21.energy_density_from_arrays)
_potentials = jax.jit(jax.grad(lambda p, *args: jnp.sum(dm21.energy_density_from_arrays(p, *args)),
                               argnums=(1, 2, 3, 4)))


@pytest.fixture(scope="module")
def params():
    return {name: dm21.load_params(name) for name in dm21.FUNCTIONAL_NAMES}


def test_converted_parameters_carry_their_shapes_and_attribution():
    for name in dm21.FUNCTIONAL_NAMES:
        p = dm21.load_params(name.upper() if name == "dm21" else name)
        assert p["input"]["w"].shape == (11, dm21.WIDTH) and p["output"]["w"].shape == (dm21.WIDTH, 3)
        assert len(p["blocks"]) == dm21.N_BLOCKS and p["blocks"][0]["w"].shape == (dm21.WIDTH, dm21.WIDTH)
        assert p["input"]["w"].dtype == jnp.float64
        meta = dm21.metadata(name)
        assert meta["functional"] == ORIGINAL_NAMES[name]
        assert "CC BY 4.0" in meta["license"] and "Science 374, 1385 (2021)" in meta["paper"]
        assert meta["source_commit"].startswith("f5de0ed")
    with pytest.raises(ValueError, match="unknown DM21"):
        dm21.load_params("dm22")


@pytest.mark.parametrize("name", dm21.FUNCTIONAL_NAMES)
def test_energy_density_matches_the_original_tensorflow_graph(fixture, params, name):
    reference = fixture[f"{ORIGINAL_NAMES[name]}/local_xc"].astype(np.float64)
    energy = np.asarray(_energy_density(params[name], *_arrays(fixture)))
    np.testing.assert_allclose(energy, reference, rtol=ENERGY_RTOL, atol=ENERGY_ATOL)
    zero = fixture["input/rho_a"][0] + fixture["input/rho_b"][0] == 0
    assert zero.any() and np.all(energy[zero] == 0)


def test_float32_evaluation_matches_the_original_as_closely(fixture):
    reference = fixture["DM21/local_xc"].astype(np.float64)
    energy = _energy_density(dm21.load_params("dm21", dtype=jnp.float32), *_arrays(fixture, np.float32))
    assert energy.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(energy, np.float64), reference, rtol=ENERGY_RTOL, atol=ENERGY_ATOL)


@pytest.mark.parametrize("name", dm21.FUNCTIONAL_NAMES)
def test_potentials_match_the_original_tensorflow_gradients(fixture, params, name):
    tag = ORIGINAL_NAMES[name]
    vrho, vsigma, vtau, vhf = _potentials(params[name], *_arrays(fixture))
    # The original differentiates with respect to |grad rho_a|^2, |grad rho_b|^2, |grad rho|^2;
    # |grad rho|^2 = sigma_aa + 2 sigma_ab + sigma_bb gives libxc's (aa, ab, bb) derivatives.
    v_a, v_b, v_total = fixture[f"{tag}/vsigma"].astype(np.float64)
    references = {
        "vrho": (vrho, fixture[f"{tag}/vrho"]),
        "vsigma": (vsigma, np.stack([v_a + v_total, 2.0 * v_total, v_b + v_total])),
        "vtau": (vtau, fixture[f"{tag}/vtau"]),
        "vhf": (vhf, np.transpose(fixture[f"{tag}/vhf"], (0, 2, 1))),  # [spin, n, omega] -> [spin, omega, n]
    }
    for key, (mine, reference) in references.items():
        reference = reference.astype(np.float64)
        assert np.all(np.isfinite(mine)), key
        np.testing.assert_allclose(np.asarray(mine), reference, rtol=GRADIENT_RTOL,
                                   atol=GRADIENT_ATOL_FRACTION * np.abs(reference).max(), err_msg=key)


def test_restricted_and_spin_resolved_features_give_the_same_energy(fixture, params):
    rho, sigma, tau, exact_exchange = _arrays(fixture)
    closed = np.asarray(fixture["system"] == WATER)  # RKS points: equal spin halves
    total_rho, total_sigma = 2 * rho[0][closed], 4 * sigma[0][closed]
    restricted = NonlocalFeatures(closed_shell_features(total_rho, total_sigma, 2 * tau[0][closed]),
                                  exact_exchange[:, :, closed])
    spin_resolved = NonlocalFeatures(
        unrestricted_features(rho[:, closed], sigma[:, closed], tau[:, closed]), exact_exchange[:, :, closed])
    energy_density = jax.jit(dm21.energy_density)
    a = energy_density(params["dm21"], restricted)
    b = energy_density(params["dm21"], spin_resolved)
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=0)  # same arithmetic up to x2/x4 round trips
    np.testing.assert_allclose(a, fixture["DM21/local_xc"][closed], rtol=ENERGY_RTOL, atol=ENERGY_ATOL)
    with pytest.raises(ValueError, match=r"\(2, 2, n\)"):
        dm21.energy_density(params["dm21"], NonlocalFeatures(restricted.semilocal, exact_exchange[0, :, closed].T))


def test_zero_density_gives_finite_energy_and_gradients(fixture, params):
    # The fixture's shapes, so the compiled programs of the parity tests are reused.
    zeros = tuple(jnp.zeros_like(a) for a in _arrays(fixture))
    noisy = (jnp.full_like(zeros[0], -1e-18),) + zeros[1:]  # grid noise: slightly negative densities
    for args in (zeros, noisy):
        energy = _energy_density(params["dm21"], *args)
        assert np.all(energy == 0)
        grads = _potentials(params["dm21"], *args)
        assert all(np.all(np.isfinite(g)) for g in grads)


@pytest.mark.parametrize("system", ["water", "carbon"])
def test_exact_exchange_features_match_the_original_local_hf(fixture, system):
    """The features at omega = 0 and 0.4 from PySCF's grid Coulomb integrals equal the original's
    ``compute_hfx_density`` values (float64 on both sides: the same integrals)."""
    from pyscf import gto
    from pyscf.dft import numint

    points = np.asarray(fixture["system"] == {"water": WATER, "carbon": CARBON}[system])
    spin = {"water": 0, "carbon": 2}[system]
    mol = gto.M(atom=str(fixture[f"{system}/atom"]), basis="def2-svp", spin=spin, verbose=0)
    coords = fixture["input/coords"][points]
    ao = numint.eval_ao(mol, coords, deriv=0)
    full = mol.intor("int1e_grids_sph", hermi=1, grids=coords)
    with mol.with_range_coulomb(dm21.OMEGAS[1]):
        long_range = mol.intor("int1e_grids_sph", hermi=1, grids=coords)
    features = dm21.exact_exchange_features(jnp.asarray(ao), jnp.asarray(fixture[f"{system}/dm"]),
                                            jnp.asarray(full), jnp.asarray(long_range))
    reference = np.stack([fixture["input/hfx_a"][points].T, fixture["input/hfx_b"][points].T])
    np.testing.assert_allclose(np.asarray(features), reference, rtol=1e-10, atol=1e-14)
    assert np.all(reference[:, 1] >= reference[:, 0])  # erf(omega r) / r <= 1 / r: the long-range one is weaker
