"""A small Python API for trained runs (the counterpart of ``medgen sample`` / ``interpolate``).

Example::

    from medgen_cli.api import load_run
    run = load_run("runs/diffusion/run1")             # best (EMA) weights, on the CPU
    vols = run.sample(4, seed=0, scheduler="ddim", steps=50)   # numpy [4, *size]
    frames = run.interpolate(0, 1, steps=8, method="slerp")      # numpy [8, *size]
    run.save_nifti(vols[0], "sample.nii.gz")          # with the training data's affine

A family offers any of ``sample_arrays(ctx, n, seed, **options)``,
``interpolate_arrays(ctx, seed_a, seed_b, steps, **options)`` and ``reconstruct_array(ctx, path)``;
this module dispatches on what the run's family offers, so other families plug in by adding them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medgen_cli.errors import MedgenError


class Run:
    """A trained run loaded for inference (wraps :class:`medgen_cli.engine.run_loading.LoadedRun`)."""

    def __init__(self, loaded: Any) -> None:
        self._loaded = loaded
        self.family = loaded.family
        self.ctx = loaded.ctx

    @property
    def family_name(self) -> str:
        return self.family.name

    @property
    def run_dir(self) -> Path:
        return self._loaded.run_dir

    @property
    def step(self) -> int:
        """The optimizer step of the loaded checkpoint."""
        return self._loaded.step

    @property
    def affine(self) -> np.ndarray:
        """Voxel-to-world matrix of the training data at the model's size (identity if unknown)."""
        aff = getattr(self.family, "affine", None)
        return np.asarray(aff if aff is not None else np.eye(4), dtype=np.float64)

    def _need(self, method: str) -> Any:
        fn = getattr(self.family, method, None)
        if fn is None:
            raise MedgenError(f"a '{self.family_name}' run does not support this ({method})",
                              "sampling needs a generative run, reconstruct() an autoencoder run")
        return fn

    def sample(self, n: int = 1, seed: int = 0, scheduler: str | None = None, steps: int | None = None,
               guidance_scale: float | None = None, class_label: int | None = None, batch_size: int = 4) -> np.ndarray:
        """Generate ``n`` volumes/images as a float32 array ``[n, *size]``; the same seed gives
        the same samples (DDIM, or DDPM on the same device).

        Args:
            n: number of samples.
            seed: sample ``i`` starts from the noise of seed ``seed + i``.
            scheduler: ``ddpm`` or ``ddim`` (default: the run's ``sample.scheduler``).
            steps: sampling steps (default: the run's ``sample.steps``).
            guidance_scale: classifier-free guidance for class-conditional runs.
            class_label: class to generate (default: cycle through the classes).
            batch_size: samples generated at once.
        """
        import torch

        fn = self._need("sample_arrays")
        with torch.no_grad():
            return fn(self.ctx, n, seed, scheduler=scheduler, steps=steps, guidance_scale=guidance_scale,
                      class_label=class_label, batch_size=batch_size)

    def interpolate(self, seed_a: int, seed_b: int, steps: int = 8, method: str = "slerp",
                    scheduler: str | None = "ddim", sample_steps: int | None = None) -> np.ndarray:
        """Frames ``[steps, *size]`` between the samples of two seeds (slerp or lerp of the noise)."""
        import torch

        if steps < 2:
            raise MedgenError("interpolate needs steps >= 2")
        fn = self._need("interpolate_arrays")
        with torch.no_grad():
            return fn(self.ctx, seed_a, seed_b, steps, method=method, scheduler=scheduler, sample_steps=sample_steps)

    def reconstruct(self, path: str | Path) -> np.ndarray:
        """Autoencoder runs: the reconstruction of a volume/image file (at the model's size)."""
        import torch

        fn = self._need("reconstruct_array")
        with torch.no_grad():
            return fn(self.ctx, path)

    def save_nifti(self, array: Any, path: str | Path, overwrite: bool = False) -> Path:
        """Write one volume as NIfTI with the run's data affine (refuses to overwrite by default)."""
        from medgen_cli.io import save_nifti

        return save_nifti(np.asarray(array, dtype=np.float32), path, affine=self.affine, overwrite=overwrite)


def load_run(path: str | Path, checkpoint: str = "best", device: str = "cpu") -> Run:
    """Load a trained run (``runs/<family>/<name>``) for inference.

    Args:
        path: the run directory.
        checkpoint: ``best`` (falls back to ``latest``), ``latest`` or a ``.pt`` path.
        device: ``cpu``, ``cuda[:N]`` or ``auto``.

    Raises:
        MedgenError: not a run, no checkpoint, or weights that do not fit.
    """
    from medgen_cli.engine.run_loading import load_run as _load

    return Run(_load(path, checkpoint=checkpoint, device=device))
