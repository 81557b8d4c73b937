"""Convert the DM21 TensorFlow checkpoints to the ``.npz`` files that :mod:`functionals.dm21` loads.

Runs in a separate TensorFlow environment, never in dftjax's own (dftjax does not depend on
TensorFlow)::

    python3.11 -m venv /work/venv-dm21
    /work/venv-dm21/bin/pip install tensorflow-cpu==2.15.1 tensorflow-hub==0.15.0 'numpy<2'
    cd /work/main
    OMP_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \\
        /work/venv-dm21/bin/python functionals/models/dm21/convert.py \\
        --checkpoints /work/shared/data/dm21 --out functionals/models/dm21

``--checkpoints`` is a folder holding ``DM21/``, ``DM21m/``, ``DM21mc/`` and ``DM21mu/``, each the
TF-Hub SavedModel of the original code (``saved_model.pb`` and ``variables/``), as in
github.com/google-deepmind/deepmind-research, folder
``density_functional_approximation_dm21/density_functional_approximation_dm21/checkpoints/``.
Only the variables checkpoint (``variables/variables.*``) is read: the 28 float32 tensors of the
network, copied bit for bit (no arithmetic), renamed as below and stored as float32 (their
original precision; :func:`functionals.dm21.load_params` casts them to float64).

* ``input/{w,b}`` (11, 256), (256,): ``SquashUnprocessedData/linear/{w,b}``;
* ``block{i}/{w,b}`` (256, 256), (256,), i = 0..5: ``MLP/ResidualBlock[_i]/linear/{w,b}``;
* ``block{i}/{scale,offset}`` (256,): ``MLP/ResidualBlock[_i]/layer_norm/{gamma,beta}``;
* ``output/{w,b}`` (256, 3), (3,): ``OutputLayer/linear/{w,b}``;

(TensorFlow names under ``hub_wrapper/local_functional_v2/``; ``ResidualBlock`` for i = 0,
``ResidualBlock_i`` after.)

Each file also holds ``metadata``, a JSON string (functional name, source commit, license, the
SHA-256 of the checkpoint files read). The network these weights belong to (the graph in
``saved_model.pb``) is written out in :mod:`functionals.dm21`, and
``tests/functionals/test_dm21.py`` checks it against the original TensorFlow graph.

Parameters: Kirkpatrick et al., Science 374, 1385 (2021), CC BY 4.0 (see ``README.md`` here).
"""
import argparse
import hashlib
import json
import os

import numpy as np
import tensorflow as tf

FUNCTIONALS = ("DM21", "DM21m", "DM21mc", "DM21mu")
SOURCE_COMMIT = "f5de0ede8430809180254ee957abf36ed62579ef"
_PREFIX = "hub_wrapper/local_functional_v2/"
N_BLOCKS = 6


def _variable_names() -> dict[str, str]:
    """npz key -> TensorFlow checkpoint key."""
    names = {"input/w": "SquashUnprocessedData/linear/w", "input/b": "SquashUnprocessedData/linear/b",
             "output/w": "OutputLayer/linear/w", "output/b": "OutputLayer/linear/b"}
    for i in range(N_BLOCKS):
        block = "MLP/ResidualBlock" + ("" if i == 0 else f"_{i}")
        names[f"block{i}/w"] = f"{block}/linear/w"
        names[f"block{i}/b"] = f"{block}/linear/b"
        names[f"block{i}/scale"] = f"{block}/layer_norm/gamma"
        names[f"block{i}/offset"] = f"{block}/layer_norm/beta"
    return {k: _PREFIX + v for k, v in names.items()}


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def convert(checkpoint_dir: str, name: str) -> dict[str, np.ndarray]:
    """The float32 arrays of one functional, keyed as in the module docstring, plus ``metadata``."""
    prefix = os.path.join(checkpoint_dir, name, "variables", "variables")
    reader = tf.train.load_checkpoint(prefix)
    stored = reader.get_variable_to_shape_map()
    names = _variable_names()
    unexpected = set(stored) - set(names.values())
    if unexpected or len(stored) != len(names):
        raise ValueError(f"{name}: the checkpoint does not hold exactly the DM21 network's variables "
                         f"(unexpected: {sorted(unexpected)}, expected {len(names)}, found {len(stored)})")
    arrays = {}
    for key, tf_name in names.items():
        value = reader.get_tensor(tf_name)
        if value.dtype != np.float32:
            raise ValueError(f"{name}: {tf_name} is {value.dtype}, expected float32")
        arrays[key] = value
    files = sorted(f for f in os.listdir(os.path.dirname(prefix)))
    metadata = {
        "functional": name,
        "paper": "Kirkpatrick et al., Pushing the frontiers of density functionals by solving the "
                 "fractional electron problem, Science 374, 1385 (2021)",
        "license": "CC BY 4.0 (parameters), https://creativecommons.org/licenses/by/4.0/",
        "source": "github.com/google-deepmind/deepmind-research, density_functional_approximation_dm21/"
                  f"density_functional_approximation_dm21/checkpoints/{name}",
        "source_commit": SOURCE_COMMIT,
        "checkpoint_sha256": {f: _sha256(os.path.join(os.path.dirname(prefix), f)) for f in files},
        "converted_with": f"tensorflow {tf.__version__}, numpy {np.__version__}",
        "dtype": "float32 (as stored in the checkpoint)",
    }
    arrays["metadata"] = np.array(json.dumps(metadata, sort_keys=True))
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", required=True, help="folder holding DM21/, DM21m/, DM21mc/, DM21mu/")
    parser.add_argument("--out", required=True, help="folder to write dm21.npz, dm21m.npz, ... into")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name in FUNCTIONALS:
        arrays = convert(args.checkpoints, name)
        path = os.path.join(args.out, f"{name.lower()}.npz")
        np.savez(path, **arrays)
        print(f"{name}: {len(arrays) - 1} arrays -> {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
