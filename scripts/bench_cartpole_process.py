"""Whole processes, side by side: ``rlgen train-dqn CartPole-v1`` against SB3 with RL Zoo's preset.

Each side is what a user runs and waits for, timed from process start to exit: rlgen's
command (imports, training, its 100-episode evaluation) and a Python process that imports
SB3, trains RL Zoo's tuned CartPole-v1 DQN (agents/dqn.yml ``CartPole-v1-rlzoo``) and
evaluates it over 100 episodes with SB3's ``evaluate_policy``. Seeds alternate between the
two so machine load affects both alike; one torch thread each. ``--inline-too`` also runs
rlgen with its evaluations during training inside the training process
(``eval_in_background=false``), to show what playing them on the second core saves.

    python scripts/bench_cartpole_process.py --seeds 1000 1001 1002 --inline-too
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

SB3_PROCESS = """
import sys, gymnasium as gym, torch
torch.set_num_threads(1)
from stable_baselines3 import DQN
from stable_baselines3.common.evaluation import evaluate_policy
from rlgen.presets import get_preset
zoo = get_preset("dqn", "CartPole-v1-rlzoo")
seed = int(sys.argv[1])
model = DQN("MlpPolicy", gym.make("CartPole-v1"), seed=seed, device="cpu", verbose=0,
            learning_rate=zoo["learning_rate"], batch_size=zoo["batch_size"], buffer_size=zoo["buffer_size"],
            learning_starts=zoo["learning_starts"], gamma=zoo["gamma"],
            target_update_interval=zoo["target_update_interval"], train_freq=zoo["train_freq"],
            gradient_steps=zoo["gradient_steps"], exploration_fraction=zoo["exploration_fraction"],
            exploration_final_eps=zoo["exploration_final_eps"],
            policy_kwargs={"net_arch": zoo["backbone"]["hidden_sizes"]})
model.learn(total_timesteps=zoo["total_timesteps"])
env = gym.make("CartPole-v1")
env.reset(seed=seed + 100_000)
mean, std = evaluate_policy(model, env, n_eval_episodes=100, deterministic=True)
print(f"eval {mean:.2f} +/- {std:.2f}")
"""


def timed(cmd: list[str]) -> tuple[float, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    wall = time.perf_counter() - start
    return wall, float(re.search(r"eval[^\n]*?([-\d.]+) \+/-", out).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1000, 1001, 1002])
    parser.add_argument("--inline-too", action="store_true",
                        help="also time rlgen with eval_in_background=false")
    args = parser.parse_args()
    rows = []
    inline_col = f" {'inline s':>8} {'inline / SB3':>12}" if args.inline_too else ""
    print(f"{'seed':>5} | {'SB3 s':>6} {'SB3 eval':>8} | {'rlgen s':>7} {'rlgen eval':>10} | {'rlgen / SB3':>11}"
          + inline_col)
    with tempfile.TemporaryDirectory() as logdir:
        for seed in args.seeds:
            command = [sys.executable, "-m", "rlgen.cli.main", "train-dqn", "CartPole-v1", "--seed", str(seed),
                       "--quiet", "--device", "cpu", "--logdir", logdir]
            sb3 = timed([sys.executable, "-c", SB3_PROCESS, str(seed)])
            ours = timed(command)
            inline = timed([*command, "--set", "eval_in_background=false"]) if args.inline_too else None
            rows.append((seed, sb3, ours, inline))
            extra = f" {inline[0]:>8.1f} {inline[0] / sb3[0]:>12.2f}" if inline else ""
            print(f"{seed:>5} | {sb3[0]:>6.1f} {sb3[1]:>8.1f} | {ours[0]:>7.1f} {ours[1]:>10.1f} | "
                  f"{ours[0] / sb3[0]:>11.2f}" + extra, flush=True)
    sb3_wall, our_wall = statistics.mean(r[1][0] for r in rows), statistics.mean(r[2][0] for r in rows)
    print(f"mean: SB3 {sb3_wall:.1f} s (solved {sum(r[1][1] >= 475 for r in rows)}/{len(rows)}), rlgen {our_wall:.1f} s "
          f"(solved {sum(r[2][1] >= 475 for r in rows)}/{len(rows)}); rlgen / SB3 = {our_wall / sb3_wall:.2f} "
          f"(target <= 0.20)")
    if args.inline_too:
        inline_wall = statistics.mean(r[3][0] for r in rows)
        print(f"rlgen with eval_in_background=false: {inline_wall:.1f} s; / SB3 = {inline_wall / sb3_wall:.2f}")


if __name__ == "__main__":
    main()
