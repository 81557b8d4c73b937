"""The tutorial notebooks under notebooks/: valid, executed, and reproducing their key numbers.

Default tier (about 5 s): every notebook is nbformat 4 JSON whose code cells compile, equal the
sources of ``notebooks/build_notebooks.py``, and hold the outputs of an error-free run with the
shipped settings (a figure included), whose printed key numbers pass the same checks as a fresh
run; the executor (``notebooks/execute.py``) is tested on a small notebook.

Slow tier: each notebook runs top to bottom in a subprocess (minutes each: the runtimes are in
notebooks/README.md) and its fresh outputs pass the checks.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"notebooks_{name}", NOTEBOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = _module("build_notebooks")
NAMES = sorted(BUILD.NOTEBOOKS)


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"no output matches {pattern!r}"
    return float(match.group(1))


def _printed(notebook: dict) -> str:
    """Everything the code cells printed (stdout and stderr streams), in order."""
    return "".join("".join(output["text"]) for cell in notebook["cells"] if cell["cell_type"] == "code"
                   for output in cell["outputs"] if output["output_type"] == "stream")


def check_first_scf(text: str) -> None:
    # same integrals, same grid, SCF converged to 1e-11 Ha: measured 1e-13
    assert abs(_number(r"E\(dftjax\) - E\(PySCF\) = (\S+) Ha", text)) < 1e-6
    # exact derivatives of the same energy; SCF gradient converged to 1e-7: measured ~1e-9
    assert _number(r"max \|F\(dftjax\) - F\(PySCF\)\| = (\S+) Ha/bohr", text) < 1e-5
    assert _number(r"\|sum of forces\| += (\S+) Ha/bohr", text) < 1e-6
    # central differences with step 1e-4 of SCF energies converged to 1e-11 Ha: error ~1e-7
    for name in ("kappa", "mu"):
        assert _number(rf"dE/d{name}: jax\.grad .* difference (\S+)", text) < 1e-5
    assert "converged=True after" in text
    assert _number(r"max \|F\| = (\S+) Ha/bohr", text) < 4.5e-4


def check_ksr(text: str) -> None:
    ksr = _number(r"(?m)^KSR-global: MAE (\S+) mHa", text)
    worst = _number(r"(?m)^KSR-global: MAE \S+ mHa, max error (\S+) mHa", text)
    lda = _number(r"(?m)^LDA: +MAE (\S+) mHa", text)
    assert 40.0 < lda < 70.0  # the 1D LDA misses the stretched bond (measured 54.73 mHa)
    # trained on two geometries, tested on 32, with the CLI's defaults: the stored run 0.605 / 1.467 mHa,
    # 1.264 / 3.275 on our 2-core development machine; training amplifies rounding differences between
    # CPUs (tests/dftjax/oned/test_ksr.py::test_paper_h2_experiment_with_cli_defaults), so the mean is
    # held to the paper's chemical accuracy and the max to 10 mHa, the spread over seeds 0-3
    assert ksr < 1.6 and worst < 10.0
    # fixed parameters, evaluated by the same code that wrote their metadata (0.6049 / 1.4668 mHa)
    assert abs(_number(r"(?m)^shipped KSR-global: MAE (\S+) mHa", text) - 0.605) < 0.01
    assert abs(_number(r"(?m)^shipped KSR-global: MAE \S+ mHa, max error (\S+) mHa", text) - 1.467) < 0.01


def check_ofdft(text: str) -> None:
    def row(name):  # energy error (kcal/mol) and density L2 error of one solver's table row
        match = re.search(rf"^{re.escape(name)} +\S+ +\S+ +(\S+) +(\S+) +\d+$", text, re.MULTILINE)
        assert match, name
        return float(match.group(1)), float(match.group(2))

    for name in ("KRR", "neural"):  # Brockherde et al. 2017 quote ~0.7 kcal/mol mean at M = 100
        energy_error, density_error = row(name)
        assert abs(energy_error) < 3.0 and density_error < 0.1, (name, energy_error, density_error)
    assert abs(row("TF+vW")[0]) > 10.0  # the analytic baseline is far off for N = 1


def check_vmc(text: str) -> None:
    energy = _number(r"E\(VMC, FermiNet\) = (\S+) \+-", text)
    error = _number(r"E\(VMC, FermiNet\) = \S+ \+- (\S+) Ha", text)
    exact = -2.903724
    assert 0 < error < 2e-3
    assert energy > exact - 5 * error  # variational
    assert energy < -2.8617 - 0.02     # well below the Hartree-Fock limit
    assert abs(energy - exact) < 10e-3 + 3 * error


CHECKS = {
    "01_first_scf_and_forces.ipynb": check_first_scf,
    "02_ksr1d_training.ipynb": check_ksr,
    "03_ofdft_1d.ipynb": check_ofdft,
    "04_vmc.ipynb": check_vmc,
}


def _load(path) -> dict:
    with open(path) as f:
        return json.load(f)


def _check_executed(notebook: dict, name: str) -> None:
    assert notebook["nbformat"] == 4
    assert notebook["metadata"]["execution"]["ok"]
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert [cell["execution_count"] for cell in code] == list(range(1, len(code) + 1))
    outputs = [output for cell in code for output in cell["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    figures = [o for o in outputs if o["output_type"] == "display_data" and "image/png" in o["data"]]
    assert figures and all(base64.b64decode(f["data"]["image/png"])[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)
    CHECKS[name](_printed(notebook))


@pytest.mark.parametrize("name", NAMES)
def test_stored_notebook_is_valid_executed_and_up_to_date(name):
    notebook = _load(NOTEBOOKS / name)
    assert set(notebook) == {"cells", "metadata", "nbformat", "nbformat_minor"}
    assert notebook["metadata"]["kernelspec"]["language"] == "python"
    for cell in notebook["cells"]:
        assert cell["cell_type"] in ("markdown", "code") and isinstance(cell["metadata"], dict)
        assert all(isinstance(line, str) for line in cell["source"])
        if cell["cell_type"] == "code":
            compile("".join(cell["source"]), name, "exec")
    sources = [(cell["cell_type"], "".join(cell["source"])) for cell in notebook["cells"]]
    assert sources == list(BUILD.NOTEBOOKS[name]), "run notebooks/build_notebooks.py, then execute.py"
    if "execution" not in notebook["metadata"]:
        pytest.skip(f"{name} holds no outputs yet: run python notebooks/execute.py notebooks/{name}")
    assert not notebook["metadata"]["execution"]["quick"]  # outputs of the shipped settings
    _check_executed(notebook, name)


def _execute(path, output, quick: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, MPLBACKEND="Agg", DFTJAX_NOTEBOOK_QUICK="1" if quick else "0")
    return subprocess.run([sys.executable, str(NOTEBOOKS / "execute.py"), str(path), "--output", str(output)],
                          env=env, capture_output=True, text=True, timeout=1800)


def test_executor_stores_streams_results_figures_and_stops_at_an_error(tmp_path):
    cells = [
        ("markdown", "# a test"),
        ("code", "import sys\nx = 20\nprint('out', x)\nprint('err', file=sys.stderr)\nx + 1"),
        ("code", "import matplotlib.pyplot as plt\nplt.plot([0, 1], [x, 0])\nNone"),
        ("code", "raise ValueError('bad input ' + str(x))"),
        ("code", "print('never')"),
    ]
    source = tmp_path / "small.ipynb"
    source.write_text(json.dumps(BUILD.notebook(cells)))
    executed_path = tmp_path / "executed.ipynb"
    process = _execute(source, executed_path)
    assert process.returncode == 1, process.stderr
    executed = _load(executed_path)
    first, plot, failing, after = (cell for cell in executed["cells"] if cell["cell_type"] == "code")
    assert [o["output_type"] for o in first["outputs"]] == ["stream", "stream", "execute_result"]
    assert first["outputs"][0] == {"output_type": "stream", "name": "stdout", "text": ["out 20\n"]}
    assert first["outputs"][1]["name"] == "stderr" and first["outputs"][2]["data"]["text/plain"] == ["21"]
    png = base64.b64decode(plot["outputs"][-1]["data"]["image/png"])
    assert [o["output_type"] for o in plot["outputs"] if o["output_type"] != "stream"] == ["display_data"]
    assert png.startswith(b"\x89PNG")
    assert failing["outputs"][0]["output_type"] == "error"
    assert (failing["outputs"][0]["ename"], failing["outputs"][0]["evalue"]) == ("ValueError", "bad input 20")
    assert after["execution_count"] is None and after["outputs"] == []
    assert executed["metadata"]["execution"]["ok"] is False
    assert json.loads(source.read_text())["cells"][1]["outputs"] == []  # the input is left as it was


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, tmp_path):
    """The shipped settings, fresh: 20 s to 3 minutes each on 2 idle cores (notebooks/README.md)."""
    output = tmp_path / name
    process = _execute(NOTEBOOKS / name, output)
    assert process.returncode == 0, process.stderr[-3000:]
    _check_executed(_load(output), name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["02_ksr1d_training.ipynb", "04_vmc.ipynb"])
def test_quick_mode_runs(name, tmp_path):
    """DFTJAX_NOTEBOOK_QUICK=1 (a few steps) still runs every cell and draws the figures."""
    output = tmp_path / name
    process = _execute(NOTEBOOKS / name, output, quick=True)
    assert process.returncode == 0, process.stderr[-3000:]
    executed = _load(output)
    assert executed["metadata"]["execution"]["quick"] and executed["metadata"]["execution"]["ok"]
    assert any("image/png" in o.get("data", {}) for cell in executed["cells"] if cell["cell_type"] == "code"
               for o in cell["outputs"])
