"""Size-class programs kept on disk as traced, lowered modules (``jax.export``), beside XLA's cache.

JAX's persistent compilation cache stores *executables*, but a new process still has to trace
and lower a program before it can look the executable up: for the force program of water in
def2-SVP that is ~15 s of the ~20 s a warm process spent on it (2 CPU cores). :func:`class_program`
wraps a jitted size-class function (its static arguments the size class and options) so that the
first process exports it (:func:`jax.export.export`: one trace and lowering, as ``jax.jit`` would
do anyway) and writes the serialized module to ``<cache dir>/exported/``; every later process
reads the module back (milliseconds), and ``jax.jit`` of it hits XLA's persistent cache.

A program is stored only when everything it depends on can be named across processes:

* the static arguments are dataclasses, named tuples, tuples, dicts, arrays, plain values and
  functions of dftjax, basis, functionals, JAX, NumPy or Flax (named by module, name, bytecode
  and what they close over: a functional's energy density is named by what it computes). A
  function from anywhere else, such as a functional defined in a user's script, could call code
  that changes under the same bytecode, so its programs are not stored;
* the key also holds the argument shapes and dtypes, the pytree structures, the JAX, NumPy and
  Flax versions, the backend, the x64 flag and a hash of the source of ``dftjax``, ``basis`` and
  ``functionals``, so an edit to the code or an upgrade never reuses a stale program.

Anything else (tracers from an outer transformation, arrays on several devices, a program that
cannot be exported such as the SCF loop with per-iteration progress, a host callback; a
turned-off cache) runs the plain ``jax.jit`` path: same values, only slower to start. A program
found unexportable leaves an empty ``.unexportable`` file, so later processes do not trace it
twice. Modules are written atomically (:mod:`dftjax.atomic`); a file that cannot be read is
ignored and rewritten. Serialization uses the ``flatbuffers`` package (JAX's own format for
exported modules).

Loaded programs are bounded by the process's memory mappings, not by a count. XLA:CPU maps each
kernel of an executable into pages of its own: a size-class force or Hessian program (~4000
kernels) takes ~12,000 of the 65,530 mappings Linux allows a process by default
(``vm.max_map_count``); past the limit LLVM cannot map the next program and the process dies
(measured 2026-12-07: a pytest worker that had run 20 force, frequency and SCF tests). So before a
program is loaded, the least recently used class programs are dropped from memory while the
process holds more than :data:`MAP_BUDGET` of its limit (once, a warning says so); a dropped
program is read back from disk (seconds) when it is called again.

>>> forces_program = class_program(energy_forces_padded, static_argnums=(0, 1))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import collections
import gc
import hashlib
import pickle
import threading
import time
import types
import warnings
import weakref
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from dftjax import atomic

__all__ = ["class_program", "exported_dir", "source_hash", "export_stats", "MAP_BUDGET", "drop_programs"]

_PACKAGES = ("dftjax", "basis", "functionals")  # their source is hashed into every key
_LIBRARIES = ("jax", "jaxlib", "numpy", "flax")  # their versions are in every key
_FORMAT = 1  # bump when the file layout changes


# What this process did: modules exported (and written), read back from disk, and calls that took
# the plain jit path (tracers, several devices, unnamed static arguments, cache off, not exportable).
_stats = {"exported": 0, "read": 0, "plain": 0, "dropped": 0}


def export_stats() -> dict:
    """Counts for this process: ``exported`` (traced and written), ``read`` (from disk), ``plain``
    calls, and programs ``dropped`` from memory to stay within the memory-map budget."""
    return dict(_stats)


# -- memory-map budget (see the module docstring) -------------------------------------------------

MAP_BUDGET = 0.4  # fraction of vm.max_map_count above which loaded programs are dropped
_MAX_MAP_COUNT = Path("/proc/sys/vm/max_map_count")
_SELF_MAPS = Path("/proc/self/maps")
_instances: "weakref.WeakSet[_ClassProgram]" = weakref.WeakSet()
_resident: "collections.OrderedDict[tuple[int, str], weakref.ref]" = collections.OrderedDict()  # LRU
_budget_lock = threading.RLock()
_plain_checked = [0.0]  # when the plain path last looked at the budget (it looks at most once a second)
_warned = [False]


def _map_limit() -> int | None:
    """The process's memory-map limit (Linux ``vm.max_map_count``), None where there is none to read."""
    try:
        return int(_MAX_MAP_COUNT.read_text())
    except (OSError, ValueError):
        return None


def _maps_in_use() -> int:
    """Memory mappings this process holds now (lines of ``/proc/self/maps``; ~2 ms per 1000)."""
    try:
        return _SELF_MAPS.read_bytes().count(b"\n")
    except OSError:
        return 0


def _over_budget() -> tuple[bool, int, int | None]:
    limit = _map_limit()
    if not limit:
        return False, 0, limit
    in_use = _maps_in_use()
    return in_use > MAP_BUDGET * limit, in_use, limit


def drop_programs() -> int:
    """Drop every loaded class program from memory (they reload from disk or recompile when called).

    Returns how many exported programs were dropped. The plain-``jit`` caches of class programs are
    cleared too. Used automatically when the process nears its memory-map limit; call it yourself
    to free memory between unrelated jobs.
    """
    with _budget_lock:
        n = len(_resident)
        while _resident:
            _drop_oldest()
        for program in list(_instances):
            program._jitted.clear_cache()
        gc.collect()
    return n


def _drop_oldest() -> None:
    (_, key), owner = _resident.popitem(last=False)
    owner = owner()
    if owner is not None:
        with owner._lock:
            owner._programs.pop(key, None)
        _stats["dropped"] += 1


def _make_room() -> None:
    """Drop least recently used programs while the process is over its memory-map budget."""
    with _budget_lock:
        over, in_use, limit = _over_budget()
        if not over:
            return
        if not _warned[0]:
            _warned[0] = True
            warnings.warn(
                f"dftjax: this process holds {in_use} memory mappings of the {limit} it may have "
                f"(vm.max_map_count; each loaded size-class program takes thousands): the least recently "
                f"used programs are dropped from memory and read back from disk when needed. To keep "
                f"more loaded, raise the limit (sudo sysctl -w vm.max_map_count=1048576).",
                RuntimeWarning, stacklevel=4)
        while over and _resident:
            _drop_oldest()
            gc.collect()
            over, in_use, limit = _over_budget()
        if over:  # what is left is plain-jit executables of class programs (cache off, several devices)
            for program in list(_instances):
                program._jitted.clear_cache()
            gc.collect()


class _Unnamed(Exception):
    """A static argument that cannot be named across processes."""


def exported_dir() -> Path | None:
    """``<compilation cache dir>/exported``, or None when the persistent cache is off."""
    cache = jax.config.jax_compilation_cache_dir
    return Path(cache) / "exported" if cache else None


@functools.lru_cache(maxsize=1)
def source_hash() -> str:
    """SHA-256 of every ``.py`` file of dftjax, basis and functionals (names and contents)."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for package in _PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def _versions() -> str:
    import flax

    return f"jax {jax.__version__}, numpy {np.__version__}, flax {flax.__version__}"


def _constant(value) -> str:
    """A code object's constant as text with no address (nested code) and no hash order (sets)."""
    if isinstance(value, types.CodeType):
        return _code_digest(value)
    if isinstance(value, (frozenset, set)):
        return f"frozenset({sorted(_constant(v) for v in value)})"
    if isinstance(value, tuple):
        return f"({','.join(_constant(v) for v in value)})"
    return repr(value)


def _code_digest(code: types.CodeType) -> str:
    """SHA-256 of bytecode, constants and names, nested code objects included."""
    digest = hashlib.sha256(code.co_code)
    digest.update(_constant(code.co_consts).encode())
    digest.update(repr(code.co_names).encode())
    return digest.hexdigest()


def _name(value: Any) -> str:
    """A text that names ``value`` the same way in every process (raises :class:`_Unnamed`).

    Functions are named by module, qualified name, bytecode and the values they close over, so a
    functional's energy density (a closure over its components and constants) is named by what it
    computes; the code of dftjax itself is covered by :func:`source_hash` as well.
    """
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return repr(value)
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, type):
        return f"type({value.__module__}.{value.__qualname__})"
    if isinstance(value, types.ModuleType):
        return f"module({value.__name__})"
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        array = np.asarray(value)
        return f"array({array.dtype},{array.shape},{hashlib.sha256(array.tobytes()).hexdigest()})"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__qualname__}({','.join(_name(v) for v in value)})"
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: repr(kv[0]))
        return f"dict({','.join(f'{_name(k)}:{_name(v)}' for k, v in items)})"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = tuple((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
        return f"{type(value).__module__}.{type(value).__qualname__}({_name(fields)})"
    if isinstance(value, functools.partial):
        return f"partial({_name(value.func)},{_name(value.args)},{_name(value.keywords)})"
    code = getattr(value, "__code__", None)
    if code is not None:
        if (value.__module__ or "").split(".")[0] not in _PACKAGES + _LIBRARIES:
            # a function from elsewhere (a user's script) may call code that changes between
            # processes under the same bytecode: never stored
            raise _Unnamed(f"{value.__module__}.{value.__qualname__}")
        cells = tuple(cell.cell_contents for cell in (value.__closure__ or ()))
        body = _code_digest(code)
        return f"function({value.__module__}.{value.__qualname__},{body},{_name(cells)})"
    raise _Unnamed(type(value).__qualname__)


def _single_device(leaves) -> bool:
    for leaf in leaves:
        if isinstance(leaf, jax.core.Tracer):
            return False
        sharding = getattr(leaf, "sharding", None)
        if sharding is not None and len(sharding.device_set) > 1:
            return False
    return True


class _Program:
    """The exported module of one key, jitted for calls in this process."""

    def __init__(self, exported, out_tree):
        self.call = jax.jit(exported.call)
        self.out_tree = out_tree


class _ClassProgram:
    def __init__(self, fun: Callable, static_argnums: tuple[int, ...], name: str):
        self._fun = fun
        self._jitted = jax.jit(fun, static_argnums=static_argnums)
        self._static = tuple(sorted(static_argnums))
        self._name = name
        self._programs: dict[str, _Program | None] = {}
        self._names: dict = {}
        self._lock = threading.Lock()
        functools.update_wrapper(self, fun)
        _instances.add(self)

    def __call__(self, *args):
        directory = exported_dir()
        static = tuple(args[i] for i in self._static)
        dynamic = tuple(a for i, a in enumerate(args) if i not in self._static)
        leaves, in_tree = jax.tree_util.tree_flatten(dynamic)
        program = None
        if directory is not None and _single_device(leaves):
            key = self._key(static, leaves, in_tree)
            if key is not None:
                program = self._program(key, directory, static, len(args), leaves, in_tree)
        if program is None:
            _stats["plain"] += 1
            now = time.monotonic()
            if now - _plain_checked[0] > 1.0 and not any(isinstance(x, jax.core.Tracer) for x in leaves):
                _plain_checked[0] = now
                _make_room()
            return self._jitted(*args)
        return jax.tree_util.tree_unflatten(program.out_tree, program.call(*leaves))

    def _static_name(self, static) -> str | None:
        """``_name(static)``, or None when it has no name across processes; remembered per value."""
        try:
            return self._names[static]
        except (KeyError, TypeError):  # TypeError: unhashable, named every time
            pass
        try:
            name = _name(static)
        except (_Unnamed, RecursionError):
            name = None
        try:
            self._names[static] = name
        except TypeError:
            pass
        return name

    def _key(self, static, leaves, in_tree) -> str | None:
        static_name = self._static_name(static)
        if static_name is None:
            return None
        avals = [(tuple(np.shape(x)), str(jax.numpy.result_type(x))) for x in leaves]
        text = "\n".join([
            str(_FORMAT), self._name, static_name, str(in_tree), repr(avals), _versions(),
            jax.default_backend(), str(jax.config.jax_enable_x64), source_hash(),
        ])
        return hashlib.sha256(text.encode()).hexdigest()

    def _program(self, key, directory: Path, static, n_args: int, leaves, in_tree) -> _Program | None:
        with self._lock:
            known, program = key in self._programs, self._programs.get(key)
        if known:
            if program is not None:
                with _budget_lock:  # (never while holding self._lock: _drop_oldest takes them the other way)
                    if (id(self), key) in _resident:
                        _resident.move_to_end((id(self), key))
            return program
        _make_room()  # before this program's executable is mapped
        path = directory / f"{self._name}-{key[:32]}.jaxexport"
        refused = path.with_suffix(".unexportable")  # an earlier process found it cannot be exported
        program = None
        if not refused.exists():
            program = _read(path)
            if program is not None:
                _stats["read"] += 1
            else:
                program = self._export(path, static, n_args, leaves, in_tree)
                _stats["exported"] += program is not None
                if program is None:
                    _touch(refused)
        with self._lock:
            self._programs[key] = program
        if program is not None:
            with _budget_lock:
                _resident[(id(self), key)] = weakref.ref(self)
        return program

    def _export(self, path: Path, static, n_args: int, leaves, in_tree) -> _Program | None:
        out_tree = []

        def flat(*flat_leaves):  # flat in, flat out: only builtin pytrees in the serialized module
            dynamic, statics = iter(jax.tree_util.tree_unflatten(in_tree, flat_leaves)), iter(static)
            args = [next(statics) if i in self._static else next(dynamic) for i in range(n_args)]
            out, tree = jax.tree_util.tree_flatten(self._fun(*args))
            out_tree.append(tree)
            return out

        specs = [jax.ShapeDtypeStruct(np.shape(x), jax.numpy.result_type(x)) for x in leaves]
        try:
            exported = jax.export.export(jax.jit(flat))(*specs)
            payload = {"module": bytes(exported.serialize()), "out_tree": out_tree[0]}
        except Exception:  # noqa: BLE001 - host callbacks, unserializable custom calls: plain jit
            return None
        try:
            atomic.write_pickle(path, payload)
        except OSError:
            pass  # a read-only cache still serves this process
        return _Program(exported, out_tree[0])


def _touch(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:
        pass


def _read(path: Path) -> _Program | None:
    try:
        payload = pickle.loads(path.read_bytes())
        exported = jax.export.deserialize(bytearray(payload["module"]))
        return _Program(exported, payload["out_tree"])
    except Exception:  # noqa: BLE001 - missing, truncated or foreign: export again
        return None


def class_program(fun: Callable, *, static_argnums: tuple[int, ...], name: str | None = None) -> Callable:
    """``jax.jit(fun, static_argnums=...)`` whose lowered programs persist across processes.

    Same call signature and results as the jitted function; see the module docstring for when a
    program is stored and when the plain jit path runs instead.
    """
    return _ClassProgram(fun, tuple(static_argnums), name or fun.__name__)
