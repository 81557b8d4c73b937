"""XLA compilation: the persistent cache (on by default) and a counter of compilations.

Compilation, not arithmetic, dominates a cold dftjax run on small molecules, so three things are
kept in one place:

* :func:`enable_compilation_cache` keeps XLA executables on disk (JAX's persistent compilation
  cache), so a second process with the same size class starts warm. ``import dftjax`` turns it on
  for the Python API as well as the CLI, in ``$XDG_CACHE_HOME/dftjax/jax`` (``~/.cache/dftjax/jax``);
  ``DFTJAX_CACHE_DIR`` moves it and an empty value turns it off. A cache directory the user already
  configured in JAX is left alone.
* :mod:`dftjax.exported` keeps the size-class programs themselves (SCF loop, integral build,
  forces, Hessian) as lowered modules in ``<cache dir>/exported``, so that a new process skips
  tracing and lowering, which cost more than reading the executable;
* :class:`CompilationCounter` counts the XLA backend compilations (and persistent-cache hits) that
  happen while it is open, from JAX's own monitoring events: what ``dftjax scf --json`` and the
  benchmarks report as ``compilations``.

>>> with CompilationCounter() as counter:
...     run_scf(molecule)                          # doctest: +SKIP
>>> counter.compilations, counter.cache_hits      # doctest: +SKIP
(12, 0)
"""

from __future__ import annotations

import os
import threading

import jax

__all__ = ["enable_compilation_cache", "default_cache_dir", "CompilationCounter", "compilation_totals"]

_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_CACHE_HIT = "/jax/compilation_cache/cache_hits"

_lock = threading.Lock()
# JAX times every "compile or read from the persistent cache" call under one event (backend_calls);
# the cache hits among them are a second event, so compilations = backend_calls - cache_hits.
_totals = {"backend_calls": 0, "compile_seconds": 0.0, "cache_hits": 0}
_listening = False


def default_cache_dir() -> str:
    """The cache directory used when ``DFTJAX_CACHE_DIR`` is unset (XDG convention)."""
    return os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "dftjax", "jax")


def enable_compilation_cache() -> str | None:
    """Turn JAX's persistent compilation cache on (idempotent); returns the directory or None.

    ``DFTJAX_CACHE_DIR`` overrides the location, an empty value turns the cache off. When JAX
    already has a cache directory (set by the user), it is kept. Programs that compile in under
    0.5 s are not stored (JAX's threshold; reading them back would cost about as much).
    """
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return configured
    path = os.environ.get("DFTJAX_CACHE_DIR", default_cache_dir())
    if not path:
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


def _on_duration(event: str, duration: float, **_) -> None:
    if event == _BACKEND_COMPILE:
        with _lock:
            _totals["backend_calls"] += 1
            _totals["compile_seconds"] += float(duration)


def _on_event(event: str, **_) -> None:
    if event == _CACHE_HIT:
        with _lock:
            _totals["cache_hits"] += 1


def _listen() -> None:
    global _listening
    with _lock:
        if _listening:
            return
        _listening = True
    jax.monitoring.register_event_duration_secs_listener(_on_duration)
    jax.monitoring.register_event_listener(_on_event)


def compilation_totals() -> dict:
    """Process-wide totals since the first counter was opened: compilations, compile_seconds, cache_hits."""
    _listen()
    with _lock:
        return {"compilations": _totals["backend_calls"] - _totals["cache_hits"],
                "compile_seconds": _totals["compile_seconds"], "cache_hits": _totals["cache_hits"]}


class CompilationCounter:
    """Counts XLA compilations inside a ``with`` block (process-wide, all threads).

    Attributes (after or during the block):
      compilations: XLA backend compilations (persistent-cache hits are not compilations).
      compile_seconds: wall seconds spent compiling, and reading executables from the cache.
      cache_hits: executables read from the persistent cache instead of compiled.
    """

    def __enter__(self) -> "CompilationCounter":
        self._start = compilation_totals()
        self._end = None
        return self

    def __exit__(self, *exc) -> None:
        self._end = compilation_totals()

    def _delta(self, key: str):
        end = self._end if self._end is not None else compilation_totals()
        return end[key] - self._start[key]

    @property
    def compilations(self) -> int:
        return self._delta("compilations")

    @property
    def compile_seconds(self) -> float:
        return self._delta("compile_seconds")

    @property
    def cache_hits(self) -> int:
        return self._delta("cache_hits")

    def as_dict(self) -> dict:
        return {"compilations": self.compilations, "compile_seconds": round(self.compile_seconds, 3),
                "cache_hits": self.cache_hits}
