"""Q-networks: any rlgen backbone followed by a plain or dueling Q head."""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from rlgen.backbones import build_backbone
from rlgen.dqn.config import DQNConfig


class QNetwork(nn.Module):
    """Maps observations (B, *obs_shape) to action values (B, num_actions)."""

    def __init__(self, backbone: nn.Module, num_actions: int, dueling: bool = False):
        super().__init__()
        self.backbone = backbone
        self.dueling = dueling
        if dueling:
            self.value = nn.Linear(backbone.out_dim, 1)
            self.advantage = nn.Linear(backbone.out_dim, num_actions)
        else:
            self.q = nn.Linear(backbone.out_dim, num_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.backbone(obs)  # (B, F)
        if not self.dueling:
            return self.q(features)
        advantage = self.advantage(features)  # (B, A)
        # Subtracting the mean makes V and A identifiable (Wang et al. 2016, eq. 9).
        return self.value(features) + advantage - advantage.mean(dim=1, keepdim=True)


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
