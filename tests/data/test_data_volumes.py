"""NIfTI volume dataset on MONAI transforms: shapes, intensity, labels, splits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medgen_cli.data.volumes import list_volume_split, make_volume_dataset, manifest_labels, read_manifest
from medgen_cli.errors import MedgenError
from medgen_cli.io import save_nifti


def _make_root(tmp_path, shape=(10, 12, 8), n_train=3, n_val=1):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            save_nifti(rng.random(shape).astype(np.float32) * 5 + 2, tmp_path / split / f"s{i}.nii.gz")
    return tmp_path


def test_split_listing(tmp_path):
    root = _make_root(tmp_path)
    train, val = list_volume_split(root)
    assert [p.name for p in train] == ["s0.nii.gz", "s1.nii.gz", "s2.nii.gz"] and len(val) == 1
    with pytest.raises(MedgenError, match="no train"):
        list_volume_split(tmp_path / "nothing")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(MedgenError, match="no .nii.gz"):
        list_volume_split(tmp_path / "empty")


@pytest.mark.parametrize("flip,rotate,cache", [(False, False, 0.0), (True, True, 1.0)])
def test_dataset_3d_shapes_and_minmax(tmp_path, flip, rotate, cache):
    train, _ = list_volume_split(_make_root(tmp_path))
    ds = make_volume_dataset(train, (16, 16, 16), flip=flip, rotate=rotate, cache_rate=cache)
    assert len(ds) == 3
    item = ds[0]
    assert type(item["image"]) is torch.Tensor and item["image"].dtype == torch.float32
    assert tuple(item["image"].shape) == (1, 16, 16, 16)
    assert item["path"].endswith("s0.nii.gz")
    assert float(item["image"].min()) >= -1e-6 and float(item["image"].max()) <= 1 + 1e-6
    batch = torch.utils.data.DataLoader(ds, batch_size=2)
    assert tuple(next(iter(batch))["image"].shape) == (2, 1, 16, 16, 16)


def test_intensity_none_keeps_values_when_no_resize(tmp_path):
    train, _ = list_volume_split(_make_root(tmp_path, shape=(8, 8, 8)))
    ds = make_volume_dataset(train[:1], (8, 8, 8), intensity="none")
    import nibabel as nib

    ref = nib.load(str(train[0])).get_fdata()
    np.testing.assert_allclose(ds[0]["image"][0].numpy(), ref, rtol=1e-5)


def test_dataset_2d_nifti_and_png(tmp_path):
    from PIL import Image

    save_nifti(np.random.default_rng(0).random((12, 10)).astype(np.float32), tmp_path / "a.nii.gz")
    Image.fromarray((np.random.default_rng(1).random((9, 7)) * 255).astype(np.uint8)).save(tmp_path / "b.png")
    ds = make_volume_dataset([tmp_path / "a.nii.gz", tmp_path / "b.png"], (16, 16))
    assert tuple(ds[0]["image"].shape) == (1, 16, 16) and tuple(ds[1]["image"].shape) == (1, 16, 16)


def test_trailing_singleton_channel_is_the_channel(tmp_path):
    save_nifti(np.ones((6, 7, 8, 1), np.float32), tmp_path / "c.nii.gz")
    ds = make_volume_dataset([tmp_path / "c.nii.gz"], (8, 8, 8), intensity="none")
    assert tuple(ds[0]["image"].shape) == (1, 8, 8, 8)


def test_rank_mismatch_is_a_clear_error(tmp_path):
    train, _ = list_volume_split(_make_root(tmp_path, n_train=1))
    with pytest.raises(MedgenError, match="expected a single-channel 2D volume"):
        make_volume_dataset(train, (16, 16))
    (tmp_path / "bad.nii.gz").write_bytes(b"garbage")
    with pytest.raises(MedgenError, match="cannot read NIfTI"):
        make_volume_dataset([tmp_path / "bad.nii.gz"], (16, 16, 16))


def test_labels_from_manifest(tmp_path):
    root = _make_root(tmp_path, n_train=2, n_val=0)
    records = [{"file": "train/s0.nii.gz", "split": "train", "label": 1}, {"file": "train/s1.nii.gz", "split": "train", "label": 0}]
    (root / "manifest.json").write_text(json.dumps(records))
    assert read_manifest(root)[0]["label"] == 1
    labels = manifest_labels(root)
    train, _ = list_volume_split(root)
    ds = make_volume_dataset(train, (8, 8, 8), labels=labels)
    assert int(ds[0]["label"]) == 1 and int(ds[1]["label"]) == 0
    with pytest.raises(MedgenError, match="no label"):
        make_volume_dataset(train, (8, 8, 8), labels={"other": 1})
    with pytest.raises(MedgenError, match="no manifest"):
        read_manifest(tmp_path / "train")
