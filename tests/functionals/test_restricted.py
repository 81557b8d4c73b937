"""The closed-shell fast path (RestrictedFeatures of the total density) against the spin halves and libxc.

A closed-shell density is either two equal spin halves (:class:`Features`) or the total-density
quantities (:class:`RestrictedFeatures`), on which every registered functional evaluates its
unpolarised formulas. Both must give the same energy density, and ``jax.grad`` with respect to the
totals must equal the chain rule through the halves (``d/drho = (d/drho_a + d/drho_b)/2``,
``d/dsigma = (d/dsigma_aa + d/dsigma_ab + d/dsigma_bb)/4``, ``d/dtau = (d/dtau_a + d/dtau_b)/2``).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf.dft import numint

from functionals import (RestrictedFeatures, closed_shell_features, energy_and_potentials,
                         features_from_density_matrices, from_energy_density, get_functional,
                         linear_combination, potential_cotangent,
                         restricted_features_from_density_matrix, slater_x)
from functionals.registry import available_functionals
from tests.functionals import test_mgga as mgga_oracle
from tests.functionals._molecules import molecule_density
from tests.functionals._oracle import compare
from tests.functionals._oracle import random_points as gga_random_points
from tests.functionals.test_libxc_accuracy import COMPONENTS as GGA_COMPONENTS
from tests.functionals.test_libxc_accuracy import MIXTURES as GGA_MIXTURES

# Same formulas at zeta = 0, different rounding (x^{1/3} by exp/log, 2 rho_s vs rho, fewer terms).
# Relative 1e-12 where the value is not a cancellation, else 1e-13 of the quantity's natural scale
# (PBE's vsigma: exchange and correlation cancel at small s by construction; LYP at large s).
RTOL = 1e-12
SCALED_ATOL = 1e-13

# Every component the registry builds (a mixture's energy density is the weighted sum of its
# components', each taking its own path) and two mixtures; the slow sweep takes every name.
COMPONENTS = ["slater,", ",vwn", ",vwn_rpa", ",pw", ",pw_mod", ",pz", "b88,", "pbe,",
              "gga_x_ityh,", ",pbe", ",lyp", ",p86", "r2scan,", ",r2scan", "scan,", ",scan"]
MIXTURES = ["camb3lyp", ".2*HF + .08*LDA + .72*B88, .81*LYP + .19*VWN"]
NAMES = [n for n in available_functionals() if n != "hf"] + [
    "0.5*b3lyp + 0.5*blyp", "b88,p86"] + MIXTURES


def _points(n=512, seed=0):
    """Total rho log-uniform in [1e-12, 1e4], s = 100 u^3 (5% zero), tau = tau_W + alpha tau_unif."""
    rng = np.random.default_rng(seed)
    rho = 10.0 ** rng.uniform(-12, 4, n)
    s = 100.0 * rng.uniform(size=n) ** 3
    s[rng.uniform(size=n) < 0.05] = 0.0
    sigma = (2.0 * (3.0 * np.pi**2) ** (1 / 3) * rho ** (4 / 3) * s) ** 2
    alpha = 10.0 * rng.uniform(size=n)
    alpha[:20] = 0.0
    alpha[20:40] = 1.0
    tau = sigma / (8 * rho) + alpha * 0.3 * (3 * np.pi**2) ** (2 / 3) * rho ** (5 / 3)
    return rho, sigma, tau, s


def _both_paths(name):
    """Eager (not jitted): compiling the reverse pass of every functional twice costs more than
    running it on 512 points."""
    functional = get_functional(name)

    def evaluate(rho, sigma, tau):
        def fast(r, s, t):
            return functional(closed_shell_features(r, s, t))

        def halves(r, s, t):
            return functional(closed_shell_features(r, s, t).split())

        out = []
        for fn in (fast, halves):
            e, vjp = jax.vjp(fn, rho, sigma, tau)
            out.append((e,) + vjp(jnp.ones_like(e)))
        return out

    return evaluate


def _assert_paths_agree(name):
    rho, sigma, tau, s = _points()
    fast, halves = _both_paths(name)(*map(jnp.asarray, (rho, sigma, tau)))
    scales = [rho ** (4 / 3) * (1 + s**2), rho ** (1 / 3) * (1 + s**2), rho ** (-4 / 3),
              rho ** (-1 / 3)]
    for label, a, b, scale in zip(("e", "vrho", "vsigma", "vtau"), fast, halves, scales):
        a, b = np.asarray(a), np.asarray(b)
        assert np.all(np.isfinite(a)), label
        bad = np.abs(a - b) > RTOL * np.abs(b) + SCALED_ATOL * scale
        assert not bad.any(), (f"{name} {label}: {bad.sum()} points, worst rel "
                               f"{np.max(np.abs(a - b)[bad] / np.abs(b[bad])):.1e}")


@pytest.mark.parametrize("name", COMPONENTS + MIXTURES)
def test_fast_path_equals_spin_halves(name):
    """Energy density and vrho, vsigma, vtau of the totals agree between the two representations."""
    _assert_paths_agree(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_fast_path_equals_spin_halves_every_name(name):
    _assert_paths_agree(name)


def test_every_registered_functional_takes_the_fast_path():
    """Registered functionals (and their mixtures) evaluate RestrictedFeatures themselves."""
    for name in NAMES:
        functional = get_functional(name)
        assert functional.supports_restricted, name
        for _, component in functional.components:
            assert component.supports_restricted, (name, component.name)


def test_user_functional_receives_spin_halves():
    """A from_energy_density functional that knows only Features gets the halves, also in a mix."""
    seen = []

    def energy_density(params, features):
        seen.append(type(features).__name__)
        return params * slater_x(None, features)

    user = from_energy_density("scaled-slater", energy_density, 2.0, kind="lda")
    assert not user.supports_restricted
    mixed = linear_combination([(1.0, user), (1.0, get_functional("pbe"))], "user+pbe")
    rho, sigma, tau, _ = _points(16)
    features = closed_shell_features(rho, sigma, tau)
    np.testing.assert_allclose(user(features), 2.0 * get_functional("lda")(features), rtol=1e-13)
    np.testing.assert_allclose(mixed(features), mixed(features.split()), rtol=1e-13)
    assert seen and set(seen) == {"Features"}
    # the potential of the user part comes through the halves by the chain rule
    v = jax.grad(lambda r: jnp.sum(user(closed_shell_features(r))))(jnp.asarray(rho))
    v_ref = jax.grad(lambda r: jnp.sum(2.0 * slater_x(None, closed_shell_features(r))))(
        jnp.asarray(rho))
    np.testing.assert_allclose(v, v_ref, rtol=1e-13)


# --------------------------------------------------------------------------------------------
# libxc spin=0 through the fast path
# --------------------------------------------------------------------------------------------

def _assert_ok(errors, where):
    bad = {k: f"rel {v.relative:.1e}, scaled {v.scaled:.1e} ({v.worst})"
           for k, v in errors.items() if not v.ok}
    assert not bad, f"{where}: {bad}"


def _lda_gga_against_libxc(case):
    _assert_ok(compare(case, gga_random_points(0, seed=10), 0, closed_shell=True), "random")
    mol, grids, ao, dm = molecule_density("water")
    rho = numint.eval_rho(mol, ao, dm, xctype="GGA")
    _assert_ok(compare(case, rho, 0, closed_shell=True), "water")


@pytest.mark.parametrize("case", GGA_COMPONENTS, ids=lambda c: c.id)
def test_lda_gga_fast_path_matches_libxc_spin0(case):
    """Random points (rho 1e-12..1e4, s 0..100) and the water grid, libxc's spin=0 path;
    thresholds and tolerances as tests/functionals/_oracle.py."""
    _lda_gga_against_libxc(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", GGA_MIXTURES, ids=lambda c: c.id)
def test_mixtures_fast_path_match_libxc_spin0(case):
    """The mixtures (sums of the components above, each on its own fast path)."""
    _lda_gga_against_libxc(case)


@functools.lru_cache(maxsize=None)
def _jitted_mgga(energy_density):
    functional = from_energy_density("m", energy_density, None, supports_restricted=True)

    def evaluate(rho, sigma, tau):
        e, vjp = jax.vjp(lambda r, s, t: functional(closed_shell_features(r, s, t)),
                         rho, sigma, tau)
        return (e,) + vjp(jnp.ones_like(e))

    return jax.jit(evaluate)


@pytest.mark.parametrize("case", mgga_oracle.CASES, ids=[c.id for c in mgga_oracle.CASES])
def test_mgga_fast_path_matches_libxc_spin0(case):
    """SCAN/r2SCAN components at libxc's spin=0 path; policy of tests/functionals/test_mgga.py."""
    total = 2 * mgga_oracle.random_points("closed", mgga_oracle.CHUNK, 14)[0]
    rho, sigma, tau = total[0], np.sum(total[1:4] ** 2, axis=0), total[4]
    exc, vrho, vsigma, vtau = mgga_oracle._libxc(case.libxc, total, spin=0)
    e, d_rho, d_sigma, d_tau = (np.asarray(x) for x in _jitted_mgga(case.ours)(rho, sigma, tau))
    mask = (rho / 2 > 2 * case.threshold) & (sigma >= case.threshold ** (8 / 3))
    mask &= tau >= mgga_oracle.TAU_FLOOR
    halves = (np.stack([rho, rho]) / 2, np.stack([sigma] * 3) / 4, np.stack([tau, tau]) / 2)
    rtol_v = mgga_oracle._potential_rtol(case, *halves)
    rtol_e = np.where(rho < mgga_oracle.LOW_DENSITY, mgga_oracle.RTOL_LOW_DENSITY,
                      mgga_oracle.RTOL)
    errors = {"e": mgga_oracle._errors(e, exc * rho, rho ** (4 / 3), mask, rtol_e),
              "vrho": mgga_oracle._errors(d_rho, vrho, rho ** (1 / 3), mask, rtol_v),
              "vsigma": mgga_oracle._errors(d_sigma, vsigma, rho ** (-4 / 3), mask, rtol_v),
              "vtau": mgga_oracle._errors(d_tau, vtau, rho ** (-1 / 3), mask, rtol_v)}
    mgga_oracle._assert_all(errors, case.id)


# --------------------------------------------------------------------------------------------
# Safety of the fast path
# --------------------------------------------------------------------------------------------

def _edge_points():
    """(rho, sigma, tau) of the totals: vacuum, noise, below/at the threshold, zero gradient or
    tau, ordinary and high densities, and negative grid noise."""
    rows = [  # rho, sigma, tau
        (0.0, 0.0, 0.0), (0.0, 1e-30, 1e-30), (1e-30, 0.0, 0.0), (-1e-12, 1e-30, 0.0),
        (1.5e-20, 1e-50, 1e-40), (3e-18, 1e-40, 1e-30), (0.3, 0.0, 0.0), (0.3, 0.2, 0.0),
        (0.3, 0.0, 0.5), (0.2, 0.05, 0.3), (1e4, 1e10, 1e8), (1e-12, 1e-30, 1e-20),
    ]
    return tuple(jnp.asarray(c) for c in np.array(rows).T)


@pytest.mark.parametrize("name", ["lda,vwn", "lda,pw", "lda,pz", "b88,lyp", "pbe", "bp86",
                                  "b3lyp", "camb3lyp", "r2scan", "scan"])
def test_fast_path_values_gradients_hessians_finite(name):
    """Finite e, grad and Hessian-vector products at zero density, gradient and tau (eagerly, as
    test_safety: compiling second derivatives costs more than running them)."""
    functional = get_functional(name)
    rho, sigma, tau = _edge_points()

    def energy(r, s, t):
        return jnp.sum(functional(closed_shell_features(r, s, t)))

    e = functional(closed_shell_features(rho, sigma, tau))
    assert np.all(np.isfinite(e)), e
    np.testing.assert_array_equal(np.asarray(e)[:4], 0.0)  # nothing below the threshold
    gradient = jax.grad(energy, argnums=(0, 1, 2))
    for g in gradient(rho, sigma, tau):
        assert np.all(np.isfinite(g)), g
    rng = np.random.default_rng(0)
    for _ in range(2):
        direction = tuple(jnp.asarray(rng.uniform(0.5, 1.5, rho.shape)) for _ in range(3))
        for block in jax.jvp(gradient, (rho, sigma, tau), direction)[1]:
            assert np.all(np.isfinite(block)), block


# --------------------------------------------------------------------------------------------
# Chunked potentials and the density-matrix entry point
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,closed", [("r2scan", True), pytest.param("b3lyp", False, marks=pytest.mark.slow)])
def test_energy_and_potentials_equals_plain_vjp(name, closed):
    """Chunked (with padding) and unchunked evaluation give the same e and potentials."""
    functional = get_functional(name)
    rho, sigma, tau, s = _points(1000, seed=3)
    if closed:
        features = closed_shell_features(rho, sigma, tau)
    else:
        features = closed_shell_features(rho, sigma, tau).split()._replace(
            rho=jnp.asarray(np.stack([0.7 * rho, 0.3 * rho])))
    e, v = jax.jit(functools.partial(energy_and_potentials, functional, chunk_size=256))(features)
    e_ref, vjp = jax.vjp(functional, features)
    v_ref = vjp(jnp.ones_like(e_ref))[0]
    np.testing.assert_allclose(e, e_ref, rtol=1e-14, atol=0)
    assert set(v) == {"rho", "sigma"} | ({"tau"} if functional.kind == "mgga" else set())
    # vsigma of PBE is a cancellation of exchange and correlation at small s: natural scales
    scales = {"rho": rho ** (1 / 3) * (1 + s**2), "sigma": rho ** (-4 / 3), "tau": rho ** (-1 / 3)}
    for k, vk in v.items():
        ref = np.asarray(getattr(v_ref, k))
        assert np.all(np.abs(np.asarray(vk) - ref)
                      <= 1e-13 * np.abs(ref) + 1e-14 * scales[k]), k


@pytest.mark.slow  # default-suite budget (2026-11-28); the physics is covered by cheaper default tests
def test_restricted_features_from_density_matrix_and_xc_matrix():
    """Total-density features in one pass equal the halves' totals; E_xc and V_xc = dE/dD of the
    fast path (directly and via energy_and_potentials) equal the spin-halves path."""
    mol, grids, ao, dm = molecule_density("water", deriv=2)
    ao, dm, weights = jnp.asarray(ao), jnp.asarray(dm), jnp.asarray(grids.weights)
    fast = restricted_features_from_density_matrix(ao, dm)
    assert isinstance(fast, RestrictedFeatures)
    halves = features_from_density_matrices(ao, dm)
    np.testing.assert_allclose(fast.rho, halves.rho.sum(0), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(fast.sigma, halves.sigma[0] + 2 * halves.sigma[1] + halves.sigma[2],
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fast.tau, halves.tau.sum(0), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(fast.lapl, halves.lapl.sum(0), rtol=1e-12, atol=1e-10)

    xc = get_functional("pbe")
    ao = ao[:4]  # first derivatives suffice for a GGA

    def e_xc(d, fn):
        return jnp.sum(weights * xc(fn(ao, d)))

    e_fast, v_fast = jax.value_and_grad(e_xc)(dm, restricted_features_from_density_matrix)
    e_half, v_half = jax.value_and_grad(e_xc)(dm, features_from_density_matrices)
    np.testing.assert_allclose(e_fast, e_half, rtol=1e-13)
    np.testing.assert_allclose(v_fast, v_half, rtol=0, atol=1e-12)

    # the SCF recipe of energy_and_potentials' docstring
    features, pullback = jax.vjp(lambda d: restricted_features_from_density_matrix(ao, d), dm)
    e, v = energy_and_potentials(xc, features, chunk_size=4096)
    v_chunked = pullback(potential_cotangent(features, v, weights))[0]
    np.testing.assert_allclose(jnp.sum(weights * e), e_fast, rtol=1e-14)
    np.testing.assert_allclose(v_chunked, v_fast, rtol=0, atol=1e-12)
