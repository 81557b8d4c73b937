"""`dftjax bench functionals`: energy density + potentials per million points against libxc.

For each functional the same random closed-shell (or spin-polarised) points are evaluated by
dftjax (jitted :func:`functionals.energy_and_potentials`: e and its pointwise derivatives vrho,
vsigma, vtau by ``jax.vjp``, chunk by chunk) and by libxc through ``pyscf.dft.libxc.eval_xc(..., deriv=1)``. Closed shells (spin=0) take
the fast path, :class:`~functionals.features.RestrictedFeatures` of the total density, so the
potentials are libxc's spin=0 ``vrho, vsigma, vtau`` of the total density. Reported: cold time
(compile + run), warm time (median), libxc time, ratio warm / libxc, and the largest relative
difference of the energy density (a guard that both computed the same thing).
"""

from __future__ import annotations

import dataclasses
import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np

from dftjax.bench._timing import time_cold_warm, time_reference
from functionals import energy_and_potentials, from_libxc_input, get_functional

FUNCTIONALS = ("lda,vwn", "pbe", "b3lyp", "r2scan")


@dataclasses.dataclass(frozen=True)
class FunctionalTiming:
    functional: str
    spin: int
    n_points: int
    cold_s: float
    warm_s: float
    libxc_s: float
    max_rel_diff: float

    @property
    def ratio(self) -> float:
        return self.warm_s / self.libxc_s


def _libxc_input(n_points: int, spin: int, seed: int = 0) -> np.ndarray:
    """PySCF eval_xc input rows (rho, dx, dy, dz, lapl, tau) for physical random densities."""
    rng = np.random.default_rng(seed)

    def one(scale):
        rho = scale * 10 ** rng.uniform(-4, 2, n_points)
        grad = rng.normal(size=(3, n_points)) * rho ** (4 / 3) * rng.uniform(0, 2, n_points)
        tau_w = np.sum(grad**2, axis=0) / (8 * rho)
        tau = tau_w + rho ** (5 / 3) * rng.uniform(0.1, 3, n_points)
        return np.stack([rho, *grad, np.zeros(n_points), tau])

    return one(1.0) if spin == 0 else np.stack([one(0.5), one(0.3)])


def run(functionals=FUNCTIONALS, n_points: int = 1_000_000, spins=(0, 1), repeats: int = 3, progress=True):
    from pyscf.dft import libxc

    results = []
    for spin in spins:
        rho = _libxc_input(n_points, spin)
        features = jax.tree_util.tree_map(jnp.asarray,
                                          from_libxc_input(rho, spin, closed_shell=spin == 0))
        for name in functionals:
            if progress:
                print(f"[bench functionals] {name} spin={spin} ({n_points} points)", file=sys.stderr, flush=True)
            functional = get_functional(name)
            rows = {"lda": 1, "gga": 4}.get(functional.kind, rho.shape[-2])
            xc_input = rho[..., :rows, :] if rows > 1 else rho[..., 0, :]

            evaluate = jax.jit(functools.partial(energy_and_potentials, functional))

            cold, warm = time_cold_warm(lambda: evaluate(features), repeats)
            ref_time = time_reference(lambda: libxc.eval_xc(name, xc_input, spin=spin, deriv=1), repeats)
            exc = libxc.eval_xc(name, xc_input, spin=spin, deriv=1)[0]
            total = rho[0] if spin == 0 else rho[0, 0] + rho[1, 0]
            ours = np.asarray(evaluate(features)[0])
            rel = np.abs(ours - exc * total) / np.maximum(np.abs(exc * total), 1e-300)
            results.append(FunctionalTiming(name, spin, n_points, cold, warm, ref_time, float(np.max(rel))))
    return results


def format_table(results) -> str:
    header = f"{'functional':<10} {'spin':>4} {'points':>8} {'cold s':>7} {'warm s':>7} {'libxc s':>8} {'warm/libxc':>10} {'max rel diff':>12}"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.functional:<10} {r.spin:>4} {r.n_points:>8} {r.cold_s:>7.2f} {r.warm_s:>7.3f} {r.libxc_s:>8.3f} "
            f"{r.ratio:>10.2f} {r.max_rel_diff:>12.1e}"
        )
    return "\n".join(lines)


def as_records(results) -> list[dict]:
    return [dict(dataclasses.asdict(r), ratio=r.ratio) for r in results]
