"""Rebuild a trained WGAN-GP generator from its run directory and generate images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rlgen.generative.runs import config_from_run, open_run
from rlgen.generative.wgan_gp.config import WGANGPConfig
from rlgen.generative.wgan_gp.networks import Critic, Generator, MLPCritic

ALGO = "gan"


def build_generator(config: WGANGPConfig, image_shape: tuple[int, int, int]) -> Generator:
    if config.architecture == "mlp":
        return Generator(config.latent_dim, image_shape, hidden_sizes=config.generator_hidden_sizes)
    return Generator(config.latent_dim, image_shape, channels=config.generator_channels)


def build_critic(config: WGANGPConfig, image_shape: tuple[int, int, int]) -> Critic | MLPCritic:
    if config.architecture == "mlp":
        return MLPCritic(image_shape, config.critic_hidden_sizes, config.critic_norm)
    return Critic(image_shape, config.critic_channels, config.critic_norm)


def load(run_dir: str | Path, device: torch.device) -> tuple[Generator, WGANGPConfig, dict[str, Any]]:
    """The generator of ``run_dir`` in eval mode, its config and the checkpoint meta."""
    checkpoint = open_run(run_dir, ALGO)
    config = config_from_run(checkpoint, WGANGPConfig)
    generator = build_generator(config, tuple(checkpoint.meta["data"]["image_shape"]))
    checkpoint.load_module("generator", generator)
    return generator.to(device).eval(), config, checkpoint.meta


@torch.no_grad()
def generate_images(generator: Generator, latents: torch.Tensor) -> torch.Tensor:
    """Latents (N, Z) -> images (N, C, H, W) in [0, 1], with batch norm on its running statistics."""
    was_training = generator.training
    generator.eval()
    images = (generator(latents).float() + 1.0) / 2.0
    generator.train(was_training)
    return images.clamp(0.0, 1.0)
