"""Acting with memory: carry each env copy's state across steps, clear it where an episode starts.

Gymnasium 1.x vector envs autoreset on the *next* step: the step after a
``terminated``/``truncated`` one ignores its action and returns the first
observation of a new episode. ``SequenceActor`` follows the done flags it is
shown and zeroes a copy's memory before that first observation is processed.
The trainer, the evaluator, ``DQNAgent.predict`` and video recording all act
through it.
"""

from __future__ import annotations

import numpy as np
import torch

from rlgen.dqn.evaluate import num_eval_envs, play_episodes
from rlgen.dqn.recurrent_networks import RecurrentQNetwork, TransformerQNetwork
from rlgen.dqn.video import play_episode


class SequenceActor:
    """Greedy Q-values for N env copies, one vector step at a time, with each copy's memory.

    In a vector-env loop call ``step(obs)`` before ``envs.step`` and
    ``observe(terminations, truncations)`` after it: the actor then knows which
    copies' next observation starts an episode (those that were done one step
    earlier, under next-step autoreset) and clears their memory first.

    Args:
        q_net: a recurrent or transformer Q-network.
        num_envs: copies acted for; their memories start empty.
        device: where observations go.
    """

    def __init__(self, q_net: RecurrentQNetwork | TransformerQNetwork, num_envs: int, device: torch.device | str):
        self.q_net = q_net
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.reset()

    def reset(self) -> None:
        """Forget every copy's memory; the next observations start episodes."""
        self.memory = self.q_net.initial_memory(self.num_envs, self.device)
        self.starts = np.ones(self.num_envs, dtype=bool)  # the next obs starts an episode
        self.autoreset = np.zeros(self.num_envs, dtype=bool)  # the next env step only resets

    @torch.inference_mode()
    def step(self, obs: np.ndarray, starts: np.ndarray | None = None) -> torch.Tensor:
        """Q-values (N, A) for observations (N, *obs).

        Args:
            starts: (N,) bool, True where ``obs`` is an episode's first; None = what
                ``observe`` worked out.
        """
        starts = self.starts if starts is None else np.asarray(starts, dtype=bool)
        obs_t = torch.as_tensor(obs, device=self.device)
        starts_t = torch.as_tensor(starts, dtype=torch.bool, device=self.device)
        q, self.memory = self.q_net.act(obs_t, self.memory, starts_t)
        return q

    def observe(self, terminations: np.ndarray, truncations: np.ndarray) -> None:
        """Take in what ``envs.step`` said: copies done now give a final observation next,
        then (one step later, the autoreset step) the first observation of a new episode."""
        self.starts = self.autoreset
        self.autoreset = np.asarray(terminations, dtype=bool) | np.asarray(truncations, dtype=bool)

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
    was_training = q_net.training
    q_net.eval()
    actor = SequenceActor(q_net, num_eval_envs(episodes, max_envs), device)
    try:
        return play_episodes(lambda obs: actor.step(obs).argmax(dim=1).cpu().numpy(), env_id, episodes,
                             seed=seed, epsilon=epsilon, max_envs=max_envs, observe=actor.observe)
    finally:
        q_net.train(was_training)


def record_sequence_episode(
    q_net: RecurrentQNetwork | TransformerQNetwork,
    env_id: str,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    max_steps: int = 10_000,
) -> tuple[np.ndarray, float]:
    """Play one greedy episode with rgb_array rendering; returns (frames (T, H, W, 3) uint8, return)."""
    actor = SequenceActor(q_net, 1, device)
    q_net.eval()

    def greedy(obs: np.ndarray) -> int:
        action = int(actor.step(obs[None]).argmax(dim=1))
        actor.observe(np.zeros(1, dtype=bool), np.zeros(1, dtype=bool))  # one episode: no reset
        return action

    return play_episode(greedy, env_id, seed=seed, max_steps=max_steps)
