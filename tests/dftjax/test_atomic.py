"""dftjax.atomic: a write either lands whole or leaves the previous file untouched."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from dftjax import atomic


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle this")


def test_round_trips_and_permissions(tmp_path):
    pickled = atomic.write_pickle(tmp_path / "sub" / "state.pkl", {"step": 3, "x": np.arange(4.0)})
    with open(pickled, "rb") as handle:
        state = pickle.load(handle)
    assert state["step"] == 3 and np.array_equal(state["x"], np.arange(4.0))
    written = atomic.write_json(tmp_path / "report.json", {"energy": -1.5}, indent=1)
    assert json.loads(open(written).read()) == {"energy": -1.5}
    npz = atomic.savez(tmp_path / "model", compressed=True, w=np.eye(2))
    assert npz.endswith("model.npz")  # NumPy's convention: .npz appended
    with np.load(npz) as archive:
        assert np.array_equal(archive["w"], np.eye(2))
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(npz).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "report.json", "sub"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "checkpoint.pkl"
    atomic.write_pickle(path, {"step": 1})
    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic.write_pickle(path, {"step": 2, "bad": Unpicklable()})
    with open(path, "rb") as handle:
        assert pickle.load(handle) == {"step": 1}
    with pytest.raises(TypeError):
        atomic.write_json(tmp_path / "checkpoint.pkl", {"bad": object()})
    with open(path, "rb") as handle:
        assert pickle.load(handle) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pkl"]
