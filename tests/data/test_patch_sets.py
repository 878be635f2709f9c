"""The 2D GAN benchmark sets (medgen_cli.data.patch_sets) and their maker (run as a subprocess:
tests never import the benchmarks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medgen_cli.data.patch_sets import SETS, SPLITS, build_set
from medgen_cli.data.photos import source

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built() -> dict[str, dict]:
    return {name: build_set(name) for name in SETS}


def test_at_least_three_sets_of_300_grayscale_64px_patches_per_split(built: dict) -> None:
    assert len(SETS) >= 3
    for name, splits in built.items():
        for split in SPLITS:
            patches = splits[split]
            assert len(patches) == 300, (name, split)
            stack = np.stack([p.image for p in patches])
            assert stack.shape == (300, 64, 64) and stack.dtype == np.uint8, (name, split)
            # real images, not flat fields: each split spans much of the 8-bit range
            assert int(stack.max()) - int(stack.min()) > 100, (name, split)
            assert stack.std(axis=(1, 2)).mean() > 2.0, (name, split)


def _overlap(a: tuple, b: tuple) -> bool:
    (ya, xa, ha, wa), (yb, xb, hb, wb) = a, b
    return ya < yb + hb and yb < ya + ha and xa < xb + wb and xb < xa + wa


def test_train_and_ref_share_no_source_pixel(built: dict) -> None:
    for name, splits in built.items():
        ref_boxes: dict[tuple, list] = {}
        for p in splits["ref"]:
            ref_boxes.setdefault((p.source, p.item), []).append(p.box)
        for p in splits["train"]:
            for box in ref_boxes.get((p.source, p.item), []):
                assert not _overlap(p.box, box), (name, p.source, p.item, p.box, box)


def test_recorded_boxes_are_where_the_patches_came_from(built: dict) -> None:
    """The origins the disjointness test relies on: a full-resolution 64² crop equals the source
    at its box; every source of a set contributes to both splits."""
    for name, splits in built.items():
        spec = SETS[name]
        for split in SPLITS:
            assert {p.source for p in splits[split]} == set(spec.sources), (name, split)
        if spec.downscale != 1 or spec.crop is not None:
            continue
        for p in splits["train"][::37] + splits["ref"][::37]:
            y, x, h, w = p.box
            np.testing.assert_array_equal(p.image, source(p.source)[y:y + h, x:x + w])


def test_faces_split_by_person_image(built: dict) -> None:
    train = {p.item for p in built["faces"]["train"]}
    ref = {p.item for p in built["faces"]["ref"]}
    assert train == set(range(50)) and ref == set(range(50, 100))


def test_fixed_seed_gives_the_same_set_and_another_seed_another() -> None:
    a, b, c = build_set("textures", n=9, seed=0), build_set("textures", n=9, seed=0), build_set("textures", n=9, seed=1)
    assert all(np.array_equal(p.image, q.image) for p, q in zip(a["train"], b["train"]))
    assert not all(np.array_equal(p.image, q.image) for p, q in zip(a["train"], c["train"]))


@pytest.mark.parametrize("name", ["cell", "immunohistochemistry"])
def test_reserved_images_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="reserved"):
        build_set(name)
    with pytest.raises(ValueError, match="reserved"):
        source(name)


def _maker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.make_gan2d_data", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_maker_writes_each_set_and_refuses_reserved_names(tmp_path: Path) -> None:
    res = _maker(str(tmp_path), "--sets", "retina,faces", "--n", "6")
    assert res.returncode == 0, res.stderr
    for name in ("retina", "faces"):
        for split in SPLITS:
            files = sorted((tmp_path / name / split).glob("*.png"))
            assert len(files) == 6
        record = json.loads((tmp_path / name / "set.json").read_text())
        assert record["set"] == name and record["size"] == 64 and len(record["patches"]["ref"]) == 6
    assert not (tmp_path / "coins_hubble").exists()
    for bad in ("cell", "coins_hubble,immunohistochemistry"):
        res = _maker(str(tmp_path / "bad"), "--sets", bad)
        assert res.returncode != 0 and "reserved" in res.stderr
        assert not (tmp_path / "bad").exists()
