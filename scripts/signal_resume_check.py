"""Real signals, then resume: each trainer stopped with SIGINT (Ctrl-C) and with SIGTERM (`kill`) mid-run,
resumed, and compared tensor by tensor (weights, optimizer state, the run's own generators) with the
same run left alone. Whole `rlgen` processes, small configs, CPU, one thread.

    python scripts/signal_resume_check.py
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import safetensors.torch
import torch

G = ["--data", "digits", "--batch-size", "32", "--set", "eval_samples=0", "--set", "sample_interval=0",
     "--set", "checkpoint_interval=0", "--set", "log_interval=10"]
CASES = {  # the command, and the budget flag a resume repeats
    "vae": (["train", "vae", *G, "--steps", "600"], ["--steps", "600"]),
    "gan": (["train", "gan", *G, "--steps", "400", "--set", "architecture=mlp"], ["--steps", "400"]),
    "diffusion": (["train", "diffusion", *G, "--steps", "200", "--set", "unet_channels=[8,16]",
                   "--set", "unet_attention=[false,false]", "--set", "norm_num_groups=4", "--set", "warmup_steps=2",
                   "--set", "sample_steps=2"], ["--steps", "200"]),
    "dqn": (["train-dqn", "CartPole-v1", "--total-steps", "20000", "--set", "eval_episodes=0"], ["--total-steps", "20000"]),
}


def tensors(path: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in safetensors.torch.load_file(path).items() if not k.startswith("rng/")}


def main() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rlgen = [sys.executable, "-m", "rlgen"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, (command, budget) in CASES.items():
            base = Path(tmp) / name
            common = ["--quiet", "--device", "cpu"]
            subprocess.run([*rlgen, *command, *common, "--logdir", str(base / "whole")], env=env, check=True,
                           capture_output=True)
            (whole,) = glob.glob(f"{base}/whole/*/checkpoint.safetensors")
            for sig in (signal.SIGINT, signal.SIGTERM):
                logdir = base / sig.name
                job = subprocess.Popen([*rlgen, *command, *common, "--logdir", str(logdir)], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                while not glob.glob(f"{logdir}/*/events*"):
                    time.sleep(0.05)
                time.sleep(1.0)  # inside the step loop
                job.send_signal(sig)
                out, err = job.communicate()
                stopped = next((line for line in (out + err).splitlines() if "interrupted at step" in line), "")
                (run,) = glob.glob(f"{logdir}/*")
                subprocess.run([*rlgen, *command[:2], "--resume", run, *budget, *common], env=env, check=True,
                               capture_output=True)
                a, b = tensors(whole), tensors(f"{run}/checkpoint.safetensors")
                same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
                print(f"{name:9s} {sig.name}: exit {job.returncode}, {stopped.split(';')[0].split(':')[0]}; resumed "
                      f"== uninterrupted: {same} ({len(a)} tensors)", flush=True)


if __name__ == "__main__":
    main()
