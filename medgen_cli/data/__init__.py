"""Data: H5 point clouds, voxelization, NIfTI volume and 2D image datasets, synthetic phantoms.

Modules (import the one you need; none imports torch at module level):

- ``h5io``: read the supported HDF5 point-cloud layouts and describe a file (``data inspect``).
- ``voxelize``: normalization of clouds into a grid and the occupancy/density/gaussian methods.
- ``convert`` (+ ``convert_worker``, ``convert_report``): the ``data convert-h5`` pipeline
  (split, manifest, workers, resume, summary).
- ``fastnifti``: the chunked gzip ``.nii.gz`` writer convert-h5 uses (nibabel's exact bytes).
- ``points``: volume → points (voxel centres in world coordinates) and point-file IO.
- ``synth``: anatomy-like synthetic phantom point clouds (``data synth-h5``, demo, tests).
- ``volumes``: the NIfTI volume dataset on MONAI transforms.
- ``images``: the 2D image-folder dataset for the 2D GANs.
- ``cbct``: CBCT projection data, a package (geometry, case files, make-cbct, poses; see its docstring).
"""
