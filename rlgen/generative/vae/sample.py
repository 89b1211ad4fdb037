"""Rebuild a trained VAE from its run directory and decode latents into images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rlgen.generative.runs import config_from_run, open_run
from rlgen.generative.vae.config import VAEConfig
from rlgen.generative.vae.losses import image_mean
from rlgen.generative.vae.networks import VAE


def load(run_dir: str | Path, device: torch.device) -> tuple[VAE, VAEConfig, dict[str, Any]]:
    """The VAE of ``run_dir`` in eval mode, its config and the checkpoint meta."""
    checkpoint = open_run(run_dir, "vae")
    config = config_from_run(checkpoint, VAEConfig)
    model = VAE(config, tuple(checkpoint.meta["data"]["image_shape"]))
    checkpoint.load_module("vae", model)
    return model.to(device).eval(), config, checkpoint.meta


@torch.no_grad()
def decode_images(model: VAE, latents: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Latents (N, Z) -> mean images (N, C, H, W) in [0, 1]."""
    was_training = model.training
    model.eval()
    images = image_mean(model.decode(latents).float(), likelihood)
    model.train(was_training)
    return images
