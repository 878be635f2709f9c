"""The library side of ``medgen sample`` / ``interpolate``: load a run, validate the flags
against its family's options model, run the family, write the files with the shared writers.

The CLI passes only the flags the user set; everything else takes the family's own default
(e.g. ``--format``: ``nifti`` for volume families, ``png`` for 2D GANs).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from medgen_cli.contract.capabilities import Interpolating, Reconstructing, Sampling
from medgen_cli.contract.options import InferenceOptions, PointsThreshold, parse_options, rename_options
from medgen_cli.contract.samples import Samples
from medgen_cli.engine.outputs import Written, check_folders, write_samples

if TYPE_CHECKING:
    from medgen_cli.contract.context import InferenceContext
    from medgen_cli.contract.family import Family
    from medgen_cli.engine.run_loading import LoadedRun

Task = Literal["sample", "interpolate", "recon"]


@dataclass
class InferenceResult:
    """What a ``medgen sample``/``interpolate`` call did (for the CLI's summary lines)."""

    loaded: LoadedRun    # its ``report`` names the checkpoint used
    out: Path
    written: Written
    samples: Samples


def options_model(family: Family[Any], task: Task) -> type[InferenceOptions] | None:
    """The family's options model for ``task``, ``None`` when it lacks the capability."""
    if task == "sample" and isinstance(family, Sampling):
        return family.sample_options
    if task == "interpolate" and isinstance(family, Interpolating):
        return family.interpolate_options
    if task == "recon" and isinstance(family, Reconstructing):
        return family.recon_options
    return None


def _instead(family: Family[Any], task: Task) -> str | None:
    """What to do when ``family`` cannot do ``task``."""
    if task == "sample" and isinstance(family, Reconstructing):
        return f"it reconstructs: {family.recon_options.command}"
    if task == "recon" and isinstance(family, Sampling):
        return "use `medgen sample` for generative runs"
    return None


def options_for(family: Family[Any], task: Task, flags: dict[str, Any]) -> InferenceOptions:
    """The family's typed options for ``task`` from the flags a caller set. A renamed option
    (``interpolate``'s ``steps``, now ``frames``) still works, with a ``FutureWarning``.

    Raises:
        MedgenError: the family cannot do ``task``, or a flag it does not take / a bad value.
    """
    flags, renamed = rename_options(task, flags)
    for old, new in renamed:
        warnings.warn(f"{task} option '{old}' is renamed '{new}'; the old name still works for now",
                      FutureWarning, stacklevel=3)
    return parse_options(options_model(family, task), flags, family, task, _instead(family, task))


def run_task(family: Family[Any], ctx: InferenceContext, task: Task, opts: InferenceOptions) -> Samples:
    """Call the family's method for ``task`` without autograd.

    Raises:
        TypeError: the family lacks the capability (:func:`options_for` refuses that first).
    """
    import torch

    with torch.no_grad():
        if task == "sample" and isinstance(family, Sampling):
            return family.sample(opts, ctx)
        if task == "interpolate" and isinstance(family, Interpolating):
            return family.interpolate(opts, ctx)
        if task == "recon" and isinstance(family, Reconstructing):
            return family.recon(opts, ctx)
    raise TypeError(f"family '{family.name}' cannot {task}")


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
    if task == "sample" and not isinstance(fam, Sampling) and isinstance(fam, Reconstructing) and "input" in flags:
        task = "recon"
    opts = options_for(fam, task, flags)   # before any work: a bad flag costs nothing
    target = Path(out) if out is not None else default_out(loaded.run_dir, "samples" if task == "sample" else task)
    check_folders(target, opts.format, overwrite)   # refuse an existing sample folder before generating
    samples = run_task(fam, loaded.ctx, task, opts)
    threshold = opts.threshold if isinstance(opts, PointsThreshold) else 0.5
    written = write_samples(samples, target, opts.format, overwrite=overwrite, threshold=threshold)
    return InferenceResult(loaded=loaded, out=target, written=written, samples=samples)
