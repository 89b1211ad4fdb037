"""A run directory keeps its last K checkpoints, the newest with its replay, written as one unit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rlgen.errors import CheckpointError
from rlgen.training import RunCheckpoints, load_checkpoint, resume_location

META = {"algo": "test", "config": {}, "step": 0}


def _save(checkpoints: RunCheckpoints, step: int, net: nn.Module) -> None:
    def replay(path, token):
        path.write_bytes(f"replay of step {step} {token}".encode())

    checkpoints.save(step, modules={"net": net}, meta={**META, "step": step}, companion=replay)


def test_keeps_the_last_k_and_the_newest_replay_only(tmp_path):
    run = tmp_path / "task__algo__0__1"
    checkpoints, net = RunCheckpoints(run, keep=2), nn.Linear(2, 2)
    for step in (100, 200, 300, 400):
        with torch.no_grad():
            net.weight.fill_(step)
        _save(checkpoints, step, net)
    assert [p.name for p in checkpoints.history()] == ["step-000000000300.safetensors", "step-000000000400.safetensors"]
    latest = load_checkpoint(run / "checkpoint.safetensors")
    assert latest.meta["step"] == 400 and torch.all(latest.tensors["model/net/weight"] == 400)
    (replay,) = run.glob("replay-*.safetensors")
    assert latest.meta["replay"]["file"] == replay.name
    assert latest.meta["replay"]["token"] in replay.read_text()
    older = load_checkpoint(checkpoints.history()[0])
    assert older.meta["step"] == 300 and not (run / older.meta["replay"]["file"]).exists()


def test_a_damaged_newest_checkpoint_points_to_the_kept_earlier_one(tmp_path):
    run = tmp_path / "task__algo__0__1"
    checkpoints, net = RunCheckpoints(run, keep=3), nn.Linear(2, 2)
    for step in (100, 200):
        _save(checkpoints, step, net)
    latest = run / "checkpoint.safetensors"
    data = latest.read_bytes()
    latest.unlink()  # breaks the hard link, as a disk fault or a hand edit would
    latest.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"use an earlier checkpoint: --resume .*step-000000000200"):
        load_checkpoint(latest)


def test_resume_location_finds_the_run_directory_and_refuses_foreign_folders(tmp_path):
    run = tmp_path / "task__algo__0__1"
    checkpoints = RunCheckpoints(run, keep=3)
    _save(checkpoints, 100, nn.Linear(2, 2))
    assert resume_location(run) == (run / "checkpoint.safetensors", run)
    step_file = checkpoints.history()[-1]
    assert resume_location(step_file) == (step_file, run)
    # The same file copied into another run's folder does not make that folder its run directory.
    other = tmp_path / "other__algo__0__2"
    other.mkdir()
    (other / "mine.safetensors").write_bytes(step_file.read_bytes())
    assert resume_location(other / "mine.safetensors") == (other / "mine.safetensors", None)
