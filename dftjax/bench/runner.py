"""`dftjax bench`: one entry point for every benchmark suite, each against its peer in the same run.

=============  =============================================================  ==========================
suite          what is timed / checked                                        peer
=============  =============================================================  ==========================
integrals      overlap ... 4-centre ERI, cold and warm                        PySCF/libcint
functionals    XC energy + potentials on random densities                     libxc (through PySCF)
scf            whole RKS calculations, cold and warm                          PySCF
grad           SCF + forces through the adjoint, memory of both adjoints     PySCF analytic gradients
compile        12-molecule energy + forces loop, empty and warm cache        PySCF
ksr1d          KSR-trained 1D H2 curve and training speed                     DMRG energies, jax_dft
ofdft          1D orbital-free solves with learned kinetic functionals        exact FD energies, KS time
vmc            local energy (Hessian vs forward Laplacian), optimisation step  Hessian-trace Laplacian
=============  =============================================================  ==========================

Every suite module has ``run(...) -> rows``, ``as_records(rows) -> list[dict]`` and
``format_table(rows) -> str`` (and optionally ``plot(rows, path)``). This module chooses the
options of each suite (``quick=True``: the smallest systems, for ``dftjax bench --quick`` on a
laptop in a few minutes), runs the suites one after the other with progress on stderr, and turns the
results into one JSON object, one CSV file, one table and one figure per suite.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys
import time
import traceback
from typing import Callable


@dataclasses.dataclass(frozen=True, kw_only=True)
class BenchOptions:
    """What the command line asked for; ``None`` means the suite's own default."""

    quick: bool = False
    molecules: tuple[str, ...] | None = None
    basis_sets: tuple[str, ...] | None = None
    xc: tuple[str, ...] | None = None
    points: int | None = None
    walkers: int | None = None
    repeats: int | None = None
    ferminet_python: str | None = None
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class Suite:
    """A benchmark suite: how to import it, what it is compared with, how to call its ``run``."""

    name: str
    peer: str
    load: Callable[[], object]
    kwargs: Callable[[BenchOptions], dict]
    in_all: bool = True  # part of `dftjax bench` with no suite named (and of --quick)


def _integrals():
    from dftjax.bench import integrals

    return integrals


def _functionals():
    from dftjax.bench import functionals

    return functionals


def _scf():
    from dftjax.bench import scf

    return scf


def _grad():
    from dftjax.bench import grad

    return grad


def _compile():
    from dftjax.bench import compile as compile_suite

    return compile_suite


def _compile_kwargs(o: BenchOptions) -> dict:
    from dftjax.bench.compile import LOOP_MOLECULES, QUICK

    return dict(molecules=o.molecules or (QUICK if o.quick else tuple(LOOP_MOLECULES)),
                xc=(o.xc or ("pbe",))[0], basis=(o.basis_sets or ("def2-svp",))[0], forces=not o.quick,
                progress=o.progress)


def _ksr1d():
    from dftjax.bench import ksr1d

    return ksr1d


def _ofdft():
    from dftjax.bench import ofdft

    return ofdft


def _vmc():
    from dftjax.bench import vmc

    return vmc


def _molecules(options: BenchOptions, default: tuple[str, ...], quick: tuple[str, ...]) -> tuple[str, ...]:
    from dftjax.bench.molecules import MOLECULES

    molecules = options.molecules or (quick if options.quick else default)
    unknown = [m for m in molecules if m not in MOLECULES]
    if unknown:
        raise ValueError(f"unknown benchmark molecule {unknown[0]!r}: expected one of {sorted(MOLECULES)}")
    return molecules


def _repeats(options: BenchOptions) -> int:
    return options.repeats or (1 if options.quick else 3)


def _integrals_kwargs(o: BenchOptions) -> dict:
    return dict(molecules=_molecules(o, ("water", "benzene", "hexane"), ("water",)),
                bases=o.basis_sets or (("def2-svp",) if o.quick else ("def2-svp", "def2-tzvp")),
                repeats=_repeats(o), progress=o.progress)


def _functionals_kwargs(o: BenchOptions) -> dict:
    kwargs = dict(n_points=o.points or (100_000 if o.quick else 1_000_000), repeats=_repeats(o), progress=o.progress)
    if o.xc:
        kwargs["functionals"] = o.xc
    return kwargs


def _scf_kwargs(o: BenchOptions) -> dict:
    kwargs = dict(molecules=_molecules(o, ("water", "benzene", "hexane"), ("water",)),
                  functionals=o.xc or (("pbe",) if o.quick else ("pbe", "b3lyp")),
                  basis=(o.basis_sets or ("def2-svp",))[0], progress=o.progress)
    if o.quick:
        kwargs["density_fit"] = (False,)
    return kwargs


def _grad_kwargs(o: BenchOptions) -> dict:
    kwargs = dict(quick=o.quick, progress=o.progress)
    if o.molecules:
        kwargs["molecules"] = _molecules(o, (), ())
    if o.xc:
        kwargs["xc"] = o.xc[0]
    if o.basis_sets:
        kwargs["basis"] = o.basis_sets[0]
    if o.repeats:
        kwargs["repeats"] = o.repeats
    return kwargs


def _quick_only(o: BenchOptions) -> dict:
    return dict(quick=o.quick, progress=o.progress)


def _vmc_kwargs(o: BenchOptions) -> dict:
    from dftjax.bench.vmc import SYSTEMS

    systems = o.molecules or (("He",) if o.quick else tuple(SYSTEMS))
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown VMC benchmark system {unknown[0]!r}: expected one of {sorted(SYSTEMS)}")
    return dict(systems=systems, walkers=o.walkers or (16 if o.quick else 64), repeats=_repeats(o),
                mcmc_steps=5 if o.quick else 10, progress=o.progress, ferminet_python=o.ferminet_python)


SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        Suite("integrals", "PySCF/libcint", _integrals, _integrals_kwargs),
        Suite("functionals", "libxc", _functionals, _functionals_kwargs),
        Suite("scf", "PySCF", _scf, _scf_kwargs),
        Suite("grad", "PySCF analytic gradients", _grad, _grad_kwargs),
        # minutes even for its quick form (two fresh processes): run by name, `dftjax bench compile`
        Suite("compile", "PySCF (12-molecule loop)", _compile, _compile_kwargs, in_all=False),
        Suite("ksr1d", "DMRG / jax_dft", _ksr1d, _quick_only),
        Suite("ofdft", "exact FD / Kohn-Sham", _ofdft, _quick_only),
        Suite("vmc", "Hessian-trace Laplacian", _vmc, _vmc_kwargs),
    )
}


def parse_suites(text: str | None) -> list[str]:
    """``"scf,grad"`` -> ``["scf", "grad"]``; ``None`` or ``"all"`` -> every suite in order (``compile``
    only by name)."""
    if text is None or text == "all":
        return [name for name, suite in SUITES.items() if suite.in_all]
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SUITES]
    if unknown or not names:
        raise ValueError(f"unknown benchmark suite {(unknown or [text])[0]!r}: expected 'all' or a comma-separated "
                         f"list of {list(SUITES)}")
    return names


@dataclasses.dataclass
class SuiteRun:
    """One suite's outcome: its records and table, or the error that stopped it."""

    name: str
    peer: str
    wall_time_s: float
    records: list[dict]
    table: str
    rows: list | None = None
    error: str | None = None


def run_suites(names: list[str], options: BenchOptions) -> list[SuiteRun]:
    """Run the named suites in order. Options are checked for every suite before any suite runs;
    a suite that fails at run time is reported (``error``) and the others still run."""
    plan = [(SUITES[name], SUITES[name].kwargs(options)) for name in names]  # ValueError before heavy work
    runs = []
    for index, (suite, kwargs) in enumerate(plan, 1):
        if options.progress:
            print(f"[bench] {index}/{len(plan)} {suite.name} (peer: {suite.peer})", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            module = suite.load()
            rows = module.run(**kwargs)
            run = SuiteRun(suite.name, suite.peer, 0.0, _jsonable(module.as_records(rows)), module.format_table(rows),
                           rows)
        except Exception as err:  # noqa: BLE001  (one broken suite must not hide the others' results)
            if options.progress:
                traceback.print_exc(file=sys.stderr)
            run = SuiteRun(suite.name, suite.peer, 0.0, [], "", error=f"{type(err).__name__}: {err}")
        run.wall_time_s = time.perf_counter() - start
        if options.progress:
            status = f"failed: {run.error}" if run.error else f"{len(run.records)} rows"
            print(f"[bench] {suite.name}: {status} in {run.wall_time_s:.1f} s", file=sys.stderr, flush=True)
        runs.append(run)
    return runs


def _jsonable(value):
    """Records with NumPy scalars turned into Python numbers and non-finite floats into None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def as_json(runs: list[SuiteRun], quick: bool) -> dict:
    import jax

    return {
        "quick": quick,
        # "cold" times include compilation only when no persistent cache served it (DFTJAX_CACHE_DIR="")
        "compilation_cache": jax.config.jax_compilation_cache_dir or None,
        "wall_time_s": sum(r.wall_time_s for r in runs),
        "suites": {r.name: {"peer": r.peer, "wall_time_s": r.wall_time_s, "error": r.error, "results": r.records}
                   for r in runs},
    }


def write_csv(runs: list[SuiteRun], path: str) -> None:
    """One CSV with a ``suite`` column and the union of every suite's record keys (blank where absent)."""
    columns = ["suite"]
    for run in runs:
        for record in run.records:
            columns += [k for k in record if k not in columns]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for run in runs:
            for record in run.records:
                flat = {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in record.items()}
                writer.writerow({"suite": run.name, **flat})


def _headline(run: SuiteRun) -> str:
    """The one number per suite a reader looks for: the worst ratio or error against the peer."""
    if run.error:
        return "FAILED"
    if not run.records:
        return "no rows"
    keys = [k for k in run.records[0] if k.startswith("ratio") or k.endswith("_ratio")]
    keys += [k for k in run.records[0] if "error" in k and k not in keys]
    parts = []
    for key in keys[:3]:
        values = [r[key] for r in run.records if isinstance(r.get(key), (int, float)) and not isinstance(r[key], bool)]
        if values:
            worst = max(values, key=abs) if "error" in key else max(values)
            parts.append(f"{key} {'largest' if len(values) > 1 else ''} {worst:.3g}".replace("  ", " "))
    return "; ".join(parts) or f"{len(run.records)} rows"


def format_summary(runs: list[SuiteRun]) -> str:
    lines = []
    for run in runs:
        lines += [f"== {run.name} (peer: {run.peer}, {run.wall_time_s:.1f} s) ==",
                  run.table if not run.error else f"failed: {run.error}", ""]
    width = max([len(r.name) for r in runs] + [5])
    lines.append(f"{'suite':<{width}}  {'time s':>7}  against the peer")
    for run in runs:
        lines.append(f"{run.name:<{width}}  {run.wall_time_s:>7.1f}  {_headline(run)}")
    lines.append(f"{'total':<{width}}  {sum(r.wall_time_s for r in runs):>7.1f}")
    return "\n".join(lines)


def plot(runs: list[SuiteRun], directory: str) -> list[str]:
    """One PNG per suite in ``directory``: the suite's own ``plot`` where it has one, otherwise a bar
    chart of its ratios to the peer (1 = as fast as the peer). Returns the paths written."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    written = []
    for run in runs:
        if run.error or not run.records:
            continue
        path = os.path.join(directory, f"bench_{run.name}.png")
        module = SUITES[run.name].load()
        if hasattr(module, "plot"):
            module.plot(run.rows, path)
            written.append(path)
            continue
        keys = [k for k in run.records[0] if k.startswith("ratio")]
        if not keys:
            continue
        labels = [" ".join(str(v) for k, v in r.items() if isinstance(v, str))[:32] for r in run.records]
        fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(labels) + 2), 3.5))
        width = 0.8 / len(keys)
        for i, key in enumerate(keys):
            ax.bar([x + i * width for x in range(len(labels))], [r[key] or 0.0 for r in run.records], width,
                   label=key)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(labels))], labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(f"time / {run.peer} time")
        ax.set_yscale("log")
        ax.set_title(f"dftjax bench {run.name}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
