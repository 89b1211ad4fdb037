"""Multi-layer perceptron backbone, also the per-step pre-encoder of sequence models."""

from __future__ import annotations

import torch
from torch import nn

from rlgen.backbones.config import ACTIVATIONS, BackboneConfig
from rlgen.backbones.spaces import InputSpec, flat_features
from rlgen.errors import InputError


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name (one of ``ACTIVATIONS``)."""
    modules: dict[str, type[nn.Module]] = {
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "elu": nn.ELU,
        "leaky_relu": nn.LeakyReLU,
    }
    if name not in modules:
        raise InputError(f"activation={name!r} is not allowed; choose one of {', '.join(ACTIVATIONS)}")
    return modules[name]()


def mlp_layers(in_dim: int, config: BackboneConfig) -> tuple[nn.Sequential, int]:
    """[Linear -> (LayerNorm) -> activation -> (Dropout)] per entry of ``config.hidden_sizes``.

    Returns:
        The layers (an empty Sequential, i.e. identity, when hidden_sizes is empty)
        and their output width.
    """
    layers: list[nn.Module] = []
    width = in_dim
    for size in config.hidden_sizes:
        layers.append(nn.Linear(width, size))
        if config.layer_norm:
            layers.append(nn.LayerNorm(size))
        layers.append(make_activation(config.activation))
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
        width = size
    return nn.Sequential(*layers), width


class MLP(nn.Module):
    """Flattens each observation and applies ``mlp_layers``.

    Input (B, *obs_shape) (or (B,) integer indices for a Discrete space);
    output (B, out_dim) with out_dim the last hidden size (the flat input
    size when hidden_sizes is empty).
    """

    def __init__(self, config: BackboneConfig, spec: InputSpec):
        super().__init__()
        self.spec = spec
        self.net, self.out_dim = mlp_layers(spec.flat_dim, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = flat_features(x, self.spec, lead=1, who="mlp")  # (B, flat_dim)
        return self.net(x)  # (B, out_dim)

    def batched_forward(self, part, tensor, x: torch.Tensor) -> torch.Tensor:
        """N stacked copies (``rlgen.training.stacked``): (N, B, *obs_shape) -> (N, B, out_dim)."""
        return part("net", flat_features(x, self.spec, lead=2, who="mlp"))
