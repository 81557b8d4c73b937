"""Size-class programs persist as lowered modules: a new process reads them instead of tracing."""

import dataclasses
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dftjax import exported
from dftjax.exported import _name, _Unnamed, class_program
from functionals import Functional, get_functional
from tests.dftjax._subprocess import run_json

_PROGRAM = """
import json
import dftjax
from basis.molecule import make_molecule
from dftjax.exported import export_stats
from dftjax.scf import SCFOptions, run_scf
result = run_scf(make_molecule("H 0 0 0; H 0 0 0.74"), SCFOptions(xc="hf", basis="sto-3g"))
print(json.dumps({"energy": float(result.energy), **export_stats()}))
"""


def _run(cache_dir):
    return run_json(_PROGRAM, DFTJAX_CACHE_DIR=cache_dir)


def test_a_second_process_reads_the_scf_programs_instead_of_tracing(tmp_path):
    first = _run(tmp_path)
    assert first["exported"] >= 2 and first["read"] == 0 and first["plain"] == 0, first
    files = sorted(p.name.split("-")[0] for p in (tmp_path / "exported").iterdir())
    assert {"system_at", "converge"} <= set(files), files
    second = _run(tmp_path)
    assert second["exported"] == 0 and second["read"] == first["exported"] and second["plain"] == 0, second
    assert second["energy"] == first["energy"]  # the same program: bit for bit
    assert abs(first["energy"] - -1.1167593074) < 1e-9  # H2 RHF/STO-3G at 0.74 A, PySCF scf.RHF


@dataclasses.dataclass(frozen=True)
class _Settings:
    power: int
    label: str = "x"


def _toy(settings, x, pair):
    return {"value": x**settings.power + pair[0], "other": pair[1] * 2.0}


def test_results_match_jit_and_files_are_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(exported, "exported_dir", lambda: tmp_path)
    program = class_program(_toy, static_argnums=(0,), name="toy")
    x, pair = jnp.arange(3.0), (jnp.ones(3), jnp.float64(2.0))
    out = program(_Settings(2), x, pair)
    want = jax.jit(_toy, static_argnums=0)(_Settings(2), x, pair)
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(want)
    np.testing.assert_array_equal(out["value"], want["value"])
    assert [p.name.startswith("toy-") for p in tmp_path.iterdir()] == [True]
    again = class_program(_toy, static_argnums=(0,), name="toy")  # a fresh process, in effect
    before = exported.export_stats()
    np.testing.assert_array_equal(again(_Settings(2), x, pair)["value"], want["value"])
    assert exported.export_stats()["read"] == before["read"] + 1
    program(_Settings(3), x, pair)  # another static value: another program
    assert len(list(tmp_path.iterdir())) == 2


def test_traced_or_unnamed_calls_take_the_plain_jit_path(tmp_path, monkeypatch):
    monkeypatch.setattr(exported, "exported_dir", lambda: tmp_path)
    program = class_program(_toy, static_argnums=(0,), name="toy")
    grad = jax.grad(lambda x: program(_Settings(2), x, (x, 1.0))["value"].sum())(jnp.arange(3.0))
    np.testing.assert_allclose(grad, 2 * np.arange(3.0) + 1.0)
    np.testing.assert_array_equal(  # a static argument with no name across processes
        program(_Settings(2, label=threading.Lock()), jnp.ones(2), (jnp.ones(2), 1.0))["value"], 2.0)
    assert list(tmp_path.iterdir()) == []  # neither call wrote a module


def test_names_are_stable_and_tell_functionals_apart():
    assert _name(get_functional("b3lyp")) == _name(get_functional("B3LYP"))  # new objects, same functional
    assert _name(get_functional("pbe")) != _name(get_functional("pbe0"))
    assert _name(get_functional("pbe")) != _name(get_functional("pbe").replace(exact_exchange=0.1))
    own = Functional(name="pbe", kind="gga", energy_density=lambda params, features: features.total_density)
    with pytest.raises(_Unnamed):  # code from outside the hashed packages may change under one bytecode
        _name(own)
    assert _name(np.arange(3)) != _name(np.arange(3.0))
    with pytest.raises(_Unnamed):
        _name(threading.Lock())


_NAMES = """
import hashlib, json
import dftjax
from basis.molecule import make_molecule
from dftjax.adjoint import scf_static
from dftjax.exported import _name
from dftjax.scf import SCFOptions
from dftjax.system import check_options
from functionals import get_functional
options = SCFOptions(xc="r2scan", basis="sto-3g")
water = make_molecule("O 0 0 0; H 0 0.757 0.587; H 0 -0.757 0.587")
static = scf_static(water, options, check_options(water, options), response_tol=1e-10)
names = {n: _name(get_functional(n)) for n in ("pbe", "b3lyp", "camb3lyp", "dftjax:nn-mgga")}
names["static"] = _name(static)
print(json.dumps({k: hashlib.sha256(v.encode()).hexdigest() for k, v in names.items()}))
"""


def test_names_are_the_same_in_every_process():
    """Names hold no addresses (e.g. of nested code objects), or no process would find another's files."""
    first, second = (run_json(_NAMES, PYTHONHASHSEED=seed) for seed in (1, 2))  # set order follows the seed
    assert first == second


def _with_callback(settings, x):
    jax.debug.callback(lambda value: None, x)  # a host callback: not serializable
    return x * settings.power


def test_a_program_that_cannot_be_exported_runs_plain_and_is_not_traced_again(tmp_path, monkeypatch):
    monkeypatch.setattr(exported, "exported_dir", lambda: tmp_path)
    before = exported.export_stats()
    program = class_program(_with_callback, static_argnums=(0,), name="callback")
    np.testing.assert_array_equal(program(_Settings(3), jnp.ones(2)), 3.0)
    assert [p.suffix for p in tmp_path.iterdir()] == [".unexportable"]
    traced = []
    again = class_program(lambda s, x: traced.append(1) or _with_callback(s, x), static_argnums=(0,), name="callback")
    np.testing.assert_array_equal(again(_Settings(3), jnp.ones(2)), 3.0)
    assert len(traced) == 1  # the plain jit's trace only, no second attempt to export
    after = exported.export_stats()
    assert after["exported"] == before["exported"] and after["plain"] == before["plain"] + 2
