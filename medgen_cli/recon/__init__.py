"""Sparse-view CBCT reconstruction, as a library (no family, no engine):

* :mod:`~medgen_cli.recon.base` — the :class:`~medgen_cli.recon.base.Reconstructor` protocol;
* :mod:`~medgen_cli.recon.classical` — diffct's FDK and SIRT as reconstructors;
* :mod:`~medgen_cli.recon.inputs` — an input file (a case ``.h5`` or a CT ``.nii.gz``) as a case
  and the points its voxels are reconstructed at;
* :mod:`~medgen_cli.recon.reconstruct` — the shared path of ``medgen recon``: an input file and a
  reconstructor (classical, or a dif-gaussian run's through its ``recon``) → :class:`Samples`.

Loading a run and writing the file is the engine's (:mod:`medgen_cli.engine.recon`).
"""
