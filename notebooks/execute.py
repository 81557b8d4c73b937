"""Run a notebook's code cells top to bottom and store their outputs, without Jupyter.

    python notebooks/execute.py notebooks/01_first_scf_and_forces.ipynb            # in place
    python notebooks/execute.py NOTEBOOK.ipynb --output executed.ipynb             # elsewhere

The code cells run in order in one namespace, in this process (run the script as a subprocess to
isolate a notebook), with matplotlib's Agg backend and the notebook's directory as the working
directory. Per cell, like Jupyter: what it prints on stdout and stderr (``stream`` outputs), the
value of a final expression (``execute_result``, text/plain), and every open matplotlib figure as
a PNG (``display_data``, image/png base64; the figures are closed afterwards). An exception stops
the run: it is stored as an ``error`` output, the notebook is still written, and the exit status
is 1. Only the json module touches the file (nbformat 4).
"""

from __future__ import annotations

import argparse
import ast
import base64
import contextlib
import io
import json
import os
import sys
import time
import traceback

os.environ.setdefault("MPLBACKEND", "Agg")


def _stream(name: str, text: str) -> dict:
    return {"output_type": "stream", "name": name, "text": text.splitlines(keepends=True)}


def _figures() -> list[dict]:
    """Every open matplotlib figure as a display_data output (PNG); closes them."""
    if "matplotlib.pyplot" not in sys.modules:
        return []
    import matplotlib.pyplot as plt

    outputs = []
    for number in plt.get_fignums():
        buffer = io.BytesIO()
        plt.figure(number).savefig(buffer, format="png", dpi=80, bbox_inches="tight")
        outputs.append({"output_type": "display_data", "metadata": {},
                        "data": {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
                                 "text/plain": [f"<Figure {number}>"]}})
    plt.close("all")
    return outputs


def run_cell(source: str, namespace: dict, count: int) -> tuple[list[dict], bool]:
    """Execute one code cell in ``namespace``; returns (outputs, ok)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    result, error = None, None
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            tree = ast.parse(source, filename=f"<cell {count}>")
            # a final bare expression is displayed, as in Jupyter
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, f"<cell {count}>", "exec"), namespace)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), f"<cell {count}>", "eval"), namespace)
                result = None if value is None else repr(value)
        except Exception as err:  # noqa: BLE001 - reported as the cell's error output
            error = err
    outputs = [_stream(name, buffer.getvalue()) for name, buffer in (("stdout", stdout), ("stderr", stderr))
               if buffer.getvalue()]
    if result is not None:
        outputs.append({"output_type": "execute_result", "execution_count": count, "metadata": {},
                        "data": {"text/plain": result.splitlines(keepends=True)}})
    outputs += _figures()
    if error is not None:
        outputs.append({"output_type": "error", "ename": type(error).__name__, "evalue": str(error),
                        "traceback": traceback.format_exception(error)})
    return outputs, error is None


def execute(notebook: dict, workdir: str = ".") -> tuple[dict, bool]:
    """Run every code cell of ``notebook`` (nbformat 4 dict) in order; returns (executed copy, ok)."""
    notebook = json.loads(json.dumps(notebook))
    namespace = {"__name__": "__main__"}
    previous = os.getcwd()
    os.chdir(workdir)
    start, cpu_start, count, ok = time.perf_counter(), time.process_time(), 0, True
    try:
        for cell in notebook["cells"]:
            if cell["cell_type"] != "code":
                continue
            if not ok:  # cells after a failure are left unexecuted, as Jupyter's "run all" does
                cell["outputs"], cell["execution_count"] = [], None
                continue
            count += 1
            cell_start = time.perf_counter()
            cell["outputs"], ok = run_cell("".join(cell["source"]), namespace, count)
            cell["execution_count"] = count
            cell["metadata"]["execution"] = {"wall_s": round(time.perf_counter() - cell_start, 2)}
    finally:
        os.chdir(previous)
    notebook["metadata"]["execution"] = {
        "wall_s": round(time.perf_counter() - start, 1),
        "cpu_s": round(time.process_time() - cpu_start, 1),  # all threads; with the load, bounds idle time
        "load_average_1min": round(os.getloadavg()[0], 2),
        "quick": os.environ.get("DFTJAX_NOTEBOOK_QUICK") == "1",
        "ok": ok,
    }
    return notebook, ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook")
    parser.add_argument("--output", default=None, help="where to write the executed notebook (default: in place)")
    args = parser.parse_args(argv)
    with open(args.notebook) as f:
        notebook = json.load(f)
    executed, ok = execute(notebook, os.path.dirname(os.path.abspath(args.notebook)))
    with open(args.output or args.notebook, "w") as f:
        json.dump(executed, f, indent=1)
        f.write("\n")
    info = executed["metadata"]["execution"]
    print(f"{args.notebook}: {'ok' if ok else 'FAILED'} in {info['wall_s']:.1f} s wall, {info['cpu_s']:.1f} s CPU, "
          f"load average {info['load_average_1min']}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
