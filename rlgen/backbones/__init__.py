"""Shared backbones: one contract, ``build_backbone(config, input_space) -> nn.Module`` with ``out_dim``.

Backbones know nothing of RL or generation. Feed-forward kinds map (B, *obs)
to (B, out_dim); ``lstm`` / ``gru`` map (B, T, *obs) plus an explicit state to
(B, T, out_dim) and a new state; ``transformer`` maps (B, T, *obs) to
(B, T, out_dim) or a pooled (B, out_dim); ``tcn`` maps (B, T, *obs) to (B, T, out_dim). Use ``is_recurrent`` /
``is_sequence_model`` to branch on which call a module expects.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium
from torch import nn

from rlgen.backbones.cnn import CNN, impala_cnn, nature_cnn, small_cnn
from rlgen.backbones.config import KINDS, BackboneConfig
from rlgen.backbones.mlp import MLP
from rlgen.backbones.rnn import RecurrentBackbone, State
from rlgen.backbones.spaces import InputSpec, input_spec
from rlgen.backbones.tcn import TCNBackbone
from rlgen.backbones.transformer import TransformerBackbone

__all__ = [
    "CNN",
    "MLP",
    "BackboneConfig",
    "InputSpec",
    "RecurrentBackbone",
    "State",
    "TCNBackbone",
    "TransformerBackbone",
    "build_backbone",
    "input_spec",
    "is_recurrent",
    "is_sequence_model",
]

_BUILDERS: dict[str, Callable[[BackboneConfig, InputSpec], nn.Module]] = {
    "mlp": MLP,
    "nature_cnn": nature_cnn,
    "small_cnn": small_cnn,
    "impala_cnn": impala_cnn,
    "lstm": RecurrentBackbone,
    "gru": RecurrentBackbone,
    "transformer": TransformerBackbone,
    "tcn": TCNBackbone,
}
assert set(_BUILDERS) == set(KINDS)


def build_backbone(config: BackboneConfig, input_space: gymnasium.spaces.Space | tuple[int, ...]) -> nn.Module:
    """Build the backbone ``config.kind`` for inputs from ``input_space``.

    Args:
        config: which backbone and its sizes; validated here.
        input_space: a gymnasium Box or Discrete, or a plain shape tuple (one item, no batch dim).

    Returns:
        An ``nn.Module`` with an ``out_dim: int`` attribute (features per item / per step).

    Raises:
        ValueError: a bad config value, an unsupported space, or a shape the kind cannot take.
    """
    config.validate()
    return _BUILDERS[config.kind](config, input_spec(input_space))


def _unwrap(module: nn.Module) -> nn.Module:
    # torch.compile wraps the module; look through it so callers can branch either way.
    return getattr(module, "_orig_mod", module)


def is_recurrent(module: nn.Module) -> bool:
    """True for lstm / gru backbones: ``forward(x, state, resets) -> (features, state)``."""
    return isinstance(_unwrap(module), RecurrentBackbone)


def is_sequence_model(module: nn.Module) -> bool:
    """True for backbones that take (B, T, *obs) sequences: lstm, gru, transformer and tcn."""
    return isinstance(_unwrap(module), (RecurrentBackbone, TransformerBackbone, TCNBackbone))
