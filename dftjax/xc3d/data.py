"""Reference data for 3D neural XC training: CCSD(T) energies and CCSD densities of small molecules.

``dftjax data make`` (:func:`make_reference_data`) runs PySCF HF -> CCSD -> (T) (restricted for
closed shells, unrestricted for open shells, all electrons correlated) on the molecules and atoms
of :data:`TRAINING`, :data:`HELD_OUT` and :data:`ATOMS`, and caches:

* ``reference.json``: per system its geometry (PySCF atom string, angstrom), charge, spin (2S),
  set (``train``/``heldout``/``atom``), the HF, CCSD and CCSD(T) total energies (hartree), and for
  molecules the CCSD(T) atomization energy ``sum_atoms E_atom - E_mol`` (hartree, positive = bound;
  no zero-point energy); top-level ``basis``, ``method``, ``pyscf_version``, ``units``.
* ``densities.npz``: per system a (2, nao, nao) float32 array, the alpha and beta **orbital-relaxed**
  CCSD one-particle density matrices in the AO basis (PySCF's Lambda-equation ``make_rdm1`` plus
  the Z-vector orbital response, :func:`dftjax.xc3d.relaxation.relaxed_density`; spherical AOs in
  PySCF's order for the recorded basis). The density on *any*
  grid, in particular the functional's own integration grid, is ``rho_s(r) = sum_{mu nu} D^s_{mu nu}
  phi_mu(r) phi_nu(r)`` (:func:`density_on_grid`); storing the matrices instead of grid values keeps
  the cache grid independent and small (float32: relative density error 1e-7, far below the
  CCSD - DFT differences that are fitted).

The relaxed density is the derivative of the CCSD energy with respect to the one-electron
Hamiltonian (HF orbitals re-solved), so every one-electron property computed from it equals the
finite-field CCSD value (tested for dipoles to ~1e-7 au). A cache written before this change holds
unrelaxed densities (no ``"density": "relaxed"`` in its entries): ``dftjax data make`` upgrades
those densities in place and keeps their energies.

Geometries are standard experimental equilibrium structures (bond lengths/angles as listed in the
NIST CCCBDB experimental section, rounded to 1e-3 angstrom / 0.1 degree), built from internal
coordinates below; see ``dftjax/xc3d/data/README.md`` for the table and the limitations.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections import Counter
from typing import Callable, Iterable

import numpy as np

from dftjax import atomic

#: Default basis of the cached reference: small, so CCSD(T) and training stay cheap; a same-basis
#: comparison only (CCSD(T)/6-31G atomization energies are far from the basis-set limit).
DEFAULT_BASIS = "6-31g"

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
REFERENCE_FILE = "reference.json"
DENSITY_FILE = "densities.npz"

#: Ground-state 2S of the first-row atoms.
ATOM_SPIN = {"H": 1, "He": 0, "Li": 1, "Be": 0, "B": 1, "C": 2, "N": 3, "O": 2, "F": 1, "Ne": 0}


@dataclasses.dataclass(frozen=True)
class System:
    """One reference system: name, PySCF atom string (angstrom), 2S, charge, set."""

    name: str
    atom: str
    spin: int
    subset: str
    charge: int = 0

    @property
    def elements(self) -> Counter:
        return Counter(line.split()[0] for line in self.atom.split(";") if line.strip())


def _fmt(atoms: Iterable[tuple[str, float, float, float]]) -> str:
    return "; ".join(f"{s} {x:.6f} {y:.6f} {z:.6f}" for s, x, y, z in atoms)


def _diatomic(a: str, b: str, r: float) -> str:
    return _fmt([(a, 0.0, 0.0, 0.0), (b, 0.0, 0.0, r)])


def _bent(center: str, ligand: str, r: float, angle: float) -> str:
    """XY2 with bond length r (angstrom) and Y-X-Y angle (degrees), X at the origin."""
    h = math.radians(angle) / 2.0
    return _fmt([(center, 0.0, 0.0, 0.0), (ligand, r * math.sin(h), 0.0, r * math.cos(h)),
                 (ligand, -r * math.sin(h), 0.0, r * math.cos(h))])


def _pyramidal(center: str, ligand: str, r: float, angle: float) -> str:
    """C3v XY3 with bond length r and Y-X-Y angle (120 degrees: planar D3h)."""
    # in-plane radius a, height h: a^2 + h^2 = r^2, cos(angle) r^2 = -a^2/2 + h^2
    a = r * math.sqrt((1.0 - math.cos(math.radians(angle))) / 1.5)
    h = math.sqrt(max(r * r - a * a, 0.0))
    atoms = [(center, 0.0, 0.0, 0.0)]
    for k in range(3):
        phi = 2.0 * math.pi * k / 3.0
        atoms.append((ligand, a * math.cos(phi), a * math.sin(phi), -h))
    return _fmt(atoms)


def _tetrahedral(center: str, ligand: str, r: float) -> str:
    c = r / math.sqrt(3.0)
    return _fmt([(center, 0.0, 0.0, 0.0), (ligand, c, c, c), (ligand, -c, -c, c), (ligand, -c, c, -c),
                 (ligand, c, -c, -c)])


def _linear(atoms: Iterable[tuple[str, float]]) -> str:
    return _fmt([(s, 0.0, 0.0, z) for s, z in atoms])


def _ethylene(r_cc: float, r_ch: float, hcc: float) -> str:
    t = math.radians(180.0 - hcc)
    z = r_cc / 2.0
    atoms = [("C", 0.0, 0.0, z), ("C", 0.0, 0.0, -z)]
    for sign in (1.0, -1.0):
        for side in (1.0, -1.0):
            atoms.append(("H", side * r_ch * math.sin(t), 0.0, sign * (z + r_ch * math.cos(t))))
    return _fmt(atoms)


def _formaldehyde(r_co: float, r_ch: float, hco: float) -> str:
    t = math.radians(hco)
    return _fmt([("C", 0.0, 0.0, 0.0), ("O", 0.0, 0.0, r_co),
                 ("H", r_ch * math.sin(t), 0.0, r_ch * math.cos(t)),
                 ("H", -r_ch * math.sin(t), 0.0, r_ch * math.cos(t))])


#: Training molecules (with the atoms they need: at most 10 systems in all).
TRAINING = (
    System("H2", _diatomic("H", "H", 0.741), 0, "train"),
    System("CH4", _tetrahedral("C", "H", 1.087), 0, "train"),
    System("NH3", _pyramidal("N", "H", 1.012, 106.7), 0, "train"),
    System("H2O", _bent("O", "H", 0.958, 104.5), 0, "train"),
    System("HF", _diatomic("F", "H", 0.917), 0, "train"),
)

#: Held-out molecules (none in TRAINING), closed and open shell, G2-style, H-F.
HELD_OUT = (
    System("LiH", _diatomic("Li", "H", 1.596), 0, "heldout"),
    System("Li2", _diatomic("Li", "Li", 2.673), 0, "heldout"),
    System("BeH", _diatomic("Be", "H", 1.343), 1, "heldout"),
    System("BH3", _pyramidal("B", "H", 1.190, 120.0), 0, "heldout"),
    System("CH", _diatomic("C", "H", 1.120), 1, "heldout"),
    System("CH2", _bent("C", "H", 1.075, 133.9), 2, "heldout"),
    System("CH3", _pyramidal("C", "H", 1.079, 120.0), 1, "heldout"),
    System("NH", _diatomic("N", "H", 1.036), 2, "heldout"),
    System("NH2", _bent("N", "H", 1.024, 103.4), 1, "heldout"),
    System("OH", _diatomic("O", "H", 0.970), 1, "heldout"),
    System("C2H2", _linear([("H", -1.6645), ("C", -0.6015), ("C", 0.6015), ("H", 1.6645)]), 0, "heldout"),
    System("C2H4", _ethylene(1.339, 1.086, 121.2), 0, "heldout"),
    System("HCN", _linear([("H", -1.065), ("C", 0.0), ("N", 1.153)]), 0, "heldout"),
    System("CO", _diatomic("C", "O", 1.128), 0, "heldout"),
    System("N2", _diatomic("N", "N", 1.098), 0, "heldout"),
    System("NO", _diatomic("N", "O", 1.151), 1, "heldout"),
    System("O2", _diatomic("O", "O", 1.208), 2, "heldout"),
    System("F2", _diatomic("F", "F", 1.412), 0, "heldout"),
    System("CO2", _linear([("O", -1.160), ("C", 0.0), ("O", 1.160)]), 0, "heldout"),
    System("CH2O", _formaldehyde(1.208, 1.116, 121.8), 0, "heldout"),
    System("LiF", _diatomic("Li", "F", 1.564), 0, "heldout"),
    System("CN", _diatomic("C", "N", 1.172), 1, "heldout"),
    System("BF", _diatomic("B", "F", 1.263), 0, "heldout"),
)

#: Free atoms of the atomization energies (training ones: H, C, N, O, F).
ATOMS = tuple(System(s, f"{s} 0 0 0", ATOM_SPIN[s], "atom") for s in ("H", "C", "N", "O", "F", "Li", "Be", "B"))
TRAINING_ATOMS = ("H", "C", "N", "O", "F")

ALL_SYSTEMS = {s.name: s for s in TRAINING + HELD_OUT + ATOMS}

#: Systems whose open-shell ground state is spatially degenerate (a singly occupied or three-electron
#: pi shell, a partly filled atomic p shell): UHF/CCSD and UKS each pick an arbitrary orientation
#: of the occupied orbital, so the difference of their densities measures that choice, not the
#: functional (e.g. int |drho| ~ 1 electron for the CH radical with PBE). Density errors leave
#: them out; their energies are well defined and are used.
ORIENTATION_DEGENERATE = frozenset({"CH", "OH", "NO", "B", "C", "O", "F"})


def atom_key(symbol: str) -> str:
    """Name of the free-atom entry of element ``symbol`` (atoms are stored under their symbol)."""
    return symbol


def systems_of(subset: str) -> tuple[System, ...]:
    """``train`` (molecules and their atoms), ``heldout`` (molecules and every atom), ``all``."""
    if subset == "train":
        return TRAINING + tuple(a for a in ATOMS if a.name in TRAINING_ATOMS)
    if subset == "heldout":
        return HELD_OUT + ATOMS
    if subset == "all":
        return TRAINING + HELD_OUT + ATOMS
    raise ValueError(f"unknown subset {subset!r}: expected 'train', 'heldout' or 'all'")


# ---------------------------------------------------------------------------------------------
# CCSD(T) reference


def ccsd_t_reference(system: System, basis: str, *, triples: bool = True) -> tuple[dict, np.ndarray]:
    """HF, CCSD, CCSD(T) energies (Ha) and the (2, nao, nao) orbital-relaxed CCSD AO density matrices.

    ``triples=False`` skips the (T) correction (``e_ccsd_t`` is then absent): used to upgrade the
    densities of a cache whose energies are kept.
    """
    from pyscf import cc, gto, scf

    from dftjax.xc3d.relaxation import relaxed_density

    mol = gto.M(atom=system.atom, basis=basis, spin=system.spin, charge=system.charge, unit="angstrom",
                verbose=0)
    if system.spin == 0:
        mf = scf.RHF(mol)
    else:
        mf = scf.UHF(mol)
    mf.conv_tol = 1e-10
    mf.max_cycle = 200
    mf.kernel()
    if not mf.converged:
        mf = scf.newton(mf).run()
    if not mf.converged:
        raise RuntimeError(f"HF did not converge for {system.name}")
    n_alpha, n_beta = mol.nelec
    rotations = n_alpha * (mol.nao - n_alpha) + n_beta * (mol.nao - n_beta)
    if system.spin != 0 and rotations > 0:
        # stability check: follow an internal instability once (open-shell UHF can land on saddles)
        mo, _, stable, _ = mf.stability(return_status=True)
        if not stable:
            mf.kernel(mf.make_rdm1(mo, mf.mo_occ))
    relaxation = {}
    if mol.nelectron == 1:
        # one electron: HF is exact (CCSD has no amplitudes, and PySCF's UCCSD fails on empty ones)
        e_ccsd = e_ccsd_t = float(mf.e_tot)
        dms = np.stack([mf.mo_coeff[s] @ np.diag(mf.mo_occ[s]) @ mf.mo_coeff[s].T for s in (0, 1)])
    else:
        solver = cc.CCSD(mf)
        solver.conv_tol = 1e-9
        solver.max_cycle = 200
        solver.kernel()
        if not solver.converged:
            raise RuntimeError(f"CCSD did not converge for {system.name}")
        e_ccsd = float(solver.e_tot)
        e_ccsd_t = e_ccsd + float(solver.ccsd_t()) if triples else None
        dms, relaxation = relaxed_density(mol, mf, solver)  # Lambda equations + Z-vector
    s2 = 0.0 if system.spin == 0 else float(mf.spin_square()[0])
    nelec = float(np.einsum("sij,ji->", dms, mol.intor("int1e_ovlp")))
    energies = {"e_hf": float(mf.e_tot), "e_ccsd": e_ccsd, "nao": int(mol.nao),
                "n_electrons": int(mol.nelectron), "density_trace": nelec, "uhf_s2": s2,
                "density": "relaxed", **{f"relaxation_{k}": v for k, v in relaxation.items()}}
    if e_ccsd_t is not None:
        energies["e_ccsd_t"] = e_ccsd_t
    return energies, dms


def _progress(message: str) -> None:
    print(f"[xc3d data] {message}", file=sys.stderr, flush=True)


def make_reference_data(names: Iterable[str], *, basis: str = DEFAULT_BASIS, out_dir: str = DATA_DIR,
                        progress: Callable[[str], None] = _progress) -> dict:
    """Compute (or reuse) CCSD(T) references for ``names``; write ``out_dir``'s cache atomically.

    Systems already in the cache with the same basis are kept (the command resumes). After each
    system both files are rewritten (temporary file + ``os.replace``), so an interrupted run keeps
    what it finished. Atomization energies are (re)computed for every molecule whose atoms are
    present.

    Returns:
        The reference payload (as written to ``reference.json``).
    Raises:
        ValueError: unknown system name, or an existing cache made with another basis.
    """
    names = list(names)
    unknown = [n for n in names if n not in ALL_SYSTEMS]
    if unknown:
        raise ValueError(f"unknown reference system {unknown[0]!r}; known: {sorted(ALL_SYSTEMS)}")
    from pyscf import __version__ as pyscf_version
    from pyscf import gto

    try:
        gto.M(atom="H 0 0 0; H 0 0 0.74", basis=basis, verbose=0)
    except Exception as err:  # PySCF raises various errors for unknown basis names
        raise ValueError(f"unknown basis {basis!r} for PySCF: {err}") from err
    os.makedirs(out_dir, exist_ok=True)
    payload, densities = _read_cache(out_dir)
    if payload and payload.get("basis") != basis:
        raise ValueError(f"{out_dir} holds {payload.get('basis')!r} data; use another --out for {basis!r}")
    payload = payload or {}
    payload.update({"basis": basis, "method": "CCSD(T) energies; orbital-relaxed CCSD densities (AO basis)",
                    "correlated_electrons": "all", "pyscf_version": pyscf_version,
                    "units": {"energy": "hartree", "geometry": "angstrom"},
                    "density_file": DENSITY_FILE})
    systems = payload.setdefault("systems", {})
    for name in names:
        system = ALL_SYSTEMS[name]
        cached = systems.get(name)
        if cached is not None and name in densities and cached.get("density") == "relaxed":
            progress(f"{name}: cached")
            continue
        start = time.perf_counter()
        upgrade = cached is not None and "e_ccsd_t" in cached  # energies kept, densities relaxed
        energies, dms = ccsd_t_reference(system, basis, triples=not upgrade)
        if upgrade and abs(energies["e_ccsd"] - cached["e_ccsd"]) > 1e-6:
            raise RuntimeError(f"{name}: CCSD energy {energies['e_ccsd']:.8f} differs from the cached "
                               f"{cached['e_ccsd']:.8f} Ha; remove the cache entry and rerun")
        entry = {"atom": system.atom, "spin": system.spin, "charge": system.charge,
                 "subset": system.subset, **energies}
        elapsed = round(time.perf_counter() - start, 2)
        if upgrade:  # keep the cached energies and their timing; record the density's
            entry = {**cached, **entry, "e_hf": cached["e_hf"], "e_ccsd": cached["e_ccsd"],
                     "density_wall_time_s": elapsed}
        else:
            entry["wall_time_s"] = elapsed
        systems[name] = entry
        densities[name] = dms.astype(np.float32)
        _update_atomization(systems)
        atomic.savez(os.path.join(out_dir, DENSITY_FILE), compressed=True, **densities)
        atomic.write_json(os.path.join(out_dir, REFERENCE_FILE), payload, indent=1, sort_keys=True)
        what = "relaxed density" if upgrade else f"E_CCSD(T) = {entry['e_ccsd_t']:.8f} Ha"
        progress(f"{name}: {what} ({time.perf_counter() - start:.1f} s)")
    _update_atomization(systems)
    atomic.write_json(os.path.join(out_dir, REFERENCE_FILE), payload, indent=1, sort_keys=True)
    return payload


def _update_atomization(systems: dict) -> None:
    for name, entry in systems.items():
        if entry["subset"] == "atom":
            continue
        counts = ALL_SYSTEMS[name].elements if name in ALL_SYSTEMS else Counter(
            line.split()[0] for line in entry["atom"].split(";") if line.strip())
        if all(atom_key(s) in systems for s in counts):
            entry["atomization_energy"] = (sum(n * systems[atom_key(s)]["e_ccsd_t"] for s, n in counts.items())
                                           - entry["e_ccsd_t"])


def _read_cache(directory: str) -> tuple[dict, dict]:
    ref = os.path.join(directory, REFERENCE_FILE)
    den = os.path.join(directory, DENSITY_FILE)
    payload = {}
    densities = {}
    if os.path.exists(ref):
        with open(ref) as handle:
            payload = json.load(handle)
    if os.path.exists(den):
        with np.load(den, allow_pickle=False) as data:
            densities = {k: data[k] for k in data.files}
    return payload, densities


# ---------------------------------------------------------------------------------------------
# Loading


@dataclasses.dataclass(frozen=True)
class Reference:
    """A cached reference system: geometry, spin, energies (Ha) and CCSD AO density matrices."""

    name: str
    atom: str
    spin: int
    charge: int
    subset: str
    energy: float  # CCSD(T) total energy, Ha
    atomization_energy: float | None  # Ha, None for atoms
    dm: np.ndarray  # (2, nao, nao) float64
    elements: Counter
    density: str = "relaxed"  # "relaxed" or "unrelaxed" CCSD (caches written before relaxation)

    def molecule(self):
        """The :class:`basis.molecule.Molecule` (bohr inside)."""
        from basis.molecule import make_molecule

        return make_molecule(self.atom, charge=self.charge, spin=self.spin)


def load_reference(directory: str = DATA_DIR, names: Iterable[str] | None = None) -> tuple[dict, str]:
    """``({name: Reference}, basis)`` from a cache written by :func:`make_reference_data`.

    Raises:
        ValueError: no cache in ``directory``, or a requested name missing from it.
    """
    payload, densities = _read_cache(directory)
    if not payload:
        raise ValueError(f"no reference data in {directory!r}: run 'dftjax data make' first")
    systems = payload["systems"]
    names = list(systems) if names is None else list(names)
    missing = [n for n in names if n not in systems or n not in densities]
    if missing:
        raise ValueError(f"reference data in {directory!r} lacks {missing}; run 'dftjax data make'")
    out = {}
    for name in names:
        entry = systems[name]
        out[name] = Reference(
            name=name, atom=entry["atom"], spin=int(entry["spin"]), charge=int(entry["charge"]),
            subset=entry["subset"], energy=float(entry["e_ccsd_t"]),
            atomization_energy=entry.get("atomization_energy"),
            dm=np.asarray(densities[name], dtype=np.float64),
            elements=Counter(line.split()[0] for line in entry["atom"].split(";") if line.strip()),
            density=entry.get("density", "unrelaxed"))
    return out, payload["basis"]


def density_on_grid(ao, dm):
    """(n,) total density ``sum_s sum_{mu nu} D^s_{mu nu} phi_mu phi_nu`` on grid points.

    Args:
        ao: (n_comp, n, nao) or (n, nao) AO values (the first component is used).
        dm: (2, nao, nao) spin density matrices (or (nao, nao) total).
    """
    import jax.numpy as jnp

    phi = ao[0] if ao.ndim == 3 else ao
    total = dm[0] + dm[1] if dm.ndim == 3 else dm
    return jnp.einsum("gi,ij,gj->g", phi, total, phi)
