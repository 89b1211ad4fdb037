"""Denoising diffusion (Ho et al., 2020) with diffusers schedulers, a UNet or patch-transformer denoiser."""

from rlgen.generative.diffusion.config import DiffusionConfig
from rlgen.generative.diffusion.networks import (
    PatchTransformerDenoiser,
    UNetDenoiser,
    build_denoiser,
)

__all__ = ["DiffusionConfig", "PatchTransformerDenoiser", "UNetDenoiser", "build_denoiser"]
