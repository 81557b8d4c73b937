"""qmc tests: float64 and strict rank promotion come from tests/conftest.py; shared small systems here."""
import jax
import pytest

from basis.molecule import make_molecule
from qmc.ansatz import FermiNetOptions, make_ansatz

# Small enough to compile in seconds on a shared CPU, big enough to exercise every layer type.
SMALL = FermiNetOptions(hidden_one=(16, 16), hidden_two=(4, 4), determinants=2)


@pytest.fixture(scope="module")
def lih():
    """LiH at 3.015 bohr: 2 up + 2 down electrons, two nuclei; a small FermiNet with its parameters."""
    molecule = make_molecule("Li 0 0 0; H 0 0 3.015", unit="bohr")
    module = make_ansatz("ferminet", molecule, SMALL)
    x = jax.random.normal(jax.random.PRNGKey(0), (12,))
    params = jax.jit(module.init)(jax.random.PRNGKey(1), x)  # eager init dispatches op by op: slow
    return molecule, module, params
