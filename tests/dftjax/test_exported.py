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


def test_least_recently_used_programs_are_dropped_near_the_memory_map_limit(tmp_path, monkeypatch):
    # A stand-in process: 1000 mappings allowed, 100 per loaded toy program (a real force program
    # takes ~12,000 of Linux's default 65,530). Over the 40 % budget, programs are dropped before
    # the next one loads, least recently used first.
    monkeypatch.setattr(exported, "exported_dir", lambda: tmp_path)
    monkeypatch.setattr(exported, "_resident", exported.collections.OrderedDict())
    monkeypatch.setattr(exported, "_warned", [False])
    monkeypatch.setattr(exported, "_map_limit", lambda: 1000)
    monkeypatch.setattr(exported, "_maps_in_use", lambda: 100 * len(exported._resident))
    program = class_program(_toy, static_argnums=(0,), name="toy")
    x, pair = jnp.arange(3.0), (jnp.ones(3), 1.0)

    leaves, in_tree = jax.tree_util.tree_flatten((x, pair))
    keys = {power: program._key((_Settings(power),), leaves, in_tree) for power in range(1, 7)}

    def loaded():
        return sorted(power for power, key in keys.items() if key in program._programs)

    before = exported.export_stats()
    for power in (1, 2, 3, 4, 5):  # 400 mappings before the fifth: at the budget, not over it
        program(_Settings(power), x, pair)
    program(_Settings(2), x, pair)  # a hit: 2 becomes the most recently used
    assert loaded() == [1, 2, 3, 4, 5] and exported.export_stats()["dropped"] == before["dropped"]
    with pytest.warns(RuntimeWarning, match="vm.max_map_count"):
        out = program(_Settings(6), x, pair)  # 500 > 400: drop 1, the least recently used
    np.testing.assert_array_equal(out["value"], x**6 + 1.0)
    assert loaded() == [2, 3, 4, 5, 6]
    stats = exported.export_stats()
    again = program(_Settings(1), x, pair)  # read back from disk (3 makes room), not traced again
    np.testing.assert_array_equal(again["value"], x + 1.0)
    assert loaded() == [1, 2, 4, 5, 6]
    after = exported.export_stats()
    assert after["read"] == stats["read"] + 1 and after["exported"] == stats["exported"]
    assert after["dropped"] == before["dropped"] + 2


def test_dropping_programs_unmaps_their_executables():
    """A real SCF's programs release their memory mappings when dropped, and reload bit for bit."""
    from basis.molecule import make_molecule
    from dftjax.scf import SCFOptions, run_scf

    if exported._map_limit() is None:
        pytest.skip("needs Linux's /proc/sys/vm/max_map_count and /proc/self/maps")
    h2, options = make_molecule("H 0 0 0; H 0 0 0.74"), SCFOptions(xc="hf", basis="sto-3g")
    exported.drop_programs()
    base = exported._maps_in_use()
    first = run_scf(h2, options)
    loaded = exported._maps_in_use()
    assert exported.drop_programs() >= 2
    dropped = exported._maps_in_use()
    assert dropped < loaded - 200, (base, loaded, dropped)  # measured 2026-12-07: 1537 -> 1155
    assert run_scf(h2, options).energy == first.energy
