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
