"""The neural meta-GGA of functionals.neural_xc: constraints the architecture guarantees, zero-density
safety, storage, and the shipped model behind ``get_functional("dftjax:nn-mgga")``."""
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functionals import get_functional, restricted_features, unrestricted_features
from functionals.features import NonlocalFeatures
from functionals.neural_xc import (MODELS_DIR, PRETRAINED, NeuralMGGAConfig, load_model, make_neural_mgga,
                                   neural_exchange_energy_density, save_model)

CONFIG = NeuralMGGAConfig(hidden=(8, 8))


def _perturbed(scale=0.5, seed=1):
    """A model far from PBE: every weight, including the zero-initialised output layers, random."""
    xc = make_neural_mgga(jax.random.PRNGKey(0), CONFIG)
    leaves, tree = jax.tree_util.tree_flatten(xc.params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    leaves = [x + scale * jax.random.normal(k, x.shape, jnp.float64) for x, k in zip(leaves, keys)]
    return xc, jax.tree_util.tree_unflatten(tree, leaves)


def _random_features(n=40, seed=0):
    rng = np.random.default_rng(seed)
    rho = 10.0 ** rng.uniform(-4, 1, (2, n))
    grad_a, grad_b = (rng.normal(size=(3, n)) * rho[s] ** (4 / 3) for s in (0, 1))
    sigma = np.stack([np.sum(grad_a**2, 0), np.sum(grad_a * grad_b, 0), np.sum(grad_b**2, 0)])
    tau_w = np.stack([sigma[0] / (8 * rho[0]), sigma[2] / (8 * rho[1])])
    tau = tau_w + rng.uniform(0, 2, (2, n)) * (6 * math.pi**2) ** (2 / 3) * 0.3 * rho ** (5 / 3)
    return unrestricted_features(jnp.asarray(rho), jnp.asarray(sigma), jnp.asarray(tau))


def test_untrained_model_is_pbe():
    xc = make_neural_mgga(jax.random.PRNGKey(3), CONFIG)
    features = _random_features()
    # the zero output layer makes F = b tanh(0) = 0 exactly; only PBE's own rounding remains
    np.testing.assert_allclose(xc(features), get_functional("pbe")(features), rtol=1e-13, atol=1e-15)


def test_uniform_gas_limit_holds_for_any_parameters():
    xc, params = _perturbed()
    rng = np.random.default_rng(1)
    rho = 10.0 ** rng.uniform(-3, 1, (2, 20))
    rho[1, :5] = 0.0  # fully polarised uniform gas too
    # uniform gas: no gradient, tau_s = (3/10) (6 pi^2)^(2/3) rho_s^(5/3)
    tau = 0.3 * (6 * math.pi**2) ** (2 / 3) * rho ** (5 / 3)
    features = unrestricted_features(jnp.asarray(rho), None, jnp.asarray(tau))
    np.testing.assert_allclose(xc(features, params), get_functional("pbe")(features), rtol=1e-12, atol=1e-15)
    # away from it the model differs from PBE (the check above is not vacuous)
    assert np.max(np.abs(xc(_random_features(), params) / get_functional("pbe")(_random_features()) - 1)) > 1e-3


def test_exchange_obeys_exact_spin_scaling():
    _, params = _perturbed()
    exchange = neural_exchange_energy_density(CONFIG)
    f = _random_features()
    # E_x[rho_a, rho_b] = (E_x[2 rho_a] + E_x[2 rho_b]) / 2, with the unpolarised densities 2 rho_s
    doubled = [restricted_features(2 * f.rho[s], 4 * f.sigma[2 * s], 2 * f.tau[s]) for s in (0, 1)]
    expected = 0.5 * (exchange(params, doubled[0]) + exchange(params, doubled[1]))
    np.testing.assert_allclose(exchange(params, f), expected, rtol=1e-13)


def test_correction_is_bounded():
    xc, params = _perturbed(scale=20.0)  # saturating tanh everywhere
    exchange = neural_exchange_energy_density(CONFIG)
    f = _random_features()
    ratio = exchange(params, f) / get_functional("pbe,")(f)
    assert np.all(ratio >= 1 - CONFIG.bound - 1e-12) and np.all(ratio <= 1 + CONFIG.bound + 1e-12)
    assert np.all(exchange(params, f) < 0)  # exchange stays negative


def test_spin_swap_symmetry():
    xc, params = _perturbed()
    f = _random_features()
    swapped = f._replace(rho=f.rho[::-1], sigma=f.sigma[::-1], tau=f.tau[::-1])
    np.testing.assert_allclose(xc(swapped, params), xc(f, params), rtol=1e-13)


def test_zero_density_values_and_gradients_are_finite():
    xc, params = _perturbed()
    rho = jnp.array([[0.0, 0.0, 1e-30, 0.3, 0.3, 1e-3], [0.0, 0.2, 0.0, 0.0, 0.3, 1e-3]])
    sigma = jnp.array([[0.0, 0.0, 0.0, 0.0, 0.0, 1e-6], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                       [0.0, 0.01, 0.0, 0.0, 0.0, 1e-6]])
    tau = jnp.array([[0.0, 0.0, 0.0, 0.1, 0.0, 0.0], [0.0, 0.05, 0.0, 0.0, 0.0, 0.0]])
    features = unrestricted_features(rho, sigma, tau)
    weights = jnp.ones(6)

    def energy(p, f):
        return jnp.sum(weights * xc(f, p))

    assert np.all(np.isfinite(xc(features, params)))
    assert float(xc(features, params)[0]) == 0.0  # exactly zero energy at zero density
    grads = jax.grad(energy, argnums=(0, 1))(params, features)
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))


@pytest.mark.slow
def test_zero_density_second_derivatives_are_finite():
    # the SCF's implicit adjoint differentiates the XC potential once more
    xc, params = _perturbed()
    rho = jnp.array([[0.0, 0.0, 1e-30, 0.3], [0.0, 0.2, 0.0, 0.0]])
    sigma = jnp.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.01, 0.0, 0.0]])
    tau = jnp.array([[0.0, 0.0, 0.0, 0.1], [0.0, 0.05, 0.0, 0.0]])
    features = unrestricted_features(rho, sigma, tau)

    def energy(p, f):
        return jnp.sum(xc(f, p))

    hvp = jax.jvp(lambda f: jax.grad(energy, argnums=1)(params, f), (features,),
                  (jax.tree_util.tree_map(jnp.ones_like, features),))[1]
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(hvp))


@pytest.mark.slow
def test_parameter_gradient_matches_finite_differences():
    xc, params = _perturbed(scale=0.3)
    f = _random_features(n=12)
    weights = jnp.linspace(0.1, 1.0, 12)
    energy = lambda p: jnp.sum(weights * xc(f, p))  # noqa: E731
    grad = jax.grad(energy)(params)
    kernel = params["correlation"]["params"]["Dense_0"]["kernel"]
    h = 1e-5
    for index in [(0, 0), (2, 3), (3, 7)]:
        def at(delta):
            k = kernel.at[index].add(delta)
            p = {**params, "correlation": {"params": {**params["correlation"]["params"],
                                                      "Dense_0": {**params["correlation"]["params"]["Dense_0"],
                                                                  "kernel": k}}}}
            return energy(p)
        fd = (at(h) - at(-h)) / (2 * h)
        # central differences: O(h^2) ~ 1e-10 relative truncation plus rounding 1e-16 / 1e-5
        assert float(grad["correlation"]["params"]["Dense_0"]["kernel"][index]) == pytest.approx(float(fd), rel=1e-6, abs=1e-10)


def test_save_and_load_round_trip(tmp_path):
    _, params = _perturbed()
    path = str(tmp_path / "model.npz")
    save_model(path, params, CONFIG, {"note": "test"})
    loaded, config, metadata = load_model(path)
    assert config == CONFIG and metadata == {"note": "test"}
    f = _random_features()
    xc = make_neural_mgga(config=CONFIG)
    np.testing.assert_array_equal(xc(f, loaded), xc(f, params))


def test_load_rejects_bad_files(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_model(str(tmp_path / "missing.npz"))
    bad = str(tmp_path / "bad.npz")
    np.savez(bad, weights=np.ones(3))
    with pytest.raises(ValueError, match="no 'config'"):
        load_model(bad)
    with pytest.raises(ValueError, match="bound"):
        NeuralMGGAConfig(bound=1.5)


@pytest.mark.parametrize("name", ["dftjax:nn-mgga", "dftjax:nn-mgga-density"])
def test_registry_loads_the_shipped_model(name):
    assert os.path.exists(os.path.join(MODELS_DIR, PRETRAINED[name])), "trained weights not shipped"
    xc = get_functional(name)
    assert xc.kind == "mgga" and not xc.is_hybrid and xc.name == name
    f = _random_features()
    e = xc(f)
    assert np.all(np.isfinite(e))
    # trained: it is not PBE any more, but stays within the bounded correction of it
    ratio = e / get_functional("pbe")(f)
    assert np.max(np.abs(ratio - 1)) > 0 and np.all(np.abs(ratio - 1) <= 1.0)
    assert get_functional(name.upper()).name == name
    # the shipped weights at zero density, zero gradient and full polarisation (issue 7, point 6)
    rho = jnp.array([[0.0, 0.0, 1e-30, 0.3], [0.0, 0.2, 0.0, 0.0]])
    sigma = jnp.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.01, 0.0, 0.0]])
    tau = jnp.array([[0.0, 0.0, 0.0, 0.1], [0.0, 0.05, 0.0, 0.0]])
    zero = unrestricted_features(rho, sigma, tau)
    assert float(xc(zero)[0]) == 0.0
    grads = jax.grad(lambda p, f: jnp.sum(xc(f, p)), argnums=(0, 1))(xc.params, zero)
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
    _, _, metadata = load_model(os.path.join(MODELS_DIR, PRETRAINED[name]))
    assert metadata["basis"] == "6-31g" and metadata["steps"] >= 1 and metadata["train"]
    if name == "dftjax:nn-mgga-density":  # trained on densities too, from the energies-only model
        assert metadata["loss_weights"]["density"] > 0 and metadata["init"] == "dftjax:nn-mgga"


def test_local_hybrid_save_and_load_round_trip(tmp_path):
    """The local hybrid's config (nested NeuralMGGAConfig) and all three parameter groups survive the
    .npz round trip, and the reloaded model gives the same energy density bit for bit."""
    from functionals.neural_xc import (NeuralLocalHybridConfig, init_local_hybrid_params,
                                       local_hybrid_params_from_mgga, model_from_file,
                                       neural_local_hybrid_energy_density)

    config = NeuralLocalHybridConfig(semilocal=CONFIG, hidden=(4, 3), max_fraction=0.4, initial_logit=-2.0)
    params = jax.tree_util.tree_map(lambda x: x + 0.1, init_local_hybrid_params(jax.random.PRNGKey(2), config))
    path = str(tmp_path / "hybrid.npz")
    save_model(path, params, config, {"note": "hybrid"})
    loaded, loaded_config, metadata = load_model(path)
    assert loaded_config == config and isinstance(loaded_config.semilocal, NeuralMGGAConfig)
    assert metadata == {"note": "hybrid"} and set(loaded) == {"exchange", "correlation", "mixing"}
    f = _random_features()
    exx = -jnp.abs(jnp.asarray(np.random.default_rng(3).normal(size=(2, 40)))) * f.rho
    e = neural_local_hybrid_energy_density(config)
    np.testing.assert_array_equal(e(loaded, NonlocalFeatures(f, exx)), e(params, NonlocalFeatures(f, exx)))
    assert model_from_file(path, name="x").name == "x"
    # a meta-GGA file still loads as a meta-GGA (files written before local hybrids have no tag)
    save_model(str(tmp_path / "mgga.npz"), _perturbed()[1], CONFIG)
    assert isinstance(load_model(str(tmp_path / "mgga.npz"))[1], NeuralMGGAConfig)
    # semilocal part from a meta-GGA, fresh mixing MLP
    mgga = _perturbed()[1]
    hybrid = local_hybrid_params_from_mgga(mgga, jax.random.PRNGKey(0), config)
    assert hybrid["exchange"] is mgga["exchange"] and hybrid["correlation"] is mgga["correlation"]
    with pytest.raises(ValueError, match="max_fraction"):
        NeuralLocalHybridConfig(max_fraction=0.0)


def test_registry_loads_the_shipped_local_hybrid():
    """``dftjax:nn-local-hybrid`` is a nonlocal functional: it loads by name, refuses pointwise use,
    and PySCF's plugin rejects it with a clear message."""
    from functionals.neural_xc import NeuralLocalHybridConfig

    path = os.path.join(MODELS_DIR, PRETRAINED["dftjax:nn-local-hybrid"])
    assert os.path.exists(path), "trained weights not shipped"
    xc = get_functional("dftjax:nn-local-hybrid")
    assert xc.name == "dftjax:nn-local-hybrid" and xc.needs_grid_coulomb and not xc.is_hybrid
    assert set(xc.params) == {"exchange", "correlation", "mixing"}
    with pytest.raises(ValueError, match="nonlocal"):
        xc(_random_features())
    f = _random_features()
    exx = -jnp.abs(jnp.asarray(np.random.default_rng(5).normal(size=(2, f.n_points)))) * f.rho
    assert np.all(np.isfinite(xc(NonlocalFeatures(f, exx))))  # the analytic functionals' call
    params, config, metadata = load_model(path)
    assert isinstance(config, NeuralLocalHybridConfig)
    assert metadata["basis"] == "6-31g" and metadata["train"] and metadata.get("model") == "nn-local-hybrid"
    # functionals/models/README.md, "What was learned is small": mixing output bias -2.97, output
    # kernel |w| <= 0.067 (sum of |w| 0.22), semilocal weights at most 0.072 from nn-mgga's
    out = params["mixing"]["params"]["Dense_1"]
    assert round(float(out["bias"][0]), 2) == -2.97
    assert round(float(np.max(np.abs(out["kernel"]))), 3) == 0.067
    assert round(float(np.sum(np.abs(out["kernel"]))), 2) == 0.22
    mgga, _, _ = load_model(os.path.join(MODELS_DIR, PRETRAINED["dftjax:nn-mgga"]))
    shifts = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
                                    {k: params[k] for k in mgga}, mgga)
    assert round(max(jax.tree_util.tree_leaves(shifts)), 3) == 0.072


def test_shipped_local_hybrid_is_finite_at_zero_density():
    """Issue 7, point 6 for the nonlocal model: values and gradients (parameters, features and the
    exact-exchange energy density) finite at zero density, zero gradient and full polarisation."""
    xc = get_functional("dftjax:nn-local-hybrid")
    rho = jnp.array([[0.0, 0.0, 1e-30, 0.3], [0.0, 0.2, 0.0, 0.0]])
    sigma = jnp.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.01, 0.0, 0.0]])
    tau = jnp.array([[0.0, 0.0, 0.0, 0.1], [0.0, 0.05, 0.0, 0.0]])
    exact = jnp.array([[0.0, 0.0, 0.0, -0.2], [0.0, -0.1, 0.0, 0.0]])
    zero = unrestricted_features(rho, sigma, tau)
    e = xc(NonlocalFeatures(zero, exact))  # the same call as for any functional
    assert np.all(np.isfinite(e)) and float(e[0]) == 0.0
    grads = jax.grad(lambda p, f: jnp.sum(xc(f, p)), argnums=(0, 1))(xc.params, NonlocalFeatures(zero, exact))
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
