"""The 1D local (spin) density approximation for the exponential Coulomb interaction.

Uniform-gas exchange and correlation of electrons interacting through
``v(x) = A exp(-kappa |x|)`` (Baker, Stoudenmire, Wagner, Burke & White, "One-dimensional mimicking
of electronic structure: the case for exponentials", PRB 91, 235141 (2015), eqs. 17 and 24 and its
spin-polarised fit), as used by the Kohn-Sham-regularizer data set (Li et al., PRL 126, 036401
(2021)). Energies per length (hartree/bohr), in the 1D functional signature of
:mod:`dftjax.oned.ks`: ``energy_density(params, spin_density (2, n)) -> (n,)``.

With ``y = pi n / kappa`` (``n`` the total density):

* exchange per particle of the unpolarised gas (closed form of
  ``-1/(2n) int v(x) |rho_1(x)|^2 dx`` with the free-electron density matrix)::

      eps_x(n) = A / (2 pi) * (ln(1 + y^2) / y - 2 arctan(y)),

  and the spin-scaling relation ``E_x[n_up, n_dn] = (E_x[2 n_up] + E_x[2 n_dn]) / 2``;
* correlation per particle, Baker et al.'s Pade fit to DMRG uniform-gas energies::

      eps_c(n) = -A y / (pi (a + b y^1/2 + c y + d y^3/2 + e y^2 + f y^5/2 + g pi kappa^2 / A y^3)),

  with one parameter set for the unpolarised and one for the fully polarised gas, interpolated as
  ``eps_c(n, zeta) = eps_c^0(n) + zeta^2 (eps_c^1(n) - eps_c^0(n))``.

>>> import jax.numpy as jnp
>>> n = jnp.array([[0.05, 0.2], [0.05, 0.0]])       # spin densities (2, n)
>>> lsda(None, n).shape
(2,)
"""

from __future__ import annotations

import jax.numpy as jnp

from basis.oned import EXPONENTIAL_COULOMB_AMPLITUDE, EXPONENTIAL_COULOMB_KAPPA

Array = jnp.ndarray

# Pade coefficients (a, b, c, d, e, f, g) of Baker et al. PRB 91, 235141 (2015)
UNPOLARIZED_CORRELATION = (2.0, -1.00077, 6.26099, -11.9041, 9.62614, -1.48334, 1.0)
POLARIZED_CORRELATION = (180.891, -541.124, 651.615, -356.504, 88.0733, -4.32708, 8.0)

# below this y the series of the exchange kernel replaces ln(1 + y^2) / y (cancellation)
_SMALL_Y = 1e-4


def exchange_per_particle(density: Array, amplitude: float = EXPONENTIAL_COULOMB_AMPLITUDE,
                          kappa: float = EXPONENTIAL_COULOMB_KAPPA) -> Array:
    """Unpolarised uniform-gas exchange energy per electron (hartree) at total density (n,)."""
    y = jnp.pi * density / kappa
    small = y < _SMALL_Y
    # ln(1+y^2)/y is 0/0 at y = 0: evaluate it at a safe y there, and the series instead
    safe_y = jnp.where(small, 1.0, y)
    exact = jnp.log1p(safe_y**2) / safe_y - 2.0 * jnp.arctan(safe_y)
    series = -y + y**3 / 6.0
    return amplitude / (2.0 * jnp.pi) * jnp.where(small, series, exact)


def correlation_per_particle(density: Array, coefficients=UNPOLARIZED_CORRELATION,
                             amplitude: float = EXPONENTIAL_COULOMB_AMPLITUDE,
                             kappa: float = EXPONENTIAL_COULOMB_KAPPA) -> Array:
    """Uniform-gas correlation energy per electron (hartree), Baker et al.'s Pade form (n,)."""
    a, b, c, d, e, f, g = coefficients
    y = jnp.pi * density / kappa
    # sqrt'(0) is inf: two jnp.where keep the gradient finite at zero density
    zero = y <= 0.0
    safe_y = jnp.where(zero, 1.0, y)
    root = jnp.sqrt(safe_y)
    denominator = (a + b * root + c * safe_y + d * safe_y * root + e * safe_y**2
                   + f * safe_y**2 * root + g * jnp.pi * kappa**2 / amplitude * safe_y**3)
    return jnp.where(zero, -amplitude * y / (jnp.pi * a), -amplitude * safe_y / (jnp.pi * denominator))


def exchange(params, spin_density: Array) -> Array:
    """LSDA exchange energy per length (n,) of spin densities (2, n), by spin scaling."""
    del params
    return jnp.sum(spin_density * exchange_per_particle(2.0 * spin_density), axis=0)


def correlation(params, spin_density: Array) -> Array:
    """LSDA correlation energy per length (n,) of spin densities (2, n), zeta^2 interpolation."""
    del params
    total = jnp.sum(spin_density, axis=0)
    polarization = spin_density[0] - spin_density[1]
    unpolarized = correlation_per_particle(total, UNPOLARIZED_CORRELATION)
    polarized = correlation_per_particle(total, POLARIZED_CORRELATION)
    # n zeta^2 = (n_up - n_dn)^2 / n, 0/0 at zero density
    empty = total <= 0.0
    safe_total = jnp.where(empty, 1.0, total)
    n_zeta2 = jnp.where(empty, 0.0, polarization**2 / safe_total)
    return total * unpolarized + n_zeta2 * (polarized - unpolarized)


def lsda(params, spin_density: Array) -> Array:
    """LSDA exchange-correlation energy per length (n,) of spin densities (2, n) (hartree/bohr)."""
    return exchange(params, spin_density) + correlation(params, spin_density)


def unpolarized_lda(params, spin_density: Array) -> Array:
    """The spin-unpolarised LDA (n,): the LSDA evaluated at the total density split equally."""
    total = jnp.sum(spin_density, axis=0)
    return lsda(params, jnp.stack([0.5 * total, 0.5 * total]))


def exchange_only(params, spin_density: Array) -> Array:
    """LSDA exchange only (n,) (the data set's ``exch_only`` references)."""
    return exchange(params, spin_density)
