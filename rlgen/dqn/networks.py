"""Q-networks: any rlgen backbone followed by a plain or dueling Q head."""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn
from torch.nn import functional as F

from rlgen.backbones import build_backbone
from rlgen.dqn.config import DQNConfig


class QNetwork(nn.Module):
    """Maps observations (B, *obs_shape) to action values (B, num_actions).

    The dueling head is one ``Linear`` to ``1 + num_actions`` outputs, V then A (the same
    initial distribution as two separate heads), and Q = V + A - mean(A) (Wang et al. 2016,
    eq. 9: the mean makes V and A identifiable) is linear in them, so it is one fixed
    matrix product: two kernels where two heads and the mean took six (a small update on
    CPU pays per kernel, and the head runs three times an update). Checkpoints written
    with the separate ``value`` / ``advantage`` heads load into it.
    """

    def __init__(self, backbone: nn.Module, num_actions: int, dueling: bool = False):
        super().__init__()
        self.backbone = backbone
        self.dueling = dueling
        self.num_actions = num_actions
        if dueling:
            self.head = nn.Linear(backbone.out_dim, 1 + num_actions)
            # Q_j = V + A_j - mean(A): row j of [1 | I - 1/A]. Not saved: it follows from num_actions.
            combine = torch.cat([torch.ones(num_actions, 1), torch.eye(num_actions) - 1.0 / num_actions], dim=1)
            self.register_buffer("combine", combine, persistent=False)
        else:
            self.q = nn.Linear(backbone.out_dim, num_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.backbone(obs)  # (B, F)
        if not self.dueling:
            return self.q(features)
        return F.linear(self.head(features), self.combine)  # [V, A] (B, 1 + A) -> Q (B, A)

    def batched_forward(self, part, tensor, obs: torch.Tensor) -> torch.Tensor:
        """N stacked copies (``rlgen.training.stacked``): (N, B, *obs_shape) -> (N, B, A)."""
        features = part("backbone", obs)
        if not self.dueling:
            return part("q", features)
        return torch.matmul(part("head", features), tensor("combine").transpose(1, 2))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The separate heads of earlier checkpoints, V's row first as in ``head``.
        for kind in ("weight", "bias"):
            value, advantage = f"{prefix}value.{kind}", f"{prefix}advantage.{kind}"
            if self.dueling and value in state_dict and advantage in state_dict:
                state_dict[f"{prefix}head.{kind}"] = torch.cat([state_dict.pop(value), state_dict.pop(advantage)])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def build_q_network(config: DQNConfig, obs_space: gym.spaces.Box, num_actions: int) -> QNetwork:
    backbone = build_backbone(config.backbone, obs_space)
    return QNetwork(backbone, num_actions, dueling=config.dueling)


def build_network(config: DQNConfig, obs_space: gym.spaces.Box, num_actions: int) -> nn.Module:
    """The Q-network ``config`` asks for: with memory for lstm / gru / transformer backbones."""
    from rlgen.dqn.recurrent_networks import (
        build_sequence_q_network,
        is_sequence_config,
    )

    if is_sequence_config(config):
        return build_sequence_q_network(config, obs_space, num_actions)
    return build_q_network(config, obs_space, num_actions)
