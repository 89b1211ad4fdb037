"""Variational autoencoder: Gaussian latent, Bernoulli or Gaussian likelihood, beta weight."""

from rlgen.generative.vae.config import VAEConfig
from rlgen.generative.vae.networks import VAE, ConvDecoder

__all__ = ["VAE", "ConvDecoder", "VAEConfig"]
