"""Convolutional backbones for channel-first images: nature_cnn, small_cnn, impala_cnn.

All three share one ``CNN`` module (conv stack -> flatten -> optional linear
layer); the builders differ only in the conv stack and in the input sizes
they accept. The flatten size is found by a dry forward pass, so no builder
does the conv arithmetic by hand.
"""

from __future__ import annotations

import torch
from torch import nn

from rlgen.backbones.config import CNN_KINDS, BackboneConfig
from rlgen.backbones.mlp import make_activation
from rlgen.backbones.spaces import InputSpec, check_input
from rlgen.errors import InputError

# What each kind expects, for the construction-time error message.
_EXPECTED = {
    "nature_cnn": "(C, 84, 84) channel-first (any H, W >= 36 works)",
    "small_cnn": "(C, H, W) channel-first, e.g. (4, 10, 10) for MinAtar or (1, 28, 28)",
    "impala_cnn": "(C, H, W) channel-first, e.g. (3, 64, 64)",
}
_HINT = {"nature_cnn": "Use the Atari wrappers or another backbone"}


class CNN(nn.Module):
    """Conv stack -> flatten -> (Linear -> activation).

    Input (B, C, H, W); uint8 inputs are pixels and are scaled by 1/255 here,
    float and bool inputs are used as they are. Output (B, out_dim).
    """

    def __init__(self, name: str, spec: InputSpec, convs: nn.Sequential, config: BackboneConfig):
        super().__init__()
        self.name = name
        self.spec = spec
        self.convs = convs
        with torch.no_grad():
            n_flat = convs(torch.zeros(1, *spec.shape)).flatten(1).shape[1]
        if config.features_dim > 0:
            # layer_norm: LayerNorm before the activation, as PQN's networks (Gallici et al. 2024) need.
            norm = [nn.LayerNorm(config.features_dim)] if config.layer_norm else []
            self.head: nn.Module = nn.Sequential(
                nn.Linear(n_flat, config.features_dim), *norm, make_activation(config.activation)
            )
            self.out_dim = config.features_dim
        else:
            self.head = nn.Identity()
            self.out_dim = n_flat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.spec, lead=1, who=self.name)
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        elif not x.is_floating_point() or x.dtype == torch.float64:
            x = x.float()
        x = self.convs(x)  # (B, C', H', W')
        return self.head(x.flatten(1))  # (B, out_dim)


def image_shape(spec: InputSpec, kind: str, min_hw: int) -> tuple[int, int, int]:
    """Check that ``spec`` is a channel-first image at least ``min_hw`` pixels on a side."""
    others = ", ".join(k for k in ("mlp", *CNN_KINDS) if k != kind)
    prefix = f"{kind} expects observations of shape {_EXPECTED[kind]}; got {spec.describe()}."
    hint = f" {_HINT.get(kind, 'Use another backbone')}: {others}"
    if spec.n_categories is not None or len(spec.shape) != 3:
        raise InputError(prefix + hint)
    c, h, w = spec.shape
    # A trailing 1/3/4 after a big first dim is almost surely (H, W, C) from an
    # unwrapped env (MinAtar, raw Atari, PIL images).
    if w in (1, 3, 4) and c > 4:
        raise InputError(f"{prefix} It looks channel-last (H, W, C); transpose it to (C, H, W).{hint}")
    if h < min_hw or w < min_hw:
        raise InputError(prefix + hint)
    return c, h, w


def nature_cnn(config: BackboneConfig, spec: InputSpec) -> CNN:
    """The DQN Nature network (Mnih et al., 2015) for 84x84 stacked frames."""
    c, _, _ = image_shape(spec, "nature_cnn", min_hw=36)
    act = config.activation
    convs = nn.Sequential(
        nn.Conv2d(c, 32, kernel_size=8, stride=4),
        make_activation(act),
        nn.Conv2d(32, 64, kernel_size=4, stride=2),
        make_activation(act),
        nn.Conv2d(64, 64, kernel_size=3, stride=1),
        make_activation(act),
    )
    return CNN("nature_cnn", spec, convs, config)


def small_cnn(config: BackboneConfig, spec: InputSpec) -> CNN:
    """3x3 convs (padding 1), one per entry of ``channels``, for small grids and images.

    A conv strides by 2 only while its input is at least 12 px on the short
    side, so 10x10 MinAtar grids keep full resolution (every cell matters)
    while 28/32 px images shrink to 7/8 px before the linear layer.
    """
    c, h, w = image_shape(spec, "small_cnn", min_hw=1)
    layers: list[nn.Module] = []
    for out_c in config.conv_channels():
        stride = 2 if min(h, w) >= 12 else 1
        layers += [nn.Conv2d(c, out_c, kernel_size=3, stride=stride, padding=1), make_activation(config.activation)]
        c, h, w = out_c, (h + stride - 1) // stride, (w + stride - 1) // stride  # ceil(H / stride)
    return CNN("small_cnn", spec, nn.Sequential(*layers), config)


class ResidualBlock(nn.Module):
    """x + conv(act(conv(act(x)))), the IMPALA residual block; shape (B, C, H, W) kept."""

    def __init__(self, channels: int, activation: str):
        super().__init__()
        self.body = nn.Sequential(
            make_activation(activation),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            make_activation(activation),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def impala_cnn(config: BackboneConfig, spec: InputSpec) -> CNN:
    """IMPALA residual CNN (Espeholt et al., 2018): per stage conv -> max-pool /2 -> 2 residual blocks."""
    c, _, _ = image_shape(spec, "impala_cnn", min_hw=1)
    layers: list[nn.Module] = []
    for out_c in config.conv_channels():
        layers += [
            nn.Conv2d(c, out_c, kernel_size=3, padding=1),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),  # (B, C, ceil(H/2), ceil(W/2))
            ResidualBlock(out_c, config.activation),
            ResidualBlock(out_c, config.activation),
        ]
        c = out_c
    layers.append(make_activation(config.activation))
    return CNN("impala_cnn", spec, nn.Sequential(*layers), config)
