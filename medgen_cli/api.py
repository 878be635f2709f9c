"""A small Python API for trained runs (the counterpart of ``medgen sample`` / ``interpolate``).

Example::

    from medgen_cli.api import load_run
    run = load_run("runs/diffusion/run1")              # best (EMA) weights, on the CPU
    out = run.sample(4, seed=0, scheduler="ddim", steps=50)
    out.arrays.shape                                    # (4, 1, *size); out.seeds == [0, 1, 2, 3]
    frames = run.interpolate(0, 1, frames=8)             # Samples with 8 frames
    run.write(out, "samples/run1")                      # the files `medgen sample` writes
    run.save_nifti(out.volumes[0], "sample.nii.gz")     # one volume with the run's affine

Every method takes the same options as the command (``num``, ``seed``, ``batch_size``,
``scheduler``, ``guidance_scale``, ``truncation``, ...), validated by the run's family: an option
the family does not take is an error, never ignored. Results are
:class:`~medgen_cli.contract.samples.Samples` (arrays ``[N, C, *spatial]`` plus seeds, labels
and the affine). ``steps`` always means sampler steps; ``interpolate``'s number of frames is
``frames`` (its old name ``steps`` still works, with a ``FutureWarning``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from medgen_cli.contract.options import rename_options
from medgen_cli.contract.samples import Samples
from medgen_cli.engine.inference import Task, options_for, options_model, run_task

if TYPE_CHECKING:
    from medgen_cli.engine.run_loading import LoadedRun


class Run:
    """A trained run loaded for inference (wraps :class:`medgen_cli.engine.run_loading.LoadedRun`)."""

    def __init__(self, loaded: LoadedRun) -> None:
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

    def _do(self, task: Task, flags: dict[str, Any]) -> Samples:
        return run_task(self.family, self.ctx, task, options_for(self.family, task, flags))

    def sample(self, num: int = 1, seed: int = 0, **options: Any) -> Samples:
        """``num`` samples; sample ``i`` comes from seed ``seed + i`` (same seed, same sample).

        Args:
            num: number of samples.
            seed: first seed.
            **options: the family's other sampling options (e.g. ``scheduler``, ``steps``,
                ``guidance_scale``, ``class_label``, ``truncation``, ``batch_size``).

        Raises:
            MedgenError: the run cannot sample, or an option its family does not take.
        """
        return self._do("sample", {"num": num, "seed": seed, **options})

    def interpolate(self, seed_a: int = 0, seed_b: int = 1, frames: int | None = None, **options: Any) -> Samples:
        """``frames`` frames (default 8) from the sample of ``seed_a`` to that of ``seed_b``
        (``method``, ``scheduler``, ``sample_steps``, ``truncation`` where the family has them).

        ``steps=N``, the old name of ``frames``, still works for now, with a ``FutureWarning``.
        """
        given = {"frames": frames} if frames is not None else {}
        options, renamed = rename_options("interpolate", {**given, **options})
        for old, new in renamed:
            warnings.warn(f"Run.interpolate({old}=...) is renamed {new}=...; the old name still works for now",
                          FutureWarning, stacklevel=2)
        return self._do("interpolate", {"seed_a": seed_a, "seed_b": seed_b, **options})

    def reconstruct(self, path: str | Path, **options: Any) -> Samples:
        """The reconstruction of one input file (autoencoder runs: a volume or image)."""
        return self._do("recon", {"input": Path(path), **options})

    @property
    def affine(self) -> np.ndarray:
        """Voxel-to-world matrix of the run's volumes (identity for images or when unknown)."""
        aff = self.family.affine
        return np.asarray(aff if aff is not None else np.eye(4), dtype=np.float64)

    def write(self, samples: Samples, out: str | Path, formats: Sequence[str] | str | None = None,
              overwrite: bool = False, threshold: float = 0.5) -> list[Path]:
        """Write ``samples`` as ``medgen sample`` does (one format per folder, ``manifest.json``,
        previews in ``out/preview``). ``formats`` defaults to the family's default format."""
        from medgen_cli.engine.outputs import write_samples

        model = options_model(self.family, "sample") or options_model(self.family, "interpolate") \
            or options_model(self.family, "recon")
        if formats is None:
            fmts: Sequence[str] = model.model_fields["format"].default if model is not None else ("npy",)
        else:
            fmts = formats.split(",") if isinstance(formats, str) else formats
        return write_samples(samples, out, list(fmts), overwrite=overwrite, threshold=threshold).files

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
