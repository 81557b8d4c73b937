"""Write the tutorial notebooks (nbformat 4) from the cells below, without outputs.

    python notebooks/build_notebooks.py                   # rewrite all four (outputs dropped)
    python notebooks/execute.py notebooks/NAME.ipynb      # then run one and store its outputs

The cell sources live here so that the notebooks can be regenerated and reviewed as plain Python;
``tests/test_notebooks.py`` checks that the stored notebooks have exactly these sources.
"""

from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

QUICK_FLAG = '''\
import os
# DFTJAX_NOTEBOOK_QUICK=1 shrinks the run to a smoke test (used by tests/test_notebooks.py only)
QUICK = os.environ.get("DFTJAX_NOTEBOOK_QUICK") == "1"'''

FIRST_SCF = [
    ("markdown", '''\
# A first SCF, its forces, and what makes dftjax differentiable

dftjax solves the Kohn-Sham equations in pure JAX: integrals, grid, exchange-correlation potential
and the SCF loop are all JAX functions, so `jax.grad` flows through the whole calculation.
This notebook

1. converges PBE/def2-SVP for water and compares the energy with PySCF on the same settings;
2. computes the forces as `-jax.grad(E)` and compares them with PySCF's analytic gradients;
3. differentiates the energy with respect to the parameters of the PBE functional itself.

Units are atomic throughout: energies in hartree (Ha), lengths in bohr, forces in Ha/bohr.
Coordinates are *entered* in angstrom, as in PySCF, and converted to bohr on input.'''),
    ("code", '''\
import time

import numpy as np
import jax
import jax.numpy as jnp

import dftjax  # importing dftjax switches JAX to float64
from basis.molecule import make_molecule
from dftjax.scf import SCFOptions, run_scf

water = make_molecule("O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692")  # angstrom in
print("coordinates (bohr):")
print(np.round(water.coords, 6))'''),
    ("markdown", '''\
## 1. The SCF

`SCFOptions` is a frozen dataclass: functional and basis by their PySCF names, the integration grid
by PySCF's `grid_level` (dftjax builds the same Treutler-Ahlrichs / Lebedev / Becke grid as PySCF at
each level), convergence thresholds in Ha. Level 2 keeps this notebook fast; the energy and forces
below are exact derivatives *on that grid*, which is what we compare with PySCF.'''),
    ("code", '''\
options = SCFOptions(xc="pbe", basis="def2-svp", grid_level=2, conv_tol=1e-11, conv_tol_grad=1e-7)
result = run_scf(water, options)
print(f"E(dftjax) = {result.energy:.10f} Ha   converged={result.converged} in {result.iterations} iterations "
      f"({result.wall_time_s:.1f} s including compilation)")
for name, value in result.energy_parts.items():
    print(f"  {name:>10s} {value:16.10f}")
print("HOMO-LUMO gap (eV):", round(result.homo_lumo_gap * 27.211386, 3))
print("dipole (e bohr):   ", np.round(result.dipole, 5))'''),
    ("markdown", '''\
## 2. The same calculation in PySCF

Same molecule, basis, functional, grid level and convergence threshold. The two codes evaluate the
same integrals on the same grid, so the energies should agree to the SCF convergence (far below
1 microhartree).'''),
    ("code", '''\
from pyscf import dft

mol = water.to_pyscf(basis="def2-svp")
mf = dft.RKS(mol, xc="pbe")
mf.grids.level = 2
mf.conv_tol = 1e-11
mf.verbose = 0
e_pyscf = mf.kernel()
print(f"E(PySCF)  = {e_pyscf:.10f} Ha")
print(f"E(dftjax) - E(PySCF) = {result.energy - e_pyscf:.2e} Ha")'''),
    ("markdown", '''\
## 3. Forces: `-jax.grad` of the SCF energy

`dftjax.properties.forces` differentiates the converged energy with respect to the nuclear
positions. Everything that depends on them is differentiated: integrals, basis-function centres, and
the grid itself (points move with the atoms and the Becke partition weights change). The SCF
solution enters through the *implicit* adjoint (implicit function theorem at the converged fixed
point), so memory does not grow with the number of iterations.

PySCF's reference is its analytic gradient with `grid_response = True`, the exact derivative of its
energy on a grid that moves with the atoms. Forces on an isolated molecule must also sum to zero.'''),
    ("code", '''\
from dftjax.properties import forces

start = time.perf_counter()
f_dftjax = forces(water, options, result=result)   # (n_atoms, 3) Ha/bohr, starts from the converged density
print(f"forces in {time.perf_counter() - start:.1f} s (including compilation)")

gradient = mf.nuc_grad_method()
gradient.grid_response = True
gradient.verbose = 0
f_pyscf = -gradient.kernel()

print("atom   dftjax F_x, F_y, F_z (Ha/bohr)           PySCF F_x, F_y, F_z")
for symbol, a, b in zip(["O", "H", "H"], f_dftjax, f_pyscf):
    print(f"{symbol:>3s}  {a[0]:12.8f} {a[1]:12.8f} {a[2]:12.8f}   {b[0]:12.8f} {b[1]:12.8f} {b[2]:12.8f}")
print(f"max |F(dftjax) - F(PySCF)| = {np.abs(f_dftjax - f_pyscf).max():.2e} Ha/bohr")
print(f"|sum of forces|            = {np.abs(f_dftjax.sum(axis=0)).max():.2e} Ha/bohr")'''),
    ("markdown", '''\
## 4. Differentiating through the functional

The exchange-correlation functional is a pure function `e(params, features)` whose parameters are
an ordinary JAX pytree. For PBE exchange they are the enhancement-factor constants kappa and mu:

$$F_x(s) = 1 + \\kappa - \\frac{\\kappa}{1 + \\mu s^2 / \\kappa}.$$

`dftjax.properties.parameter_gradient` returns `dE/dparams` of the self-consistent energy (the
same implicit adjoint as the forces). This is what training a functional on SCF outputs needs.
We check two components against central finite differences of two full SCF calculations each.'''),
    ("code", '''\
from dftjax.properties import parameter_gradient
from functionals import get_functional

pbe_params = get_functional("pbe").params          # (exchange params, correlation params)
print("PBE exchange parameters:", pbe_params[0])
energy, d_params = parameter_gradient(water, options)
print(f"E = {float(energy):.10f} Ha")
print(f"dE/dkappa = {float(d_params[0]['kappa']):+.8f} Ha   dE/dmu = {float(d_params[0]['mu']):+.8f} Ha")

step = 1e-4
for name in ("kappa", "mu"):
    energies = []
    for sign in (+1, -1):
        shifted = ({**pbe_params[0], name: pbe_params[0][name] + sign * step}, pbe_params[1])
        energies.append(run_scf(water, options, params=shifted).energy)
    finite_difference = (energies[0] - energies[1]) / (2 * step)
    print(f"dE/d{name}: jax.grad {float(d_params[0][name]):+.8f}   finite difference {finite_difference:+.8f}   "
          f"difference {abs(float(d_params[0][name]) - finite_difference):.1e}")'''),
    ("markdown", '''\
## 5. A small geometry optimisation

With energies and forces from one jitted function (compiled once for every geometry), a geometry
optimisation is SciPy's BFGS on `(E, -F)`; `dftjax.opt.optimize_geometry` starts every SCF from the
previous density. We start from a water molecule with a stretched O-H bond (1.1 angstrom) and
stop at max |F| < 4.5e-4 Ha/bohr (Gaussian's default).'''),
    ("code", '''\
import matplotlib.pyplot as plt
from dftjax.opt import optimize_geometry

stretched = make_molecule("O 0 0 0.1173; H 0 0.87 -0.55; H 0 -0.7572 -0.4692")
start = time.perf_counter()
opt = optimize_geometry(stretched, options)
print(f"converged={opt.converged} after {opt.iterations} BFGS steps, {opt.evaluations} SCF+force evaluations, "
      f"{time.perf_counter() - start:.1f} s")
print(f"E_final = {opt.energy:.8f} Ha, max |F| = {opt.max_force:.1e} Ha/bohr")
bohr_to_angstrom = 0.52917721
for h in (1, 2):
    r = np.linalg.norm(opt.molecule.coords[h] - opt.molecule.coords[0]) * bohr_to_angstrom
    print(f"r(O-H{h}) = {r:.4f} angstrom")

fig, ax = plt.subplots(figsize=(5, 3))
ax.semilogy(np.arange(1, len(opt.energies) + 1), np.array(opt.energies) - opt.energy + 1e-10, "o-")
ax.set_xlabel("BFGS step")
ax.set_ylabel("E - E_final (Ha)")
ax.set_title("water, PBE/def2-SVP")
fig.tight_layout()'''),
]

KSR_1D = [
    ("markdown", '''\
# Training a neural XC functional through the Kohn-Sham equations (1D)

The Kohn-Sham regularizer (KSR) of Li et al., PRL 126, 036401 (2021): a neural exchange-correlation
functional is trained on the *output of K unrolled Kohn-Sham iterations*, differentiating through
every iteration. The model is a 1D H2 molecule with exponential-Coulomb interactions (Baker et al.,
PRB 91, 235141 (2015)), for which exact (DMRG) energies and densities ship with dftjax.

Training uses only two bond lengths, R = 1.28 and 3.84 bohr; with K = 15 iterations the loss is

$$L = \\text{mean}_m \\frac{\\sum_{k \\ge 10} w_k (E_{k,m} - E_m^\\text{DMRG})^2}{\\sum_{k \\ge 10} w_k}
      + \\frac{1}{4}\\,\\text{mean}_m \\int (n_{K,m} - n_m^\\text{DMRG})^2 dx, \\qquad w_k = 0.9^{K-1-k}:$$

the discounted energy trajectory of the last 5 iterations (the first 10 are far from converged
whatever the functional) and the final density, weighted 1/4, as in the paper's code.

The trained functional is then tested on 32 bond lengths from 0.4 to 6 bohr, against DMRG and
against the 1D LDA. Energies are in hartree (errors in mHa), lengths in bohr; total energies include
the nuclear repulsion. The paper's threshold of chemical accuracy is 1.6 mHa.'''),
    ("code", QUICK_FLAG + '''

import time
import numpy as np
import matplotlib.pyplot as plt

import dftjax  # float64
from dftjax import ksr
from dftjax.oned import cli, data
from dftjax.oned.experiment import CHEMICAL_ACCURACY, h2_experiment

dataset = data.load_dataset("h2")
print(f"{len(dataset.distances_x100)} H2 geometries, grid of {dataset.grid.size} points "
      f"(spacing {dataset.grid[1] - dataset.grid[0]:.2f} bohr), {dataset.num_electrons} electrons")
print("training bond lengths (bohr):", [r / 100 for r in data.H2_TRAIN_DISTANCES_X100])
print("validation bond lengths (bohr):", [r / 100 for r in data.H2_VALIDATION_DISTANCES_X100])'''),
    ("markdown", '''\
## Training

The `global` model of the paper: a convolutional network on the density (bias-free convolutions,
negativity transform -silu on the output) with a learned global (exponential-kernel) convolution and
a self-interaction gate. Each optimiser step runs K = 15 damped Kohn-Sham iterations for both
training molecules (`lax.scan`, vmapped over the molecules; linear density mixing 0.5 whose output
fraction decays by 0.9 per iteration) and back-propagates through all of them; optax L-BFGS, as in
the paper. The parameters of the lowest validation loss (R = 1.68 and 4.40 bohr, checked every 5
steps) are kept.

The settings are those of `dftjax train ksr1d` (taken from `dftjax.oned.cli`, so the notebook and the
command line cannot drift apart): 150 L-BFGS steps, about 2 minutes on two CPU cores.'''),
    ("code", '''\
import argparse

# the defaults of `dftjax train ksr1d`, read from its own argument parser and constants
parser = argparse.ArgumentParser()
cli.add_ksr1d(parser.add_subparsers())
defaults = parser.parse_args(["ksr1d"])
options = ksr.KSROptions(steps=3 if QUICK else defaults.steps, num_iterations=defaults.iterations,
                         optimizer=defaults.optimizer, seed=defaults.seed, **cli.DEFAULT_TRAINING)
model_options = cli.DEFAULT_MODEL_OPTIONS[defaults.model]
print(options)
print(f"model {defaults.model!r} with options {model_options}")

def progress(message, every=10):
    # the trainer reports every step; print every tenth one
    if not message.startswith("step") or int(message.split()[1].split("/")[0]) % every == 0:
        print(message, flush=True)

result = h2_experiment(defaults.model, options, model_options=model_options, progress=progress)
print(f"{result['steps']} steps in {result['train_time_s']:.0f} s of training "
      f"({result['wall_time_s']:.0f} s with testing and LDA); best validation at step {result['best_step']}")'''),
    ("markdown", '''\
## Test errors on the dissociation curve

Mean absolute error of the total energy over the 32 test geometries, against DMRG.'''),
    ("code", '''\
print(f"KSR-global: MAE {result['mae_mha']:.3f} mHa, max error {result['max_error_mha']:.3f} mHa, "
      f"mean int|n - n_DMRG| dx = {result['mean_density_error']:.4f}")
print(f"LDA:        MAE {result['lda_mae_mha']:.3f} mHa, max error {result['lda_max_error_mha']:.3f} mHa, "
      f"mean int|n - n_DMRG| dx = {result['lda_mean_density_error']:.4f}")
within = sum(abs(row["energy"] - row["dmrg_energy"]) < CHEMICAL_ACCURACY for row in result["test"])
print(f"KSR within chemical accuracy (1.6 mHa) at {within} of {len(result['test'])} test bond lengths")'''),
    ("code", '''\
rows = result["test"]
r = np.array([row["distance"] for row in rows])
e_ksr = np.array([row["energy"] for row in rows])
e_lda = np.array([row["lda_energy"] for row in rows])
e_dmrg = np.array([row["dmrg_energy"] for row in rows])

fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(6, 8), sharex=True, height_ratios=(2, 1, 1))
top.plot(r, e_dmrg, "k-", label="DMRG (exact)")
top.plot(r, e_lda, "--", color="tab:orange", label="LDA")
top.plot(r, e_ksr, "o", color="tab:blue", ms=4, label="KSR-global")
for x in (1.28, 3.84):
    top.axvline(x, color="0.8", lw=0.8)
top.set_ylabel("E + V_nn (Ha)")
top.set_title("1D H2 dissociation (training geometries: grey lines)")
top.legend()
# the errors on their own scales: the LDA's are ~50 times the KSR's
middle.axhspan(-1.6, 1.6, color="0.9", label="chemical accuracy")
middle.plot(r, (e_ksr - e_dmrg) * 1e3, "o-", color="tab:blue", ms=4, label="KSR-global")
middle.set_ylabel("E - E_DMRG (mHa)")
middle.legend(fontsize=8)
bottom.plot(r, (e_lda - e_dmrg) * 1e3, "--", color="tab:orange", label="LDA")
bottom.set_xlabel("R (bohr)")
bottom.set_ylabel("E - E_DMRG (mHa)")
bottom.legend(fontsize=8)
fig.tight_layout()'''),
    ("code", '''\
history = result["history"]
fig, ax = plt.subplots(figsize=(5, 3))
ax.semilogy(np.arange(1, len(history["loss"]) + 1), history["loss"], label="training loss")
validation = np.array(history["validation"])
checked = ~np.isnan(validation)
ax.semilogy(np.flatnonzero(checked) + 1, validation[checked], "o", ms=3, label="validation loss")
ax.set_xlabel("L-BFGS step")
ax.set_ylabel("loss (Ha^2)")
ax.legend()
fig.tight_layout()'''),
    ("markdown", '''\
## The shipped parameters

`dftjax/oned/models/ksr1d_h2_global.npz` holds the parameters written by
`dftjax train ksr1d --save-params` with the same defaults. Evaluating them (0 training steps) on the
same 32 test geometries needs no training and gives the same errors on any machine (the test
`tests/dftjax/oned/test_ksr.py::test_shipped_global_model_reproduces_its_recorded_errors` holds them
to 1e-6 mHa; measured agreement across machines 4e-12 mHa).
Training does not: 150 L-BFGS steps through 15 unrolled KS iterations amplify last-digit rounding
differences between CPUs into a different model. The stored run above wrote these parameters; on our
2-core AVX2 development machine `dftjax train ksr1d --seed N` gives MAE 1.26 / max 3.27 mHa for
N = 0 (the default) and MAE 0.61-1.56 / max 1.7-7.0 mHa over N = 0-3, the maximum always beyond
R = 5.6 bohr, far outside the training geometries (runs of 2026-12-07 on that machine).'''),
    ("code", '''\
import pathlib

shipped_path = pathlib.Path(dftjax.oned.__file__).parent / "models" / "ksr1d_h2_global.npz"
shipped_params, metadata = ksr.load_params(str(shipped_path))
print("shipped:", {k: metadata[k] for k in ("model", "model_options", "steps", "best_step")})
shipped = h2_experiment("global", ksr.KSROptions(**{**metadata["options"], "steps": 0}), params=shipped_params,
                        model_options=metadata["model_options"], with_lda=False, progress=lambda message: None)
print(f"shipped KSR-global: MAE {shipped['mae_mha']:.3f} mHa, max error {shipped['max_error_mha']:.3f} mHa")
difference = max(abs(a["energy"] - b["energy"]) for a, b in zip(shipped["test"], result["test"])) * 1e3
print(f"max |E(this run) - E(shipped)| over the test geometries = {difference:.2e} mHa")'''),
]

OFDFT_1D = [
    ("markdown", '''\
# Orbital-free DFT in a 1D box with learned kinetic functionals

Orbital-free DFT minimises the energy directly over the density,

$$E[n] = T_s[n] + \\int v(x) n(x)\\,dx, \\qquad \\int n\\,dx = N,$$

with a functional T_s[n] of the density instead of orbitals. The benchmark of Snyder et al.,
PRL 108, 253002 (2012): N non-interacting spinless fermions in a hard-wall box [0, 1] bohr with
up to three Gaussian wells v(x) = -sum_k a_k exp(-(x - b_k)^2 / 2 c_k^2). The exact answer comes
from the finite-difference Schroedinger equation on 500 points, so every OF-DFT result can be checked.

dftjax ships kinetic functionals trained on the paper's 100 potentials (M = 100): kernel ridge
regression (KRR, solved by Snyder's projected gradient descent on the data manifold) and a local
neural network (solved by L-BFGS in sqrt(n)). Energies in hartree (errors in kcal/mol, as the
papers quote them), lengths in bohr.'''),
    ("code", '''\
import pathlib
import time
import numpy as np
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt

import dftjax  # float64
from dftjax.ofdft import benchmark, box, data1d, krr, neural, solver
from functionals import kinetic

HARTREE_TO_KCAL = data1d.HARTREE_TO_KCAL_PER_MOL
wells = np.array([[5.0, 0.50, 0.05],    # depth (Ha), centre (bohr), width (bohr) of each well
                  [3.0, 0.45, 0.08]])
n_electrons = 1
exact = data1d.generate(wells[None], n_electrons)     # finite-difference Schroedinger equation
grid, dx = exact.grid, exact.dx
v = jnp.asarray(exact.potentials[0])
print(f"{grid.size} grid points, dx = {dx:.5f} bohr")
print(f"exact: E = {exact.energies[0]:.8f} Ha, T = {exact.kinetic_energies[0]:.8f} Ha")'''),
    ("markdown", '''\
## The shipped models

Each `.npz` under `dftjax/ofdft/models/` holds one model trained for one N (`krr_n1_m100.npz`:
KRR, N = 1, M = 100 training densities). The KRR model predicts T from the density only near the
training densities, so the minimisation is projected on the local principal components of the
nearest training densities and never leaves the data manifold.'''),
    ("code", '''\
models_dir = pathlib.Path(dftjax.ofdft.__file__).parent / "models"
krr_model, krr_meta = krr.load(models_dir / f"krr_n{n_electrons}_m100.npz")
nn_model, nn_meta = neural.load(models_dir / f"nn-local_n{n_electrons}_m100.npz")
print("KRR:", {k: krr_meta[k] for k in sorted(krr_meta)})
print("neural:", {k: nn_meta[k] for k in sorted(nn_meta)})

# T of the *exact* density: how well each functional knows the kinetic energy before any minimisation
n_exact = jnp.asarray(exact.densities[0])
print(f"T[n_exact]: exact {exact.kinetic_energies[0]:.6f}  KRR {float(krr.predict(krr_model, n_exact)):.6f}  "
      f"neural {float(neural.kinetic_energy(nn_model, n_exact)):.6f} Ha")'''),
    ("markdown", '''\
## Self-consistent densities

Three minimisations of E[n] at fixed N:

* **KRR**: start from the training density of lowest energy, then projected gradient descent
  (local PCA with m neighbours and q components, fixed step);
* **neural**: n = N phi^2 / int phi^2 and L-BFGS in phi (preconditioned by the kinetic operator);
* **vW** and **TF + vW**, von Weizsaecker alone and with Thomas-Fermi, the analytic baselines, same
  solver.

For N = 1 the von Weizsaecker functional T = 1/8 int n'^2 / n is exact (one orbital,
psi = sqrt(n)), so vW must reproduce the finite-difference solution: a check of the solver. TF + vW
is *not* exact: the TF term is pure error here, and a large one.'''),
    ("code", '''\
start_density = jnp.asarray(n_electrons * 2.0 * np.sin(np.pi * grid) ** 2)
preconditioner = solver.default_preconditioner(grid.size)
outcome = {}

t0 = time.perf_counter()
krr_kinetic = lambda n: krr.predict(krr_model, n)
neighbours, components = int(krr_meta.get("pca_neighbours", 30)), int(krr_meta.get("pca_components", 4))
max_distance = 2.0 * benchmark.manifold_spacing(krr_model)

@jax.jit
def solve_krr(v):
    initial = solver.lowest_energy_density(krr_kinetic, v, krr_model.densities, dx)
    return solver.minimize_projected(krr_kinetic, v, initial, krr_model.densities, dx, neighbours, components,
                                     0.02 / n_electrons, 100, max_distance)

outcome["KRR"] = solve_krr(v)
print(f"KRR solved in {time.perf_counter() - t0:.1f} s")

t0 = time.perf_counter()
nn_kinetic = lambda n: neural.kinetic_energy(nn_model, n)
outcome["neural"] = jax.jit(lambda v: solver.minimize_sqrt(nn_kinetic, v, start_density, n_electrons, dx,
                                                           max_iterations=300, tolerance=1e-7,
                                                           preconditioner=preconditioner))(v)
print(f"neural solved in {time.perf_counter() - t0:.1f} s")

von_weizsaecker = lambda n: box.von_weizsaecker_energy(n, dx)
outcome["vW"] = jax.jit(lambda v: solver.minimize_sqrt(von_weizsaecker, v, start_density, n_electrons, dx,
                                                       max_iterations=1000, preconditioner=preconditioner))(v)

def tf_vw(n):
    thomas_fermi = jnp.sum(kinetic.thomas_fermi_1d(None, box.spinless_features(n, dx))) * dx
    return thomas_fermi + box.von_weizsaecker_energy(n, dx)

outcome["TF+vW"] = jax.jit(lambda v: solver.minimize_sqrt(tf_vw, v, start_density, n_electrons, dx,
                                                          max_iterations=1000, preconditioner=preconditioner))(v)

print(f"{'':8s} {'E (Ha)':>12s} {'T (Ha)':>12s} {'dE (kcal/mol)':>14s} {'||n - n_exact||':>16s} {'steps':>6s}")
print(f"{'exact':8s} {exact.energies[0]:12.6f} {exact.kinetic_energies[0]:12.6f}")
errors = {}
for name, res in outcome.items():
    error = (float(res.energy) - exact.energies[0]) * HARTREE_TO_KCAL
    l2 = float(np.sqrt(np.sum((np.asarray(res.density) - exact.densities[0]) ** 2) * dx))
    errors[name] = error
    print(f"{name:8s} {float(res.energy):12.6f} {float(res.kinetic_energy):12.6f} {error:14.3f} {l2:16.2e} "
          f"{int(res.iterations):6d}")'''),
    ("code", '''\
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
left.plot(grid, exact.densities[0], "k-", lw=2, label="exact")
styles = {"KRR": "r--", "neural": "b:", "vW": "c:", "TF+vW": "g-."}
for name, res in outcome.items():
    left.plot(grid, np.asarray(res.density), styles[name], label=f"{name} ({errors[name]:+.2f} kcal/mol)")
left.set_xlabel("x (bohr)")
left.set_ylabel("n(x) (1/bohr)")
left.legend(fontsize=8)
right.plot(grid, exact.potentials[0], "k-")
right.set_xlabel("x (bohr)")
right.set_ylabel("v(x) (Ha)")
right.set_title("the potential")
fig.tight_layout()'''),
    ("markdown", '''\
## Differentiability: the kinetic potential

The functional derivative dT/dn(x) that drives the minimisation is `jax.grad` of the model's T
(divided by dx: the grid derivative of a sum over points). At the exact ground state the Euler
equation gives dT/dn = mu - v(x) exactly; a learned functional only approximates it, which is why
the projected (KRR) or smooth (neural) minimisation is needed.'''),
    ("code", '''\
interior = slice(40, -40)   # the density vanishes at the walls, where dT/dn is ill-defined
dT_krr = jax.grad(krr_kinetic)(n_exact) / dx
dT_nn = jax.grad(nn_kinetic)(n_exact) / dx
exact_dT = exact.kinetic_derivatives[0]
fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.plot(grid[interior], exact_dT[interior], "k-", lw=2, label="exact mu - v")
ax.plot(grid[interior], np.asarray(dT_nn)[interior], "b:", label="neural")
ax.plot(grid[interior], np.asarray(dT_krr)[interior], "r--", label="KRR (raw, off-manifold noise)")
ax.set_ylim(exact_dT[interior].min() - 5, exact_dT[interior].max() + 5)
ax.set_xlabel("x (bohr)")
ax.set_ylabel("dT/dn (Ha)")
ax.legend(fontsize=8)
fig.tight_layout()
print(f"neural: max |dT/dn - (mu - v)| on the interior = "
      f"{np.abs(np.asarray(dT_nn)[interior] - exact_dT[interior]).max():.3f} Ha")'''),
]

VMC = [
    ("markdown", '''\
# Variational Monte Carlo of the helium atom with FermiNet

Variational Monte Carlo minimises E[psi] = <psi|H|psi> / <psi|psi> over a trial wavefunction psi,
estimated from walkers sampled from |psi|^2 with Metropolis-Hastings:

$$E \\approx \\frac{1}{W} \\sum_{w} E_L(r_w), \\qquad
E_L(r) = -\\frac{1}{2}\\frac{\\nabla^2 \\psi}{\\psi} + V(r).$$

The trial wavefunction is a FermiNet (Pfau et al., Phys. Rev. Research 2, 033429 (2020)): a
permutation-equivariant network whose outputs form determinants times exponential envelopes. The
Laplacian is computed with the forward Laplacian (folx), the parameters updated with the SPRING
natural gradient. The orbitals are first pretrained on UHF orbitals (PySCF, cc-pVDZ).

The exact non-relativistic ground-state energy of He is -2.903724 Ha; Hartree-Fock gives -2.8617 Ha
(complete basis), so the correlation energy is 42 mHa. Energies in hartree, lengths in bohr.'''),
    ("code", QUICK_FLAG + '''

import time
import numpy as np
import matplotlib.pyplot as plt

import dftjax  # float64
from basis.molecule import make_molecule
from qmc import FermiNetOptions, SpringOptions, VMCOptions, run_vmc

EXACT_HE = -2.903724  # Ha, non-relativistic, infinite nuclear mass
helium = make_molecule("He 0 0 0")
print(helium, "electrons (up, down):", helium.nelec)'''),
    ("markdown", '''\
## Settings

A smaller network than the default (`dftjax vmc` uses 32/8 hidden units, 3 layers, 4
determinants, 256 walkers, 1000 iterations: `dftjax vmc --atom "He 0 0 0"`, seed 0, gave -2.90378(8) Ha
on 2 idle CPU cores on 2026-11-28; README section 4) so that the run takes a few minutes
on a CPU. After the optimisation, an evaluation phase at fixed parameters gives the energy; its
error bar comes from a blocking analysis of the per-iteration means (they are correlated).'''),
    ("code", '''\
options = VMCOptions(
    ansatz="ferminet",
    ansatz_options=FermiNetOptions(hidden_one=(16, 16), hidden_two=(4, 4), determinants=2),
    optimizer="spring",
    optimizer_options=SpringOptions(learning_rate=0.05),
    iterations=20 if QUICK else 400,
    walkers=128,
    mcmc_steps=5,
    burn_in=20,
    pretrain_iterations=10 if QUICK else 50,
    pretrain_basis="cc-pvdz",
    eval_iterations=20 if QUICK else 200,
    progress_every=50,
    seed=0,
)
start = time.perf_counter()
result = run_vmc(helium, options, log=print)
print(f"wall time {time.perf_counter() - start:.0f} s")'''),
    ("code", '''\
error_mha = (result.energy - EXACT_HE) * 1e3
print(f"E(VMC, FermiNet) = {result.energy:.5f} +- {result.energy_error:.5f} Ha")
print(f"E(exact)         = {EXACT_HE:.6f} Ha")
print(f"E(VMC) - E(exact) = {error_mha:+.2f} mHa "
      f"({(result.energy - EXACT_HE) / result.energy_error:+.1f} error bars)")
print(f"UHF/cc-pVDZ      = {result.hf_energy:.6f} Ha (the pretraining reference)")
HF_LIMIT = -2.861680  # Ha, complete-basis Hartree-Fock
print(f"correlation energy recovered: {100 * (HF_LIMIT - result.energy) / (HF_LIMIT - EXACT_HE):.1f}% "
      f"of E_exact - E_HF(limit) = {(EXACT_HE - HF_LIMIT) * 1e3:.1f} mHa")
print(f"variance of E_L  = {result.variance:.4f} Ha^2, acceptance {result.acceptance:.2f}")'''),
    ("markdown", '''\
## Energy vs iteration

The per-iteration walker mean of E_L during the optimisation (noisy: 128 walkers), its running
mean over 20 iterations, and the final evaluated energy. The zero-variance principle is visible:
the variance of E_L falls towards zero as psi approaches an eigenstate.'''),
    ("code", '''\
energy = result.history.energy
window = 20
running = np.convolve(energy, np.ones(window) / window, mode="valid")
iterations = np.arange(1, energy.size + 1)
fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 6), sharex=True)
top.plot(iterations, energy, color="0.7", lw=0.8, label="walker mean of E_L")
top.plot(iterations[window - 1:], running, "b-", label=f"running mean ({window})")
top.axhline(EXACT_HE, color="k", ls="--", label="exact -2.903724")
top.axhspan(result.energy - result.energy_error, result.energy + result.energy_error, color="tab:red",
            alpha=0.4, label=f"evaluation {result.energy:.4f}({round(result.energy_error * 1e4):d})")
top.set_ylim(EXACT_HE - 0.03, EXACT_HE + 0.1)
top.set_ylabel("E (Ha)")
top.legend(fontsize=8)
bottom.semilogy(iterations, result.history.variance)
bottom.set_xlabel("iteration")
bottom.set_ylabel("var(E_L) (Ha^2)")
fig.tight_layout()'''),
]

NOTEBOOKS = {
    "01_first_scf_and_forces.ipynb": FIRST_SCF,
    "02_ksr1d_training.ipynb": KSR_1D,
    "03_ofdft_1d.ipynb": OFDFT_1D,
    "04_vmc.ipynb": VMC,
}


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def notebook(cells) -> dict:
    """An nbformat 4 notebook dict with the given (cell_type, source) cells and no outputs."""
    built = []
    for kind, source in cells:
        cell = {"cell_type": kind, "metadata": {}, "source": _lines(source)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        built.append(cell)
    return {
        "cells": built,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python", "version": "3.11"},
        },
        "nbformat": 4,
        "nbformat_minor": 4,
    }


def main(argv=None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(NOTEBOOKS)
    for name in names:
        path = os.path.join(HERE, name)
        with open(path, "w") as f:
            json.dump(notebook(NOTEBOOKS[name]), f, indent=1)
            f.write("\n")
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
