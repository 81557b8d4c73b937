"""Walkers split over 4 host devices (jax.sharding) give the single-device VMC run for a fixed seed."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from basis.molecule import make_molecule
from qmc.train import run_vmc, walker_mesh
from tests.qmc.conftest import TINY

_SCRIPT = """
import json, jax, qmc
from basis.molecule import make_molecule
from qmc.train import run_vmc
from tests.qmc.conftest import TINY
jax.config.update("jax_enable_x64", True)
result = run_vmc(make_molecule("He 0 0 0"), TINY)
positions = result.state.mcmc.positions
print(json.dumps({
    "devices": jax.device_count(),
    "walker_devices": len(positions.sharding.device_set),
    "shard_shape": list(positions.sharding.shard_shape(positions.shape)),
    "energy": list(map(float, result.history.energy)),
    "variance": list(map(float, result.history.variance)),
    "acceptance": list(map(float, result.history.acceptance)),
    "positions": jax.device_get(positions).tolist(),
}))
"""


def test_walker_mesh_uses_a_divisor_of_the_walker_count():
    assert walker_mesh(16) is None  # this process has one device: nothing to split


@pytest.mark.slow  # a second JAX process compiling the SPMD-partitioned steps: ~20 s of CPU
def test_four_host_devices_match_one():
    env = dict(os.environ)
    # without multi-threaded Eigen, collectives of 4 virtual devices cannot starve on 2 cores
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4 --xla_cpu_multi_thread_eigen=false"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, cwd=root, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sharded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sharded["devices"] == 4 and sharded["walker_devices"] == 4
    assert sharded["shard_shape"] == [TINY.walkers // 4, 6]  # 4 walkers per device
    single = run_vmc(make_molecule("He 0 0 0"), TINY)  # compiled already by test_train (same options)
    # Same proposals and acceptances (the random numbers are drawn for the global walker array); only
    # the summation order of walker means and SPRING's Gram matrix differs: rounding, ~1e-15 relative,
    # grown over 6 parameter updates.
    np.testing.assert_array_equal(sharded["acceptance"], single.history.acceptance)
    np.testing.assert_allclose(sharded["energy"], single.history.energy, rtol=0, atol=1e-9)
    np.testing.assert_allclose(sharded["variance"], single.history.variance, rtol=1e-8, atol=0)
    np.testing.assert_allclose(sharded["positions"], np.asarray(single.state.mcmc.positions), rtol=0, atol=1e-9)
