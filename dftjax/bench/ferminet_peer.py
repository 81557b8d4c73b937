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

``--breakdown`` also times, on the network and functions that ``train.train`` builds (captured as
FermiNet builds them), the pieces of a step: ``mcmc_s`` (one call of FermiNet's MCMC step, all
``--mcmc-steps`` moves), ``log_psi_s`` (log|psi| of every walker), ``local_energy_s`` (its local energy of every walker, the Laplacian as
``cfg.optim.laplacian``, FermiNet's default Hessian loop) and ``loss_grad_s`` (its energy and
parameter gradient, local energies included: what an Adam step costs apart from MCMC). Least
time of ``--repeats`` calls, jitted, on one device.
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


def _best_time(fn, repeats: int) -> float:
    """Least seconds of ``repeats`` calls of ``fn()`` after one warm-up call (blocking on its output).

    The least, not the median: on a shared machine it is the call least disturbed by other work.
    """
    import jax

    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


class _Captured(Exception):
    """Raised to leave ``train.train`` once it has built everything a breakdown needs."""


def _breakdown(cfg, walkers: int, repeats: int) -> dict:
    """Seconds of FermiNet's MCMC step, local energy and loss gradient (see the module docstring)."""
    import jax
    import jax.numpy as jnp
    from ferminet import hamiltonian, loss, mcmc, networks, train

    built = {}

    def capture(module, name):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            out = original(*args, **kwargs)
            built[name] = out
            if name == "make_mcmc_step":
                built["batch_network"] = args[0]
            if name == "make_loss":
                raise _Captured
            return out

        return original, wrapper

    patches = [(networks, "make_fermi_net"), (mcmc, "make_mcmc_step"), (hamiltonian, "local_energy"),
               (loss, "make_loss")]
    originals = []
    for module, name in patches:
        original, wrapper = capture(module, name)
        originals.append((module, name, original))
        setattr(module, name, wrapper)
    try:
        train.train(cfg, writer_manager=_TimingWriter())
    except _Captured:
        pass
    finally:
        for module, name, original in originals:
            setattr(module, name, original)
    network = built["make_fermi_net"]
    key = jax.random.PRNGKey(0)
    params = network.init(key)
    atoms = jnp.asarray([a.coords for a in cfg.system.molecule])
    charges = jnp.asarray([a.charge for a in cfg.system.molecule])
    n_up, n_down = cfg.system.electrons
    electrons = n_up + n_down
    centres = jnp.tile(atoms, (electrons // len(atoms) + 1, 1))[:electrons]
    positions = (centres[None] + jax.random.normal(key, (walkers, electrons, 3))).reshape(walkers, -1)
    data = networks.FermiNetData(
        positions=positions, spins=jnp.tile(jnp.asarray([1.0] * n_up + [-1.0] * n_down), (walkers, 1)),
        atoms=jnp.tile(atoms[None], (walkers, 1, 1)), charges=jnp.tile(charges[None], (walkers, 1)))
    mcmc_step = jax.jit(built["make_mcmc_step"])
    width = jnp.asarray(cfg.mcmc.move_width)
    batch_axes = networks.FermiNetData(positions=0, spins=0, atoms=0, charges=0)
    local_energy = jax.jit(jax.vmap(built["local_energy"], in_axes=(None, None, batch_axes)))
    batch_network = jax.jit(built["batch_network"])
    loss_grad = jax.jit(jax.value_and_grad(built["make_loss"], has_aux=True))
    return {
        "log_psi_s": _best_time(
            lambda: batch_network(params, data.positions, data.spins, data.atoms, data.charges), repeats),
        "mcmc_s": _best_time(lambda: mcmc_step(params, data, key, width), repeats),
        "local_energy_s": _best_time(lambda: local_energy(params, key, data), repeats),
        "loss_grad_s": _best_time(lambda: loss_grad(params, key, data), repeats),
    }


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
    parser.add_argument("--breakdown", action="store_true", help="also time MCMC, local energy, loss gradient")
    parser.add_argument("--repeats", type=int, default=5, help="--breakdown: median of this many calls")
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
    pieces = _breakdown(cfg, args.walkers, args.repeats) if args.breakdown else {}
    writer = _TimingWriter()
    train.train(cfg, writer_manager=writer)
    intervals = [b - a for a, b in zip(writer.times[args.skip:], writer.times[args.skip + 1:])]
    return {"per_step_s": statistics.median(intervals), **pieces, "iterations": args.iterations,
            "optimizer": args.optimizer, "walkers": args.walkers, "dtype": args.dtype,
            "ferminet_version": getattr(ferminet, "__version__", "unknown"), "jax_version": jax.__version__}


if __name__ == "__main__":
    print(json.dumps(main()))
    sys.stdout.flush()
