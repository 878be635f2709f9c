"""The chunked gzip NIfTI writer produces exactly nibabel's byte stream, in a valid gzip file."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from medgen_cli.data.fastnifti import write_nifti_gz
from medgen_cli.errors import MedgenError


@pytest.mark.parametrize("shape,fill", [((32, 32, 32), 0.01), ((7, 5, 3), 0.5), ((9, 4), 0.3), ((16, 16, 16), 0.0),
                                        ((20, 30, 10), 1.0)])
@pytest.mark.parametrize("rotated", [False, True])
def test_same_bytes_as_nibabel(tmp_path, shape, fill, rotated):
    rng = np.random.default_rng(0)
    vol = np.where(rng.random(shape) < fill, rng.random(shape), 0).astype(np.float32)
    aff = np.diag([0.5, 0.7, 1.3, 1.0])
    aff[:3, 3] = [1.0, -2.0, 3.0]
    if rotated:  # the general path (nibabel's own set_sform/set_qform)
        c, s = np.cos(0.3), np.sin(0.3)
        aff[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ aff[:3, :3]
    path = write_nifti_gz(vol, tmp_path / "a.nii.gz", aff)
    ref = nib.Nifti1Image(vol, aff)
    ref.header.set_xyzt_units("mm")
    assert gzip.decompress(path.read_bytes()) == ref.to_bytes()  # gzip checks the CRC and length too
    img = nib.load(str(path))
    np.testing.assert_array_equal(np.asarray(img.dataobj), vol)
    np.testing.assert_allclose(img.affine, aff)
    with pytest.raises(MedgenError, match="already exists"):
        write_nifti_gz(vol, path, aff)
    assert [p.name for p in tmp_path.iterdir()] == ["a.nii.gz"]
