"""Acting with memory: carry each env copy's state across steps, clear it where an episode starts.

Gymnasium 1.x vector envs autoreset on the *next* step: the step after a
``terminated``/``truncated`` one ignores its action and returns the first
observation of a new episode. ``SequenceActor.step`` is therefore told which
copies start an episode with the observation it is given (the copies that
were done one step earlier), and zeroes their memory before that observation
is processed. The trainer, the evaluator, ``DQNAgent.predict`` and video
recording all act through it.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from rlgen.dqn.recurrent_networks import RecurrentQNetwork, TransformerQNetwork
from rlgen.envs import get_spec, make_env, make_vector_env


class SequenceActor:
    """Greedy Q-values for N env copies, one vector step at a time.

    Args:
        q_net: a recurrent or transformer Q-network.
        num_envs: copies acted for; their memories start empty.
        device: where observations go.
    """

    def __init__(self, q_net: RecurrentQNetwork | TransformerQNetwork, num_envs: int, device: torch.device | str):
        self.q_net = q_net
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.memory = q_net.initial_memory(num_envs, self.device)

    def reset(self) -> None:
        """Forget every copy's memory."""
        self.memory = self.q_net.initial_memory(self.num_envs, self.device)

    @torch.inference_mode()
    def step(self, obs: np.ndarray, starts: np.ndarray) -> torch.Tensor:
        """Q-values (N, A) for observations (N, *obs); ``starts`` (N,) bool marks new episodes."""
        obs_t = torch.as_tensor(obs, device=self.device)
        starts_t = torch.as_tensor(starts, dtype=torch.bool, device=self.device)
        q, self.memory = self.q_net.act(obs_t, self.memory, starts_t)
        return q

    def packed_state(self) -> np.ndarray | None:
        """The recurrent state each copy carries into its next step, (N, state_dim); None for transformers."""
        if not isinstance(self.q_net, RecurrentQNetwork):
            return None
        return self.q_net.pack_state(self.memory).cpu().numpy()


def evaluate_sequence_policy(
    q_net: RecurrentQNetwork | TransformerQNetwork,
    env_id: str,
    episodes: int,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    epsilon: float = 0.0,
    max_envs: int = 100,
) -> tuple[float, float]:
    """Mean and std of the undiscounted return over ``episodes`` episodes, acting with memory.

    Like ``rlgen.dqn.evaluate.evaluate_policy``: up to ``max_envs`` copies side by side,
    copy i playing a fixed quota of episodes so that short episodes are not over-counted.
    """
    if episodes < 1:
        raise ValueError(f"episodes={episodes} must be >= 1")
    num_envs = min(episodes, max_envs)
    envs = make_vector_env(env_id, num_envs, seed=seed, training=False)
    rng = np.random.default_rng(seed)
    quota = np.full(num_envs, episodes // num_envs)
    quota[: episodes % num_envs] += 1
    returns: list[float] = []
    done_count = np.zeros(num_envs, dtype=np.int64)
    was_training = q_net.training
    q_net.eval()
    actor = SequenceActor(q_net, num_envs, device)
    num_actions = int(envs.single_action_space.n)
    obs, _ = envs.reset(seed=seed)
    starts = np.ones(num_envs, dtype=bool)  # obs starts an episode
    autoreset = np.zeros(num_envs, dtype=bool)  # the next step only resets (after an episode's end)
    while (done_count < quota).any():
        actions = actor.step(obs, starts).argmax(dim=1).cpu().numpy()
        if epsilon > 0:
            explore = rng.random(num_envs) < epsilon
            actions = np.where(explore, rng.integers(0, num_actions, size=num_envs), actions)
        obs, _, terminations, truncations, infos = envs.step(actions)
        starts, autoreset = autoreset, terminations | truncations
        if "episode" in infos:
            for i in np.flatnonzero(infos["_episode"]):
                if done_count[i] < quota[i]:
                    returns.append(float(infos["episode"]["r"][i]))
                    done_count[i] += 1
    envs.close()
    q_net.train(was_training)
    return float(np.mean(returns)), float(np.std(returns))


def record_sequence_episode(
    q_net: RecurrentQNetwork | TransformerQNetwork,
    env_id: str,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    max_steps: int = 10_000,
) -> tuple[np.ndarray, float]:
    """Play one greedy episode with rgb_array rendering; returns (frames (T, H, W, 3) uint8, return)."""
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # pygame opens an audio device it never uses
    env = make_env(get_spec(env_id), training=False, render_mode="rgb_array")
    actor = SequenceActor(q_net, 1, device)
    q_net.eval()
    obs, _ = env.reset(seed=seed)
    frames, total, start = [env.render()], 0.0, True
    for _ in range(max_steps):
        action = int(actor.step(obs[None], np.array([start])).argmax(dim=1))
        start = False
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        frames.append(env.render())
        if terminated or truncated:
            break
    env.close()
    return np.stack(frames).astype(np.uint8), total
