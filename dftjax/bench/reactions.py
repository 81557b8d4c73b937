"""`dftjax bench reactions`: reaction energies, barrier heights and atomization energies of a data set.

For one functional and basis, every molecule the chosen reactions use is computed once (RKS for
singlets, UKS otherwise, uniform fields where the data give one) and its energy appended to an
on-disk store, a JSON-lines file keyed by the molecule's fingerprint (elements, geometry, charge,
multiplicity, field), the functional, the basis and the grid level. An interrupted run resumes
where it stopped; another functional on the same data computes only its own molecules; every
functional already in the store is shown beside the new one. Then each reaction's value
``sum_i c_i E_i`` is compared with its reference and each set's mean absolute error (kcal/mol) is
set beside the published errors of the data set (GSCDB138: ``functional_mae_kcal.csv``, large
basis, with dispersion corrections where the functional has one; ours have none, so compare
trends, not digits).

Molecules that fail (SCF not converged, an element the basis cannot treat without an effective
core potential, any other error) are listed with the reason and their reactions excluded from the
MAE and counted as ``failed``; nothing is counted silently. Several worker processes (default: one
per CPU core) take contiguous ranges of the molecules sorted by size, so that neighbours share a
compiled size class; the parent alone writes the store.

Units: energies in hartree in the store, reaction values and errors in kcal/mol
(:data:`dftjax.datasets.HARTREE_TO_KCAL`).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import queue as queue_module
import sys
import time
import warnings
from typing import Callable, Iterable

from dftjax.datasets import HARTREE_TO_KCAL, DataMolecule, ReactionData

__all__ = ["ReactionSettings", "EnergyStore", "default_basis", "default_store", "compute_energy", "run",
           "report", "format_report"]


@dataclasses.dataclass(frozen=True)
class ReactionSettings:
    """What a stored energy depends on besides the molecule: functional, basis, grid level."""

    xc: str
    basis: str
    grid_level: int = 3
    max_cycle: int = 100

    @property
    def label(self) -> str:
        return f"{self.xc}/{self.basis}/grid{self.grid_level}"

    def key(self, molecule: DataMolecule) -> str:
        return _key(molecule, self.label)


def _key(molecule: DataMolecule, label: str) -> str:
    """The store key of ``molecule`` under ``xc/basis/gridN`` ``label``."""
    return f"{molecule.fingerprint()}|{label}"


def default_basis(xc: str) -> str:
    """The basis a shipped neural functional was trained in (its model file's metadata), else def2-SVP."""
    from functionals.neural_xc import MODELS_DIR, PRETRAINED, load_model

    name = xc.strip().lower()
    if name in PRETRAINED:
        _, _, metadata = load_model(os.path.join(MODELS_DIR, PRETRAINED[name]))
        if metadata.get("basis"):
            return str(metadata["basis"])
    return "def2-svp"


def default_store(data_directory: str) -> str:
    """``./dftjax_reactions/<data directory name>.jsonl``: results live where the user runs."""
    name = os.path.basename(os.path.normpath(os.path.abspath(data_directory))) or "data"
    return os.path.join("dftjax_reactions", f"{name}.jsonl")


class EnergyStore:
    """An append-only JSON-lines file of molecule energies; one record per line, flushed and synced
    as each arrives, so an interruption loses at most the molecules in flight (a torn last line is
    ignored on reading)."""

    def __init__(self, path: str):
        self.path = path
        self.records: dict[str, dict] = {}
        if os.path.exists(path):
            with open(path) as f:
                for text in f:
                    try:
                        record = json.loads(text)
                    except json.JSONDecodeError:
                        continue  # a line cut by an interruption
                    if isinstance(record, dict) and "key" in record:
                        self.records[record["key"]] = record
        else:
            directory = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(directory, exist_ok=True)
                with open(path, "a"):
                    pass
            except OSError as err:
                raise ValueError(f"cannot write the energy store {path!r} ({err.strerror}); choose another with --store") from None

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def add(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records[record["key"]] = record

    def labels(self) -> list[str]:
        """Every ``xc/basis/gridN`` in the store, in order of first appearance."""
        return list(dict.fromkeys(r["settings"] for r in self.records.values()))


def compute_energy(molecule: DataMolecule, settings: ReactionSettings) -> dict:
    """One molecule's SCF: a store record (never raises; failures carry ``error``)."""
    start = time.perf_counter()
    record = {"key": settings.key(molecule), "molecule": molecule.name, "settings": settings.label,
              "xc": settings.xc, "basis": settings.basis, "grid_level": settings.grid_level,
              "energy": None, "converged": False, "iterations": 0, "error": None}
    try:
        from dftjax.scf import SCFOptions, run_scf

        options = SCFOptions(xc=settings.xc, basis=settings.basis, unrestricted=molecule.spin != 0,
                             grid_level=settings.grid_level, max_cycle=settings.max_cycle)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-convergence is recorded, not warned per molecule
            result = run_scf(molecule.molecule(), options, field=molecule.field)
        record.update(energy=result.energy, converged=bool(result.converged), iterations=result.iterations,
                      s2=result.s2, compilations=result.compilations.get("compilations"))
        if not result.converged:
            record["error"] = f"SCF not converged ({', '.join(result.attempts)})"
    except Exception as err:  # noqa: BLE001  (any failure of one molecule is reported, not fatal)
        record["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    record["wall_s"] = time.perf_counter() - start
    return record


def _cost(molecule: DataMolecule) -> float:
    return float(molecule.n_electrons + 2) ** 3


def _split(molecules: list[DataMolecule], parts: int) -> list[list[DataMolecule]]:
    """Contiguous ranges of ``molecules`` (sorted by size) with about equal total cost."""
    total = sum(_cost(m) for m in molecules)
    groups, current, acc = [], [], 0.0
    for m in molecules:
        current.append(m)
        acc += _cost(m)
        if acc >= total * (len(groups) + 1) / parts and len(groups) < parts - 1:
            groups.append(current)
            current = []
    groups.append(current)
    return [g for g in groups if g]


def _worker(molecules, settings, results) -> None:
    import dftjax  # noqa: F401  (float64, compilation cache)

    for molecule in molecules:
        results.put(compute_energy(molecule, settings))


def run(data: ReactionData, settings: ReactionSettings, store: EnergyStore, *, workers: int = 1,
        retry_failed: bool = False, progress: Callable[[str], None] | None = None) -> dict:
    """Compute what the store lacks for ``data`` under ``settings``; return counts and wall time."""
    progress = progress or (lambda message: None)
    start = time.perf_counter()
    todo, keys = [], set()
    for molecule in data.molecules.values():
        key = settings.key(molecule)
        record = store.get(key)
        if (record is None or (retry_failed and record.get("error"))) and key not in keys:
            todo.append(molecule)  # one calculation per fingerprint: the same atom under several names
            keys.add(key)
    reused = len(data.molecules) - len(todo)
    progress(f"{len(data.molecules)} molecules for {len(data.reactions)} reactions in {len(data.sets)} sets; "
             f"{reused} already in {store.path} or duplicates, {len(todo)} to compute with {settings.label}")
    todo.sort(key=lambda m: (m.n_electrons, len(m.symbols), m.name))
    done = 0

    def receive(record):
        nonlocal done
        store.add(record)
        done += 1
        status = (f"E = {record['energy']:.8f} Ha" if record["energy"] is not None and not record["error"]
                  else f"FAILED: {record['error']}")
        progress(f"{done}/{len(todo)} {record['molecule']}: {status} ({record['wall_s']:.1f} s)")

    workers = max(1, min(int(workers), len(todo)))
    if workers == 1:
        import dftjax  # noqa: F401

        for molecule in todo:
            receive(compute_energy(molecule, settings))
    elif todo:
        _run_parallel(_split(todo, workers), settings, receive)
    return {"computed": len(todo), "reused": reused, "wall_s": time.perf_counter() - start, "workers": workers}


def _run_parallel(groups: list[list[DataMolecule]], settings: ReactionSettings, receive) -> None:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    # one core per worker, no oversubscription: XLA's and BLAS's thread pools (set before the
    # children start, since both read the environment at import)
    saved = {name: os.environ.get(name) for name in ("XLA_FLAGS", "OMP_NUM_THREADS")}
    flags = saved["XLA_FLAGS"] or ""
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        processes = [context.Process(target=_worker, args=(group, settings, results), daemon=True) for group in groups]
        for p in processes:
            p.start()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    expected = {m.name: m for group in groups for m in group}
    try:
        while expected:
            try:
                record = results.get(timeout=5.0)
            except queue_module.Empty:
                if not any(p.is_alive() for p in processes):
                    break
                continue
            expected.pop(record["molecule"], None)
            receive(record)
    except KeyboardInterrupt:
        for p in processes:
            p.terminate()
        raise
    for p in processes:
        p.join(timeout=10)
    for name, molecule in expected.items():  # a worker died (memory, signal): say so, store nothing
        receive({"key": settings.key(molecule), "molecule": name, "settings": settings.label, "xc": settings.xc,
                 "basis": settings.basis, "grid_level": settings.grid_level, "energy": None, "converged": False,
                 "iterations": 0, "wall_s": 0.0, "transient": True,
                 "error": f"worker process ended (exit codes {[p.exitcode for p in processes]})"})


def _energies(data: ReactionData, store: EnergyStore, label: str) -> tuple[dict[str, float], dict[str, dict]]:
    """(molecule -> energy) of the good records under ``label`` and (molecule -> record) of all."""
    records = {}
    for molecule in data.molecules.values():
        record = store.get(_key(molecule, label))
        if record is not None:
            records[molecule.name] = record
    good = {name: r["energy"] for name, r in records.items() if r.get("energy") is not None and not r.get("error")}
    return good, records


def report(data: ReactionData, settings: ReactionSettings, store: EnergyStore) -> dict:
    """Reaction errors and per-set MAEs (kcal/mol) of ``settings`` from the store, with the
    published MAEs and those of every other functional in the store over the same reactions."""
    energies, records = _energies(data, store, settings.label)
    others = {}
    for label in store.labels():
        if label != settings.label:
            others[label] = _energies(data, store, label)[0]
    reactions, sets = [], {}
    for name, info in data.sets.items():
        sets[name] = {"type": info.type, "reactions": 0, "failed": 0, "mae_kcal_mol": None,
                      "published_mae_kcal_mol": data.published_mae.get(name, {}), "other_mae_kcal_mol": {},
                      "compute_s": 0.0, "failed_molecules": []}
    errors: dict[str, list[float]] = {s: [] for s in sets}
    ok_reactions: dict[str, list] = {s: [] for s in sets}
    for reaction in data.reactions:
        entry = sets[reaction.set]
        entry["reactions"] += 1
        missing = [m for m in reaction.molecules if m not in energies]
        if missing:
            entry["failed"] += 1
            for m in missing:
                if m not in entry["failed_molecules"]:
                    entry["failed_molecules"].append(m)
            continue
        value = reaction.value(energies) * HARTREE_TO_KCAL
        reference = reaction.reference * HARTREE_TO_KCAL
        errors[reaction.set].append(value - reference)
        ok_reactions[reaction.set].append(reaction)
        reactions.append({"name": reaction.name, "set": reaction.set, "reference": reference, "value": value,
                          "error": value - reference})
    for name, entry in sets.items():
        if errors[name]:
            entry["mae_kcal_mol"] = sum(abs(e) for e in errors[name]) / len(errors[name])
        used = {m for r in data.reactions if r.set == name for m in r.molecules}
        entry["compute_s"] = sum(records[m].get("wall_s", 0.0) for m in used if m in records)
        for label, other in others.items():
            chosen = ok_reactions[name]
            if chosen and all(m in other for r in chosen for m in r.molecules):
                entry["other_mae_kcal_mol"][label] = sum(
                    abs(r.value(other) - r.reference) for r in chosen) * HARTREE_TO_KCAL / len(chosen)
    failed = [{"molecule": name, "reason": r.get("error")} for name, r in records.items() if r.get("error")]
    failed += [{"molecule": name, "reason": "not computed"} for name in data.molecules if name not in records]
    all_errors = [e for v in errors.values() for e in v]
    return {
        "xc": settings.xc, "basis": settings.basis, "grid_level": settings.grid_level,
        "data": os.path.abspath(data.directory), "store": os.path.abspath(store.path),
        "mae_kcal_mol": sum(abs(e) for e in all_errors) / len(all_errors) if all_errors else None,
        "sets": sets, "reactions": reactions, "failed_molecules": failed,
        "units": {"reference": "kcal/mol", "value": "kcal/mol", "error": "kcal/mol (computed - reference)",
                  "mae_kcal_mol": "kcal/mol", "compute_s": "s (sum of the set's molecules' SCF wall times)"},
    }


# Published functionals shown in the text table (all of them are in the JSON).
_SHOWN = ("PBE0", "B3LYP", "r2SCAN0", "wB97M-V")


def format_report(result: dict) -> str:
    """A text table: one row per set, MAE (kcal/mol) beside the published and stored ones."""
    others = sorted({label for s in result["sets"].values() for label in s["other_mae_kcal_mol"]})
    head = f"{'set':<18} {'n':>5} {'failed':>6} {result['xc'] + '/' + result['basis']:>22}"
    head += "".join(f" {label.rsplit('/', 1)[0]:>18}" for label in others)
    head += "".join(f" {name:>9}" for name in _SHOWN)
    lines = ["MAE (kcal/mol) per set; published values: large basis, from the data set "
             "(see functional_mae_kcal.csv)", head]

    def cell(value, width):
        return f" {value:>{width}.3f}" if value is not None else f" {'-':>{width}}"

    for name, s in result["sets"].items():
        row = f"{name:<18} {s['reactions']:>5} {s['failed']:>6}" + cell(s["mae_kcal_mol"], 22)[1:].rjust(23)
        row += "".join(cell(s["other_mae_kcal_mol"].get(label), 18) for label in others)
        row += "".join(cell(s["published_mae_kcal_mol"].get(f), 9) for f in _SHOWN)
        lines.append(row)
    if result["mae_kcal_mol"] is not None:
        lines.append(f"all reactions: MAE {result['mae_kcal_mol']:.3f} kcal/mol over {len(result['reactions'])}")
    for failure in result["failed_molecules"]:
        lines.append(f"failed: {failure['molecule']}: {failure['reason']}")
    return "\n".join(lines)


def main(data_directory: str, *, sets: Iterable[str] | None, xc: str, basis: str | None, store_path: str | None,
         workers: int | None, grid_level: int = 3, retry_failed: bool = False) -> dict:
    """What ``dftjax bench reactions`` runs: load, check, compute what is new, report."""
    from dftjax.datasets import load_reactions
    from functionals import get_functional

    get_functional(xc)  # unknown names fail here, before anything is read or computed
    if not 0 <= int(grid_level) <= 9:
        raise ValueError(f"--grid-level {grid_level} must be in 0..9")
    data = load_reactions(data_directory, sets=sets)
    settings = ReactionSettings(xc=xc.strip().lower(), basis=(basis or default_basis(xc)).strip().lower(),
                                grid_level=int(grid_level))
    store = EnergyStore(store_path or default_store(data_directory))
    workers = os.cpu_count() or 1 if workers is None else workers
    if workers < 1:
        raise ValueError(f"--workers {workers} must be positive")

    def progress(message):
        print(f"[bench reactions] {message}", file=sys.stderr, flush=True)

    try:
        counts = run(data, settings, store, workers=workers, retry_failed=retry_failed, progress=progress)
    except KeyboardInterrupt:
        progress(f"interrupted: {len(store.records)} energies are in {store.path}; rerun the same command to resume")
        raise SystemExit(130) from None
    result = report(data, settings, store)
    result["molecules"] = {"total": len(data.molecules), **counts}
    result["table"] = format_report(result)
    if any(s["failed"] for s in result["sets"].values()):
        progress(f"{len(result['failed_molecules'])} molecules failed; their reactions are excluded (see 'failed')")
    return result
