"""Q-networks: any rlgen backbone followed by a plain or dueling Q head."""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from rlgen.backbones import build_backbone
from rlgen.dqn.config import DQNConfig


class QNetwork(nn.Module):
    """Maps observations (B, *obs_shape) to action values (B, num_actions).

    The dueling head is one ``Linear`` to ``1 + num_actions`` outputs, V then A: the same
    function and initial distribution as two separate heads, in one matmul (a small update
    on CPU pays per kernel, and the head runs three times an update). Checkpoints written
    with the separate ``value`` / ``advantage`` heads load into it.
    """

    def __init__(self, backbone: nn.Module, num_actions: int, dueling: bool = False):
        super().__init__()
        self.backbone = backbone
        self.dueling = dueling
        self.num_actions = num_actions
        if dueling:
            self.head = nn.Linear(backbone.out_dim, 1 + num_actions)
        else:
            self.q = nn.Linear(backbone.out_dim, num_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.backbone(obs)  # (B, F)
        if not self.dueling:
            return self.q(features)
        out = self.head(features)  # (B, 1 + A)
        value, advantage = out[:, :1], out[:, 1:]
        # Subtracting the mean makes V and A identifiable (Wang et al. 2016, eq. 9).
        return value + advantage - advantage.mean(dim=1, keepdim=True)

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
