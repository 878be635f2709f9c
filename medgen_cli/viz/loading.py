"""Resolve ``medgen viz slices`` inputs: volume files, folders of volumes, or a folder of images."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from medgen_cli.errors import MedgenError
from medgen_cli.io import load_any_volume

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".npy")


def _is_volume(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and any(p.name.lower().endswith(s) for s in VOLUME_SUFFIXES)


def collect_inputs(paths: Sequence[Path], max_items: int) -> tuple[str, list[Any], int]:
    """``("images", [image files], found)`` for one folder of images, else ``("volumes", [(path,
    array, affine)], found)``: at most ``max_items`` of the ``found`` inputs.

    Raises:
        MedgenError: a missing path, an unsupported file, or nothing to show.
    """
    from medgen_cli.data.images import IMAGE_SUFFIXES, list_images

    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            vols = sorted(q for q in p.iterdir() if _is_volume(q))
            if vols:
                files.extend(vols)
                continue
            if len(paths) != 1:
                raise MedgenError(f"{p} holds no volumes", "show a folder of images on its own")
            images = list_images(p)
            return "images", images[:max_items], len(images)
        if not p.exists():
            raise MedgenError(f"not found: {p}")
        if p.suffix.lower() in IMAGE_SUFFIXES:
            raise MedgenError(f"{p} is an image", "pass the folder that holds the images")
        if not _is_volume(p):
            raise MedgenError(f"{p} is not a .nii/.nii.gz/.npy volume")
        files.append(p)
    if not files:
        raise MedgenError("nothing to show")
    return "volumes", [(f, *load_any_volume(f)) for f in files[:max_items]], len(files)
