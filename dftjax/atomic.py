"""Atomic file writes for checkpoints, trained models, caches and reports.

A long job (KSR or neural-XC training, VMC, orbital-free training, reference data generation) may be
killed at any moment; a reader must then find either the previous file or the new one, never a
truncated one. Every writer here fills a temporary file in the destination's directory (same file
system), flushes it to disk (``fsync``) and moves it over the destination with ``os.replace``, which
POSIX makes atomic. A failure while writing removes the temporary file and leaves the old one as it was.

``functionals`` does not import the project (see ARCHITECTURE.md), so ``functionals.neural_xc`` keeps
its own model writer; everything in ``dftjax`` and ``qmc`` writes through this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import tempfile
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def replacing(path: str, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path next to ``path``; on a clean exit it is synced and moved onto ``path``.

    ``suffix`` ends the temporary name (e.g. ``".npz"``, which ``np.savez`` would otherwise append).
    The file keeps the permissions of a normally created file (``0o666`` less the umask).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}", dir=directory)
    os.close(handle)
    try:
        yield tmp
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_pickle(path: str, obj: Any) -> str:
    """Pickle ``obj`` to ``path`` atomically; returns ``path``."""
    with replacing(path) as tmp, open(tmp, "wb") as handle:
        pickle.dump(obj, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return os.fspath(path)


def write_json(path: str, payload: Any, **dump_options) -> str:
    """``json.dump(payload)`` to ``path`` atomically (``dump_options`` go to ``json.dump``); returns ``path``."""
    with replacing(path) as tmp, open(tmp, "w") as handle:
        json.dump(payload, handle, **dump_options)
    return os.fspath(path)


def savez(path: str, *, compressed: bool = False, **arrays) -> str:
    """``np.savez`` (or ``np.savez_compressed``) to ``path`` atomically. Like NumPy, appends ``.npz``
    when ``path`` has another ending; returns the path written."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    with replacing(path, suffix=".npz") as tmp:
        (np.savez_compressed if compressed else np.savez)(tmp, **arrays)
    return path
