"""Command groups shared by several command modules (``data``, ``eval``, ``viz``).

A module adds its commands with ``@data_app.command(...)``. A group is attached to the root
application only once it has commands, so ``medgen --help`` never lists an empty group.
"""

from __future__ import annotations

import typer

data_app = typer.Typer(help="Convert and inspect data (H5 point clouds, NIfTI volumes, CBCT projections).", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate samples and reconstructions (FID/KID, shape metrics, PSNR/SSIM).", no_args_is_help=True)
viz_app = typer.Typer(help="Look at volumes and images (slice grids, MIPs).", no_args_is_help=True)

GROUPS: dict[str, typer.Typer] = {"data": data_app, "eval": eval_app, "viz": viz_app}


def attach_groups(root: typer.Typer) -> None:
    """Add every non-empty group to ``root`` (idempotent)."""
    present = {g.name for g in root.registered_groups}
    for name, group in GROUPS.items():
        if name not in present and (group.registered_commands or group.registered_groups):
            root.add_typer(group, name=name)
