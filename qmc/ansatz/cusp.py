"""Nuclear cusp correction of Gaussian-basis molecular orbitals (bohr, hartree).

A Gaussian orbital is smooth at a nucleus, so its radial slope there is zero and the local energy
of a Gaussian Slater determinant diverges as -Z / r; Kato's condition asks for the spherically
averaged slope d<phi>/dr (0) = -Z phi(R) (Kato, Commun. Pure Appl. Math. 10, 151 (1957)). We use the
scheme of Ma, Towler, Drummond, Needs, J. Chem. Phys. 122, 224322 (2005), which PauliNet uses
(Hermann, Schaetzle, Noe, Nat. Chem. 12, 891 (2020)): inside a small sphere r < r_c around nucleus m,
the part s(r) of the orbital made of the s-type AOs on m (spherically symmetric about R_m) is replaced,

    phi~(x) = phi(x) - s(r) + sign * exp(p(r)),   p(r) = a0 + a1 r + a2 r^2 + a3 r^3 + a4 r^4,  r < r_c,

with the rest of the orbital (eta = its value at R_m, smooth there) untouched. The polynomial
matches log|s| and its first two derivatives at r_c (phi~ is C^2 there: the kinetic energy stays
continuous) and obeys Kato's cusp, p'(0) = -Z (1 + eta / (sign exp(a0))). The one remaining freedom,
the orbital's value at the nucleus, is chosen as Ma et al. do, to keep the one-electron local energy
of the corrected orbital,

    E(r) = -(phi~'' + 2 phi~' / r) / (2 phi~) - Z / r      (the rest taken as the constant eta),

as flat as possible inside the sphere; we minimise max_r |E(r) - E(r_c)| (Ma et al. fit an ideal curve
through E(r_c) instead). All of this is constants computed once here (numpy, PySCF's AO values and
derivatives); an orbital without s part on a nucleus, or whose s part changes sign inside the sphere,
is left uncorrected there. The radius is chosen per orbital and nucleus (below a given maximum) by
the same flatness criterion, as Ma et al. also do. Spheres of different nuclei must not overlap.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np


class CuspCoefficients(NamedTuple):
    """Constants of the correction for n_orbitals orbitals on n_atoms nuclei.

    Attributes:
      poly: (n_atoms, n_orbitals, 5) coefficients a0..a4 of p (bohr^-k).
      sign: (n_atoms, n_orbitals) sign of s; 0 where the orbital is left uncorrected.
      s_coeff: (n_atoms, nao, n_orbitals) orbital coefficients restricted to the s-type AOs of each nucleus.
      radius: (n_atoms, n_orbitals) r_c of each correction (bohr).
      deviation: (n_atoms, n_orbitals) max_r |E(r) - E(r_c)| of the chosen fit (hartree), a diagnostic.
    """

    poly: np.ndarray
    sign: np.ndarray
    s_coeff: np.ndarray
    radius: np.ndarray
    deviation: np.ndarray


def _s_part_derivatives(mol, s_coeff: np.ndarray, centre: np.ndarray, r: float):
    """(s, s', s'') of the spherically symmetric s parts (columns of ``s_coeff``) at radius r from ``centre``."""
    point = centre[None, :] + np.array([[0.0, 0.0, r]])
    values = mol.eval_gto("GTOval_sph_deriv2", point)[:, 0, :]  # (10, nao): value, x, y, z, xx, ..., zz
    orbital = values @ s_coeff
    return orbital[0], orbital[3], orbital[9]  # along z: d/dz and d2/dz2 are the radial derivatives


def _fit_polynomial(z: float, rc: float, s: float, ds: float, d2s: float, s0: float, eta: float):
    """(a0..a4, sign, deviation) of the Ma et al. polynomial for one orbital and nucleus, or None if not applicable."""
    if s == 0 or s0 == 0 or np.sign(s) != np.sign(s0):
        return None
    sign = float(np.sign(s))
    targets = np.array([np.log(abs(s)), ds / s, d2s / s - (ds / s) ** 2])  # p, p', p'' at rc
    rows = np.array([[rc**2, rc**3, rc**4], [2 * rc, 3 * rc**2, 4 * rc**3], [2.0, 6 * rc, 12 * rc**2]])
    radii = np.linspace(rc / 200, rc, 200)

    def polynomial(a0):
        a1 = -z * (1.0 + eta * sign * np.exp(-a0))
        rest = np.linalg.solve(rows, targets - np.array([a0 + a1 * rc, a1, 0.0]))
        return np.concatenate([[a0, a1], rest])

    def deviation(a0):
        a = polynomial(a0)
        p1 = a[1] + 2 * a[2] * radii + 3 * a[3] * radii**2 + 4 * a[4] * radii**3
        p2 = 2 * a[2] + 6 * a[3] * radii + 12 * a[4] * radii**2
        value = sign * np.exp(np.polyval(a[::-1], radii))
        energy = -(value * (p2 + p1**2) + 2 * value * p1 / radii) / (2 * (value + eta)) - z / radii
        return np.max(np.abs(energy - energy[-1]))

    # the value at the nucleus: scan log|phi~(0)| around the Gaussian's, then refine around the best
    centre = np.log(abs(s0))
    for width in (1.0, 0.05, 0.0025):
        candidates = centre + np.linspace(-width, width, 41)
        with np.errstate(all="ignore"):
            scores = np.array([deviation(a0) for a0 in candidates])
        scores[~np.isfinite(scores)] = np.inf
        centre = candidates[int(np.argmin(scores))]
    return polynomial(centre), sign, float(np.min(scores))


def cusp_coefficients(molecule, mol, mo_coeff: np.ndarray, radius: float, n_radii: int = 8) -> CuspCoefficients:
    """Constants of the cusp correction of the orbitals ``mo_coeff`` (nao, n_orbitals).

    The sphere's radius is chosen per orbital and nucleus (as Ma et al. do) among ``n_radii`` values
    from radius / n_radii to ``radius``: the one whose fit gives the flattest local energy. Too small a
    sphere forces the polynomial from Kato's slope to the Gaussian's curvature within a short
    distance (sto-3g Li 1s at 0.1 bohr: E(r) swings by 40 Ha); a larger one lets it turn gently.

    Args:
      molecule: the :class:`basis.molecule.Molecule` (nuclei and charges).
      mol: the built ``pyscf.gto.Mole`` of the basis the orbitals are expanded in.
      mo_coeff: (nao, n_orbitals) orbital coefficients in PySCF's AO order.
      radius: largest r_c in bohr; positive and below half the shortest internuclear distance.
    """
    coords = np.asarray(molecule.coords, dtype=np.float64)
    charges = np.asarray(molecule.atomic_numbers, dtype=np.float64)
    if not radius > 0:
        raise ValueError(f"cusp radius {radius} must be positive")
    if len(coords) > 1:
        distances = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
        shortest = np.min(distances[np.triu_indices(len(coords), 1)])
        if radius >= shortest / 2:
            raise ValueError(f"cusp radius {radius} bohr must be below half the shortest internuclear distance, "
                             f"{shortest / 2:.4f} bohr")
    mo_coeff = np.asarray(mo_coeff, dtype=np.float64)
    nao, n_orb = mo_coeff.shape
    ao_loc = mol.ao_loc_nr()
    shape = (len(coords), n_orb)
    poly, sign, s_coeff = np.zeros(shape + (5,)), np.zeros(shape), np.zeros((len(coords), nao, n_orb))
    radii, deviations = np.full(shape, float(radius)), np.zeros(shape)
    for m, (centre, z) in enumerate(zip(coords, charges)):
        mask = np.zeros(nao, dtype=bool)
        for shell in range(mol.nbas):
            if mol.bas_atom(shell) == m and mol.bas_angular(shell) == 0:
                mask[ao_loc[shell]:ao_loc[shell + 1]] = True
        masked = np.where(mask[:, None], mo_coeff, 0.0)
        s_zero = _s_part_derivatives(mol, masked, centre, 0.0)[0]
        phi_zero = mol.eval_gto("GTOval_sph", centre[None, :])[0] @ mo_coeff
        for rc in float(radius) * np.arange(1, n_radii + 1) / n_radii:
            s_rc, ds_rc, d2s_rc = _s_part_derivatives(mol, masked, centre, rc)
            for k in range(n_orb):
                fit = _fit_polynomial(float(z), rc, s_rc[k], ds_rc[k], d2s_rc[k], s_zero[k], phi_zero[k] - s_zero[k])
                if fit is None or (sign[m, k] != 0 and fit[2] >= deviations[m, k]):
                    continue
                poly[m, k], sign[m, k], deviations[m, k] = fit
                radii[m, k] = rc
                s_coeff[m, :, k] = masked[:, k]
    return CuspCoefficients(poly, sign, s_coeff, radii, deviations)


def cusp_correction(r_ae: jnp.ndarray, ao: jnp.ndarray, coefficients: CuspCoefficients) -> jnp.ndarray:
    """sum_m [sign exp(p(r_im)) - s(r_im)] inside the spheres, for every electron i and orbital k.

    Args:
      r_ae: (n_elec, n_atoms) electron-nucleus distances (bohr).
      ao: (n_elec, nao) AO values at the electrons (gives the s parts).
    Returns:
      (n_elec, n_orbitals), to add to the Gaussian orbitals.
    """
    dtype = r_ae.dtype
    rc = jnp.asarray(coefficients.radius, dtype)[None]  # (1, M, K)
    poly = jnp.asarray(coefficients.poly, dtype)[None]  # (1, M, K, 5)
    sign = jnp.asarray(coefficients.sign, dtype)[None]  # (1, M, K)
    s_part = jnp.einsum("ia,mak->imk", ao, jnp.asarray(coefficients.s_coeff, dtype))  # (n, M, K)
    # p is evaluated at min(r, rc) so the unused branch of the where stays finite (exp of a quartic
    # far away would overflow, and inf * 0 poisons the gradient)
    r = jnp.minimum(r_ae[:, :, None], rc)
    p = poly[..., 4] * r + poly[..., 3]
    for k in (2, 1, 0):
        p = p * r + poly[..., k]
    replaced = sign * jnp.exp(p) - s_part
    inside = r_ae[:, :, None] < rc
    return jnp.sum(jnp.where(inside, replaced, 0.0), axis=1)
