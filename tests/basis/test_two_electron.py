"""Two-electron integrals (basis.integrals.two_electron) against PySCF/libcint.

Oracles: ``mol.intor("int2e")``, ``auxmol.intor("int2c2e")``, ``pyscf.df.incore.aux_e2`` for values;
``int2e_ip1``, ``int2c2e_ip1``, ``int3c2e_ip1``/``int3c2e_ip2`` for nuclear derivatives (PySCF's ip
integrals differentiate the electron coordinate, <d/dr a| = -d/dA <a|, so each centre contributes
minus its ip piece); central finite differences for one coordinate and one exponent.

Tolerances: values agree to ~1e-12 absolute (largest integrals ~10-100), so ``atol=1e-10`` leaves
two orders of magnitude; derivatives ``atol=1e-9`` (PySCF's own ip integrals are good to ~1e-12).

Range-separated operators (``omega``): the same oracles inside ``with_range_coulomb(omega)`` on both
molecules. Long range (omega > 0) agrees to ~1e-12 (``atol=1e-11``). For the short range
(omega < 0) libcint's own erfc integrals differ from its 1/r12 minus erf integrals by up to ~1e-10
(its erfc Rys roots), ours from the latter by ~1e-12: the oracle is full minus long range at
``atol=1e-11``, libcint's erfc integrals at ``atol=5e-10``.
"""

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import df
from scipy.special import gamma, gammainc

from basis.gto import basis_from_pyscf, make_auxbasis, make_basis
from basis.integrals import _md_coulomb, two_electron
from basis.integrals._boys import T_SWITCH
from basis.molecule import make_molecule

WATER = make_molecule("O 0 0 0; H 0 0.757 0.587; H 0 -0.757 0.587")
HCL = make_molecule("H 0 0 0; Cl 0.1 0.2 1.27")
# A small basis with f functions: s and f on He, s and d on H; (ff|ff) needs Hermite orders up to 12.
S_AND_F = {"He": [[0, [1.3, 1.0]], [3, [0.9, 1.0]]], "H": [[0, [0.7, 1.0]], [2, [1.1, 1.0]]]}
HEH = make_molecule("He 0 0 0; H 0.3 -0.2 1.4", charge=1)


def _ao_atom(mol) -> np.ndarray:
    """Atom index of every AO of a PySCF Mole."""
    atom = np.empty(mol.nao, dtype=np.int64)
    for a, (_, _, start, stop) in enumerate(mol.aoslice_by_atom()):
        atom[start:stop] = a
    return atom


def _on_atom(mol, k) -> np.ndarray:
    return (_ao_atom(mol) == k).astype(np.float64)


def _pyscf(molecule, name, cartesian=False):
    """(basis, auxbasis, mol, auxmol); a cartesian orbital basis gets a cartesian auxiliary basis
    (PySCF's aux_e2 does not mix cartesian and spherical)."""
    basis = make_basis(molecule, name, cartesian=cartesian)
    auxbasis = make_auxbasis(molecule, name)
    mol = molecule.to_pyscf(basis=name, cartesian=cartesian)
    auxmol = molecule.to_pyscf(basis=auxbasis.name, cartesian=cartesian)
    if cartesian:
        auxbasis = basis_from_pyscf(auxmol, name=auxbasis.name)
    return basis, auxbasis, mol, auxmol


def _range_coulomb(omega, *mols):
    """PySCF's context for erf(omega r)/r (omega > 0) or erfc(-omega r)/r (omega < 0) on all mols."""
    stack = contextlib.ExitStack()
    if omega:
        for mol in mols:
            stack.enter_context(mol.with_range_coulomb(omega))
    return stack


def _reference(mol, auxmol, omega=0.0, four_centre=True, three_centre=True, metric=True):
    """PySCF's (eri, metric, j3c) for the operator of omega (None where not requested)."""
    with _range_coulomb(omega, mol, auxmol):
        eri = mol.intor("int2e") if four_centre else None
        j2c = auxmol.intor("int2c2e") if metric else None
        j3c = None
        if three_centre:
            j3c = df.incore.aux_e2(mol, auxmol, "int3c2e", aosym="s1").reshape(mol.nao, mol.nao, auxmol.nao)
    return eri, j2c, j3c


def _ours(basis, auxbasis, coords, omega=0.0, four_centre=True, three_centre=True, metric=True):
    """Our (eri, metric, j3c); the default path (no omega argument) for omega = 0."""
    kw = {"omega": omega} if omega else {}
    coords = jnp.asarray(coords)
    eri = np.asarray(two_electron.electron_repulsion(basis, coords, **kw)) if four_centre else None
    j2c = np.asarray(two_electron.coulomb_2c(auxbasis, coords, **kw)) if metric else None
    j3c = np.asarray(two_electron.coulomb_3c(basis, auxbasis, coords, **kw)) if three_centre else None
    return eri, j2c, j3c


def _check_values(molecule, name, cartesian=False, omega=0.0, atol=1e-10, **which):
    """Compare all requested integrals with PySCF; returns ours (eri, metric, j3c), None if skipped."""
    basis, auxbasis, mol, auxmol = _pyscf(molecule, name, cartesian)
    ours = _ours(basis, auxbasis, molecule.coords, omega, **which)
    for x, ref in zip(ours, _reference(mol, auxmol, omega, **which)):
        if x is not None:
            np.testing.assert_allclose(x, ref, rtol=0, atol=atol)
    return ours


@functools.lru_cache(maxsize=None)
def _water_def2svp():
    return _check_values(WATER, "def2-svp")


# --------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------


def test_water_def2svp_all_integrals():
    # def2-universal-jkfit has g functions on O: the 3c check covers (dd|g), L = 8.
    assert make_auxbasis(WATER, "def2-svp").max_l == 4
    _water_def2svp()


def test_f_functions_four_centre():
    # (ff|ff) needs Hermite orders up to 12 and Boys orders up to 12.
    basis = make_basis(HEH, S_AND_F)
    mol = HEH.to_pyscf(basis=S_AND_F)
    assert basis.max_l == 3
    eri = np.asarray(two_electron.electron_repulsion(basis, jnp.asarray(HEH.coords)))
    np.testing.assert_allclose(eri, mol.intor("int2e"), rtol=0, atol=1e-10)


def test_cartesian_basis():
    # Cartesian d functions (6 components) and a cartesian auxiliary basis, whose one-centre Hermite
    # expansions keep the lower orders that spherical functions drop (the metric: slow sweep).
    _check_values(WATER, "6-31g*", cartesian=True, metric=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["def2-svp", "def2-tzvp"])
def test_second_row_three_centre(name):
    assert make_auxbasis(HCL, name).max_l == 4
    _check_values(HCL, name, four_centre=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    # Each basis once, two of them cartesian (def2-tzvp: cartesian f, 10 components); spherical
    # def2-svp and cartesian 6-31g* are the default tests above. Compilation, once per basis
    # structure, is the whole cost: the full 4 x 2 product took 5 worker-minutes.
    "name, cartesian", [("def2-svp", True), ("cc-pvdz", False), ("6-31g*", False), ("def2-tzvp", True)]
)
def test_values_sweep(name, cartesian):
    ammonia = make_molecule("N 0 0 0.1; H 0.94 0 -0.2; H -0.47 0.81 -0.2; H -0.47 -0.81 -0.25")
    _check_values(ammonia, name, cartesian)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["def2-tzvp", "cc-pvtz"])
def test_f_functions_standard_bases(name):
    _check_values(make_molecule("N 0 0 0; O 0.1 0 1.15", spin=1), name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["def2-svp", "def2-tzvp"])
def test_three_centre_larger_molecules(name):
    ethanol = make_molecule(
        "C -0.0012 -0.3940 0.0000; C 1.1868 0.5538 0.0000; O -1.2098 0.3483 0.0000; H -0.0418 -1.0315 0.8854;"
        "H -0.0418 -1.0315 -0.8854; H 2.1233 -0.0097 0.0000; H 1.1623 1.1918 0.8829; H 1.1623 1.1918 -0.8829;"
        "H -1.9504 -0.2667 0.0000"
    )
    _check_values(ethanol, name, four_centre=False)


# --------------------------------------------------------------------------------------------------
# Range-separated operators: erf(omega r12)/r12 (omega > 0) and erfc(|omega| r12)/r12 (omega < 0)
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow  # default-suite budget (2026-11-28); the physics is covered by cheaper default tests
def test_long_range_water_def2svp_all_integrals():
    # d functions on O, g functions in the fitting basis (3c up to L = 8); omega of CAM-B3LYP.
    _check_values(WATER, "def2-svp", omega=0.33, atol=1e-11)


@pytest.mark.slow  # default-suite budget (2026-11-28); the physics is covered by cheaper default tests
def test_long_range_cartesian():
    _check_values(WATER, "6-31g*", cartesian=True, omega=1.0, atol=1e-11, metric=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    # A Latin square with the two tests above (def2-svp at 0.33, cartesian 6-31g* at 1.0): every
    # basis meets two values of omega and every omega two bases. omega is static, so each pair is
    # one compilation (the 3 x 3 product took 8 worker-minutes).
    "name, cartesian, omega",
    [("def2-svp", False, 0.1), ("6-31g*", True, 0.33), ("def2-tzvp", False, 1.0), ("def2-tzvp", False, 0.1)],
)
def test_long_range_sweep(name, cartesian, omega):
    _check_values(WATER, name, cartesian, omega=omega, atol=1e-11)


@pytest.mark.slow
@pytest.mark.parametrize("omega", [0.1, 1.0])
def test_long_range_second_row_and_f_functions(omega):
    _check_values(HCL, "def2-svp", omega=omega, atol=1e-11)
    basis = make_basis(HEH, S_AND_F)
    mol = HEH.to_pyscf(basis=S_AND_F)
    with mol.with_range_coulomb(omega):
        ref = mol.intor("int2e")
    eri = np.asarray(two_electron.electron_repulsion(basis, jnp.asarray(HEH.coords), omega=omega))
    np.testing.assert_allclose(eri, ref, rtol=0, atol=1e-11)


def _check_short_range(molecule, name, omega, cartesian=False, **which):
    """Ours at -omega against PySCF's full minus long range (1e-11) and its erfc integrals (5e-10),
    and long + short range against the full operator."""
    basis, auxbasis, mol, auxmol = _pyscf(molecule, name, cartesian)
    short = _ours(basis, auxbasis, molecule.coords, -omega, **which)
    long = _ours(basis, auxbasis, molecule.coords, omega, **which)
    full = _reference(mol, auxmol, 0.0, **which)
    refs = zip(_reference(mol, auxmol, -omega, **which), full, _reference(mol, auxmol, omega, **which))
    for sr, lr, (ref_sr, ref_full, ref_lr) in zip(short, long, refs):
        if sr is not None:
            np.testing.assert_allclose(sr, ref_full - ref_lr, rtol=0, atol=1e-11)
            np.testing.assert_allclose(sr, ref_sr, rtol=0, atol=5e-10)
            np.testing.assert_allclose(sr + lr, ref_full, rtol=0, atol=1e-11)


def test_short_range_water():
    _check_short_range(WATER, "6-31g", 0.33, three_centre=False)  # 3c: the slow sweep


@pytest.mark.slow
@pytest.mark.parametrize(
    # Small and large omega, each on one basis (6-31g at 0.33 is the default test above).
    "name, cartesian, omega", [("def2-svp", False, 0.1), ("6-31g*", True, 1.0)]
)
def test_short_range_sweep(name, cartesian, omega):
    _check_short_range(WATER, name, omega, cartesian)


def test_omega_zero_is_the_default_and_bad_omega_raises():
    basis, auxbasis, _, _ = _small_case()
    coords = jnp.asarray(WATER.coords)
    np.testing.assert_array_equal(
        two_electron.coulomb_2c(auxbasis, coords, omega=0.0), two_electron.coulomb_2c(auxbasis, coords)
    )
    for bad in [float("nan"), float("inf"), -np.inf]:
        for call in [
            lambda w: two_electron.electron_repulsion(basis, coords, omega=w),
            lambda w: two_electron.coulomb_3c(basis, auxbasis, coords, omega=w),
            lambda w: two_electron.coulomb_2c(auxbasis, coords, omega=w),
        ]:
            with pytest.raises(ValueError, match=f"omega.*{bad}"):
                call(bad)


def test_exact_symmetries_and_positive_metric():
    # The 8-fold symmetry holds exactly (filled, not recomputed); the metric is positive definite.
    eri, metric, j3c = _water_def2svp()
    for perm in [(1, 0, 2, 3), (0, 1, 3, 2), (2, 3, 0, 1)]:
        np.testing.assert_array_equal(eri, eri.transpose(perm))
    np.testing.assert_array_equal(metric, metric.T)
    np.testing.assert_array_equal(j3c, j3c.transpose(1, 0, 2))
    assert np.linalg.eigvalsh(metric).min() > 0


# --------------------------------------------------------------------------------------------------
# Derivatives
# --------------------------------------------------------------------------------------------------


def _derivative_from_ip(ip_pieces, atoms_of, n_atoms):
    """(..., n_atoms, 3) d/dR_K from PySCF ip pieces: sum over centres of -ip * [centre on K]."""
    out = []
    for k in range(n_atoms):
        total = 0.0
        for piece, mask in zip(ip_pieces, atoms_of(k)):
            total = total - piece * mask[None]
        out.append(np.moveaxis(total, 0, -1))
    return np.stack(out, axis=-2)


@functools.lru_cache(maxsize=None)
def _small_case():
    """Water in 6-31G (s, p) with its default fitting basis cc-pvdz-jkfit (up to f): derivatives up
    to (pp|pp) and (pp|f) keep the compile time of forward mode modest; the sweep below covers d-g."""
    return _pyscf(WATER, "6-31g")


@pytest.mark.parametrize("omega", [0.0, 0.33, pytest.param(-0.33, marks=pytest.mark.slow)])
def test_eri_nuclear_derivatives_match_int2e_ip1(omega):
    basis, _, mol, _ = _small_case()
    eri = functools.partial(two_electron.electron_repulsion, omega=omega)
    jac = np.asarray(jax.jit(jax.jacfwd(eri, argnums=1))(basis, WATER.coords))
    with _range_coulomb(omega, mol):
        ip1 = mol.intor("int2e_ip1")  # (3, a, b, c, d) = (d/dr a, b | c, d)
    pieces = [ip1, ip1.transpose(0, 2, 1, 3, 4), ip1.transpose(0, 3, 4, 1, 2), ip1.transpose(0, 3, 4, 2, 1)]

    def atoms_of(k):
        on = _on_atom(mol, k)
        return [on[:, None, None, None], on[None, :, None, None], on[None, None, :, None], on[None, None, None, :]]

    np.testing.assert_allclose(jac, _derivative_from_ip(pieces, atoms_of, WATER.n_atoms), rtol=0, atol=1e-9)


@pytest.mark.parametrize("omega", [0.0, pytest.param(0.33, marks=pytest.mark.slow)])
def test_three_centre_nuclear_derivatives_match_ip1_ip2(omega):
    basis, auxbasis, mol, auxmol = _small_case()
    j3c = functools.partial(two_electron.coulomb_3c, omega=omega)
    jac = np.asarray(jax.jit(jax.jacfwd(j3c, argnums=2))(basis, auxbasis, WATER.coords))
    with _range_coulomb(omega, mol, auxmol):
        ip1 = df.incore.aux_e2(mol, auxmol, "int3c2e_ip1", aosym="s1", comp=3).reshape((3,) + jac.shape[:3])
        ip2 = df.incore.aux_e2(mol, auxmol, "int3c2e_ip2", aosym="s1", comp=3).reshape((3,) + jac.shape[:3])
    pieces = [ip1, ip1.transpose(0, 2, 1, 3), ip2]

    def atoms_of(k):
        on, on_aux = _on_atom(mol, k), _on_atom(auxmol, k)
        return [on[:, None, None], on[None, :, None], on_aux[None, None, :]]

    np.testing.assert_allclose(jac, _derivative_from_ip(pieces, atoms_of, WATER.n_atoms), rtol=0, atol=1e-9)


@pytest.mark.parametrize("omega", [0.0, 1.0])
def test_metric_nuclear_derivatives_match_int2c2e_ip1(omega):
    _, auxbasis, _, auxmol = _small_case()
    j2c = functools.partial(two_electron.coulomb_2c, omega=omega)
    jac = np.asarray(jax.jit(jax.jacfwd(j2c, argnums=1))(auxbasis, WATER.coords))
    with _range_coulomb(omega, auxmol):
        ip1 = auxmol.intor("int2c2e_ip1")
    pieces = [ip1, ip1.transpose(0, 2, 1)]

    def atoms_of(k):
        on = _on_atom(auxmol, k)
        return [on[:, None], on[None, :]]

    np.testing.assert_allclose(jac, _derivative_from_ip(pieces, atoms_of, WATER.n_atoms), rtol=0, atol=1e-9)


def _replace_exponents(basis, exponents):
    leaves, treedef = jax.tree_util.tree_flatten(basis)
    return jax.tree_util.tree_unflatten(treedef, [exponents, leaves[1]])


def test_finite_differences_coordinate_and_exponent():
    # One scalar of all three-centre integrals; its derivative along a nuclear coordinate and along
    # one primitive exponent (contraction coefficients held fixed), forward mode vs central
    # differences (step h: error ~h^2 f''' ~ 1e-9 relative).
    basis, auxbasis, _, _ = _small_case()
    weights = np.random.default_rng(1).normal(size=(basis.nao, basis.nao, auxbasis.nao))

    def energy(coords, exponents):
        j3c = two_electron.coulomb_3c(_replace_exponents(basis, exponents), auxbasis, coords)
        return jnp.sum(j3c * weights)

    coords, exps = jnp.asarray(WATER.coords), jnp.asarray(basis.exponents)
    energy_jit = jax.jit(energy)
    d_coord = np.zeros((WATER.n_atoms, 3))
    d_coord[1, 2] = 1.0
    d_exp = np.zeros(exps.shape)
    assert basis.shell_l[3] == 1 and basis.shell_atom[3] == 0
    d_exp[3, 0] = 1.0  # an O p exponent
    jvp = jax.jit(lambda dc, de: jax.jvp(energy, (coords, exps), (dc, de))[1])
    steps = [(d_coord, np.zeros_like(d_exp), 1e-4), (np.zeros_like(d_coord), d_exp, 1e-5 * float(exps[3, 0]))]
    for dc, de, h in steps:
        analytic = float(jvp(dc, de))
        plus = float(energy_jit(coords + h * dc, exps + h * de))
        minus = float(energy_jit(coords - h * dc, exps - h * de))
        numeric = (plus - minus) / (2 * h)
        assert abs(analytic - numeric) < 1e-7 * max(1.0, abs(analytic)), (analytic, numeric)


@pytest.mark.slow
def test_three_centre_derivatives_with_g_functions():
    basis, auxbasis, mol, auxmol = _pyscf(WATER, "def2-svp")
    jac = np.asarray(jax.jit(jax.jacfwd(two_electron.coulomb_3c, argnums=2))(basis, auxbasis, WATER.coords))
    ip1 = df.incore.aux_e2(mol, auxmol, "int3c2e_ip1", aosym="s1", comp=3).reshape((3,) + jac.shape[:3])
    ip2 = df.incore.aux_e2(mol, auxmol, "int3c2e_ip2", aosym="s1", comp=3).reshape((3,) + jac.shape[:3])
    pieces = [ip1, ip1.transpose(0, 2, 1, 3), ip2]

    def atoms_of(k):
        on, on_aux = _on_atom(mol, k), _on_atom(auxmol, k)
        return [on[:, None, None], on[None, :, None], on_aux[None, None, :]]

    np.testing.assert_allclose(jac, _derivative_from_ip(pieces, atoms_of, WATER.n_atoms), rtol=0, atol=1e-9)


@pytest.mark.slow
def test_eri_derivatives_with_f_functions():
    basis = make_basis(HEH, S_AND_F)
    mol = HEH.to_pyscf(basis=S_AND_F)
    jac = np.asarray(jax.jit(jax.jacfwd(two_electron.electron_repulsion, argnums=1))(basis, HEH.coords))
    ip1 = mol.intor("int2e_ip1")
    pieces = [ip1, ip1.transpose(0, 2, 1, 3, 4), ip1.transpose(0, 3, 4, 1, 2), ip1.transpose(0, 3, 4, 2, 1)]

    def atoms_of(k):
        on = _on_atom(mol, k)
        return [on[:, None, None, None], on[None, :, None, None], on[None, None, :, None], on[None, None, None, :]]

    np.testing.assert_allclose(jac, _derivative_from_ip(pieces, atoms_of, HEH.n_atoms), rtol=0, atol=1e-9)


@pytest.mark.slow
def test_reverse_mode_matches_forward_mode():
    basis, auxbasis, _, _ = _small_case()
    weights = np.random.default_rng(2).normal(size=(auxbasis.nao, auxbasis.nao))
    energy = lambda c: jnp.sum(two_electron.coulomb_2c(auxbasis, c) * weights)  # noqa: E731
    grad = jax.jit(jax.grad(energy))(WATER.coords)
    jac = jax.jit(jax.jacfwd(energy))(WATER.coords)
    np.testing.assert_allclose(grad, jac, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# Transformations and compilation
# --------------------------------------------------------------------------------------------------


def test_vmap_over_geometries_equals_loop_and_no_retrace():
    basis, auxbasis, _, _ = _small_case()
    shifts = np.random.default_rng(3).normal(scale=0.05, size=(3,) + WATER.coords.shape)
    batch = jnp.asarray(WATER.coords[None] + shifts)
    batched = jax.jit(jax.vmap(two_electron.coulomb_3c, in_axes=(None, None, 0)))(basis, auxbasis, batch)
    for k in range(batch.shape[0]):
        np.testing.assert_allclose(batched[k], two_electron.coulomb_3c(basis, auxbasis, batch[k]), rtol=0, atol=1e-13)
    # The loop called the jitted function at three geometries; new coordinates (and a new Basis
    # object of the same structure) reuse the compiled program.
    size = two_electron.coulomb_3c._cache_size()
    same_structure = _pyscf(WATER, "6-31g")[0]
    two_electron.coulomb_3c(same_structure, auxbasis, batch[0] + 0.01)
    assert two_electron.coulomb_3c._cache_size() == size


def test_private_boys_function():
    # two_electron evaluates the Boys function its own way (a Taylor series per order, on prefixes
    # of the arguments): values against scipy's incomplete gamma function (as tests/basis/test_boys),
    # dF_m/dT = -F_{m+1}, and the prefix lengths.
    t = np.concatenate([[0.0, 1e-9, 0.05, T_SWITCH - 1e-9, T_SWITCH, 31.0, 200.0], np.linspace(0, 45, 301)])
    active = (t.size,) * 13 + (5,)
    values = jax.jit(_md_coulomb.boys_prefixes, static_argnums=1)(t, active)
    assert values[-1].shape == (5,)
    for m in range(13):
        np.testing.assert_allclose(values[m], _boys_reference(m, t), rtol=2e-13, atol=0)
    grad = jax.jit(jax.vmap(jax.grad(lambda x: _md_coulomb.boys_prefixes(x[None], (1,) * 6)[4][0])))
    x = np.array([0.0, 0.7, 12.3, T_SWITCH - 0.01, T_SWITCH + 0.01, 55.0])
    np.testing.assert_allclose(grad(x), -_boys_reference(5, x), rtol=1e-12)


def _boys_reference(m, t):
    """F_m(T) = gamma(m + 1/2) P(m + 1/2, T) / (2 T^(m + 1/2)), series near T = 0."""
    t = np.asarray(t, dtype=np.float64)
    safe = np.where(t > 0, t, 1.0)
    value = gamma(m + 0.5) * gammainc(m + 0.5, safe) / (2 * safe ** (m + 0.5))
    series = 1.0 / (2 * m + 1) - t / (2 * m + 3) + t**2 / (2 * (2 * m + 5))
    return np.where(t > 1e-6, value, series)
