"""`dftjax bench ofdft`: orbital-free DFT against exact / Kohn-Sham solutions in the same run.

Three kinds of rows, each compared with its peer computed in the same process:

* ``box``: the 1D benchmark of Snyder et al. (PRL 108, 253002 (2012)): the shipped M = 100 models
  (KRR for N = 1..4, the local neural functional for N = 1) and TF + vW solve fresh test potentials
  self-consistently; errors (kcal/mol) against the exact finite-difference energies, next to
  Brockherde et al.'s Table I (Nat. Commun. 8, 872 (2017); N = 1, M = 100: 0.74 / 17 self-consistent,
  0.2 / 2.6 on exact densities, MAE / max); time of one warm OF solve vs one exact diagonalisation.
* ``chain``: how each grows with system size: a hard-wall box of ``k`` unit cells, one Gaussian
  well and one spinless fermion per cell, k = 2..32: the Kohn-Sham (here exact: non-interacting)
  solve is a dense ``eigh`` of the G x G Hamiltonian (O(G^3), as dftjax's 1D KS solver), the OF
  solve (TF + vW, L-BFGS in sqrt(n)) costs O(G log G) per step: the grid's kinetic operator and
  the (T + 10)^-1/2 preconditioner are applied in the sine basis, where they are diagonal
  (:func:`dftjax.ofdft.solver.sine_preconditioner`); ``setup_s``: their eigenvalues.
* ``molecule`` (not with ``quick``): OF-DFT on a molecular grid (:mod:`dftjax.ofdft.molecular`,
  TF + 1/9 vW and the shipped learned Pauli functional) against dftjax's Kohn-Sham SCF in the same
  basis, grid and density fit (LDA): energy error, density error ``integral |rho_OF - rho_KS|``,
  warm OF minimisation time vs warm ``run_scf`` time.

Times are wall-clock seconds of warm (compiled) calls, median of ``repeats``.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

KCAL = 627.509474

#: Brockherde et al. (2017) Table I, N = 1: M -> (self-consistent MAE, max, T MAE, max), kcal/mol.
PAPER_TABLE_I = {20: (7.7, 47.0, 7.7, 60.0), 50: (1.6, 30.0, 1.3, 7.3), 100: (0.74, 17.0, 0.2, 2.6),
                 200: (0.17, 2.9, 0.039, 0.6)}

#: Molecules of the 3D rows (angstrom): name -> (charge, atoms).
MOLECULES_3D = {"He": (0, "He 0 0 0"), "LiH": (0, "Li 0 0 0; H 0 0 1.6"),
                "H2O": (0, "O 0 0 0; H 0 0.757 0.587; H 0 -0.757 0.587")}


@dataclasses.dataclass(frozen=True)
class OFBenchRow:
    """One comparison (hartree, kcal/mol, seconds); None where a column does not apply.

    Attributes:
        kind: ``"box"``, ``"chain"`` or ``"molecule"``.
        system: test set / chain length / molecule.
        model: kinetic functional.
        n_electrons: electrons (spinless fermions in 1D).
        n_systems: systems averaged over.
        energy_mae_kcal, energy_max_kcal: self-consistent |E_OF - E_ref|.
        kinetic_mae_kcal, kinetic_max_kcal: |T[n_ref] - T_ref| on the reference density.
        density_error: mean integral |n_OF - n_ref| (electrons).
        paper_energy_mae_kcal, paper_energy_max_kcal, paper_kinetic_mae_kcal, paper_kinetic_max_kcal:
            Brockherde et al.'s Table I for the same N and M (N = 1 only).
        of_s, reference_s: warm time of one OF solve and of one reference (exact / KS) solve.
        setup_s: one-off OF setup not in ``of_s`` (chain: the sine-basis eigenvalues).
        grid_points: grid size (1D points, 3D grid points).
    """

    kind: str
    system: str
    model: str
    n_electrons: int
    n_systems: int
    energy_mae_kcal: float
    energy_max_kcal: float
    kinetic_mae_kcal: float | None
    kinetic_max_kcal: float | None
    density_error: float
    paper_energy_mae_kcal: float | None
    paper_energy_max_kcal: float | None
    paper_kinetic_mae_kcal: float | None
    paper_kinetic_max_kcal: float | None
    of_s: float
    reference_s: float
    setup_s: float | None
    grid_points: int

    @property
    def time_ratio(self) -> float:
        """OF time / reference time."""
        return self.of_s / self.reference_s


def _progress(enabled: bool, message: str) -> None:
    if enabled:
        print(f"[bench ofdft] {message}", file=sys.stderr, flush=True)


def _median_time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())      # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _box_rows(n_test: int, electrons, repeats: int, progress: bool) -> list[OFBenchRow]:
    from dftjax.ofdft import benchmark, box, cli, data1d, krr, neural, solver
    from functionals import kinetic

    rows = []
    for n in electrons:
        test = data1d.random_set(n_test, n, benchmark.TEST_SEED)
        dx = test.dx
        exact_s = _median_time(lambda: data1d.solve_box(test.potentials[:1], n), repeats)
        precond = solver.default_preconditioner(len(test.grid))
        start = jnp.asarray(test.densities.mean(axis=0))
        models = ["krr", "tfvw"] + [name for name in ("nn-local", "nn-global")
                                    if (cli.MODELS_DIR / f"{name}_n{n}_m100.npz").exists()]
        for name in models:
            if name == "krr":
                _, model, meta = cli._load_model("krr", n)
                kinetic_fn = functools.partial(krr.predict, model)
                m, q = int(meta["pca_neighbours"]), int(meta["pca_components"])
                max_distance = 2.0 * benchmark.manifold_spacing(model)

                @jax.jit
                def krr_one(v, model=model, kinetic_fn=kinetic_fn, m=m, q=q, max_distance=max_distance):
                    # as benchmark.krr_solve: lowest-energy training density, projected descent
                    first = solver.lowest_energy_density(kinetic_fn, v, model.densities, dx)
                    return solver.minimize_projected(kinetic_fn, v, first, model.densities, dx, m, q,
                                                     0.02 / n, 100, max_distance)
                batched = jax.jit(jax.vmap(krr_one))
                solve_all = lambda v, batched=batched: batched(jnp.asarray(v))  # noqa: E731
            elif name.startswith("nn-"):
                _, model, _ = cli._load_model(name, n)
                kinetic_fn = functools.partial(neural.kinetic_energy, model)
            else:
                def kinetic_fn(density):
                    tf = jnp.sum(kinetic.thomas_fermi_1d(None, box.spinless_features(density, dx))) * dx
                    return tf + box.von_weizsaecker_energy(density, dx)
            if name != "krr":
                one = jax.jit(lambda v, kinetic_fn=kinetic_fn: solver.minimize_sqrt(
                    kinetic_fn, v, start, float(n), dx, max_iterations=300, tolerance=1e-7,
                    preconditioner=precond))
                batched = jax.jit(jax.vmap(one))
                solve_all = lambda v, batched=batched: batched(jnp.asarray(v))  # noqa: E731
            result = solve_all(test.potentials)
            single = lambda solve_all=solve_all: solve_all(test.potentials[:1])  # noqa: E731
            of_s = _median_time(single, repeats)
            t_pred = jax.jit(jax.vmap(kinetic_fn))(jnp.asarray(test.densities))
            e_mae, e_max = benchmark.errors(result.energy, test.energies)
            t_mae, t_max = benchmark.errors(t_pred, test.kinetic_energies)
            density_error = float(np.mean(np.sum(np.abs(np.asarray(result.density) - test.densities), 1) * dx))
            paper = PAPER_TABLE_I[100] if (n == 1 and name != "tfvw") else (None,) * 4
            rows.append(OFBenchRow("box", f"{n_test} test potentials", f"{name} (M=100)" if name != "tfvw" else "tfvw",
                                   n, n_test, e_mae, e_max, t_mae, t_max, density_error, *paper,
                                   of_s, exact_s, None, len(test.grid)))
            _progress(progress, f"box N={n} {name}: energy MAE {e_mae:.3f} kcal/mol, OF {of_s * 1e3:.1f} ms, "
                                f"exact {exact_s * 1e3:.1f} ms")
    return rows


def chain_potential(grid: np.ndarray, n_wells: int, depth: float = 20.0, width: float = 0.1) -> np.ndarray:
    """(G,) one Gaussian well of ``depth`` hartree and ``width`` bohr at the centre of each unit cell
    of the box [0, n_wells] bohr."""
    centres = np.arange(n_wells) + 0.5
    return -depth * np.sum(np.exp(-((grid[:, None] - centres[None, :]) ** 2) / (2 * width**2)), axis=1)


def _chain_rows(wells, points_per_bohr: int, repeats: int, progress: bool) -> list[OFBenchRow]:
    from basis.oned import kinetic_matrix
    from dftjax.ofdft import box, solver

    rows = []
    for k in wells:
        n_points = k * points_per_bohr + 1
        grid = np.linspace(0.0, float(k), n_points)
        dx = float(grid[1] - grid[0])
        v = chain_potential(grid, k)
        hamiltonian = (np.asarray(kinetic_matrix(jnp.asarray(grid[1:-1]), 8, boundary="hard_wall"))
                       + np.diag(v[1:-1]))

        def exact():
            w, u = np.linalg.eigh(hamiltonian)
            return w[:k], u[:, :k]

        exact_s = _median_time(exact, repeats)
        w, u = exact()
        density = np.zeros(n_points)
        density[1:-1] = np.sum(u**2, axis=1) / dx
        energy = float(w.sum())
        # T and (T + 10)^-1/2 in the sine basis, where the box's kinetic matrix is diagonal
        # (solver.sine_kinetic_eigenvalues): O(G log G) per OF step and no O(G^3) setup (the dense
        # eigendecomposition of solver.default_preconditioner costs as much as the Kohn-Sham eigh
        # itself: measured 1.9 s at 32 wells against 1.4 s)
        setup = time.perf_counter()
        eigenvalues = solver.sine_kinetic_eigenvalues(n_points - 2, dx)
        precond = solver.sine_preconditioner(n_points - 2, dx)
        setup_s = time.perf_counter() - setup
        start = jnp.asarray(np.concatenate([[0.0], np.full(n_points - 2, k / grid[-1]), [0.0]]))

        def kinetic_fn(n):
            # TF (pi^2 n^3 / 6, spinless) + vW in the operator form <sqrt n|T|sqrt n>
            # (box.von_weizsaecker_energy), here sum_k e_k |DST(sqrt n)_k|^2
            phi = box.safe_sqrt(n[1:-1])
            tf = jnp.pi**2 / 6.0 * jnp.sum(n**3) * dx
            return tf + jnp.sum(eigenvalues * solver.dst1(phi) ** 2) * dx

        solve = jax.jit(lambda v: solver.minimize_sqrt(kinetic_fn, v, start, float(k), dx, max_iterations=2000,
                                                       tolerance=1e-7, preconditioner=precond))
        vj = jnp.asarray(v)
        result = solve(vj)
        of_s = _median_time(lambda: solve(vj), repeats)
        error = abs(float(result.energy) - energy) * KCAL
        rows.append(OFBenchRow("chain", f"{k} wells", "tfvw", k, 1, error, error, None, None,
                               float(np.sum(np.abs(np.asarray(result.density) - density)) * dx),
                               None, None, None, None, of_s, exact_s, setup_s, n_points))
        _progress(progress, f"chain {k} wells (G={n_points}): OF {of_s:.3f} s ({int(result.iterations)} steps), "
                            f"dense eigh {exact_s:.3f} s")
    return rows


def _molecule_rows(names, repeats: int, progress: bool) -> list[OFBenchRow]:
    import dataclasses as dc

    from basis.molecule import make_molecule
    from dftjax.ofdft import molecular, train3d
    from dftjax.scf import run_scf

    if not names:
        return []
    models = ("tfvw",)
    params = None
    if os.path.exists(train3d.DEFAULT_MODEL):
        params, _ = train3d.load_pauli()
        models = ("tfvw", "learned")
    else:
        _progress(progress, f"no shipped Pauli model ({train3d.DEFAULT_MODEL}): TF + vW only")
    rows = []
    for name in names:
        charge, atoms = MOLECULES_3D[name]
        molecule = make_molecule(atoms, charge=charge)
        options = molecular.MolecularOFOptions(kinetic="tfvw")
        system = molecular.build(molecule, options)
        reference = molecular.kohn_sham(molecule, options, system)
        ks_times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run_scf(molecule, options.scf_options(molecule.spin != 0))
            ks_times.append(time.perf_counter() - start)
        ks_s = float(np.median(ks_times))
        for model in models:
            opts = dc.replace(options, kinetic=model)
            p = params if model == "learned" else None
            result = molecular.solve(molecule, opts, p, system=system)
            of_s = float(np.median([molecular.solve(molecule, opts, p, system=system).seconds
                                    for _ in range(repeats)]))
            error = abs(float(result.energy) - reference.energy) * KCAL
            t_error = abs(float(result.terms.kinetic) - reference.kinetic_energy) * KCAL
            density_error = float(molecular.density_difference(system, result.density_matrix,
                                                               jnp.asarray(reference.density_matrix)))
            rows.append(OFBenchRow("molecule", name, model, molecule.n_electrons, 1, error, error, t_error, t_error,
                                   density_error, None, None, None, None, of_s, ks_s, None,
                                   int(system.ks.weights.shape[0])))
            _progress(progress, f"{name} {model}: |E_OF - E_KS| {error:.1f} kcal/mol, density error "
                                f"{density_error:.3f} e, OF {of_s:.3f} s, KS {ks_s:.3f} s")
    return rows


def run(*, quick: bool = False, progress: bool = True, n_test: int | None = None, electrons=None,
        wells=None, molecules=None, repeats: int | None = None) -> list[OFBenchRow]:
    """Run the three comparisons (see the module docstring); ``quick``: 5 test potentials, N = 1,
    a chain of 2-8 wells, no molecules (under a minute on two cores)."""
    import dftjax  # noqa: F401  (float64)

    n_test = n_test or (5 if quick else 100)
    electrons = tuple(electrons or ((1,) if quick else (1, 2, 3, 4)))
    wells = tuple(wells or ((2, 4, 8) if quick else (2, 4, 8, 16, 32)))
    molecules = tuple(molecules if molecules is not None else (() if quick else tuple(MOLECULES_3D)))
    repeats = repeats or (1 if quick else 3)
    if n_test < 1 or any(n not in (1, 2, 3, 4) for n in electrons) or any(k < 1 for k in wells):
        raise ValueError("n_test >= 1, electrons in 1..4 and wells >= 1 are required")
    unknown = [m for m in molecules if m not in MOLECULES_3D]
    if unknown:
        raise ValueError(f"unknown molecule {unknown[0]!r}: expected one of {sorted(MOLECULES_3D)}")
    rows = _box_rows(n_test, electrons, repeats, progress)
    rows += _chain_rows(wells, 32 if quick else 64, repeats, progress)
    rows += _molecule_rows(molecules, repeats, progress)
    return rows


def as_records(results: list[OFBenchRow]) -> list[dict]:
    """Flat JSON-serialisable dicts (units in the keys)."""
    records = []
    for row in results:
        record = {k: v for k, v in dataclasses.asdict(row).items()}
        record["time_ratio_of_over_reference"] = row.time_ratio
        records.append(record)
    return records


def format_table(results: list[OFBenchRow]) -> str:
    """A human-readable table (kcal/mol, seconds)."""
    def f(x, fmt="{:.3g}"):
        return "-" if x is None else fmt.format(x)

    header = (f"{'kind':<9}{'system':<20}{'model':<16}{'N':>3}{'E MAE':>9}{'E max':>9}{'T MAE':>9}"
              f"{'paper E':>12}{'paper T':>12}{'|dn|':>8}{'OF s':>10}{'ref s':>10}{'OF/ref':>8}")
    lines = [header, "-" * len(header)]
    for r in results:
        paper_e = "-" if r.paper_energy_mae_kcal is None else f"{r.paper_energy_mae_kcal:g}/{r.paper_energy_max_kcal:g}"
        paper_t = "-" if r.paper_kinetic_mae_kcal is None else f"{r.paper_kinetic_mae_kcal:g}/{r.paper_kinetic_max_kcal:g}"
        lines.append(f"{r.kind:<9}{r.system:<20}{r.model:<16}{r.n_electrons:>3}{f(r.energy_mae_kcal):>9}"
                     f"{f(r.energy_max_kcal):>9}{f(r.kinetic_mae_kcal):>9}{paper_e:>12}{paper_t:>12}"
                     f"{f(r.density_error, '{:.2g}'):>8}{f(r.of_s, '{:.2e}'):>10}{f(r.reference_s, '{:.2e}'):>10}"
                     f"{f(r.time_ratio, '{:.2f}'):>8}")
    lines.append("energies in kcal/mol vs exact FD (box, chain) or dftjax Kohn-Sham (molecule); paper: "
                 "Brockherde et al. 2017 Table I (MAE/max); |dn| = integral |n_OF - n_ref|; warm times")
    return "\n".join(lines)


def plot(results: list[OFBenchRow], path) -> None:
    """Time of OF and reference solves against chain length (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chain = [r for r in results if r.kind == "chain"]
    fig, ax = plt.subplots(figsize=(5, 4))
    if chain:
        k = [r.n_electrons for r in chain]
        ax.loglog(k, [r.of_s for r in chain], "o-", label="OF (TF+vW, L-BFGS)")
        ax.loglog(k, [r.reference_s for r in chain], "s-", label="KS (dense eigh)")
        ax.set_xlabel("wells (= electrons)")
        ax.set_ylabel("warm solve time (s)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
