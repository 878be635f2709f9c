"""``medgen sample`` and ``medgen interpolate``: thin callers of :func:`medgen_cli.engine.inference.infer_to_dir`.

Their family options (``--num``, ``--steps``, ``--truncation``, ...) are generated from the
registered families' options models (:mod:`medgen_cli.cli.family_flags`). Options left unset take
the run family's own default (shown in each help line); an option the run's family does not take
is refused with one line, never ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from medgen_cli.cli.family_flags import family_options, given
from medgen_cli.cli.root import app

_CHECKPOINT_HELP = "best | latest | a path to a .pt file (best falls back to latest; the one used is printed)."
_DEVICE_HELP = "auto | cpu | cuda[:N] | mps."


def _report(result: Any) -> None:
    from rich.console import Console

    written = result.written
    result.loaded.report(written.files, result.out)
    console = Console(stderr=True)
    folders = ", ".join(str(f) for f in written.folders.values())
    console.print(f"samples + manifest.json in {folders}; previews in {result.out / 'preview'}", highlight=False)


@app.command("sample")
@family_options("sample", recon_command="medgen sample")
def sample(
    run: Path = typer.Argument(..., help="A run directory (runs/<family>/<name>)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: RUN/samples/samples-<timestamp>)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help=_CHECKPOINT_HELP),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the samples of an earlier run of this command in --out."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Split the seeds over N processes (torchrun; one GPU each "
                              "where there are GPUs): the same files and manifest as one process."),
    **options: Any,
) -> None:
    """Generate samples from a trained run (autoencoder runs: reconstruct --input).

    OUT holds the samples in one format and manifest.json ({file, seed, label} per sample); previews go to OUT/preview/.
    """
    from medgen_cli.engine.inference import infer_to_dir

    flags = given(options)
    if nproc > 1 or _torchrun_worker():
        _sample_sharded(run, flags, out, checkpoint, device, overwrite, nproc)
        return
    _report(infer_to_dir(run, "sample", flags, out, checkpoint=checkpoint, device=device, overwrite=overwrite))


def _torchrun_worker() -> bool:
    """Whether this process is one of several torchrun workers (from --nproc, or torchrun by hand)."""
    import os

    return int(os.environ.get("WORLD_SIZE", 1)) > 1


def _sample_sharded(run: Path, flags: dict[str, Any], out: Optional[Path], checkpoint: str, device: str,
                    overwrite: bool, nproc: int) -> None:
    """``--nproc``: check the request here (one error line, not one per rank), then rerun this
    command under torchrun, whose workers split the seeds."""
    import os
    import sys

    from medgen_cli.engine.sharded import check_sharded, sample_sharded
    from medgen_cli.engine.torchrun import Launch, spawn

    if "LOCAL_RANK" not in os.environ:
        target = check_sharded(run, flags, out, checkpoint, overwrite)
        argv = sys.argv[1:] + ([] if out is not None else ["--out", str(target)])
        raise SystemExit(spawn(Launch(nproc=nproc), argv))
    result = sample_sharded(run, flags, out, checkpoint=checkpoint, device=device, overwrite=overwrite)
    if result is not None:
        _report(result)


@app.command("interpolate")
@family_options("interpolate")
def interpolate(
    run: Path = typer.Argument(..., help="A run directory (runs/<family>/<name>)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: RUN/samples/interpolate-<timestamp>)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=2, help="Old name of --frames (renamed: --steps means "
                                        "sampler steps elsewhere); still works for now, with a note."),
    checkpoint: str = typer.Option("best", "--checkpoint", help=_CHECKPOINT_HELP),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the frames of an earlier run of this command in --out."),
    **options: Any,
) -> None:
    """Interpolate between two seeds of a trained run: the frames, manifest.json and OUT/preview/strip.png (every family; 2D GANs also preview/interpolation.gif)."""
    from medgen_cli.contract.options import rename_options
    from medgen_cli.engine.inference import infer_to_dir
    from medgen_cli.progress import stderr_console

    flags, renamed = rename_options("interpolate", given({"steps": steps, **options}))
    for old, new in renamed:
        stderr_console().print(f"[yellow]note:[/] interpolate --{old} is renamed --{new}; the old name still works for now",
                               highlight=False)
    _report(infer_to_dir(run, "interpolate", flags, out, checkpoint=checkpoint, device=device, overwrite=overwrite))
