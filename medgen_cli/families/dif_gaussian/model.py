"""DIF-Gaussian network: shared 2D UNet over views, a grid of 3D Gaussians, a point decoder.

Shapes: ``B`` cases, ``V`` views, ``U × W`` detector (diffct's ``(views, U, V)`` projection order,
``W`` standing for the detector's V axis), ``P`` query points, ``G = grid_size³`` Gaussians.
Points are normalised volume coordinates in ``[-1, 1]³`` ordered ``(x, y, z)`` (see
:mod:`medgen_cli.data.cbct.geometry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from medgen_cli.data.cbct.geometry import CBCTGeometry
    from medgen_cli.families.dif_gaussian.config import DIFGaussianModel


def _norm(c: int) -> nn.GroupNorm:
    # GroupNorm behaves the same in train and eval, which matters with a handful of cases per batch.
    return nn.GroupNorm(8 if c % 8 == 0 else 1, c)


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), _norm(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), _norm(cout), nn.ReLU(inplace=True))


class ViewUNet(nn.Module):
    """2D UNet returning full-resolution features and the bottleneck map.

    Args:
        channels: channels per level (level ``i`` at 1/2^i resolution; the last is the bottleneck).
        out_channels: channels of the full-resolution output map.
    """

    def __init__(self, channels: list[int], out_channels: int) -> None:
        super().__init__()
        self.down = nn.ModuleList([_DoubleConv(1, channels[0])] +
                                  [_DoubleConv(a, b) for a, b in zip(channels[:-1], channels[1:])])
        self.up = nn.ModuleList([_DoubleConv(b + a, a) for a, b in zip(channels[:-1], channels[1:])])
        self.head = nn.Conv2d(channels[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2, ceil_mode=True)
            x = block(x)
            skips.append(x)
        bottleneck = x
        for i in range(len(self.up) - 1, -1, -1):
            skip = skips[i]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.up[i](torch.cat([x, skip], dim=1))
        return self.head(x), bottleneck


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Unit rotation matrices ``(..., 3, 3)`` from quaternions ``(..., 4)`` as (w, x, y, z)."""
    w, x, y, z = F.normalize(q, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(*q.shape[:-1], 3, 3)


def sample_views(features: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear features at projected points, max-fused over views.

    Args:
        features: ``(B, V, C, U, W)`` view feature maps.
        grid: ``(B, V, P, 2)`` normalised detector coordinates (``(w, u)`` order).

    Returns:
        ``(B, P, C)``.
    """
    b, v, c, hu, hw = features.shape
    out = F.grid_sample(features.reshape(b * v, c, hu, hw), grid.reshape(b * v, -1, 1, 2).to(features.dtype),
                        mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(b, v, c, -1).amax(dim=1).transpose(1, 2)


def fdk_volumes(projections: torch.Tensor, angles: torch.Tensor, geometry: CBCTGeometry) -> torch.Tensor:
    """diffct FDK reconstructions ``(B, 1, n, n, n)`` (z, y, x) of raw projections ``(B, V, U, W)``."""
    from diffct import fdk

    n = geometry.volume_size
    out = []
    with torch.no_grad():
        for proj, ang in zip(projections.float(), angles.float()):
            traj = geometry.trajectory(ang, device=proj.device)
            out.append(fdk(proj, traj, (n, n, n), ang, detector_spacing=geometry.detector_spacing,
                           voxel_spacing=geometry.voxel_spacing, backend="torch"))
    return torch.stack(out)[:, None].float()


def sample_volume(volume: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Trilinear ``(B, C, z, y, x)`` values at normalised ``(B, P, 3)`` (x, y, z) points → ``(B, P, C)``."""
    grid = points[:, :, None, None, :].to(volume.dtype)  # grid_sample's (W, H, D) = (x, y, z) order
    out = F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, :, :, 0, 0].transpose(1, 2)


@dataclass
class Encoded:
    """What one set of views yields: per-view feature maps and the Gaussians."""

    view_features: torch.Tensor  # (B, V, C, U, W)
    angles: torch.Tensor         # (B, V)
    means: torch.Tensor          # (B, G, 3)
    rotations: torch.Tensor      # (B, G, 3, 3)
    scales: torch.Tensor         # (B, G, 3)
    features: torch.Tensor       # (B, G, F)
    projections: torch.Tensor | None = None     # (B, V, U, W) normalised, for the visual hull
    volume_features: torch.Tensor | None = None  # (B, 1 + C, z, y, x): FDK and its UNet features

    def refined_fdk(self) -> torch.Tensor | None:
        """FDK + the UNet's first channel ``(B, z, y, x)``: the dense estimate the auxiliary loss trains."""
        vf = self.volume_features
        return None if vf is None else vf[:, 0] + vf[:, 1]


class DIFGaussianNet(nn.Module):
    """The full model; :meth:`encode` once per set of views, :meth:`query` per chunk of points."""

    def __init__(self, cfg: DIFGaussianModel) -> None:
        super().__init__()
        self.cfg = cfg
        self.unet = ViewUNet(list(cfg.encoder_channels), cfg.view_feature_dim)
        g = cfg.grid_size
        centres = (torch.arange(g, dtype=torch.float32) + 0.5) / g * 2 - 1
        gz, gy, gx = torch.meshgrid(centres, centres, centres, indexing="ij")
        self.register_buffer("grid_centres", torch.stack((gx, gy, gz), -1).reshape(-1, 3), persistent=False)
        self.cell = 2.0 / g
        h = cfg.head_hidden
        self.trunk = nn.Sequential(nn.Linear(cfg.encoder_channels[-1], h), nn.ReLU(inplace=True),
                                   nn.Linear(h, h), nn.ReLU(inplace=True))
        self.feature_head = nn.Linear(h, cfg.gaussian_feature_dim)
        self.param_head = nn.Linear(h, 10)
        with torch.no_grad():  # start near: no offset, identity rotation, mid-range scale
            self.param_head.weight.mul_(0.1)
            self.param_head.bias.zero_()
            self.param_head.bias[3] = 1.0
        cin = cfg.view_feature_dim + cfg.gaussian_feature_dim
        self.fdk_net: nn.Module | None = None
        if cfg.fdk_channels:
            from monai.networks.nets import UNet

            # FBPConvNet's lesson: a CNN over the analytic reconstruction removes sparse-view streaks
            # and, being local and physics-anchored, transfers to anatomy it was not trained on.
            self.fdk_net = UNet(3, 1, cfg.fdk_features, channels=list(cfg.fdk_channels),
                                strides=[2] * (len(cfg.fdk_channels) - 1), num_res_units=0, norm="instance")
            cin += 1 + cfg.fdk_features
        widths = list(cfg.decoder_channels)
        self.decoder = nn.ModuleList(
            [nn.Conv1d(cin if i == 0 else widths[i - 1] + cin, w, 1) for i, w in enumerate(widths)])

    def encode(self, projections: torch.Tensor, angles: torch.Tensor, geometry: CBCTGeometry,
               fdk: torch.Tensor | None = None) -> Encoded:
        """Encode ``(B, V, U, W)`` normalised projections taken at ``angles`` ``(B, V)``.

        ``fdk``: the FDK reconstruction ``(B, 1, z, y, x)`` of the same views (needed when
        ``fdk_channels`` is set; see :func:`fdk_volumes`).
        """
        b, v, hu, hw = projections.shape
        full, bott = self.unet(projections.reshape(b * v, 1, hu, hw))
        full = full.reshape(b, v, *full.shape[1:])
        bott = bott.reshape(b, v, *bott.shape[1:])
        centres = self.grid_centres.unsqueeze(0).expand(b, -1, -1)
        grid = geometry.project_points_normalized(centres, angles)          # (B, V, G, 2)
        hidden = self.trunk(sample_views(bott, grid))
        params = self.param_head(hidden)
        lo, hi = self.cfg.scale_range
        offsets = (torch.sigmoid(params[..., :3]) - 0.5) * self.cell       # ± half a cell
        scales = self.cell * (lo + (hi - lo) * torch.sigmoid(params[..., 7:10]))
        volume_features = None
        if self.fdk_net is not None:
            if fdk is None:
                raise ValueError("this model needs the FDK reconstruction of its views (fdk=...)")
            volume_features = torch.cat([fdk, self.fdk_net(fdk)], 1)
        return Encoded(full, angles, centres + offsets, quaternion_to_matrix(params[..., 3:7]), scales,
                       self.feature_head(hidden), projections, volume_features)

    def hull(self, enc: Encoded, grid: torch.Tensor) -> torch.Tensor:
        """1 where every view's ray through the point crosses matter, else 0 (``(B, P)``)."""
        b, v, hu, hw = enc.projections.shape
        vals = F.grid_sample(enc.projections.reshape(b * v, 1, hu, hw), grid.reshape(b * v, -1, 1, 2).to(
            enc.projections.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
        return (vals.reshape(b, v, -1).amin(dim=1) > self.cfg.carve_threshold).to(grid.dtype)

    def gaussian_features(self, enc: Encoded, points: torch.Tensor) -> torch.Tensor:
        """Σ over the k nearest Gaussians of exp(-½ dᵀΣ⁻¹d)·fₖ with Σ = R S Sᵀ Rᵀ; ``(B, P, F)``.

        The density is left unnormalised (peak 1): the constant 1/((2π)^{3/2}|Σ|^{1/2}) only
        rescales each Gaussian's learned feature and explodes for small scales.
        """
        k = min(self.cfg.k_nearest, enc.means.shape[1])
        # Squared distances by one batched matmul (|m|² - 2 p·m; |p|² does not change the ranking):
        # a third faster on CPU than cdist, which also takes a square root.
        d2 = torch.baddbmm(enc.means.square().sum(-1)[:, None, :], points, enc.means.transpose(1, 2), alpha=-2)
        idx = d2.topk(k, dim=-1, largest=False).indices                      # (B, P, k)
        b, p = idx.shape[:2]
        flat = idx.reshape(b, p * k)

        def take(t: torch.Tensor) -> torch.Tensor:
            shape = t.shape[2:]
            g = torch.gather(t.reshape(b, t.shape[1], -1), 1, flat[..., None].expand(-1, -1, t[0, 0].numel()))
            return g.reshape(b, p, k, *shape)

        d = points[:, :, None, :] - take(enc.means)                       # (B, P, k, 3)
        # Rᵀd / s as a broadcast sum: batched 3x3 matmuls are slower on CPU than this.
        local = (take(enc.rotations) * d[..., :, None]).sum(-2) / take(enc.scales)
        weight = torch.exp(-0.5 * local.square().sum(-1))                 # (B, P, k)
        return (weight[..., None] * take(enc.features)).sum(2)

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """The point decoder: ``(B, P, C)`` inputs → ``(B, P)`` raw outputs. Layer ``i`` is a 1x1
        conv of ``cat([x, x0])`` = ``W_x·x + W_0·x0``; every ``W_0·x0`` (and the biases) comes from
        one matmul up front instead of re-concatenating ``x0`` before each layer (~1.5x faster)."""
        weights = [layer.weight[:, :, 0] for layer in self.decoder]
        c = x0.shape[-1]
        pre = F.linear(x0, torch.cat([w[:, -c:] for w in weights]), torch.cat([lay.bias for lay in self.decoder]))
        terms = pre.split([w.shape[0] for w in weights], -1)
        x = terms[0]
        for w, term in zip(weights[1:], terms[1:]):
            x = term + F.linear(F.relu(x), w[:, :-c])
        return x[..., 0]

    def query(self, enc: Encoded, points: torch.Tensor, geometry: CBCTGeometry) -> torch.Tensor:
        """Attenuation at ``points`` ``(B, P, 3)`` → ``(B, P)``."""
        grid = geometry.project_points_normalized(points, enc.angles)
        parts = [sample_views(enc.view_features, grid), self.gaussian_features(enc, points)]
        if enc.volume_features is not None:
            parts.append(sample_volume(enc.volume_features, points))
        x = self.decode(torch.cat(parts, -1))
        out = torch.sigmoid(x) if self.cfg.output == "sigmoid" else x
        if self.cfg.carve_threshold > 0 and enc.projections is not None:
            out = out * self.hull(enc, grid)  # outside the visual hull the truth is air: exactly 0
        return out

    def forward(self, projections: torch.Tensor, angles: torch.Tensor, points: torch.Tensor,
                geometry: CBCTGeometry, fdk: torch.Tensor | None = None,
                return_volume: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """Values at ``points``; with ``return_volume`` also the refined FDK volume ``(B, z, y, x)``
        (FDK + the UNet's first channel, a dense residual estimate trained by an auxiliary loss)."""
        enc = self.encode(projections, angles, geometry, fdk)
        out = self.query(enc, points, geometry)
        if not return_volume:
            return out
        return out, enc.refined_fdk()
