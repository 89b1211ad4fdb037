"""Latent diffusion (Rombach et al., 2022): diffuse in the latent space of a trained rlgen VAE.

``LatentCodec`` is the frozen autoencoder: images in [0, 1] -> the posterior means mu(x),
scaled to unit variance (the paper's scale factor, computed once over training images),
and back through the decoder's mean image. The codec is saved in the diffusion run's own
checkpoint (module ``codec``, its VAE config in the meta), so a latent run samples and
resumes without the VAE run it started from.

The denoiser over latent vectors is ``networks.LatentMLPDenoiser`` (``denoiser=mlp``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlgen.config import from_dict, to_dict
from rlgen.errors import InputError
from rlgen.generative.vae.config import VAEConfig
from rlgen.generative.vae.losses import image_mean
from rlgen.generative.vae.networks import VAE


class LatentCodec(nn.Module):
    """A frozen VAE as the encoder / decoder of latent diffusion."""

    def __init__(self, vae_config: VAEConfig, image_shape: tuple[int, int, int]):
        super().__init__()
        self.vae_config, self.image_shape = vae_config, tuple(image_shape)
        self.vae = VAE(vae_config, self.image_shape)
        self.register_buffer("scale", torch.ones(()))  # 1 / std of the training latents
        self.requires_grad_(False)
        self.eval()

    @property
    def latent_shape(self) -> tuple[int]:
        return (self.vae_config.latent_dim,)

    def train(self, mode: bool = True) -> LatentCodec:
        return super().train(False)  # always in eval mode: batch norm on its running statistics

    @torch.no_grad()
    def encode(self, images01: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> scaled posterior means (B, Z)."""
        mu, _ = self.vae.encode(images01)
        return mu * self.scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, Z) -> images (B, C, H, W) in [-1, 1] (the decoder's mean image)."""
        images01 = image_mean(self.vae.decode(latents / self.scale).float(), self.vae_config.likelihood)
        return images01 * 2.0 - 1.0

    @torch.no_grad()
    def fit_scale(self, images01: torch.Tensor) -> float:
        """Set the scale so the latents of ``images01`` have unit standard deviation."""
        self.scale.fill_(1.0)
        mu = torch.cat([self.encode(chunk) for chunk in images01.split(512)])
        self.scale.fill_(1.0 / float(mu.float().std().clamp_min(1e-6)))
        return float(self.scale)

    def meta(self) -> dict[str, Any]:
        """What rebuilding the codec needs (saved in the diffusion checkpoint's meta)."""
        return {"vae_config": to_dict(self.vae_config), "image_shape": list(self.image_shape)}


def codec_from_meta(meta: dict[str, Any]) -> LatentCodec:
    return LatentCodec(from_dict(VAEConfig, meta["vae_config"]), tuple(meta["image_shape"]))


def codec_from_vae_run(run_dir: str | Path, data_meta: dict[str, Any], data: str) -> LatentCodec:
    """The codec of a trained VAE run, checked against the diffusion run's dataset."""
    from rlgen.generative.vae.sample import load

    vae, vae_config, vae_meta = load(run_dir, torch.device("cpu"))
    if tuple(vae_meta["data"]["image_shape"]) != tuple(data_meta["image_shape"]):
        raise InputError(f"vae_run {run_dir} was trained on images {tuple(vae_meta['data']['image_shape'])}, this "
                         f"run's data {data!r} has {tuple(data_meta['image_shape'])}; use a VAE of the same data")
    codec = LatentCodec(vae_config, tuple(data_meta["image_shape"]))
    codec.vae.load_state_dict(vae.state_dict())
    return codec

