"""TD losses behind one protocol: ``loss(q_net, target_net, batch) -> TDOutput``.

The feed-forward loss scores transitions, the sequence loss masked chunks
(R2D2); both return what the learner needs next: the loss to step on, one
priority per sampled item (for prioritized replay) and the mean Q of the taken
actions (for the log).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F

from rlgen.dqn.config import DQNConfig
from rlgen.dqn.recurrent_networks import RecurrentQNetwork, WindowQNetwork
from rlgen.dqn.replay import ReplayBatch
from rlgen.dqn.sequence_replay import SequenceBatch


class TDOutput(NamedTuple):
    loss: torch.Tensor  # () the loss to minimise (N,) for N stacked seeds
    priorities: torch.Tensor  # (B,) per sampled item, detached: TD errors, or a chunk's mixed |TD|
    q_mean: torch.Tensor  # () mean Q of the taken actions, detached


class TDLoss(Protocol):
    def __call__(self, q_net: torch.nn.Module, target_net: torch.nn.Module, batch) -> TDOutput: ...


def _elementwise(config: DQNConfig, q_taken: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if config.loss == "huber":
        return F.smooth_l1_loss(q_taken, targets, reduction="none")
    return F.mse_loss(q_taken, targets, reduction="none")


class TransitionTDLoss:
    """One-step (or n-step) TD loss of transitions, plain or double DQN.

    Shape-polymorphic over leading dimensions: a batch (B, ...) gives one loss; the stacked
    batches (N, B, ...) of N seeds with stacked networks (``rlgen.training.stacked``) give N
    losses, each seed's exactly what its own batch gives (every reduction is over the last,
    the sample, dimension).
    """

    def __init__(self, config: DQNConfig):
        self.config = config

    def __call__(self, q_net: torch.nn.Module, target_net: torch.nn.Module, batch: ReplayBatch) -> TDOutput:
        with torch.no_grad():
            next_target = target_net(batch.next_obs)  # (..., B, A)
            if self.config.double_q:
                # Double DQN (van Hasselt et al. 2016): the online net picks the next action, the
                # target net scores it. A separate no-grad pass (not one pass over [obs; next_obs])
                # keeps backward to B rows: backward is the largest cost of a small update on CPU.
                next_action = q_net(batch.next_obs).argmax(dim=-1, keepdim=True)  # (..., B, 1)
                next_values = next_target.gather(-1, next_action).squeeze(-1)
            else:
                next_values = next_target.max(dim=-1).values
        q_all = q_net(batch.obs)  # (..., B, A)
        targets = (batch.returns + batch.discounts * next_values).float()  # (..., B)
        q_taken = q_all.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1).float()  # (..., B)
        per_sample = _elementwise(self.config, q_taken, targets)
        loss = (batch.weights * per_sample if self.config.prioritized else per_sample).mean(dim=-1)
        return TDOutput(loss, (targets - q_taken).detach(), q_taken.detach().mean(dim=-1))


class SequenceTDLoss:
    """Masked TD loss of replayed chunks (R2D2).

    Args:
        config: the run's config.
        first: chunk steps before the trained ones (RNN burn-in / transformer context).
    """

    def __init__(self, config: DQNConfig, first: int):
        self.config = config
        self.first = first

    def __call__(self, q_net: RecurrentQNetwork | WindowQNetwork,
                 target_net: RecurrentQNetwork | WindowQNetwork, batch: SequenceBatch) -> TDOutput:
        config, first = self.config, self.first
        state = None
        if batch.state is not None and isinstance(q_net, RecurrentQNetwork):
            state = q_net.unpack_state(batch.state)
        steps = batch.actions.shape[1]  # T
        q_all = q_net.chunk_q(batch.obs, batch.resets, state, first)  # (B, L - first, A)
        bootstrap = (batch.bootstrap - first).unsqueeze(-1).expand(-1, -1, q_all.shape[-1])  # (B, T, A)
        with torch.no_grad():
            next_target = target_net.chunk_q(batch.obs, batch.resets, state, first).gather(1, bootstrap)  # (B, T, A)
            if config.double_q:
                # Double DQN: the online net picks the bootstrap action, the target net scores it.
                next_online = q_all.detach().gather(1, bootstrap)
                next_values = next_target.gather(2, next_online.argmax(dim=2, keepdim=True)).squeeze(2)  # (B, T)
            else:
                next_values = next_target.max(dim=2).values
        targets = (batch.returns + batch.discounts * next_values).float()  # (B, T)
        q_taken = q_all[:, :steps].gather(2, batch.actions.unsqueeze(2)).squeeze(2).float()  # (B, T)
        per_step = _elementwise(config, q_taken, targets)
        mask = batch.mask.to(per_step.dtype)  # (B, T)
        counts = mask.sum(dim=1)  # (B,)
        if config.prioritized:
            per_chunk = (per_step * mask).sum(dim=1) / counts.clamp(min=1.0)  # (B,)
            loss = (batch.weights * per_chunk).mean()
        else:
            loss = (per_step * mask).sum() / counts.sum().clamp(min=1.0)
        with torch.no_grad():
            td = (targets - q_taken).abs() * mask  # (B, T)
            priority = config.per_eta * td.max(dim=1).values + (1.0 - config.per_eta) * td.sum(dim=1) / counts.clamp(min=1.0)
            q_mean = (q_taken * mask).sum() / counts.sum().clamp(min=1.0)
        return TDOutput(loss, priority, q_mean)
