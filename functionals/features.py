"""Density features on grid points: spin densities, gradient invariants, kinetic energy densities.

Every functional in :mod:`functionals` is a pure function ``e(params, features) -> (n,)`` of the
:class:`Features` defined here, with ``e`` the energy per volume (hartree / bohr^3) and
``E = sum(weights * e)``. Features are **always spin resolved**; a closed-shell density is
represented by two equal halves (:func:`restricted_features`), so one code path serves RKS and UKS
and ``jax.grad`` with respect to the halves gives the spin potentials.

Conventions (identical to libxc and PySCF's ``numint``):

* ``rho[s] = sum_i n_is |phi_is|^2`` (bohr^-3), ``s = 0`` alpha, ``s = 1`` beta.
* ``sigma = (grad rho_a . grad rho_a, grad rho_a . grad rho_b, grad rho_b . grad rho_b)``.
* ``tau[s] = 1/2 sum_i n_is |grad phi_is|^2`` (with the factor 1/2, as libxc).
* ``lapl[s] = nabla^2 rho_s`` (zeros unless computed from second AO derivatives).

Closed shells have a faster path: :class:`RestrictedFeatures` holds the total-density quantities
``rho, sigma = |grad rho|^2, tau, lapl`` (each (n,)); every registered functional evaluates its
unpolarised (zeta = 0) formulas on them, and ``jax.grad`` with respect to them gives libxc's
``spin=0`` potentials ``vrho, vsigma, vtau, vlapl`` directly. A functional that does not know
them (``Functional.supports_restricted`` False, e.g. a user's neural one) receives
:meth:`RestrictedFeatures.split`, the equal spin halves.

Derivatives of a restricted energy with respect to the *total* density follow by the chain rule:
``d/drho_total = (d/drho_a + d/drho_b) / 2`` and, for the gradient invariant of the total density
``sigma_total = |grad rho|^2 = sigma_aa + 2 sigma_ab + sigma_bb`` with each ``sigma = sigma_total/4``,
``d/dsigma_total = (d/dsigma_aa + d/dsigma_ab + d/dsigma_bb) / 4``; :func:`restricted_features`
builds the halves inside JAX so ``jax.grad`` through it does this automatically.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

Array = jnp.ndarray


class Features(NamedTuple):
    """Spin-resolved semilocal density features on ``n`` grid points (atomic units).

    Attributes:
        rho: (2, n) alpha and beta densities, bohr^-3.
        sigma: (3, n) ``grad rho_a.grad rho_a``, ``grad rho_a.grad rho_b``, ``grad rho_b.grad rho_b``.
        tau: (2, n) kinetic energy densities ``1/2 sum_i |grad phi_is|^2`` (libxc convention).
        lapl: (2, n) density Laplacians ``nabla^2 rho_s`` (zeros when not computed).
    """

    rho: Array
    sigma: Array
    tau: Array
    lapl: Array

    @property
    def n_points(self) -> int:
        return self.rho.shape[-1]

    @property
    def total_density(self) -> Array:
        """(n,) ``rho_a + rho_b``."""
        return self.rho[0] + self.rho[1]


class RestrictedFeatures(NamedTuple):
    """Closed-shell semilocal features of the *total* density on ``n`` points (atomic units).

    A distinct pytree type, so a functional can select its unpolarised formulas statically (under
    ``jax.jit`` too) with ``isinstance(features, RestrictedFeatures)``.

    Attributes:
        rho: (n,) total density ``rho_a + rho_b`` (bohr^-3), ``rho_a = rho_b``.
        sigma: (n,) ``|grad rho|^2`` of the total density.
        tau: (n,) total kinetic energy density ``1/2 sum_i n_i |grad phi_i|^2`` (libxc convention).
        lapl: (n,) ``nabla^2 rho`` (zeros when not computed).
    """

    rho: Array
    sigma: Array
    tau: Array
    lapl: Array

    @property
    def n_points(self) -> int:
        return self.rho.shape[-1]

    @property
    def total_density(self) -> Array:
        """(n,) the total density."""
        return self.rho

    def split(self) -> Features:
        """The equivalent spin-resolved :class:`Features` (equal halves, :func:`restricted_features`)."""
        return restricted_features(self.rho, self.sigma, self.tau, self.lapl)


class NonlocalFeatures(NamedTuple):
    """Semilocal features plus a nonlocal ingredient: the per-spin exact-exchange energy density.

    What a DM21-style functional (Kirkpatrick et al., Science 374, 1385 (2021)) reads, with the same
    ``energy_density(params, features)`` signature as every other functional. A Kohn-Sham solver
    builds it for functionals with ``needs_grid_coulomb`` (``dftjax.fock.xc_energy``).

    Attributes:
        semilocal: :class:`Features` or :class:`RestrictedFeatures` of the density.
        exact_exchange: (2, n) ``e_x,s^HF(r)`` (hartree/bohr^3) of the current density matrix
            (``functionals.neural_xc.exact_exchange_energy_density``); for DM21, which reads two
            kernels, (2, 2, n) [spin, omega] (``functionals.dm21.exact_exchange_features``).
    """

    semilocal: Features | RestrictedFeatures
    exact_exchange: Array

    @property
    def n_points(self) -> int:
        return self.semilocal.n_points

    @property
    def total_density(self) -> Array:
        return self.semilocal.total_density


def closed_shell_features(rho: Array, sigma: Array | None = None, tau: Array | None = None,
                          lapl: Array | None = None) -> RestrictedFeatures:
    """:class:`RestrictedFeatures` from total-density arrays, zeros for those not given.

    Args:
        rho: (n,) total density.
        sigma: (n,) ``|grad rho|^2``, or None.
        tau: (n,) total kinetic energy density, or None.
        lapl: (n,) Laplacian of the total density, or None.
    """
    rho = jnp.asarray(rho)
    zeros = jnp.zeros_like(rho)
    return RestrictedFeatures(
        rho=rho,
        sigma=zeros if sigma is None else jnp.asarray(sigma),
        tau=zeros if tau is None else jnp.asarray(tau),
        lapl=zeros if lapl is None else jnp.asarray(lapl),
    )


def restricted_features(rho: Array, sigma: Array | None = None, tau: Array | None = None,
                        lapl: Array | None = None) -> Features:
    """Closed-shell features from total-density quantities, split into equal spin halves.

    Args:
        rho: (n,) total density.
        sigma: (n,) ``|grad rho|^2`` of the total density, or None (zeros).
        tau: (n,) total kinetic energy density (``1/2 sum_i n_i |grad phi_i|^2``), or None.
        lapl: (n,) Laplacian of the total density, or None.

    Returns:
        Features with ``rho_s = rho/2``, ``sigma_ss' = sigma/4`` for all three pairs,
        ``tau_s = tau/2``, ``lapl_s = lapl/2``.

    >>> f = restricted_features(jnp.array([2.0]), jnp.array([4.0]))
    >>> f.rho.tolist(), f.sigma.tolist()
    ([[1.0], [1.0]], [[1.0], [1.0], [1.0]])
    """
    rho = jnp.asarray(rho)
    zeros = jnp.zeros_like(rho)
    sigma = zeros if sigma is None else jnp.asarray(sigma)
    tau = zeros if tau is None else jnp.asarray(tau)
    lapl = zeros if lapl is None else jnp.asarray(lapl)
    half = 0.5 * rho
    quarter = 0.25 * sigma
    return Features(
        rho=jnp.stack([half, half]),
        sigma=jnp.stack([quarter, quarter, quarter]),
        tau=jnp.stack([0.5 * tau, 0.5 * tau]),
        lapl=jnp.stack([0.5 * lapl, 0.5 * lapl]),
    )


def unrestricted_features(rho: Array, sigma: Array | None = None, tau: Array | None = None,
                          lapl: Array | None = None) -> Features:
    """Features from spin-resolved arrays, zeros for those not given.

    Args:
        rho: (2, n) spin densities.
        sigma: (3, n) gradient invariants (aa, ab, bb), or None.
        tau: (2, n) spin kinetic energy densities, or None.
        lapl: (2, n) spin Laplacians, or None.
    """
    rho = jnp.asarray(rho)
    n = rho.shape[-1]
    sigma = jnp.zeros((3, n), rho.dtype) if sigma is None else jnp.asarray(sigma)
    tau = jnp.zeros((2, n), rho.dtype) if tau is None else jnp.asarray(tau)
    lapl = jnp.zeros((2, n), rho.dtype) if lapl is None else jnp.asarray(lapl)
    return Features(rho=rho, sigma=sigma, tau=tau, lapl=lapl)


def _spin_quantities(ao: Array, dm: Array, with_lapl: bool):
    """rho, grad rho, tau, lapl of one spin density from AO values (n_comp, n, nao), dm (nao, nao)."""
    dm = 0.5 * (dm + dm.T)  # only the symmetric part contributes to the density
    c0 = ao[0] @ dm  # (n, nao)
    rho = jnp.sum(c0 * ao[0], axis=-1)
    grad = 2.0 * jnp.einsum("xgi,gi->xg", ao[1:4], c0)
    # tau = 1/2 sum_mu,nu D_mu,nu grad phi_mu . grad phi_nu (1/2 as libxc)
    tau = 0.5 * sum(jnp.sum((ao[k] @ dm) * ao[k], axis=-1) for k in (1, 2, 3))
    if with_lapl:
        # nabla^2 rho = 2 sum D (phi nabla^2 phi + grad phi . grad phi); components 4,7,9 = xx,yy,zz
        lap_ao = ao[4] + ao[7] + ao[9]
        lapl = 2.0 * jnp.sum(c0 * lap_ao, axis=-1) + 4.0 * tau
    else:
        lapl = jnp.zeros_like(rho)
    return rho, grad, tau, lapl


def features_from_density_matrices(ao: Array, dm: Array) -> Features:
    """Features on grid points from atomic-orbital values and density matrices.

    Args:
        ao: (n_comp, n, nao) AO values in PySCF's ``eval_gto`` layout: ``n_comp = 4``
            (value, d/dx, d/dy, d/dz; ``GTOval_sph_deriv1``) or ``n_comp >= 10`` (plus the second
            derivatives xx, xy, xz, yy, yz, zz; ``GTOval_sph_deriv2``), in which case the Laplacian
            is computed too.
        dm: (2, nao, nao) alpha and beta density matrices, or (nao, nao) closed-shell total density
            matrix (split into equal halves).

    Returns:
        Features on the ``n`` points (``lapl`` zero when ``n_comp < 10``).
    """
    ao = jnp.asarray(ao)
    dm = jnp.asarray(dm)
    if ao.ndim != 3 or ao.shape[0] < 4:
        raise ValueError(f"ao must be (n_comp>=4, n, nao) with first derivatives; got {ao.shape}")
    if dm.ndim == 2:
        dm = jnp.stack([0.5 * dm, 0.5 * dm])
    if dm.ndim != 3 or dm.shape[0] != 2:
        raise ValueError(f"dm must be (nao, nao) or (2, nao, nao); got {dm.shape}")
    with_lapl = ao.shape[0] >= 10
    ra, ga, ta, la = _spin_quantities(ao, dm[0], with_lapl)
    rb, gb, tb, lb = _spin_quantities(ao, dm[1], with_lapl)
    sigma = jnp.stack([jnp.sum(ga * ga, axis=0), jnp.sum(ga * gb, axis=0), jnp.sum(gb * gb, axis=0)])
    return Features(rho=jnp.stack([ra, rb]), sigma=sigma, tau=jnp.stack([ta, tb]),
                    lapl=jnp.stack([la, lb]))


def restricted_features_from_density_matrix(ao: Array, dm: Array) -> RestrictedFeatures:
    """Closed-shell features of the total density from AO values and the total density matrix.

    One pass over the grid (``rho = sum D phi phi``, ``grad rho``, ``tau``, ``lapl``), half the work
    of :func:`features_from_density_matrices` on the two equal spin halves; feed the result to any
    :class:`~functionals.functional.Functional` (``jax.grad`` with respect to ``dm`` gives the XC
    matrix of the total density, as the halves do).

    Args:
        ao: (n_comp, n, nao) AO values, as in :func:`features_from_density_matrices` (the
            Laplacian is computed when ``n_comp >= 10``).
        dm: (nao, nao) total (alpha + beta) density matrix.

    Returns:
        RestrictedFeatures on the ``n`` points (``lapl`` zero when ``n_comp < 10``).
    """
    ao = jnp.asarray(ao)
    dm = jnp.asarray(dm)
    if ao.ndim != 3 or ao.shape[0] < 4:
        raise ValueError(f"ao must be (n_comp>=4, n, nao) with first derivatives; got {ao.shape}")
    if dm.ndim != 2:
        raise ValueError(f"dm must be the (nao, nao) total density matrix; got {dm.shape}")
    rho, grad, tau, lapl = _spin_quantities(ao, dm, ao.shape[0] >= 10)
    return RestrictedFeatures(rho=rho, sigma=jnp.sum(grad * grad, axis=0), tau=tau, lapl=lapl)


def _rows(x: np.ndarray):
    """rho, grad (3, n) or None, lapl or None, tau or None from one (k, n) PySCF rho block."""
    if x.ndim == 1:
        return x, None, None, None
    k = x.shape[0]
    if k == 1:
        return x[0], None, None, None
    if k == 4:
        return x[0], x[1:4], None, None
    if k == 5:  # PySCF MGGA without Laplacian: rho, dx, dy, dz, tau
        return x[0], x[1:4], None, x[4]
    if k == 6:  # rho, dx, dy, dz, lapl, tau
        return x[0], x[1:4], x[4], x[5]
    raise ValueError(f"unsupported PySCF rho block with {k} rows")


def from_libxc_input(rho, spin: int, closed_shell: bool = False) -> Features | RestrictedFeatures:
    """Features from the ``rho`` array PySCF's ``dft.libxc.eval_xc`` takes (for tests/interop).

    Args:
        rho: spin=0: (n,) or (k, n) total density rows; spin=1: (2, n) or (2, k, n) per spin.
            Rows follow PySCF: k=4 (rho, dx, dy, dz), k=5 (... , tau), k=6 (..., lapl, tau).
        spin: 0 closed shell (total quantities), 1 spin-resolved.
        closed_shell: for spin=0, return :class:`RestrictedFeatures` of the totals (the fast path)
            instead of Features with equal halves.

    Returns:
        Features; for spin=0 the halves of the totals (see :func:`restricted_features`), or
        RestrictedFeatures with ``closed_shell``.
    """
    rho = np.asarray(rho, dtype=np.float64)
    if spin == 0:
        r, g, lapl, tau = _rows(rho)
        sigma = None if g is None else np.einsum("xg,xg->g", g, g)
        if closed_shell:
            return closed_shell_features(r, sigma, tau, lapl)
        return restricted_features(r, sigma, tau, lapl)
    if rho.shape[0] != 2:
        raise ValueError(f"spin=1 input must have leading dimension 2; got {rho.shape}")
    ra, ga, la, ta = _rows(rho[0])
    rb, gb, lb, tb = _rows(rho[1])
    sigma = None
    if ga is not None:
        sigma = np.stack([np.einsum("xg,xg->g", ga, ga), np.einsum("xg,xg->g", ga, gb),
                          np.einsum("xg,xg->g", gb, gb)])
    tau = None if ta is None else np.stack([ta, tb])
    lapl = None if la is None else np.stack([la, lb])
    return unrestricted_features(np.stack([ra, rb]), sigma, tau, lapl)
