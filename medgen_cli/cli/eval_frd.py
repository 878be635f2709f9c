"""``medgen eval frd``: Fréchet Radiomics Distance between two folders of NIfTI volumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from medgen_cli.cli.groups import eval_app


@eval_app.command("frd")
def eval_frd(
    real: Path = typer.Argument(..., help="Folder of real NIfTI volumes (.nii/.nii.gz, at least 2)."),
    fake: Path = typer.Argument(..., help="Folder of generated NIfTI volumes (e.g. the output of `medgen sample`)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Processes extracting features (default: the package's, cores - 2, at least 1)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Fréchet Radiomics Distance (FRD v1, the authors' frd-score package) of FAKE against REAL.

    Radiomic features (pyradiomics: intensity, texture, LoG and wavelet images) of every volume,
    normalised over both sets; FRD = log of their squared Fréchet distance (lower is better).
    Needs the optional extra: pip install 'medgen\\[frd]'.
    """
    from rich.console import Console

    from medgen_cli.metrics.frd import compute_frd

    result = compute_frd(real, fake, workers)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    Console().print(f"FRD ({result.version}, frd-score {result.package_version}): [bold]{result.frd:.6g}[/bold] "
                    f"({result.num_fake} volumes vs {result.num_real} real; lower is better)", highlight=False)
