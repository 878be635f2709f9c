"""DIF-Gaussian family: training on random views and points, validation PSNR, and its own
reconstruction (the ``recon`` contract through :func:`medgen_cli.recon.reconstruct.reconstruct_file`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable

import numpy as np
import torch
from torch.utils.data import Dataset

from medgen_cli.contract.context import InferenceContext, TrainContext
from medgen_cli.contract.capabilities import Reconstructing
from medgen_cli.contract.family import Family
from medgen_cli.contract.samples import Samples
from medgen_cli.data.cbct.datasets import CBCTCaseDataset
from medgen_cli.data.cbct.geometry import CBCTGeometry
from medgen_cli.data.cbct.grids import normalized_grid
from medgen_cli.data.cbct.io import CBCTCase, view_indices
from medgen_cli.errors import MedgenError
from medgen_cli.families.dif_gaussian.config import QUERY_CHUNK, DIFGaussianConfig
from medgen_cli.families.dif_gaussian.consistency import decoder_weight
from medgen_cli.families.dif_gaussian.model import DIFGaussianNet, fdk_volumes, sample_volume
from medgen_cli.families.dif_gaussian.options import DIFReconOptions
from medgen_cli.metrics.recon import psnr
from medgen_cli.recon.base import Track
from medgen_cli.recon.reconstruct import geometry_note, reconstruct_file


class DIFGaussianFamily(Family[DIFGaussianConfig], Reconstructing[DIFReconOptions]):
    """Sparse-view CBCT reconstruction with DIF-Gaussian (see the config for the sizes)."""

    name = "dif-gaussian"
    key_metric = "val/psnr"
    key_mode = "max"

    def __init__(self, cfg: DIFGaussianConfig) -> None:
        super().__init__(cfg)
        self.geometry: CBCTGeometry | None = None
        self.run_dir: Path | None = None

    # ---- building ---------------------------------------------------------------------------
    def build(self, device: torch.device) -> None:
        self.device = device
        net = DIFGaussianNet(self.cfg.model).to(device)
        o = self.cfg.optimizer
        self.modules = {"model": net}
        if o.kind == "adam":
            opt: torch.optim.Optimizer = torch.optim.Adam(net.parameters(), lr=o.lr)
        else:
            opt = torch.optim.SGD(net.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        self.optimizers = {"model": opt}

    def _split(self, name: str) -> CBCTCaseDataset:
        root = Path(self.cfg.data.root)
        ds = CBCTCaseDataset(root / name, cache=self.cfg.data.cache)
        if self.geometry is None:
            self.geometry = ds.geometry
        elif ds.geometry != self.geometry:
            raise MedgenError(f"{root / name} was made with another geometry than this run was trained on")
        if max(self.cfg.data.num_views) > ds.geometry.num_angles:
            raise MedgenError(f"data.num_views {self.cfg.data.num_views} exceeds the {ds.geometry.num_angles} "
                              f"stored projections in {root / name}")
        return ds

    def train_dataset(self) -> Dataset:
        return self._split("train")

    def val_dataset(self) -> Dataset | None:
        return self._split("val") if (Path(self.cfg.data.root) / "val").is_dir() else None

    # ---- helpers ----------------------------------------------------------------------------
    def _scale(self) -> float:
        assert self.geometry is not None
        return self.cfg.model.projection_scale or self.geometry.extent

    def _fdk(self, projections: torch.Tensor, angles: torch.Tensor) -> torch.Tensor | None:
        """FDK of raw projections ``(B, V, U, W)`` when the model uses it (else ``None``)."""
        if not self.cfg.model.fdk_channels:
            return None
        assert self.geometry is not None
        return fdk_volumes(projections, angles, self.geometry)

    def _pick_views(self, total: int, num: int, device: torch.device) -> torch.Tensor:
        if self.cfg.data.view_sampling == "random":
            return torch.randperm(total, device="cpu")[:num].sort().values.to(device)
        start = int(torch.randint(total, (1,)))
        return torch.tensor(view_indices(total, num, start), device=device)

    # ---- training ---------------------------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor], ctx: TrainContext) -> dict[str, float]:
        assert self.geometry is not None
        vol, proj, ang = batch["volume"], batch["projections"], batch["angles"]
        b, total, n = vol.shape[0], proj.shape[1], vol.shape[-1]
        choices = self.cfg.data.num_views
        num = choices[int(torch.randint(len(choices), (1,)))]
        views = torch.stack([self._pick_views(total, num, vol.device) for _ in range(b)])      # (B, V)
        sel_proj = torch.gather(proj, 1, views[..., None, None].expand(-1, -1, *proj.shape[2:]))
        sel_ang = torch.gather(ang, 1, views)
        p = self.cfg.data.points_per_case
        flat = torch.randint(n**3, (b, p), device=vol.device)                                 # voxel ids
        target = torch.gather(vol.reshape(b, -1), 1, flat)
        points = normalized_grid(n, vol.device)[flat]                                          # (B, P, 3)
        fdk = self._fdk(sel_proj, sel_ang)
        with ctx.autocast():
            pred, refined = ctx.net("model")(sel_proj / self._scale(), sel_ang, points, self.geometry, fdk,
                                             return_volume=True)
        loss = torch.nn.functional.mse_loss(pred.float(), target)
        metrics = {"stats/point_mse": float(loss.detach())}
        w = self.cfg.model.fdk_aux_weight
        if refined is not None and w > 0:
            # Dense supervision of the FDK UNet on every voxel: far more signal per step than the
            # sampled points, and it teaches the local artefact removal that transfers across anatomy.
            aux = torch.nn.functional.mse_loss(refined.float(), vol.float())
            metrics["stats/fdk_mse"] = float(aux.detach())
            loss = loss + w * aux
        ctx.backward(loss, "model")
        grad_norm = ctx.step("model")
        return {"loss": float(loss.detach()), "grad_norm": grad_norm, "stats/views": float(num), **metrics}

    def validate(self, batches: Iterable[Any], ctx: TrainContext) -> dict[str, float]:
        net = ctx.eval_module("model")
        num = max(self.cfg.data.num_views)
        scores = []
        for batch in batches:
            for i in range(batch["volume"].shape[0]):
                vol = batch["volume"][i]
                res = min(self.cfg.data.val_resolution, vol.shape[-1])
                pred = self.reconstruct(net, batch["projections"][i], batch["angles"][i], num, res)
                target = torch.nn.functional.interpolate(vol[None, None].float(), size=(res,) * 3, mode="trilinear",
                                                         align_corners=False)[0, 0] if res != vol.shape[-1] else vol
                scores.append(psnr(pred.cpu().numpy(), target.cpu().numpy()))
        return {"psnr": float(np.mean(scores))} if scores else {}

    # ---- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, net: torch.nn.Module, projections: torch.Tensor, angles: torch.Tensor, num_views: int,
                    resolution: int | None = None, points: torch.Tensor | None = None, chunk: int = QUERY_CHUNK,
                    track: Track | None = None) -> torch.Tensor:
        """Reconstruct one case from ``num_views`` evenly spread of its stored projections.

        Args:
            net: the model (EMA copy when available).
            projections: ``(total_views, U, W)`` stored projections (raw line integrals).
            angles: ``(total_views,)`` radians.
            num_views: views to use; must be one the run was trained for.
            resolution: query the voxel centres of a ``resolution³`` grid → ``(z, y, x)`` volume.
            points: or query these normalised ``(P, 3)`` points → ``(P,)``.
            chunk: points per forward pass.
            track: optional progress wrapper.
        """
        self.check_views(num_views)
        assert self.geometry is not None
        dev = next(net.parameters()).device
        idx = view_indices(projections.shape[0], num_views)  # the same views the baselines use
        proj = projections[idx].to(dev).float()[None] / self._scale()
        ang = angles[idx].to(dev).float()[None]
        enc = net.encode(proj, ang, self.geometry, self._fdk(proj * self._scale(), ang))
        pts = normalized_grid(resolution, dev) if points is None else points.to(dev).float()
        out = self._decode(net, enc, pts, chunk, track)
        if self.cfg.model.consistency_blend and enc.volume_features is not None:
            out = self._blend(net, enc, pts, out, projections[idx], angles[idx], chunk,
                              resolution if points is None else None)
        return out.reshape((resolution,) * 3) if points is None else out

    def _decode(self, net: torch.nn.Module, enc: Any, pts: torch.Tensor, chunk: int,
                track: Track | None = None) -> torch.Tensor:
        """The decoder's values at ``(P, 3)`` points, ``chunk`` points per forward pass, in [0, 1]."""
        starts: Iterable[int] = range(0, pts.shape[0], chunk)
        if track is not None:
            starts = track(starts, len(range(0, pts.shape[0], chunk)), "querying points")
        return torch.cat([net.query(enc, pts[s:s + chunk][None], self.geometry)[0] for s in starts]).clamp(0, 1)

    def _blend(self, net: torch.nn.Module, enc: Any, pts: torch.Tensor, decoded: torch.Tensor,
               projections: torch.Tensor, angles: torch.Tensor, chunk: int, grid_size: int | None) -> torch.Tensor:
        """``w·decoded + (1 - w)·refined FDK`` at ``pts``, ``w`` from the measured projections
        (:func:`~medgen_cli.families.dif_gaussian.consistency.decoder_weight`). ``grid_size``: ``pts``
        are the voxel centres of that grid; else (arbitrary points) both estimates are also
        evaluated on the geometry's grid for the weight."""
        assert self.geometry is not None
        geo = self.geometry
        refined = enc.refined_fdk()[:, None]                                  # (1, 1, z, y, x)

        def local(p: torch.Tensor) -> torch.Tensor:  # refined FDK, carved like the decoder's output
            out = []
            for s in range(0, p.shape[0], chunk):
                q = p[s:s + chunk][None]
                value = sample_volume(refined, q)[0, :, 0].clamp(0, 1)
                if self.cfg.model.carve_threshold > 0:
                    value = value * net.hull(enc, geo.project_points_normalized(q, enc.angles))[0]
                out.append(value)
            return torch.cat(out)

        loc = local(pts)
        if grid_size is not None:
            dec_grid, loc_grid = decoded.reshape((grid_size,) * 3), loc.reshape((grid_size,) * 3)
        else:
            n = geo.volume_size
            grid = normalized_grid(n, pts.device)
            dec_grid, loc_grid = self._decode(net, enc, grid, chunk).reshape(n, n, n), local(grid).reshape(n, n, n)
        w = decoder_weight(dec_grid, loc_grid, projections.float(), angles.float(), geo)
        return w * decoded + (1 - w) * loc

    # ---- the recon contract (medgen recon, medgen_cli.api) -----------------------------------------
    recon_options = DIFReconOptions

    def recon(self, opts: DIFReconOptions, ctx: InferenceContext) -> Samples:
        """``opts.input`` (a case .h5 or a CT .nii.gz) reconstructed from ``opts.views`` views."""
        rec = self.reconstructor(ctx, opts.views, opts.chunk, ctx.track)
        assert self.geometry is not None  # reconstructor() refused a run without one
        return reconstruct_file(Path(opts.input), rec, self.geometry, ctx.track)

    def recon_notes(self, opts: DIFReconOptions) -> list[str]:
        """The geometry and grid the reconstruction works on (its cost grows with the grid³)."""
        if self.geometry is None:
            return []
        views = opts.views or self.cfg.data.num_views[-1]
        return [geometry_note(self.geometry, "the run's geometry", "model", views)]

    def reconstructor(self, ctx: InferenceContext, views: int | None = None, chunk: int = QUERY_CHUNK,
                      track: Track | None = None) -> ModelReconstructor:
        """This run as a :class:`~medgen_cli.recon.base.Reconstructor` from ``views`` views (default:
        the largest it was trained for), for ``recon`` and ``medgen eval recon``."""
        if self.geometry is None:
            raise MedgenError("this run has no CBCT geometry in its checkpoint", "train it with medgen train dif-gaussian")
        views = views or self.cfg.data.num_views[-1]
        self.check_views(views)
        return ModelReconstructor(self, ctx.eval_module("model"), views, chunk, track)

    def check_views(self, num_views: int) -> None:
        """One-line error for a view count this run was not trained for."""
        if num_views not in self.cfg.data.num_views:
            raise MedgenError(f"this run was trained for {self.cfg.data.num_views} views, not {num_views}",
                              f"use --views {self.cfg.data.num_views[-1]} or train with data.num_views=[{num_views}]")

    def reconstruct_case(self, net: torch.nn.Module, case: CBCTCase, num_views: int, **kw: Any) -> torch.Tensor:
        """Reconstruct a case read from H5 (its geometry must be the run's)."""
        if self.geometry is not None and case.geometry != self.geometry:
            raise MedgenError(f"case {case.name} uses another geometry than this run was trained on")
        return self.reconstruct(net, torch.from_numpy(case.projections), torch.from_numpy(case.angles), num_views, **kw)

    # ---- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"geometry": self.geometry.model_dump() if self.geometry is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        geo = state.get("geometry")
        if geo is not None:
            self.geometry = CBCTGeometry(**geo)


@dataclass
class ModelReconstructor:
    """A dif-gaussian run as a :class:`~medgen_cli.recon.base.Reconstructor` (the EMA weights when kept)."""

    family: DIFGaussianFamily
    net: torch.nn.Module
    views: int
    chunk: int = QUERY_CHUNK
    track: Track | None = None
    name: ClassVar[str] = "model"

    def values(self, case: CBCTCase, points: np.ndarray | None = None) -> np.ndarray:
        """The ``(z, y, x)`` volume on the case grid, or its values at normalised ``(P, 3)`` points."""
        pts = None if points is None else torch.as_tensor(points, dtype=torch.float32)
        return self.family.reconstruct_case(self.net, case, self.views, resolution=case.geometry.volume_size,
                                            points=pts, chunk=self.chunk, track=self.track).cpu().numpy()
