"""Steps and wall seconds to solve CartPole-v1 and Acrobot-v1: rlgen's PQN preset beside its DQN preset.

Each run evaluates every ``--eval-freq`` environment steps (``--eval-episodes`` greedy episodes; the
seconds to solve include the evaluations before it); "solved" is the first evaluation at or above the task's threshold in
envs/classic_control.yml (CartPole 475, Acrobot -100). Runs alternate PQN / DQN seed by seed in one
process, one torch thread.

    python scripts/bench_pqn_classic.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rlgen.dqn import make_config
from rlgen.dqn.agent import train_function
from rlgen.envs import get_spec


def solve_point(run_dir: Path, threshold: float, start: float) -> tuple[int | None, float | None, float]:
    """(steps, seconds since start) at the first eval >= threshold, and the best eval seen."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    evals = [e for e in acc.Scalars("eval/episodic_return")]
    best = max((e.value for e in evals), default=float("nan"))
    for e in evals:
        if e.value >= threshold:
            return e.step, e.wall_time - start, best
    return None, None, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "Acrobot-v1"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--eval-freq", type=int, default=10_000)
    parser.add_argument("--eval-episodes", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for env_id in args.envs:
            threshold = get_spec(env_id).solved_threshold
            for seed in args.seeds:
                for algo in ("pqn", "dqn"):
                    config = make_config(env_id, algo=algo, seed=seed, eval_freq=args.eval_freq,
                                         eval_during_episodes=args.eval_episodes, eval_episodes=100)
                    start = time.time()
                    result = train_function(config)(config, device="cpu", logdir=Path(tmp) / algo, progress=False)
                    steps, seconds, best = solve_point(result.run_dir, threshold, start)
                    rows.append((env_id, seed, algo, config.total_timesteps, result.wall_seconds, steps, seconds,
                                 best, result.eval_mean))
                    print(f"{env_id} seed {seed} {algo}: solved at {steps} steps / {seconds and round(seconds, 1)} s; "
                          f"budget {config.total_timesteps:,} in {result.wall_seconds:.1f} s, final eval "
                          f"{result.eval_mean:.1f}", flush=True)
    print("\n| task | algo | seeds solved | steps to solve (each seed) | seconds to solve (each seed) | final eval (100 ep) |")
    print("| --- | --- | ---: | --- | --- | --- |")
    for env_id in args.envs:
        for algo in ("pqn", "dqn"):
            mine = [r for r in rows if r[0] == env_id and r[2] == algo]
            solved = sum(r[5] is not None for r in mine)
            steps = ", ".join("-" if r[5] is None else f"{r[5]:,}" for r in mine)
            secs = ", ".join("-" if r[6] is None else f"{r[6]:.1f}" for r in mine)
            finals = ", ".join(f"{r[8]:.1f}" for r in mine)
            print(f"| {env_id} | {algo} | {solved}/{len(mine)} | {steps} | {secs} | {finals} (mean {np.mean([r[8] for r in mine]):.1f}) |")


if __name__ == "__main__":
    main()
