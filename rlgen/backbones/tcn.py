"""Temporal convolution network: causal dilated 1D convolutions in residual blocks (Bai et al., 2018).

The sequence backbone of WaveNet (van den Oord et al., 2016) and of "An Empirical
Evaluation of Generic Convolutional and Recurrent Networks for Sequence Modeling":
block i has two convolutions of kernel k and dilation 2^i, each padded on the left only
(so step t sees steps <= t), a residual connection (a 1x1 convolution where the width
changes), and the receptive field grows exponentially with depth:
``1 + 2 (k - 1) (2^L - 1)`` steps for L blocks.

Same contract as the transformer backbone: (B, T, *obs) and an optional (B, T) padding
mask in, (B, T, out_dim) per-step features out. Padding steps are zeroed after every
layer, so a window that is padded before its episode's start gives its real steps
exactly what the convolutions' own zero padding would: nothing from another episode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rlgen.backbones.config import BackboneConfig
from rlgen.backbones.mlp import make_activation, mlp_layers
from rlgen.backbones.spaces import InputSpec, flat_features
from rlgen.errors import InputError


class TemporalBlock(nn.Module):
    """Two causal dilated convolutions and a residual connection; (B, C_in, T) -> (B, C_out, T)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, config: BackboneConfig):
        super().__init__()
        self.left = (kernel_size - 1) * dilation  # causal: all the padding goes before the first step
        self.conv1 = nn.Conv1d(c_in, c_out, kernel_size, dilation=dilation)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel_size, dilation=dilation)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.act = make_activation(config.activation)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, T), keep (B, 1, T) with 0 at padding steps."""
        h = self.drop(self.act(self.conv1(F.pad(x, (self.left, 0))))) * keep  # (B, C_out, T)
        h = self.drop(self.act(self.conv2(F.pad(h, (self.left, 0))))) * keep
        return self.act(h + self.skip(x)) * keep


class TCNBackbone(nn.Module):
    """Per-step MLP pre-encoder (when hidden_sizes is non-empty) -> temporal blocks.

    ``out_dim`` is the last block's width; ``receptive_field`` the number of steps an
    output can see (itself included).
    """

    def __init__(self, config: BackboneConfig, spec: InputSpec):
        super().__init__()
        self.spec = spec
        self.encoder, width = mlp_layers(spec.flat_dim, config)
        blocks = []
        for i, channels in enumerate(config.tcn_channels):
            blocks.append(TemporalBlock(width, channels, config.kernel_size, 2**i, config))
            width = channels
        self.blocks = nn.ModuleList(blocks)
        self.out_dim = width
        self.receptive_field = 1 + 2 * (config.kernel_size - 1) * (2 ** len(blocks) - 1)
        self.max_len = config.max_len

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode a batch of sequences.

        Args:
            x: (B, T, *obs_shape) observations ((B, T) indices for a Discrete space).
            padding_mask: (B, T) bool, True marks padding steps; None = no padding.

        Returns:
            (B, T, out_dim); padding steps are zeros.
        """
        feats = flat_features(x, self.spec, lead=2, who="tcn")  # (B, T, flat_dim)
        batch, steps = feats.shape[:2]
        if steps > self.max_len:
            raise InputError(f"tcn got a sequence of {steps} steps; max_len is {self.max_len}")
        if padding_mask is None:
            keep = feats.new_ones(batch, 1, steps)
        else:
            if tuple(padding_mask.shape) != (batch, steps):
                raise InputError(f"padding_mask must have shape (B, T) = {(batch, steps)}; got {tuple(padding_mask.shape)}")
            keep = (~padding_mask.bool()).to(feats.dtype).unsqueeze(1)  # (B, 1, T)
        h = self.encoder(feats).transpose(1, 2) * keep  # (B, C, T)
        for block in self.blocks:
            h = block(h, keep)
        return h.transpose(1, 2)  # (B, T, out_dim)
