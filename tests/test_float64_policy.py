"""One float64 policy, whichever package is imported first, and no import rewrites the environment."""

import json
import os
import subprocess
import sys

import pytest

_PROBE = """
import json, os, sys
before = os.environ.get("XLA_FLAGS")
import warnings
warnings.simplefilter("ignore")
import {module}
import jax.numpy as jnp
print(json.dumps({{"dtype": str(jnp.asarray(1.0).dtype), "xla_flags_unchanged": os.environ.get("XLA_FLAGS") == before}}))
"""


@pytest.mark.parametrize("module", ["basis", "functionals", "dftjax", "qmc"])
def test_any_package_imported_first_gives_float64_and_leaves_the_environment(module):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _PROBE.format(module=module)], env=env, capture_output=True,
                         text=True, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe == {"dtype": "float64", "xla_flags_unchanged": True}, (module, probe)
