"""libxc (through PySCF) as the oracle for the semilocal functionals: test points and comparisons.

Threshold policy: libxc returns zero where the density is below its per-functional
``dens_threshold`` (measured: 1e-15 for LDA_X, B88, PBE_X (per spin), the LDA correlations and
P86; 1e-14 for ITYH (per spin) and LYP; 1e-12 for PBE_C), and before evaluating it *clamps* inputs:
a spin density below the threshold is raised to it, sigma_ss (sigma for spin 0) is raised to
``threshold^(8/3)``. Exchange functionals then drop a spin channel at or below the threshold.

* Single libxc functionals (``Case.component``): the threshold is *reproduced* -- we evaluate ours
  at libxc's clamped input (sigma always; the spin densities for correlation functionals), take
  libxc's energy per volume as exc times its clamped density, and compare wherever the total
  density exceeds twice the threshold. The clamp matters: at
  rho = 1e-12 the sigma floor of PBE correlation alone is a reduced gradient s = 0.16. At fully
  polarised points the energy and the majority-spin potentials (vrho_maj, vsigma_maj, vsigma_ab)
  are compared; the minority-spin potential there is a threshold artefact in libxc (and
  mathematically infinite for PBE correlation, whose phi(zeta) has an infinite zeta-derivative).
* Mixtures (different thresholds per component, which no single clamp reproduces): compared where
  every spin density exceeds 1e5 times the largest threshold, where the clamps change nothing
  (sigma floor below s^2 = 1e-13), and never at fully polarised points.

Tolerance: ``|ours - libxc| <= 1e-10 |libxc| + 1e-12 scale`` with the natural magnitude of the
quantity at that point, ``scale = rho^{4/3} (1 + s^2)`` (energy per volume; GGA corrections grow
like s^2 before they saturate), ``rho^{1/3} (1 + s^2)`` (vrho), ``rho^{-4/3}`` (vsigma), with rho,
s of the total density. The second term only matters where the value is a near-cancellation:
PBE correlation at large reduced gradient (eps_unif + H -> 0; libxc evaluates the textbook sum and
loses up to 1e-8 relative there, ours uses an exact cancellation-free rewrite, see
``test_pbe_correlation_large_gradient_against_mpmath``), the potentials of the attenuated B88 at
low density (libxc 1e-8 relative on vsigma; ours matches mpmath to 1e-14), LYP near full
polarisation (where it vanishes identically), mixtures whose components' vsigma cancel (B88 and
P86) and libxc's own threshold artefacts.

One exception to 1e-10: libxc's PW92 (LDA_C_PW, LDA_C_PW_MOD) loses precision at low density
(its ln(1 + 1/x) with 1/x ~ 1e-6 at rho ~ 1e-12: 1e-10 relative at rho = 1e-12, 2e-9 at 4e-15);
those two cases use rtol 1e-8, and ``test_pw92_low_density_against_mpmath`` pins ours to 1e-13
there.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from pyscf.dft import libxc

from functionals.features import unrestricted_features
from functionals.functional import Functional

RTOL = 1e-10
SCALED_ATOL = 1e-12


@dataclass(frozen=True)
class Case:
    """One of our functionals and its libxc counterpart."""

    id: str
    ours: str | object  # registry name, or a zero-argument builder
    libxc: str
    threshold: float  # libxc dens_threshold (largest over components)
    omega: float | None = None
    component: bool = True  # a single libxc functional: thresholds reproduced (see module doc)
    rtol: float = RTOL

    @property
    def scaled_atol(self) -> float:
        # Mixtures: each component is within 1e-10 of its own magnitude, and components can cancel
        # (vsigma of B88 against P86), so the sum gets 1e-11 of the natural scale.
        return SCALED_ATOL if self.component else 10 * SCALED_ATOL
    exchange: bool = False  # libxc drops spin channels at its threshold instead of clamping them

    @property
    def min_density(self) -> float:
        return 2.0 * self.threshold if self.component else 1e5 * self.threshold


def kf_coefficient(spin_resolved: bool) -> float:
    return (6.0 * np.pi**2) ** (1 / 3) if spin_resolved else (3.0 * np.pi**2) ** (1 / 3)


def _gradient(rng, rho, s, spin_resolved):
    """Random-direction gradient vectors (3, n) with reduced gradient s for density rho."""
    magnitude = 2.0 * kf_coefficient(spin_resolved) * rho ** (4 / 3) * s
    direction = rng.normal(size=(3,) + rho.shape)
    return direction / np.linalg.norm(direction, axis=0) * magnitude


def random_points(spin: int, n: int = 1000, seed: int = 0) -> np.ndarray:
    """PySCF eval_xc input: rho log-uniform in [1e-12, 1e4], reduced gradients in [0, 100].

    s is drawn as 100 u^3 (most points at chemical s < 3, some up to 100) and 5% of points have
    s = 0. For spin=1, zeta is uniform in [-1, 1] and 10% of points are fully polarised (half
    each way); per-spin gradients have independent directions (sigma_ab of both signs).
    Returns (4, n) for spin 0 and (2, 4, n) for spin 1.
    """
    rng = np.random.default_rng(seed)
    rho = 10.0 ** rng.uniform(-12, 4, n)

    def reduced(size):
        s = 100.0 * rng.uniform(0, 1, size) ** 3
        s[rng.uniform(0, 1, size) < 0.05] = 0.0
        return s

    if spin == 0:
        return np.concatenate([rho[None], _gradient(rng, rho, reduced(n), False)])
    zeta = rng.uniform(-1, 1, n)
    polarised = rng.uniform(0, 1, n) < 0.1
    zeta[polarised] = np.where(rng.uniform(0, 1, polarised.sum()) < 0.5, 1.0, -1.0)
    rho_a, rho_b = rho * (1 + zeta) / 2, rho * (1 - zeta) / 2
    rho_b[zeta == 1.0] = 0.0
    rho_a[zeta == -1.0] = 0.0
    blocks = [np.concatenate([r[None], _gradient(rng, r, reduced(n), True)]) for r in (rho_a, rho_b)]
    return np.stack(blocks)


def build(case: Case) -> Functional:
    from functionals.registry import get_functional

    return get_functional(case.ours) if isinstance(case.ours, str) else case.ours()


CHUNK = 4096  # points per jitted call: one compilation per functional for every test set


@functools.lru_cache(maxsize=None)
def _jitted(energy_density):
    """jit(params, rho (2,CHUNK), sigma (3,CHUNK)) -> (e, de/drho, de/dsigma) pointwise."""

    def evaluate(params, rho, sigma):
        e, vjp = jax.vjp(lambda r, s: energy_density(params, unrestricted_features(r, s)),
                         rho, sigma)
        v_rho, v_sigma = vjp(jnp.ones_like(e))  # each e_g depends on point g only
        return e, v_rho, v_sigma

    return jax.jit(evaluate)


def elementary_terms(functional: Functional, coefficient: float = 1.0):
    """Flatten a mixture into (coefficient, elementary Functional) pairs."""
    if not functional.components:
        return [(coefficient, functional)]
    return [t for c, f in functional.components for t in elementary_terms(f, coefficient * c)]


@functools.lru_cache(maxsize=None)
def _built(case: Case) -> Functional:
    return build(case)


def evaluate_spin_resolved(case: Case, rho: np.ndarray, sigma: np.ndarray):
    """Our e (n,), d e/d rho_s (2, n), d e/d sigma (3, n), in fixed-size zero-padded chunks.

    A mixture is evaluated as the weighted sum of its elementary functionals, each compiled once
    for the whole session (the mixture's own energy_density equals that sum:
    test_mixture_energy_density_is_the_weighted_sum_of_its_components).
    """
    n = rho.shape[-1]
    pad = -n % CHUNK
    rho = np.pad(rho, ((0, 0), (0, pad)))
    sigma = np.pad(sigma, ((0, 0), (0, pad)))
    total = [np.zeros(n), np.zeros((2, n)), np.zeros((3, n))]
    for coefficient, functional in elementary_terms(_built(case)):
        evaluate = _jitted(functional.energy_density)
        outs = [evaluate(functional.params, rho[:, i:i + CHUNK], sigma[:, i:i + CHUNK])
                for i in range(0, n + pad, CHUNK)]
        for k in range(3):
            total[k] = total[k] + coefficient * np.concatenate(
                [np.asarray(o[k]) for o in outs], axis=-1)[..., :n]
    return tuple(total)


@functools.lru_cache(maxsize=None)
def _jitted_closed_shell(functional: Functional):
    """jit(rho (CHUNK,), sigma (CHUNK,)) -> (e, de/drho, de/dsigma) of the total density, through
    the closed-shell fast path (RestrictedFeatures)."""
    from functionals.features import closed_shell_features

    def evaluate(rho, sigma):
        e, vjp = jax.vjp(lambda r, s: functional(closed_shell_features(r, s)), rho, sigma)
        v_rho, v_sigma = vjp(jnp.ones_like(e))
        return e, v_rho, v_sigma

    return jax.jit(evaluate)


def evaluate_closed_shell(case: Case, rho: np.ndarray, sigma: np.ndarray):
    """Our e, d e/d rho, d e/d sigma (each (n,)) of total-density inputs via RestrictedFeatures."""
    n = rho.shape[-1]
    pad = -n % CHUNK
    rho = np.pad(rho, (0, pad))
    sigma = np.pad(sigma, (0, pad))
    total = [np.zeros(n), np.zeros(n), np.zeros(n)]
    for coefficient, functional in elementary_terms(_built(case)):
        evaluate = _jitted_closed_shell(functional)
        outs = [evaluate(rho[i:i + CHUNK], sigma[i:i + CHUNK]) for i in range(0, n + pad, CHUNK)]
        for k in range(3):
            total[k] = total[k] + coefficient * np.concatenate(
                [np.asarray(o[k]) for o in outs])[:n]
    return tuple(total)


def ours_on(case: Case, libxc_input: np.ndarray, spin: int, clamp: bool = False,
            closed_shell: bool = False):
    """Our (e, vrho, vsigma) in libxc's layout: spin 0 (n,), (n,), (n,); spin 1 (n,), (n,2), (n,3).

    Closed-shell input is evaluated as two equal spin halves, and the total-density derivatives
    follow by the chain rule ``d/drho = (d/drho_a + d/drho_b)/2``,
    ``d/dsigma = (d/dsigma_aa + d/dsigma_ab + d/dsigma_bb)/4`` (what ``restricted_features``
    gives under ``jax.grad``; tested in test_features), or with ``closed_shell`` through the
    closed-shell fast path (RestrictedFeatures of the totals). With ``clamp``, inputs are clamped as
    libxc does internally (module docstring): sigma_ss up to threshold^(8/3) and, for
    correlation functionals, spin densities up to the threshold.
    """
    sigma_floor = case.threshold ** (8 / 3)
    if spin == 0:
        rho = libxc_input[0]
        sigma = np.einsum("xg,xg->g", libxc_input[1:4], libxc_input[1:4])
        if clamp:
            sigma = np.maximum(sigma, sigma_floor)
        if closed_shell:
            return evaluate_closed_shell(case, rho, sigma)
        e, vr, vs = evaluate_spin_resolved(case, np.stack([rho / 2] * 2), np.stack([sigma / 4] * 3))
        return e, vr.sum(0) / 2, vs.sum(0) / 4
    rho = libxc_input[:, 0].copy()
    g = libxc_input[:, 1:4]
    sigma = np.stack([np.einsum("xg,xg->g", g[0], g[0]), np.einsum("xg,xg->g", g[0], g[1]),
                      np.einsum("xg,xg->g", g[1], g[1])])
    if clamp:
        sigma[0] = np.maximum(sigma[0], sigma_floor)
        sigma[2] = np.maximum(sigma[2], sigma_floor)
        if not case.exchange:
            rho = np.maximum(rho, case.threshold)
    e, vr, vs = evaluate_spin_resolved(case, rho, sigma)
    return e, vr.T, vs.T


def libxc_on(case: Case, libxc_input: np.ndarray, spin: int):
    """libxc's (e = rho * exc, vrho, vsigma) in its layout (vsigma None for LDA)."""
    exc, vxc = libxc.eval_xc(case.libxc, libxc_input, spin=spin, deriv=1, omega=case.omega)[:2]
    if spin == 0:
        rho = libxc_input if libxc_input.ndim == 1 else libxc_input[0]
    else:
        rho_s = libxc_input if libxc_input.ndim == 2 else libxc_input[:, 0]
        # exc is per particle of libxc's clamped density: e = exc * sum_s max(rho_s, threshold)
        rho = np.maximum(rho_s, case.threshold).sum(0) if case.component else rho_s.sum(0)
    v_sigma = vxc[1] if len(vxc) > 1 else None
    return exc * rho, vxc[0], v_sigma


@dataclass
class Errors:
    """Max relative error (where |ref| > 1e-3 scale), max |error|/scale, and pass/fail."""

    relative: float
    scaled: float
    ok: bool
    worst: str


def compare(case: Case, libxc_input: np.ndarray, spin: int,
            closed_shell: bool = False) -> dict[str, Errors]:
    """Compare e, vrho, vsigma with libxc under the policy in the module docstring.

    ``closed_shell`` (spin 0 only): evaluate ours through RestrictedFeatures (the fast path)
    instead of two equal spin halves.
    """
    xc_type = libxc.xc_type(case.libxc)
    if xc_type == "LDA":
        inp = libxc_input[..., :1, :] if spin else libxc_input[:1]
        inp_lda = inp[:, 0] if spin else inp[0]
        ref = libxc_on(case, inp_lda, spin)
        zero_gradient = np.zeros_like(libxc_input)
        zero_gradient[..., 0, :] = libxc_input[..., 0, :]
        libxc_input = zero_gradient
    else:
        ref = libxc_on(case, libxc_input, spin)
    floor = case.min_density
    if spin == 0:
        rho = libxc_input[0]
        mask = rho / 2 > floor
        full = np.zeros_like(mask)
        ours = ours_on(case, libxc_input, 0, clamp=case.component, closed_shell=closed_shell)
        ours_full = ours
    else:
        rho_s = libxc_input[:, 0]
        rho = rho_s.sum(0)
        full = (rho_s == 0).any(0) & (rho > 2 * floor)
        mask = (rho_s > floor).all(0)
        ours = ours_on(case, libxc_input, 1, clamp=case.component)
        ours_full = ours
    if spin == 0:
        sigma_total = np.einsum("xg,xg->g", libxc_input[1:4], libxc_input[1:4])
    else:
        g = libxc_input[:, 1:4].sum(0)
        sigma_total = np.einsum("xg,xg->g", g, g)
    s2 = sigma_total / (4 * kf_coefficient(False) ** 2 * rho ** (8 / 3))
    scales = {"e": rho ** (4 / 3) * (1 + s2), "vrho": rho ** (1 / 3) * (1 + s2),
              "vsigma": rho ** (-4 / 3)}
    out = {}
    for key, ours_k, ours_full_k, ref_k in zip(("e", "vrho", "vsigma"), ours,
                                               ours_full or (None,) * 3, ref):
        if ref_k is None:
            continue
        ref_k = np.asarray(ref_k)
        scale = scales[key] if ref_k.ndim == 1 else scales[key][:, None]
        errs, rels, scaled, labels = [], [], [], []
        sel = [(mask, ours_k, None)]
        if spin == 1 and case.component and full.any():
            sel.append((full, ours_full_k, "full"))
        for m, o, tag in sel:
            o = np.asarray(o)[m]
            r = ref_k[m]
            d = np.abs(o - r)
            sc = np.broadcast_to(scale[m], d.shape)
            if tag == "full" and r.ndim == 2:
                # majority-spin components only (see module docstring)
                maj_a = libxc_input[1, 0][m] == 0  # beta empty: alpha is the majority
                if key == "vrho":
                    cols = np.where(maj_a, 0, 1)
                    d, r, sc = (x[np.arange(len(cols)), cols] for x in (d, r, sc))
                else:  # vsigma: (aa, ab) if alpha majority, (ab, bb) otherwise
                    keep = np.stack([maj_a, np.ones_like(maj_a), ~maj_a], axis=1)
                    d, r, sc = d[keep], r[keep], sc[keep]
            d, r, sc = np.ravel(d), np.ravel(r), np.ravel(sc)
            errs.append(d <= case.rtol * np.abs(r) + case.scaled_atol * sc)
            meaningful = np.abs(r) > 1e-3 * sc
            rels.append(np.where(meaningful, d / np.where(meaningful, np.abs(r), 1.0), 0.0))
            scaled.append(d / sc)
            labels.append(tag or "partial")
        ok = all(e.all() for e in errs)
        rel = max((x.max() if x.size else 0.0) for x in rels)
        sca = max((x.max() if x.size else 0.0) for x in scaled)
        bad = [f"{lab}: {np.count_nonzero(~e)} points" for e, lab in zip(errs, labels) if not e.all()]
        out[key] = Errors(rel, sca, ok, "; ".join(bad))
    return out
