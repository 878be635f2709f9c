"""Reconstruction of one input file (``medgen recon``): the dif-gaussian ``recon`` contract and
the classical diffct baselines (FDK, SIRT) on the same inputs.

Inputs: a case file (``CASE.h5`` from ``make-cbct``: its stored projections, grid and affine) or a
CT volume (``.nii``/``.nii.gz`` in HU: resampled to the geometry's grid, its views simulated, the
result written back on the input's own voxel grid with its affine).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import numpy as np
from pydantic import Field, ValidationInfo, model_validator

from medgen_cli.errors import MedgenError
from medgen_cli.families.dif_gaussian.config import QUERY_CHUNK
from medgen_cli.families.inference import ReconOptions, Samples, run_family

if TYPE_CHECKING:
    from medgen_cli.data.cbct import CBCTCase
    from medgen_cli.data.cbct_baselines import Track
    from medgen_cli.data.geometry import CBCTGeometry

CLASSICAL = ("fdk", "sirt")


class DIFReconOptions(ReconOptions):
    """Reconstructing one case file or CT volume with a dif-gaussian run."""

    formats = ("nifti", "npy")
    command: ClassVar[str] = "medgen recon RUN --input CASE.h5 --views N"
    format: tuple[str, ...] = ("nifti",)
    views: int | None = Field(None, ge=1, description="Projections to use (default: the run's largest).")
    chunk: int = Field(QUERY_CHUNK, ge=1, description="Points per forward pass (lower it if memory runs out).")

    @model_validator(mode="after")
    def _fits_the_run(self, info: ValidationInfo) -> "DIFReconOptions":
        fam = run_family(info)
        if fam is not None and self.views is not None:
            fam.check_views(self.views)
        if not str(self.input).lower().endswith((".h5", ".hdf5", ".nii", ".nii.gz")):
            raise ValueError(f"unsupported input {self.input}; give a case .h5 from make-cbct or a .nii/.nii.gz volume")
        return self


def geometry_note(geometry: CBCTGeometry, source: str, method: str, views: int) -> str:
    """One line naming the geometry and grid a reconstruction uses (the cost grows with the grid³)."""
    return (f"{method}: {views} views on {source}: {geometry.volume_size}³ grid at {geometry.voxel_spacing:g} mm, "
            f"{geometry.detector_size}² detector at {geometry.detector_spacing:g} mm")


def _simulate_views(vol: np.ndarray, geometry: CBCTGeometry, angles: np.ndarray, track: Track | None) -> np.ndarray:
    """Projections of ``vol`` at ``angles``, one view at a time so the progress shows (same values)."""
    from medgen_cli.data import cbct

    views = range(len(angles)) if track is None else track(range(len(angles)), len(angles),
                                                            f"simulating {len(angles)} views")
    return np.concatenate([cbct.simulate(vol, geometry, angles[i:i + 1]) for i in views], axis=0)


def nifti_case(path: Path, geometry: CBCTGeometry, views: int,
               track: Track | None = None) -> tuple[CBCTCase, np.ndarray, np.ndarray, tuple[int, ...]]:
    """A NIfTI CT volume → (case with ``views`` simulated views, input affine, normalised query
    points of the input's voxels in NIfTI raster order, input shape)."""
    from medgen_cli.data import cbct
    from medgen_cli.io import load_nifti

    arr, affine = load_nifti(path)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise MedgenError(f"{path} is not a 3D volume (shape {tuple(arr.shape)})")
    vol, _ = cbct.resample_to_grid(arr, affine, geometry)
    geometry.check_field_of_view(vol)
    full = geometry.angles()
    idx = cbct.view_indices(len(full), views)
    # Only the views used are simulated; stored as a "case" holding exactly those views.
    case = cbct.CBCTCase(path.name, vol, _simulate_views(vol, geometry, full[idx], track), full[idx], geometry, affine)
    # Input voxel i ↦ grid index (n-1)/2 + (i - c_in) / factor ↦ normalised (2j + 1) / n - 1.
    n = geometry.volume_size
    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    factor = geometry.voxel_spacing / np.where(spacing > 0, spacing, 1.0)
    axes = [((n - 1) / 2 + (np.arange(s) - (s - 1) / 2) / factor[a]) * 2 / n + 1 / n - 1
            for a, s in enumerate(arr.shape)]
    gx, gy, gz = np.meshgrid(*axes, indexing="ij")                   # NIfTI (x, y, z) raster order
    points = np.stack((gx, gy, gz), -1).reshape(-1, 3).astype(np.float32)
    return case, np.asarray(affine), points, tuple(arr.shape)


def classical_values(case: CBCTCase, views: int, method: str, iterations: int,
                     points: np.ndarray | None = None, track: Track | None = None) -> np.ndarray:
    """FDK/SIRT volume ``(z, y, x)`` on the case grid, or its values at normalised ``points``."""
    import torch

    from medgen_cli.data.cbct_baselines import classical_recon

    vol = classical_recon(case, views, method, iterations, track=track)
    if points is None:
        return vol
    grid = torch.as_tensor(points, dtype=torch.float32).reshape(1, -1, 1, 1, 3)
    out = torch.nn.functional.grid_sample(torch.from_numpy(vol)[None, None], grid, mode="bilinear",
                                          padding_mode="zeros", align_corners=False)
    return np.clip(out.reshape(-1).numpy(), 0.0, 1.0)


def _is_nifti(path: Path) -> bool:
    return str(path).lower().endswith((".nii", ".nii.gz"))


def _volume(path: Path, views: int, geometry: CBCTGeometry, values: Callable[[CBCTCase, np.ndarray | None], np.ndarray],
            track: Track | None = None) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """(volume in NIfTI (x, y, z) order, affine, PSNR/SSIM vs the case volume or ``None``)."""
    from medgen_cli.data import cbct
    from medgen_cli.metrics.recon import recon_metrics

    if _is_nifti(path):
        case, affine, points, shape = nifti_case(path, geometry, views, track)
        return values(case, points).reshape(shape), affine, None
    case = cbct.read_case(path)
    vol = values(case, None)
    return vol.transpose(2, 1, 0), np.asarray(case.affine), recon_metrics(vol, case.volume)


def recon(family: Any, opts: DIFReconOptions, ctx: Any) -> Samples:
    """The family's ``recon``: ``opts.input`` reconstructed from ``opts.views`` evenly spread views."""
    import torch

    if family.geometry is None:
        raise MedgenError("this run has no CBCT geometry in its checkpoint", "train it with medgen train dif-gaussian")
    views = opts.views or family.cfg.data.num_views[-1]
    net = ctx.eval_module("model")

    def values(case: CBCTCase, points: np.ndarray | None) -> np.ndarray:
        pts = None if points is None else torch.as_tensor(points, dtype=torch.float32)
        return family.reconstruct_case(net, case, views, resolution=case.geometry.volume_size, points=pts,
                                       chunk=opts.chunk, track=ctx.track).cpu().numpy()

    vol, affine, metrics = _volume(Path(opts.input), views, family.geometry, values, ctx.track)
    name = Path(opts.input).name.split(".")[0]
    return Samples(arrays=vol[None, None], names=[f"recon_{name}"], seeds=[None], labels=[None], affine=affine,
                   preview="grid", extra=[{"input": str(opts.input), "views": views, **(metrics or {})}])


def recon_classical(path: Path, views: int, method: str, geometry: CBCTGeometry, iterations: int,
                    track: Track | None = None) -> Samples:
    """The FDK/SIRT baseline of :func:`recon` (no run), as :class:`Samples` of one volume."""
    vol, affine, metrics = _volume(Path(path), views, geometry,
                                   lambda case, points: classical_values(case, views, method, iterations, points, track),
                                   track)
    name = Path(path).name.split(".")[0]
    return Samples(arrays=vol[None, None], names=[f"recon_{name}"], seeds=[None], labels=[None], affine=affine,
                   extra=[{"input": str(path), "views": views, "method": method, **(metrics or {})}])


def _classical(input_path: Path, method: str, views: int, geometry: Path | None, iterations: int,
               say: Callable[[str], None], track: Track | None) -> Samples:
    """:func:`recon_classical` after one note naming the geometry and grid it uses."""
    from medgen_cli.data import cbct
    from medgen_cli.data.geometry import load_geometry

    if _is_nifti(input_path):
        geo = load_geometry(str(geometry) if geometry else None)
        source = (f"the geometry of {geometry}" if geometry else
                  "the default LUNA16 geometry (no --geometry; configs/cbct_geometry.yaml is a 64³ one)")
    elif geometry is not None:
        raise MedgenError("--geometry applies to a NIfTI input", "a case file carries the geometry it was made with")
    else:
        geo, source = cbct.read_case(input_path).geometry, "the case file's geometry"
    say(f"note: {geometry_note(geo, source, method, views)}")
    return recon_classical(input_path, views, method, geo, iterations, track)


def reconstruct(run: Path | None, input_path: Path, method: str = "model", views: int | None = None,
                checkpoint: str = "best", device: str = "auto", geometry: Path | None = None,
                iterations: int | None = None, chunk: int | None = None,
                say: Callable[[str], None] | None = None, track: Track | None = None) -> Samples:
    """The library side of ``medgen recon``: a run's ``recon`` (``method="model"``) or a classical
    baseline on one input. Options that do not apply to the method are refused, not ignored.

    ``say`` receives the lines (rich markup) a user should read before the work starts: the
    checkpoint used (and any skipped), and a note naming the geometry and grid of a CBCT
    reconstruction. ``track`` shows the
    progress of the classical methods (a run's reconstruction shows its own, on stderr).

    Raises:
        MedgenError: unknown method, a missing run, or an option the method does not take.
    """
    say = say or (lambda line: None)
    if method not in ("model", *CLASSICAL):
        raise MedgenError(f"unknown method '{method}'", "use model, fdk or sirt")
    if iterations is not None and method != "sirt":
        raise MedgenError("--iterations only applies to --method sirt")
    if method in CLASSICAL:
        if chunk is not None:
            raise MedgenError("--chunk only applies to --method model")
        return _classical(Path(input_path), method, views or 10, geometry, iterations or 50, say, track)
    if run is None:
        raise MedgenError("give a RUN directory (or --method fdk|sirt for a classical baseline)")
    if geometry is not None:
        raise MedgenError("--geometry is for --method fdk|sirt", "a run reconstructs with the geometry it was trained on")
    from medgen_cli.engine.inference import options_for, run_task
    from medgen_cli.engine.run_loading import load_run

    loaded = load_run(run, checkpoint=checkpoint, device=device)
    flags = {"input": Path(input_path), "views": views, "chunk": chunk}
    opts = options_for(loaded.family, "recon", {k: v for k, v in flags.items() if v is not None})
    for line in loaded.describe():
        say(line)
    if loaded.family.name == "dif-gaussian" and loaded.family.geometry is not None:
        views_used, source = opts.views or loaded.family.cfg.data.num_views[-1], "the run's geometry"
        say(f"note: {geometry_note(loaded.family.geometry, source, 'model', views_used)}")
    return run_task(loaded.family, loaded.ctx, "recon", opts)
