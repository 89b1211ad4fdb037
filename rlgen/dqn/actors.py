"""Actors: how a Q-network picks actions for N env copies, with explicit state (acme's actor role).

Training, evaluation, ``DQNAgent.predict`` and video all act through an actor,
so the feed-forward and the memory agent differ only in the actor they get:

- ``FeedForwardActor``: the greedy action of the Q-values, no memory;
- ``SequenceActor``: carries each copy's memory (LSTM/GRU state, or the
  transformer's window) across steps and clears it where an episode starts.

Gymnasium 1.x vector envs autoreset on the *next* step: the step after a
``terminated``/``truncated`` one ignores its action and returns the first
observation of a new episode. In a vector-env loop call ``act(obs, ...)``
before ``envs.step`` and ``observe(terminations, truncations)`` after it; the
actor then knows which copies' next step only resets (``autoreset``) and which
copies' next observation starts an episode.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from rlgen.dqn.recurrent_networks import RecurrentQNetwork, WindowQNetwork


def epsilon_greedy(greedy: np.ndarray, epsilon: float, rng: np.random.Generator, num_actions: int) -> np.ndarray:
    """Replace each action by a uniform one with probability ``epsilon``."""
    explore = rng.random(len(greedy)) < epsilon
    return np.where(explore, rng.integers(0, num_actions, size=len(greedy)), greedy)


class Actor(Protocol):
    num_envs: int
    autoreset: np.ndarray  # (N,) bool: the next env step only resets these copies

    def act(self, obs: np.ndarray, epsilon: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray: ...
    def observe(self, terminations: np.ndarray, truncations: np.ndarray) -> None: ...
    def packed_state(self) -> np.ndarray | None: ...
    def reset(self) -> None: ...
    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]: ...
    def load_state_dict(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None: ...


class _DoneFlags:
    """Episode bookkeeping both actors share: which copies start an episode, which only reset next."""

    def reset(self) -> None:
        self.starts = np.ones(self.num_envs, dtype=bool)  # the next obs starts an episode
        self.autoreset = np.zeros(self.num_envs, dtype=bool)  # the next env step only resets

    def observe(self, terminations: np.ndarray, truncations: np.ndarray) -> None:
        """Copies done now give a final observation next, then (one step later, the autoreset
        step) the first observation of a new episode."""
        self.starts = self.autoreset
        self.autoreset = np.asarray(terminations, dtype=bool) | np.asarray(truncations, dtype=bool)

    def _flags(self) -> dict[str, Any]:
        return {"starts": self.starts.tolist(), "autoreset": self.autoreset.tolist()}

    def _load_flags(self, meta: dict[str, Any]) -> None:
        self.starts = np.asarray(meta["starts"], dtype=bool)
        self.autoreset = np.asarray(meta["autoreset"], dtype=bool)


class FeedForwardActor(_DoneFlags):
    """Epsilon-greedy actions of a feed-forward Q-network.

    Args:
        q_net: maps (N, *obs) to (N, A).
        num_envs: copies acted for.
        num_actions: A.
        device: where observations go.
        forward: the module to call (a ``torch.compile``d q_net); default ``q_net``.
    """

    def __init__(self, q_net: torch.nn.Module, num_envs: int, num_actions: int, device: torch.device | str,
                 forward: torch.nn.Module | None = None):
        self.q_net = q_net
        self.forward = forward if forward is not None else q_net
        self.num_envs, self.num_actions = num_envs, num_actions
        self.device = torch.device(device)
        self.reset()

    def act(self, obs: np.ndarray | None, epsilon: float = 0.0, rng: np.random.Generator | None = None,
            greedy: np.ndarray | None = None) -> np.ndarray:
        """Actions (N,) for observations (N, *obs); greedy when ``rng`` is None.

        ``greedy``: the greedy actions if already known (many seeds' Q-networks run as one
        batch), so only the exploration is drawn here, from ``rng`` as always.
        """
        if rng is not None and epsilon >= 1.0:  # all random: skip the forward pass
            return rng.integers(0, self.num_actions, size=self.num_envs)
        if greedy is None:
            with torch.inference_mode():
                greedy = self.forward(torch.as_tensor(obs, device=self.device)).argmax(dim=1).cpu().numpy()
        return greedy if rng is None else epsilon_greedy(greedy, epsilon, rng, self.num_actions)

    def packed_state(self) -> None:
        return None

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return self._flags(), {}

    def load_state_dict(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self._load_flags(meta)


class SequenceActor(_DoneFlags):
    """Greedy Q-values for N env copies, one vector step at a time, with each copy's memory.

    Args:
        q_net: a recurrent or transformer Q-network.
        num_envs: copies acted for; their memories start empty.
        device: where observations go.
    """

    def __init__(self, q_net: RecurrentQNetwork | WindowQNetwork, num_envs: int, device: torch.device | str):
        self.q_net = q_net
        self.num_envs = num_envs
        self.num_actions = q_net.num_actions
        self.device = torch.device(device)
        self.reset()

    def reset(self) -> None:
        """Forget every copy's memory; the next observations start episodes."""
        self.memory = self.q_net.initial_memory(self.num_envs, self.device)
        super().reset()

    @torch.inference_mode()
    def step(self, obs: np.ndarray, starts: np.ndarray | None = None) -> torch.Tensor:
        """Q-values (N, A) for observations (N, *obs), moving each copy's memory on by one step.

        Args:
            starts: (N,) bool, True where ``obs`` is an episode's first; None = what
                ``observe`` worked out.
        """
        starts = self.starts if starts is None else np.asarray(starts, dtype=bool)
        obs_t = torch.as_tensor(obs, device=self.device)
        starts_t = torch.as_tensor(starts, dtype=torch.bool, device=self.device)
        q, self.memory = self.q_net.act(obs_t, self.memory, starts_t)
        return q

    def act(self, obs: np.ndarray, epsilon: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
        """Actions (N,); the forward pass runs even for random actions, to keep the memory current."""
        self.q_net.eval()
        greedy = self.step(obs).argmax(dim=1).cpu().numpy()
        return greedy if rng is None else epsilon_greedy(greedy, epsilon, rng, self.num_actions)

    def packed_state(self) -> np.ndarray | None:
        """The recurrent state each copy carries into its next step, (N, state_dim); None for transformers."""
        if not isinstance(self.q_net, RecurrentQNetwork):
            return None
        return self.q_net.pack_state(self.memory).cpu().numpy()

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        parts = self.memory if isinstance(self.memory, tuple) else (self.memory,)
        return {**self._flags(), "memory_parts": len(parts)}, {f"actor_memory_{i}": p for i, p in enumerate(parts)}

    def load_state_dict(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self._load_flags(meta)
        parts = tuple(tensors[f"actor_memory_{i}"].to(self.device) for i in range(meta["memory_parts"]))
        self.memory = parts if isinstance(self.memory, tuple) else parts[0]


def is_sequence_network(q_net: torch.nn.Module) -> bool:
    return isinstance(q_net, (RecurrentQNetwork, WindowQNetwork))


def make_actor(q_net: torch.nn.Module, num_envs: int, num_actions: int, device: torch.device | str,
               forward: torch.nn.Module | None = None) -> FeedForwardActor | SequenceActor:
    """The actor ``q_net`` needs: with memory for recurrent / transformer Q-networks."""
    if is_sequence_network(q_net):
        return SequenceActor(q_net, num_envs, device)
    return FeedForwardActor(q_net, num_envs, num_actions, device, forward=forward)
