"""A learned functional (a tiny Flax MLP scaling LDA exchange) wrapped as a Functional.

Shows the neural-ready contract: parameters are an ordinary pytree, energies and their parameter
gradients come from jax.grad, and the result combines with registered functionals.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functionals import (Features, from_energy_density, get_functional, linear_combination,
                         restricted_features, slater_x)
from functionals.functional import exchange_correlation_energy


class EnhancementMLP(nn.Module):
    """F(rho, s) = 1 + 0.1 tanh(MLP(log rho, s^2)) per point, so F stays near 1."""

    hidden: int = 8

    @nn.compact
    def __call__(self, features: Features) -> jnp.ndarray:
        rho = features.total_density
        sigma = features.sigma[0] + 2 * features.sigma[1] + features.sigma[2]
        # log of zero density must stay finite, and so must its gradient (double where)
        safe = jnp.where(rho > 1e-12, rho, 1.0)
        x = jnp.stack([jnp.where(rho > 1e-12, jnp.log(safe), 0.0),
                       jnp.where(rho > 1e-12, sigma / safe ** (8 / 3), 0.0)], axis=-1)
        h = jnp.tanh(nn.Dense(self.hidden)(x))
        return 1.0 + 0.1 * jnp.tanh(nn.Dense(1)(h))[:, 0]


def _neural_lda_exchange(key):
    model = EnhancementMLP()
    dummy = restricted_features(jnp.ones(3), jnp.ones(3))
    # Flax initialises in float32; a functional is trained in float64 like the SCF it feeds.
    variables = jax.tree_util.tree_map(lambda x: x.astype(jnp.float64), model.init(key, dummy))

    def energy_density(variables, features):
        return model.apply(variables, features) * slater_x(None, features)

    return from_energy_density("mlp*slater", energy_density, variables, kind="gga")


def _points():
    rng = np.random.default_rng(0)
    rho = jnp.asarray(10.0 ** rng.uniform(-3, 1, 50))
    sigma = jnp.asarray(rng.uniform(0, 1, 50) * rho ** (8 / 3))
    weights = jnp.asarray(rng.uniform(0.1, 1.0, 50))
    return restricted_features(rho, sigma), weights


def test_parameter_gradient_matches_finite_differences():
    neural = _neural_lda_exchange(jax.random.PRNGKey(0))
    features, weights = _points()

    def energy(variables):
        return exchange_correlation_energy(neural, features, weights, variables)

    grads = jax.grad(energy)(neural.params)
    leaves, treedef = jax.tree_util.tree_flatten(neural.params)
    grad_leaves = jax.tree_util.tree_leaves(grads)
    rng = np.random.default_rng(1)
    h = 1e-6
    for i, leaf in enumerate(leaves):
        index = tuple(rng.integers(0, n) for n in leaf.shape)
        bumped = []
        for sign in (1.0, -1.0):
            new = list(leaves)
            new[i] = leaf.at[index].add(sign * h)
            bumped.append(energy(jax.tree_util.tree_unflatten(treedef, new)))
        fd = (bumped[0] - bumped[1]) / (2 * h)
        # central differences: error h^2 |E'''| ~ 1e-12 against derivatives of order 1e-2
        np.testing.assert_allclose(grad_leaves[i][index], fd, rtol=1e-6, atol=1e-10)


@pytest.mark.slow  # default-suite budget (2026-11-28); the physics is covered by cheaper default tests
def test_neural_functional_combines_with_registered_ones_and_has_potentials():
    neural = _neural_lda_exchange(jax.random.PRNGKey(1))
    hybrid = linear_combination([(0.8, neural), (1.0, get_functional(",vwn"))], "nn+vwn", hf=0.2,
                                lr_hf=0.2)
    assert hybrid.exact_exchange == 0.2 and hybrid.kind == "gga"
    features, weights = _points()
    potentials = jax.grad(lambda f: exchange_correlation_energy(hybrid, f, weights))(features)
    assert all(np.all(np.isfinite(p)) for p in potentials)
    # params of the mixture are (mlp variables, VWN constants): all differentiable
    grads = jax.grad(lambda p: exchange_correlation_energy(hybrid, features, weights, p))(
        hybrid.params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
    # at zero density the wrapped functional is finite with finite gradients
    zero = restricted_features(jnp.zeros(2), jnp.zeros(2))
    g0 = jax.grad(lambda f: jnp.sum(neural(f)))(zero)
    assert all(np.all(np.isfinite(x)) for x in g0)
