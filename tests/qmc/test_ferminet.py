"""FermiNet: antisymmetry, shapes, the registry."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from basis.molecule import make_molecule
from qmc.ansatz import FermiNetOptions, make_ansatz
from tests.qmc.conftest import SMALL


def _swap(x, i, j):
    x = np.array(x).reshape(-1, 3)
    x[[i, j]] = x[[j, i]]
    return jnp.asarray(x.ravel())


@pytest.mark.parametrize("pair", [(0, 1), (2, 3)], ids=["up-up", "down-down"])
def test_antisymmetric_under_same_spin_exchange(lih, pair):
    _, module, params = lih
    apply = jax.jit(module.apply)
    x = jax.random.normal(jax.random.PRNGKey(7), (12,)) * 1.5
    sign, log_abs = apply(params, x)
    sign_swapped, log_abs_swapped = apply(params, _swap(x, *pair))
    assert float(sign_swapped) == -float(sign)
    np.testing.assert_allclose(log_abs_swapped, log_abs, rtol=0, atol=1e-12)  # same numbers, permuted rows


def test_not_symmetric_under_opposite_spin_exchange(lih):
    """Exchanging an up and a down electron is no symmetry of the network: |psi| changes."""
    _, module, params = lih
    apply = jax.jit(module.apply)
    x = jax.random.normal(jax.random.PRNGKey(7), (12,)) * 1.5
    assert abs(float(apply(params, x)[1] - apply(params, _swap(x, 0, 2))[1])) > 1e-6


def test_position_shapes_agree_and_vmap(lih):
    _, module, params = lih
    xs = jax.random.normal(jax.random.PRNGKey(3), (5, 12))
    batched = jax.jit(jax.vmap(lambda x: module.apply(params, x)[1]))(xs)
    apply = jax.jit(module.apply)
    single = jnp.stack([apply(params, x.reshape(4, 3))[1] for x in xs])
    np.testing.assert_allclose(batched, single, rtol=1e-12)


def test_spin_polarised_atom_has_no_down_stream():
    """Li with spin=3 (3 up, 0 down): the empty spin channel is dropped, output finite."""
    molecule = make_molecule("Li 0 0 0", spin=3)
    module = make_ansatz("ferminet", molecule, SMALL)
    x = jax.random.normal(jax.random.PRNGKey(0), (9,))
    params = jax.jit(module.init)(jax.random.PRNGKey(1), x)
    apply = jax.jit(module.apply)
    sign, log_abs = apply(params, x)
    assert np.isfinite(float(log_abs)) and float(sign) in (-1.0, 1.0)
    assert float(apply(params, _swap(x, 1, 2))[0]) == -float(sign)


def test_registry_rejects_unknown_names_and_options():
    molecule = make_molecule("He 0 0 0")
    with pytest.raises(ValueError, match="unknown ansatz"):
        make_ansatz("ferminett", molecule)
    with pytest.raises(ValueError, match="takes FermiNetOptions"):
        make_ansatz("ferminet", molecule, options={"determinants": 2})
    with pytest.raises(ValueError, match="equal length"):
        FermiNetOptions(hidden_one=(8, 8), hidden_two=(4,))
