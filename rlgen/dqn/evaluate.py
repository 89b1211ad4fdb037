"""Deterministic evaluation: many episodes at once in a vector env."""

from __future__ import annotations

from collections.abc import Callable

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
    def greedy(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return q_net(torch.as_tensor(obs, device=device)).argmax(dim=1).cpu().numpy()

    was_training = q_net.training
    q_net.eval()
    try:
        return play_episodes(greedy, env_id, episodes, seed=seed, epsilon=epsilon, max_envs=max_envs)
    finally:
        q_net.train(was_training)


def play_episodes(
    act: Callable[[np.ndarray], np.ndarray],
    env_id: str,
    episodes: int,
    *,
    seed: int = 0,
    epsilon: float = 0.0,
    max_envs: int = 100,
    observe: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> tuple[float, float]:
    """Mean and std of the return of ``act(obs) -> actions`` over ``episodes`` episodes.

    ``observe(terminations, truncations)``, when given, hears every step (memory agents
    reset there). Copy i runs the episodes i, i + num_envs, ...: a fixed quota per copy
    keeps the estimate unbiased towards short episodes.
    """
    num_envs = num_eval_envs(episodes, max_envs)
    envs = make_vector_env(env_id, num_envs, seed=seed, training=False)
    rng = np.random.default_rng(seed)
    quota = np.full(num_envs, episodes // num_envs)
    quota[: episodes % num_envs] += 1
    returns: list[float] = []
    done_count = np.zeros(num_envs, dtype=np.int64)
    num_actions = int(envs.single_action_space.n)
    obs, _ = envs.reset(seed=seed)
    while (done_count < quota).any():
        actions = act(obs)
        if epsilon > 0:
            explore = rng.random(num_envs) < epsilon
            actions = np.where(explore, rng.integers(0, num_actions, size=num_envs), actions)
        obs, _, terminations, truncations, infos = envs.step(actions)
        if observe is not None:
            observe(terminations, truncations)
        if "episode" in infos:
            for i in np.flatnonzero(infos["_episode"]):
                if done_count[i] < quota[i]:
                    returns.append(float(infos["episode"]["r"][i]))
                    done_count[i] += 1
    envs.close()
    return float(np.mean(returns)), float(np.std(returns))


def num_eval_envs(episodes: int, max_envs: int) -> int:
    return min(episodes, max_envs)
