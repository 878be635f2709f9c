"""``medgen train --nnodes 2`` on one machine: two torchrun "nodes" of one gloo process each, meeting
at a c10d rendezvous on 127.0.0.1, train the same weights as one node with two processes (same
global batch), bit for bit: the toy family's ops are deterministic on CPU, each rank's data shard
and dropout depend on its rank alone, and a mean over two ranks does not depend on their order."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
COMMON = ["--set", "trainer.max_steps=6", "--set", "model.dropout=0.2", "--set", "trainer.ckpt_every=3"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["modules"]["net"]


def test_two_nodes_train_what_one_node_with_two_processes_trains(tmp_path: Path,
                                                                  subprocess_env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    base = [sys.executable, "-m", "medgen_cli", "train", "toy", "--output-dir", str(out), *COMMON]
    one = subprocess.run([*base, "--name", "one", "--nproc", "2"], cwd=REPO, env=subprocess_env, text=True,
                         capture_output=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    port = _free_port()
    nodes = [subprocess.Popen([*base, "--name", "two", "--nproc", "1", "--nnodes", "2", "--node-rank", str(r),
                               "--master", f"127.0.0.1:{port}"], cwd=REPO, env=subprocess_env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in (0, 1)]
    errs = [p.communicate(timeout=300)[1] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], [e[-2000:] for e in errs]
    assert sum("with 2 processes" in e for e in errs) == 1  # rank 0 (on either node) reports once
    a, b = _weights(out / "toy" / "one"), _weights(out / "toy" / "two")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in (out / "toy").iterdir()) == ["one", "two"]  # one run folder per job


@pytest.mark.parametrize("args,match", [
    (["--nnodes", "2"], "needs --master HOST:PORT"),
    (["--nnodes", "2", "--master", "node1"], "is not HOST:PORT"),
    (["--nnodes", "2", "--master", "h:1", "--node-rank", "2"], "is not in 0..1"),
    (["--node-rank", "1"], "apply to several nodes"),
])
def test_launch_flags_refused_in_one_line(args: list[str], match: str, subprocess_env: dict[str, str]) -> None:
    r = subprocess.run([sys.executable, "-m", "medgen_cli", "train", "toy", *args], cwd=REPO, env=subprocess_env,
                       text=True, capture_output=True, timeout=120)
    assert r.returncode == 2 and match in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_torchrun_command_for_several_nodes() -> None:
    from medgen_cli.engine.torchrun import Launch, torchrun_command

    cmd = torchrun_command(Launch(nproc=4, nnodes=2, node_rank=1, master="node001:29500"),
                           ["train", "toy", "--nproc", "4", "--nnodes=2", "--node-rank", "1", "--master", "node001:29500",
                            "--set", "a=1"])
    assert cmd[1:] == ["-m", "torch.distributed.run", "--nproc-per-node=4", "--nnodes=2", "--node-rank=1",
                       "--rdzv-backend=c10d", "--rdzv-endpoint=node001:29500", "-m", "medgen_cli", "--",
                       "train", "toy", "--set", "a=1"]
