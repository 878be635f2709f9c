"""``medgen train <family>``: one command per registered family, generated from the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperCommand

from medgen_cli.cli.root import app
from medgen_cli.contract.registry import FamilySpec, all_specs

train_app = typer.Typer(
    help="Train a model family. Options: --config FILE, repeatable --set key=value, --resume RUN_DIR.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")


def config_help_lines(spec: FamilySpec) -> list[str]:
    """``key = default  description`` lines for every leaf of the family's config model.

    Defaults come from a default instance, so a family that overrides a shared section's
    defaults (e.g. the autoencoder's ``trainer`` with batch size 2 and EMA on) shows its own.
    """
    from pydantic import BaseModel

    lines: list[str] = []

    def walk(model: BaseModel, prefix: str) -> None:
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                walk(value, f"{prefix}{name}.")
                continue
            desc = field.description or ""
            lines.append(f"{prefix}{name} = {value!r}  {desc}".rstrip())

    walk(spec.config_class().model_validate({}), "")
    return lines


class FamilyCommand(TyperCommand):
    """A train command whose epilog (the config keys) is built only when help is shown, so
    listing commands never imports a family's config model."""

    spec: FamilySpec

    @property  # type: ignore[override]
    def epilog(self) -> str:
        lines = [r"[bold]Config keys[/bold] (override with --set key=value):"]
        lines += [line.replace("[", r"\[") for line in config_help_lines(self.spec)]
        return "\n".join(lines)

    @epilog.setter
    def epilog(self, value: str | None) -> None:
        pass


def run_train(req: Any, launch: Any = None) -> None:
    """Call :func:`medgen_cli.engine.launch.train` and report: the dry-run config on stdout,
    torchrun for ``--nproc``, the run folder, or how to resume after SIGINT (exit 130) / SIGTERM
    (exit 143)."""
    import os
    import sys

    from rich.console import Console

    from medgen_cli.engine.launch import train
    from medgen_cli.engine.trainer import TrainingInterrupted

    console = Console(stderr=True, soft_wrap=True, highlight=False)
    try:
        outcome = train(req, notify=console.print)
    except TrainingInterrupted as exc:
        where = exc.run_dir or req.resume
        again = f"Resume with: medgen train {req.family} --resume {where}" if where else "Nothing to resume."
        console.print(f"[yellow]stopped by {signal_name(exc.signum)} at step {exc.step}; {exc.left()}.[/] {again}")
        raise SystemExit(exc.exit_code) from None
    if outcome.config_text is not None:
        sys.stdout.write(outcome.config_text)
    elif outcome.processes > 1:
        from medgen_cli.engine.torchrun import Launch, spawn

        raise SystemExit(spawn(launch or Launch(nproc=outcome.processes), sys.argv[1:]))
    elif outcome.run_dir is not None and int(os.environ.get("RANK", 0)) == 0:
        console.print(f"[green]done:[/] {outcome.run_dir}")


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def _make_command(spec: FamilySpec) -> None:
    def command(
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config file (see configs/)."),
        overrides: list[str] = typer.Option([], "--set", "-s", help="Override a config key: --set trainer.max_steps=200 (repeatable)."),
        name: Optional[str] = typer.Option(None, "--name", help="Run name (default: auto-numbered)."),
        output_dir: Optional[str] = typer.Option(None, "--output-dir", help="Parent of runs/<family>/<name> (default: runs)."),
        resume: Optional[Path] = typer.Option(None, "--resume", help="Continue RUN_DIR with its saved config from its newest readable checkpoint "
                                              "(latest.pt, else the newest step_N.pt), or from a given RUN_DIR/checkpoints/FILE.pt."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and exit."),
        nproc: int = typer.Option(1, "--nproc", min=1, help="Launch N processes (per node) with torchrun (DDP)."),
        nnodes: int = typer.Option(1, "--nnodes", min=1, help="Nodes taking part; run the same command on each "
                                   "with its --node-rank (see docs/scale.md)."),
        node_rank: int = typer.Option(0, "--node-rank", min=0, help="With --nnodes: this node's rank, 0..N-1."),
        master: Optional[str] = typer.Option(None, "--master", metavar="HOST:PORT", help="With --nnodes: the "
                                             "rendezvous endpoint (torchrun --rdzv-endpoint), the same on every node."),
        require_fid: bool = typer.Option(False, "--require-fid", help="GAN families: fail instead of training without FID weights."),
        fork: Optional[str] = typer.Option(None, "--fork", metavar="NAME", help="With --resume: continue as a new run NAME "
                                           "next to it (config and that checkpoint copied; the source run is kept)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="With --resume FILE.pt older than the run's latest: "
                                       "delete the run's history after it (newer step_N.pt; best.pt becomes the best up to it)."),
    ) -> None:
        from medgen_cli.engine.launch import TrainRequest
        from medgen_cli.engine.torchrun import Launch, check_launch

        launch = check_launch(Launch(nproc=nproc, nnodes=nnodes, node_rank=node_rank, master=master))
        run_train(TrainRequest(family=spec.name, config_file=config, overrides=list(overrides), name=name,
                               output_dir=output_dir, resume=resume, dry_run=dry_run, nproc=launch.world_size,
                               require_fid=require_fid, fork=fork, overwrite=overwrite), launch)

    cls = type(f"{spec.name.title()}Command", (FamilyCommand,), {"spec": spec})
    train_app.command(spec.name, help=spec.help, short_help=spec.help, cls=cls)(command)


for _spec in all_specs().values():
    _make_command(_spec)
