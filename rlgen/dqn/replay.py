"""Replay memory for DQN: uniform and prioritized, n-step returns, frame de-duplication.

The buffer stores the stream of observations each environment copy emits,
one frame per env step, in ``[capacity, num_envs, *frame_shape]`` arrays
(SB3's layout). A transition is the pair of consecutive slots ``t -> t + 1``
of one copy, so ``next_obs`` is never stored twice, and with frame stacking
only the newest frame of each stack is kept: a 1M-transition Atari buffer
takes 1M x 84 x 84 bytes (about 7 GB) instead of 2 x 4 x that.

Gymnasium 1.x vector envs autoreset on the *next* step: the step after a
``terminated``/``truncated`` one ignores its action and returns the first
observation of the new episode. Such a slot is stored (it starts the next
stream of frames) but marked invalid, so it is never sampled as a transition.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from rlgen.dqn.replay_io import load_replay, save_replay
from rlgen.dqn.sum_tree import Priorities
from rlgen.errors import InputError


class ReplayBatch(NamedTuple):
    """A sampled batch; every tensor has leading dimension B."""

    obs: torch.Tensor  # (B, *obs_shape)
    actions: torch.Tensor  # (B,) int64
    returns: torch.Tensor  # (B,) float32: sum_{k<m} gamma^k r_{t+k}
    next_obs: torch.Tensor  # (B, *obs_shape): the observation m steps later
    discounts: torch.Tensor  # (B,) float32: gamma^m, or 0 where the episode terminated
    weights: torch.Tensor  # (B,) float32 importance weights (ones for uniform replay)
    indices: np.ndarray  # (B,) flat slot indices, for priority updates


class ReplayBuffer:
    """Uniform replay with n-step returns over a stream of (stacked) frames.

    Args:
        capacity: transitions kept in total (split evenly between the env copies).
        num_envs: copies of the vector env.
        obs_shape: shape of one observation, e.g. (4,) or (4, 84, 84).
        obs_dtype: storage dtype (uint8 for images).
        frame_stack: observations are stacks of this many frames along axis 0;
            only the newest frame of each is stored.
        n_step: length of the return; 1 is plain DQN.
        gamma: discount.
        device: where sampled batches go.
    """

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype,
        frame_stack: int = 1,
        n_step: int = 1,
        gamma: float = 0.99,
        device: torch.device | str = "cpu",
    ):
        if frame_stack > 1 and obs_shape[0] != frame_stack:
            raise InputError(f"frame_stack={frame_stack} but observations have shape {obs_shape}")
        self.size = max(capacity // num_envs, n_step + frame_stack + 2)
        self.num_envs = num_envs
        self.obs_shape = tuple(obs_shape)
        self.frame_stack = frame_stack
        self.n_step = n_step
        self.gamma = gamma
        self.device = torch.device(device)
        frame_shape = self.obs_shape[1:] if frame_stack > 1 else self.obs_shape
        self.frames = np.zeros((self.size, num_envs, *frame_shape), dtype=obs_dtype)
        self.actions = np.zeros((self.size, num_envs), dtype=np.int64)
        self.rewards = np.zeros((self.size, num_envs), dtype=np.float32)
        self.terminations = np.zeros((self.size, num_envs), dtype=bool)
        self.dones = np.zeros((self.size, num_envs), dtype=bool)
        # valid[t]: slot t holds a real transition t -> t+1 (its successor exists and is
        # not an autoreset step). link[t]: slot t continues the episode of slot t-1.
        self.valid = np.zeros((self.size, num_envs), dtype=bool)
        self.link = np.zeros((self.size, num_envs), dtype=bool)
        self.pos = 0  # slot of the newest frame
        self.full = False
        self._gamma_powers = gamma ** np.arange(n_step + 1, dtype=np.float64)

    def __len__(self) -> int:
        """Stored transitions (approximately: invalid autoreset slots included)."""
        return (self.size if self.full else self.pos) * self.num_envs

    # -- writing ---------------------------------------------------------------------------

    def _newest_frame(self, obs: np.ndarray) -> np.ndarray:
        return obs[:, -1] if self.frame_stack > 1 else obs

    def skip_slot(self) -> None:
        """Move to a fresh slot, e.g. after a resume, when the environments restart their episodes."""
        self.pos = (self.pos + 1) % self.size
        self.full = self.full or self.pos == 0
        self.valid[self.pos] = False
        self._on_overwrite(self.pos)

    def start(self, obs: np.ndarray, states: np.ndarray | None = None) -> None:
        """Store the observations of the first reset, (num_envs, *obs_shape); ``states``: unused (no memory)."""
        self.frames[self.pos] = self._newest_frame(obs)
        self.link[self.pos] = False
        self.valid[self.pos] = False

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
            autoreset: (num_envs,) bool, True where this step was the autoreset step that
                follows an episode end (its action was ignored, ``next_obs`` is a reset).
            next_states: unused (feed-forward acting carries no memory).
        """
        t = self.pos
        real = ~autoreset
        self.actions[t] = actions
        self.rewards[t] = rewards
        self.terminations[t] = terminations
        self.dones[t] = terminations | truncations
        self.valid[t] = real
        self._on_valid(t, real)
        nxt = (t + 1) % self.size
        if nxt == 0:
            self.full = True
        self.pos = nxt
        self.frames[nxt] = self._newest_frame(next_obs)
        self.link[nxt] = real
        self.valid[nxt] = False
        self._on_overwrite(nxt)

    def _on_valid(self, t: int, valid: np.ndarray) -> None:
        """Hook for prioritized replay: slot ``t`` became sampleable where ``valid``."""

    def _on_overwrite(self, t: int) -> None:
        """Hook for prioritized replay: slot ``t`` is being reused."""

    # -- reading ---------------------------------------------------------------------------

    def _stack(self, t: np.ndarray, env: np.ndarray) -> np.ndarray:
        """Observations ending at slots ``t`` of copies ``env``: (B, *obs_shape)."""
        if self.frame_stack == 1:  # rows of the [size * num_envs, *frame] view: take beats 2-D fancy indexing
            frames = self.frames.reshape(-1, *self.frames.shape[2:])
            return frames.take(t * self.num_envs + env, axis=0)
        # Walk back while the episode goes on; repeat the earliest frame before its start,
        # as gymnasium's FrameStackObservation(padding_type="reset") does.
        index = np.empty((len(t), self.frame_stack), dtype=np.int64)
        cur = t.copy()
        index[:, -1] = cur
        for k in range(2, self.frame_stack + 1):
            step_back = self.link[cur, env]
            cur = np.where(step_back, (cur - 1) % self.size, cur)
            index[:, -k] = cur
        return self.frames[index, env[:, None]]  # (B, stack, H, W)

    def _sample_slots(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Uniform flat indices of valid slots whose n-step window is written."""
        filled = self.size if self.full else self.pos
        out = np.empty(0, dtype=np.int64)
        while len(out) < batch_size:
            flat = rng.integers(0, filled * self.num_envs, size=2 * batch_size)
            out = np.concatenate([out, flat[self._sampleable(flat)]])
        return out[:batch_size]

    def _sampleable(self, flat: np.ndarray) -> np.ndarray:
        t = flat // self.num_envs
        # The oldest frame_stack slots may have lost their history to overwriting.
        age = (self.pos - t) % self.size
        return self.valid.ravel().take(flat) & (age < self.size - self.frame_stack + 1)

    def sample(self, batch_size: int, rng: np.random.Generator, beta: float = 1.0) -> ReplayBatch:
        flat = self._sample_slots(batch_size, rng)
        weights = np.ones(batch_size, dtype=np.float32)
        return self._gather(flat, weights)

    def _gather(self, flat: np.ndarray, weights: np.ndarray) -> ReplayBatch:
        t, env = np.divmod(flat, self.num_envs)
        # The n-step window of each sample, (B, n): step k counts while the episode goes on
        # and slot t+k holds a written transition (the newest slot has none yet). Per-step
        # arrays are [size, num_envs], so cell (t, env) is ravel()[t * num_envs + env].
        window = (t[:, None] + np.arange(self.n_step)) % self.size
        cells = window * self.num_envs + env[:, None]  # (B, n)
        dones = self.dones.ravel().take(cells)
        cont = np.ones_like(dones)
        cont[:, 1:] = ~dones[:, :-1] & self.valid.ravel().take(cells[:, 1:])
        alive = np.logical_and.accumulate(cont, axis=1)  # (B, n)
        rewards = self.rewards.ravel().take(cells)
        returns = (alive * rewards * self._gamma_powers[: self.n_step]).sum(axis=1)
        steps = alive.sum(axis=1)  # m >= 1
        rows = np.arange(len(t))
        last = window[rows, steps - 1]
        terminated = self.terminations.ravel().take(cells[rows, steps - 1])
        discounts = np.where(terminated, 0.0, self._gamma_powers[steps])
        next_t = (last + 1) % self.size
        to = self._to_tensor
        return ReplayBatch(
            obs=to(self._stack(t, env)),
            actions=to(self.actions.ravel().take(flat)),
            returns=to(returns.astype(np.float32)),
            next_obs=to(self._stack(next_t, env)),
            discounts=to(discounts.astype(np.float32)),
            weights=to(weights),
            indices=flat,
        )

    def _to_tensor(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if self.device.type == "cpu":
            return tensor
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Uniform replay keeps no priorities."""

    # -- saving ----------------------------------------------------------------------------

    _ARRAYS = ("frames", "actions", "rewards", "terminations", "dones", "valid", "link")

    def state_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Arrays and scalar metadata that restore this buffer exactly (for resuming)."""
        arrays = {name: getattr(self, name) for name in self._ARRAYS}
        meta = {"pos": str(self.pos), "full": str(int(self.full)), "size": str(self.size),
                "num_envs": str(self.num_envs), "kind": type(self).__name__}
        return arrays, meta

    def load_state_arrays(self, arrays: dict[str, np.ndarray], meta: dict[str, str]) -> None:
        if int(meta["size"]) != self.size or int(meta["num_envs"]) != self.num_envs:
            raise InputError(
                f"saved replay has {meta['size']} slots x {meta['num_envs']} envs; this run has "
                f"{self.size} x {self.num_envs}: resume with the run's own buffer_size and num_envs"
            )
        for name in self._ARRAYS:
            getattr(self, name)[...] = arrays[name]
        self.pos, self.full = int(meta["pos"]), bool(int(meta["full"]))

    def save(self, path: Path, token: str = "") -> Path:
        """Write the buffer to ``path`` (safetensors), atomically."""
        return save_replay(self, Path(path), token)

    def load(self, path: Path) -> str:
        """Fill the buffer from a file written by :meth:`save`; returns its token."""
        return load_replay(self, Path(path))

    def restart(self, obs: np.ndarray, states: np.ndarray | None = None) -> None:
        """The environments start new episodes (a resume that could not restore them): a fresh stream."""
        self.skip_slot()
        self.start(obs)


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay (Schaul et al. 2016) over transitions (``rlgen.dqn.sum_tree.Priorities``)."""

    def __init__(self, *args, alpha: float = 0.6, eps: float = 1e-6, **kwargs):
        super().__init__(*args, **kwargs)
        self.priorities = Priorities(self.size * self.num_envs, alpha, eps)

    def _flat(self, t: int) -> np.ndarray:
        return t * self.num_envs + np.arange(self.num_envs)

    def _on_valid(self, t: int, valid: np.ndarray) -> None:
        self.priorities.add(self._flat(t), valid)

    def _on_overwrite(self, t: int) -> None:
        none = np.zeros(self.num_envs, dtype=bool)
        self.priorities.add(self._flat(t), none)
        # The slots whose stacks reached into slot t lose their history: drop them.
        oldest = (t + 1) % self.size
        for k in range(self.frame_stack - 1):
            self.priorities.add(self._flat((oldest + k) % self.size), none)

    def sample(self, batch_size: int, rng: np.random.Generator, beta: float = 1.0) -> ReplayBatch:
        flat, weights = self.priorities.sample(batch_size, rng, len(self), beta)
        return self._gather(flat, weights)

    def state_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        arrays, meta = super().state_arrays()
        more_arrays, more_meta = self.priorities.state()
        return {**arrays, **more_arrays}, {**meta, **more_meta}

    def load_state_arrays(self, arrays: dict[str, np.ndarray], meta: dict[str, str]) -> None:
        super().load_state_arrays(arrays, meta)
        self.priorities.load_state(arrays, meta)

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        self.priorities.update(indices, td_errors)
