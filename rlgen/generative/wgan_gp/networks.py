"""WGAN-GP generators and critics: DCGAN-style convs (Radford et al., 2016) or MLPs.

Critics never use batch norm: it couples the examples of a batch, and the
gradient penalty is defined per example (Gulrajani et al., 2017, section 4).
The MLP pair (the paper's choice for its toy datasets) costs about a twentieth
of the conv pair's FLOPs on 28x28 images, which lets one CPU core train
Fashion-MNIST to good samples in under an hour.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from rlgen.backbones import BackboneConfig, build_backbone
from rlgen.errors import InputError
from rlgen.generative.vae.networks import ConvDecoder, MLPDecoder, scale_factor


class Generator(nn.Module):
    """z ~ N(0, I) of shape (B, Z) -> images (B, C, H, W) in [-1, 1].

    ``channels`` builds the DCGAN conv stack (with batch norm); ``hidden_sizes``
    instead builds an MLP.
    """

    def __init__(
        self,
        latent_dim: int,
        image_shape: tuple[int, int, int],
        channels: list[int] | None = None,
        hidden_sizes: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        if hidden_sizes is not None:
            self.decoder: nn.Module = MLPDecoder(latent_dim, image_shape, hidden_sizes)
        else:
            self.decoder = ConvDecoder(latent_dim, image_shape, channels, batch_norm=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.decoder(z))


class Critic(nn.Module):
    """Images (B, C, H, W) -> scores (B,); strided convs halve the side at each level.

    ``norm="layer"`` is the paper's suggested drop-in for batch norm (GroupNorm
    with one group normalises over C, H, W).
    """

    def __init__(self, image_shape: tuple[int, int, int], channels: list[int], norm: str = "none") -> None:
        super().__init__()
        c, h, w = image_shape
        factor = scale_factor(image_shape, channels, "critic")
        if norm not in ("none", "layer"):
            raise InputError(f"critic norm={norm!r} is not allowed; choose 'none' or 'layer'")
        layers: list[nn.Module] = [nn.Conv2d(c, channels[0], kernel_size=3, padding=1), nn.LeakyReLU(0.2)]
        for c_in, c_out in itertools.pairwise(channels):
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1),
                nn.GroupNorm(1, c_out) if norm == "layer" else nn.Identity(),
                nn.LeakyReLU(0.2),
            ]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels[-1] * (h // factor) * (w // factor), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)  # (B, C_last, H/f, W/f)
        return self.head(features.flatten(1)).squeeze(-1)  # (B,)


class MLPCritic(nn.Module):
    """Images (B, C, H, W) -> scores (B,) through an ``rlgen.backbones`` MLP with leaky ReLUs."""

    def __init__(self, image_shape: tuple[int, int, int], hidden_sizes: list[int], norm: str = "none") -> None:
        super().__init__()
        if norm not in ("none", "layer"):
            raise InputError(f"critic norm={norm!r} is not allowed; choose 'none' or 'layer'")
        backbone = BackboneConfig(
            kind="mlp", hidden_sizes=list(hidden_sizes), activation="leaky_relu", layer_norm=norm == "layer"
        )
        self.features = build_backbone(backbone, tuple(image_shape))
        self.head = nn.Linear(self.features.out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(-1)  # (B,)
