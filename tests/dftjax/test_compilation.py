"""The compilation counter tells compilations from persistent-cache reads."""

import json
import os
import subprocess
import sys

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
    env = dict(os.environ, DFTJAX_CACHE_DIR=str(cache_dir))
    out = subprocess.run([sys.executable, "-c", _PROGRAM], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_cache_read_is_not_counted_as_a_compilation(tmp_path):
    first = _run(tmp_path)
    assert first["compilations"] >= 1 and first["cache_hits"] == 0, first
    second = _run(tmp_path)  # a new process finds the executable on disk
    assert second["compilations"] == 0 and second["cache_hits"] >= 1, second
