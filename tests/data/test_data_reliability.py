"""Data failures a user met (issue 12, items 6-8): one line naming the file, nothing left behind."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from medgen_cli.data.convert import ConvertOptions, run_convert
from medgen_cli.data.volumes import check_volume_file, make_volume_dataset
from medgen_cli.errors import MedgenError

REPO = Path(__file__).resolve().parents[2]


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from tests.conftest import run_cli

    return run_cli(args, capsys)


def _ball(size: int = 16, r: float = 4.0) -> np.ndarray:
    g = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), -1)
    return (np.linalg.norm(g - size / 2, axis=-1) < r).astype(np.float32)


def _volumes(root: Path, n: int = 4) -> Path:
    for split, k in (("train", n), ("val", 1)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(k):
            nib.save(nib.Nifti1Image(_ball(r=3 + i % 3), np.eye(4)), str(root / split / f"v{i}.nii.gz"))
    return root


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ---- item 6: an H5 with zero samples -------------------------------------------------------
@pytest.mark.parametrize("layout", ["fixed", "concat"])
def test_zero_sample_h5_is_an_error_and_writes_nothing(layout: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "empty.h5"
    with h5py.File(src, "w") as f:
        if layout == "fixed":
            f["data"] = np.zeros((0, 128, 3), np.float32)
        else:
            f["points"] = np.zeros((0, 3), np.float32)
            f["lengths"] = np.zeros((0,), np.int64)
    code, _, err = _cli(["data", "convert-h5", str(src), "--out", str(tmp_path / "out"), "-j", "1"], capsys)
    assert code == 2, err
    assert "holds no samples" in err and str(src) in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1
    assert not (tmp_path / "out").exists()


# ---- item 7: --weights and labels on the groups layout -------------------------------------
def _groups_h5(path: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for i in range(n):
            g = f.create_group(f"samples/s{i}")
            g["points"] = rng.normal(size=(200, 3)).astype(np.float32)
            g["values"] = rng.uniform(0.1, 2.0, size=200).astype(np.float32)
            g.attrs["label"] = i % 3
    return path


def test_groups_layout_weights_and_labels_agree_with_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _groups_h5(tmp_path / "g.h5")
    code, out, err = _cli(["data", "inspect", str(src), "--json"], capsys)
    assert code == 0, err
    plan = json.loads(out)["plan"]
    assert "no labels" not in plan and "labels from 'label'" in plan and "values from 'values'" in plan
    summary = run_convert(ConvertOptions(inputs=[str(src)], out=str(tmp_path / "out"), method="density",
                                         weights=True, resolution=(8, 8, 8), val_fraction=0.0, workers=1))
    assert summary.written == 6
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [r["label"] for r in manifest] == [0, 1, 2, 0, 1, 2]
    # The weights reach the volume: density with weights differs from the unweighted one.
    plain = run_convert(ConvertOptions(inputs=[str(src)], out=str(tmp_path / "plain"), method="density",
                                       resolution=(8, 8, 8), val_fraction=0.0, workers=1))
    assert plain.written == 6
    a = nib.load(str(tmp_path / "out" / manifest[0]["file"])).get_fdata()
    b = nib.load(str(tmp_path / "plain" / manifest[0]["file"])).get_fdata()
    assert not np.allclose(a, b)


def test_groups_without_values_everywhere_still_refuse_weights(tmp_path: Path) -> None:
    src = _groups_h5(tmp_path / "g.h5")
    with h5py.File(src, "a") as f:
        del f["samples/s3/values"]
    with pytest.raises(MedgenError, match="no per-point values"):
        run_convert(ConvertOptions(inputs=[str(src)], out=str(tmp_path / "out"), method="density", weights=True,
                                   resolution=(8, 8, 8), workers=1))
    assert not (tmp_path / "out").exists()


# ---- item 8: a truncated .nii.gz --------------------------------------------------------------
def test_check_volume_file_finds_truncation_and_garbage(tmp_path: Path) -> None:
    root = _volumes(tmp_path / "d")
    good = root / "train" / "v0.nii.gz"
    assert check_volume_file(good, 3) == (16, 16, 16)
    trunc = root / "train" / "v1.nii.gz"
    _truncate(trunc)
    with pytest.raises(MedgenError, match="is truncated") as info:
        check_volume_file(trunc, 3)
    assert str(trunc) in str(info.value)
    (root / "train" / "v2.nii.gz").write_bytes(b"not a volume" * 50)
    with pytest.raises(MedgenError, match="cannot read NIfTI .*v2.nii.gz"):
        check_volume_file(root / "train" / "v2.nii.gz", 3)
    # An uncompressed .nii cut short is found from its size.
    nii = tmp_path / "x.nii"
    nib.save(nib.Nifti1Image(_ball(), np.eye(4)), str(nii))
    _truncate(nii)
    with pytest.raises(MedgenError, match="is truncated"):
        check_volume_file(nii, 3)


def test_multi_member_gzip_is_complete(tmp_path: Path) -> None:
    # Some tools write several gzip members; the trailer then holds the last member's size only.
    raw = gzip.decompress((lambda p: (nib.save(nib.Nifti1Image(_ball(), np.eye(4)), str(p)), p.read_bytes())[1])(tmp_path / "a.nii.gz"))
    (tmp_path / "m.nii.gz").write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    assert check_volume_file(tmp_path / "m.nii.gz", 3) == (16, 16, 16)
    (tmp_path / "m2.nii.gz").write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:-64]))
    with pytest.raises(MedgenError, match="is truncated"):
        check_volume_file(tmp_path / "m2.nii.gz", 3)


def test_truncated_volume_in_training_set_is_one_line_and_leaves_no_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _volumes(tmp_path / "d")
    bad = root / "train" / "v2.nii.gz"
    _truncate(bad)
    out = tmp_path / "runs"
    code, _, err = _cli(["train", "autoencoder", "--config", str(REPO / "configs" / "tiny" / "autoencoder.yaml"),
                         "--set", f"data.root={root}", "--output-dir", str(out), "--name", "t"], capsys)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(bad) in lines[0] and "truncated" in lines[0], err
    assert not (out / "autoencoder" / "t").exists()


def test_file_that_fails_later_is_named_when_loaded(tmp_path: Path) -> None:
    # The dataset checked out when the run started; the file broke afterwards (e.g. a network
    # share). The error from MONAI's loader names it in one line.
    root = _volumes(tmp_path / "d")
    bad = root / "train" / "v1.nii.gz"
    ds = make_volume_dataset([root / "train" / "v0.nii.gz", bad], (16, 16, 16))
    _truncate(bad)
    assert ds[0]["image"].shape == (1, 16, 16, 16)
    with pytest.raises(MedgenError) as info:
        ds[1]
    text = str(info.value)
    assert str(bad) in text and "\n" not in text


def test_reconstruct_input_truncated_is_named(tmp_path: Path) -> None:
    # What `medgen sample AE_RUN --input trunc.nii.gz` runs: the model's own loading path.
    trunc = _volumes(tmp_path / "d") / "train" / "v0.nii.gz"
    _truncate(trunc)
    with pytest.raises(MedgenError, match=f"NIfTI file {trunc} is truncated"):
        make_volume_dataset([trunc], (16, 16, 16))


def test_failure_in_a_dataloader_worker_stays_one_line(tmp_path: Path) -> None:
    import torch

    root = _volumes(tmp_path / "d")
    bad = root / "train" / "v1.nii.gz"
    ds = make_volume_dataset([bad], (16, 16, 16))
    _truncate(bad)
    with pytest.raises(MedgenError) as info:
        next(iter(torch.utils.data.DataLoader(ds, batch_size=1, num_workers=1)))
    text = str(info.value)
    assert text.startswith(f"cannot load {bad}") and "\n" not in text and "Traceback" not in text, text
