"""qmc tests: float64 and strict rank promotion come from tests/conftest.py; shared small systems here."""
import jax
import pytest

from basis.molecule import make_molecule
from qmc.ansatz import FermiNetOptions, make_ansatz
from qmc.train import VMCOptions

# Small enough to compile in seconds on a shared CPU, big enough to exercise every layer type.
SMALL = FermiNetOptions(hidden_one=(16, 16), hidden_two=(4, 4), determinants=2)

# A whole VMC run in a few compilations: shared by test_train and test_sharding, whose single-device
# reference reuses test_train's compiled steps (qmc.train caches them by settings).
TINY = VMCOptions(
    ansatz_options=FermiNetOptions(hidden_one=(8,), hidden_two=(4,), determinants=1),
    iterations=6, walkers=16, seed=3, pretrain_iterations=0, burn_in=2, mcmc_steps=2,
    eval_iterations=0, checkpoint_every=2, progress_every=0,
)


@pytest.fixture(scope="module")
def lih():
    """LiH at 3.015 bohr: 2 up + 2 down electrons, two nuclei; a small FermiNet with its parameters."""
    molecule = make_molecule("Li 0 0 0; H 0 0 3.015", unit="bohr")
    module = make_ansatz("ferminet", molecule, SMALL)
    x = jax.random.normal(jax.random.PRNGKey(0), (12,))
    params = jax.jit(module.init)(jax.random.PRNGKey(1), x)  # eager init dispatches op by op: slow
    return molecule, module, params
