"""VAE latent traversals: one latent dimension per row, the others held fixed."""

from __future__ import annotations

import torch

from rlgen.generative.vae.networks import VAE
from rlgen.generative.vae.sample import decode_images


def traversal_latents(latent_dim: int, steps: int = 9, span: float = 3.0,
                      base: torch.Tensor | None = None) -> torch.Tensor:
    """(latent_dim * steps, Z) latents: row d sweeps z_d over [-span, span], every other z_j stays at ``base``."""
    base = torch.zeros(latent_dim) if base is None else base
    values = torch.linspace(-span, span, steps)
    latents = base.repeat(latent_dim, steps, 1)  # (Z rows, steps, Z)
    for d in range(latent_dim):
        latents[d, :, d] = values
    return latents.reshape(latent_dim * steps, latent_dim)


@torch.no_grad()
def latent_traversal(vae: VAE, likelihood: str, steps: int = 9, span: float = 3.0,
                     base: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (Z * steps, C, H, W) in [0, 1], latents) of the traversal grid, ``steps`` per row."""
    latents = traversal_latents(vae.latent_dim, steps, span, base)
    device = next(vae.parameters()).device
    return decode_images(vae, latents.to(device), likelihood), latents
