"""``--nproc`` / ``--nnodes``: relaunch a medgen command under torchrun (``torch.distributed.run``).

One machine: ``torchrun --standalone --nproc-per-node K -m medgen_cli ARGV``. Several machines
(``--nnodes N``): ``torchrun --nnodes N --node-rank R --nproc-per-node K --rdzv-backend c10d
--rdzv-endpoint HOST:PORT -m medgen_cli ARGV``, started once per node with the same HOST:PORT
(see docs/scale.md); ``--`` before ARGV keeps torchrun from reading medgen's flags. The relaunched
processes run the same command without the launch flags and find their rank in torchrun's
environment (:func:`medgen_cli.engine.distributed.env_world`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Sequence

from medgen_cli.errors import MedgenError

#: Flags consumed by the relaunching process (each takes a value).
LAUNCH_FLAGS = ("--nproc", "--nnodes", "--node-rank", "--master")


@dataclass(frozen=True)
class Launch:
    """How many processes, on how many nodes, this node's rank and the rendezvous HOST:PORT."""

    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master: str | None = None

    @property
    def world_size(self) -> int:
        return self.nproc * self.nnodes

    def needed(self) -> bool:
        """Whether this process must relaunch itself (not already a torchrun worker)."""
        return self.world_size > 1 and "LOCAL_RANK" not in os.environ


def check_launch(launch: Launch) -> Launch:
    """Refuse inconsistent launch flags with one line.

    Raises:
        MedgenError: ``--nnodes`` without ``--master``, a node rank out of range, a bad HOST:PORT.
    """
    if launch.nproc < 1 or launch.nnodes < 1:
        raise MedgenError("--nproc and --nnodes must be at least 1")
    if launch.nnodes == 1:
        if launch.node_rank != 0 or launch.master is not None:
            raise MedgenError("--node-rank and --master apply to several nodes", "add --nnodes N (N > 1)")
        return launch
    if launch.master is None:
        raise MedgenError(f"--nnodes {launch.nnodes} needs --master HOST:PORT (the same on every node)",
                          "e.g. --master node001:29500, a host every node can reach and a free port")
    host, _, port = launch.master.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise MedgenError(f"--master {launch.master!r} is not HOST:PORT", "e.g. --master 10.0.0.1:29500")
    if not 0 <= launch.node_rank < launch.nnodes:
        raise MedgenError(f"--node-rank {launch.node_rank} is not in 0..{launch.nnodes - 1} (--nnodes {launch.nnodes})")
    return launch


def strip_launch_flags(argv: Sequence[str]) -> list[str]:
    """``argv`` without :data:`LAUNCH_FLAGS` (``--flag V`` and ``--flag=V`` forms)."""
    cleaned: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in LAUNCH_FLAGS:
            skip = True
        elif not any(a.startswith(f + "=") for f in LAUNCH_FLAGS):
            cleaned.append(a)
    return cleaned


def torchrun_command(launch: Launch, argv: Sequence[str]) -> list[str]:
    """The torchrun command line that runs ``medgen ARGV`` (launch flags removed) as ``launch`` says."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={launch.nproc}"]
    if launch.nnodes == 1:
        cmd.append("--standalone")
    else:
        cmd += [f"--nnodes={launch.nnodes}", f"--node-rank={launch.node_rank}", "--rdzv-backend=c10d",
                f"--rdzv-endpoint={launch.master}"]
    # "--": torchrun's parser would otherwise read medgen's flags as its own abbreviations
    # (--num as --numa-binding: "ambiguous option") or take them (--nnodes).
    return [*cmd, "-m", "medgen_cli", "--", *strip_launch_flags(argv)]


def spawn(launch: Launch, argv: Sequence[str]) -> int:
    """Run ``medgen ARGV`` under torchrun; its exit code."""
    return subprocess.call(torchrun_command(launch, argv))
