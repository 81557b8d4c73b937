"""Antisymmetric trial wavefunctions: a registry from names to builders.

Every ansatz is a Flax module written for one configuration: ``module.apply(params, positions)``
with ``positions`` of shape (n_elec * 3,) or (n_elec, 3) bohr, up electrons first, returns
``(sign psi, log|psi|)``; ``module.apply(params, positions, method="orbitals")`` returns the
(determinants, n_elec, n_elec) orbital matrices used for pretraining.

>>> from basis.molecule import make_molecule
>>> from qmc.ansatz import PauliNetOptions, make_ansatz
>>> ansatz = make_ansatz("ferminet", make_molecule("He 0 0 0"))
>>> paulinet = make_ansatz("paulinet", make_molecule("He 0 0 0"), PauliNetOptions(basis="sto-3g"))  # runs UHF
"""

from __future__ import annotations

from typing import Any, Callable

from qmc.ansatz.ferminet import FermiNet, FermiNetOptions, make_ferminet
from qmc.ansatz.paulinet import PauliNet, PauliNetOptions, make_paulinet

# name -> (builder(molecule, options), options type)
ANSATZES: dict[str, tuple[Callable[..., Any], type]] = {
    "ferminet": (make_ferminet, FermiNetOptions),
    "paulinet": (make_paulinet, PauliNetOptions),
}


def make_ansatz(name: str, molecule, options=None):
    """The Flax module of ansatz ``name`` for ``molecule``; ``options`` of the ansatz's options type."""
    if name not in ANSATZES:
        raise ValueError(f"unknown ansatz {name!r}: expected one of {sorted(ANSATZES)}")
    builder, options_type = ANSATZES[name]
    if options is not None and not isinstance(options, options_type):
        raise ValueError(f"ansatz {name!r} takes {options_type.__name__}, got {type(options).__name__}")
    return builder(molecule, options)


__all__ = [
    "ANSATZES", "FermiNet", "FermiNetOptions", "PauliNet", "PauliNetOptions", "make_ansatz", "make_ferminet",
    "make_paulinet",
]
