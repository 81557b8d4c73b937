"""Exchange-correlation functionals: pure functions of spin-resolved density features.

A functional is ``energy_density(params, features) -> (n,)``, the energy per volume
(hartree/bohr^3) on the grid points of ``features`` (:class:`Features`: ``rho (2, n)``,
``sigma (3, n)``, ``tau (2, n)``, ``lapl (2, n)``), so that ``E_xc = sum(weights * e)``.
A :class:`Functional` record bundles it with its default ``params``, its ``kind``
(``"lda"``/``"gga"``/``"mgga"``/``"hf"``) and its exact-exchange coefficients, which follow
PySCF's ``hybrid_coeff`` and ``rsh_coeff`` (``K = alpha K_full + beta K_sr(omega)``).
Potentials are never hand-coded: take ``jax.grad`` of the integrated energy.

>>> import jax, jax.numpy as jnp
>>> from functionals import get_functional, restricted_features
>>> xc = get_functional("pbe")
>>> features = restricted_features(jnp.array([0.1, 1.0]), jnp.array([0.01, 0.5]))
>>> energy = lambda f: jnp.sum(jnp.array([0.5, 0.5]) * xc(f))
>>> v = jax.grad(energy)(features)          # d E / d rho_s, d E / d sigma_ss' (Features)

Closed shells take a faster path: :class:`RestrictedFeatures` (``rho, sigma, tau, lapl`` of the
*total* density, each (n,); :func:`closed_shell_features`,
:func:`restricted_features_from_density_matrix`) make every registered functional evaluate its
unpolarised formulas (exchange of the total density, correlation at zeta = 0: about half the work
of the two equal spin halves), and ``jax.grad`` with respect to them gives libxc's ``spin=0``
potentials. A functional that only knows spin-resolved :class:`Features`
(``supports_restricted=False``, the default of :func:`from_energy_density`) is handed the equal
halves instead, so user and neural functionals work unchanged. :func:`energy_and_potentials`
returns the energy density and all pointwise potentials in one chunked pass (the fastest way on
CPU; it is what ``dftjax bench functionals`` times against libxc)::

    features = restricted_features_from_density_matrix(ao, dm)   # RKS: total density matrix
    e, v = energy_and_potentials(get_functional("r2scan"), features)   # v["rho"], v["sigma"], ...

Names are PySCF's (:func:`get_functional`: ``"lda,vwn"``, ``"pbe"``, ``"blyp"``, ``"bp86"``,
``"b3lyp"`` (VWN-RPA, as PySCF), ``"pbe0"``, ``"camb3lyp"``, ``"r2scan"``, ``"scan"``, ``"hf"`` and
linear combinations such as ``".2*HF + .08*LDA + .72*B88, .81*LYP + .19*VWN"``).

Neural (or any learned) functionals: any ``(params, features) -> (n,)`` function, e.g. a Flax
module's ``apply``, becomes a Functional with :func:`from_energy_density`; its ``params`` are the
module's variables, and ``jax.grad`` of an energy (or of a loss through an SCF) with respect to
them trains it::

    class Enhancement(nn.Module):            # F(rho) multiplying LDA exchange
        @nn.compact
        def __call__(self, features):
            x = jnp.log(features.total_density + 1e-12)[:, None]
            return 1.0 + 0.1 * jnp.tanh(nn.Dense(1)(jnp.tanh(nn.Dense(8)(x))))[:, 0]

    model = Enhancement()
    variables = model.init(key, features)
    neural = from_energy_density(
        "nn-lda", lambda v, f: model.apply(v, f) * slater_x(None, f), variables, kind="lda")
    grads = jax.grad(lambda v: jnp.sum(weights * neural(features, v)))(variables)

Analytic functionals expose their constants the same way (``params`` dicts such as
``B88_PARAMS``), so they can be refitted by the same machinery, and a learned term can be added to
a registered functional with :func:`linear_combination`.
"""
import basis  # noqa: F401,E402  (first: the project's float64 policy, see basis/__init__.py)
from functionals.features import (Features, RestrictedFeatures, closed_shell_features,
                                  features_from_density_matrices, from_libxc_input,
                                  restricted_features, restricted_features_from_density_matrix,
                                  unrestricted_features)
from functionals.functional import (EnergyDensity, Functional, energy_and_potentials,
                                    exchange_correlation_energy, fields_read, from_energy_density,
                                    linear_combination, potential_cotangent)
from functionals.gga import (B88_PARAMS, B88_SHORT_RANGE_PARAMS, LYP_PARAMS, P86_PARAMS,
                             PBE_C_PARAMS, PBE_X_PARAMS, b88_short_range_x, b88_x, lyp_c, p86_c,
                             pbe_c, pbe_x)
from functionals.hybrid import make_b3lyp, make_b3lyp5, make_camb3lyp, make_pbe0
from functionals.kinetic import (APBEK_PARAMS, PBE_TW_PARAMS, THOMAS_FERMI_CONSTANT, pbe_kinetic,
                                 thomas_fermi, thomas_fermi_1d, thomas_fermi_von_weizsaecker,
                                 thomas_fermi_von_weizsaecker_1d, von_weizsaecker,
                                 von_weizsaecker_laplacian)
from functionals.ksr import (GlobalXC, LocalXC, SemilocalXC, as_functional, make_ksr_functional,
                             self_interaction_gate)
from functionals.lda import (PW92_MOD_PARAMS, PW92_PARAMS, PZ81_PARAMS, VWN5_PARAMS, VWN_RPA_PARAMS,
                             pw92_c, pz81_c, slater_x, vwn5_c, vwn_rpa_c)
from functionals.registry import available_functionals, get_functional

__all__ = [
    # features
    "Features", "features_from_density_matrices", "restricted_features", "unrestricted_features",
    "from_libxc_input", "RestrictedFeatures", "closed_shell_features",
    "restricted_features_from_density_matrix",
    # the functional record
    "EnergyDensity", "Functional", "exchange_correlation_energy", "from_energy_density",
    "linear_combination", "energy_and_potentials", "fields_read", "potential_cotangent",
    # names
    "get_functional", "available_functionals",
    # energy densities and their default params
    "slater_x", "vwn5_c", "vwn_rpa_c", "pw92_c", "pz81_c",
    "b88_x", "pbe_x", "b88_short_range_x", "pbe_c", "lyp_c", "p86_c",
    "VWN5_PARAMS", "VWN_RPA_PARAMS", "PW92_PARAMS", "PW92_MOD_PARAMS", "PZ81_PARAMS",
    "B88_PARAMS", "PBE_X_PARAMS", "B88_SHORT_RANGE_PARAMS", "PBE_C_PARAMS", "LYP_PARAMS",
    "P86_PARAMS",
    # hybrids
    "make_b3lyp", "make_b3lyp5", "make_pbe0", "make_camb3lyp",
    # kinetic-energy functionals (orbital-free DFT)
    "thomas_fermi", "thomas_fermi_1d", "von_weizsaecker", "von_weizsaecker_laplacian",
    "thomas_fermi_von_weizsaecker", "thomas_fermi_von_weizsaecker_1d", "pbe_kinetic",
    "APBEK_PARAMS", "PBE_TW_PARAMS", "THOMAS_FERMI_CONSTANT",
    # neural 1D XC functionals of the Kohn-Sham regularizer (Li et al. 2021)
    "LocalXC", "SemilocalXC", "GlobalXC", "self_interaction_gate", "make_ksr_functional", "as_functional",
]
