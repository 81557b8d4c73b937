"""Run any dftjax functional (analytic or neural) inside PySCF's own RKS/UKS/ROKS.

::

    from pyscf import gto, dft
    import dftjax.pyscf_plugin
    mol = gto.M(atom="O 0 0 0; H 0 0.757 0.587; H 0 -0.757 0.587", basis="def2-svp")
    mf = dftjax.pyscf_plugin.apply(dft.RKS(mol), "b3lyp")   # or a Functional, e.g. a Flax one
    energy = mf.kernel(); gradient = mf.nuc_grad_method().kernel()

:func:`apply` installs the functional with PySCF's ``define_xc_(eval_xc, xctype, hyb=, rsh=)``
(in place, returns ``mf``): PySCF keeps building the density on its grid, the Coulomb and exact
exchange matrices, the XC matrix from the pointwise potentials, nuclear gradients, geometry
optimisation (``pyscf.geomopt``), and only the pointwise functional is ours. ``eval_xc`` follows
``pyscf.dft.libxc.eval_xc``:

* input ``rho``: spin 0, rows ``(rho, d_x, d_y, d_z[, tau])`` of the total density (``(n,)`` for
  LDA); spin 1, ``(2, rows, n)`` per spin. ``tau`` carries libxc's factor 1/2.
* output ``exc`` (n,): energy **per electron**, ``e / rho_total`` (``E_xc = sum w rho exc``);
  ``vxc = (vrho, vsigma, vlapl, vtau)`` the pointwise first derivatives of the energy per volume
  ``e`` with respect to ``rho``, ``sigma``, ``lapl``, ``tau``. Spin 0: derivatives with respect to
  the total-density quantities, each (n,), with ``sigma = |grad rho|^2``. Spin 1: ``vrho`` (n, 2),
  ``vsigma`` (n, 3) in the order ``(uu, ud, dd)``, ``vtau`` (n, 2).
* ``deriv=2`` adds ``fxc`` (second derivatives, libxc's layout and upper-triangle order), which
  PySCF's Hessians, TDDFT and CPKS need; ``deriv=3`` raises NotImplementedError.

The layout and the meaning of each array are libxc's (S. Lehtola, C. Steigemann, M. J. T.
Oliveira, M. A. L. Marques, SoftwareX 7, 1 (2018)); PySCF contracts them with the AO values into
the XC matrix ``V_mu,nu = sum_g w_g [vrho phi_mu phi_nu + 2 vsigma grad rho . grad(phi_mu phi_nu)
+ 1/2 vtau grad phi_mu . grad phi_nu]`` (Pople, Gill, Johnson, Chem. Phys. Lett. 199, 557 (1992);
the tau term as Neumann, Nobes, Handy, Mol. Phys. 87, 1 (1996)).

Derivatives are never coded by hand: because the energy density at a grid point depends on the
features of that point only, the vector-Jacobian product of ``e`` with a cotangent of ones is the
pointwise gradient (:func:`functionals.energy_and_potentials`), and a Jacobian-vector product of
that with a one-hot tangent per feature is the pointwise Hessian. Points are evaluated in chunks of
:data:`CHUNK_SIZE` (the last one padded with zero density, which every functional must keep
finite), so each functional compiles once per ``(spin, deriv)``, whatever PySCF's block sizes.

Exact exchange follows PySCF's convention ``K = alpha K_full + beta K_sr(omega)``: the functional's
``exact_exchange`` is passed as ``hyb`` and ``(omega, alpha, beta)`` as ``rsh`` (CAM-B3LYP
``(0.33, 0.65, -0.46)``). PySCF decides from the *string* ``mf.xc`` whether to build K at all
(``libxc.is_hybrid_xc``), so :func:`apply` also sets ``mf.xc``: to the functional's own name when
PySCF reads that name with the same hybrid character, otherwise to the label
:data:`HYBRID_LABEL` / :data:`SEMILOCAL_LABEL` (the label is all PySCF uses the string for; the
values come from dftjax). Do not set ``mf.xc`` afterwards.

GPU4PySCF: if ``mf`` is a GPU4PySCF object (its class lives in the ``gpu4pyscf`` package), the
same ``define_xc_`` hook is used with an ``eval_xc`` that takes and returns CuPy arrays (copied
through the host to the JAX evaluation). That branch needs ``gpu4pyscf`` and ``cupy`` and has not been run in this
project's CI (GPU4PySCF is not installed there); without them :func:`apply` raises ImportError.
"""

from __future__ import annotations

import difflib
import functools
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dftjax.system import functional_by_name
from functionals import Functional, energy_and_potentials, fields_read
from functionals.features import Features, from_libxc_input
from functionals.registry import available_functionals

__all__ = ["apply", "make_eval_xc", "resolve_functional", "evaluate", "xc_type", "CHUNK_SIZE", "HYBRID_LABEL",
           "SEMILOCAL_LABEL"]

#: Grid points per jitted evaluation (the last chunk of a block is padded with zero density).
CHUNK_SIZE = 4096

#: ``mf.xc`` labels for functionals whose names PySCF cannot parse: PySCF builds exact exchange
#: when the string contains "HF" (``pyscf.dft.libxc.is_hybrid_xc``); the coefficients are ours.
HYBRID_LABEL = "HF"
SEMILOCAL_LABEL = "LDA"

_XC_TYPES = {"hf": "HF", "lda": "LDA", "gga": "GGA", "mgga": "MGGA"}

# Modules whose energy densities are not exchange-correlation functionals of 3D Kohn-Sham features.
_REJECTED_MODULES = {
    "functionals.kinetic": "a kinetic-energy functional (for orbital-free DFT, dftjax.ofdft)",
    "functionals.ksr": "a 1D Kohn-Sham-regularizer functional of a grid density (dftjax.ksr)",
}


# ---------------------------------------------------------------------------------------------
# Validation


def resolve_functional(xc: Functional | str) -> Functional:
    """The :class:`~functionals.Functional` for a name or a Functional, validated for PySCF.

    Raises:
      ValueError: unknown name (with close matches), an object that is not a Functional,
        a kinetic or 1D functional, a functional that needs the density Laplacian (PySCF's
        numerical integration does not supply it), or a non-local energy density (the value at a
        point depends on other points; PySCF's ``eval_xc`` is pointwise).
    """
    if isinstance(xc, str):
        try:
            # cached: one Functional object per name, so its compiled evaluation is shared by every
            # mf that uses the name (jit keys on the Functional's identity)
            functional = functional_by_name(xc)
        except ValueError as error:
            if "unknown functional" in str(error):
                raise
            close = difflib.get_close_matches(xc.strip().lower(), available_functionals(), n=5, cutoff=0.5)
            hint = f"; close names: {close}" if close else ""
            raise ValueError(f"cannot read functional name {xc!r}: {error}{hint}") from error
    elif isinstance(xc, Functional):
        functional = xc
    else:
        raise ValueError(
            f"xc must be a functional name known to functionals.get_functional (e.g. 'pbe', 'b3lyp', "
            f"'r2scan') or a functionals.Functional (wrap a Flax module with "
            f"functionals.from_energy_density); got {type(xc).__name__}")
    for module, description in _REJECTED_MODULES.items():
        if _uses_module(functional, module):
            raise ValueError(
                f"functional {functional.name!r} is {description}; PySCF's Kohn-Sham solvers take "
                f"exchange-correlation functionals of kind 'lda', 'gga', 'mgga' or 'hf'")
    if getattr(functional, "needs_grid_coulomb", False):
        raise ValueError(
            f"functional {functional.name!r} reads the exact-exchange energy density of the density matrix "
            f"(a local hybrid); PySCF's eval_xc receives only rho, sigma and tau on grid points, so it cannot "
            f"be evaluated there: run it with dftjax's own SCF (dftjax scf --xc {functional.name})")
    if functional.needs_laplacian:
        raise ValueError(
            f"functional {functional.name!r} needs the density Laplacian, which PySCF's numerical "
            f"integration does not supply; allowed: functionals of rho, sigma and tau")
    if functional.kind != "hf":
        _check_pointwise(functional)
    return functional


def _uses_module(functional: Functional, module: str) -> bool:
    if getattr(functional.energy_density, "__module__", None) == module:
        return True
    return any(_uses_module(f, module) for _, f in functional.components)


@functools.lru_cache(maxsize=64)  # Functionals hash by identity; named ones are cached objects
def _check_pointwise(functional: Functional) -> None:
    """Raise ValueError unless the energy density maps (n,) features to (n,) values point by point.

    Probes 6 random points and the first 3 of them: a semilocal functional gives the same values at
    those 3 points both times; a non-local one (a global convolution of the density) does not.
    """
    rng = np.random.default_rng(7)
    rho = rng.uniform(0.05, 2.0, (2, 6))
    grad = rng.uniform(-1.0, 1.0, (2, 3, 6)) * rho[:, None]
    sigma = np.stack([np.sum(grad[0] * grad[0], 0), np.sum(grad[0] * grad[1], 0), np.sum(grad[1] * grad[1], 0)])
    tau = np.sum(grad**2, axis=1) / (8 * rho) + rng.uniform(0.01, 0.5, (2, 6))
    full = Features(*(jnp.asarray(x) for x in (rho, sigma, tau, np.zeros((2, 6)))))
    part = Features(*(x[:, :3] for x in full))
    probe = jax.jit(lambda params, features: functional(features, params))  # one compile, not op by op
    try:
        e_full = np.asarray(probe(functional.params, full))
        e_part = np.asarray(probe(functional.params, part))
    except Exception as error:  # any failure here means the function does not take Features
        raise ValueError(
            f"functional {functional.name!r}: its energy density does not accept functionals.Features "
            f"(rho (2, n), sigma (3, n), tau (2, n)) and return (n,) values: {type(error).__name__}: "
            f"{error}") from error
    if e_full.shape != (6,) or e_part.shape != (3,):
        raise ValueError(f"functional {functional.name!r} returns shape {e_full.shape} for 6 points; "
                         f"expected one energy per point, (6,)")
    if not np.allclose(e_full[:3], e_part, rtol=1e-10, atol=1e-14):
        raise ValueError(
            f"functional {functional.name!r} is non-local (its value at a point depends on other "
            f"points); PySCF's eval_xc takes semilocal functionals (kind 'lda', 'gga', 'mgga')")


def xc_type(functional: Functional) -> str:
    """PySCF's ``xctype`` (``"HF"``, ``"LDA"``, ``"GGA"``, ``"MGGA"``) of a functional."""
    return _XC_TYPES[functional.kind]


# ---------------------------------------------------------------------------------------------
# Pointwise evaluation


def _second_derivatives(functional: Functional, params, features, names):
    """Pointwise Hessian ``d2e_g / dx_g dy_g`` for all pairs of feature components.

    One Jacobian-vector product of the pointwise potentials per feature component (a one-hot
    tangent: ones on that component at every point), batched with ``jax.vmap``.

    Returns a dict ``(name_a, i, name_b, j) -> (n,)`` over components i of feature a (the row of a
    spin-resolved array; 0 for closed-shell (n,) arrays).
    """
    inputs = {k: getattr(features, k) for k in names}
    components = [(b, j) for b in names for j in range(1 if inputs[b].ndim == 1 else inputs[b].shape[0])]

    def one_hot(b, j):
        tangent = {k: jnp.zeros_like(v) for k, v in inputs.items()}
        tangent[b] = jnp.ones_like(inputs[b]) if inputs[b].ndim == 1 else tangent[b].at[j].set(1.0)
        return tangent

    tangents = jax.tree_util.tree_map(lambda *t: jnp.stack(t), *[one_hot(b, j) for b, j in components])

    def potentials(x):
        return energy_and_potentials(functional, features._replace(**x), params, chunk_size=CHUNK_SIZE)[1]

    columns = jax.vmap(lambda t: jax.jvp(potentials, (inputs,), (t,))[1])(tangents)
    out = {}
    for m, (b, j) in enumerate(components):
        for a in names:
            va = columns[a][m]
            for i in range(1 if va.ndim == 1 else va.shape[0]):
                out[(a, i, b, j)] = va if va.ndim == 1 else va[i]
    return out


def _pairs(n_a: int, n_b: int, same: bool):
    """libxc's order of mixed derivative components: row-major, upper triangle when a == b."""
    if same:
        return [(i, j) for i in range(n_a) for j in range(i, n_a)]
    return list(itertools.product(range(n_a), range(n_b)))


#: libxc's fxc tuple for ``xctype`` (PySCF's ``eval_xc`` order), as pairs of feature names.
_FXC_ORDER = {
    "LDA": [("rho", "rho")],
    "GGA": [("rho", "rho"), ("rho", "sigma"), ("sigma", "sigma")],
    "MGGA": [("rho", "rho"), ("rho", "sigma"), ("sigma", "sigma"), ("rho", "tau"), ("sigma", "tau"),
             ("tau", "tau")],
}


@functools.partial(jax.jit, static_argnums=(0, 3))
def _evaluate_chunk(functional: Functional, params, features, deriv: int):
    """exc (n,) per electron, first derivatives dict, and (deriv 2) the pointwise Hessian dict."""
    names = fields_read(functional)
    e, v = energy_and_potentials(functional, features, params, chunk_size=CHUNK_SIZE)
    rho = features.total_density
    positive = rho > 0.0
    # e / rho at zero density is 0/0; PySCF multiplies exc by rho again, so 0 is exact there
    exc = jnp.where(positive, e / jnp.where(positive, rho, 1.0), 0.0)
    hessian = _second_derivatives(functional, params, features, names) if deriv >= 2 else None
    return exc, v, hessian


def _pad(rho: np.ndarray, size: int) -> np.ndarray:
    pad = size - rho.shape[-1]
    return np.pad(rho, [(0, 0)] * (rho.ndim - 1) + [(0, pad)]) if pad else rho


def evaluate(functional: Functional, params, rho, spin: int, deriv: int):
    """``(exc, vxc, fxc, kxc)`` of ``functional`` on PySCF's ``rho`` (see the module docstring).

    Args:
      functional: a validated Functional.
      params: its parameters.
      rho: PySCF's density rows (numpy), spin 0 ``(rows, n)`` or ``(n,)``; spin 1 ``(2, rows, n)``.
      spin: 0 or 1.
      deriv: 0, 1 or 2.
    """
    rho = np.asarray(rho, dtype=np.float64)
    n = rho.shape[-1]
    names = fields_read(functional)
    chunks = []
    for start in range(0, n, CHUNK_SIZE):
        block = _pad(rho[..., start:start + CHUNK_SIZE], CHUNK_SIZE)
        features = from_libxc_input(block, spin, closed_shell=True)
        chunks.append(jax.tree_util.tree_map(lambda x: np.asarray(x)[..., :min(CHUNK_SIZE, n - start)],
                                             _evaluate_chunk(functional, params, features, deriv)))
    exc = np.concatenate([c[0] for c in chunks])
    v = {k: np.concatenate([c[1][k] for c in chunks], axis=-1) for k in names}
    if not np.all(np.isfinite(exc)) or not all(np.all(np.isfinite(x)) for x in v.values()):
        raise FloatingPointError(
            f"functional {functional.name!r} gave non-finite energies or potentials on PySCF's grid "
            f"(spin={spin}); check it at small and zero density")
    layout = (lambda x: x) if spin == 0 else (lambda x: np.ascontiguousarray(x.T))
    vxc = None
    if deriv >= 1:
        vxc = tuple(layout(v[k]) if k in v else None for k in ("rho", "sigma", "lapl", "tau"))
    fxc = None
    if deriv >= 2:
        hessian = {key: np.concatenate([c[2][key] for c in chunks]) for key in chunks[0][2]}
        rows = {"rho": 1, "sigma": 1, "tau": 1} if spin == 0 else {"rho": 2, "sigma": 3, "tau": 2}
        fxc = []
        for a, b in _FXC_ORDER[xc_type(functional)]:
            pairs = _pairs(rows[a], rows[b], a == b)
            block = np.stack([hessian[(a, i, b, j)] for i, j in pairs], axis=-1)
            fxc.append(block[:, 0] if spin == 0 else block)
        fxc = tuple(fxc)
        if not all(np.all(np.isfinite(x)) for x in fxc):
            raise FloatingPointError(f"functional {functional.name!r} gave non-finite second derivatives "
                                     f"(fxc) on PySCF's grid (spin={spin})")
    return exc, vxc, fxc, None


def make_eval_xc(functional: Functional | str, params: Any = None):
    """A function with the signature of ``pyscf.dft.libxc.eval_xc`` evaluating ``functional``.

    ``eval_xc(xc_code, rho, spin=0, relativity=0, deriv=1, omega=None, verbose=None) ->
    (exc, vxc, fxc, kxc)``; ``xc_code`` is ignored (PySCF passes ``mf.xc``). See the module
    docstring for the layout.

    Raises (when called):
      NotImplementedError: ``deriv > 2`` (third derivatives), or an ``omega`` different from the
        functional's own (PySCF's ``mf.omega`` override of a range-separated functional).
      FloatingPointError: non-finite values on the grid.
    """
    functional = resolve_functional(functional)
    params = functional.params if params is None else params

    def eval_xc(xc_code, rho, spin=0, relativity=0, deriv=1, omega=None, verbose=None):
        del xc_code, relativity, verbose
        if deriv > 2:
            raise NotImplementedError(
                f"dftjax functional {functional.name!r}: derivatives of order {deriv} (kxc) are not "
                f"provided; deriv 0 (energy), 1 (potentials) and 2 (fxc) are")
        if omega not in (None, 0, 0.0) and omega != functional.omega:
            raise NotImplementedError(
                f"dftjax functional {functional.name!r} has omega={functional.omega}; evaluating it "
                f"at omega={omega} (mf.omega) is not supported")
        if spin not in (0, 1):
            raise ValueError(f"spin must be 0 or 1; got {spin}")
        if functional.kind == "hf":
            n = np.asarray(rho).shape[-1]
            zeros = np.zeros(n) if spin == 0 else np.zeros((n, 2))
            return np.zeros(n), (zeros, None, None, None), None, None
        return evaluate(functional, params, rho, spin, deriv)

    eval_xc.functional = functional
    return eval_xc


# ---------------------------------------------------------------------------------------------
# Installing into PySCF / GPU4PySCF


def _backend(mf) -> str:
    """``"pyscf"`` or ``"gpu4pyscf"`` for a Kohn-Sham object; ValueError for anything else."""
    module = type(mf).__module__ or ""
    if module.split(".")[0] == "gpu4pyscf" or any(
            (c.__module__ or "").startswith("gpu4pyscf.") for c in type(mf).__mro__):
        return "gpu4pyscf"
    from pyscf.dft import gks, numint, rks

    if not isinstance(mf, rks.KohnShamDFT):
        raise ValueError(
            f"apply needs a PySCF Kohn-Sham object (dft.RKS(mol), dft.UKS(mol), dft.ROKS(mol), also "
            f"density-fitted) or a GPU4PySCF one; got {type(mf).__module__}.{type(mf).__name__}")
    if isinstance(mf, gks.GKS) or not isinstance(mf._numint, numint.NumInt):
        raise ValueError(
            f"apply supports molecular RKS, UKS and ROKS (pyscf.dft.numint.NumInt); "
            f"{type(mf).__name__} uses {type(mf._numint).__name__}")
    return "pyscf"


def _xc_label(functional: Functional) -> str:
    """What ``mf.xc`` must say for PySCF's string-based checks (exact exchange on/off, no NLC)."""
    from pyscf.dft import libxc

    hybrid = functional.kind == "hf" or functional.is_hybrid
    try:
        if (libxc.is_hybrid_xc(functional.name) == hybrid and not libxc.is_nlc(functional.name)
                and libxc.xc_type(functional.name) == xc_type(functional)):
            return functional.name
    except (KeyError, ValueError, RuntimeError, TypeError):
        pass
    return HYBRID_LABEL if hybrid else SEMILOCAL_LABEL


def _exchange_coefficients(functional: Functional) -> tuple[float, tuple[float, float, float]]:
    """PySCF's ``hyb`` and ``rsh = (omega, alpha, beta)`` of a functional."""
    if functional.kind == "hf" and not functional.is_hybrid:
        return 1.0, (0.0, 1.0, 0.0)
    return float(functional.exact_exchange), tuple(float(x) for x in functional.rsh_coeff())


def _gpu_eval_xc(eval_xc):
    """Wrap a NumPy ``eval_xc`` for GPU4PySCF: CuPy arrays in and out (copied through the host)."""
    import cupy

    def eval_xc_gpu(xc_code, rho, spin=0, relativity=0, deriv=1, omega=None, verbose=None):
        out = eval_xc(xc_code, cupy.asnumpy(rho), spin, relativity, deriv, omega, verbose)
        return jax.tree_util.tree_map(lambda x: None if x is None else cupy.asarray(x), out,
                                      is_leaf=lambda x: x is None)

    return eval_xc_gpu


def apply(mf, xc: Functional | str, *, params: Any = None):
    """Make the Kohn-Sham object ``mf`` use the dftjax functional ``xc`` (in place; returns ``mf``).

    Args:
      mf: ``pyscf.dft.RKS``/``UKS``/``ROKS`` (plain, density-fitted, with solvent...), or the same
        GPU4PySCF classes.
      xc: a :class:`~functionals.Functional` (analytic or neural, e.g.
        ``functionals.from_energy_density(name, flax_apply, variables, kind="gga")``) or a name
        that :func:`functionals.get_functional` reads (``"pbe"``, ``"b3lyp"``, ``"camb3lyp"``).
      params: functional parameters (default: the functional's own).

    Returns:
      ``mf``, whose ``_numint`` now evaluates ``xc`` and whose exact-exchange coefficients are the
      functional's (``hyb = exact_exchange``, ``rsh = (omega, alpha, beta)``).

    Raises:
      ValueError: ``mf`` is not a molecular Kohn-Sham object; unknown functional name (with close
        matches); a functional PySCF cannot take (kinetic, 1D, non-local, needing the Laplacian).
      ImportError: a GPU4PySCF object without ``gpu4pyscf``/``cupy`` importable.
    """
    backend = _backend(mf)
    eval_xc = make_eval_xc(xc, params)
    functional = eval_xc.functional
    if backend == "gpu4pyscf":
        try:
            import cupy  # noqa: F401
            import gpu4pyscf  # noqa: F401
        except ImportError as error:
            raise ImportError(
                f"{type(mf).__name__} is a GPU4PySCF object but gpu4pyscf/cupy cannot be imported "
                f"({error}); install gpu4pyscf or pass a CPU PySCF object (mf.to_cpu())") from error
        eval_xc = _gpu_eval_xc(eval_xc)
    hyb, rsh = _exchange_coefficients(functional)
    mf.xc = _xc_label(functional)
    mf.define_xc_(eval_xc, xc_type(functional), hyb=hyb, rsh=rsh)
    return mf
