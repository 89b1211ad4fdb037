"""VAE networks: an encoder from ``rlgen.backbones`` and a conv (or MLP) decoder.

``ConvDecoder`` is the DCGAN-style upsampling stack; the WGAN-GP generator reuses it.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from rlgen.backbones import BackboneConfig, build_backbone
from rlgen.errors import InputError
from rlgen.generative.vae.config import VAEConfig


def scale_factor(image_shape: tuple[int, int, int], channels: list[int], what: str) -> int:
    """2 ** (levels - 1): how much a stack of ``len(channels)`` resolution levels shrinks the image sides."""
    _, h, w = image_shape
    factor = 2 ** (len(channels) - 1)
    if h % factor or w % factor:
        raise InputError(
            f"a {what} with {len(channels)} channel levels {channels} needs image sides divisible by "
            f"{factor}; got {h}x{w}. Use fewer levels or set image_size"
        )
    return factor


class ConvDecoder(nn.Module):
    """Latent vector -> image, doubling the side with each transposed conv (Radford et al., 2016).

    Args:
        latent_dim: size of z.
        image_shape: (C, H, W) of the output; H and W must be divisible by
            ``2 ** (len(channels) - 1)``.
        channels: conv widths from the lowest resolution up.
        batch_norm: BatchNorm after each upsampling, as DCGAN's generator has.
    """

    def __init__(
        self, latent_dim: int, image_shape: tuple[int, int, int], channels: list[int], batch_norm: bool = True
    ) -> None:
        super().__init__()
        c, h, w = image_shape
        factor = scale_factor(image_shape, channels, "conv decoder")
        self.start_shape = (channels[0], h // factor, w // factor)
        self.project = nn.Linear(latent_dim, channels[0] * (h // factor) * (w // factor))
        layers: list[nn.Module] = [nn.BatchNorm2d(channels[0]) if batch_norm else nn.Identity(), nn.ReLU()]
        for c_in, c_out in itertools.pairwise(channels):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=not batch_norm),
                nn.BatchNorm2d(c_out) if batch_norm else nn.Identity(),
                nn.ReLU(),
            ]
        layers.append(nn.Conv2d(channels[-1], c, kernel_size=3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, Z) -> (B, C, H, W), unbounded (logits or means)."""
        x = self.project(z).view(z.shape[0], *self.start_shape)  # (B, C0, H/f, W/f)
        return self.net(x)


class MLPDecoder(nn.Module):
    """Latent vector -> image through an ``rlgen.backbones`` MLP and one linear layer."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], hidden_sizes: list[int]) -> None:
        super().__init__()
        self.image_shape = image_shape
        self.body = build_backbone(BackboneConfig(kind="mlp", hidden_sizes=list(hidden_sizes)), (latent_dim,))
        self.head = nn.Linear(self.body.out_dim, image_shape[0] * image_shape[1] * image_shape[2])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, Z) -> (B, C, H, W)."""
        return self.head(self.body(z)).view(z.shape[0], *self.image_shape)


class VAE(nn.Module):
    """Encoder q(z|x) = N(mu, diag(exp(logvar))), prior N(0, I), decoder p(x|z).

    The decoder returns Bernoulli logits or Gaussian means; ``log_scale`` is the
    Gaussian likelihood's one learned log standard deviation (unused for Bernoulli).
    """

    def __init__(self, config: VAEConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.latent_dim = config.latent_dim
        self.encoder = build_backbone(config.encoder, self.image_shape)
        self.to_posterior = nn.Linear(self.encoder.out_dim, 2 * config.latent_dim)
        if config.decoder == "conv":
            self.decoder: nn.Module = ConvDecoder(config.latent_dim, self.image_shape, config.decoder_channels)
        else:
            self.decoder = MLPDecoder(config.latent_dim, self.image_shape, config.decoder_hidden_sizes)
        # Only the Gaussian likelihood uses it; a parameter without gradients would make DDP wait for them.
        self.log_scale = nn.Parameter(torch.zeros(()), requires_grad=config.likelihood == "gaussian")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) in [0, 1] -> posterior (mu, logvar), each (B, Z)."""
        mu, logvar = self.to_posterior(self.encoder(x)).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, Z) -> decoder output (B, C, H, W): logits (Bernoulli) or means (Gaussian)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One reparameterised pass: returns (decoder output, mu, logvar).

        ``noise`` (B, Z) is the standard normal draw of the reparameterisation (drawn here when
        None); the training loop passes it so that data-parallel ranks share one draw.
        """
        mu, logvar = self.encode(x)
        noise = torch.randn_like(mu) if noise is None else noise
        z = mu + noise * torch.exp(0.5 * logvar)  # (B, Z)
        return self.decode(z), mu, logvar
