"""rlgen DQN vs Stable-Baselines3 DQN on CartPole-v1, side by side in one process.

SB3 runs RL Zoo's tuned CartPole-v1 hyperparameters (agents/dqn.yml
``CartPole-v1-rlzoo``, copied from rl-baselines3-zoo's hyperparams/dqn.yml);
rlgen runs its default ``CartPole-v1`` preset. Seeds alternate between the two
so that machine load affects both alike. Both final policies are scored by the
same evaluator: 100 deterministic episodes.

    python scripts/bench_dqn.py --seeds 10
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

from rlgen.dqn import make_config
from rlgen.dqn.train import train
from rlgen.envs import make_vector_env
from rlgen.presets import get_preset


def evaluate(predict, episodes: int = 100, seed: int = 100_000) -> float:
    """Mean return of ``predict(obs_batch) -> actions`` over ``episodes`` CartPole episodes."""
    envs = make_vector_env("CartPole-v1", episodes, seed=seed, training=False)
    obs, _ = envs.reset(seed=seed)
    returns = np.full(episodes, np.nan)
    while np.isnan(returns).any():
        obs, _, _, _, infos = envs.step(predict(obs))
        if "episode" in infos:
            for i in np.flatnonzero(infos["_episode"]):
                if np.isnan(returns[i]):
                    returns[i] = infos["episode"]["r"][i]
    envs.close()
    return float(returns.mean())


def run_sb3(seed: int, logdir: str) -> dict:
    import gymnasium as gym
    from stable_baselines3 import DQN

    zoo = get_preset("dqn", "CartPole-v1-rlzoo")
    start = time.perf_counter()
    model = DQN(
        "MlpPolicy", gym.make("CartPole-v1"), seed=seed, device="cpu", verbose=0,
        learning_rate=zoo["learning_rate"], batch_size=zoo["batch_size"], buffer_size=zoo["buffer_size"],
        learning_starts=zoo["learning_starts"], gamma=zoo["gamma"],
        target_update_interval=zoo["target_update_interval"], train_freq=zoo["train_freq"],
        gradient_steps=zoo["gradient_steps"], exploration_fraction=zoo["exploration_fraction"],
        exploration_final_eps=zoo["exploration_final_eps"],
        policy_kwargs={"net_arch": zoo["backbone"]["hidden_sizes"]},
    )
    model.learn(total_timesteps=zoo["total_timesteps"])
    wall = time.perf_counter() - start
    score = evaluate(lambda obs: model.predict(obs, deterministic=True)[0])
    return {"wall": wall, "sps": zoo["total_timesteps"] / wall, "eval": score}


def run_rlgen(seed: int, logdir: str) -> dict:
    config = make_config("CartPole-v1", seed=seed, eval_episodes=0)
    start = time.perf_counter()
    result = train(config, device="cpu", logdir=logdir, progress=False)
    wall = time.perf_counter() - start

    from rlgen.dqn import DQNAgent

    agent = DQNAgent.load(result.checkpoint)
    score = evaluate(agent.predict)
    return {"wall": wall, "sps": config.total_timesteps / wall, "eval": score}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both libraries")
    parser.add_argument("--only", choices=["rlgen", "sb3"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # torch imports its compiler stack when the first optimizer is built (seconds here):
    # pay that once, before either library's clock starts.
    torch.optim.Adam(torch.nn.Linear(1, 1).parameters())
    rows = []
    print(f"{'seed':>4} | {'sb3 s':>7} {'sb3 sps':>8} {'sb3 eval':>8} | {'rlgen s':>7} {'rlgen sps':>9} "
          f"{'rlgen eval':>10} | {'speed-up':>8}", flush=True)
    with tempfile.TemporaryDirectory() as logdir:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            sb3 = run_sb3(seed, logdir) if args.only != "rlgen" else None
            ours = run_rlgen(seed, logdir) if args.only != "sb3" else None
            torch.set_num_threads(args.threads)  # rlgen restores the count it found; keep both equal
            rows.append((seed, sb3, ours))
            fmt = lambda r, w: (f"{r['wall']:>{w}.1f} {r['sps']:>8.0f} {r['eval']:>8.1f}" if r else " " * (w + 18))
            ratio = f"{sb3['wall'] / ours['wall']:>7.1f}x" if sb3 and ours else ""
            print(f"{seed:>4} | {fmt(sb3, 7)} | {fmt(ours, 7)}   | {ratio}", flush=True)
    for name, index in (("sb3", 1), ("rlgen", 2)):
        done = [r[index] for r in rows if r[index]]
        if not done:
            continue
        walls = [r["wall"] for r in done]
        solved = sum(r["eval"] >= 475 for r in done)
        print(f"{name:>5}: wall {statistics.mean(walls):.1f} s mean (min {min(walls):.1f}, max {max(walls):.1f}); "
              f"eval mean {statistics.mean(r['eval'] for r in done):.1f}; solved (>=475) {solved}/{len(done)}")
    if all(r[1] and r[2] for r in rows):
        sb3_wall = statistics.mean(r[1]["wall"] for r in rows)
        ours_wall = statistics.mean(r[2]["wall"] for r in rows)
        print(f"speed-up (mean wall): {sb3_wall / ours_wall:.1f}x")


if __name__ == "__main__":
    main()
