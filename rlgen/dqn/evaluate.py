"""Deterministic evaluation: many episodes at once in a vector env, acting through an actor."""

from __future__ import annotations

import numpy as np
import torch

from rlgen.backbones import MLP
from rlgen.dqn.actors import Actor, make_actor
from rlgen.envs import make_vector_env
from rlgen.errors import InputError
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
    Memory agents act with their memory (cleared at each episode start). Atari is
    evaluated on full games with unclipped rewards (``training=False``).
    """
    if episodes < 1:
        raise InputError(f"episodes={episodes} must be >= 1")
    if not 0.0 <= epsilon <= 1.0:
        raise InputError(f"--epsilon {epsilon} must be in [0, 1] (0 = greedy)")
    small = isinstance(getattr(q_net, "backbone", None), MLP) and torch.device(device).type == "cpu"
    num_envs = num_eval_envs(episodes, max_envs)
    was_training = q_net.training
    q_net.eval()
    try:
        with torch_threads(1 if small else None):
            envs = make_vector_env(env_id, num_envs, seed=seed, training=False)
            actor = make_actor(q_net, num_envs, int(envs.single_action_space.n), device)
            return play_episodes(actor, envs, episodes, seed=seed, epsilon=epsilon)
    finally:
        q_net.train(was_training)


def play_episodes(actor: Actor, envs, episodes: int, *, seed: int = 0, epsilon: float = 0.0) -> tuple[float, float]:
    """Mean and std of the return of ``actor`` over ``episodes`` episodes of the vector env ``envs``.

    Copy i runs the episodes i, i + num_envs, ...: a fixed quota per copy keeps the
    estimate unbiased towards short episodes. Closes ``envs``.
    """
    num_envs = envs.num_envs
    rng = np.random.default_rng(seed) if epsilon > 0 else None
    quota = np.full(num_envs, episodes // num_envs)
    quota[: episodes % num_envs] += 1
    returns: list[float] = []
    done_count = np.zeros(num_envs, dtype=np.int64)
    obs, _ = envs.reset(seed=seed)
    while (done_count < quota).any():
        obs, _, terminations, truncations, infos = envs.step(actor.act(obs, epsilon, rng))
        actor.observe(terminations, truncations)
        if "episode" in infos:
            for i in np.flatnonzero(infos["_episode"]):
                if done_count[i] < quota[i]:
                    returns.append(float(infos["episode"]["r"][i]))
                    done_count[i] += 1
    envs.close()
    return float(np.mean(returns)), float(np.std(returns))


def num_eval_envs(episodes: int, max_envs: int) -> int:
    return min(episodes, max_envs)
