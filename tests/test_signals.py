"""SIGTERM (docker stop, Slurm, kill) saves and exits like Ctrl-C; a second signal stops at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlgen.training import GracefulInterrupt, load_checkpoint


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_first_signal_asks_to_stop_and_the_second_aborts(sig):
    with GracefulInterrupt() as interrupt:
        os.kill(os.getpid(), sig)
        assert interrupt.requested and interrupt.signal_name == sig.name
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), sig)
    assert signal.getsignal(sig) is not interrupt._handle  # handlers are given back


def test_sigterm_saves_a_checkpoint_says_how_to_resume_and_exits_non_zero(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlgen.cli.main", "train-dqn", "CartPole-v1", "--total-steps", "5000000",
         "--logdir", str(tmp_path), "--device", "cpu", "--quiet", "--set", "eval_episodes=0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    deadline = time.time() + 120
    while not list(tmp_path.glob("*/events.out.tfevents.*")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)  # some training steps
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "SIGTERM received" in err and "Traceback" not in err
    (run,) = tmp_path.iterdir()
    assert f"resume with: rlgen train-dqn CartPole-v1 --resume {run}" in out
    meta = load_checkpoint(Path(run) / "checkpoint.safetensors").meta
    assert 0 < meta["step"] < 5_000_000 and meta["final"] is False
    assert list(Path(run).glob("replay-*.safetensors"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_real_signal_then_resume_ends_with_the_weights_of_an_uninterrupted_run(sig, tmp_path):
    import safetensors.torch
    import torch

    args = ["CartPole-v1", "--total-steps", "30000", "--device", "cpu", "--quiet", "--set", "eval_episodes=0"]
    cmd = [sys.executable, "-m", "rlgen.cli.main", "train-dqn"]
    subprocess.run([*cmd, *args, "--logdir", str(tmp_path / "whole")], check=True, capture_output=True)
    proc = subprocess.Popen([*cmd, *args, "--logdir", str(tmp_path / "cut")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 120
    while not list((tmp_path / "cut").glob("*/events.out.tfevents.*")) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    (run,) = (tmp_path / "cut").iterdir()
    assert load_checkpoint(run / "checkpoint.safetensors").meta["step"] < 30000
    subprocess.run([*cmd, "CartPole-v1", "--resume", str(run), "--device", "cpu", "--quiet"], check=True,
                   capture_output=True)
    (whole,) = (tmp_path / "whole").iterdir()
    a = safetensors.torch.load_file(str(whole / "checkpoint.safetensors"))
    b = safetensors.torch.load_file(str(run / "checkpoint.safetensors"))
    for key in (k for k in a if k.startswith(("model/", "optim/"))):
        assert torch.equal(a[key], b[key]), key
