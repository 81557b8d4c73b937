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


@pytest.fixture(scope="module")
def laplacians(log_psi_and_points):
    """method -> (laplacians (4,), gradients (4, 12)) at the points; one compilation per method."""
    f, points = log_psi_and_points
    return {name: jax.jit(jax.vmap(method(f)))(points)
            for name, method in (("hessian", hessian_laplacian), ("forward", forward_laplacian))}


def test_forward_and_hessian_laplacians_agree(laplacians):
    lap_h, grad_h = laplacians["hessian"]
    lap_f, grad_f = laplacians["forward"]
    # Two exact autodiff schemes differing only in rounding order: 1e-8 is the bar.
    np.testing.assert_allclose(lap_f, lap_h, rtol=0, atol=1e-8)
    np.testing.assert_allclose(grad_f, grad_h, rtol=0, atol=1e-10)


@pytest.fixture(scope="module")
def finite_differences(log_psi_and_points):
    """(laplacians, gradients) of the first two points by five-point stencils, all shifts in one batch."""
    f, points = log_psi_and_points
    h = 1e-3
    x = np.asarray(points[:2])
    eye = np.eye(x.shape[1])
    shifts = np.array([-2, -1, 1, 2])
    # (2 points, 4 shifts, 12 axes, 12) shifted configurations plus the 2 points themselves
    shifted = x[:, None, None, :] + h * shifts[None, :, None, None] * eye[None, None, :, :]
    values = np.asarray(jax.jit(jax.vmap(f))(np.concatenate([shifted.reshape(-1, x.shape[1]), x])))
    f0 = values[-2:, None]
    fm2, fm1, fp1, fp2 = np.moveaxis(values[:-2].reshape(2, 4, -1), 1, 0)
    # five-point stencils: truncation ~h^4 f^(6) ~ 1e-11, rounding ~ 30 eps |f| / (12 h^2) ~ 1e-9 per axis
    second = (-fp2 + 16 * fp1 - 30 * f0 + 16 * fm1 - fm2) / (12 * h**2)
    first = (-fp2 + 8 * fp1 - 8 * fm1 + fm2) / (12 * h)
    return second.sum(axis=1), first


@pytest.mark.parametrize("method", ["hessian", "forward"])
def test_laplacian_against_finite_differences(laplacians, finite_differences, method):
    lap, grad = laplacians[method]
    lap_fd, grad_fd = finite_differences
    np.testing.assert_allclose(lap_fd, np.asarray(lap[:2]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(grad_fd, np.asarray(grad[:2]), rtol=0, atol=1e-8)


def test_laplacians_agree_in_float32(lih, log_psi_and_points, laplacians):
    """float32 (walkers and parameters cast): both methods agree with each other to ~10 float32 ulps of
    the Laplacian and with the float64 values to rtol 1e-3. Measured on 64 such points (|lap| up to
    3.5e4 near nodes of the random network): forward vs Hessian 6e-3 absolute (2e-7 relative), float32
    vs float64 at most 8.6e-5 relative (slogdet's rounding near nodes), gradients 5e-3 absolute."""
    _, module, params = lih
    _, points = log_psi_and_points
    params32 = jax.tree_util.tree_map(lambda a: a.astype(np.float32), params)
    f32 = lambda x: module.apply(params32, x)[1]
    x32 = points.astype(np.float32)
    lap_h, grad_h = jax.jit(jax.vmap(hessian_laplacian(f32)))(x32)
    lap_f, grad_f = jax.jit(jax.vmap(forward_laplacian(f32)))(x32)
    assert lap_h.dtype == lap_f.dtype == grad_f.dtype == np.float32
    scale = np.abs(np.asarray(laplacians["hessian"][0]))
    np.testing.assert_allclose(lap_f, lap_h, rtol=1e-5, atol=1e-6 * scale.max())
    np.testing.assert_allclose(grad_f, grad_h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lap_f, laplacians["hessian"][0], rtol=1e-3)
    np.testing.assert_allclose(grad_f, laplacians["hessian"][1], rtol=1e-3, atol=1e-3)


def test_sparse_forward_laplacian_from_ten_electrons_equals_dense(monkeypatch):
    """From 30 coordinates the default propagates folx's sparse per-electron Jacobians (threshold 6,
    FermiNet's): the same Laplacian and gradient as the dense propagation, to rounding."""
    from basis.molecule import make_molecule
    from qmc.ansatz import FermiNetOptions, make_ansatz

    molecule = make_molecule("Ne 0 0 0", unit="bohr")  # 10 electrons, 30 coordinates
    module = make_ansatz("ferminet", molecule, FermiNetOptions(hidden_one=(8,), hidden_two=(4,), determinants=1))
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 30)) * 0.8
    params = jax.jit(module.init)(jax.random.PRNGKey(4), x[0])
    f = lambda y: module.apply(params, y)[1]  # noqa: E731
    import folx

    thresholds = []
    real = folx.forward_laplacian
    monkeypatch.setattr(folx, "forward_laplacian", lambda fn, sparsity_threshold=0: (
        thresholds.append(sparsity_threshold), real(fn, sparsity_threshold=sparsity_threshold))[1])
    lap_sparse, grad_sparse = jax.jit(jax.vmap(forward_laplacian(f)))(x)
    lap_dense, grad_dense = jax.jit(jax.vmap(forward_laplacian(f, sparsity_threshold=0)))(x)
    np.testing.assert_allclose(lap_sparse, lap_dense, rtol=1e-11)  # summation order only
    np.testing.assert_allclose(grad_sparse, grad_dense, rtol=1e-11, atol=1e-12)
    assert thresholds == [6, 0]  # the default picked the sparse path


def test_determinant_rule_is_used_and_matches_the_hessian(monkeypatch):
    """The forward Laplacian takes :func:`qmc.linalg.slogdet` as one operation (Jacobi's formula,
    :func:`qmc.laplacian.slogdet_forward_laplacian`), sparse and dense: same Laplacian and gradient
    of log|det A(x)| as the Hessian trace, for a nonlinear A(x) with a row swap in its elimination."""
    import jax.numpy as jnp

    import folx

    from qmc.laplacian import slogdet_forward_laplacian
    from qmc.linalg import ELIMINATION_CALL, slogdet, slogdet_and_inverse

    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return slogdet_forward_laplacian(*args, **kwargs)

    forward_laplacian(lambda x: x)  # registers the rule
    monkeypatch.setitem(folx.wrapped_functions._LAPLACE_FN_REGISTRY, ELIMINATION_CALL, spy)
    w = jax.random.normal(jax.random.PRNGKey(5), (4, 4, 6))

    def f(x):  # (6,) -> log|det A(x)| with A_ij = sin(w_ij . x) + [i + 1 == j], zero pivot first
        return slogdet(jnp.sin(w @ x) + jnp.eye(4, k=1))[1]

    x = jax.random.normal(jax.random.PRNGKey(6), (6,)) * 0.3
    ref_lap, ref_grad = hessian_laplacian(f)(x)
    for threshold in (0, 1):
        lap, grad = jax.jit(forward_laplacian(f, sparsity_threshold=threshold))(x)
        np.testing.assert_allclose(lap, ref_lap, rtol=1e-10)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-12)
    assert len(calls) == 2
    a = jnp.sin(w @ x) + jnp.eye(4, k=1)
    np.testing.assert_allclose(slogdet_and_inverse(a)[2], jnp.linalg.inv(a), rtol=1e-10, atol=1e-12)
