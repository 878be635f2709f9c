"""The library side of ``medgen recon`` and ``medgen eval recon``: a run's ``recon`` (loaded here,
called through the family contract like ``sample``) or a classical reconstructor
(:mod:`medgen_cli.recon.classical`), and the file written by the shared writer
(:func:`medgen_cli.engine.outputs.write_file`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from medgen_cli.contract.samples import Samples
from medgen_cli.errors import MedgenError
from medgen_cli.recon.base import Reconstructor, Track
from medgen_cli.recon.reconstruct import METHODS, check_request, reconstruct_classical


def reconstruct(run: Path | None, input_path: Path, method: str = "model", views: int | None = None,
                checkpoint: str = "best", device: str = "auto", geometry: Path | None = None,
                iterations: int | None = None, options: Mapping[str, Any] | None = None,
                say: Callable[[str], None] | None = None, track: Track | None = None) -> Samples:
    """A run's ``recon`` (``method="model"``) or a classical baseline on one input. Options that
    do not apply to the method are refused, not ignored.

    ``options`` are the run family's recon options the caller set (e.g. ``{"chunk": 4096}`` for a
    dif-gaussian run, ``tile`` for an autoencoder run), validated by its options model.

    ``say`` receives the lines (rich markup) a user should read before the work starts: the
    checkpoint used (and any skipped), and a note naming the geometry and grid of a CBCT
    reconstruction. ``track`` shows the progress of the classical methods (a run's
    reconstruction shows its own, on stderr).

    Raises:
        MedgenError: unknown method, a missing run, or an option the method does not take.
    """
    from medgen_cli.engine.inference import options_for, run_task
    from medgen_cli.engine.run_loading import load_run

    say = say or (lambda line: None)
    check_request(method, run, iterations, list(options or {}), geometry)
    if method != "model":
        return reconstruct_classical(Path(input_path), method, views or 10, geometry, iterations or 50, say, track)
    assert run is not None  # check_request refused a model without a run
    loaded = load_run(run, checkpoint=checkpoint, device=device)
    flags = {"input": Path(input_path), **({"views": views} if views is not None else {}), **(options or {})}
    opts = options_for(loaded.family, "recon", flags)
    for line in [*loaded.describe(), *(f"note: {n}" for n in loaded.family.recon_notes(opts))]:
        say(line)
    return run_task(loaded.family, loaded.ctx, "recon", opts)


def recon_to_file(run: Path | None, input_path: Path, out: Path, method: str = "model", views: int | None = None,
                  checkpoint: str = "best", device: str = "auto", geometry: Path | None = None,
                  iterations: int | None = None, options: Mapping[str, Any] | None = None, overwrite: bool = False,
                  say: Callable[[str], None] | None = None, track: Track | None = None) -> Samples:
    """:func:`reconstruct`, then the volume as one NIfTI at ``out`` (an existing ``out`` is refused
    before any work unless ``overwrite``)."""
    from medgen_cli.engine.outputs import write_file
    from medgen_cli.io import check_writable

    check_writable(out, overwrite)
    samples = reconstruct(run, input_path, method, views, checkpoint, device, geometry, iterations, options,
                          say=say, track=track)
    write_file(samples, out, overwrite=overwrite)
    return samples


def _model(run: Path | None, checkpoint: str, device: str) -> Any:
    """The loaded dif-gaussian run of ``method="model"``."""
    from medgen_cli.engine.run_loading import load_run

    if run is None:
        raise MedgenError("give a RUN directory (or --method fdk|sirt for a classical baseline)")
    loaded = load_run(run, checkpoint=checkpoint, device=device)
    if loaded.family.name != "dif-gaussian":
        raise MedgenError(f"{run} is a '{loaded.family.name}' run; eval recon needs a dif-gaussian run")
    return loaded


def evaluate_recon(run: Path | None, data: Path, views: int | None, method: str = "model", checkpoint: str = "best",
                   iterations: int = 50, chunk: int | None = None, device: str = "auto",
                   track: Track | None = None) -> dict[str, Any]:
    """Reconstruct every case file in ``data`` and score it against its volume.

    Args:
        run: a dif-gaussian run (``method="model"``), else ``None``.
        data: a folder of case files (``medgen data make-cbct`` output, e.g. ``DIR/test``).
        views: projections to use (default: the run's largest; 10 for the baselines).
        method: ``model``, ``fdk`` or ``sirt``.
        checkpoint: ``best``, ``latest`` or a checkpoint path.
        iterations: SIRT iterations.
        chunk: points per model forward pass (default: the family's).
        device: see :mod:`medgen_cli.devices`.
        track: progress wrapper ``track(iterable, total, description)``.

    Returns:
        ``{"method", "run", "checkpoint" (the one used, ``None`` for fdk/sirt), "views", "data",
        "data_range", "cases": [{case, psnr, ssim, seconds}], "mean"}``.
    """
    from medgen_cli.data.cbct.io import list_cases
    from medgen_cli.metrics.recon_eval import score_cases
    from medgen_cli.recon.classical import classical

    if method not in METHODS:
        raise MedgenError(f"unknown method '{method}'", "use model, fdk or sirt")
    loaded = _model(run, checkpoint, device) if method == "model" else None
    rec: Reconstructor
    if loaded is not None:
        rec = loaded.family.reconstructor(loaded.ctx, views, **({"chunk": chunk} if chunk is not None else {}))
    else:
        rec = classical(method, views or 10, iterations)
    # The baselines and the model's FDK branch both use diffct, whose first import takes seconds:
    # keep it out of the first case's time.
    import diffct  # noqa: F401
    rows, mean = score_cases(list_cases(data), rec.values, f"{method} {rec.views} views", track)
    used = loaded.source.describe() if loaded is not None and loaded.source is not None else None
    return {"method": method, "run": str(run) if run else None, "checkpoint": used, "views": rec.views,
            "data": str(data), "data_range": 1.0, "cases": rows, "mean": mean}
