"""Time one optimisation step of FermiNet's own code (github.com/google-deepmind/ferminet).

A standalone script for ``dftjax bench vmc --ferminet-python PYTHON``: it imports only FermiNet
and its dependencies, never dftjax, because FermiNet and kfac-jax need an older JAX than dftjax
pins. A combination that works (2026-11-28): FermiNet 0ce3411 (2026-05-18), kfac-jax 655c143
(2026-05-11), jax/jaxlib 0.9.2, tfp-nightly (for distrax). Newer kfac-jax or JAX fail inside
kfac-jax's device handling (``jax.device_put_replicated`` removed in 0.10; sharding assertions
on 0.7-0.8). So it runs in that other interpreter:

    PYTHON ferminet_peer.py --atoms '[["He", [0, 0, 0]]]' --electrons 1,1 --walkers 256 \\
        --optimizer kfac --hidden-one 32,32,32 --hidden-two 8,8,8 --determinants 4

and prints one JSON object: ``per_step_s`` (median wall time between consecutive iterations of
``ferminet.train.train``, after ``--skip`` iterations that include compilation; every iteration
blocks on its energy through the writer, so the intervals are whole steps: ``--mcmc-steps``
Metropolis moves, local energies, gradient and optimiser update), ``iterations`` and the versions.
Pretraining and burn-in are off: only the steady-state step is timed. Coordinates in bohr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time


class _TimingWriter:
    """Stands in for FermiNet's CSV writer: records when each iteration's statistics arrive."""

    def __init__(self):
        self.times: list[float] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, t, **data):
        del t, data
        self.times.append(time.perf_counter())

    def flush(self):
        pass


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", required=True, help='JSON list of [symbol, [x, y, z]] in bohr')
    parser.add_argument("--electrons", required=True, type=_ints, help="n_up,n_down")
    parser.add_argument("--walkers", type=int, default=256)
    parser.add_argument("--optimizer", default="kfac", choices=["kfac", "adam"])
    parser.add_argument("--mcmc-steps", type=int, default=10)
    parser.add_argument("--hidden-one", type=_ints, default=(32, 32, 32))
    parser.add_argument("--hidden-two", type=_ints, default=(8, 8, 8))
    parser.add_argument("--determinants", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=25)
    parser.add_argument("--skip", type=int, default=5, help="first iterations left out (compilation)")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    args = parser.parse_args(argv)
    if len(args.hidden_one) != len(args.hidden_two) or args.iterations < args.skip + 3:
        parser.error("hidden-one and hidden-two need equal lengths, and iterations >= skip + 3")

    import jax

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    import ferminet
    from ferminet import base_config, train
    from ferminet.utils import system

    cfg = base_config.default()
    cfg.system.molecule = [system.Atom(symbol, tuple(float(c) for c in xyz), units="bohr")
                           for symbol, xyz in json.loads(args.atoms)]
    cfg.system.electrons = args.electrons
    cfg.network.ferminet.hidden_dims = tuple(zip(args.hidden_one, args.hidden_two))
    cfg.network.determinants = args.determinants
    cfg.batch_size = args.walkers
    cfg.mcmc.steps = args.mcmc_steps
    cfg.mcmc.burn_in = 0
    cfg.pretrain.iterations = 0
    cfg.optim.optimizer = args.optimizer
    cfg.optim.iterations = args.iterations
    cfg.log.save_path = tempfile.mkdtemp(prefix="ferminet_peer_")
    cfg.log.stats_frequency = 1
    cfg.log.save_frequency = 1e9  # minutes: no checkpoints inside the timed loop
    writer = _TimingWriter()
    train.train(cfg, writer_manager=writer)
    intervals = [b - a for a, b in zip(writer.times[args.skip:], writer.times[args.skip + 1:])]
    return {"per_step_s": statistics.median(intervals), "iterations": args.iterations,
            "optimizer": args.optimizer, "walkers": args.walkers, "dtype": args.dtype,
            "ferminet_version": getattr(ferminet, "__version__", "unknown"), "jax_version": jax.__version__}


if __name__ == "__main__":
    print(json.dumps(main()))
    sys.stdout.flush()
