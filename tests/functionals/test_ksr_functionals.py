"""Neural 1D XC functionals of KSR (functionals.ksr)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functionals.ksr import (as_functional, init_params, make_ksr_functional, self_interaction_gate)

DX = 0.08
X = np.arange(-40, 41) * DX


def _density(center=0.0, electrons=1.0):
    n = np.exp(-2 * np.abs(X - center))
    return jnp.asarray(electrons * n / (n.sum() * DX))


@pytest.mark.parametrize("model", ["local", "semilocal", pytest.param("global", marks=pytest.mark.slow)])
@pytest.mark.parametrize("spin_resolved", [False, True])
def test_models_in_functional_signature(model, spin_resolved):
    module, xc = make_ksr_functional(model, dx=DX, spin_resolved=spin_resolved)
    params = init_params(module, jax.random.PRNGKey(0), X.size)
    spin = jnp.stack([_density(0.3), 0.5 * _density(-0.3)])
    e = xc(params, spin)
    assert e.shape == (X.size,) and e.dtype == jnp.float64
    # zero density: finite energy and potential
    zero = jnp.zeros((2, X.size))
    assert np.all(np.isfinite(np.asarray(jax.grad(lambda n: jnp.sum(xc(params, n)))(zero))))
    # spin-flip symmetry
    assert np.allclose(xc(params, spin[::-1]), e, atol=1e-14)
    functional = as_functional(f"ksr-{model}", xc, params)
    assert np.allclose(functional(spin), e, atol=1e-14)


def test_self_interaction_gate_cancels_hartree_for_one_electron():
    n = _density(electrons=1.0)
    module, xc = make_ksr_functional("global", dx=DX)
    params = init_params(module, jax.random.PRNGKey(0), X.size)
    e_xc = jnp.sum(xc(params, jnp.stack([n, 0 * n]))) * DX
    v = 1.071295 * np.exp(-np.abs(X[:, None] - X[None, :]) / 2.385345)
    hartree = 0.5 * n @ v @ n * DX**2
    assert float(e_xc) == pytest.approx(-float(hartree), rel=1e-12)
    # for two electrons the gate is (nearly) closed: the network's own epsilon
    eps = jnp.ones(X.size)
    assert np.allclose(self_interaction_gate(2 * n, eps, DX, jnp.asarray(0.1)), eps)


def test_global_convolution_is_translation_covariant():
    module, xc = make_ksr_functional("global", dx=DX, self_interaction_gate=False)
    params = init_params(module, jax.random.PRNGKey(2), X.size)
    bump = np.clip(1.0 - (X / 1.5) ** 2, 0.0, None) ** 2      # compact support: shifts exactly
    left = xc(params, jnp.stack([jnp.asarray(np.roll(bump, -5)), 0 * X]))
    right = xc(params, jnp.stack([jnp.asarray(np.roll(bump, 5)), 0 * X]))
    # a shift by 10 points moves the output by 10 points (away from the edges)
    assert np.allclose(np.asarray(left)[20:50], np.asarray(right)[30:60], atol=1e-6)


@pytest.mark.parametrize("n", [7, 81, 300])
def test_exponential_convolution_matches_dense_kernel(n):
    from functionals.ksr import exponential_convolution

    rng = np.random.default_rng(n)
    density = jnp.asarray(rng.random(n))
    lengths = jnp.asarray([0.1, 0.7, 2.385345])
    x = np.arange(n) * DX
    dense = np.exp(-np.abs(x[:, None, None] - x[None, :, None]) / np.asarray(lengths)) * DX
    expected = np.einsum("ijk,j->ik", dense, np.asarray(density))
    # FFT round-off only: float64, sums of at most 300 positive terms of size <= 1
    np.testing.assert_allclose(exponential_convolution(density, lengths, DX), expected, rtol=1e-12, atol=1e-14)
