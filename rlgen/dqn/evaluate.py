"""Deterministic evaluation: many episodes at once in a vector env."""

from __future__ import annotations

import numpy as np
import torch

from rlgen.backbones import MLP
from rlgen.envs import make_vector_env
from rlgen.training import torch_threads


def evaluate_policy(
    q_net: torch.nn.Module,
    env_id: str,
    episodes: int,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    epsilon: float = 0.0,
    max_envs: int = 100,
) -> tuple[float, float]:
    """Mean and std of the undiscounted return over ``episodes`` episodes.

    Runs up to ``max_envs`` copies side by side and counts each copy's episodes
    in order, so 100 CartPole episodes cost 500 batched forward passes, not 50,000.
    Atari is evaluated on full games with unclipped rewards (``training=False``).
    """
    if episodes < 1:
        raise ValueError(f"episodes={episodes} must be >= 1")
    small = isinstance(getattr(q_net, "backbone", None), MLP) and torch.device(device).type == "cpu"
    with torch_threads(1 if small else None):
        return _evaluate(q_net, env_id, episodes, seed, device, epsilon, max_envs)


def _evaluate(q_net, env_id, episodes, seed, device, epsilon, max_envs) -> tuple[float, float]:
    num_envs = min(episodes, max_envs)
    envs = make_vector_env(env_id, num_envs, seed=seed, training=False)
    rng = np.random.default_rng(seed)
    # Copy i runs the episodes i, i + num_envs, ...: a fixed quota per copy keeps the
    # estimate unbiased towards short episodes.
    quota = np.full(num_envs, episodes // num_envs)
    quota[: episodes % num_envs] += 1
    returns: list[float] = []
    done_count = np.zeros(num_envs, dtype=np.int64)
    was_training = q_net.training
    q_net.eval()
    obs, _ = envs.reset(seed=seed)
    num_actions = int(envs.single_action_space.n)
    while (done_count < quota).any():
        with torch.inference_mode():
            actions = q_net(torch.as_tensor(obs, device=device)).argmax(dim=1).cpu().numpy()
        if epsilon > 0:
            explore = rng.random(num_envs) < epsilon
            actions = np.where(explore, rng.integers(0, num_actions, size=num_envs), actions)
        obs, _, _, _, infos = envs.step(actions)
        if "episode" in infos:
            for i in np.flatnonzero(infos["_episode"]):
                if done_count[i] < quota[i]:
                    returns.append(float(infos["episode"]["r"][i]))
                    done_count[i] += 1
    envs.close()
    q_net.train(was_training)
    return float(np.mean(returns)), float(np.std(returns))
