"""The compilation counter tells compilations from persistent-cache reads."""

from tests.dftjax._subprocess import run_json

_PROGRAM = """
import json
import dftjax  # turns the persistent cache on in DFTJAX_CACHE_DIR
import jax, jax.numpy as jnp
from dftjax.compilation import CompilationCounter
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # store even a tiny program
with CompilationCounter() as counter:
    jax.block_until_ready(jax.jit(lambda x: jnp.sin(x) @ x.T + 1.0)(jnp.ones((3, 3))))
print(json.dumps(counter.as_dict()))
"""


def _run(cache_dir):
    return run_json(_PROGRAM, DFTJAX_CACHE_DIR=cache_dir)


def test_a_cache_read_is_not_counted_as_a_compilation(tmp_path):
    first = _run(tmp_path)
    assert first["compilations"] >= 1 and first["cache_hits"] == 0, first
    second = _run(tmp_path)  # a new process finds the executable on disk
    assert second["compilations"] == 0 and second["cache_hits"] >= 1, second
