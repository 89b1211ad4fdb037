"""Data-parallel training speed on this machine, side by side in one run: one process vs torchrun.

For each model it runs the same ``rlgen train MODEL`` (same preset, global batch and steps)
three ways, one after the other:

- ``1 proc x 1 thread``: one process, ``OMP_NUM_THREADS=1``;
- ``1 proc x T threads``: one process using all ``--threads`` cores through torch's intra-op threads;
- ``N ranks x 1 thread``: ``torchrun --standalone --nproc-per-node N`` (gloo on CPU, NCCL with
  ``--device cuda``), each rank one thread.

Images per second come from rank 0's ``charts/images_per_second`` log windows (global images
over rank 0's wall time), the first window dropped as warm-up. Prints the ratios to the
one-thread process.

    python scripts/bench_ddp.py --ranks 2 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# model, preset data, steps, log interval: the Fashion-MNIST presets, short enough for minutes.
CASES = {
    "vae": ("fashion-mnist", 300, 30),
    "gan": ("fashion-mnist", 100, 10),  # preset fashion-mnist-mlp below
    "diffusion": ("fashion-mnist", 24, 4),
}
PRESETS = {"gan": "fashion-mnist-mlp"}
QUIET = ["eval_samples=0", "sample_interval=0", "checkpoint_interval=0", "eval_interval=0"]


def images_per_second(run_dir: Path) -> float:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    values = [event.value for event in events.Scalars("charts/images_per_second")][1:]  # first window: warm-up
    return sum(values) / len(values)


def run(model: str, launcher: list[str], threads: int, device: str, workdir: Path) -> float:
    data, steps, log_interval = CASES[model]
    logdir = workdir / f"{model}-{len(list(workdir.iterdir()))}"
    preset = ["--preset", PRESETS[model]] if model in PRESETS else []
    sets = [f"--set={item}" for item in [*QUIET, f"log_interval={log_interval}"]]
    command = [*launcher, "train", model, "--data", data, *preset, "--steps", str(steps), "--logdir", str(logdir),
               "--device", device, "--quiet", *sets]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    (run_dir,) = [p for p in logdir.iterdir() if p.is_dir()]
    return images_per_second(run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="threads of the one multi-threaded process")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="write the results as JSON")
    args = parser.parse_args()
    single = [sys.executable, "-m", "rlgen"]
    ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.ranks),
           "-m", "rlgen"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            one = run(model, single, 1, args.device, Path(tmp))
            threaded = run(model, single, args.threads, args.device, Path(tmp))
            ranks = run(model, ddp, 1, args.device, Path(tmp))
            results[model] = {"one_thread": one, f"{args.threads}_threads": threaded, f"{args.ranks}_ranks": ranks}
            print(f"{model:10s} 1 proc x 1 thread {one:9.1f} img/s   1 proc x {args.threads} threads {threaded:9.1f} "
                  f"({threaded / one:.2f}x)   {args.ranks} ranks x 1 thread {ranks:9.1f} ({ranks / one:.2f}x)", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
