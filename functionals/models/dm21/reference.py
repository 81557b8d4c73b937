"""Self-consistent reference energies of the ORIGINAL DM21 code on today's PySCF -> ``reference_energies.json``.

Runs the original implementation (deepmind-research, ``density_functional_approximation_dm21``,
commit f5de0ed: ``NeuralNumInt``, its TensorFlow graph in float32 and ``compute_hfx_density``) as
a PySCF ``_numint`` on the systems of :data:`SYSTEMS` with PySCF's default grid (``Grids`` level 3,
what ``SCFOptions(pyscf_grids=True, grid_level=3)`` gives dftjax), ``conv_tol`` 1e-9 and the minao
initial guess, and writes the total energies with their settings. ``tests/functionals/test_dm21_scf.py``
runs dftjax's own SCF on the same systems and grids and compares (issue 21: 3e-4 Ha).

PySCF >= 2.2 calls ``NumInt.eval_xc_eff`` instead of ``eval_xc``: :class:`_EffAdapter` feeds the
original ``eval_xc`` the (6, N) rows it expects (rho, grad, laplacian = 0, tau; DM21 does not read
the laplacian) and converts its libxc-style derivatives with ``pyscf.dft.xc_deriv.transform_vxc``;
the original's own ``nr_rks``/``nr_uks``/``block_loop`` (local HF potential) are used unchanged.

Environment (separate from dftjax's): Python 3.11, tensorflow-cpu 2.15.1, tensorflow-hub 0.15.0,
numpy < 2, attrs, pyscf (see ``convert.py``). Run from the repository root::

    git clone https://github.com/google-deepmind/deepmind-research   # commit f5de0ed
    OMP_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 taskset -c 1 \\
        /work/venv-dm21/bin/python functionals/models/dm21/reference.py \\
        --original deepmind-research/density_functional_approximation_dm21 \\
        --checkpoints /work/shared/data/dm21 --out functionals/models/dm21/reference_energies.json

``--only NAME`` (repeatable) limits the run to some entries of :data:`SYSTEMS`; results already in
``--out`` are kept, so the script can be run in pieces.
"""
import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

FUNCTIONALS = ("DM21", "DM21m", "DM21mc", "DM21mu")
WATER = "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692"

#: (key, atom string in angstrom, basis, spin = N_alpha - N_beta, charge, functionals). Spin 0 runs
#: RKS, otherwise UKS. Ne and C are the original test's systems (its golden energies came from
#: PySCF 2.1.1, whose grids differ).
SYSTEMS = (
    ("ne_sto3g", "Ne 0 0 0", "sto-3g", 0, 0, FUNCTIONALS),
    ("c_triplet_sto3g", "C 0 0 0", "sto-3g", 2, 0, FUNCTIONALS),
    ("h2o_def2svp", WATER, "def2-svp", 0, 0, ("DM21",)),
    ("oh_def2svp", "O 0 0 0; H 0 0 0.9697", "def2-svp", 1, 0, ("DM21",)),
    ("ch2_triplet_def2svp", "C 0 0 0.1031; H 0 0.9948 -0.3093; H 0 -0.9948 -0.3093", "def2-svp", 2, 0, ("DM21",)),
    ("nh3_def2svp", "N 0 0 0.1162; H 0 0.9377 -0.2711; H 0.8121 -0.4689 -0.2711; H -0.8121 -0.4689 -0.2711",
     "def2-svp", 0, 0, ("DM21",)),
    ("hf_def2svp", "F 0 0 0; H 0 0 0.9168", "def2-svp", 0, 0, ("DM21",)),
    ("n_quartet_def2svp", "N 0 0 0", "def2-svp", 3, 0, ("DM21",)),
)

GRID_LEVEL = 3
CONV_TOL = 1e-9


def _hub_copy(checkpoints: str, tmp: str) -> str:
    """The checkpoints as TF-Hub loads them (``tfhub_module.pb``, the two bytes 08 03, added)."""
    for name in FUNCTIONALS:
        dst = os.path.join(tmp, name)
        shutil.copytree(os.path.join(checkpoints, name), dst)
        os.chmod(dst, 0o755)
        marker = os.path.join(dst, "tfhub_module.pb")
        if not os.path.exists(marker):
            with open(marker, "wb") as f:
                f.write(b"\x08\x03")
    return tmp


def _adapter(neural_numint):
    from pyscf.dft import xc_deriv

    class _EffAdapter(neural_numint.NeuralNumInt):
        """The original NeuralNumInt with PySCF >= 2.2's ``eval_xc_eff`` (first derivatives only)."""

        def eval_xc_eff(self, xc_code, rho, deriv=1, omega=None, xctype=None, verbose=None, spin=None):
            rho = np.asarray(rho)
            spin = int(rho.ndim == 3) if spin is None else spin

            def six_rows(r):  # (5, N) rho, grad, tau -> (6, N) with a zero laplacian row
                return np.concatenate([r[:4], np.zeros_like(r[:1]), r[4:5]], axis=0)

            legacy = six_rows(rho) if spin == 0 else (six_rows(rho[0]), six_rows(rho[1]))
            exc, vxc, _, _ = self.eval_xc(xc_code, legacy, spin=spin)
            return exc, xc_deriv.transform_vxc(rho, vxc, "MGGA", spin=spin), None, None

    return _EffAdapter


def _run(nni, atom, basis, spin, charge):
    from pyscf import dft, gto

    mol = gto.M(atom=atom, basis=basis, spin=spin, charge=charge, unit="angstrom", verbose=0)
    mf = dft.RKS(mol) if spin == 0 else dft.UKS(mol)
    mf.grids.level = GRID_LEVEL
    mf.conv_tol = CONV_TOL
    mf.max_cycle = 200
    mf._numint = nni
    start = time.perf_counter()
    energy = mf.kernel()
    return dict(energy=float(energy), converged=bool(mf.converged), n_grid=int(mf.grids.weights.size),
                sum_weights=float(mf.grids.weights.sum()), nao=int(mol.nao), seconds=time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", required=True, help="the original's density_functional_approximation_dm21/ folder")
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--only", action="append", default=None, help="a key of SYSTEMS (repeatable)")
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.original))
    import pyscf
    import tensorflow as tf
    from density_functional_approximation_dm21 import neural_numint

    result = {"systems": {}}
    if os.path.exists(args.out):
        with open(args.out) as f:
            result = json.load(f)
    result.update({
        "description": "Total energies (Ha) of the original DM21 code (NeuralNumInt, float32 network) "
                       "self-consistent in today's PySCF; written by functionals/models/dm21/reference.py",
        "pyscf": pyscf.__version__, "tensorflow": tf.__version__, "numpy": np.__version__,
        "grid": {"level": GRID_LEVEL, "builder": "pyscf.dft.gen_grid.Grids defaults (Treutler-Ahlrichs radial, "
                 "NWChem pruning, Becke partition)"},
        "conv_tol": CONV_TOL, "init_guess": "minao", "original_commit": "f5de0ed",
    })
    adapter = _adapter(neural_numint)
    with tempfile.TemporaryDirectory() as tmp:
        hub_dir = _hub_copy(args.checkpoints, tmp)
        nnis = {}
        for key, atom, basis, spin, charge, functionals in SYSTEMS:
            if args.only and key not in args.only:
                continue
            for name in functionals:
                if name not in nnis:
                    nnis[name] = adapter(getattr(neural_numint.Functional, name), checkpoint_path=hub_dir)
                out = _run(nnis[name], atom, basis, spin, charge)
                out.update(atom=atom, basis=basis, spin=spin, charge=charge,
                           method="RKS" if spin == 0 else "UKS", functional=name.lower(),
                           date=datetime.date.today().isoformat())
                result["systems"][f"{key}/{name.lower()}"] = out
                print(f"{key} {name}: {out['energy']:.8f} Ha, converged {out['converged']}, "
                      f"{out['n_grid']} points, {out['seconds']:.0f} s", flush=True)
                with open(args.out, "w") as f:
                    json.dump(result, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
