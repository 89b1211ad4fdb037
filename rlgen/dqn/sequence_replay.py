"""Sequence replay for recurrent and transformer DQN: trajectories in, fixed-length chunks out.

Storage follows ``rlgen.dqn.replay``: one slot per vector step in
``[capacity, num_envs, ...]`` arrays (SB3's layout), slot ``t`` holding the
observation, the action taken from it, its reward and its flags, so a
trajectory of one env copy is a column read top to bottom. Under gymnasium
1.x next-step autoreset the slot after an episode's last step holds that
episode's final observation (used to bootstrap a truncation) and is never
trained on; the slot after it starts the next episode and is marked
``starts``.

A sample is a chunk of ``burn_in + sequence_length + n_step`` consecutive
slots of one copy (R2D2, Kapturowski et al. 2019):

- the first ``burn_in`` steps only warm up the recurrent state (no loss);
- the next ``sequence_length`` steps are trained on;
- the last ``n_step`` steps are there only to bootstrap the n-step targets.

A chunk may run across an episode boundary: ``resets`` marks every step where
an episode starts so the network zeroes its state (or masks its attention)
there, n-step returns stop at the episode's end, and ``mask`` turns off the
loss on the final-observation slots. Chunks never cross the write position
(old and new data do not join). With ``state_dim > 0`` the recurrent state the
actor had when it reached each slot is stored too, and a chunk starts from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from rlgen.dqn.replay_io import load_replay, save_replay
from rlgen.dqn.sum_tree import Priorities
from rlgen.errors import InputError


class SequenceBatch(NamedTuple):
    """B chunks of L = burn_in + T + n_step steps, T = sequence_length trained steps each."""

    obs: torch.Tensor  # (B, L, *obs_shape)
    resets: torch.Tensor  # (B, L) bool: an episode starts at this step (zero the state before it)
    actions: torch.Tensor  # (B, T) int64: actions of the trained steps (chunk steps burn_in ... burn_in + T - 1)
    returns: torch.Tensor  # (B, T) float32: sum_{k<m} gamma^k r_{t+k}, stopped at the episode's end
    discounts: torch.Tensor  # (B, T) float32: gamma^m, or 0 where the episode terminated
    bootstrap: torch.Tensor  # (B, T) int64: chunk step of the observation m steps later
    mask: torch.Tensor  # (B, T) bool: a real transition (loss on), False on final-observation slots
    state: torch.Tensor | None  # (B, state_dim) stored state before chunk step 0, or None (zeros)
    weights: torch.Tensor  # (B,) float32 importance weights (ones for uniform replay)
    indices: np.ndarray  # (B,) flat start slots (slot * num_envs + env), for priority updates


class SequenceReplayBuffer:
    """Uniform replay of fixed-length chunks with burn-in, n-step targets and episode masks.

    Args:
        capacity: slots kept in total (split evenly between the env copies).
        num_envs: copies of the vector env.
        obs_shape: shape of one observation.
        obs_dtype: storage dtype of observations.
        burn_in: chunk steps before the trained ones.
        sequence_length: trained steps per chunk.
        n_step: length of the return; the chunk carries n_step more steps to bootstrap from.
        gamma: discount.
        state_dim: floats of recurrent state stored per slot; 0 stores none.
        device: where sampled batches go.
    """

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype,
        burn_in: int,
        sequence_length: int,
        n_step: int = 1,
        gamma: float = 0.99,
        state_dim: int = 0,
        device: torch.device | str = "cpu",
    ):
        if burn_in < 0 or sequence_length < 1 or n_step < 1:
            raise InputError(
                f"burn_in={burn_in} must be >= 0, sequence_length={sequence_length} and n_step={n_step} >= 1"
            )
        self.burn_in = burn_in
        self.sequence_length = sequence_length
        self.n_step = n_step
        self.chunk_length = burn_in + sequence_length + n_step
        self.size = max(capacity // num_envs, 2 * self.chunk_length)
        self.num_envs = num_envs
        self.gamma = gamma
        self.state_dim = state_dim
        self.device = torch.device(device)
        self.obs = np.zeros((self.size, num_envs, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros((self.size, num_envs), dtype=np.int64)
        self.rewards = np.zeros((self.size, num_envs), dtype=np.float32)
        self.terminations = np.zeros((self.size, num_envs), dtype=bool)
        self.dones = np.zeros((self.size, num_envs), dtype=bool)
        # valid[t]: slot t holds a real transition t -> t+1. starts[t]: an episode starts at slot t.
        self.valid = np.zeros((self.size, num_envs), dtype=bool)
        self.starts = np.zeros((self.size, num_envs), dtype=bool)
        self.states = np.zeros((self.size, num_envs, state_dim), dtype=np.float32) if state_dim else None
        # startable[t]: a chunk may start at slot t (all its slots written in this pass, and its
        # first trained step a real transition). Kept up to date as slots are written.
        self.startable = np.zeros((self.size, num_envs), dtype=bool)
        self.pos = 0  # slot of the newest observation
        self.written = 0  # slots written so far
        self._gamma_powers = gamma ** np.arange(n_step + 1, dtype=np.float64)

    def __len__(self) -> int:
        """Slots that a chunk may start at."""
        return int(self.startable.sum())

    # -- writing ---------------------------------------------------------------------------

    def start(self, obs: np.ndarray, states: np.ndarray | None = None) -> None:
        """Store the first observations after ``envs.reset``, (num_envs, *obs_shape); episodes start here."""
        self._write(self.pos, obs, np.ones(self.num_envs, dtype=bool), states)
        self.written += 1

    def add(
        self,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminations: np.ndarray,
        truncations: np.ndarray,
        next_obs: np.ndarray,
        autoreset: np.ndarray,
        next_states: np.ndarray | None = None,
    ) -> None:
        """Record one vector step taken from the newest slot.

        Args:
            actions, rewards, terminations, truncations, next_obs: what ``envs.step`` got and gave.
            autoreset: (num_envs,) bool, True where this step was the autoreset step after an
                episode's end (its action was ignored and ``next_obs`` starts a new episode).
            next_states: (num_envs, state_dim) the actor's state after the step's forward
                pass, i.e. the state it will enter ``next_obs`` with (before any reset).
        """
        t = self.pos
        self.actions[t] = actions
        self.rewards[t] = rewards
        self.terminations[t] = terminations
        self.dones[t] = terminations | truncations
        self.valid[t] = ~autoreset
        nxt = (t + 1) % self.size
        self.pos = nxt
        self._write(nxt, next_obs, autoreset, next_states)
        self.written += 1
        # Chunks that would now run from new data into the old (overwritten) pass may not start;
        # the chunk that ends at the new slot may, if its first trained step is a real transition.
        span = (nxt - np.arange(self.chunk_length)) % self.size  # slots nxt, nxt-1, ..., nxt-L+1
        self._set_startable(span[:-1], np.zeros((len(span) - 1, self.num_envs), dtype=bool))
        if self.written >= self.chunk_length:
            first = span[-1]
            self._set_startable(np.array([first]), self.valid[(first + self.burn_in) % self.size][None])

    def _write(self, t: int, obs: np.ndarray, starts: np.ndarray, states: np.ndarray | None) -> None:
        self.obs[t] = obs
        self.starts[t] = starts
        self.valid[t] = False  # no action from this slot yet
        if self.states is not None:
            if states is None:
                raise InputError("this buffer stores recurrent states (state_dim > 0); pass them")
            self.states[t] = states

    def _set_startable(self, slots: np.ndarray, startable: np.ndarray) -> None:
        """Mark chunk starts (slots (k,), startable (k, num_envs)); prioritized replay hooks in here."""
        self.startable[slots] = startable

    # -- reading ---------------------------------------------------------------------------

    def _sample_starts(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Uniform flat indices of startable slots."""
        filled = self.size if self.written >= self.size else self.written
        flat_startable = self.startable[:filled].reshape(-1)
        if not flat_startable.any():
            raise InputError(
                f"no chunk of {self.chunk_length} steps can be sampled yet ({self.written} slots written); "
                "raise learning_starts"
            )
        out = np.empty(0, dtype=np.int64)
        while len(out) < batch_size:
            flat = rng.integers(0, filled * self.num_envs, size=2 * batch_size)
            out = np.concatenate([out, flat[flat_startable[flat]]])
        return out[:batch_size]

    def sample(self, batch_size: int, rng: np.random.Generator, beta: float = 1.0) -> SequenceBatch:
        flat = self._sample_starts(batch_size, rng)
        return self._gather(flat, np.ones(batch_size, dtype=np.float32))

    def _gather(self, flat: np.ndarray, weights: np.ndarray) -> SequenceBatch:
        start, env = np.divmod(flat, self.num_envs)
        slots = (start[:, None] + np.arange(self.chunk_length)) % self.size  # (B, L)
        envs = env[:, None]
        valid = self.valid[slots, envs]  # (B, L)
        dones = self.dones[slots, envs]
        terminations = self.terminations[slots, envs]
        rewards = self.rewards[slots, envs]
        resets = self.starts[slots, envs]

        # n-step targets of the trained steps, computed inside the chunk.
        trained = self.burn_in + np.arange(self.sequence_length)  # (T,) chunk steps
        mask = valid[:, trained]  # (B, T)
        alive = mask.copy()
        returns = np.zeros(mask.shape, dtype=np.float64)
        discounts = np.ones(mask.shape, dtype=np.float64)
        last = np.broadcast_to(trained, mask.shape).copy()
        for k in range(self.n_step):
            cur = trained + k
            if k > 0:
                alive &= valid[:, cur]  # stop before the final-observation slot or the newest slot
            returns += np.where(alive, self._gamma_powers[k] * rewards[:, cur], 0.0)
            discounts = np.where(alive, self._gamma_powers[k + 1], discounts)
            last = np.where(alive, cur, last)
            ended = alive & dones[:, cur]
            discounts = np.where(ended & terminations[:, cur], 0.0, discounts)
            alive &= ~ended
        bootstrap = last + 1  # (B, T): the final-observation slot after a truncation, never a new episode
        assert bootstrap.max(initial=0) < self.chunk_length

        to = self._to_tensor
        state = None if self.states is None else to(self.states[start, env])  # (B, state_dim)
        return SequenceBatch(
            obs=to(self.obs[slots, envs]),  # (B, L, *obs_shape)
            resets=to(resets),
            actions=to(self.actions[slots[:, trained], envs]),
            returns=to(returns.astype(np.float32)),
            discounts=to(discounts.astype(np.float32)),
            bootstrap=to(bootstrap.astype(np.int64)),
            mask=to(mask),
            state=state,
            weights=to(weights),
            indices=flat,
        )

    def _to_tensor(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type == "cpu":
            return tensor
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Uniform replay keeps no priorities."""

    # -- saving ----------------------------------------------------------------------------

    _ARRAYS = ("obs", "actions", "rewards", "terminations", "dones", "valid", "starts", "startable")

    def state_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Arrays and scalar metadata that restore this buffer exactly (for resuming)."""
        arrays = {name: getattr(self, name) for name in self._ARRAYS}
        if self.states is not None:
            arrays["states"] = self.states
        meta = {"pos": str(self.pos), "written": str(self.written), "kind": type(self).__name__}
        return arrays, meta

    def load_state_arrays(self, arrays: dict[str, np.ndarray], meta: dict[str, str]) -> None:
        for name in (*self._ARRAYS, *(["states"] if self.states is not None else [])):
            getattr(self, name)[...] = arrays[name]
        self.pos, self.written = int(meta["pos"]), int(meta["written"])

    def save(self, path: Path, token: str = "") -> Path:
        """Write the buffer to ``path`` (safetensors), atomically."""
        return save_replay(self, Path(path), token)

    def load(self, path: Path) -> str:
        """Fill the buffer from a file written by :meth:`save`; returns its token."""
        return load_replay(self, Path(path))

    def restart(self, obs: np.ndarray, states: np.ndarray | None = None) -> None:
        """The environments start new episodes (a resume that could not restore them): the newest
        slot ends its trajectory like an autoreset step, and ``obs`` starts the next ones."""
        none = np.zeros(self.num_envs, dtype=bool)
        self.add(np.zeros(self.num_envs, dtype=np.int64), np.zeros(self.num_envs, dtype=np.float32), none, none,
                 obs, ~none, states)


class PrioritizedSequenceReplayBuffer(SequenceReplayBuffer):
    """Prioritized chunks (R2D2): proportional priorities over start slots (``rlgen.dqn.sum_tree.Priorities``).

    A sampled chunk's priority comes from the mixed max/mean |TD error| the learner computes.
    """

    def __init__(self, *args, alpha: float = 0.6, eps: float = 1e-6, **kwargs):
        super().__init__(*args, **kwargs)
        self.priorities = Priorities(self.size * self.num_envs, alpha, eps)

    def _set_startable(self, slots: np.ndarray, startable: np.ndarray) -> None:
        super()._set_startable(slots, startable)
        flat = (slots[:, None] * self.num_envs + np.arange(self.num_envs)).reshape(-1)
        self.priorities.add(flat, startable.reshape(-1))

    def sample(self, batch_size: int, rng: np.random.Generator, beta: float = 1.0) -> SequenceBatch:
        if self.priorities.tree.total <= 0:
            self._sample_starts(batch_size, rng)  # raises the explanatory error
        flat, weights = self.priorities.sample(batch_size, rng, len(self), beta)
        return self._gather(flat, weights)

    def state_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        arrays, meta = super().state_arrays()
        more_arrays, more_meta = self.priorities.state()
        return {**arrays, **more_arrays}, {**meta, **more_meta}

    def load_state_arrays(self, arrays: dict[str, np.ndarray], meta: dict[str, str]) -> None:
        super().load_state_arrays(arrays, meta)
        self.priorities.load_state(arrays, meta)

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set the priorities of sampled chunks from their mixed |TD error|, (B,)."""
        self.priorities.update(indices, priorities)
