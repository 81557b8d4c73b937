"""Laplacian and gradient of a scalar function of electron positions: two interchangeable methods.

The kinetic energy of VMC needs, per configuration x in R^d (d = 3 n_elec), the Laplacian
sum_i d^2 f / dx_i^2 and the gradient of f = log|psi|. Both methods return ``(laplacian, gradient)``:

* ``"hessian"``: forward-over-reverse autodiff. ``jax.linearize`` of ``jax.grad(f)`` gives the gradient
  and a Hessian-vector product; the product is ``vmap``ped over the d unit vectors and the diagonal
  entries summed. Cost ~ d backward passes; memory holds the d x d Hessian rows at once.
* ``"forward"``: the forward Laplacian (Li, Ye, Li, Chen, Wang, Li, Ren, "A computational framework for
  neural network-based variational Monte Carlo with Forward Laplacian", Nat. Mach. Intell. 6, 209
  (2024)): one forward pass that propagates (value, Jacobian w.r.t. x, Laplacian) through every
  operation, so no Hessian is ever formed and the sparsity of per-electron operations is used. We use
  the `folx` implementation by the same authors' collaborators (Gao et al.), which works with the
  installed JAX (0.10.2; folx 0.2.30 tested), rather than writing a new tracer: folx already covers
  the sparse Jacobians of permutation-equivariant layers, and takes rules for single operations;
  we give it one for our determinant (:func:`slogdet_forward_laplacian`).

Both agree to 1e-8 in float64 on FermiNet and match five-point finite differences
(``tests/qmc/test_laplacian.py``); on LiH local energies they differ by ~1e-11 Ha.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

ScalarFn = Callable[[jnp.ndarray], jnp.ndarray]  # (d,) -> ()
LaplacianFn = Callable[[jnp.ndarray], tuple[jnp.ndarray, jnp.ndarray]]  # (d,) -> ((), (d,))


def hessian_laplacian(f: ScalarFn) -> LaplacianFn:
    """x -> (trace of the Hessian of f, grad f) by forward-over-reverse autodiff (x of shape (d,))."""

    def laplacian(x):
        gradient, hessian_vector = jax.linearize(jax.grad(f), x)
        eye = jnp.eye(x.shape[0], dtype=x.dtype)
        diagonal = jax.vmap(lambda e: jnp.vdot(e, hessian_vector(e)))(eye)
        return jnp.sum(diagonal), gradient

    return laplacian


SPARSE_FROM_COORDINATES = 30  # 10 electrons: below it folx's dense Jacobians are faster
SPARSITY_THRESHOLD = 6  # FermiNet's setting for folx (ferminet/hamiltonian.py)


def forward_laplacian(f: ScalarFn, sparsity_threshold: float | None = None) -> LaplacianFn:
    """x -> (Laplacian of f, grad f) in one forward pass (folx; see the module docstring).

    ``sparsity_threshold`` is folx's: 0 propagates dense Jacobians; a count like 6 (FermiNet's) or a
    fraction like 0.6 lets folx keep per-electron Jacobians sparse until an operation mixes more
    electrons than that. None (default) picks by size when traced: dense below 30 coordinates,
    6 from 30 (10 electrons) on. Measured 2026-11-28, 2 idle cores, float64, FermiNet 32/8 x 3,
    4 determinants, Laplacian of all walkers (least of 7, ms): LiH 256 walkers 13.0 dense vs
    24.5 sparse; CH4 64 walkers 56 vs 39, 256 walkers 263 vs 200; the values agree to ~1e-12 Ha
    (summation order).
    """
    import folx  # imported here: only this method needs it

    from qmc.linalg import ELIMINATION_CALL

    if not folx.wrapped_functions.is_registered(ELIMINATION_CALL):
        folx.register_function(ELIMINATION_CALL, slogdet_forward_laplacian)

    def laplacian(x):
        threshold = sparsity_threshold
        if threshold is None:
            threshold = SPARSITY_THRESHOLD if x.shape[0] >= SPARSE_FROM_COORDINATES else 0
        # folx broadcasts Jacobians against values by implicit rank promotion; allow it inside folx
        # only, so the strict setting of the tests still guards our own code.
        with jax.numpy_rank_promotion("allow"):
            out = folx.forward_laplacian(f, sparsity_threshold=threshold)(x)
        return out.laplacian, jnp.reshape(out.jacobian.dense_array, x.shape)

    return laplacian


def slogdet_forward_laplacian(args, kwargs, sparsity_threshold):
    """folx rule for :func:`qmc.linalg.slogdet` on CPU: (sign, log|det A|) with its Jacobian and Laplacian.

    For A(x) with Jacobian dA/dx_c and Laplacian Delta A, log|det A| has (Jacobi's formula)

        d_c log|det A| = tr(M_c),   Delta log|det A| = tr(A^-1 Delta A) - sum_c tr(M_c M_c),
        M_c = A^-1 dA/dx_c

    (Li et al., Nat. Mach. Intell. 6, 209 (2024), sec. Methods; folx's own rule for LAPACK's
    slogdet uses the same formulas). A^-1 comes from the gradient through the elimination, so no
    LAPACK call enters (see :mod:`qmc.linalg`), and folx does not propagate Jacobians through the
    n unrolled elimination steps: CH4's local energy (256 walkers, 2 idle cores) 264 -> 216 ms.
    """
    from folx.api import FwdJacobian, FwdLaplArray

    from qmc.linalg import slogdet_and_inverse, slogdet_elimination

    (a,) = args
    if not isinstance(a, FwdLaplArray):
        return slogdet_elimination(a)
    sign, logdet, inverse = slogdet_and_inverse(a.x)
    m = jnp.einsum("...ij,k...jl->k...il", inverse, a.jacobian.dense_array)
    jacobian = jnp.einsum("k...ii->k...", m)
    laplacian = jnp.einsum("...ji,...ij->...", inverse, a.laplacian) - jnp.einsum("k...ij,k...ji->...", m, m)
    return sign, FwdLaplArray(logdet, FwdJacobian.from_dense(jacobian), laplacian)


LAPLACIANS: dict[str, Callable[[ScalarFn], LaplacianFn]] = {
    "hessian": hessian_laplacian,
    "forward": forward_laplacian,
}


def make_laplacian(f: ScalarFn, method: str = "forward") -> LaplacianFn:
    """``LAPLACIANS[method](f)``, with a one-line error for an unknown method."""
    if method not in LAPLACIANS:
        raise ValueError(f"unknown Laplacian method {method!r}: expected one of {sorted(LAPLACIANS)}")
    return LAPLACIANS[method](f)
