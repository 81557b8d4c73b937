"""Both Laplacian methods on FermiNet: against each other and against finite differences."""
import jax
import numpy as np
import pytest

from qmc.laplacian import forward_laplacian, hessian_laplacian


@pytest.fixture(scope="module")
def log_psi_and_points(lih):
    _, module, params = lih
    f = lambda x: module.apply(params, x)[1]
    points = jax.random.normal(jax.random.PRNGKey(11), (4, 12)) * 1.2
    return f, points


def test_forward_and_hessian_laplacians_agree(log_psi_and_points):
    f, points = log_psi_and_points
    lap_h, grad_h = jax.jit(jax.vmap(hessian_laplacian(f)))(points)
    lap_f, grad_f = jax.jit(jax.vmap(forward_laplacian(f)))(points)
    # Two exact autodiff schemes differing only in rounding order: 1e-8 is the bar.
    np.testing.assert_allclose(lap_f, lap_h, rtol=0, atol=1e-8)
    np.testing.assert_allclose(grad_f, grad_h, rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", ["hessian", "forward"])
def test_laplacian_against_finite_differences(log_psi_and_points, method):
    f, points = log_psi_and_points
    laplacian = jax.jit((hessian_laplacian if method == "hessian" else forward_laplacian)(f))
    f = jax.jit(f)
    h = 1e-3
    for x in points[:2]:
        lap, grad = laplacian(x)
        eye = np.eye(x.size)
        f0 = float(f(x))
        shifted = {k: np.array([float(f(x + k * h * e)) for e in eye]) for k in (-2, -1, 1, 2)}
        # five-point stencils: truncation ~h^4 f^(6) ~ 1e-11, rounding ~ 30 eps |f| / (12 h^2) ~ 1e-9 per axis
        second = (-shifted[2] + 16 * shifted[1] - 30 * f0 + 16 * shifted[-1] - shifted[-2]) / (12 * h**2)
        first = (-shifted[2] + 8 * shifted[1] - 8 * shifted[-1] + shifted[-2]) / (12 * h)
        np.testing.assert_allclose(np.sum(second), float(lap), rtol=0, atol=1e-6)
        np.testing.assert_allclose(first, np.asarray(grad), rtol=0, atol=1e-8)
