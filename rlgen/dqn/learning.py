"""What the DQN loop builds before its first step and the learner's small pieces.

- ``make_replay``: the transition or sequence buffer the Q-network needs, after
  checking that it fits in memory;
- ``make_loss``: the TD loss that matches the buffer's batches;
- ``make_optimization``: optimizer, LR schedule over all updates, gradient steps per phase;
- ``update_target``: hard or Polyak target updates;
- ``BestSnapshot``: ``keep_best``'s snapshot, saved with the checkpoint.
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import torch

from rlgen.backbones.config import WINDOW_KINDS
from rlgen.dqn.config import DQNConfig
from rlgen.dqn.losses import SequenceTDLoss, TDLoss, TransitionTDLoss
from rlgen.dqn.recurrent_networks import RecurrentQNetwork, is_sequence_config
from rlgen.dqn.replay import PrioritizedReplayBuffer, ReplayBuffer
from rlgen.dqn.sequence_replay import (
    PrioritizedSequenceReplayBuffer,
    SequenceReplayBuffer,
)
from rlgen.errors import RlgenError
from rlgen.training import make_lr_schedule, make_optimizer


def context_steps(config: DQNConfig) -> int:
    """Chunk steps before the trained ones: the RNN burn-in, or the window (transformer, tcn) minus one."""
    return config.context_length - 1 if config.backbone.kind in WINDOW_KINDS else config.burn_in


def stores_state(config: DQNConfig, q_net: torch.nn.Module) -> bool:
    """Sequence replay keeps the actor's recurrent state per slot (R2D2's stored state)."""
    return config.store_state and isinstance(q_net, RecurrentQNetwork)


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def replay_bytes(config: DQNConfig, obs_space: gym.spaces.Box, frame_stack: int, state_dim: int) -> int:
    """Bytes the replay arrays of ``config`` take (what ``make_replay`` would allocate)."""
    frame = int(np.prod(obs_space.shape[1:] if frame_stack > 1 else obs_space.shape, dtype=np.int64))
    itemsize = 1 if obs_space.dtype == np.bool_ else np.dtype(obs_space.dtype).itemsize
    per_slot = frame * itemsize + 8 + 4 + 5 + 4 * state_dim  # obs, action, reward, flags, stored state
    if config.prioritized:
        per_slot += 16  # the sum tree: two float64 nodes per leaf
    return int(config.buffer_size) * per_slot


def check_replay_fits(config: DQNConfig, obs_space: gym.spaces.Box, frame_stack: int, state_dim: int) -> None:
    """Raise before allocating a replay that cannot fit in this machine's memory."""
    need, have = replay_bytes(config, obs_space, frame_stack, state_dim), _memory_bytes()
    if have is not None and need > have:
        raise RlgenError(
            f"buffer_size={config.buffer_size:,} needs {need / 2**30:,.1f} GiB of replay memory and this machine "
            f"has {have / 2**30:,.1f} GiB; lower buffer_size (e.g. --set buffer_size={max(1, int(config.buffer_size * have / need / 2)):,})"
        )


def check_network_fits(config: DQNConfig, obs_space: gym.spaces.Box, num_actions: int) -> None:
    """Raise before building a Q-network that cannot fit in memory (counted on the meta device, no allocation)."""
    from rlgen.dqn.networks import build_network

    with torch.device("meta"):
        params = sum(p.numel() for p in build_network(config, obs_space, num_actions).parameters())
    need, have = params * 4 * 4, _memory_bytes()  # online + target + Adam's two moments, fp32
    if have is not None and need > have:
        raise RlgenError(
            f"backbone {config.backbone.kind} with these sizes has {params:,} parameters: {need / 2**30:,.1f} GiB "
            f"with its target network and optimizer, and this machine has {have / 2**30:,.1f} GiB; use smaller layers"
        )


def make_replay(config: DQNConfig, obs_space: gym.spaces.Box, frame_stack: int, q_net: torch.nn.Module,
                device: torch.device):
    """The replay buffer for ``config``: transitions for feed-forward nets, chunks for memory nets."""
    state_dim = q_net.state_dim if stores_state(config, q_net) else 0
    check_replay_fits(config, obs_space, frame_stack, state_dim)
    prioritized = dict(alpha=config.per_alpha, eps=config.per_eps) if config.prioritized else {}
    if is_sequence_config(config):
        kind = PrioritizedSequenceReplayBuffer if config.prioritized else SequenceReplayBuffer
        return kind(
            capacity=config.buffer_size, num_envs=config.num_envs, obs_shape=obs_space.shape,
            obs_dtype=np.uint8 if obs_space.dtype == np.bool_ else obs_space.dtype,
            burn_in=context_steps(config), sequence_length=config.sequence_length, n_step=config.n_step,
            gamma=config.gamma, state_dim=state_dim, device=device, **prioritized,
        )
    kind = PrioritizedReplayBuffer if config.prioritized else ReplayBuffer
    return kind(
        capacity=config.buffer_size, num_envs=config.num_envs, obs_shape=obs_space.shape,
        obs_dtype=obs_space.dtype, frame_stack=frame_stack, n_step=config.n_step, gamma=config.gamma,
        device=device, **prioritized,
    )


def learning_starts(config: DQNConfig, buffer) -> int:
    """Environment steps before the first update: a sequence buffer needs whole chunks first."""
    chunk = getattr(buffer, "chunk_length", 0)
    return max(config.learning_starts, 2 * chunk * config.num_envs)


def make_loss(config: DQNConfig) -> TDLoss:
    if is_sequence_config(config):
        return SequenceTDLoss(config, context_steps(config))
    return TransitionTDLoss(config)


def make_optimization(config: DQNConfig, q_net: torch.nn.Module | list[torch.Tensor]):
    """The optimizer, its LR schedule over all updates, and the gradient steps per training phase.

    ``q_net``: the Q-network, or the tensors to optimize (the stacked parameters of many seeds).
    ``gradient_steps`` <= 0 means as many updates as transitions collected (SB3's -1).
    """
    params = q_net.parameters() if isinstance(q_net, torch.nn.Module) else q_net
    optimizer = make_optimizer(
        config.optimizer, params, config.learning_rate,
        weight_decay=config.weight_decay, eps=config.adam_eps,
    )
    steps_per_phase = config.gradient_steps if config.gradient_steps > 0 else config.train_freq * config.num_envs
    total_updates = max(1, (config.total_timesteps - config.learning_starts) // (config.train_freq * config.num_envs)
                        * steps_per_phase)
    lr_schedule = make_lr_schedule(
        optimizer, config.lr_schedule, total_steps=total_updates,
        warmup_steps=config.lr_warmup_steps, final_factor=config.lr_final_factor,
    )
    return optimizer, lr_schedule, steps_per_phase


def update_target(
    online: torch.nn.Module | list[torch.Tensor], target: torch.nn.Module | list[torch.Tensor], tau: float
) -> None:
    """Hard copy (tau = 1) or Polyak averaging of the online parameters into the target's.

    Takes modules, or their parameter lists listed once by a hot loop.
    """
    if isinstance(online, torch.nn.Module):
        online, target = list(online.parameters()), list(target.parameters())
    with torch.no_grad():
        if tau >= 1.0:
            torch._foreach_copy_(target, online)
        else:
            torch._foreach_lerp_(target, online, tau)


class BestSnapshot:
    """Keeps the weights that scored best (``keep_best``) and finishes on them if they beat the final ones.

    Scored by the moving mean of the recent training returns (``keep_best_by=train``: DQN's
    greedy policy can dip late in training, and those episodes are already paid for), or by
    the evaluations during training (``keep_best_by=eval``, SB3's EvalCallback best model).
    """

    def __init__(self, window: int):
        self.window = window
        self.mean = -float("inf")
        self.step = -1
        self.state: dict[str, torch.Tensor] | None = None

    def observe(self, returns: list[float], q_net: torch.nn.Module, global_step: int) -> None:
        """After training episodes ended: score the network by the last ``window`` returns."""
        if len(returns) >= self.window:
            self.observe_score(float(np.mean(returns[-self.window:])), q_net, global_step)

    def observe_score(self, score: float, q_net: torch.nn.Module, global_step: int) -> None:
        self.observe_state(score, q_net.state_dict(), global_step)

    def observe_state(self, score: float, state: dict[str, torch.Tensor], global_step: int) -> None:
        """A network's weights ``state`` scored ``score``; kept (copied) if it is the best so far."""
        if score >= self.mean:  # ties go to the later, longer-trained network
            self.mean, self.step = score, global_step
            self.state = {k: v.detach().clone() for k, v in state.items()}

    def training_score(self, returns: list[float]) -> float:
        """The final network's score by its training returns (``keep_best_by=train``)."""
        return float(np.mean(returns[-self.window:])) if len(returns) >= self.window else -float("inf")

    def finish(self, final_score: float, q_net: torch.nn.Module, target_net: torch.nn.Module,
               logger, global_step: int) -> None:
        """At the end of training: go back to the snapshot if it scored better than ``final_score``
        (the final network's), and log which one was kept."""
        if self.restore_if_better(final_score, q_net, target_net):
            logger.scalar("charts/kept_best_step", self.step, global_step)
            logger.scalar("charts/kept_best_return", self.mean, global_step)

    def restore_if_better(self, final_score: float, q_net: torch.nn.Module, target_net: torch.nn.Module) -> bool:
        if self.state is None or final_score >= self.mean:
            return False
        q_net.load_state_dict(self.state)
        target_net.load_state_dict(self.state)
        return True

    # The snapshot goes into the checkpoint, so a resumed run can still go back to it.
    def state_dict(self) -> tuple[dict, dict[str, torch.Tensor]]:
        meta = {"mean": self.mean if self.state is not None else None, "step": self.step}
        tensors = {f"best.{k}": v for k, v in (self.state or {}).items()}
        return meta, tensors

    def load_state_dict(self, meta: dict, tensors: dict[str, torch.Tensor]) -> None:
        self.step = int(meta["step"])
        self.mean = -float("inf") if meta["mean"] is None else float(meta["mean"])
        state = {k[len("best."):]: v.clone() for k, v in tensors.items() if k.startswith("best.")}
        self.state = state or None
