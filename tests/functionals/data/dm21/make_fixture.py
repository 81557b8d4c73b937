"""Write ``dm21_parity.npz``: inputs and outputs of the original DM21 code, for ``test_dm21.py``.

Runs the original implementation (deepmind-research, ``density_functional_approximation_dm21``,
commit f5de0ed: ``NeuralNumInt`` building its TensorFlow graph around the TF-Hub modules, and
``compute_hfx_density`` for the local exact-exchange features) in a separate TensorFlow
environment (see ``functionals/models/dm21/convert.py`` for its setup; add ``pip install attrs
pyscf``)::

    git clone https://github.com/google-deepmind/deepmind-research   # commit f5de0ed
    cd /work/main
    OMP_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 taskset -c 1 \\
        /work/venv-dm21/bin/python tests/functionals/data/dm21/make_fixture.py \\
        --original deepmind-research/density_functional_approximation_dm21 \\
        --checkpoints /work/shared/data/dm21 --out tests/functionals/data/dm21/dm21_parity.npz

Grid points (200): 100 of water (RKS, B3LYP density, def2-SVP) and 80 of the triplet carbon atom
(UKS, B3LYP, def2-SVP), chosen at evenly spaced quantiles of the density on PySCF's default grid
(tails, down to 1e-42 bohr^-3, to nuclei), plus 20 edge cases: a carbon point (rho 8e-7) scaled
down to tiny densities (8e-21 .. 8e-16), one spin channel empty (the carbon points with the beta
or alpha channel zeroed: density, gradient, tau and exact-exchange features), and zero density. The features are exactly what the original feeds its
network (``NeuralNumInt.construct_functional_inputs``: PySCF's ``(6, n)`` rows rho, d/dx, d/dy,
d/dz, laplacian, tau per spin; ``hfx (n, 2)`` per spin at omega = 0 and 0.4); the outputs are the
original graph's own (float32): the XC energy density per volume ``local_xc`` (the hub module's
``grid_contribution``) and its gradients ``vrho``, ``vsigma`` (with respect to |grad rho_a|^2,
|grad rho_b|^2, |grad rho|^2), ``vtau``, ``vhf`` (``tf.gradients`` in ``_build_graph``), for each of
DM21, DM21m, DM21mc, DM21mu. The density matrices and the points' coordinates are stored too, so
the exact-exchange features can be recomputed from them. Written 2026-12-07 with tensorflow-cpu
2.15.1, tensorflow-hub 0.15.0, PySCF 2.15.0, numpy 1.26.4; a rerun gives a bit-identical file.
"""
import argparse
import os
import sys
import tempfile

import numpy as np
from pyscf import dft, gto
from pyscf.dft import numint

# the reference script's checkpoint handling (stdlib + NumPy at import), shared rather than copied
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..",
                                "functionals", "models", "dm21"))
from reference import FUNCTIONALS, WATER, _hub_copy  # noqa: E402


def _quantile_points(rho_total: np.ndarray, n: int) -> np.ndarray:
    order = np.argsort(rho_total)
    return np.sort(order[np.linspace(0, len(order) - 1, n).round().astype(int)])


def _system(atom, spin, n_points, nni_cls):
    mol = gto.M(atom=atom, basis="def2-svp", spin=spin, verbose=0)
    mf = (dft.RKS(mol) if spin == 0 else dft.UKS(mol)).set(xc="b3lyp")
    mf.grids.build()
    mf.kernel()
    dm = mf.make_rdm1()
    coords_all = mf.grids.coords
    ao0 = numint.eval_ao(mol, coords_all, deriv=0)
    dms = (dm / 2, dm / 2) if spin == 0 else dm
    rho_total = sum(numint.eval_rho(mol, ao0, d, xctype="LDA") for d in dms)
    idx = _quantile_points(rho_total, n_points)
    coords, weights = coords_all[idx], mf.grids.weights[idx]
    ao = numint.eval_ao(mol, coords, deriv=2)
    if spin == 0:
        rho = numint.eval_rho(mol, ao, dm, xctype="MGGA", with_lapl=True)
    else:
        rho = tuple(numint.eval_rho(mol, ao, d, xctype="MGGA", with_lapl=True) for d in dm)
    inputs, _ = nni_cls.construct_functional_inputs(mol=mol, dms=dm, spin=spin, coords=coords,
                                                   weights=weights, rho=rho, ao=ao[0])
    spin_dms = np.stack(dms)
    return dict(rho_a=np.asarray(inputs.rho_a), rho_b=np.asarray(inputs.rho_b),
                hfx_a=np.asarray(inputs.hfx_a), hfx_b=np.asarray(inputs.hfx_b),
                coords=coords, weights=weights), spin_dms, mf.e_tot


def _edge_cases(carbon):
    """20 points: tiny densities, an empty spin channel, zero density."""
    rows = {k: [] for k in ("rho_a", "rho_b", "hfx_a", "hfx_b")}
    src = {k: carbon[k] for k in rows}
    n = src["rho_a"].shape[1]
    pick = np.linspace(n // 4, n - 1, 8).round().astype(int)
    # Tiny densities: one point's rho, gradient and tau times s, its exact-exchange energy densities
    # times s^(4/3) (as e_x scales with rho^(4/3)): not a density of any molecule, but magnitudes
    # of the far tail with the original's feature ratios.
    for s in (1e-14, 1e-12, 1e-10, 1e-9):
        j = pick[-1]
        rows["rho_a"].append(src["rho_a"][:, j] * s)
        rows["rho_b"].append(src["rho_b"][:, j] * s)
        rows["hfx_a"].append(src["hfx_a"][j] * s ** (4 / 3))
        rows["hfx_b"].append(src["hfx_b"][j] * s ** (4 / 3))
    for j in pick:  # beta channel empty (fully polarised)
        rows["rho_a"].append(src["rho_a"][:, j])
        rows["rho_b"].append(np.zeros(6))
        rows["hfx_a"].append(src["hfx_a"][j])
        rows["hfx_b"].append(np.zeros(2))
    for j in pick[:6]:  # alpha channel empty
        rows["rho_a"].append(np.zeros(6))
        rows["rho_b"].append(src["rho_a"][:, j])
        rows["hfx_a"].append(np.zeros(2))
        rows["hfx_b"].append(src["hfx_a"][j])
    for _ in range(2):  # no density at all
        rows["rho_a"].append(np.zeros(6))
        rows["rho_b"].append(np.zeros(6))
        rows["hfx_a"].append(np.zeros(2))
        rows["hfx_b"].append(np.zeros(2))
    out = dict(rho_a=np.stack(rows["rho_a"], axis=1), rho_b=np.stack(rows["rho_b"], axis=1),
               hfx_a=np.stack(rows["hfx_a"]), hfx_b=np.stack(rows["hfx_b"]))
    out["coords"] = np.zeros((out["hfx_a"].shape[0], 3))
    out["weights"] = np.ones(out["hfx_a"].shape[0])
    return out


def _run_original(nni, inputs):
    """The original graph's energy density and gradients on ``inputs`` (float32 inside)."""
    import attr
    local_xc = nni._vxc.op.inputs[0]  # _vxc = local_xc / (rho_a + rho_b + 1e-12)
    feed = dict(zip(attr.asdict(nni._placeholders).values(), attr.asdict(inputs).values()))
    with nni._graph.as_default():
        e, vrho, vsigma, vtau, vhf = nni._session.run(
            [local_xc, nni._vrho, nni._vsigma, nni._vtau, nni._vhf], feed_dict=feed)
    squeeze = lambda vs: np.stack([v[:, 0] for v in vs])
    return dict(local_xc=e, vrho=squeeze(vrho), vsigma=squeeze(vsigma), vtau=squeeze(vtau),
                vhf=np.stack(vhf))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", required=True,
                        help="the original's density_functional_approximation_dm21/ folder")
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.original))
    from density_functional_approximation_dm21 import neural_numint

    with tempfile.TemporaryDirectory() as tmp:
        hub_dir = _hub_copy(args.checkpoints, tmp)
        nnis = {name: neural_numint.NeuralNumInt(getattr(neural_numint.Functional, name),
                                                 checkpoint_path=hub_dir) for name in FUNCTIONALS}
        feature_builder = nnis["DM21"]
        water, water_dm, water_e = _system(WATER, 0, 100, feature_builder)
        carbon, carbon_dm, carbon_e = _system("C 0 0 0", 2, 80, feature_builder)
        edge = _edge_cases(carbon)
        parts = (water, carbon, edge)
        inputs = {k: np.concatenate([p[k] for p in parts], axis=1 if k.startswith("rho") else 0)
                  for k in water}
        fixture = {f"input/{k}": v for k, v in inputs.items()}
        fixture["system"] = np.array([0] * 100 + [1] * 80 + [2] * len(edge["weights"]))
        fixture["water/dm"] = water_dm
        fixture["carbon/dm"] = carbon_dm
        fixture["water/atom"] = np.array(WATER)
        fixture["carbon/atom"] = np.array("C 0 0 0")
        fixture["b3lyp_energies"] = np.array([water_e, carbon_e])
        ff = neural_numint.FunctionalInputs(rho_a=inputs["rho_a"], rho_b=inputs["rho_b"],
                                            hfx_a=inputs["hfx_a"], hfx_b=inputs["hfx_b"],
                                            grid_coords=inputs["coords"],
                                            grid_weights=np.ones_like(inputs["weights"]))
        for name, nni in nnis.items():
            for k, v in _run_original(nni, ff).items():
                fixture[f"{name}/{k}"] = v
    np.savez_compressed(args.out, **fixture)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes); B3LYP energies {water_e:.8f} {carbon_e:.8f}")


if __name__ == "__main__":
    main()
