"""AO values and derivatives on points against PySCF's eval_gto, and their nuclear derivatives."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from basis.ao import ao_values, ao_values_blocked, derivative_orders, n_components
from basis.gto import make_basis
from basis.molecule import make_molecule

WATER = "O 0 0 0; H 0 0.757 0.587; H 0 -0.757 0.587"
HCL = "H 0 0 0; Cl 0 0 1.27"  # def2-TZVP puts an f shell on Cl

_evaluate = jax.jit(ao_values, static_argnames="deriv")


def _points(molecule, n_random=200, seed=0):
    """(n, 3) bohr: a cloud around the molecule, points near and exactly on each nucleus, far points."""
    rng = np.random.default_rng(seed)
    centre = molecule.coords.mean(axis=0)
    cloud = centre + 2.0 * rng.normal(size=(n_random, 3))
    near = np.concatenate([molecule.coords + 0.02 * rng.normal(size=molecule.coords.shape), molecule.coords])
    far = centre + np.array([[9.0, 0.0, 0.0], [0.0, -7.0, 5.0]])
    return np.concatenate([cloud, near, far])


def _pyscf_ao(molecule, basis_name, cartesian, points, deriv):
    mol = molecule.to_pyscf(basis=basis_name, cartesian=cartesian)
    key = f"GTOval_{'cart' if cartesian else 'sph'}" + (f"_deriv{deriv}" if deriv else "")
    return mol.eval_gto(key, points).reshape(n_components(deriv), len(points), -1)


def _assert_matches_pyscf(atom, basis_name, cartesian, deriv):
    molecule = make_molecule(atom)
    basis = make_basis(molecule, basis_name, cartesian=cartesian)
    points = _points(molecule)
    ref = _pyscf_ao(molecule, basis_name, cartesian, points, deriv)
    ao = np.asarray(_evaluate(basis, molecule.coords, points, deriv=deriv))
    assert ao.shape == ref.shape == (n_components(deriv), len(points), basis.nao)
    # Same formulas in a different order: 1e-12 absolute, relative where |phi| (second derivatives
    # of tight s functions reach ~1e4 bohr^-7/2) is large. Measured: <= 1.3e-13 relative.
    np.testing.assert_allclose(ao, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cartesian", [False, True], ids=["spherical", "cartesian"])
@pytest.mark.parametrize("deriv", [0, 1, 2])
def test_water_svp_matches_pyscf(deriv, cartesian):
    _assert_matches_pyscf(WATER, "def2-svp", cartesian, deriv)


@pytest.mark.parametrize("cartesian", [False, True], ids=["spherical", "cartesian"])
def test_f_functions_match_pyscf(cartesian):
    assert make_basis(make_molecule(HCL), "def2-tzvp").max_l == 3
    # deriv=1 keeps the default run fast; second derivatives of f functions are in the slow tests.
    _assert_matches_pyscf(HCL, "def2-tzvp", cartesian, deriv=1)


@pytest.mark.slow
@pytest.mark.parametrize("cartesian", [False, True], ids=["spherical", "cartesian"])
@pytest.mark.parametrize(
    "atom,basis_name",
    [(WATER, "def2-tzvp"), (WATER, "cc-pvtz"), (HCL, "def2-tzvp")],
    ids=["water-def2-tzvp", "water-cc-pvtz", "hcl-def2-tzvp"],
)
def test_f_functions_second_derivatives_match_pyscf(atom, basis_name, cartesian):
    _assert_matches_pyscf(atom, basis_name, cartesian, deriv=2)


@pytest.mark.slow
@pytest.mark.parametrize("atom,basis_name", [(WATER, "def2-svp"), (HCL, "def2-tzvp")], ids=["water-def2-svp", "hcl-def2-tzvp"])
def test_third_derivatives_match_pyscf(atom, basis_name):
    molecule = make_molecule(atom)
    basis = make_basis(molecule, basis_name)
    points = _points(molecule)
    ref = _pyscf_ao(molecule, basis_name, False, points, 3)
    ao = np.asarray(_evaluate(basis, molecule.coords, points, deriv=3))
    # Third derivatives cancel terms of size (2 a r)^3 R_K: compare relative to the largest value of
    # each (component, AO) column over the points. Measured: <= 1.6e-14.
    scale = np.maximum(1.0, np.abs(ref).max(axis=1, keepdims=True))
    error = np.abs(ao - ref) / scale
    assert error.max() <= 1e-12, f"max scaled error {error.max():.3g}"


def test_component_order_is_pyscf_order():
    assert derivative_orders(2).tolist() == [
        [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1],
        [2, 0, 0], [1, 1, 0], [1, 0, 1], [0, 2, 0], [0, 1, 1], [0, 0, 2],
    ]
    assert [n_components(d) for d in range(5)] == [1, 4, 10, 20, 35]


@functools.lru_cache(maxsize=None)
def _water_svp():
    molecule = make_molecule(WATER)
    return molecule, make_basis(molecule, "def2-svp")


@functools.partial(jax.jit, static_argnames="deriv")
def _nuclear_jacobian(basis, coords, points, deriv):
    """(n_components(deriv), P, nao, n_atoms, 3): d/dR of the AO components, by forward mode."""
    return jax.jacfwd(lambda coords: ao_values(basis, coords, points, deriv))(coords)


@pytest.mark.parametrize("deriv", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_nuclear_derivative_is_minus_electronic_derivative(deriv):
    """phi_mu depends on r - R_A only: d/dR_A = -d/dr for AOs on atom A, 0 for the other atoms."""
    molecule, basis = _water_svp()
    points = _points(molecule, n_random=40)
    jac = np.asarray(_nuclear_jacobian(basis, molecule.coords, points, deriv))  # (D, P, nao, n_atoms, 3)
    higher = np.asarray(_evaluate(basis, molecule.coords, points, deriv=deriv + 1))
    orders = derivative_orders(deriv + 1).tolist()
    ao_atom = np.empty(basis.nao, dtype=int)
    for shell, atom in enumerate(basis.shell_atom):
        ao_atom[basis.ao_indices([shell])] = atom
    for atom in range(molecule.n_atoms):
        on = ao_atom == atom
        for j in range(3):
            d_dR = jac[..., atom, j]  # (D, P, nao)
            # the component of order n, differentiated by R_A,j: minus the component of order n + e_j
            expected = np.stack([-higher[orders.index((order + np.eye(3, dtype=int)[j]).tolist())]
                                 for order in derivative_orders(deriv)])
            np.testing.assert_allclose(d_dR[..., on], expected[..., on], rtol=1e-12, atol=1e-12)
            assert np.all(d_dR[..., ~on] == 0.0)


@pytest.mark.slow  # ~100 s of compilation: keeps the default tier under 10 minutes; the default force tests use the rule
@pytest.mark.parametrize("deriv", [0, 1])
def test_position_rule_equals_differentiating_the_code(deriv):
    """ao_values' derivative rule (the next derivative order, since an AO depends on r - R_A only)
    against JAX differentiating the evaluation itself: gradients in positions, points and exponents,
    and second derivatives (the rule applied twice), equal to rounding."""
    from basis.ao import _evaluate as plain

    molecule, basis = _water_svp()
    points = _points(molecule, n_random=30)
    weights = np.random.default_rng(1).normal(size=(n_components(deriv), len(points), basis.nao))

    def loss(evaluate):
        def f(coords, pts, exponents):
            b = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(basis), [exponents, basis.coefficients])
            return jnp.sum(weights * evaluate(b, coords, pts))
        return f

    ours = loss(lambda b, c, p: ao_values(b, c, p, deriv))
    ref = loss(lambda b, c, p: plain(deriv, b, c, p))
    args = (jnp.asarray(molecule.coords), jnp.asarray(points), jnp.asarray(basis.exponents))
    for a, b in zip(jax.grad(ours, argnums=(0, 1, 2))(*args), jax.grad(ref, argnums=(0, 1, 2))(*args)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-11)
    hessian = [jax.hessian(f, argnums=(0, 1))(*args) for f in (ours, ref)]
    for a, b in zip(*(jax.tree_util.tree_leaves(h) for h in hessian)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-11, atol=1e-10)


def test_nuclear_derivative_matches_pyscf_finite_differences():
    """jacfwd w.r.t. one nuclear coordinate vs central differences of PySCF's AO values."""
    molecule, basis = _water_svp()
    points = _points(molecule, n_random=40)
    atom, axis, h = 1, 2, 1e-4
    jac = np.asarray(_nuclear_jacobian(basis, molecule.coords, points, 0))[..., atom, axis]
    shifted = []
    for sign in (1.0, -1.0):
        coords = molecule.coords.copy()
        coords[atom, axis] += sign * h
        shifted.append(_pyscf_ao(molecule.with_coords(coords), "def2-svp", False, points, 0))
    fd = (shifted[0] - shifted[1]) / (2 * h)
    # central differences: truncation h^2 / 6 times the third derivative, round-off ~1e-16 / h
    np.testing.assert_allclose(jac, fd, atol=1e-8 * np.abs(fd).max(), rtol=1e-6)


def test_gradient_wrt_exponents_matches_finite_differences():
    """The exponents are pytree leaves: d/d a of sum_{p,mu} w_p phi_mu(r_p)^2 vs central differences."""
    molecule, basis = _water_svp()
    points = _points(molecule, n_random=40)
    weights = np.random.default_rng(1).uniform(size=len(points))

    @jax.jit
    def loss(exponents):
        b = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(basis), [exponents, basis.coefficients])
        return jnp.sum(weights[:, None] * ao_values(b, molecule.coords, points)[0] ** 2)

    exponents = jnp.asarray(basis.exponents)
    grad = np.asarray(jax.grad(loss)(exponents))
    h = 1e-4  # relative step: truncation ~h^2, round-off ~1e-16 |loss| / (h a) both below 1e-7
    for shell, prim in [(0, 0), (3, 1), (5, 0)]:  # an O tight s, an O p, the O d
        step = np.zeros_like(basis.exponents)
        step[shell, prim] = h * basis.exponents[shell, prim]
        fd = (loss(exponents + step) - loss(exponents - step)) / (2 * step[shell, prim])
        np.testing.assert_allclose(grad[shell, prim], fd, rtol=1e-6)


def test_jit_does_not_retrace_for_new_coordinates():
    molecule, basis = _water_svp()
    traces = []

    @functools.partial(jax.jit, static_argnames="deriv")
    def evaluate(basis, coords, points, deriv):
        traces.append(1)
        return ao_values(basis, coords, points, deriv)

    points = _points(molecule, n_random=10)
    first = evaluate(basis, molecule.coords, points, deriv=1)
    moved = molecule.coords + 0.1
    second = evaluate(make_basis(molecule.with_coords(moved), "def2-svp"), moved, points + 0.1, deriv=1)
    assert len(traces) == 1
    # a rigid translation of molecule and points leaves every AO value unchanged
    np.testing.assert_allclose(second, first, rtol=1e-12, atol=1e-12)


def test_vmap_over_geometries():
    molecule, basis = _water_svp()
    points = _points(molecule, n_random=10)
    geometries = molecule.coords[None] + 0.05 * np.random.default_rng(2).normal(size=(3, molecule.n_atoms, 3))
    batched = jax.jit(jax.vmap(lambda coords: ao_values(basis, coords, points, deriv=1)))(geometries)
    for coords, ao in zip(geometries, batched):
        np.testing.assert_allclose(ao, _pyscf_ao(molecule.with_coords(coords), "def2-svp", False, points, 1),
                                   rtol=1e-12, atol=1e-12)


def test_blocked_equals_unblocked():
    molecule = make_molecule(WATER)
    basis = make_basis(molecule, "sto-3g")  # small s, p basis: the blocking, not the AOs, is tested
    points = _points(molecule, n_random=100)  # 108 points: 4 blocks of 32, the last one padded
    blocked = jax.jit(ao_values_blocked, static_argnames=("deriv", "block_size"))(
        basis, molecule.coords, points, deriv=1, block_size=32
    )
    np.testing.assert_array_equal(blocked.shape, (4, len(points), basis.nao))
    np.testing.assert_allclose(blocked, _evaluate(basis, molecule.coords, points, deriv=1), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("deriv", [-1, 1.5, True])
def test_bad_deriv_raises(deriv):
    molecule, basis = _water_svp()
    with pytest.raises(ValueError, match="deriv"):
        ao_values(basis, molecule.coords, np.zeros((2, 3)), deriv)


def test_bad_points_shape_raises():
    molecule, basis = _water_svp()
    with pytest.raises(ValueError, match=r"points must have shape \(n_points, 3\)"):
        ao_values(basis, molecule.coords, np.zeros((2, 2)))


def test_blocked_gradient_equals_unblocked():
    """The checkpointed blocks differentiate like the plain evaluation (forces need this path)."""
    molecule = make_molecule(WATER)
    basis = make_basis(molecule, "sto-3g")
    points = _points(molecule, n_random=60)  # 68 points: 3 blocks of 32

    def loss(coords, evaluate):
        return jnp.sum(evaluate(coords) ** 2)

    blocked = jax.jit(jax.grad(lambda c: loss(c, lambda c: ao_values_blocked(basis, c, points, block_size=32))))
    plain = jax.jit(jax.grad(lambda c: loss(c, lambda c: ao_values(basis, c, points))))
    np.testing.assert_allclose(blocked(molecule.coords), plain(molecule.coords), rtol=1e-12, atol=1e-12)
