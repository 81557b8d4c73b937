"""Integration grids: PySCF's points and weights, quadrature accuracy, differentiable weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import scf
from pyscf.dft import LebedevGrid, gen_grid, radi

from basis import grids
from basis.molecule import make_molecule

MOLECULES = {
    "water": "O 0 0 0; H 0 0.757 0.587; H 0 -0.757 0.587",
    "hcl": "H 0 0 0; Cl 0 0 1.27",
    "sih4": "Si 0 0 0; H 0.855 0.855 0.855; H -0.855 -0.855 0.855; H -0.855 0.855 -0.855; H 0.855 -0.855 -0.855",
    "hbr": "H 0 0 0; Br 0.1 0 1.41",  # a fourth-row atom: other table columns and xi
}


def _pyscf_unsorted(molecule, level, **attrs):
    """PySCF's grid in its construction order: no spatial sorting, no zero-weight padding."""
    mol = molecule.to_pyscf(basis={s: [[0, [1.0, 1.0]]] for s in set(molecule.symbols)})
    g = gen_grid.Grids(mol)
    g.level = level
    g.alignment = 0
    for name, value in attrs.items():
        setattr(g, name, value)
    g.build(with_non0tab=False, sort_grids=False)
    return g


def _assert_same_grid(ours, theirs, quadrature_weights):
    points, weights = np.asarray(ours.points), np.asarray(ours.weights)
    assert points.shape == theirs.coords.shape
    # Same radii x same Lebedev vectors + same nuclear positions: equal to rounding.
    np.testing.assert_allclose(points, theirs.coords, rtol=1e-15, atol=1e-13)
    # The Becke factor P_A / sum_B P_B (between 0 and 1) agrees to 1e-12 absolute; per-point relative
    # agreement is meaningless where it underflows (PySCF ~1e-300 vs ours).
    np.testing.assert_array_less(np.abs(weights - theirs.weights), 1e-12 * np.abs(quadrature_weights) + 1e-300)


# ------------------------------------------------------------------------------------------------
# Static data and rules.


def test_tables_match_pyscf():
    for level in grids.LEVELS:
        for z in range(1, grids.MAX_ATOMIC_NUMBER + 1):
            expected = (gen_grid._default_rad(z, level), gen_grid._default_ang(z, level))
            assert grids.default_counts(z, level) == expected, (z, level)
    np.testing.assert_array_equal(grids._TREUTLER_XI, radi._treutler_ahlrichs_xi[: grids.MAX_ATOMIC_NUMBER + 1])
    assert grids.LEBEDEV_SIZES == tuple(LebedevGrid.LEBEDEV_NGRID[1:])
    assert radi.ATOM_SPECIFIC_TREUTLER_GRIDS  # the PySCF setting reproduced here


@pytest.mark.parametrize("method", grids.RADIAL_METHODS)
def test_radial_rules_match_pyscf(method):
    pyscf_rule = {"treutler": radi.treutler, "becke": radi.becke, "mura_knowles": radi.mura_knowles,
                  "gauss_chebyshev": radi.gauss_chebyshev}[method]
    for z in (1, 8, 17, 35, 86):
        for n in (10, 75, 200):
            r, dr = grids.radial_grid(n, z, method)
            r_ref, dr_ref = pyscf_rule(n, z)
            np.testing.assert_allclose(r, r_ref, rtol=1e-14)  # same formula, same rounding order
            np.testing.assert_allclose(dr, dr_ref, rtol=1e-14)


def test_radial_rule_integrates_exponential():
    # int_0^inf r^2 exp(-a r) dr = 2 / a^3, core-like a >= 2: the level-3 oxygen rule (75 shells)
    # is exact to 5e-13 (measured), the diffuse a = 1 only to 1e-6 (its tail is beyond 15 bohr).
    r, dr = grids.radial_grid(75, 8)
    for a in (2.0, 4.0, 10.0):
        assert abs(np.sum(dr * r**2 * np.exp(-a * r)) * a**3 / 2 - 1.0) < 1e-11


def test_lebedev_grid_is_pyscfs_and_cached():
    directions, weights = grids.lebedev_grid(302)
    table = LebedevGrid.MakeAngularGrid(302)
    np.testing.assert_array_equal(directions, table[:, :3])
    np.testing.assert_array_equal(weights, table[:, 3])
    assert grids.lebedev_grid(302)[0] is directions
    assert not directions.flags.writeable
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, atol=1e-14)
    assert abs(weights.sum() - 1.0) < 1e-14


# ------------------------------------------------------------------------------------------------
# Points and weights against PySCF.


@pytest.mark.parametrize("prune", [True, False], ids=["nwchem", "unpruned"])
@pytest.mark.parametrize("level", [0, 3])
@pytest.mark.parametrize("name", ["water", "hcl", "sih4"])
def test_grid_matches_pyscf(name, level, prune):
    molecule = make_molecule(MOLECULES[name])
    theirs = _pyscf_unsorted(molecule, level, **({} if prune else {"prune": None}))
    spec = grids.make_grid_spec(molecule.atomic_numbers, level, prune=prune)
    ours = grids.Grid(*grids.grid_points_weights(spec, molecule.coords))
    np.testing.assert_array_equal(spec.atom_index, theirs.atm_idx)
    np.testing.assert_allclose(spec.quadrature_weights, theirs.quadrature_weights, rtol=1e-13)
    _assert_same_grid(ours, theirs, spec.quadrature_weights)


@pytest.mark.parametrize("name,level", [("water", 1), ("water", 5), ("hbr", 2), ("hbr", 9)])
def test_grid_matches_pyscf_other_levels(name, level):
    molecule = make_molecule(MOLECULES[name])
    spec = grids.make_grid_spec(molecule.atomic_numbers, level)
    _assert_same_grid(grids.make_grid(molecule, level), _pyscf_unsorted(molecule, level), spec.quadrature_weights)


OPTION_CASES = {
    "stratmann": (dict(becke_scheme="stratmann"), dict(becke_scheme=gen_grid.stratmann)),
    "becke_radii": (dict(radii_adjust="becke"), dict(radii_adjust=radi.becke_atomic_radii_adjust)),
    "no_radii_adjust": (dict(radii_adjust=None), dict(radii_adjust=None)),
    "treutler_prune": (dict(prune="treutler"), dict(prune=gen_grid.treutler_prune)),
    "becke_radial": (dict(radi_method="becke"), dict(radi_method=radi.becke)),
    "mura_knowles": (dict(radi_method="mura_knowles"), dict(radi_method=radi.mura_knowles)),
    "gauss_chebyshev": (dict(radi_method="gauss_chebyshev"), dict(radi_method=radi.gauss_chebyshev)),
}


@pytest.mark.parametrize("case", OPTION_CASES)
def test_options_match_pyscf(case):
    ours_options, pyscf_attrs = OPTION_CASES[case]
    molecule = make_molecule(MOLECULES["hcl"])
    spec = grids.make_grid_spec(molecule.atomic_numbers, 1, **ours_options)
    ours = grids.make_grid(molecule, 1, **ours_options)
    _assert_same_grid(ours, _pyscf_unsorted(molecule, 1, **pyscf_attrs), spec.quadrature_weights)


def test_pyscf_default_grid_is_the_same_set():
    # Grids.build() sorts the points into boxes and pads with zero weights at (1e-4, 1e-4, 1e-4) to
    # a multiple of 8; the set of real points is ours (including the points whose weight is 0).
    molecule = make_molecule(MOLECULES["water"])
    ours = grids.make_grid(molecule, 3)
    theirs = grids.pyscf_grid(molecule, 3)
    n_points, n_padded = ours.weights.shape[0], theirs.weights.shape[0]
    assert n_padded % 8 == 0 and 0 <= n_padded - n_points < 8
    np.testing.assert_array_equal(np.asarray(theirs.points)[n_points:], 1e-4)
    np.testing.assert_array_equal(np.asarray(theirs.weights)[n_points:], 0.0)
    real = slice(0, n_points)

    def canonical(grid, keep):
        p, w = np.asarray(grid.points)[keep], np.asarray(grid.weights)[keep]
        order = np.lexsort((w, p[:, 2], p[:, 1], p[:, 0]))
        return p[order], w[order]

    p_ours, w_ours = canonical(ours, slice(None))
    p_theirs, w_theirs = canonical(theirs, real)
    np.testing.assert_allclose(p_ours, p_theirs, atol=1e-13, rtol=0)
    np.testing.assert_allclose(w_ours, w_theirs, atol=1e-11, rtol=1e-12)
    assert abs(w_ours.sum() - w_theirs.sum()) < 1e-9 * abs(w_ours).sum()


# ------------------------------------------------------------------------------------------------
# Quadrature accuracy.


def test_integrates_normalised_gaussian():
    molecule = make_molecule(MOLECULES["water"])
    grid = grids.make_grid(molecule, 3)
    for alpha, centre in [(0.5, (0.3, -0.2, 0.5)), (3.0, (0.0, 0.0, 0.0)), (10.0, tuple(molecule.coords[1]))]:
        r2 = jnp.sum((grid.points - jnp.asarray(centre)[None, :]) ** 2, axis=1)
        density = (alpha / np.pi) ** 1.5 * jnp.exp(-alpha * r2)
        # level 3, measured: 1.0e-7, 8e-10, 1.5e-6 (the tight Gaussian on H is the hardest)
        assert abs(float(jnp.sum(grid.weights * density)) - 1.0) < 5e-6


def test_overlap_and_electron_count_from_pyscf_orbitals():
    molecule = make_molecule(MOLECULES["water"])
    mol = molecule.to_pyscf(basis="cc-pvdz")
    grid = grids.make_grid(molecule, 3)
    points, weights = np.asarray(grid.points), np.asarray(grid.weights)
    ao = mol.eval_gto("GTOval", points)
    overlap = mol.intor("int1e_ovlp")
    np.testing.assert_allclose(ao.T @ (weights[:, None] * ao), overlap, atol=1e-6)  # measured 2.6e-7
    dm = scf.hf.init_guess_by_minao(mol)
    density = np.einsum("gi,ij,gj->g", ao, dm, ao)
    assert abs(weights @ density - np.trace(dm @ overlap)) < 1e-6  # measured 2.1e-7


def test_single_atom_is_the_atomic_grid():
    molecule = make_molecule("Ne 0.1 0.2 0.3")
    spec = grids.make_grid_spec(molecule.atomic_numbers, 2)
    points, weights = grids.grid_points_weights(spec, molecule.coords)
    np.testing.assert_array_equal(np.asarray(weights), spec.quadrature_weights)
    np.testing.assert_allclose(np.asarray(points), spec.offsets + molecule.coords, rtol=0, atol=1e-15)


def test_becke_partition_is_a_partition_of_unity():
    molecule = make_molecule(MOLECULES["sih4"])
    points = jax.random.normal(jax.random.PRNGKey(0), (200, 3)) * 3.0
    partition = grids.becke_partition(points, molecule.coords, molecule.atomic_numbers)
    assert partition.shape == (5, 200)
    np.testing.assert_allclose(np.asarray(partition.sum(axis=0)), 1.0, atol=1e-14)
    assert float(partition.min()) >= 0.0


# ------------------------------------------------------------------------------------------------
# Differentiability in the nuclear coordinates.

_FIXED_CENTRES = jnp.array([[0.2, -0.1, 0.3], [0.0, 1.2, 1.0], [0.1, -1.5, 0.9]])


def _integral(spec, coords):
    """int f over the grid for f fixed in space: depends on coords only through the grid."""
    points, weights = grids.grid_points_weights(spec, coords)
    r2 = jnp.sum((points[:, None, :] - _FIXED_CENTRES[None, :, :]) ** 2, axis=-1)
    f = jnp.sum(jnp.exp(-jnp.array([[0.6, 1.5, 2.5]]) * r2), axis=1) * (1.0 + points[:, 0] * points[:, 2])
    return jnp.sum(weights * f)


@pytest.mark.parametrize("name,level", [("water", 0), ("hcl", 1)])
def test_gradient_matches_finite_differences(name, level):
    molecule = make_molecule(MOLECULES[name])
    spec = grids.make_grid_spec(molecule.atomic_numbers, level)
    coords = jnp.asarray(molecule.coords)
    integral = jax.jit(lambda c: _integral(spec, c))
    gradient = np.asarray(jax.grad(integral)(coords))
    h = 1e-4
    fd = np.zeros_like(gradient)
    for index in np.ndindex(*coords.shape):
        step = np.zeros(coords.shape)
        step[index] = h
        fd[index] = (integral(coords + step) - integral(coords - step)) / (2 * h)
    assert np.all(np.isfinite(gradient))
    assert np.abs(gradient).max() > 1e-6  # the grid response is not trivially zero
    # Central differences: error ~h^2 f''' ~ 1e-9 here, relative to a gradient of ~1e-3..1e-2.
    np.testing.assert_allclose(gradient, fd, rtol=1e-5, atol=1e-8 * np.abs(gradient).max() + 1e-10)
    # Forward mode agrees with reverse mode.
    np.testing.assert_allclose(np.asarray(jax.jacfwd(integral)(coords)), gradient, rtol=1e-10, atol=1e-14)


def test_translation_invariance_of_the_gradient():
    # Gaussians that move with their atoms: translating the molecule translates grid and integrand
    # together, so the gradient summed over atoms vanishes (to rounding).
    molecule = make_molecule(MOLECULES["water"])
    spec = grids.make_grid_spec(molecule.atomic_numbers, 1)

    def integral(coords):
        points, weights = grids.grid_points_weights(spec, coords)
        r2 = jnp.sum((points[:, None, :] - coords[None, :, :]) ** 2, axis=-1)
        return jnp.sum(weights * jnp.sum(jnp.exp(-jnp.array([[0.8, 1.3, 1.7]]) * r2), axis=1))

    gradient = np.asarray(jax.grad(integral)(jnp.asarray(molecule.coords)))
    assert np.abs(gradient).max() > 1e-8  # quadrature error depends on the geometry
    np.testing.assert_allclose(gradient.sum(axis=0), 0.0, atol=1e-12)


def test_point_on_a_nucleus_has_finite_gradient():
    # Put the second H exactly on a grid point of the first (a radial node on the z axis, where
    # Lebedev rules have a point): |r_g - R_B| = 0 there, the 0/0 the double where guards against.
    spec = grids.make_grid_spec([1, 1], 0)
    offsets = spec.atom_grids[0].offsets
    on_axis = np.abs(offsets[:, :2]).sum(axis=1) == 0
    node = float(offsets[on_axis][np.argmin(np.abs(offsets[on_axis, 2] - 1.4)), 2])  # ~1.06 bohr
    coords = jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, node]])
    points, _ = grids.grid_points_weights(spec, coords)
    assert np.any(np.all(np.asarray(points[: len(offsets)]) == np.asarray(coords[1]), axis=1))
    # (With jnp.linalg.norm instead of the guarded distance this Jacobian is NaN.)
    jacobian = jax.jacfwd(lambda c: grids.grid_points_weights(spec, c)[1])(coords)
    assert np.all(np.isfinite(np.asarray(jacobian)))
    gradient = jax.grad(lambda c: _integral(spec, c))(coords)
    assert np.all(np.isfinite(np.asarray(gradient)))


def test_vmap_over_geometries_and_jit():
    molecule = make_molecule(MOLECULES["water"])
    spec = grids.make_grid_spec(molecule.atomic_numbers, 0)
    batch = jnp.stack([jnp.asarray(molecule.coords), jnp.asarray(molecule.coords) * 1.05])
    points, weights = jax.vmap(lambda c: grids.grid_points_weights(spec, c))(batch)
    for i in range(2):
        p, w = grids.grid_points_weights(spec, batch[i])
        np.testing.assert_allclose(np.asarray(points[i]), np.asarray(p), rtol=0, atol=1e-14)
        np.testing.assert_allclose(np.asarray(weights[i]), np.asarray(w), rtol=1e-13, atol=1e-14)
    # Equal specs are equal static arguments: one compilation serves both.
    assert grids.make_grid_spec(molecule.atomic_numbers, 0) == spec
    assert hash(grids.make_grid_spec(molecule.atomic_numbers, 0)) == hash(spec)
    assert grids.make_grid_spec(molecule.atomic_numbers, 0, prune=False) != spec


# ------------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize("level", [12, -1, 2.5, True, "3"])
def test_bad_level(level):
    molecule = make_molecule(MOLECULES["water"])
    with pytest.raises(ValueError, match=r"grid level .* expected an integer 0\.\.9"):
        grids.make_grid(molecule, level)
    with pytest.raises(ValueError, match="grid level"):
        grids.pyscf_grid(molecule, level)


def test_bad_options():
    molecule = make_molecule(MOLECULES["water"])
    with pytest.raises(ValueError, match="unknown grid option 'prunes'.*did you mean 'prune'"):
        grids.make_grid(molecule, 3, prunes=True)
    with pytest.raises(ValueError, match="unknown radi_method 'delley'"):
        grids.make_grid(molecule, 3, radi_method="delley")
    with pytest.raises(ValueError, match="unknown becke_scheme"):
        grids.make_grid_spec([8], becke_scheme="lko")
    with pytest.raises(ValueError, match="unknown prune scheme"):
        grids.make_grid_spec([8], prune="sg1")
    with pytest.raises(ValueError, match="atomic number 0"):
        grids.make_grid_spec([8, 0])
    spec = grids.make_grid_spec([8, 1])
    with pytest.raises(ValueError, match=r"expected \(2, 3\)"):
        grids.grid_points_weights(spec, np.zeros((3, 3)))
