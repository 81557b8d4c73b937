"""Nonlocal ingredients of learned functionals on the SCF grid: the exact-exchange energy density.

:func:`grid_coulomb_potentials` gives ``A_{mu nu}(r_g) = int phi_mu(r') phi_nu(r') / |r_g - r'| dr'``
on grid points (PySCF ``int1e_grids``; not differentiable in the nuclear positions), from which
:func:`functionals.neural_xc.exact_exchange_energy_density` builds the per-spin HF exchange energy
density that DM21-style functionals (Kirkpatrick et al., Science 374, 1385 (2021)) read, and
:func:`local_hybrid_xc_energy` the XC energy of the neural local hybrid at a density matrix. Its
``jax.grad`` with respect to the density matrix is the XC Fock matrix: :func:`dftjax.system.build_system`
stores ``A`` on the SCF grid (``KSSystem.grid_coulomb``) for functionals with ``needs_grid_coulomb``
and ``dftjax.fock.xc_energy`` passes it with the density matrix to the functional, so
``dftjax scf --xc dftjax:nn-local-hybrid`` and the trainer run it self-consistently (see
``functionals/models/README.md``). DM21 (``--xc dm21``) reads the potentials of two kernels,
``1 / r`` and the long-range ``erf(0.4 r) / r`` (``omega`` argument); ``build_system`` stacks them
to (2, n_grid, nao, nao) for functionals that declare ``grid_coulomb_omegas``
(``functionals/models/dm21/README.md``).

Cost: ``A`` takes ``n_grid * nao^2`` doubles (10^4 points, 26 AOs: 54 MB) and each evaluation an
``n_grid * nao^2`` contraction per spin, like a semilocal functional's AO work times ``nao``.
"""
from __future__ import annotations

import numpy as np


def grid_coulomb_potentials(mol, points: np.ndarray, chunk: int = 2048, omega: float = 0.0) -> np.ndarray:
    """(n, nao, nao) ``A(r_g)`` for a PySCF ``mol`` at ``points`` (n, 3) in bohr.

    ``omega`` > 0 (bohr^-1): the long-range kernel ``erf(omega |r_g - r'|) / |r_g - r'|`` instead of
    ``1 / |r_g - r'|`` (``int1e_grids`` inside ``mol.with_range_coulomb(omega)``; DM21 reads both
    omega = 0 and 0.4).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (n, 3); got {points.shape}")
    if omega < 0.0:
        raise ValueError(f"omega must be >= 0 (long-range erf kernel); got {omega}")
    with mol.with_range_coulomb(float(omega)):
        return np.concatenate([mol.intor("int1e_grids", grids=points[i:i + chunk])
                               for i in range(0, len(points), chunk)], axis=0)


def local_hybrid_xc_energy(energy_density, params, features, weights, ao, dm, potentials):
    """``sum_g w_g e(params, NonlocalFeatures(features, e_x^HF[dm]))`` (Ha) of a neural local hybrid at ``dm``.

    Args:
        energy_density: from :func:`functionals.neural_xc.neural_local_hybrid_energy_density`.
        features: semilocal :class:`~functionals.features.Features` of ``dm`` on the grid.
        weights: (n,) quadrature weights; ao: (n_comp, n, nao) AO values; dm: (2, nao, nao);
        potentials: (n, nao, nao) from :func:`grid_coulomb_potentials`.
    """
    import jax.numpy as jnp

    from functionals.features import NonlocalFeatures
    from functionals.neural_xc import exact_exchange_energy_density

    exx = exact_exchange_energy_density(ao, dm, potentials)
    return jnp.sum(weights * energy_density(params, NonlocalFeatures(features, exx)))
