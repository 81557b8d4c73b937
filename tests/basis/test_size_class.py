"""Size classes (basis.size_class): padding changes nothing, and one class compiles once.

Oracle: the unpadded functions themselves. A padded basis holds the same primitives (same exponents,
coefficients and centres) in another shell order plus padding shells with zero coefficients, so
every real matrix element is the same sum up to the order of a few additions, and every element
involving a padding function is an exact zero. Hence ``atol=1e-12`` on values (largest integrals
~10-100: a few ulps) and exact zeros on padding rows and columns; gradients ``atol=1e-10``.

Compilation is counted with the jitted functions' ``_cache_size()``: a second molecule of the same
class must not add an entry, while the unpadded path does (the control that shows the count works).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from basis import grids
from basis import size_class as sc
from basis.ao import ao_values
from basis.gto import make_auxbasis, make_basis
from basis.integrals import one_electron, two_electron
from basis.molecule import make_molecule

WATER = make_molecule("O 0 0 0; H 0 0.757 0.587; H 0 -0.757 0.587")
HF = make_molecule("F 0 0 0; H 0.1 0 0.917")
NH3 = make_molecule("N 0 0 0.1; H 0 0.94 -0.27; H 0.81 -0.47 -0.27; H -0.81 -0.47 -0.27")
HCN = make_molecule("H 0 0 -1.066; C 0 0.05 0; N 0 0 1.156")  # def2-svp: d on C and N, p on H
HE = make_molecule("He 0.1 0.2 0.3")

# A class holding both water (4 s, 1 p shells of 3 primitives) and HF (3 s, 1 p) in STO-3G, with
# padding shells of both angular momenta for each.
STO3G_CLASS = sc.SizeClass(groups=((0, 3, 6), (1, 3, 2)), cartesian=False)
# Water's def2-svp fitting basis used as an auxiliary basis, padded with an extra d group member.
AUX_AT_LEAST = sc.SizeClass(groups=((0, 1, 6), (2, 1, 2)), cartesian=False)

ATOL = 1e-12  # same primitives, padding exact zeros: only reordered sums differ (module docstring)
GRAD_ATOL = 1e-10


def _charges(molecule):
    return jnp.asarray(molecule.atomic_numbers, dtype=jnp.float64)


def _coords(molecule):
    return jnp.asarray(molecule.coords)


@functools.lru_cache(maxsize=None)
def _padded(molecule, name, at_least=None):
    basis = make_basis(molecule, name)
    return basis, sc.pad_basis(basis, at_least)


def _assert_padding_zero(padded, x, axes):
    """Entries of ``x`` with a padding AO on any of ``axes`` are exactly 0."""
    real = np.ones(x.shape, dtype=bool)
    for axis in axes:
        shape = [1] * x.ndim
        shape[axis] = -1
        real = real & (padded.ao_mask > 0).reshape(shape)
    np.testing.assert_array_equal(np.asarray(x)[~real], 0.0)


# ---------------------------------------------------------------------------------------------------
# Ladder, classes, layout.
# ---------------------------------------------------------------------------------------------------


def test_ladder():
    assert sc.LADDER[:12] == (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
    assert [sc.ladder_size(n) for n in (1, 2, 3, 5, 7, 9, 13, 17, 25, 33, 100)] == [
        1, 2, 3, 6, 8, 12, 16, 24, 32, 48, 128]
    assert sc.ladder_size(0) == 1 and sc.ladder_size(0, minimum=0) == 0 and sc.ladder_size(3, minimum=5) == 6
    n = np.arange(1, 5000)
    sizes = np.array([sc.ladder_size(k) for k in n])
    assert np.all(sizes >= n) and np.all(sizes <= 1.5 * n)  # at most 50 % waste
    assert np.all(np.isin(sizes, sc.LADDER))


def test_size_class_and_at_least():
    water, hf = make_basis(WATER, "sto-3g"), make_basis(HF, "sto-3g")
    assert sc.pad_basis(water).size_class == sc.SizeClass(((0, 3, 4), (1, 3, 1)), False)
    assert sc.pad_basis(hf).size_class == sc.SizeClass(((0, 3, 3), (1, 3, 1)), False)
    # Dominance: HF padded at least as water lands in water's class.
    assert sc.pad_basis(hf, at_least=sc.pad_basis(water).size_class).size_class == sc.pad_basis(water).size_class
    # A group only at_least has is included, with padding shells only.
    h2 = make_basis(make_molecule("H 0 0 0; H 0 0 0.74"), "sto-3g")
    padded = sc.pad_basis(h2, at_least=STO3G_CLASS)
    assert padded.size_class == STO3G_CLASS and padded.nao_pad == 6 + 2 * 3 and padded.nao == 2
    assert padded.basis.shell_l == (0,) * 6 + (1,) * 2
    # A larger class than at_least asks for wins group by group.
    big = sc.pad_basis(make_basis(NH3, "sto-3g"), at_least=STO3G_CLASS).size_class  # NH3: 5 s shells
    assert big == STO3G_CLASS
    assert sc.pad_basis(make_basis(HCN, "sto-3g"), at_least=STO3G_CLASS).size_class.groups == ((0, 3, 6), (1, 3, 2))
    with pytest.raises(ValueError, match="cartesian"):
        sc.pad_basis(make_basis(WATER, "sto-3g", cartesian=True), at_least=STO3G_CLASS)


def test_padded_layout_is_canonical():
    water, padded_water = _padded(WATER, "sto-3g", STO3G_CLASS)
    _, padded_hf = _padded(HF, "sto-3g", STO3G_CLASS)
    # The jit cache key of a pytree is its treedef (aux data compared with ==): equal for the class.
    assert jax.tree_util.tree_structure(padded_water.basis) == jax.tree_util.tree_structure(padded_hf.basis)
    assert padded_water.basis.tree_flatten()[1] == padded_hf.basis.tree_flatten()[1]
    basis = padded_water.basis
    assert basis.shell_atom == tuple(range(basis.n_shells)) and basis.name == sc.PADDED_NAME
    # Stable sort by (l, nprim): water's O 1s, O 2s, H 1s, H 1s, then 2 padding s, O 2p, 1 padding p.
    np.testing.assert_array_equal(padded_water.shell_atom, [0, 0, 1, 2, 0, 0, 0, 0])
    np.testing.assert_array_equal(padded_water.shell_index, [0, 1, 6, 2, 3])
    real = np.zeros(basis.n_shells, dtype=bool)
    real[padded_water.shell_index] = True
    np.testing.assert_array_equal(np.asarray(basis.coefficients)[~real], 0.0)
    np.testing.assert_array_equal(np.asarray(basis.exponents)[~real], 1.0)
    np.testing.assert_array_equal(np.asarray(basis.exponents)[padded_water.shell_index], water.exponents)
    # AO maps: a bijection onto the real padded AOs.
    assert padded_water.nao == 7 and padded_water.nao_pad == 12
    np.testing.assert_array_equal(np.sort(padded_water.ao_index), np.flatnonzero(padded_water.ao_mask))
    ao_atom = WATER.to_pyscf(basis="sto-3g").aoslice_by_atom()  # (shell0, shell1, ao0, ao1) per atom
    expected = np.repeat(np.arange(WATER.n_atoms), [stop - start for _, _, start, stop in ao_atom])
    np.testing.assert_array_equal(padded_water.ao_atom[padded_water.ao_index], expected)


def test_pad_unpad_roundtrip():
    _, padded = _padded(NH3, "def2-svp")
    m = np.random.default_rng(0).normal(size=(2, padded.nao, padded.nao))
    for x in (m, jnp.asarray(m)):
        big = padded.pad_matrix(x)
        assert type(big) is type(x) and big.shape == (2, padded.nao_pad, padded.nao_pad)
        _assert_padding_zero(padded, big, axes=(1, 2))
        np.testing.assert_array_equal(padded.unpad_matrix(big), m)
    c = padded.pad(m[0], axes=(0,))
    np.testing.assert_array_equal(padded.unpad_rows(c), m[0])


# ---------------------------------------------------------------------------------------------------
# Padded = unpadded: integrals, AO values, grids.
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "molecule, name, at_least, functions",
    [
        (WATER, "sto-3g", STO3G_CLASS, ("overlap", "kinetic", "dipole", "nuclear")),
        # d shells and a padding s shell; one kernel keeps compile time down (the padding logic
        # does not depend on the operator).
        (NH3, "def2-svp", None, ("overlap",)),
    ],
    ids=["water-sto3g", "nh3-def2svp"],
)
def test_one_electron_matches_unpadded(molecule, name, at_least, functions):
    basis, padded = _padded(molecule, name, at_least)
    coords, charges = _coords(molecule), _charges(molecule)
    # Two dummy atoms (charge 0, on atom 0) beyond the ladder's own padding.
    coords_pad, charges_pad = sc.pad_atoms(coords, charges, molecule.n_atoms + 2)
    shell_coords = padded.shell_coords(coords_pad)
    for function in functions:
        if function == "nuclear":
            expected = one_electron.nuclear_attraction(basis, coords, charges)
            got = one_electron.point_charge_attraction(padded.basis, shell_coords, coords_pad, charges_pad)
        else:
            expected = getattr(one_electron, function)(basis, coords)
            got = getattr(one_electron, function)(padded.basis, shell_coords)
        _assert_padding_zero(padded, got, axes=(-2, -1))
        np.testing.assert_allclose(padded.unpad_matrix(got), expected, rtol=0, atol=ATOL, err_msg=function)


def test_two_electron_matches_unpadded():
    basis, padded = _padded(WATER, "sto-3g", STO3G_CLASS)
    aux = make_auxbasis(WATER, "sto-3g", auxbasis="def2-svp")  # s, p and d functions
    padded_aux = sc.pad_basis(aux, at_least=AUX_AT_LEAST)
    assert padded_aux.nao_pad > padded_aux.nao
    coords = _coords(WATER)

    eri = padded.unpad(two_electron.electron_repulsion(padded.basis, padded.shell_coords(coords)), axes=(0, 1, 2, 3))
    np.testing.assert_allclose(eri, two_electron.electron_repulsion(basis, coords), rtol=0, atol=ATOL)

    metric = two_electron.coulomb_2c(padded_aux.basis, padded_aux.shell_coords(coords))
    _assert_padding_zero(padded_aux, metric, axes=(0, 1))
    np.testing.assert_allclose(padded_aux.unpad_matrix(metric), two_electron.coulomb_2c(aux, coords), rtol=0, atol=ATOL)

    orbital, auxiliary, shell_atom = sc.three_centre_layout(padded, padded_aux)
    three = two_electron.coulomb_3c(orbital, auxiliary, coords[shell_atom])
    _assert_padding_zero(padded, three, axes=(0, 1))
    _assert_padding_zero(padded_aux, three, axes=(2,))
    three = padded_aux.unpad(padded.unpad(three, axes=(0, 1)), axes=(2,))
    np.testing.assert_allclose(three, two_electron.coulomb_3c(basis, aux, coords), rtol=0, atol=ATOL)


_ao_jit = jax.jit(ao_values, static_argnames="deriv")


@pytest.mark.parametrize("molecule", [NH3, HCN], ids=["nh3", "hcn"])
def test_ao_values_match_unpadded(molecule):
    basis, padded = _padded(molecule, "def2-svp")
    coords = _coords(molecule)
    points = coords[:1] + jnp.asarray(np.random.default_rng(1).normal(scale=1.5, size=(64, 3)))
    got = _ao_jit(padded.basis, padded.shell_coords(coords), points, deriv=1)
    _assert_padding_zero(padded, got, axes=(-1,))
    np.testing.assert_allclose(padded.unpad(got), _ao_jit(basis, coords, points, deriv=1), rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    "molecule, level, options, n_atoms_pad",
    [
        (NH3, 0, {}, 6),
        (HCN, 1, {"becke_scheme": "stratmann", "radii_adjust": None}, None),
        (HE, 0, {}, 3),  # one real atom: grids.becke_cell_products' special case
    ],
    ids=["nh3", "hcn-stratmann", "he"],
)
def test_padded_grid_matches_unpadded(molecule, level, options, n_atoms_pad):
    spec = grids.make_grid_spec(molecule.atomic_numbers, level, **options)
    data = sc.pad_grid(spec, n_atoms_pad)
    coords_pad, _ = sc.pad_atoms(_coords(molecule), _charges(molecule), data.atom_mask.shape[0])
    points, weights = sc.padded_grid_points_weights(data, coords_pad, becke_scheme=spec.options.becke_scheme)
    expected_points, expected_weights = grids.grid_points_weights(spec, _coords(molecule))
    n = spec.n_points
    assert weights.shape == (sc.ladder_size(n),)
    np.testing.assert_allclose(points[:n], expected_points, rtol=0, atol=ATOL)
    np.testing.assert_allclose(weights[:n], expected_weights, rtol=0, atol=ATOL)
    np.testing.assert_array_equal(weights[n:], 0.0)
    assert np.isfinite(np.asarray(points)).all()


# ---------------------------------------------------------------------------------------------------
# Gradients through the padded path.
# ---------------------------------------------------------------------------------------------------


def test_overlap_gradient_matches_unpadded():
    """d/d(coords, exponents) of sum(S * M): through shell_coords and with_primitives."""
    basis, padded = _padded(WATER, "sto-3g", STO3G_CLASS)
    m = jnp.asarray(np.random.default_rng(2).normal(size=(basis.nao, basis.nao)))

    def unpadded(coords, exponents):
        return jnp.sum(one_electron.overlap(dataclasses.replace(basis, exponents=exponents), coords) * m)

    def padded_path(coords, exponents):
        b = padded.with_primitives(exponents, basis.coefficients)
        return jnp.sum(padded.unpad_matrix(one_electron.overlap(b, padded.shell_coords(coords))) * m)

    args = (_coords(WATER), jnp.asarray(basis.exponents))
    expected = jax.jit(jax.grad(unpadded, argnums=(0, 1)))(*args)
    got = jax.jit(jax.grad(padded_path, argnums=(0, 1)))(*args)
    for g, e, what in zip(got, expected, ("coords", "exponents")):
        assert np.isfinite(np.asarray(g)).all(), what
        assert np.abs(np.asarray(e)).max() > 1e-3, what  # a gradient worth comparing
        np.testing.assert_allclose(g, e, rtol=0, atol=GRAD_ATOL, err_msg=what)


def test_nuclear_gradient_with_dummy_atoms_matches_unpadded():
    """d/d coords of sum(V * M) with dummy atoms (charge 0) sitting on atom 0: finite, unchanged.

    An s-only basis (H2, 6-31G, padded with extra s shells of both contraction lengths) keeps the
    compilation of the derivative programs short; the angular parts are covered by the value tests.
    """
    molecule = make_molecule("H 0 0 0; H 0 0.1 0.74")
    basis, padded = _padded(molecule, "6-31g", sc.SizeClass(((0, 1, 3), (0, 3, 3)), False))
    coords, charges = _coords(molecule), _charges(molecule)
    m = jnp.asarray(np.random.default_rng(4).normal(size=(basis.nao, basis.nao)))

    def unpadded(coords):
        return jnp.sum(one_electron.nuclear_attraction(basis, coords, charges) * m)

    def padded_path(coords):
        coords_pad, charges_pad = sc.pad_atoms(coords, charges, 4)
        v = one_electron.point_charge_attraction(padded.basis, padded.shell_coords(coords_pad), coords_pad, charges_pad)
        return jnp.sum(padded.unpad_matrix(v) * m)

    # Forward mode (6 tangents) compiles faster than reverse mode for the Coulomb kernel.
    expected = jax.jit(jax.jacfwd(unpadded))(coords)
    got = jax.jit(jax.jacfwd(padded_path))(coords)
    assert np.isfinite(np.asarray(got)).all()
    assert np.abs(np.asarray(expected)).max() > 1e-3
    np.testing.assert_allclose(got, expected, rtol=0, atol=GRAD_ATOL)


def test_grid_gradient_matches_unpadded():
    spec = grids.make_grid_spec(WATER.atomic_numbers, 0)
    data = sc.pad_grid(spec, n_atoms_pad=5)  # two dummy atoms at zero separation from atom 0
    coords = _coords(WATER)

    def integrand(points):  # a smooth function off the nuclei
        return jnp.exp(-0.3 * jnp.sum((points - jnp.array([[0.3, -0.2, 0.5]])) ** 2, axis=-1))

    def unpadded(coords):
        points, weights = grids.grid_points_weights(spec, coords)
        return jnp.sum(weights * integrand(points))

    def padded_path(coords):
        coords_pad, _ = sc.pad_atoms(coords, _charges(WATER), 5)
        points, weights = sc.padded_grid_points_weights(data, coords_pad)
        return jnp.sum(weights * integrand(points))

    got, expected = jax.grad(padded_path)(coords), jax.grad(unpadded)(coords)
    assert np.isfinite(np.asarray(got)).all()
    assert np.abs(np.asarray(expected)).max() > 1e-4
    np.testing.assert_allclose(got, expected, rtol=0, atol=GRAD_ATOL)


# ---------------------------------------------------------------------------------------------------
# One compilation per class.
# ---------------------------------------------------------------------------------------------------


def test_one_compilation_per_basis_class():
    (water, padded_water), (hf, padded_hf) = _padded(WATER, "sto-3g", STO3G_CLASS), _padded(HF, "sto-3g", STO3G_CLASS)
    assert padded_water.size_class == padded_hf.size_class
    runs = [(padded_water, _coords(WATER)), (padded_hf, _coords(HF))]
    points = jnp.asarray(np.random.default_rng(3).normal(size=(16, 3)))
    # A new function object gets its own cache (jit(ao_values) would share ao_values' cache).
    fresh_ao = jax.jit(lambda b, c, p: ao_values(b, c, p, deriv=1))
    for function, call in [
        (one_electron.overlap, lambda p, c: one_electron.overlap(p.basis, p.shell_coords(c))),
        (two_electron.electron_repulsion, lambda p, c: two_electron.electron_repulsion(p.basis, p.shell_coords(c))),
        (fresh_ao, lambda p, c: fresh_ao(p.basis, p.shell_coords(c), points)),
    ]:
        call(*runs[0])
        before = function._cache_size()
        call(*runs[1])  # the other molecule, same class: no new program
        assert function._cache_size() == before, function
    assert fresh_ao._cache_size() == 1
    # Control: unpadded, the two molecules compile two programs (so the count above can fail).
    fresh_overlap = jax.jit(lambda b, c: one_electron.overlap(b, c))
    fresh_overlap(water, _coords(WATER))
    fresh_overlap(hf, _coords(HF))
    assert fresh_overlap._cache_size() == 2


def test_one_compilation_per_grid_class():
    specs = [grids.make_grid_spec(m.atomic_numbers, 0) for m in (WATER, HF)]
    n_points_pad = sc.ladder_size(max(s.n_points for s in specs))
    # New function objects: jit caches are per function, and other tests compile these functions.
    fresh = jax.jit(lambda data, coords_pad: sc.padded_grid_points_weights(data, coords_pad))
    for spec, molecule in zip(specs, (WATER, HF)):
        coords_pad, _ = sc.pad_atoms(_coords(molecule), _charges(molecule), 3)
        fresh(sc.pad_grid(spec, 3, n_points_pad), coords_pad)
    assert fresh._cache_size() == 1
    # Control: the spec-static function compiles per molecule.
    fresh_spec = jax.jit(lambda spec, coords: grids.grid_points_weights(spec, coords), static_argnums=0)
    for spec, molecule in zip(specs, (WATER, HF)):
        fresh_spec(spec, _coords(molecule))
    assert fresh_spec._cache_size() == 2
