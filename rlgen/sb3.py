"""rlgen backbones as Stable-Baselines3 features extractors.

    >>> from stable_baselines3 import DQN
    >>> from rlgen.sb3 import RlgenFeaturesExtractor
    >>> model = DQN("MlpPolicy", "CartPole-v1", policy_kwargs=dict(
    ...     features_extractor_class=RlgenFeaturesExtractor,
    ...     features_extractor_kwargs=dict(backbone={"kind": "mlp", "hidden_sizes": [64]}),
    ...     net_arch=[],  # optional: no extra SB3 MLP between the backbone and the Q head
    ... ))

Image scaling: SB3 preprocesses observations before any features extractor
sees them. A uint8 Box with bounds [0, 255] and three dimensions is an image
to SB3 and, with ``normalize_images=True`` (its default), arrives as float
``obs / 255``; every other Box arrives as ``obs.float()``. rlgen's CNNs scale
only *uint8* input by 1/255 and use float input as it is, so images are
scaled exactly once either way, and the features equal those the same rlgen
backbone computes from the raw uint8 frames inside rlgen. With
``normalize_images=False`` SB3 passes pixels as floats in [0, 255] unscaled:
set it only for observations that are not pixels.

Discrete, MultiDiscrete and MultiBinary observations reach the extractor as
SB3's one-hot / flattened float vectors, so the backbone is built for that
flat vector, not for the raw space.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from rlgen.backbones import BackboneConfig, build_backbone, is_sequence_model
from rlgen.config import from_dict
from rlgen.errors import InputError


def _backbone_input(observation_space: gym.Space) -> gym.Space | tuple[int, ...]:
    """What SB3's ``preprocess_obs`` hands the extractor, as a space or a shape for ``build_backbone``."""
    if isinstance(observation_space, gym.spaces.Box):
        return observation_space
    if isinstance(observation_space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        return (get_flattened_obs_dim(observation_space),)  # one-hot / flattened float vectors
    raise InputError(
        f"RlgenFeaturesExtractor takes Box, Discrete, MultiDiscrete or MultiBinary observations; got a "
        f"{type(observation_space).__name__} space. For Dict spaces use SB3's CombinedExtractor."
    )


class RlgenFeaturesExtractor(BaseFeaturesExtractor):
    """Any feed-forward rlgen backbone (mlp, nature/small/impala CNN) as an SB3 features extractor.

    Args:
        observation_space: the policy's observation space (SB3 passes it; channel-last
            images are already transposed to (C, H, W) by SB3's ``VecTransposeImage``).
        backbone: a ``BackboneConfig`` or a dict of its fields, e.g. ``{"kind": "small_cnn"}``.

    Shapes: ``forward`` maps (B, *obs_shape) float observations to (B, features_dim)
    with ``features_dim = backbone.out_dim``.

    Raises:
        ValueError: a bad backbone field, a sequence backbone (lstm, gru, transformer:
            SB3's DQN feeds single observations, not sequences), or a space the
            backbone cannot take.
    """

    def __init__(self, observation_space: gym.Space, backbone: dict[str, Any] | BackboneConfig | None = None):
        config = backbone if isinstance(backbone, BackboneConfig) else from_dict(BackboneConfig, backbone or {})
        # nn.Module attributes can only be set after BaseFeaturesExtractor.__init__, which
        # needs features_dim, which needs the backbone: build it first, attach it after.
        module = build_backbone(config, _backbone_input(observation_space))
        if is_sequence_model(module):
            raise InputError(
                f"backbone.kind={config.kind!r} takes (B, T, ...) sequences, but SB3 feeds single "
                "observations; use mlp, nature_cnn, small_cnn or impala_cnn"
            )
        super().__init__(observation_space, features_dim=module.out_dim)
        self.backbone = module
        self.backbone_config = config

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.backbone(observations)  # (B, features_dim)
