"""Atomic ``.npz`` writes for models and checkpoints: a crash mid-write never leaves a truncated
file under the final name (write to a temporary file in the same directory, then ``os.replace``)."""
from __future__ import annotations

import os
import tempfile

import numpy as np


def atomic_savez(path, **arrays) -> str:
    """``np.savez(path, **arrays)`` atomically; like ``np.savez`` appends ``.npz`` if missing.
    Returns the path written."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    directory = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    os.close(handle)
    try:
        np.savez(tmp, **arrays)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)        # mkstemp creates 0600; a model is a normal file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
