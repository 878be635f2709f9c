"""The library side of ``medgen sample`` / ``interpolate``: load a run, validate the flags
against its family's options model, run the family, write the files with the shared writers.

The CLI passes only the flags the user set; everything else takes the family's own default
(e.g. ``--format``: ``nifti`` for volume families, ``png`` for 2D GANs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medgen_cli.engine.outputs import Written, check_folders, write_samples
from medgen_cli.contract.options import InferenceOptions, PointsThreshold, parse_options
from medgen_cli.contract.samples import Samples

Task = Literal["sample", "interpolate", "recon"]


@dataclass
class InferenceResult:
    """What a ``medgen sample``/``interpolate`` call did (for the CLI's summary lines)."""

    loaded: Any          # the LoadedRun (its ``report`` names the checkpoint used)
    out: Path
    written: Written
    samples: Samples


def options_for(family: Any, task: Task, flags: dict[str, Any]) -> InferenceOptions:
    """The family's typed options for ``task`` from the flags a caller set.

    Raises:
        MedgenError: the family cannot do ``task``, or a flag it does not take / a bad value.
    """
    model = {"sample": family.sample_options, "interpolate": family.interpolate_options,
             "recon": family.recon_options}[task]
    return parse_options(model, flags, family, task)


def run_task(family: Any, ctx: Any, task: Task, opts: InferenceOptions) -> Samples:
    """Call the family's method for ``task`` without autograd."""
    import torch

    method = {"sample": family.sample, "interpolate": family.interpolate, "recon": family.recon}[task]
    with torch.no_grad():
        return method(opts, ctx)


def infer_to_dir(run: str | Path, task: Task, flags: dict[str, Any], out: str | Path | None = None,
                 checkpoint: str = "best", device: str = "auto", overwrite: bool = False) -> InferenceResult:
    """Load ``run``, do ``task`` with ``flags`` and write the outputs (layout:
    :mod:`medgen_cli.engine.outputs`).

    ``sample`` with ``input`` on a run that reconstructs but does not sample (an autoencoder)
    reconstructs that input: ``medgen sample AE_RUN --input VOLUME``.

    Args:
        run: the run directory.
        task: ``sample``, ``interpolate`` or ``recon``.
        flags: option name → value, only those the user set.
        out: output folder (default ``RUN/samples/<task>-<timestamp>``).
        checkpoint: ``best``, ``latest`` or a ``.pt`` path.
        device: ``auto``, ``cpu``, ``cuda[:N]``.
        overwrite: replace existing outputs.
    """
    from medgen_cli.engine.run_loading import default_out, load_run

    loaded = load_run(run, checkpoint=checkpoint, device=device)
    fam = loaded.family
    if task == "sample" and fam.sample_options is None and fam.recon_options is not None and "input" in flags:
        task = "recon"
    opts = options_for(fam, task, flags)   # before any work: a bad flag costs nothing
    target = Path(out) if out is not None else default_out(loaded.run_dir, "samples" if task == "sample" else task)
    check_folders(target, opts.format, overwrite)   # refuse an existing sample folder before generating
    samples = run_task(fam, loaded.ctx, task, opts)
    threshold = opts.threshold if isinstance(opts, PointsThreshold) else 0.5
    written = write_samples(samples, target, opts.format, overwrite=overwrite, threshold=threshold)
    return InferenceResult(loaded=loaded, out=target, written=written, samples=samples)
