"""Orbital-relaxed CCSD one-particle densities, by the Z-vector method written with autodiff.

The *relaxed* density is the derivative of the CCSD energy with respect to the one-electron
Hamiltonian, ``D^rel_{mu nu} = dE_CCSD / dh_{mu nu}``, with the Hartree-Fock orbitals re-solved
under the perturbation; for any one-electron property ``<V> = tr(D^rel V)`` equals the
finite-difference energy derivative (Hellmann-Feynman for the fully variational Lagrangian). The
*unrelaxed* density (PySCF's ``make_rdm1`` with the Lambda amplitudes) misses the orbital
response. The Z-vector method (Handy & Schaefer, J. Chem. Phys. 81, 5031 (1984); for coupled
cluster Salter, Trucks & Bartlett, J. Chem. Phys. 90, 1752 (1989)) adds it without solving one
response problem per perturbation:

* CCSD's Lagrangian is linear in the MO integrals,
  ``L(kappa) = sum h_pq(kappa) D_pq + 1/2 sum (pq|rs)(kappa) Gamma_pqrs`` with PySCF's unrelaxed
  1- and 2-particle densities ``D, Gamma`` and the orbitals rotated as ``C exp(kappa)``, where
  ``kappa`` has only occupied-virtual parameters (CCSD with all electrons correlated is invariant
  to occupied-occupied and virtual-virtual rotations);
* the orbitals obey the Hartree-Fock condition ``g(kappa, h) = dE_HF/dkappa = 0``;
* the Lagrangian ``L + z . g`` is stationary in ``kappa`` when ``H z = -w``, with
  ``w = dL/dkappa`` and ``H = d^2 E_HF / dkappa^2`` (the Hartree-Fock orbital Hessian) at
  ``kappa = 0``, and then ``D^rel = D + d(z . g)/dh``; since ``g`` is the derivative of
  ``E_HF = tr(h P(kappa)) + ...``, the added term is ``dP/dkappa . z``: the first-order change
  of the Hartree-Fock density along ``z``.

Here ``w``, ``H`` and ``dP/dkappa . z`` come from ``jax.grad``, ``jax.hessian`` and ``jax.jvp`` of
the two energy expressions, in the same code for restricted (one ``kappa`` for both spins) and
unrestricted (one per spin) references, so no spin-adapted working equations are written by hand.
The orbital rotation ``exp(kappa)`` is replaced by ``1 + kappa + kappa^2/2``: it agrees to second
order, which is all that first and second derivatives at ``kappa = 0`` see.

:func:`property_check` is the oracle: ``tr(D^rel V)`` against a central finite difference of the
CCSD energy in ``h + lambda V`` (HF re-solved), e.g. the dipole (``python -m
dftjax.xc3d.relaxation H2O OH`` prints the numbers quoted in the data README).
"""
from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np


def _rotation(x: jnp.ndarray, occupied: np.ndarray) -> jnp.ndarray:
    """``1 + kappa + kappa^2 / 2`` for the antisymmetric ``kappa`` with ``kappa[vir, occ] = x``."""
    virtual = ~occupied
    nmo = occupied.size
    kappa = jnp.zeros((nmo, nmo), x.dtype)
    kappa = kappa.at[np.ix_(virtual, occupied)].set(x)
    kappa = kappa - kappa.T
    return jnp.eye(nmo, dtype=x.dtype) + kappa + 0.5 * kappa @ kappa


def relaxed_density(mol, mf, solver) -> tuple[np.ndarray, dict]:
    """Alpha and beta relaxed CCSD density matrices (2, nao, nao) in the AO basis.

    Args:
        mol: the PySCF molecule.
        mf: converged RHF or UHF (the reference of ``solver``; all electrons correlated).
        solver: converged PySCF RCCSD or UCCSD on ``mf``; its Lambda equations are solved here if
            they have not been.

    Returns:
        ``(dms, info)``: ``dms[s]`` the spin densities; ``info`` has ``lagrangian_error`` (Ha,
        ``L(0) + E_nuc - E_CCSD``, a consistency check of the density conventions),
        ``hessian_min_eig`` (lowest nonzero HF orbital-Hessian eigenvalue), ``hessian_zero_modes``
        (rotations inside a degenerate open shell, left out of the response) and ``z_norm``.
    Raises:
        ValueError: frozen orbitals, an unstable HF reference (negative orbital-Hessian eigenvalue),
            or a singular Hessian along which the Lagrangian is not stationary.
    """
    if solver.frozen not in (None, 0):
        raise ValueError(f"relaxed_density needs all electrons correlated, got frozen={solver.frozen!r}")
    if solver.l1 is None:
        solver.solve_lambda()
    restricted = np.asarray(mf.mo_coeff).ndim == 2
    if restricted:
        coeffs = [np.asarray(mf.mo_coeff)]
        occupations = [np.asarray(mf.mo_occ) > 0]
        dm1 = [np.asarray(solver.make_rdm1())]
        dm2 = [np.asarray(solver.make_rdm2())]
    else:
        coeffs = [np.asarray(c) for c in mf.mo_coeff]
        occupations = [np.asarray(o) > 0 for o in mf.mo_occ]
        dm1 = [np.asarray(d) for d in solver.make_rdm1()]
        dm2 = [np.asarray(d) for d in solver.make_rdm2()]  # aa, ab, bb
    h_ao = jnp.asarray(mf.get_hcore())
    eri = jnp.asarray(mol.intor("int2e"))
    sizes = [int(np.count_nonzero(~o)) * int(np.count_nonzero(o)) for o in occupations]
    splits = np.cumsum(sizes)[:-1]

    def orbitals(x):
        parts = jnp.split(x, splits)
        return [jnp.asarray(c) @ _rotation(p.reshape(int(np.count_nonzero(~o)), -1), o)
                for c, p, o in zip(coeffs, parts, occupations)]

    def spin_densities(x):
        """HF spin densities (alpha, beta) of the rotated orbitals."""
        rotated = orbitals(x)
        dens = [c[:, o] @ c[:, o].T for c, o in zip(rotated, occupations)]
        return dens * 2 if restricted else dens

    def hf_energy(x, h):
        da, db = spin_densities(x)
        total = da + db
        coulomb = 0.5 * jnp.einsum("ij,ijkl,kl->", total, eri, total)
        exchange = 0.5 * sum(jnp.einsum("ik,ijkl,jl->", d, eri, d) for d in (da, db))
        return jnp.sum(h * total) + coulomb - exchange

    def mo_eri(ca, cb):
        return jnp.einsum("ijkl,ip,jq,kr,ls->pqrs", eri, ca, ca, cb, cb, optimize=True)

    def lagrangian(x):
        rotated = orbitals(x)
        if restricted:
            (c,) = rotated
            return (jnp.einsum("pq,qp->", c.T @ h_ao @ c, dm1[0])
                    + 0.5 * jnp.einsum("pqrs,pqrs->", mo_eri(c, c), dm2[0]))
        ca, cb = rotated
        one = sum(jnp.einsum("pq,qp->", c.T @ h_ao @ c, d) for c, d in zip(rotated, dm1))
        two = (jnp.einsum("pqrs,pqrs->", mo_eri(ca, ca), dm2[0])
               + 2.0 * jnp.einsum("pqrs,pqrs->", mo_eri(ca, cb), dm2[1])
               + jnp.einsum("pqrs,pqrs->", mo_eri(cb, cb), dm2[2]))
        return one + 0.5 * two

    x0 = jnp.zeros(int(sum(sizes)))
    lagrangian_error = float(lagrangian(x0)) + mol.energy_nuc() - float(solver.e_tot)
    w = jax.grad(lagrangian)(x0)
    hessian = jax.hessian(hf_energy)(x0, h_ao)
    eigenvalues, modes = np.linalg.eigh(np.asarray(hessian))
    tolerance = 1e-7 * max(eigenvalues[-1], 1.0)
    if eigenvalues[0] < -tolerance:
        raise ValueError(f"HF orbital Hessian has a negative eigenvalue ({eigenvalues[0]:.3e}): the reference is "
                         "unstable, so the orbital response is undefined")
    # zero modes: rotations within a degenerate open shell (e.g. pi_x <-> pi_y of OH), which leave
    # E_HF and, by the same symmetry, the CCSD Lagrangian unchanged (w has no component there)
    w_modes = modes.T @ np.asarray(w)
    null = eigenvalues < tolerance
    null_gradient = float(np.max(np.abs(w_modes[null]), initial=0.0))
    if null_gradient > 1e-6:
        raise ValueError(f"singular HF orbital Hessian with a Lagrangian gradient of {null_gradient:.2e} along its "
                         "zero modes: the orbital response is undefined")
    z = -jnp.asarray(modes[:, ~null] @ (w_modes[~null] / eigenvalues[~null]))
    _, response = jax.jvp(spin_densities, (x0,), (z,))
    if restricted:
        unrelaxed = coeffs[0] @ dm1[0] @ coeffs[0].T
        dms = np.stack([0.5 * unrelaxed, 0.5 * unrelaxed])
    else:
        dms = np.stack([c @ d @ c.T for c, d in zip(coeffs, dm1)])
    dms = dms + np.stack([np.asarray(r) for r in response])
    info = {"lagrangian_error": lagrangian_error, "hessian_min_eig": float(eigenvalues[~null][0]),
            "hessian_zero_modes": int(np.count_nonzero(null)), "z_norm": float(jnp.linalg.norm(z))}
    return 0.5 * (dms + dms.transpose(0, 2, 1)), info


def ccsd(mol, *, hcore=None, conv_tol: float = 1e-12):
    """Converged (R|U)HF and (R|U)CCSD of ``mol`` (restricted iff closed shell), optionally with a
    replaced core Hamiltonian (the perturbed problems of :func:`property_check`)."""
    from pyscf import cc, scf

    mf = scf.RHF(mol) if mol.spin == 0 else scf.UHF(mol)
    mf.conv_tol = conv_tol
    mf.max_cycle = 200
    if hcore is not None:
        mf.get_hcore = lambda *args: hcore
    mf.kernel()
    if not mf.converged:
        raise RuntimeError("HF did not converge")
    solver = cc.CCSD(mf)
    solver.conv_tol = conv_tol
    solver.conv_tol_normt = 1e-8
    solver.max_cycle = 300
    solver.kernel()
    if not solver.converged:
        raise RuntimeError("CCSD did not converge")
    return mf, solver


def property_check(mol, operator: np.ndarray, *, step: float = 1e-4) -> dict:
    """``tr(D V)`` of the relaxed and unrelaxed CCSD densities against ``dE_CCSD/dlambda`` for
    ``h -> h + lambda V`` (central difference, HF and CCSD re-solved at each ``lambda``)."""
    mf, solver = ccsd(mol)
    dms, info = relaxed_density(mol, mf, solver)
    rdm1 = solver.make_rdm1()
    if mol.spin == 0:
        unrelaxed = mf.mo_coeff @ rdm1 @ mf.mo_coeff.T
    else:
        unrelaxed = sum(c @ d @ c.T for c, d in zip(mf.mo_coeff, rdm1))
    h0 = mf.get_hcore()
    plus = ccsd(mol, hcore=h0 + step * operator)[1].e_tot
    minus = ccsd(mol, hcore=h0 - step * operator)[1].e_tot
    return {"finite_difference": float((plus - minus) / (2 * step)),
            "relaxed": float(np.einsum("sij,ji->", dms, operator)),
            "unrelaxed": float(np.einsum("ij,ji->", unrelaxed, operator)), **info}


def dipole_check(name: str, *, basis: str | None = None, axis: int | None = None, step: float = 1e-4) -> dict:
    """:func:`property_check` for one reference system's electronic dipole along ``axis`` (au;
    the largest nuclear-dipole axis by default, the operator ``r``: ``-dE/dF`` is minus this)."""
    from pyscf import gto

    from dftjax.xc3d.data import ALL_SYSTEMS, DEFAULT_BASIS

    system = ALL_SYSTEMS[name]
    mol = gto.M(atom=system.atom, basis=basis or DEFAULT_BASIS, spin=system.spin, charge=system.charge,
                verbose=0)
    r = mol.intor("int1e_r")
    if axis is None:  # the axis of the largest Hartree-Fock dipole
        mf = ccsd(mol)[0]
        axis = int(np.argmax(np.abs(mf.dip_moment(unit="au", verbose=0))))
    return {"name": name, "axis": axis, **property_check(mol, r[axis], step=step)}


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["H2O", "OH"]:
        print(json.dumps(dipole_check(arg)), flush=True)
