"""Training data of the image/volume families (``autoencoder``, ``diffusion``): the train/val
files of a data config (NIfTI volumes in 3D, images in 2D), manifest labels, the datasets, batch
augmentation that draws from the checkpointed torch RNG, and the data's affine at the model's size."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from medgen_cli.errors import MedgenError

if TYPE_CHECKING:
    from medgen_cli.data.image_config import ImageDataConfig

class _ImageItems(torch.utils.data.Dataset):
    """2D images as ``{"image": Tensor[1, N, N], "path": str[, "label"]}`` (the 3D item shape)."""

    def __init__(self, root: Path, size: int, flip: bool, labels: dict[str, int] | None) -> None:
        from medgen_cli.data.images import ImageFolderDataset

        self.images = ImageFolderDataset(root, resolution=size, channels=1, flip=flip)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.images.files[index]
        item: dict[str, Any] = {"image": self.images[index], "path": str(path)}
        if self.labels is not None:
            key = next((k for k in (path.name, path.stem, f"{path.parent.name}/{path.name}") if k in self.labels), None)
            if key is None:
                raise MedgenError(f"no label for {path} in manifest.json")
            item["label"] = torch.tensor(int(self.labels[key]), dtype=torch.long)
        return item


def split_files(cfg: ImageDataConfig) -> tuple[list[Path], list[Path]]:
    """Training and validation files for a data config (3D: NIfTI under train/ and val/)."""
    from medgen_cli.data.volumes import list_volume_split

    root = Path(cfg.root)
    if cfg.spatial_dims == 3:
        return list_volume_split(root)
    from medgen_cli.data.images import list_images

    if not root.is_dir():
        raise MedgenError(f"image folder not found: {root}", "set data.root to a folder of images")
    train_dir = root / "train" if (root / "train").is_dir() else root
    val = list_images(root / "val") if (root / "val").is_dir() else []
    return list_images(train_dir), val


def check_files(cfg: ImageDataConfig) -> None:
    """Check every input file of the data config before a run starts: NIfTI volumes (header,
    completeness, finite voxels) in 3D, images (readable, finite) in 2D."""
    from medgen_cli.data.volumes import check_volume_tree

    check_volume_tree(cfg.root, 3 if cfg.spatial_dims == 3 else None)
    if cfg.spatial_dims == 2:
        from medgen_cli.data.images import check_image_files

        train, val = split_files(cfg)
        check_image_files(train + val)


def labels_for(cfg: ImageDataConfig) -> dict[str, int] | None:
    """``{file key: label}`` from ``ROOT/manifest.json`` when ``data.use_labels``."""
    if not cfg.use_labels:
        return None
    from medgen_cli.data.volumes import manifest_labels

    labels = manifest_labels(cfg.root)
    if not labels:
        raise MedgenError(f"{cfg.root}/manifest.json has no labels", "set data.use_labels=false or add labels")
    return labels


def make_dataset(cfg: ImageDataConfig, split: str) -> Any:
    """The train or val dataset of ``cfg`` (``None`` for an empty val split), without random
    augmentation: :func:`augment_batch` does that in the training step from torch's RNG, which
    the trainer checkpoints, so a resumed run sees exactly the flips an uninterrupted one would."""
    train, val = split_files(cfg)
    files = train if split == "train" else val
    if not files:
        return None
    labels = labels_for(cfg)
    if cfg.spatial_dims == 2:
        root = Path(cfg.root)
        folder = root / split if (root / split).is_dir() else root
        return _ImageItems(folder, cfg.size[0], False, labels)
    from medgen_cli.data.volumes import make_volume_dataset

    return make_volume_dataset(files, tuple(cfg.size), intensity=cfg.intensity, cache_rate=cfg.cache_rate,
                               labels=labels, cache_max_gb=cfg.cache_max_gb)


def augment_batch(x: torch.Tensor, flip: bool, rotate: bool) -> torch.Tensor:
    """Random flips along each spatial axis (p = 0.5 each) and, with ``rotate``, a random
    multiple of 90 degrees in the plane of the first two spatial axes, per sample.

    Random numbers come from torch's global CPU generator (restored on resume), so results do
    not depend on the device.
    """
    if not (flip or rotate):
        return x
    out = []
    for sample in x:
        if flip:
            axes = [1 + a for a in range(sample.ndim - 1) if bool(torch.rand(()) < 0.5)]
            sample = torch.flip(sample, axes) if axes else sample
        if rotate and sample.shape[1] == sample.shape[2]:
            k = int(torch.randint(0, 4, ()))
            sample = torch.rot90(sample, k, dims=(1, 2)) if k else sample
        out.append(sample)
    return torch.stack(out)


def flip_codes(n: int, spatial_dims: int) -> torch.Tensor:
    """``n`` random flip codes in ``[0, 2**spatial_dims)`` (bit ``a`` set: flip spatial axis ``a``)
    from torch's global CPU generator (restored on resume)."""
    return torch.randint(0, 2**spatial_dims, (n,))


def flip_by_code(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Each sample of ``x`` ``[B, C, *spatial]`` flipped along the spatial axes its code's bits name
    (:func:`flip_codes`); code 0 leaves a sample as it is."""
    out = []
    for sample, code in zip(x, codes.tolist()):
        axes = [1 + a for a in range(sample.ndim - 1) if code >> a & 1]
        out.append(torch.flip(sample, axes) if axes else sample)
    return torch.stack(out)


def random_crop(x: torch.Tensor, size: Sequence[int] | None) -> torch.Tensor:
    """A random crop of ``size`` (spatial) from each sample of ``x`` ``[B, C, *spatial]``; corners
    come from torch's global CPU generator (restored on resume). ``None`` returns ``x``."""
    if size is None or list(size) == list(x.shape[2:]):
        return x
    out = []
    for sample in x:
        corner = [int(torch.randint(0, s - p + 1, ())) for s, p in zip(sample.shape[1:], size)]
        idx = tuple(slice(c, c + p) for c, p in zip(corner, size))
        out.append(sample[(slice(None), *idx)])
    return torch.stack(out)


def num_classes(cfg: ImageDataConfig) -> int:
    """Number of classes in the manifest (max label + 1)."""
    labels = labels_for(cfg)
    return 0 if not labels else max(labels.values()) + 1


def resized_affine(affine: np.ndarray, in_shape: Sequence[int], out_shape: Sequence[int]) -> np.ndarray:
    """Voxel-to-world matrix of a volume of ``in_shape`` resampled to ``out_shape`` (same extent).

    Voxel centres follow the half-pixel convention of trilinear resizing, so an unchanged shape
    gives back ``affine`` exactly.
    """
    aff = np.asarray(affine, dtype=np.float64)
    scale = np.eye(4)
    for i, (a, b) in enumerate(zip(in_shape, out_shape)):
        s = float(a) / float(b)
        scale[i, i] = s
        scale[i, 3] = (s - 1.0) / 2.0
    return aff @ scale


def data_affine(cfg: ImageDataConfig) -> list[list[float]]:
    """The affine of the first training volume, adapted to ``data.size`` (identity in 2D)."""
    if cfg.spatial_dims == 2:
        return np.eye(4).tolist()
    import nibabel as nib

    first = split_files(cfg)[0][0]
    img = nib.load(str(first))
    return resized_affine(img.affine, img.shape[:3], cfg.size).tolist()
