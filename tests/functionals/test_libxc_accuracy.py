"""Semilocal functionals against libxc (through PySCF): energies and potentials from jax.grad.

Policy for libxc's density thresholds and the tolerance: see tests/functionals/_oracle.py.
"""
import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from pyscf.dft import numint

from functionals import gga
from functionals import lda
from functionals.features import (features_from_density_matrices, restricted_features,
                                  unrestricted_features)
from functionals.registry import get_functional
from tests.functionals._molecules import molecule_density
from tests.functionals._oracle import Case, compare, elementary_terms, random_points

COMPONENTS = [
    Case("slater", "slater", "lda,", 1e-15, exchange=True),
    Case("vwn5", ",vwn", ",vwn", 1e-15),
    Case("vwn_rpa", ",vwn_rpa", ",vwn_rpa", 1e-15),
    Case("pw92", ",pw", ",pw", 1e-15, rtol=1e-8),  # libxc's low-density precision, see _oracle
    Case("pw92_mod", ",pw_mod", ",pw_mod", 1e-15, rtol=1e-8),
    Case("pz81", ",pz", ",pz", 1e-15),
    Case("b88", "b88,", "b88,", 1e-15, exchange=True),
    Case("pbe_x", "pbe,", "pbe,", 1e-15, exchange=True),
    Case("b88_sr", lambda: gga.make_b88_short_range_x(0.33), "gga_x_ityh,", 1e-14, omega=0.33,
         exchange=True),
    Case("pbe_c", ",pbe", ",pbe", 1e-12),
    Case("lyp", ",lyp", ",lyp", 1e-14),
    Case("p86", ",p86", ",p86", 1e-15),
]
MIXTURES = [
    Case(name, name, name, threshold, component=False)
    for name, threshold in [("lda,vwn", 1e-15), ("pbe", 1e-12), ("blyp", 1e-14), ("bp86", 1e-15),
                            ("b3lyp", 1e-14), ("b3lyp5", 1e-14), ("pbe0", 1e-12),
                            ("camb3lyp", 1e-14)]
]
CASES = COMPONENTS + MIXTURES


def _assert_ok(errors, where):
    bad = {k: f"rel {v.relative:.1e}, scaled {v.scaled:.1e} ({v.worst})"
           for k, v in errors.items() if not v.ok}
    assert not bad, f"{where}: {bad}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_random_points_match_libxc(case):
    """rho 1e-12..1e4, s 0..100, closed shell, open shell and fully polarised."""
    for spin in (0, 1):
        _assert_ok(compare(case, random_points(spin, seed=spin), spin), f"spin={spin}")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_molecular_densities_match_libxc(case):
    """Every grid point of H2O (closed shell) and the OH radical (open shell)."""
    for name, spin in (("water", 0), ("oh", 1)):
        mol, grids, ao, dm = molecule_density(name)
        if spin == 0:
            rho = numint.eval_rho(mol, ao, dm, xctype="GGA")
        else:
            rho = np.stack([numint.eval_rho(mol, ao, d, xctype="GGA") for d in dm])
        _assert_ok(compare(case, rho, spin), name)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_many_random_points_match_libxc(case):
    for seed in range(2, 12):
        for spin in (0, 1):
            _assert_ok(compare(case, random_points(spin, n=4000, seed=seed), spin),
                       f"seed={seed} spin={spin}")


@pytest.mark.parametrize("name", [c.ours for c in MIXTURES] + ["0.5*b3lyp + 0.5*blyp", "hf,lyp"])
def test_mixture_energy_density_is_the_weighted_sum_of_its_components(name):
    """The mixture's own energy_density (used by solvers) equals the sum the oracle evaluates."""
    functional = get_functional(name)
    inp = random_points(1, n=64, seed=7)
    rho = jnp.asarray(inp[:, 0])
    g = inp[:, 1:4]
    sigma = jnp.asarray(np.stack([np.sum(g[0] * g[0], 0), np.sum(g[0] * g[1], 0),
                                  np.sum(g[1] * g[1], 0)]))
    features = unrestricted_features(rho, sigma)
    expected = sum(c * f(features) for c, f in elementary_terms(functional))
    np.testing.assert_allclose(functional(features), expected, rtol=1e-14, atol=1e-300)


def _fock_test(xc):
    functional = get_functional(xc)
    ni = numint.NumInt()
    for name in ("water", "oh"):
        mol, grids, ao, dm = molecule_density(name)
        weights = jnp.asarray(grids.weights)

        @jax.jit
        def energy_and_fock(d):
            return jax.value_and_grad(
                lambda d: jnp.sum(weights * functional(features_from_density_matrices(ao, d))))(d)

        e, v = energy_and_fock(jnp.asarray(dm))
        if dm.ndim == 2:
            _, e_ref, v_ref = ni.nr_rks(mol, grids, xc, dm)
        else:
            _, e_ref, v_ref = ni.nr_uks(mol, grids, xc, dm)
        # Same grid and densities; only libxc's zeroing below its thresholds differs (< 1e-20).
        np.testing.assert_allclose(e, e_ref, rtol=1e-11)
        np.testing.assert_allclose(v, v_ref, rtol=0, atol=1e-10)


def test_energy_and_fock_matrix_through_density_matrix_match_pyscf():
    """E_xc = sum w e and V_xc = dE_xc/dD by jax.grad through the features equal PySCF's numint."""
    _fock_test("b3lyp")


@pytest.mark.slow
@pytest.mark.parametrize("xc", ["lda,vwn", "pbe", "camb3lyp"])
def test_energy_and_fock_matrix_more_functionals(xc):
    _fock_test(xc)


def _pbe_correlation_mp(rho, sigma):
    """PBE correlation energy per volume of a closed-shell point in 40-digit arithmetic."""
    mp = mpmath.mp
    r, sg = mpmath.mpf(rho), mpmath.mpf(sigma)
    rs = (3 / (4 * mp.pi * r)) ** (mpmath.mpf(1) / 3)
    a, a1, b1, b2, b3, b4 = (mpmath.mpf(x) for x in (0.0310907, 0.21370, 7.5957, 3.5876,
                                                      1.6382, 0.49294))
    ec = -2 * a * (1 + a1 * rs) * mpmath.log(
        1 + 1 / (2 * a * (b1 * mpmath.sqrt(rs) + b2 * rs + b3 * rs**1.5 + b4 * rs**2)))
    beta = mpmath.mpf(0.06672455060314922)
    gamma = (1 - mpmath.log(2)) / mp.pi**2
    ks2 = 4 * (3 * mp.pi**2 * r) ** (mpmath.mpf(1) / 3) / mp.pi
    t2 = sg / (4 * ks2 * r * r)
    big_a = beta / gamma / (mpmath.exp(-ec / gamma) - 1)
    y = big_a * t2
    return r * (ec + gamma * mpmath.log(1 + beta / gamma * t2 * (1 + y) / (1 + y + y * y)))


def test_pbe_correlation_large_gradient_against_mpmath():
    """At large t, eps_c + H nearly cancels; our rewrite keeps full precision (libxc: ~1e-8)."""
    with mpmath.workdps(40):
        rho = np.array([4.0e3, 1.0, 1.0e-3, 1.0e-8])
        s = np.array([90.0, 90.0, 50.0, 30.0])
        sigma = (2 * (3 * np.pi**2) ** (1 / 3) * rho ** (4 / 3) * s) ** 2
        e = np.asarray(gga.pbe_c(gga.PBE_C_PARAMS, restricted_features(rho, sigma)))
        ref = np.array([float(_pbe_correlation_mp(r, sg)) for r, sg in zip(rho, sigma)])
    np.testing.assert_allclose(e, ref, rtol=1e-13)


def _pw92_mp(rho_a, rho_b):
    """PW92 (LDA_C_PW constants) correlation energy per volume in 40-digit arithmetic."""
    fits = [lda.PW92_PARAMS[k] for k in ("para", "ferro", "alpha")]

    def g(rs, fit):
        a, a1, b1, b2, b3, b4, p = (mpmath.mpf(x) for x in fit)
        den = 2 * a * (b1 * mpmath.sqrt(rs) + b2 * rs + b3 * rs**1.5 + b4 * rs ** (p + 1))
        return -2 * a * (1 + a1 * rs) * mpmath.log(1 + 1 / den)

    rho = rho_a + rho_b
    zeta = (rho_a - rho_b) / rho
    rs = (3 / (4 * mpmath.pi * rho)) ** (mpmath.mpf(1) / 3)
    third4 = mpmath.mpf(4) / 3
    f = ((1 + zeta) ** third4 + (1 - zeta) ** third4 - 2) / (2**third4 - 2)
    e0, e1, minus_alpha = (g(rs, fit) for fit in fits)
    fpp0 = mpmath.mpf(lda.PW92_PARAMS["fpp0"])
    return rho * (e0 - minus_alpha * f / fpp0 * (1 - zeta**4) + (e1 - e0) * f * zeta**4)


def test_pw92_low_density_against_mpmath():
    """Where libxc's PW92 loses digits (rho < 1e-10), ours keeps 1e-13 in e and both potentials."""
    rho = jnp.array([[3e-15, 1e-13, 2e-12, 8e-11], [1e-15, 1e-13, 3e-13, 1e-11]])

    def energy(r):
        return jnp.sum(lda.pw92_c(lda.PW92_PARAMS, unrestricted_features(r)))

    e = np.asarray(lda.pw92_c(lda.PW92_PARAMS, unrestricted_features(rho)))
    v = np.asarray(jax.grad(energy)(rho))
    with mpmath.workdps(40):
        for i in range(rho.shape[1]):
            ra, rb = (mpmath.mpf(float(x)) for x in rho[:, i])
            np.testing.assert_allclose(e[i], float(_pw92_mp(ra, rb)), rtol=1e-13)
            va = mpmath.diff(lambda x: _pw92_mp(x, rb), ra)
            vb = mpmath.diff(lambda x: _pw92_mp(ra, x), rb)
            np.testing.assert_allclose(v[:, i], [float(va), float(vb)], rtol=1e-13)


def test_erf_attenuation_branches_against_mpmath():
    """The three branches of the ITYH attenuation F(a) (polynomial, closed form, series)."""
    a = np.concatenate([np.geomspace(1e-4, 1e3, 57), [0.05, 1.0, 0.0499999, 0.9999999]])
    ours = np.asarray(gga.erf_attenuation(jnp.asarray(a)))
    with mpmath.workdps(60):
        def exact(x):
            x = mpmath.mpf(x)
            return 1 - mpmath.mpf(8) / 3 * x * (
                mpmath.sqrt(mpmath.pi) * mpmath.erf(1 / (2 * x))
                + (2 * x - 4 * x**3) * mpmath.exp(-1 / (4 * x * x)) - 3 * x + 4 * x**3)

        ref = np.array([float(exact(x)) for x in a])
    # the closed form just below a = 1 keeps ~13 digits (cancellation of terms ~ 10 F)
    np.testing.assert_allclose(ours, ref, rtol=1e-13)
