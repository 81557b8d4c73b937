"""One-dimensional electronic structure with exponential Coulomb interactions (Baker et al.,
PRB 91, 235141 (2015)), the setting of the Kohn-Sham regularizer (Li et al., PRL 126, 036401 (2021)):

* :mod:`dftjax.oned.lda`: the 1D exponential-Coulomb LSDA (exchange + Baker's correlation fit);
* :mod:`dftjax.oned.ks`: Kohn-Sham (restricted / spin-polarised, parity blocks, damped mixing,
  ``lax.scan`` trajectory and ``lax.while_loop`` convergence);
* :mod:`dftjax.oned.exact`: exact two-electron singlet ground states on the product grid;
* :mod:`dftjax.oned.data`: the KSR DMRG data set and Kohn-Sham problems built from it;
* :mod:`dftjax.oned.experiment`, :mod:`dftjax.oned.cli`: the H2 experiment (and H2 + H4 trained,
  tested on H2-H2, H3, H2+), ``dftjax train ksr1d``;
* :mod:`dftjax.oned.blas`: one OpenBLAS thread for the small eigh of the KS iterations;
* ``models/ksr1d_h2_global.npz``: the global functional trained by the H2 experiment with the CLI
  defaults (:func:`dftjax.ksr.load_params`).

The trainer itself is :mod:`dftjax.ksr`; the neural functionals are :mod:`functionals.ksr`.
"""
