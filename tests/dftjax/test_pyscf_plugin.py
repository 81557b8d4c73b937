"""dftjax functionals inside PySCF's own Kohn-Sham solvers (dftjax.pyscf_plugin).

Oracles: PySCF's native libxc evaluation of the same functional (dftjax's definitions are PySCF's),
dftjax's own SCF on PySCF's grid (slow), the XC energy integrated by dftjax at PySCF's density
(neural functional), and finite differences of the plugin energy (slow).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import dft, gto, scf
from pyscf.dft import libxc

from dftjax import pyscf_plugin
from functionals import (Features, features_from_density_matrices, from_energy_density, get_functional,
                         restricted_features, slater_x, thomas_fermi)

WATER = "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692"
# triplet methylene (OH/6-31G on grid level 3 oscillates at 1e-9 Ha in PySCF's DIIS, natively too)
CH2 = "C 0 0 0; H 0 0.99 0.6; H 0 -0.99 0.6"


def _mol(atom, basis="sto-3g", spin=0):
    return gto.M(atom=atom, basis=basis, spin=spin, verbose=0)


def _converge(mf, grid_level=1):
    mf.grids.level = grid_level
    mf.small_rho_cutoff = 0.0  # no density-based pruning: both sides integrate on the same points
    mf.conv_tol = 1e-11
    energy = mf.kernel()
    assert mf.converged
    return energy


# ---------------------------------------------------------------------------------------------
# Pointwise evaluation against libxc


def _libxc_input(xctype, spin, n=40, seed=0):
    rng = np.random.default_rng(seed)
    rho = rng.uniform(0.01, 2.0, (2, 5, n))
    rho[:, 1:4] = rng.uniform(-1, 1, (2, 3, n)) * rho[:, :1]
    rho[:, 4] = np.sum(rho[:, 1:4] ** 2, axis=1) / (8 * rho[:, 0]) + rng.uniform(0.01, 0.5, (2, n))
    rows = {"LDA": 1, "GGA": 4, "MGGA": 5}[xctype]
    rho = rho[:, :rows]
    if spin == 0:
        rho = rho[0] + rho[1]  # total-density rows (tau and gradients add)
    return rho[..., 0, :] if rows == 1 else rho


# libxc's 10-term MGGA fxc (with Laplacian terms) -> the 6 PySCF takes and we return
_LIBXC_MGGA_FXC = [0, 1, 2, 6, 9, 4]


def _compare_with_libxc(xc, spin, deriv):
    eval_xc = pyscf_plugin.make_eval_xc(xc)
    xctype = pyscf_plugin.xc_type(eval_xc.functional)
    rho = _libxc_input(xctype, spin)
    ours = eval_xc(None, rho, spin, deriv=deriv)
    ref = libxc.eval_xc(xc, rho, spin, deriv=deriv)
    # exc per electron, potentials per volume: relative 1e-12 (float64 formulas; measured <= 1e-14)
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-12, atol=1e-14)
    for a, b in zip(ours[1], ref[1]):
        if b is None or np.size(b) == 0:
            assert a is None
            continue
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    if deriv >= 2:
        ref_fxc = [ref[2][i] for i in _LIBXC_MGGA_FXC] if xctype == "MGGA" else ref[2]
        for a, b in zip(ours[2], ref_fxc, strict=True):
            assert a.shape == np.shape(b)
            # second derivatives of r2SCAN's switching functions lose digits: 1e-9 relative
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("spin", [0, 1])
def test_potentials_match_libxc_layout(spin):
    _compare_with_libxc("pbe", spin, deriv=1)  # compiled functions shared with the SCF tests below


@pytest.mark.slow
@pytest.mark.parametrize("xc, spin", [("lda,vwn", 1), ("pbe", 0), ("pbe", 1), ("b3lyp", 1), ("r2scan", 0),
                                      ("r2scan", 1), ("camb3lyp", 1)])
def test_potentials_and_kernel_match_libxc_layout(xc, spin):
    _compare_with_libxc(xc, spin, deriv=2)


def test_third_derivatives_are_refused_clearly():
    eval_xc = pyscf_plugin.make_eval_xc("pbe")
    with pytest.raises(NotImplementedError, match="order 3"):
        eval_xc(None, np.ones(4), 0, deriv=3)


# ---------------------------------------------------------------------------------------------
# Inside PySCF's SCF


@pytest.fixture(scope="module")
def water_pbe():
    """(plugin mf, native mf) for RKS PBE water/STO-3G on grid level 1."""
    mol = _mol(WATER)
    native = dft.RKS(mol, xc="pbe")
    _converge(native)
    mf = pyscf_plugin.apply(dft.RKS(mol), "pbe")
    _converge(mf)
    return mf, native


def test_rks_energy_and_gradient_equal_native_pyscf(water_pbe):
    mf, native = water_pbe
    assert mf.xc == "pbe"
    assert abs(mf.e_tot - native.e_tot) < 1e-9  # same grid, same formulas; measured 4e-14
    gradient = mf.nuc_grad_method().kernel()
    np.testing.assert_allclose(gradient, native.nuc_grad_method().kernel(), atol=1e-8)  # measured 3e-14


def test_uks_and_roks_open_shell_equal_native_pyscf():
    mol = _mol(CH2, spin=2)
    native = dft.UKS(mol, xc="pbe")
    energy_native = _converge(native)
    mf = pyscf_plugin.apply(dft.UKS(mol), "pbe")
    energy = _converge(mf)
    assert abs(energy - energy_native) < 1e-9  # measured 1e-14
    assert abs(mf.spin_square()[0] - native.spin_square()[0]) < 1e-7
    # restricted open shell: the same spin-resolved evaluation (measured 1e-14)
    assert abs(_converge(pyscf_plugin.apply(dft.ROKS(mol), "pbe")) - _converge(dft.ROKS(mol, xc="pbe"))) < 1e-9


def test_hybrid_coefficients_reach_pyscf():
    mol = _mol("H 0 0 0; H 0 0 0.74")
    for name, hyb, rsh in [("b3lyp", 0.2, (0.0, 0.2, 0.0)), ("camb3lyp", 0.65, (0.33, 0.65, -0.46)),
                           ("hf", 1.0, (0.0, 1.0, 0.0))]:
        mf = pyscf_plugin.apply(dft.RKS(mol), name)
        assert libxc.is_hybrid_xc(mf.xc)
        assert mf._numint.hybrid_coeff(mf.xc) == pytest.approx(hyb)
        np.testing.assert_allclose(mf._numint.rsh_coeff(mf.xc), rsh, atol=1e-15)
        # the same split of exact exchange that PySCF derives from the name
        np.testing.assert_allclose(mf._numint.rsh_and_hybrid_coeff(mf.xc),
                                   dft.RKS(mol, xc=name)._numint.rsh_and_hybrid_coeff(name), atol=1e-12)


class EnhancementMLP(nn.Module):
    """F(rho, s) = 1 + 0.1 tanh(MLP(log rho, s^2)) scaling Slater exchange (tests/functionals/test_neural.py)."""

    @nn.compact
    def __call__(self, features: Features) -> jnp.ndarray:
        rho = features.total_density
        sigma = features.sigma[0] + 2 * features.sigma[1] + features.sigma[2]
        positive = rho > 1e-12
        safe = jnp.where(positive, rho, 1.0)
        x = jnp.stack([jnp.where(positive, jnp.log(safe), 0.0),
                       jnp.where(positive, sigma / safe ** (8 / 3), 0.0)], axis=-1)
        return 1.0 + 0.1 * jnp.tanh(nn.Dense(1)(jnp.tanh(nn.Dense(4)(x))))[:, 0]


def _neural_functional():
    model = EnhancementMLP()
    variables = jax.tree_util.tree_map(lambda x: x.astype(jnp.float64),
                                       jax.jit(model.init)(jax.random.PRNGKey(0), restricted_features(jnp.ones(3))))
    neural_x = from_energy_density("mlp-slater", lambda v, f: model.apply(v, f) * slater_x(None, f),
                                   variables, kind="gga")
    correlation = get_functional(",vwn")
    return from_energy_density(
        "mlp-slater+vwn", lambda p, f: neural_x(f, p[0]) + correlation(f, p[1]),
        (variables, correlation.params), kind="gga", exact_exchange=0.1, alpha=0.1)


def test_neural_functional_runs_inside_pyscf():
    neural = _neural_functional()
    mol = _mol("H 0 0 0; H 0 0 0.74")
    mf = pyscf_plugin.apply(dft.RKS(mol), neural)
    assert mf.xc == pyscf_plugin.HYBRID_LABEL  # PySCF cannot parse the name; K is still built
    _converge(mf)
    # oracle: dftjax integrates the same functional at PySCF's density on PySCF's grid
    ao = mf._numint.eval_ao(mol, mf.grids.coords, deriv=1)
    features = jax.jit(features_from_density_matrices)(ao, mf.make_rdm1())
    e_xc = float(jax.jit(lambda f, w: jnp.sum(w * neural(f)))(features, mf.grids.weights))
    exact_exchange = -0.25 * 0.1 * np.einsum("ij,ji", mf.get_k(dm=mf.make_rdm1()), mf.make_rdm1())
    assert abs(mf.scf_summary["exc"] - (e_xc + exact_exchange)) < 1e-10
    # and the orbital gradient of the SCF (built from our vxc) vanishes there
    assert np.abs(mf.get_grad(mf.mo_coeff, mf.mo_occ)).max() < 1e-5


def test_geometric_optimisation_runs_two_steps():
    from pyscf.geomopt.geometric_solver import optimize

    mf = pyscf_plugin.apply(dft.RKS(_mol("H 0 0 0; H 0 0 0.8")), "pbe")
    mf.grids.level = 1
    steps = []
    mol_eq = optimize(mf, maxsteps=2, callback=lambda env: steps.append(env["energy"]))
    assert len(steps) >= 2 and min(steps) < steps[0]
    bond = np.linalg.norm(np.diff(mol_eq.atom_coords(unit="angstrom"), axis=0))
    assert bond < 0.8  # PBE/STO-3G H2 is shorter than the 0.8 A start (gradient has the right sign)


# ---------------------------------------------------------------------------------------------
# Errors


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match="pbee.*did you mean.*'pbe'"):
        pyscf_plugin.apply(dft.RKS(_mol("H 0 0 0; H 0 0 0.74")), "pbee")


@pytest.mark.parametrize("bad", [lambda mol: scf.RHF(mol), lambda mol: "RKS", lambda mol: mol,
                                 lambda mol: dft.GKS(mol)])
def test_non_kohn_sham_objects_are_refused(bad):
    with pytest.raises(ValueError, match="RKS"):
        pyscf_plugin.apply(bad(_mol("H 0 0 0; H 0 0 0.74")), "pbe")


def _nonlocal(params, features):
    del params
    return slater_x(None, features) * jnp.mean(features.total_density)  # depends on every point


@pytest.mark.parametrize("functional, message", [
    (from_energy_density("tf", thomas_fermi, None, kind="gga"), "kinetic-energy functional"),
    (from_energy_density("global-nn", _nonlocal, None, kind="lda"), "non-local"),
    (from_energy_density("lapl", lambda p, f: slater_x(None, f), None, kind="mgga", needs_laplacian=True),
     "Laplacian"),
    (from_energy_density("1d", lambda p, spin_density: jnp.sum(spin_density, axis=0), None, kind="lda"),
     "does not accept functionals.Features"),
    (slater_x, "functionals.Functional"),
])
def test_functionals_pyscf_cannot_take_are_refused(functional, message):
    mf = dft.RKS(_mol("H 0 0 0; H 0 0 0.74"))
    with pytest.raises(ValueError, match=message):
        pyscf_plugin.apply(mf, functional)
    assert mf.xc == "LDA,VWN"  # untouched


def test_gpu4pyscf_objects_dispatch_to_the_gpu_hook(monkeypatch):
    # Only the ImportError below needs gpu4pyscf/cupy to be missing; their imports are made to fail
    # here, so the test runs whether or not they are installed (the GPU evaluation itself is not tested).
    import sys

    monkeypatch.setitem(sys.modules, "gpu4pyscf", None)
    monkeypatch.setitem(sys.modules, "cupy", None)

    class RKS:  # stands in for gpu4pyscf.dft.rks.RKS (identified by its package)
        xc = "LDA,VWN"

    RKS.__module__ = "gpu4pyscf.dft.rks"
    assert pyscf_plugin._backend(RKS()) == "gpu4pyscf"
    with pytest.raises(ImportError, match="GPU4PySCF object but gpu4pyscf"):
        pyscf_plugin.apply(RKS(), "pbe")
    assert pyscf_plugin._backend(dft.RKS(_mol("H 0 0 0; H 0 0 0.74"))) == "pyscf"


# ---------------------------------------------------------------------------------------------
# Slow: dftjax's own SCF on PySCF's grid, finite differences, a full optimisation


def _dftjax_energy(atom, xc, basis, spin=0):
    from basis.molecule import make_molecule
    from dftjax.scf import SCFOptions, run_scf

    result = run_scf(make_molecule(atom, spin=spin),
                     SCFOptions(xc=xc, basis=basis, unrestricted=spin != 0, pyscf_grids=True, conv_tol=1e-11))
    assert result.converged
    return result.energy


@pytest.mark.slow
@pytest.mark.parametrize("xc, atom, spin", [
    ("lda,vwn", WATER, 0), ("pbe", WATER, 0), ("r2scan", WATER, 0), ("b3lyp", WATER, 0), ("pbe", CH2, 2),
    ("camb3lyp", WATER, 0),
], ids=["lda-water", "pbe-water", "r2scan-water", "b3lyp-water", "pbe-ch2-triplet-uks", "camb3lyp-water"])
def test_energy_equals_dftjax_scf_on_the_same_grid(xc, atom, spin):
    mol = _mol(atom, basis="6-31g", spin=spin)
    mf = pyscf_plugin.apply(dft.UKS(mol) if spin else dft.RKS(mol), xc)
    energy = _converge(mf, grid_level=3)  # dftjax's pyscf_grids uses PySCF's default level 3
    difference = energy - _dftjax_energy(atom, xc, "6-31g", spin)
    print(f"\n{xc} spin {spin}: plugin - dftjax = {difference:.1e} Ha")
    assert abs(difference) < 1e-7


@pytest.mark.slow
def test_gradient_matches_finite_differences_of_plugin_energy():
    mol = _mol(WATER)
    mf = pyscf_plugin.apply(dft.RKS(mol), "b3lyp")
    _converge(mf)
    grad = mf.nuc_grad_method()
    grad.grid_response = True  # the Becke grid moves with the atoms in the finite differences too
    analytic = grad.kernel()
    h = 1e-4  # bohr; central differences, error ~h^2 E''' ~ 1e-8
    coords = mol.atom_coords()
    for atom, axis in [(0, 2), (1, 1), (2, 2)]:
        energies = []
        for sign in (1.0, -1.0):
            displaced = coords.copy()
            displaced[atom, axis] += sign * h
            m = mol.set_geom_(displaced, unit="bohr", inplace=False)
            energies.append(_converge(pyscf_plugin.apply(dft.RKS(m), "b3lyp")))
        fd = (energies[0] - energies[1]) / (2 * h)
        print(f"\natom {atom} axis {axis}: analytic - finite difference = {analytic[atom, axis] - fd:.1e} Ha/bohr")
        assert abs(analytic[atom, axis] - fd) < 1e-6


@pytest.mark.slow
def test_geometric_optimises_water_like_native_pyscf():
    from pyscf.geomopt.geometric_solver import optimize

    mol = _mol(WATER, basis="6-31g")
    mf = pyscf_plugin.apply(dft.RKS(mol), "pbe")
    ours = optimize(mf, maxsteps=30)
    native = optimize(dft.RKS(mol, xc="pbe"), maxsteps=30)
    np.testing.assert_allclose(ours.atom_coords(), native.atom_coords(), atol=1e-4)  # bohr
