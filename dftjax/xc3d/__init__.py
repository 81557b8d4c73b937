"""Neural exchange-correlation functionals in 3D: reference data, training through the SCF, evaluation.

* :mod:`dftjax.xc3d.data`: CCSD(T) energies and CCSD densities of small molecules (PySCF), cached
  in ``dftjax/xc3d/data`` (``dftjax data make``).
* :mod:`dftjax.xc3d.train`: ``dftjax train xc3d``, Adam on energy and density losses through the
  differentiable SCF (:func:`dftjax.adjoint.make_scf_function`, implicit or unrolled adjoint),
  validation-based selection, atomic checkpoints with exact resume, molecules split over devices.
* :mod:`dftjax.xc3d.evaluate`: held-out atomization-energy and density errors against the
  same-basis CCSD(T)/CCSD reference, for the neural functional and LDA, PBE, B3LYP, r2SCAN.

The models themselves are in :mod:`functionals.neural_xc` (functionals import nothing from dftjax).
"""
