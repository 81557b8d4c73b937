"""Training a neural XC functional through the 3D Kohn-Sham SCF (``dftjax train xc3d``).

The loss over training systems m (molecules and free atoms) and the molecules' atomization
energies ``A_m = sum_atoms E_a - E_m``, energies in mHa, densities in bohr^-3:

    L(theta) = w_E mean_m (E_m(theta) - E_m^CCSD(T))^2
             + w_A mean_{m in molecules} (A_m(theta) - A_m^CCSD(T))^2
             + w_rho mean_{m in molecules} int (rho_m(theta)(r) - rho_m^CCSD(r))^2 dr,

(free atoms enter through their energies only: open-shell p atoms have degenerate ground states
whose densities differ by an arbitrary orientation) with ``E_m(theta)`` and ``rho_m(theta)`` the
self-consistent Kohn-Sham energy and density of the
neural functional, differentiated through the SCF by :func:`dftjax.adjoint.make_scf_function`:
``adjoint="implicit"`` (implicit function theorem at the converged density; the energy by the
variational shortcut) or ``adjoint="unrolled"`` (a fixed number of damped SCF iterations, as in
Kohn-Sham-regularizer training, Li et al., PRL 126, 036401 (2021)). Training functionals on
self-consistent densities and energies, rather than on fixed densities, follows Kasim & Vinko,
PRL 127, 126403 (2021) (XC functionals learned through differentiable 3D KS-DFT) and the density
term follows Nagai, Akashi & Sugino, npj Comput. Mater. 6, 43 (2020); the energy term with
atomization energies resembles DM21's (Kirkpatrick et al., Science 374, 1385 (2021)).

The density term is evaluated exactly in the AO basis: ``int (Delta rho)^2 = Delta D : M : Delta D``
with the four-index grid metric ``M_{ij,kl} = sum_g w_g phi_i phi_j phi_k phi_l`` on a PySCF grid
(level :data:`DENSITY_GRID_LEVEL`), computed once per molecule; so no grid work is redone per step.

Cost: integrals, the grid and the AO values of each system are built once (outside any jitted
function) and passed to its jitted functions as arguments; each system's functions compile once per
process (and are kept on disk by JAX's persistent compilation cache, which ``dftjax`` turns on).
Compilation dominates: on one CPU core, H2/6-31G compiles in ~20 s (forward SCF) + ~60 s
(gradient), then runs in 0.1 s + 0.6 s.

Per step: (1) every system's converged ``(E_m, D_m)`` (forward SCF, warm-started from the previous
step's density); (2) the loss and its derivatives ``c_m = dL/d(E_m, D_m)``
(:func:`loss_from_values`); (3) one reverse pass per system of ``c_m . (E_m, D_m)`` (restarted
from the converged density, so the SCF inside takes 1-2 iterations), summed:
``dL/dtheta = sum_m c_m . d(E_m, D_m)/dtheta``. With ``density_weight = 0`` step (3) is
``dE_m/dtheta`` at the converged density with no density response (the energy is stationary in
the orbitals), compiled without the SCF loop or GMRES; equal to the full reverse pass (slow
test). The shipped ``dftjax:nn-mgga`` and ``dftjax:nn-local-hybrid`` (``--model nn-local-hybrid``,
the nonlocal model, whose system carries the grid Coulomb potentials of its exact-exchange energy
density; implicit adjoint only) were trained this way (``functionals/models/README.md``).
**Data parallelism**: system ``m`` runs on local
device ``m mod n_devices`` (its parameters are placed there; JAX dispatches the jitted calls
asynchronously, so the devices work concurrently) and the per-system results are gathered to the
host. Shapes differ between molecules, so this per-device split of the molecule list is used
instead of a padded ``pmap``; the result does not depend on the number of devices (tested with 4
host devices).

Optimiser: optax Adam. The parameters with the lowest validation loss (evaluated every
``validate_every`` steps and at the end) are kept. Checkpoints (pickle of the whole
:class:`TrainState`, written to a temporary file and moved with ``os.replace``) every
``checkpoint_every`` steps; a resumed run continues from the saved state exactly (the state
includes the SCF starting densities of the implicit adjoint, which warm-start each step).
"""
from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dftjax import adjoint, ksr
from dftjax.adjoint import ADJOINTS, make_scf_function
from dftjax.scf import initial_density
from dftjax.system import KSSystem, SCFOptions, build_system, check_options
from dftjax.xc3d.data import ORIENTATION_DEGENERATE, Reference, atom_key

CHECKPOINT_NAME = "xc3d_checkpoint.pkl"
HARTREE_TO_MHA = 1000.0
#: PySCF grid level of the density-error metric.
DENSITY_GRID_LEVEL = 2


@dataclasses.dataclass(frozen=True, kw_only=True)
class XC3DOptions:
    """Settings of :func:`train`.

    Attributes:
        basis: orbital basis (must equal the reference data's).
        grid_level: dftjax integration grid level of the SCF (0-9).
        adjoint: ``"implicit"`` or ``"unrolled"``.
        unrolled_steps: SCF iterations of the unrolled adjoint (linear mixing 0.3).
        max_cycle, conv_tol: SCF convergence of the implicit adjoint (energy change, Ha).
        response_tol: relative GMRES tolerance of the implicit adjoint's linear response.
        steps: Adam steps; learning_rate: Adam's step size.
        energy_weight, atomization_weight, density_weight: w_E, w_A, w_rho of the loss.
        validate_every: steps between validation losses; checkpoint_every: steps between
            checkpoints (0: only at the end).
        seed: PRNG seed of the initial parameters.
    """

    basis: str = "6-31g"
    grid_level: int = 1
    adjoint: str = "implicit"
    unrolled_steps: int = 25
    max_cycle: int = 60
    conv_tol: float = 1e-9
    response_tol: float = 1e-7
    steps: int = 10
    learning_rate: float = 1e-3
    energy_weight: float = 1.0
    atomization_weight: float = 1.0
    density_weight: float = 1.0
    validate_every: int = 5
    checkpoint_every: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.adjoint not in ADJOINTS:
            raise ValueError(f"adjoint must be one of {ADJOINTS}; got {self.adjoint!r}")
        if self.steps < 0 or self.unrolled_steps < 1 or self.max_cycle < 1:
            raise ValueError("steps must be >= 0, unrolled_steps and max_cycle >= 1")
        if not 0 <= self.grid_level <= 9:
            raise ValueError(f"grid_level must be 0..9; got {self.grid_level}")
        if self.learning_rate <= 0 or not np.isfinite(self.learning_rate):
            raise ValueError(f"learning_rate must be positive; got {self.learning_rate}")
        if min(self.energy_weight, self.atomization_weight, self.density_weight) < 0:
            raise ValueError("loss weights must be non-negative")
        if self.validate_every < 1 or self.checkpoint_every < 0:
            raise ValueError("validate_every must be >= 1 and checkpoint_every >= 0")


def density_metric(reference: Reference, basis: str, level: int = DENSITY_GRID_LEVEL,
                   chunk: int = 4096) -> np.ndarray:
    """(nao^2, nao^2) ``M_{ij,kl} = sum_g w_g phi_i phi_j phi_k phi_l`` on PySCF's grid (bohr^-3)."""
    from pyscf import dft, gto

    mol = gto.M(atom=reference.atom, basis=basis, spin=reference.spin, charge=reference.charge, verbose=0)
    grids = dft.gen_grid.Grids(mol)
    grids.level = level
    grids.build()
    nao = mol.nao
    metric = np.zeros((nao * nao, nao * nao))
    for start in range(0, len(grids.weights), chunk):
        phi = dft.numint.eval_ao(mol, grids.coords[start:start + chunk])
        pairs = (phi[:, :, None] * phi[:, None, :]).reshape(len(phi), -1)
        metric += pairs.T @ (grids.weights[start:start + chunk, None] * pairs)
    return metric


class SystemProblem(NamedTuple):
    """What the loss needs of one system: its jitted SCF functions and their fixed arguments."""

    name: str
    reference: Reference
    values: Callable  # (params, start) -> ((2,) [E (Ha), int (Delta rho)^2], (2, nao, nao) dm)
    gradient: Callable  # (params, start, cotangent (2,)) -> d(cotangent . values)/d params
    dm0: jax.Array
    outputs: Callable  # the unjitted (params, start, constants) -> ((2,), dm)
    constants: Any  # the fixed arrays (system, density metric, reference density)


def _scf_static(molecule, scf_options: SCFOptions, functional, options: XC3DOptions):
    """:func:`dftjax.adjoint.scf_static` with the looser linear-response tolerance of
    :attr:`XC3DOptions.response_tol` (parameter gradients need far less than the 1e-10 that second
    derivatives in nuclear positions do) and no grid response (the geometry is fixed in training).
    """
    return adjoint.scf_static(molecule, scf_options, functional, response_tol=options.response_tol,
                              grid_response=False)


def system_for(molecule, scf_options: SCFOptions, functional, basis=None) -> KSSystem:
    """:func:`dftjax.system.build_system` for ``functional`` (which need not be registered by name).

    For a nonlocal functional (``needs_grid_coulomb``, e.g.
    :func:`functionals.neural_xc.make_neural_local_hybrid`) the system carries the Coulomb
    potentials of AO products on the same grid points
    (:func:`dftjax.xc3d.exact_exchange.grid_coulomb_potentials`), which
    :func:`dftjax.fock.xc_energy` turns into the exact-exchange energy density of each SCF
    density matrix.
    """
    return build_system(molecule, scf_options, basis=basis, functional=functional)


def converge(molecule, scf_options: SCFOptions, functional, params=None, *, response_tol: float = 1e-7):
    """Self-consistent ``(energy (Ha), dm (2, nao, nao), converged)`` of any functional object.

    The implicit-adjoint SCF of :mod:`dftjax.adjoint` (CDIIS, differentiable in ``params``) on
    :func:`system_for`; for functionals ``dftjax scf`` cannot name, such as the nonlocal model.
    """
    check_options(molecule, scf_options)
    static = _scf_static(molecule, scf_options, functional,
                         XC3DOptions(basis=scf_options.basis, response_tol=response_tol))
    system = system_for(molecule, scf_options, functional)
    params = functional.params if params is None else params
    state = jax.jit(lambda p, s, d: adjoint.converge_state(static, p, s, d))(params, system,
                                                                         initial_density(molecule, None, scf_options))
    tol_grad = scf_options.conv_tol_grad or float(np.sqrt(scf_options.conv_tol))
    converged = abs(float(state.delta_energy)) < scf_options.conv_tol and float(state.gradient_norm) < tol_grad
    return float(state.energy), np.asarray(state.dm), converged


def make_problem(reference: Reference, functional, options: XC3DOptions) -> SystemProblem:
    """The differentiable SCF of one reference system and its ``(E, D)`` outputs.

    What does not depend on the functional's parameters is computed **once** here, outside any
    jitted function: integrals and AO values on the grid (:func:`dftjax.system.build_system`, the
    non-differentiable path of ``dftjax scf``), the density metric and the reference density.
    They enter the jitted functions as arguments (not closure constants, which XLA would
    constant-fold at compile time), so each step only runs the SCF and its adjoint, and each
    system's functions are compiled once per process (``jit`` caches by shape; the same
    ``static`` object is reused by every step).
    """
    molecule = reference.molecule()
    scf_options = SCFOptions(xc="pbe", basis=options.basis, unrestricted=reference.spin != 0,
                             grid_level=options.grid_level, max_cycle=options.max_cycle,
                             conv_tol=options.conv_tol, shard_grid=False)
    check_options(molecule, scf_options)
    if options.adjoint != "implicit":
        return _make_unrolled_problem(reference, functional, options, molecule, scf_options)
    static = _scf_static(molecule, scf_options, functional, options)
    system = system_for(molecule, scf_options, functional)
    if system.overlap.shape[-1] != reference.dm.shape[-1]:
        raise ValueError(f"{reference.name}: reference density has {reference.dm.shape[-1]} AOs, "
                         f"basis {options.basis!r} {system.overlap.shape[-1]}: wrong --basis for the data")
    if system.orthogonalizer.shape[1] != system.overlap.shape[0]:
        raise ValueError(f"{reference.name}: linearly dependent basis (the implicit adjoint needs nmo == nao)")
    dm0 = initial_density(molecule, None, scf_options)
    constants = (system, jnp.asarray(density_metric(reference, options.basis)),
                 jnp.asarray((reference.dm[0] + reference.dm[1]).reshape(-1)))

    def outputs(params, start, constants):
        system, metric, ref_total = constants
        dm = adjoint.converged_density(static, params, system, start)
        energy = adjoint.converged_energy(static, params, system, dm)
        delta = (dm[0] + dm[1]).reshape(-1) - ref_total
        return jnp.stack([energy, delta @ metric @ delta]), dm

    energy_gradient = None
    if options.density_weight == 0.0:
        def energy_gradient(params, converged, cotangent, constants):
            # dE/dtheta at the converged density needs no density response (the energy is
            # stationary in the orbitals; the implicit adjoint's energy rule), so no SCF and no
            # GMRES are compiled into the reverse pass: a fraction of the compile time
            system = constants[0]
            return jax.grad(lambda p: cotangent[0] * adjoint.converged_energy(static, p, system, converged))(params)

    return _jitted_problem(reference, outputs, constants, dm0, energy_gradient)


def _make_unrolled_problem(reference, functional, options, molecule, scf_options) -> SystemProblem:
    """The unrolled adjoint through :func:`dftjax.adjoint.make_scf_function` (integrals per call)."""
    scf = make_scf_function(molecule, scf_options, adjoint="unrolled", functional=functional,
                            n_steps=options.unrolled_steps)
    if scf.dm0.shape[-1] != reference.dm.shape[-1]:
        raise ValueError(f"{reference.name}: reference density has {reference.dm.shape[-1]} AOs, "
                         f"basis {options.basis!r} {scf.dm0.shape[-1]}: wrong --basis for the data")
    constants = (scf.inputs._replace(params=None), jnp.asarray(density_metric(reference, options.basis)),
                 jnp.asarray((reference.dm[0] + reference.dm[1]).reshape(-1)))

    def outputs(params, start, constants):
        inputs, metric, ref_total = constants
        energy, dm = scf.energy_and_density(inputs._replace(params=params), start)
        delta = (dm[0] + dm[1]).reshape(-1) - ref_total
        return jnp.stack([energy, delta @ metric @ delta]), dm

    return _jitted_problem(reference, outputs, constants, scf.dm0)


def _jitted_problem(reference, outputs, constants, dm0, gradient=None) -> SystemProblem:
    """Jit ``outputs`` and the gradient of ``cotangent . outputs`` (one reverse pass per step).

    ``gradient``: a cheaper ``(params, start, cotangent, constants) -> gradient`` to use instead
    (energies only, from the converged density passed as ``start``).
    """
    if gradient is None:
        def gradient(params, start, cotangent, constants):
            return jax.grad(lambda p: outputs(p, start, constants)[0] @ cotangent)(params)

    jitted_gradient, jitted_values = jax.jit(gradient), jax.jit(outputs)
    placed = {}  # device -> constants there (moved once, not every step)

    def on(params, start):
        device = next(iter(jax.tree_util.tree_leaves(params)[0].devices()))
        if device not in placed:
            placed[device] = jax.device_put(constants, device)
        # one argument type for every call (host or device array, committed or not): no recompiles
        return jax.device_put(np.asarray(start, dtype=np.float64), device), placed[device]

    def values(params, start):
        start, consts = on(params, start)
        return jitted_values(params, start, consts)

    def grad(params, start, cotangent):
        start, consts = on(params, start)
        return jitted_gradient(params, start, jnp.asarray(cotangent, dtype=jnp.float64), consts)

    return SystemProblem(name=reference.name, reference=reference, values=values, gradient=grad,
                         dm0=dm0, outputs=outputs, constants=constants)


# (functional, reference, SCF settings) -> SystemProblem: a resumed or repeated train() in the same
# process reuses the compiled per-system functions (compilation dominates on small molecules).
_PROBLEMS: dict = {}


def _cached_problem(reference: Reference, functional, options: XC3DOptions) -> SystemProblem:
    key = (id(functional), reference.name, reference.atom, reference.energy, options.basis, options.grid_level,
           options.adjoint, options.unrolled_steps, options.max_cycle, options.conv_tol, options.response_tol)
    cached = _PROBLEMS.get(key)
    if cached is None or cached[0] is not functional or cached[1].reference is not reference:
        _PROBLEMS[key] = (functional, make_problem(reference, functional, options))
    return _PROBLEMS[key][1]


def loss_from_values(values: dict[str, np.ndarray], references: dict[str, Reference],
                     options: XC3DOptions) -> tuple[float, dict[str, np.ndarray], dict]:
    """Loss, its derivative with respect to each system's ``(E, D)`` and the error terms.

    Args:
        values: name -> (2,) ``[E (Ha), int (Delta rho)^2]``.
        references: name -> :class:`Reference` (atoms needed by molecules' atomization energies are
            used when present in ``values``).
    Returns:
        ``(loss, d_loss / d(E, D) per name, terms)``; terms holds the mean squared errors.
    """
    names = list(values)
    energy_error = {n: (float(values[n][0]) - references[n].energy) * HARTREE_TO_MHA for n in names}
    cotangents = {n: np.zeros(2) for n in names}
    w_e = options.energy_weight / len(names)
    loss_energy = sum(e * e for e in energy_error.values()) / len(names)
    for n in names:
        cotangents[n][0] += w_e * 2.0 * energy_error[n] * HARTREE_TO_MHA
    molecules = [n for n in names if references[n].subset != "atom" and references[n].atomization_energy is not None
                 and all(atom_key(s) in values for s in references[n].elements)]
    loss_atomization = 0.0
    if molecules:
        w_a = options.atomization_weight / len(molecules)
        for n in molecules:
            # A_m(theta) - A_m^ref = sum_a n_a (E_a - E_a^ref) - (E_m - E_m^ref)
            error = sum(c * energy_error[atom_key(s)] for s, c in references[n].elements.items()) - energy_error[n]
            loss_atomization += error * error / len(molecules)
            cotangents[n][0] -= w_a * 2.0 * error * HARTREE_TO_MHA
            for s, c in references[n].elements.items():
                cotangents[atom_key(s)][0] += w_a * 2.0 * error * c * HARTREE_TO_MHA
    # densities of molecules only: a free open-shell p atom (C, O, F) has a degenerate ground state
    # whose UHF/UKS densities pick arbitrary, different p orientations, so its density error is
    # not a property of the functional
    with_density = [n for n in names if references[n].subset != "atom" and n not in ORIENTATION_DEGENERATE]
    loss_density = sum(float(values[n][1]) for n in with_density) / max(len(with_density), 1)
    for n in with_density:
        cotangents[n][1] += options.density_weight / len(with_density)
    loss = (options.energy_weight * loss_energy + options.atomization_weight * loss_atomization
            + options.density_weight * loss_density)
    terms = {"energy_mse_mha2": loss_energy, "atomization_mse_mha2": loss_atomization,
             "density_l2": loss_density}
    return loss, cotangents, terms


class TrainState(NamedTuple):
    """Everything a resumed run needs (saved whole in checkpoints)."""

    step: Any
    params: Any
    opt_state: Any
    best_params: Any
    best_validation: Any
    best_step: Any
    loss: Any
    starts: dict  # name -> (2, nao, nao) SCF starting density of the next step


def save_checkpoint(directory: str, state: TrainState) -> str:
    """Write ``state`` atomically (:func:`dftjax.ksr.save_checkpoint`); returns the path."""
    return ksr.save_checkpoint(directory, state, CHECKPOINT_NAME)


def load_checkpoint(directory: str) -> TrainState | None:
    """The checkpoint in ``directory`` (None if there is none)."""
    return ksr.load_checkpoint(directory, CHECKPOINT_NAME)


def _progress(message: str) -> None:
    print(f"[xc3d] {message}", file=sys.stderr, flush=True)


def _device_of(index: int, devices: Sequence | None):
    devices = list(devices or jax.local_devices())
    return devices[index % len(devices)]


def evaluate_systems(problems: Sequence[SystemProblem], params, starts: dict, *,
                     devices: Sequence | None = None):
    """Per-system ``(E, int (Delta rho)^2)`` and SCF densities, system m on device ``m mod len(devices)``.

    The jitted calls are dispatched to all devices before any result is read, so the devices run
    concurrently. Returns ``(values, dms)``: dicts of host arrays keyed by name.
    """
    pending = {}
    for index, problem in enumerate(problems):
        device = _device_of(index, devices)
        pending[problem.name] = problem.values(jax.device_put(params, device), starts.get(problem.name, problem.dm0))
    values, dms = {}, {}
    for name, (value, dm) in pending.items():
        values[name] = np.asarray(value)
        dms[name] = np.asarray(dm)
        if not np.all(np.isfinite(values[name])):
            raise FloatingPointError(f"non-finite SCF energy or density error for {name}")
    return values, dms


def loss_gradient(problems: Sequence[SystemProblem], params, starts: dict, cotangents: dict, *,
                  devices: Sequence | None = None):
    """``sum_m cotangent_m . d(E_m, D_m)/d params`` (host arrays), one reverse pass per system.

    By the chain rule this is the gradient of the loss when ``cotangents`` are its derivatives
    with respect to each system's ``(E, D)`` (:func:`loss_from_values`); system m runs on device
    ``m mod len(devices)``, all dispatched before any is read, and the sum is taken on the host.
    """
    pending = []
    for index, problem in enumerate(problems):
        if problem.name not in cotangents:
            continue
        device = _device_of(index, devices)
        pending.append(problem.gradient(jax.device_put(params, device), starts.get(problem.name, problem.dm0),
                                        cotangents[problem.name]))
    host = [jax.tree_util.tree_map(np.asarray, g) for g in pending]
    gradient = jax.tree_util.tree_map(lambda *leaves: np.sum(leaves, axis=0), *host)
    for leaf in jax.tree_util.tree_leaves(gradient):
        if not np.all(np.isfinite(leaf)):
            raise FloatingPointError("non-finite loss gradient")
    return gradient


def train(init_params, functional, train_refs: dict[str, Reference], options: XC3DOptions, *,
          validation_refs: dict[str, Reference] | None = None, checkpoint_dir: str | None = None,
          stop_after: int | None = None, devices: Sequence | None = None,
          progress: Callable[[str], None] = _progress):
    """Adam on the loss of the module docstring; returns ``(state, history)``.

    Args:
        init_params: initial parameters (ignored when resuming from a checkpoint).
        functional: the :class:`~functionals.Functional` whose ``params`` are trained.
        train_refs, validation_refs: name -> :class:`~dftjax.xc3d.data.Reference` (molecules and
            the atoms of their atomization energies).
        checkpoint_dir: resume from its checkpoint if present; write one every
            ``options.checkpoint_every`` steps and at the end.
        stop_after: stop (as if interrupted) after this step number (tests of resuming).
        devices: devices to split the systems over (default all local devices).

    Returns:
        ``(state, history)``: :class:`TrainState` (``best_params`` by validation loss, the last
        params without validation) and per-step lists ``loss``, ``validation`` (NaN where not
        computed), ``terms`` and ``time_s``.
    """
    if not train_refs:
        raise ValueError("no training systems")
    validation_refs = validation_refs or {}
    progress(f"building {len(train_refs)} training and {len(validation_refs)} validation SCFs "
             f"({options.basis}, grid level {options.grid_level}, adjoint={options.adjoint})")
    problems = [_cached_problem(r, functional, options) for r in train_refs.values()]
    validation_problems = [_cached_problem(r, functional, options) for r in validation_refs.values()]
    optimizer = optax.adam(options.learning_rate)
    state = load_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if state is None:
        state = TrainState(step=jnp.asarray(0), params=init_params, opt_state=optimizer.init(init_params),
                           best_params=init_params, best_validation=jnp.asarray(jnp.inf),
                           best_step=jnp.asarray(-1), loss=jnp.asarray(jnp.nan), starts={})
    else:
        progress(f"resuming from step {int(state.step)} ({checkpoint_dir})")
    update = jax.jit(lambda g, o, p: _apply(optimizer, g, o, p))
    warm = options.adjoint == "implicit"
    history = {"loss": [], "validation": [], "terms": [], "time_s": []}
    start_time = time.perf_counter()
    last = options.steps if stop_after is None else min(options.steps, stop_after)
    all_refs = {**train_refs, **validation_refs}
    while int(state.step) < last:
        step = int(state.step) + 1
        starts = dict(state.starts) if warm else {}
        values, dms = evaluate_systems(problems, state.params, starts, devices=devices)
        loss, cotangents, terms = loss_from_values(values, all_refs, options)
        # implicit adjoint: the reverse pass re-converges from the converged density (1-2 SCF
        # iterations); unrolled: from the same start, since its output depends on the start
        gradient = loss_gradient(problems, state.params, dms if warm else starts, cotangents, devices=devices)
        params, opt_state = update(gradient, state.opt_state, state.params)
        starts = {**state.starts, **{n: jnp.asarray(dm) for n, dm in dms.items()}} if warm else state.starts
        validation = float("nan")
        best = (state.best_params, state.best_validation, state.best_step)
        if validation_problems and (step % options.validate_every == 0 or step == options.steps):
            # the loss of the parameters *before* this update is `loss`; validate the updated ones
            v_values, v_dms = evaluate_systems(validation_problems, params, dict(starts) if warm else {},
                                               devices=devices)
            if warm:
                starts = {**starts, **{n: jnp.asarray(dm) for n, dm in v_dms.items()}}
            validation = loss_from_values(v_values, all_refs, options)[0]
            if validation < float(state.best_validation):
                best = (params, jnp.asarray(validation), jnp.asarray(step))
        elif not validation_problems:
            best = (params, state.best_validation, jnp.asarray(step))
        state = TrainState(step=jnp.asarray(step), params=params, opt_state=opt_state, best_params=best[0],
                           best_validation=best[1], best_step=best[2], loss=jnp.asarray(loss), starts=starts)
        elapsed = time.perf_counter() - start_time
        history["loss"].append(loss)
        history["validation"].append(validation)
        history["terms"].append(terms)
        history["time_s"].append(elapsed)
        progress(f"step {step}/{options.steps} loss {loss:.4e} (E {terms['energy_mse_mha2']:.3e} mHa^2, "
                 f"AE {terms['atomization_mse_mha2']:.3e} mHa^2, rho {terms['density_l2']:.3e})"
                 + ("" if np.isnan(validation) else f" validation {validation:.4e}") + f" ({elapsed:.1f} s)")
        if checkpoint_dir and options.checkpoint_every and step % options.checkpoint_every == 0:
            save_checkpoint(checkpoint_dir, state)
    if checkpoint_dir:
        save_checkpoint(checkpoint_dir, state)
    return state, history


def _apply(optimizer, gradient, opt_state, params):
    updates, opt_state = optimizer.update(gradient, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
