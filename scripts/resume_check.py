"""Interrupt a DQN preset half-way, resume it, and compare with the same run left alone.

Prints the largest absolute difference of every saved tensor (weights, target,
optimizer moments, replay) and both final evaluations; exact resume means 0.0
everywhere and equal scores.

    python scripts/resume_check.py                       # the CartPole-v1 preset, seed 0
    python scripts/resume_check.py --env rlgen/CartPoleNoVel-v0 --steps 20000
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import safetensors.numpy
import safetensors.torch
import torch

from rlgen.dqn import make_config
from rlgen.dqn.train import train, train_steps


class StopAfter:
    """A Ctrl-C that arrives after ``steps`` vector steps."""

    def __init__(self, steps: int):
        self.steps, self.seen = steps, 0

    @property
    def requested(self) -> bool:
        self.seen += 1
        return self.seen > self.steps


def tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    out = {k: v for k, v in safetensors.torch.load_file(str(run_dir / "checkpoint.safetensors")).items()
           if not k.startswith("rng/")}
    for path in run_dir.glob("replay-*.safetensors"):
        out.update({f"replay/{k}": torch.from_numpy(v) for k, v in safetensors.numpy.load_file(str(path)).items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--steps", type=int, default=None, help="total_timesteps (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = make_config(args.env, seed=args.seed, total_timesteps=args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        whole = train(config, device="cpu", logdir=Path(tmp) / "whole", progress=False)
        steps = train_steps(config, torch.device("cpu"), logdir=Path(tmp) / "parts",
                            interrupt=StopAfter(config.total_timesteps // config.num_envs // 2))
        while True:
            try:
                next(steps)
            except StopIteration as done:
                part = done.value
                break
        resumed = train(config, device="cpu", resume=part.run_dir, progress=False)
        a, b = tensors(whole.run_dir), tensors(resumed.run_dir)
    worst = max(((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0, k) for k in a)
    print(f"{args.env} seed {args.seed}: interrupted at step {part.step:,} of {config.total_timesteps:,}, resumed")
    where = f" ({worst[1]})" if worst[0] else " (every tensor bit-identical)"
    print(f"tensors compared: {len(a)} (same keys: {a.keys() == b.keys()}); largest |difference|: {worst[0]}{where}")
    print(f"final evaluation: uninterrupted {whole.eval_mean:.1f}, interrupted + resumed {resumed.eval_mean:.1f}")


if __name__ == "__main__":
    main()
