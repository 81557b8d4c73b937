"""qmc.linalg.slogdet against LAPACK's (jnp.linalg.slogdet): values, signs, gradients, edge cases."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qmc.linalg import slogdet, slogdet_elimination


@pytest.mark.parametrize("n", [1, 2, 5, 7])
def test_matches_lapack_values_signs_and_gradients(n):
    a = jax.random.normal(jax.random.PRNGKey(n), (16, 3, n, n))
    sign, logdet = slogdet_elimination(a)
    ref_sign, ref_logdet = jnp.linalg.slogdet(a)
    np.testing.assert_array_equal(sign, ref_sign)
    np.testing.assert_allclose(logdet, ref_logdet, atol=1e-12)
    grad = jax.grad(lambda x: jnp.sum(slogdet_elimination(x)[1]))(a)
    # d log|det a| / da = a^-T
    np.testing.assert_allclose(grad, jnp.swapaxes(jnp.linalg.inv(a), -1, -2), rtol=1e-9, atol=1e-9)


def test_row_swap_flips_the_sign_and_singular_gives_minus_infinity():
    a = jnp.array([[0.0, 2.0], [3.0, 1.0]])  # needs a pivot swap: det = -6
    sign, logdet = slogdet_elimination(a)
    assert float(sign) == -1.0 and float(logdet) == pytest.approx(np.log(6.0), abs=1e-15)
    sign, logdet = slogdet_elimination(a[::-1])
    assert float(sign) == 1.0
    assert float(slogdet_elimination(jnp.ones((3, 3)))[1]) == -np.inf


def test_rejects_non_square():
    with pytest.raises(ValueError, match="square matrices"):
        slogdet_elimination(jnp.ones((2, 3)))


def test_cpu_uses_the_elimination():
    """On CPU no LAPACK custom call is emitted (the batched ones can deadlock jaxlib 0.10.2's pool)."""
    a = jnp.ones((4, 3, 3)) + jnp.broadcast_to(jnp.eye(3), (4, 3, 3))
    text = jax.jit(slogdet).lower(a).as_text()
    assert jax.default_backend() != "cpu" or "lapack" not in text.lower()
    np.testing.assert_allclose(slogdet(a)[1], jnp.linalg.slogdet(a)[1], atol=1e-12)
