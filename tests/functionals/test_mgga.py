"""SCAN and r2SCAN (functionals.mgga) against libxc through PySCF; finiteness at the edges.

Oracle policy (as tests/functionals/_oracle.py for LDA/GGA, extended to tau). Measured with libxc
7.0 through PySCF 2.14, libxc *clamps* meta-GGA inputs before evaluating: each spin density to at
least its ``dens_threshold`` (1e-11 for MGGA_X_R2SCAN, 1e-15 for MGGA_X_SCAN and both
correlations), ``sigma_ss`` to at least ``dens_threshold^(8/3)``, ``tau_s`` to at least 1e-20 and
then ``sigma_ss`` to at most ``8 rho_s tau_s`` (tau >= tau_W); exchange drops a spin channel at or
below the threshold, and exc is per particle of the clamped density. So for one libxc component:

* ours is evaluated at libxc's clamped input (exchange: spin densities not raised) and libxc's
  energy per volume is ``exc * sum_s max(rho_s, threshold)``;
* points with every spin density above twice the threshold are compared in full; fully polarised
  points (one spin exactly 0) in the energy and the majority-spin potentials (the minority-spin
  ones are threshold artefacts of libxc, and infinite in exact arithmetic for correlation). Points
  with a spin density in ``(0, 2 threshold]`` are excluded (libxc zeroes or clamps that channel):
  10-13% of the random points for r2SCAN exchange (rho_s <= 2e-11, the bottom of the log-uniform
  range), 0.01% for the other three.
* On molecular grids libxc's compound ``r2scan``/``scan`` mixes thresholds, so points are compared
  where every spin density exceeds 1e5 times the largest (1e-6): the clamps change nothing there.

Tolerance: ``|ours - libxc| <= rtol |libxc| + 1e-12 scale``, ``scale`` the natural magnitude of
the quantity at density rho: ``rho^(4/3)`` (energy per volume), ``rho^(1/3)`` (vrho),
``rho^(-4/3)`` (vsigma), ``rho^(-1/3)`` (vtau). ``rtol = 1e-10`` except in two documented regions:

* total density below 1e-7: ``rtol = 1e-7``. libxc's correlation loses digits at large r_s: 2e-10
  relative in e at rho ~ 1e-12, up to 4e-8 in vsigma (rho = 2.4e-12) and 4e-10 in vrho at
  rho = 1.7e-8, s = 60, where ours agrees with a 40-digit mpmath evaluation of the papers' formulas
  to 2e-12, 5e-12 (``test_low_density_correlation_against_mpmath`` pins that down).
* SCAN potentials where ``s > 10`` and ``|alpha - 1| < 0.5`` (per spin for exchange, total for
  correlation): ``rtol = 3e-8``. ``alpha = (tau - tau_W) / tau_unif`` cancels ``tau_W / tau_unif =
  5 s^2 / 3 > 160`` and SCAN's ``exp(c/(1 - alpha))`` has large alpha-derivatives near 1, so a
  one-ulp change of tau moves vrho by up to ~1e-9 relative: ours and libxc both deviate from
  mpmath by that much (ours 2e-10, libxc 1.4e-9 at s = 91, alpha = 1.065). r2SCAN's polynomial
  f(alpha) has no such region.

The scaled term also covers libxc zeroing SCAN's switching function where its exponential falls
below DBL_EPSILON (``0.9826 < alpha < 1.0416`` for correlation); ours keeps the exact tail, which
changes vtau by ~1e-12 absolute at rho ~ 1e-7.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf.dft import libxc, numint

from functionals import lda, mgga
from functionals.features import Features
from tests.functionals._molecules import molecule_density

RTOL = 1e-10
RTOL_LOW_DENSITY = 1e-7  # rho < LOW_DENSITY: libxc's correlation loses digits
LOW_DENSITY = 1e-7
RTOL_ILL_CONDITIONED = 3e-8  # SCAN potentials at s > 10, |alpha - 1| < 0.5
SCALED_ATOL = 1e-12
TAU_FLOOR = 1e-20  # libxc's tau_threshold
CHUNK = 2048  # every evaluation is padded to chunks of this many points: one compile per functional
_KF_SPIN = (6.0 * np.pi**2) ** (1.0 / 3.0)  # k_F of one spin channel: (6 pi^2 rho_s)^(1/3)
_TAU_UNIF_SPIN = 0.3 * (6.0 * np.pi**2) ** (2.0 / 3.0)  # tau_unif,s = this * rho_s^(5/3)
_TAU_UNIF = 0.3 * (3.0 * np.pi**2) ** (2.0 / 3.0)  # tau_unif = this * rho^(5/3) (total)


@dataclass(frozen=True)
class Case:
    id: str
    ours: Callable
    libxc: str
    threshold: float  # libxc dens_threshold
    exchange: bool
    scan: bool  # SCAN's exp(c/(1 - alpha)) switching function (ill-conditioned region)


CASES = [
    Case("r2scan_x", mgga.r2scan_x, "MGGA_X_R2SCAN,", 1e-11, exchange=True, scan=False),
    Case("r2scan_c", mgga.r2scan_c, ",MGGA_C_R2SCAN", 1e-15, exchange=False, scan=False),
    Case("scan_x", mgga.scan_x, "MGGA_X_SCAN,", 1e-15, exchange=True, scan=True),
    Case("scan_c", mgga.scan_c, ",MGGA_C_SCAN", 1e-15, exchange=False, scan=True),
]
CASE_IDS = [c.id for c in CASES]


# --------------------------------------------------------------------------------------------
# Our side: jitted energy density and pointwise first derivatives
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _jitted(energy_density: Callable):
    """jit(rho (2,m), sigma (3,m), tau (2,m)) -> (e, de/drho, de/dsigma, de/dtau) pointwise."""

    def evaluate(rho, sigma, tau):
        def energy(r, s, t):
            return energy_density(None, Features(rho=r, sigma=s, tau=t, lapl=jnp.zeros_like(r)))

        e, vjp = jax.vjp(energy, rho, sigma, tau)
        return (e,) + vjp(jnp.ones_like(e))  # each e_g depends on point g only

    return jax.jit(evaluate)


def _ours(energy_density, rho, sigma, tau):
    """(e (n,), de/drho (2,n), de/dsigma (3,n), de/dtau (2,n)) as NumPy, in chunks of CHUNK."""
    n = rho.shape[-1]
    pad = -n % CHUNK  # padding points have rho = 0: exactly zero energy
    padded = [np.pad(np.asarray(x, np.float64), ((0, 0), (0, pad))) for x in (rho, sigma, tau)]
    fn = _jitted(energy_density)
    chunks = [fn(*(x[:, i:i + CHUNK] for x in padded)) for i in range(0, n + pad, CHUNK)]
    return tuple(np.concatenate([np.asarray(c[k]) for c in chunks], axis=-1)[..., :n]
                 for k in range(4))


# --------------------------------------------------------------------------------------------
# Test points and libxc's side
# --------------------------------------------------------------------------------------------

def _sigma(grad: np.ndarray) -> np.ndarray:
    """(3, n) sigma_aa, sigma_ab, sigma_bb from (2, 3, n) spin-density gradients."""
    dot = lambda a, b: np.einsum("xg,xg->g", a, b)  # noqa: E731
    return np.stack([dot(grad[0], grad[0]), dot(grad[0], grad[1]), dot(grad[1], grad[1])])


def random_points(kind: str, n: int, seed: int) -> np.ndarray:
    """Spin-resolved eval_xc input (2, 5, n): rho, d/dx, d/dy, d/dz, tau per spin.

    Total rho log-uniform in [1e-12, 1e4]; zeta = 0 ("closed"), uniform in (-1, 1) ("open") or
    +-1 ("full"); per-spin reduced gradient ``s = |grad rho_s| / (2 (6 pi^2)^(1/3) rho_s^(4/3))``
    drawn as 100 u^3 (mostly chemical s < 3, up to 100) with 5% exactly 0, random directions;
    ``tau_s = tau_W,s + alpha tau_unif,s`` (tau >= tau_W, libxc's physical domain) with alpha
    uniform in [0, 10], 5% exactly 0 (tau = tau_W, one orbital) and 5% exactly 1.
    """
    rng = np.random.default_rng(seed)
    rho = 10.0 ** rng.uniform(-12, 4, n)
    if kind == "closed":
        zeta = np.zeros(n)
    elif kind == "open":
        zeta = rng.uniform(-1, 1, n)
    else:
        zeta = np.where(rng.uniform(size=n) < 0.5, 1.0, -1.0)
    rho_s = np.stack([rho * (1 + zeta) / 2, rho * (1 - zeta) / 2])
    s = 100.0 * rng.uniform(size=(2, n)) ** 3
    s[rng.uniform(size=(2, n)) < 0.05] = 0.0
    alpha = 10.0 * rng.uniform(size=(2, n))
    u = rng.uniform(size=(2, n))
    alpha[u < 0.05] = 0.0
    alpha[(u >= 0.05) & (u < 0.1)] = 1.0
    direction = rng.normal(size=(2, 3, n))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    grad = direction * (2.0 * _KF_SPIN * rho_s ** (4 / 3) * s)[:, None]
    if kind == "closed":
        grad[1], alpha[1] = grad[0], alpha[0]
    sigma_ss = np.sum(grad**2, axis=1)
    tau_w = sigma_ss / (8.0 * np.where(rho_s > 0, rho_s, 1.0))
    tau = tau_w + alpha * _TAU_UNIF_SPIN * rho_s ** (5 / 3)
    return np.concatenate([rho_s[:, None], grad, tau[:, None]], axis=1)


def _libxc_clamped_features(case: Case, inp: np.ndarray):
    """(rho, sigma, tau) at which libxc evaluates a single component (module docstring)."""
    rho = inp[:, 0]
    sigma = _sigma(inp[:, 1:4])
    tau = np.maximum(inp[:, 4], TAU_FLOOR)
    rho_c = np.maximum(rho, case.threshold)
    floor = case.threshold ** (8 / 3)
    for k, s in ((0, 0), (2, 1)):
        sigma[k] = np.minimum(np.maximum(sigma[k], floor), 8.0 * rho_c[s] * tau[s])
    return (rho if case.exchange else rho_c), sigma, tau


def _libxc(xc: str, inp: np.ndarray, spin: int):
    """libxc's (exc, vrho, vsigma, vtau) in PySCF's layout."""
    exc, vxc = libxc.eval_xc(xc, inp, spin=spin, deriv=1)[:2]
    return exc, np.asarray(vxc[0]), np.asarray(vxc[1]), np.asarray(vxc[3])


def _reduced_gradient_and_alpha(rho, sigma, tau):
    """s and alpha = (tau - tau_W) / tau_unif of an unpolarised density (total quantities)."""
    rho = np.where(rho > 0, rho, 1.0)
    s = np.sqrt(sigma) / (2 * (3 * np.pi**2) ** (1 / 3) * rho ** (4 / 3))
    return s, (tau - sigma / (8 * rho)) / (_TAU_UNIF * rho ** (5 / 3))


def _potential_rtol(case: Case, rho, sigma, tau) -> np.ndarray:
    """(n,) relative tolerance of the potentials (module docstring)."""
    total = rho.sum(0)
    rtol = np.where(total < LOW_DENSITY, RTOL_LOW_DENSITY, RTOL)
    if case.scan:
        if case.exchange:  # alpha and s of each spin channel's density 2 rho_s
            s, alpha = _reduced_gradient_and_alpha(2 * rho, 4 * sigma[[0, 2]], 2 * tau)
        else:
            zeta = (rho[0] - rho[1]) / np.where(total > 0, total, 1.0)
            d_s = ((1 + zeta) ** (5 / 3) + np.abs(1 - zeta) ** (5 / 3)) / 2
            s, alpha = _reduced_gradient_and_alpha(total, sigma[0] + 2 * sigma[1] + sigma[2],
                                                   tau.sum(0))
            alpha = alpha / d_s
        ill = (s > 10) & (np.abs(alpha - 1) < 0.5)
        if ill.ndim == 2:  # exchange: either spin channel
            ill = ill.any(axis=0)
        rtol = np.where(ill, np.maximum(rtol, RTOL_ILL_CONDITIONED), rtol)
    return rtol


def _errors(ours, ref, scale, mask, rtol) -> tuple[bool, float, float]:
    """(all within tolerance, max relative error where |ref| > 1e-3 scale, max |err| / scale)."""
    mask = np.broadcast_to(mask, ref.shape)
    ours, ref, scale, rtol = (np.broadcast_to(x, ref.shape)[mask] for x in (ours, ref, scale, rtol))
    err = np.abs(ours - ref)
    ok = bool(np.all(err <= rtol * np.abs(ref) + SCALED_ATOL * scale))
    meaningful = np.abs(ref) > 1e-3 * scale
    rel = float(np.max(err[meaningful] / np.abs(ref[meaningful]), initial=0.0))
    return ok, rel, float(np.max(err / scale, initial=0.0))


def compare_spin_resolved(case: Case, inp: np.ndarray) -> dict[str, tuple[bool, float, float]]:
    """Ours vs libxc (spin=1) for one component under the policy of the module docstring."""
    exc, vrho, vsigma, vtau = _libxc(case.libxc, inp, spin=1)
    rho_s = inp[:, 0]
    e_ref = exc * np.maximum(rho_s, case.threshold).sum(0)
    features = _libxc_clamped_features(case, inp)
    e, d_rho, d_sigma, d_tau = _ours(case.ours, *features)
    rho = rho_s.sum(0)
    partial = (rho_s > 2 * case.threshold).all(0)
    full = (rho_s == 0).any(0) & (rho > 2 * case.threshold)
    majority = np.where(rho_s[0] > 0, 0, 1)
    idx = np.arange(rho.size)
    # vsigma columns of the majority spin: (aa, ab) or (ab, bb)
    sigma_cols = np.stack([majority == 0, np.ones_like(partial), majority == 1], axis=1)
    rtol_e = np.where(rho < LOW_DENSITY, RTOL_LOW_DENSITY, RTOL)
    rtol_v = _potential_rtol(case, *features)
    col = lambda x: x[:, None]  # noqa: E731
    checks = {
        "e": (e, e_ref, rho ** (4 / 3), partial | full, rtol_e),
        "vrho": (d_rho.T, vrho, col(rho ** (1 / 3)), col(partial), col(rtol_v)),
        "vsigma": (d_sigma.T, vsigma, col(rho ** (-4 / 3)), col(partial), col(rtol_v)),
        "vtau": (d_tau.T, vtau, col(rho ** (-1 / 3)), col(partial), col(rtol_v)),
        "vrho_majority": (d_rho[majority, idx], vrho[idx, majority], rho ** (1 / 3), full, rtol_v),
        "vsigma_majority": (d_sigma.T, vsigma, col(rho ** (-4 / 3)), col(full) & sigma_cols,
                            col(rtol_v)),
        "vtau_majority": (d_tau[majority, idx], vtau[idx, majority], rho ** (-1 / 3), full, rtol_v),
    }
    return {k: _errors(*v) for k, v in checks.items() if v[3].any()}


def _assert_all(errors: dict, label: str):
    bad = {k: v for k, v in errors.items() if not v[0]}
    assert not bad, f"{label}: (ok, max rel, max err/scale) = {bad}"


# --------------------------------------------------------------------------------------------
# Against libxc
# --------------------------------------------------------------------------------------------

SEEDS = {"closed": 1, "open": 2, "full": 3}


@pytest.mark.parametrize("kind", ["closed", "open", "full"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_random_points_against_libxc(case, kind):
    _assert_all(compare_spin_resolved(case, random_points(kind, CHUNK, SEEDS[kind])),
                f"{case.id} {kind}")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["closed", "open", "full"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_large_random_sweep_against_libxc(case, kind):
    """100k points per case; same policy and tolerances as the default test."""
    inp = random_points(kind, 50 * CHUNK, 100 + SEEDS[kind])
    _assert_all(compare_spin_resolved(case, inp), f"{case.id} {kind}")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_closed_shell_libxc_path_and_chain_rule(case):
    """libxc's spin=0 path (total rho, sigma, tau) against the restricted chain rule.

    For equal halves ``d/drho = (d/drho_a + d/drho_b) / 2``, ``d/dsigma = (d/dsigma_aa +
    d/dsigma_ab + d/dsigma_bb) / 4``, ``d/dtau = (d/dtau_a + d/dtau_b) / 2``. Compared where the
    spin-0 clamps (on the totals) are inactive.
    """
    total = 2 * random_points("closed", CHUNK, 4)[0]  # rho, grad, tau of the total density
    rho, sigma, tau = total[0], np.sum(total[1:4] ** 2, axis=0), total[4]
    exc, vrho, vsigma, vtau = _libxc(case.libxc, total, spin=0)
    halves = (np.stack([rho, rho]) / 2, np.stack([sigma] * 3) / 4, np.stack([tau, tau]) / 2)
    e, d_rho, d_sigma, d_tau = _ours(case.ours, *halves)
    mask = (rho / 2 > 2 * case.threshold) & (sigma >= case.threshold ** (8 / 3))
    mask &= tau >= TAU_FLOOR
    rtol_v = _potential_rtol(case, *halves)
    rtol_e = np.where(rho < LOW_DENSITY, RTOL_LOW_DENSITY, RTOL)
    errors = {"e": _errors(e, exc * rho, rho ** (4 / 3), mask, rtol_e),
              "vrho": _errors(d_rho.sum(0) / 2, vrho, rho ** (1 / 3), mask, rtol_v),
              "vsigma": _errors(d_sigma.sum(0) / 4, vsigma, rho ** (-4 / 3), mask, rtol_v),
              "vtau": _errors(d_tau.sum(0) / 2, vtau, rho ** (-1 / 3), mask, rtol_v)}
    _assert_all(errors, case.id)


@pytest.mark.parametrize("name", ["water", "oh"])
@pytest.mark.parametrize("xc", ["r2scan", "scan"])
def test_molecular_grid_against_libxc_compound(name, xc):
    """r2SCAN / SCAN (X + C) on the PySCF grid of a guess density: points, potentials, energy."""
    mol, grids, ao, dm = molecule_density(name)
    x_case, c_case = [c for c in CASES if c.id in (f"{xc}_x", f"{xc}_c")]
    dms = dm if dm.ndim == 3 else np.stack([dm / 2, dm / 2])
    inp = np.stack([numint.eval_rho(mol, ao, d, xctype="MGGA", with_lapl=False) for d in dms])
    rho_s, sigma, tau = inp[:, 0], _sigma(inp[:, 1:4]), inp[:, 4]
    # A positive semidefinite density matrix gives tau >= tau_W (libxc would clamp sigma
    # otherwise); allow rounding.
    assert np.all(sigma[[0, 2]] <= 8 * rho_s * tau * (1 + 1e-12) + 1e-300)
    exc, vrho, vsigma, vtau = _libxc(xc, inp, spin=1)
    ex, *dx = _ours(x_case.ours, rho_s, sigma, tau)
    ec, *dc = _ours(c_case.ours, rho_s, sigma, tau)
    e = ex + ec
    d_rho, d_sigma, d_tau = (a + b for a, b in zip(dx, dc))
    rho = rho_s.sum(0)
    mask = (rho_s > 1e5 * 1e-11).all(0)  # above r2SCAN exchange's 1e-11: clamps inactive
    assert mask.mean() > 0.5
    rtol = np.maximum(_potential_rtol(x_case, rho_s, sigma, tau),
                      _potential_rtol(c_case, rho_s, sigma, tau))[:, None]
    col = lambda x: x[:, None]  # noqa: E731
    errors = {"e": _errors(e, exc * rho, rho ** (4 / 3), mask, RTOL),
              "vrho": _errors(d_rho.T, vrho, col(rho ** (1 / 3)), col(mask), rtol),
              "vsigma": _errors(d_sigma.T, vsigma, col(rho ** (-4 / 3)), col(mask), rtol),
              "vtau": _errors(d_tau.T, vtau, col(rho ** (-1 / 3)), col(mask), rtol)}
    _assert_all(errors, f"{xc} {name}")
    # Integrated energy over all points: the excluded density tail (rho_s < 1e-6) contributes
    # below 1e-8 hartree, where libxc's thresholds and ours differ.
    w = grids.weights
    np.testing.assert_allclose(np.sum(w * e), np.sum(w * exc * rho), rtol=1e-10, atol=1e-8)


# --------------------------------------------------------------------------------------------
# Low density: 40-digit mpmath evaluation of the papers' correlation formulas
# --------------------------------------------------------------------------------------------

def _mp_correlation(mpmath, r2scan: bool, rho_a, rho_b, sigma, tau):
    """eps_c * rho of SCAN / r2SCAN correlation in mpmath (total sigma and tau), module formulas."""
    mp, mpf = mpmath.mp, mpmath.mpf
    p_ = mgga.R2SCAN_C_PARAMS if r2scan else mgga.SCAN_C_PARAMS
    c = {k: (mpf(v) if isinstance(v, float) else v) for k, v in p_.items()}
    pw = lda.PW92_MOD_PARAMS

    def g(rs, fit):
        a, a1, b1, b2, b3, b4, pp = (mpf(x) for x in fit)
        q = b1 * mp.sqrt(rs) + b2 * rs + b3 * rs**1.5 + b4 * rs ** (pp + 1)
        return -2 * a * (1 + a1 * rs) * mp.log(1 + 1 / (2 * a * q))

    n = rho_a + rho_b
    z = (rho_a - rho_b) / n
    third = mpf(1) / 3
    fz = ((1 + z) ** (4 * third) + (1 - z) ** (4 * third) - 2) / (2 ** (4 * third) - 2)

    def pw92(rs):
        e0, e1, ma = g(rs, pw["para"]), g(rs, pw["ferro"]), g(rs, pw["alpha"])
        return e0 - ma * fz * (1 - z**4) / mpf(pw["fpp0"]) + (e1 - e0) * fz * z**4

    def lda0(rs):
        return -c["b1c"] / (1 + c["b2c"] * mp.sqrt(rs) + c["b3c"] * rs)

    kf2 = (3 * mp.pi**2) ** (2 * third)
    rs = (3 / (4 * mp.pi * n)) ** third
    p = sigma / (4 * kf2 * n ** (8 * third))
    phi = ((1 + z) ** (2 * third) + (1 - z) ** (2 * third)) / 2
    d_s = ((1 + z) ** (5 * third) + (1 - z) ** (5 * third)) / 2
    d_x = ((1 + z) ** (4 * third) + (1 - z) ** (4 * third)) / 2
    g_c = (1 - c["gc"] * (d_x - 1)) * (1 - z**12)
    tau_unif, tau_w = mpf(3) / 10 * kf2 * n ** (5 * third), sigma / (8 * n)
    gamma = (1 - mp.log(2)) / mp.pi**2
    w1 = mp.exp(-pw92(rs) / (gamma * phi**3)) - 1
    beta = c["beta"] * (1 + c["beta_a"] * rs) / (1 + c["beta_b"] * rs)
    y = beta / (gamma * w1) * (3 * mp.pi**2 / 16) ** (2 * third) * p / (phi**2 * rs)
    if r2scan:
        eta, dp2, fc = c["eta"], c["dp2"], [mpf(x) for x in c["fc"]]
        diff = lambda r: lda0(r) * g_c - pw92(r)  # noqa: E731
        bracket = 20 * rs * mp.diff(diff, rs) - 45 * eta * diff(rs)
        slope = sum(i * fc[i] for i in range(1, 8))
        y -= slope / (27 * gamma * d_s * phi**3 * w1) * bracket * p * mp.exp(-p**2 / dp2**4)
        alpha = (tau - tau_w) / (tau_unif * d_s + eta * tau_w)
        f = (sum(fc[i] * alpha**i for i in range(8)) if alpha <= 2.5
             else -c["dc"] * mp.exp(c["c2c"] / (1 - alpha)))
    else:
        alpha = (tau - tau_w) / (tau_unif * d_s)
        f = (mp.exp(-c["c1c"] * alpha / (1 - alpha)) if alpha < 1
             else -c["dc"] * mp.exp(c["c2c"] / (1 - alpha)) if alpha > 1 else 0)
    e1 = pw92(rs) + gamma * phi**3 * mp.log(1 + w1 * (1 - (1 + 4 * y) ** (-mpf(1) / 4)))
    w0 = mp.exp(-lda0(rs) / c["b1c"]) - 1
    g_inf = (1 + 4 * c["chi_inf"] * p) ** (-mpf(1) / 4)
    e0 = (lda0(rs) + c["b1c"] * mp.log(1 + w0 * (1 - g_inf))) * g_c
    return n * (e1 + f * (e0 - e1))


@pytest.mark.parametrize("case", [CASES[1], CASES[3]], ids=["r2scan_c", "scan_c"])
def test_low_density_correlation_against_mpmath(case):
    """At rho = 1e-12..1e-8 (where libxc loses digits) ours matches 40-digit arithmetic.

    Energy to 1e-13 and d e / d rho_a (mpmath numerical derivative at 40 digits) to 1e-12.
    """
    # the one oracle in this file that needs mpmath (installed with sympy)
    mpmath = pytest.importorskip("mpmath", reason="the 40-digit oracle is evaluated with mpmath")
    points = np.array([  # rho_a, rho_b, s (total), alpha (total)
        [7e-13, 3e-13, 0.5, 0.3], [4e-12, 4e-12, 3.0, 2.0], [2e-11, 1e-13, 0.05, 6.0],
        [3e-10, 2e-10, 12.0, 1.2], [5e-9, 1e-9, 1.5, 0.9], [2e-9, 2e-9, 0.0, 0.0],
    ])
    mpmath.mp.dps = 40
    for rho_a, rho_b, s, alpha in points:
        n = rho_a + rho_b
        z = (rho_a - rho_b) / n
        d_s = ((1 + z) ** (5 / 3) + (1 - z) ** (5 / 3)) / 2
        sigma = (2 * (3 * np.pi**2) ** (1 / 3) * n ** (4 / 3) * s) ** 2
        tau = sigma / (8 * n) + alpha * _TAU_UNIF * n ** (5 / 3) * d_s
        # total sigma and tau carried by sigma_aa and tau_a (the functional sees only totals)
        e, d_rho, _, _ = _ours(case.ours, np.array([[rho_a], [rho_b]]),
                               np.array([[sigma], [0.0], [0.0]]), np.array([[tau], [0.0]]))
        mp_args = [mpmath.mpf(float(v)) for v in (rho_a, rho_b, sigma, tau)]
        r2 = case.id == "r2scan_c"
        e_mp = _mp_correlation(mpmath, r2, *mp_args)
        v_mp = mpmath.diff(lambda ra: _mp_correlation(mpmath, r2, ra, *mp_args[1:]), mp_args[0])
        np.testing.assert_allclose(e[0], float(e_mp), rtol=1e-13)
        # vrho of SCAN at s = 12, alpha = 1.2 is mildly ill-conditioned (2.4e-13, module doc)
        np.testing.assert_allclose(d_rho[0, 0], float(v_mp), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Physics identities and parameters
# --------------------------------------------------------------------------------------------

def test_uniform_gas_limit_is_lsda():
    """sigma = 0 and alpha = 1: SCAN/r2SCAN exchange is Slater's, correlation is PW92.

    r2SCAN's exchange polynomial has f(1) = sum_i c_i = 1e-12 instead of 0: rtol 1e-12.
    """
    rho = np.stack([10.0 ** np.linspace(-8, 3, 12), 10.0 ** np.linspace(3, -8, 12)])
    tau = _TAU_UNIF_SPIN * rho ** (5 / 3)  # alpha = 1 in every channel and for the total
    sigma = np.zeros((3, 12))
    f = Features(rho=jnp.asarray(rho), sigma=jnp.asarray(sigma), tau=jnp.asarray(tau),
                 lapl=jnp.zeros((2, 12)))
    slater = lda.slater_x(None, f)
    pw92 = lda.pw92_c(lda.PW92_MOD_PARAMS, f)
    for case, ref in zip(CASES, [slater, pw92, slater, pw92]):
        np.testing.assert_allclose(_ours(case.ours, rho, sigma, tau)[0], ref, rtol=1e-12, atol=0)


@pytest.mark.slow  # default-suite budget (2026-11-28); the physics is covered by cheaper default tests
def test_params_override_and_gradient_by_finite_differences():
    """Partial params dicts override the defaults; d E / d param from jax.grad matches FD."""
    # 14 points: the shapes of the (eager) edge test below, so eager primitives compile once
    inp = random_points("open", _edge_points().shape[1], 5)
    rho, sigma, tau = (jnp.asarray(x) for x in _libxc_clamped_features(CASES[1], inp))
    f = Features(rho=rho, sigma=sigma, tau=tau, lapl=jnp.zeros_like(rho))
    np.testing.assert_array_equal(mgga.r2scan_c({}, f), mgga.r2scan_c(None, f))
    with pytest.raises(ValueError, match="unknown parameters"):
        mgga.r2scan_x({"kappa": 0.8}, f)
    for fn, key, x0 in [(mgga.r2scan_c, "eta", 1e-3), (mgga.scan_x, "k1", 0.065)]:
        energy = lambda x, fn=fn, key=key: jnp.sum(fn({key: x}, f))  # noqa: E731
        h = 1e-4 * x0
        fd = (energy(x0 + h) - energy(x0 - h)) / (2 * h)
        # central FD: O(h^2) truncation (~1e-8 relative) plus rounding eps*E/h
        np.testing.assert_allclose(jax.grad(energy)(x0), fd, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Safety: zero density, zero gradient, zero tau, full polarisation
# --------------------------------------------------------------------------------------------

def _edge_points() -> np.ndarray:
    """(7, n) rows rho_a, rho_b, sigma_aa, sigma_ab, sigma_bb, tau_a, tau_b at the edges."""
    tu = lambda r: _TAU_UNIF_SPIN * r ** (5 / 3)  # noqa: E731
    tw = lambda s, r: s / (8 * r)  # noqa: E731
    columns = [
        (0, 0, 0, 0, 0, 0, 0),  # empty space
        (0.3, 0.3, 0, 0, 0, 0, 0),  # sigma = tau = 0
        (0.3, 0.3, 0.1, 0.1, 0.1, 0, 0),  # tau = 0 < tau_W (unphysical alpha < 0)
        (0.3, 0.3, 0, 0, 0, tu(0.3), tu(0.3)),  # uniform gas: p = 0, alpha = 1
        (0.3, 0.3, 0.1, 0.1, 0.1, tw(0.1, 0.3), tw(0.1, 0.3)),  # one orbital: alpha = 0
        (0.3, 0.3, 0.1, -0.05, 0.1, tw(0.1, 0.3) + tu(0.3), tw(0.1, 0.3) + tu(0.3)),  # alpha = 1
        (0.3, 0.3, 0.1, 0.1, 0.1, tw(0.1, 0.3) + 2.5 * tu(0.3), tw(0.1, 0.3) + 2.5 * tu(0.3)),
        (0.5, 0, 0.2, 0, 0, 0.3, 0),  # fully polarised
        (0.5, 0, 0, 0, 0, 0, 0),  # fully polarised, sigma = tau = 0
        (0.5, 0, 0.2, 0, 0, tw(0.2, 0.5), 0),  # hydrogen-like: one orbital, polarised
        (0, 0.5, 0, 0, 0.2, 0, 0.4),  # fully polarised the other way
        (1e-30, 0, 0, 0, 0, 0, 0),  # below the density threshold
        (1e-12, 1e-12, 1e-10, 1e-10, 1e-10, 1e-3, 1e-3),  # density tail: huge s and alpha
        (1e4, 1e4, 0, 0, 0, 1e-30, 1e-30),  # high density, tau ~ 0
    ]
    return np.asarray(columns, dtype=np.float64).T


@pytest.mark.slow  # default-suite budget (2026-11-28); the physics is covered by cheaper default tests
def test_values_gradients_hessians_finite_at_edges():
    """Energy, gradient and Hessian (all 7 features of each point) finite for every functional.

    Eager rather than jitted: the Hessians of four functionals would cost ~40 s of XLA compile
    time for one evaluation; eagerly the primitives compile once and are shared.
    """
    x = jnp.asarray(_edge_points())  # (7, n)
    n = x.shape[1]
    for case in CASES:
        def energy(v, fn=case.ours):
            return jnp.sum(fn(None, Features(rho=v[0:2], sigma=v[2:5], tau=v[5:7],
                                             lapl=jnp.zeros((2, n)))))

        e = case.ours(None, Features(rho=x[0:2], sigma=x[2:5], tau=x[5:7], lapl=jnp.zeros((2, n))))
        g = jax.grad(energy)(x)
        h = jax.hessian(energy)(x)  # (7, n, 7, n); points are independent
        for name, arr, point_axis in (("energy", e, 0), ("gradient", g, 1), ("hessian", h, 1)):
            arr = np.asarray(arr)
            other_axes = tuple(i for i in range(arr.ndim) if i != point_axis)
            bad = ~np.isfinite(arr).all(axis=other_axes)
            assert not bad.any(), f"{case.id}: non-finite {name} at points {np.flatnonzero(bad)}"
        assert e[0] == 0.0 and e[11] == 0.0  # empty space, below the threshold
        np.testing.assert_array_equal(g[:, 0], 0.0)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_fully_polarised_is_the_limit_of_a_vanishing_spin(case):
    """e(rho_a, rho_b -> 0) -> e(rho_a, 0): the masked and clamped branches are continuous."""
    base = np.array([[0.5], [0.0]]), np.array([[0.2], [0.0], [0.0]]), np.array([[0.3], [0.0]])
    tiny = base[0] + np.array([[0.0], [1e-13]]), base[1], base[2] + np.array([[0.0], [1e-20]])
    # correlation changes through phi(zeta) ~ (1 - zeta)^(2/3) = (4e-13)^(2/3) ~ 5e-9
    np.testing.assert_allclose(_ours(case.ours, *tiny)[0], _ours(case.ours, *base)[0], rtol=1e-7)
