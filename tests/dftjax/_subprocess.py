"""Run a Python program in a fresh process (new caches, new hash seed) and read its JSON line."""

import json
import os
import subprocess
import sys


def run_json(program: str, **environment) -> dict:
    """``python -c program`` with ``environment`` added to ours; the last line of stdout as JSON."""
    env = dict(os.environ, **{key: str(value) for key, value in environment.items()})
    out = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
