"""One-electron integrals against PySCF (libcint), their derivatives, invariances and jit behaviour.

Oracles: ``mol.intor`` for values; PySCF's derivative integrals (``int1e_ipovlp``, ``int1e_ipkin``,
and for the nuclear attraction ``int1e_ipnuc`` plus the operator part ``int1e_iprinv`` at each
nucleus, assembled as ``pyscf.grad.rhf.hcore_generator`` does) for jax.jacfwd with respect to the
nuclear positions; central finite differences for positions and exponents.

Tolerances: values 1e-10 and derivatives 1e-9 absolute (the brief), against observed agreement of
~1e-13 (the Boys-function table is accurate to ~2e-15 relative, the rest is rounding). Finite
differences use step 1e-4 with a 1e-7 tolerance (central-difference truncation ~h^2 |f'''| ~ 1e-8).

Compile time dominates: each (function, basis structure) compiles once (~1-4 s on 2 cores), so the
default suite uses a few molecule/basis pairs and the full element x basis sweep is marked slow.
"""

from __future__ import annotations

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from basis.gto import make_basis
from basis.integrals import one_electron as oe
from basis.molecule import make_molecule

ATOMS = {
    "water": "O 0 0 0.1; H 0 0.757 0.587; H 0.1 -0.757 0.587",  # slightly asymmetric
    "ammonia": "N 0 0 0.1; H 0.94 0 -0.25; H -0.47 0.81 -0.25; H -0.47 -0.81 -0.3",
    "hcl": "H 0 0 0; Cl 0 0.1 1.28",
    "h2s": "S 0 0 0; H 0 0.96 0.93; H 0.05 -0.96 0.93",
    "ph3": "P 0 0 0.1; H 1.19 0 0.77; H -0.6 1.03 0.77; H -0.6 -1.03 0.8",
    "mgo": "Mg 0 0 0; O 0.1 0 1.75",
    "nacl": "Na 0 0 0; Cl 0 0.2 2.36",
    "sih4": "Si 0 0 0; H 0.86 0.86 0.86; H -0.86 -0.86 0.86; H -0.86 0.86 -0.86; H 0.86 -0.86 -0.9",
    "alf3": "Al 0 0 0; F 1.63 0 0; F -0.81 1.41 0; F -0.81 -1.41 0.1",
    "argon": "Ar 0 0 0",
    # H, N, O, F and Na-Ar on a slightly perturbed 3 x 2 x 2 lattice (2.4-2.6 Angstrom spacing), 141
    # electrons (a doublet): the all-elements sweep in one molecule.
    "cluster": "; ".join(
        f"{element} {2.6 * (i % 3) + dx:.4f} {2.4 * ((i // 3) % 2) + dy:.4f} {2.5 * (i // 6) + dz:.4f}"
        for i, (element, (dx, dy, dz)) in enumerate(zip(
            ["O", "H", "N", "Cl", "S", "P", "Mg", "Na", "Si", "Al", "F", "Ar"],
            np.round(np.random.default_rng(0).normal(scale=0.1, size=(12, 3)), 4),
        ))
    ),
}

VALUE_ATOL = 1e-10
DERIV_ATOL = 1e-9


@functools.lru_cache(maxsize=None)
def _system(name: str, basis_name: str, cartesian: bool = False):
    molecule = make_molecule(ATOMS[name], spin=1 if name == "cluster" else 0)
    basis = make_basis(molecule, basis_name, cartesian=cartesian)
    mol = molecule.to_pyscf(basis=basis_name, cartesian=cartesian)
    return molecule, basis, mol


def _suffix(cartesian: bool) -> str:
    return "_cart" if cartesian else ""


def _check_against_pyscf(name, basis_name, cartesian, with_dipole=True):
    molecule, basis, mol = _system(name, basis_name, cartesian)
    coords = jnp.asarray(molecule.coords)
    ours = {
        "int1e_ovlp": lambda: oe.overlap(basis, coords),
        "int1e_kin": lambda: oe.kinetic(basis, coords),
        "int1e_nuc": lambda: oe.nuclear_attraction(basis, coords, molecule.atomic_numbers),
    }
    if with_dipole:
        ours["int1e_r"] = lambda: oe.dipole(basis, coords)
    core = oe.core_integrals(basis, coords, coords, molecule.atomic_numbers)  # all four in one pass
    ours["core.overlap"] = lambda: core.overlap
    ours["core.kinetic"] = lambda: core.kinetic
    ours["core.attraction"] = lambda: core.attraction
    if with_dipole:
        ours["core.dipole"] = lambda: core.dipole
    pyscf_key = {"core.overlap": "int1e_ovlp", "core.kinetic": "int1e_kin", "core.attraction": "int1e_nuc",
                 "core.dipole": "int1e_r"}
    for key, fn in ours.items():
        value, ref = np.asarray(fn()), mol.intor(pyscf_key.get(key, key) + _suffix(cartesian))
        assert value.shape == ref.shape, key
        np.testing.assert_allclose(value, ref, rtol=0, atol=VALUE_ATOL, err_msg=f"{name} {basis_name} {key}")


# -- values against libcint ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, basis_name, cartesian, with_dipole",
    [
        ("water", "def2-svp", False, True),  # s, p, d
        ("hcl", "def2-tzvp", False, False),  # f functions, third row
        ("ammonia", "6-31g*", True, False),  # cartesian d (6d); cartesian dipoles in the slow sweep
    ],
)
def test_matches_pyscf(name, basis_name, cartesian, with_dipole):
    _check_against_pyscf(name, basis_name, cartesian, with_dipole)


@pytest.mark.slow
@pytest.mark.parametrize("basis_name", ["def2-svp", "def2-tzvp", "cc-pvdz", "6-31g*"])
def test_matches_pyscf_sweep(basis_name):
    # Every element of ATOMS (H, N-F, Na-Ar) in one cluster: each basis compiles one program, not one
    # per molecule (40 compilations were 18 worker-minutes of the slow tier), and every pair of
    # elements meets in one matrix.
    _check_against_pyscf("cluster", basis_name, False)


@pytest.mark.slow
@pytest.mark.parametrize("name, basis_name", [("h2s", "def2-tzvp"), ("mgo", "cc-pvdz"), ("alf3", "def2-svp")])
def test_matches_pyscf_cartesian_sweep(name, basis_name):
    _check_against_pyscf(name, basis_name, True)


def test_core_integrals_equal_the_separate_functions_with_derivatives():
    """core_integrals (one pass, shared Hermite tables) against overlap, kinetic, point_charge_attraction
    and dipole: values and nuclear-position gradients equal to rounding, off-centre charges and origin."""
    molecule, basis, _ = _system("water", "def2-svp")
    coords = jnp.asarray(molecule.coords)
    charges_at = jnp.asarray([[0.3, -1.0, 2.0], [1.5, 0.2, -0.7]])
    charges = jnp.asarray([0.7, -1.3])
    origin = (0.2, -0.1, 0.4)
    weights = [np.random.default_rng(k).normal(size=shape) for k, shape in
               enumerate([(basis.nao,) * 2] * 3 + [(3, basis.nao, basis.nao)])]

    def combined(c):
        return oe.core_integrals(basis, c, charges_at + c[:1], charges, origin)

    def separate(c):
        return (oe.overlap(basis, c), oe.kinetic(basis, c), oe.point_charge_attraction(basis, c, charges_at + c[:1], charges),
                oe.dipole(basis, c, origin))

    for ours, ref in zip(combined(coords), separate(coords)):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=0, atol=1e-13)

    def loss(fn):
        return lambda c: sum(jnp.sum(w * m) for w, m in zip(weights, fn(c)))

    np.testing.assert_allclose(np.asarray(jax.grad(loss(combined))(coords)), np.asarray(jax.grad(loss(separate))(coords)),
                               rtol=0, atol=1e-11)


def test_point_charges_match_rinv():
    molecule, basis, mol = _system("water", "sto-3g")
    rng = np.random.default_rng(0)
    positions = rng.normal(scale=3.0, size=(5, 3))
    charges = rng.normal(size=5)
    ours = oe.point_charge_attraction(basis, molecule.coords, positions, charges)
    ref = np.zeros((mol.nao, mol.nao))
    for q, r in zip(charges, positions):
        with mol.with_rinv_origin(r):
            ref -= q * mol.intor("int1e_rinv")
    np.testing.assert_allclose(ours, ref, rtol=0, atol=VALUE_ATOL)


def test_point_charges_chunked():
    # More charges than _CHARGE_CHUNK: the lax.scan path must agree with the direct sum.
    molecule, basis, mol = _system("hcl", "sto-3g")
    rng = np.random.default_rng(1)
    n = oe._CHARGE_CHUNK + 37
    positions = rng.normal(scale=4.0, size=(n, 3))
    charges = rng.normal(size=n)
    ours = oe.point_charge_attraction(basis, molecule.coords, positions, charges)
    ref = np.zeros((mol.nao, mol.nao))
    for q, r in zip(charges, positions):
        with mol.with_rinv_origin(r):
            ref -= q * mol.intor("int1e_rinv")
    np.testing.assert_allclose(ours, ref, rtol=0, atol=VALUE_ATOL)


def test_dipole_origin():
    molecule, basis, mol = _system("water", "def2-svp")
    origin = np.array([0.3, -0.2, 1.1])
    with mol.with_common_orig(origin):
        ref = mol.intor("int1e_r")
    np.testing.assert_allclose(oe.dipole(basis, molecule.coords, origin), ref, rtol=0, atol=VALUE_ATOL)


# -- nuclear derivatives --------------------------------------------------------------------------------


def _reference_derivative(mol, ip_name, cartesian=False):
    """d M / d R_A from PySCF's <d mu| O |nu> integrals: (n_atoms, 3, nao, nao).

    PySCF's ip integrals are derivatives with respect to the electron coordinate, d/dr = -d/dA
    for the functions on A; the ket-side term is the transpose.
    """
    ip = -mol.intor(ip_name + _suffix(cartesian), comp=3)
    out = np.zeros((mol.natm, 3) + ip.shape[1:])
    for atom, (_, _, p0, p1) in enumerate(mol.aoslice_by_atom()):
        out[atom, :, p0:p1] = ip[:, p0:p1]
    return out + out.transpose(0, 1, 3, 2)


def _reference_nuclear_derivative(mol, cartesian=False):
    """Full d V / d R_A, as pyscf.grad.rhf.hcore_generator (with its kinetic part removed)."""
    basis_part = -mol.intor("int1e_ipnuc" + _suffix(cartesian), comp=3)
    out = np.zeros((mol.natm, 3, mol.nao, mol.nao))
    for atom, (_, _, p0, p1) in enumerate(mol.aoslice_by_atom()):
        with mol.with_rinv_at_nucleus(atom):
            operator = mol.intor("int1e_iprinv" + _suffix(cartesian), comp=3) * -mol.atom_charge(atom)
        operator[:, p0:p1] += basis_part[:, p0:p1]
        out[atom] = operator + operator.transpose(0, 2, 1)
    return out


def _jacobian(fn, coords):
    """(n_atoms, 3, nao, nao) d fn / d coords by forward mode."""
    return np.asarray(jax.jit(jax.jacfwd(fn))(jnp.asarray(coords))).transpose(2, 3, 0, 1)


@functools.lru_cache(maxsize=None)
def _jacobians(name, basis_name, cartesian=False):
    """Forward-mode coordinate Jacobians of S, T, V, computed (and compiled) once per system."""
    molecule, basis, _ = _system(name, basis_name, cartesian)
    z = molecule.atomic_numbers
    fns = {
        "S": lambda c: oe.overlap(basis, c),
        "T": lambda c: oe.kinetic(basis, c),
        "V": lambda c: oe.nuclear_attraction(basis, c, z),
    }
    return fns, {key: _jacobian(fn, molecule.coords) for key, fn in fns.items()}


def _check_derivatives(name, basis_name, cartesian=False):
    _, _, mol = _system(name, basis_name, cartesian)
    _, jac = _jacobians(name, basis_name, cartesian)
    refs = {
        "S": _reference_derivative(mol, "int1e_ipovlp", cartesian),
        "T": _reference_derivative(mol, "int1e_ipkin", cartesian),
        "V": _reference_nuclear_derivative(mol, cartesian),
    }
    for key, ref in refs.items():
        np.testing.assert_allclose(jac[key], ref, rtol=0, atol=DERIV_ATOL, err_msg=f"{name} {basis_name} d{key}/dR")


def test_coordinate_derivatives_match_pyscf():
    _check_derivatives("water", "def2-svp", False)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, basis_name, cartesian",
    [("hcl", "def2-tzvp", False), ("ph3", "cc-pvdz", False), ("ammonia", "6-31g*", True), ("mgo", "def2-svp", False)],
)
def test_coordinate_derivatives_sweep(name, basis_name, cartesian):
    _check_derivatives(name, basis_name, cartesian)


def test_coordinate_derivative_finite_difference():
    molecule, _, _ = _system("water", "def2-svp")
    fns, jacs = _jacobians("water", "def2-svp", False)
    h = 1e-4
    for key in ("S", "T", "V"):
        fn, jac = fns[key], jacs[key]
        for atom, axis in [(0, 2), (1, 0), (2, 1)]:
            step = np.zeros_like(molecule.coords)
            step[atom, axis] = h
            fd = (np.asarray(fn(molecule.coords + step)) - np.asarray(fn(molecule.coords - step))) / (2 * h)
            np.testing.assert_allclose(jac[atom, axis], fd, rtol=0, atol=1e-7)


def test_exponent_derivative_finite_difference():
    # d S / d a for one contracted d shell and one s shell, coefficients held fixed.
    molecule, basis, _ = _system("water", "def2-svp")
    coords = jnp.asarray(molecule.coords)

    def s_of(exponents):
        return oe.overlap(dataclasses.replace(basis, exponents=exponents), coords)

    jac = np.asarray(jax.jit(jax.jacfwd(s_of))(jnp.asarray(basis.exponents)))  # (nao, nao, n_shells, max_nprim)
    h = 1e-5
    for shell in (basis.shell_l.index(2), 0):
        exps = np.array(basis.exponents)
        for prim in range(basis.shell_nprim[shell]):
            up, down = exps.copy(), exps.copy()
            up[shell, prim] += h * exps[shell, prim]
            down[shell, prim] -= h * exps[shell, prim]
            fd = (np.asarray(s_of(up)) - np.asarray(s_of(down))) / (2 * h * exps[shell, prim])
            np.testing.assert_allclose(jac[:, :, shell, prim], fd, rtol=0, atol=1e-7)
    # Padding entries of the exponent array do not enter the integrals.
    padding = np.array([[p >= n for p in range(basis.exponents.shape[1])] for n in basis.shell_nprim])
    assert np.all(jac[:, :, padding] == 0.0)


# -- invariances, batching, jit -------------------------------------------------------------------------


def test_translation_invariance():
    molecule, basis, _ = _system("water", "def2-svp")
    z = molecule.atomic_numbers
    shifted = molecule.coords + np.array([1.3, -0.7, 2.9])
    for fn in (oe.overlap, oe.kinetic):
        np.testing.assert_allclose(fn(basis, shifted), fn(basis, molecule.coords), rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        oe.nuclear_attraction(basis, shifted, z), oe.nuclear_attraction(basis, molecule.coords, z), rtol=0, atol=1e-11
    )


def test_vmap_over_geometries_matches_loop():
    molecule, basis, _ = _system("water", "def2-svp")
    rng = np.random.default_rng(2)
    batch = molecule.coords[None] + 0.05 * rng.normal(size=(3,) + molecule.coords.shape)
    batched = jax.vmap(oe.overlap, in_axes=(None, 0))(basis, jnp.asarray(batch))
    looped = np.stack([oe.overlap(basis, c) for c in batch])
    np.testing.assert_allclose(batched, looped, rtol=0, atol=1e-14)


def test_overlap_eigenvalues_rotation_invariant():
    molecule, basis, _ = _system("water", "def2-svp")
    rng = np.random.default_rng(3)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation = q * np.sign(np.diag(r))
    rotated = molecule.coords @ rotation.T + np.array([0.2, 0.0, -0.4])
    ev = np.linalg.eigvalsh(np.asarray(oe.overlap(basis, molecule.coords)))
    ev_rotated = np.linalg.eigvalsh(np.asarray(oe.overlap(basis, rotated)))
    np.testing.assert_allclose(ev_rotated, ev, rtol=0, atol=1e-12)


def test_symmetric_and_positive_definite():
    molecule, basis, _ = _system("water", "def2-svp")
    s = np.asarray(oe.overlap(basis, molecule.coords))
    t = np.asarray(oe.kinetic(basis, molecule.coords))
    np.testing.assert_array_equal(s, s.T)
    np.testing.assert_array_equal(t, t.T)
    assert np.linalg.eigvalsh(s).min() > 0 and np.linalg.eigvalsh(t).min() > 0


def test_jit_does_not_retrace_for_new_coordinates():
    molecule, basis, _ = _system("water", "sto-3g")

    @jax.jit
    @chex.assert_max_traces(n=1)
    def s_and_v(basis, coords):
        return oe.overlap(basis, coords), oe.nuclear_attraction(basis, coords, molecule.atomic_numbers)

    s_and_v(basis, jnp.asarray(molecule.coords))
    s_and_v(basis, jnp.asarray(molecule.coords + 0.1))  # same structure, new geometry: no retrace
    s_and_v(dataclasses.replace(basis, exponents=basis.exponents * 1.01), jnp.asarray(molecule.coords))
    chex.clear_trace_counter()
