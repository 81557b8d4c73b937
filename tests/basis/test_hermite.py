"""The reference McMurchie-Davidson recursions (basis.integrals._hermite) against libcint.

Overlap and nuclear-attraction blocks assembled directly from the unrolled recursions
(E^{ij}_t, HJO eq. 9.5.6; R^n_{tuv}, eq. 9.9.18-9.9.20) for shell pairs up to (f|f).
"""

import jax.numpy as jnp
import numpy as np
import pytest

from basis.gto import make_basis
from basis.integrals._hermite import gaussian_product, hermite_coulomb, hermite_e_1d, hermite_e_3d
from basis.molecule import make_molecule


@pytest.mark.slow
def test_recursions_give_libcint_overlap_and_nuclear_blocks():
    molecule = make_molecule("O 0 0 0; H 0 0.757 0.587; H 0 -0.757 0.587")
    basis = make_basis(molecule, "cc-pvtz")
    mol = molecule.to_pyscf(basis="cc-pvtz")
    s_ref, v_ref = mol.intor("int1e_ovlp"), mol.intor("int1e_nuc")
    coords = jnp.asarray(molecule.coords)
    charges = jnp.asarray(molecule.atomic_numbers, dtype=jnp.float64)
    centers = basis.shell_centers(coords)
    by_l = {}
    for shell, l in enumerate(basis.shell_l):
        by_l.setdefault(l, shell)  # one shell of each l (s, p, d, f on O), all l pairs
    for i in by_l.values():
        for j in by_l.values():
            la, lb = basis.shell_l[i], basis.shell_l[j]
            a = jnp.asarray(basis.exponents[i])[:, None] * jnp.ones((1, basis.exponents.shape[1]))
            b = jnp.ones((basis.exponents.shape[1], 1)) * jnp.asarray(basis.exponents[j])[None, :]
            p, center_p, pa, pb, k_ab = gaussian_product(
                a, b, jnp.broadcast_to(centers[i], a.shape + (3,)), jnp.broadcast_to(centers[j], a.shape + (3,))
            )
            e = hermite_e_3d(la, lb, *[hermite_e_1d(la, lb, p, pa[..., k], pb[..., k]) for k in range(3)])
            cc = jnp.asarray(basis.coefficients[i])[:, None] * jnp.asarray(basis.coefficients[j])[None, :] * k_ab
            s = jnp.einsum("pq,pqabh->ab", cc * (np.pi / p) ** 1.5, e[..., :1])
            r = hermite_coulomb(la + lb, jnp.broadcast_to(p[..., None], p.shape + (3,)), center_p[..., None, :] - coords[None, None])
            v = -jnp.einsum("pq,C,pqCh,pqabh->ab", cc * 2 * np.pi / p, charges, r, e)
            ta, tb = basis.transform(la), basis.transform(lb)
            rows, cols = basis.ao_indices([i])[0], basis.ao_indices([j])[0]
            # same integrals, different algebra: rounding-level agreement
            np.testing.assert_allclose(ta.T @ np.asarray(s) @ tb, s_ref[np.ix_(rows, cols)], atol=1e-12)
            np.testing.assert_allclose(ta.T @ np.asarray(v) @ tb, v_ref[np.ix_(rows, cols)], atol=1e-11)
