"""medgen's benchmarks, run by hand from the repository root as modules::

    python -m benchmarks.quality_shapes --family sparse-gan --size 32 --json out.json

(Run as files, ``python benchmarks/X.py``, the scripts that import the package say so and stop.)

* ``harness``: the one harness: train a config for a minutes and/or steps budget, sample, score
  with medgen's metrics, write JSON + PNG. Every ``quality_*`` and ``gan2d_recipe`` uses it.
* ``quality_<family>``: a preset trained on a data folder for a budget, scored next to a trivial
  baseline or the real-vs-real floor (``quality_autoencoder``, ``quality_ldm``, ``quality_gan2d``,
  ``quality_shapes``, ``quality_cbct``); ``gan2d_recipe``: a 2D GAN recipe at given epochs;
  ``gpu_gan2d``: the 2D GAN GPU presets on the sets (``gan2d_report``: what it shares with
  ``quality_gan2d``).
* ``make_*``: the data the benchmarks use, made from what packages ship (``make_gan2d_data``:
  the 2D GAN sets, coins/Hubble, retina, textures, faces; ``make_shape_data``: phantom and MNI152
  shape sets; ``make_mni_crops``: MNI152 T1 crops; ``make_mni_ct``: MNI152 pseudo-CT heads). nilearn (MNI152) comes with
  ``pip install 'medgen[bench]'``.
* ``bench_*``: speed of one component against a named reference; ``gpu_check``: the GPU presets.

No test imports this package (tests/test_architecture.py checks it).
"""
