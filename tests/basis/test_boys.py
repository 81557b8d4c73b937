"""Boys function against the incomplete gamma function, and its derivative identity."""

import jax
import numpy as np
import pytest
from scipy.special import gamma, gammainc

from basis.integrals._boys import T_SWITCH, boys


def reference(m, t):
    """F_m(T) = gamma(m + 1/2) P(m + 1/2, T) / (2 T^(m + 1/2)); F_m(0) = 1 / (2m + 1)."""
    t = np.asarray(t, dtype=np.float64)
    safe = np.where(t > 0, t, 1.0)
    value = gamma(m + 0.5) * gammainc(m + 0.5, safe) / (2 * safe ** (m + 0.5))
    # Near T = 0 the Taylor series (F_m' = -F_{m+1}) avoids 0/0 in the formula above.
    series = 1.0 / (2 * m + 1) - t / (2 * m + 3) + t**2 / (2 * (2 * m + 5))
    return np.where(t > 1e-6, value, series)


def test_values_all_orders():
    rng = np.random.default_rng(0)
    t = np.concatenate([[0.0, 1e-14, 1e-8, 0.05, 0.05000001, T_SWITCH - 1e-9, T_SWITCH, 45.0, 1e3, 1e6],
                        rng.uniform(0, 50, 400), 10 ** rng.uniform(-6, 2, 200)])
    m_max = 24
    values = np.asarray(jax.jit(boys, static_argnums=0)(m_max, t))
    for m in range(m_max + 1):
        ref = reference(m, t)
        # scipy's regularised gamma is itself good to ~1e-14 relative.
        np.testing.assert_allclose(values[:, m], ref, rtol=2e-13, atol=0)


_jacobian = jax.jit(jax.jacfwd(lambda x: boys(6, x)))
_hessian = jax.jit(jax.hessian(lambda x: boys(6, x)[3]))


@pytest.mark.parametrize("t", [0.0, 0.3, 7.7, T_SWITCH - 0.01, T_SWITCH + 0.01, 80.0])
def test_derivative_is_minus_next_order(t):
    # dF_m/dT = -F_{m+1}, including at T = 0 and on both sides of the branch switch.
    grads = _jacobian(t)
    np.testing.assert_allclose(np.asarray(grads)[:6], -reference(np.arange(1, 7), t), rtol=1e-12)
    assert np.all(np.isfinite(np.asarray(_hessian(t))))


def test_order_limit_is_a_clear_error():
    with pytest.raises(ValueError, match="Boys order 40 too high"):
        boys(40, np.zeros(3))
